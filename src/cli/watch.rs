//! Following a job to its end: `GET /jobs/{id}/events` (Server-Sent Events, README "Jobs: following a
//! backup"), a progress bar or plain lines while it runs, and its outcome as an exit status.
//!
//! The stream sends a `job` event (the job as `GET /jobs/{id}` shows it), `progress` events (`jobId, attempt,
//! dataTypesDone, dataTypesTotal, currentDataType, records, bytes, pages, at`), more `job` events on changes,
//! and a last `end` event with the finished job. A stream that breaks before its `end` is opened again; when
//! it keeps breaking, the job is polled with `GET /jobs/{id}` instead until it ends.

use listbackup_domain::ErrorChain;
use std::io::IsTerminal;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::StreamExt;
use indicatif::{HumanBytes, HumanCount, HumanDuration, ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::client::ApiClient;
use super::error::{CliError, ExitStatus};
use super::output::{print_json_line, Output};

/// How a broken event stream is dealt with.
#[derive(Debug, Clone)]
pub struct FollowPolicy {
    /// Wait before opening the stream again (unless the server's `retry:` field says otherwise).
    pub reconnect_delay: Duration,
    /// Openings in a row that bring no event (refused, or closed at once) before the stream is given up for
    /// polling.
    pub max_stream_failures: u32,
    /// How often the job is read while polling.
    pub poll_interval: Duration,
    /// How long the API may stay unreachable (every request failing) before the watch gives up.
    pub give_up_after: Duration,
}

impl Default for FollowPolicy {
    fn default() -> Self {
        Self {
            reconnect_delay: Duration::from_secs(1),
            max_stream_failures: 3,
            // The job read model changes at most about once a second while a backup runs.
            poll_interval: Duration::from_secs(2),
            give_up_after: Duration::from_secs(120),
        }
    }
}

/// The end of a job, as its status names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Partial,
    Failed,
    Cancelled,
}

