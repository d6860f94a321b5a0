//! A local stand-in for the data APIs of Stripe, HubSpot and Keap: the list endpoints the backup connectors
//! page through, with the real paths, query parameters, pagination, authentication headers, error shapes and
//! rate limiting, for black-box tests and the backup benchmarks.
//!
//! Records are never stored: a data set is a count plus a few timestamps, and each record is computed from
//! its index when a page asks for it, so a million-record data set costs a few bytes (only records modified
//! with [`PlatformApi::touch`] are remembered). Ids and timestamps are deterministic and grow with the index.
//!
//! Each platform lives under its own prefix, as in `platform_emulator.rs`: `/stripe/v1/customers`,
//! `/hubspot/crm/v3/objects/contacts`, `/keap/crm/rest/v1/contacts`; [`PlatformApi::api_url`] gives the base
//! URL to put in `LISTBACKUP_PLATFORM_<ID>_API_URL`. The behaviour is written from the platforms'
//! documentation, not from ListBackup's connector tables, so a mistake in those fails the tests:
//!
//! - **Stripe**: `Authorization: Bearer sk_…` (or Basic with the key as user). Lists are newest first by
//!   `created` (a record made visible late with [`PlatformApi::reveal`] takes its place by `created`),
//!   `limit` 1–100 (default 10), `starting_after`/`ending_before`, `created[gt|gte|lt|lte]`; the body is
//!   `{"object":"list","data":[…],"has_more":…,"url":…}`; an unknown parameter is a 400 `parameter_unknown`;
//!   subscriptions hide cancelled ones unless `status=all`.
//! - **HubSpot**: `Authorization: Bearer <private app or OAuth token>`. `GET /crm/v3/objects/<type>` in id
//!   order, `limit` ≤ 100, `after`, `{"results":[…],"paging":{"next":{"after":…,"link":…}}}`;
//!   `POST /crm/v3/objects/<type>/search` as the CRM search guide documents it: at most five `filterGroups`
//!   (ORed) of at most six `filters` (ANDed), 18 in all; operators `EQ NEQ LT LTE GT GTE` on
//!   `lastmodifieddate` (contacts) or `hs_lastmodifieddate` (everything else), `createdate` and
//!   `hs_object_id`, values as strings (dates in epoch milliseconds); "Only one sorting rule can be applied to
//!   any search" (records tied on the sort come back in no particular order; no sort: oldest created
//!   first); `limit` ≤ 200; `after` an integer, and no paging past 10,000 results (a 400);
//!   `GET /crm/v3/owners`, `GET /crm/v3/pipelines/{deals,tickets}`.
//! - **Keap** REST v1: `X-Keap-API-Key` or an OAuth `Bearer` token. `GET /<type>?limit=&offset=` with
//!   `limit` ≤ 1000, `{"<type>":[…],"count":total,"next":url,"previous":url}` — `next` is present even past the
//!   end, as Keap does; contacts take `since`/`until` on their last update.
//!
//! Misbehaviour on demand, each the way real platforms misbehave: errors and 429s with `Retry-After` in
//! any of its forms ([`RetryAfter`]), a 200 whose body is cut off ([`PlatformApi::truncate_nth`]),
//! pretty-printed bodies ([`PlatformApi::pretty`]), paging that goes in circles or never ends
//! ([`PagingFault`]), records deleted or made visible late ([`PlatformApi::delete`], [`PlatformApi::hide`],
//! [`PlatformApi::reveal`]), many records changed at one instant ([`PlatformApi::touch_together`]).
//!
//! The crate is the one emulation of each platform, shared by the black-box tests (a dev-dependency), the
//! benchmarks and the demo mode. Each platform's emulation is written from its public API reference, named in
//! its header.
// Handler steps return the error response itself as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

// The file platforms, one module each, and what they share.
mod box_;
mod dropbox;
mod files;
mod google;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

mod activecampaign;
mod gohighlevel;
mod mailchimp;
pub mod quickbooks;
mod shopify;
mod zendesk;

/// 2024-01-01T00:00:00Z: the emulator's clock starts here.
const EPOCH_MS: i64 = 1_704_067_200_000;
/// Records of one `seed`/`append` call are created this far apart: two per second, so Stripe's whole-second
/// `created` values tie, as they do in real accounts.
const STEP_MS: i64 = 500;
/// The HubSpot search API answers at most this many results of one query, however it is paged.
const HUBSPOT_SEARCH_WINDOW: u64 = 10_000;

/// One data set: `count` records; record `i` was created at `created_ms(i)` and last changed at
/// `touched[i]` if it was touched, else when it was created.
#[derive(Default)]
struct Dataset {
    /// `(first index, creation time of that index)` of each `seed`/`append` call, in order.
    segments: Vec<(u64, i64)>,
    count: u64,
    touched: BTreeMap<u64, i64>,
    /// Records in no listing, search or count: deleted, or not visible yet.
    hidden: BTreeSet<u64>,
}

impl Dataset {
    fn created_ms(&self, index: u64) -> i64 {
        let segment = self.segments.partition_point(|(start, _)| *start <= index) - 1;
        let (start, base) = self.segments[segment];
        base + (index - start) as i64 * STEP_MS
    }

    fn updated_ms(&self, index: u64) -> i64 {
        self.touched
            .get(&index)
            .copied()
            .unwrap_or_else(|| self.created_ms(index))
    }

    /// The first index created at or after `ms` (creation times grow with the index).
    fn first_created_at_or_after(&self, ms: i64) -> u64 {
        let (mut lo, mut hi) = (0, self.count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.created_ms(mid) < ms {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Indices changed at or after `ms`, in index order (hidden ones too).
    fn changed_since_by_index(&self, ms: i64) -> impl Iterator<Item = u64> + '_ {
        let first = self.first_created_at_or_after(ms);
        let untouched = (first..self.count).filter(|i| !self.touched.contains_key(i));
        let touched = self
            .touched
            .iter()
            .filter(move |(_, t)| **t >= ms)
            .map(|(i, _)| *i);
        merge_by(untouched, touched, |i| *i)
    }

    fn visible(&self, index: u64) -> bool {
        !self.hidden.contains(&index)
    }

    /// Visible records.
    fn visible_count(&self) -> u64 {
        self.count - self.hidden.range(..self.count).count() as u64
    }

    /// The index of the visible record at `position` (0-based) among the visible ones, in index order.
    fn nth_visible(&self, position: u64) -> u64 {
        let mut index = position;
        for hidden in &self.hidden {
            if *hidden <= index {
                index += 1;
            } else {
                break;
            }
        }
        index
    }
}

/// Merges two sorted iterators by `key`.
fn merge_by<T, K: Ord>(
    a: impl Iterator<Item = T>,
    b: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if key(x) <= key(y) => a.next(),
        (Some(_), Some(_)) => b.next(),
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// A `Retry-After` value in each form RFC 9110 §10.2.3 allows, and the decimal some platforms send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// `Retry-After: 1`.
    Seconds(u64),
    /// `Retry-After: 0.75` or `2.0`, as Shopify sends it.
    Decimal(f64),
    /// `Retry-After: <HTTP-date>` this long after the answer is sent (whole seconds: the date has no more).
    DateIn(std::time::Duration),
}

impl RetryAfter {
    fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(secs) => secs.to_string(),
            // `{:?}` always writes a fraction: `2.0`, `0.75`.
            RetryAfter::Decimal(secs) => format!("{secs:?}"),
            RetryAfter::DateIn(wait) => {
                actix_web::http::header::HttpDate::from(std::time::SystemTime::now() + *wait)
                    .to_string()
            }
        }
    }
}

