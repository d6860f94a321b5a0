//! Driver of the jobs benchmarks `bench/sync-dispatch` and `bench/backup-throughput` (run by a person, never by
//! the test suite). It talks to a running `listbackup` through its REST API, and reads the event log directly
//! for the times that count: `recorded_at` of the events, stamped by PostgreSQL, not by this client.
//!
//!   load_jobs dispatch --url URL --token JWT --database-url URL --connection ID
//!                      [--jobs 500] [--warmup-jobs 5] [--concurrency 1] [--pause-ms 200] [--timeout 60]
//!   load_jobs backup   --url URL --token JWT --database-url URL --connection ID
//!                      [--data-type customers] [--timeout 7200]
//!   load_jobs delete-nats-stream NAME [--nats-url nats://127.0.0.1:4222]
//!
//! `dispatch` creates `warmup-jobs + jobs` sources on the connection (one job each: a source has at most one
//! active job), then syncs them with `concurrency` clients in a closed loop: a client sends
//! `POST /sources/{id}/sync` and waits for the job to end before it sends its next one, so with the default
//! single client every job finds the worker idle and what is measured is dispatch, not queueing. Before each
//! sync a client pauses for a random 0 to `pause-ms` milliseconds, so that syncs do not fall in step with
//! periodic work in the service (a loop that starts right after a job ends would always arrive at the same
//! point of, say, a polling interval, and measure that point instead of the spread). The first `warmup-jobs`
//! are not counted. Per job it reports, as exact nearest-rank percentiles:
//!   - `SyncRequested` → `JobStarted`, both `recorded_at` in the event log (the dispatch itself: commit, relay,
//!     JetStream, worker, the Job stream's first append);
//!   - the client's POST sent → `JobStarted.recorded_at` (client and database share this machine's clock);
//!   - the POST's answer time (202, with the read-your-writes wait).
//!
//! `backup` creates one source with one data type, syncs it, waits for the job to end and reports its records,
//! stored bytes and duration from the event log (`JobStarted` → `JobSucceeded`), hence records per second.
//!
//! Each mode prints one JSON object on stdout and exits 1 when a job did not succeed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_postgres::NoTls;

fn usage(message: &str) -> ! {
    eprintln!("load_jobs: {message}");
    eprintln!(
        "usage: load_jobs dispatch --url URL --token JWT --database-url URL --connection ID [--jobs N] [--warmup-jobs N] [--concurrency N] [--pause-ms MS] [--timeout SECS]\n       load_jobs backup --url URL --token JWT --database-url URL --connection ID [--data-type NAME] [--timeout SECS]\n       load_jobs delete-nats-stream NAME [--nats-url URL]"
    );
    std::process::exit(2);
}

struct Flags(std::collections::HashMap<String, String>);

impl Flags {
    fn parse(mut args: impl Iterator<Item = String>) -> Self {
        let mut map = std::collections::HashMap::new();
        while let Some(flag) = args.next() {
            if !flag.starts_with("--") {
                usage(&format!("unexpected argument {flag}"));
            }
            let value = args
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            map.insert(flag, value);
        }
        Self(map)
    }

    fn text(&mut self, name: &str) -> String {
        self.0
            .remove(name)
            .unwrap_or_else(|| usage(&format!("{name} is required")))
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        match self.0.remove(name) {
            Some(raw) => raw
                .parse()
                .unwrap_or_else(|_| usage(&format!("bad {name}: {raw}"))),
            None => default,
        }
    }

    fn done(self) {
        if let Some(flag) = self.0.keys().next() {
            usage(&format!("unknown argument {flag}"));
        }
    }
}

/// What every mode talks to.
struct Service {
    http: reqwest::Client,
    url: String,
    token: String,
    db: tokio_postgres::Client,
}

