//! Mailchimp (issue 10): every data type backed up through the Marketing API 3.0 as its emulation
//! (`listbackup-emulators`, `mailchimp.rs`) answers it from the public reference: `count`/`offset` with
//! `total_items`, audience members and the other per-audience collections listed once per audience (the
//! engine's per-parent listings: paging across parents, resuming inside one, incremental across all),
//! problem-detail errors, 429s and 5xx mid-run, a wrong key. Connector-level tests drive the fetch engine
//! directly; the others go through the service (connection and source tests, jobs, stored files).

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, PageCursor, RateLimit,
    RateLimits, RetryPolicy,
};
use serde_json::{json, Value};
use support::backup::{gunzip_lines, sync, sync_when_free, BackupApp};
use support::platform_api::{PlatformApi, RetryAfter};
use support::wait_until;

const KEY: &str = "5f1b2c3d4e5f60718293a4b5c6d7e8f9-us21";

fn credentials(key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("apiKey".to_owned(), key.to_owned())])
}

/// The emulation with the key accepted, and a connector pointed at it with short backoffs and no rate limit.
async fn fixture() -> (PlatformApi, Connector) {
    let api = PlatformApi::start().await;
    api.accept("mailchimp", KEY);
    let connector = Connector::new(
        PlatformEndpoints::default().with_api_url("mailchimp", &api.api_url("mailchimp")),
    )
    .with_rate_limits(RateLimits::default().with("mailchimp", RateLimit::unlimited()))
    .with_retry_policy(RetryPolicy {
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RetryPolicy::default()
    });
    (api, connector)
}

/// Every record of a data type, in order, and the summary.
async fn drain(
    connector: &Connector,
    data_type: &str,
    key: &str,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(key);
    let request = FetchRequest::new(
        "conn-mc",
        find("mailchimp").unwrap(),
        data_type,
        &credentials,
    )
    .since(since);
    support::connectors::drain_request(connector, request).await
}

async fn drain_ok(connector: &Connector, data_type: &str) -> (Vec<Value>, FetchSummary) {
    drain(connector, data_type, KEY, None)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"))
}