/// Paging that never ends, as a platform with a bug (or a proxy caching the wrong thing) answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PagingFault {
    /// The cursor is ignored (`starting_after`, `after`, `offset`): every request answers the first page,
    /// with the same continuation (HubSpot: `paging.next.after` always the same).
    IgnoresCursor,
    /// The continuation moves on (HubSpot's `after` grows) but every page holds the first page's records.
    RepeatsRecords,
    /// Keap: past its announced `count`, every page is full of records that were never counted.
    Endless,
}

/// A change made to a 200 answer on its way out.
enum Reshape {
    /// The first half of the body only, with a matching `Content-Length`.
    Truncate,
    /// The same JSON, pretty-printed.
    Pretty,
}

#[derive(Default)]
struct State {
    /// Accepted secrets (API keys, private app tokens, OAuth access tokens) per platform.
    accepted: HashMap<String, HashSet<String>>,
    datasets: HashMap<(String, String), Dataset>,
    clock_ms: i64,
    /// The next `n` requests answer this status (with this `Retry-After`).
    failing: Option<(usize, u16, Option<RetryAfter>)>,
    /// The next `n` requests answer 429 with this `Retry-After`.
    rate_limited: Option<(usize, RetryAfter)>,
    /// Per path: the request (counting down to 1) whose 200 body is cut in half.
    truncate: HashMap<String, usize>,
    /// Paths whose every 200 body is cut in half.
    truncate_always: HashSet<String>,
    /// Paths whose 200 bodies are pretty-printed (records spanning lines).
    pretty: HashSet<String>,
    /// Paths whose paging misbehaves.
    paging_faults: HashMap<String, PagingFault>,
    hits: HashMap<String, usize>,
    last_query: HashMap<String, String>,
    /// `Some(n)`: `n` more requests are answered, then every request waits until [`PlatformApi::release`].
    hold_after: Option<usize>,
    /// Requests waiting at the hold right now.
    held: usize,
    /// `true` while requests pass; waiting requests watch it.
    open: Option<tokio::sync::watch::Sender<bool>>,
    /// How long every request takes to be answered (a slow platform, or a far one).
    latency: std::time::Duration,
    /// Paths (with the platform prefix) that answer this status to every request, whatever it asks.
    failing_paths: HashMap<String, u16>,
    /// When each request arrived, per platform, in arrival order.
    arrivals: HashMap<String, Vec<std::time::Instant>>,
    /// Google Drive, Dropbox and Box: their file trees and faults.
    files: files::FilesState,
}

impl State {
    fn dataset(&mut self, platform: &str, data_type: &str) -> &mut Dataset {
        self.datasets
            .entry((platform.to_owned(), data_type.to_owned()))
            .or_default()
    }
}

pub struct PlatformApi {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl PlatformApi {
    /// Starts the emulation on a free loopback port, on the current Tokio runtime.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State {
            clock_ms: EPOCH_MS,
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(1 << 20))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the platform API emulation to a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// The API base URL for `LISTBACKUP_PLATFORM_<ID>_API_URL`.
    pub fn api_url(&self, platform: &str) -> String {
        let base_path = match platform {
            "stripe" => "/stripe/v1",
            "hubspot" => "/hubspot",
            "keap" => "/keap/crm/rest/v1",
            "mailchimp" => "/mailchimp/3.0",
            "activecampaign" => "/activecampaign/api/3",
            "quickbooks" => &format!("/quickbooks/v3/company/{}", quickbooks::REALM_ID),
            "shopify" => shopify::BASE_PATH,
            "zendesk" => "/zendesk/api/v2",
            "gohighlevel" => "/gohighlevel",
            "google" => "/google",
            "dropbox" => "/dropbox",
            "box" => "/box/2.0",
            other => panic!("the platform API emulation does not emulate {other}"),
        };
        format!("{}{base_path}", self.base_url)
    }

    /// Accepts this secret: a Stripe key, a HubSpot token, a Keap API key, or an OAuth access token.
    pub fn accept(&self, platform: &str, secret: &str) {
        self.state()
            .accepted
            .entry(platform.to_owned())
            .or_default()
            .insert(secret.to_owned());
    }

    /// Stops accepting this secret, as a platform does when a key is rolled or revoked.
    pub fn revoke(&self, platform: &str, secret: &str) {
        if let Some(accepted) = self.state().accepted.get_mut(platform) {
            accepted.remove(secret);
        }
    }

    /// Replaces the data set with `n` records created now, one every 500 ms.
    pub fn seed(&self, platform: &str, data_type: &str, n: u64) {
        let mut state = self.state();
        state.datasets.insert(
            (platform.to_owned(), data_type.to_owned()),
            Dataset::default(),
        );
        drop(state);
        self.append(platform, data_type, n);
    }

    /// Adds `n` records, created after everything that exists or changed so far.
    pub fn append(&self, platform: &str, data_type: &str, n: u64) {
        let mut state = self.state();
        let now = state.clock_ms + STEP_MS;
        let dataset = state.dataset(platform, data_type);
        dataset.segments.push((dataset.count, now));
        dataset.count += n;
        state.clock_ms = now + n as i64 * STEP_MS;
    }

    /// Modifies these records now (1 ms apart, in the order given): their update time moves past everything.
    pub fn touch(&self, platform: &str, data_type: &str, indices: impl IntoIterator<Item = u64>) {
        let mut state = self.state();
        let mut clock = state.clock_ms;
        let dataset = state.dataset(platform, data_type);
        for index in indices {
            assert!(index < dataset.count, "touch: no record {index}");
            clock += 1;
            dataset.touched.insert(index, clock);
        }
        state.clock_ms = clock + STEP_MS;
    }

    /// Modifies these records all at one instant (a bulk update or an import): they share one update time,
    /// after everything else.
    pub fn touch_together(
        &self,
        platform: &str,
        data_type: &str,
        indices: impl IntoIterator<Item = u64>,
    ) {
        let mut state = self.state();
        let now = state.clock_ms + 1;
        let dataset = state.dataset(platform, data_type);
        for index in indices {
            assert!(index < dataset.count, "touch_together: no record {index}");
            dataset.touched.insert(index, now);
        }
        state.clock_ms = now + STEP_MS;
    }

    /// Deletes these records: from now on they are in no listing, search or count (ids are not reused).
    pub fn delete(&self, platform: &str, data_type: &str, indices: impl IntoIterator<Item = u64>) {
        self.hide(platform, data_type, indices);
    }

