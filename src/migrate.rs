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
];

/// An arbitrary constant that names the migration lock among advisory locks.
const MIGRATION_LOCK: i64 = 0x4c42_4d49_4752; // "LBMIGR"

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
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                    name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
            )
            .await?;
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
