//! Restores (issue 13 §5), round-tripped through the Stripe emulation: back up, delete and alter customers
//! on the platform, plan a dry run, restore (overwrite, then missing), back up again and compare with the
//! snapshot; a data type the platform cannot write is refused, a restore in flight is cancelled, and another
//! account's source is not found.

use std::collections::HashMap;
use std::io::BufRead;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::backup::{stripe_source, sync, sync_when_free, BackupApp};
use crate::support::{problem_code, wait_until};

/// The customer fields a restore writes back (domain/src/platform/stripe.rs).
const FIELDS: &[&str] = &[
    "name",
    "email",
    "description",
    "phone",
    "address",
    "shipping",
    "metadata",
    "preferred_locales",
    "tax_exempt",
    "balance",
    "invoice_prefix",
];

/// Sends one write to the emulated Stripe API, as a customer's own tools would.
async fn stripe(backup: &BackupApp, method: reqwest::Method, path: &str, form: &[(&str, &str)]) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", backup.api.api_url("stripe")))
        .bearer_auth("sk_test_1")
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "{path}: {}",
        response.text().await.unwrap()
    );
}

/// Requests a restore → (status, body).
async fn restore(backup: &BackupApp, token: &str, source_id: &str, body: Value) -> (u16, Value) {
    let response = backup
        .app
        .post(&format!("/sources/{source_id}/restores"), token, &body)
        .await;
    let status = response.status().as_u16();
    if status == 202 {
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let job: Value = response.json().await.unwrap();
        assert_eq!(
            location,
            format!("/jobs/{}", job["jobId"].as_str().unwrap())
        );
        (status, job)
    } else {
        problem_code(response).await
    }
}

/// A restore requested once the source is free (the previous job's end frees it through a saga); the job.
async fn restore_when_free(backup: &BackupApp, token: &str, source_id: &str, body: Value) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let job = loop {
        let (status, answer) = restore(backup, token, source_id, body.clone()).await;
        if status == 202 {
            break answer;
        }
        assert_eq!(
            status, 409,
            "only a job in progress may refuse it: {answer}"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the source stayed busy: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["kind"], "restore");
    assert_eq!(job["status"], "queued");
    job
}

/// The restore's report, downloaded: one line per record.
async fn report(backup: &BackupApp, token: &str, job_id: &str) -> Vec<Value> {
    let response = backup
        .app
        .get(&format!("/jobs/{job_id}/files/report.ndjson.gz"), token)
        .await;
    assert_eq!(response.status(), 200);
    let gzip = response.bytes().await.unwrap();
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gzip[..]))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// Each record's restored fields, by id.
fn by_id(records: &[Value]) -> HashMap<String, Value> {
    records
        .iter()
        .map(|r| {
            let fields: serde_json::Map<String, Value> = FIELDS
                .iter()
                .map(|f| ((*f).to_owned(), r.get(*f).cloned().unwrap_or(Value::Null)))
                .collect();
            (r["id"].as_str().unwrap().to_owned(), Value::Object(fields))
        })
        .collect()
}