    /// Hides these records until [`PlatformApi::reveal`]: created (with their creation time) but not visible
    /// yet, as a platform whose lists show a record some time after its `created` time.
    pub fn hide(&self, platform: &str, data_type: &str, indices: impl IntoIterator<Item = u64>) {
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        for index in indices {
            assert!(index < dataset.count, "hide: no record {index}");
            dataset.hidden.insert(index);
        }
    }

    /// Makes hidden records visible, in their place by creation time (a late arrival).
    pub fn reveal(&self, platform: &str, data_type: &str, indices: impl IntoIterator<Item = u64>) {
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        for index in indices {
            dataset.hidden.remove(&index);
        }
    }

    /// How many records the data set holds.
    pub fn count(&self, platform: &str, data_type: &str) -> u64 {
        self.state().dataset(platform, data_type).count
    }

    /// The id of record `index` as the platform shows it.
    pub fn id_of(&self, platform: &str, data_type: &str, index: u64) -> String {
        record_id(platform, data_type, index)
    }

    /// Every id in the order a full listing returns them (Stripe: newest first; the others: by id).
    pub fn listing_ids(&self, platform: &str, data_type: &str) -> Vec<String> {
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        let visible = |i: &u64| {
            dataset.visible(*i) && (platform != "stripe" || stripe_visible(data_type, *i, true))
        };
        let ids = (0..dataset.count).filter(visible);
        if platform == "stripe" {
            ids.rev()
                .map(|i| record_id(platform, data_type, i))
                .collect()
        } else {
            ids.map(|i| record_id(platform, data_type, i)).collect()
        }
    }

    /// The next `n` requests (to any path) answer `status` with the platform's error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state().failing = Some((n, status, None));
    }

    /// The next `n` requests (to any path) answer `status` (a 503, say) with the platform's error body and
    /// this `Retry-After`.
    pub fn fail_next_with(&self, n: usize, status: u16, retry_after: RetryAfter) {
        self.state().failing = Some((n, status, Some(retry_after)));
    }

    /// The next `n` requests (to any path) answer 429 with `Retry-After: <retry_after_secs>`.
    pub fn rate_limit_next(&self, n: usize, retry_after_secs: u64) {
        self.rate_limit_next_with(n, RetryAfter::Seconds(retry_after_secs));
    }

    /// The next `n` requests (to any path) answer 429 with this `Retry-After`.
    pub fn rate_limit_next_with(&self, n: usize, retry_after: RetryAfter) {
        self.state().rate_limited = Some((n, retry_after));
    }

    /// The `n`th request from now to `path` (1 = the next) answers its 200 with only the first half of its
    /// body (and a `Content-Length` that matches, so the HTTP message itself is complete).
    pub fn truncate_nth(&self, path: &str, n: usize) {
        assert!(n >= 1);
        self.state().truncate.insert(path.to_owned(), n);
    }

    /// Every later 200 on `path` answers only the first half of its body.
    pub fn truncate_every(&self, path: &str) {
        self.state().truncate_always.insert(path.to_owned());
    }

    /// Every later 200 on `path` is pretty-printed: each record spans several lines.
    pub fn pretty(&self, path: &str) {
        self.state().pretty.insert(path.to_owned());
    }

    /// Paging on `path` misbehaves from now on.
    pub fn paging_fault(&self, path: &str, fault: PagingFault) {
        self.state().paging_faults.insert(path.to_owned(), fault);
    }

    /// Lets the next `n` requests (to any path) through, then holds every later one unanswered until
    /// [`PlatformApi::release`]: a backup can be caught mid-run (to kill its worker) without racing it.
    pub fn hold_after(&self, n: usize) {
        let mut state = self.state();
        state.hold_after = Some(n);
        state
            .open
            .get_or_insert_with(|| tokio::sync::watch::channel(true).0)
            .send_replace(false);
    }

    /// Answers the held requests, and every later one, again.
    pub fn release(&self) {
        let mut state = self.state();
        state.hold_after = None;
        if let Some(open) = &state.open {
            open.send_replace(true);
        }
    }

    /// Answers every later request only after `latency` (the wait is asynchronous: requests still overlap).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state().latency = latency;
    }

    /// Every request to `path` (with the platform prefix, e.g. `/stripe/v1/disputes`) answers `status` with the
    /// platform's error body from now on, as an endpoint the account cannot use does.
    pub fn fail_path(&self, path: &str, status: u16) {
        self.state().failing_paths.insert(path.to_owned(), status);
    }

    /// Undoes [`PlatformApi::fail_path`]: the endpoint answers as usual again, as one does once it recovers.
    pub fn recover_path(&self, path: &str) {
        self.state().failing_paths.remove(path);
    }

    /// When each request to `platform` arrived, in order (for rate checks).
    pub fn arrivals(&self, platform: &str) -> Vec<std::time::Instant> {
        self.state()
            .arrivals
            .get(platform)
            .cloned()
            .unwrap_or_default()
    }

    /// How many requests are being held right now.
    pub fn held(&self) -> usize {
        self.state().held
    }

    /// Requests received on this path (without query, with the platform prefix), failed ones included.
    pub fn hits(&self, path: &str) -> usize {
        self.state().hits.get(path).copied().unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state().hits.values().sum()
    }

    /// The query string of the last request on this path.
    pub fn last_query(&self, path: &str) -> Option<String> {
        self.state().last_query.get(path).cloned()
    }
}

impl Drop for PlatformApi {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

// ---------------------------------------------------------------------------------------------------------
// Requests

type Query = Vec<(String, String)>;

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    wait_while_held(&state).await;
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (response, reshape) = answer(&req, &body, &state);
    match reshape {
        Some(reshape) if response.status() == StatusCode::OK => reshaped(response, reshape).await,
        _ => response,
    }
}

