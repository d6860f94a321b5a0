//! Per-data-type outcomes and partial jobs (issue 9, item 6), black-box against the real service and the local
//! Stripe emulation: a data type that fails does not throw the others away, a partial job keeps its good files
//! and manifest, its retry runs only the failed data types the retry rule allows, and incremental cursors
//! advance only for the data types that were backed up.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::backup::{gunzip_lines, stripe_source, sync, sync_when_free, BackupApp};
use support::{problem_code, wait_until, TestApp};

/// Stripe's default data types, as the catalog lists them.
const STRIPE_DEFAULTS: [&str; 14] = [
    "customers",
    "charges",
    "invoices",
    "subscriptions",
    "products",
    "prices",
    "payment_intents",
    "refunds",
    "disputes",
    "payouts",
    "balance_transactions",
    "events",
    "coupons",
    "credit_notes",
];

fn data_type<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not among the job's data types: {job}"))
}

fn names(job: &Value) -> Vec<String> {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

fn with_status(job: &Value, status: &str) -> Vec<String> {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == status)
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn json_of(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Waits until the source is free again (the saga recorded SyncFinished) and the source's read model has
/// projected every event of its stream, so that what the API answers no longer depends on timing.
async fn settled(app: &TestApp, token: &str, source_id: &str) {
    let db = app.db.connect().await;
    wait_until(Duration::from_secs(10), "the source to settle", || async {
        let last: i64 = db
            .query_one(
                "SELECT COALESCE(max(sequence), 0) FROM events WHERE aggregate_id = $1",
                &[&source_id],
            )
            .await
            .unwrap()
            .get(0);
        let view = json_of(app.get(&format!("/sources/{source_id}"), token).await).await;
        let finished = app
            .event_types(source_id)
            .await
            .last()
            .is_some_and(|t| t == "SyncFinished");
        finished && view["version"].as_i64() == Some(last)
    })
    .await;
}

/// `POST /jobs/{id}/retry` → (status, body).
async fn retry(app: &TestApp, token: &str, job_id: &str) -> (u16, Value) {
    let response = app
        .post(&format!("/jobs/{job_id}/retry"), token, &json!({}))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The job's manifest, downloaded through the API.
async fn manifest(app: &TestApp, token: &str, job_id: &str) -> Value {
    let response = app
        .get(&format!("/jobs/{job_id}/files/manifest.json"), token)
        .await;
    assert_eq!(response.status(), 200);
    serde_json::from_slice(&response.bytes().await.unwrap()).unwrap()
}

fn manifest_file<'a>(manifest: &'a Value, data_type: &str) -> &'a Value {
    manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["dataType"] == data_type)
        .unwrap_or_else(|| panic!("no file of {data_type} in {manifest}"))
}

/// Every row of the job and source read models, as JSON text.
async fn read_models(app: &TestApp) -> Vec<String> {
    let db = app.db.connect().await;
    let mut rows = Vec::new();
    for table in ["read_jobs", "read_sources"] {
        let found = db
            .query(
                &format!("SELECT row_to_json(t)::text FROM {table} t ORDER BY 1"),
                &[],
            )
            .await
            .unwrap();
        rows.extend(found.iter().map(|r| r.get::<_, String>(0)));
    }
    rows
}

