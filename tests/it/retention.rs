//! Retention, holds and verification (issue 13 §1 and §3): a source's policy (`retentionDays`, `keepLast`)
//! expires its older backups exactly once however many processes sweep, never the latest successful one,
//! never one under a hold; an expired backup's files answer 410; verification reads a backup back and names
//! a flipped byte's file. The sweep's clock is set by hand, so days pass at once.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use listbackup_workers::scheduler::Clock;
use serde_json::{json, Value};
use support::backup::{sync_when_free, BackupApp};
use support::{problem_code, wait_until, TestApp};

/// A service whose scheduler and retention sweep read `clock`, sweeping every second.
async fn spawn(clock: &Clock) -> BackupApp {
    let clock = clock.clone();
    let backup = BackupApp::spawn_configured(
        |values| {
            values.insert("LISTBACKUP_RETENTION_SWEEP_SECS".into(), "1".into());
        },
        move |config| config.scheduler_clock = clock,
    )
    .await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 40);
    backup
}

/// A manual Stripe source of customers (no schedule: moving the clock queues nothing) with `policy` added.
async fn source(app: &TestApp, token: &str, policy: Value) -> String {
    let connection = app
        .create_stripe_connection(token, "Stripe", "sk_test_1")
        .await;
    let mut body = json!({"connectionId": connection["connectionId"], "name": "Stripe",
                          "dataTypes": ["customers"], "schedule": {"frequency": "manual"}});
    body.as_object_mut()
        .unwrap()
        .extend(policy.as_object().unwrap().clone());
    let response = app.post("/sources", token, &body).await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["sourceId"].as_str().unwrap().to_owned()
}