/// Applies a [`Reshape`] to a 200 answer.
async fn reshaped(response: HttpResponse, reshape: Reshape) -> HttpResponse {
    let status = response.status();
    let Ok(body) = actix_web::body::to_bytes(response.into_body()).await else {
        return HttpResponse::InternalServerError().finish();
    };
    let body: Vec<u8> = match reshape {
        Reshape::Truncate => body[..body.len() / 2].to_vec(),
        Reshape::Pretty => match serde_json::from_slice::<Value>(&body) {
            Ok(json) => serde_json::to_vec_pretty(&json).unwrap(),
            Err(_) => body.to_vec(),
        },
    };
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

fn answer(req: &HttpRequest, body: &[u8], state: &Mutex<State>) -> (HttpResponse, Option<Reshape>) {
    let path = req.path().to_owned();
    let (platform, rest) = match path.split_once('/').map(|(_, p)| p) {
        Some(p) => match p.split_once('/') {
            Some((platform, rest)) => (platform.to_owned(), format!("/{rest}")),
            None => (p.to_owned(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    let mut state = state.lock().unwrap();
    state
        .arrivals
        .entry(platform.clone())
        .or_default()
        .push(std::time::Instant::now());
    *state.hits.entry(path.clone()).or_default() += 1;
    state
        .last_query
        .insert(path.clone(), req.query_string().to_owned());
    let reshape = match state.truncate.get_mut(&path) {
        Some(n) if *n > 1 => {
            *n -= 1;
            None
        }
        Some(_) => {
            state.truncate.remove(&path);
            Some(Reshape::Truncate)
        }
        None => None,
    }
    .or_else(|| {
        state
            .truncate_always
            .contains(&path)
            .then_some(Reshape::Truncate)
    })
    .or_else(|| state.pretty.contains(&path).then_some(Reshape::Pretty));
    if let Some((n, retry_after)) = state.rate_limited.take() {
        if n > 1 {
            state.rate_limited = Some((n - 1, retry_after));
        }
        if n > 0 {
            return (rate_limited(&platform, retry_after), None);
        }
    }
    if let Some(status) = state.failing_paths.get(&path).copied() {
        let error = platform_error(&platform, StatusCode::from_u16(status).unwrap(), None);
        return (error, None);
    }
    if let Some((n, status, retry_after)) = state.failing.take() {
        if n > 1 {
            state.failing = Some((n - 1, status, retry_after));
        }
        if n > 0 {
            let status = StatusCode::from_u16(status).unwrap();
            return (platform_error(&platform, status, retry_after), None);
        }
    }
    let fault = state.paging_faults.get(&path).copied();
    let accepted = state.accepted.get(&platform).cloned().unwrap_or_default();
    let query: Query = match web::Query::<Query>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(_) => {
            return (
                platform_error(&platform, StatusCode::BAD_REQUEST, None),
                None,
            )
        }
    };
    let base = format!(
        "{}://{}/{platform}",
        req.connection_info().scheme(),
        req.connection_info().host()
    );
    let response = match platform.as_str() {
        "stripe" => {
            if let Err(denied) = stripe_auth(req, &accepted) {
                return (denied, None);
            }
            let Some(data_type) = rest.strip_prefix("/v1/").filter(|t| !t.contains('/')) else {
                return (stripe_not_found(&rest), None);
            };
            // The account endpoint the connection test calls (`GET /v1/account`).
            if data_type == "account" && req.method() == Method::GET {
                return (
                    HttpResponse::Ok().json(json!({
                    "id": "acct_1EmulatedAcct01", "object": "account", "email": "owner@example.com",
                    "charges_enabled": true, "country": "US", "default_currency": "usd"})),
                    None,
                );
            }
            if req.method() != Method::GET || !STRIPE_PREFIXES.iter().any(|(t, _)| *t == data_type)
            {
                return (stripe_not_found(&rest), None);
            }
            stripe_list(state.dataset("stripe", data_type), data_type, &query, fault)
        }
        "hubspot" => {
            if let Err(denied) = hubspot_auth(req, &accepted) {
                return (denied, None);
            }
            hubspot(&mut state, req, &rest, &query, body, &base, fault)
        }
        "keap" => {
            if let Err(denied) = keap_auth(req, &accepted) {
                return (denied, None);
            }
            let Some(data_type) = rest
                .strip_prefix("/crm/rest/v1/")
                .filter(|t| KEAP_TYPES.contains(t))
            else {
                return (
                    HttpResponse::NotFound().json(json!({"message": "Not Found"})),
                    None,
                );
            };
            if req.method() != Method::GET {
                return (
                    HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"})),
                    None,
                );
            }
            let data_type = data_type.to_owned();
            keap_list(
                state.dataset("keap", &data_type),
                &data_type,
                &query,
                &base,
                fault,
            )
        }
        "mailchimp" => mailchimp::answer(&mut state, req, &rest, &query, fault),
        "activecampaign" => activecampaign::answer(&mut state, req, &rest, &query, fault),
        "quickbooks" => quickbooks::answer(&mut state, req, &rest, &query, body, fault),
        "shopify" => shopify::answer(&mut state, req, &rest, &query, &base, fault),
        "zendesk" => zendesk::answer(&mut state, req, &rest, &query, &base, fault),
        "gohighlevel" => gohighlevel::answer(&mut state, req, &rest, &query, fault),
        "google" => google::answer(&mut state, req, &rest, &query, &accepted),
        "dropbox" => dropbox::answer(&mut state, req, &rest, &query, body, &accepted),
        "box" => box_::answer(&mut state, req, &rest, &query, &accepted),
        _ => HttpResponse::NotFound().json(json!({"error": "not found", "path": path})),
    };
    (response, reshape)
}

/// Holds the request while [`PlatformApi::hold_after`] says so (counted in `held` meanwhile, also if the
/// client goes away and the request is dropped).
async fn wait_while_held(state: &Mutex<State>) {
    let mut open = {
        let mut state = state.lock().unwrap();
        match state.hold_after {
            None => return,
            Some(n) if n > 0 => {
                state.hold_after = Some(n - 1);
                return;
            }
            Some(_) => {}
        }
        let Some(open) = state.open.as_ref().map(|open| open.subscribe()) else {
            return;
        };
        state.held += 1;
        open
    };
    struct Waiting<'a>(&'a Mutex<State>);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            self.0.lock().unwrap().held -= 1;
        }
    }
    let _waiting = Waiting(state);
    let _ = open.wait_for(|open| *open).await;
}

fn param<'a>(query: &'a Query, name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name)?.to_str().ok()
}

