//! ActiveCampaign (issue 10): every data type backed up through API v3 as its emulation
//! (`listbackup-emulators`, `activecampaign.rs`) answers it from the public reference: `limit`/`offset`
//! with `meta.total` as a string, contacts by keyset (`id_greater`, `orders[id]=ASC`), `filters[updated_after]`
//! for contacts and deals, a 403 for a wrong key (the API sends no 401; read as `UNAUTHORIZED`), 429s with
//! `Retry-After` and 5xx
//! mid-run. Connector-level tests drive the fetch engine directly; the others go through the service.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, RateLimit, RateLimits,
    RetryPolicy,
};
use serde_json::{json, Value};
use support::backup::{gunzip_lines, sync, BackupApp};
use support::platform_api::{PlatformApi, RetryAfter};

const KEY: &str = "7a1c5e9f2b4d6e8a0c1e3f5a7b9d1f3e5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3";
const API_URL: &str = "https://emulated.api-us1.com";

fn credentials(key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("apiUrl".to_owned(), API_URL.to_owned()),
        ("apiKey".to_owned(), key.to_owned()),
    ])
}

async fn fixture() -> (PlatformApi, Connector) {
    let api = PlatformApi::start().await;
    api.accept("activecampaign", KEY);
    let connector = Connector::new(
        PlatformEndpoints::default().with_api_url("activecampaign", &api.api_url("activecampaign")),
    )
    .with_rate_limits(RateLimits::default().with("activecampaign", RateLimit::unlimited()))
    .with_retry_policy(RetryPolicy {
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RetryPolicy::default()
    });
    (api, connector)
}

fn parse(records: &[Box<serde_json::value::RawValue>]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_str(r.get()).unwrap())
        .collect()
}

async fn drain(
    connector: &Connector,
    data_type: &str,
    key: &str,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(key);
    let platform = find("activecampaign").unwrap();
    let request = FetchRequest::new("conn-ac", platform, data_type, &credentials).since(since);
    support::connectors::drain_request(connector, request).await
}

async fn drain_ok(connector: &Connector, data_type: &str) -> (Vec<Value>, FetchSummary) {
    drain(connector, data_type, KEY, None)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"))
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Every data type with its path under the API base.
const PATHS: [(&str, &str); 14] = [
    ("contacts", "contacts"),
    ("contact_field_values", "fieldValues"),
    ("accounts", "accounts"),
    ("deals", "deals"),
    ("lists", "lists"),
    ("tags", "tags"),
    ("contact_tags", "contactTags"),
    ("custom_fields", "fields"),
    ("campaigns", "campaigns"),
    ("messages", "messages"),
    ("automations", "automations"),
    ("notes", "notes"),
    ("tasks", "dealTasks"),
    ("users", "users"),
];

// ---------------------------------------------------------------------------------------------------------
// Connector

#[tokio::test]
async fn an_empty_account_answers_one_empty_page_per_list() {
    let (api, connector) = fixture().await;
    for data_type in ["contacts", "deals", "tags"] {
        let (records, summary) = drain_ok(&connector, data_type).await;
        assert!(records.is_empty(), "{data_type}");
        assert_eq!((summary.pages, summary.requests), (0, 1), "{data_type}");
    }
    assert_eq!(
        api.last_query("/activecampaign/api/3/contacts").unwrap(),
        "orders%5Bid%5D=ASC&limit=100"
    );
}

#[tokio::test]
async fn contacts_page_by_keyset_to_a_full_last_page_and_one_more_request() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "contacts", 100);
    let (records, summary) = drain_ok(&connector, "contacts").await;
    assert_eq!(ids(&records), api.listing_ids("activecampaign", "contacts"));
    // A full page, then the empty one after its last id.
    assert_eq!((summary.records, summary.requests), (100, 2));
    let query = api.last_query("/activecampaign/api/3/contacts").unwrap();
    assert!(
        query.contains("id_greater=100") && query.contains("orders%5Bid%5D=ASC"),
        "{query}"
    );
    assert!(!query.contains("offset"), "{query}");

    api.seed("activecampaign", "contacts", 300);
    let (records, summary) = drain_ok(&connector, "contacts").await;
    assert_eq!(ids(&records), api.listing_ids("activecampaign", "contacts"));
    assert_eq!((summary.records, summary.requests), (300, 4));
}

