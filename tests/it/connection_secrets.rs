//! A connection's secret never leaves the vault: not in events, read models, responses or logs, and it is
//! destroyed with the connection. Runs the real `listbackup serve` binary so its log output is what is read.

use crate::support;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::platform_api::PlatformApi;
use support::{random_master_key, wait_until, TestDatabase};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Collects every line a child process prints.
fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}

#[tokio::test]
async fn the_secret_is_nowhere_but_the_vault_and_dies_with_the_connection() {
    let db = TestDatabase::create().await;
    let emulator = PlatformApi::start().await;
    let secret = format!("sk_test_DISTINCTIVE{}", uuid::Uuid::new_v4().simple());
    let replacement = format!("sk_test_REPLACEMENT{}", uuid::Uuid::new_v4().simple());
    emulator.accept_credentials("stripe", json!({ "secretKey": secret }));
    let jwt_secret = format!("jwt-{}", uuid::Uuid::new_v4());

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("NATS_URL", support::nats_url())
        .env("LISTBACKUP_BIND", "127.0.0.1:0")
        .env("LISTBACKUP_MASTER_KEY", random_master_key())
        .env("LISTBACKUP_JWT_SECRET", &jwt_secret)
        .env(
            "LISTBACKUP_PLATFORM_STRIPE_API_URL",
            emulator.api_url("stripe"),
        )
        // The most talkative level the service is ever run at: every crate's debug output.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    capture(child.stdout.take().unwrap(), logs.clone());
    capture(child.stderr.take().unwrap(), logs.clone());

    // The port is in the "serving" log line.
    let port = Arc::new(Mutex::new(None));
    wait_until(Duration::from_secs(30), "the service to start", || {
        let logs = logs.clone();
        let port = port.clone();
        async move {
            let found = logs.lock().unwrap().iter().find_map(|line| {
                let entry: Value = serde_json::from_str(line).ok()?;
                (entry["fields"]["message"] == "listbackup is serving")
                    .then(|| entry["fields"]["port"].as_u64())?
            });
            *port.lock().unwrap() = found;
            found.is_some()
        }
    })
    .await;
    let base = format!("http://127.0.0.1:{}", port.lock().unwrap().unwrap());

    let token_output = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
        .args([
            "token",
            "--account",
            "acme",
            "--user",
            "alice",
            "--role",
            "owner",
        ])
        .env("LISTBACKUP_JWT_SECRET", &jwt_secret)
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert!(token_output.status.success());
    let token = String::from_utf8(token_output.stdout)
        .unwrap()
        .trim()
        .to_owned();

    let http = reqwest::Client::new();
    let mut responses = String::new();
    let created = http
        .post(format!("{base}/connections"))
        .bearer_auth(&token)
        .json(
            &json!({"platformId": "stripe", "name": "Live", "credentials": {"secretKey": secret}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let request_id = created.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let created_text = created.text().await.unwrap();
    responses.push_str(&created_text);
    let id = serde_json::from_str::<Value>(&created_text).unwrap()["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();

    let tested = http
        .post(format!("{base}/connections/{id}/test"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), 200);
    let tested_text = tested.text().await.unwrap();
    responses.push_str(&tested_text);
    assert_eq!(
        serde_json::from_str::<Value>(&tested_text).unwrap()["ok"],
        true,
        "{tested_text}"
    );

    for path in [format!("/connections/{id}"), "/connections".to_owned()] {
        let got = http
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        responses.push_str(&got.text().await.unwrap());
    }
    let replaced = http
        .put(format!("{base}/connections/{id}"))
        .bearer_auth(&token)
        .json(&json!({"credentials": {"secretKey": replacement}}))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    responses.push_str(&replaced.text().await.unwrap());

    // The lines written while that request was served (the store's, at debug) carry its id in their span,
    // not only the one summary line of the request.
    wait_until(
        Duration::from_secs(10),
        "log lines inside the request carrying its id",
        || {
            let logs = logs.clone();
            let request_id = request_id.clone();
            async move {
                logs.lock()
                    .unwrap()
                    .iter()
                    .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                    .filter(|entry| entry["span"]["request_id"] == request_id.as_str())
                    .any(|entry| entry["fields"]["message"] != "request")
            }
        },
    )
    .await;

    let client = db.connect().await;
    assert_eq!(
        vault_rows(&client, &id).await,
        1,
        "the vault holds the sealed secret while the connection lives"
    );

    let deleted = http
        .delete(format!("{base}/connections/{id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        vault_rows(&client, &id).await,
        0,
        "deleting the connection destroys the secret"
    );

    // Every table of the database, as text: events, read models, checkpoints, idempotency keys, the vault.
    let tables: Vec<String> = client
        .query(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        tables.contains(&"events".to_owned()) && tables.contains(&"read_connections".to_owned())
    );
    let mut database_text = String::new();
    for table in &tables {
        let rows = client
            .query(&format!("SELECT t::text FROM {table} t"), &[])
            .await
            .unwrap();
        for row in rows {
            database_text.push_str(&row.get::<_, String>(0));
        }
    }
    let events: i64 = client
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(events, 4, "created, tested, credentials replaced, deleted");

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let log_text = logs.lock().unwrap().join("\n");
    assert!(log_text.contains("request"), "the logs were captured");
    assert!(
        emulator.hits("/stripe/v1/account") >= 1,
        "the platform was really called"
    );
    for value in [&secret, &replacement] {
        assert!(
            !database_text.contains(value.as_str()),
            "secret found in the database"
        );
        assert!(
            !responses.contains(value.as_str()),
            "secret found in a response"
        );
        assert!(
            !log_text.contains(value.as_str()),
            "secret found in the logs"
        );
    }
}

async fn vault_rows(client: &tokio_postgres::Client, connection_id: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM credential_vault WHERE connection_id = $1",
            &[&connection_id],
        )
        .await
        .unwrap()
        .get(0)
}
