//! The Stripe, HubSpot and Keap connectors against the local emulation of their list APIs
//! (`support/platform_api.rs`): full drains, incremental runs, resuming, authentication, 429s, 5xx, 4xx and
//! the shared rate budget, with no database or NATS; then, through the service (a backup worker, the
//! database and NATS): `POST /sources/{id}/test`, an empty data set, and a malformed answer for one data
//! type.

use crate::support;

use listbackup_emulators as platform_api;

use std::collections::BTreeMap;
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, PageCursor, RateLimit,
    RateLimits, RetryPolicy,
};
use platform_api::PlatformApi;
use serde_json::value::RawValue;
use serde_json::{json, Value};

const STRIPE_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const HUBSPOT_TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const KEAP_KEY: &str = "KeapAK-0a1b2c3d4e5f6a7b8c9d";

struct Fixture {
    api: PlatformApi,
    connector: Connector,
}

/// The emulation with each platform's test secret accepted, and a connector pointed at it with short
/// backoffs and no rate limit (tests that are about the budget set their own).
async fn fixture() -> Fixture {
    fixture_with(
        RateLimits::default()
            .with("stripe", RateLimit::unlimited())
            .with("hubspot", RateLimit::unlimited())
            .with("keap", RateLimit::unlimited()),
    )
    .await
}

async fn fixture_with(limits: RateLimits) -> Fixture {
    let api = PlatformApi::start().await;
    api.accept("stripe", STRIPE_KEY);
    api.accept("hubspot", HUBSPOT_TOKEN);
    api.accept("keap", KEAP_KEY);
    let endpoints = ["stripe", "hubspot", "keap"]
        .into_iter()
        .fold(PlatformEndpoints::default(), |e, id| {
            e.with_api_url(id, &api.api_url(id))
        });
    let connector = Connector::new(endpoints)
        .with_rate_limits(limits)
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        });
    Fixture { api, connector }
}

fn credentials(platform: &str) -> BTreeMap<String, String> {
    let (field, value) = match platform {
        "stripe" => ("secretKey", STRIPE_KEY),
        "hubspot" => ("accessToken", HUBSPOT_TOKEN),
        "keap" => ("apiKey", KEAP_KEY),
        other => panic!("{other}"),
    };
    BTreeMap::from([(field.to_owned(), value.to_owned())])
}

/// A record as a page hands it over: its JSON text, one line.
fn parse(record: &RawValue) -> Value {
    assert!(!record.get().contains('\n'), "one line: {}", record.get());
    serde_json::from_str(record.get()).unwrap()
}

