//! QuickBooks Online (issue 10): every data type backed up through the Accounting API's query language as
//! its emulation (`listbackup-emulators`, `quickbooks.rs`) answers it from Intuit's reference:
//! `STARTPOSITION`/`MAXRESULTS` inside the statement, `{"QueryResponse":{}}` for nothing, name lists with
//! their inactive records, `Metadata.LastUpdatedTime` for incremental runs, Fault bodies, 429s and 5xx
//! mid-run. Through the service, the connection comes from the OAuth flow (tests/support/oauth_provider.rs,
//! which hands out the realm and fronts the data emulation as the resource server): a rejected access
//! token is refreshed once.

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
use support::backup::{gunzip_lines, sync, BackupApp};
use support::oauth_provider::{configure_service, connect, OauthProvider, REALM_ID};
use support::platform_api::{quickbooks, PlatformApi, RetryAfter};

const TOKEN: &str = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..emulated-access-token";
const DATA_SECRET: &str = "quickbooks-data-plane-secret";

/// Every data type: (name, entity, a name list).
const DATA_TYPES: [(&str, &str, bool); 19] = [
    ("accounts", "Account", true),
    ("customers", "Customer", true),
    ("vendors", "Vendor", true),
    ("employees", "Employee", true),
    ("items", "Item", true),
    ("invoices", "Invoice", false),
    ("estimates", "Estimate", false),
    ("sales_receipts", "SalesReceipt", false),
    ("payments", "Payment", false),
    ("credit_memos", "CreditMemo", false),
    ("bills", "Bill", false),
    ("bill_payments", "BillPayment", false),
    ("purchases", "Purchase", false),
    ("deposits", "Deposit", false),
    ("transfers", "Transfer", false),
    ("journal_entries", "JournalEntry", false),
    ("tax_codes", "TaxCode", true),
    ("classes", "Class", true),
    ("departments", "Department", true),
];

fn credentials(token: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("accessToken".to_owned(), token.to_owned()),
        ("realmId".to_owned(), quickbooks::REALM_ID.to_owned()),
    ])
}

async fn fixture() -> (PlatformApi, Connector) {
    let api = PlatformApi::start().await;
    api.accept("quickbooks", TOKEN);
    let connector = Connector::new(
        PlatformEndpoints::default().with_api_url("quickbooks", &api.api_url("quickbooks")),
    )
    .with_rate_limits(RateLimits::default().with("quickbooks", RateLimit::unlimited()))
    .with_retry_policy(RetryPolicy {
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RetryPolicy::default()
    });
    (api, connector)
}

fn query_path() -> String {
    format!("/quickbooks/v3/company/{}/query", quickbooks::REALM_ID)
}

/// The last statement sent, decoded, and the minor version.
fn last_statement(api: &PlatformApi) -> (String, Option<String>) {
    let query = api.last_query(&query_path()).unwrap();
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    (params["query"].clone(), params.get("minorversion").cloned())
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
    token: &str,
    since: Option<IncrementalCursor>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    let credentials = credentials(token);
    let platform = find("quickbooks").unwrap();
    let request = FetchRequest::new("conn-qbo", platform, data_type, &credentials).since(since);
    support::connectors::drain_request(connector, request).await
}

async fn drain_ok(connector: &Connector, data_type: &str) -> (Vec<Value>, FetchSummary) {
    drain(connector, data_type, TOKEN, None)
        .await
        .unwrap_or_else(|err| panic!("{data_type}: {err}"))
}

fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Connector

#[tokio::test]
async fn an_empty_company_answers_an_empty_query_response() {
    let (api, connector) = fixture().await;
    let (records, summary) = drain_ok(&connector, "customers").await;
    assert!(records.is_empty());
    assert_eq!((summary.pages, summary.requests), (0, 1));
    let (statement, minor) = last_statement(&api);
    assert_eq!(
        statement,
        "SELECT * FROM Customer WHERE Active IN (true, false) ORDERBY Metadata.LastUpdatedTime \
         STARTPOSITION 1 MAXRESULTS 1000"
    );
    assert_eq!(minor.as_deref(), Some("75"));
    let (records, _) = drain_ok(&connector, "invoices").await;
    assert!(records.is_empty());
    assert_eq!(
        last_statement(&api).0,
        "SELECT * FROM Invoice ORDERBY Metadata.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000"
    );
}

