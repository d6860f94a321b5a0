//! The scheduler (issue 5): sources with a schedule get a job at each slot, exactly once per slot even with
//! two service instances on one database, a slot that comes while the previous job is unfinished is skipped
//! with an event that says so, and paused or manual sources get nothing.
//!
//! No backup worker runs here (no storage is configured), so a scheduled job stays `queued` and the next slot
//! finds the source busy. Cron slots are whole minutes: the black-box test drives the schedulers' clock by
//! hand (`Config::scheduler_clock`) from one slot to the next instead of waiting for the wall clock; the race
//! of several schedulers on one slot is also tested head-on.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Minutes, TimeZone, Timelike, Utc};
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::{CommandBus, EventMetadata};
use listbackup_domain::source::scheduled_job_id;
use listbackup_workers::scheduler::Clock;
use serde_json::{json, Value};
use support::{wait_until, TestApp};

/// Once the clock is set to a slot: the schedulers' next pass (every 100 ms here) and the projector.
const SLOT_WAIT: Duration = Duration::from_secs(20);

async fn scheduled_source(app: &TestApp, token: &str, name: &str, schedule: Value) -> String {
    let connection = app.create_stripe_connection(token, name, "sk_test_1").await;
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection["connectionId"], "name": name,
                    "dataTypes": ["customers"], "schedule": schedule}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["sourceId"].as_str().unwrap().to_owned()
}

async fn get_json(http: &reqwest::Client, url: String, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn jobs_of(app: &TestApp, token: &str, source_id: &str) -> Vec<Value> {
    let page = get_json(
        &app.http,
        app.url(&format!("/jobs?sourceId={source_id}")),
        token,
    )
    .await;
    page["jobs"].as_array().unwrap().clone()
}

fn time(value: &Value) -> DateTime<Utc> {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value} is no time: {e}"))
}