fn id(record: &RawValue) -> String {
    match &parse(record)["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

/// Ids of every record, in order, and the summary.
async fn drain(
    connector: &Connector,
    platform: &str,
    data_type: &str,
    credentials: &BTreeMap<String, String>,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<String>, FetchSummary), FetchError> {
    let request =
        FetchRequest::new("conn-1", find(platform).unwrap(), data_type, credentials).since(since);
    let mut ids = Vec::new();
    let mut pager = connector.pages(request)?;
    while let Some(page) = pager.next_page().await? {
        assert!(!page.records.is_empty());
        ids.extend(page.records.iter().map(|record| id(record)));
    }
    Ok((ids, pager.summary()))
}

async fn drain_ok(
    fx: &Fixture,
    platform: &str,
    data_type: &str,
    since: Option<IncrementalCursor>,
) -> (Vec<String>, FetchSummary) {
    drain(
        &fx.connector,
        platform,
        data_type,
        &credentials(platform),
        since,
    )
    .await
    .unwrap_or_else(|err| panic!("{platform}/{data_type}: {err}"))
}

// ---------------------------------------------------------------------------------------------------------
// Stripe

#[tokio::test]
async fn stripe_full_drain_returns_every_record_newest_first() {
    let fx = fixture().await;
    fx.api.seed("stripe", "customers", 1234);
    let (ids, summary) = drain_ok(&fx, "stripe", "customers", None).await;
    assert_eq!(ids, fx.api.listing_ids("stripe", "customers"));
    assert_eq!(ids.len(), 1234);
    assert_eq!(ids[0], fx.api.id_of("stripe", "customers", 1233));
    assert_eq!(
        (summary.records, summary.pages, summary.requests),
        (1234, 13, 13)
    );
    assert_eq!(fx.api.hits("/stripe/v1/customers"), 13);
    let last = fx.api.last_query("/stripe/v1/customers").unwrap();
    assert!(
        last.contains("limit=100") && last.contains("starting_after="),
        "{last}"
    );
    // Customers change after creation: a `created` filter would miss that, so no incremental cursor.
    assert!(!summary.incremental);
    assert_eq!(summary.next_cursor, None);
}

#[tokio::test]
async fn stripe_every_data_type_drains_and_subscriptions_include_cancelled_ones() {
    let fx = fixture().await;
    let stripe = find("stripe").unwrap();
    for data_type in stripe.data_types {
        fx.api.seed("stripe", data_type.name, 150);
        let (ids, _) = drain_ok(&fx, "stripe", data_type.name, None).await;
        assert_eq!(ids.len(), 150, "{}", data_type.name);
        assert_eq!(ids, fx.api.listing_ids("stripe", data_type.name));
    }
    let query = fx.api.last_query("/stripe/v1/subscriptions").unwrap();
    assert!(query.contains("status=all"), "{query}");
}

/// An answer without the flag its paging reads (Stripe's `has_more`) was taken for the last page: the
/// records after the first 100 were dropped and the backup succeeded. Missing, the flag fails the data type
/// like a missing next URL does (the "silently-short list" of panoramicdata/Meraki.Api#407).
#[tokio::test]
async fn stripe_an_answer_without_has_more_fails_instead_of_ending_the_list() {
    let fx = fixture().await;
    fx.api.seed("stripe", "customers", 250);
    fx.api.without_member("/stripe/v1/customers", "has_more");
    let err = drain(
        &fx.connector,
        "stripe",
        "customers",
        &credentials("stripe"),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::InvalidResponse(_)), "{err}");
    assert!(err.to_string().contains("has_more"), "{err}");
}

#[tokio::test]
async fn stripe_wrong_key_is_unauthorized_without_retry() {
    let fx = fixture().await;
    fx.api.seed("stripe", "charges", 10);
    let wrong = BTreeMap::from([(
        "secretKey".to_owned(),
        "sk_test_wrong0000000000000000".to_owned(),
    )]);
    let err = drain(&fx.connector, "stripe", "charges", &wrong, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(err.code().as_str(), "UNAUTHORIZED");
    assert!(!err.to_string().contains("wrong"));
    assert_eq!(fx.api.hits("/stripe/v1/charges"), 1);
}

#[tokio::test]
async fn stripe_429_with_retry_after_is_waited_out_and_retried() {
    let fx = fixture().await;
    fx.api.seed("stripe", "charges", 250);
    fx.api.rate_limit_next(1, 1);
    let (ids, summary) = drain_ok(&fx, "stripe", "charges", None).await;
    assert_eq!(ids, fx.api.listing_ids("stripe", "charges"));
    assert_eq!((summary.rate_limited, summary.retries), (1, 1));
    // Three pages plus the rate-limited attempt.
    assert_eq!(fx.api.hits("/stripe/v1/charges"), 4);
}

#[tokio::test]
async fn stripe_503_twice_then_success() {
    let fx = fixture().await;
    fx.api.seed("stripe", "invoices", 150);
    fx.api.fail_next(2, 503);
    let (ids, summary) = drain_ok(&fx, "stripe", "invoices", None).await;
    assert_eq!(ids, fx.api.listing_ids("stripe", "invoices"));
    assert_eq!(summary.retries, 2);
    assert_eq!(fx.api.hits("/stripe/v1/invoices"), 4);
}

#[tokio::test]
async fn stripe_400_fails_without_retry() {
    let fx = fixture().await;
    fx.api.seed("stripe", "refunds", 10);
    fx.api.fail_next(1, 400);
    let err = drain(
        &fx.connector,
        "stripe",
        "refunds",
        &credentials("stripe"),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Platform {
                status: 400,
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.retryable());
    assert_eq!(fx.api.hits("/stripe/v1/refunds"), 1);
}

#[tokio::test]
async fn stripe_500s_are_retried_a_bounded_number_of_times() {
    let fx = fixture().await;
    fx.api.seed("stripe", "payouts", 10);
    fx.api.fail_next(100, 500);
    let err = drain(
        &fx.connector,
        "stripe",
        "payouts",
        &credentials("stripe"),
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Platform {
                status: 500,
                retryable: true,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(fx.api.hits("/stripe/v1/payouts"), 5);
}

#[tokio::test]
async fn stripe_incremental_fetches_only_new_immutable_objects() {
    let fx = fixture().await;
    fx.api.seed("stripe", "events", 300);
    let (first, summary) = drain_ok(&fx, "stripe", "events", None).await;
    assert_eq!(first.len(), 300);
    let cursor = summary.next_cursor.expect("events are incremental");
    assert_eq!(cursor.field, "created");
    // The cursor holds the newest second and which of its records were fetched.
    assert!(cursor.seen_ids.contains(&first[0]));

    fx.api.append("stripe", "events", 7);
    let (second, summary) = drain_ok(&fx, "stripe", "events", Some(cursor.clone())).await;
    let newest: Vec<String> = fx.api.listing_ids("stripe", "events")[..7].to_vec();
    assert_eq!(second, newest);
    assert!(summary.incremental);
    let query = fx.api.last_query("/stripe/v1/events").unwrap();
    assert!(query.contains("created%5Bgte%5D="), "{query}");

    // Nothing new: nothing fetched, and the cursor stays where it is.
    let next = summary.next_cursor.unwrap();
    let (third, summary) = drain_ok(&fx, "stripe", "events", Some(next.clone())).await;
    assert!(third.is_empty());
    assert_eq!(summary.next_cursor, Some(next));
}

#[tokio::test]
async fn stripe_fetch_resumes_after_a_page_cursor() {
    let fx = fixture().await;
    fx.api.seed("stripe", "prices", 450);
    let creds = credentials("stripe");
    let stripe = find("stripe").unwrap();
    let mut ids = Vec::new();
    let mut resume_at: Option<PageCursor> = None;
    {
        let mut pager = fx
            .connector
            .pages(FetchRequest::new("conn-1", stripe, "prices", &creds))
            .unwrap();
        for _ in 0..2 {
            let page = pager.next_page().await.unwrap().unwrap();
            ids.extend(page.records.iter().map(|record| id(record)));
            resume_at = Some(page.cursor);
        }
    }
    // Through JSON, as a worker would keep it.
    let json = serde_json::to_string(&resume_at).unwrap();
    let resume_at: Option<PageCursor> = serde_json::from_str(&json).unwrap();
    let request = FetchRequest::new("conn-1", stripe, "prices", &creds).resume(resume_at);
    let mut pager = fx.connector.pages(request).unwrap();
    while let Some(page) = pager.next_page().await.unwrap() {
        ids.extend(page.records.iter().map(|record| id(record)));
    }
    assert_eq!(ids, fx.api.listing_ids("stripe", "prices"));
}

#[tokio::test]
async fn data_types_of_one_connection_share_its_rate_budget() {
    let fx = fixture_with(RateLimits::default().with("stripe", RateLimit::per_second(50.0))).await;
    fx.api.seed("stripe", "customers", 2000);
    fx.api.seed("stripe", "charges", 2000);
    let budget = fx.connector.rate_budget("conn-1", "stripe");
    let creds = credentials("stripe");
    let (customers, charges) = tokio::join!(
        drain(&fx.connector, "stripe", "customers", &creds, None),
        drain(&fx.connector, "stripe", "charges", &creds, None),
    );
    let (customers, charges) = (customers.unwrap(), charges.unwrap());
    assert_eq!(customers.0.len() + charges.0.len(), 4000);
    let stats = budget.stats();
    // Every request of both data types drew from the connection's one budget …
    assert_eq!(stats.granted, customers.1.requests + charges.1.requests);
    assert_eq!(stats.granted, 40);
    // … which made them queue (at 50 requests/s the two fetches cannot both go at full speed).
    assert!(stats.waited >= 1, "{stats:?}");
    assert!(stats.total_wait >= Duration::from_millis(20), "{stats:?}");
    // Another connection has a budget of its own.
    assert_eq!(
        fx.connector.rate_budget("conn-2", "stripe").stats().granted,
        0
    );
}

// ---------------------------------------------------------------------------------------------------------
// HubSpot

#[tokio::test]
async fn hubspot_full_drain_follows_the_after_cursor() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "contacts", 1234);
    let (ids, summary) = drain_ok(&fx, "hubspot", "contacts", None).await;
    assert_eq!(ids, fx.api.listing_ids("hubspot", "contacts"));
    assert_eq!(ids.first().map(String::as_str), Some("1"));
    assert_eq!((summary.pages, summary.requests), (13, 13));
    assert_eq!(fx.api.hits("/hubspot/crm/v3/objects/contacts"), 13);
    assert_eq!(
        summary.next_cursor.map(|c| c.field),
        Some("lastmodifieddate".to_owned())
    );
}

#[tokio::test]
async fn hubspot_every_data_type_drains() {
    let fx = fixture().await;
    let hubspot = find("hubspot").unwrap();
    for data_type in hubspot.data_types {
        fx.api.seed("hubspot", data_type.name, 150);
        let (ids, _) = drain_ok(&fx, "hubspot", data_type.name, None).await;
        let expected = if data_type.name == "pipelines" {
            300
        } else {
            150
        };
        assert_eq!(ids.len(), expected, "{}", data_type.name);
    }
}

#[tokio::test]
async fn hubspot_pipelines_say_which_object_they_belong_to() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "pipelines", 2);
    let creds = credentials("hubspot");
    let request = FetchRequest::new("conn-1", find("hubspot").unwrap(), "pipelines", &creds);
    let mut objects = Vec::new();
    fx.connector
        .fetch_pages(request, |page| {
            objects.extend(page.records.iter().map(|r| parse(r)["objectType"].clone()));
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!(objects, ["deals", "deals", "tickets", "tickets"]);
}

#[tokio::test]
async fn hubspot_incremental_uses_the_search_api() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "contacts", 500);
    let (_, summary) = drain_ok(&fx, "hubspot", "contacts", None).await;
    let cursor = summary.next_cursor.unwrap();
    assert_eq!(cursor.seen_ids, ["500"]);

    fx.api.touch("hubspot", "contacts", [77, 3, 499]);
    fx.api.append("hubspot", "contacts", 2);
    let (ids, summary) = drain_ok(&fx, "hubspot", "contacts", Some(cursor)).await;
    // Oldest change first: the touches in their order, then the new records.
    assert_eq!(ids, ["78", "4", "500", "501", "502"]);
    assert!(summary.incremental);
    assert!(fx.api.hits("/hubspot/crm/v3/objects/contacts/search") >= 1);

    let next = summary.next_cursor.unwrap();
    let (ids, summary) = drain_ok(&fx, "hubspot", "contacts", Some(next.clone())).await;
    assert!(ids.is_empty());
    assert_eq!(summary.next_cursor, Some(next));
}

#[tokio::test]
async fn hubspot_incremental_goes_past_the_search_window_of_10000() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "deals", 10_250);
    let (_, summary) = drain_ok(&fx, "hubspot", "deals", None).await;
    let cursor = summary.next_cursor.unwrap();
    assert_eq!(cursor.field, "hs_lastmodifieddate");
    fx.api.touch("hubspot", "deals", 0..10_250);
    let (ids, summary) = drain_ok(&fx, "hubspot", "deals", Some(cursor)).await;
    assert_eq!(ids.len(), 10_250);
    assert_eq!(ids, fx.api.listing_ids("hubspot", "deals"));
    // Keyset paging, 200 results per search, re-reads the boundary record of each page: 199 new records
    // per page after the first, one request each.
    assert_eq!(summary.pages, 52, "{summary:?}");
    assert_eq!(summary.requests, 52, "{summary:?}");
}

