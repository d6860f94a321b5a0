//! The backup engine's paging against platforms that misbehave the way real ones do (issue 9): paging that
//! goes in circles or never ends, offset lists that change between pages, records that become visible after
//! their change time, thousands of records changed at one instant behind a capped search API, damaged 200
//! bodies, and `Retry-After` in each of its forms. The connectors are driven directly against the local
//! emulation (`support/platform_api.rs`): no database or NATS needed.
//!
//! Every fetch here runs under a deadline: a listing that never ends fails its test instead of hanging it.

use listbackup_emulators as platform_api;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, IncrementalCursor, RateLimit, RateLimits,
    RetryPolicy,
};
use platform_api::{PagingFault, PlatformApi, RetryAfter};
use serde::Serialize;
use serde_json::Value;

const STRIPE_KEY: &str = "sk_test_4eC39HqLyjWDarjtT1zdp7dc";
const HUBSPOT_TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";
const KEAP_KEY: &str = "KeapAK-0a1b2c3d4e5f6a7b8c9d";

/// How long any one fetch may take here; the slowest (10,050 HubSpot contacts) needs a few seconds.
const DEADLINE: Duration = Duration::from_secs(60);

struct Fixture {
    api: PlatformApi,
    connector: Connector,
}

/// The emulation with each platform's test secret accepted, and a connector pointed at it with short
/// backoffs (at most 20 ms before the first retry) and no rate limit.
async fn fixture() -> Fixture {
    let api = PlatformApi::start().await;
    api.accept("stripe", STRIPE_KEY);
    api.accept("hubspot", HUBSPOT_TOKEN);
    api.accept("keap", KEAP_KEY);
    let endpoints = ["stripe", "hubspot", "keap"]
        .into_iter()
        .fold(PlatformEndpoints::default(), |e, id| {
            e.with_api_url(id, &api.api_url(id))
        });
    let limits = RateLimits::default()
        .with("stripe", RateLimit::unlimited())
        .with("hubspot", RateLimit::unlimited())
        .with("keap", RateLimit::unlimited());
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

/// A record as a page hands it over, read back as JSON.
fn json(record: &impl Serialize) -> Value {
    serde_json::to_value(record).unwrap()
}

fn id(record: &impl Serialize) -> String {
    match &json(record)["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

async fn within<T>(what: &str, fetch: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fetch)
        .await
        .unwrap_or_else(|_| panic!("{what}: still paging after {DEADLINE:?}"))
}

/// Ids of every record, in order, and the summary.
async fn drain(
    fx: &Fixture,
    platform: &str,
    data_type: &str,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<String>, FetchSummary), FetchError> {
    let creds = credentials(platform);
    let request =
        FetchRequest::new("conn-1", find(platform).unwrap(), data_type, &creds).since(since);
    within(&format!("{platform}/{data_type}"), async {
        let mut pager = fx.connector.pages(request)?;
        let mut ids = Vec::new();
        while let Some(page) = pager.next_page().await? {
            ids.extend(page.records.iter().map(id));
        }
        Ok((ids, pager.summary()))
    })
    .await
}

async fn drain_ok(
    fx: &Fixture,
    platform: &str,
    data_type: &str,
    since: Option<IncrementalCursor>,
) -> (Vec<String>, FetchSummary) {
    drain(fx, platform, data_type, since)
        .await
        .unwrap_or_else(|err| panic!("{platform}/{data_type}: {err}"))
}

fn assert_paging_loop(err: &FetchError, names: &str) {
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR", "{err}");
    assert!(!err.retryable(), "{err}");
    let message = err.to_string();
    assert!(message.contains(names), "{message}");
    assert!(message.contains("never end"), "{message}");
}

// ---------------------------------------------------------------------------------------------------------
// Paging always ends

#[tokio::test]
async fn hubspot_a_repeated_after_cursor_ends_the_data_type() {
    // The input: a contacts list answering the same 100 records with the same `paging.next.after`.
    let fx = fixture().await;
    fx.api.seed("hubspot", "contacts", 1_000);
    let path = "/hubspot/crm/v3/objects/contacts";
    fx.api.paging_fault(path, PagingFault::IgnoresCursor);
    let err = drain(&fx, "hubspot", "contacts", None).await.unwrap_err();
    assert_paging_loop(&err, "after=101 a second time");
    // The first page, then the one that repeated the cursor: nothing more was asked.
    assert_eq!(fx.api.hits(path), 2);
}

#[tokio::test]
async fn stripe_a_page_ending_with_an_id_already_used_ends_the_data_type() {
    let fx = fixture().await;
    fx.api.seed("stripe", "customers", 250);
    let path = "/stripe/v1/customers";
    fx.api.paging_fault(path, PagingFault::IgnoresCursor);
    let err = drain(&fx, "stripe", "customers", None).await.unwrap_err();
    let last_of_first_page = fx.api.listing_ids("stripe", "customers")[99].clone();
    assert_paging_loop(&err, &format!("`{last_of_first_page}` again"));
    assert!(err.to_string().contains("starting_after"), "{err}");
    assert_eq!(fx.api.hits(path), 2);
}

#[tokio::test]
async fn hubspot_a_page_repeating_earlier_records_under_a_new_cursor_ends_the_data_type() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "deals", 1_000);
    let path = "/hubspot/crm/v3/objects/deals";
    fx.api.paging_fault(path, PagingFault::RepeatsRecords);
    let err = drain(&fx, "hubspot", "deals", None).await.unwrap_err();
    assert_paging_loop(
        &err,
        "the same page of 100 records (`1` to `100`) a second time",
    );
    assert_eq!(fx.api.hits(path), 2);
}

