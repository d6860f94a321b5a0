//! The job read model against its log (load-run finding: `read_jobs` differed from a rebuild, and a cancel
//! answered 409 "already succeeded" while `GET /jobs/{id}` showed `queued`). Jobs are driven through what the
//! load did — syncs run to success, cancels of running and finished jobs, retries — then every `read_jobs`
//! row the live projector wrote must be the row a rebuild folds from the log, and each job's `version` must
//! be its stream's last sequence.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::backup::{stripe_source, sync_when_free, BackupApp};
use support::{problem_code, wait_until};

/// Every `read_jobs` row, as JSON, by job id.
async fn jobs(db: &tokio_postgres::Client) -> Vec<Value> {
    db.query("SELECT to_jsonb(j) FROM read_jobs j ORDER BY job_id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn the_live_job_rows_are_what_a_rebuild_folds_after_syncs_cancels_and_retries() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 30);
    let token = app.owner("acme");
    let quick = stripe_source(app, &token, "quick", &["customers"], false).await;

    // Syncs run to success; a cancel after that is refused, and the read model says why.
    let mut job_ids = Vec::new();
    for _ in 0..3 {
        let job_id = sync_when_free(app, &token, &quick).await;
        let job = backup.finished(&token, &job_id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let (status, problem) = problem_code(
            app.post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
                .await,
        )
        .await;
        assert_eq!(status, 409, "{problem}");
        assert_eq!(backup.job(&token, &job_id).await["status"], "succeeded");
        job_ids.push(job_id);
    }

    // A running job cancelled (its worker confirms), then retried; the retry runs to its end.
    backup.api.seed("stripe", "invoices", 1_000_000);
    let slow = stripe_source(app, &token, "slow", &["invoices"], false).await;
    let running = sync_when_free(app, &token, &slow).await;
    wait_until(Duration::from_secs(30), "the job to run", || async {
        backup.job(&token, &running).await["status"] == "running"
    })
    .await;
    let response = app
        .post(&format!("/jobs/{running}/cancel"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let cancelled = backup.finished(&token, &running).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    job_ids.push(running.clone());

    // A queued job cancelled at once, and retried.
    let queued = sync_when_free(app, &token, &quick).await;
    let _ = app
        .post(&format!("/jobs/{queued}/cancel"), &token, &json!({}))
        .await;
    backup.finished(&token, &queued).await;
    job_ids.push(queued.clone());
    let retried = {
        let cell = std::cell::RefCell::new(String::new());
        let (cell_ref, token_ref, queued_ref) = (&cell, &token, &queued);
        wait_until(
            Duration::from_secs(10),
            "the retry to queue",
            || async move {
                let response = app
                    .post(&format!("/jobs/{queued_ref}/retry"), token_ref, &json!({}))
                    .await;
                if response.status() == 202 {
                    let job: Value = response.json().await.unwrap();
                    *cell_ref.borrow_mut() = job["jobId"].as_str().unwrap().to_owned();
                    true
                } else {
                    false
                }
            },
        )
        .await;
        cell.into_inner()
    };
    let job = backup.finished(&token, &retried).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job_ids.push(retried);

    // Each job's row has folded its whole stream: its version is the stream's last sequence.
    let client = app.db.connect().await;
    for job_id in &job_ids {
        let last: i64 = client
            .query_one(
                "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = 'job' \
                 AND aggregate_id = $1",
                &[job_id],
            )
            .await
            .unwrap()
            .get(0);
        wait_until(Duration::from_secs(10), "the job's row to catch up", || {
            let client = &client;
            async move {
                client
                    .query_one("SELECT version FROM read_jobs WHERE job_id = $1", &[job_id])
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                    >= last
            }
        })
        .await;
    }
    let live = jobs(&client).await;
    for row in &live {
        let id = row["job_id"].as_str().unwrap();
        let last: i64 = client
            .query_one(
                "SELECT coalesce(max(sequence), 0) FROM events WHERE aggregate_type = 'job' \
                 AND aggregate_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(row["version"], last, "{row}");
    }
    app.db.rebuild_projections().await;
    let rebuilt = jobs(&client).await;
    assert_eq!(live.len(), rebuilt.len());
    for (live, rebuilt) in live.iter().zip(&rebuilt) {
        assert_eq!(live, rebuilt, "the rebuild differs");
    }
    backup.stop().await;
}

/// The load's mix at once, with two service instances (two projectors racing over the same read models):
/// sources synced together, cancels racing each job's start and end (some answered 202, some 409), reads in
/// between. Every `read_jobs` row is then its stream's last sequence, and what a rebuild folds.
#[tokio::test]
async fn concurrent_syncs_and_racing_cancels_under_two_projectors_fold_like_a_rebuild() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    let other = app.spawn_another_instance().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 60);
    let token = app.owner("acme");
    let mut sources = Vec::new();
    for n in 0..6 {
        sources.push(stripe_source(app, &token, &format!("s{n}"), &["customers"], false).await);
    }
    let mut job_ids = Vec::new();
    for round in 0..3u64 {
        let mut round_jobs = Vec::new();
        for source in &sources {
            round_jobs.push(sync_when_free(app, &token, source).await);
        }
        let cancels = round_jobs.iter().enumerate().map(|(i, job_id)| {
            let token = token.clone();
            async move {
                // Staggered: some while queued, some while running, some after the end.
                tokio::time::sleep(Duration::from_millis(40 * (i as u64 + round))).await;
                if i % 2 == 0 {
                    let response = app
                        .post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
                        .await;
                    assert!(
                        [202, 409].contains(&response.status().as_u16()),
                        "{}",
                        response.status()
                    );
                }
                let _ = app.get(&format!("/jobs/{job_id}"), &token).await;
            }
        });
        futures::future::join_all(cancels).await;
        for job_id in &round_jobs {
            backup.finished(&token, job_id).await;
        }
        job_ids.extend(round_jobs);
    }
    let client = app.db.connect().await;
    let behind =
        "SELECT count(*) FROM read_jobs j WHERE j.version <> (SELECT coalesce(max(sequence), 0) \
                  FROM events e WHERE e.aggregate_type = 'job' AND e.aggregate_id = j.job_id)";
    wait_until(Duration::from_secs(20), "every job row to catch up", || {
        let client = &client;
        async move {
            client
                .query_one(behind, &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 0
        }
    })
    .await;
    let live = jobs(&client).await;
    assert!(live.len() >= job_ids.len());
    other.stop().await;
    app.db.rebuild_projections().await;
    let rebuilt = jobs(&client).await;
    assert_eq!(live.len(), rebuilt.len());
    for (live, rebuilt) in live.iter().zip(&rebuilt) {
        assert_eq!(live, rebuilt, "the rebuild differs");
    }
    backup.stop().await;
}