#[tokio::test]
async fn hubspot_wrong_token_is_unauthorized_and_429_is_retried() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "deals", 120);
    let wrong = BTreeMap::from([("accessToken".to_owned(), "pat-na1-wrong".to_owned())]);
    let err = drain(&fx.connector, "hubspot", "deals", &wrong, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert_eq!(fx.api.hits("/hubspot/crm/v3/objects/deals"), 1);

    fx.api.rate_limit_next(1, 1);
    let (ids, summary) = drain_ok(&fx, "hubspot", "deals", None).await;
    assert_eq!(ids.len(), 120);
    assert_eq!(summary.rate_limited, 1);
    assert_eq!(fx.api.hits("/hubspot/crm/v3/objects/deals"), 1 + 3);
}

#[tokio::test]
async fn hubspot_missing_scope_is_forbidden() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "tickets", 5);
    fx.api.fail_next(1, 403);
    let err = drain(
        &fx.connector,
        "hubspot",
        "tickets",
        &credentials("hubspot"),
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err}");
    assert_eq!(fx.api.hits("/hubspot/crm/v3/objects/tickets"), 1);
}

// ---------------------------------------------------------------------------------------------------------
// Keap

#[tokio::test]
async fn keap_full_drain_pages_by_offset() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 1234);
    let (ids, summary) = drain_ok(&fx, "keap", "contacts", None).await;
    assert_eq!(ids, fx.api.listing_ids("keap", "contacts"));
    // Pages overlap by 10 records: 200, then 190 new per page.
    assert_eq!((summary.pages, summary.requests), (7, 7));
    let last = fx.api.last_query("/keap/crm/rest/v1/contacts").unwrap();
    assert!(
        last.contains("limit=200") && last.contains("offset=1140"),
        "{last}"
    );
}

