//! Zendesk Support against its emulation: cursor pagination (`links.next` while `meta.has_more`), the
//! cursor-based incremental exports of tickets and users (`start_time`, `after_url` until `end_of_stream`),
//! comments per ticket tagged with their ticket, a ticket deleted since it was listed; then, through the
//! service, the connection and source tests, a backup of every data type with its stored files, a data type
//! that fails alone (a partial job) and a revoked API token.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, RateLimit, RateLimits,
    RetryPolicy,
};
use serde_json::{json, Value};
use support::backup::{sync, sync_when_free, BackupApp};
use support::platform_api::{PlatformApi, RetryAfter};

const EMAIL: &str = "ops@acme.test";
const API_TOKEN: &str = "zd-6wiIBWbGkBMo1mRDMuVwkw1EPsNkeUj95PIz2akv";
const API: &str = "/zendesk/api/v2";
/// Every data type, parents before their children.
const DATA_TYPES: [&str; 12] = [
    "tickets",
    "ticket_comments",
    "users",
    "organizations",
    "groups",
    "ticket_fields",
    "macros",
    "views",
    "triggers",
    "automations",
    "satisfaction_ratings",
    "help_center_articles",
];

async fn emulation() -> PlatformApi {
    let api = PlatformApi::start().await;
    api.accept("zendesk", API_TOKEN);
    api
}

fn connector(api: &PlatformApi) -> Connector {
    let endpoints = PlatformEndpoints::default().with_api_url("zendesk", &api.api_url("zendesk"));
    Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with("zendesk", RateLimit::unlimited()))
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
}

fn credentials(token: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("subdomain".to_owned(), "acme".to_owned()),
        ("email".to_owned(), EMAIL.to_owned()),
        ("apiToken".to_owned(), token.to_owned()),
    ])
}

