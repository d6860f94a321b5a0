//! Restores (issue 13 §5), round-tripped through the Stripe emulation: back up, delete and alter customers
//! on the platform, plan a dry run, restore (overwrite, then missing), back up again and compare with the
//! snapshot; a data type the platform cannot write is refused, a restore in flight is cancelled, and another
//! account's source is not found.

use std::collections::HashMap;
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
    let job = backup.request_restore(token, source_id, &body).await;
    assert_eq!(job["kind"], "restore");
    assert_eq!(job["status"], "queued");
    job
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
    let plan = backup.restore_report(&token, dry_id).await;
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
    let lines = backup.restore_report(&token, overwrite_id).await;
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

/// Products, prices and coupons come back with their references: a price whose product was created again
/// names the new product; the platform's immutable fields are respected; and restoring the same snapshot
/// again (`missing`, twice) finds what the first restore created under its new ids and creates nothing more.
#[tokio::test]
async fn stripe_products_prices_and_coupons_are_restored_once_with_prices_naming_the_new_products()
{
    let backup = BackupApp::spawn().await;
    backup.api.accept("stripe", "sk_test_1");
    // Two prices per product: prices 2p and 2p+1 belong to product p.
    backup.api.seed("stripe", "products", 4);
    backup.api.seed("stripe", "prices", 8);
    backup.api.seed("stripe", "coupons", 4);
    let token = backup.app.owner("acme");
    let data_types = ["products", "prices", "coupons"];
    let source_id = stripe_source(&backup.app, &token, "Catalog", &data_types, false).await;
    let snapshot = sync(&backup.app, &token, &source_id).await;
    assert_eq!(
        backup.finished(&token, &snapshot).await["status"],
        "succeeded"
    );
    let then: HashMap<&str, Vec<Value>> = data_types
        .iter()
        .map(|d| (*d, backup.stored("acme", &source_id, &snapshot, d)))
        .collect();
    let id_of = |d: &str, at: usize| backup.api.listing_ids("stripe", d)[at].clone();
    // Listings are newest first: the oldest product is the last id; its prices are the last two.
    let lost_product = id_of("products", 3);
    let lost_prices = [id_of("prices", 6), id_of("prices", 7)];
    let altered_price = id_of("prices", 0);
    let lost_coupon = id_of("coupons", 1);
    let renamed_coupon = id_of("coupons", 0);
    // Product 0 and its prices gone (a cleared test account: Stripe's API never deletes a price), a coupon
    // deleted, a price archived and renamed, a coupon renamed.
    backup.api.delete("stripe", "products", [0]);
    backup.api.delete("stripe", "prices", [0, 1]);
    stripe(
        &backup,
        reqwest::Method::DELETE,
        &format!("/coupons/{lost_coupon}"),
        &[],
    )
    .await;
    stripe(
        &backup,
        reqwest::Method::POST,
        &format!("/prices/{altered_price}"),
        &[("active", "false"), ("nickname", "Old")],
    )
    .await;
    stripe(
        &backup,
        reqwest::Method::POST,
        &format!("/coupons/{renamed_coupon}"),
        &[("name", "Renamed")],
    )
    .await;

    // Asked in any order, prices are restored after products.
    let restored = restore_when_free(&backup, &token, &source_id,
        json!({"snapshot": snapshot, "dataTypes": ["prices", "coupons", "products"], "mode": "overwrite",
               "dryRun": false})).await;
    let restored_id = restored["jobId"].as_str().unwrap();
    let done = backup.finished(&token, restored_id).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        done["restore"]["created"], 4,
        "1 product, 2 prices, 1 coupon: {done}"
    );
    assert_eq!(done["restore"]["updated"], 2, "{done}");
    assert_eq!(done["restore"]["failed"], 0, "{done}");
    let lines = backup.restore_report(&token, restored_id).await;
    let new_id = |old: &str| {
        lines
            .iter()
            .find(|l| l["oldId"] == old)
            .unwrap_or_else(|| panic!("{old} in {lines:?}"))["newId"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let new_product = new_id(&lost_product);
    assert_ne!(new_product, lost_product);
    assert!(new_product.starts_with("prod_"), "{new_product}");
    let first_price_line = lines
        .iter()
        .position(|l| l["dataType"] == "prices")
        .unwrap();
    let last_product_line = lines
        .iter()
        .rposition(|l| l["dataType"] == "products")
        .unwrap();
    assert!(
        last_product_line < first_price_line,
        "products before prices"
    );

    // Backed up again: every record equals the snapshot's but for ids, and the new prices name the new product.
    let again = sync_when_free(&backup.app, &token, &source_id).await;
    assert_eq!(backup.finished(&token, &again).await["status"], "succeeded");
    let compared: &[(&str, &[&str])] = &[
        (
            "products",
            &["name", "active", "description", "metadata", "unit_label"],
        ),
        (
            "prices",
            &[
                "active",
                "currency",
                "unit_amount",
                "recurring",
                "nickname",
                "lookup_key",
                "metadata",
            ],
        ),
        (
            "coupons",
            &[
                "name",
                "metadata",
                "percent_off",
                "amount_off",
                "currency",
                "duration",
                "duration_in_months",
            ],
        ),
    ];
    let mut moved: HashMap<String, String> = HashMap::new();
    for old in [
        &lost_product,
        &lost_prices[0],
        &lost_prices[1],
        &lost_coupon,
    ] {
        moved.insert(old.clone(), new_id(old));
    }
    for (data_type, fields) in compared {
        let now = backup.stored("acme", &source_id, &again, data_type);
        assert_eq!(now.len(), then[data_type].len(), "{data_type}");
        for record in &then[*data_type] {
            let id = record["id"].as_str().unwrap();
            let current_id = moved.get(id).map_or(id, String::as_str);
            let current = now
                .iter()
                .find(|r| r["id"] == current_id)
                .unwrap_or_else(|| panic!("{data_type} {id} (now {current_id})"));
            for field in *fields {
                assert_eq!(
                    current.get(*field),
                    record.get(*field),
                    "{data_type} {id} {field}"
                );
            }
            if *data_type == "prices" {
                let product = record["product"].as_str().unwrap();
                let expected = moved.get(product).map_or(product, String::as_str);
                assert_eq!(
                    current["product"], expected,
                    "price {id} names its product as restored"
                );
            }
        }
    }

    // The same snapshot restored twice more in `missing` mode: what the first restore created is found under
    // its new ids, so nothing is created and the platform holds one copy of each.
    for round in 0..2 {
        let job = restore_when_free(&backup, &token, &source_id,
            json!({"snapshot": snapshot, "dataTypes": data_types, "mode": "missing", "dryRun": false})).await;
        let job_id = job["jobId"].as_str().unwrap();
        let done = backup.finished(&token, job_id).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        assert_eq!(done["restore"]["created"], 0, "round {round}: {done}");
        assert_eq!(done["restore"]["skipped"], 16, "round {round}: {done}");
        let lines = backup.restore_report(&token, job_id).await;
        let line = lines
            .iter()
            .find(|l| l["oldId"] == lost_product.as_str())
            .unwrap();
        assert_eq!(line["newId"], new_product.as_str(), "{line}");
        for data_type in data_types {
            assert_eq!(
                backup.api.listing_ids("stripe", data_type).len(),
                then[data_type].len(),
                "{data_type}: one copy"
            );
        }
    }
    backup.stop().await;
}
