//! Graceful shutdown (issue 14 §4), with real `listbackup worker` processes sent SIGTERM while a backup is
//! provably in flight (the Stripe emulation holds its requests: `PlatformApi::hold_after`):
//!
//! - within the shutdown grace, the backup finishes in the same worker (attempt 1), which takes nothing new
//!   meanwhile and then exits cleanly;
//! - when the grace runs out, the worker hands the message back (NAK) and releases the lease, so a second
//!   worker runs the job at once (long before the ack wait would have redelivered it) as attempt 2.
//!
//! Either way the downloaded files hold every record of the emulation exactly once.

use crate::support;

use std::io::BufRead;
use std::time::Duration;

use serde_json::Value;
use support::backup::{stripe_source, sync, BackupApp};
use support::wait_until;
use support::worker_process::WorkerProcess;

/// Far longer than either test waits for a redelivery: only a hand-back brings the message back in time.
const ACK_WAIT_SECS: &str = "120";

async fn service() -> BackupApp {
    let backup = BackupApp::spawn_with(|values| {
        // The backups run in the `listbackup worker` processes only.
        values.insert("LISTBACKUP_SERVE_BACKUP_WORKER".into(), "false".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 250);
    backup.api.seed("stripe", "invoices", 30);
    backup
}

fn worker(backup: &BackupApp, grace_secs: u64) -> WorkerProcess {
    WorkerProcess::start(
        backup,
        &[
            ("LISTBACKUP_WORKER_ACK_WAIT_SECS", ACK_WAIT_SECS.to_owned()),
            ("LISTBACKUP_SHUTDOWN_GRACE_SECS", grace_secs.to_string()),
            // A free slot for another job all along: that none is taken shows the worker stopped accepting.
            ("LISTBACKUP_WORKER_CONCURRENCY", "4".to_owned()),
        ],
    )
}

async fn job(backup: &BackupApp, token: &str, job_id: &str) -> Value {
    backup.job(token, job_id).await
}

/// Waits until the job runs and the emulation holds one of its requests: the backup is in flight.
async fn in_flight(backup: &BackupApp, token: &str, job_id: &str) {
    wait_until(Duration::from_secs(60), "the backup to run", || async {
        job(backup, token, job_id).await["status"] == "running"
    })
    .await;
    wait_until(Duration::from_secs(30), "a request to be held", || async {
        backup.api.held() >= 1
    })
    .await;
}

/// The job succeeded as `attempt`, and its downloaded files (through the API, decrypted) hold every record
/// the emulation has, each exactly once.
async fn every_record_once(backup: &BackupApp, token: &str, job_id: &str, attempt: u64) {
    let job = backup.finished(token, job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], attempt, "{job}");
    for data_type in ["customers", "invoices"] {
        let response = backup
            .app
            .get(
                &format!("/jobs/{job_id}/files/{data_type}.ndjson.gz"),
                token,
            )
            .await;
        assert_eq!(response.status(), 200, "{data_type}");
        let gzip = response.bytes().await.unwrap();
        let mut stored: Vec<String> =
            std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gzip[..]))
                .lines()
                .map(|line| {
                    let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
                    record["id"].as_str().unwrap().to_owned()
                })
                .collect();
        let mut seeded = backup.api.listing_ids("stripe", data_type);
        stored.sort();
        seeded.sort();
        assert_eq!(
            stored.len(),
            seeded.len(),
            "{data_type}: as many records as the platform has"
        );
        assert_eq!(stored, seeded, "{data_type}: each record exactly once");
    }
}

