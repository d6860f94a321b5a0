//! Shopify (Admin REST 2026-10) against its emulation: the connector's paging by `Link` header (only `limit`
//! beside `page_info`), per-parent listings, the store as one record, the leaky bucket and `Retry-After: 2.0`,
//! incremental runs by `updated_at_min`; then, through the service, the connection and source tests, a
//! backup of every data type with its stored files, a data type that fails alone (a partial job), a revoked
//! custom-app token, and an OAuth store whose rejected token asks the customer to reconnect.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, RateLimit, RateLimits,
    RetryPolicy,
};
use serde_json::{json, Value};
use support::backup::{sync, BackupApp};
use support::oauth_provider::{configure_service, connect_ok, OauthProvider};
use support::platform_api::{PagingFault, PlatformApi, RetryAfter};

const TOKEN: &str = "shpat_0123456789abcdef0123456789abcdef";
const BASE: &str = "/shopify/admin/api/2026-10";
/// Every data type, parents before their children.
const DATA_TYPES: [&str; 14] = [
    "shop",
    "customers",
    "orders",
    "draft_orders",
    "products",
    "custom_collections",
    "smart_collections",
    "locations",
    "inventory_levels",
    "price_rules",
    "discount_codes",
    "pages",
    "blogs",
    "articles",
];

async fn emulation() -> PlatformApi {
    let api = PlatformApi::start().await;
    api.accept("shopify", TOKEN);
    api
}

/// A connector pointed at the emulation with Shopify's default rate (it keeps inside the emulated bucket),
/// or the given one, and short backoffs.
fn connector(api: &PlatformApi, rate: Option<RateLimit>) -> Connector {
    let endpoints = PlatformEndpoints::default().with_api_url("shopify", &api.api_url("shopify"));
    let limits = match rate {
        Some(rate) => RateLimits::default().with("shopify", rate),
        None => RateLimits::default(),
    };
    Connector::new(endpoints)
        .with_rate_limits(limits)
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
}

fn credentials(token: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("shop".to_owned(), "emulated-store.myshopify.com".to_owned()),
        ("adminApiAccessToken".to_owned(), token.to_owned()),
    ])
}

fn id_of(record: &Value, field: &str) -> String {
    match &record[field] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

fn id_field(data_type: &str) -> &'static str {
    if data_type == "inventory_levels" {
        "inventory_item_id"
    } else {
        "id"
    }
}

/// Every record of a data type, in order, and the summary.
async fn drain(
    connector: &Connector,
    data_type: &str,
    token: &str,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(token);
    let request =
        FetchRequest::new("conn-1", find("shopify").unwrap(), data_type, &credentials).since(since);
    support::connectors::drain_request(connector, request).await
}

async fn drain_ids(connector: &Connector, data_type: &str) -> (Vec<String>, FetchSummary) {
    let (records, summary) = drain(connector, data_type, TOKEN, None)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"));
    let ids = records
        .iter()
        .map(|r| id_of(r, id_field(data_type)))
        .collect();
    (ids, summary)
}

