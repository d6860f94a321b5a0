//! Platform connectors: fetch every record of one data type of one connection, page by page.
//!
//! One generic loop, driven by [`spec`] (endpoint, records field, pagination style, incremental filter per
//! data type), covers Stripe (`starting_after` + `has_more`), HubSpot CRM v3 (`after` cursor, search API for
//! incremental runs) and Keap REST v1 (`limit` + `offset`). Requests carry the platform's real authentication
//! (built by `listbackup_commands::platform_client`, shared with the connection test), go through the
//! connection's [`RateBudget`], wait out 429 `Retry-After`, and back off on 5xx and network errors.
//!
//! Memory stays flat: the caller pulls one page at a time from a [`Pager`] (or gets called back per page by
//! [`Connector::fetch_pages`]), and each page can be dropped before the next is requested.
//!
//! ```ignore
//! let connector = Connector::new(PlatformEndpoints::from_env());
//! let request = FetchRequest::new(&connection_id, platform, "customers", &credentials).since(cursor);
//! let mut pager = connector.pages(request)?;
//! while let Some(page) = pager.next_page().await? {
//!     write(page.records).await?; // page.cursor resumes after this page
//! }
//! let summary = pager.summary(); // summary.next_cursor starts the next incremental run
//! ```

pub mod rate;
mod sampler;
pub mod spec;
mod transport;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use listbackup_commands::platform_client::{
    apply_auth, choose_auth, PlatformEndpoints, ProbeError,
};
use listbackup_domain::platform::{ApiAuth, Platform};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use rate::{RateBudget, RateBudgets, RateLimit, RateLimits, RateStats};
pub use spec::{DataTypeSpec, Incremental, Pagination};
pub use transport::RetryPolicy;

use transport::{Call, Counters};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per request; a page is at most a few hundred records.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// HubSpot's search API refuses to page past its first 10,000 results.
const HUBSPOT_SEARCH_WINDOW: u64 = 10_000;

/// Why a fetch failed. Messages never contain credential values.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("the {platform} data type `{data_type}` cannot be backed up: {reason}")]
    Unsupported {
        platform: String,
        data_type: String,
        reason: &'static str,
    },
    /// The credentials cannot even make a request (a field is missing or malformed).
    #[error(transparent)]
    Credentials(#[from] ProbeError),
    /// 401: the caller refreshes an OAuth token once and retries, or asks the customer to reconnect.
    #[error("the platform rejected the credentials (401)")]
    Unauthorized,
    /// 403: the key or the granted scopes do not cover this data type.
    #[error("the platform refused access to this data (403){}", suffix(.message))]
    Forbidden { message: String },
    /// 429 more often, or for longer, than the retry policy waits out.
    #[error("the platform kept rate limiting requests (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// Any other non-2xx answer (5xx after the last attempt).
    #[error("the platform answered {status}{}", suffix(.message))]
    Platform {
        status: u16,
        message: String,
        retryable: bool,
    },
    /// No answer after the last attempt.
    #[error("could not reach the platform: {0}")]
    Network(String),
    #[error("{0}")]
    InvalidResponse(String),
    /// The page consumer of [`Connector::fetch_pages`] failed; its error is inside.
    #[error("storing a page failed: {0}")]
    Sink(Box<dyn std::error::Error + Send + Sync>),
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl FetchError {
    /// Whether running the job again later may succeed without anyone changing anything.
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::RateLimited { .. } | FetchError::Network(_) => true,
            FetchError::Platform { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// Whether the failure is the connection's rather than one data type's: every other data type of the
    /// same connection would fail the same way (rejected or unusable credentials), so a backup stops at once
    /// instead of trying each of them.
    pub fn is_connection_wide(&self) -> bool {
        matches!(self, FetchError::Unauthorized | FetchError::Credentials(_))
    }

    /// The error code of DESIGN §4, for `JobFailed {code, message, retryable}`.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::Unsupported { .. } | FetchError::Credentials(_) => "VALIDATION_ERROR",
            FetchError::Unauthorized => "UNAUTHORIZED",
            FetchError::Forbidden { .. } => "FORBIDDEN",
            FetchError::RateLimited { .. } => "RATE_LIMITED",
            FetchError::Platform { .. } | FetchError::InvalidResponse(_) => "PLATFORM_ERROR",
            FetchError::Network(_) => "UNAVAILABLE",
            FetchError::Sink(_) => "INTERNAL",
        }
    }
}

