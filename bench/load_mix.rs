//! Load generator of `bench/load` (issue 14 §6; a benchmark run by a person, never by the test suite): a
//! dashboard's mix of reads and commands against a running `listbackup serve`.
//!
//!   load_mix --url URL --tokens FILE [--clients 64] [--duration 120] [--warmup 10] [--threads 1]
//!            [--platform stripe] [--credentials JSON] [--data-type customers] [--drain-timeout 300]
//!
//! Each of `clients` clients has its own HTTP/1.1 keep-alive connection and a token of the `--tokens` file
//! (one JWT a line; client `i` uses line `i mod lines`, so the clients spread over that many accounts), and runs
//! a closed loop: one request at a time, the next sent when the answer has been read. First each client creates
//! its own connection (`--platform` with `--credentials`, the demo's by default) and a source of it
//! (`--data-type`, manual schedule), then it draws each request from [`MIX`] (weights per thousand, printed in
//! the report). Reads go to the account's lists and the client's own resources; the commands create and rename
//! connections and sources, sync one of the client's sources and cancel the client's job. A client has at most
//! one job at a time: while it has one, a draw of sync reads the job's progress instead (`GET /jobs/{id}`,
//! as a dashboard polls it) and forgets it once ended, and a draw of cancel with no job syncs instead; so the
//! run never queues more backups than there are clients.
//!
//! Expected answers: 200 for reads and updates, 201 for creations, 202 for syncs and cancels, and a 409 for a
//! cancel only when `GET /jobs/{id}` shows the job ended within 10 s (the read model follows the log) (the race every dashboard has; counted
//! apart as `cancelTooLate`). Anything else, a transport error or a timeout (30 s) is an error, listed in the
//! report (route, status, body excerpt); the process exits 1 when there was any.
//!
//! After the warm-up (not counted), every request that completes inside the `duration` window is counted in
//! its route template's throughput and latency percentiles (send to the full body read; exact nearest-rank
//! over every latency). After the window each client waits, up to `drain-timeout` seconds, for its last job
//! to end, so the read models the script compares with a rebuild are at rest. One JSON object on stdout.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

// Its percentile and rounding; the rest (one route's summary) is the other generators'.
#[allow(dead_code)]
#[path = "load_report.rs"]
mod load_report;
use load_report::{ms, percentile};

/// How long the job read model may take to show what the event log already says (a cancel's 409 after the end).
const READ_MODEL_CATCH_UP: Duration = Duration::from_secs(10);

/// The request mix: route template and weight per thousand draws. A dashboard mostly reads (lists, a
/// resource, a running job's progress, the platform catalog); about one request in eight is a command.
const MIX: &[(Route, u32)] = &[
    (Route::ListConnections, 90),
    (Route::GetConnection, 80),
    (Route::ListSources, 120),
    (Route::GetSource, 100),
    (Route::ListJobs, 100),
    (Route::GetJob, 160),
    (Route::ListSnapshots, 80),
    (Route::ListPlatforms, 110),
    (Route::GetPlatform, 40),
    (Route::CreateConnection, 15),
    (Route::UpdateConnection, 15),
    (Route::CreateSource, 25),
    (Route::UpdateSource, 30),
    (Route::SyncSource, 25),
    (Route::CancelJob, 10),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    ListConnections,
    GetConnection,
    ListSources,
    GetSource,
    ListJobs,
    GetJob,
    ListSnapshots,
    ListPlatforms,
    GetPlatform,
    CreateConnection,
    UpdateConnection,
    CreateSource,
    UpdateSource,
    SyncSource,
    CancelJob,
}

impl Route {
    fn template(self) -> &'static str {
        match self {
            Route::ListConnections => "GET /connections",
            Route::GetConnection => "GET /connections/{id}",
            Route::ListSources => "GET /sources",
            Route::GetSource => "GET /sources/{id}",
            Route::ListJobs => "GET /jobs",
            Route::GetJob => "GET /jobs/{id}",
            Route::ListSnapshots => "GET /sources/{id}/snapshots",
            Route::ListPlatforms => "GET /platforms",
            Route::GetPlatform => "GET /platforms/{platformId}",
            Route::CreateConnection => "POST /connections",
            Route::UpdateConnection => "PUT /connections/{id}",
            Route::CreateSource => "POST /sources",
            Route::UpdateSource => "PUT /sources/{id}",
            Route::SyncSource => "POST /sources/{id}/sync",
            Route::CancelJob => "POST /jobs/{id}/cancel",
        }
    }
}