#[tokio::test]
async fn keap_list_of_exactly_whole_pages_ends_on_the_short_page() {
    let fx = fixture().await;
    fx.api.seed("keap", "orders", 400);
    let (ids, summary) = drain_ok(&fx, "keap", "orders", None).await;
    assert_eq!(ids, fx.api.listing_ids("keap", "orders"));
    // Keap always links a next page; the overlap makes the third page (offset 380) the short one.
    assert_eq!((summary.pages, summary.requests), (3, 3));
}

#[tokio::test]
async fn keap_every_data_type_drains() {
    let fx = fixture().await;
    let keap = find("keap").unwrap();
    for data_type in keap.data_types {
        fx.api.seed("keap", data_type.name, 250);
        let (ids, _) = drain_ok(&fx, "keap", data_type.name, None).await;
        assert_eq!(
            ids,
            fx.api.listing_ids("keap", data_type.name),
            "{}",
            data_type.name
        );
    }
}

#[tokio::test]
async fn keap_oauth_token_goes_as_bearer() {
    let fx = fixture().await;
    fx.api.seed("keap", "tags", 20);
    fx.api.accept("keap", "keap-oauth-access-token");
    let oauth = BTreeMap::from([(
        "accessToken".to_owned(),
        "keap-oauth-access-token".to_owned(),
    )]);
    let (ids, _) = drain(&fx.connector, "keap", "tags", &oauth, None)
        .await
        .unwrap();
    assert_eq!(ids.len(), 20);
}