impl Outcome {
    /// The outcome of a job view, `None` while it is `queued` or `running`.
    pub fn of(job: &Value) -> Option<Self> {
        match job["status"].as_str()? {
            "succeeded" => Some(Self::Succeeded),
            "partial" => Some(Self::Partial),
            "failed" => Some(Self::Failed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn exit_status(self) -> ExitStatus {
        match self {
            Self::Succeeded => ExitStatus::Success,
            Self::Partial => ExitStatus::JobPartial,
            Self::Failed => ExitStatus::JobFailed,
            Self::Cancelled => ExitStatus::JobCancelled,
        }
    }
}

/// Follows the job until it ends and returns the ended job, showing its progress as `output` and the
/// terminal ask: a bar on a terminal, plain lines on stderr otherwise, JSON events (one per line, on stdout)
/// with `--output json`.
///
/// # Errors
/// A problem the API answers that retrying cannot fix (404, 401…), or the API unreachable for longer than
/// [`FollowPolicy::give_up_after`].
pub async fn follow(
    client: &ApiClient,
    job_id: &str,
    output: Output,
    policy: &FollowPolicy,
) -> Result<Value, CliError> {
    let mut display = Display::new(job_id, output);
    let result = follow_with(client, job_id, policy, &mut display).await;
    display.finish();
    result
}

async fn follow_with(
    client: &ApiClient,
    job_id: &str,
    policy: &FollowPolicy,
    display: &mut Display,
) -> Result<Value, CliError> {
    let mut failures = 0;
    let mut unreachable_since: Option<Instant> = None;
    while failures < policy.max_stream_failures {
        let mut delay = policy.reconnect_delay;
        match stream_once(client, job_id, display, &mut delay).await {
            Ok(Streamed::Ended(job)) => return Ok(job),
            Ok(Streamed::Broke { events, reason }) => {
                failures = if events > 0 { 0 } else { failures + 1 };
                unreachable_since = None;
                display.notice(&format!("the event stream broke ({reason}); reconnecting"));
            }
            Err(err) if is_transient(&err) => {
                failures += 1;
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= policy.give_up_after {
                    return Err(err);
                }
                display.notice(&format!(
                    "cannot open the event stream ({}); retrying",
                    super::error::chain(&err)
                ));
            }
            Err(err) => return Err(err),
        }
        // The stream may have broken just as the job ended: the job itself says.
        if let Some(job) = read_job(client, job_id, &mut unreachable_since, policy).await? {
            if Outcome::of(&job).is_some() {
                display.event("end", &job);
                return Ok(job);
            }
            display.event("job", &job);
        }
        tokio::time::sleep(delay).await;
    }
    display.notice("the event stream keeps breaking; polling the job instead");
    loop {
        if let Some(job) = read_job(client, job_id, &mut unreachable_since, policy).await? {
            if Outcome::of(&job).is_some() {
                display.event("end", &job);
                return Ok(job);
            }
            display.event("job", &job);
        }
        tokio::time::sleep(policy.poll_interval).await;
    }
}

/// `GET /jobs/{id}`; `None` after a transient failure (counted against `give_up_after`).
async fn read_job(
    client: &ApiClient,
    job_id: &str,
    unreachable_since: &mut Option<Instant>,
    policy: &FollowPolicy,
) -> Result<Option<Value>, CliError> {
    match client.get_json(&["jobs", job_id], &[]).await {
        Ok(job) => {
            *unreachable_since = None;
            Ok(Some(job))
        }
        Err(err) if is_transient(&err) => {
            let since = *unreachable_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= policy.give_up_after {
                Err(err)
            } else {
                Ok(None)
            }
        }
        Err(err) => Err(err),
    }
}

/// A failure that may pass: the connection, a 5xx, a 429.
fn is_transient(err: &CliError) -> bool {
    match err {
        CliError::Transport { .. } => true,
        CliError::Api(problem) => problem.status >= 500 || problem.status == 429,
        _ => false,
    }
}

enum Streamed {
    Ended(Value),
    /// The stream ended or failed before its `end` event, after `events` events.
    Broke {
        events: usize,
        reason: String,
    },
}

/// One opening of the event stream, read until its `end` or until it breaks.
async fn stream_once(
    client: &ApiClient,
    job_id: &str,
    display: &mut Display,
    retry: &mut Duration,
) -> Result<Streamed, CliError> {
    let response = client
        .open(&["jobs", job_id, "events"], "text/event-stream")
        .await?;
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_event_stream {
        return Err(CliError::Unexpected(format!(
            "GET /jobs/{job_id}/events did not answer an event stream"
        )));
    }
    let mut events = response.bytes_stream().eventsource();
    let mut seen = 0;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                return Ok(Streamed::Broke {
                    events: seen,
                    reason: ErrorChain(&err).to_string(),
                })
            }
        };
        seen += 1;
        if let Some(server_retry) = event.retry {
            *retry = server_retry;
        }
        let data: Value = match event.event.as_str() {
            "job" | "progress" | "end" => {
                serde_json::from_str(&event.data).map_err(|source| CliError::NotJson {
                    what: format!("a {:?} event", event.event),
                    source,
                })?
            }
            // Events this version does not know are left for later versions.
            _ => continue,
        };
        display.event(&event.event, &data);
        if event.event == "end" {
            return Ok(Streamed::Ended(data));
        }
    }
    Ok(Streamed::Broke {
        events: seen,
        reason: "the server closed it".into(),
    })
}

/// Where a job stood at the last event.
#[derive(Debug, Default, Clone, PartialEq)]
struct Snapshot {
    status: String,
    attempt: u64,
    done: u64,
    total: u64,
    current: Option<String>,
    records: u64,
    bytes: u64,
}

