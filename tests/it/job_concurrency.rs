//! Many backups at once (issue 9, items 1 and 2): a worker runs several backups together and takes a job's
//! message only when it has a free slot, so a job waiting its turn never spends a delivery by waiting; slots are
//! shared fairly between accounts; one connection's backups stay within its rate limit across worker processes.
//!
//! Timings come from the event log (`recorded_at` of `JobStarted` and of each job's end), never from sleeps.

use crate::support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use support::backup::{sync, BackupApp};
use support::worker_process::WorkerProcess;
use support::{wait_until, TestApp};

/// When each job started and ended, from its stream's first and last events.
#[derive(Debug, Clone)]
struct Span {
    job_id: String,
    started: DateTime<Utc>,
    ended: DateTime<Utc>,
}

async fn spans(app: &TestApp, job_ids: &[String]) -> Vec<Span> {
    let client = app.db.connect().await;
    let mut spans = Vec::new();
    for job_id in job_ids {
        let rows = client
            .query(
                "SELECT event_type, recorded_at FROM events WHERE aggregate_type = 'job' \
                   AND aggregate_id = $1 ORDER BY sequence",
                &[job_id],
            )
            .await
            .unwrap();
        let started = rows
            .iter()
            .find(|r| r.get::<_, String>(0) == "JobStarted")
            .map(|r| r.get(1))
            .expect("the job started");
        let ended = rows.last().map(|r| r.get(1)).unwrap();
        spans.push(Span {
            job_id: job_id.clone(),
            started,
            ended,
        });
    }
    spans
}

