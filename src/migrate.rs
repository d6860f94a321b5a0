//! Applies `migrations/*.sql` in order, once each, under an advisory lock so concurrent starts are safe.

use tokio_postgres::NoTls;

/// The migrations, compiled into the binary so a deployed service needs no files beside it.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_event_store",
        include_str!("../migrations/0001_event_store.sql"),
    ),
    (
        "0002_credential_vault",
        include_str!("../migrations/0002_credential_vault.sql"),
    ),
    (
        "0003_read_models",
        include_str!("../migrations/0003_read_models.sql"),
    ),
    (
        "0004_sources",
        include_str!("../migrations/0004_sources.sql"),
    ),
    ("0005_oauth", include_str!("../migrations/0005_oauth.sql")),
    ("0006_jobs", include_str!("../migrations/0006_jobs.sql")),
    (
        "0007_scheduler",
        include_str!("../migrations/0007_scheduler.sql"),
    ),
    (
        "0009_backup_runs",
        include_str!("../migrations/0009_backup_runs.sql"),
    ),
    (
        "0010_audit_hash_chain",
        include_str!("../migrations/0010_audit_hash_chain.sql"),
    ),
    (
        "0015_oauth_scopes",
        include_str!("../migrations/0015_oauth_scopes.sql"),
    ),
    (
        "0016_source_last_job",
        include_str!("../migrations/0016_source_last_job.sql"),
    ),
    (
        "0020_log_notify",
        include_str!("../migrations/0020_log_notify.sql"),
    ),
    (
        "0030_retention",
        include_str!("../migrations/0030_retention.sql"),
    ),
    (
        "0070_log_notify_after_commit",
        include_str!("../migrations/0070_log_notify_after_commit.sql"),
    ),
    (
        "0080_account_data_keys",
        include_str!("../migrations/0080_account_data_keys.sql"),
    ),
    (
        "0100_record_versions",
        include_str!("../migrations/0100_record_versions.sql"),
    ),
    (
        "0110_active_jobs_index",
        include_str!("../migrations/0110_active_jobs_index.sql"),
    ),
    (
        "0120_webhooks",
        include_str!("../migrations/0120_webhooks.sql"),
    ),
    (
        "0130_database_commit_horizon",
        include_str!("../migrations/0130_database_commit_horizon.sql"),
    ),
    (
        "0140_restore_jobs",
        include_str!("../migrations/0140_restore_jobs.sql"),
    ),
    (
        "0160_restore_id_map",
        include_str!("../migrations/0160_restore_id_map.sql"),
    ),
    (
        "0180_record_index_staged_copy",
        include_str!("../migrations/0180_record_index_staged_copy.sql"),
    ),
    (
        "0190_record_index_analyze",
        include_str!("../migrations/0190_record_index_analyze.sql"),
    ),
    (
        "0200_commit_horizon_of_appenders",
        include_str!("../migrations/0200_commit_horizon_of_appenders.sql"),
    ),
    (
        "0210_commit_horizon_of_every_transaction",
        include_str!("../migrations/0210_commit_horizon_of_every_transaction.sql"),
    ),
    (
        "0220_sessions_that_never_append",
        include_str!("../migrations/0220_sessions_that_never_append.sql"),
    ),
    (
        "0230_commit_horizon_planned_once",
        include_str!("../migrations/0230_commit_horizon_planned_once.sql"),
    ),
];

/// An arbitrary constant that names the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4c42_4d49_4752; // "LBMIGR"

/// Prepares the database for `config`: applies the migrations as its owner
/// ([`Config::owner_database_url`](crate::Config::owner_database_url)) and, when the service connects as
/// another role, grants that role what the service needs and nothing more ([`grant_service_role`]). Returns
/// the names of the migrations applied now.
pub async fn prepare(config: &crate::Config) -> anyhow::Result<Vec<String>> {
    let owner_url = config.owner_database_url();
    let applied = run(owner_url).await.map_err(|e| {
        anyhow::anyhow!(
            "applying the migrations: {}",
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned())
        )
    })?;
    if let Some(role) = service_role(config)? {
        grant_service_role(owner_url, &role).await.map_err(|e| {
            anyhow::anyhow!(
                "granting the service's role {role:?} its privileges: {}",
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned())
            )
        })?;
    }
    Ok(applied)
}