impl Snapshot {
    /// Takes in a `job` event's view or a `progress` event. Within one attempt counts only grow: a `job`
    /// event (the read model, persisted about once a second) may come after a fresher `progress` event.
    fn update(&mut self, kind: &str, data: &Value) {
        let (progress, attempt) = match kind {
            "progress" => (data, data["attempt"].as_u64()),
            _ => {
                if let Some(status) = data["status"].as_str() {
                    self.status = status.to_owned();
                }
                (&data["progress"], data["attempt"].as_u64())
            }
        };
        let attempt = attempt.unwrap_or(self.attempt);
        let number = |field: &str| progress[field].as_u64();
        if attempt != self.attempt {
            *self = Snapshot {
                status: self.status.clone(),
                attempt,
                ..Snapshot::default()
            };
        }
        if kind == "progress" && self.status == "queued" {
            self.status = "running".into();
        }
        self.total = number("dataTypesTotal").unwrap_or(self.total);
        self.done = self.done.max(number("dataTypesDone").unwrap_or(0));
        self.records = self.records.max(number("records").unwrap_or(0));
        self.bytes = self.bytes.max(number("bytes").unwrap_or(0));
        if let Some(current) = progress.get("currentDataType") {
            self.current = current.as_str().map(str::to_owned);
        }
    }
}

/// Rate and ETA, measured on this side from the first look at an attempt (no clock shared with the server).
struct Meter {
    since: Instant,
    first: Snapshot,
}

impl Meter {
    fn new(first: &Snapshot) -> Self {
        Self {
            since: Instant::now(),
            first: first.clone(),
        }
    }

    /// Records and bytes per second since the first look, once a second has passed.
    fn rate(&self, now: &Snapshot) -> Option<(f64, f64)> {
        let secs = self.since.elapsed().as_secs_f64();
        (secs >= 1.0).then(|| {
            (
                now.records.saturating_sub(self.first.records) as f64 / secs,
                now.bytes.saturating_sub(self.first.bytes) as f64 / secs,
            )
        })
    }

    /// The time left at the pace data types have been finishing, once one has finished while watching.
    fn eta(&self, now: &Snapshot) -> Option<Duration> {
        let finished = now.done.checked_sub(self.first.done).filter(|&n| n > 0)?;
        let left = now.total.checked_sub(now.done).filter(|&n| n > 0)?;
        Some(self.since.elapsed().mul_f64(left as f64 / finished as f64))
    }
}

/// How progress is shown.
enum Display {
    /// A live bar on stderr (a terminal, `--output text`).
    Bar {
        bar: ProgressBar,
        job_id: String,
        now: Snapshot,
        meter: Option<Meter>,
    },
    /// A line on stderr at each change of status or data type, and at most every [`LINE_INTERVAL`].
    Lines {
        job_id: String,
        now: Snapshot,
        printed: Snapshot,
        last_line: Option<Instant>,
        meter: Option<Meter>,
    },
    /// Every event as a JSON line on stdout: `{"event": "job"|"progress"|"end", "data": …}`.
    Json,
    /// Every event and notice kept, for tests to look at.
    #[cfg(test)]
    Recorded(Vec<(String, Value)>),
}

/// A plain progress line at most this often between changes of status or data type.
const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// The bar's line for a job of `total` data types: none yet (queued, not started) shows no bar, since
/// indicatif draws an empty length as a full bar.
fn bar_template(total: u64) -> &'static str {
    if total == 0 {
        "{spinner} {prefix:9} {msg}"
    } else {
        "{spinner} {prefix:9} [{bar:24}] {pos}/{len} data types  {msg}"
    }
}

fn bar_style(total: u64) -> ProgressStyle {
    ProgressStyle::with_template(bar_template(total))
        .expect("a valid template")
        .progress_chars("=> ")
}

impl Display {
    fn new(job_id: &str, output: Output) -> Self {
        match output {
            Output::Json => Self::Json,
            Output::Text if std::io::stderr().is_terminal() => {
                let bar = ProgressBar::new(0);
                bar.set_style(bar_style(0));
                bar.set_prefix("queued");
                bar.enable_steady_tick(Duration::from_millis(120));
                Self::Bar {
                    bar,
                    job_id: job_id.to_owned(),
                    now: Snapshot::default(),
                    meter: None,
                }
            }
            Output::Text => Self::Lines {
                job_id: job_id.to_owned(),
                now: Snapshot::default(),
                printed: Snapshot::default(),
                last_line: None,
                meter: None,
            },
        }
    }

