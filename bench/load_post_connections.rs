//! Load generator for `bench/post-connections` (a benchmark run by a person, never by the test suite).
//!
//! N concurrent clients, each with its own HTTP/1.1 keep-alive connection, send `POST /connections` back to
//! back (closed loop: a client sends its next request when the previous answer arrives). After a warm-up,
//! every request that *completes* inside the measurement window is counted and its latency (send to full
//! body received) recorded; percentiles are exact (nearest rank over the sorted latencies, no histogram).
//! Requests still in flight when the window closes are awaited but not counted. Prints one JSON object on
//! stdout; every non-201 answer (warm-up included) is an error, and the process exits 1 if there was any.
//!
//!   load_post_connections --url http://127.0.0.1:8080 --token <jwt> [--clients 32] [--duration 20]
//!                         [--warmup 3] [--threads 1]
//!   load_post_connections --target cqrs-demo --url http://127.0.0.1:3030 [--clients 32] …
//!   load_post_connections --delete-nats-stream <NAME> [--nats-url nats://127.0.0.1:4222]
//!
//! `--target cqrs-demo` drives the postgres-es reference demo (serverlesstechnology/cqrs-demo) instead, with
//! the same clients, loop and counting: each request is `POST /account/{id}` with
//! `{"OpenAccount":{"account_id":"{id}"}}` for a fresh id, the demo's command that creates an aggregate (one
//! `AccountOpened` event on a new stream), and only its success answer, 204, counts.
//!
//! The second form is the benchmark's clean-up: it deletes the JetStream stream the relay created for the
//! run's private NATS prefix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

#[path = "load_report.rs"]
mod load_report;
use load_report::{summarize, ClientResult, RunShape};

/// Which service the clients drive.
#[derive(Clone, Copy, PartialEq)]
enum Target {
    /// ListBackup's `POST /connections` (answer 201).
    Listbackup,
    /// The cqrs-demo's `POST /account/{id}` with `OpenAccount` (answer 204).
    CqrsDemo,
}

struct Args {
    target: Target,
    url: String,
    token: String,
    clients: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    delete_stream: Option<String>,
    nats_url: String,
}

