//! Records kept byte for byte, whatever they hold: inputs from other connectors' public bug reports, served
//! by the platform emulations as a custom field of every record ([`PlatformApi::raw_field`]).
//!
//! The value is JSON text no `serde_json::Value` (without `arbitrary_precision`) can hold or holds only
//! rounded: `1e400` (RFC 8259 §6 sets no range), `12345678901234567890.123`, an integer past 2^64, and strings
//! with a lone surrogate escape (`"\ud800"`, §8.2: valid JSON text, what a platform cutting text at UTF-16 code
//! units leaves of an emoji), `\u0000` and an escaped emoji. Reports of the same fault kind elsewhere:
//! large ids rounded by a parser building floats (databricks/cli#4136, rhysd/fixjson#19); one lone
//! surrogate failing every filter of a document, "neither … confined to the field holding the bad value"
//! (dgtlmoon/changedetection.io#4293).

use crate::support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_workers::connectors::{Connector, FetchRequest, RateLimit, RateLimits, RetryPolicy};
use support::files::direct;
use support::platform_api::PlatformApi;

/// The custom field's value, exactly as every record carries it.
const HELD: &str = r#"{"big":1e400,"digits":12345678901234567890.123,"tenth":0.1,"id":123456789012345678901234567890,"lone":"cut \ud800","low":"\udc00","nul":"a\u0000b","emoji":"\ud83d\ude00 caf\u00e9 🎉"}"#;

/// The member each record gains, as it must appear in the backup.
fn member() -> String {
    format!(r#""x_custom":{HELD}"#)
}

fn connector(api: &PlatformApi, platform: &str) -> Connector {
    let endpoints = PlatformEndpoints::default().with_api_url(platform, &api.api_url(platform));
    Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with(platform, RateLimit::unlimited()))
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
}

/// Every record of the listing as the pager hands it over (its text, unparsed), or the fetch's error.
async fn drain_texts(
    connector: &Connector,
    request: FetchRequest<'_>,
) -> Result<Vec<String>, String> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut pager = connector.pages(request).map_err(|err| err.to_string())?;
        let mut texts = Vec::new();
        while let Some(page) = pager.next_page().await.map_err(|err| err.to_string())? {
            texts.extend(page.records.iter().map(|record| record.get().to_owned()));
        }
        Ok(texts)
    })
    .await
    .expect("the listing ends within a minute")
}

fn assert_all_hold_it(texts: &[String], expected: usize, what: &str) {
    assert_eq!(texts.len(), expected, "{what}: every record");
    let member = member();
    for text in texts {
        assert!(text.contains(&member), "{what}: altered: {text}");
    }
}

/// Box: files and folders are told apart by `/type` (records_where), and the walk descends into the records
/// whose `/type` is `folder`. Both read the whole record into a `Value` before: every file holding such a
/// value was dropped from the backup without an error, and every folder holding one hid its subtree.
#[tokio::test]
async fn box_files_and_folders_holding_values_no_parser_holds_are_all_backed_up() {
    let fx = direct("box").await;
    // Folders 1..6 in a tree under All Files, 20 files spread over the seven folders.
    fx.api.seed_files("box", 6, 20, 10);
    fx.api.raw_field("/box/2.0/folders/", "x_custom", HELD);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!(counts.downloaded, 20, "each file's bytes");
    assert_eq!(manifest.contents.len(), 20);
    let stored = fx.stored("j1", "files.ndjson.gz");
    let lines: Vec<String> =
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&stored[..]))
            .lines()
            .map(Result::unwrap)
            .collect();
    assert_all_hold_it(&lines, 20, "box files in the backup file");
    let folders = drain_texts(&fx.connector, fx.request("folders"))
        .await
        .unwrap();
    assert_all_hold_it(&folders, 6, "box folders");
}

/// HighLevel's conversations page by the last record's `lastMessageDate` (`startAfterDate`): reading it
/// parsed the whole last record, so a full page whose last conversation held such a value failed the data
/// type ("a full page whose last record has no `lastMessageDate`").
#[tokio::test]
async fn highlevel_conversations_page_past_records_holding_values_no_parser_holds() {
    let api = PlatformApi::start().await;
    const TOKEN: &str = "pit-5c2a9d4e-7b1f-4e0a-9c3d-2f6b8a1e0d47";
    api.accept("gohighlevel", TOKEN);
    api.seed("gohighlevel", "conversations", 230);
    api.raw_field("/gohighlevel/conversations/search", "x_custom", HELD);
    let credentials = BTreeMap::from([
        ("privateIntegrationToken".to_owned(), TOKEN.to_owned()),
        ("locationId".to_owned(), "ve9EPM428h8vShlRW1KT".to_owned()),
    ]);
    let connector = connector(&api, "gohighlevel");
    let request = FetchRequest::new(
        "conn-1",
        find("gohighlevel").unwrap(),
        "conversations",
        &credentials,
    );
    let texts = drain_texts(&connector, request).await.unwrap();
    assert_all_hold_it(&texts, 230, "highlevel conversations");
}

/// Shopify: 64-bit ids, pages by `Link` header; the records of every page come through unaltered (a
/// guard: records are never re-serialized on their way to the backup).
#[tokio::test]
async fn shopify_records_come_through_every_page_byte_for_byte() {
    let api = PlatformApi::start().await;
    const TOKEN: &str = "shpat_0123456789abcdef0123456789abcdef";
    api.accept("shopify", TOKEN);
    api.seed("shopify", "customers", 520);
    api.raw_field("/shopify/admin/api/", "x_custom", HELD);
    let credentials = BTreeMap::from([
        ("shop".to_owned(), "emulated-store.myshopify.com".to_owned()),
        ("adminApiAccessToken".to_owned(), TOKEN.to_owned()),
    ]);
    let connector = connector(&api, "shopify");
    let request = FetchRequest::new(
        "conn-1",
        find("shopify").unwrap(),
        "customers",
        &credentials,
    );
    let texts = drain_texts(&connector, request).await.unwrap();
    assert_all_hold_it(&texts, 520, "shopify customers");
}