#[tokio::test]
async fn one_full_page_and_a_last_page_exactly_full() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "invoices", 1000);
    let (records, summary) = drain_ok(&connector, "invoices").await;
    assert_eq!(ids(&records), api.listing_ids("quickbooks", "invoices"));
    // The full page, then the overlap of the next start (20 records, all seen): the end.
    assert_eq!((summary.records, summary.requests), (1000, 2));
    assert!(last_statement(&api)
        .0
        .ends_with("STARTPOSITION 981 MAXRESULTS 1000"));

    api.seed("quickbooks", "bills", 2000);
    let (records, summary) = drain_ok(&connector, "bills").await;
    assert_eq!(ids(&records), api.listing_ids("quickbooks", "bills"));
    assert_eq!((summary.records, summary.requests), (2000, 3));
}

#[tokio::test]
async fn every_data_type_is_queried_from_its_entity_with_inactive_name_list_records() {
    let (api, connector) = fixture().await;
    for (i, (data_type, entity, name_list)) in DATA_TYPES.into_iter().enumerate() {
        api.seed("quickbooks", data_type, 12 + i as u64);
        let (records, _) = drain_ok(&connector, data_type).await;
        assert_eq!(
            ids(&records),
            api.listing_ids("quickbooks", data_type),
            "{data_type}"
        );
        let statement = last_statement(&api).0;
        assert!(
            statement.starts_with(&format!("SELECT * FROM {entity} ")),
            "{statement}"
        );
        if name_list {
            // Deactivated records (here every tenth) are what QuickBooks "deleted": backed up too.
            assert!(records.iter().any(|r| r["Active"] == false), "{data_type}");
        }
    }
    let (company, summary) = drain_ok(&connector, "company_info").await;
    assert_eq!(summary.requests, 1);
    assert_eq!(company.len(), 1);
    assert_eq!(company[0]["CompanyName"], "Emulated Books Inc");
    assert_eq!(last_statement(&api).0, "SELECT * FROM CompanyInfo");
}

#[tokio::test]
async fn a_record_updated_mid_run_moves_to_the_end_and_nothing_is_skipped() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "invoices", 2500);
    let credentials = credentials(TOKEN);
    let platform = find("quickbooks").unwrap();
    let mut pager = connector
        .pages(FetchRequest::new("c", platform, "invoices", &credentials))
        .unwrap();
    let mut got = ids(&parse(&pager.next_page().await.unwrap().unwrap().records));
    // Sorted by last update, these move behind everything: the rest of the list shifts left.
    api.touch("quickbooks", "invoices", [10, 500]);
    while let Some(page) = pager.next_page().await.unwrap() {
        got.extend(ids(&parse(&page.records)));
    }
    let all: BTreeSet<String> = api
        .listing_ids("quickbooks", "invoices")
        .into_iter()
        .collect();
    let seen: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(seen, all, "no invoice skipped");
    // The two moved ones come again, in their new version, among the last; every other invoice once.
    assert_eq!(got.len(), 2502);
    for id in &all {
        let times = got.iter().filter(|got| *got == id).count();
        let moved = id == "11" || id == "501";
        assert_eq!(times, if moved { 2 } else { 1 }, "invoice {id}");
    }
    let tail = &got[2497..];
    assert!(tail.contains(&"11".to_owned()) && tail.contains(&"501".to_owned()));
}

#[tokio::test]
async fn changes_are_fetched_by_last_updated_time_inside_the_statement() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "customers", 1500);
    let (first, summary) = drain_ok(&connector, "customers").await;
    assert_eq!(first.len(), 1500);
    let cursor = summary.next_cursor.expect("incremental");
    assert_eq!(cursor.field, "LastUpdatedTime");
    api.touch("quickbooks", "customers", [4, 1209]);
    api.append("quickbooks", "customers", 1);
    let (changed, summary) = drain(&connector, "customers", TOKEN, Some(cursor))
        .await
        .unwrap();
    assert!(summary.incremental);
    assert_eq!(
        ids(&changed),
        ["5", "1210", "1501"],
        "in order of last update"
    );
    let statement = last_statement(&api).0;
    assert!(
        statement.starts_with(
            "SELECT * FROM Customer WHERE Active IN (true, false) AND Metadata.LastUpdatedTime >= '20"
        ) && statement.ends_with("' ORDERBY Metadata.LastUpdatedTime STARTPOSITION 1 MAXRESULTS 1000"),
        "{statement}"
    );
    // The same for a transaction entity, without the name lists' condition.
    api.seed("quickbooks", "payments", 30);
    let cursor = drain_ok(&connector, "payments")
        .await
        .1
        .next_cursor
        .unwrap();
    api.touch("quickbooks", "payments", [0]);
    let (changed, _) = drain(&connector, "payments", TOKEN, Some(cursor))
        .await
        .unwrap();
    assert_eq!(ids(&changed), ["1"]);
    assert!(last_statement(&api)
        .0
        .starts_with("SELECT * FROM Payment WHERE Metadata.LastUpdatedTime >= '"));
    // CompanyInfo has no change filter.
    assert_eq!(
        drain_ok(&connector, "company_info").await.1.next_cursor,
        None
    );
}