/// Where an incremental run starts: records changed at or after `since`, except the ones already fetched
/// at exactly that instant. Timestamps of several records often coincide (Stripe's are whole seconds), so a
/// strict "after" would lose records and a plain "at or after" would fetch some twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncrementalCursor {
    /// What `since` is about ([`Incremental::field`]); a cursor for another field is ignored.
    pub field: String,
    pub since: DateTime<Utc>,
    /// Ids of the records fetched whose change time is exactly `since`.
    pub seen_ids: Vec<String>,
}

impl IncrementalCursor {
    /// Moves the cursor to a record fetched at `time` (the latest change seen wins).
    fn observe(cursor: &mut Option<Self>, field: &str, time: DateTime<Utc>, id: String) {
        match cursor {
            Some(c) if time < c.since => {}
            Some(c) if time == c.since => {
                if !c.seen_ids.contains(&id) {
                    c.seen_ids.push(id);
                }
            }
            _ => {
                *cursor = Some(Self {
                    field: field.to_owned(),
                    since: time,
                    seen_ids: vec![id],
                })
            }
        }
    }

    /// Whether a record changed at `time` was fetched already by the run that produced this cursor.
    fn covers(&self, time: DateTime<Utc>, id: &str) -> bool {
        time < self.since || (time == self.since && self.seen_ids.iter().any(|s| s == id))
    }
}

/// What to fetch.
#[derive(Debug, Clone)]
pub struct FetchRequest<'a> {
    /// Keys the rate budget: concurrent fetches of one connection share it.
    pub connection_id: &'a str,
    pub platform: &'static Platform,
    pub data_type: &'a str,
    /// API-key fields, or `accessToken` for an OAuth connection (already refreshed by the caller).
    pub credentials: &'a BTreeMap<String, String>,
    /// The previous run's [`FetchSummary::next_cursor`]: fetch only what changed since, where supported.
    pub since: Option<IncrementalCursor>,
    /// A [`Page::cursor`] of an interrupted run: continue after that page (takes precedence over `since`).
    pub resume: Option<PageCursor>,
}

impl<'a> FetchRequest<'a> {
    pub fn new(
        connection_id: &'a str,
        platform: &'static Platform,
        data_type: &'a str,
        credentials: &'a BTreeMap<String, String>,
    ) -> Self {
        Self {
            connection_id,
            platform,
            data_type,
            credentials,
            since: None,
            resume: None,
        }
    }

    pub fn since(self, since: Option<IncrementalCursor>) -> Self {
        Self { since, ..self }
    }

    pub fn resume(self, resume: Option<PageCursor>) -> Self {
        Self { resume, ..self }
    }
}

/// Where a fetch stands after a page; opaque, serializable, to resume an interrupted run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageCursor {
    endpoint: usize,
    position: Position,
    /// The incremental filter of the requests (HubSpot's moves forward as pages arrive).
    lower: Option<IncrementalCursor>,
    /// The latest change seen so far: the next run's cursor.
    watermark: Option<IncrementalCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
enum Position {
    Start,
    StartingAfter {
        id: String,
    },
    After {
        after: String,
    },
    Offset {
        offset: u64,
    },
    /// HubSpot search: results of the current filter to skip (only within records sharing one instant).
    Search {
        skip: u64,
    },
    Done,
}

/// Records of one page, in the platform's order.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<Value>,
    /// Resumes the fetch after this page.
    pub cursor: PageCursor,
    /// 1-based.
    pub number: u64,
}

