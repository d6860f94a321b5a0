//! HighLevel (API v2) against its emulation: each endpoint's own paging (contacts and opportunities by
//! `startAfterId` + `startAfter` from `meta`, conversations by the last one's `lastMessageDate`, messages
//! per conversation by `lastMessageId`, forms by `skip`, invoices and products by `offset`, submissions by
//! `page`), the location id in paths and queries, the mandatory `Version` header; then, through the
//! service, the connection and source tests, a backup of every data type with its stored files, a data type
//! that fails alone (a partial job), a revoked private integration token, and an OAuth sub-account whose
//! rejected token is refreshed once.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, RateLimit, RateLimits, RetryPolicy,
};
use serde_json::{json, Value};
use support::backup::{sync, sync_when_free, BackupApp};
use support::oauth_provider::{configure_service, connect_ok, OauthProvider};
use support::platform_api::{PlatformApi, RetryAfter};

const TOKEN: &str = "pit-5c2a9d4e-7b1f-4e0a-9c3d-2f6b8a1e0d47";
const LOCATION: &str = "ve9EPM428h8vShlRW1KT";
const API: &str = "/gohighlevel";
/// Every data type, parents before their children.
const DATA_TYPES: [&str; 17] = [
    "contacts",
    "opportunities",
    "pipelines",
    "calendars",
    "appointments",
    "conversations",
    "messages",
    "users",
    "tags",
    "custom_fields",
    "forms",
    "form_submissions",
    "surveys",
    "invoices",
    "products",
    "workflows",
    "campaigns",
];

async fn emulation() -> PlatformApi {
    let api = PlatformApi::start().await;
    api.accept("gohighlevel", TOKEN);
    api
}

fn connector(api: &PlatformApi) -> Connector {
    let endpoints =
        PlatformEndpoints::default().with_api_url("gohighlevel", &api.api_url("gohighlevel"));
    Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with("gohighlevel", RateLimit::unlimited()))
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
}

fn credentials(token: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("privateIntegrationToken".to_owned(), token.to_owned()),
        ("locationId".to_owned(), LOCATION.to_owned()),
    ])
}

/// HighLevel's ids are in `id`, but invoices' and products' in `_id`.
fn id_of(record: &Value) -> String {
    record["id"]
        .as_str()
        .or(record["_id"].as_str())
        .unwrap_or_else(|| panic!("no id: {record}"))
        .to_owned()
}