#[tokio::test]
async fn a_rejected_token_is_unauthorized_and_faults_give_their_detail() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "items", 5);
    let err = drain(&connector, "items", "expired-token", None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    assert!(err.is_connection_wide());
    assert_eq!(api.hits(&query_path()), 1);
    // A Fault's Detail is the message.
    api.fail_path(&query_path(), 400);
    let err = drain(&connector, "items", TOKEN, None).await.unwrap_err();
    assert_eq!(err.code().as_str(), "PLATFORM_ERROR");
    assert!(
        err.to_string()
            .contains("The request could not be processed."),
        "{err}"
    );
}

#[tokio::test]
async fn a_429_and_a_500_mid_run_are_waited_out_and_retried() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "journal_entries", 3100);
    let credentials = credentials(TOKEN);
    let platform = find("quickbooks").unwrap();
    let mut pager = connector
        .pages(FetchRequest::new(
            "c",
            platform,
            "journal_entries",
            &credentials,
        ))
        .unwrap();
    let mut got = ids(&parse(&pager.next_page().await.unwrap().unwrap().records));
    api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    let started = Instant::now();
    got.extend(ids(&parse(
        &pager.next_page().await.unwrap().unwrap().records,
    )));
    assert!(started.elapsed() >= Duration::from_secs(1));
    api.fail_next(1, 500);
    while let Some(page) = pager.next_page().await.unwrap() {
        got.extend(ids(&parse(&page.records)));
    }
    assert_eq!(got, api.listing_ids("quickbooks", "journal_entries"));
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 2));
}

// ---------------------------------------------------------------------------------------------------------
// Through the service, connected by OAuth

/// A service whose QuickBooks OAuth and API are the provider emulation, the provider fronting the data
/// emulation; no rate limit.
async fn service(provider: &OauthProvider) -> BackupApp {
    let backup = BackupApp::spawn_with(|values| {
        configure_service(provider, values);
        values.insert(
            "LISTBACKUP_PLATFORM_QUICKBOOKS_RATE_LIMIT".into(),
            "unlimited".into(),
        );
    })
    .await;
    provider.serve_data("quickbooks", &backup.api.api_url("quickbooks"), DATA_SECRET);
    backup.api.accept("quickbooks", DATA_SECRET);
    backup
}

/// A QuickBooks connection by the OAuth flow, and a source of `data_types` (all when `None`).
async fn source(backup: &BackupApp, token: &str, data_types: Option<&[&str]>) -> (String, String) {
    let connection_id = connect_quickbooks(backup, token).await;
    let mut body = json!({"connectionId": connection_id, "name": "Books"});
    if let Some(data_types) = data_types {
        body["dataTypes"] = json!(data_types);
    }
    let response = backup.app.post("/sources", token, &body).await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    (
        connection_id,
        source["sourceId"].as_str().unwrap().to_owned(),
    )
}

