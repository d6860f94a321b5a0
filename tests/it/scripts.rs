//! The shell scripts a newcomer runs first, at the shell level: `scripts/ensure-database` (what
//! `scripts/serve` runs before the service) creates the database `DATABASE_URL` names, whatever it is called;
//! `scripts/serve` refuses an address another instance already answers on.

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

/// `scripts/ensure-service-role` (what `scripts/serve` runs for least privilege) creates the service's login
/// role once and prints the URL the service connects with: the owner's, with the role as its user.
#[tokio::test]
async fn the_service_role_is_created_once_and_named_in_the_url() {
    let admin_url = support::admin_database_url();
    let (admin, connection) = tokio_postgres::connect(&admin_url, NoTls).await.unwrap();
    tokio::spawn(connection);
    let role = format!("lb_script_{}", uuid::Uuid::new_v4().simple());
    struct DroppedRole(String);
    impl Drop for DroppedRole {
        fn drop(&mut self) {
            let _ = Command::new("psql")
                .arg(support::admin_database_url())
                .args(["-qc", &format!("DROP ROLE IF EXISTS \"{}\"", self.0)])
                .output();
        }
    }
    let _dropped = DroppedRole(role.clone());
    let (server, _) = admin_url.rsplit_once('/').unwrap();
    let owner_url = format!("{server}/listbackup_example?application_name=x");
    let run = |role: &str| {
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/ensure-service-role"
        ))
        .arg(role)
        .env("DATABASE_URL", &owner_url)
        .output()
        .expect("run scripts/ensure-service-role")
    };
    let host = server.split_once("://").unwrap().1;
    let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
    let expected = format!("postgres://{role}@{host}/listbackup_example?application_name=x\n");
    for _ in 0..2 {
        let output = run(&role);
        assert!(output.status.success(), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    }
    let login: bool = admin
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(login);
    let refused = run("Robert'); DROP TABLE x;--");
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("must be lower-case letters"));
}

/// `scripts/serve` on an address something already answers on (another instance) stops at once with a clear
/// message, before it builds, starts or writes anything: never "serving" on someone else's port, never a
/// truncated log of the instance already there.
#[test]
fn serve_refuses_an_address_that_already_answers_before_touching_anything() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let root = env!("CARGO_MANIFEST_DIR");
    let log = std::path::Path::new(root).join(format!("data/serve-{port}.log"));
    let output = Command::new(format!("{root}/scripts/serve"))
        .env("LISTBACKUP_BIND", format!("127.0.0.1:{port}"))
        .output()
        .expect("run scripts/serve");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("something already answers on 127.0.0.1:{port}")),
        "{said}"
    );
    assert!(!said.contains("serving on"), "{said}");
    assert!(!log.exists(), "no log written: {}", log.display());
}
