//! The server: one actix server on loopback answering every emulated platform under its own prefix, the
//! state the tests drive it through ([`PlatformApi`]), and the faults applied to every request before the
//! platform's module answers it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

use crate::dataset::{Dataset, EPOCH_MS, STEP_MS};
use crate::faults::{PagingFault, Reshape, RetryAfter};
use crate::{answer, platform_error, rate_limited};

#[derive(Default)]
pub(crate) struct State {
    /// Accepted secrets (API keys, private app tokens, OAuth access tokens) per platform.
    pub(crate) accepted: HashMap<String, HashSet<String>>,
    /// Accepted credential sets per platform, as a connection form holds them (see
    /// [`PlatformApi::accept_credentials`]).
    pub(crate) credentials: HashMap<String, Vec<Value>>,
    pub(crate) datasets: HashMap<(String, String), Dataset>,
    pub(crate) clock_ms: i64,
    /// The next `n` requests answer this status (with this `Retry-After`).
    pub(crate) failing: Option<(usize, u16, Option<RetryAfter>)>,
    /// The next `n` requests answer 429 with this `Retry-After`.
    pub(crate) rate_limited: Option<(usize, RetryAfter)>,
    /// Per path: the request (counting down to 1) whose 200 body is cut in half.
    pub(crate) truncate: HashMap<String, usize>,
    /// Per path prefix: the request (counting down to 1) whose 200 answer is lost.
    pub(crate) lose: Vec<(String, usize)>,
    /// Paths whose every 200 body is cut in half.
    pub(crate) truncate_always: HashSet<String>,
    /// Paths whose 200 bodies are pretty-printed (records spanning lines).
    pub(crate) pretty: HashSet<String>,
    /// Paths whose 200 bodies lose their arrays (well-formed JSON without the list of records).
    pub(crate) without_lists: HashSet<String>,
    /// Paths whose 200 bodies lose a top-level member: path → member.
    pub(crate) without_member: HashMap<String, String>,
    /// Paths whose 200 bodies' records lack a field: path → field.
    pub(crate) without_field: HashMap<String, String>,
    /// Path prefixes whose 200 bodies' records get a field with a verbatim JSON text: (prefix, field, text).
    pub(crate) raw_fields: Vec<(String, String, String)>,
    /// Paths whose 200 bodies' lists hold at most this many records: path → cap.
    pub(crate) page_caps: HashMap<String, usize>,
    /// Paths whose paging misbehaves.
    pub(crate) paging_faults: HashMap<String, PagingFault>,
    pub(crate) hits: HashMap<String, usize>,
    /// The body of every request other than a `GET`, as received (bytes read as UTF-8, lossily), per path.
    pub(crate) received: HashMap<String, Vec<String>>,
    pub(crate) last_query: HashMap<String, String>,
    /// `Some(n)`: `n` more requests are answered, then every request waits until [`PlatformApi::release`].
    pub(crate) hold_after: Option<usize>,
    /// Requests waiting at the hold right now.
    pub(crate) held: usize,
    /// `true` while requests pass; waiting requests watch it.
    pub(crate) open: Option<tokio::sync::watch::Sender<bool>>,
    /// How long every request takes to be answered (a slow platform, or a far one).
    pub(crate) latency: std::time::Duration,
    /// Paths (with the platform prefix) that answer this status to every request, whatever it asks.
    pub(crate) failing_paths: HashMap<String, u16>,
    /// When each request arrived, per platform, in arrival order.
    pub(crate) arrivals: HashMap<String, Vec<std::time::Instant>>,
    /// Google Drive, Dropbox and Box: their file trees and faults.
    pub(crate) files: crate::files::FilesState,
    /// The platforms' own rate limits (Shopify's leaky bucket) are not enforced: see
    /// [`PlatformApi::lift_rate_limits`].
    pub(crate) unmetered: bool,
    /// Answers to writes by `Idempotency-Key` (Stripe): a repeated key gets the first answer again.
    pub(crate) idempotent: HashMap<String, (u16, Value)>,
}

impl State {
    pub(crate) fn dataset(&mut self, platform: &str, data_type: &str) -> &mut Dataset {
        self.datasets
            .entry((platform.to_owned(), data_type.to_owned()))
            .or_default()
    }

    /// See [`PlatformApi::accept`].
    pub(crate) fn accept(&mut self, platform: &str, secret: &str) {
        self.accepted
            .entry(platform.to_owned())
            .or_default()
            .insert(secret.to_owned());
    }

