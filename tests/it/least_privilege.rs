//! Least privilege in the database (issue 14 §3): the migrations run as the database's owner
//! (`LISTBACKUP_MIGRATION_DATABASE_URL`), the service as a role that may only SELECT and INSERT on `events`,
//! so not even a compromised service can rewrite the history. The whole service works as that role: a backup,
//! its download, the audit chain, a read-model rebuild (run by the operator as the owner).

use crate::support;

use std::time::Duration;

use serde_json::Value;
use support::backup::{stripe_source, sync_when_free, BackupApp};
use support::wait_until;
use tokio_postgres::NoTls;

/// A login role of its own for one test, dropped (with its grants) when the test ends, even when it fails.
struct ServiceRole {
    name: String,
}

impl ServiceRole {
    async fn create() -> Self {
        let name = format!("lb_service_{}", uuid::Uuid::new_v4().simple());
        let (client, connection) = tokio_postgres::connect(&support::admin_database_url(), NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        Self { name }
    }

    /// `url` (the owner's) with this role as its user.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        format!("{scheme}://{}@{host}", self.name)
    }
}

impl Drop for ServiceRole {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Its grants live in the test's database: they go with `DROP OWNED` in each database that has them.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let admin = support::admin_database_url();
                let Ok((client, connection)) = tokio_postgres::connect(&admin, NoTls).await else {
                    return;
                };
                tokio::spawn(connection);
                let databases = client
                    .query(
                        "SELECT datname FROM pg_database d WHERE has_database_privilege($1, d.oid, 'CONNECT') \
                           AND datname LIKE 'lb_test_%'",
                        &[&name],
                    )
                    .await
                    .unwrap_or_default();
                for row in databases {
                    let database: String = row.get(0);
                    let url = format!("{}/{database}", admin.rsplit_once('/').unwrap().0);
                    if let Ok((db, connection)) = tokio_postgres::connect(&url, NoTls).await {
                        tokio::spawn(connection);
                        let _ = db.batch_execute(&format!("DROP OWNED BY {name}")).await;
                    }
                }
                let _ = client
                    .batch_execute(&format!("DROP ROLE IF EXISTS {name}"))
                    .await;
            });
        })
        .join();
    }
}

/// The SQLSTATE of a statement run as the service's role, `None` when it succeeded.
async fn refused(client: &tokio_postgres::Client, statement: &str) -> Option<String> {
    client.batch_execute(statement).await.err().map(|e| {
        e.code()
            .map_or_else(|| e.to_string(), |c| c.code().to_owned())
    })
}

#[tokio::test]
async fn the_service_runs_as_a_role_that_cannot_rewrite_the_history() {
    let role = ServiceRole::create().await;
    let service_url = std::cell::OnceCell::new();
    let backup = BackupApp::spawn_with(|values| {
        let owner = values["DATABASE_URL"].clone();
        values.insert("LISTBACKUP_MIGRATION_DATABASE_URL".into(), owner.clone());
        values.insert("DATABASE_URL".into(), role.url(&owner));
        let _ = service_url.set(role.url(&owner));
    })
    .await;
    let service_url = service_url.into_inner().unwrap();
    let app = &backup.app;

    // The whole service works as that role: a backup, its download, the audit chain.
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 30);
    let token = app.owner("acme");
    let source_id = stripe_source(app, &token, "Stripe", &["customers"], false).await;
    let job_id = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let file = app
        .get(&format!("/jobs/{job_id}/files/customers.ndjson.gz"), &token)
        .await;
    assert_eq!(file.status(), 200);
    assert!(!file.bytes().await.unwrap().is_empty());
    let report: Value = app.get("/audit/verify", &token).await.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");

    // The record indexer merges the backup as that role, and takes the index tables' planner statistics
    // (ANALYZE, which only their owner may run; migration 0190): nothing errors, nothing is skipped.
    wait_until(
        Duration::from_secs(45),
        "the backup to be indexed",
        || async {
            let list: Value = app
                .get(&format!("/sources/{source_id}/snapshots"), &token)
                .await
                .json()
                .await
                .unwrap();
            list["snapshots"][0]["jobId"] == job_id.as_str()
        },
    )
    .await;
    let (owner, connection) = tokio_postgres::connect(&app.db.url, NoTls).await.unwrap();
    tokio::spawn(connection);
    wait_until(
        Duration::from_secs(10),
        "the index tables' statistics to be taken",
        || async {
            let analyzed: i64 = owner
                .query_one(
                    "SELECT count(*) FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL \
                       AND relname IN ('record_index_staged', 'record_versions')",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            analyzed == 2
        },
    )
    .await;

    // What the role can and cannot do to the history.
    let (client, connection) = tokio_postgres::connect(&service_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let events: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert!(events >= 4, "{events} events");
    const INSUFFICIENT_PRIVILEGE: &str = "42501";
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TABLE events",
        "DROP TRIGGER events_append_only ON events",
        "DROP TRIGGER events_hash_chain ON events",
        "INSERT INTO schema_migrations (name) VALUES ('9999_mine')",
        "CREATE TABLE mine (id int)",
    ] {
        assert_eq!(
            refused(&client, statement).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }
    let unchanged: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(unchanged, events);

    // The operator's rebuild runs as the owner, and the service's role can read the new tables after it.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
        .args(["projections", "rebuild"])
        .env_remove("LISTBACKUP_CONFIG")
        .env("DATABASE_URL", &service_url)
        .env("LISTBACKUP_MIGRATION_DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "rebuild: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let source = app.get(&format!("/sources/{source_id}"), &token).await;
    assert_eq!(source.status(), 200);
    let listed: Value = app.get("/jobs", &token).await.json().await.unwrap();
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(1), "{listed}");
    backup.stop().await;
}