#[tokio::test]
async fn contacts_deleted_while_paged_shift_nothing() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "contacts", 250);
    let credentials = credentials(KEY);
    let platform = find("activecampaign").unwrap();
    let mut pager = connector
        .pages(FetchRequest::new("c", platform, "contacts", &credentials))
        .unwrap();
    let mut got = ids(&parse(&pager.next_page().await.unwrap().unwrap().records));
    // Thirty contacts of the first page go: an offset would now skip thirty others.
    api.delete("activecampaign", "contacts", 10..40);
    while let Some(page) = pager.next_page().await.unwrap() {
        got.extend(ids(&parse(&page.records)));
    }
    let expected: Vec<String> = (0..250)
        .map(|i| api.id_of("activecampaign", "contacts", i))
        .collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn offset_lists_end_after_a_full_page_and_a_last_page_exactly_full() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "deals", 100);
    let (records, summary) = drain_ok(&connector, "deals").await;
    assert_eq!(ids(&records), api.listing_ids("activecampaign", "deals"));
    // The full page, then the next offset's overlap (5 records, all seen).
    assert_eq!(summary.requests, 2);
    let query = api.last_query("/activecampaign/api/3/deals").unwrap();
    assert!(
        query.contains("offset=95") && query.contains("limit=100"),
        "{query}"
    );

    api.seed("activecampaign", "notes", 200);
    let (records, summary) = drain_ok(&connector, "notes").await;
    assert_eq!(ids(&records), api.listing_ids("activecampaign", "notes"));
    assert_eq!((summary.records, summary.requests), (200, 3));
}

#[tokio::test]
async fn every_collection_is_read_from_its_documented_path_and_field() {
    let (api, connector) = fixture().await;
    for (i, (data_type, path)) in PATHS.into_iter().enumerate() {
        api.seed("activecampaign", data_type, 101 + i as u64);
        let (records, _) = drain_ok(&connector, data_type).await;
        assert_eq!(
            ids(&records),
            api.listing_ids("activecampaign", data_type),
            "{data_type}"
        );
        assert!(
            api.hits(&format!("/activecampaign/api/3/{path}")) >= 2,
            "{data_type}"
        );
    }
    let task = &drain_ok(&connector, "tasks").await.0[1];
    assert_eq!(
        task["reltype"], "Subscriber",
        "deal tasks include contacts' tasks: {task}"
    );
}

#[tokio::test]
async fn contacts_and_deals_are_fetched_incrementally_by_updated_after() {
    let (api, connector) = fixture().await;
    for data_type in ["contacts", "deals"] {
        api.seed("activecampaign", data_type, 150);
        let (first, summary) = drain_ok(&connector, data_type).await;
        assert_eq!(first.len(), 150);
        let cursor = summary.next_cursor.expect("incremental");
        api.touch("activecampaign", data_type, [3, 120]);
        api.append("activecampaign", data_type, 2);
        let (changed, summary) = drain(&connector, data_type, KEY, Some(cursor))
            .await
            .unwrap();
        assert!(summary.incremental);
        let expected: Vec<String> = [3, 120, 150, 151]
            .map(|i| api.id_of("activecampaign", data_type, i))
            .into();
        let mut got = ids(&changed);
        got.sort_by_key(|id| id.parse::<u64>().unwrap());
        assert_eq!(got, expected, "{data_type}");
        let query = api
            .last_query(&format!("/activecampaign/api/3/{data_type}"))
            .unwrap();
        assert!(query.contains("filters%5Bupdated_after%5D=20"), "{query}");
    }
    // Lists have no change filter: no cursor.
    api.seed("activecampaign", "lists", 3);
    let (_, summary) = drain_ok(&connector, "lists").await;
    assert_eq!(summary.next_cursor, None);
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_though_activecampaign_answers_403() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "contacts", 5);
    let err = drain(&connector, "contacts", "not-the-key", None)
        .await
        .unwrap_err();
    // ActiveCampaign's documented answer to a key that is not valid is a 403 (it sends no 401): the
    // credentials' failure, the whole connection's.
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert!(err.is_connection_wide());
    assert!(!err.retryable());
    assert!(
        err.to_string().contains("rejected the credentials"),
        "{err}"
    );
    assert!(!err.to_string().contains("not-the-key"));
    assert_eq!(api.hits("/activecampaign/api/3/contacts"), 1);
}