    /// See [`PlatformApi::accept_credentials`].
    pub(crate) fn accept_credentials(&mut self, platform: &str, credentials: Value) {
        let secrets = credentials
            .as_object()
            .into_iter()
            .flat_map(|set| set.values())
            .filter_map(|value| value.as_str().map(str::to_owned));
        self.accepted
            .entry(platform.to_owned())
            .or_default()
            .extend(secrets);
        self.credentials
            .entry(platform.to_owned())
            .or_default()
            .push(credentials);
    }

    /// The credential sets given with [`PlatformApi::accept_credentials`] that hold `secret` among their
    /// values; empty when the secret was accepted alone ([`PlatformApi::accept`]), which binds it to nothing
    /// else.
    pub(crate) fn sets_holding(&self, platform: &str, secret: &str) -> Vec<&Value> {
        self.credentials
            .get(platform)
            .into_iter()
            .flatten()
            .filter(|set| {
                set.as_object()
                    .is_some_and(|fields| fields.values().any(|v| v.as_str() == Some(secret)))
            })
            .collect()
    }

    /// See [`PlatformApi::seed`].
    pub(crate) fn seed(&mut self, platform: &str, data_type: &str, n: u64) {
        self.datasets.insert(
            (platform.to_owned(), data_type.to_owned()),
            Dataset::default(),
        );
        self.append(platform, data_type, n);
    }

    /// A record created through the platform's API now: appended (its creation time is now), its fields
    /// those written ([`Dataset::fields`]); its index.
    pub(crate) fn create_record(
        &mut self,
        platform: &str,
        data_type: &str,
        fields: serde_json::Map<String, Value>,
    ) -> u64 {
        self.append(platform, data_type, 1);
        let dataset = self.dataset(platform, data_type);
        let index = dataset.count - 1;
        dataset.written.insert(
            index,
            crate::dataset::Written {
                created: true,
                fields,
            },
        );
        index
    }

    /// Record `index` changed through the platform's API now: `fields` over its own (a `null` clears one),
    /// its update time moved past everything.
    pub(crate) fn update_record(
        &mut self,
        platform: &str,
        data_type: &str,
        index: u64,
        fields: serde_json::Map<String, Value>,
    ) {
        let now = self.clock_ms + 1;
        let dataset = self.dataset(platform, data_type);
        dataset.touched.insert(index, now);
        let written = dataset.written.entry(index).or_default();
        written.fields.extend(fields);
        self.clock_ms = now + STEP_MS;
    }

    /// See [`PlatformApi::append`].
    pub(crate) fn append(&mut self, platform: &str, data_type: &str, n: u64) {
        let now = self.clock_ms + STEP_MS;
        let dataset = self.dataset(platform, data_type);
        dataset.segments.push((dataset.count, now));
        dataset.count += n;
        self.clock_ms = now + n as i64 * STEP_MS;
    }
}

/// The running emulation: its base URL, and the handle tests drive it through (credentials, data sets,
/// faults, request counts). Dropping it stops the server.
pub struct PlatformApi {
    /// `http://127.0.0.1:<port>`: every platform lives under `/<platform-id>/…` below it.
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

/// How [`PlatformApi::serve`] runs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOptions {
    /// The loopback port; 0 picks a free one.
    pub port: u16,
    /// Server threads. Waits ([`PlatformApi::set_latency`]) are timers, so one thread keeps any number of
    /// requests waiting; more share the rendering of many answers falling due together.
    pub workers: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            port: 0,
            workers: 1,
        }
    }
}

/// Requests counted without the state's lock, for `GET /_emulator/stats`.
#[derive(Default)]
pub(crate) struct Counters {
    /// Platform requests received (answered or under way).
    requests: AtomicU64,
    in_flight: AtomicU64,
    in_flight_peak: AtomicU64,
}

