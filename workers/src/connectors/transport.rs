//! Sending one platform request: the connection's rate budget, `Retry-After` on 429 and 503, exponential
//! backoff with jitter on 5xx, network errors and unreadable 2xx bodies, and the mapping of failures to
//! [`FetchError`].

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use listbackup_commands::platform_client::scrub;
use listbackup_domain::platform::{ErrorMatch, Platform};
use listbackup_domain::ErrorChain;
use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use super::rate::RateBudget;
use super::FetchError;

/// How hard to try before giving up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request for 5xx answers, network errors and unreadable bodies, the first included.
    pub max_attempts: u32,
    /// The first backoff; each further attempt doubles it, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// 429 answers waited out per request before giving up.
    pub max_rate_limited: u32,
    /// A `Retry-After` longer than this is not waited out: a 429 fails as rate limited (retryable later), a
    /// 503 falls back to the backoff.
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

/// A 2xx answer, read whole: a page is bounded by the page size. The headers are kept for pagination that
/// travels in them (a `Link` header).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The media type the answer declares (`Content-Type` without parameters), if any.
    pub fn content_type(&self) -> Option<&str> {
        let value = self
            .headers
            .get(reqwest::header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        Some(value.split(';').next().unwrap_or_default().trim())
    }
}

/// Why a 2xx answer could not be used.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Cut off or not JSON at all (a proxy's HTML page, a connection closed early by a middlebox that still
    /// sent a complete-looking HTTP message): sent again like a dropped connection. What the answer was (its
    /// media type and size), and the parser's error.
    Unreadable(String, serde_json::Error),
    /// Well-formed but not what the platform documents: asking again would get the same answer.
    Invalid(FetchError),
}

impl BodyError {
    /// Classifies a `serde_json` error reading `response`: syntax errors and a premature end are a damaged
    /// body, anything else (a missing or mistyped field) is the answer's shape.
    pub fn from_json(err: serde_json::Error, response: &Response) -> Self {
        use serde_json::error::Category;
        match err.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                let declared = response
                    .content_type()
                    .map(|media| format!(" ({media}, {} bytes)", response.body.len()))
                    .unwrap_or_default();
                BodyError::Unreadable(
                    format!("the platform's answer{declared} is not complete JSON"),
                    err,
                )
            }
            Category::Data => BodyError::Invalid(FetchError::Undecodable {
                context: "the platform's answer is not in the documented shape".to_owned(),
                source: err.into(),
            }),
        }
    }
}

/// What a request needs besides itself.
pub(crate) struct Call<'a> {
    pub http: &'a reqwest::Client,
    pub budget: &'a RateBudget,
    pub policy: &'a RetryPolicy,
    pub platform: &'a Platform,
    pub credentials: &'a BTreeMap<String, String>,
    /// `Some`: the request is about one thing (a file to download, a parent's children) that may have been
    /// deleted since it was listed; 404, 410 and these answers fail it with [`FetchError::Gone`]. `None`:
    /// they are the platform's refusal like any other 4xx.
    pub gone: Option<&'a [ErrorMatch]>,
    /// Answers besides a 2xx that the request documents as its own (Drive's `308 Resume Incomplete`,
    /// Dropbox's 409 `incorrect_offset`): handed to `decode` of [`send`](Self::send), status and body, rather
    /// than failing. [`open`](Self::open) takes none.
    pub answers: &'a [ErrorMatch],
}

/// An answer as an attempt brings it back.
enum Arrived {
    /// A 2xx (or a 3xx to be followed by hand), its body unread.
    Open(reqwest::Response),
    /// One of the request's [`Call::answers`], its body read.
    Read(Response),
}

