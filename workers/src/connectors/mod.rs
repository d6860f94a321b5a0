//! Platform connectors: fetch every record of one data type of one connection, page by page.
//!
//! One generic loop, driven by each data type's [`Listing`] in the platform's module of the catalog
//! (`listbackup_domain::platform`): its requests, where the records are, its paging mechanism (keyset by the
//! last id while a flag says more or until a short page, a cursor from the body, several cursors, a `Link`
//! header, a next URL, an RPC continuation, offsets with overlap, in a parameter or a query-language
//! statement), its incremental filter (a time query parameter, a time condition inside the statement, or a
//! CRM search paged by keyset), and whether it runs once per record of a parent data type.
//! Requests carry the platform's real authentication (built by `listbackup_commands::platform_client`, shared
//! with the connection test), go through the connection's [`RateBudget`], wait out `Retry-After`, and back
//! off on 5xx, network errors and damaged bodies.
//!
//! Records are kept as the platform sent them ([`Page::records`] holds each record's JSON text): only the
//! fields paging and incremental runs need (the id, the change time) are read.
//!
//! Paging always ends: a cursor, id or page that comes back, or far more pages than the list announced,
//! fails the data type with [`FetchError::PagingLoop`]. Incremental runs start a lookback window before
//! their cursor and drop what the previous backup holds (see [`IncrementalCursor`]).
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

mod body;
mod content;
mod incremental;
mod paging;
pub mod rate;
mod sampler;
mod search;
pub mod stored;
mod transport;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;

