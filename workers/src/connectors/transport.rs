//! Sending one platform request: the connection's rate budget, `Retry-After` on 429, exponential backoff with
//! jitter on 5xx and network errors, and the mapping of failures to [`FetchError`].

use std::collections::BTreeMap;
use std::time::Duration;

use listbackup_commands::platform_client::scrub;
use listbackup_domain::platform::Platform;
use rand::Rng;
use reqwest::header::RETRY_AFTER;
use reqwest::StatusCode;
use serde_json::Value;

use super::rate::RateBudget;
use super::FetchError;

/// How hard to try before giving up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request for 5xx answers and network errors, the first included.
    pub max_attempts: u32,
    /// The first backoff; each further attempt doubles it, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// 429 answers waited out per request before giving up.
    pub max_rate_limited: u32,
    /// A `Retry-After` longer than this is not waited out: the fetch fails as rate limited (retryable later).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limited: 10,
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): "equal jitter", half fixed and half random, so that
    /// workers that failed together do not come back together, yet every wait is at least half the step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let step = self
            .base_backoff
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let half = step / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

/// Counters of one fetch, reported in the summary.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub requests: u64,
    pub retries: u64,
    pub rate_limited: u64,
}

/// What a request needs besides itself.
pub(crate) struct Call<'a> {
    pub http: &'a reqwest::Client,
    pub budget: &'a RateBudget,
    pub policy: &'a RetryPolicy,
    pub platform: &'a Platform,
    pub credentials: &'a BTreeMap<String, String>,
}

impl Call<'_> {
    /// Sends the request `build` makes (again for each retry) and returns the JSON body of a 2xx answer.
    pub async fn send(
        &self,
        counters: &mut Counters,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, FetchError>,
    ) -> Result<Value, FetchError> {
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let request = build(self.http)?;
            self.budget.acquire().await;
            counters.requests += 1;
            let outcome = match request.send().await {
                Ok(response) => self.classify(response).await,
                Err(err) => Outcome::Transient(network_error(&err), None),
            };
            let wait = match outcome {
                Outcome::Done(body) => return Ok(body),
                Outcome::Fatal(err) => return Err(err),
                Outcome::RateLimited(retry_after) => {
                    rate_limited += 1;
                    counters.rate_limited += 1;
                    let wait = retry_after.unwrap_or_else(|| self.policy.backoff(rate_limited));
                    if rate_limited > self.policy.max_rate_limited
                        || wait > self.policy.max_retry_after
                    {
                        return Err(FetchError::RateLimited { retry_after });
                    }
                    tracing::debug!(platform = self.platform.id, ?wait, "rate limited (429)");
                    wait
                }
                Outcome::Transient(err, asked) => {
                    failures += 1;
                    if failures >= self.policy.max_attempts {
                        return Err(err);
                    }
                    // A 503's `Retry-After` is a floor; the attempt still counts against the bound.
                    let wait = self.policy.backoff(failures).max(asked.unwrap_or_default());
                    tracing::debug!(platform = self.platform.id, ?wait, error = %err, "retrying");
                    wait
                }
            };
            counters.retries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn classify(&self, response: reqwest::Response) -> Outcome {
        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                // Parsed from one buffer: a page is bounded by the page size.
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(body) => Outcome::Done(body),
                    Err(err) => Outcome::Fatal(FetchError::InvalidResponse(format!(
                        "the platform's answer is not JSON: {err}"
                    ))),
                },
                // The connection broke mid-body.
                Err(err) => Outcome::Transient(network_error(&err), None),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::RateLimited(retry_after(&response));
        }
        let retry_after = retry_after(&response);
        // The platform's own message helps with a 400 (an unknown parameter, a missing scope) but is not
        // trusted: Stripe echoes part of a rejected key, so 401 bodies are dropped and others are scrubbed.
        let message = if status == StatusCode::UNAUTHORIZED {
            String::new()
        } else {
            let body = response.bytes().await.unwrap_or_default();
            scrub(&error_message(&body), self.platform, self.credentials)
        };
        match status {
            StatusCode::UNAUTHORIZED => Outcome::Fatal(FetchError::Unauthorized),
            StatusCode::FORBIDDEN => Outcome::Fatal(FetchError::Forbidden { message }),
            s if s.is_server_error() => {
                let err = FetchError::Platform {
                    status: s.as_u16(),
                    message,
                    retryable: true,
                };
                let asked = retry_after.filter(|wait| *wait <= self.policy.max_retry_after);
                Outcome::Transient(err, asked)
            }
            s => Outcome::Fatal(FetchError::Platform {
                status: s.as_u16(),
                message,
                retryable: false,
            }),
        }
    }
}

enum Outcome {
    Done(Value),
    Fatal(FetchError),
    RateLimited(Option<Duration>),
    /// Worth another attempt, after at least the server's `Retry-After` if it sent one.
    Transient(FetchError, Option<Duration>),
}

fn network_error(err: &reqwest::Error) -> FetchError {
    let what = if err.is_timeout() {
        "the request timed out"
    } else if err.is_connect() {
        "the connection failed"
    } else if err.is_body() || err.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    FetchError::Network(what.to_owned())
}

/// `Retry-After` in delta-seconds; an HTTP date or garbage counts as absent.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

const MAX_MESSAGE_LEN: usize = 300;

/// The human message of an error body, from the shapes the platforms use.
fn error_message(body: &[u8]) -> String {
    let Ok(json) = serde_json::from_slice::<Value>(body) else {
        return String::new();
    };
    let message = [
        "/error/message",     // Stripe
        "/message",           // HubSpot, Keap
        "/fault/faultstring", // Keap's gateway (Apigee)
        "/error",             // plain
    ]
    .iter()
    .find_map(|pointer| json.pointer(pointer)?.as_str())
    .unwrap_or_default();
    message
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_LEN)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let policy = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(800),
            ..RetryPolicy::default()
        };
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = policy.backoff(3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let capped = policy.backoff(30);
            assert!(capped >= Duration::from_millis(400) && capped <= Duration::from_millis(800));
        }
    }

    #[test]
    fn error_messages_are_read_from_each_platform_shape() {
        assert_eq!(
            error_message(
                br#"{"error":{"message":"No such customer","type":"invalid_request_error"}}"#
            ),
            "No such customer"
        );
        assert_eq!(
            error_message(
                br#"{"status":"error","message":"Invalid input","category":"VALIDATION_ERROR"}"#
            ),
            "Invalid input"
        );
        assert_eq!(
            error_message(br#"{"fault":{"faultstring":"Quota exceeded"}}"#),
            "Quota exceeded"
        );
        assert_eq!(error_message(b"<html>"), "");
    }
}
