//! The jobs API as a REST client sees it (issue 5): sync requests queue jobs (202), one queued or running job
//! per source (409), group syncs, and the job read model's lists and filters. No backup worker runs in these
//! tests (no storage configured), so every job stays `queued`; [`BackupApp`] adds storage, which starts
//! the backup worker, and a local Stripe emulation.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::backup::{gunzip_lines, stripe_source, BackupApp};
use support::{problem_code, wait_until, TestApp};

/// A Stripe source of customers and invoices.
async fn source(app: &TestApp, token: &str, name: &str) -> String {
    stripe_source(app, token, name, &["customers", "invoices"], false).await
}

async fn sync(app: &TestApp, token: &str, source_id: &str) -> reqwest::Response {
    app.post(&format!("/sources/{source_id}/sync"), token, &json!({}))
        .await
}

/// A source group named `name` holding `members`: its id.
async fn group(app: &TestApp, token: &str, name: &str, members: &[&str]) -> String {
    let group: Value = app
        .post("/source-groups", token, &json!({"name": name}))
        .await
        .json()
        .await
        .unwrap();
    let group_id = group["groupId"].as_str().unwrap().to_owned();
    for member in members {
        let response = app
            .post(
                &format!("/source-groups/{group_id}/sources"),
                token,
                &json!({"sourceId": member}),
            )
            .await;
        assert!(response.status().is_success());
    }
    group_id
}