    /// A `job`, `progress` or `end` event (from the stream, or a polled job).
    fn event(&mut self, kind: &str, data: &Value) {
        match self {
            Self::Json => print_json_line(&json!({"event": kind, "data": data})),
            #[cfg(test)]
            Self::Recorded(seen) => seen.push((kind.to_owned(), data.clone())),
            Self::Bar {
                bar, now, meter, ..
            } => {
                now.update(kind, data);
                let meter = measure(meter, now);
                bar.set_prefix(now.status.clone());
                if bar.length() == Some(0) && now.total > 0 {
                    bar.set_style(bar_style(now.total));
                }
                bar.set_length(now.total);
                bar.set_position(now.done);
                bar.set_message(summary(now, meter));
            }
            Self::Lines {
                job_id,
                now,
                printed,
                last_line,
                meter,
            } => {
                now.update(kind, data);
                let meter = measure(meter, now);
                let changed = now.status != printed.status
                    || now.current != printed.current
                    || now.done != printed.done;
                let due = last_line.is_none_or(|at| at.elapsed() >= LINE_INTERVAL);
                if kind != "end" && (changed || (due && now != printed)) {
                    eprintln!(
                        "job {job_id} {}: {}/{} data types  {}",
                        now.status,
                        now.done,
                        now.total,
                        summary(now, meter)
                    );
                    *printed = now.clone();
                    *last_line = Some(Instant::now());
                }
            }
        }
    }

    /// Something the user should know that is not the job's progress (a reconnection).
    fn notice(&mut self, message: &str) {
        match self {
            #[cfg(test)]
            Self::Recorded(seen) => seen.push(("notice".into(), message.into())),
            Self::Bar { bar, job_id, .. } => bar.println(format!("job {job_id}: {message}")),
            Self::Lines { job_id, .. } => eprintln!("job {job_id}: {message}"),
            // Scripts get events on stdout; a person reading along sees why it paused.
            Self::Json => eprintln!("{message}"),
        }
    }

    fn finish(&self) {
        if let Self::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

/// The meter of the current attempt, started at its first look and restarted with a new attempt.
fn measure<'a>(meter: &'a mut Option<Meter>, now: &Snapshot) -> Option<&'a Meter> {
    if meter
        .as_ref()
        .is_none_or(|m| m.first.attempt != now.attempt)
        && now.status == "running"
    {
        *meter = Some(Meter::new(now));
    }
    meter.as_ref()
}

/// `12,345 records · 3.40 MiB · 1,234 records/s, 1.20 MiB/s · customers · ETA 42 seconds`
fn summary(now: &Snapshot, meter: Option<&Meter>) -> String {
    let mut parts = vec![
        format!("{} records", HumanCount(now.records)),
        HumanBytes(now.bytes).to_string(),
    ];
    if let Some((records, bytes)) = meter.and_then(|m| m.rate(now)) {
        parts.push(format!(
            "{} records/s, {}/s",
            HumanCount(records.round() as u64),
            HumanBytes(bytes.round() as u64)
        ));
    }
    if let Some(current) = &now.current {
        parts.push(current.clone());
    }
    if let Some(eta) = meter.and_then(|m| m.eta(now)) {
        parts.push(format!("ETA {}", HumanDuration(eta)));
    }
    parts.join(" · ")
}