/// How a fetch went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSummary {
    pub records: u64,
    pub pages: u64,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a 429, a 5xx or a network error.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Whether this run fetched only changes (a usable cursor was given and the data type supports it).
    pub incremental: bool,
    /// Where the next incremental run starts; `None` when the data type does not support incremental runs.
    pub next_cursor: Option<IncrementalCursor>,
}

/// Fetches data types of connections; one per process, shared, so its rate budgets are.
#[derive(Debug)]
pub struct Connector {
    http: reqwest::Client,
    endpoints: PlatformEndpoints,
    budgets: RateBudgets,
    retry: RetryPolicy,
}

impl Connector {
    /// With the default rate limits and retry policy.
    pub fn new(endpoints: PlatformEndpoints) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Not followed: custom auth headers (`X-Keap-API-Key`) would go along to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("listbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with static settings always builds");
        Self {
            http,
            endpoints,
            budgets: RateBudgets::default(),
            retry: RetryPolicy::default(),
        }
    }

    /// Replaces the rate limits (budgets already in use keep theirs).
    pub fn with_rate_limits(self, limits: RateLimits) -> Self {
        Self {
            budgets: RateBudgets::new(limits),
            ..self
        }
    }

    pub fn with_retry_policy(self, retry: RetryPolicy) -> Self {
        Self { retry, ..self }
    }

    /// The budget requests of this connection draw from (held by every fetch in progress).
    pub fn rate_budget(&self, connection_id: &str, platform_id: &str) -> Arc<RateBudget> {
        self.budgets.budget(connection_id, platform_id)
    }

    /// Starts a fetch; nothing is sent until the first [`Pager::next_page`].
    pub fn pages<'a>(&'a self, request: FetchRequest<'a>) -> Result<Pager<'a>, FetchError> {
        let platform = request.platform;
        let unsupported = |reason| FetchError::Unsupported {
            platform: platform.id.to_owned(),
            data_type: request.data_type.to_owned(),
            reason,
        };
        if platform.data_type(request.data_type).is_none() {
            return Err(unsupported("it is not a data type of this platform"));
        }
        let spec = spec::find(platform.id, request.data_type)
            .ok_or_else(|| unsupported("no connector maps it to the platform's API yet"))?;
        let auth = choose_auth(platform, request.credentials)?.api_auth();
        let base = self.endpoints.api_base(platform, request.credentials)?;
        let state = match request.resume {
            Some(cursor) => cursor,
            None => {
                // A cursor only applies to the data type (and field) it was made for.
                let lower = match (spec.incremental, request.since) {
                    (Some(inc), Some(since)) if since.field == inc.field() => Some(since),
                    _ => None,
                };
                let position = match (spec.incremental, &lower) {
                    (Some(Incremental::HubSpotSearch { .. }), Some(_)) => {
                        Position::Search { skip: 0 }
                    }
                    _ => Position::Start,
                };
                PageCursor {
                    endpoint: 0,
                    position,
                    watermark: lower.clone(),
                    lower,
                }
            }
        };
        Ok(Pager {
            incremental: state.lower.is_some(),
            budget: self.rate_budget(request.connection_id, platform.id),
            connector: self,
            spec,
            platform,
            credentials: request.credentials,
            auth,
            base,
            state,
            counters: Counters::default(),
            records: 0,
            pages: 0,
        })
    }

    /// Fetches every page, handing each to `on_page` before requesting the next.
    pub async fn fetch_pages<F, Fut, E>(
        &self,
        request: FetchRequest<'_>,
        mut on_page: F,
    ) -> Result<FetchSummary, FetchError>
    where
        F: FnMut(Page) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let mut pager = self.pages(request)?;
        while let Some(page) = pager.next_page().await? {
            on_page(page)
                .await
                .map_err(|err| FetchError::Sink(err.into()))?;
        }
        Ok(pager.summary())
    }
}

