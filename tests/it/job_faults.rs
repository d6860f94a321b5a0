//! Faults around backup jobs (issue 5, item 7), with real `listbackup worker` processes killed with SIGKILL:
//! a killed worker's job is redelivered and runs again as attempt 2 with one complete set of artifacts; a
//! message whose deliveries run out fails its job with an event; a deleted source's jobs are cancelled.
//!
//! The Stripe emulation holds requests on demand (`PlatformApi::hold_after`), so a worker is killed while
//! it is provably mid-backup, not after a sleep that hopes so.

use crate::support;

use std::time::Duration;

use async_nats::jetstream::consumer;
use serde_json::Value;
use support::backup::{gunzip_lines, stripe_source, sync, sync_when_free, BackupApp};
use support::wait_until;
use support::worker_process::WorkerProcess;

/// Short enough that a redelivery comes within the test, long enough that a busy machine keeps a live
/// worker's delivery alive (in-progress acks every second).
const ACK_WAIT_SECS: u64 = 3;

/// The service (API, projector, relay, sagas), a Stripe emulation, and a storage directory shared with the
/// worker processes it starts.
struct FaultApp {
    backup: BackupApp,
}

/// The backup service's parts (`app`, `api`, `storage`) are the fault tests' too.
impl std::ops::Deref for FaultApp {
    type Target = BackupApp;

    fn deref(&self) -> &BackupApp {
        &self.backup
    }
}

impl FaultApp {
    /// `in_process_worker`: whether `serve` runs a backup worker itself; when not, only the `listbackup worker`
    /// processes started by [`FaultApp::worker`] run backups.
    async fn spawn(in_process_worker: bool) -> Self {
        let backup = BackupApp::spawn_with(|values| {
            values.insert(
                "LISTBACKUP_SERVE_BACKUP_WORKER".into(),
                in_process_worker.to_string(),
            );
            // One slot: a second job waits in the queue while the first one runs.
            values.insert("LISTBACKUP_WORKER_CONCURRENCY".into(), "1".into());
        })
        .await;
        backup.api.accept("stripe", "sk_test_1");
        Self { backup }
    }

    /// A `listbackup worker` process on the service's database, NATS prefix, key and storage.
    fn worker(&self, max_deliver: u32) -> WorkerProcess {
        WorkerProcess::start(
            &self.backup,
            &[
                ("LISTBACKUP_WORKER_ACK_WAIT_SECS", ACK_WAIT_SECS.to_string()),
                ("LISTBACKUP_WORKER_MAX_DELIVER", max_deliver.to_string()),
                // No grace: a stopped worker hands its backup back at once (tests/it/shutdown.rs has the
                // grace itself).
                ("LISTBACKUP_SHUTDOWN_GRACE_SECS", "0".to_owned()),
            ],
        )
    }

    async fn wait_for_job(
        &self,
        token: &str,
        job_id: &str,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(Duration::from_secs(60), what, || async {
            condition(&self.job(token, job_id).await)
        })
        .await;
        self.job(token, job_id).await
    }

    /// The job's directory in the storage root.
    fn job_dir(&self, source_id: &str, job_id: &str) -> std::path::PathBuf {
        self.storage
            .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"))
    }
}

fn data_type<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap()
}

