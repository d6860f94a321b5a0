//! A running job as its watchers see it (issue 5): coarse progress persisted as JobProgressed, fine progress
//! streamed by `GET /jobs/{id}/events` (Server-Sent Events) until the job ends, and incremental sources whose
//! next job fetches only what changed since the last successful one.

use crate::support;

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use support::backup::{gunzip_lines, stripe_source, sync, sync_when_free, BackupApp};
use support::{problem_code, wait_until, TestApp};

/// One Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: String,
    data: Value,
}

/// Reads the whole stream (it ends by itself after `end`), within a deadline.
async fn read_events(response: reqwest::Response) -> Vec<Sse> {
    let read = async {
        let mut buffer = String::new();
        let mut events = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            buffer.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
            while let Some(end) = buffer.find("\n\n") {
                let frame: String = buffer.drain(..end + 2).collect();
                let mut event = None;
                let mut data = None;
                for line in frame.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event = Some(name.to_owned());
                    } else if let Some(json) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(json).unwrap());
                    }
                }
                // Comment frames (keep-alives) carry neither.
                if let (Some(event), Some(data)) = (event, data) {
                    events.push(Sse { event, data });
                }
            }
        }
        events
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the event stream to end within a minute")
}

async fn open_events(app: &TestApp, token: &str, job_id: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url(&format!("/jobs/{job_id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_running_job_streams_its_progress_until_it_ends() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 1200);
    backup.api.seed("stripe", "invoices", 30);
    let token = app.owner("acme");
    let source_id = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;
    // The platform holds the first page back for a second (429, Retry-After: 1): time enough for the stream
    // to be open before the first page arrives, so it sees every page's progress.
    backup.api.rate_limit_next(1, 1);
    let job_id = sync(app, &token, &source_id).await;

    let response = open_events(app, &token, &job_id).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let events = read_events(response).await;

    assert_eq!(events[0].event, "job", "{events:?}");
    assert_eq!(events[0].data["jobId"], job_id.as_str());
    let last = events.last().unwrap();
    assert_eq!(last.event, "end", "{events:?}");
    assert_eq!(last.data["status"], "succeeded");
    assert_eq!(last.data["progress"]["records"], 1230);
    assert_eq!(events.iter().filter(|e| e.event == "end").count(), 1);

    // Every page of the run went by, in order: 12 pages of customers and one of invoices.
    let pages: Vec<&Value> = events
        .iter()
        .filter(|e| e.event == "progress" && e.data["pages"].as_u64() > Some(0))
        .map(|e| &e.data)
        .collect();
    let records: Vec<u64> = pages
        .iter()
        .map(|p| p["records"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=12).map(|p| p * 100).chain([1230]).collect();
    assert_eq!(records, expected, "{pages:?}");
    assert!(pages
        .iter()
        .all(|p| p["jobId"] == job_id.as_str() && p["attempt"] == 1));
    assert_eq!(pages[0]["currentDataType"], "customers");
    assert_eq!(pages[0]["dataTypesDone"], 0);
    assert_eq!(pages[0]["dataTypesTotal"], 2);
    assert_eq!(pages[12]["currentDataType"], "invoices");
    assert_eq!(pages[12]["dataTypesDone"], 1);

    // The log keeps the coarse view: one JobProgressed at each data type boundary (two starts and the end),
    // and page-driven ones at most once a second in between.
    let rows = app
        .db
        .connect()
        .await
        .query(
            "SELECT payload -> 'JobProgressed', recorded_at FROM events \
             WHERE aggregate_id = $1 AND event_type = 'JobProgressed' ORDER BY sequence",
            &[&job_id],
        )
        .await
        .unwrap();
    let progressed: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    // Each boundary opens a run of events with the same (done, current) pair; its first carries the records
    // stored before it.
    let mut boundaries: Vec<(u64, Option<&str>, u64)> = Vec::new();
    for p in &progressed {
        let key = (
            p["dataTypesDone"].as_u64().unwrap(),
            p["currentDataType"].as_str(),
        );
        if boundaries.last().map(|b| (b.0, b.1)) != Some(key) {
            boundaries.push((key.0, key.1, p["records"].as_u64().unwrap()));
        }
    }
    assert_eq!(
        boundaries,
        [
            (0, Some("customers"), 0),
            (1, Some("invoices"), 1200),
            (2, None, 1230)
        ],
        "{progressed:?}"
    );
    assert_eq!(progressed.last().unwrap()["records"], 1230);
    let first: chrono::DateTime<chrono::Utc> = rows[0].get(1);
    let last: chrono::DateTime<chrono::Utc> = rows[rows.len() - 1].get(1);
    let seconds = (last - first).num_milliseconds() as f64 / 1000.0;
    assert!(
        progressed.len() as f64 <= 3.0 + seconds.ceil() + 1.0,
        "{} JobProgressed over {seconds} s: more than one a second",
        progressed.len()
    );

    // A finished job's stream is just its end.
    let events = read_events(open_events(app, &token, &job_id).await).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "end");
    assert_eq!(events[0].data["status"], "succeeded");

    // Another account's job, or none, is a 404 problem.
    let (status, _) = problem_code(open_events(app, &app.owner("globex"), &job_id).await).await;
    assert_eq!(status, 404);
    let missing = uuid::Uuid::now_v7();
    let (status, _) = problem_code(open_events(app, &token, &missing.to_string()).await).await;
    assert_eq!(status, 404);
    let (status, _) = problem_code(open_events(app, &token, "not-an-id").await).await;
    assert_eq!(status, 404);
    backup.stop().await;
}

/// The manifest's entry for one data type.
fn file<'a>(manifest: &'a Value, data_type: &str) -> &'a Value {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dataType"] == data_type)
        .unwrap_or_else(|| panic!("no {data_type} in {manifest}"))
}