fn ids(records: &[Value], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

/// The id of audience `index`.
fn audience(api: &PlatformApi, index: u64) -> String {
    api.id_of("mailchimp", "audiences", index)
}

fn members_of(list_id: &str) -> String {
    format!("audience_members/{list_id}")
}

/// `(list_id, member id)` of every member of the listed audiences, in listing order.
fn expected_members(api: &PlatformApi, audiences: &[String]) -> Vec<(String, String)> {
    audiences
        .iter()
        .flat_map(|list| {
            api.listing_ids("mailchimp", &members_of(list))
                .into_iter()
                .map(move |id| (list.clone(), id))
        })
        .collect()
}

fn member_pairs(records: &[Value]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| {
            (
                r["list_id"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Connector

#[tokio::test]
async fn an_empty_account_answers_one_empty_page_per_list() {
    let (api, connector) = fixture().await;
    let (records, summary) = drain_ok(&connector, "campaigns").await;
    assert!(records.is_empty());
    assert_eq!((summary.pages, summary.requests), (0, 1));
    // No audience: the members' listing asks for audiences once and nothing else.
    let (records, summary) = drain_ok(&connector, "audience_members").await;
    assert!(records.is_empty());
    assert_eq!(summary.requests, 1);
    assert_eq!(api.hits("/mailchimp/3.0/lists"), 1);
    // Two audiences without members: one empty page each.
    api.seed("mailchimp", "audiences", 2);
    let (records, summary) = drain_ok(&connector, "audience_members").await;
    assert!(records.is_empty());
    assert_eq!(summary.requests, 3);
    let query = api
        .last_query(&format!(
            "/mailchimp/3.0/lists/{}/members",
            audience(&api, 1)
        ))
        .unwrap();
    // The first page of a list says its offset, 0.
    assert_eq!(query, "count=1000&offset=0");
}

#[tokio::test]
async fn one_full_page_and_a_last_page_exactly_full() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "campaigns", 1000);
    let (records, summary) = drain_ok(&connector, "campaigns").await;
    assert_eq!(
        ids(&records, "id"),
        api.listing_ids("mailchimp", "campaigns")
    );
    // The full page, then the overlap of the next offset (20 records, all seen): the end.
    assert_eq!((summary.records, summary.requests), (1000, 2));
    let query = api.last_query("/mailchimp/3.0/campaigns").unwrap();
    assert!(
        query.contains("offset=980") && query.contains("count=1000"),
        "{query}"
    );

    api.seed("mailchimp", "templates", 2000);
    let (records, summary) = drain_ok(&connector, "templates").await;
    assert_eq!(
        ids(&records, "id"),
        api.listing_ids("mailchimp", "templates")
    );
    assert_eq!((summary.records, summary.requests), (2000, 3));
}

#[tokio::test]
async fn every_collection_is_read_from_its_documented_path_and_field() {
    let (api, connector) = fixture().await;
    let cases = [
        ("audiences", "/mailchimp/3.0/lists", "id"),
        ("campaigns", "/mailchimp/3.0/campaigns", "id"),
        ("campaign_reports", "/mailchimp/3.0/reports", "id"),
        ("templates", "/mailchimp/3.0/templates", "id"),
        ("automations", "/mailchimp/3.0/automations", "id"),
        ("landing_pages", "/mailchimp/3.0/landing-pages", "id"),
        ("ecommerce_stores", "/mailchimp/3.0/ecommerce/stores", "id"),
    ];
    for (i, (data_type, path, id_field)) in cases.into_iter().enumerate() {
        api.seed("mailchimp", data_type, 3 + i as u64);
        let (records, _) = drain_ok(&connector, data_type).await;
        assert_eq!(
            ids(&records, id_field),
            api.listing_ids("mailchimp", data_type),
            "{data_type}"
        );
        assert_eq!(api.hits(path), 1, "{data_type}");
    }
    // The per-audience collections other than members, with their own id fields.
    let list = audience(&api, 0);
    for (data_type, segment, id_field) in [
        ("segments", "segments", "id"),
        ("merge_fields", "merge-fields", "merge_id"),
        ("interest_categories", "interest-categories", "id"),
    ] {
        api.seed("mailchimp", &format!("{data_type}/{list}"), 4);
        let (records, _) = drain_ok(&connector, data_type).await;
        assert_eq!(
            ids(&records, id_field),
            api.listing_ids("mailchimp", &format!("{data_type}/{list}")),
            "{data_type}"
        );
        assert!(
            records.iter().all(|r| r["list_id"] == list.as_str()),
            "{data_type}"
        );
        assert_eq!(
            api.hits(&format!("/mailchimp/3.0/lists/{list}/{segment}")),
            1
        );
    }
}

#[tokio::test]
async fn members_are_listed_audience_by_audience_with_their_list_id() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "audiences", 4);
    let lists: Vec<String> = (0..4).map(|i| audience(&api, i)).collect();
    // An empty audience, one of exactly a page, one of two and a half pages, and a deleted one.
    api.seed("mailchimp", &members_of(&lists[1]), 1000);
    api.seed("mailchimp", &members_of(&lists[2]), 2500);
    api.seed("mailchimp", &members_of(&lists[3]), 10);
    api.delete("mailchimp", "audiences", [3]);
    let (records, summary) = drain_ok(&connector, "audience_members").await;
    assert_eq!(member_pairs(&records), expected_members(&api, &lists[..3]));
    assert_eq!(records.len(), 3500);
    // The same addresses are members of both audiences: same member ids, kept once per audience.
    let in_both: BTreeSet<&str> = records
        .iter()
        .filter(|r| r["email_address"] == "member5@example.test")
        .map(|r| r["list_id"].as_str().unwrap())
        .collect();
    assert_eq!(in_both.len(), 2);
    // 1 request for the audiences, then 1 + 2 + 3 for the members; the deleted audience is not asked.
    assert_eq!(summary.requests, 7);
    assert_eq!(
        api.hits(&format!("/mailchimp/3.0/lists/{}/members", lists[3])),
        0
    );
    assert_eq!(
        api.hits(&format!("/mailchimp/3.0/lists/{}/members", lists[2])),
        3
    );
    assert!(!summary.incremental);
}

#[tokio::test]
async fn audiences_past_their_first_page_have_their_members_listed_too() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "audiences", 1001);
    let lists: Vec<String> = (0..1001).map(|i| audience(&api, i)).collect();
    for i in [0, 999, 1000] {
        api.seed("mailchimp", &members_of(&lists[i]), 3);
    }
    let (records, summary) = drain_ok(&connector, "audience_members").await;
    let expected: Vec<(String, String)> = [0, 999, 1000]
        .into_iter()
        .flat_map(|i| expected_members(&api, &lists[i..=i]))
        .collect();
    assert_eq!(member_pairs(&records), expected);
    // Two pages of audiences (the second overlapping the first), each audience asked once.
    assert_eq!(api.hits("/mailchimp/3.0/lists"), 2);
    assert_eq!(summary.requests, 2 + 1001);
}