fn sorted(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn drain(
    connector: &Connector,
    data_type: &str,
    token: &str,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(token);
    let request = FetchRequest::new(
        "conn-1",
        find("gohighlevel").unwrap(),
        data_type,
        &credentials,
    );
    support::connectors::drain_request(connector, request).await
}

async fn drain_ok(connector: &Connector, data_type: &str) -> (Vec<Value>, FetchSummary) {
    drain(connector, data_type, TOKEN)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"))
}

fn last_query(api: &PlatformApi, path: &str) -> BTreeMap<String, String> {
    let query = api.last_query(path).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The records a full listing must find: every one seeded (custom fields of contacts and opportunities
/// alike).
fn expected_ids(api: &PlatformApi, data_type: &str) -> Vec<String> {
    sorted(api.listing_ids("gohighlevel", data_type))
}

fn seed_all(api: &PlatformApi) {
    for (data_type, n) in [
        ("contacts", 250),
        ("opportunities", 100),
        ("pipelines", 2),
        ("calendars", 3),
        ("appointments", 30),
        ("conversations", 5),
        ("messages", 450),
        ("users", 3),
        ("tags", 4),
        ("custom_fields", 6),
        ("forms", 60),
        ("form_submissions", 130),
        ("surveys", 3),
        ("invoices", 120),
        ("products", 7),
        ("workflows", 2),
        ("campaigns", 2),
    ] {
        api.seed("gohighlevel", data_type, n);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The connector against the emulation

#[tokio::test]
async fn every_data_type_lists_by_its_mechanism() {
    let api = emulation().await;
    seed_all(&api);
    let connector = connector(&api);
    for data_type in DATA_TYPES {
        let (records, summary) = drain_ok(&connector, data_type).await;
        let ids: Vec<String> = records.iter().map(id_of).collect();
        assert_eq!(
            sorted(ids.clone()),
            expected_ids(&api, data_type),
            "{data_type}"
        );
        assert_eq!(
            ids.len() as u64,
            summary.records,
            "{data_type}: each record once"
        );
    }
    // Contacts: 250 in three pages, each after the last one's id and creation time from `meta`.
    assert_eq!(api.hits(&format!("{API}/contacts/")), 3);
    let last = last_query(&api, &format!("{API}/contacts/"));
    assert_eq!(last["locationId"], LOCATION);
    assert_eq!(last["limit"], "100");
    assert_eq!(
        last["startAfterId"],
        api.id_of("gohighlevel", "contacts", 199)
    );
    assert!(last["startAfter"].parse::<i64>().is_ok(), "{last:?}");
    // Opportunities: `location_id`, every status.
    let last = last_query(&api, &format!("{API}/opportunities/search"));
    assert_eq!(last["location_id"], LOCATION);
    assert_eq!(last["status"], "all");
    // Custom fields of contacts and opportunities (6, where the default would give 3).
    assert_eq!(
        last_query(&api, &format!("{API}/locations/{LOCATION}/customFields"))["model"],
        "all"
    );
    // Submissions from the start, not the last month's; page by page.
    let last = last_query(&api, &format!("{API}/forms/submissions"));
    assert_eq!(last["startAt"], "2000-01-01");
    assert_eq!(last["page"], "2");
    // Forms by `skip` (50 a page), invoices by `offset` (100 a page), both overlapping.
    assert_eq!(api.hits(&format!("{API}/forms/")), 2);
    assert_eq!(api.hits(&format!("{API}/invoices/")), 2);
    assert_eq!(
        last_query(&api, &format!("{API}/invoices/"))["altType"],
        "location"
    );
    // Appointments per calendar: each event names its calendar.
    assert_eq!(api.hits(&format!("{API}/calendars/events")), 3);
    let (events, _) = drain_ok(&connector, "appointments").await;
    let calendars: BTreeSet<String> = events
        .iter()
        .map(|e| e["calendarId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(calendars.len(), 3);
}

#[tokio::test]
async fn an_empty_list_a_full_page_and_an_exactly_full_last_page() {
    let api = emulation().await;
    let connector = connector(&api);
    let path = format!("{API}/contacts/");
    // A full page always names a next one: the empty page after it ends the list.
    for (n, requests) in [(0u64, 1usize), (100, 2), (200, 3)] {
        api.seed("gohighlevel", "contacts", n);
        let before = api.hits(&path);
        let (records, _) = drain_ok(&connector, "contacts").await;
        let ids: Vec<String> = records.iter().map(id_of).collect();
        assert_eq!(ids, api.listing_ids("gohighlevel", "contacts"), "{n}");
        assert_eq!(api.hits(&path) - before, requests, "{n} contacts");
    }
    // Conversations end on a short page, an exactly full last one on the empty page after it.
    let path = format!("{API}/conversations/search");
    for (n, requests) in [(0u64, 1usize), (100, 2), (230, 3)] {
        api.seed("gohighlevel", "conversations", n);
        let before = api.hits(&path);
        let (records, _) = drain_ok(&connector, "conversations").await;
        assert_eq!(
            sorted(records.iter().map(id_of)),
            expected_ids(&api, "conversations")
        );
        assert_eq!(records.len() as u64, n);
        assert_eq!(api.hits(&path) - before, requests, "{n} conversations");
    }
    let last = last_query(&api, &path);
    assert_eq!(
        (last["sort"].as_str(), last["sortBy"].as_str()),
        ("asc", "last_message_date")
    );
    assert!(last["startAfterDate"].parse::<i64>().is_ok(), "{last:?}");
}

#[tokio::test]
async fn a_conversation_that_gets_a_message_while_listed_moves_to_the_end_and_is_still_found() {
    let api = emulation().await;
    api.seed("gohighlevel", "conversations", 230);
    let connector = connector(&api);
    let credentials = credentials(TOKEN);
    let request = FetchRequest::new(
        "conn-1",
        find("gohighlevel").unwrap(),
        "conversations",
        &credentials,
    );
    let mut pager = connector.pages(request).unwrap();
    let mut ids = Vec::new();
    let first = pager.next_page().await.unwrap().unwrap();
    ids.extend(
        first
            .records
            .iter()
            .map(|r| id_of(&serde_json::from_str(r.get()).unwrap())),
    );
    // A conversation of the second page gets a message: it sorts last now.
    api.touch("gohighlevel", "conversations", [150]);
    while let Some(page) = pager.next_page().await.unwrap() {
        ids.extend(
            page.records
                .iter()
                .map(|r| id_of(&serde_json::from_str(r.get()).unwrap())),
        );
    }
    assert_eq!(ids.len(), 230);
    assert_eq!(sorted(ids.clone()), expected_ids(&api, "conversations"));
    assert_eq!(
        ids.last().unwrap(),
        &api.id_of("gohighlevel", "conversations", 150)
    );
}

#[tokio::test]
async fn messages_page_within_each_conversation_after_the_last_message() {
    let api = emulation().await;
    api.seed("gohighlevel", "conversations", 2);
    api.seed("gohighlevel", "messages", 450);
    let connector = connector(&api);
    let (messages, summary) = drain_ok(&connector, "messages").await;
    assert_eq!(
        sorted(messages.iter().map(id_of)),
        expected_ids(&api, "messages")
    );
    assert_eq!(summary.records, 450);
    for conversation in 0..2 {
        let id = api.id_of("gohighlevel", "conversations", conversation);
        // 225 messages: 100, 100, 25.
        assert_eq!(api.hits(&format!("{API}/conversations/{id}/messages")), 3);
        let last = last_query(&api, &format!("{API}/conversations/{id}/messages"));
        assert!(last.contains_key("lastMessageId"), "{last:?}");
    }
    assert!(messages.iter().all(|m| m["conversationId"].is_string()));
}

#[tokio::test]
async fn a_429_and_a_500_mid_run_are_waited_out() {
    let api = emulation().await;
    api.seed("gohighlevel", "contacts", 350);
    let connector = connector(&api);
    let credentials = credentials(TOKEN);
    let request = FetchRequest::new(
        "conn-1",
        find("gohighlevel").unwrap(),
        "contacts",
        &credentials,
    );
    let mut pager = connector.pages(request).unwrap();
    let mut ids: Vec<String> = Vec::new();
    let mut take = |page: listbackup_workers::connectors::Page| {
        ids.extend(
            page.records
                .iter()
                .map(|r| id_of(&serde_json::from_str(r.get()).unwrap())),
        )
    };
    take(pager.next_page().await.unwrap().unwrap());
    api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    take(pager.next_page().await.unwrap().unwrap());
    api.fail_next(1, 500);
    while let Some(page) = pager.next_page().await.unwrap() {
        take(page);
    }
    assert_eq!(ids, api.listing_ids("gohighlevel", "contacts"));
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 2));
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_at_once() {
    let api = emulation().await;
    api.seed("gohighlevel", "contacts", 3);
    let err = drain(&connector(&api), "contacts", "pit-wrong")
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert_eq!(api.hits(&format!("{API}/contacts/")), 1);
}

#[tokio::test]
async fn a_conversation_deleted_since_it_was_listed_is_skipped() {
    let api = emulation().await;
    api.seed("gohighlevel", "conversations", 3);
    api.seed("gohighlevel", "messages", 30);
    let gone = api.id_of("gohighlevel", "conversations", 1);
    api.fail_path(&format!("{API}/conversations/{gone}/messages"), 404);
    let (messages, summary) = drain_ok(&connector(&api), "messages").await;
    assert_eq!(messages.len(), 20);
    assert!(messages
        .iter()
        .all(|m| m["conversationId"] != gone.as_str()));
    assert_eq!(summary.gone_parents, 1);
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

async fn source(
    backup: &BackupApp,
    token: &str,
    connection_id: &str,
    data_types: &[&str],
) -> String {
    let response = backup
        .app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": "Sub-account", "dataTypes": data_types}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    source["sourceId"].as_str().unwrap().to_owned()
}

async fn key_connection(backup: &BackupApp, token: &str) -> String {
    let response = backup
        .app
        .post(
            "/connections",
            token,
            &json!({"platformId": "gohighlevel", "name": "Sub-account",
                    "credentials": {"privateIntegrationToken": TOKEN, "locationId": LOCATION}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    connection["connectionId"].as_str().unwrap().to_owned()
}

fn data_type<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {job}"))
}

#[tokio::test]
async fn a_sub_account_is_tested_and_backed_up_whole() {
    let backup = BackupApp::spawn_emulating(&["gohighlevel"], |_| {}).await;
    backup.api.accept("gohighlevel", TOKEN);
    seed_all(&backup.api);
    let token = backup.app.owner("acme");
    let connection_id = key_connection(&backup, &token).await;
    let source_id = source(&backup, &token, &connection_id, &DATA_TYPES).await;

    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(backup.api.hits(&format!("{API}/locations/{LOCATION}")), 1);
    let tested: Value = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    for check in tested["dataTypes"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "{check}");
    }

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    for name in DATA_TYPES {
        let stored = backup.stored("acme", &source_id, &job_id, name);
        let expected = expected_ids(&backup.api, name);
        assert_eq!(sorted(stored.iter().map(id_of)), expected, "{name}");
        assert_eq!(stored.len(), expected.len(), "{name}: each record once");
        assert_eq!(
            data_type(&job, name)["records"],
            expected.len() as u64,
            "{name}"
        );
    }
    backup.stop().await;
}

#[tokio::test]
async fn a_malformed_list_fails_its_data_type_alone_and_a_revoked_token_fails_the_job() {
    let backup = BackupApp::spawn_emulating(&["gohighlevel"], |_| {}).await;
    backup.api.accept("gohighlevel", TOKEN);
    backup.api.seed("gohighlevel", "contacts", 30);
    backup.api.seed("gohighlevel", "users", 3);
    backup.api.truncate_every(&format!("{API}/users/"));
    let token = backup.app.owner("acme");
    let connection_id = key_connection(&backup, &token).await;
    let source_id = source(&backup, &token, &connection_id, &["contacts", "users"]).await;
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(data_type(&job, "contacts")["status"], "done");
    assert_eq!(data_type(&job, "users")["status"], "failed");
    assert_eq!(
        backup.stored("acme", &source_id, &job_id, "contacts").len(),
        30
    );

    backup.api.revoke("gohighlevel", TOKEN);
    let job_id = sync_when_free(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert!(!job.to_string().contains(TOKEN));
    backup.stop().await;
}

#[tokio::test]
async fn an_oauth_sub_account_is_backed_up_and_a_rejected_token_is_refreshed_once() {
    const DATA_SECRET: &str = "pit-data-plane-secret";
    let provider = OauthProvider::start().await;
    let backup =
        BackupApp::spawn_emulating(&[], |values| configure_service(&provider, values)).await;
    provider.serve_data(
        "gohighlevel",
        &backup.api.api_url("gohighlevel"),
        DATA_SECRET,
    );
    backup.api.accept("gohighlevel", DATA_SECRET);
    backup.api.seed("gohighlevel", "contacts", 250);
    backup.api.seed("gohighlevel", "tags", 4);
    let token = backup.app.owner("acme");
    // The token answer names the sub-account; the connection keeps it for the paths and queries.
    let connection = connect_ok(&backup.app, &token, "gohighlevel", json!({})).await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let source_id = source(&backup, &token, &connection_id, &["contacts", "tags"]).await;
    provider.revoke_access_tokens("gohighlevel");

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(data_type(&job, "contacts")["records"], 250);
    assert_eq!(data_type(&job, "tags")["records"], 4);
    assert_eq!(
        provider.refreshes("gohighlevel"),
        1,
        "one refresh, not one per request"
    );
    assert_eq!(
        last_query(&backup.api, &format!("{API}/contacts/"))["locationId"],
        support::oauth_provider::LOCATION_ID
    );
    assert_eq!(
        backup.api.hits(&format!(
            "{API}/locations/{}/tags",
            support::oauth_provider::LOCATION_ID
        )),
        1
    );
    backup.stop().await;
}

#[tokio::test]
async fn invoice_pages_held_below_the_limit_asked_go_on_to_the_total() {
    let api = emulation().await;
    api.seed("gohighlevel", "invoices", 250);
    api.cap_page_size(&format!("{API}/invoices/"), 40);
    let (records, _) = drain_ok(&connector(&api), "invoices").await;
    let got: Vec<String> = records.iter().map(id_of).collect();
    assert_eq!(got, api.listing_ids("gohighlevel", "invoices"));
}
