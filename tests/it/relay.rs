//! The relay publishes every committed event to JetStream once, in log order, with the event id as the
//! message id; restarts publish nothing twice and skip nothing; commands go on while NATS is down.

use crate::support;

use std::process::Stdio;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::{json, Value};
use support::{wait_until, TestApp};

/// Every message in the stream, in stream order: (subject, Nats-Msg-Id, body).
async fn stream_messages(nats_url: &str, stream: &str) -> Vec<(String, String, Value)> {
    let client = async_nats::connect(nats_url).await.unwrap();
    let js = jetstream::new(client);
    let Ok(mut stream) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let count = stream.info().await.unwrap().state.messages as usize;
    if count == 0 {
        return Vec::new();
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(count)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(Ok(message)) = messages.next().await {
        let id = message
            .headers
            .as_ref()
            .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
            .map(|v| v.to_string())
            .unwrap_or_default();
        out.push((
            message.subject.to_string(),
            id,
            serde_json::from_slice(&message.payload).unwrap(),
        ));
    }
    out
}

/// The events of the log, in log order: (aggregate_type, event_type, event_id).
async fn logged_events(app: &TestApp) -> Vec<(String, String, String)> {
    let db = app.db.connect().await;
    db.query(
        "SELECT aggregate_type, event_type, event_id::text FROM events ORDER BY transaction_id, global_position",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

async fn wait_for_relay(
    app: &TestApp,
    nats_url: &str,
    expected: usize,
) -> Vec<(String, String, Value)> {
    let stream = app.nats.events_stream();
    wait_until(
        Duration::from_secs(20),
        "the relay to publish every event",
        || async { stream_messages(nats_url, &stream).await.len() >= expected },
    )
    .await;
    stream_messages(nats_url, &stream).await
}

fn assert_published_in_log_order(
    app: &TestApp,
    published: &[(String, String, Value)],
    logged: &[(String, String, String)],
) {
    assert_eq!(
        published.len(),
        logged.len(),
        "one message per event, no duplicates"
    );
    for ((subject, msg_id, body), (aggregate_type, event_type, event_id)) in
        published.iter().zip(logged)
    {
        assert_eq!(msg_id, event_id);
        assert_eq!(
            subject,
            &format!("{}.events.{aggregate_type}.{event_type}", app.nats.prefix)
        );
        assert_eq!(body["eventId"], json!(event_id));
        assert!(body["metadata"]["accountId"].is_string());
    }
}

#[tokio::test]
async fn every_event_is_published_once_in_order_across_restarts() {
    let mut app = TestApp::spawn().await;
    let token = app.owner("acme");
    for i in 0..3 {
        let c = app
            .create_stripe_connection(&token, &format!("c{i}"), "sk_test_1")
            .await;
        let path = format!("/connections/{}", c["connectionId"].as_str().unwrap());
        assert_eq!(
            app.put(&path, &token, &json!({"name": format!("renamed {i}")}))
                .await
                .status(),
            200
        );
    }
    let logged = logged_events(&app).await;
    assert_eq!(logged.len(), 6);
    let published = wait_for_relay(&app, &support::nats_url(), logged.len()).await;
    assert_published_in_log_order(&app, &published, &logged);

    // A restart resumes from the checkpoint: nothing again, nothing skipped.
    app.restart().await;
    let token = app.owner("acme");
    app.create_stripe_connection(&token, "after restart", "sk_test_1")
        .await;
    let logged = logged_events(&app).await;
    assert_eq!(logged.len(), 7);
    let published = wait_for_relay(&app, &support::nats_url(), logged.len()).await;
    assert_published_in_log_order(&app, &published, &logged);
    app.stop().await;
}

fn nats_server_binary() -> String {
    for candidate in [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ] {
        if std::path::Path::new(candidate).exists() {
            return candidate.to_owned();
        }
    }
    panic!("nats-server is not installed: scripts/ensure-services installs it");
}

/// A NATS server of this test's own, so it can be stopped without disturbing other tests.
struct PrivateNats {
    port: u16,
    store: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    async fn start(port: u16, store: std::path::PathBuf) -> Self {
        let child = tokio::process::Command::new(nats_server_binary())
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let nats = Self {
            port,
            store,
            child: Some(child),
        };
        wait_until(
            Duration::from_secs(10),
            "the private NATS server",
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        nats
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

#[tokio::test]
async fn commands_go_on_while_nats_is_down_and_the_relay_catches_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = std::env::temp_dir().join(format!("lb-nats-{}", uuid::Uuid::new_v4().simple()));
    let mut nats = PrivateNats::start(port, store.clone()).await;
    let url = nats.url();
    let app = TestApp::spawn_with(|c| {
        c.insert("NATS_URL".into(), url.clone());
    })
    .await;
    let token = app.owner("acme");
    app.create_stripe_connection(&token, "before", "sk_test_1")
        .await;
    wait_for_relay(&app, &url, 1).await;

    nats.stop().await;
    // Postgres alone takes commands: nothing here needs NATS.
    for i in 0..3 {
        app.create_stripe_connection(&token, &format!("while down {i}"), "sk_test_1")
            .await;
    }
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready without NATS");

    let mut nats = PrivateNats::start(port, nats.store.clone()).await;
    let logged = logged_events(&app).await;
    assert_eq!(logged.len(), 4);
    let published = wait_for_relay(&app, &url, logged.len()).await;
    assert_published_in_log_order(&app, &published, &logged);
    app.stop().await;
    nats.stop().await;
    let _ = std::fs::remove_dir_all(&store);
}
