//! Notifications (issue 14 §5): webhooks get signed notifications of backup outcomes, retried with backoff
//! and in order per resource, every attempt listed; e-mail targets get them through the SMTP server; a
//! restart loses none; targets are checked against SSRF; secrets are shown once.

use crate::support;

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::backup::{stripe_source, sync, sync_when_free, BackupApp};
use support::notifications::{SmtpServer, WebhookReceiver};
use support::{problem_code, wait_until, TestApp};

/// Deliveries retried fast (200 ms, doubling up to 1 s), and loopback receivers allowed.
fn fast_retries(values: &mut std::collections::BTreeMap<String, String>) {
    values.insert("LISTBACKUP_WEBHOOK_ALLOW_HTTP".into(), "true".into());
    values.insert("LISTBACKUP_WEBHOOK_RETRY_BASE_MS".into(), "200".into());
    values.insert("LISTBACKUP_WEBHOOK_RETRY_MAX_MS".into(), "1000".into());
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.unwrap()
}

/// Creates a webhook; returns its view (with the secret shown once).
async fn create_webhook(app: &TestApp, token: &str, url: &str, events: &[&str]) -> Value {
    let response = app
        .post("/webhooks", token, &json!({"url": url, "events": events}))
        .await;
    assert_eq!(response.status(), 201);
    json_of(response).await
}

async fn deliveries(app: &TestApp, token: &str, webhook_id: &str) -> Vec<Value> {
    let response = app
        .get(&format!("/webhooks/{webhook_id}/deliveries"), token)
        .await;
    assert_eq!(response.status(), 200);
    json_of(response).await["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

/// What a receiver does (Stripe's scheme, as the README documents it): HMAC-SHA256 keyed with the secret
/// over `{t}.{body}`, compared with `v1`, the timestamp within 5 minutes.
fn verify_signature(secret: &str, header: &str, body: &[u8]) {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(hex::decode(value).unwrap()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t="), v1.expect("v1="));
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().unwrap();
    assert!(age.abs() <= 300, "timestamp {t} is {age} s old");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).expect("the signature matches");
}

#[tokio::test]
async fn a_failed_backup_is_delivered_signed_retried_and_in_order_per_source() {
    let backup = BackupApp::spawn_with(fast_retries).await;
    let app = &backup.app;
    let receiver = WebhookReceiver::start().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 3);
    let token = app.owner("acme");
    let webhook =
        create_webhook(app, &token, &receiver.url, &["job.failed", "job.succeeded"]).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap();
    let secret = webhook["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{webhook}");
    // Never again: not in GET, not in the list, not in the event log.
    let got = app.get(&format!("/webhooks/{webhook_id}"), &token).await;
    assert_eq!(got.status(), 200);
    assert!(json_of(got).await.get("secret").is_none());
    let listed = json_of(app.get("/webhooks", &token).await).await;
    assert_eq!(listed["webhooks"][0]["webhookId"], webhook_id);
    assert!(!listed.to_string().contains(&secret));
    let logged: i64 = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM events WHERE payload::text LIKE '%' || $1 || '%'",
            &[&&secret[6..]],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(logged, 0, "the secret is in the event log");

    // The receiver is down while the key is refused: the failed job's notification is retried.
    receiver.fail_all(503);
    let source_id = stripe_source(app, &token, "Stripe", &["customers"], false).await;
    backup.api.revoke("stripe", "sk_test_1");
    let failed_id = sync(app, &token, &source_id).await;
    let job = backup.finished(&token, &failed_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    wait_until(Duration::from_secs(30), "two failed attempts", || async {
        receiver.received().len() >= 2
    })
    .await;

    // The next job of the same source succeeds; its notification waits behind the failed one's.
    backup.api.accept("stripe", "sk_test_1");
    let succeeded_id = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &succeeded_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    wait_until(
        Duration::from_secs(30),
        "the success to be queued",
        || async { deliveries(app, &token, webhook_id).await.len() == 2 },
    )
    .await;
    let failing_attempts = receiver.received().len();
    wait_until(Duration::from_secs(30), "another retry", || async {
        receiver.received().len() > failing_attempts
    })
    .await;
    assert!(
        receiver
            .received()
            .iter()
            .all(|r| r.json()["type"] == "job.failed"),
        "job.succeeded was sent before job.failed was delivered"
    );
    let queued = deliveries(app, &token, webhook_id).await;
    let (newest, oldest) = (&queued[0], &queued[1]);
    assert_eq!(newest["eventType"], "job.succeeded");
    assert_eq!(newest["status"], "pending");
    assert_eq!(newest["attempts"], json!([]), "{newest}");
    assert_eq!(oldest["eventType"], "job.failed");
    let attempts = oldest["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{oldest}");
    assert_eq!(attempts[0]["statusCode"], 503);
    assert_eq!(
        attempts[0]["error"],
        "the receiver answered 503 Service Unavailable"
    );
    assert_eq!(attempts[0]["responseExcerpt"], "receiver down");
    assert!(attempts[0]["nextAttemptAt"].is_string(), "{oldest}");
    assert!(attempts[0]["durationMs"].is_i64());

    // The receiver recovers: both are delivered, failed first.
    receiver.recover();
    wait_until(Duration::from_secs(30), "both to be delivered", || async {
        deliveries(app, &token, webhook_id)
            .await
            .iter()
            .all(|d| d["status"] == "delivered")
    })
    .await;
    let received = receiver.received();
    let delivered: Vec<_> = received.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0].json()["type"], "job.failed");
    assert_eq!(delivered[1].json()["type"], "job.succeeded");
    let failed = delivered[0].json();
    assert_eq!(failed["accountId"], "acme");
    assert_eq!(failed["data"]["jobId"], failed_id.as_str());
    assert_eq!(failed["data"]["sourceId"], source_id.as_str());
    assert_eq!(failed["data"]["platformId"], "stripe");
    assert_eq!(failed["data"]["error"]["code"], "UNAUTHORIZED");
    assert!(!String::from_utf8_lossy(&delivered[0].body).contains("sk_test_1"));
    // Every attempt of one notification carries the same id; each is signed.
    let ids: std::collections::BTreeSet<_> = received
        .iter()
        .filter(|r| r.json()["type"] == "job.failed")
        .map(|r| r.header("webhook-id").unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids.first().unwrap(), failed["id"].as_str().unwrap());
    for request in &delivered {
        assert_eq!(request.header("content-type"), Some("application/json"));
        verify_signature(
            &secret,
            request.header("webhook-signature").unwrap(),
            &request.body,
        );
    }
    // A signature under another secret does not verify.
    let wrong = std::panic::catch_unwind(|| {
        verify_signature(
            "whsec_wrong",
            delivered[0].header("webhook-signature").unwrap(),
            &delivered[0].body,
        )
    });
    assert!(wrong.is_err());
    receiver.stop().await;
    backup.stop().await;
}

