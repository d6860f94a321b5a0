//! The shell scripts a newcomer runs first, at the shell level: `scripts/ensure-database` (what
//! `scripts/serve` runs before the service) creates the database `DATABASE_URL` names, whatever it is called.

use crate::support;

use std::process::{Command, Output};

use tokio_postgres::NoTls;

fn ensure_database(url: &str) -> Output {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/ensure-database"
    ))
    .env("DATABASE_URL", url)
    .output()
    .expect("run scripts/ensure-database")
}

async fn exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .is_some()
}

/// Drops the database when the test ends, also when it fails.
struct Dropped(String);

impl Drop for Dropped {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(support::admin_database_url())
            .args(["-qc", &format!("DROP DATABASE IF EXISTS \"{}\"", self.0)])
            .output();
    }
}

#[tokio::test]
async fn the_database_the_url_names_is_created_once() {
    let admin_url = support::admin_database_url();
    let (admin, connection) = tokio_postgres::connect(&admin_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let name = format!("lb_test_{}", uuid::Uuid::new_v4().simple());
    let _dropped = Dropped(name.clone());
    let server = admin_url.rsplit_once('/').unwrap().0;
    // Not `listbackup`, and with options after the name.
    let url = format!("{server}/{name}?application_name=scripts_test");

    let first = ensure_database(&url);
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{said}");
    assert!(
        said.contains(&format!("creating database {name}")),
        "{said}"
    );
    assert!(exists(&admin, &name).await);

    let again = ensure_database(&url);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(!said.contains("creating"), "created once: {said}");
}

#[test]
fn a_url_without_a_usable_database_name_is_refused_with_the_reason() {
    let server = support::admin_database_url()
        .rsplit_once('/')
        .unwrap()
        .0
        .to_owned();
    for (url, reason) in [
        (server.clone(), "must name a database"),
        (format!("{server}/"), "must name a database"),
        (format!("{server}/my-db"), "letters, digits and underscores"),
        (
            "postgres://root@127.0.0.1:1/x".to_owned(),
            "cannot reach PostgreSQL",
        ),
    ] {
        let output = ensure_database(&url);
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{url}: {said}");
        assert!(said.contains(reason), "{url}: {said}");
    }
}