#[tokio::test]
async fn two_endpoints_answering_404_leave_a_partial_job_with_its_twelve_good_data_types() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 250);
    backup.api.seed("stripe", "invoices", 30);
    backup.api.seed("stripe", "events", 40);
    backup.api.seed("stripe", "disputes", 3);
    // The account cannot use these two endpoints: every request answers 404.
    backup.api.fail_path("/stripe/v1/disputes", 404);
    backup.api.fail_path("/stripe/v1/payouts", 404);
    let token = app.owner("acme");
    // The input: a source with Stripe's 14 default data types.
    let connection = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let response = app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection["connectionId"], "name": "Stripe"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap().to_owned();
    assert_eq!(source["dataTypes"], json!(STRIPE_DEFAULTS));

    let job_id = sync(app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(names(&job), STRIPE_DEFAULTS);
    let mut failed = with_status(&job, "failed");
    failed.sort();
    assert_eq!(failed, ["disputes", "payouts"]);
    assert_eq!(with_status(&job, "done").len(), 12, "{job}");
    assert!(with_status(&job, "pending").is_empty());
    for name in ["disputes", "payouts"] {
        let entry = data_type(&job, name);
        assert_eq!(entry["error"]["code"], "PLATFORM_ERROR", "{entry}");
        assert_eq!(entry["error"]["retryable"], false);
        assert!(
            entry["error"]["message"].as_str().unwrap().contains("404"),
            "{entry}"
        );
        assert_eq!(entry["records"], 0);
    }
    assert_eq!(data_type(&job, "customers")["error"], Value::Null);
    assert_eq!(data_type(&job, "customers")["records"], 250);
    // The job's error sums the failures up.
    assert_eq!(job["error"]["code"], "PLATFORM_ERROR", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("2 of 14 data types failed") && message.contains("disputes"),
        "{message}"
    );
    assert_eq!(job["progress"]["records"], 250 + 30 + 40);
    assert_eq!(job["progress"]["percent"], 100);
    assert!(job["finishedAt"].is_string());

    // The twelve data types' files and the manifest are kept and downloadable.
    let listed = json_of(app.get(&format!("/jobs/{job_id}/files"), &token).await).await;
    let files: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 13, "{listed}");
    assert!(files.contains(&"customers.ndjson.gz") && files.contains(&"manifest.json"));
    assert!(!files.contains(&"disputes.ndjson.gz") && !files.contains(&"payouts.ndjson.gz"));
    let response = app
        .get(&format!("/jobs/{job_id}/files/customers.ndjson.gz"), &token)
        .await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    let mut downloaded: Vec<String> = {
        use std::io::BufRead;
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&body[..]))
            .lines()
            .map(|l| {
                let record: Value = serde_json::from_str(&l.unwrap()).unwrap();
                record["id"].as_str().unwrap().to_owned()
            })
            .collect()
    };
    let mut seeded = backup.api.listing_ids("stripe", "customers");
    downloaded.sort();
    seeded.sort();
    assert_eq!(downloaded, seeded);
    let response = app
        .get(&format!("/jobs/{job_id}/files/disputes.ndjson.gz"), &token)
        .await;
    assert_eq!(response.status(), 404);
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    assert!(!dir.join("disputes.ndjson.gz").exists());
    assert_eq!(gunzip_lines(&dir.join("invoices.ndjson.gz")).len(), 30);

    // The manifest lists the two failures with their code and message, and is the one the job names.
    let manifest_bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    let manifest_sha = {
        use sha2::Digest;
        sha2::Sha256::digest(&manifest_bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(job["manifestSha256"], manifest_sha.as_str());
    let manifest = manifest(app, &token, &job_id).await;
    assert_eq!(manifest["files"].as_array().unwrap().len(), 12);
    let failures = manifest["failedDataTypes"].as_array().unwrap();
    let listed: Vec<&str> = failures
        .iter()
        .map(|f| f["dataType"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["disputes", "payouts"], "in the job's order");
    for failure in failures {
        assert_eq!(failure["code"], "PLATFORM_ERROR");
        assert!(failure["message"].as_str().unwrap().contains("404"));
    }
    assert_eq!(manifest["records"], 250 + 30 + 40);

    // `?status=partial` finds it; `succeeded` and `failed` do not.
    let page = json_of(app.get("/jobs?status=partial", &token).await).await;
    assert_eq!(page["jobs"][0]["jobId"], job_id.as_str(), "{page}");
    for other in ["succeeded", "failed"] {
        let page = json_of(app.get(&format!("/jobs?status={other}"), &token).await).await;
        assert_eq!(page["jobs"], json!([]), "{other}");
    }

    // The event log: each data type's outcome, then the partial end; the source took it as `partial`.
    let events = app.event_types(&job_id).await;
    assert_eq!(
        events.iter().filter(|t| *t == "ResourceBackedUp").count(),
        12
    );
    assert_eq!(
        events
            .iter()
            .filter(|t| *t == "ResourceBackupFailed")
            .count(),
        2
    );
    assert_eq!(events.last().unwrap(), "JobPartiallySucceeded");
    settled(app, &token, &source_id).await;
    let db = app.db.connect().await;
    let outcome: String = db
        .query_one(
            "SELECT payload -> 'SyncFinished' ->> 'outcome' FROM events \
             WHERE aggregate_id = $1 AND event_type = 'SyncFinished'",
            &[&source_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "partial");

    // A 404 is not retryable, and no change a user can make is known to fix it: the retry is refused.
    let (status, problem) = retry(app, &token, &job_id).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "CONFLICT");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("PLATFORM_ERROR is not retryable") && detail.contains("disputes, payouts"),
        "{detail}"
    );

    // The read models are what the event log says: a rebuild reproduces them row for row.
    let live = read_models(app).await;
    app.db.rebuild_projections().await;
    assert_eq!(read_models(app).await, live);

    // The OpenAPI document names the new status.
    let spec: Value = app.openapi().await;
    let status_doc = spec["components"]["schemas"]["JobView"]["properties"]["status"].to_string();
    assert!(status_doc.contains("partial"), "{status_doc}");
    let params = spec["paths"]["/jobs"]["get"]["parameters"].to_string();
    assert!(params.contains("partial"), "{params}");
    let error = &spec["components"]["schemas"]["DataTypeError"];
    assert!(error["properties"]["retryable"].is_object(), "{error}");
    backup.stop().await;
}

#[tokio::test]
async fn a_retryable_failure_is_retried_alone_and_cursors_advance_only_for_what_was_backed_up() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "balance_transactions", 20);
    backup.api.seed("stripe", "events", 30);
    // Answers 500 to every request, whatever the retries, until it recovers.
    backup.api.fail_path("/stripe/v1/balance_transactions", 500);
    let token = app.owner("acme");
    let source_id = stripe_source(
        app,
        &token,
        "Stripe log",
        &["balance_transactions", "events"],
        true,
    )
    .await;

    let first = sync(app, &token, &source_id).await;
    let job = backup.finished(&token, &first).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(with_status(&job, "done"), ["events"]);
    let failed = data_type(&job, "balance_transactions");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "PLATFORM_ERROR");
    assert_eq!(failed["error"]["retryable"], true, "{failed}");
    assert_eq!(job["error"]["retryable"], true);
    assert!(
        backup.api.hits("/stripe/v1/balance_transactions") > 1,
        "a 5xx is retried before the data type fails"
    );
    // Only the backed-up data type has a cursor to continue from.
    let first_manifest = manifest(app, &token, &first).await;
    let events_cursor = first_manifest["cursors"]["events"].clone();
    assert!(events_cursor.is_object(), "{first_manifest}");
    assert_eq!(
        first_manifest["cursors"].get("balance_transactions"),
        None,
        "{first_manifest}"
    );

    // The endpoint recovers; more of both happens meanwhile.
    backup.api.recover_path("/stripe/v1/balance_transactions");
    backup.api.append("stripe", "balance_transactions", 5);
    backup.api.append("stripe", "events", 5);
    settled(app, &token, &source_id).await;
    let events_hits = backup.api.hits("/stripe/v1/events");

    // The retry runs the failed data type only.
    let (status, retried) = retry(app, &token, &first).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(retried["trigger"], "retry");
    assert_eq!(retried["retryOf"], first.as_str());
    assert_eq!(names(&retried), ["balance_transactions"], "{retried}");
    let second = retried["jobId"].as_str().unwrap().to_owned();
    let job = backup.finished(&token, &second).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(names(&job), ["balance_transactions"]);
    assert_eq!(data_type(&job, "balance_transactions")["records"], 25);
    assert_eq!(job["progress"]["dataTypesTotal"], 1);
    assert_eq!(
        backup.api.hits("/stripe/v1/events"),
        events_hits,
        "events was not fetched again"
    );
    // balance_transactions had no cursor (its first backup failed): fetched whole.
    let query = backup
        .api
        .last_query("/stripe/v1/balance_transactions")
        .unwrap();
    assert!(!query.contains("created"), "{query}");
    let second_manifest = manifest(app, &token, &second).await;
    assert_eq!(
        manifest_file(&second_manifest, "balance_transactions").get("since"),
        None
    );
    let balance_cursor = second_manifest["cursors"]["balance_transactions"].clone();
    assert!(balance_cursor.is_object(), "{second_manifest}");
    assert!(second_manifest.get("failedDataTypes").is_none());

    // The next backup continues each data type from its own last backup: events from the first job (the retry
    // did not touch its cursor), balance_transactions from the retry.
    let third = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &third).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let third_manifest = manifest(app, &token, &third).await;
    assert_eq!(
        manifest_file(&third_manifest, "events")["since"],
        events_cursor
    );
    assert_eq!(
        manifest_file(&third_manifest, "balance_transactions")["since"],
        balance_cursor
    );
    for path in ["/stripe/v1/events", "/stripe/v1/balance_transactions"] {
        let query = backup.api.last_query(path).unwrap();
        assert!(query.contains("created"), "{path}: {query}");
    }
    // Only a failed, partial or cancelled job may be retried.
    let (status, problem) = retry(app, &token, &second).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("succeeded"),
        "{problem}"
    );

    settled(app, &token, &source_id).await;
    let live = read_models(app).await;
    app.db.rebuild_projections().await;
    assert_eq!(read_models(app).await, live);
    backup.stop().await;
}