/// Connects QuickBooks by the OAuth flow; the connection's id. A loaded machine may keep the callback from
/// seeing its read model within the service's deadline: it then answers 503 "recorded, read it again
/// shortly", and the connection is read again until it shows.
async fn connect_quickbooks(backup: &BackupApp, token: &str) -> String {
    let response = connect(&backup.app, token, "quickbooks", json!({})).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    if status == 201 {
        return body["connectionId"].as_str().unwrap().to_owned();
    }
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "UNAVAILABLE", "{body}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page: Value = backup
            .app
            .get("/connections?platformId=quickbooks", token)
            .await
            .json()
            .await
            .unwrap();
        if let Some(id) = page["connections"][0]["connectionId"].as_str() {
            return id.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the connection never showed: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    assert_eq!(
        REALM_ID,
        quickbooks::REALM_ID,
        "one company in both emulations"
    );
    let provider = OauthProvider::start().await;
    let backup = service(&provider).await;
    let api = &backup.api;
    for (i, (data_type, _, _)) in DATA_TYPES.into_iter().enumerate() {
        api.seed("quickbooks", data_type, [0, 3, 1000, 1234][i % 4]);
    }
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = source(&backup, &token, None).await;
    let tested: Value = backup.app.test_connection(&token, &connection_id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert!(
        tested["message"]
            .as_str()
            .unwrap()
            .contains("Emulated Books Inc"),
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
    assert_eq!(samples.len(), 20);
    for sample in samples {
        let name = sample["name"].as_str().unwrap();
        let expected = if name == "company_info" {
            1
        } else {
            api.count("quickbooks", name).min(1000)
        };
        assert_eq!(sample["sampleCount"], expected, "{sample}");
    }

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    let mut total = 0;
    for (data_type, _, _) in DATA_TYPES {
        let stored = gunzip_lines(&dir.join(format!("{data_type}.ndjson.gz")));
        let expected = api.listing_ids("quickbooks", data_type);
        assert_eq!(ids(&stored), expected, "{data_type}");
        assert_eq!(
            entry(&job, data_type)["records"],
            expected.len(),
            "{data_type}"
        );
        total += expected.len();
    }
    let company = gunzip_lines(&dir.join("company_info.ndjson.gz"));
    assert_eq!(company.len(), 1);
    assert_eq!(company[0]["CompanyName"], "Emulated Books Inc");
    assert_eq!(job["progress"]["records"], total + 1);
    backup.stop().await;
}

#[tokio::test]
async fn a_rejected_access_token_is_refreshed_once_and_the_backup_carries_on() {
    let provider = OauthProvider::start().await;
    let backup = service(&provider).await;
    backup.api.seed("quickbooks", "invoices", 1500);
    backup.api.seed("quickbooks", "customers", 20);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) =
        source(&backup, &token, Some(&["invoices", "customers"])).await;
    // Valid for an hour, yet no longer accepted (revoked, or the user changed a password).
    provider.revoke_access_tokens("quickbooks");
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["records"], 1520);
    assert_eq!(
        provider.refreshes("quickbooks"),
        1,
        "one refresh, not one per request"
    );
    // Intuit's token endpoint authenticates the client with HTTP Basic.
    assert!(provider
        .token_requests()
        .iter()
        .filter(|r| r.platform == "quickbooks")
        .all(|r| r.basic_auth && !r.secret_in_body));
    let events = backup.app.event_types(&connection_id).await;
    assert!(events.contains(&"TokenRefreshed".to_owned()), "{events:?}");
    backup.stop().await;
}

#[tokio::test]
async fn a_damaged_body_fails_its_data_type_and_the_others_are_kept() {
    let provider = OauthProvider::start().await;
    let backup = service(&provider).await;
    backup.api.seed("quickbooks", "vendors", 15);
    backup.api.seed("quickbooks", "deposits", 4);
    let token = backup.app.owner("acme");
    let (_, source_id) = source(
        &backup,
        &token,
        Some(&["company_info", "vendors", "deposits"]),
    )
    .await;
    // Every answer about vendors arrives cut in half.
    backup
        .api
        .truncate_every(&format!("{}#Vendor", query_path()));
    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "partial", "{job}");
    assert_eq!(entry(&job, "company_info")["records"], 1, "{job}");
    assert_eq!(entry(&job, "deposits")["records"], 4, "{job}");
    let vendors = entry(&job, "vendors");
    assert_eq!(vendors["status"], "failed", "{job}");
    assert_eq!(vendors["error"]["code"], "PLATFORM_ERROR");
    assert_eq!(vendors["error"]["retryable"], true);
    backup.stop().await;
}

#[tokio::test]
async fn a_start_position_the_api_ignores_ends_as_a_paging_loop() {
    let (api, connector) = fixture().await;
    api.seed("quickbooks", "estimates", 2500);
    // STARTPOSITION ignored: every query answers the first thousand again.
    api.paging_fault(
        &query_path(),
        support::platform_api::PagingFault::IgnoresCursor,
    );
    let err = drain(&connector, "estimates", TOKEN, None)
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::PagingLoop(_)), "{err}");
    assert!(err.to_string().contains("same page"), "{err}");
    assert_eq!(api.hits(&query_path()), 2);
}