fn usage(message: &str) -> ! {
    eprintln!("load_post_connections: {message}");
    eprintln!(
        "usage: load_post_connections [--target listbackup|cqrs-demo] --url URL [--token JWT] [--clients N] [--duration SECS] [--warmup SECS] [--threads N]\n       load_post_connections --delete-nats-stream NAME [--nats-url URL]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        target: Target::Listbackup,
        url: String::new(),
        token: String::new(),
        clients: 32,
        duration: 20.0,
        warmup: 3.0,
        threads: 1,
        delete_stream: None,
        nats_url: "nats://127.0.0.1:4222".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--url" => args.url = value().trim_end_matches('/').to_owned(),
            "--token" => args.token = value(),
            "--target" => {
                args.target = match value().as_str() {
                    "listbackup" => Target::Listbackup,
                    "cqrs-demo" => Target::CqrsDemo,
                    _ => usage("--target is listbackup or cqrs-demo"),
                }
            }
            "--clients" => {
                args.clients = value().parse().unwrap_or_else(|_| usage("bad --clients"))
            }
            "--duration" => {
                args.duration = value().parse().unwrap_or_else(|_| usage("bad --duration"))
            }
            "--warmup" => args.warmup = value().parse().unwrap_or_else(|_| usage("bad --warmup")),
            "--threads" => {
                args.threads = value().parse().unwrap_or_else(|_| usage("bad --threads"))
            }
            "--delete-nats-stream" => args.delete_stream = Some(value()),
            "--nats-url" => args.nats_url = value(),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if args.delete_stream.is_none() {
        if args.url.is_empty() || (args.token.is_empty() && args.target == Target::Listbackup) {
            usage("--url and --token are required (--token only for listbackup)");
        }
        if args.clients == 0 || args.duration <= 0.0 || args.warmup < 0.0 || args.threads == 0 {
            usage("--clients, --duration and --threads must be positive, --warmup not negative");
        }
    }
    args
}

/// What one client saw.
#[allow(clippy::too_many_arguments)]
async fn client_loop(
    http: reqwest::Client,
    target: Target,
    run: Arc<String>,
    url: Arc<String>,
    token: Arc<String>,
    counter: Arc<AtomicU64>,
    window_start: Instant,
    window_end: Instant,
) -> ClientResult {
    let mut result = ClientResult::default();
    while Instant::now() < window_end {
        let n = counter.fetch_add(1, Ordering::Relaxed);
        let (request, expected) = match target {
            Target::Listbackup => (
                http.post(url.as_str())
                    .bearer_auth(token.as_str())
                    .json(&json!({
                        "platformId": "stripe",
                        "name": format!("bench {n}"),
                        "credentials": { "secretKey": format!("sk_test_{n}") },
                    })),
                201,
            ),
            Target::CqrsDemo => {
                // A new stream per request, unique across runs against the same database.
                let id = format!("bench-{run}-{n}");
                (
                    http.post(format!("{url}/{id}"))
                        .json(&json!({ "OpenAccount": { "account_id": id } })),
                    204,
                )
            }
        };
        let started = Instant::now();
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let text = response.text().await?;
            Ok::<_, reqwest::Error>((status, text))
        }
        .await;
        let finished = Instant::now();
        let ok = match outcome {
            Ok((status, _)) if status.as_u16() == expected => true,
            Ok((status, text)) => {
                if result.samples.len() < 3 {
                    result
                        .samples
                        .push(format!("HTTP {status}: {}", truncate(&text, 300)));
                }
                false
            }
            Err(err) => {
                if result.samples.len() < 3 {
                    result.samples.push(format!("transport error: {err}"));
                }
                false
            }
        };
        if !ok {
            result.errors += 1;
        }
        if started < window_start {
            result.warmup_requests += 1;
        } else if finished <= window_end && ok {
            result
                .latencies_us
                .push(finished.duration_since(started).as_micros() as u64);
        }
    }
    result
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

async fn run_load(args: Args) -> i32 {
    let (path, success) = match args.target {
        Target::Listbackup => ("/connections", "did not answer 201"),
        Target::CqrsDemo => ("/account", "did not answer 204"),
    };
    let url = Arc::new(format!("{}{path}", args.url));
    let run = Arc::new(uuid::Uuid::new_v4().simple().to_string()[..12].to_owned());
    let token = Arc::new(args.token.clone());
    let counter = Arc::new(AtomicU64::new(1));
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup);
    let window_end = window_start + Duration::from_secs_f64(args.duration);
    let mut tasks = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        // One client, one connection: like 32 independent API clients (and like pgbench's -c 32).
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("building the HTTP client");
        tasks.push(tokio::spawn(client_loop(
            http,
            args.target,
            run.clone(),
            url.clone(),
            token.clone(),
            counter.clone(),
            window_start,
            window_end,
        )));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("a client task panicked"));
    }
    let shape = RunShape {
        name: "load_post_connections",
        clients: args.clients,
        warmup_seconds: args.warmup,
        seconds: args.duration,
    };
    summarize(&shape, results, success)
}

async fn delete_stream(nats_url: &str, stream: &str) -> i32 {
    let client = match async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(nats_url)
        .await
    {
        Ok(client) => client,
        Err(err) => {
            eprintln!("load_post_connections: cannot connect to NATS at {nats_url}: {err}");
            return 1;
        }
    };
    let jetstream = async_nats::jetstream::new(client);
    match jetstream.delete_stream(stream).await {
        Ok(_) => 0,
        Err(err) => {
            eprintln!("load_post_connections: deleting stream {stream}: {err}");
            1
        }
    }
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("building the runtime");
    let code = runtime.block_on(async move {
        match args.delete_stream.clone() {
            Some(stream) => delete_stream(&args.nats_url, &stream).await,
            None => run_load(args).await,
        }
    });
    std::process::exit(code);
}