#[tokio::test]
async fn an_event_recorded_while_the_service_is_down_is_delivered_after_the_restart() {
    let mut app = TestApp::spawn_with(fast_retries).await;
    let receiver = WebhookReceiver::start().await;
    let token = app.owner("acme");
    let connection = app.create_stripe_connection(&token, "Stripe", "sk_1").await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let webhook =
        create_webhook(&app, &token, &receiver.url, &["connection.reauth_required"]).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap().to_owned();

    // A ping is queued, and fails while the receiver is down.
    receiver.fail_all(500);
    let response = app
        .post(&format!("/webhooks/{webhook_id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let ping_id = json_of(response).await["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        Duration::from_secs(30),
        "a failed attempt recorded",
        || async {
            deliveries(&app, &token, &webhook_id).await[0]["attempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        },
    )
    .await;

    // The service stops; meanwhile a process records that the connection needs authorizing again.
    app.stop_service().await;
    let client = app.db.connect().await;
    let sequence: i64 = client
        .query_one(
            "SELECT max(sequence) + 1 FROM events WHERE aggregate_id = $1",
            &[&connection_id],
        )
        .await
        .unwrap()
        .get(0);
    client
        .execute(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('connection', $1, $2, 'ConnectionReauthRequired', '1.0', $3, $4)",
            &[
                &connection_id,
                &sequence,
                &json!({"ConnectionReauthRequired": {"reason": "the refresh token was revoked"}}),
                &json!({"accountId": "acme", "actor": "system", "requestId": "r", "correlationId": "r", "causationId": "r"}),
            ],
        )
        .await
        .unwrap();
    receiver.recover();
    app.restart().await;

    wait_until(Duration::from_secs(30), "both deliveries", || async {
        let list = deliveries(&app, &token, &webhook_id).await;
        list.len() == 2 && list.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    let list = deliveries(&app, &token, &webhook_id).await;
    let ping = list
        .iter()
        .find(|d| d["deliveryId"] == ping_id.as_str())
        .unwrap();
    assert_eq!(ping["eventType"], "ping");
    assert!(ping["attempts"].as_array().unwrap().len() >= 2);
    let delivered: Vec<Value> = receiver
        .received()
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.json())
        .collect();
    let reauth: Vec<&Value> = delivered
        .iter()
        .filter(|n| n["type"] == "connection.reauth_required")
        .collect();
    assert_eq!(reauth.len(), 1, "{delivered:?}");
    assert_eq!(reauth[0]["data"]["connectionId"], connection_id.as_str());
    assert_eq!(reauth[0]["data"]["platformId"], "stripe");
    assert_eq!(reauth[0]["data"]["reason"], "the refresh token was revoked");
    receiver.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_and_recorded() {
    let app = TestApp::spawn_with(|values| {
        fast_retries(values);
        values.insert("LISTBACKUP_WEBHOOK_RETRY_FOR_SECS".into(), "1".into());
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    receiver.fail_all(500);
    let token = app.owner("acme");
    let webhook = create_webhook(&app, &token, &receiver.url, &["job.failed"]).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap();
    let response = app
        .post(&format!("/webhooks/{webhook_id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    wait_until(
        Duration::from_secs(30),
        "the delivery to be given up",
        || async { deliveries(&app, &token, webhook_id).await[0]["status"] == "failed" },
    )
    .await;
    let delivery = &deliveries(&app, &token, webhook_id).await[0];
    let attempts = delivery["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "{delivery}");
    assert!(attempts.last().unwrap()["nextAttemptAt"].is_null());
    assert!(delivery["finishedAt"].is_string());
    assert!(delivery["nextAttemptAt"].is_null());
    assert_eq!(attempts.len(), receiver.received().len());
    receiver.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn targets_are_checked_secrets_rotate_and_other_accounts_see_nothing() {
    // Production-like: no plain HTTP, no private addresses, no SMTP server.
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    for (url, why) in [
        ("http://hooks.example.com/x", "https"),
        ("https://127.0.0.1/x", "private"),
        ("https://169.254.169.254/latest/meta-data", "private"),
        ("https://10.0.0.7/", "private"),
        ("https://[::1]/", "private"),
        ("https://localhost:8080/", "private"),
        ("https://user:pw@hooks.example.com/", "credentials"),
        ("mailto:ops@example.com", "SMTP"),
        ("ftp://hooks.example.com/", "scheme"),
    ] {
        let response = app
            .post(
                "/webhooks",
                &token,
                &json!({"url": url, "events": ["job.failed"]}),
            )
            .await;
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 400, "{url}: {problem}");
        assert_eq!(problem["code"], "VALIDATION_ERROR");
        assert_eq!(problem["errors"][0]["field"], "url", "{url}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(why),
            "{url}: {problem}"
        );
    }
    for (events, field) in [
        (json!(["job.exploded"]), "events[0]"),
        (json!([]), "events"),
    ] {
        let response = app
            .post(
                "/webhooks",
                &token,
                &json!({"url": "https://hooks.example.com/", "events": events}),
            )
            .await;
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 400);
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let response = app
        .post(
            "/webhooks",
            &token,
            &json!({"url": "https://hooks.example.com/", "events": ["job.failed"], "secret": "mine"}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 400);
    let viewer = app.token("acme", &[listbackup_api::auth::Role::Viewer]);
    let response = app
        .post(
            "/webhooks",
            &viewer,
            &json!({"url": "https://hooks.example.com/", "events": ["job.failed"]}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 403);

    let webhook = create_webhook(
        &app,
        &token,
        "https://hooks.example.com/in",
        &["job.failed"],
    )
    .await;
    let id = webhook["webhookId"].as_str().unwrap();
    let first_secret = webhook["secret"].as_str().unwrap().to_owned();
    assert_eq!(webhook["events"], json!(["job.failed"]));
    assert_eq!(webhook["url"], "https://hooks.example.com/in");

    // Another account's webhook is the same 404 as a missing one.
    let globex = app.owner("globex");
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/webhooks/{id}"),
        format!("/webhooks/{id}/deliveries"),
    ] {
        let foreign = app.get(&path, &globex).await;
        let absent = app
            .get(&path.replace(id, &missing.to_string()), &globex)
            .await;
        let (foreign_status, foreign) = problem_code(foreign).await;
        let (absent_status, absent) = problem_code(absent).await;
        assert_eq!((foreign_status, absent_status), (404, 404));
        assert_eq!(foreign["detail"], absent["detail"]);
    }
    assert_eq!(
        json_of(app.get("/webhooks", &globex).await).await["webhooks"],
        json!([])
    );

    // Update and rotation; the rotated secret differs and is shown once.
    let response = app
        .put(
            &format!("/webhooks/{id}"),
            &token,
            &json!({"events": ["job.failed", "backup.corrupted"], "description": "ops"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let updated = json_of(response).await;
    assert_eq!(updated["events"], json!(["job.failed", "backup.corrupted"]));
    assert_eq!(updated["description"], "ops");
    let response = app
        .post(&format!("/webhooks/{id}/rotate-secret"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let rotated = json_of(response).await;
    let second_secret = rotated["secret"].as_str().unwrap();
    assert!(second_secret.starts_with("whsec_"));
    assert_ne!(second_secret, first_secret);
    let got = json_of(app.get(&format!("/webhooks/{id}"), &token).await).await;
    assert!(got.get("secret").is_none());
    assert_eq!(got["version"], 3);
    assert_eq!(
        app.event_types(id).await,
        ["WebhookCreated", "WebhookUpdated", "WebhookSecretRotated"]
    );

    // Deleted: gone, and its secret destroyed.
    let response = app.delete(&format!("/webhooks/{id}"), &token).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.get(&format!("/webhooks/{id}"), &token).await.status(),
        404
    );
    let secrets: i64 = app
        .db
        .connect()
        .await
        .query_one("SELECT count(*) FROM webhook_secrets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(secrets, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_failed_backup_is_mailed_through_the_smtp_server() {
    let smtp = SmtpServer::start().await;
    let smtp_url = smtp.url.clone();
    let backup = BackupApp::spawn_with(|values| {
        fast_retries(values);
        values.insert("LISTBACKUP_SMTP_URL".into(), smtp_url);
        values.insert(
            "LISTBACKUP_SMTP_FROM".into(),
            "ListBackup <alerts@listbackup.test>".into(),
        );
    })
    .await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    let token = app.owner("acme");
    let webhook = create_webhook(app, &token, "mailto:ops@acme.test", &["job.failed"]).await;
    assert_eq!(webhook["url"], "mailto:ops@acme.test");
    let webhook_id = webhook["webhookId"].as_str().unwrap();
    let source_id = stripe_source(app, &token, "Stripe", &["customers"], false).await;
    backup.api.revoke("stripe", "sk_test_1");
    let job_id = sync(app, &token, &source_id).await;
    assert_eq!(backup.finished(&token, &job_id).await["status"], "failed");
    wait_until(Duration::from_secs(30), "the e-mail", || async {
        !smtp.mails().is_empty()
    })
    .await;
    let mail = &smtp.mails()[0];
    assert_eq!(mail.from, "<alerts@listbackup.test>");
    assert_eq!(mail.to, ["<ops@acme.test>"]);
    // Headers unfolded (RFC 5322 §2.2.3), the quoted-printable body's soft line breaks joined.
    let text = mail.data.replace("\n ", " ").replace("=\n", "");
    assert!(
        text.contains(&format!(
            "Subject: [ListBackup] Backup job {job_id} failed: UNAUTHORIZED"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("\"sourceId\": \"{source_id}\"")),
        "{text}"
    );
    assert!(!text.contains("sk_test_1"));
    wait_until(Duration::from_secs(10), "the delivery recorded", || async {
        deliveries(app, &token, webhook_id).await[0]["status"] == "delivered"
    })
    .await;
    backup.stop().await;
}

#[tokio::test]
async fn webhook_secrets_move_to_a_new_master_key_with_the_rotation() {
    use listbackup_commands::vault::MasterKeys;
    use listbackup_commands::webhooks::{WebhookSecret, WebhookSecrets};
    use std::sync::Arc;
    let db = support::TestDatabase::create().await;
    listbackup::migrate::run(&db.url).await.unwrap();
    let pool = deadpool_postgres::Config {
        url: Some(db.url.clone()),
        pool: Some(deadpool_postgres::PoolConfig::new(2)),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    let (old, new) = (support::random_master_key(), support::random_master_key());
    let before = WebhookSecrets::new(
        pool.clone(),
        Arc::new(MasterKeys::from_base64(&old, &[]).unwrap()),
    );
    let secret = WebhookSecret::generate();
    before.store("acme", "w1", &secret).await.unwrap();
    let rotating = WebhookSecrets::new(
        pool.clone(),
        Arc::new(MasterKeys::from_base64(&new, &[&old]).unwrap()),
    );
    assert_eq!(rotating.rotate().await.unwrap(), 1);
    assert_eq!(rotating.rotate().await.unwrap(), 0, "nothing left to move");
    // The old key retired: the secret still opens, under the new key alone.
    let after = WebhookSecrets::new(pool, Arc::new(MasterKeys::from_base64(&new, &[]).unwrap()));
    let loaded = after.load("acme", "w1").await.unwrap().unwrap();
    assert_eq!(loaded.expose(), secret.expose());
    assert!(after.load("acme", "w2").await.unwrap().is_none());
    // A ciphertext moved to another webhook's row does not open.
    db.connect()
        .await
        .execute(
            "INSERT INTO webhook_secrets (account_id, webhook_id, key_id, nonce, ciphertext) \
             SELECT account_id, 'w2', key_id, nonce, ciphertext FROM webhook_secrets WHERE webhook_id = 'w1'",
            &[],
        )
        .await
        .unwrap();
    assert!(after.load("acme", "w2").await.is_err());
}

/// A delivery's status and attempt count in the queue, and its recorded attempts (straight from the database:
/// the service may be stopped, or the account erased).
async fn queued(app: &TestApp, delivery_id: &str) -> (String, i32, i64) {
    let row = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT d.status, d.attempts, \
                    (SELECT count(*) FROM webhook_delivery_attempts a WHERE a.delivery_id = d.delivery_id) \
             FROM webhook_deliveries d WHERE d.delivery_id = $1::text::uuid",
            &[&delivery_id],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn a_delivery_in_flight_at_shutdown_is_handed_back_and_sent_after_the_restart() {
    // Attempts may take a minute: a shutdown that waited for one would take that long.
    let mut app = TestApp::spawn_with(|values| {
        fast_retries(values);
        values.insert("LISTBACKUP_WEBHOOK_TIMEOUT_SECS".into(), "60".into());
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    let token = app.owner("acme");
    let webhook = create_webhook(&app, &token, &receiver.url, &["job.failed"]).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap().to_owned();

    // The receiver takes the request and does not answer: the attempt is in flight.
    receiver.hold_all();
    let response = app
        .post(&format!("/webhooks/{webhook_id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let delivery_id = json_of(response).await["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(
        Duration::from_secs(30),
        "the attempt to reach the receiver",
        || async { receiver.received().len() == 1 },
    )
    .await;

    let stopping = std::time::Instant::now();
    app.stop_service().await;
    let stopped_in = stopping.elapsed();
    assert!(
        stopped_in < Duration::from_secs(30),
        "the shutdown waited for the attempt ({stopped_in:?})"
    );
    // Handed back: still pending, no attempt counted or recorded, so it is first in line.
    assert_eq!(
        queued(&app, &delivery_id).await,
        ("pending".to_owned(), 0, 0)
    );
    let held = receiver.received();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].answered, 0);

    receiver.release();
    app.restart().await;
    wait_until(
        Duration::from_secs(30),
        "the delivery after the restart",
        || async { queued(&app, &delivery_id).await.0 == "delivered" },
    )
    .await;
    assert_eq!(
        queued(&app, &delivery_id).await,
        ("delivered".to_owned(), 1, 1)
    );
    let received = receiver.received();
    let answered: Vec<_> = received.iter().filter(|r| r.answered == 200).collect();
    assert_eq!(answered.len(), 1, "{received:?}");
    // The same notification: receivers drop the repeat by its Webhook-Id.
    assert_eq!(
        answered[0].header("Webhook-Id"),
        held[0].header("Webhook-Id")
    );
    assert_eq!(answered[0].body, held[0].body);
    receiver.stop().await;
    app.stop().await;
}

#[tokio::test]
async fn an_erased_accounts_webhooks_stop() {
    let app = TestApp::spawn_with(fast_retries).await;
    let receiver = WebhookReceiver::start().await;
    let token = app.owner("acme");
    let connection = app.create_stripe_connection(&token, "Stripe", "sk_1").await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let webhook =
        create_webhook(&app, &token, &receiver.url, &["connection.reauth_required"]).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap().to_owned();

    // A delivery being retried when the account is erased.
    receiver.fail_all(500);
    let response = app
        .post(&format!("/webhooks/{webhook_id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let ping_id = json_of(response).await["deliveryId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_until(Duration::from_secs(30), "a failed attempt", || async {
        queued(&app, &ping_id).await.2 >= 1
    })
    .await;
    let erased = app
        .post("/account/erase", &token, &json!({"confirm": "acme"}))
        .await;
    assert_eq!(erased.status(), 200);

    // The pending delivery is given up without another request.
    wait_until(
        Duration::from_secs(30),
        "the delivery to be given up",
        || async { queued(&app, &ping_id).await.0 == "failed" },
    )
    .await;
    let db = app.db.connect().await;
    let last_error: Option<String> = db
        .query_one(
            "SELECT error FROM webhook_delivery_attempts WHERE delivery_id = $1::text::uuid \
             ORDER BY attempt DESC LIMIT 1",
            &[&ping_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_error.as_deref(), Some("the account was erased"));
    let requests_before = receiver.received().len();
    let (_, attempts, recorded) = queued(&app, &ping_id).await;
    assert_eq!(
        requests_before as i64,
        recorded - 1,
        "every attempt but the last one made a request"
    );
    assert_eq!(attempts as i64, recorded);

    // The receiver would now accept anything; the account's streams go on recording (a process that had
    // not heard of the erasure), and the dispatcher reads past it.
    receiver.recover();
    let sequence: i64 = db
        .query_one(
            "SELECT max(sequence) + 1 FROM events WHERE aggregate_id = $1",
            &[&connection_id],
        )
        .await
        .unwrap()
        .get(0);
    let position: i64 = db
        .query_one(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
             VALUES ('connection', $1, $2, 'ConnectionReauthRequired', '1.0', $3, $4) RETURNING global_position",
            &[
                &connection_id,
                &sequence,
                &json!({"ConnectionReauthRequired": {"reason": "the refresh token was revoked"}}),
                &json!({"accountId": "acme", "actor": "system", "requestId": "r", "correlationId": "r", "causationId": "r"}),
            ],
        )
        .await
        .unwrap()
        .get(0);
    wait_until(
        Duration::from_secs(30),
        "the dispatcher to read past the event",
        || async {
            let at: i64 = db
                .query_one(
                    "SELECT position FROM checkpoints WHERE name = 'notifications'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            at >= position
        },
    )
    .await;
    let queued_for_webhook: i64 = db
        .query_one(
            "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = $1",
            &[&webhook_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued_for_webhook, 1, "nothing queued after the erasure");
    assert_eq!(receiver.received().len(), requests_before);
    assert!(receiver.received().iter().all(|r| r.answered != 200));
    receiver.stop().await;
    app.stop().await;
}