#[tokio::test]
async fn a_fetch_resumed_inside_an_audience_continues_where_it_stopped() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "audiences", 2);
    let lists: Vec<String> = (0..2).map(|i| audience(&api, i)).collect();
    api.seed("mailchimp", &members_of(&lists[0]), 1500);
    api.seed("mailchimp", &members_of(&lists[1]), 1200);
    let expected = expected_members(&api, &lists);
    let credentials = credentials(KEY);
    let platform = find("mailchimp").unwrap();
    // Pages: the first audience's two, then the second's two.
    let mut cursors: Vec<(PageCursor, usize)> = Vec::new();
    let mut seen = 0;
    let mut pager = connector
        .pages(FetchRequest::new(
            "c",
            platform,
            "audience_members",
            &credentials,
        ))
        .unwrap();
    while let Some(page) = pager.next_page().await.unwrap() {
        seen += page.records.len();
        cursors.push((page.cursor, seen));
    }
    assert_eq!(cursors.len(), 4);
    for (cursor, before) in cursors {
        // As the worker keeps it: through JSON.
        let cursor: PageCursor =
            serde_json::from_value(serde_json::to_value(&cursor).unwrap()).unwrap();
        let request =
            FetchRequest::new("c", platform, "audience_members", &credentials).resume(Some(cursor));
        let mut pager = connector.pages(request).unwrap();
        let mut rest = Vec::new();
        while let Some(page) = pager.next_page().await.unwrap() {
            rest.extend(
                page.records
                    .iter()
                    .map(|r| serde_json::from_str::<Value>(r.get()).unwrap()),
            );
        }
        assert_eq!(
            member_pairs(&rest),
            expected[before..],
            "resumed after {before} records: the rest, no record twice"
        );
    }
}

#[tokio::test]
async fn members_are_fetched_incrementally_in_every_audience() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "audiences", 2);
    let lists: Vec<String> = (0..2).map(|i| audience(&api, i)).collect();
    api.seed("mailchimp", &members_of(&lists[0]), 40);
    api.seed("mailchimp", &members_of(&lists[1]), 30);
    let (first, summary) = drain_ok(&connector, "audience_members").await;
    assert_eq!(first.len(), 70);
    let cursor = summary.next_cursor.expect("members are incremental");
    assert_eq!(cursor.field, "last_changed");

    // A member of the first audience changes, three join the second.
    api.touch("mailchimp", &members_of(&lists[0]), [7]);
    api.append("mailchimp", &members_of(&lists[1]), 3);
    let (changed, summary) = drain(&connector, "audience_members", KEY, Some(cursor.clone()))
        .await
        .unwrap();
    assert!(summary.incremental);
    let mut expected = vec![(
        lists[0].clone(),
        api.id_of("mailchimp", &members_of(&lists[0]), 7),
    )];
    expected.extend((30..33).map(|i| {
        (
            lists[1].clone(),
            api.id_of("mailchimp", &members_of(&lists[1]), i),
        )
    }));
    assert_eq!(member_pairs(&changed), expected);
    // Every audience was asked from the same lower bound, a lookback before the newest change seen.
    for list in &lists {
        let query = api
            .last_query(&format!("/mailchimp/3.0/lists/{list}/members"))
            .unwrap();
        assert!(query.contains("since_last_changed="), "{query}");
    }
    // Nothing changed since: nothing fetched, the cursor stays.
    let next = summary.next_cursor.unwrap();
    let (again, summary) = drain(&connector, "audience_members", KEY, Some(next.clone()))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(summary.next_cursor.unwrap().since, next.since);
}

