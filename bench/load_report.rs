//! What the load generators share: each client's tally, and the one summary every run prints (JSON on
//! stdout, exact nearest-rank percentiles over every latency of the measurement window).

use serde_json::json;

/// One client's tally.
#[derive(Default)]
pub struct ClientResult {
    /// Latencies in microseconds of the requests completed inside the measurement window.
    pub latencies_us: Vec<u64>,
    /// Unexpected answers and transport errors, warm-up included.
    pub errors: u64,
    pub warmup_requests: u64,
    /// A few error descriptions, to show what went wrong.
    pub samples: Vec<String>,
}

/// The run's shape, echoed in the summary.
pub struct RunShape {
    /// The generator's name, for stderr lines.
    pub name: &'static str,
    pub clients: usize,
    pub warmup_seconds: f64,
    pub seconds: f64,
}

/// Nearest-rank percentile of sorted values: the smallest value with at least `p`% of values at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1] as f64
}

/// Microseconds as milliseconds with two decimals.
pub fn ms(us: f64) -> f64 {
    (us / 1000.0 * 100.0).round() / 100.0
}

/// Merges the clients' tallies, prints the summary, and returns the exit code: 1 when any request failed
/// (`failure` says what failing means) or none completed.
pub fn summarize(shape: &RunShape, results: Vec<ClientResult>, failure: &str) -> i32 {
    let mut latencies = Vec::new();
    let (mut errors, mut warmup_requests, mut samples) = (0, 0, Vec::new());
    for r in results {
        latencies.extend(r.latencies_us);
        errors += r.errors;
        warmup_requests += r.warmup_requests;
        samples.extend(r.samples);
    }
    latencies.sort_unstable();
    let requests = latencies.len();
    let mean = if requests == 0 {
        f64::NAN
    } else {
        latencies.iter().sum::<u64>() as f64 / requests as f64
    };
    let report = json!({
        "requests": requests,
        "seconds": shape.seconds,
        "rps": ((requests as f64 / shape.seconds) * 10.0).round() / 10.0,
        "p50_ms": ms(percentile(&latencies, 50.0)),
        "p90_ms": ms(percentile(&latencies, 90.0)),
        "p99_ms": ms(percentile(&latencies, 99.0)),
        "max_ms": ms(latencies.last().copied().unwrap_or(0) as f64),
        "mean_ms": ms(mean),
        "errors": errors,
        "clients": shape.clients,
        "warmup_seconds": shape.warmup_seconds,
        "warmup_requests": warmup_requests,
    });
    println!("{report}");
    for sample in samples.iter().take(5) {
        eprintln!("{}: error: {sample}", shape.name);
    }
    if errors > 0 || requests == 0 {
        eprintln!("{}: {errors} request(s) {failure}", shape.name);
        1
    } else {
        0
    }
}