struct Args {
    url: String,
    tokens: Vec<String>,
    clients: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    platform: String,
    credentials: Value,
    data_type: String,
    drain_timeout: f64,
}

fn usage(message: &str) -> ! {
    eprintln!("load_mix: {message}");
    eprintln!(
        "usage: load_mix --url URL --tokens FILE [--clients N] [--duration SECS] [--warmup SECS] [--threads N] \
         [--platform ID] [--credentials JSON] [--data-type NAME] [--drain-timeout SECS]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        tokens: Vec::new(),
        clients: 64,
        duration: 120.0,
        warmup: 10.0,
        threads: 1,
        platform: "stripe".into(),
        credentials: json!({"secretKey": "sk_demo"}),
        data_type: "customers".into(),
        drain_timeout: 300.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--url" => args.url = value().trim_end_matches('/').to_owned(),
            "--tokens" => {
                let path = value();
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| usage(&format!("cannot read {path}: {e}")));
                args.tokens = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
            "--clients" => args.clients = number(&flag, &value()),
            "--duration" => args.duration = seconds(&flag, &value()),
            "--warmup" => args.warmup = seconds(&flag, &value()),
            "--threads" => args.threads = number(&flag, &value()),
            "--platform" => args.platform = value(),
            "--credentials" => {
                args.credentials = serde_json::from_str(&value())
                    .unwrap_or_else(|e| usage(&format!("--credentials is not JSON: {e}")))
            }
            "--data-type" => args.data_type = value(),
            "--drain-timeout" => args.drain_timeout = seconds(&flag, &value()),
            _ => usage(&format!("unknown argument {flag}")),
        }
    }
    if args.url.is_empty() {
        usage("--url is required");
    }
    if args.tokens.is_empty() {
        usage("--tokens names a file of at least one token");
    }
    if args.clients == 0 || args.threads == 0 {
        usage("--clients and --threads must be at least 1");
    }
    args
}

fn number(flag: &str, text: &str) -> usize {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("{flag} takes a whole number, not {text:?}")))
}

fn seconds(flag: &str, text: &str) -> f64 {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => s,
        _ => usage(&format!("{flag} takes seconds, not {text:?}")),
    }
}

/// SplitMix64: a small, seeded, reproducible draw per client (no shared generator to contend on).
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn route(&mut self) -> Route {
        let total: u32 = MIX.iter().map(|(_, w)| w).sum();
        let mut pick = (self.next() % u64::from(total)) as u32;
        for (route, weight) in MIX {
            if pick < *weight {
                return *route;
            }
            pick -= weight;
        }
        unreachable!("the weights add up to the total")
    }
}

struct Shared {
    args: Args,
    window_start: Instant,
    window_end: Instant,
}

/// One client's tally.
#[derive(Default)]
struct Tally {
    /// Latencies (µs) of the requests completed inside the window, by route.
    latencies: BTreeMap<Route, Vec<u64>>,
    /// Requests outside the window (set-up, warm-up, drain), by route.
    uncounted: u64,
    errors: Vec<String>,
    jobs_queued: u64,
    cancels: u64,
    cancel_too_late: u64,
    /// The last job had not ended when the drain timed out.
    undrained: u64,
}

/// What one request came back with.
struct Answer {
    status: StatusCode,
    body: Value,
}

/// What a client owns.
struct Client {
    http: reqwest::Client,
    shared: Arc<Shared>,
    token: String,
    index: usize,
    draw: Draw,
    connections: Vec<String>,
    sources: Vec<String>,
    jobs: Vec<String>,
    /// The client's job that has not been seen ended yet.
    active: Option<String>,
    made: u64,
    tally: Tally,
}