#[tokio::test]
async fn a_wrong_key_is_unauthorized_at_the_first_request() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "campaigns", 5);
    let err = drain(
        &connector,
        "campaigns",
        "ffffffffffffffffffffffffffffffff-us21",
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert!(err.is_connection_wide());
    assert!(!err.to_string().contains("ffffffff"));
    assert_eq!(api.hits("/mailchimp/3.0/campaigns"), 1);
}

#[tokio::test]
async fn a_429_mid_run_is_waited_out_for_as_long_as_it_says() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "audiences", 1);
    let list = audience(&api, 0);
    api.seed("mailchimp", &members_of(&list), 2500);
    let credentials = credentials(KEY);
    let request = FetchRequest::new(
        "c",
        find("mailchimp").unwrap(),
        "audience_members",
        &credentials,
    );
    let mut pager = connector.pages(request).unwrap();
    let mut records = pager.next_page().await.unwrap().unwrap().records.len();
    api.rate_limit_next_with(1, RetryAfter::Decimal(0.4));
    let started = Instant::now();
    while let Some(page) = pager.next_page().await.unwrap() {
        records += page.records.len();
    }
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(records, 2500);
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 1));
}

#[tokio::test]
async fn a_transient_500_mid_run_is_retried_and_a_404_names_the_problem() {
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "campaigns", 2100);
    let credentials = credentials(KEY);
    let request = FetchRequest::new("c", find("mailchimp").unwrap(), "campaigns", &credentials);
    let mut pager = connector.pages(request).unwrap();
    let mut got = ids(
        &pager
            .next_page()
            .await
            .unwrap()
            .unwrap()
            .records
            .iter()
            .map(|r| serde_json::from_str(r.get()).unwrap())
            .collect::<Vec<Value>>(),
        "id",
    );
    api.fail_next(1, 500);
    while let Some(page) = pager.next_page().await.unwrap() {
        got.extend(ids(
            &page
                .records
                .iter()
                .map(|r| serde_json::from_str(r.get()).unwrap())
                .collect::<Vec<Value>>(),
            "id",
        ));
    }
    assert_eq!(got, api.listing_ids("mailchimp", "campaigns"));
    assert_eq!(pager.summary().retries, 1);

    // The problem's `detail` is the message.
    api.fail_path("/mailchimp/3.0/automations", 404);
    let err = drain(&connector, "automations", KEY, None)
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR");
    assert!(!err.retryable());
    assert!(
        err.to_string().contains("404") && err.to_string().contains("could not be found"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

/// A service whose Mailchimp is the emulation, the key accepted, no rate limit.
async fn service() -> BackupApp {
    let backup = BackupApp::spawn_for(&["mailchimp"], |values| {
        values.insert(
            "LISTBACKUP_PLATFORM_MAILCHIMP_RATE_LIMIT".into(),
            "unlimited".into(),
        );
    })
    .await;
    backup.api.accept("mailchimp", KEY);
    backup
}

/// A Mailchimp connection and a source of `data_types` (all of them when `None`): (connection, source).
async fn source(
    backup: &BackupApp,
    token: &str,
    data_types: Option<&[&str]>,
    incremental: bool,
) -> (String, String) {
    let app = &backup.app;
    let response = app
        .post(
            "/connections",
            token,
            &json!({"platformId": "mailchimp", "name": "Newsletters", "credentials": {"apiKey": KEY}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let mut body =
        json!({"connectionId": connection_id, "name": "Mailchimp", "incremental": incremental});
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

fn job_dir(backup: &BackupApp, source_id: &str, job_id: &str) -> std::path::PathBuf {
    backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"))
}

fn data_type_entry<'a>(job: &'a Value, name: &str) -> &'a Value {
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
    api.seed("mailchimp", "audiences", 3);
    let lists: Vec<String> = (0..3).map(|i| audience(api, i)).collect();
    api.seed("mailchimp", &members_of(&lists[0]), 1200);
    api.seed("mailchimp", &members_of(&lists[2]), 30);
    for list in &lists {
        api.seed("mailchimp", &format!("segments/{list}"), 2);
        api.seed("mailchimp", &format!("merge_fields/{list}"), 5);
        api.seed("mailchimp", &format!("interest_categories/{list}"), 1);
    }
    for (data_type, n) in [
        ("campaigns", 1001),
        ("campaign_reports", 40),
        ("templates", 7),
        ("automations", 2),
        ("landing_pages", 3),
        ("ecommerce_stores", 1),
    ] {
        api.seed("mailchimp", data_type, n);
    }
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = source(&backup, &token, None, false).await;

    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .contains("Emulated Newsletters"),
        "{tested}"
    );
    assert!(!tested.to_string().contains(KEY));

    let sampled: Value = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sampled["ok"], true, "{sampled}");
    let samples = sampled["dataTypes"].as_array().unwrap();
    assert_eq!(samples.len(), 11, "{sampled}");
    assert!(samples.iter().all(|d| d["ok"] == true), "{sampled}");
    let sample =
        |name: &str| samples.iter().find(|d| d["name"] == name).unwrap()["sampleCount"].clone();
    // One page each: the first 1,000 campaigns, the first audience's first 1,000 members.
    assert_eq!(sample("campaigns"), 1000);
    assert_eq!(sample("audience_members"), 1000);
    assert_eq!(sample("templates"), 7);

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let dir = job_dir(&backup, &source_id, &job_id);
    let stored = |data_type: &str| gunzip_lines(&dir.join(format!("{data_type}.ndjson.gz")));
    for (data_type, expected) in [
        ("audiences", api.listing_ids("mailchimp", "audiences")),
        ("campaigns", api.listing_ids("mailchimp", "campaigns")),
        (
            "campaign_reports",
            api.listing_ids("mailchimp", "campaign_reports"),
        ),
        ("templates", api.listing_ids("mailchimp", "templates")),
        ("automations", api.listing_ids("mailchimp", "automations")),
        (
            "landing_pages",
            api.listing_ids("mailchimp", "landing_pages"),
        ),
        (
            "ecommerce_stores",
            api.listing_ids("mailchimp", "ecommerce_stores"),
        ),
    ] {
        assert_eq!(ids(&stored(data_type), "id"), expected, "{data_type}");
        assert_eq!(
            data_type_entry(&job, data_type)["records"],
            expected.len(),
            "{data_type}"
        );
    }
    let members = stored("audience_members");
    assert_eq!(member_pairs(&members), expected_members(api, &lists));
    assert_eq!(data_type_entry(&job, "audience_members")["records"], 1230);
    for (data_type, id_field, each) in [
        ("segments", "id", 2),
        ("merge_fields", "merge_id", 5),
        ("interest_categories", "id", 1),
    ] {
        let records = stored(data_type);
        assert_eq!(records.len(), 3 * each, "{data_type}");
        for list in &lists {
            let of_list: Vec<Value> = records
                .iter()
                .filter(|r| r["list_id"] == list.as_str())
                .cloned()
                .collect();
            assert_eq!(
                ids(&of_list, id_field),
                api.listing_ids("mailchimp", &format!("{data_type}/{list}")),
                "{data_type} of {list}"
            );
        }
    }
    assert_eq!(
        job["progress"]["records"],
        3 + 1230 + 6 + 15 + 3 + 1001 + 40 + 7 + 2 + 3 + 1
    );
    backup.stop().await;
}

#[tokio::test]
async fn a_damaged_body_fails_its_data_type_and_the_others_are_kept() {
    let backup = service().await;
    let api = &backup.api;
    api.seed("mailchimp", "audiences", 1);
    api.seed("mailchimp", &members_of(&audience(api, 0)), 25);
    api.seed("mailchimp", "templates", 4);
    api.seed("mailchimp", "campaigns", 6);
    // Every answer about templates arrives cut in half.
    api.truncate_every("/mailchimp/3.0/templates");
    let token = backup.app.owner("acme");
    let (_, source_id) = source(
        &backup,
        &token,
        Some(&["audience_members", "templates", "campaigns"]),
        false,
    )
    .await;
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    let templates = data_type_entry(&job, "templates");
    assert_eq!(templates["status"], "failed");
    assert_eq!(templates["error"]["code"], "PLATFORM_ERROR", "{templates}");
    assert_eq!(templates["error"]["retryable"], true);
    assert_eq!(data_type_entry(&job, "audience_members")["records"], 25);
    assert_eq!(data_type_entry(&job, "campaigns")["records"], 6);
    let dir = job_dir(&backup, &source_id, &job_id);
    assert_eq!(gunzip_lines(&dir.join("campaigns.ndjson.gz")).len(), 6);
    assert!(!dir.join("templates.ndjson.gz").exists());
    backup.stop().await;
}

#[tokio::test]
async fn a_revoked_key_fails_the_job_as_unauthorized_without_asking_for_the_rest() {
    let backup = service().await;
    let api = &backup.api;
    api.seed("mailchimp", "campaigns", 3);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = source(&backup, &token, None, false).await;
    api.revoke("mailchimp", KEY);

    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(
        tested["message"].as_str().unwrap().contains("401"),
        "{tested}"
    );

    let before = api.total_hits();
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    assert!(!job.to_string().contains(KEY));
    // The first data type's first request said so; the ten others were not asked.
    assert_eq!(api.total_hits() - before, 1);
    backup.stop().await;
}

#[tokio::test]
async fn members_back_up_incrementally_from_one_job_to_the_next() {
    let backup = service().await;
    let api = &backup.api;
    api.seed("mailchimp", "audiences", 2);
    let lists: Vec<String> = (0..2).map(|i| audience(api, i)).collect();
    api.seed("mailchimp", &members_of(&lists[0]), 1100);
    api.seed("mailchimp", &members_of(&lists[1]), 20);
    let token = backup.app.owner("acme");
    let (_, source_id) = source(&backup, &token, Some(&["audience_members"]), true).await;
    let first = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &first).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["records"], 1120);

    api.touch("mailchimp", &members_of(&lists[1]), [3, 4]);
    api.append("mailchimp", &members_of(&lists[0]), 2);
    let second = sync_when_free(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &second).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let records =
        gunzip_lines(&job_dir(&backup, &source_id, &second).join("audience_members.ndjson.gz"));
    let mut expected: Vec<(String, String)> = (1100..1102)
        .map(|i| {
            (
                lists[0].clone(),
                api.id_of("mailchimp", &members_of(&lists[0]), i),
            )
        })
        .collect();
    expected.extend([3, 4].map(|i| {
        (
            lists[1].clone(),
            api.id_of("mailchimp", &members_of(&lists[1]), i),
        )
    }));
    assert_eq!(member_pairs(&records), expected);
    // The job's manifest says it was incremental and where the next one starts.
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(job_dir(&backup, &source_id, &second).join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["incremental"], true, "{manifest}");
    assert_eq!(
        manifest["cursors"]["audience_members"]["field"],
        "last_changed"
    );
    wait_until(Duration::from_secs(10), "the source to be free", || async {
        backup
            .app
            .event_types(&source_id)
            .await
            .last()
            .is_some_and(|t| t == "SyncFinished")
    })
    .await;
    backup.stop().await;
}

#[tokio::test]
async fn pages_held_below_the_count_asked_go_on_to_total_items() {
    // Mailchimp holds `count` to 1,000; a page shorter than asked, with `total_items` saying there are more,
    // does not end the list.
    let (api, connector) = fixture().await;
    api.seed("mailchimp", "campaigns", 2_100);
    api.cap_page_size("/mailchimp/3.0/campaigns", 300);
    let (records, _) = drain_ok(&connector, "campaigns").await;
    assert_eq!(
        ids(&records, "id"),
        api.listing_ids("mailchimp", "campaigns")
    );
    let query = api.last_query("/mailchimp/3.0/campaigns").unwrap();
    assert!(query.contains("count=1000"), "{query}");
}