/// The ended job in a sentence: `job <id> succeeded: 280 records, 12.30 KiB, 2 data types`, with the error
/// of a failed job and each failed data type of a partial one.
pub fn outcome_text(job: &Value) -> String {
    let id = job["jobId"].as_str().unwrap_or("?");
    let status = job["status"].as_str().unwrap_or("?");
    let progress = &job["progress"];
    let types = job["dataTypes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let done = types.iter().filter(|t| t["status"] == "done").count();
    let totals = format!(
        "{} records, {}, {} of {} data types backed up",
        HumanCount(progress["records"].as_u64().unwrap_or(0)),
        HumanBytes(progress["bytes"].as_u64().unwrap_or(0)),
        done,
        types.len()
    );
    let mut text = match Outcome::of(job) {
        Some(Outcome::Succeeded) | Some(Outcome::Partial) => format!("job {id} {status}: {totals}"),
        Some(Outcome::Failed) => format!("job {id} failed: {}", error_text(&job["error"])),
        Some(Outcome::Cancelled) => format!("job {id} cancelled"),
        None => format!("job {id} {status}: {totals}"),
    };
    for failed in types.iter().filter(|t| t["status"] == "failed") {
        text.push_str(&format!(
            "\n  {} failed: {}",
            failed["name"].as_str().unwrap_or("?"),
            error_text(&failed["error"])
        ));
    }
    text
}

/// `CODE: message` of a job's or a data type's `error`, `(retryable)` when it is.
fn error_text(error: &Value) -> String {
    let code = error["code"].as_str().unwrap_or("ERROR");
    let message = error["message"].as_str().unwrap_or("no reason given");
    let retryable = if error["retryable"] == true {
        " (retryable)"
    } else {
        ""
    };
    format!("{code}: {message}{retryable}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_job_with_no_data_types_yet_shows_no_bar() {
        assert!(!bar_template(0).contains("{bar"));
        assert!(bar_template(3).contains("{bar:24}"));
        // Both are templates indicatif takes.
        bar_style(0);
        bar_style(3);
    }

    /// Reads of the fake API's two routes.
    #[derive(Default)]
    struct Calls {
        events: AtomicUsize,
        job: AtomicUsize,
    }

    /// A fake of the API's two job routes: the first event stream sends one `job` event and closes without
    /// its `end`; later ones answer 503. `GET /jobs/{id}` shows the job running for its first three reads,
    /// then succeeded. Job `missing` is a 404 problem.
    async fn fake_api() -> (String, Arc<Calls>, actix_web::dev::ServerHandle) {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let calls = Arc::new(Calls::default());
        let data = web::Data::from(calls.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route(
                    "/jobs/{id}/events",
                    web::get().to(|calls: web::Data<Calls>, id: web::Path<String>| async move {
                        if id.as_str() == "missing" {
                            return HttpResponse::NotFound()
                                .content_type("application/problem+json")
                                .body(r#"{"title":"Not found","status":404,"detail":"job not found"}"#);
                        }
                        if calls.events.fetch_add(1, Ordering::SeqCst) == 0 {
                            HttpResponse::Ok().content_type("text/event-stream").body(
                                "event: job\ndata: {\"jobId\":\"j\",\"status\":\"running\",\"attempt\":1}\n\n",
                            )
                        } else {
                            HttpResponse::ServiceUnavailable().finish()
                        }
                    }),
                )
                .route(
                    "/jobs/{id}",
                    web::get().to(|calls: web::Data<Calls>| async move {
                        let n = calls.job.fetch_add(1, Ordering::SeqCst);
                        let status = if n < 3 { "running" } else { "succeeded" };
                        HttpResponse::Ok().json(json!({"jobId": "j", "status": status, "attempt": 1}))
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .unwrap();
        let address = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        (address, calls, handle)
    }

    fn quick() -> FollowPolicy {
        FollowPolicy {
            reconnect_delay: Duration::from_millis(10),
            max_stream_failures: 2,
            poll_interval: Duration::from_millis(10),
            give_up_after: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_broken_stream_is_reopened_then_the_job_polled_until_it_ends() {
        let (address, calls, server) = fake_api().await;
        let client = ApiClient::new(&address, "t").unwrap();
        let mut display = Display::Recorded(Vec::new());
        let job = follow_with(&client, "j", &quick(), &mut display)
            .await
            .unwrap();
        assert_eq!(job["status"], "succeeded");
        // One stream that broke after an event, then two refused in a row (503): then polling.
        assert_eq!(calls.events.load(Ordering::SeqCst), 3);
        assert_eq!(calls.job.load(Ordering::SeqCst), 4);
        let Display::Recorded(seen) = display else {
            unreachable!()
        };
        let kinds: Vec<&str> = seen.iter().map(|(kind, _)| kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["job", "notice", "job", "notice", "job", "notice", "job", "notice", "end"]
        );
        assert_eq!(seen.last().unwrap().1, job);
        server.stop(false).await;
    }

    #[tokio::test]
    async fn a_missing_job_is_an_error_at_once() {
        let (address, calls, server) = fake_api().await;
        let client = ApiClient::new(&address, "t").unwrap();
        let mut display = Display::Recorded(Vec::new());
        let err = follow_with(&client, "missing", &quick(), &mut display)
            .await
            .unwrap_err();
        assert_eq!(err.exit_status(), ExitStatus::NotFound);
        assert_eq!(calls.job.load(Ordering::SeqCst), 0);
        server.stop(false).await;
    }

    fn job(status: &str, attempt: u64, done: u64, records: u64) -> Value {
        json!({"jobId": "j", "status": status, "attempt": attempt,
               "progress": {"dataTypesTotal": 4, "dataTypesDone": done, "currentDataType": "customers",
                            "records": records, "bytes": records * 100, "percent": 0}})
    }

    #[test]
    fn counts_never_go_back_within_an_attempt_and_restart_with_a_new_one() {
        let mut now = Snapshot::default();
        now.update("job", &job("running", 1, 0, 0));
        now.update(
            "progress",
            &json!({"jobId": "j", "attempt": 1, "dataTypesDone": 1, "dataTypesTotal": 4,
                    "currentDataType": "invoices", "records": 500, "bytes": 50_000, "pages": 5}),
        );
        // The read model lags behind NATS: the older count is not shown.
        now.update("job", &job("running", 1, 1, 300));
        assert_eq!((now.records, now.done, now.total), (500, 1, 4));
        // A worker died; the next attempt starts over.
        now.update("job", &job("running", 2, 0, 10));
        assert_eq!((now.attempt, now.records, now.done), (2, 10, 0));
    }

    #[test]
    fn an_eta_only_once_a_data_type_finished_while_watching() {
        let mut first = Snapshot::default();
        first.update("job", &job("running", 1, 0, 0));
        let meter = Meter {
            since: Instant::now() - Duration::from_secs(10),
            first: first.clone(),
        };
        assert_eq!(meter.eta(&first), None);
        let mut now = first.clone();
        now.update("job", &job("running", 1, 1, 100));
        // One of four in 10 s: three more take about 30 s.
        let eta = meter.eta(&now).unwrap();
        assert!((29..=31).contains(&eta.as_secs()), "{eta:?}");
        let (records_per_sec, _) = meter.rate(&now).unwrap();
        assert!((9.0..=10.5).contains(&records_per_sec), "{records_per_sec}");
    }

    #[test]
    fn outcomes_name_their_errors() {
        let failed = json!({"jobId": "j1", "status": "failed", "progress": {}, "dataTypes": [],
                            "error": {"code": "UNAUTHORIZED", "message": "key rejected", "retryable": false}});
        assert_eq!(
            outcome_text(&failed),
            "job j1 failed: UNAUTHORIZED: key rejected"
        );
        assert_eq!(Outcome::of(&failed).unwrap().exit_status().code(), 11);
        let partial = json!({"jobId": "j2", "status": "partial",
            "progress": {"records": 1234, "bytes": 2048},
            "dataTypes": [{"name": "customers", "status": "done"},
                          {"name": "disputes", "status": "failed",
                           "error": {"code": "PLATFORM_ERROR", "message": "404", "retryable": false}}]});
        assert_eq!(
            outcome_text(&partial),
            "job j2 partial: 1,234 records, 2.00 KiB, 1 of 2 data types backed up\n  disputes failed: \
             PLATFORM_ERROR: 404"
        );
        assert_eq!(Outcome::of(&json!({"status": "running"})), None);
    }
}