impl Client {
    /// Sends one request; records its latency when inside the window, or an error when `expected` (or the
    /// cancel's 409 rule, checked by the caller) does not hold. Returns the answer when it was the expected one.
    async fn call(
        &mut self,
        route: Route,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: &[u16],
    ) -> Option<Answer> {
        let url = format!("{}{path}", self.shared.args.url);
        let started = Instant::now();
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        let finished = Instant::now();
        match outcome {
            Ok((status, bytes)) if expected.contains(&status.as_u16()) => {
                if started >= self.shared.window_start && finished <= self.shared.window_end {
                    self.tally
                        .latencies
                        .entry(route)
                        .or_default()
                        .push(finished.duration_since(started).as_micros() as u64);
                } else {
                    self.tally.uncounted += 1;
                }
                let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Some(Answer { status, body })
            }
            Ok((status, bytes)) => {
                self.tally.errors.push(format!(
                    "{} ({method} {path}): HTTP {status}: {}",
                    route.template(),
                    String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
                ));
                None
            }
            Err(err) => {
                self.tally.errors.push(format!(
                    "{} ({method} {path}): transport error: {err}",
                    route.template()
                ));
                None
            }
        }
    }

    fn name(&mut self, what: &str) -> String {
        self.made += 1;
        format!("load {what} {}.{}", self.index, self.made)
    }

    async fn create_connection(&mut self) {
        let name = self.name("connection");
        let body = json!({
            "platformId": self.shared.args.platform,
            "name": name,
            "credentials": self.shared.args.credentials,
        });
        if let Some(answer) = self
            .call(
                Route::CreateConnection,
                Method::POST,
                "/connections",
                Some(body),
                &[201],
            )
            .await
        {
            match answer.body["connectionId"].as_str() {
                Some(id) => self.connections.push(id.to_owned()),
                None => self.tally.errors.push(format!(
                    "POST /connections: no connectionId in {}",
                    answer.body
                )),
            }
        }
    }

    async fn create_source(&mut self) {
        if self.connections.is_empty() {
            return self.create_connection().await;
        }
        let connection = self.connections[self.draw.below(self.connections.len())].clone();
        let name = self.name("source");
        let body = json!({
            "connectionId": connection,
            "name": name,
            "dataTypes": [self.shared.args.data_type],
            "schedule": {"frequency": "manual"},
        });
        if let Some(answer) = self
            .call(
                Route::CreateSource,
                Method::POST,
                "/sources",
                Some(body),
                &[201],
            )
            .await
        {
            match answer.body["sourceId"].as_str() {
                Some(id) => self.sources.push(id.to_owned()),
                None => self
                    .tally
                    .errors
                    .push(format!("POST /sources: no sourceId in {}", answer.body)),
            }
        }
    }

    /// Reads the active job's progress; forgets it once it has ended.
    async fn poll_active(&mut self) {
        let Some(job) = self.active.clone() else {
            return;
        };
        if let Some(answer) = self
            .call(
                Route::GetJob,
                Method::GET,
                &format!("/jobs/{job}"),
                None,
                &[200],
            )
            .await
        {
            if ended(&answer.body) {
                self.active = None;
            }
        }
    }

    async fn sync(&mut self) {
        if self.active.is_some() {
            return self.poll_active().await;
        }
        if self.sources.is_empty() {
            return self.create_source().await;
        }
        let source = self.sources[self.draw.below(self.sources.len())].clone();
        if let Some(answer) = self
            .call(
                Route::SyncSource,
                Method::POST,
                &format!("/sources/{source}/sync"),
                None,
                &[202],
            )
            .await
        {
            match answer.body["jobId"].as_str() {
                Some(id) => {
                    self.tally.jobs_queued += 1;
                    self.jobs.push(id.to_owned());
                    self.active = Some(id.to_owned());
                }
                None => self.tally.errors.push(format!(
                    "POST /sources/{{id}}/sync: no jobId in {}",
                    answer.body
                )),
            }
        }
    }