async fn leases_of(backup: &BackupApp, job_id: &str) -> i64 {
    backup
        .app
        .db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM backup_runs WHERE job_id = $1",
            &[&job_id],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn sigterm_lets_a_running_backup_finish_within_the_grace_and_takes_nothing_new() {
    let backup = service().await;
    let token = backup.app.owner("acme");
    let source_id = stripe_source(
        &backup.app,
        &token,
        "Stripe",
        &["customers", "invoices"],
        false,
    )
    .await;
    let other_source = stripe_source(
        &backup.app,
        &token,
        "Other",
        &["customers", "invoices"],
        false,
    )
    .await;
    // The first page is answered, the next requests are held: the backup is caught half-way.
    backup.api.hold_after(1);
    let job_id = sync(&backup.app, &token, &source_id).await;
    let mut first = worker(&backup, 60);
    in_flight(&backup, &token, &job_id).await;

    first.signal("-TERM").await;
    wait_until(Duration::from_secs(10), "the worker to drain", || async {
        first.logged("draining")
    })
    .await;
    // While it drains the worker takes no new job, though it has free slots.
    let queued = sync(&backup.app, &token, &other_source).await;
    assert!(!first.has_exited(), "the running backup holds the worker");
    backup.api.release();
    first.exits_cleanly(Duration::from_secs(60)).await;
    assert!(first.logged("every running backup finished"));
    every_record_once(&backup, &token, &job_id, 1).await;
    assert_eq!(leases_of(&backup, &job_id).await, 0);
    assert_eq!(
        job(&backup, &token, &queued).await["status"],
        "queued",
        "the stopping worker took no new job"
    );

    // The job queued meanwhile is still there for the next worker, whole.
    let _second = worker(&backup, 60);
    every_record_once(&backup, &token, &queued, 1).await;
    backup.stop().await;
}

#[tokio::test]
async fn sigterm_hands_a_backup_that_outlasts_the_grace_to_another_worker_at_once() {
    let backup = service().await;
    let token = backup.app.owner("acme");
    let source_id = stripe_source(
        &backup.app,
        &token,
        "Stripe",
        &["customers", "invoices"],
        false,
    )
    .await;
    backup.api.hold_after(1);
    let job_id = sync(&backup.app, &token, &source_id).await;
    let mut first = worker(&backup, 1);
    in_flight(&backup, &token, &job_id).await;
    assert_eq!(leases_of(&backup, &job_id).await, 1);

    // The held request never ends within the one-second grace: the backup is handed back.
    first.signal("-TERM").await;
    first.exits_cleanly(Duration::from_secs(20)).await;
    assert!(
        first.logged("handed back for redelivery"),
        "the message is handed back, not left to its ack wait"
    );
    assert_eq!(
        leases_of(&backup, &job_id).await,
        0,
        "the lease is released, not left to expire"
    );
    assert_eq!(job(&backup, &token, &job_id).await["attempt"], 1);

    // A second worker takes the job at once: the ack wait (120 s) is far longer than this test waits.
    backup.api.release();
    let _second = worker(&backup, 60);
    wait_until(Duration::from_secs(30), "attempt 2 to run", || async {
        job(&backup, &token, &job_id).await["attempt"] == 2
    })
    .await;
    every_record_once(&backup, &token, &job_id, 2).await;
    // The first attempt's partial files were discarded: the directory holds attempt 2's backup only.
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["customers.ndjson.gz", "invoices.ndjson.gz", "manifest.json"]
    );
    backup.stop().await;
}

/// `listbackup serve`, the API and a backup worker in one process: a backup that finishes during the grace
/// finishes, though the API's threads opened the pools' connections. Each HTTP worker thread runs a runtime of
/// its own and a connection opened while serving a request is that runtime's; the HTTP server used to stop
/// beside the drain, and a backup then failed on such a connection ("A Tokio 1.x context was found, but it
/// is being shutdown"), recorded failed or left to be redone.
#[tokio::test]
async fn sigterm_on_serve_lets_a_backup_finish_on_connections_the_api_opened() {
    let mut backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_SHUTDOWN_GRACE_SECS".into(), "60".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 250);
    backup.api.seed("stripe", "invoices", 30);
    let token = backup.app.owner("acme");
    let source_id = stripe_source(
        &backup.app,
        &token,
        "Stripe",
        &["customers", "invoices"],
        false,
    )
    .await;
    let names: Vec<String> = (0..8).map(|i| format!("Other {i}")).collect();
    let others: Vec<String> = futures::future::join_all(
        names
            .iter()
            .map(|name| stripe_source(&backup.app, &token, name, &["customers"], false)),
    )
    .await;
    backup.api.hold_after(1);
    let job_id = sync(&backup.app, &token, &source_id).await;
    in_flight(&backup, &token, &job_id).await;
    // Reads and commands at once: the pools' connections are opened, and last used, by the HTTP threads.
    for _ in 0..3 {
        let bodies: Vec<(String, Value)> = others
            .iter()
            .map(|id| {
                (
                    format!("/sources/{id}"),
                    serde_json::json!({"name": format!("renamed {id}")}),
                )
            })
            .collect();
        let renames = bodies
            .iter()
            .map(|(path, body)| backup.app.put(path, &token, body));
        for response in futures::future::join_all(renames).await {
            assert_eq!(response.status(), 200);
        }
        let reads = (0..16).map(|_| backup.app.get("/sources", &token));
        for response in futures::future::join_all(reads).await {
            assert_eq!(response.status(), 200);
        }
    }
    // The job's live event stream ends when the stop begins: then the held requests are let go.
    let events = backup
        .app
        .http
        .get(format!("{}/jobs/{job_id}/events", backup.app.address))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let (app, api) = (&mut backup.app, &backup.api);
    tokio::join!(app.stop_service(), async {
        let _ = events.bytes().await;
        api.release();
    });

    let db = backup.app.db.connect().await;
    let ends: Vec<String> = db
        .query(
            "SELECT event_type FROM events WHERE aggregate_id = $1 \
             AND event_type IN ('JobSucceeded', 'JobFailed', 'JobPartiallySucceeded') ORDER BY sequence",
            &[&job_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        ends,
        ["JobSucceeded"],
        "the backup finished during the grace"
    );
    backup.stop().await;
}