/// The role `DATABASE_URL` connects as, when it is not the owner's of `LISTBACKUP_MIGRATION_DATABASE_URL`.
fn service_role(config: &crate::Config) -> anyhow::Result<Option<String>> {
    let Some(owner_url) = &config.migration_database_url else {
        return Ok(None);
    };
    let user = |url: &str, name: &str| -> anyhow::Result<Option<String>> {
        let parsed: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow::anyhow!("{name} is not a PostgreSQL URL: {e}"))?;
        Ok(parsed.get_user().map(str::to_owned))
    };
    let service = user(&config.database_url, "DATABASE_URL")?;
    let owner = user(owner_url, "LISTBACKUP_MIGRATION_DATABASE_URL")?;
    match service {
        Some(service) if Some(&service) != owner.as_ref() => Ok(Some(service)),
        Some(_) => Ok(None),
        None => anyhow::bail!(
            "DATABASE_URL names no user: with LISTBACKUP_MIGRATION_DATABASE_URL, it must name the service's role"
        ),
    }
}

/// Grants `role` (the service's) what the service needs on the owner's tables, and nothing that could
/// rewrite history: SELECT and INSERT on `events` only (no UPDATE, DELETE or TRUNCATE; not being the owner,
/// it can neither drop the table nor disable the triggers that keep it append-only and hash-chained),
/// SELECT on `schema_migrations`, SELECT/INSERT/UPDATE/DELETE on the other tables (read models,
/// checkpoints, the vault, leases), the sequences, and EXECUTE on `record_index_analyze()` (the record
/// index's statistics, which only the owner may take; migration 0190). Idempotent; run after every
/// migration and rebuild, since a table they create starts with no grants.
pub async fn grant_service_role(owner_url: &str, role: &str) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(owner_url, NoTls).await?;
    let connection = tokio::spawn(connection);
    let role = quote_identifier(role);
    let result = client
        .batch_execute(&format!(
            "BEGIN;
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON events FROM {role};
             REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON schema_migrations FROM {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
             GRANT EXECUTE ON FUNCTION record_index_analyze() TO {role};
             COMMIT;"
        ))
        .await;
    drop(client);
    let _ = connection.await;
    result
}

/// A PostgreSQL identifier in double quotes, its own quotes doubled (the SQL standard's quoting).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Applies every migration not applied yet; returns the names applied now.
pub async fn run(database_url: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    run_through(database_url, None).await
}

/// Applies the migrations not applied yet up to and including `last` (`None`: all), as a database that
/// has not been upgraded since `last` would be (tests of a migration's effect on existing data).
pub async fn run_through(
    database_url: &str,
    last: Option<&str>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    let connection = tokio::spawn(connection);
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // Created only when missing: a role without CREATE on the schema (the service's, with migrations
        // applied by the owner) may still run this and find nothing to do.
        let exists = client
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
            .await?
            .get::<_, bool>(0);
        if !exists {
            client
                .batch_execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (
                        name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                )
                .await?;
        }
        let mut applied = Vec::new();
        for (name, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            let done = tx
                .query_opt("SELECT 1 FROM schema_migrations WHERE name = $1", &[name])
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute("INSERT INTO schema_migrations (name) VALUES ($1)", &[name])
                    .await?;
                applied.push((*name).to_owned());
            }
            tx.commit().await?;
            if Some(*name) == last {
                break;
            }
        }
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        Ok(applied)
    }
    .await;
    drop(client);
    let _ = connection.await;
    result
}