/// The manifest a job stored.
fn manifest(backup: &BackupApp, source_id: &str, job_id: &str) -> Value {
    let path = backup.storage.join(format!(
        "accounts/acme/sources/{source_id}/jobs/{job_id}/manifest.json"
    ));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn ids(backup: &BackupApp, source_id: &str, job_id: &str, file: &str) -> Vec<String> {
    let path = backup.storage.join(format!(
        "accounts/acme/sources/{source_id}/jobs/{job_id}/{file}"
    ));
    gunzip_lines(&path)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_incremental_source_fetches_only_what_changed_since_its_last_job() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    // Stripe events are immutable and filterable by `created`: incremental. Customers change after creation,
    // so Stripe offers no filter that catches every change: always fetched whole.
    backup.api.seed("stripe", "events", 250);
    backup.api.seed("stripe", "customers", 40);
    let token = app.owner("acme");
    let source_id = stripe_source(app, &token, "Stripe", &["events", "customers"], true).await;

    let first = sync(app, &token, &source_id).await;
    let job = backup.finished(&token, &first).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let m1 = manifest(&backup, &source_id, &first);
    assert_eq!(m1["incremental"], false, "no earlier job: a full backup");
    assert_eq!(file(&m1, "events")["records"], 250);
    assert!(file(&m1, "events").get("since").is_none());
    assert_eq!(m1["cursors"]["events"]["field"], "created");
    assert!(m1["cursors"].get("customers").is_none(), "{m1}");

    backup.api.append("stripe", "events", 7);
    let newest = backup.api.listing_ids("stripe", "events")[..7].to_vec();
    let second = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &second).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let m2 = manifest(&backup, &source_id, &second);
    assert_eq!(m2["incremental"], true, "{m2}");
    assert_eq!(file(&m2, "events")["records"], 7);
    assert_eq!(file(&m2, "events")["since"], m1["cursors"]["events"]);
    assert_eq!(
        ids(&backup, &source_id, &second, "events.ndjson.gz"),
        newest
    );
    assert_eq!(
        file(&m2, "customers")["records"],
        40,
        "customers: whole again"
    );
    assert!(file(&m2, "customers").get("since").is_none());
    let query = backup.api.last_query("/stripe/v1/events").unwrap();
    assert!(query.contains("created%5Bgte%5D="), "{query}");
    // The cursor moved on to the newest event.
    assert_ne!(m2["cursors"]["events"], m1["cursors"]["events"]);

    // The cursors travel through the log: the job's success hands them to the source's SyncFinished, which a
    // saga records shortly after JobSucceeded.
    let db = app.db.connect().await;
    let last_finished = || async {
        db.query_opt(
            "SELECT payload -> 'SyncFinished' FROM events \
             WHERE aggregate_id = $1 AND event_type = 'SyncFinished' ORDER BY sequence DESC LIMIT 1",
            &[&source_id],
        )
        .await
        .unwrap()
        .map(|row| row.get::<_, Value>(0))
    };
    wait_until(
        Duration::from_secs(10),
        "the second job's SyncFinished",
        || async {
            last_finished()
                .await
                .is_some_and(|f| f["jobId"] == second.as_str())
        },
    )
    .await;
    let finished = last_finished().await.unwrap();
    assert_eq!(finished["cursors"], m2["cursors"]);
    backup.stop().await;
}

#[tokio::test]
async fn a_source_that_is_not_incremental_fetches_everything_every_time() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "events", 120);
    let token = app.owner("acme");
    let source_id = stripe_source(app, &token, "Stripe", &["events"], false).await;
    let first = sync(app, &token, &source_id).await;
    assert_eq!(backup.finished(&token, &first).await["status"], "succeeded");
    backup.api.append("stripe", "events", 3);
    let second = sync_when_free(app, &token, &source_id).await;
    assert_eq!(
        backup.finished(&token, &second).await["status"],
        "succeeded"
    );
    let m2 = manifest(&backup, &source_id, &second);
    assert_eq!(m2["incremental"], false);
    assert_eq!(m2["files"][0]["records"], 123);
    let query = backup.api.last_query("/stripe/v1/events").unwrap();
    assert!(!query.contains("created"), "{query}");
    backup.stop().await;
}

#[tokio::test]
async fn a_stopping_service_ends_its_open_event_streams_at_once() {
    // No storage: no backup worker runs, so the job stays queued and its stream would stay open.
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source_id = stripe_source(&app, &token, "Stripe", &["customers"], false).await;
    let job_id = sync(&app, &token, &source_id).await;
    let response = open_events(&app, &token, &job_id).await;
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the first event within 10 s")
        .unwrap()
        .unwrap();
    assert!(first.starts_with(b"event: job\n"), "{first:?}");

    // A graceful stop waits up to 30 s for open requests; the stream must not be one of them.
    let stopped = tokio::time::timeout(Duration::from_secs(10), app.stop());
    let drained = async {
        while let Some(chunk) = body.next().await {
            if chunk.is_err() {
                break;
            }
        }
    };
    let (stopped, drained) = tokio::join!(
        stopped,
        tokio::time::timeout(Duration::from_secs(10), drained)
    );
    assert!(stopped.is_ok(), "the service stopped within 10 s");
    assert!(drained.is_ok(), "the stream ended within 10 s");
}