/// Counts a request as under way until dropped (answered, or abandoned by its client mid-wait).
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        counters.in_flight_peak.fetch_max(now, Ordering::Relaxed);
        Self(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl PlatformApi {
    /// Starts the emulation on a free loopback port, on the current Tokio runtime.
    pub async fn start() -> Self {
        Self::serve(ServeOptions::default())
            .await
            .expect("bind the platform API emulation to a loopback port")
    }

    /// Starts the emulation on the current Tokio runtime as `options` say: every platform under its prefix,
    /// and the emulation's own endpoints (not any platform's) under `/_emulator`, for a process that drives
    /// it from outside (the benchmarks):
    ///
    /// - `GET /_emulator/stats`: `{"requests": N, "inFlightPeak": M}`, the platform requests received so far
    ///   and the most under way at once;
    /// - `POST /_emulator/accept` `{"platform": "stripe", "credentials": {"secretKey": "sk_test_…"}}` (as
    ///   [`PlatformApi::accept_credentials`]) or `{"platform": …, "secret": …}` (as [`PlatformApi::accept`]);
    /// - `POST /_emulator/seed` `{"platform": "stripe", "dataType": "customers", "records": 1000000}` (as
    ///   [`PlatformApi::seed`]);
    /// - `POST /_emulator/append`, the same body (as [`PlatformApi::append`]: `records` more, created after
    ///   everything so far);
    /// - `POST /_emulator/delete` `{"platform": "stripe", "dataType": "customers"}`: every record of the data
    ///   set deleted, as though the account were emptied (bench/restore-throughput restores into it).
    ///
    /// Each answers 204, or 400 with `{"error": …}` for a body it cannot read.
    pub async fn serve(options: ServeOptions) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State {
            clock_ms: EPOCH_MS,
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        let counters = web::Data::new(Counters::default());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(counters.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .service(
                    web::scope("/_emulator")
                        .route("/stats", web::get().to(stats))
                        .route("/accept", web::post().to(control_accept))
                        .route("/seed", web::post().to(control_seed))
                        .route("/append", web::post().to(control_append))
                        .route("/delete", web::post().to(control_delete)),
                )
                .default_service(web::to(handle))
        })
        .workers(options.workers.max(1))
        .disable_signals()
        .bind(("127.0.0.1", options.port))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            base_url: format!("http://{addr}"),
            state,
            handle,
        })
    }

    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    /// Accepts this secret: a Stripe key, a HubSpot token, a Keap API key, or an OAuth access token.
    pub fn accept(&self, platform: &str, secret: &str) {
        self.state().accept(platform, secret);
    }

    /// Accepts this credential set, with ListBackup's field names (`{"secretKey": "sk_test_…"}`,
    /// `{"subdomain": …, "email": …, "apiToken": …}`): every string in it is accepted as by
    /// [`PlatformApi::accept`] (a module that checks one secret needs no mapping of field names), and the
    /// identity endpoints that check more than a secret (Zendesk's email beside its token, the HighLevel
    /// location a token may read) check the whole set.
    pub fn accept_credentials(&self, platform: &str, credentials: Value) {
        self.state().accept_credentials(platform, credentials);
    }

    /// Stops accepting this secret, as a platform does when a key is rolled or revoked.
    pub fn revoke(&self, platform: &str, secret: &str) {
        if let Some(accepted) = self.state().accepted.get_mut(platform) {
            accepted.remove(secret);
        }
    }

    /// Replaces the data set with `n` records created now, one every 500 ms.
    pub fn seed(&self, platform: &str, data_type: &str, n: u64) {
        self.state().seed(platform, data_type, n);
    }

    /// Adds `n` records, created after everything that exists or changed so far.
    pub fn append(&self, platform: &str, data_type: &str, n: u64) {
        self.state().append(platform, data_type, n);
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

    /// Modifies record `index` with the update time `at_ms` (epoch milliseconds) whatever the clock says,
    /// which does not move: a record dated ahead of the present, as platforms send when their data or their
    /// clock is off (Klaviyo's events dated months ahead: airbytehq/airbyte#27498, estuary/connectors#3285).
    pub fn touch_at(&self, platform: &str, data_type: &str, index: u64, at_ms: i64) {
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        assert!(index < dataset.count, "touch_at: no record {index}");
        dataset.touched.insert(index, at_ms);
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

    /// Changes record `index` as the platform's own API would (a user editing it): `fields` (an object of
    /// the record's user-set fields, e.g. HubSpot properties) over its own, a `null` clearing one; its update
    /// time moves past everything.
    pub fn alter(&self, platform: &str, data_type: &str, index: u64, fields: Value) {
        let Value::Object(fields) = fields else {
            panic!("alter: fields must be an object");
        };
        let mut state = self.state();
        assert!(
            state.dataset(platform, data_type).exists(index),
            "alter: no record {index}"
        );
        state.update_record(platform, data_type, index, fields);
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

    /// The `n`th request from now (1 = the next) to a path starting with `prefix` (with the platform prefix:
    /// `/dropbox/content/2/files/upload_session/append_v2`) is served, and whatever it changes stays changed,
    /// but its 200 answer is lost: the connection closes before it arrives. A client that sends it again
    /// sends a request the platform has already applied.
    pub fn lose_answer_nth(&self, prefix: &str, n: usize) {
        assert!(n >= 1);
        self.state().lose.push((prefix.to_owned(), n));
    }

    /// Every later 200 on `path` answers only the first half of its body.
    pub fn truncate_every(&self, path: &str) {
        self.state().truncate_always.insert(path.to_owned());
    }

    /// Every later 200 on `path` is pretty-printed: each record spans several lines.
    pub fn pretty(&self, path: &str) {
        self.state().pretty.insert(path.to_owned());
    }

    /// Every later 200 on `path` is the same JSON without its lists: every array of the answer's top-level
    /// object is removed (`{"object":"list","has_more":false,"url":…}` for Stripe, `{}` for a bare array),
    /// as a platform answers when an API changes shape under a connector.
    pub fn without_lists(&self, path: &str) {
        self.state().without_lists.insert(path.to_owned());
    }

    /// Every later 200 on `path` answers without the top-level `member` of its object (Stripe's `has_more`,
    /// say), as a platform does whose answers change shape under a connector.
    pub fn without_member(&self, path: &str, member: &str) {
        self.state()
            .without_member
            .insert(path.to_owned(), member.to_owned());
    }

    /// Every later 200 on `path` answers its records without their top-level `field` (each object in an
    /// array of the answer's top-level object, or of the answer itself), as a platform whose records carry
    /// no id.
    pub fn without_field(&self, path: &str, field: &str) {
        self.state()
            .without_field
            .insert(path.to_owned(), field.to_owned());
    }

    /// Every later 200 on a path starting with `prefix` gives each record (each object in an array of the
    /// answer's top-level object, or of the answer itself) one more top-level `field` whose value is `json`,
    /// the JSON text exactly as given: what a platform's custom field or free text can hold and a parser
    /// building values cannot, such as `1e400` (RFC 8259 §6 sets no range), `12345678901234567890.123`, an
    /// integer past 2^64, or a string with a lone surrogate escape `"\ud800"` (§8.2: valid JSON text; a
    /// platform that cuts text at UTF-16 code units leaves one of an emoji). The answer keeps its headers.
    pub fn raw_field(&self, prefix: &str, field: &str, json: &str) {
        self.state()
            .raw_fields
            .push((prefix.to_owned(), field.to_owned(), json.to_owned()));
    }

    /// Every later 200 on `path` holds at most `max` records: each array of the answer's top-level object
    /// (or the answer itself, a bare array) keeps its first `max` entries, and everything else, the total
    /// the answer announces among it, is left as it was, but for a top-level `limit` (the page size Box
    /// says it used), lowered to `max`. What a platform does that holds the page size to
    /// its own maximum below what was asked (Mailchimp's `count` ≤ 1,000, ActiveCampaign's `limit` ≤ 100,
    /// Box's `limit` ≤ 1,000) or answers a short page mid-list; `0` answers empty pages short of the total.
    pub fn cap_page_size(&self, path: &str, max: usize) {
        self.state().page_caps.insert(path.to_owned(), max);
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
    /// Stops enforcing the platforms' own documented rate limits (Shopify's bucket of 40 requests leaking 2
    /// a second): for benchmarks, which compare the work of a backup with a plain client's, not pacing. The
    /// faults asked for (`rate_limit_next`, …) still apply.
    pub fn lift_rate_limits(&self) {
        self.state().unmetered = true;
    }

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

    /// The bodies of the requests other than `GET` received on this path (with the platform prefix), in
    /// arrival order, as text exactly as sent: what a write put on the wire, before the emulation parsed
    /// it (a value its parser rounds or refuses, such as `1e400`, shows here as sent).
    pub fn received_bodies(&self, path: &str) -> Vec<String> {
        self.state().received.get(path).cloned().unwrap_or_default()
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

pub(crate) async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
    counters: web::Data<Counters>,
) -> HttpResponse {
    let _in_flight = InFlight::enter(&counters);
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

/// The records of an answer: the objects in its top-level arrays (or in the answer, when it is an array).
fn listed_records(json: &mut Value) -> impl Iterator<Item = &mut serde_json::Map<String, Value>> {
    let lists: Vec<&mut Value> = match json {
        Value::Object(object) => object.values_mut().collect(),
        other => vec![other],
    };
    lists
        .into_iter()
        .filter_map(|list| list.as_array_mut())
        .flatten()
        .filter_map(Value::as_object_mut)
}

/// A reshaped answer that keeps the original's headers (its `Content-Length` recomputed for `body`).
fn with_headers(
    status: StatusCode,
    headers: &actix_web::http::header::HeaderMap,
    body: impl actix_web::body::MessageBody + 'static,
) -> HttpResponse {
    let mut response = HttpResponse::build(status);
    for (name, value) in headers {
        if name != actix_web::http::header::CONTENT_LENGTH {
            response.append_header((name.clone(), value.clone()));
        }
    }
    response.body(body)
}

/// Applies a [`Reshape`] to a 200 answer.
pub(crate) async fn reshaped(response: HttpResponse, reshape: Reshape) -> HttpResponse {
    let status = response.status();
    let headers = response.headers().clone();
    let Ok(body) = actix_web::body::to_bytes(response.into_body()).await else {
        return HttpResponse::InternalServerError().finish();
    };
    let body: Vec<u8> = match reshape {
        Reshape::Truncate => body[..body.len() / 2].to_vec(),
        Reshape::Pretty => match serde_json::from_slice::<Value>(&body) {
            Ok(json) => serde_json::to_vec_pretty(&json).unwrap(),
            Err(_) => body.to_vec(),
        },
        Reshape::WithoutField(field) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut json) => {
                for record in listed_records(&mut json) {
                    record.remove(&field);
                }
                serde_json::to_vec(&json).unwrap()
            }
            Err(_) => body.to_vec(),
        },
        Reshape::RawField(field, text) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut json) => {
                // A placeholder no answer holds, replaced by the text once serialized.
                const MARK: &str = "\u{1}raw field\u{1}";
                for record in listed_records(&mut json) {
                    record.insert(field.clone(), Value::String(MARK.to_owned()));
                }
                let mark = serde_json::to_string(MARK).unwrap();
                let body = serde_json::to_string(&json).unwrap().replace(&mark, &text);
                return with_headers(status, &headers, body);
            }
            Err(_) => body.to_vec(),
        },
        Reshape::Lost => return crate::faults::lost_answer(),
        Reshape::CapRecords(max) => match serde_json::from_slice::<Value>(&body) {
            Ok(mut json) => {
                let lists: Vec<&mut Value> = match &mut json {
                    Value::Object(object) => object.values_mut().collect(),
                    other => vec![other],
                };
                for list in lists {
                    if let Value::Array(records) = list {
                        records.truncate(max);
                    }
                }
                // The page size the answer says it used (Box's `limit`) is the one it held to.
                if let Some(limit) = json.get_mut("limit").filter(|limit| limit.is_u64()) {
                    *limit = Value::from(limit.as_u64().unwrap().min(max as u64));
                }
                return with_headers(status, &headers, serde_json::to_vec(&json).unwrap());
            }
            Err(_) => body.to_vec(),
        },
        Reshape::WithoutMember(member) => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut object)) => {
                object.remove(&member);
                serde_json::to_vec(&object).unwrap()
            }
            _ => body.to_vec(),
        },
        Reshape::WithoutLists => match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(mut object)) => {
                object.retain(|_, value| !value.is_array());
                serde_json::to_vec(&object).unwrap()
            }
            Ok(_) => b"{}".to_vec(),
            Err(_) => body.to_vec(),
        },
    };
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