/// Runs one backup of the source to success; its id.
async fn backup_once(backup: &BackupApp, token: &str, source_id: &str) -> String {
    let job_id = sync_when_free(&backup.app, token, source_id).await;
    let job = backup.finished(token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    job_id
}

async fn wait_expired(backup: &BackupApp, token: &str, job_id: &str) -> Value {
    wait_until(Duration::from_secs(30), "the backup to expire", || async {
        backup.job(token, job_id).await["expiredAt"].is_string()
    })
    .await;
    backup.job(token, job_id).await
}

/// `(event_type, actor, payload)` of a job's events of these types, in order.
async fn events_of(app: &TestApp, job_id: &str, types: &[&str]) -> Vec<(String, String, Value)> {
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    app.db
        .connect()
        .await
        .query(
            "SELECT event_type, metadata->>'actor', payload::jsonb FROM events \
             WHERE aggregate_type = 'job' AND aggregate_id = $1 AND event_type = ANY($2) ORDER BY sequence",
            &[&job_id, &types],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

fn job_dir(backup: &BackupApp, source_id: &str, job_id: &str) -> std::path::PathBuf {
    backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"))
}

#[tokio::test]
async fn keep_last_expires_the_older_backups_exactly_once_with_two_sweeping_instances() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    // A second `serve` on the same database and storage: it sweeps too.
    let other = backup.app.spawn_another_instance().await;
    let app = &backup.app;
    let token = app.owner("acme");
    let source_id = source(app, &token, json!({"keepLast": 1})).await;
    let view: Value = app
        .get(&format!("/sources/{source_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["keepLast"], 1);

    let first = backup_once(&backup, &token, &source_id).await;
    let second = backup_once(&backup, &token, &source_id).await;
    let third = backup_once(&backup, &token, &source_id).await;

    for old in [&first, &second] {
        let job = wait_expired(&backup, &token, old).await;
        assert!(job["freedBytes"].as_u64().unwrap() > 0, "{job}");
        assert!(job["freedFiles"].as_u64().unwrap() >= 2, "{job}");
        assert!(
            !job_dir(&backup, &source_id, old)
                .join("manifest.json")
                .exists(),
            "the expired backup's files are deleted"
        );
        // The files routes answer 410 Gone, problem+json.
        let (status, problem) =
            problem_code(app.get(&format!("/jobs/{old}/files"), &token).await).await;
        assert_eq!(status, 410, "{problem}");
        assert_eq!(problem["code"], "GONE");
        let (status, _) = problem_code(
            app.get(&format!("/jobs/{old}/files/customers.ndjson.gz"), &token)
                .await,
        )
        .await;
        assert_eq!(status, 410);
    }
    // The latest is kept, and its files still served.
    let latest = backup.job(&token, &third).await;
    assert_eq!(latest["expiredAt"], Value::Null, "{latest}");
    assert_eq!(
        app.get(&format!("/jobs/{third}/files"), &token)
            .await
            .status(),
        200
    );
    // Sweeps go on after those expiries (seen by the next backup expiring `third`), and find the expired
    // ones again: still one BackupExpired each, by `system`.
    let fourth = backup_once(&backup, &token, &source_id).await;
    wait_expired(&backup, &token, &third).await;
    for old in [&first, &second] {
        let expired = events_of(app, old, &["BackupExpired"]).await;
        assert_eq!(expired.len(), 1, "expired exactly once: {expired:?}");
        assert_eq!(expired[0].1, "system");
        let files = backup.job(&token, old).await["freedBytes"].clone();
        assert_eq!(expired[0].2["BackupExpired"]["bytes"], files);
    }
    let latest = backup.job(&token, &fourth).await;
    assert_eq!(latest["expiredAt"], Value::Null, "{latest}");
    other.stop().await;
    backup.stop().await;
}

#[tokio::test]
async fn the_latest_successful_backup_is_never_expired_even_past_retention_days() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    let app = &backup.app;
    let token = app.owner("acme");
    let source_id = source(app, &token, json!({"retentionDays": 1})).await;
    let older = backup_once(&backup, &token, &source_id).await;
    let latest = backup_once(&backup, &token, &source_id).await;

    clock.set(Utc::now() + chrono::Duration::days(400));
    // Both are past retentionDays; the sweep that expires the older one decides on the latest too.
    wait_expired(&backup, &token, &older).await;
    let job = backup.job(&token, &latest).await;
    assert_eq!(job["expiredAt"], Value::Null, "{job}");
    assert!(events_of(app, &latest, &["BackupExpired"]).await.is_empty());
    assert!(job_dir(&backup, &source_id, &latest)
        .join("manifest.json")
        .exists());
    backup.stop().await;
}

#[tokio::test]
async fn a_held_backup_is_kept_and_expires_once_released() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    let app = &backup.app;
    let token = app.owner("acme");
    let source_id = source(app, &token, json!({"keepLast": 1})).await;
    let held = backup_once(&backup, &token, &source_id).await;

    let response = app
        .post(
            &format!("/jobs/{held}/hold"),
            &token,
            &json!({"reason": "legal hold: case 42"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["hold"]["reason"], "legal hold: case 42", "{job}");
    assert_eq!(job["hold"]["by"], "user:test-user");
    // A viewer may not hold; another account sees no job; a reason is required.
    let viewer = app.token("acme", &[listbackup_api::auth::Role::Viewer]);
    let (status, _) = problem_code(
        app.post(
            &format!("/jobs/{held}/hold"),
            &viewer,
            &json!({"reason": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = problem_code(
        app.post(
            &format!("/jobs/{held}/hold"),
            &app.owner("globex"),
            &json!({"reason": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let (status, problem) = problem_code(
        app.post(
            &format!("/jobs/{held}/hold"),
            &token,
            &json!({"reason": " "}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 400, "{problem}");

    let next = backup_once(&backup, &token, &source_id).await;
    let newest = backup_once(&backup, &token, &source_id).await;
    // keepLast 1: `next` expires; the sweep that expires it passes over the held one.
    wait_expired(&backup, &token, &next).await;
    let job = backup.job(&token, &held).await;
    assert_eq!(job["expiredAt"], Value::Null, "{job}");
    assert_eq!(
        app.get(&format!("/jobs/{held}/files"), &token)
            .await
            .status(),
        200
    );

    let response = app.delete(&format!("/jobs/{held}/hold"), &token).await;
    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["hold"], Value::Null);
    wait_expired(&backup, &token, &held).await;
    assert_eq!(backup.job(&token, &newest).await["expiredAt"], Value::Null);

    // Who and why, on the job's stream.
    let events = events_of(
        app,
        &held,
        &["BackupHeld", "BackupHoldReleased", "BackupExpired"],
    )
    .await;
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["BackupHeld", "BackupHoldReleased", "BackupExpired"]);
    assert_eq!(events[0].1, "user:test-user");
    assert_eq!(events[0].2["BackupHeld"]["reason"], "legal hold: case 42");
    assert_eq!(events[1].1, "user:test-user");
    assert_eq!(events[2].1, "system");
    // Holding an expired backup: 410.
    let (status, problem) = problem_code(
        app.post(
            &format!("/jobs/{held}/hold"),
            &token,
            &json!({"reason": "too late"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 410, "{problem}");
    backup.stop().await;
}

#[tokio::test]
async fn abandoned_staged_uploads_older_than_a_day_are_swept() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    let dir = backup.storage.join("accounts/acme/sources/s/jobs/dead-job");
    std::fs::create_dir_all(&dir).unwrap();
    let staged = dir.join("customers.ndjson.gz#7");
    std::fs::write(&staged, b"part of a dead upload").unwrap();
    let kept = dir.join("customers.ndjson.gz");
    std::fs::write(&kept, b"not a staged upload").unwrap();

    clock.set(Utc::now() + chrono::Duration::days(2));
    wait_until(
        Duration::from_secs(30),
        "the staged upload to be swept",
        || async { !staged.exists() },
    )
    .await;
    assert!(kept.exists(), "only staged uploads are swept");
    backup.stop().await;
}

#[tokio::test]
async fn verify_reports_a_flipped_byte_by_file_name_and_an_intact_backup_as_verified() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    let app = &backup.app;
    let token = app.owner("acme");
    let source_id = source(app, &token, json!({})).await;
    let job_id = backup_once(&backup, &token, &source_id).await;

    let response = app
        .post(&format!("/jobs/{job_id}/verify"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["status"], "verified", "{result}");
    assert_eq!(result["files"], 2, "{result}");

    let path = job_dir(&backup, &source_id, &job_id).join("customers.ndjson.gz");
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let response = app
        .post(&format!("/jobs/{job_id}/verify"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["status"], "corrupted", "{result}");
    assert_eq!(result["file"], "customers.ndjson.gz");
    let job = backup.job(&token, &job_id).await;
    // What is stored is the file's ciphertext (issue 13 §2): its sha256 is the manifest's
    // `encryption.ciphertextSha256` (the job's `sha256` is the plaintext's, what a download gives back).
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(job_dir(&backup, &source_id, &job_id).join("manifest.json")).unwrap(),
    )
    .unwrap();
    let file = &manifest["files"][0];
    assert_eq!(file["name"], "customers.ndjson.gz");
    assert_eq!(file["sha256"], job["dataTypes"][0]["sha256"]);
    let expected = file["encryption"]["ciphertextSha256"].as_str().unwrap();
    assert_eq!(result["expected"], expected);
    assert_ne!(result["found"], expected);
    assert_eq!(job["verification"]["status"], "corrupted", "{job}");
    assert_eq!(job["verification"]["file"], "customers.ndjson.gz");

    let events = events_of(app, &job_id, &["BackupVerified", "BackupCorrupted"]).await;
    let kinds: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(kinds, ["BackupVerified", "BackupCorrupted"]);
    assert_eq!(
        events[1].2["BackupCorrupted"]["file"],
        "customers.ndjson.gz"
    );
    assert_eq!(events[1].1, "user:test-user");

    // A tampered manifest is caught against the hash the job recorded.
    let manifest = job_dir(&backup, &source_id, &job_id).join("manifest.json");
    let mut text = std::fs::read(&manifest).unwrap();
    text.push(b' ');
    std::fs::write(&manifest, &text).unwrap();
    let result: Value = app
        .post(&format!("/jobs/{job_id}/verify"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(result["status"], "corrupted");
    assert_eq!(result["file"], "manifest.json");
    assert_eq!(result["expected"], job["manifestSha256"]);
    backup.stop().await;
}

#[tokio::test]
async fn a_backup_whose_file_contents_a_kept_backup_refers_to_stays_until_nothing_refers_to_it() {
    let svc = support::files::service_with("google", |values| {
        values.insert("LISTBACKUP_RETENTION_SWEEP_SECS".into(), "1".into());
    })
    .await;
    let backup = &svc.backup;
    let app = &backup.app;
    let token = &svc.token;
    backup.api.seed_files("google", 1, 6, 1000);
    let connection = svc.connect().await;
    let drive = svc.source(&connection, &["files"], true).await;
    let response = app
        .put(&format!("/sources/{drive}"), token, &json!({"keepLast": 1}))
        .await;
    assert_eq!(response.status(), 200);
    let first = svc.run(&drive).await;
    let first = first["jobId"].as_str().unwrap().to_owned();
    backup.api.change_file("google", 4);
    let second = svc.run(&drive).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    let second = second["jobId"].as_str().unwrap().to_owned();

    // Another source's expiry, of backups run after these ended, proves a sweep has looked at this one.
    let full = svc.source(&connection, &["files"], false).await;
    let response = app
        .put(&format!("/sources/{full}"), token, &json!({"keepLast": 1}))
        .await;
    assert_eq!(response.status(), 200);
    let full_first = svc.run(&full).await["jobId"].as_str().unwrap().to_owned();
    svc.run(&full).await;
    wait_expired(backup, token, &full_first).await;
    // Past keepLast, but the kept backup takes five files' bytes from it: kept, whole.
    let job = backup.job(token, &first).await;
    assert_eq!(job["expiredAt"], Value::Null, "{job}");
    let manifest = svc.manifest(&drive, &second);
    let unchanged = manifest["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jobId"] == first.as_str())
        .unwrap()
        .clone();
    let download = app
        .get(
            &format!(
                "/jobs/{second}/files/{}",
                unchanged["name"].as_str().unwrap()
            ),
            token,
        )
        .await;
    assert_eq!(download.status(), 200);

    // A full backup no longer refers to either: both expire, the newer first.
    let response = app
        .put(
            &format!("/sources/{drive}"),
            token,
            &json!({"incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let third = svc.run(&drive).await;
    assert_eq!(third["status"], "succeeded", "{third}");
    let third = third["jobId"].as_str().unwrap().to_owned();
    wait_expired(backup, token, &second).await;
    wait_expired(backup, token, &first).await;
    let listed: Value = app
        .get(&format!("/jobs/{third}/files"), token)
        .await
        .json()
        .await
        .unwrap();
    let files = listed["files"].as_array().unwrap();
    assert!(files.len() > 6, "{listed}");
    for file in files {
        let name = file["name"].as_str().unwrap();
        let response = app.get(&format!("/jobs/{third}/files/{name}"), token).await;
        assert_eq!(response.status(), 200, "{name}");
    }
    svc.backup.stop().await;
}

/// Every record of one data type of the snapshot of `job_id`, as `(recordId, storedByJobId)`; the status when
/// it cannot be read.
async fn snapshot_records(
    app: &TestApp,
    token: &str,
    source_id: &str,
    job_id: &str,
    data_type: &str,
) -> Result<Vec<(String, String)>, u16> {
    let response = app
        .get(
            &format!(
                "/sources/{source_id}/snapshots/{job_id}/records?dataType={data_type}&limit=200"
            ),
            token,
        )
        .await;
    if response.status() != 200 {
        return Err(response.status().as_u16());
    }
    let page: Value = response.json().await.unwrap();
    assert!(page["nextCursor"].is_null(), "{page}");
    Ok(page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["recordId"].as_str().unwrap().to_owned(),
                r["storedByJobId"].as_str().unwrap().to_owned(),
            )
        })
        .collect())
}

async fn wait_indexed(app: &TestApp, token: &str, source_id: &str, job_id: &str) {
    wait_until(
        Duration::from_secs(45),
        "the backup to be indexed",
        || async {
            let list: Value = app
                .get(&format!("/sources/{source_id}/snapshots"), token)
                .await
                .json()
                .await
                .unwrap();
            list["snapshots"][0]["jobId"] == job_id
        },
    )
    .await;
}

#[tokio::test]
async fn a_full_backup_a_kept_incremental_reads_from_stays_until_nothing_kept_needs_it() {
    let clock = Clock::manual(Utc::now());
    let backup = spawn(&clock).await;
    let app = &backup.app;
    let token = app.owner("acme");
    backup.api.seed("stripe", "events", 10);
    // Stripe's events are fetched incrementally (by `created`).
    let connection = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let response = app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection["connectionId"], "name": "Events",
                    "dataTypes": ["events"], "schedule": {"frequency": "manual"},
                    "incremental": true, "retentionDays": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source_id = response.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();

    // 1: full, 10 events. 2: incremental, the 3 new ones; its snapshot reads the other 10 from backup 1.
    let first = backup_once(&backup, &token, &source_id).await;
    backup.api.append("stripe", "events", 3);
    let second = backup_once(&backup, &token, &source_id).await;
    wait_indexed(app, &token, &source_id, &second).await;
    let chain = snapshot_records(app, &token, &source_id, &second, "events")
        .await
        .unwrap();
    assert_eq!(chain.len(), 13);
    assert_eq!(chain.iter().filter(|(_, by)| *by == first).count(), 10);

    // Both past retentionDays; the second is the latest (kept), and it needs the first.
    clock.set(Utc::now() + chrono::Duration::days(31));
    // A sweep has run since (it expired the first backup of another source, whose second is a full one).
    let other = source(app, &token, json!({"keepLast": 1})).await;
    let other_first = backup_once(&backup, &token, &other).await;
    let other_second = backup_once(&backup, &token, &other).await;
    wait_expired(&backup, &token, &other_first).await;
    assert_eq!(
        snapshot_records(app, &token, &other, &other_second, "customers")
            .await
            .map(|r| r.len()),
        Ok(40),
        "the kept full backup's snapshot stays complete"
    );
    let kept = backup.job(&token, &first).await;
    assert_eq!(kept["expiredAt"], Value::Null, "{kept}");
    assert_eq!(
        snapshot_records(app, &token, &source_id, &second, "events").await,
        Ok(chain.clone()),
        "the kept incremental's snapshot stays complete"
    );

    // 3: full again (incremental off): nothing kept needs 1 and 2 any more, and they expire.
    let response = app
        .put(
            &format!("/sources/{source_id}"),
            &token,
            &json!({"incremental": false}),
        )
        .await;
    assert_eq!(response.status(), 200);
    clock.set(Utc::now());
    let third = backup_once(&backup, &token, &source_id).await;
    clock.set(Utc::now() + chrono::Duration::days(31));
    wait_expired(&backup, &token, &first).await;
    wait_expired(&backup, &token, &second).await;
    let full = snapshot_records(app, &token, &source_id, &third, "events")
        .await
        .unwrap();
    assert_eq!(full.len(), 13);
    assert!(full.iter().all(|(_, by)| *by == third), "{full:?}");
    let ids = |records: &[(String, String)]| -> std::collections::BTreeSet<String> {
        records.iter().map(|(id, _)| id.clone()).collect()
    };
    assert_eq!(ids(&full), ids(&chain));
}