/// What the API lists is what the manifest (written by `attempt`) names, nothing else is in the job's
/// directory (no file or staged upload of another attempt), and every seeded record is stored exactly once.
async fn assert_one_complete_backup(
    faults: &FaultApp,
    token: &str,
    source_id: &str,
    job_id: &str,
    attempt: u32,
) {
    let dir = faults.job_dir(source_id, job_id);
    // One complete set of artifacts: what the API lists is what the manifest names, and nothing else is on
    // disk (no file or staged upload of attempt 1).
    let listed: Value = faults
        .app
        .get(&format!("/jobs/{job_id}/files"), token)
        .await
        .json()
        .await
        .unwrap();
    let listed: Vec<String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["attempt"], attempt, "{manifest}");
    let mut expected: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    expected.push("manifest.json".to_owned());
    expected.sort();
    assert_eq!(
        expected,
        ["customers.ndjson.gz", "invoices.ndjson.gz", "manifest.json"]
    );
    assert_eq!(listed, expected);
    assert_eq!(
        files_in(&dir),
        expected,
        "nothing else in the job's directory"
    );
    for data_type in ["customers", "invoices"] {
        let mut stored: Vec<String> = gunzip_lines(&dir.join(format!("{data_type}.ndjson.gz")))
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect();
        let mut seeded = faults.api.listing_ids("stripe", data_type);
        stored.sort();
        seeded.sort();
        assert_eq!(stored, seeded, "{data_type}: each record exactly once");
    }
}

/// Every file under `dir`, by name.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// The backups work queue and the name of the consumer of one account's connection's partition, as the
/// workers name it (`<prefix>-backups-<24 hex digits of the SHA-256 of the subject>`). The stream is created
/// as the workers create it when no worker has yet.
async fn work_queue_consumer(
    app: &support::TestApp,
    account: &str,
    connection_id: &str,
) -> (async_nats::jetstream::stream::Stream, String) {
    use sha2::Digest;
    let prefix = &app.config.nats_prefix;
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let stream = jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: format!("{}_BACKUPS", prefix.to_uppercase().replace('-', "_")),
            subjects: vec![format!("{prefix}.backups.>")],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            storage: async_nats::jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(15 * 60),
            ..Default::default()
        })
        .await
        .unwrap();
    let subject = format!("{prefix}.backups.{account}.{connection_id}");
    let hash: String = sha2::Sha256::digest(subject.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (stream, format!("{prefix}-backups-{}", &hash[..24]))
}

#[tokio::test]
async fn a_worker_killed_mid_backup_is_replaced_and_attempt_two_stores_one_complete_backup() {
    let faults = FaultApp::spawn(false).await;
    let app = &faults.app;
    let token = app.owner("acme");
    // Two pages of customers, three of invoices (100 per page).
    faults.api.seed("stripe", "customers", 150);
    faults.api.seed("stripe", "invoices", 250);

    let source_id = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;
    // The work-queue consumer of the source's connection as an earlier deployment left it (30 s, no backoff):
    // the worker must bring it to its own settings, or the redelivery below would take 30 s.
    let source = app.get(&format!("/sources/{source_id}"), &token).await;
    let connection_id = source.json::<Value>().await.unwrap()["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (stream, consumer_name) = work_queue_consumer(app, "acme", &connection_id).await;
    let _: consumer::PullConsumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(consumer_name.clone()),
            filter_subject: format!("{}.backups.acme.{connection_id}", app.config.nats_prefix),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    // Customers (2 requests) and the first invoices page pass; the second invoices page is held.
    faults.api.hold_after(3);
    let job_id = sync(app, &token, &source_id).await;
    let mut first = faults.worker(5);
    faults
        .wait_for_job(&token, &job_id, "attempt 1 to be mid-backup", |job| {
            job["status"] == "running"
                && job["attempt"] == 1
                && data_type(job, "customers")["status"] == "done"
        })
        .await;
    wait_until(Duration::from_secs(30), "a request to be held", || async {
        faults.api.held() >= 1
    })
    .await;
    let info = stream.consumer_info(&consumer_name).await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(ACK_WAIT_SECS));
    assert_eq!(info.config.max_deliver, 5);
    assert_eq!(
        info.config.backoff,
        [3, 6, 12, 24].map(Duration::from_secs),
        "the worker updated the consumer"
    );

    first.kill().await;
    // Attempt 1 left a complete customers file and the staged upload of its invoices.
    let dir = faults.job_dir(&source_id, &job_id);
    let left = files_in(&dir);
    assert!(left.contains(&"customers.ndjson.gz".to_owned()), "{left:?}");
    assert!(
        left.iter().any(|f| f.starts_with("invoices.ndjson.gz#")),
        "{left:?}"
    );
    assert!(!left.contains(&"manifest.json".to_owned()));

    faults.api.release();
    let _second = faults.worker(5);
    let job = faults
        .wait_for_job(&token, &job_id, "the job to end", |job| {
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap())
        })
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2);
    assert_eq!(job["error"], Value::Null);
    assert_eq!(data_type(&job, "customers")["records"], 150);
    assert_eq!(data_type(&job, "invoices")["records"], 250);
    let history: Vec<String> = faults
        .app
        .event_types(&job_id)
        .await
        .into_iter()
        .filter(|t| t != "JobProgressed")
        .collect();
    assert_eq!(
        history,
        [
            "JobStarted",
            "ResourceBackedUp",
            "JobAttemptStarted",
            "ResourceBackedUp",
            "ResourceBackedUp",
            "JobSucceeded"
        ]
    );

    assert_one_complete_backup(&faults, &token, &source_id, &job_id, 2).await;
    faults.backup.stop().await;
}