fn bearer(req: &HttpRequest) -> Option<&str> {
    let (scheme, token) = header(req, "Authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rate_limited(platform: &str, retry_after: RetryAfter) -> HttpResponse {
    let body = match platform {
        "stripe" => json!({"error": {"code": "rate_limit", "type": "invalid_request_error",
            "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."}}),
        "google" | "dropbox" | "box" => files::rate_limited_body(platform),
        "hubspot" => json!({"status": "error", "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT", "correlationId": "7c1f5b0e-2f0a-4c4a-9d0c-1f3f7e0b2a11",
            "policyName": "SECONDLY"}),
        "mailchimp" => mailchimp::error_body(StatusCode::TOO_MANY_REQUESTS),
        "activecampaign" => activecampaign::error_body(StatusCode::TOO_MANY_REQUESTS),
        "quickbooks" => quickbooks::error_body(StatusCode::TOO_MANY_REQUESTS),
        "shopify" => shopify::rate_limited_body(),
        "zendesk" => zendesk::rate_limited_body(),
        "gohighlevel" => gohighlevel::rate_limited_body(),
        _ => json!({"fault": {"faultstring": "Rate limit quota violation. Quota limit exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}}),
    };
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", retry_after.header_value()))
        .json(body)
}

/// The platform's error body for a status `fail_next` asked for.
fn platform_error(
    platform: &str,
    status: StatusCode,
    retry_after: Option<RetryAfter>,
) -> HttpResponse {
    let message = status.canonical_reason().unwrap_or("Error");
    let body = match platform {
        "stripe" => {
            let kind = if status.is_server_error() {
                "api_error"
            } else {
                "invalid_request_error"
            };
            json!({"error": {"type": kind, "message": message}})
        }
        "google" | "dropbox" | "box" => files::error_body(platform, status.as_u16(), message),
        "hubspot" => json!({"status": "error", "message": message,
            "correlationId": "2b9d1c77-0f7e-4b0e-8a54-5d6c0c1e9f20",
            "category": if status.is_server_error() { "INTERNAL_ERROR" } else { "VALIDATION_ERROR" }}),
        "mailchimp" => mailchimp::error_body(status),
        "activecampaign" => activecampaign::error_body(status),
        "quickbooks" => quickbooks::error_body(status),
        "shopify" => shopify::error_body(status),
        "zendesk" => zendesk::error_body(status),
        "gohighlevel" => gohighlevel::error_body(status),
        _ if status == StatusCode::SERVICE_UNAVAILABLE => json!({"fault": {
            "faultstring": "The Service is temporarily unavailable",
            "detail": {"errorcode": "messaging.adaptors.http.flow.ServiceUnavailable"}}}),
        _ => json!({"message": message}),
    };
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after {
        response.insert_header(("Retry-After", retry_after.header_value()));
    }
    response.json(body)
}

// ---------------------------------------------------------------------------------------------------------
// Stripe

/// Data types and their id prefixes.
const STRIPE_PREFIXES: &[(&str, &str)] = &[
    ("customers", "cus"),
    ("charges", "ch"),
    ("invoices", "in"),
    ("subscriptions", "sub"),
    ("products", "prod"),
    ("prices", "price"),
    ("payment_intents", "pi"),
    ("refunds", "re"),
    ("disputes", "dp"),
    ("payouts", "po"),
    ("balance_transactions", "txn"),
    ("events", "evt"),
    ("coupons", "co"),
    ("credit_notes", "cn"),
];

fn stripe_auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let key = bearer(req).map(str::to_owned).or_else(|| {
        let (scheme, encoded) = header(req, "Authorization")?.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        Some(
            text.split_once(':')
                .map_or(text.clone(), |(user, _)| user.to_owned()),
        )
    });
    let error = |message: String| {
        HttpResponse::Unauthorized()
            .json(json!({"error": {"message": message, "type": "invalid_request_error"}}))
    };
    match key.filter(|k| !k.is_empty()) {
        None => Err(error(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_owned(),
        )),
        Some(key) if accepted.contains(&key) => Ok(()),
        Some(key) => {
            let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            let prefix = key.match_indices('_').nth(1).map_or("", |(i, _)| &key[..=i]);
            Err(error(format!(
                "Invalid API Key provided: {prefix}{}{tail}",
                "*".repeat(20)
            )))
        }
    }
}

fn stripe_not_found(rest: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {"type": "invalid_request_error",
        "message": format!("Unrecognized request URL (GET: {rest}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")}}))
}

fn stripe_invalid(param: &str, message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": {"type": "invalid_request_error",
        "code": "parameter_invalid", "param": param, "message": message}}))
}

/// Subscriptions: every tenth one is cancelled, and the list hides those unless `status=all`.
fn stripe_visible(data_type: &str, index: u64, all: bool) -> bool {
    data_type != "subscriptions" || all || index % 10 != 9
}

fn stripe_list(
    dataset: &Dataset,
    data_type: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let allowed_extra: &[&str] = match data_type {
        "subscriptions" => &["status", "customer", "price"],
        "customers" => &["email"],
        "charges" | "payment_intents" | "invoices" => &["customer"],
        "events" => &["type", "types[]"],
        "products" | "prices" => &["active"],
        _ => &[],
    };
    let mut limit = 10u64;
    let mut created_from = i64::MIN; // seconds, inclusive
    let mut created_to = i64::MAX; // seconds, inclusive
    let mut starting_after = None;
    for (name, value) in query {
        let seconds = || {
            value
                .parse::<i64>()
                .map_err(|_| stripe_invalid(name, format!("Invalid integer: {value}")))
        };
        match name.as_str() {
            "limit" => match value.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    return stripe_invalid(
                        "limit",
                        "This value must be less than or equal to 100.".into(),
                    )
                }
            },
            "starting_after" => starting_after = Some(value.clone()),
            "created" => match seconds() {
                Ok(s) => (created_from, created_to) = (s, s),
                Err(e) => return e,
            },
            "created[gt]" | "created[gte]" | "created[lt]" | "created[lte]" => {
                let s = match seconds() {
                    Ok(s) => s,
                    Err(e) => return e,
                };
                match name.as_str() {
                    "created[gt]" => created_from = created_from.max(s + 1),
                    "created[gte]" => created_from = created_from.max(s),
                    "created[lt]" => created_to = created_to.min(s - 1),
                    _ => created_to = created_to.min(s),
                }
            }
            other if allowed_extra.contains(&other) => {}
            other => {
                return HttpResponse::BadRequest().json(json!({"error": {
                    "type": "invalid_request_error", "code": "parameter_unknown", "param": other,
                    "message": format!("Received unknown parameter: {other}")}}))
            }
        }
    }
    let all = data_type != "subscriptions" || param(query, "status") == Some("all");
    // Records in [lo, hi) match the `created` filter (creation times grow with the index).
    let lo = dataset.first_created_at_or_after(created_from.saturating_mul(1000));
    let hi = if created_to == i64::MAX {
        dataset.count
    } else {
        dataset.first_created_at_or_after((created_to + 1).saturating_mul(1000))
    };
    let mut below = hi; // newest first: the page starts below this index
                        // A list with a paging fault answers its first page whatever the cursor.
    let starting_after = starting_after.filter(|_| fault.is_none());
    if let Some(id) = starting_after {
        match stripe_index(data_type, &id).filter(|i| *i < dataset.count && dataset.visible(*i)) {
            Some(index) => below = below.min(index),
            None => {
                let object = data_type.trim_end_matches('s').replace('_', " ");
                return HttpResponse::BadRequest().json(json!({"error": {
                    "type": "invalid_request_error", "code": "resource_missing", "param": "starting_after",
                    "message": format!("No such {object}: '{id}'")}}));
            }
        }
    }
    let mut indices = (lo..below.max(lo))
        .rev()
        .filter(|i| dataset.visible(*i) && stripe_visible(data_type, *i, all));
    let page: Vec<u64> = indices.by_ref().take(limit as usize).collect();
    let has_more = indices.next().is_some();
    let data: Vec<Value> = page
        .iter()
        .map(|i| stripe_record(data_type, *i, dataset.created_ms(*i) / 1000))
        .collect();
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": format!("/v1/{data_type}"),
    }))
}

fn stripe_index(data_type: &str, id: &str) -> Option<u64> {
    let prefix = STRIPE_PREFIXES.iter().find(|(t, _)| *t == data_type)?.1;
    id.strip_prefix(prefix)?.strip_prefix("_LB")?.parse().ok()
}