/// The most jobs running at the same instant.
fn peak_overlap(spans: &[Span]) -> usize {
    spans
        .iter()
        .map(|s| {
            spans
                .iter()
                .filter(|o| o.started <= s.started && s.started < o.ended)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// `n` Stripe connections (one source of customers each) for `token`'s account; the sources' ids.
async fn customer_sources(app: &TestApp, token: &str, n: usize) -> Vec<String> {
    let mut sources = Vec::new();
    for i in 0..n {
        let connection = app
            .create_stripe_connection(token, &format!("Stripe {i}"), "sk_test_1")
            .await;
        sources.push(
            source_on(
                app,
                token,
                &connection["connectionId"],
                &format!("Source {i}"),
            )
            .await,
        );
    }
    sources
}

async fn source_on(app: &TestApp, token: &str, connection_id: &Value, name: &str) -> String {
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": name, "dataTypes": ["customers"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Syncs every source (each answered 202); the jobs' ids in the same order.
async fn sync_all(app: &TestApp, token: &str, sources: &[String]) -> Vec<String> {
    let mut jobs = Vec::new();
    for source_id in sources {
        jobs.push(sync(app, token, source_id).await);
    }
    jobs
}

async fn wait_all_ended(backup: &BackupApp, token: &str, jobs: &[String], timeout: Duration) {
    wait_until(timeout, "every job to end", || async {
        for job_id in jobs {
            let job = backup.job(token, job_id).await;
            if !["succeeded", "failed", "cancelled", "partial"]
                .contains(&job["status"].as_str().unwrap())
            {
                return false;
            }
        }
        true
    })
    .await;
}

async fn assert_all_succeeded(backup: &BackupApp, token: &str, jobs: &[String], records: u64) {
    for job_id in jobs {
        let job = backup.job(token, job_id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["attempt"], 1, "no job ran twice: {job}");
        assert_eq!(job["progress"]["records"], records, "{job}");
        let events = backup.app.event_types(job_id).await;
        assert!(!events.contains(&"JobFailed".to_owned()), "{events:?}");
    }
}

/// The input: one `serve` with a 3 s ack wait, 12 Stripe sources (one connection each, customers only,
/// 1,000 records) on a Stripe that answers each page after 700 ms, all synced at once. Before, the worker ran one
/// backup at a time while its consumer handed it more messages: 2 of 12 failed DELIVERY_EXHAUSTED and the rest
/// ran one after another (12 × 8 s).
#[tokio::test]
async fn twelve_slow_backups_synced_at_once_all_run_together_and_succeed() {
    let backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_WORKER_ACK_WAIT_SECS".into(), "3".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 1_000);
    backup.api.set_latency(Duration::from_millis(700));
    let token = backup.app.owner("acme");
    let sources = customer_sources(&backup.app, &token, 12).await;
    let jobs = sync_all(&backup.app, &token, &sources).await;
    wait_all_ended(&backup, &token, &jobs, Duration::from_secs(90)).await;
    assert_all_succeeded(&backup, &token, &jobs, 1_000).await;
    let spans = spans(&backup.app, &jobs).await;
    // Ten pages of 700 ms each: one at a time would take 84 s; together they overlap.
    assert_eq!(peak_overlap(&spans), 12, "{spans:?}");
    backup.stop().await;
}

/// The kind the input stands for: a job that waits for a slot longer than max_deliver × ack wait still runs
/// once and succeeds, because it waits in the stream rather than in a worker's buffer.
#[tokio::test]
async fn a_job_waiting_longer_than_its_deliveries_last_still_runs_and_succeeds() {
    let backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_WORKER_ACK_WAIT_SECS".into(), "1".into());
        values.insert("LISTBACKUP_WORKER_MAX_DELIVER".into(), "2".into());
        values.insert("LISTBACKUP_WORKER_CONCURRENCY".into(), "2".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    // Five pages of 500 ms: 2.5 s a job, so the sixth job waits about 5 s for its slot: more than 2 × 1 s.
    backup.api.seed("stripe", "customers", 500);
    backup.api.set_latency(Duration::from_millis(500));
    let token = backup.app.owner("acme");
    let sources = customer_sources(&backup.app, &token, 6).await;
    let jobs = sync_all(&backup.app, &token, &sources).await;
    wait_all_ended(&backup, &token, &jobs, Duration::from_secs(90)).await;
    assert_all_succeeded(&backup, &token, &jobs, 500).await;
    let spans = spans(&backup.app, &jobs).await;
    assert_eq!(peak_overlap(&spans), 2, "two slots, both used: {spans:?}");
    let first_start = spans.iter().map(|s| s.started).min().unwrap();
    let last_start = spans.iter().map(|s| s.started).max().unwrap();
    assert!(
        (last_start - first_start).to_std().unwrap() > Duration::from_secs(2),
        "the last job waited longer than max_deliver × ack wait: {spans:?}"
    );
    backup.stop().await;
}

/// One account's many due sources do not starve another account's one: with both waiting, the next free slot
/// goes to the account with fewer backups running.
#[tokio::test]
async fn a_busy_account_does_not_starve_another_account() {
    let backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_WORKER_CONCURRENCY".into(), "2".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 150);
    let busy = backup.app.owner("busy-account");
    let other = backup.app.owner("other-account");
    let busy_sources = customer_sources(&backup.app, &busy, 6).await;
    let other_source = customer_sources(&backup.app, &other, 1).await.remove(0);
    // Every request waits until all seven jobs are queued: the first two of the busy account hold both slots.
    backup.api.hold_after(0);
    let busy_jobs = sync_all(&backup.app, &busy, &busy_sources).await;
    wait_until(
        Duration::from_secs(30),
        "both slots to be taken",
        || async { backup.api.held() >= 2 },
    )
    .await;
    let other_job = sync(&backup.app, &other, &other_source).await;
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(support::nats_url()).await.unwrap());
    let queue = format!("{}_BACKUPS", backup.app.config.nats_prefix.to_uppercase());
    wait_until(
        Duration::from_secs(30),
        "all seven jobs in the work queue",
        || async {
            match jetstream.get_stream(&queue).await {
                Ok(mut stream) => stream
                    .info()
                    .await
                    .map(|i| i.state.messages == 7)
                    .unwrap_or(false),
                Err(_) => false,
            }
        },
    )
    .await;
    backup.api.release();
    let mut all = busy_jobs.clone();
    all.push(other_job.clone());
    wait_all_ended(&backup, &busy, &busy_jobs, Duration::from_secs(60)).await;
    wait_all_ended(
        &backup,
        &other,
        std::slice::from_ref(&other_job),
        Duration::from_secs(60),
    )
    .await;
    let mut spans = spans(&backup.app, &all).await;
    spans.sort_by_key(|s| s.started);
    // The first two jobs end together, freeing both slots at once: the other account's job takes one of
    // them (third or fourth to start), ahead of the busy account's four waiting jobs but one. In order of
    // arrival it would start last.
    let position = spans.iter().position(|s| s.job_id == other_job).unwrap();
    assert!(
        position == 2 || position == 3,
        "the other account's job takes one of the first slots that free up, not the {}th: {spans:?}",
        position + 1
    );
    backup.stop().await;
}

/// Two worker processes backing up two sources of one connection keep the connection within its rate
/// limit together: the connection's backups run in one process at a time (a lease in Postgres), so that
/// process's budget is the connection's only one.
#[tokio::test]
async fn two_worker_processes_keep_one_connection_within_its_rate() {
    const RATE: f64 = 5.0;
    let backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_SERVE_BACKUP_WORKER".into(), "false".into());
    })
    .await;
    backup.api.accept("stripe", "sk_test_1");
    // 15 pages per source, 30 requests in all: 6 s at 5 requests/s.
    backup.api.seed("stripe", "customers", 1_500);
    let token = backup.app.owner("acme");
    let connection = backup
        .app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let first = source_on(&backup.app, &token, &connection["connectionId"], "First").await;
    let second = source_on(&backup.app, &token, &connection["connectionId"], "Second").await;
    let settings = [
        ("LISTBACKUP_PLATFORM_STRIPE_RATE_LIMIT", RATE.to_string()),
        ("LISTBACKUP_WORKER_ACK_WAIT_SECS", "3".to_owned()),
    ];
    let _one = WorkerProcess::start(&backup, &settings);
    let _two = WorkerProcess::start(&backup, &settings);
    let before = backup.api.arrivals("stripe").len();
    let jobs = vec![
        sync(&backup.app, &token, &first).await,
        sync(&backup.app, &token, &second).await,
    ];
    wait_all_ended(&backup, &token, &jobs, Duration::from_secs(90)).await;
    assert_all_succeeded(&backup, &token, &jobs, 1_500).await;
    let arrivals: Vec<Instant> = backup.api.arrivals("stripe")[before..].to_vec();
    assert_eq!(arrivals.len(), 30, "one request per page, none repeated");
    // In any second, at most the rate (plus one: a window may hold both ends of five intervals).
    let busiest = arrivals
        .iter()
        .map(|t| {
            arrivals
                .iter()
                .filter(|u| **u >= *t && **u < *t + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(
        busiest <= RATE as usize + 1,
        "{busiest} requests within one second on a connection limited to {RATE}/s"
    );
    let spread = *arrivals.last().unwrap() - arrivals[0];
    let rate = (arrivals.len() - 1) as f64 / spread.as_secs_f64();
    assert!(
        rate <= RATE * 1.1,
        "{rate:.2} requests/s on a connection limited to {RATE}/s"
    );
    backup.stop().await;
}