/// A fetch in progress: pull pages with [`next_page`](Self::next_page).
pub struct Pager<'a> {
    connector: &'a Connector,
    spec: &'static DataTypeSpec,
    platform: &'static Platform,
    credentials: &'a BTreeMap<String, String>,
    auth: ApiAuth,
    base: String,
    budget: Arc<RateBudget>,
    state: PageCursor,
    incremental: bool,
    counters: Counters,
    records: u64,
    pages: u64,
}

impl Pager<'_> {
    /// The next page with at least one record, or `None` when the data type is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Page>, FetchError> {
        loop {
            let Some(endpoint) = self.spec.endpoints.get(self.state.endpoint) else {
                return Ok(None);
            };
            if self.state.position == Position::Done {
                self.state.endpoint += 1;
                self.state.position = Position::Start;
                continue;
            }
            let url = format!("{}{}", self.base, endpoint.path);
            let mut body = self.request(&url).await?;
            let records = match body.get_mut(self.spec.records_field).map(Value::take) {
                Some(Value::Array(records)) => records,
                _ => {
                    return Err(FetchError::InvalidResponse(format!(
                        "the platform's answer has no `{}` list",
                        self.spec.records_field
                    )))
                }
            };
            let fetched = records.len();
            let next = self.next_position(&body, &records)?;
            let records = self.keep(records, endpoint.tag);
            self.state.position = next;
            self.search_advance(records.len(), fetched)?;
            if records.is_empty() {
                continue;
            }
            self.pages += 1;
            self.records += records.len() as u64;
            return Ok(Some(Page {
                records,
                cursor: self.state.clone(),
                number: self.pages,
            }));
        }
    }

    /// Counts so far; the final summary once `next_page` returned `None`.
    pub fn summary(&self) -> FetchSummary {
        FetchSummary {
            records: self.records,
            pages: self.pages,
            requests: self.counters.requests,
            retries: self.counters.retries,
            rate_limited: self.counters.rate_limited,
            incremental: self.incremental,
            next_cursor: self.spec.incremental.and(self.state.watermark.clone()),
        }
    }

    async fn request(&mut self, url: &str) -> Result<Value, FetchError> {
        let call = Call {
            http: &self.connector.http,
            budget: &self.budget,
            policy: &self.connector.retry,
            platform: self.platform,
            credentials: self.credentials,
        };
        let (auth, credentials, platform) = (self.auth, self.credentials, self.platform);
        let authorize = move |request: reqwest::RequestBuilder| {
            let mut request = request.header(reqwest::header::ACCEPT, "application/json");
            for (name, value) in platform.api_headers {
                request = request.header(*name, *value);
            }
            apply_auth(request, auth, credentials).map_err(FetchError::from)
        };
        match &self.state.position {
            Position::Search { skip } => {
                let body = self.search_body(*skip);
                let url = format!("{url}/search");
                call.send(&mut self.counters, |http| {
                    authorize(http.post(&url).json(&body))
                })
                .await
            }
            position => {
                let query = self.query(position);
                call.send(&mut self.counters, |http| {
                    authorize(http.get(url).query(&query))
                })
                .await
            }
        }
    }

    fn query(&self, position: &Position) -> Vec<(&'static str, String)> {
        let spec = self.spec;
        let mut query: Vec<(&'static str, String)> = spec
            .query
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        if spec.pagination != Pagination::Single {
            query.push(("limit", spec.page_size.to_string()));
        }
        match position {
            Position::StartingAfter { id } => query.push(("starting_after", id.clone())),
            Position::After { after } => query.push(("after", after.clone())),
            Position::Offset { offset } => query.push(("offset", offset.to_string())),
            Position::Start | Position::Search { .. } | Position::Done => {}
        }
        if let (Some(lower), Some(inc)) = (&self.state.lower, spec.incremental) {
            match inc {
                Incremental::StripeCreated => {
                    query.push(("created[gte]", lower.since.timestamp().to_string()));
                }
                Incremental::KeapSince => query.push((
                    "since",
                    lower.since.to_rfc3339_opts(SecondsFormat::Millis, true),
                )),
                Incremental::HubSpotSearch { .. } => {}
            }
        }
        query
    }

    /// HubSpot CRM search: changed at or after the lower bound, oldest change first.
    fn search_body(&self, skip: u64) -> Value {
        let property = self.spec.incremental.map_or("", |inc| inc.field());
        let since = self
            .state
            .lower
            .as_ref()
            .map_or(0, |lower| lower.since.timestamp_millis());
        json!({
            "filterGroups": [{"filters": [
                {"propertyName": property, "operator": "GTE", "value": since.to_string()}
            ]}],
            "sorts": [{"propertyName": property, "direction": "ASCENDING"}],
            "limit": self.spec.page_size,
            "after": skip.to_string(),
        })
    }

    /// Where the page after this one starts, from the answer (before any record is filtered out).
    fn next_position(&self, body: &Value, records: &[Value]) -> Result<Position, FetchError> {
        let spec = self.spec;
        Ok(match (&self.state.position, spec.pagination) {
            (Position::Search { skip }, _) => match body.pointer("/paging/next/after") {
                Some(_) if !records.is_empty() => Position::Search { skip: *skip },
                _ => Position::Done,
            },
            (_, Pagination::StartingAfter) => {
                let has_more = body
                    .get("has_more")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                match records.last().and_then(record_id) {
                    Some(id) if has_more => Position::StartingAfter { id },
                    None if has_more => {
                        return Err(FetchError::InvalidResponse(
                            "the platform says there is more but sent no record to continue after"
                                .to_owned(),
                        ))
                    }
                    _ => Position::Done,
                }
            }
            (_, Pagination::NextAfter) => match body.pointer("/paging/next/after") {
                Some(Value::String(after)) => Position::After {
                    after: after.clone(),
                },
                Some(Value::Number(after)) => Position::After {
                    after: after.to_string(),
                },
                _ => Position::Done,
            },
            (position, Pagination::Offset) => {
                let offset = match position {
                    Position::Offset { offset } => *offset,
                    _ => 0,
                };
                if records.len() < spec.page_size as usize {
                    Position::Done
                } else {
                    Position::Offset {
                        offset: offset + records.len() as u64,
                    }
                }
            }
            (_, Pagination::Single) => Position::Done,
        })
    }

    /// Keyset paging for HubSpot search: the next request filters from the latest change seen, so records
    /// changed while paging are found again later instead of shifting pages (offsets would skip records),
    /// and the 10,000-result window of the search API is never reached. Only when a whole page held nothing
    /// new (many records sharing one instant) does it skip forward within the same filter.
    fn search_advance(&mut self, kept: usize, fetched: usize) -> Result<(), FetchError> {
        let Position::Search { skip } = self.state.position else {
            return Ok(());
        };
        let skip = if kept > 0 {
            self.state.lower = self.state.watermark.clone();
            0
        } else {
            skip + fetched as u64
        };
        if skip >= HUBSPOT_SEARCH_WINDOW {
            return Err(FetchError::InvalidResponse(format!(
                "more than {HUBSPOT_SEARCH_WINDOW} records changed at the same instant: the search API \
                 cannot page through them"
            )));
        }
        self.state.position = Position::Search { skip };
        Ok(())
    }

    /// Drops records an incremental run already fetched, moves the watermark, and tags records.
    fn keep(&mut self, records: Vec<Value>, tag: Option<(&str, &str)>) -> Vec<Value> {
        let Some(inc) = self.spec.incremental else {
            return records.into_iter().map(|r| tagged(r, tag)).collect();
        };
        let mut kept = Vec::with_capacity(records.len());
        for record in records {
            let (Some(time), Some(id)) = (change_time(inc, &record), record_id(&record)) else {
                // Without a change time it cannot be placed; keeping it is the safe side.
                kept.push(tagged(record, tag));
                continue;
            };
            if self
                .state
                .lower
                .as_ref()
                .is_some_and(|lower| lower.covers(time, &id))
            {
                continue;
            }
            IncrementalCursor::observe(&mut self.state.watermark, inc.field(), time, id);
            kept.push(tagged(record, tag));
        }
        kept
    }
}