fn stripe_record(data_type: &str, index: u64, created: i64) -> Value {
    let id = record_id("stripe", data_type, index);
    let customer = format!("cus_LB{:010}", index / 3);
    let amount = 1000 + (index % 97) * 25;
    let mut record = json!({
        "id": id,
        "object": data_type.trim_end_matches('s'),
        "created": created,
        "livemode": false,
        "metadata": {"listbackup_index": index.to_string()},
    });
    let extra = match data_type {
        "customers" => json!({
            "object": "customer",
            "email": format!("customer{index}@example.test"),
            "name": format!("Customer {index}"),
            "description": "Created by the ListBackup platform API emulation",
            "balance": 0, "currency": "usd", "delinquent": false,
            "address": {"line1": format!("{index} Main St"), "city": "Springfield", "country": "US",
                        "postal_code": "12345", "state": "IL", "line2": null},
            "invoice_settings": {"default_payment_method": null, "footer": null},
            "preferred_locales": ["en"], "tax_exempt": "none",
        }),
        "subscriptions" => json!({
            "object": "subscription", "customer": customer,
            "status": if stripe_visible(data_type, index, false) { "active" } else { "canceled" },
            "items": {"object": "list", "data": [], "has_more": false},
            "current_period_start": created, "current_period_end": created + 2_592_000,
        }),
        "balance_transactions" => json!({
            "object": "balance_transaction", "amount": amount, "fee": 59, "net": amount - 59,
            "currency": "usd", "type": "charge", "status": "available", "available_on": created + 172_800,
        }),
        "events" => json!({
            "object": "event", "api_version": "2024-06-20", "type": "customer.updated",
            "data": {"object": {"id": customer, "object": "customer"}},
            "pending_webhooks": 0, "request": {"id": null, "idempotency_key": null},
        }),
        "payment_intents" => {
            json!({"object": "payment_intent", "amount": amount, "currency": "usd",
            "status": "succeeded", "customer": customer})
        }
        "credit_notes" => json!({"object": "credit_note", "amount": amount, "currency": "usd",
            "invoice": format!("in_LB{:010}", index), "status": "issued"}),
        _ => {
            json!({"amount": amount, "currency": "usd", "status": "succeeded", "customer": customer,
            "description": format!("{data_type} {index}")})
        }
    };
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    record
}

// ---------------------------------------------------------------------------------------------------------
// HubSpot

const HUBSPOT_OBJECTS: &[&str] = &[
    "contacts",
    "companies",
    "deals",
    "tickets",
    "products",
    "line_items",
    "quotes",
    "notes",
    "calls",
    "emails",
    "meetings",
    "tasks",
];

fn hubspot_modified_property(object: &str) -> &'static str {
    if object == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

fn hubspot_auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let error = |message: &str| {
        HttpResponse::Unauthorized().json(json!({"status": "error", "message": message,
            "correlationId": "0b4b8a46-3a4b-4a8e-9c8c-2b1f7a7e9d11", "category": "INVALID_AUTHENTICATION"}))
    };
    match bearer(req) {
        None => Err(error(
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can \
             find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )),
        Some(token) if accepted.contains(token) => Ok(()),
        Some(_) => Err(error("Authentication credentials not found or invalid.")),
    }
}

fn hubspot_invalid(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"status": "error", "message": message,
        "correlationId": "5e3b1f0a-8c2d-4d6e-9f70-3a1b2c4d5e6f", "category": "VALIDATION_ERROR"}))
}

fn hubspot(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let not_found = || HttpResponse::NotFound().finish();
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["crm", "v3", "objects", object] if get && HUBSPOT_OBJECTS.contains(object) => {
            let limit = match hubspot_limit(query, 100) {
                Ok(limit) => limit,
                Err(denied) => return denied,
            };
            // `after` is the id the page starts at.
            let after = match param(query, "after").map(str::parse::<u64>) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => {
                    return hubspot_invalid("Invalid input JSON on line 1: after".into())
                }
            };
            let start = match fault {
                // Both faults answer the first page's records.
                Some(_) => 0,
                None => after.map_or(0, |id| id.saturating_sub(1)),
            };
            let dataset = state.dataset("hubspot", object);
            let mut indices = (start..dataset.count).filter(|i| dataset.visible(*i));
            let page: Vec<u64> = indices.by_ref().take(limit as usize).collect();
            let more = indices.next().is_some();
            let results: Vec<Value> = page
                .iter()
                .map(|i| hubspot_record(dataset, object, *i))
                .collect();
            let mut body = json!({"results": results});
            let next = match fault {
                // The continuation moves on, the records do not.
                Some(PagingFault::RepeatsRecords) => {
                    let from = after.unwrap_or(1);
                    (from + limit <= dataset.count).then(|| from + limit)
                }
                _ => page.last().filter(|_| more).map(|last| last + 2),
            };
            if let Some(after) = next {
                let after = after.to_string();
                body["paging"] = json!({"next": {"after": after,
                    "link": format!("{base}/crm/v3/objects/{object}?limit={limit}&after={after}")}});
            }
            HttpResponse::Ok().json(body)
        }
        ["crm", "v3", "objects", object, "search"]
            if req.method() == Method::POST && HUBSPOT_OBJECTS.contains(object) =>
        {
            hubspot_search(state.dataset("hubspot", object), object, body)
        }
        ["crm", "v3", "owners"] if get => {
            let limit = match hubspot_limit(query, 500) {
                Ok(limit) => limit,
                Err(denied) => return denied,
            };
            let start: u64 = param(query, "after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let dataset = state.dataset("hubspot", "owners");
            let end = (start + limit).min(dataset.count);
            let results: Vec<Value> = (start..end)
                .map(|i| {
                    let created = iso_ms(dataset.created_ms(i));
                    json!({"id": (i + 1).to_string(), "email": format!("owner{i}@example.test"),
                        "firstName": "Owner", "lastName": i.to_string(), "userId": 9_000_000 + i,
                        "createdAt": created, "updatedAt": iso_ms(dataset.updated_ms(i)), "archived": false,
                        "teams": []})
                })
                .collect();
            let mut page = json!({"results": results});
            if end < dataset.count {
                // The owners API's `after` is opaque; here it is an offset.
                page["paging"] = json!({"next": {"after": end.to_string(),
                    "link": format!("{base}/crm/v3/owners?after={end}")}});
            }
            HttpResponse::Ok().json(page)
        }
        ["crm", "v3", "pipelines", object @ ("deals" | "tickets")] if get => {
            let dataset = state.dataset("hubspot", "pipelines");
            let results: Vec<Value> = (0..dataset.count)
                .map(|i| {
                    let id = if i == 0 { "default".to_owned() } else { (1000 * i).to_string() };
                    json!({"id": id, "label": format!("{object} pipeline {i}"), "displayOrder": i,
                        "createdAt": iso_ms(dataset.created_ms(i)), "updatedAt": iso_ms(dataset.updated_ms(i)),
                        "archived": false,
                        "stages": [{"id": format!("{id}-1"), "label": "New", "displayOrder": 0,
                                    "metadata": {}, "archived": false}]})
                })
                .collect();
            HttpResponse::Ok().json(json!({"results": results}))
        }
        _ => not_found(),
    }
}

fn hubspot_limit(query: &Query, max: u64) -> Result<u64, HttpResponse> {
    match param(query, "limit").map(str::parse::<u64>) {
        None => Ok(10),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        _ => Err(hubspot_invalid(format!(
            "limit must be between 1 and {max}"
        ))),
    }
}