/// `POST /source-groups/{group_id}/sync` → (status, body).
async fn sync_group(app: &TestApp, token: &str, group_id: &str) -> (u16, Value) {
    let response = app
        .post(
            &format!("/source-groups/{group_id}/sync"),
            token,
            &json!({}),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

fn job_ids(page: &Value) -> Vec<String> {
    page["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["jobId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_sync_request_queues_a_job_and_a_second_one_conflicts() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source_id = source(&app, &token, "Stripe").await;

    let response = sync(&app, &token, &source_id).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&job_id).unwrap().get_version_num(), 7);
    assert_eq!(job["status"], "queued");
    assert_eq!(job["trigger"], "manual");
    assert_eq!(job["sourceId"], source_id.as_str());
    assert_eq!(job["platformId"], "stripe");
    assert_eq!(job["attempt"], 0);
    assert_eq!(job["retryOf"], Value::Null);
    assert_eq!(job["startedAt"], Value::Null);
    assert!(job["queuedAt"].is_string());

    // Read-your-writes: the job is there right away.
    let response = app.get(&format!("/jobs/{job_id}"), &token).await;
    assert_eq!(response.status(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got, job);

    let (status, problem) = problem_code(sync(&app, &token, &source_id).await).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "CONFLICT");
    let (status, _) = problem_code(
        app.post("/jobs", &token, &json!({"sourceId": source_id}))
            .await,
    )
    .await;
    assert_eq!(status, 409);

    // Another account sees neither the source nor the job.
    let other = app.owner("globex");
    assert_eq!(sync(&app, &other, &source_id).await.status(), 404);
    assert_eq!(
        app.get(&format!("/jobs/{job_id}"), &other).await.status(),
        404
    );
    app.stop().await;
}

#[tokio::test]
async fn post_jobs_queues_like_a_source_sync_and_lists_filter() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let first = source(&app, &token, "Stripe one").await;
    let second = source(&app, &token, "Stripe two").await;

    let response = app.post("/jobs", &token, &json!({"sourceId": first})).await;
    assert_eq!(response.status(), 202);
    let a: Value = response.json().await.unwrap();
    let b: Value = sync(&app, &token, &second).await.json().await.unwrap();
    let (a, b) = (a["jobId"].as_str().unwrap(), b["jobId"].as_str().unwrap());

    let page: Value = app.get("/jobs", &token).await.json().await.unwrap();
    assert_eq!(job_ids(&page), vec![b, a], "newest first");
    let page: Value = app
        .get(&format!("/jobs?sourceId={first}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job_ids(&page), vec![a]);
    let page: Value = app
        .get("/jobs?status=queued&limit=1", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job_ids(&page), vec![b]);
    let cursor = page["nextCursor"].as_str().unwrap();
    let page: Value = app
        .get(
            &format!("/jobs?status=queued&limit=1&cursor={cursor}"),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job_ids(&page), vec![a]);
    assert_eq!(page["nextCursor"], Value::Null);
    let page: Value = app
        .get("/jobs?status=running", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(job_ids(&page).is_empty());

    let (status, problem) = problem_code(app.get("/jobs?status=done", &token).await).await;
    assert_eq!(status, 400, "{problem}");
    let (status, _) = problem_code(app.get("/jobs?colour=red", &token).await).await;
    assert_eq!(status, 400);
    let (status, _) = problem_code(
        app.post("/jobs", &token, &json!({"sourceId": first, "extra": 1}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = problem_code(
        app.post(
            "/jobs",
            &token,
            &json!({"sourceId": uuid::Uuid::now_v7().to_string()}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let viewer = app.token("acme", &[listbackup_api::auth::Role::Viewer]);
    assert_eq!(sync(&app, &viewer, &first).await.status(), 403);
    app.stop().await;
}

#[tokio::test]
async fn a_group_sync_queues_one_job_per_active_member() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let active = source(&app, &token, "Stripe active").await;
    let paused = source(&app, &token, "Stripe paused").await;
    let busy = source(&app, &token, "Stripe busy").await;
    let response = app
        .put(
            &format!("/sources/{paused}"),
            &token,
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let busy_job: Value = sync(&app, &token, &busy).await.json().await.unwrap();

    let group_id = group(&app, &token, "All Stripe", &[&active, &paused, &busy]).await;
    let (status, body) = sync_group(&app, &token, &group_id).await;
    assert_eq!(status, 202);
    let jobs = body["jobs"].as_array().unwrap();
    // The paused member is skipped; the busy one keeps the job it has.
    assert_eq!(jobs.len(), 1, "{body}");
    assert_eq!(jobs[0]["sourceId"], active.as_str());
    assert_eq!(jobs[0]["trigger"], "group");
    assert_eq!(jobs[0]["groupId"], group_id);
    assert_eq!(jobs[0]["status"], "queued");

    let page: Value = app
        .get(&format!("/jobs?groupId={group_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(job_ids(&page), vec![jobs[0]["jobId"].as_str().unwrap()]);
    assert_ne!(busy_job["jobId"], jobs[0]["jobId"]);

    let missing = uuid::Uuid::now_v7();
    let (status, _) = problem_code(
        app.post(
            &format!("/source-groups/{missing}/sync"),
            &token,
            &json!({}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn a_stripe_source_is_backed_up_end_to_end() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 250);
    backup.api.seed("stripe", "invoices", 30);
    let token = app.owner("acme");
    let source_id = source(app, &token, "Stripe").await;

    let response = sync(app, &token, &source_id).await;
    assert_eq!(response.status(), 202);
    let queued: Value = response.json().await.unwrap();
    // The 202 shows the job as read back after the request; a fast worker may have started it already.
    assert!(
        ["queued", "running", "succeeded"].contains(&queued["status"].as_str().unwrap()),
        "{queued}"
    );
    let job_id = queued["jobId"].as_str().unwrap().to_owned();

    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempt"], 1);
    assert!(job["startedAt"].is_string() && job["finishedAt"].is_string());
    assert_eq!(job["error"], Value::Null);
    let types = job["dataTypes"].as_array().unwrap();
    let by_name = |name: &str| types.iter().find(|t| t["name"] == name).unwrap().clone();
    assert_eq!(by_name("customers")["records"], 250);
    assert_eq!(by_name("customers")["status"], "done");
    assert_eq!(by_name("invoices")["records"], 30);
    assert_eq!(job["progress"]["records"], 280);
    assert_eq!(job["progress"]["percent"], 100);

    // The artifacts, in the DESIGN §6 layout.
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    let customers = gunzip_lines(&dir.join("customers.ndjson.gz"));
    let mut stored: Vec<String> = customers
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let mut seeded = backup.api.listing_ids("stripe", "customers");
    stored.sort();
    seeded.sort();
    assert_eq!(stored, seeded);
    let file_sha = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(support::backup::stored_plaintext(
            &dir.join("customers.ndjson.gz"),
        )))
    };
    assert_eq!(by_name("customers")["sha256"], file_sha.as_str());
    let manifest_bytes = std::fs::read(dir.join("manifest.json")).unwrap();
    let manifest_sha = {
        use sha2::Digest;
        hex(&sha2::Sha256::digest(&manifest_bytes))
    };
    assert_eq!(job["manifestSha256"], manifest_sha.as_str());
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["records"], 280);
    assert_eq!(manifest["files"].as_array().unwrap().len(), 2);

    // The same through the API: the file list and streamed downloads.
    let response = app.get(&format!("/jobs/{job_id}/files"), &token).await;
    assert_eq!(response.status(), 200);
    let listed: Value = response.json().await.unwrap();
    let names: Vec<&str> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["customers.ndjson.gz", "invoices.ndjson.gz", "manifest.json"]
    );
    assert_eq!(listed["files"][0]["records"], 250);
    assert_eq!(listed["files"][2]["sha256"], manifest_sha.as_str());
    let response = app
        .get(&format!("/jobs/{job_id}/files/customers.ndjson.gz"), &token)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/gzip");
    let body = response.bytes().await.unwrap();
    let downloaded: Vec<Value> = {
        use std::io::BufRead;
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&body[..]))
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
    };
    assert_eq!(downloaded, customers);
    let response = app
        .get(&format!("/jobs/{job_id}/files/manifest.json"), &token)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), manifest_bytes);
    for missing in ["orders.ndjson.gz", "..%2Fmanifest.json"] {
        let response = app
            .get(&format!("/jobs/{job_id}/files/{missing}"), &token)
            .await;
        assert_eq!(response.status(), 404, "{missing}");
    }
    let other = app.owner("globex");
    let response = app.get(&format!("/jobs/{job_id}/files"), &other).await;
    assert_eq!(response.status(), 404);

    // SyncFinished freed the source: the next sync is accepted.
    wait_until(Duration::from_secs(10), "the source to be free", || async {
        sync(app, &token, &source_id).await.status() == 202
    })
    .await;
    backup.stop().await;
}

#[tokio::test]
async fn a_rejected_key_fails_the_job_and_frees_the_source() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.seed("stripe", "customers", 5);
    // The key is never accepted: the platform answers 401.
    let token = app.owner("acme");
    let source_id = source(app, &token, "Stripe").await;
    let queued: Value = sync(app, &token, &source_id).await.json().await.unwrap();
    let job_id = queued["jobId"].as_str().unwrap().to_owned();

    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    assert!(!job["error"]["message"].as_str().unwrap().is_empty());
    assert!(!job["error"]["message"]
        .as_str()
        .unwrap()
        .contains("sk_test_1"));
    // Nothing of the failed attempt is left looking like a backup.
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    assert!(!dir.join("manifest.json").exists());
    let listed: Value = app
        .get(&format!("/jobs/{job_id}/files"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["files"], json!([]));

    // Once the key is accepted and a connection test shows it (the retry rule: rejected credentials are
    // retried once the connection shows the fix), a retry (a new job, once SyncFinished freed the source)
    // succeeds.
    backup.api.accept("stripe", "sk_test_1");
    let source: Value = app
        .get(&format!("/sources/{source_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let tested: Value = app
        .post(
            &format!(
                "/connections/{}/test",
                source["connectionId"].as_str().unwrap()
            ),
            &token,
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    let cell = std::cell::RefCell::new(Value::Null);
    let (retried, token_ref, job_ref) = (&cell, &token, &job_id);
    wait_until(
        Duration::from_secs(10),
        "the source to be free",
        || async move {
            let response = app
                .post(&format!("/jobs/{job_ref}/retry"), token_ref, &json!({}))
                .await;
            if response.status() == 202 {
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                let job: Value = response.json().await.unwrap();
                // The new job's address.
                assert_eq!(
                    location,
                    format!("/jobs/{}", job["jobId"].as_str().unwrap())
                );
                *retried.borrow_mut() = job;
                true
            } else {
                assert_eq!(response.status(), 409);
                false
            }
        },
    )
    .await;
    let retried = cell.into_inner();
    assert_eq!(retried["trigger"], "retry");
    assert_eq!(retried["retryOf"], job_id.as_str());
    let retry_id = retried["jobId"].as_str().unwrap().to_owned();
    assert_ne!(retry_id, job_id);
    let retry = backup.finished(&token, &retry_id).await;
    assert_eq!(retry["status"], "succeeded", "{retry}");
    assert_eq!(retry["retryOf"], job_id.as_str());
    // Only a failed or cancelled job can be retried.
    let (status, problem) = problem_code(
        app.post(&format!("/jobs/{retry_id}/retry"), &token, &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    backup.stop().await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_queued_job_is_cancelled_at_once_and_can_be_retried() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source_id = source(&app, &token, "Stripe").await;
    let queued: Value = sync(&app, &token, &source_id).await.json().await.unwrap();
    let job_id = queued["jobId"].as_str().unwrap().to_owned();

    // Only a failed or cancelled job can be retried.
    let (status, _) = problem_code(
        app.post(&format!("/jobs/{job_id}/retry"), &token, &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 409);

    let response = app
        .post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["finishedAt"].is_string());
    let (status, problem) = problem_code(
        app.post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
            .await,
    )
    .await;
    assert_eq!(status, 409, "{problem}");
    let other = app.owner("globex");
    let response = app
        .post(&format!("/jobs/{job_id}/cancel"), &other, &json!({}))
        .await;
    assert_eq!(response.status(), 404);

    // SyncFinished (from the saga) frees the source; a retry is then a new job naming the cancelled one.
    let cell = std::cell::RefCell::new(Value::Null);
    let (retried, app_ref, token_ref, job_ref) = (&cell, &app, &token, &job_id);
    wait_until(
        Duration::from_secs(10),
        "the source to be free",
        || async move {
            let response = app_ref
                .post(&format!("/jobs/{job_ref}/retry"), token_ref, &json!({}))
                .await;
            if response.status() == 202 {
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                let job: Value = response.json().await.unwrap();
                // The new job's address.
                assert_eq!(
                    location,
                    format!("/jobs/{}", job["jobId"].as_str().unwrap())
                );
                *retried.borrow_mut() = job;
                true
            } else {
                assert_eq!(response.status(), 409);
                false
            }
        },
    )
    .await;
    let retried = cell.into_inner();
    assert_eq!(retried["status"], "queued");
    assert_eq!(retried["trigger"], "retry");
    assert_eq!(retried["retryOf"], job_id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_running_job_is_cancelled_by_its_worker() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    // Far more than the test waits for: the job is still running when the cancellation comes.
    backup.api.seed("stripe", "customers", 1_000_000);
    let token = app.owner("acme");
    let source_id = source(app, &token, "Stripe").await;
    let queued: Value = sync(app, &token, &source_id).await.json().await.unwrap();
    let job_id = queued["jobId"].as_str().unwrap().to_owned();
    wait_until(Duration::from_secs(30), "the job to run", || async {
        backup.job(&token, &job_id).await["status"] == "running"
    })
    .await;

    let response = app
        .post(&format!("/jobs/{job_id}/cancel"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    // Nothing half-written is left looking like a backup.
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    assert!(!dir.join("manifest.json").exists());
    assert!(!dir.join("customers.ndjson.gz").exists());
    wait_until(Duration::from_secs(10), "the source to be free", || async {
        sync(app, &token, &source_id).await.status() == 202
    })
    .await;
    backup.stop().await;
}

#[tokio::test]
async fn a_source_shows_its_last_job_and_a_queued_job_is_located() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 40);
    backup.api.seed("stripe", "invoices", 5);
    let token = app.owner("acme");
    let source_id = source(app, &token, "Stripe").await;
    let path = format!("/sources/{source_id}");
    let listed = |page: &Value| {
        page["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sourceId"] == source_id.as_str())
            .unwrap()["lastJob"]
            .clone()
    };

    // Before any job: null, in the source and in lists.
    let view: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(view["lastJob"], Value::Null, "{view}");
    assert!(view.as_object().unwrap().contains_key("lastJob"));
    let page: Value = app.get("/sources", &token).await.json().await.unwrap();
    assert_eq!(listed(&page), Value::Null);

    // A sync's 202 says where the job is, and the source shows it at once (read-your-writes).
    let response = sync(app, &token, &source_id).await;
    assert_eq!(response.status(), 202);
    let headers = response.headers().clone();
    let queued: Value = response.json().await.unwrap();
    let job_id = queued["jobId"].as_str().unwrap().to_owned();
    assert_eq!(headers["location"], format!("/jobs/{job_id}").as_str());
    let located = app.get(&format!("/jobs/{job_id}"), &token).await;
    assert_eq!(located.status(), 200);
    let view: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(view["lastJob"]["jobId"], job_id.as_str(), "{view}");
    assert!(
        ["queued", "running", "succeeded"].contains(&view["lastJob"]["status"].as_str().unwrap()),
        "{view}"
    );

    // Once it has ended, the source shows how, with the job's own totals.
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let expected = json!({
        "jobId": job_id,
        "status": "succeeded",
        "finishedAt": job["finishedAt"],
        "records": 45,
        "bytes": job["progress"]["bytes"],
    });
    assert!(job["progress"]["bytes"].as_u64().unwrap() > 0, "{job}");
    wait_until(
        Duration::from_secs(10),
        "the source to show the ended job",
        || async {
            let view: Value = app.get(&path, &token).await.json().await.unwrap();
            view["lastJob"] == expected
        },
    )
    .await;
    let page: Value = app.get("/sources", &token).await.json().await.unwrap();
    assert_eq!(listed(&page), expected);
    let page: Value = app
        .get(
            &format!(
                "/sources?connectionId={}",
                job["connectionId"].as_str().unwrap()
            ),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed(&page), expected);

    let first_ended = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);

    // POST /jobs is the same: 202 with Location, and the new job is now the source's last.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (response, second) = loop {
        let response = app
            .post("/jobs", &token, &json!({"sourceId": source_id}))
            .await;
        if response.status() == 202 {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            let job: Value = response.json().await.unwrap();
            break (location, job);
        }
        assert_eq!(
            response.status(),
            409,
            "only the previous job may hold the source"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the source was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        response,
        format!("/jobs/{}", second["jobId"].as_str().unwrap())
    );
    let view: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(view["lastJob"]["jobId"], second["jobId"], "{view}");
    let ended = backup
        .finished(&token, second["jobId"].as_str().unwrap())
        .await;
    assert_eq!(ended["status"], "succeeded", "{ended}");

    // Looking back, the source's last job is the first one, as it stood then.
    let then: Value = app
        .get(
            &format!("{path}?asOf={}", first_ended.replace('+', "%2B")),
            &token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(then["lastJob"], expected, "{then}");

    // The API document says so.
    let openapi: Value = app.openapi().await;
    for (route, method) in [
        ("/sources/{id}/sync", "post"),
        ("/jobs", "post"),
        ("/jobs/{id}/retry", "post"),
    ] {
        assert!(
            openapi["paths"][route][method]["responses"]["202"]["headers"]["Location"].is_object(),
            "{method} {route}"
        );
    }
    let last_job = &openapi["components"]["schemas"]["SourceView"]["properties"]["lastJob"];
    assert!(!last_job.is_null(), "SourceView.lastJob is documented");
    let schema = &openapi["components"]["schemas"]["LastJob"]["properties"];
    for field in ["jobId", "status", "finishedAt", "records", "bytes"] {
        assert!(schema.get(field).is_some(), "LastJob.{field}");
    }
    backup.stop().await;
}

/// A sync right after the source's last job ended, before the sagas record that end on the source (a client
/// that saw its job end and syncs again at once) is not a 409 naming the ended job: it waits for the source
/// to catch up, and answers 503 to retry if it does not in time (a group sync skips that member then). A job
/// still queued is the 409 at once.
#[tokio::test]
async fn a_sync_right_after_the_last_job_ended_waits_for_the_source_instead_of_conflicting() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source_id = source(&app, &token, "Stripe").await;
    let queued: Value = sync(&app, &token, &source_id).await.json().await.unwrap();
    let job_id = queued["jobId"].as_str().unwrap().to_owned();
    let (status, problem) = problem_code(sync(&app, &token, &source_id).await).await;
    assert_eq!((status, &problem["code"]), (409, &json!("CONFLICT")));
    let group_id = group(&app, &token, "Stripe", &[&source_id]).await;

    // A running transaction holds back every reader of the log (the sagas too), not the commands.
    let mut busy = app.db.connect().await;
    let held = busy.transaction().await.unwrap();
    held.batch_execute("CREATE TEMP TABLE scratch (n int); INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    // The cancel is recorded at once; its answer waits for its projection, which waits for the transaction.
    let cancel = {
        let (app, token, job_id) = (&app, token.clone(), job_id.clone());
        let url = format!("{}/jobs/{job_id}/cancel", app.address);
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({}))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let db = app.db.connect().await;
    wait_until(
        Duration::from_secs(10),
        "JobCancelled in the log",
        || async {
            db.query_opt(
                "SELECT 1 FROM events WHERE aggregate_id = $1 AND event_type = 'JobCancelled'",
                &[&job_id],
            )
            .await
            .unwrap()
            .is_some()
        },
    )
    .await;

    // The job has ended; the source has not been told: a 503 to retry, not a 409 naming the ended job.
    let response = sync(&app, &token, &source_id).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "UNAVAILABLE", "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&job_id) && detail.contains("has not recorded it yet"),
        "{detail}"
    );

    // A group sync waits for that member the same way, then skips it like a busy one.
    let (status, body) = sync_group(&app, &token, &group_id).await;
    assert_eq!((status, &body["jobs"]), (202, &json!([])), "{body}");

    // Once the sagas run again the source records the end, and a sync queues the next job.
    held.rollback().await.unwrap();
    assert!(cancel.await.unwrap().is_ok());
    let response = sync(&app, &token, &source_id).await;
    assert_eq!(response.status(), 202);
    let next: Value = response.json().await.unwrap();
    assert_ne!(next["jobId"], job_id.as_str());
    app.stop().await;
}