/// Holds the request while [`PlatformApi::hold_after`] says so (counted in `held` meanwhile, also if the
/// client goes away and the request is dropped).
pub(crate) async fn wait_while_held(state: &Mutex<State>) {
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

/// What every request meets before its platform answers: it is counted (hits, arrivals, last query), then
/// the faults asked for apply in order: a 429, a path that always fails, the next `n` failures. `Ok` carries
/// the reshaping its 200 will get, if any.
pub(crate) fn apply_faults(
    state: &mut State,
    req: &HttpRequest,
    path: &str,
    platform: &str,
) -> Result<Option<Reshape>, HttpResponse> {
    state
        .arrivals
        .entry(platform.to_owned())
        .or_default()
        .push(std::time::Instant::now());
    *state.hits.entry(path.to_owned()).or_default() += 1;
    state
        .last_query
        .insert(path.to_owned(), req.query_string().to_owned());
    // Every countdown whose prefix the path has moves on; those at their request are done.
    let mut lost = false;
    state.lose.retain_mut(|(prefix, n)| {
        if !path.starts_with(prefix.as_str()) {
            return true;
        }
        *n -= 1;
        lost |= *n == 0;
        *n > 0
    });
    let reshape = match state.truncate.get_mut(path) {
        Some(n) if *n > 1 => {
            *n -= 1;
            None
        }
        Some(_) => {
            state.truncate.remove(path);
            Some(Reshape::Truncate)
        }
        None => None,
    }
    .or_else(|| {
        state
            .truncate_always
            .contains(path)
            .then_some(Reshape::Truncate)
    })
    .or_else(|| state.pretty.contains(path).then_some(Reshape::Pretty))
    .or_else(|| {
        state
            .without_lists
            .contains(path)
            .then_some(Reshape::WithoutLists)
    })
    .or_else(|| {
        state
            .without_field
            .get(path)
            .map(|field| Reshape::WithoutField(field.clone()))
    })
    .or_else(|| {
        state
            .without_member
            .get(path)
            .map(|member| Reshape::WithoutMember(member.clone()))
    })
    .or_else(|| {
        state
            .page_caps
            .get(path)
            .map(|max| Reshape::CapRecords(*max))
    })
    .or_else(|| {
        state
            .raw_fields
            .iter()
            .find(|(prefix, _, _)| path.starts_with(prefix.as_str()))
            .map(|(_, field, text)| Reshape::RawField(field.clone(), text.clone()))
    });
    let reshape = if lost { Some(Reshape::Lost) } else { reshape };
    if let Some((n, retry_after)) = state.rate_limited.take() {
        if n > 1 {
            state.rate_limited = Some((n - 1, retry_after));
        }
        if n > 0 {
            return Err(rate_limited(platform, retry_after));
        }
    }
    if let Some(status) = state.failing_paths.get(path).copied() {
        return Err(platform_error(
            platform,
            StatusCode::from_u16(status).unwrap(),
            None,
        ));
    }
    if let Some((n, status, retry_after)) = state.failing.take() {
        if n > 1 {
            state.failing = Some((n - 1, status, retry_after));
        }
        if n > 0 {
            let status = StatusCode::from_u16(status).unwrap();
            return Err(platform_error(platform, status, retry_after));
        }
    }
    Ok(reshape)
}

async fn stats(counters: web::Data<Counters>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "requests": counters.requests.load(Ordering::Relaxed),
        "inFlightPeak": counters.in_flight_peak.load(Ordering::Relaxed),
    }))
}