fn tagged(mut record: Value, tag: Option<(&str, &str)>) -> Value {
    if let (Some((field, value)), Value::Object(map)) = (tag, &mut record) {
        map.entry(field.to_owned())
            .or_insert_with(|| Value::String(value.to_owned()));
    }
    record
}

/// A record's `id`, string or number.
fn record_id(record: &Value) -> Option<String> {
    match record.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// When a record last changed, by the data type's field.
fn change_time(inc: Incremental, record: &Value) -> Option<DateTime<Utc>> {
    let value = record.get(inc.record_field())?;
    match inc {
        Incremental::StripeCreated => DateTime::from_timestamp(value.as_i64()?, 0),
        Incremental::HubSpotSearch { .. } | Incremental::KeapSince => parse_time(value.as_str()?),
    }
}

/// RFC 3339, or Keap's `2024-01-02T03:04:05.000+0000` (offset without a colon).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Whether a data type of a platform can be fetched incrementally.
pub fn supports_incremental(platform_id: &str, data_type: &str) -> bool {
    spec::find(platform_id, data_type).is_some_and(|s| s.incremental.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn cursor_moves_to_the_latest_change_and_remembers_ties() {
        let mut cursor = None;
        IncrementalCursor::observe(&mut cursor, "created", at(10), "a".into());
        IncrementalCursor::observe(&mut cursor, "created", at(12), "b".into());
        IncrementalCursor::observe(&mut cursor, "created", at(12), "c".into());
        IncrementalCursor::observe(&mut cursor, "created", at(11), "d".into());
        let cursor = cursor.unwrap();
        assert_eq!(cursor.since, at(12));
        assert_eq!(cursor.seen_ids, ["b", "c"]);
        assert!(cursor.covers(at(12), "b"));
        assert!(cursor.covers(at(11), "x"));
        assert!(!cursor.covers(at(12), "e"));
        assert!(!cursor.covers(at(13), "b"));
    }

    #[test]
    fn parses_keap_and_rfc3339_times() {
        let expected = DateTime::parse_from_rfc3339("2024-01-02T03:04:05.123Z").unwrap();
        assert_eq!(
            parse_time("2024-01-02T03:04:05.123+0000").unwrap(),
            expected
        );
        assert_eq!(parse_time("2024-01-02T03:04:05.123Z").unwrap(), expected);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn cursors_serialize_for_events() {
        let cursor = IncrementalCursor {
            field: "lastmodifieddate".into(),
            since: at(1_700_000_000),
            seen_ids: vec!["51".into()],
        };
        let json = serde_json::to_value(&cursor).unwrap();
        assert_eq!(json["seenIds"], json!(["51"]));
        assert_eq!(
            serde_json::from_value::<IncrementalCursor>(json).unwrap(),
            cursor
        );
    }

    #[test]
    fn unsupported_data_types_are_refused_clearly() {
        let connector = Connector::new(PlatformEndpoints::default());
        let credentials = BTreeMap::from([("apiToken".to_owned(), "t".to_owned())]);
        let zendesk = listbackup_domain::platform::find("zendesk").unwrap();
        let err = connector
            .pages(FetchRequest::new("c", zendesk, "tickets", &credentials))
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
        let stripe = listbackup_domain::platform::find("stripe").unwrap();
        let err = connector
            .pages(FetchRequest::new("c", stripe, "tickets", &credentials))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a data type"), "{err}");
        assert_eq!(err.code(), "VALIDATION_ERROR");
    }

    #[test]
    fn missing_credentials_are_named() {
        let connector = Connector::new(PlatformEndpoints::default());
        let stripe = listbackup_domain::platform::find("stripe").unwrap();
        let err = connector
            .pages(FetchRequest::new(
                "c",
                stripe,
                "customers",
                &BTreeMap::new(),
            ))
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Credentials(_)), "{err}");
    }
}