fn sorted(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    ids.into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Seeds every data type; each parent has children on several pages.
fn seed_all(api: &PlatformApi) {
    for (data_type, n) in [
        ("customers", 260),
        ("orders", 300),
        ("draft_orders", 7),
        ("products", 12),
        ("custom_collections", 3),
        ("smart_collections", 2),
        ("locations", 3),
        ("inventory_levels", 780),
        ("price_rules", 2),
        ("discount_codes", 520),
        ("pages", 4),
        ("blogs", 2),
        ("articles", 9),
    ] {
        api.seed("shopify", data_type, n);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The connector against the emulation

#[tokio::test]
async fn every_data_type_lists_by_its_mechanism() {
    let api = emulation().await;
    seed_all(&api);
    let connector = connector(&api, None);
    for data_type in DATA_TYPES {
        let (ids, summary) = drain_ids(&connector, data_type).await;
        let expected = match data_type {
            "shop" => vec!["548380009".to_owned()],
            other => api.listing_ids("shopify", other),
        };
        assert_eq!(sorted(ids.clone()), sorted(expected), "{data_type}");
        assert_eq!(
            ids.len() as u64,
            summary.records,
            "{data_type}: no duplicates"
        );
        assert_eq!(
            summary.rate_limited, 0,
            "{data_type}: the default rate keeps inside the bucket"
        );
    }
    // Orders: every status (`status=any` on the first request only; the link carries it on).
    assert_eq!(api.hits(&format!("{BASE}/orders.json")), 2);
    let next = api.last_query(&format!("{BASE}/orders.json")).unwrap();
    let params: BTreeSet<&str> = next
        .split('&')
        .map(|p| p.split_once('=').unwrap().0)
        .collect();
    assert_eq!(params, BTreeSet::from(["limit", "page_info"]), "{next}");
    // Per parent: 260 discount codes per price rule take two pages each; 260 inventory levels per location.
    assert_eq!(
        api.hits(&format!("{BASE}/price_rules/1/discount_codes.json")),
        2
    );
    assert_eq!(
        api.hits(&format!("{BASE}/price_rules/2/discount_codes.json")),
        2
    );
    for location in 1..=3 {
        assert_eq!(
            api.hits(&format!(
                "{BASE}/locations/{location}/inventory_levels.json"
            )),
            2
        );
    }
    // A child names its parent (no tag needed).
    let (articles, _) = drain(&connector, "articles", TOKEN, None).await.unwrap();
    assert!(articles
        .iter()
        .all(|a| a["blog_id"] == 1 || a["blog_id"] == 2));
    // The store is one record, as Shopify sends it.
    let (shop, _) = drain(&connector, "shop", TOKEN, None).await.unwrap();
    assert_eq!(shop[0]["myshopify_domain"], "emulated-store.myshopify.com");
}

#[tokio::test]
async fn an_empty_list_a_full_page_and_an_exactly_full_last_page() {
    let api = emulation().await;
    let connector = connector(&api, None);
    let path = format!("{BASE}/customers.json");
    for (n, requests) in [(0u64, 1usize), (250, 1), (500, 2)] {
        api.seed("shopify", "customers", n);
        let before = api.hits(&path);
        let (ids, summary) = drain_ids(&connector, "customers").await;
        assert_eq!(ids, api.listing_ids("shopify", "customers"), "{n}");
        assert_eq!(summary.records, n);
        // No `Link` after the last page: it ends without another request.
        assert_eq!(api.hits(&path) - before, requests, "{n} customers");
        assert!(api.last_query(&path).unwrap().contains("limit=250"));
    }
}

#[tokio::test]
async fn a_429_with_retry_after_2_0_mid_run_is_waited_out() {
    let api = emulation().await;
    api.seed("shopify", "products", 600);
    let connector = connector(&api, None);
    let credentials = credentials(TOKEN);
    let request = FetchRequest::new("conn-1", find("shopify").unwrap(), "products", &credentials);
    let mut pager = connector.pages(request).unwrap();
    let mut ids: Vec<u64> = Vec::new();
    let first = pager.next_page().await.unwrap().unwrap();
    ids.extend(first.records.iter().map(|r| {
        serde_json::from_str::<Value>(r.get()).unwrap()["id"]
            .as_u64()
            .unwrap()
    }));
    api.rate_limit_next_with(1, RetryAfter::Decimal(2.0));
    let started = Instant::now();
    while let Some(page) = pager.next_page().await.unwrap() {
        ids.extend(page.records.iter().map(|r| {
            serde_json::from_str::<Value>(r.get()).unwrap()["id"]
                .as_u64()
                .unwrap()
        }));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "Retry-After: 2.0 waited out"
    );
    assert_eq!(ids, (1..=600).collect::<Vec<_>>());
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 1));
    assert_eq!(api.hits(&format!("{BASE}/products.json")), 4);
}

/// `n` one-page fetches at once through one connector; their summaries.
async fn at_once(connector: &Connector, n: usize) -> Vec<FetchSummary> {
    let fetches = (0..n).map(|_| drain(connector, "customers", TOKEN, None));
    futures::future::join_all(fetches)
        .await
        .into_iter()
        .map(|fetched| fetched.unwrap().1)
        .collect()
}

#[tokio::test]
async fn without_a_budget_the_bucket_overflows_and_with_the_default_one_it_does_not() {
    // 45 requests at once: more than the bucket's 40.
    let unbudgeted = emulation().await;
    unbudgeted.seed("shopify", "customers", 1);
    let summaries = at_once(&connector(&unbudgeted, Some(RateLimit::unlimited())), 45).await;
    let rate_limited: u64 = summaries.iter().map(|s| s.rate_limited).sum();
    assert!(rate_limited >= 1, "{summaries:?}");
    assert!(
        summaries.iter().all(|s| s.records == 1),
        "each waited its 429 out"
    );

    let budgeted = emulation().await;
    budgeted.seed("shopify", "customers", 1);
    let summaries = at_once(&connector(&budgeted, None), 45).await;
    let rate_limited: u64 = summaries.iter().map(|s| s.rate_limited).sum();
    assert_eq!(rate_limited, 0, "{summaries:?}");
    assert_eq!(budgeted.hits(&format!("{BASE}/customers.json")), 45);
}

#[tokio::test]
async fn a_transient_500_is_retried_and_nothing_is_lost() {
    let api = emulation().await;
    api.seed("shopify", "orders", 700);
    let connector = connector(&api, None);
    let credentials = credentials(TOKEN);
    let request = FetchRequest::new("conn-1", find("shopify").unwrap(), "orders", &credentials);
    let mut pager = connector.pages(request).unwrap();
    let mut count = pager.next_page().await.unwrap().unwrap().records.len();
    api.fail_next(1, 500);
    while let Some(page) = pager.next_page().await.unwrap() {
        count += page.records.len();
    }
    assert_eq!(count, 700);
    assert_eq!(pager.summary().retries, 1);
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized_at_once() {
    let api = emulation().await;
    api.seed("shopify", "customers", 10);
    let err = drain(&connector(&api, None), "customers", "shpat_wrong", None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert_eq!(api.hits(&format!("{BASE}/customers.json")), 1);
}

#[tokio::test]
async fn a_page_info_that_leads_back_to_the_first_page_ends_the_data_type() {
    let api = emulation().await;
    api.seed("shopify", "customers", 600);
    api.paging_fault(
        &format!("{BASE}/customers.json"),
        PagingFault::IgnoresCursor,
    );
    let err = drain(&connector(&api, None), "customers", TOKEN, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::PagingLoop(_)), "{err}");
    assert!(err.to_string().contains("never end"), "{err}");
}

#[tokio::test]
async fn incremental_runs_ask_for_what_changed_since_on_the_first_request_only() {
    let api = emulation().await;
    api.seed("shopify", "customers", 300);
    let connector = connector(&api, None);
    let (all, summary) = drain(&connector, "customers", TOKEN, None).await.unwrap();
    assert_eq!(all.len(), 300);
    let cursor = summary.next_cursor.expect("customers are incremental");
    assert_eq!(cursor.field, "updated_at");

    // Two customers are new, three change, and a bulk of 260 older ones changes too, so the changes span
    // pages. (A second later than the last run's newest change: Shopify's times have whole seconds.)
    api.append("shopify", "customers", 2);
    api.touch("shopify", "customers", [3, 150, 299]);
    api.touch("shopify", "customers", 10..270);
    let path = format!("{BASE}/customers.json");
    let before = api.hits(&path);
    let (changed, summary) = drain(&connector, "customers", TOKEN, Some(cursor))
        .await
        .unwrap();
    assert!(summary.incremental);
    let ids = sorted(changed.iter().map(|r| id_of(r, "id")));
    let mut expected: BTreeSet<u64> = (11..=270).collect();
    expected.extend([4, 151, 300, 301, 302]);
    assert_eq!(
        ids,
        sorted(expected.iter().map(u64::to_string)),
        "the changed and the new"
    );
    assert_eq!(changed.len(), expected.len(), "each once");
    assert_eq!(api.hits(&path) - before, 2);
    // The second request is the link: `page_info` and `limit`, no filter beside them.
    let last = api.last_query(&path).unwrap();
    assert!(
        last.contains("page_info=") && !last.contains("updated_at_min"),
        "{last}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

async fn key_source(backup: &BackupApp, token: &str, data_types: &[&str]) -> (String, String) {
    let app = &backup.app;
    let response = app
        .post(
            "/connections",
            token,
            &json!({"platformId": "shopify", "name": "Store",
                    "credentials": {"shop": "emulated-store.myshopify.com", "adminApiAccessToken": TOKEN}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": "Store", "dataTypes": data_types}),
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

#[tokio::test]
async fn a_store_is_tested_and_backed_up_whole() {
    let backup = BackupApp::spawn_emulating(&["shopify"], |_| {}).await;
    backup.api.accept("shopify", TOKEN);
    seed_all(&backup.api);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = key_source(&backup, &token, &DATA_TYPES).await;

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
    for check in tested["dataTypes"].as_array().unwrap() {
        assert_eq!(check["ok"], true, "{check}");
    }

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    for name in DATA_TYPES {
        let stored = backup.stored("acme", &source_id, &job_id, name);
        let ids = sorted(stored.iter().map(|r| id_of(r, id_field(name))));
        let expected = match name {
            "shop" => vec!["548380009".to_owned()],
            other => sorted(backup.api.listing_ids("shopify", other)),
        };
        assert_eq!(ids, expected, "{name}");
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
    let backup = BackupApp::spawn_emulating(&["shopify"], |_| {}).await;
    backup.api.accept("shopify", TOKEN);
    backup.api.seed("shopify", "customers", 30);
    backup.api.seed("shopify", "products", 30);
    backup.api.truncate_every(&format!("{BASE}/products.json"));
    let token = backup.app.owner("acme");
    let (_, source_id) = key_source(&backup, &token, &["customers", "products"]).await;
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(data_type(&job, "customers")["status"], "done");
    assert_eq!(data_type(&job, "customers")["records"], 30);
    assert_eq!(data_type(&job, "products")["status"], "failed", "{job}");
    assert_eq!(
        backup
            .stored("acme", &source_id, &job_id, "customers")
            .len(),
        30
    );

    // The merchant uninstalls the custom app: the token stops working.
    backup.api.revoke("shopify", TOKEN);
    let job_id = support::backup::sync_when_free(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "UNAUTHORIZED", "{job}");
    assert!(!job.to_string().contains(TOKEN));
    backup.stop().await;
}

#[tokio::test]
async fn an_oauth_store_is_backed_up_and_a_rejected_token_asks_to_reconnect() {
    const DATA_SECRET: &str = "shpat_data_plane_secret";
    let provider = OauthProvider::start().await;
    let backup =
        BackupApp::spawn_emulating(&[], |values| configure_service(&provider, values)).await;
    provider.serve_data("shopify", &backup.api.api_url("shopify"), DATA_SECRET);
    backup.api.accept("shopify", DATA_SECRET);
    backup.api.seed("shopify", "orders", 520);
    let token = backup.app.owner("acme");
    let connection = connect_ok(
        &backup.app,
        &token,
        "shopify",
        json!({"shop": "emulated-store.myshopify.com"}),
    )
    .await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let response = backup
        .app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection_id, "name": "Store", "dataTypes": ["orders"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap().to_owned();

    // Three pages through the resource server, whose links point at it.
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["records"], 520);
    assert_eq!(backup.api.hits(&format!("{BASE}/orders.json")), 3);

    // Shopify's offline tokens have no refresh token: a rejected one needs the merchant.
    provider.revoke_access_tokens("shopify");
    let job_id = support::backup::sync_when_free(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "REAUTH_REQUIRED", "{job}");
    let view: Value = backup
        .app
        .get(&format!("/connections/{connection_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["status"], "expired");
    backup.stop().await;
}

/// A record dated in the future (a customer whose `updated_at` is in 2100: a platform whose data or clock is
/// off) moved the incremental cursor there; the next run then asked for `updated_at_min` near 2100 and every
/// change made in between was never backed up, with no error (airbytehq/airbyte#27498, Klaviyo: "we won't
/// notice them because we have state stored in the future"; estuary/connectors#3285). The record is kept,
/// and the cursor stays at the newest change not after the fetch's start.
#[tokio::test]
async fn a_record_dated_in_the_future_does_not_move_the_cursor_past_later_changes() {
    let api = emulation().await;
    api.seed("shopify", "customers", 30);
    let connector = connector(&api, None);
    let (_, summary) = drain(&connector, "customers", TOKEN, None).await.unwrap();
    let first = summary.next_cursor.expect("customers are incremental");

    const YEAR_2100_MS: i64 = 4_102_444_800_000;
    api.touch_at("shopify", "customers", 5, YEAR_2100_MS);
    api.touch("shopify", "customers", [7]);
    let (changed, summary) = drain(&connector, "customers", TOKEN, Some(first))
        .await
        .unwrap();
    assert_eq!(sorted(changed.iter().map(|r| id_of(r, "id"))), ["6", "8"]);
    let second = summary.next_cursor.unwrap();
    assert!(
        second.since <= chrono::Utc::now(),
        "the cursor is not in the future: {second:?}"
    );

    // A change made after that run, long before 2100.
    api.touch("shopify", "customers", [9]);
    let (changed, _) = drain(&connector, "customers", TOKEN, Some(second))
        .await
        .unwrap();
    let ids = sorted(changed.iter().map(|r| id_of(r, "id")));
    assert!(ids.contains(&"10".to_owned()), "the later change: {ids:?}");
}