#[tokio::test]
async fn keap_wrong_key_is_unauthorized_and_503_is_retried() {
    let fx = fixture().await;
    fx.api.seed("keap", "companies", 50);
    let wrong = BTreeMap::from([("apiKey".to_owned(), "KeapAK-wrong".to_owned())]);
    let err = drain(&fx.connector, "keap", "companies", &wrong, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");

    fx.api.fail_next(2, 503);
    let (ids, summary) = drain_ok(&fx, "keap", "companies", None).await;
    assert_eq!(ids.len(), 50);
    assert_eq!(summary.retries, 2);
    assert_eq!(fx.api.hits("/keap/crm/rest/v1/companies"), 1 + 3);
}

#[tokio::test]
async fn keap_incremental_contacts_use_since() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 500);
    let (_, summary) = drain_ok(&fx, "keap", "contacts", None).await;
    let cursor = summary.next_cursor.unwrap();
    assert_eq!(cursor.field, "last_updated");

    fx.api.touch("keap", "contacts", [19, 9]);
    fx.api.append("keap", "contacts", 3);
    let (ids, summary) = drain_ok(&fx, "keap", "contacts", Some(cursor)).await;
    // Keap lists by id.
    assert_eq!(ids, ["10", "20", "501", "502", "503"]);
    assert!(summary.incremental);
    let query = fx.api.last_query("/keap/crm/rest/v1/contacts").unwrap();
    assert!(query.contains("since="), "{query}");
}