fn hubspot_record(dataset: &Dataset, object: &str, index: u64) -> Value {
    let id = (index + 1).to_string();
    let created = iso_ms(dataset.created_ms(index));
    let updated = iso_ms(dataset.updated_ms(index));
    let mut properties = json!({
        "createdate": created,
        "hs_object_id": id,
        hubspot_modified_property(object): updated,
    });
    let extra = match object {
        "contacts" => {
            json!({"email": format!("contact{index}@example.test"), "firstname": "Contact",
            "lastname": index.to_string()})
        }
        "companies" => {
            json!({"name": format!("Company {index}"), "domain": format!("company{index}.example")})
        }
        "deals" => {
            json!({"dealname": format!("Deal {index}"), "amount": (index % 100 * 10).to_string(),
            "dealstage": "appointmentscheduled", "pipeline": "default"})
        }
        "tickets" => json!({"subject": format!("Ticket {index}"), "hs_pipeline": "0",
            "hs_pipeline_stage": "1"}),
        _ => json!({"hs_timestamp": created, "hs_body_preview": format!("{object} {index}")}),
    };
    if let (Value::Object(properties), Value::Object(extra)) = (&mut properties, extra) {
        properties.extend(extra);
    }
    json!({"id": id, "properties": properties, "createdAt": created, "updatedAt": updated, "archived": false})
}

/// One search filter the emulation evaluates: a property compared with a number.
struct SearchFilter {
    property: SearchProperty,
    operator: String,
    value: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SearchProperty {
    /// `lastmodifieddate` / `hs_lastmodifieddate`, epoch milliseconds.
    Modified,
    /// `createdate`, epoch milliseconds.
    Created,
    /// `hs_object_id`.
    Id,
}

impl SearchProperty {
    fn parse(name: &str, object: &str) -> Option<Self> {
        match name {
            "hs_object_id" => Some(SearchProperty::Id),
            "createdate" => Some(SearchProperty::Created),
            name if name == hubspot_modified_property(object) => Some(SearchProperty::Modified),
            _ => None,
        }
    }

    fn of(&self, dataset: &Dataset, index: u64) -> i64 {
        match self {
            SearchProperty::Modified => dataset.updated_ms(index),
            SearchProperty::Created => dataset.created_ms(index),
            SearchProperty::Id => index as i64 + 1,
        }
    }
}

impl SearchFilter {
    fn matches(&self, dataset: &Dataset, index: u64) -> bool {
        let actual = self.property.of(dataset, index);
        match self.operator.as_str() {
            "EQ" => actual == self.value,
            "NEQ" => actual != self.value,
            "LT" => actual < self.value,
            "LTE" => actual <= self.value,
            "GT" => actual > self.value,
            _ => actual >= self.value,
        }
    }
}

/// Records tied on the sort property come back in an order of HubSpot's choosing: here, a fixed shuffle of
/// the ids, so that a client cannot rely on ties arriving by id.
fn tie_order(index: u64) -> u64 {
    index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

fn hubspot_search(dataset: &Dataset, object: &str, body: &[u8]) -> HttpResponse {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return hubspot_invalid("Invalid input JSON on line 1".into());
    };
    // Filters: at most five groups (ORed) of at most six filters (ANDed), 18 in all.
    let groups = match &request["filterGroups"] {
        Value::Null => vec![],
        Value::Array(groups) => groups.clone(),
        _ => return hubspot_invalid("filterGroups must be a list".into()),
    };
    if groups.len() > 5 {
        return hubspot_invalid("Too many filter groups: at most 5 are allowed".into());
    }
    let mut parsed: Vec<Vec<SearchFilter>> = Vec::new();
    let mut total_filters = 0;
    for group in &groups {
        let Some(filters) = group["filters"].as_array() else {
            return hubspot_invalid("A filter group needs a list of filters".into());
        };
        if filters.len() > 6 {
            return hubspot_invalid("Too many filters in a group: at most 6 are allowed".into());
        }
        total_filters += filters.len();
        let mut conditions = Vec::new();
        for filter in filters {
            let name = filter["propertyName"].as_str().unwrap_or_default();
            let Some(property) = SearchProperty::parse(name, object) else {
                return hubspot_invalid(format!(
                    "This emulation filters {object} on {}, createdate or hs_object_id, not `{name}`",
                    hubspot_modified_property(object)
                ));
            };
            let operator = match filter["operator"].as_str() {
                Some(op @ ("EQ" | "NEQ" | "LT" | "LTE" | "GT" | "GTE")) => op.to_owned(),
                Some(
                    op @ ("BETWEEN" | "IN" | "NOT_IN" | "HAS_PROPERTY" | "NOT_HAS_PROPERTY"
                    | "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN"),
                ) => {
                    return hubspot_invalid(format!(
                        "This emulation does not implement the {op} operator"
                    ))
                }
                other => {
                    return hubspot_invalid(format!(
                        "Unknown filter operator {}",
                        other.unwrap_or("(none)")
                    ))
                }
            };
            // Values are strings; dates in epoch milliseconds.
            let Some(value) = filter["value"].as_str().and_then(|v| v.parse::<i64>().ok()) else {
                return hubspot_invalid(format!(
                    "The value of a filter on {name} must be a string of digits (epoch milliseconds \
                     for dates), not {}",
                    filter["value"]
                ));
            };
            conditions.push(SearchFilter {
                property,
                operator,
                value,
            });
        }
        parsed.push(conditions);
    }
    if total_filters > 18 {
        return hubspot_invalid("Too many filters: at most 18 are allowed".into());
    }
    // "Only one sorting rule can be applied to any search."
    let sorts = match &request["sorts"] {
        Value::Null => vec![],
        Value::Array(sorts) => sorts.clone(),
        _ => return hubspot_invalid("sorts must be a list".into()),
    };
    if sorts.len() > 1 {
        return hubspot_invalid("Only one sorting rule can be applied to any search".into());
    }
    let (sort, descending) = match sorts.first() {
        // Without a sort: by creation, oldest first.
        None => (SearchProperty::Created, false),
        Some(sort) => {
            let name = sort["propertyName"].as_str().unwrap_or_default();
            let Some(property) = SearchProperty::parse(name, object) else {
                return hubspot_invalid(format!("This emulation cannot sort {object} by `{name}`"));
            };
            let descending = match sort["direction"].as_str() {
                None | Some("ASCENDING") => false,
                Some("DESCENDING") => true,
                Some(other) => return hubspot_invalid(format!("Unknown sort direction {other}")),
            };
            (property, descending)
        }
    };
    let limit = match &request["limit"] {
        Value::Null => 10,
        value => match value.as_u64() {
            Some(n) if (1..=200).contains(&n) => n,
            _ => return hubspot_invalid("limit must be between 1 and 200".into()),
        },
    };
    // `after` must be an integer (as a string, as HubSpot sends it back).
    let after = match &request["after"] {
        Value::Null => 0,
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return hubspot_invalid(format!("after must be an integer, not {s:?}")),
        },
        Value::Number(n) => match n.as_u64() {
            Some(n) => n,
            None => return hubspot_invalid("after must be an integer".into()),
        },
        _ => return hubspot_invalid("after must be an integer".into()),
    };
    if after >= HUBSPOT_SEARCH_WINDOW {
        return hubspot_invalid(format!(
            "Cannot page through more than {HUBSPOT_SEARCH_WINDOW} results of a search"
        ));
    }
    let mut matches: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .filter(|i| {
            parsed.is_empty()
                || parsed
                    .iter()
                    .any(|group| group.iter().all(|filter| filter.matches(dataset, *i)))
        })
        .collect();
    matches.sort_by_key(|i| (sort.of(dataset, *i), tie_order(*i)));
    if descending {
        matches.reverse();
    }
    let total = matches.len() as u64;
    let results: Vec<Value> = matches
        .iter()
        .skip(after as usize)
        .take(limit as usize)
        .map(|i| hubspot_record(dataset, object, *i))
        .collect();
    let mut page = json!({"total": total, "results": results});
    if after + limit < total {
        page["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    HttpResponse::Ok().json(page)
}

// ---------------------------------------------------------------------------------------------------------
// Keap

const KEAP_TYPES: &[&str] = &[
    "contacts",
    "companies",
    "opportunities",
    "orders",
    "subscriptions",
    "transactions",
    "products",
    "tags",
    "tasks",
    "notes",
    "emails",
    "appointments",
    "campaigns",
    "users",
];

fn keap_auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let key = header(req, "X-Keap-API-Key")
        .or_else(|| bearer(req))
        .unwrap_or_default();
    let fault = |text: &str, code: &str| {
        HttpResponse::Unauthorized()
            .json(json!({"fault": {"faultstring": text, "detail": {"errorcode": code}}}))
    };
    if key.is_empty() {
        return Err(fault(
            "Invalid Access Token",
            "keymanagement.service.invalid_access_token",
        ));
    }
    if accepted.contains(key) {
        Ok(())
    } else {
        Err(fault("Invalid ApiKey", "oauth.v2.InvalidApiKey"))
    }
}

/// Keap's time format: milliseconds and an offset without a colon.
fn keap_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
        .to_string()
}