impl<'a> Call<'a> {
    /// A request about nothing that may be gone, with no answer of its own besides a 2xx: set
    /// [`gone`](Self::gone) and [`answers`](Self::answers) with `Call { gone, ..Call::new(…) }` otherwise.
    pub fn new(
        http: &'a reqwest::Client,
        budget: &'a RateBudget,
        policy: &'a RetryPolicy,
        platform: &'a Platform,
        credentials: &'a BTreeMap<String, String>,
    ) -> Self {
        Self {
            http,
            budget,
            policy,
            platform,
            credentials,
            gone: None,
            answers: &[],
        }
    }
}

impl Call<'_> {
    /// Sends the request `build` makes (again for each retry) and hands a 2xx answer to `decode`; an
    /// unreadable body is retried like a network error, within the same bound of attempts.
    pub async fn send<T>(
        &self,
        counters: &mut Counters,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, FetchError>,
        decode: impl Fn(Response) -> Result<T, BodyError>,
    ) -> Result<T, FetchError> {
        let decode = &decode;
        self.attempts(counters, build, false, |arrived| async move {
            let response = match arrived {
                Arrived::Open(response) => response,
                Arrived::Read(response) => return read(decode(response)),
            };
            let status = response.status();
            let headers = response.headers().clone();
            // The connection broke mid-body.
            let body = response
                .bytes()
                .await
                .map_err(|err| Outcome::Transient(network_error(err), None))?;
            read(decode(Response {
                status,
                headers,
                body,
            }))
        })
        .await
    }

    /// Sends the request `build` makes (again for each retry) and returns the answer with its body unread,
    /// to be streamed: a 2xx, or a redirect (3xx) for the caller to follow. A `202 Accepted` (Box: "the file
    /// is not ready to be downloaded yet") is waited out like a 429, by its `Retry-After`.
    pub async fn open(
        &self,
        counters: &mut Counters,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, FetchError>,
    ) -> Result<reqwest::Response, FetchError> {
        self.attempts(counters, build, true, |arrived| async move {
            let Arrived::Open(response) = arrived else {
                return Err(Outcome::Fatal(FetchError::InvalidResponse(
                    "a streamed request takes no answers besides a 2xx".into(),
                )));
            };
            if response.status() == StatusCode::ACCEPTED {
                return Err(Outcome::RateLimited(retry_after(
                    response.headers(),
                    SystemTime::now(),
                )));
            }
            Ok(response)
        })
        .await
    }

    /// The retry loop of [`send`](Self::send) and [`open`](Self::open): `accept` turns an answer the
    /// status check let through into the result, or into another outcome.
    async fn attempts<T, F, Fut>(
        &self,
        counters: &mut Counters,
        build: impl Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, FetchError>,
        redirects: bool,
        accept: F,
    ) -> Result<T, FetchError>
    where
        F: Fn(Arrived) -> Fut,
        Fut: std::future::Future<Output = Result<T, Outcome>>,
    {
        let mut failures = 0u32;
        let mut rate_limited = 0u32;
        loop {
            let request = build(self.http)?;
            self.budget.acquire().await;
            counters.requests += 1;
            let sent = std::time::Instant::now();
            let answer = request.send().await;
            crate::metrics::platform_request(
                self.platform.id,
                answer.as_ref().ok().map(|r| r.status().as_u16()),
                sent.elapsed(),
            );
            let outcome = match answer {
                Ok(response) => match self.classify(response, redirects).await {
                    Ok(response) => match accept(response).await {
                        Ok(value) => return Ok(value),
                        Err(outcome) => outcome,
                    },
                    Err(outcome) => outcome,
                },
                Err(err) => Outcome::Transient(network_error(err), None),
            };
            let wait = match outcome {
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
                    tracing::debug!(platform = self.platform.id, ?wait, "rate limited");
                    crate::metrics::platform_retry(
                        self.platform.id,
                        crate::metrics::RetryReason::RateLimited,
                    );
                    wait
                }
                Outcome::Transient(err, asked) => {
                    failures += 1;
                    if failures >= self.policy.max_attempts {
                        return Err(err);
                    }
                    // A 503's `Retry-After` is a floor; the attempt still counts against the bound.
                    let wait = self.policy.backoff(failures).max(asked.unwrap_or_default());
                    tracing::debug!(platform = self.platform.id, ?wait, error = %ErrorChain(&err), "retrying");
                    crate::metrics::platform_retry(
                        self.platform.id,
                        crate::metrics::RetryReason::Transient,
                    );
                    wait
                }
            };
            counters.retries += 1;
            tokio::time::sleep(wait).await;
        }
    }

    /// A 2xx answer (or, when `redirects`, a 3xx) with its body unread, one of the request's
    /// [`answers`](Call::answers) read, or what to do about any other.
    async fn classify(
        &self,
        response: reqwest::Response,
        redirects: bool,
    ) -> Result<Arrived, Outcome> {
        let status = response.status();
        if status.is_success() || (redirects && status.is_redirection()) {
            return Ok(Arrived::Open(response));
        }
        let code = status.as_u16();
        if self.answers.iter().any(|rule| rule.status == code) {
            let headers = response.headers().clone();
            let bytes = response
                .bytes()
                .await
                .map_err(|err| Outcome::Transient(network_error(err), None))?;
            let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
            if self.answers.iter().any(|rule| rule.matches(code, &body)) {
                return Ok(Arrived::Read(Response {
                    status,
                    headers,
                    body: bytes,
                }));
            }
            return Err(self.refusal(status, &headers, &body));
        }
        let headers = response.headers().clone();
        // The platform's own message helps with a 400 (an unknown parameter, a missing scope) but is not
        // trusted: Stripe echoes part of a rejected key, so 401 bodies are dropped (and a 429's is not needed).
        let body = if matches!(
            status,
            StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
        ) {
            Value::Null
        } else {
            let bytes = response.bytes().await.unwrap_or_default();
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null)
        };
        Err(self.refusal(status, &headers, &body))
    }

    /// What to do about an answer that is neither a 2xx nor one of the request's own: its status, headers
    /// and JSON body (`null` when it has none, or a 401's).
    fn refusal(&self, status: StatusCode, headers: &HeaderMap, body: &Value) -> Outcome {
        let retry_after = retry_after(headers, SystemTime::now());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Outcome::RateLimited(retry_after);
        }
        // Scrubbed: Stripe echoes part of a rejected key.
        let message = if status == StatusCode::UNAUTHORIZED {
            String::new()
        } else {
            scrub(
                &error_message(body, self.platform.error_messages),
                self.platform,
                self.credentials,
            )
        };
        // Answers the platform documents as rate limiting although they are not 429 (Google's 403
        // `userRateLimitExceeded`): waited out the same way.
        let code = status.as_u16();
        if self
            .platform
            .rate
            .limited_when
            .iter()
            .any(|rule| rule.matches(code, body))
        {
            return Outcome::RateLimited(retry_after);
        }
        // The platform's own way of saying the credentials are not valid (any 401; ActiveCampaign's 403):
        // the connection's failure, not this data type's.
        if self.platform.rejects_credentials(code, body) {
            return Outcome::Fatal(FetchError::Unauthorized);
        }
        if let Some(gone) = self.gone {
            if matches!(code, 404 | 410) || gone.iter().any(|rule| rule.matches(code, body)) {
                return Outcome::Fatal(FetchError::Gone {
                    status: code,
                    message,
                });
            }
        }
        match status {
            StatusCode::FORBIDDEN => Outcome::Fatal(FetchError::Forbidden { message }),
            // 408 (RFC 9110 §15.5.9): the server gave up waiting for the request; sending it again is the
            // documented remedy.
            s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
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

/// A 2xx answer's decoding, as an attempt's outcome: an unreadable body is sent again like a dropped
/// connection.
fn read<T>(decoded: Result<T, BodyError>) -> Result<T, Outcome> {
    match decoded {
        Ok(value) => Ok(value),
        Err(BodyError::Invalid(err)) => Err(Outcome::Fatal(err)),
        Err(BodyError::Unreadable(what, source)) => Err(Outcome::Transient(
            FetchError::UnreadableBody { what, source },
            None,
        )),
    }
}

/// A failed attempt: give up, or wait and send again.
pub(crate) enum Outcome {
    Fatal(FetchError),
    RateLimited(Option<Duration>),
    /// Worth another attempt, after at least the server's `Retry-After` if it sent one.
    Transient(FetchError, Option<Duration>),
}

/// A failed request or body read as [`FetchError::Network`]: what failed, and the client's error without its
/// URL (a query string may hold a key), kept as the source for the reason.
pub(crate) fn network_error(err: reqwest::Error) -> FetchError {
    let what = if err.is_timeout() {
        "the request timed out"
    } else if err.is_connect() {
        "the connection failed"
    } else if err.is_body() || err.is_decode() {
        "the answer was cut off"
    } else {
        "the request failed"
    };
    FetchError::Network {
        what,
        source: Some(err.without_url()),
    }
}

/// `Retry-After` (RFC 9110 §10.2.3) as a wait from `now`: delta-seconds, also with a fraction as Shopify
/// sends it (`2.0`), or an HTTP-date in any of the three formats a recipient must accept (a date already past
/// means no wait). Anything else counts as absent.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let seconds = text.parse::<f64>().ok().filter(|s| s.is_finite())?;
        // Far beyond any cap; keeps `from_secs_f64` from panicking on an absurd value.
        return Some(Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

const MAX_MESSAGE_LEN: usize = 300;

/// The human message of an error body, at the first of the platform's pointers that holds a string
/// (`Platform::error_messages`: Stripe `/error/message`, HubSpot `/message`, …).
fn error_message(json: &Value, pointers: &[&str]) -> String {
    let message = pointers
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

    fn header(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, value.parse().unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_delta_seconds_with_or_without_a_fraction() {
        let now = SystemTime::now();
        assert_eq!(retry_after(&header("3"), now), Some(Duration::from_secs(3)));
        assert_eq!(
            retry_after(&header("2.0"), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(&header(" 0.25 "), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(retry_after(&header("-1"), now), None);
        assert_eq!(retry_after(&header("soon"), now), None);
        assert_eq!(retry_after(&header("1.2.3"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn retry_after_reads_each_http_date_format() {
        // RFC 9110 §5.6.7: IMF-fixdate, and the obsolete RFC 850 and asctime formats.
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:30 GMT").unwrap();
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&header(date), now),
                Some(Duration::from_secs(7)),
                "{date}"
            );
        }
        // A date already past: retry at once.
        assert_eq!(
            retry_after(&header("Sun, 06 Nov 1994 08:49:00 GMT"), now),
            Some(Duration::ZERO)
        );
    }

    fn error_message(body: &[u8], pointers: &[&str]) -> String {
        super::error_message(
            &serde_json::from_slice(body).unwrap_or(Value::Null),
            pointers,
        )
    }

    #[test]
    fn error_messages_are_read_from_each_platform_shape() {
        let pointers = |id| {
            listbackup_domain::platform::find(id)
                .unwrap()
                .error_messages
        };
        assert_eq!(
            error_message(
                br#"{"error":{"message":"No such customer","type":"invalid_request_error"}}"#,
                pointers("stripe"),
            ),
            "No such customer"
        );
        assert_eq!(
            error_message(
                br#"{"status":"error","message":"Invalid input","category":"VALIDATION_ERROR"}"#,
                pointers("hubspot"),
            ),
            "Invalid input"
        );
        assert_eq!(
            error_message(
                br#"{"fault":{"faultstring":"Quota exceeded"}}"#,
                pointers("keap")
            ),
            "Quota exceeded"
        );
        assert_eq!(error_message(b"<html>", pointers("keap")), "");
    }
}