#[tokio::test]
async fn a_cursor_for_another_field_means_a_full_fetch() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 30);
    // A HubSpot cursor given to Keap contacts is ignored rather than misread.
    let hubspot_cursor = IncrementalCursor {
        field: "lastmodifieddate".into(),
        since: chrono::Utc::now(),
        seen_ids: vec![],
        recent: vec![],
    };
    let (ids, summary) = drain_ok(&fx, "keap", "contacts", Some(hubspot_cursor)).await;
    assert_eq!(ids.len(), 30);
    assert!(!summary.incremental);
}

/// The size the jobs benchmark drains: the emulation computes pages lazily and the connector holds one page
/// at a time. Slow in debug builds, so run by hand: `cargo test --test connectors_platforms -- --ignored`.
#[tokio::test]
#[ignore]
async fn stripe_drains_a_million_records() {
    let fx = fixture().await;
    fx.api.seed("stripe", "customers", 1_000_000);
    let creds = credentials("stripe");
    let request = FetchRequest::new("conn-1", find("stripe").unwrap(), "customers", &creds);
    let mut expected = 1_000_000u64;
    let summary = fx
        .connector
        .fetch_pages(request, |page| {
            for record in &page.records {
                expected -= 1;
                assert_eq!(id(record), fx.api.id_of("stripe", "customers", expected));
            }
            async { Ok::<_, std::io::Error>(()) }
        })
        .await
        .unwrap();
    assert_eq!((summary.records, summary.pages), (1_000_000, 10_000));
    assert_eq!(expected, 0);
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

/// The service with a backup worker, `platform` pointed at the emulation with its test secret accepted
/// and no rate limit.
async fn service(platform: &str) -> support::backup::BackupApp {
    let limit = format!(
        "LISTBACKUP_PLATFORM_{}_RATE_LIMIT",
        platform.to_ascii_uppercase()
    );
    let backup = support::backup::BackupApp::spawn_for(&[platform], |values| {
        values.insert(limit, "unlimited".into());
    })
    .await;
    let secret = credentials(platform).into_values().next().unwrap();
    backup.api.accept(platform, &secret);
    backup
}

/// The connection's credentials as `POST /connections` takes them.
fn credentials_json(platform: &str) -> Value {
    serde_json::to_value(credentials(platform)).unwrap()
}

/// `POST /sources/{id}/test`: the connection test passes and names the account, each selected data type
/// counts one page of records (`seeded`, each under one page), nothing is backed up.
async fn source_test_counts_one_page_per_data_type(platform: &str, seeded: &[(&str, u64)]) {
    let backup = service(platform).await;
    for (data_type, n) in seeded {
        backup.api.seed(platform, data_type, *n);
    }
    let token = backup.app.owner("acme");
    let names: Vec<&str> = seeded.iter().map(|(name, _)| *name).collect();
    let (_, source_id) = backup
        .key_source(&token, platform, credentials_json(platform), Some(&names))
        .await;
    let response = backup
        .app
        .post(&format!("/sources/{source_id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let tested: Value = response.json().await.unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    assert!(tested.get("code").is_none(), "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .starts_with("authenticated as"),
        "{tested}"
    );
    let samples = tested["dataTypes"].as_array().unwrap();
    assert_eq!(samples.len(), seeded.len(), "{tested}");
    for (data_type, n) in seeded {
        let sample = support::backup::job_data_type(&tested, data_type);
        assert_eq!(sample["ok"], true, "{sample}");
        assert_eq!(sample["sampleCount"], *n, "{sample}");
    }
    // A test stores nothing.
    assert!(
        !backup.storage.join("accounts").exists(),
        "a source test wrote a backup"
    );
    backup.stop().await;
}

#[tokio::test]
async fn hubspot_source_test_counts_one_page_of_each_data_type() {
    source_test_counts_one_page_per_data_type(
        "hubspot",
        &[("contacts", 42), ("companies", 0), ("deals", 7)],
    )
    .await;
}

#[tokio::test]
async fn keap_source_test_counts_one_page_of_each_data_type() {
    source_test_counts_one_page_per_data_type(
        "keap",
        &[("contacts", 150), ("companies", 0), ("tags", 9)],
    )
    .await;
}

/// A data set with no records backs up to an empty artifact, and the job succeeds.
async fn an_empty_data_set_backs_up_to_an_empty_file(platform: &str, data_type: &str) {
    let backup = service(platform).await;
    backup.api.seed(platform, data_type, 0);
    let token = backup.app.owner("acme");
    let (_, source_id) = backup
        .key_source(
            &token,
            platform,
            credentials_json(platform),
            Some(&[data_type]),
        )
        .await;
    let job_id = support::backup::sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let entry = support::backup::job_data_type(&job, data_type);
    assert_eq!(entry["status"], "done", "{job}");
    assert_eq!(entry["records"], 0, "{job}");
    assert!(backup
        .stored("acme", &source_id, &job_id, data_type)
        .is_empty());
    backup.stop().await;
}

#[tokio::test]
async fn stripe_an_empty_data_set_backs_up_to_an_empty_file() {
    an_empty_data_set_backs_up_to_an_empty_file("stripe", "customers").await;
}

#[tokio::test]
async fn hubspot_an_empty_data_set_backs_up_to_an_empty_file() {
    an_empty_data_set_backs_up_to_an_empty_file("hubspot", "contacts").await;
}

#[tokio::test]
async fn keap_an_empty_data_set_backs_up_to_an_empty_file() {
    an_empty_data_set_backs_up_to_an_empty_file("keap", "contacts").await;
}

/// How the answers of one data type are damaged.
#[derive(Clone, Copy)]
enum Damage {
    /// Every answer cut in half: not JSON.
    NotJson,
    /// Well-formed JSON without the list of records.
    NoList,
}

/// The answers of `broken` (at `path`) are damaged on every request: that data type fails, the two
/// others are backed up whole, and the job is `partial` (the backup engine's per-data-type outcomes).
async fn a_malformed_body_fails_only_its_data_type(
    platform: &str,
    good: [&str; 2],
    broken: &str,
    path: &str,
    damage: Damage,
) {
    let backup = service(platform).await;
    for data_type in good {
        backup.api.seed(platform, data_type, 120);
    }
    backup.api.seed(platform, broken, 30);
    match damage {
        Damage::NotJson => backup.api.truncate_every(path),
        Damage::NoList => backup.api.without_lists(path),
    }
    let token = backup.app.owner("acme");
    let (_, source_id) = backup
        .key_source(
            &token,
            platform,
            credentials_json(platform),
            Some(&[good[0], broken, good[1]]),
        )
        .await;
    let job_id = support::backup::sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    let failed = support::backup::job_data_type(&job, broken);
    assert_eq!(failed["status"], "failed", "{job}");
    assert_eq!(failed["error"]["code"], "PLATFORM_ERROR", "{job}");
    // Cut-off bodies may arrive whole next time (a transport failure); a body without its list would not.
    let retryable = matches!(damage, Damage::NotJson);
    assert_eq!(failed["error"]["retryable"], retryable, "{job}");
    for data_type in good {
        let entry = support::backup::job_data_type(&job, data_type);
        assert_eq!(entry["status"], "done", "{job}");
        assert_eq!(entry["records"], 120, "{job}");
        let stored = backup.stored("acme", &source_id, &job_id, data_type);
        assert_eq!(stored.len(), 120, "{data_type}");
    }
    backup.stop().await;
}

#[tokio::test]
async fn stripe_a_malformed_body_fails_only_its_data_type() {
    a_malformed_body_fails_only_its_data_type(
        "stripe",
        ["customers", "products"],
        "invoices",
        "/stripe/v1/invoices",
        Damage::NoList,
    )
    .await;
}

#[tokio::test]
async fn hubspot_a_malformed_body_fails_only_its_data_type() {
    a_malformed_body_fails_only_its_data_type(
        "hubspot",
        ["contacts", "deals"],
        "companies",
        "/hubspot/crm/v3/objects/companies",
        Damage::NotJson,
    )
    .await;
}

#[tokio::test]
async fn keap_a_malformed_body_fails_only_its_data_type() {
    a_malformed_body_fails_only_its_data_type(
        "keap",
        ["contacts", "tags"],
        "companies",
        "/keap/crm/rest/v1/companies",
        Damage::NoList,
    )
    .await;
}
