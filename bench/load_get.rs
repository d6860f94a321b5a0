//! Load generator for `bench/list-sources` (a benchmark run by a person, never by the test suite).
//!
//! N concurrent clients, each with its own HTTP/1.1 keep-alive connection, send the same `GET` back to back
//! (closed loop). After a warm-up, every request that *completes* inside the measurement window is counted and
//! its latency (send to full body received) recorded; percentiles are exact (nearest rank over the sorted
//! latencies). Prints one JSON object on stdout; any answer other than 200 (warm-up included) is an error, and
//! the process exits 1 if there was any. `--expect-items N` also checks that answers' `--items` array holds
//! exactly N elements, so a benchmark cannot silently measure empty pages: every warm-up answer and every
//! 32nd measured one of each client (parsing every body would take CPU from the server it shares a machine with).
//!
//!   load_get --url 'http://127.0.0.1:8080/sources?status=active&limit=50' --token <jwt>
//!            [--clients 32] [--duration 20] [--warmup 3] [--threads 1] [--items sources] [--expect-items 50]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "load_report.rs"]
mod load_report;
use load_report::{summarize, ClientResult, RunShape};

struct Args {
    url: String,
    token: String,
    clients: usize,
    duration: f64,
    warmup: f64,
    threads: usize,
    items: String,
    expect_items: Option<usize>,
}

fn usage(message: &str) -> ! {
    eprintln!("load_get: {message}");
    eprintln!(
        "usage: load_get --url URL --token JWT [--clients N] [--duration SECS] [--warmup SECS] [--threads N] [--items FIELD] [--expect-items N]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        token: String::new(),
        clients: 32,
        duration: 20.0,
        warmup: 3.0,
        threads: 1,
        items: "sources".into(),
        expect_items: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--url" => args.url = value(),
            "--token" => args.token = value(),
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
            "--items" => args.items = value(),
            "--expect-items" => {
                args.expect_items = Some(
                    value()
                        .parse()
                        .unwrap_or_else(|_| usage("bad --expect-items")),
                )
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if args.url.is_empty() || args.token.is_empty() {
        usage("--url and --token are required");
    }
    if args.clients == 0 || args.duration <= 0.0 || args.warmup < 0.0 || args.threads == 0 {
        usage("--clients, --duration and --threads must be positive, --warmup not negative");
    }
    args
}

struct Shared {
    url: String,
    token: String,
    items: String,
    expect_items: Option<usize>,
    window_start: Instant,
    window_end: Instant,
}

async fn client_loop(http: reqwest::Client, shared: Arc<Shared>) -> ClientResult {
    let mut result = ClientResult::default();
    let mut sent: u64 = 0;
    while Instant::now() < shared.window_end {
        let started = Instant::now();
        sent += 1;
        let check = started < shared.window_start || sent.is_multiple_of(32);
        let outcome = async {
            let response = http
                .get(shared.url.as_str())
                .bearer_auth(shared.token.as_str())
                .send()
                .await?;
            let status = response.status();
            let bytes = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, bytes))
        }
        .await;
        let finished = Instant::now();
        let problem = match outcome {
            Ok((status, bytes)) if status.as_u16() == 200 => match shared.expect_items {
                Some(expected) if check => {
                    let count = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get(&shared.items).and_then(Value::as_array).map(Vec::len));
                    (count != Some(expected))
                        .then(|| format!("expected {expected} {}, got {count:?}", shared.items))
                }
                _ => None,
            },
            Ok((status, bytes)) => Some(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )),
            Err(err) => Some(format!("transport error: {err}")),
        };
        let ok = problem.is_none();
        if let Some(problem) = problem {
            result.errors += 1;
            if result.samples.len() < 3 {
                result.samples.push(problem);
            }
        }
        if started < shared.window_start {
            result.warmup_requests += 1;
        } else if finished <= shared.window_end && ok {
            result
                .latencies_us
                .push(finished.duration_since(started).as_micros() as u64);
        }
    }
    result
}

async fn run_load(args: Args) -> i32 {
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(args.warmup);
    let shared = Arc::new(Shared {
        url: args.url.clone(),
        token: args.token.clone(),
        items: args.items.clone(),
        expect_items: args.expect_items,
        window_start,
        window_end: window_start + Duration::from_secs_f64(args.duration),
    });
    let tasks: Vec<_> = (0..args.clients)
        .map(|_| {
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .expect("building the HTTP client");
            tokio::spawn(client_loop(http, shared.clone()))
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("a client task panicked"));
    }
    let shape = RunShape {
        name: "load_get",
        clients: args.clients,
        warmup_seconds: args.warmup,
        seconds: args.duration,
    };
    summarize(&shape, results, "failed")
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("building the runtime");
    std::process::exit(runtime.block_on(run_load(args)));
}