fn id_of(record: &Value) -> String {
    match &record["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
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
    since: Option<IncrementalCursor>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(token);
    let request =
        FetchRequest::new("conn-1", find("zendesk").unwrap(), data_type, &credentials).since(since);
    support::connectors::drain_request(connector, request).await
}

async fn drain_ok(
    connector: &Connector,
    data_type: &str,
    since: Option<IncrementalCursor>,
) -> (Vec<Value>, FetchSummary) {
    drain(connector, data_type, API_TOKEN, since)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"))
}

/// The query of the last request on `path`, decoded.
fn last_query(api: &PlatformApi, path: &str) -> BTreeMap<String, String> {
    let query = api.last_query(path).unwrap_or_default();
    url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// Seeds every data type: 3 tickets whose 630 comments take three pages each.
fn seed_all(api: &PlatformApi) {
    for (data_type, n) in [
        ("tickets", 3),
        ("ticket_comments", 630),
        ("users", 12),
        ("organizations", 150),
        ("groups", 4),
        ("ticket_fields", 9),
        ("macros", 5),
        ("views", 6),
        ("triggers", 7),
        ("automations", 2),
        ("satisfaction_ratings", 101),
        ("help_center_articles", 8),
    ] {
        api.seed("zendesk", data_type, n);
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
        let (records, summary) = drain_ok(&connector, data_type, None).await;
        let ids: Vec<String> = records.iter().map(id_of).collect();
        assert_eq!(
            sorted(ids.clone()),
            sorted(api.listing_ids("zendesk", data_type)),
            "{data_type}"
        );
        assert_eq!(
            ids.len() as u64,
            summary.records,
            "{data_type}: each record once"
        );
    }
    // Cursor pagination: 150 organizations in two pages of 100, `page[size]` and `page[after]`.
    assert_eq!(api.hits(&format!("{API}/organizations.json")), 2);
    let next = last_query(&api, &format!("{API}/organizations.json"));
    assert_eq!(next.get("page[size]").map(String::as_str), Some("100"));
    assert!(next.contains_key("page[after]"), "{next:?}");
    // The tickets export: everything from the start, deleted tickets left out, 1,000 a page.
    let first = last_query(&api, &format!("{API}/incremental/tickets/cursor.json"));
    assert_eq!(first.get("start_time").map(String::as_str), Some("0"));
    assert_eq!(
        first.get("exclude_deleted").map(String::as_str),
        Some("true")
    );
    assert_eq!(first.get("per_page").map(String::as_str), Some("1000"));
    // Comments: three pages for each of the three tickets, each comment tagged with its ticket.
    for ticket in 1..=3 {
        assert_eq!(
            api.hits(&format!("{API}/tickets/{ticket}/comments.json")),
            3
        );
    }
    let (comments, _) = drain_ok(&connector, "ticket_comments", None).await;
    for comment in &comments {
        let index = comment["id"].as_u64().unwrap() - 1;
        assert_eq!(
            comment["ticket_id"],
            (index % 3 + 1).to_string(),
            "{comment}"
        );
    }
}

#[tokio::test]
async fn an_empty_list_a_full_page_and_an_exactly_full_last_page() {
    let api = emulation().await;
    let connector = connector(&api);
    let path = format!("{API}/groups.json");
    // `links.next` comes on the last page too: only `has_more` ends the list.
    for (n, requests) in [(0u64, 1usize), (100, 1), (200, 2)] {
        api.seed("zendesk", "groups", n);
        let before = api.hits(&path);
        let (records, _) = drain_ok(&connector, "groups", None).await;
        let ids: Vec<String> = records.iter().map(id_of).collect();
        assert_eq!(ids, api.listing_ids("zendesk", "groups"), "{n}");
        assert_eq!(api.hits(&path) - before, requests, "{n} groups");
    }
    // The export ends on `end_of_stream`, though its `after_url` is always there.
    let path = format!("{API}/incremental/tickets/cursor.json");
    for (n, requests) in [(0u64, 1usize), (1000, 1), (2000, 2)] {
        api.seed("zendesk", "tickets", n);
        let before = api.hits(&path);
        let (records, _) = drain_ok(&connector, "tickets", None).await;
        assert_eq!(records.len() as u64, n);
        assert_eq!(
            sorted(records.iter().map(id_of)),
            sorted(api.listing_ids("zendesk", "tickets"))
        );
        assert_eq!(api.hits(&path) - before, requests, "{n} tickets");
    }
    let after = last_query(&api, &path);
    assert!(
        after.contains_key("cursor") && !after.contains_key("start_time"),
        "{after:?}"
    );
}

#[tokio::test]
async fn a_429_and_a_500_mid_run_are_waited_out() {
    let api = emulation().await;
    api.seed("zendesk", "organizations", 350);
    let connector = connector(&api);
    let credentials = credentials(API_TOKEN);
    let request = FetchRequest::new(
        "conn-1",
        find("zendesk").unwrap(),
        "organizations",
        &credentials,
    );
    let mut pager = connector.pages(request).unwrap();
    let mut count = pager.next_page().await.unwrap().unwrap().records.len();
    api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    count += pager.next_page().await.unwrap().unwrap().records.len();
    api.fail_next(1, 500);
    while let Some(page) = pager.next_page().await.unwrap() {
        count += page.records.len();
    }
    assert_eq!(count, 350);
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 2));
    assert_eq!(api.hits(&format!("{API}/organizations.json")), 6);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_at_once() {
    let api = emulation().await;
    api.seed("zendesk", "groups", 3);
    let err = drain(&connector(&api), "groups", "zd-wrong", None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert_eq!(api.hits(&format!("{API}/groups.json")), 1);
}

#[tokio::test]
async fn tickets_and_users_are_fetched_incrementally_from_their_exports() {
    let api = emulation().await;
    api.seed("zendesk", "tickets", 1200);
    api.seed("zendesk", "users", 40);
    let connector = connector(&api);
    let (tickets, summary) = drain_ok(&connector, "tickets", None).await;
    assert_eq!(tickets.len(), 1200);
    let ticket_cursor = summary.next_cursor.expect("tickets are incremental");
    assert_eq!(ticket_cursor.field, "generated_timestamp");
    let (_, summary) = drain_ok(&connector, "users", None).await;
    let user_cursor = summary.next_cursor.expect("users are incremental");
    assert_eq!(user_cursor.field, "updated_at");

    // A while later: new tickets and users, and older ones updated.
    api.append("zendesk", "tickets", 3);
    api.touch("zendesk", "tickets", [0, 599]);
    api.append("zendesk", "users", 2);
    api.touch("zendesk", "users", [5]);
    let path = format!("{API}/incremental/tickets/cursor.json");
    let (changed, summary) = drain_ok(&connector, "tickets", Some(ticket_cursor.clone())).await;
    assert!(summary.incremental);
    assert_eq!(
        sorted(changed.iter().map(id_of)),
        sorted(["1", "600", "1201", "1202", "1203"].map(str::to_owned))
    );
    // `start_time` replaces the full run's 0: once, a lookback before the last run's newest change.
    let query = api.last_query(&path).unwrap();
    assert_eq!(query.matches("start_time=").count(), 1, "{query}");
    let start: i64 = last_query(&api, &path)["start_time"].parse().unwrap();
    assert!(
        start > 0 && start <= ticket_cursor.since.timestamp() - 120,
        "{start}"
    );
    let (changed, _) = drain_ok(&connector, "users", Some(user_cursor)).await;
    assert_eq!(
        sorted(changed.iter().map(id_of)),
        sorted(["6", "41", "42"].map(str::to_owned))
    );
}

#[tokio::test]
async fn a_ticket_deleted_since_it_was_listed_has_no_comments_left_and_the_others_still_do() {
    let api = emulation().await;
    api.seed("zendesk", "tickets", 3);
    api.seed("zendesk", "ticket_comments", 30);
    // Ticket 2 is deleted between the export and its comments.
    api.fail_path(&format!("{API}/tickets/2/comments.json"), 404);
    let connector = connector(&api);
    let (comments, summary) = drain_ok(&connector, "ticket_comments", None).await;
    let tickets: BTreeSet<String> = comments
        .iter()
        .map(|c| c["ticket_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tickets, BTreeSet::from(["1".to_owned(), "3".to_owned()]));
    assert_eq!(comments.len(), 20);
    assert_eq!(summary.gone_parents, 1);

    // Every ticket gone is not a race but a listing the platform does not know: the data type fails.
    for ticket in [1, 3] {
        api.fail_path(&format!("{API}/tickets/{ticket}/comments.json"), 404);
    }
    let err = drain(&connector, "ticket_comments", API_TOKEN, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Platform { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_answer_without_has_more_fails_rather_than_end_the_list_early() {
    use listbackup_domain::platform::{
        DataType, Endpoint, Listing, PageSize, Pagination, Platform,
    };
    // An endpoint answering offset pagination (no `meta`), as one that ignored `page[size]` would: the same
    // cursor listing, without the size parameter.
    static GROUPS: &[DataType] = &[DataType::new(
        "groups",
        "Agent groups",
        Listing::new(
            &[Endpoint::get("/groups.json")],
            "/groups",
            Pagination::NextUrl {
                url: "/links/next",
                more: Some("/meta/has_more"),
            },
            PageSize::NONE,
        ),
    )];
    let zendesk = find("zendesk").unwrap();
    let platform: &'static Platform = Box::leak(Box::new(Platform {
        data_types: GROUPS,
        ..zendesk.clone()
    }));
    let api = emulation().await;
    api.seed("zendesk", "groups", 150);
    let credentials = credentials(API_TOKEN);
    let connector = connector(&api);
    let mut pager = connector
        .pages(FetchRequest::new(
            "conn-1",
            platform,
            "groups",
            &credentials,
        ))
        .unwrap();
    let err = pager.next_page().await.unwrap_err();
    assert!(matches!(err, FetchError::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("/meta/has_more"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

async fn zendesk_source(backup: &BackupApp, token: &str, data_types: &[&str]) -> (String, String) {
    let app = &backup.app;
    let response = app
        .post(
            "/connections",
            token,
            &json!({"platformId": "zendesk", "name": "Support",
                    "credentials": {"subdomain": "acme", "email": EMAIL, "apiToken": API_TOKEN}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": "Support", "dataTypes": data_types}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    (
        connection_id,
        source["sourceId"].as_str().unwrap().to_owned(),
    )
}

fn data_type<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {job}"))
}

async fn backup_app() -> BackupApp {
    BackupApp::spawn_emulating(&["zendesk"], |values| {
        values.insert("LISTBACKUP_PLATFORM_ZENDESK_RATE_LIMIT".into(), "50".into());
    })
    .await
}

#[tokio::test]
async fn a_help_desk_is_tested_and_backed_up_whole() {
    let backup = backup_app().await;
    backup.api.accept("zendesk", API_TOKEN);
    seed_all(&backup.api);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = zendesk_source(&backup, &token, &DATA_TYPES).await;

    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    let tested: Value = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(
        tested["dataTypes"].as_array().unwrap().len(),
        DATA_TYPES.len()
    );
    for check in tested["dataTypes"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "{check}");
    }

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    for name in DATA_TYPES {
        let stored = backup.stored("acme", &source_id, &job_id, name);
        let expected = sorted(backup.api.listing_ids("zendesk", name));
        assert_eq!(sorted(stored.iter().map(id_of)), expected, "{name}");
        assert_eq!(stored.len(), expected.len(), "{name}: each record once");
        assert_eq!(
            data_type(&job, name)["records"],
            expected.len() as u64,
            "{name}"
        );
    }
    let comments = backup.stored("acme", &source_id, &job_id, "ticket_comments");
    assert!(comments.iter().all(|c| {
        let ticket = (c["id"].as_u64().unwrap() - 1) % 3 + 1;
        c["ticket_id"].as_str() == Some(ticket.to_string().as_str())
    }));
    backup.stop().await;
}

#[tokio::test]
async fn a_malformed_list_fails_its_data_type_alone_and_a_revoked_token_fails_the_job() {
    let backup = backup_app().await;
    backup.api.accept("zendesk", API_TOKEN);
    backup.api.seed("zendesk", "groups", 5);
    backup.api.seed("zendesk", "macros", 5);
    backup.api.truncate_every(&format!("{API}/macros.json"));
    let token = backup.app.owner("acme");
    let (_, source_id) = zendesk_source(&backup, &token, &["groups", "macros"]).await;
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(data_type(&job, "groups")["status"], "done");
    assert_eq!(data_type(&job, "macros")["status"], "failed");
    assert_eq!(
        backup.stored("acme", &source_id, &job_id, "groups").len(),
        5
    );

    backup.api.revoke("zendesk", API_TOKEN);
    let job_id = sync_when_free(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert!(!job.to_string().contains(API_TOKEN));
    backup.stop().await;
}

/// Zendesk OAuth (authorization code with PKCE at `https://{subdomain}.zendesk.com/oauth/...`, scope `read`):
/// the flow runs against the OAuth provider emulation for the account's subdomain, and the backup then
/// authenticates with `Authorization: Bearer <access token>` (the provider checks the token it issued before
/// the data emulation answers).
#[tokio::test]
async fn an_oauth_connection_backs_up_with_its_bearer_token() {
    use support::oauth_provider::{configure_service, connect_ok, OauthProvider};
    const DATA_SECRET: &str = "zendesk-data-plane-secret";
    let provider = OauthProvider::start().await;
    let backup = BackupApp::spawn_with(|values| configure_service(&provider, values)).await;
    provider.serve_data("zendesk", &backup.api.api_url("zendesk"), DATA_SECRET);
    backup.api.accept("zendesk", DATA_SECRET);
    backup.api.seed("zendesk", "groups", 20);
    backup.api.seed("zendesk", "users", 35);
    let token = backup.app.owner("acme");
    let connection = connect_ok(&backup.app, &token, "zendesk", json!({"subdomain": "acme"})).await;
    assert_eq!(connection["authType"], "oauth2", "{connection}");
    assert_eq!(connection["settings"]["subdomain"], "acme", "{connection}");
    // The authorization server was the account's own.
    let authorize = provider
        .authorize_requests()
        .into_iter()
        .rfind(|r| r.platform == "zendesk")
        .unwrap();
    assert_eq!(authorize.shop.as_deref(), Some("acme"));
    assert_eq!(authorize.params["scope"], "read");
    let connection_id = connection["connectionId"].as_str().unwrap();
    let response = backup
        .app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection_id, "name": "Support",
                    "dataTypes": ["groups", "users"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap();
    let tested: Value = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");

    let job_id = sync(&backup.app, &token, source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(data_type(&job, "groups")["records"], 20, "{job}");
    assert_eq!(data_type(&job, "users")["records"], 35, "{job}");
    let stored = backup.stored("acme", source_id, &job_id, "groups");
    assert_eq!(stored.len(), 20);
    // Every data request reached the platform through the provider, which let it through only with the
    // Bearer access token it issued.
    assert!(backup.api.hits(&format!("{API}/groups.json")) >= 1);
    backup.stop().await;
}
