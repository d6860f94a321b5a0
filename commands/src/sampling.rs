//! Sampling a platform's data: one page of one data type, fetched and counted, nothing stored. Used by
//! `POST /sources/{id}/test`. The fetching itself belongs to the workers' connectors; the write side only
//! knows this trait, so the API never depends on the workers (the service wires them together).

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use listbackup_domain::platform::Platform;

/// What one page of one data type showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTypeSample {
    pub data_type: String,
    /// `None` when the data type could not be sampled at all (no connector for it yet).
    pub ok: Option<bool>,
    pub sample_count: Option<u64>,
    /// Human-readable; never contains a credential value.
    pub message: String,
}

/// Fetches the first page of a data type with the given credentials.
pub trait DataTypeSampler: Send + Sync {
    fn sample<'a>(
        &'a self,
        platform: &'static Platform,
        connection_id: &'a str,
        credentials: &'a BTreeMap<String, String>,
        data_type: &'a str,
    ) -> BoxFuture<'a, DataTypeSample>;
}

/// The sampler of a process without connectors: says so for every data type.
pub struct NoSampler;

impl DataTypeSampler for NoSampler {
    fn sample<'a>(
        &'a self,
        _platform: &'static Platform,
        _connection_id: &'a str,
        _credentials: &'a BTreeMap<String, String>,
        data_type: &'a str,
    ) -> BoxFuture<'a, DataTypeSample> {
        Box::pin(async move {
            DataTypeSample {
                data_type: data_type.to_owned(),
                ok: None,
                sample_count: None,
                message: "not sampled: this process has no platform connectors".into(),
            }
        })
    }
}