#[tokio::test]
async fn a_429_and_a_500_mid_run_are_waited_out_and_retried() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "contacts", 350);
    let credentials = credentials(KEY);
    let platform = find("activecampaign").unwrap();
    let mut pager = connector
        .pages(FetchRequest::new("c", platform, "contacts", &credentials))
        .unwrap();
    let mut got = ids(&parse(&pager.next_page().await.unwrap().unwrap().records));
    api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    let started = Instant::now();
    got.extend(ids(&parse(
        &pager.next_page().await.unwrap().unwrap().records,
    )));
    assert!(started.elapsed() >= Duration::from_secs(1));
    api.fail_next(2, 502);
    while let Some(page) = pager.next_page().await.unwrap() {
        got.extend(ids(&parse(&page.records)));
    }
    assert_eq!(got, api.listing_ids("activecampaign", "contacts"));
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 3));
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

async fn service() -> BackupApp {
    let backup = BackupApp::spawn_for(&["activecampaign"], |values| {
        values.insert(
            "LISTBACKUP_PLATFORM_ACTIVECAMPAIGN_RATE_LIMIT".into(),
            "unlimited".into(),
        );
    })
    .await;
    backup.api.accept("activecampaign", KEY);
    backup
}

async fn source(
    backup: &BackupApp,
    token: &str,
    key: &str,
    data_types: Option<&[&str]>,
) -> (String, String) {
    let app = &backup.app;
    let response = app
        .post(
            "/connections",
            token,
            &json!({"platformId": "activecampaign", "name": "AC",
                    "credentials": {"apiUrl": API_URL, "apiKey": key}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let mut body = json!({"connectionId": connection_id, "name": "ActiveCampaign"});
    if let Some(data_types) = data_types {
        body["dataTypes"] = json!(data_types);
    }
    let response = app.post("/sources", token, &body).await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    (
        connection_id,
        source["sourceId"].as_str().unwrap().to_owned(),
    )
}

fn entry<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {job}"))
}

#[tokio::test]
async fn every_data_type_backs_up_through_the_service_and_the_tests_pass() {
    let backup = service().await;
    let api = &backup.api;
    for (i, (data_type, _)) in PATHS.into_iter().enumerate() {
        api.seed("activecampaign", data_type, [0, 100, 250, 7][i % 4]);
    }
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = source(&backup, &token, KEY, None).await;
    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .contains("admin@emulated.test"),
        "{tested}"
    );
    let sampled: Value = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sampled["ok"], true, "{sampled}");
    let samples = sampled["dataTypes"].as_array().unwrap();
    assert_eq!(samples.len(), 14);
    for sample in samples {
        let name = sample["name"].as_str().unwrap();
        let seeded = api.count("activecampaign", name).min(100);
        assert_eq!(sample["sampleCount"], seeded, "{sample}");
    }

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    let mut total = 0;
    for (data_type, _) in PATHS {
        let stored = gunzip_lines(&dir.join(format!("{data_type}.ndjson.gz")));
        let expected = api.listing_ids("activecampaign", data_type);
        assert_eq!(ids(&stored), expected, "{data_type}");
        assert_eq!(
            entry(&job, data_type)["records"],
            expected.len(),
            "{data_type}"
        );
        total += expected.len();
    }
    assert_eq!(job["progress"]["records"], total);
    backup.stop().await;
}