    async fn cancel(&mut self) {
        let Some(job) = self.active.clone() else {
            return self.sync().await;
        };
        let Some(answer) = self
            .call(
                Route::CancelJob,
                Method::POST,
                &format!("/jobs/{job}/cancel"),
                None,
                &[202, 409],
            )
            .await
        else {
            return;
        };
        if answer.status == StatusCode::ACCEPTED {
            self.tally.cancels += 1;
            return;
        }
        // A 409 is right only for a job that has ended: the worker finished it before the cancel arrived. The
        // 409 comes from the job's events; `GET /jobs/{id}` reads the read model, which follows the log a moment
        // later, so the job must show as ended within READ_MODEL_CATCH_UP, not at once.
        let deadline = tokio::time::Instant::now() + READ_MODEL_CATCH_UP;
        loop {
            let Some(job_view) = self
                .call(
                    Route::GetJob,
                    Method::GET,
                    &format!("/jobs/{job}"),
                    None,
                    &[200],
                )
                .await
            else {
                return;
            };
            if ended(&job_view.body) {
                self.tally.cancel_too_late += 1;
                self.active = None;
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.tally.errors.push(format!(
                    "POST /jobs/{{id}}/cancel: 409, but the job still shows {} {} s later ({})",
                    job_view.body["status"],
                    READ_MODEL_CATCH_UP.as_secs(),
                    answer.body
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn step(&mut self) {
        let route = self.draw.route();
        match route {
            Route::ListConnections => {
                self.call(route, Method::GET, "/connections?limit=50", None, &[200])
                    .await;
            }
            Route::GetConnection => match pick(&mut self.draw, &self.connections) {
                Some(id) => {
                    self.call(
                        route,
                        Method::GET,
                        &format!("/connections/{id}"),
                        None,
                        &[200],
                    )
                    .await;
                }
                None => self.create_connection().await,
            },
            Route::ListSources => {
                self.call(route, Method::GET, "/sources?limit=50", None, &[200])
                    .await;
            }
            Route::GetSource => match pick(&mut self.draw, &self.sources) {
                Some(id) => {
                    self.call(route, Method::GET, &format!("/sources/{id}"), None, &[200])
                        .await;
                }
                None => self.create_source().await,
            },
            Route::ListJobs => {
                self.call(route, Method::GET, "/jobs?limit=50", None, &[200])
                    .await;
            }
            Route::GetJob => {
                if self.active.is_some() {
                    self.poll_active().await;
                } else if let Some(id) = pick(&mut self.draw, &self.jobs) {
                    self.call(route, Method::GET, &format!("/jobs/{id}"), None, &[200])
                        .await;
                } else {
                    self.call(Route::ListJobs, Method::GET, "/jobs?limit=50", None, &[200])
                        .await;
                }
            }
            Route::ListSnapshots => match pick(&mut self.draw, &self.sources) {
                Some(id) => {
                    self.call(
                        route,
                        Method::GET,
                        &format!("/sources/{id}/snapshots?limit=20"),
                        None,
                        &[200],
                    )
                    .await;
                }
                None => self.create_source().await,
            },
            Route::ListPlatforms => {
                self.call(route, Method::GET, "/platforms", None, &[200])
                    .await;
            }
            Route::GetPlatform => {
                let path = format!("/platforms/{}", self.shared.args.platform);
                self.call(route, Method::GET, &path, None, &[200]).await;
            }
            Route::CreateConnection => self.create_connection().await,
            Route::UpdateConnection => match pick(&mut self.draw, &self.connections) {
                Some(id) => {
                    let name = self.name("connection");
                    self.call(
                        route,
                        Method::PUT,
                        &format!("/connections/{id}"),
                        Some(json!({"name": name})),
                        &[200],
                    )
                    .await;
                }
                None => self.create_connection().await,
            },
            Route::CreateSource => self.create_source().await,
            Route::UpdateSource => match pick(&mut self.draw, &self.sources) {
                Some(id) => {
                    let name = self.name("source");
                    self.call(
                        route,
                        Method::PUT,
                        &format!("/sources/{id}"),
                        Some(json!({"name": name})),
                        &[200],
                    )
                    .await;
                }
                None => self.create_source().await,
            },
            Route::SyncSource => self.sync().await,
            Route::CancelJob => self.cancel().await,
        }
    }

    /// Waits (polling every 250 ms) for the client's last job to end, up to the drain timeout.
    async fn drain(&mut self) {
        let deadline = Instant::now() + Duration::from_secs_f64(self.shared.args.drain_timeout);
        while self.active.is_some() {
            if Instant::now() >= deadline {
                self.tally.undrained += 1;
                return;
            }
            let before = self.tally.errors.len();
            self.poll_active().await;
            if self.tally.errors.len() > before {
                return;
            }
            if self.active.is_some() {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

fn pick(draw: &mut Draw, ids: &[String]) -> Option<String> {
    (!ids.is_empty()).then(|| ids[draw.below(ids.len())].clone())
}

/// Whether a `JobView` is in a final status.
fn ended(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "partial" | "failed" | "cancelled")
    )
}

async fn client_loop(shared: Arc<Shared>, index: usize) -> Tally {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTP client");
    let token = shared.args.tokens[index % shared.args.tokens.len()].clone();
    let mut client = Client {
        http,
        shared: shared.clone(),
        token,
        index,
        draw: Draw(0x5eed_0000 + index as u64),
        connections: Vec::new(),
        sources: Vec::new(),
        jobs: Vec::new(),
        active: None,
        made: 0,
        tally: Tally::default(),
    };
    client.create_connection().await;
    client.create_source().await;
    while Instant::now() < shared.window_end {
        client.step().await;
    }
    client.drain().await;
    client.tally
}

fn latency_summary(latencies: &mut [u64], seconds: f64) -> Value {
    latencies.sort_unstable();
    json!({
        "requests": latencies.len(),
        "rps": ((latencies.len() as f64 / seconds) * 10.0).round() / 10.0,
        "p50_ms": ms(percentile(latencies, 50.0)),
        "p99_ms": ms(percentile(latencies, 99.0)),
        "p999_ms": ms(percentile(latencies, 99.9)),
        "max_ms": ms(latencies.last().copied().unwrap_or(0) as f64),
    })
}

async fn run(args: Args) -> i32 {
    let clients = args.clients;
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.duration);
    let seconds = args.duration;
    let shared = Arc::new(Shared {
        args,
        window_start,
        window_end,
    });
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client_loop(shared.clone(), i)))
        .collect();
    let mut by_route: BTreeMap<Route, Vec<u64>> = BTreeMap::new();
    let mut all = Vec::new();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("a client task panicked");
        for (route, latencies) in tally.latencies {
            all.extend_from_slice(&latencies);
            by_route.entry(route).or_default().extend(latencies);
        }
        total.uncounted += tally.uncounted;
        total.errors.extend(tally.errors);
        total.jobs_queued += tally.jobs_queued;
        total.cancels += tally.cancels;
        total.cancel_too_late += tally.cancel_too_late;
        total.undrained += tally.undrained;
    }
    let drained_after = Instant::now().duration_since(window_end).as_secs_f64();
    let weights: u32 = MIX.iter().map(|(_, w)| w).sum();
    let routes: Vec<Value> = MIX
        .iter()
        .map(|(route, weight)| {
            let mut latencies = by_route.remove(route).unwrap_or_default();
            let mut summary = latency_summary(&mut latencies, seconds);
            summary["route"] = json!(route.template());
            summary["weight"] = json!(f64::from(*weight) / f64::from(weights));
            summary
        })
        .collect();
    let mut overall = latency_summary(&mut all, seconds);
    overall["routes"] = json!(routes);
    overall["errors"] = json!(total.errors.len());
    overall["errorList"] = json!(total.errors.iter().take(50).collect::<Vec<_>>());
    overall["uncountedRequests"] = json!(total.uncounted);
    overall["jobsQueued"] = json!(total.jobs_queued);
    overall["cancels"] = json!(total.cancels);
    overall["cancelTooLate"] = json!(total.cancel_too_late);
    overall["undrained"] = json!(total.undrained);
    overall["drainSeconds"] = json!((drained_after * 10.0).round() / 10.0);
    overall["clients"] = json!(clients);
    overall["seconds"] = json!(seconds);
    overall["warmupSeconds"] = json!(shared.args.warmup);
    println!("{overall}");
    if !total.errors.is_empty() {
        eprintln!("load_mix: {} error(s):", total.errors.len());
        for error in total.errors.iter().take(50) {
            eprintln!("load_mix:   {error}");
        }
        return 1;
    }
    if total.undrained > 0 {
        eprintln!(
            "load_mix: {} job(s) had not ended {} s after the window",
            total.undrained, shared.args.drain_timeout
        );
        return 1;
    }
    if all.is_empty() {
        eprintln!("load_mix: no request completed inside the window");
        return 1;
    }
    0
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("building the runtime");
    std::process::exit(runtime.block_on(run(args)));
}