fn control_error(message: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": message }))
}

/// `POST /_emulator/accept`: see [`PlatformApi::serve`].
async fn control_accept(body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let Some(platform) = body["platform"].as_str() else {
        return control_error("`platform` (a string) is required");
    };
    let mut state = state.lock().unwrap();
    match (&body["credentials"], body["secret"].as_str()) {
        (Value::Object(_), _) => state.accept_credentials(platform, body["credentials"].clone()),
        (Value::Null, Some(secret)) => state.accept(platform, secret),
        _ => return control_error("give `credentials` (an object) or `secret` (a string)"),
    }
    HttpResponse::NoContent().finish()
}

/// `POST /_emulator/seed`: see [`PlatformApi::serve`].
async fn control_seed(body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    control_records(body, state, State::seed)
}

/// `POST /_emulator/append`: see [`PlatformApi::serve`].
async fn control_append(body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    control_records(body, state, State::append)
}

/// A control whose body names a platform's data type and a number of records.
fn control_records(
    body: web::Json<Value>,
    state: web::Data<Mutex<State>>,
    apply: fn(&mut State, &str, &str, u64),
) -> HttpResponse {
    let (Some(platform), Some(data_type), Some(records)) = (
        body["platform"].as_str(),
        body["dataType"].as_str(),
        body["records"].as_u64(),
    ) else {
        return control_error(
            "`platform` and `dataType` (strings) and `records` (a whole number) are required",
        );
    };
    apply(&mut state.lock().unwrap(), platform, data_type, records);
    HttpResponse::NoContent().finish()
}

/// `POST /_emulator/delete`: see [`PlatformApi::serve`].
async fn control_delete(body: web::Json<Value>, state: web::Data<Mutex<State>>) -> HttpResponse {
    let (Some(platform), Some(data_type)) = (body["platform"].as_str(), body["dataType"].as_str())
    else {
        return control_error("`platform` and `dataType` (strings) are required");
    };
    let mut state = state.lock().unwrap();
    let dataset = state.dataset(platform, data_type);
    let count = dataset.count;
    dataset.hidden.extend(0..count);
    HttpResponse::NoContent().finish()
}