impl Service {
    async fn connect(flags: &mut Flags) -> Result<Self, String> {
        let url = flags.text("--url").trim_end_matches('/').to_owned();
        let token = flags.text("--token");
        let database_url = flags.text("--database-url");
        let (db, connection) = tokio_postgres::connect(&database_url, NoTls)
            .await
            .map_err(|e| format!("database: {e}"))?;
        tokio::spawn(connection);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            url,
            token,
            db,
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("POST {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Creates a source of `data_type` on the connection; returns its id.
    async fn create_source(
        &self,
        connection: &str,
        name: &str,
        data_type: &str,
    ) -> Result<String, String> {
        let (status, body) = self
            .post(
                "/sources",
                &json!({"connectionId": connection, "name": name, "dataTypes": [data_type]}),
            )
            .await?;
        match body["sourceId"].as_str() {
            Some(id) if status == 201 => Ok(id.to_owned()),
            _ => Err(format!("POST /sources answered {status}: {body}")),
        }
    }

    /// Queues a job; returns its id.
    async fn sync(&self, source_id: &str) -> Result<String, String> {
        let (status, body) = self
            .post(&format!("/sources/{source_id}/sync"), &json!({}))
            .await?;
        match body["jobId"].as_str() {
            Some(id) if status == 202 => Ok(id.to_owned()),
            _ => Err(format!(
                "POST /sources/{source_id}/sync answered {status}: {body}"
            )),
        }
    }

    /// The job's last event once it has ended (`JobSucceeded`, `JobFailed` or `JobCancelled`).
    async fn ended(&self, job_id: &str) -> Result<Option<String>, String> {
        let row = self
            .db
            .query_opt(
                "SELECT event_type FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 \
                 AND event_type IN ('JobSucceeded', 'JobFailed', 'JobCancelled') LIMIT 1",
                &[&job_id],
            )
            .await
            .map_err(|e| format!("database: {e}"))?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Polls the event log every `interval` until the job has ended.
    async fn wait_for_end(
        &self,
        job_id: &str,
        interval: Duration,
        timeout: Duration,
        mut on_wait: impl FnMut(Duration),
    ) -> Result<String, String> {
        let started = Instant::now();
        loop {
            if let Some(outcome) = self.ended(job_id).await? {
                return Ok(outcome);
            }
            if started.elapsed() > timeout {
                return Err(format!(
                    "job {job_id} did not end within {} s",
                    timeout.as_secs()
                ));
            }
            on_wait(started.elapsed());
            tokio::time::sleep(interval).await;
        }
    }

    /// The `JobFailed` message of a job, to show why it failed.
    async fn failure(&self, job_id: &str) -> String {
        self.db
            .query_opt(
                "SELECT payload::text FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 \
                 AND event_type = 'JobFailed' LIMIT 1",
                &[&job_id],
            )
            .await
            .ok()
            .flatten()
            .map_or_else(|| "no JobFailed event".to_owned(), |r| r.get(0))
    }
}

fn unix_micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Exact nearest-rank percentiles of microsecond values, in milliseconds.
fn distribution(mut values_us: Vec<i64>) -> Value {
    values_us.sort_unstable();
    let ms = |us: i64| (us as f64 / 10.0).round() / 100.0;
    let percentile = |p: f64| {
        if values_us.is_empty() {
            return Value::Null;
        }
        let rank = ((p / 100.0) * values_us.len() as f64).ceil().max(1.0) as usize;
        json!(ms(values_us[rank.min(values_us.len()) - 1]))
    };
    let mean = if values_us.is_empty() {
        Value::Null
    } else {
        json!(ms(values_us.iter().sum::<i64>() / values_us.len() as i64))
    };
    json!({
        "count": values_us.len(),
        "min_ms": values_us.first().map(|v| ms(*v)),
        "p50_ms": percentile(50.0),
        "p90_ms": percentile(90.0),
        "p99_ms": percentile(99.0),
        "max_ms": values_us.last().map(|v| ms(*v)),
        "mean_ms": mean,
    })
}

// ---------------------------------------------------------------------------------------------------------
// dispatch

/// One measured sync, as the client saw it.
struct Dispatched {
    job_id: String,
    sent_us: i64,
    answered_us: i64,
    outcome: String,
}

async fn dispatch(mut flags: Flags) -> Result<(Value, bool), String> {
    let service = Service::connect(&mut flags).await?;
    let connection = flags.text("--connection");
    let jobs: usize = flags.number("--jobs", 500);
    let warmup: usize = flags.number("--warmup-jobs", 5);
    let concurrency: usize = flags.number("--concurrency", 1);
    let pause_ms: u64 = flags.number("--pause-ms", 200);
    let timeout = Duration::from_secs(flags.number("--timeout", 60));
    flags.done();
    if jobs == 0 || concurrency == 0 {
        usage("--jobs and --concurrency must be at least 1");
    }

    let total = warmup + jobs;
    eprintln!("load_jobs: creating {total} sources");
    let service = &service;
    let connection = &connection;
    let created: Vec<Result<String, String>> = futures::stream::iter(0..total)
        .map(|i| async move {
            service
                .create_source(connection, &format!("dispatch {i}"), "customers")
                .await
        })
        .buffered(4)
        .collect()
        .await;
    let sources = created.into_iter().collect::<Result<Vec<_>, _>>()?;

    eprintln!(
        "load_jobs: {warmup} warm-up jobs, then {jobs} measured, {concurrency} client(s) in a closed loop"
    );
    let next = std::sync::atomic::AtomicUsize::new(0);
    let sources = &sources;
    let next = &next;
    let started = Instant::now();
    let clients = (0..concurrency).map(|_| async move {
        let mut mine = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(source) = sources.get(i) else {
                return Ok::<_, String>(mine);
            };
            if pause_ms > 0 {
                let pause = rand::random::<f64>() * pause_ms as f64;
                tokio::time::sleep(Duration::from_secs_f64(pause / 1000.0)).await;
            }
            let sent = SystemTime::now();
            let job_id = service.sync(source).await?;
            let answered = SystemTime::now();
            let outcome = service
                .wait_for_end(&job_id, Duration::from_millis(5), timeout, |_| {})
                .await?;
            if (i + 1).is_multiple_of(100) {
                eprintln!("load_jobs: {} jobs done", i + 1);
            }
            mine.push((
                i,
                Dispatched {
                    job_id,
                    sent_us: unix_micros(sent),
                    answered_us: unix_micros(answered),
                    outcome,
                },
            ));
        }
    });
    let results = futures::future::join_all(clients).await;
    let elapsed = started.elapsed();
    let finished_us = unix_micros(SystemTime::now());
    let mut all = Vec::new();
    for result in results {
        all.extend(result?);
    }
    all.sort_by_key(|(i, _)| *i);
    let measured: Vec<Dispatched> = all
        .into_iter()
        .filter(|(i, _)| *i >= warmup)
        .map(|(_, d)| d)
        .collect();
    // Throughput of the measured jobs only: from the first one's POST to the end of the last one.
    let measured_seconds = measured
        .first()
        .map_or(0.0, |first| (finished_us - first.sent_us) as f64 / 1e6);

    // The times that count, from the log: when the request was recorded and when the worker started the job.
    let ids: Vec<&str> = measured.iter().map(|d| d.job_id.as_str()).collect();
    let rows = service
        .db
        .query(
            "SELECT j.aggregate_id,
                    (extract(epoch FROM s.recorded_at) * 1000000)::bigint,
                    (extract(epoch FROM j.recorded_at) * 1000000)::bigint
             FROM events j
             JOIN events s ON s.aggregate_type = 'source' AND s.event_type = 'SyncRequested'
                          AND s.payload -> 'SyncRequested' ->> 'jobId' = j.aggregate_id
             WHERE j.aggregate_type = 'job' AND j.event_type = 'JobStarted'
               AND j.aggregate_id = ANY($1)",
            &[&ids],
        )
        .await
        .map_err(|e| format!("database: {e}"))?;
    let times: std::collections::HashMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
        .collect();
    let mut dispatch_us = Vec::new();
    let mut client_us = Vec::new();
    let mut answer_us = Vec::new();
    let mut failed = Vec::new();
    for d in &measured {
        answer_us.push(d.answered_us - d.sent_us);
        if d.outcome != "JobSucceeded" {
            failed.push(format!("{} {}", d.job_id, d.outcome));
        }
        if let Some((requested, started)) = times.get(&d.job_id) {
            dispatch_us.push(started - requested);
            client_us.push(started - d.sent_us);
        }
    }
    let missing = measured.len() - dispatch_us.len();
    if let Some(job) = failed.first() {
        let id = job.split(' ').next().unwrap_or_default();
        eprintln!(
            "load_jobs: {} job(s) did not succeed, e.g. {job}: {}",
            failed.len(),
            service.failure(id).await
        );
    }
    let ok = failed.is_empty() && missing == 0;
    Ok((
        json!({
            "jobs": measured.len(),
            "warmup_jobs": warmup,
            "concurrency": concurrency,
            "pause_ms": pause_ms,
            "succeeded": measured.len() - failed.len(),
            "failed": failed.len(),
            "missing_job_started": missing,
            "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
            "jobs_per_second": ((measured.len() as f64 / measured_seconds.max(1e-9)) * 10.0).round() / 10.0,
            "requested_to_started": distribution(dispatch_us),
            "post_to_started": distribution(client_us),
            "post_answer": distribution(answer_us),
        }),
        ok,
    ))
}

// ---------------------------------------------------------------------------------------------------------
// backup

async fn backup(mut flags: Flags) -> Result<(Value, bool), String> {
    let service = Service::connect(&mut flags).await?;
    let connection = flags.text("--connection");
    let data_type = flags
        .0
        .remove("--data-type")
        .unwrap_or_else(|| "customers".to_owned());
    let timeout = Duration::from_secs(flags.number("--timeout", 7200));
    flags.done();

    let source = service
        .create_source(&connection, "backup benchmark", &data_type)
        .await?;
    let sent = Instant::now();
    let job_id = service.sync(&source).await?;
    eprintln!("load_jobs: job {job_id} queued");
    let mut reported = 0;
    let outcome = service
        .wait_for_end(&job_id, Duration::from_millis(100), timeout, |waited| {
            if waited.as_secs() >= reported + 30 {
                reported = waited.as_secs();
                eprintln!("load_jobs: still running after {reported} s");
            }
        })
        .await?;
    let client_seconds = sent.elapsed().as_secs_f64();
    if outcome != "JobSucceeded" {
        return Ok((
            json!({"job_id": job_id, "outcome": outcome, "failure": service.failure(&job_id).await}),
            false,
        ));
    }
    let row = service
        .db
        .query_one(
            "SELECT (extract(epoch FROM st.recorded_at - rq.recorded_at) * 1000)::float8,
                    extract(epoch FROM ok.recorded_at - st.recorded_at)::float8,
                    (ok.payload -> 'JobSucceeded' ->> 'records')::bigint,
                    (ok.payload -> 'JobSucceeded' ->> 'bytes')::bigint,
                    ok.payload -> 'JobSucceeded' ->> 'manifest'
             FROM events st
             JOIN events ok ON ok.aggregate_type = 'job' AND ok.aggregate_id = st.aggregate_id
                           AND ok.event_type = 'JobSucceeded'
             JOIN events rq ON rq.aggregate_type = 'source' AND rq.event_type = 'SyncRequested'
                           AND rq.payload -> 'SyncRequested' ->> 'jobId' = st.aggregate_id
             WHERE st.aggregate_type = 'job' AND st.aggregate_id = $1 AND st.event_type = 'JobStarted'",
            &[&job_id],
        )
        .await
        .map_err(|e| format!("database: {e}"))?;
    let requested_to_started_ms: f64 = row.get(0);
    let seconds: f64 = row.get(1);
    let records: i64 = row.get(2);
    let bytes: i64 = row.get(3);
    let manifest: String = row.get(4);
    Ok((
        json!({
            "job_id": job_id,
            "source_id": source,
            "outcome": outcome,
            "records": records,
            "stored_bytes": bytes,
            "manifest": manifest,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "records_per_second": (records as f64 / seconds.max(1e-9)).round() as u64,
            "requested_to_started_ms": (requested_to_started_ms * 100.0).round() / 100.0,
            "client_seconds": (client_seconds * 1000.0).round() / 1000.0,
        }),
        true,
    ))
}

// ---------------------------------------------------------------------------------------------------------

async fn delete_stream(mut args: impl Iterator<Item = String>) -> Result<(Value, bool), String> {
    let stream = args
        .next()
        .unwrap_or_else(|| usage("delete-nats-stream needs a stream name"));
    let mut flags = Flags::parse(args);
    let nats_url = flags
        .0
        .remove("--nats-url")
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned());
    flags.done();
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(3))
        .connect(&nats_url)
        .await
        .map_err(|e| format!("cannot connect to NATS at {nats_url}: {e}"))?;
    async_nats::jetstream::new(client)
        .delete_stream(&stream)
        .await
        .map_err(|e| format!("deleting stream {stream}: {e}"))?;
    Ok((json!({"deleted": stream}), true))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage("which mode?"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    let outcome = runtime.block_on(async move {
        match mode.as_str() {
            "dispatch" => dispatch(Flags::parse(args)).await,
            "backup" => backup(Flags::parse(args)).await,
            "delete-nats-stream" => delete_stream(args).await,
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown mode {other}")),
        }
    });
    match outcome {
        Ok((summary, ok)) => {
            println!("{summary}");
            std::process::exit(if ok { 0 } else { 1 });
        }
        Err(err) => {
            eprintln!("load_jobs: {err}");
            std::process::exit(1);
        }
    }
}
