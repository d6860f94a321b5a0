//! The connectors as the write side's [`DataTypeSampler`]: one page of a data type, counted, not stored.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use listbackup_commands::sampling::{DataTypeSample, DataTypeSampler};
use listbackup_domain::platform::Platform;

use super::{Connector, FetchError, FetchRequest};

impl DataTypeSampler for Connector {
    fn sample<'a>(
        &'a self,
        platform: &'static Platform,
        connection_id: &'a str,
        credentials: &'a BTreeMap<String, String>,
        data_type: &'a str,
    ) -> BoxFuture<'a, DataTypeSample> {
        Box::pin(async move {
            let sample = |ok, sample_count, message: String| DataTypeSample {
                data_type: data_type.to_owned(),
                ok,
                sample_count,
                message,
            };
            let request = FetchRequest::new(connection_id, platform, data_type, credentials);
            let first_page = match self.pages(request) {
                Ok(mut pager) => pager.next_page().await,
                Err(err) => Err(err),
            };
            match first_page {
                Ok(page) => {
                    let count = page.map_or(0, |p| p.records.len() as u64);
                    sample(
                        Some(true),
                        Some(count),
                        format!("{count} record(s) on the first page"),
                    )
                }
                // No connector for it yet: not a failure of the customer's setup.
                Err(err @ FetchError::Unsupported { .. }) => sample(None, None, err.to_string()),
                // FetchError's messages never carry credential values (see connectors/mod.rs); its
                // sources (the HTTP client's error, without the URL) say why.
                Err(err) => sample(Some(false), None, listbackup_commands::error_chain(&err)),
            }
        })
    }
}