#[tokio::test]
async fn keap_an_ignored_offset_ends_the_data_type() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 500);
    let path = "/keap/crm/rest/v1/contacts";
    fx.api.paging_fault(path, PagingFault::IgnoresCursor);
    let err = drain(&fx, "keap", "contacts", None).await.unwrap_err();
    assert_paging_loop(
        &err,
        "the same page of 200 records (`1` to `200`) a second time",
    );
    assert_eq!(fx.api.hits(path), 2);
}

#[tokio::test]
async fn keap_pages_far_beyond_the_announced_count_end_the_data_type() {
    let fx = fixture().await;
    fx.api.seed("keap", "orders", 300);
    let path = "/keap/crm/rest/v1/orders";
    fx.api.paging_fault(path, PagingFault::Endless);
    let err = drain(&fx, "keap", "orders", None).await.unwrap_err();
    assert_paging_loop(&err, "announced 300 records");
    // 300 records need 2 pages; twice that plus two are tolerated, the seventh is refused.
    assert_eq!(fx.api.hits(path), 7);
}

// ---------------------------------------------------------------------------------------------------------
// Offset paging without silent skips

#[tokio::test]
async fn keap_records_deleted_before_the_position_between_pages_skip_nothing() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 1_000);
    let creds = credentials("keap");
    let request = FetchRequest::new("conn-1", find("keap").unwrap(), "contacts", &creds);
    let mut deleted = BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    within("keap/contacts", async {
        let mut pager = fx.connector.pages(request).unwrap();
        let mut page_number = 0;
        while let Some(page) = pager.next_page().await.unwrap() {
            out.extend(page.records.iter().map(id));
            page_number += 1;
            // Between pages, records before the position disappear: a few after the first page (fewer than
            // the overlap), many after the second (more than the overlap, the previous page's last included).
            let gone: Vec<u64> = match page_number {
                1 => (10..15).collect(),
                2 => (150..381).collect(),
                _ => vec![],
            };
            fx.api.delete("keap", "contacts", gone.iter().copied());
            deleted.extend(gone.iter().map(|i| fx.api.id_of("keap", "contacts", *i)));
        }
    })
    .await;
    let unique: BTreeSet<&String> = out.iter().collect();
    assert_eq!(unique.len(), out.len(), "no record twice");
    for index in 0..1_000 {
        let id = fx.api.id_of("keap", "contacts", index);
        if !deleted.contains(&id) {
            assert!(
                unique.contains(&id),
                "contact {id} existed all along but was skipped"
            );
        }
    }
}