#[tokio::test]
async fn a_worker_presumed_dead_that_comes_back_leaves_the_new_attempts_files_alone() {
    let faults = FaultApp::spawn(false).await;
    let app = &faults.app;
    let token = app.owner("acme");
    faults.api.seed("stripe", "customers", 150);
    faults.api.seed("stripe", "invoices", 250);
    let source_id = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;
    // Customers (2 requests) and the first invoices page pass; every later request is held.
    faults.api.hold_after(3);
    let job_id = sync(app, &token, &source_id).await;
    let first = faults.worker(5);
    wait_until(Duration::from_secs(30), "attempt 1 to be held", || async {
        faults.api.held() >= 1
    })
    .await;
    // Frozen: it stops renewing its delivery, so after the ack wait the job goes to the second worker, which
    // backs it up completely while the first one sleeps.
    first.signal("-STOP").await;
    faults.api.release();
    let _second = faults.worker(5);
    let job = faults
        .wait_for_job(&token, &job_id, "the job to end", |job| {
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap())
        })
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 2);
    // The first run wakes up mid-backup, finds at its next report that the job is no longer its own, and
    // stops without discarding the directory, which now holds the second run's complete backup.
    first.signal("-CONT").await;
    wait_until(Duration::from_secs(15), "the first run to stop", || async {
        first
            .logs
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("no longer owns the job") || line.contains("backup failed"))
    })
    .await;
    let logs = first.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("no longer owns the job") && !logs.contains("backup failed"),
        "the first run must stop as superseded, not fail the job: {logs}"
    );
    assert_one_complete_backup(&faults, &token, &source_id, &job_id, 2).await;
    faults.backup.stop().await;
}