use futures::future::BoxFuture;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use listbackup_commands::platform_client::{
    apply_auth, choose_auth, fill_template, PlatformEndpoints, ProbeError,
};
use listbackup_domain::job::JobErrorCode;
use listbackup_domain::platform::{
    ApiAuth, Condition, Endpoint, HttpMethod, IncrementalFetch, Listing, OffsetParam, Pagination,
    Platform, TimeFilter, TimeFormat,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

// Writing records back (restore).
mod uploads;
mod writes;
pub use uploads::{FileTarget, FileUpload, UploadStream};
pub use writes::{RecordWrite, SetWrite};

pub use content::{ContentStream, FileRef, MAX_REDIRECTS};
pub use incremental::{IncrementalCursor, SeenAt};
pub use rate::{RateBudget, RateBudgets, RateLimit, RateLimits, RateStats};
pub use transport::RetryPolicy;

/// A record's id: its top-level `id_field`, a string or a number (as text); `None` when absent or when the
/// record is not an object.
pub fn record_id(record: &serde_json::value::RawValue, id_field: &str) -> Option<String> {
    body::Fetched::read(record.to_owned(), id_field, None, None).id
}

/// JSON text on one line, every byte kept but whitespace outside strings (what the storage writes when a
/// record spans lines).
pub(crate) use body::compact as compact_json;
use body::{Envelope, Fetched, ListBody};
use incremental::SeenWindow;
use paging::{LoopGuard, OffsetNext, OffsetWithOverlap};
use search::{SearchPosition, MORE as SEARCH_MORE};
use transport::{BodyError, Call, Counters};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Per request; a page is at most a few hundred records.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// A download has no deadline as a whole (a file may be gigabytes), only between two reads of its body.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a fetch failed. Messages never contain credential values.
///
/// [`retryable`](Self::retryable) answers one question per variant: would running the job again later, with
/// nothing changed by anyone, likely succeed?
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connector for this data type. Not retryable: it takes a new ListBackup version.
    #[error("the {platform} data type `{data_type}` cannot be backed up: {reason}")]
    Unsupported {
        platform: String,
        data_type: String,
        reason: &'static str,
    },
    /// The credentials cannot even make a request (a field is missing or malformed). Not retryable: the
    /// customer has to fix the connection.
    #[error(transparent)]
    Credentials(#[from] ProbeError),
    /// The platform said the credentials are not valid: a 401, or its own answer for it
    /// (`Platform::credentials_rejected`, ActiveCampaign's 403). The caller refreshes an OAuth token once and
    /// retries, or asks the customer to reconnect. Not retryable as such: the same credentials get the same
    /// answer.
    #[error("the platform rejected the credentials: they are not valid")]
    Unauthorized,
    /// Any other 403: valid credentials whose permissions or granted scopes do not cover this data type. Not
    /// retryable: the customer has to grant access.
    #[error("the platform refused access to this data (403){}", suffix(.message))]
    Forbidden { message: String },
    /// 429 more often, or for longer, than the retry policy waits out. Retryable: limits reset.
    #[error("the platform kept rate limiting requests (429)")]
    RateLimited { retry_after: Option<Duration> },
    /// Any other non-2xx answer. Retryable for 5xx and 408 (still failing after the last attempt: the
    /// platform's trouble, which passes); not for other 4xx (the request itself is refused, and would be
    /// again).
    #[error("the platform answered {status}{}", suffix(.message))]
    Platform {
        status: u16,
        message: String,
        retryable: bool,
    },
    /// No answer after the last attempt. Retryable: networks recover. `what` says how it failed (timed out,
    /// the connection failed, the answer was cut off); `source` is the HTTP client's error when there is one,
    /// kept whole for the reason (a refused connection, a DNS failure) but without its URL
    /// (`reqwest::Error::without_url`): a query string may hold a key.
    #[error("could not reach the platform: {what}")]
    Network {
        what: &'static str,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// A 2xx answer cut off or not JSON, on every attempt. Retryable: a damaged body is a transport failure,
    /// like a dropped connection. `what` describes the last answer (its media type and size); `source` is the
    /// JSON parser's error (where it stopped).
    #[error("the platform's answers kept arriving damaged: {what}")]
    UnreadableBody {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A well-formed 2xx answer not in the shape the platform documents (no records list, a search result
    /// without an id). Not retryable: the platform would answer the same way until it, or the connector,
    /// changes.
    #[error("{0}")]
    InvalidResponse(String),
    /// JSON, or a record to send, that a decoder or encoder refused: a well-formed 2xx answer whose fields
    /// are not the documented ones, a record that cannot be encoded as a form. `context` says what was being
    /// read or written; `source` is the decoder's (encoder's) error, which says where and why. Not retryable,
    /// like [`InvalidResponse`](Self::InvalidResponse).
    #[error("{context}")]
    Undecodable {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Paging would never end: the platform answered a cursor, a last id or a whole page it had answered
    /// before, or far more pages than the total it announced. The message names what repeated. Not
    /// retryable: it is the platform's paging going in circles over a list, which a later run would walk into
    /// the same way (every request of it spent on copies); someone has to look first.
    #[error("{0}")]
    PagingLoop(String),
    /// An offset-paged list changed so much between two pages (many records deleted before the position)
    /// that the pager could not find its place again; failing is what keeps a record from being skipped
    /// silently. Retryable: a later run pages a list that has settled.
    #[error("{0}")]
    ListChanged(String),
    /// What the request was about no longer exists (404, 410, or a platform's own answer for it, such as
    /// Dropbox's 409 `path/not_found`): a file deleted between its listing and its download, a parent deleted
    /// before its children were listed. Only requests about one listed thing fail this way; the pager passes
    /// over such a parent, and a backup records such a file as gone. Not retryable: it stays gone.
    #[error("it no longer exists on the platform ({status}){}", suffix(.message))]
    Gone { status: u16, message: String },
    /// The page consumer of [`Connector::fetch_pages`] failed; its error is inside. Not retryable as far as
    /// the connector knows: whether it is, is the consumer's to say.
    #[error("storing a page failed")]
    Sink(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl FetchError {
    /// Whether running the job again later may succeed without anyone changing anything (the reason per
    /// variant is on the variant).
    pub fn retryable(&self) -> bool {
        match self {
            FetchError::RateLimited { .. }
            | FetchError::Network { .. }
            | FetchError::UnreadableBody { .. }
            | FetchError::ListChanged(_) => true,
            FetchError::Platform { retryable, .. } => *retryable,
            FetchError::Unsupported { .. }
            | FetchError::Credentials(_)
            | FetchError::Unauthorized
            | FetchError::Forbidden { .. }
            | FetchError::InvalidResponse(_)
            | FetchError::Undecodable { .. }
            | FetchError::PagingLoop(_)
            | FetchError::Gone { .. }
            | FetchError::Sink(_) => false,
        }
    }

    /// Whether the failure is the connection's rather than one data type's: every other data type of the
    /// same connection would fail the same way (rejected or unusable credentials), so a backup stops at once
    /// instead of trying each of them.
    pub fn is_connection_wide(&self) -> bool {
        matches!(self, FetchError::Unauthorized | FetchError::Credentials(_))
    }

    /// The error code for `JobFailed {code, message, retryable}` and `ResourceBackupFailed`.
    pub fn code(&self) -> JobErrorCode {
        match self {
            FetchError::Unsupported { .. } | FetchError::Credentials(_) => {
                JobErrorCode::ValidationError
            }
            FetchError::Unauthorized => JobErrorCode::Unauthorized,
            FetchError::Forbidden { .. } => JobErrorCode::Forbidden,
            FetchError::RateLimited { .. } => JobErrorCode::RateLimited,
            FetchError::Platform { .. }
            | FetchError::InvalidResponse(_)
            | FetchError::Undecodable { .. }
            | FetchError::UnreadableBody { .. }
            | FetchError::PagingLoop(_)
            | FetchError::Gone { .. }
            | FetchError::ListChanged(_) => JobErrorCode::PlatformError,
            FetchError::Network { .. } => JobErrorCode::Unavailable,
            FetchError::Sink(_) => JobErrorCode::Internal,
        }
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

/// Where a fetch stands after a page; opaque, serializable, to resume an interrupted run. Cheap to clone: the
/// incremental windows are shared with the pager, not copied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageCursor {
    endpoint: usize,
    position: Position,
    /// The previous run's cursor: where the requests filter from, and what that backup holds.
    lower: Option<Arc<SeenWindow>>,
    /// The latest change seen so far and the records of the window before it: the next run's cursor.
    watermark: Option<Arc<SeenWindow>>,
    /// A per-parent listing's place among its parents, or a walk's among its folders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<Box<ParentCursor>>,
}

/// Where a per-parent listing ([`listbackup_domain::platform::PerParent`]) stands among its parents, or a
/// folder walk ([`listbackup_domain::platform::FolderWalk`]) among its folders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentCursor {
    /// The parents' listing, after the page the queue came from (`None` for a walk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parents: Option<PageCursor>,
    /// The parent being listed now.
    current: Option<String>,
    /// Parents of that page still to list, in order.
    queue: std::collections::VecDeque<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
enum Position {
    Start,
    /// [`Pagination::AfterLastId`] and [`Pagination::AfterLastIdUntilShortPage`]: the id of the last record
    /// of the page before.
    AfterId {
        id: String,
    },
    /// [`Pagination::CursorParam`] and [`Pagination::CursorParams`]: the values read from the page before,
    /// one per parameter, in the listing's order; [`Pagination::AfterLastValue`]: the sort value of its last
    /// record.
    Cursors {
        values: Vec<String>,
    },
    /// [`Pagination::LinkHeader`], [`Pagination::NextUrl`] and [`Pagination::NextUrlUntil`]: the next page's
    /// URL, as the platform gave it.
    Url {
        url: String,
    },
    /// [`Pagination::ContinueWithCursor`]: the cursor to continue with.
    Continue {
        cursor: String,
    },
    /// The next request of an offset listing ([`OffsetWithOverlap`]).
    Offset {
        offset: u64,
        /// Identities of the records of the last page placed (the anchor of the next one).
        previous: Vec<String>,
        /// Pages stepped back since the last page placed.
        step_backs: u32,
    },
    /// The next query of a keyset search ([`TimeFilter::Search`]).
    Search(SearchPosition),
    Done,
}

/// Records of one page, in the platform's order.
#[derive(Debug, Clone)]
pub struct Page {
    /// Each record's JSON text as the platform sent it, one NDJSON line each: a record whose text spanned
    /// lines is compacted, and a tagged endpoint's records carry the tag field (HubSpot pipelines'
    /// `objectType`).
    pub records: Vec<Box<RawValue>>,
    /// Each record's id (the listing's top-level `id_field`, a string or a number's text), in the order of
    /// `records`, as the pager read it while paging: `None` for a record without one. Readers use it instead
    /// of parsing each record again ([`record_id`] reads the same field the same way).
    pub ids: Vec<Option<String>>,
    /// Resumes the fetch after this page.
    pub cursor: PageCursor,
    /// 1-based.
    pub number: u64,
    /// A per-parent listing's ([`listbackup_domain::platform::PerParent`]) parent whose children these
    /// records are: their ids are unique only under it (Mailchimp's member ids repeat across audiences).
    /// `None` for every other listing (a walk's folders included: its records' ids are unique).
    pub parent: Option<String>,
}

/// How a fetch went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchSummary {
    pub records: u64,
    pub pages: u64,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests sent again after a 429, a 5xx, a network error or a damaged body.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Whether this run fetched only changes (a usable cursor was given and the data type supports it).
    pub incremental: bool,
    /// Parents of a per-parent listing (or folders of a walk) found deleted when their children were
    /// requested: passed over, not a failure.
    pub gone_parents: u64,
    /// Where the next incremental run starts; `None` when the data type does not support incremental runs.
    pub next_cursor: Option<IncrementalCursor>,
}
/// Fetches data types of connections; one per process, shared, so its rate budgets are.
#[derive(Debug)]
pub struct Connector {
    http: reqwest::Client,
    /// File downloads: no total timeout, a read timeout instead.
    content_http: reqwest::Client,
    endpoints: PlatformEndpoints,
    budgets: RateBudgets,
    retry: RetryPolicy,
    /// A lower bound than the platforms document on the bytes one upload request carries (tests: a large
    /// file's path without a large file); `None`: each platform's own ([`UploadRequest::max_bytes`]).
    ///
    /// [`UploadRequest::max_bytes`]: listbackup_domain::platform::writes::UploadRequest::max_bytes
    upload_request_max: Option<u64>,
}

impl Connector {
    /// With the default rate limits and retry policy.
    pub fn new(endpoints: PlatformEndpoints) -> Self {
        let http = reqwest::Client::builder()
            // API hosts built from credentials reach public addresses only (file downloads, below, go to
            // the hosts the platform names, as it names them).
            .dns_resolver(endpoints.resolver())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            // Not followed: custom auth headers (`X-Keap-API-Key`) would go along to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("listbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with static settings always builds");
        let content_http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            // Followed by hand, without the credentials (`content`).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("listbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with static settings always builds");
        Self {
            http,
            content_http,
            endpoints,
            budgets: RateBudgets::default(),
            retry: RetryPolicy::default(),
            upload_request_max: None,
        }
    }

    /// Uploads carry at most `bytes` per request (when fewer than the platform documents): a larger file goes
    /// through the platform's large-file upload (Dropbox: in chunks of at most `bytes`; Box: in the parts its
    /// upload session names).
    pub fn with_upload_request_max(self, bytes: u64) -> Self {
        Self {
            upload_request_max: Some(bytes),
            ..self
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

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
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
        let data_type = platform
            .data_type(request.data_type)
            .ok_or_else(|| unsupported("it is not a data type of this platform"))?;
        let listing = data_type
            .listing
            .as_ref()
            .ok_or_else(|| unsupported("ListBackup cannot list it yet"))?;
        let auth = choose_auth(platform, request.credentials)?.api_auth();
        let base = self.endpoints.api_base(platform, request.credentials)?;
        // Every endpoint's path is filled now (a missing placeholder value is the credentials' problem), but
        // a per-parent listing's or a walk's, which wait for their parent's or folder's id.
        let (paths, query) = match parent_placeholder(listing) {
            None => (
                fill_paths(platform, listing, request.credentials, None)?,
                fill_query(platform, listing, request.credentials, None)?,
            ),
            Some(_) => (Vec::new(), Vec::new()),
        };
        let started = Utc::now();
        let mut resumed_parent = None;
        let state = match request.resume.clone() {
            Some(cursor) => cursor,
            None => {
                // A cursor only applies to the data type (and field) it was made for.
                let lower = match (listing.incremental, request.since.clone()) {
                    (Some(inc), Some(since)) if since.field == inc.cursor_field => {
                        Some(Arc::new(SeenWindow::from(since).no_later_than(started)))
                    }
                    _ => None,
                };
                let position = first_position(listing, lower.as_deref());
                PageCursor {
                    endpoint: 0,
                    position,
                    watermark: lower.clone(),
                    lower,
                    parent: None,
                }
            }
        };
        let parents = match (listing.per_parent, listing.walk) {
            (None, None) => None,
            (Some(per_parent), _) => {
                let resumed = state.parent.clone();
                resumed_parent = resumed.as_ref().and_then(|p| p.current.clone());
                let parents_request = FetchRequest {
                    data_type: per_parent.data_type,
                    since: None,
                    resume: resumed.as_ref().and_then(|p| p.parents.clone()),
                    ..request.clone()
                };
                let parent_listing = platform
                    .listing(per_parent.data_type)
                    .ok_or_else(|| unsupported("its parent data type cannot be listed"))?;
                Some(Parents {
                    source: ParentSource::Listed {
                        pager: Box::new(self.pages(parents_request)?),
                        id_field: parent_listing.id_field,
                        exhausted: false,
                    },
                    queue: resumed.map(|p| p.queue).unwrap_or_default(),
                })
            }
            (None, Some(walk)) => {
                // A walk starts at its root; resumed, it goes on with the folder it was in and those waiting.
                let resumed = state.parent.clone();
                let (current, queue) = match resumed {
                    Some(cursor) => (cursor.current, cursor.queue),
                    None => (Some(walk.root.to_owned()), Default::default()),
                };
                let seen = queue.iter().chain(&current).cloned().collect();
                resumed_parent = current;
                Some(Parents {
                    source: ParentSource::Walk { seen },
                    queue,
                })
            }
        };
        let mut pager = Pager {
            incremental: state.lower.is_some(),
            started,
            guard: LoopGuard::default(),
            budget: self.rate_budget(request.connection_id, platform.id),
            connector: self,
            listing,
            paths,
            query,
            platform,
            credentials: request.credentials,
            auth,
            base,
            state,
            counters: Counters::default(),
            records: 0,
            pages: 0,
            parents,
            current_parent: None,
            parent_gone: None,
            parents_entered: 0,
            gone_parents: 0,
        };
        if let Some(id) = resumed_parent {
            // The parent the cursor was in (or a walk's root): its paths, and the position as the cursor left
            // it (a fresh state is at its first page already).
            pager.enter_parent(id, Entering::Resumed)?;
            pager.parents_entered += 1;
        }
        Ok(pager)
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
    listing: &'static Listing,
    /// Each endpoint's path and body with their placeholders filled (a per-parent listing's: with the
    /// current parent's; a walk's: with the current folder's).
    paths: Vec<FilledEndpoint>,
    /// The listing's fixed query parameters with their placeholders filled, likewise.
    query: Vec<(&'static str, String)>,
    /// A per-parent listing's parents, or a walk's folders.
    parents: Option<Parents<'a>>,
    /// The parent (or folder) being listed now.
    current_parent: Option<String>,
    /// The error of the last parent found gone (see [`Pager::next_page`]).
    parent_gone: Option<FetchError>,
    /// Parents whose children were asked for, and how many of them were found deleted.
    parents_entered: u64,
    gone_parents: u64,
    platform: &'static Platform,
    credentials: &'a BTreeMap<String, String>,
    auth: ApiAuth,
    base: String,
    budget: Arc<RateBudget>,
    state: PageCursor,
    incremental: bool,
    /// When the fetch started: the watermark never moves past it (see [`Pager::keep`]).
    started: DateTime<Utc>,
    /// Per endpoint: what this fetch has requested and received, to tell a listing going in circles.
    guard: LoopGuard,
    counters: Counters,
    records: u64,
    pages: u64,
}

/// How one answer moves a listing.
struct Step {
    next: Position,
    /// Per record: whether it is new to this fetch (before the incremental filter).
    keep: Vec<bool>,
}

impl Pager<'_> {
    /// The next page with at least one record, or `None` when the data type is exhausted. (A boxed future:
    /// a per-parent listing's parents are a pager too.)
    pub fn next_page(&mut self) -> BoxFuture<'_, Result<Option<Page>, FetchError>> {
        Box::pin(async move {
            if self.parents.is_none() {
                return self.next_page_of_listing().await;
            }
            loop {
                if let Some(parent) = self.current_parent.clone() {
                    match self.next_page_of_listing().await {
                        Ok(Some(page)) => return Ok(Some(page)),
                        Ok(None) => {}
                        // A walk's root is never deleted: not found there, the request itself is wrong.
                        Err(FetchError::Gone { status, message })
                            if self.listing.walk.is_some_and(|walk| walk.root == parent) =>
                        {
                            return Err(FetchError::Platform {
                                status,
                                message,
                                retryable: false,
                            });
                        }
                        // Deleted since it was listed: it has no children to back up any more.
                        Err(FetchError::Gone { status, message }) => {
                            self.gone_parents += 1;
                            tracing::warn!(platform = self.platform.id, %parent, status,
                                "a parent no longer exists; its children are passed over");
                            // Kept as a request that is wrong should every parent turn out gone.
                            self.parent_gone = Some(FetchError::Platform {
                                status,
                                message,
                                retryable: false,
                            });
                        }
                        Err(err) => return Err(err),
                    }
                }
                let Some(id) = self.next_parent().await? else {
                    // Every parent gone is not a race any more: the listing's requests are wrong.
                    if self.gone_parents > 0 && self.gone_parents == self.parents_entered {
                        if let Some(err) = self.parent_gone.take() {
                            return Err(err);
                        }
                    }
                    return Ok(None);
                };
                self.enter_parent(id, Entering::Fresh)?;
                self.parents_entered += 1;
            }
        })
    }

    /// The next parent's id: from the queue of the parents' page, or from their next page (only the parents
    /// meeting the listing's `parents_where`); a walk's next folder waiting.
    async fn next_parent(&mut self) -> Result<Option<String>, FetchError> {
        let only = self.listing.parents_where;
        let parents = self
            .parents
            .as_mut()
            .expect("a per-parent listing or a walk");
        loop {
            if let Some(id) = parents.queue.pop_front() {
                return Ok(Some(id));
            }
            let ParentSource::Listed {
                pager,
                id_field,
                exhausted,
            } = &mut parents.source
            else {
                // A walk whose folders are all listed.
                return Ok(None);
            };
            if *exhausted {
                return Ok(None);
            }
            match pager.next_page().await? {
                Some(page) => {
                    parents.queue = page
                        .records
                        .into_iter()
                        .filter(|raw| only.is_empty() || meets(raw, only))
                        .filter_map(|raw| Fetched::read(raw, id_field, None, None).id)
                        .collect();
                }
                None => *exhausted = true,
            }
        }
    }

    /// A walk's folders among the records of an answer, each queued to be listed once.
    fn descend(&mut self, fetched: &[Fetched]) {
        let (
            Some(walk),
            Some(Parents {
                source: ParentSource::Walk { seen },
                queue,
            }),
        ) = (self.listing.walk, self.parents.as_mut())
        else {
            return;
        };
        for record in fetched {
            if let Some(id) = &record.id {
                if meets(&record.raw, &[walk.folder]) && seen.insert(id.clone()) {
                    queue.push_back(id.clone());
                }
            }
        }
    }

    /// Starts listing the children of parent `id`: its paths and a fresh loop guard, and its first page
    /// unless the fetch resumes where a cursor left this parent.
    fn enter_parent(&mut self, id: String, entering: Entering) -> Result<(), FetchError> {
        self.paths = fill_paths(self.platform, self.listing, self.credentials, Some(&id))?;
        self.query = fill_query(self.platform, self.listing, self.credentials, Some(&id))?;
        if entering == Entering::Fresh {
            self.state.endpoint = 0;
            self.state.position = first_position(self.listing, self.state.lower.as_deref());
        }
        self.guard = LoopGuard::default();
        self.current_parent = Some(id);
        Ok(())
    }

    /// The next page of the listing itself (of the current parent, for a per-parent listing).
    async fn next_page_of_listing(&mut self) -> Result<Option<Page>, FetchError> {
        loop {
            let Some(endpoint) = self.listing.endpoints.get(self.state.endpoint) else {
                return Ok(None);
            };
            if self.state.position == Position::Done {
                self.state.endpoint += 1;
                self.state.position = first_position(self.listing, self.state.lower.as_deref());
                self.guard = LoopGuard::default();
                continue;
            }
            let (ListBody { records, envelope }, link) = self.request(endpoint).await?;
            let time_field = self.listing.incremental.map(|inc| inc.record_time);
            let tag_field = endpoint
                .tag
                .map(|(field, _)| field)
                .or(self.listing.per_parent.and_then(|parent| parent.tag));
            let id_field = self.listing.id_field;
            let fetched: Vec<Fetched> = records
                .into_iter()
                .map(|raw| Fetched::read(raw, id_field, time_field, tag_field))
                .collect();
            let mut step = self.advance(&fetched, &envelope, link)?;
            self.state.position = step.next.clone();
            self.descend(&fetched);
            let only = self.listing.records_where;
            if !only.is_empty() {
                for (keep, record) in step.keep.iter_mut().zip(&fetched) {
                    *keep = *keep && meets(&record.raw, only);
                }
            }
            let parent_tag = self
                .listing
                .per_parent
                .and_then(|parent| parent.tag)
                .zip(self.current_parent.clone());
            let tag = endpoint
                .tag
                .or(parent_tag.as_ref().map(|(field, id)| (*field, id.as_str())));
            let (records, ids) = self.keep(fetched, std::mem::take(&mut step.keep), tag);
            if records.is_empty() {
                continue;
            }
            self.pages += 1;
            self.records += records.len() as u64;
            return Ok(Some(Page {
                records,
                ids,
                cursor: self.cursor(),
                number: self.pages,
                parent: self.listing.per_parent.and(self.current_parent.clone()),
            }));
        }
    }

    /// Where the fetch stands: resumes after the last page handed over.
    fn cursor(&self) -> PageCursor {
        let mut cursor = self.state.clone();
        cursor.parent = self.parents.as_ref().map(|parents| {
            Box::new(ParentCursor {
                parents: match &parents.source {
                    ParentSource::Listed { pager, .. } => Some(pager.cursor()),
                    ParentSource::Walk { .. } => None,
                },
                current: self.current_parent.clone(),
                queue: parents.queue.clone(),
            })
        });
        cursor
    }

    /// Counts so far; the final summary once `next_page` returned `None`. A per-parent listing's requests
    /// include its parents'.
    pub fn summary(&self) -> FetchSummary {
        let mut counters = self.counters;
        if let Some(Parents {
            source: ParentSource::Listed { pager, .. },
            ..
        }) = &self.parents
        {
            let parents = pager.summary();
            counters.requests += parents.requests;
            counters.retries += parents.retries;
            counters.rate_limited += parents.rate_limited;
        }
        FetchSummary {
            records: self.records,
            pages: self.pages,
            requests: counters.requests,
            retries: counters.retries,
            rate_limited: counters.rate_limited,
            incremental: self.incremental,
            gone_parents: self.gone_parents,
            next_cursor: self
                .listing
                .incremental
                .and(self.state.watermark.as_deref())
                .map(|window| IncrementalCursor::from(window.clone())),
        }
    }

    /// Sends the request the listing's position calls for on `endpoint`; the answer's records and envelope,
    /// and the `Link` header's next URL when the listing pages by it.
    async fn request(
        &mut self,
        endpoint: &Endpoint,
    ) -> Result<(ListBody, Option<String>), FetchError> {
        let call = Call {
            // A parent's children, or a folder's items: the parent may have been deleted since it was listed.
            gone: self.current_parent.as_ref().map(|_| self.listing.gone),
            ..Call::new(
                &self.connector.http,
                &self.budget,
                &self.connector.retry,
                self.platform,
                self.credentials,
            )
        };
        let (auth, credentials, platform) = (self.auth, self.credentials, self.platform);
        let authorize = move |request: reqwest::RequestBuilder| {
            let mut request = request.header(reqwest::header::ACCEPT, "application/json");
            for (name, value) in platform.api_headers {
                request = request.header(*name, *value);
            }
            apply_auth(request, auth, credentials).map_err(FetchError::from)
        };
        let listing = self.listing;
        let link_paging = listing.pagination == Pagination::LinkHeader;
        let decode = |response: transport::Response| {
            tracing::trace!(status = %response.status, bytes = response.body.len(), "list page");
            let list = if listing.single_object {
                ListBody::parse_one(&response.body, listing.records)
            } else {
                ListBody::parse(&response.body, listing.records, listing.absent_is_empty)
            }
            .map_err(|err| BodyError::from_json(err, &response))?;
            let link = if link_paging {
                next_link(&response.headers).map_err(|why| {
                    BodyError::Invalid(FetchError::InvalidResponse(format!(
                        "{} answered {why}: the next page cannot be found, and this page is not \
                         taken for the last",
                        platform.name
                    )))
                })?
            } else {
                None
            };
            Ok((list, link))
        };
        let filled = &self.paths[self.state.endpoint];
        let url = format!("{}{}", self.base, filled.path);
        let json = |body: String| {
            move |request: reqwest::RequestBuilder| {
                request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
            }
        };
        match &self.state.position {
            Position::Search(position) => {
                let Some(IncrementalFetch {
                    filter:
                        TimeFilter::Search {
                            property,
                            id_property,
                            page_size,
                        },
                    ..
                }) = listing.incremental
                else {
                    unreachable!("a search position comes from a search filter")
                };
                let body = position.body(property, id_property, page_size);
                let url = format!("{url}/search");
                call.send(
                    &mut self.counters,
                    |http| authorize(http.post(&url).json(&body)),
                    decode,
                )
                .await
            }
            Position::Url { url: next } => {
                let next = self.same_origin(next)?;
                call.send(
                    &mut self.counters,
                    |http| authorize(http.get(next.clone())),
                    decode,
                )
                .await
            }
            Position::Continue { cursor } => {
                let Pagination::ContinueWithCursor { path, .. } = listing.pagination else {
                    unreachable!("a continue position comes from a continuation listing")
                };
                let url = format!("{}{path}", self.base);
                let body = json(serde_json::json!({ "cursor": cursor }).to_string());
                call.send(
                    &mut self.counters,
                    |http| authorize(body(http.post(&url))),
                    decode,
                )
                .await
            }
            position => {
                let query = self.query(position);
                match (endpoint.method, filled.body.as_deref()) {
                    (HttpMethod::Post, body) => {
                        let body = json(body.unwrap_or("{}").to_owned());
                        call.send(
                            &mut self.counters,
                            |http| authorize(body(http.post(&url).query(&query))),
                            decode,
                        )
                        .await
                    }
                    (HttpMethod::Get, _) => {
                        call.send(
                            &mut self.counters,
                            |http| authorize(http.get(&url).query(&query)),
                            decode,
                        )
                        .await
                    }
                }
            }
        }
    }

    /// A next-page URL the platform gave (a `Link` header, a `links.next`), resolved against the API base and
    /// accepted only on the API's own origin: the credentials go along, and must not go wherever an answer
    /// points.
    fn same_origin(&self, next: &str) -> Result<url::Url, FetchError> {
        let base = url::Url::parse(&self.base)
            .map_err(|_| FetchError::InvalidResponse("the API base URL is not a URL".into()))?;
        let url = base.join(next).map_err(|_| {
            FetchError::InvalidResponse(format!(
                "{} gave a next page URL that is not a URL",
                self.platform.name
            ))
        })?;
        if url.origin() != base.origin() {
            return Err(FetchError::InvalidResponse(format!(
                "{} gave a next page URL on another host ({}); it is not followed",
                self.platform.name,
                url.host_str().unwrap_or_default()
            )));
        }
        Ok(url)
    }

    fn query(&self, position: &Position) -> Vec<(&'static str, String)> {
        let listing = self.listing;
        let mut query = self.query.clone();
        if let Some(param) = listing.page_size.param {
            query.push((param, listing.page_size.size.to_string()));
        }
        match (position, listing.pagination) {
            (Position::AfterId { id }, Pagination::AfterLastId { param, .. }) => {
                query.push((param, id.clone()))
            }
            (Position::Cursors { values }, Pagination::CursorParam { param, .. })
            | (Position::Cursors { values }, Pagination::AfterLastValue { param, .. }) => {
                query.extend(values.first().map(|value| (param, value.clone())));
            }
            (Position::Cursors { values }, Pagination::CursorParams { params }) => {
                query.extend(
                    params
                        .iter()
                        .zip(values)
                        .map(|((param, _), value)| (*param, value.clone())),
                );
            }
            (Position::AfterId { id }, Pagination::AfterLastIdUntilShortPage { param }) => {
                query.push((param, id.clone()))
            }
            (Position::Offset { offset, .. }, Pagination::Offset { offset: param, .. }) => {
                match param {
                    OffsetParam::Param(name) => query.push((name, offset.to_string())),
                    OffsetParam::Statement { param, template } => {
                        query.push((param, self.statement(template, *offset)))
                    }
                }
            }
            // The first page says its offset too: HighLevel's invoices require it.
            (
                Position::Start,
                Pagination::Offset {
                    offset: OffsetParam::Param(name),
                    ..
                },
            ) => query.push((name, "0".to_owned())),
            (
                Position::Start,
                Pagination::Offset {
                    offset: OffsetParam::Statement { param, template },
                    ..
                },
            ) => query.push((param, self.statement(template, 0))),
            _ => {}
        }
        if let (Some(lower), Some(inc)) = (&self.state.lower, listing.incremental) {
            if let TimeFilter::QueryParam { param, format } = inc.filter {
                // The lower bound replaces a fixed value of the same parameter (`start_time=0`).
                query.retain(|(name, _)| *name != param);
                query.push((param, time_text(window_start(lower, inc), format)));
            }
        }
        query
    }

    /// A query-language statement ([`OffsetParam::Statement`]) for the page at `offset` (0-based; the
    /// statement counts from 1), or on an incremental run the filter's own ([`TimeFilter::InStatement`])
    /// with its lower bound.
    fn statement(&self, template: &str, offset: u64) -> String {
        let max = self.listing.page_size.size.to_string();
        let start = (offset + 1).to_string();
        match (&self.state.lower, self.listing.incremental) {
            (
                Some(lower),
                Some(
                    inc @ IncrementalFetch {
                        filter: TimeFilter::InStatement { template, format },
                        ..
                    },
                ),
            ) => template
                .replace("{since}", &time_text(window_start(lower, inc), format))
                .replace("{start}", &start)
                .replace("{max}", &max),
            _ => template.replace("{start}", &start).replace("{max}", &max),
        }
    }

    /// Where the listing goes after this answer, and which of its records are new; fails when the listing
    /// would never end.
    fn advance(
        &mut self,
        fetched: &[Fetched],
        envelope: &Envelope,
        link: Option<String>,
    ) -> Result<Step, FetchError> {
        let name = self.platform.name;
        let position = std::mem::replace(&mut self.state.position, Position::Done);
        if let Position::Search(search) = &position {
            let Some(IncrementalFetch {
                filter:
                    TimeFilter::Search {
                        property,
                        id_property,
                        ..
                    },
                ..
            }) = self.listing.incremental
            else {
                unreachable!("a search position comes from a search filter")
            };
            // The query just answered counts as asked (the first one included).
            self.guard.first_cursor(&search.key());
            let step = search
                .advance(fetched, envelope.text(SEARCH_MORE).is_some())
                .map_err(|reason| FetchError::InvalidResponse(format!("{name}: {reason}")))?;
            let next = match step.next {
                Some(next) => {
                    if !self.guard.first_cursor(&next.key()) {
                        return Err(FetchError::PagingLoop(format!(
                            "{name}'s search answered the query {} a second time: the listing would \
                             never end",
                            next.describe(property, id_property)
                        )));
                    }
                    Position::Search(next)
                }
                None => Position::Done,
            };
            return Ok(Step {
                next,
                keep: step.keep,
            });
        }
        let repeated = |what: String| {
            FetchError::PagingLoop(format!(
                "{name} answered {what} a second time: the listing would never end"
            ))
        };
        let next = match self.listing.pagination {
            Pagination::Single => Position::Done,
            Pagination::AfterLastId { param, more } => {
                let last = fetched.last().and_then(|record| record.id.clone());
                // Without the flag (or with something else than a boolean) the answer is not in the
                // documented shape: taking it for the last page would drop the rest silently.
                let more = envelope
                    .flag(more)
                    .ok_or_else(|| missing_flag(name, more))?;
                match (more, last) {
                    (true, Some(id)) => {
                        if !self.guard.first_cursor(&(param, &id)) {
                            return Err(FetchError::PagingLoop(format!(
                                "{name} answered a page ending with `{id}` again, the `{param}` id \
                                 already used: the listing would never end"
                            )));
                        }
                        Position::AfterId { id }
                    }
                    (true, None) => {
                        return Err(FetchError::InvalidResponse(
                            "the platform says there is more but sent no record to continue after"
                                .to_owned(),
                        ))
                    }
                    (false, _) => Position::Done,
                }
            }
            Pagination::AfterLastIdUntilShortPage { param } => {
                let full = fetched.len() as u64 >= u64::from(self.listing.page_size.size);
                match fetched.last().and_then(|record| record.id.clone()) {
                    Some(id) if full => {
                        if !self.guard.first_cursor(&(param, &id)) {
                            return Err(FetchError::PagingLoop(format!(
                                "{name} answered a page ending with `{id}` again, the `{param}` id \
                                 already used: the listing would never end"
                            )));
                        }
                        Position::AfterId { id }
                    }
                    None if full => {
                        return Err(FetchError::InvalidResponse(format!(
                            "{name} answered a full page whose last record has no `{}` to continue after",
                            self.listing.id_field
                        )))
                    }
                    _ => Position::Done,
                }
            }
            Pagination::CursorParam { param, cursor } => match envelope.text(cursor) {
                Some(value) => {
                    if !self.guard.first_cursor(&(param, &value)) {
                        return Err(repeated(format!("the paging cursor {param}={value}")));
                    }
                    Position::Cursors {
                        values: vec![value],
                    }
                }
                None => Position::Done,
            },
            Pagination::CursorParams { params } => {
                let values: Vec<Option<String>> = params
                    .iter()
                    .map(|(_, pointer)| envelope.text(pointer))
                    .collect();
                match values.first() {
                    Some(Some(_)) => {
                        let values: Vec<String> =
                            values.into_iter().map(Option::unwrap_or_default).collect();
                        if !self.guard.first_cursor(&values) {
                            let shown: Vec<String> = params
                                .iter()
                                .zip(&values)
                                .map(|((param, _), value)| format!("{param}={value}"))
                                .collect();
                            return Err(repeated(format!("the paging cursor {}", shown.join("&"))));
                        }
                        Position::Cursors { values }
                    }
                    _ => Position::Done,
                }
            }
            Pagination::LinkHeader => match link {
                Some(url) => {
                    if !self.guard.first_cursor(&url) {
                        return Err(repeated(format!("the next page link {url}")));
                    }
                    Position::Url { url }
                }
                None => Position::Done,
            },
            Pagination::NextUrl { url, more } => {
                // An answer without the flag the listing pages by is not in the documented shape (an
                // endpoint answering offset pagination, say): stopping there would drop records silently.
                let flagged = more.is_some();
                let more = match more {
                    None => true,
                    Some(pointer) => envelope
                        .flag(pointer)
                        .ok_or_else(|| missing_flag(name, pointer))?,
                };
                match (more, envelope.text(url)) {
                    (false, _) => Position::Done,
                    (true, Some(url)) => {
                        if !self.guard.first_cursor(&url) {
                            return Err(repeated(format!("the next page URL {url}")));
                        }
                        Position::Url { url }
                    }
                    (true, None) if flagged => {
                        return Err(FetchError::InvalidResponse(format!(
                            "{name} says the list goes on but sent no next page URL"
                        )))
                    }
                    // Without a flag, an answer without a next URL is the last page.
                    (true, None) => Position::Done,
                }
            }
            Pagination::NextUrlUntil { url, end } => {
                let ended = envelope.flag(end).ok_or_else(|| missing_flag(name, end))?;
                if ended {
                    Position::Done
                } else {
                    let url = envelope.text(url).ok_or_else(|| {
                        FetchError::InvalidResponse(format!(
                            "{name} says the list goes on (`{end}` is not true) but sent no next page URL"
                        ))
                    })?;
                    if !self.guard.first_cursor(&url) {
                        return Err(repeated(format!("the next page URL {url}")));
                    }
                    Position::Url { url }
                }
            }
            Pagination::AfterLastValue { param, field } => {
                let size = self.listing.page_size.size as usize;
                if fetched.len() < size {
                    Position::Done
                } else {
                    let value = fetched
                        .last()
                        .and_then(|record| record.field_text(field))
                        .ok_or_else(|| {
                            FetchError::InvalidResponse(format!(
                                "{name} answered a full page whose last record has no `{field}` to \
                                 continue after"
                            ))
                        })?;
                    if !self.guard.first_cursor(&(param, &value)) {
                        return Err(repeated(format!("a page ending at {param}={value}")));
                    }
                    Position::Cursors {
                        values: vec![value],
                    }
                }
            }
            Pagination::ContinueWithCursor { cursor, more, .. } => {
                // Without a `more` flag, the answer's cursor says whether there is more.
                let more = match more {
                    Some(more) => envelope
                        .flag(more)
                        .ok_or_else(|| missing_flag(name, more))?,
                    None => envelope.text(cursor).is_some(),
                };
                if more {
                    let cursor = envelope.text(cursor).ok_or_else(|| {
                        FetchError::InvalidResponse(
                            "the platform says there is more but sent no cursor to continue with"
                                .to_owned(),
                        )
                    })?;
                    if !self.guard.first_cursor(&cursor) {
                        return Err(repeated("the same continuation cursor".to_owned()));
                    }
                    Position::Continue { cursor }
                } else {
                    Position::Done
                }
            }
            Pagination::Offset {
                overlap,
                total,
                used_limit,
                ..
            } => {
                let announced = total.and_then(|total| envelope.count(total));
                let used = used_limit.and_then(|used| envelope.count(used));
                return self.advance_offset(position, fetched, announced, used, overlap);
            }
        };
        // A cursor that moves on over the records of an earlier page goes in circles just the same.
        if !fetched.is_empty() && !self.guard.first_page(fetched.iter().map(Fetched::identity)) {
            return Err(self.same_page_again(fetched));
        }
        Ok(Step {
            next,
            keep: vec![true; fetched.len()],
        })
    }

    /// [`OffsetWithOverlap`]: places the page after the previous one, or steps back to find its place.
    fn advance_offset(
        &mut self,
        position: Position,
        fetched: &[Fetched],
        announced: Option<u64>,
        used_limit: Option<u64>,
        overlap: u32,
    ) -> Result<Step, FetchError> {
        let name = self.platform.name;
        let (offset, previous, step_backs) = match position {
            Position::Offset {
                offset,
                previous,
                step_backs,
            } => (offset, previous, step_backs),
            _ => (0, Vec::new(), 0),
        };
        let paging = OffsetWithOverlap {
            limit: u64::from(self.listing.page_size.size),
            overlap: u64::from(overlap),
        };
        let ids: Vec<&str> = fetched.iter().map(Fetched::identity).collect();
        let seen: HashSet<&str> = previous.iter().map(String::as_str).collect();
        let total = announced.map(|total| (total, used_limit));
        let step = paging.step(offset, &ids, &seen, step_backs, total);
        let keep = match step.new_from {
            Some(from) => ids
                .iter()
                .enumerate()
                .map(|(i, id)| i >= from && !seen.contains(id))
                .collect(),
            None => vec![false; ids.len()],
        };
        if step.new_from.is_some() && step_backs == 0 && !ids.is_empty() {
            // A page placed by moving forward: the same records as an earlier one means no progress.
            if !self.guard.first_page(ids.iter().copied()) {
                return Err(self.same_page_again(fetched));
            }
            if let Err((total, pages)) = self
                .guard
                .forward_page(announced, paging.advance(ids.len() as u64))
            {
                return Err(FetchError::PagingLoop(format!(
                    "{name} announced {total} records, yet paging went on for {pages} pages of up to {}: \
                     the listing would never end",
                    paging.limit
                )));
            }
        }
        let placed = || ids.iter().map(|id| (*id).to_owned()).collect();
        let next = match step.next {
            OffsetNext::Done => Position::Done,
            OffsetNext::Forward { offset } => {
                let previous: Vec<String> = placed();
                // Coming forward to the same offset after the same page again (a page too short to
                // overlap the next, stepped back over and placed again) would go round forever.
                if !self.guard.first_cursor(&("offset", offset, &previous)) {
                    return Err(FetchError::PagingLoop(format!(
                        "{name} paging came back to offset {offset} after the same page of {} records: the \
                         listing would never end",
                        previous.len()
                    )));
                }
                Position::Offset {
                    offset,
                    previous,
                    step_backs: 0,
                }
            }
            OffsetNext::StepBack { offset } => Position::Offset {
                offset,
                previous,
                step_backs: step_backs + 1,
            },
            OffsetNext::Lost => {
                return Err(FetchError::ListChanged(format!(
                    "the {name} list changed too much while it was paged: none of the {} records of the \
                     previous page could be found again near offset {offset}; rather than skip records, \
                     the data type stops here and can be fetched again",
                    previous.len()
                )))
            }
            OffsetNext::ShortOfTotal { offset, total } => {
                return Err(FetchError::ListChanged(format!(
                    "{name} announced {total} records but answered none from offset {offset}: the records \
                     in between can be neither read nor known to be gone; rather than skip them, the data \
                     type stops here and can be fetched again"
                )))
            }
        };
        Ok(Step { next, keep })
    }

    fn same_page_again(&self, fetched: &[Fetched]) -> FetchError {
        let (first, last) = (
            fetched.first().map_or("", Fetched::identity),
            fetched.last().map_or("", Fetched::identity),
        );
        FetchError::PagingLoop(format!(
            "{} answered the same page of {} records (`{first}` to `{last}`) a second time: the listing \
             would never end",
            self.platform.name,
            fetched.len()
        ))
    }

    /// The records of the page to hand over, with their ids: new to this fetch and not held by the previous
    /// backup; moves the watermark; makes each record one NDJSON line.
    fn keep(
        &mut self,
        fetched: Vec<Fetched>,
        keep: Vec<bool>,
        tag: Option<(&str, &str)>,
    ) -> (Vec<Box<RawValue>>, Vec<Option<String>>) {
        let inc = self.listing.incremental;
        let start = match (&self.state.lower, inc) {
            (Some(lower), Some(inc)) => Some(window_start(lower, inc)),
            _ => None,
        };
        let mut kept = Vec::with_capacity(fetched.len());
        let mut ids = Vec::with_capacity(fetched.len());
        for (mut record, new) in fetched.into_iter().zip(keep) {
            if !new {
                continue;
            }
            // Without an id or a change time a record cannot be placed; keeping it is the safe side.
            if let (Some(inc), Some(time), Some(id)) = (inc, record.time, record.id.as_deref()) {
                // A per-parent listing's ids may repeat from one parent to the next (a Mailchimp member's
                // id is the hash of its e-mail address, the same in every audience): the cursor knows
                // each record as `<parent id>/<id>`.
                let qualified;
                let id = match &self.current_parent {
                    Some(parent) => {
                        qualified = format!("{parent}/{id}");
                        qualified.as_str()
                    }
                    None => id,
                };
                if let (Some(lower), Some(start)) = (&self.state.lower, start) {
                    if lower.holds(time, id, start) {
                        continue;
                    }
                }
                // A change dated after the fetch started (a record dated ahead, a platform clock ahead of
                // ours, a change made while the fetch runs) is kept but does not move the watermark: a
                // cursor in the future would start the next run after every change made until then, and
                // those would never be fetched (airbytehq/airbyte#27498, Klaviyo: "we won't notice them
                // because we have state stored in the future"). Such a record comes again next run.
                if time > self.started {
                    ids.push(record.id.take());
                    kept.push(record.into_line(tag));
                    continue;
                }
                SeenWindow::observe(
                    &mut self.state.watermark,
                    inc.cursor_field,
                    time,
                    id,
                    inc.lookback,
                );
            }
            // The tag is another field than the id: the line keeps the id read here.
            ids.push(record.id.take());
            kept.push(record.into_line(tag));
        }
        (kept, ids)
    }
}

/// How a per-parent listing enters a parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entering {
    /// From its first page.
    Fresh,
    /// Where a resumed cursor left it.
    Resumed,
}

/// A per-parent listing's parents, or a walk's folders: the ids still to list, and where more come from.
struct Parents<'a> {
    source: ParentSource<'a>,
    queue: std::collections::VecDeque<String>,
}

enum ParentSource<'a> {
    /// The parent data type's own pager; `queue` holds the rest of its current page.
    Listed {
        pager: Box<Pager<'a>>,
        id_field: &'static str,
        exhausted: bool,
    },
    /// The folders found so far (each listed once, whatever the answers say); `queue` holds those waiting.
    Walk { seen: HashSet<String> },
}

/// One endpoint of a listing with its placeholders filled.
struct FilledEndpoint {
    path: String,
    /// A POST's JSON body (a per-parent listing's with the parent's id in it).
    body: Option<String>,
}

/// The `{placeholder}` a parent's or a walked folder's id fills, if the listing has one.
fn parent_placeholder(listing: &Listing) -> Option<&'static str> {
    listing
        .per_parent
        .map(|parent| parent.placeholder)
        .or(listing.walk.map(|walk| walk.placeholder))
}

/// Whether a record (JSON text) meets every condition, each read at its pointer alone: a value elsewhere in
/// the record that a `serde_json::Value` cannot hold (`1e400`, a lone surrogate `"\ud800"` in a file's
/// description) neither drops the record nor hides a folder's contents from a walk.
fn meets(raw: &RawValue, conditions: &[Condition]) -> bool {
    conditions.iter().all(|condition| {
        condition.holds_text(body::scalar_text_at(raw.get(), condition.pointer).as_deref())
    })
}

/// The listing's endpoint paths with their placeholders filled from the credentials, and the parent's
/// placeholder from `parent`: percent-encoded as one path segment in a path (an id never moves a request
/// elsewhere), escaped as JSON string content in a body.
fn fill_paths(
    platform: &Platform,
    listing: &Listing,
    credentials: &BTreeMap<String, String>,
    parent: Option<&str>,
) -> Result<Vec<FilledEndpoint>, FetchError> {
    listing
        .endpoints
        .iter()
        .map(|endpoint| {
            let (path, body) = match (parent_placeholder(listing), parent) {
                (Some(placeholder), Some(id)) => {
                    let placeholder = format!("{{{placeholder}}}");
                    let segment: String =
                        url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
                    let quoted = serde_json::Value::String(id.to_owned()).to_string();
                    let escaped = &quoted[1..quoted.len() - 1];
                    (
                        endpoint.path.replace(&placeholder, &segment),
                        endpoint
                            .body
                            .map(|body| body.replace(&placeholder, escaped)),
                    )
                }
                _ => (endpoint.path.to_owned(), endpoint.body.map(str::to_owned)),
            };
            Ok(FilledEndpoint {
                path: fill_template(platform, &path, credentials)?,
                body,
            })
        })
        .collect()
}

/// An answer without the boolean the listing's paging reads.
fn missing_flag(platform: &str, pointer: &str) -> FetchError {
    FetchError::InvalidResponse(format!(
        "{platform}'s answer has no `{pointer}` to say whether the list goes on: it is not in the \
         documented shape"
    ))
}

/// The listing's fixed query parameters with their `{placeholders}` filled from the credentials (checked like
/// the paths': they cannot carry anything but a plain identifier), and the parent's placeholder from `parent`
/// (as it is: the query string encoding keeps it one value).
fn fill_query(
    platform: &Platform,
    listing: &Listing,
    credentials: &BTreeMap<String, String>,
    parent: Option<&str>,
) -> Result<Vec<(&'static str, String)>, FetchError> {
    let placeholder = listing
        .per_parent
        .map(|per_parent| format!("{{{}}}", per_parent.placeholder));
    listing
        .query
        .iter()
        .map(|(name, template)| {
            // The parent's id goes in after the credentials' placeholders are filled, so that an id
            // holding braces is never read as a placeholder.
            let segments: Vec<&str> = match &placeholder {
                Some(placeholder) => template.split(placeholder.as_str()).collect(),
                None => vec![template],
            };
            let filled = segments
                .iter()
                .map(|segment| fill_template(platform, segment, credentials))
                .collect::<Result<Vec<String>, ProbeError>>()?;
            Ok((*name, filled.join(parent.unwrap_or_default())))
        })
        .collect()
}

/// Where a listing starts: the first page, or for an incremental search run the first search query.
fn first_position(listing: &Listing, lower: Option<&SeenWindow>) -> Position {
    match (listing.incremental, lower) {
        (
            Some(
                inc @ IncrementalFetch {
                    filter: TimeFilter::Search { .. },
                    ..
                },
            ),
            Some(lower),
        ) => Position::Search(SearchPosition::start(
            window_start(lower, inc).timestamp_millis(),
        )),
        _ => Position::Start,
    }
}

/// The next page's URL in the `Link` header fields (RFC 8288 §3), if any: the target of the first link whose
/// `rel` names the relation type `next`, compared without regard to case (§2.1.1) among the types one `rel`
/// may list (`rel="next last"`, §3.3; a second `rel` of a link is ignored). Links without `rel`, parameters
/// quoting `,` or `;`, and targets holding commas are read as the grammar says. `Err` (what is wrong) for a
/// field outside that grammar: a page whose continuation cannot be read must not pass for the last one.
fn next_link(headers: &reqwest::header::HeaderMap) -> Result<Option<String>, String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let text = value
            .to_str()
            .map_err(|_| "a Link header that is not visible ASCII".to_owned())?;
        let links =
            nom_rfc8288::complete::link_lenient::<nom_language::error::VerboseError<&str>>(text)
                .map_err(|err| format!("a Link header that is not RFC 8288 ({err})"))?;
        for link in links.into_iter().flatten() {
            let rel = link
                .params
                .iter()
                .find(|param| param.key.eq_ignore_ascii_case("rel"))
                .and_then(|param| param.val.as_deref())
                .unwrap_or_default();
            if rel
                .split_ascii_whitespace()
                .any(|relation| relation.eq_ignore_ascii_case("next"))
            {
                return Ok(Some(link.url.to_owned()));
            }
        }
    }
    Ok(None)
}

/// A time as a request writes it.
fn time_text(time: DateTime<Utc>, format: TimeFormat) -> String {
    match format {
        TimeFormat::UnixSeconds => time.timestamp().to_string(),
        TimeFormat::UnixMillis => time.timestamp_millis().to_string(),
        TimeFormat::Rfc3339 => time.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// Where an incremental run's requests start: the lookback window before the previous run's newest change.
fn window_start(lower: &SeenWindow, inc: IncrementalFetch) -> DateTime<Utc> {
    TimeDelta::from_std(inc.lookback)
        .ok()
        .and_then(|lookback| lower.since().checked_sub_signed(lookback))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Whether a data type of a platform can be fetched incrementally.
pub fn supports_incremental(platform_id: &str, data_type: &str) -> bool {
    listbackup_domain::platform::find(platform_id)
        .and_then(|platform| platform.listing(data_type))
        .is_some_and(|listing| listing.incremental.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damaged() -> serde_json::Error {
        serde_json::from_str::<serde_json::Value>("{").unwrap_err()
    }

    #[test]
    fn every_variant_says_whether_a_later_run_may_succeed() {
        let retryable = [
            FetchError::RateLimited { retry_after: None },
            FetchError::Network {
                what: "x",
                source: None,
            },
            FetchError::UnreadableBody {
                what: "x".into(),
                source: damaged(),
            },
            FetchError::ListChanged("x".into()),
            FetchError::Platform {
                status: 503,
                message: String::new(),
                retryable: true,
            },
        ];
        for err in &retryable {
            assert!(err.retryable(), "{err:?}");
        }
        let permanent = [
            FetchError::Unauthorized,
            FetchError::Forbidden {
                message: String::new(),
            },
            FetchError::InvalidResponse("x".into()),
            FetchError::Undecodable {
                context: "x".into(),
                source: damaged().into(),
            },
            FetchError::PagingLoop("x".into()),
        ];
        for err in &permanent {
            assert!(!err.retryable(), "{err:?}");
        }
        for err in [
            FetchError::UnreadableBody {
                what: "x".into(),
                source: damaged(),
            },
            FetchError::Undecodable {
                context: "x".into(),
                source: damaged().into(),
            },
            FetchError::PagingLoop("x".into()),
            FetchError::ListChanged("x".into()),
        ] {
            assert_eq!(err.code(), JobErrorCode::PlatformError);
        }
    }

    #[tokio::test]
    async fn an_unreachable_platform_keeps_the_http_error_as_the_source_without_the_url() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let endpoints =
            PlatformEndpoints::default().with_api_url("stripe", "http://127.0.0.1:1/v1");
        let connector = Connector::new(endpoints).with_retry_policy(RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        });
        let stripe = listbackup_domain::platform::find("stripe").unwrap();
        let credentials =
            BTreeMap::from([("secretKey".to_owned(), "sk_test_supersecret".to_owned())]);
        let err = connector
            .pages(FetchRequest::new("c", stripe, "customers", &credentials))
            .unwrap()
            .next_page()
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::Network { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "could not reach the platform: the connection failed"
        );
        let source = std::error::Error::source(&err).expect("the HTTP client's error is kept");
        let reqwest = source
            .downcast_ref::<reqwest::Error>()
            .expect("a reqwest error");
        assert!(reqwest.url().is_none(), "the URL is dropped: {reqwest:?}");
        // What a job's failure records (`RunFailure`, a source test's sample): the chain, down to the reason.
        let message = listbackup_commands::error_chain(&err);
        assert!(
            message.starts_with("could not reach the platform: the connection failed: "),
            "{message}"
        );
        assert!(message.to_lowercase().contains("refused"), "{message}");
        assert!(
            !message.contains("127.0.0.1") && !message.contains("sk_test"),
            "{message}"
        );
    }

    #[test]
    fn a_damaged_or_undocumented_answer_keeps_the_parser_error_as_the_source() {
        let response = |body: &'static str| transport::Response {
            status: reqwest::StatusCode::OK,
            headers: reqwest::header::HeaderMap::new(),
            body: bytes::Bytes::from_static(body.as_bytes()),
        };
        // Cut off: retried like a dropped connection, the parser's position kept underneath.
        let cut = response(r#"{"data": ["#);
        let err = serde_json::from_slice::<serde_json::Value>(&cut.body).unwrap_err();
        let BodyError::Unreadable(what, source) = BodyError::from_json(err, &cut) else {
            panic!("a cut-off body is unreadable");
        };
        let err = FetchError::UnreadableBody { what, source };
        assert!(err.retryable());
        assert!(std::error::Error::source(&err).is_some());
        let message = listbackup_commands::error_chain(&err);
        assert!(
            message.contains("is not complete JSON: EOF while parsing"),
            "{message}"
        );
        // Well-formed but another shape: not retried, the field the parser refused named underneath.
        let other = response(r#"{"data": 7}"#);
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct List {
            data: Vec<u8>,
        }
        let err = serde_json::from_slice::<List>(&other.body).unwrap_err();
        let BodyError::Invalid(err) = BodyError::from_json(err, &other) else {
            panic!("a body of another shape is invalid");
        };
        assert!(matches!(err, FetchError::Undecodable { .. }), "{err:?}");
        assert!(!err.retryable());
        assert_eq!(err.code(), JobErrorCode::PlatformError);
        let message = listbackup_commands::error_chain(&err);
        assert!(
            message
                .starts_with("the platform's answer is not in the documented shape: invalid type"),
            "{message}"
        );
    }

    #[test]
    fn unsupported_data_types_are_refused_clearly() {
        let connector = Connector::new(PlatformEndpoints::default());
        let credentials = BTreeMap::from([("apiToken".to_owned(), "t".to_owned())]);
        // A platform with a data type in its catalog entry that nothing lists yet.
        let zendesk = listbackup_domain::platform::find("zendesk").unwrap();
        static UNLISTED: &[listbackup_domain::platform::DataType] =
            &[listbackup_domain::platform::DataType::not_listed(
                "tickets", "Tickets",
            )];
        let unlisted: &'static Platform = Box::leak(Box::new(Platform {
            data_types: UNLISTED,
            ..zendesk.clone()
        }));
        let err = connector
            .pages(FetchRequest::new("c", unlisted, "tickets", &credentials))
            .err()
            .unwrap();
        assert!(matches!(err, FetchError::Unsupported { .. }), "{err}");
        let stripe = listbackup_domain::platform::find("stripe").unwrap();
        let err = connector
            .pages(FetchRequest::new("c", stripe, "tickets", &credentials))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a data type"), "{err}");
        assert_eq!(err.code(), JobErrorCode::ValidationError);
    }

    #[test]
    fn query_values_are_filled_from_the_credentials_and_the_parent() {
        let ghl = listbackup_domain::platform::find("gohighlevel").unwrap();
        let credentials = BTreeMap::from([
            ("privateIntegrationToken".to_owned(), "pit-1".to_owned()),
            ("locationId".to_owned(), "loc_1".to_owned()),
        ]);
        let appointments = ghl.listing("appointments").unwrap();
        let query = fill_query(ghl, appointments, &credentials, Some("cal{x}/1")).unwrap();
        assert!(
            query.contains(&("locationId", "loc_1".to_owned())),
            "{query:?}"
        );
        // The parent's id goes in as it is, braces and all: never read as a placeholder.
        assert!(
            query.contains(&("calendarId", "cal{x}/1".to_owned())),
            "{query:?}"
        );
        // A value that could move the request elsewhere is refused, like in a path.
        let bad = BTreeMap::from([
            ("privateIntegrationToken".to_owned(), "pit-1".to_owned()),
            ("locationId".to_owned(), "loc&x=1".to_owned()),
        ]);
        let err = fill_query(ghl, appointments, &bad, Some("c")).unwrap_err();
        assert!(matches!(err, FetchError::Credentials(_)), "{err}");
        let missing = BTreeMap::from([("privateIntegrationToken".to_owned(), "pit-1".to_owned())]);
        let contacts = ghl.listing("contacts").unwrap();
        assert!(fill_query(ghl, contacts, &missing, None).is_err());
    }

    fn link_headers(values: &[&str]) -> reqwest::header::HeaderMap {
        let mut headers = reqwest::header::HeaderMap::new();
        for value in values {
            headers.append(reqwest::header::LINK, value.parse().unwrap());
        }
        headers
    }

    /// RFC 8288 §3 as other connectors' Link parsers got it wrong: a `rel="next"` after another parameter
    /// was taken for the last page, and the pages after it were dropped without an error
    /// (panoramicdata/Meraki.Api#407: "the caller received a clean, non-empty, silently-short list"); a link
    /// without `rel` stopped the parse (jfromaniello/li#7). parse_link_header 0.4, used here before, removed
    /// every quote and space (`rel="next last"` became `nextlast`), split on every comma, and gave up on a
    /// whole header with one link it could not read: each case below was a silent last page.
    #[test]
    fn the_next_link_is_read_as_rfc_8288_writes_it() {
        let next = |values: &[&str]| next_link(&link_headers(values));
        let page2 = "https://shop.example/admin/api/2024-01/products.json?limit=250&page_info=abc";
        // Shopify's own shapes (https://shopify.dev/docs/api/usage/pagination-rest): quoted or not.
        assert_eq!(
            next(&[&format!(
                r#"<https://shop.example/p.json?page_info=x>; rel="previous", <{page2}>; rel="next""#
            )]),
            Ok(Some(page2.to_owned()))
        );
        assert_eq!(
            next(&[&format!("<{page2}>; rel=next")]),
            Ok(Some(page2.to_owned()))
        );
        for value in [
            // Several relation types in one `rel` (§3.3), any case (§2.1.1).
            format!(r#"<{page2}>; rel="next last""#),
            format!(r#"<{page2}>; rel="last NEXT""#),
            format!(r#"<{page2}>; rel=Next"#),
            // `rel` after another parameter, which quotes a comma and a semicolon.
            format!(r#"<{page2}>; title="page 2, of 3; more"; rel="next""#),
            // A link without `rel`, and one with a parameter without a value, before it.
            format!(r#"</help>, </x>; crossorigin; rel="help", <{page2}>;rel="next""#),
            // Spaces around the separators.
            format!(r#"</p> ; rel="prev" ,  <{page2}> ; rel="next""#),
        ] {
            assert_eq!(next(&[&value]), Ok(Some(page2.to_owned())), "{value}");
        }
        // A target holding a comma and a query parameter without `=`.
        let odd = "https://shop.example/p.json?fields=id,title&flag&page_info=a%2Bb%3D";
        assert_eq!(
            next(&[&format!(r#"<{odd}>; rel="next""#)]),
            Ok(Some(odd.to_owned()))
        );
        // The links may come in several fields (RFC 9110 §5.3).
        assert_eq!(
            next(&[
                r#"</p>; rel="previous""#,
                &format!(r#"<{page2}>; rel="next""#)
            ]),
            Ok(Some(page2.to_owned()))
        );
        // The last page: no `next` among the links, or no header at all.
        assert_eq!(next(&[r#"</p>; rel="previous""#]), Ok(None));
        assert_eq!(next(&[r#"</p>; rel="nextish""#]), Ok(None));
        assert_eq!(next(&[]), Ok(None));
        // A header outside the grammar is an error, never a last page.
        for broken in [
            format!("{page2}; rel=next"),
            format!(r#"<{page2}>; rel="next"#),
            format!(r#"<{page2}; rel="next""#),
        ] {
            assert!(next(&[&broken]).is_err(), "{broken}");
        }
    }

    /// A value a `serde_json::Value` cannot hold, anywhere in a record, made its conditions fail: a Box file
    /// or folder (`/type`) with one was dropped from the backup without a word, and a folder with one hid its
    /// whole subtree from the walk. A lone surrogate is what a platform cutting text at UTF-16 code units
    /// leaves of an emoji (dgtlmoon/changedetection.io#4293: "neither is confined to the field holding the
    /// bad value").
    #[test]
    fn conditions_read_their_own_field_whatever_else_the_record_holds() {
        use listbackup_domain::platform::Condition;
        let file = [Condition::is("/type", "file")];
        for record in [
            r#"{"type":"file","size":1e400,"name":"\ud800 cut emoji","n":12345678901234567890.123}"#,
            r#"{"description":"a\u0000b \udc00","type":"file"}"#,
        ] {
            let raw = RawValue::from_string(record.to_owned()).unwrap();
            assert!(
                serde_json::from_str::<serde_json::Value>(record).is_err(),
                "a Value cannot hold it"
            );
            assert!(meets(&raw, &file), "{record}");
            assert!(
                !meets(&raw, &[Condition::is("/type", "folder")]),
                "{record}"
            );
            assert!(
                meets(&raw, &[Condition::is_not("/type", "folder")]),
                "{record}"
            );
        }
        let nested = RawValue::from_string(
            r#"{"x":[1e400],"item":{"type":"folder","big":1e999},"tag":true}"#.to_owned(),
        )
        .unwrap();
        assert!(meets(&nested, &[Condition::is("/item/type", "folder")]));
        assert!(meets(&nested, &[Condition::is("/tag", "true")]));
        assert!(
            !meets(&nested, &[Condition::is("/x", "1e400")]),
            "not a scalar"
        );
        assert!(!meets(&nested, &[Condition::is("/missing", "x")]));
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