#[tokio::test]
async fn a_damaged_body_fails_its_data_type_and_the_others_are_kept() {
    let backup = service().await;
    let api = &backup.api;
    api.seed("activecampaign", "contacts", 120);
    api.seed("activecampaign", "deals", 30);
    api.seed("activecampaign", "tags", 9);
    api.truncate_every("/activecampaign/api/3/deals");
    let token = backup.app.owner("acme");
    let (_, source_id) = source(&backup, &token, KEY, Some(&["contacts", "deals", "tags"])).await;
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(entry(&job, "deals")["status"], "failed");
    assert_eq!(entry(&job, "deals")["error"]["code"], "PLATFORM_ERROR");
    assert_eq!(entry(&job, "deals")["error"]["retryable"], true);
    assert_eq!(entry(&job, "contacts")["records"], 120);
    assert_eq!(entry(&job, "tags")["records"], 9);
    backup.stop().await;
}

#[tokio::test]
async fn a_wrong_key_fails_the_connection_test_and_the_job_as_unauthorized() {
    let backup = service().await;
    backup.api.seed("activecampaign", "contacts", 3);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) =
        source(&backup, &token, "revoked-key", Some(&["contacts", "tags"])).await;
    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .contains("rejected the credentials (403)"),
        "{tested}"
    );
    assert_eq!(tested["code"], "UNAUTHORIZED", "{tested}");
    let before = backup.api.total_hits();
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    // The connection's failure: the backup stops at the first 403 instead of asking for every data type.
    assert_eq!(backup.api.total_hits() - before, 1, "{job}");
    assert!(!job.to_string().contains("revoked-key"));
    backup.stop().await;
}

#[tokio::test]
async fn a_keyset_the_api_ignores_ends_as_a_paging_loop() {
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "contacts", 250);
    // `id_greater` ignored: every request answers the first page again.
    api.paging_fault(
        "/activecampaign/api/3/contacts",
        support::platform_api::PagingFault::IgnoresCursor,
    );
    let err = drain(&connector, "contacts", KEY, None).await.unwrap_err();
    assert!(matches!(err, FetchError::PagingLoop(_)), "{err}");
    assert!(err.to_string().contains("id_greater"), "{err}");
    assert_eq!(api.hits("/activecampaign/api/3/contacts"), 2);
}

/// The emulation is reached through the operator's `LISTBACKUP_PLATFORM_ACTIVECAMPAIGN_API_URL` only: a
/// connection on a documented API URL is tested against it, while the same emulation named in the
/// customer's `apiUrl` is refused at create (an API URL must be `https://<account>.api-us1.com` or
/// `.activehosted.com`), so a customer can never point the service at loopback.
#[tokio::test]
async fn the_emulation_is_reached_through_the_operator_override_only() {
    let backup = service().await;
    let token = backup.app.owner("acme");
    let emulation = backup.api.api_url("activecampaign");
    let origin = emulation.trim_end_matches("/api/3").to_owned();
    for api_url in [emulation.as_str(), origin.as_str()] {
        let (status, problem) = support::problem_code(
            backup
                .app
                .post(
                    "/connections",
                    &token,
                    &json!({"platformId": "activecampaign", "name": "AC",
                            "credentials": {"apiUrl": api_url, "apiKey": KEY}}),
                )
                .await,
        )
        .await;
        assert_eq!(status, 400, "{api_url}: {problem}");
        assert_eq!(
            problem["errors"][0]["field"], "credentials.apiUrl",
            "{problem}"
        );
    }
    let before = backup.api.total_hits();
    let (connection_id, _) = source(&backup, &token, KEY, Some(&["contacts"])).await;
    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(backup.api.total_hits(), before + 1, "one identity call");
    backup.stop().await;
}

#[tokio::test]
async fn pages_held_below_the_limit_asked_go_on_to_meta_total() {
    // ActiveCampaign holds `limit` to 100 rather than refuse more; shorter pages than asked, with
    // `meta.total` saying there are more, do not end the list.
    let (api, connector) = fixture().await;
    api.seed("activecampaign", "deals", 450);
    api.cap_page_size("/activecampaign/api/3/deals", 30);
    let (records, _) = drain_ok(&connector, "deals").await;
    assert_eq!(ids(&records), api.listing_ids("activecampaign", "deals"));
}