#[tokio::test]
async fn a_stripe_backup_is_planned_restored_and_backed_up_again_equal() {
    let backup = BackupApp::spawn().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 30);
    let token = backup.app.owner("acme");
    let source_id = stripe_source(&backup.app, &token, "Stripe", &["customers"], false).await;
    let snapshot = sync(&backup.app, &token, &source_id).await;
    assert_eq!(
        backup.finished(&token, &snapshot).await["status"],
        "succeeded"
    );
    let backed_up = backup.stored("acme", &source_id, &snapshot, "customers");
    assert_eq!(backed_up.len(), 30);
    let ids: Vec<String> = backed_up
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    // Three customers deleted, two altered on the platform.
    for id in &ids[..3] {
        stripe(
            &backup,
            reqwest::Method::DELETE,
            &format!("/customers/{id}"),
            &[],
        )
        .await;
    }
    for id in &ids[3..5] {
        let path = format!("/customers/{id}");
        stripe(
            &backup,
            reqwest::Method::POST,
            &path,
            &[("name", "Someone Else")],
        )
        .await;
    }

    // A dry run plans it and writes nothing.
    let dry = restore_when_free(&backup, &token, &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["customers"], "mode": "overwrite", "dryRun": true})).await;
    let dry_id = dry["jobId"].as_str().unwrap();
    let done = backup.finished(&token, dry_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["restore"]["created"], 3, "{done}");
    assert_eq!(done["restore"]["updated"], 2, "{done}");
    assert_eq!(done["restore"]["skipped"], 25, "{done}");
    assert_eq!(done["restore"]["failed"], 0, "{done}");
    let plan = report(&backup, &token, dry_id).await;
    assert_eq!(plan.len(), 30);
    let action = |lines: &[Value], id: &str| {
        lines
            .iter()
            .find(|l| l["oldId"] == id)
            .unwrap_or_else(|| panic!("{id}"))["action"]
            .clone()
    };
    for id in &ids[..3] {
        assert_eq!(action(&plan, id), "create");
    }
    for id in &ids[3..5] {
        assert_eq!(action(&plan, id), "update");
    }
    assert_eq!(action(&plan, &ids[7]), "skip");
    assert!(
        plan.iter()
            .all(|l| l["newId"].is_null() || l["action"] == "update"),
        "nothing written"
    );
    assert_eq!(
        backup.api.listing_ids("stripe", "customers").len(),
        27,
        "nothing was written"
    );
    // The restore job is a job: its stream, and not a backup retention or snapshots count.
    let types = backup.app.event_types(dry_id).await;
    assert!(types.contains(&"RecordsRestored".to_owned()), "{types:?}");

    // Overwrite: the deleted ones created again under new ids, the altered ones put back.
    let overwrite = restore_when_free(&backup, &token, &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["customers"], "mode": "overwrite", "dryRun": false})).await;
    let overwrite_id = overwrite["jobId"].as_str().unwrap();
    let done = backup.finished(&token, overwrite_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        (
            done["restore"]["created"].as_u64(),
            done["restore"]["updated"].as_u64()
        ),
        (Some(3), Some(2)),
        "{done}"
    );
    let lines = report(&backup, &token, overwrite_id).await;
    let mut new_ids = HashMap::new();
    for id in &ids[..3] {
        let line = lines.iter().find(|l| l["oldId"] == id.as_str()).unwrap();
        let new_id = line["newId"].as_str().unwrap().to_owned();
        assert_ne!(&new_id, id, "Stripe chooses a new id");
        assert!(new_id.starts_with("cus_"), "{new_id}");
        new_ids.insert(id.clone(), new_id);
    }

    // Backed up again, the data equals the snapshot, the re-created customers under their new ids.
    let again = sync_when_free(&backup.app, &token, &source_id).await;
    assert_eq!(backup.finished(&token, &again).await["status"], "succeeded");
    let now = by_id(&backup.stored("acme", &source_id, &again, "customers"));
    let then = by_id(&backed_up);
    assert_eq!(now.len(), 30);
    for (id, fields) in &then {
        let current = new_ids.get(id).unwrap_or(id);
        assert_eq!(now.get(current), Some(fields), "{id} (now {current})");
    }

    // Missing: only what was deleted since `again` comes back; an altered customer is left alone.
    stripe(
        &backup,
        reqwest::Method::DELETE,
        &format!("/customers/{}", ids[10]),
        &[],
    )
    .await;
    let altered = format!("/customers/{}", ids[11]);
    stripe(
        &backup,
        reqwest::Method::POST,
        &altered,
        &[("email", "changed@example.com")],
    )
    .await;
    let missing = restore_when_free(
        &backup,
        &token,
        &source_id,
        json!({"snapshot": again, "dataTypes": ["customers"], "mode": "missing", "dryRun": false,
               "recordIds": [ids[10], ids[11], ids[12]]}),
    )
    .await;
    let done = backup
        .finished(&token, missing["jobId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["restore"]["created"], 1, "{done}");
    assert_eq!(done["restore"]["skipped"], 2, "{done}");
    assert_eq!(backup.api.listing_ids("stripe", "customers").len(), 30);
    backup.stop().await;
}

#[tokio::test]
async fn a_restore_is_refused_for_what_cannot_be_written_and_for_others() {
    let backup = BackupApp::spawn().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 5);
    let token = backup.app.owner("acme");
    let source_id = stripe_source(
        &backup.app,
        &token,
        "Stripe",
        &["customers", "charges"],
        false,
    )
    .await;
    let snapshot = sync(&backup.app, &token, &source_id).await;
    backup.finished(&token, &snapshot).await;

    // The catalog says what a restore can write.
    let stripe_catalog: Value = backup
        .app
        .get("/platforms/stripe", &token)
        .await
        .json()
        .await
        .unwrap();
    let writable = |name: &str| {
        stripe_catalog["dataTypes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()["writable"]
            .clone()
    };
    assert_eq!(writable("customers"), true);
    assert_eq!(writable("charges"), false);

    let body = |data_types: Value| json!({"snapshot": snapshot, "dataTypes": data_types, "mode": "missing", "dryRun": true});
    let (status, problem) = restore(&backup, &token, &source_id, body(json!(["charges"]))).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "dataTypes", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("charges"),
        "{problem}"
    );

    // A snapshot that is no backup of this source.
    let other_job = uuid::Uuid::now_v7().to_string();
    let (status, problem) = restore(&backup, &token, &source_id,
        json!({"snapshot": other_job, "dataTypes": ["customers"], "mode": "missing", "dryRun": true})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "snapshot", "{problem}");

    // A viewer may not restore; another account's source is not found, as a missing one.
    let viewer = backup
        .app
        .token("acme", &[listbackup_api::auth::Role::Viewer]);
    let (status, _) = restore(&backup, &viewer, &source_id, body(json!(["customers"]))).await;
    assert_eq!(status, 403);
    let other = backup.app.owner("globex");
    let (status, theirs) = restore(&backup, &other, &source_id, body(json!(["customers"]))).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let (missing_status, missing_problem) =
        restore(&backup, &other, &missing, body(json!(["customers"]))).await;
    assert_eq!((status, missing_status), (404, 404));
    assert_eq!(theirs["detail"], missing_problem["detail"]);
    backup.stop().await;
}

#[tokio::test]
async fn a_restore_in_flight_is_cancelled() {
    let backup = BackupApp::spawn().await;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 20);
    let token = backup.app.owner("acme");
    let source_id = stripe_source(&backup.app, &token, "Stripe", &["customers"], false).await;
    let snapshot = sync(&backup.app, &token, &source_id).await;
    backup.finished(&token, &snapshot).await;

    // The platform holds every request from now on: the restore is stuck listing the customers.
    backup.api.hold_after(0);
    let job = restore_when_free(&backup, &token, &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["customers"], "mode": "overwrite", "dryRun": false})).await;
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(30),
        "the restore to wait on the platform",
        || async {
            backup.api.held() > 0 && backup.job(&token, &job_id).await["status"] == "running"
        },
    )
    .await;
    let response = backup
        .app
        .post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    backup.api.release();
    let done = backup.finished(&token, &job_id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    // No report is left: a cancelled restore's files are discarded like a backup's.
    let files = backup
        .app
        .get(&format!("/jobs/{job_id}/files"), &token)
        .await;
    let files: Value = files.json().await.unwrap();
    assert!(
        files.to_string().find("report.ndjson.gz").is_none(),
        "{files}"
    );
    backup.stop().await;
}
