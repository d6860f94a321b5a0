//! Metrics of the calls made to the platforms (issue 14 §1), by connection tests here and by backups and
//! source tests in the workers' connectors, under the same names. Labels: the platform and the answer's status,
//! never a connection or account.

use std::time::Duration;

/// Counter: requests sent to a platform (each retry is a request), by `platform` and `status` (the HTTP
/// status code, or `error` when no answer came: connection refused, timeout, cut-off answer).
pub const PLATFORM_REQUESTS: &str = "listbackup_platform_requests_total";
/// Histogram, seconds: from sending a platform request to its answer's head (or its failure), by `platform`.
pub const PLATFORM_REQUEST_DURATION: &str = "listbackup_platform_request_duration_seconds";
/// Counter: platform requests sent again, by `platform` and `reason` (`rate_limited`: a 429 or the
/// platform's documented equivalent, waited out; `transient`: a 5xx, 408 or network error, backed off).
pub const PLATFORM_RETRIES: &str = "listbackup_platform_retries_total";
/// One platform request answered with `status` (`None`: no answer) after `elapsed`.
pub fn platform_request(platform: &'static str, status: Option<u16>, elapsed: Duration) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    metrics::counter!(PLATFORM_REQUESTS, "platform" => platform, "status" => status).increment(1);
    metrics::histogram!(PLATFORM_REQUEST_DURATION, "platform" => platform)
        .record(elapsed.as_secs_f64());
}

/// Why a platform request is sent again.
#[derive(Debug, Clone, Copy)]
pub enum RetryReason {
    RateLimited,
    Transient,
}

pub fn platform_retry(platform: &'static str, reason: RetryReason) {
    let reason = match reason {
        RetryReason::RateLimited => "rate_limited",
        RetryReason::Transient => "transient",
    };
    metrics::counter!(PLATFORM_RETRIES, "platform" => platform, "reason" => reason).increment(1);
}