/// Replaces the connection's key (`PUT /connections/{id}`).
async fn replace_key(app: &TestApp, token: &str, connection_id: &str, key: &str) {
    let response = app
        .put(
            &format!("/connections/{connection_id}"),
            token,
            &json!({"credentials": {"secretKey": key}}),
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn test_connection(app: &TestApp, token: &str, connection_id: &str) -> bool {
    let result = json_of(
        app.post(
            &format!("/connections/{connection_id}/test"),
            token,
            &json!({}),
        )
        .await,
    )
    .await;
    result["ok"].as_bool().unwrap()
}

#[tokio::test]
async fn a_revoked_key_fails_the_job_and_its_retry_waits_until_the_connection_is_fixed() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 5);
    backup.api.seed("stripe", "invoices", 5);
    let token = app.owner("acme");
    let source_id = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;
    let source = json_of(app.get(&format!("/sources/{source_id}"), &token).await).await;
    let connection_id = source["connectionId"].as_str().unwrap().to_owned();
    let job = backup
        .finished(&token, &sync(app, &token, &source_id).await)
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The key is revoked: the connection fails as a whole, so the second data type is not even asked for.
    backup.api.revoke("stripe", "sk_test_1");
    let invoices_hits = backup.api.hits("/stripe/v1/invoices");
    let failed_id = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &failed_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    assert!(!job["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sk_test_1"));
    assert_eq!(with_status(&job, "failed"), ["customers", "invoices"]);
    assert_eq!(data_type(&job, "invoices")["error"]["code"], "UNAUTHORIZED");
    assert_eq!(backup.api.hits("/stripe/v1/invoices"), invoices_hits);
    let listed = json_of(app.get(&format!("/jobs/{failed_id}/files"), &token).await).await;
    assert_eq!(listed["files"], json!([]));
    settled(app, &token, &source_id).await;

    // Retrying cannot help until the connection's credentials are fixed; a failing test changes nothing.
    let (status, problem) = retry(app, &token, &failed_id).await;
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("UNAUTHORIZED") && detail.contains("PUT /connections/{id}"),
        "{detail}"
    );
    assert!(!test_connection(app, &token, &connection_id).await);
    let (status, _) = retry(app, &token, &failed_id).await;
    assert_eq!(status, 409);

    // New credentials: the retry is accepted, runs the failed data types, and succeeds.
    backup.api.accept("stripe", "sk_test_2");
    replace_key(app, &token, &connection_id, "sk_test_2").await;
    let (status, retried) = retry(app, &token, &failed_id).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(names(&retried), ["customers", "invoices"]);
    let job = backup
        .finished(&token, retried["jobId"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");

    // The other way to show the fix: the key works again on the platform and a connection test says so.
    backup.api.revoke("stripe", "sk_test_2");
    let failed_id = sync_when_free(app, &token, &source_id).await;
    let job = backup.finished(&token, &failed_id).await;
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    settled(app, &token, &source_id).await;
    let (status, _) = retry(app, &token, &failed_id).await;
    assert_eq!(status, 409);
    backup.api.accept("stripe", "sk_test_2");
    assert!(test_connection(app, &token, &connection_id).await);
    let (status, retried) = retry(app, &token, &failed_id).await;
    assert_eq!(status, 202, "{retried}");
    let job = backup
        .finished(&token, retried["jobId"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    backup.stop().await;
}

#[tokio::test]
async fn a_key_revoked_mid_run_keeps_what_was_backed_up_and_fails_the_rest_with_it() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 5);
    backup.api.seed("stripe", "products", 5);
    let token = app.owner("acme");
    let source_id = stripe_source(
        app,
        &token,
        "Stripe",
        &["customers", "invoices", "products"],
        false,
    )
    .await;
    // customers fits one page: its request passes, the next one (invoices) waits until the key is revoked.
    backup.api.hold_after(1);
    let job_id = sync(app, &token, &source_id).await;
    wait_until(Duration::from_secs(30), "the second request", || async {
        backup.api.held() == 1
    })
    .await;
    backup.api.revoke("stripe", "sk_test_1");
    backup.api.release();

    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(with_status(&job, "done"), ["customers"]);
    assert_eq!(with_status(&job, "failed"), ["invoices", "products"]);
    assert_eq!(data_type(&job, "products")["error"]["code"], "UNAUTHORIZED");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED");
    assert_eq!(
        backup.api.hits("/stripe/v1/products"),
        0,
        "the connection had failed: not asked"
    );
    let listed = json_of(app.get(&format!("/jobs/{job_id}/files"), &token).await).await;
    let files: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["customers.ndjson.gz", "manifest.json"]);

    // The same rule over the failed data types: not before the connection is fixed, then only those.
    settled(app, &token, &source_id).await;
    let (status, problem) = retry(app, &token, &job_id).await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("(invoices, products)"),
        "{problem}"
    );
    let source = json_of(app.get(&format!("/sources/{source_id}"), &token).await).await;
    backup.api.accept("stripe", "sk_test_2");
    replace_key(
        app,
        &token,
        source["connectionId"].as_str().unwrap(),
        "sk_test_2",
    )
    .await;
    // One of the two is deselected meanwhile: the retry runs the other.
    let response = app
        .put(
            &format!("/sources/{source_id}"),
            &token,
            &json!({"dataTypes": ["customers", "products"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (status, retried) = retry(app, &token, &job_id).await;
    assert_eq!(status, 202, "{retried}");
    assert_eq!(names(&retried), ["products"]);
    assert_eq!(retried["progress"]["dataTypesTotal"], 1);
    let job = backup
        .finished(&token, retried["jobId"].as_str().unwrap())
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(data_type(&job, "products")["records"], 5);

    // Both failed data types deselected since: nothing is left to retry.
    settled(app, &token, &source_id).await;
    let response = app
        .put(
            &format!("/sources/{source_id}"),
            &token,
            &json!({"dataTypes": ["customers"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let (status, problem) = problem_code(
        app.post(&format!("/jobs/{job_id}/retry"), &token, &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("no longer selected"),
        "{problem}"
    );
    backup.stop().await;
}
