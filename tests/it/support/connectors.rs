//! Driving a connector directly in tests: one listing drained to its end.

use std::time::Duration;

use listbackup_workers::connectors::{Connector, FetchError, FetchRequest, FetchSummary};
use serde_json::Value;

/// Drains `request`'s listing page after page and parses every record; fails the test if the listing has
/// not ended within a minute (a connector that pages forever).
pub async fn drain_request(
    connector: &Connector,
    request: FetchRequest<'_>,
) -> Result<(Vec<Value>, FetchSummary), FetchError> {
    tokio::time::timeout(Duration::from_secs(60), async {
        let mut pager = connector.pages(request)?;
        let mut records = Vec::new();
        while let Some(page) = pager.next_page().await? {
            for record in page.records {
                records.push(serde_json::from_str(record.get()).expect("a record is JSON"));
            }
        }
        Ok((records, pager.summary()))
    })
    .await
    .expect("the listing ends within a minute")
}