#[tokio::test]
async fn keap_a_list_that_changed_too_much_to_place_the_next_page_fails_as_retryable() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 1_000);
    let creds = credentials("keap");
    let request = FetchRequest::new("conn-1", find("keap").unwrap(), "contacts", &creds);
    let err = within("keap/contacts", async {
        let mut pager = fx.connector.pages(request).unwrap();
        pager.next_page().await.unwrap().unwrap();
        // Every record of the first page is gone, and more: nothing can tell where the list resumes.
        fx.api.delete("keap", "contacts", 0..400);
        loop {
            match pager.next_page().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the fetch ended as if nothing had been skipped"),
                Err(err) => break err,
            }
        }
    })
    .await;
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR", "{err}");
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains("changed too much"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Incremental runs that lose nothing

#[tokio::test]
async fn stripe_an_event_visible_late_is_in_the_next_incremental_backup() {
    // Events are created every 500 ms: index i at T + i/2 s. Run 1 sees T…T+9 s, except the event created
    // at T+5 s, which Stripe shows only later; after run 1 it appears, and so does one created at T+20 s.
    let fx = fixture().await;
    fx.api.seed("stripe", "events", 41);
    let late = 10; // T+5 s
    let newer = 40; // T+20 s
    fx.api.hide("stripe", "events", [late]);
    fx.api.hide("stripe", "events", 19..=40);
    let (first, summary) = drain_ok(&fx, "stripe", "events", None).await;
    assert_eq!(first.len(), 18);
    let cursor = summary.next_cursor.expect("events are incremental");

    fx.api.reveal("stripe", "events", [late, newer]);
    let (second, summary) = drain_ok(&fx, "stripe", "events", Some(cursor)).await;
    assert_eq!(
        second,
        [
            fx.api.id_of("stripe", "events", newer),
            fx.api.id_of("stripe", "events", late)
        ],
        "the late event and the new one, nothing run 1 stored"
    );
    assert!(summary.incremental);

    // And the run after that holds both already.
    let (third, _) = drain_ok(&fx, "stripe", "events", summary.next_cursor).await;
    assert!(third.is_empty(), "{third:?}");
}

#[tokio::test]
async fn a_cursor_written_before_the_lookback_window_still_works() {
    // Cursors stored by earlier versions hold `{field, since, seenIds}` only. The run after the upgrade
    // fetches the window's records again (it cannot tell they are held): duplicates, never a loss.
    let fx = fixture().await;
    fx.api.seed("stripe", "events", 300);
    let (_, summary) = drain_ok(&fx, "stripe", "events", None).await;
    let mut old = serde_json::to_value(summary.next_cursor.unwrap()).unwrap();
    old.as_object_mut().unwrap().remove("recent");
    let old: IncrementalCursor = serde_json::from_value(old).unwrap();
    let held_at_since = old.seen_ids.len();

    fx.api.append("stripe", "events", 7);
    let (second, summary) = drain_ok(&fx, "stripe", "events", Some(old)).await;
    let listing = fx.api.listing_ids("stripe", "events");
    assert_eq!(second[..7], listing[..7], "the new events first");
    // Everything in the window except what the old cursor named.
    assert_eq!(second.len(), 307 - held_at_since);
    // The next cursor is a full one again: the run after holds everything.
    let (third, _) = drain_ok(&fx, "stripe", "events", summary.next_cursor).await;
    assert!(third.is_empty(), "{third:?}");
}

#[tokio::test]
async fn hubspot_a_record_changed_again_inside_the_window_is_fetched_again() {
    // The cursor remembers (id, change time): a record it holds, changed again, is a new version.
    let fx = fixture().await;
    fx.api.seed("hubspot", "contacts", 20);
    let (_, summary) = drain_ok(&fx, "hubspot", "contacts", None).await;
    fx.api.touch("hubspot", "contacts", [5]);
    let (second, summary) = drain_ok(&fx, "hubspot", "contacts", summary.next_cursor).await;
    assert_eq!(second, ["6"]);
    fx.api.touch("hubspot", "contacts", [5, 7]);
    let (third, summary) = drain_ok(&fx, "hubspot", "contacts", summary.next_cursor).await;
    assert_eq!(third, ["6", "8"]);
    let (fourth, _) = drain_ok(&fx, "hubspot", "contacts", summary.next_cursor).await;
    assert!(fourth.is_empty(), "{fourth:?}");
}

#[tokio::test]
async fn hubspot_10050_contacts_changed_at_one_instant_are_all_backed_up() {
    // The input: run 1 backs up 5 contacts; then 10,050 contacts share one `lastmodifieddate`, and
    // the search API refuses to page past 10,000 results.
    let fx = fixture().await;
    fx.api.seed("hubspot", "contacts", 5);
    let (first, summary) = drain_ok(&fx, "hubspot", "contacts", None).await;
    assert_eq!(first.len(), 5);
    fx.api.append("hubspot", "contacts", 10_050);
    fx.api.touch_together("hubspot", "contacts", 5..10_055);

    let (second, summary) = drain_ok(&fx, "hubspot", "contacts", summary.next_cursor).await;
    let stored: BTreeSet<&String> = second.iter().collect();
    assert_eq!(stored.len(), second.len(), "no contact twice");
    let expected: Vec<String> = (5..10_055)
        .map(|i| fx.api.id_of("hubspot", "contacts", i))
        .collect();
    assert_eq!(
        stored,
        expected.iter().collect(),
        "every contact of the tie"
    );
    // One request per 200 results (the search maximum), plus the boundaries: not one per record.
    assert!(summary.requests <= 60, "{summary:?}");
    assert_eq!(
        fx.api.hits("/hubspot/crm/v3/objects/contacts/search") as u64,
        summary.requests
    );

    // Run 3 holds them all.
    let (third, _) = drain_ok(&fx, "hubspot", "contacts", summary.next_cursor).await;
    assert!(third.is_empty(), "{} fetched again", third.len());
}

// ---------------------------------------------------------------------------------------------------------
// Transient versus permanent

#[tokio::test]
async fn stripe_a_200_cut_off_once_is_retried_and_every_record_arrives() {
    // The input: customers page 2 answered once with status 200 and the first half of its body.
    let fx = fixture().await;
    fx.api.seed("stripe", "customers", 250);
    let path = "/stripe/v1/customers";
    fx.api.truncate_nth(path, 2);
    let (ids, summary) = drain_ok(&fx, "stripe", "customers", None).await;
    assert_eq!(ids, fx.api.listing_ids("stripe", "customers"));
    assert_eq!(summary.retries, 1, "{summary:?}");
    assert_eq!(fx.api.hits(path), 4);
}

#[tokio::test]
async fn keap_a_body_cut_off_on_every_attempt_fails_as_retryable() {
    let fx = fixture().await;
    fx.api.seed("keap", "tags", 30);
    let path = "/keap/crm/rest/v1/tags";
    fx.api.truncate_every(path);
    let err = drain(&fx, "keap", "tags", None).await.unwrap_err();
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR", "{err}");
    assert!(err.retryable(), "{err}");
    assert!(err.to_string().contains("not complete JSON"), "{err}");
    // Every attempt of the retry policy was spent.
    assert_eq!(
        fx.api.hits(path),
        RetryPolicy::default().max_attempts as usize
    );
}

/// The time between the first and the second request to a platform.
fn first_gap(api: &PlatformApi, platform: &str) -> Duration {
    let arrivals = api.arrivals(platform);
    assert!(arrivals.len() >= 2, "{} requests", arrivals.len());
    arrivals[1] - arrivals[0]
}

#[tokio::test]
async fn a_429_retry_after_with_a_fraction_is_waited_out() {
    let fx = fixture().await;
    fx.api.seed("hubspot", "deals", 10);
    fx.api.rate_limit_next_with(1, RetryAfter::Decimal(1.0));
    let (ids, summary) = drain_ok(&fx, "hubspot", "deals", None).await;
    assert_eq!(ids.len(), 10);
    assert_eq!(summary.rate_limited, 1);
    // `1.0` seconds, not the 10–20 ms backoff used when the header cannot be read.
    let gap = first_gap(&fx.api, "hubspot");
    assert!(gap >= Duration::from_millis(1_000), "{gap:?}");
}

#[tokio::test]
async fn a_429_retry_after_as_an_http_date_is_waited_out() {
    let fx = fixture().await;
    fx.api.seed("stripe", "charges", 10);
    // The date has whole seconds: two seconds from the answer means a wait of more than one.
    fx.api
        .rate_limit_next_with(1, RetryAfter::DateIn(Duration::from_secs(2)));
    let (ids, _) = drain_ok(&fx, "stripe", "charges", None).await;
    assert_eq!(ids.len(), 10);
    let gap = first_gap(&fx.api, "stripe");
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
}

#[tokio::test]
async fn a_503_retry_after_as_an_http_date_is_waited_out() {
    let fx = fixture().await;
    fx.api.seed("keap", "companies", 10);
    fx.api
        .fail_next_with(1, 503, RetryAfter::DateIn(Duration::from_secs(2)));
    let (ids, summary) = drain_ok(&fx, "keap", "companies", None).await;
    assert_eq!(ids.len(), 10);
    assert_eq!(summary.retries, 1);
    let gap = first_gap(&fx.api, "keap");
    assert!(gap >= Duration::from_millis(900), "{gap:?}");
}

#[tokio::test]
async fn a_retry_after_date_beyond_the_cap_fails_at_once_as_rate_limited() {
    let fx = fixture().await;
    fx.api.seed("stripe", "charges", 10);
    // Ten minutes: beyond the policy's two-minute cap, so the fetch stops rather than wait.
    fx.api
        .rate_limit_next_with(1, RetryAfter::DateIn(Duration::from_secs(600)));
    let err = drain(&fx, "stripe", "charges", None).await.unwrap_err();
    assert_eq!(err.code().as_str(), "RATE_LIMITED", "{err}");
    assert!(err.retryable());
    assert_eq!(fx.api.hits("/stripe/v1/charges"), 1);
}

// ---------------------------------------------------------------------------------------------------------
// The record path

#[tokio::test]
async fn pretty_printed_records_are_handed_over_one_per_line() {
    let fx = fixture().await;
    fx.api.seed("stripe", "invoices", 150);
    fx.api.pretty("/stripe/v1/invoices");
    let creds = credentials("stripe");
    let request = FetchRequest::new("conn-1", find("stripe").unwrap(), "invoices", &creds);
    let mut records = Vec::new();
    within("stripe/invoices", async {
        let mut pager = fx.connector.pages(request).unwrap();
        while let Some(page) = pager.next_page().await.unwrap() {
            for record in &page.records {
                let line = serde_json::to_string(record).unwrap();
                assert!(!line.contains('\n'), "{line}");
                records.push(json(record));
            }
        }
    })
    .await;
    let ids: Vec<String> = records.iter().map(id).collect();
    assert_eq!(ids, fx.api.listing_ids("stripe", "invoices"));
    assert_eq!(records[0]["object"], "invoice");
}

#[tokio::test]
async fn keap_pages_held_below_the_limit_asked_go_on_to_the_announced_count() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 1_000);
    fx.api.cap_page_size("/keap/crm/rest/v1/contacts", 64);
    let (ids, _) = drain_ok(&fx, "keap", "contacts", None).await;
    assert_eq!(ids, fx.api.listing_ids("keap", "contacts"));
}

#[tokio::test]
async fn keap_an_empty_page_short_of_the_announced_count_fails_as_retryable() {
    let fx = fixture().await;
    fx.api.seed("keap", "contacts", 1_000);
    let path = "/keap/crm/rest/v1/contacts";
    let creds = credentials("keap");
    let request = FetchRequest::new("conn-1", find("keap").unwrap(), "contacts", &creds);
    let err = within("keap/contacts", async {
        let mut pager = fx.connector.pages(request).unwrap();
        pager.next_page().await.unwrap().unwrap();
        // From now on every page is empty, while `count` still says 1,000.
        fx.api.cap_page_size(path, 0);
        loop {
            match pager.next_page().await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the fetch ended as if the list had ended"),
                Err(err) => break err,
            }
        }
    })
    .await;
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR", "{err}");
    assert!(err.retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("announced 1000 records but answered none"),
        "{err}"
    );
    assert_eq!(fx.api.hits(path), 2);
}