/// The source's events of one type, oldest first: (payload body, metadata).
async fn events_of(
    db: &tokio_postgres::Client,
    source_id: &str,
    event_type: &str,
) -> Vec<(Value, Value)> {
    db.query(
        "SELECT payload -> event_type, metadata FROM events \
         WHERE aggregate_type = 'source' AND aggregate_id = $1 AND event_type = $2 ORDER BY sequence",
        &[&source_id, &event_type],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn dump(db: &tokio_postgres::Client) -> Vec<String> {
    let mut rows = Vec::new();
    for sql in [
        "SELECT row_to_json(r)::text FROM read_sources r ORDER BY source_id",
        "SELECT row_to_json(r)::text FROM read_jobs r ORDER BY job_id",
    ] {
        for row in db.query(sql, &[]).await.unwrap() {
            rows.push(row.get(0));
        }
    }
    rows
}

#[tokio::test]
async fn two_instances_queue_one_job_per_slot_and_a_busy_source_skips_the_next_slot() {
    // Both instances read one hand-set clock (the configuration is shared), as two machines read one time.
    let clock = Clock::manual(Utc::now());
    let app = TestApp::spawn_configured(
        |_| {},
        |config| {
            config.scheduler_clock = clock.clone();
            config.scheduler_poll_interval = Duration::from_millis(100);
        },
    )
    .await;
    let second = app.spawn_another_instance().await;
    let second_url = |path: &str| format!("http://127.0.0.1:{}{path}", second.port);
    let token = app.owner("acme");
    let every_minute = json!({"cron": "* * * * *"});
    let busy = scheduled_source(&app, &token, "busy", every_minute.clone()).await;
    let paused = scheduled_source(&app, &token, "paused", every_minute).await;
    let response = app
        .put(
            &format!("/sources/{paused}"),
            &token,
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let manual = scheduled_source(&app, &token, "manual", json!({"frequency": "manual"})).await;
    let db = app.db.connect().await;

    // The first slot the source announces: set the clock to it.
    let source = get_json(&app.http, app.url(&format!("/sources/{busy}")), &token).await;
    let first_due = time(&source["nextSyncAt"]);
    assert_eq!(first_due.timestamp() % 60, 0, "slots are whole minutes");
    assert!(jobs_of(&app, &token, &busy).await.is_empty());

    // The first slot: one job, whichever instance's scheduler got there first.
    clock.set(first_due);
    wait_until(SLOT_WAIT, "the first scheduled job", || async {
        !jobs_of(&app, &token, &busy).await.is_empty()
    })
    .await;
    let jobs = jobs_of(&app, &token, &busy).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    assert_eq!(job["trigger"], "schedule");
    assert_eq!(job["status"], "queued");
    let source = get_json(&app.http, app.url(&format!("/sources/{busy}")), &token).await;
    let first_slot = time(&source["lastScheduledSlot"]);
    assert_eq!(first_slot.timestamp() % 60, 0, "slots are whole minutes");
    assert!(
        first_slot > time(&source["createdAt"]),
        "no slot before the source existed"
    );
    assert_eq!(first_slot, first_due, "the slot the source announced");
    assert_eq!(source["lastSkippedSlot"], Value::Null);
    // Both instances name the slot's job alike: a UUID v7 stamped with the slot.
    assert_eq!(
        job_id,
        scheduled_job_id(busy.parse().unwrap(), first_slot).to_string()
    );

    // The next slot comes while that job is still queued (no worker runs here): skipped, and said so.
    let next_slot = first_slot + Minutes::minutes(1);
    clock.set(next_slot + Minutes::seconds(5));
    wait_until(SLOT_WAIT, "the next slot to be skipped", || async {
        let source = get_json(&app.http, second_url(&format!("/sources/{busy}")), &token).await;
        source["lastSkippedSlot"] != Value::Null
    })
    .await;
    // Frozen from here on, so the counts below cannot move under the test.
    let response = app
        .put(
            &format!("/sources/{busy}"),
            &token,
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let source: Value = response.json().await.unwrap();
    assert_eq!(time(&source["lastSkippedSlot"]), next_slot);
    assert_eq!(time(&source["lastScheduledSlot"]), next_slot);

    let requested = events_of(&db, &busy, "SyncRequested").await;
    assert_eq!(
        requested.len(),
        1,
        "one job for the first slot: {requested:?}"
    );
    let (payload, metadata) = &requested[0];
    assert_eq!(payload["jobId"], job_id.as_str());
    assert_eq!(payload["trigger"], "schedule");
    assert_eq!(time(&payload["slot"]), first_slot);
    assert_eq!(metadata["actor"], "scheduler");
    assert_eq!(metadata["accountId"], "acme");
    let skipped = events_of(&db, &busy, "SyncSkipped").await;
    assert_eq!(skipped.len(), 1, "one skip for the next slot: {skipped:?}");
    let (payload, metadata) = &skipped[0];
    assert_eq!(
        payload,
        &json!({"slot": next_slot.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                "activeJobId": job_id, "reason": "job_in_progress"})
    );
    assert_eq!(metadata["actor"], "scheduler");
    assert_eq!(jobs_of(&app, &token, &busy).await.len(), 1);

    // Paused and manual sources got nothing.
    for quiet in [&paused, &manual] {
        assert!(jobs_of(&app, &token, quiet).await.is_empty());
        assert!(events_of(&db, quiet, "SyncRequested").await.is_empty());
        assert!(events_of(&db, quiet, "SyncSkipped").await.is_empty());
        let source = get_json(&app.http, app.url(&format!("/sources/{quiet}")), &token).await;
        assert_eq!(source["lastScheduledSlot"], Value::Null);
    }

    // The scheduler's columns come from the log: a rebuild reproduces them, the first unhandled slot of a
    // schedule that is waiting for its slot too.
    let response = app
        .put(
            &format!("/sources/{manual}"),
            &token,
            // Twelve hours from now: no slot of it can come while the test runs (a daily 03:00 did, once,
            // for a run at 02:59, and the rebuild then differed by that slot's job).
            &json!({"schedule": {"cron": format!("0 {} * * *", (Utc::now().hour() + 12) % 24)}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let live = dump(&db).await;
    app.db.rebuild_projections().await;
    assert_eq!(dump(&db).await, live);
    let row = db
        .query_one(
            "SELECT s.last_skipped_slot, w.next_scheduled_at FROM read_sources s, read_sources w \
             WHERE s.source_id = $1 AND w.source_id = $2",
            &[&busy, &manual],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<DateTime<Utc>>>(0), Some(next_slot));
    let waiting: Option<DateTime<Utc>> = row.get(1);
    assert!(waiting.is_some_and(|at| at > Utc::now()), "{waiting:?}");

    second.stop().await;
    app.stop().await;
}

/// Offers `slot` as a scheduler does; returns how many events it recorded.
async fn offer_slot(
    scheduler: &SourceCommands,
    source_id: &listbackup_domain::SourceId,
    slot: DateTime<Utc>,
) -> usize {
    let metadata = EventMetadata::for_request(
        "acme",
        "scheduler".into(),
        &uuid::Uuid::now_v7().to_string(),
    );
    scheduler
        .run_scheduled_slot(&metadata, source_id, slot)
        .await
        .expect("an offered slot is never an error")
        .events
}

#[tokio::test]
async fn schedulers_racing_for_one_slot_record_it_once() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    // Daily, twelve hours from now: the service's own scheduler reaches no slot of it during the test (a fixed
    // 03:00 fired by itself in a run at 02:59), and the slot offered below is tomorrow's or later.
    let hour = (Utc::now().hour() + 12) % 24;
    let source_id = scheduled_source(
        &app,
        &token,
        "daily",
        json!({"cron": format!("0 {hour} * * *")}),
    )
    .await;
    let today = Utc::now().date_naive();
    let slot = Utc.from_utc_datetime(&today.and_hms_opt(hour, 0, 0).unwrap()) + Minutes::days(1);

    // Six schedulers, as in six processes: each with its own connections to the event store.
    let mut schedulers = Vec::new();
    for _ in 0..6 {
        let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
        let notify = Arc::new(tokio::sync::Notify::new());
        schedulers.push(SourceCommands::new(
            CommandBus::new(pool.clone(), (), notify.clone()),
            CommandBus::new(pool, (), notify),
        ));
    }
    let typed_id = source_id.parse().unwrap();
    let offer = |scheduler, slot| offer_slot(scheduler, &typed_id, slot);
    let recorded: Vec<usize> =
        futures::future::join_all(schedulers.iter().map(|s| offer(s, slot))).await;
    assert_eq!(recorded.iter().sum::<usize>(), 1, "{recorded:?}");
    // Offered again later: handled already.
    assert_eq!(offer(&schedulers[0], slot).await, 0);

    let db = app.db.connect().await;
    let requested = events_of(&db, &source_id, "SyncRequested").await;
    assert_eq!(requested.len(), 1);
    let job_id = scheduled_job_id(typed_id, slot).to_string();
    assert_eq!(requested[0].0["jobId"], job_id.as_str());
    wait_until(
        Duration::from_secs(10),
        "the job to be projected",
        || async { jobs_of(&app, &token, &source_id).await.len() == 1 },
    )
    .await;

    // The next day's slot, raced the same way while that job is queued: one skip.
    let later = slot + Minutes::days(1);
    let recorded: Vec<usize> =
        futures::future::join_all(schedulers.iter().map(|s| offer(s, later))).await;
    assert_eq!(recorded.iter().sum::<usize>(), 1, "{recorded:?}");
    let skipped = events_of(&db, &source_id, "SyncSkipped").await;
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0["activeJobId"], job_id.as_str());
    // A time that is no slot of the schedule records nothing.
    assert_eq!(
        offer(
            &schedulers[0],
            later + Minutes::days(1) + Minutes::minutes(7)
        )
        .await,
        0
    );
    assert_eq!(jobs_of(&app, &token, &source_id).await.len(), 1);
    app.stop().await;
}