fn keap_list(
    dataset: &Dataset,
    data_type: &str,
    query: &Query,
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let invalid = |message: &str| HttpResponse::BadRequest().json(json!({"message": message}));
    let limit = match param(query, "limit").map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return invalid("Invalid limit"),
    };
    let Ok(offset) = param(query, "offset").map_or(Ok(0), str::parse::<u64>) else {
        return invalid("Invalid offset");
    };
    let requested_offset = offset;
    let offset = match fault {
        Some(PagingFault::IgnoresCursor | PagingFault::RepeatsRecords) => 0,
        _ => offset,
    };
    let parse_time = |name: &str| -> Result<Option<i64>, HttpResponse> {
        match param(query, name) {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|_| invalid(&format!("Invalid {name}: {text}"))),
        }
    };
    // `since`/`until` filter contacts on their last update.
    let (since, until) = if data_type == "contacts" {
        match (parse_time("since"), parse_time("until")) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => return e,
        }
    } else {
        (None, None)
    };
    let (records, count): (Vec<Value>, u64) = match (since, until) {
        (None, None) if fault == Some(PagingFault::Endless) => {
            // Every page is full: past the visible records come records that were never counted (indices
            // past `count`), however far the offset goes.
            let visible = dataset.visible_count();
            let records = (offset..offset + limit)
                .map(|position| match position {
                    p if p < visible => dataset.nth_visible(p),
                    p => dataset.count + (p - visible),
                })
                .map(|i| keap_record(dataset, data_type, i))
                .collect();
            (records, visible)
        }
        (None, None) => {
            let first = dataset.nth_visible(offset);
            let records = (first..dataset.count)
                .filter(|i| dataset.visible(*i))
                .take(limit as usize)
                .map(|i| keap_record(dataset, data_type, i))
                .collect();
            (records, dataset.visible_count())
        }
        (since, until) => {
            let until = until.unwrap_or(i64::MAX);
            let matching = || {
                dataset
                    .changed_since_by_index(since.unwrap_or(i64::MIN))
                    .filter(move |i| dataset.visible(*i) && dataset.updated_ms(*i) <= until)
            };
            let records = matching()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|i| keap_record(dataset, data_type, i))
                .collect();
            (records, matching().count() as u64)
        }
    };
    let extra: String = query
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .map(|(k, v)| format!("&{k}={v}"))
        .collect();
    let page_url = |offset: u64| {
        format!("{base}/crm/rest/v1/{data_type}/?limit={limit}&offset={offset}{extra}")
    };
    HttpResponse::Ok().json(json!({
        data_type: records,
        "count": count,
        // Keap always links a next page, even past the end.
        "next": page_url(requested_offset + limit),
        "previous": page_url(requested_offset.saturating_sub(limit)),
    }))
}

fn keap_record(dataset: &Dataset, data_type: &str, index: u64) -> Value {
    let id = index + 1;
    let created = keap_time(dataset.created_ms(index));
    let updated = keap_time(dataset.updated_ms(index));
    match data_type {
        "contacts" => json!({
            "id": id,
            "given_name": "Contact",
            "family_name": index.to_string(),
            "email_addresses": [{"email": format!("contact{index}@example.test"), "field": "EMAIL1"}],
            "phone_numbers": [{"number": format!("555-{:04}", index % 10_000), "field": "PHONE1"}],
            "addresses": [],
            "tag_ids": [index % 7 + 1],
            "owner_id": null,
            "email_status": "SingleOptIn",
            "email_opted_in": true,
            "date_created": created,
            "last_updated": updated,
        }),
        "companies" => json!({"id": id, "company_name": format!("Company {index}"),
            "email_address": format!("company{index}@example.test"), "date_created": created,
            "last_updated": updated}),
        "tags" => json!({"id": id, "name": format!("Tag {index}"), "description": "",
            "category": {"id": 1, "name": "Imported"}}),
        "users" => json!({"id": id, "email_address": format!("user{index}@example.test"),
            "given_name": "User", "family_name": index.to_string(), "status": "Active",
            "created_date": created}),
        _ => json!({"id": id, "title": format!("{data_type} {index}"), "date_created": created,
            "last_updated": updated}),
    }
}

// ---------------------------------------------------------------------------------------------------------

fn record_id(platform: &str, data_type: &str, index: u64) -> String {
    match platform {
        "stripe" => {
            let prefix = STRIPE_PREFIXES
                .iter()
                .find(|(t, _)| *t == data_type)
                .map_or("obj", |(_, p)| p);
            format!("{prefix}_LB{index:010}")
        }
        "hubspot" if data_type == "pipelines" => {
            if index == 0 {
                "default".to_owned()
            } else {
                (1000 * index).to_string()
            }
        }
        "mailchimp" => mailchimp::record_id(data_type, index),
        "gohighlevel" => gohighlevel::record_id(data_type, index),
        _ => (index + 1).to_string(),
    }
}