#[tokio::test]
async fn a_message_that_exhausts_its_deliveries_fails_the_job_and_frees_the_source() {
    let faults = FaultApp::spawn(false).await;
    let app = &faults.app;
    let token = app.owner("acme");
    faults.api.seed("stripe", "customers", 150);
    faults.api.seed("stripe", "invoices", 10);
    let source_id = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;
    // Every request is held: each worker stops while its delivery is in progress.
    faults.api.hold_after(0);
    let job_id = sync(app, &token, &source_id).await;

    let mut first = faults.worker(2);
    faults
        .wait_for_job(&token, &job_id, "attempt 1 to run", |job| {
            job["status"] == "running" && job["attempt"] == 1
        })
        .await;
    wait_until(Duration::from_secs(30), "a request to be held", || async {
        faults.api.held() >= 1
    })
    .await;
    // A stop whose grace runs out (here none) hands the backup in flight back: it is redelivered, a delivery
    // spent.
    first.terminate().await;
    // (Its output is read asynchronously: it may trail the exit a little.)
    wait_until(
        Duration::from_secs(5),
        "the worker to log its shutdown",
        || async {
            first
                .logs
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("handed back for redelivery"))
        },
    )
    .await;
    let mut second = faults.worker(2);
    faults
        .wait_for_job(&token, &job_id, "attempt 2 to run", |job| {
            job["status"] == "running" && job["attempt"] == 2
        })
        .await;
    // The last delivery dies with its worker (SIGKILL): no run is left to record the outcome.
    second.kill().await;
    assert_eq!(faults.job(&token, &job_id).await["status"], "running");

    // A worker that never saw the job learns of the exhausted message from JetStream's advisory.
    let _third = faults.worker(2);
    let job = faults
        .wait_for_job(&token, &job_id, "the job to fail", |job| {
            job["status"] != "running"
        })
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "DELIVERY_EXHAUSTED", "{job}");
    assert_eq!(job["error"]["retryable"], true);
    assert!(job["finishedAt"].is_string());
    assert_eq!(job["attempt"], 2);
    let history: Vec<String> = faults
        .app
        .event_types(&job_id)
        .await
        .into_iter()
        .filter(|t| t != "JobProgressed")
        .collect();
    assert_eq!(
        history,
        ["JobStarted", "JobAttemptStarted", "JobFailed"],
        "failed by an event"
    );
    let dir = faults.job_dir(&source_id, &job_id);
    assert!(!dir.join("manifest.json").exists());

    // SyncFinished freed the source: the next job runs, here on the third worker, and succeeds.
    faults.api.release();
    let next_id = sync_when_free(app, &token, &source_id).await;
    let next = faults
        .wait_for_job(&token, &next_id, "the next job to end", |job| {
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap())
        })
        .await;
    assert_eq!(next["status"], "succeeded", "{next}");
    assert_eq!(next["attempt"], 1);
    faults.backup.stop().await;
}

#[tokio::test]
async fn deleting_a_source_cancels_its_queued_and_running_jobs() {
    let faults = FaultApp::spawn(true).await;
    let app = &faults.app;
    let token = app.owner("acme");
    faults.api.seed("stripe", "customers", 150);
    faults.api.seed("stripe", "invoices", 10);
    let running_source = stripe_source(
        app,
        &token,
        "Stripe running",
        &["customers", "invoices"],
        false,
    )
    .await;
    let queued_source = stripe_source(
        app,
        &token,
        "Stripe queued",
        &["customers", "invoices"],
        false,
    )
    .await;
    // The service's worker has one slot: held on its first request, it leaves the second source's job queued.
    faults.api.hold_after(0);
    let running = sync(app, &token, &running_source).await;
    faults
        .wait_for_job(&token, &running, "the first job to run", |job| {
            job["status"] == "running"
        })
        .await;
    wait_until(Duration::from_secs(30), "a request to be held", || async {
        faults.api.held() >= 1
    })
    .await;
    let queued = sync(app, &token, &queued_source).await;
    assert_eq!(faults.job(&token, &queued).await["status"], "queued");

    for source_id in [&running_source, &queued_source] {
        let response = app.delete(&format!("/sources/{source_id}"), &token).await;
        assert_eq!(response.status(), 204);
    }
    // A queued job is cancelled at once.
    let job = faults
        .wait_for_job(&token, &queued, "the queued job to be cancelled", |job| {
            job["status"] != "queued"
        })
        .await;
    assert_eq!(job["status"], "cancelled", "{job}");
    assert_eq!(job["attempt"], 0, "it never ran");
    // A running one is asked to stop, and its worker stops it once it gets the platform's answer.
    wait_until(
        Duration::from_secs(30),
        "the running job's cancellation to be requested",
        || async {
            faults
                .app
                .event_types(&running)
                .await
                .contains(&"JobCancelRequested".to_owned())
        },
    )
    .await;
    faults.api.release();
    let job = faults
        .wait_for_job(&token, &running, "the running job to stop", |job| {
            job["status"] != "running"
        })
        .await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let dir = faults.job_dir(&running_source, &running);
    assert_eq!(
        files_in(&dir),
        Vec::<String>::new(),
        "nothing of it is left"
    );
    faults.backup.stop().await;
}
