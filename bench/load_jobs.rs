//! Driver of the jobs benchmarks `bench/sync-dispatch`, `bench/backup-throughput` and `bench/backup-burst`
//! (run by a person, never by the test suite). It talks to a running `listbackup` through its REST API, and reads the event log directly
//! for the times that count: `recorded_at` of the events, stamped by PostgreSQL, not by this client.
//!
//!   load_jobs dispatch --url URL --token JWT --database-url URL --connection ID
//!                      [--jobs 500] [--warmup-jobs 5] [--concurrency 1] [--pause-ms 200] [--timeout 60]
//!   load_jobs backup   --url URL --token JWT --database-url URL --connection ID
//!                      [--data-type customers] [--timeout 7200]
//!   load_jobs burst    --url URL --database-url URL [--sources 1000] [--accounts 100] [--connections 200]
//!                      [--records 500] [--rate 10] [--latency-ms 100] [--workers 1] [--concurrency 16]
//!                      [--clients 16] [--emulator-url URL] [--watch name=pid,…] [--clock-ticks 100]
//!                      [--timeout SECS]
//!   load_jobs expiry   --url URL --token JWT --database-url URL --connection ID [--sources 100]
//!                      [--backups 101] [--clients 16] [--data-type customers] [--timeout 3600]
//!                      [--handshake PATH]
//!   load_jobs delete-nats-streams PREFIX [--nats-url nats://127.0.0.1:4222]
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
//! `burst` (of `bench/backup-burst`) makes a nightly schedule's worth of backups fall due at one instant and
//! times how long the service takes to work through them. It mints an HS256 token per account (from
//! `LISTBACKUP_JWT_SECRET`, as `listbackup token` does), creates `connections` Stripe connections (connection
//! `c` in account `c mod accounts`, key `sk_test_bench_<records>`), then `sources` sources of `customers`
//! (source `s` on connection `s mod connections`), `clients` requests at a time, all with the cron schedule of
//! one slot: the first whole minute after twice the time the sources should take at the pace the connections
//! were created, plus 5 s (a schedule starts from the moment it is set, so every source must exist before
//! it). It fails if any source is due at another time, or if the slot passed before the last one existed.
//! From the slot it waits until the scheduler has queued a job per source and every job has ended (the read
//! model), then reports, from the event log's `recorded_at`: the slot → the last job's terminal event (the
//! figure), next to the ideal for the load, the larger of the busiest connection's pages ÷ `rate` and all
//! pages ÷ (`workers` × `concurrency` slots × pages a slot fetches per second, one per `latency-ms` and at most
//! `rate`); jobs by final status (read model) and failure code; when the scheduler queued them; backups
//! running at once (peak, mean between the first start and the last end, and at each second after the slot)
//! and started in each second; queued → started, started → ended, and within that started → the data type
//! stored (`ResourceBackedUp`) → ended; the most PostgreSQL sessions the service held on its database
//! (sampled every 200 ms); how busy the machine's CPUs were from the slot to the end (`/proc/stat`). With
//! `--emulator-url`, the requests the emulator answered during the burst. With `--watch`, the CPU seconds each
//! named process used from the slot to the end (`/proc/<pid>/stat`, `--clock-ticks` per second) and its peak
//! resident memory (`VmHWM`).
//!
//! `expiry` (of `bench/retention-expiry`) creates `sources` sources of `data-type` on the connection, backs each
//! up `backups` times (the sources in parallel, `clients` at a time, each source's backups one after the other:
//! every one must succeed), then sets `keepLast: 1` on every source (`PUT /sources/{id}`) and waits until the
//! retention sweep has recorded `BackupExpired` for every backup but each source's latest:
//! `sources × (backups − 1)`. It reports, from the event log's `recorded_at`: the first policy change → the
//! last `BackupExpired` (the figure), the last policy change → the last expiry, expiries per second, and the
//! files and bytes the expiries freed (the sum of `BackupExpired {files, bytes}`). With `--handshake PATH` it
//! creates `PATH.seeded` once every backup has succeeded and waits for `PATH` to exist before it changes a
//! policy (the script measures the storage at its fullest meanwhile).
//!
//! `delete-nats-streams` deletes every JetStream stream whose name starts with PREFIX (a run's clean-up).
//!
//! Each mode prints one JSON object on stdout and exits 1 when a job did not succeed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_postgres::NoTls;

fn usage(message: &str) -> ! {
    eprintln!("load_jobs: {message}");
    eprintln!(
        "usage: load_jobs dispatch --url URL --token JWT --database-url URL --connection ID [--jobs N] [--warmup-jobs N] [--concurrency N] [--pause-ms MS] [--timeout SECS]\n       load_jobs backup --url URL --token JWT --database-url URL --connection ID [--data-type NAME] [--timeout SECS]\n       load_jobs burst --url URL --database-url URL [--sources N] [--accounts N] [--connections N] [--records N] [--rate R] [--latency-ms MS] [--workers N] [--concurrency N] [--clients N] [--emulator-url URL] [--watch name=pid,...] [--clock-ticks N] [--timeout SECS]\n       load_jobs delete-nats-streams PREFIX [--nats-url URL]"
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
        let url = flags.text("--url");
        let token = flags.text("--token");
        let database_url = flags.text("--database-url");
        Self::open(&url, token, &database_url).await
    }

    /// `token` is what [`Service::post`] sends; [`Service::post_as`] sends another one.
    async fn open(url: &str, token: String, database_url: &str) -> Result<Self, String> {
        let url = url.trim_end_matches('/').to_owned();
        let (db, connection) = tokio_postgres::connect(database_url, NoTls)
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
        self.post_as(&self.token, path, body).await
    }

    async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let response = self
            .http
            .put(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| format!("PUT {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    async fn post_as(&self, token: &str, path: &str, body: &Value) -> Result<(u16, Value), String> {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
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

    /// Queues a job once the source's previous one is seen to have ended (the source learns of a job's end
    /// from its events, a moment after the job's own stream: until then a sync is a 409); returns its id.
    async fn sync_when_free(&self, source_id: &str, timeout: Duration) -> Result<String, String> {
        let started = Instant::now();
        loop {
            let (status, body) = self
                .post(&format!("/sources/{source_id}/sync"), &json!({}))
                .await?;
            match body["jobId"].as_str() {
                Some(id) if status == 202 => return Ok(id.to_owned()),
                _ if status == 409 && started.elapsed() < timeout => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => {
                    return Err(format!(
                        "POST /sources/{source_id}/sync answered {status}: {body}"
                    ))
                }
            }
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
// burst

/// What `burst` creates and how fast the service may work through it: the inputs of the ideal time.
struct Load {
    sources: usize,
    accounts: usize,
    connections: usize,
    records: u64,
    /// The connection's request budget (`LISTBACKUP_PLATFORM_STRIPE_RATE_LIMIT`), requests per second.
    rate: f64,
    /// The emulation's delay before each answer.
    latency_ms: u64,
    /// Worker processes, and backups each runs at once (`LISTBACKUP_WORKER_CONCURRENCY`).
    workers: usize,
    concurrency: usize,
}

impl Load {
    /// Pages of one source: 100 customers a page, and one (empty) page for an empty list.
    fn pages_per_source(&self) -> u64 {
        self.records.div_ceil(100).max(1)
    }

    /// Connection `c` belongs to account `c mod accounts`, source `s` to connection `s mod connections`.
    fn sources_on_busiest_connection(&self) -> u64 {
        self.sources.div_ceil(self.connections) as u64
    }

    /// The shortest time the load can take, in seconds, and which limit sets it:
    /// - `connection_rate`: the busiest connection's pages at its rate (its backups share one budget);
    /// - `concurrency`: every page through every slot, a slot fetching one page at a time, each taking the
    ///   emulation's latency (and never faster than the connection's rate); slots beyond one connection's share
    ///   of the rate add nothing, so at most `connections × rate` pages/s overall.
    fn ideal(&self) -> (f64, &'static str, f64) {
        let pages = self.pages_per_source();
        let by_connection = (self.sources_on_busiest_connection() * pages) as f64 / self.rate;
        let per_slot = if self.latency_ms == 0 {
            self.rate
        } else {
            (1000.0 / self.latency_ms as f64).min(self.rate)
        };
        let capacity = ((self.workers * self.concurrency) as f64 * per_slot)
            .min(self.connections as f64 * self.rate);
        let by_concurrency = (self.sources as u64 * pages) as f64 / capacity;
        if by_connection >= by_concurrency {
            (by_connection, "connection_rate", capacity)
        } else {
            (by_concurrency, "concurrency", capacity)
        }
    }
}

/// A process whose CPU time and peak memory the burst reports (`--watch name=pid,…`).
struct Watched {
    name: String,
    pid: u32,
}

/// CPU seconds (user + system) the process has used so far, from `/proc/<pid>/stat` fields 14 and 15.
fn cpu_seconds(pid: u32, clock_ticks: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after its closing one.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks)
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat`: (busy, total) in clock ticks,
/// idle and I/O wait counting as not busy.
fn machine_cpu() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// A `/proc/<pid>/status` memory field (`VmHWM`, `VmRSS`) in MiB.
fn memory_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// The emulator's request counters (`GET /_emulator/stats`), if it was given.
async fn emulator_stats(http: &reqwest::Client, url: Option<&str>) -> Option<Value> {
    let response = http
        .get(format!("{}/_emulator/stats", url?))
        .send()
        .await
        .ok()?;
    response.json().await.ok()
}

async fn burst(mut flags: Flags) -> Result<(Value, bool), String> {
    let url = flags.text("--url");
    let database_url = flags.text("--database-url");
    let load = Load {
        sources: flags.number("--sources", 1000),
        accounts: flags.number("--accounts", 100),
        connections: flags.number("--connections", 200),
        records: flags.number("--records", 500),
        rate: flags.number("--rate", 10.0),
        latency_ms: flags.number("--latency-ms", 100),
        workers: flags.number("--workers", 1),
        concurrency: flags.number("--concurrency", 16),
    };
    let clients: usize = flags.number("--clients", 16);
    let clock_ticks: f64 = flags.number("--clock-ticks", 100.0);
    let emulator_url = flags
        .0
        .remove("--emulator-url")
        .map(|u| u.trim_end_matches('/').to_owned());
    let watched: Vec<Watched> = flags
        .0
        .remove("--watch")
        .unwrap_or_default()
        .split(',')
        .filter(|item| !item.is_empty())
        .map(|item| {
            let (name, pid) = item
                .split_once('=')
                .unwrap_or_else(|| usage(&format!("--watch takes name=pid,…, not {item}")));
            let pid = pid
                .parse()
                .unwrap_or_else(|_| usage(&format!("--watch: bad pid in {item}")));
            Watched {
                name: name.to_owned(),
                pid,
            }
        })
        .collect();
    let timeout_flag: Option<u64> = flags.0.remove("--timeout").map(|raw| {
        raw.parse()
            .unwrap_or_else(|_| usage(&format!("bad --timeout: {raw}")))
    });
    flags.done();
    if load.accounts == 0 || load.connections < load.accounts || load.sources < load.connections {
        usage("need 1 ≤ --accounts ≤ --connections ≤ --sources (every account has a connection, every connection a source)");
    }
    if clients == 0
        || load.workers == 0
        || load.concurrency == 0
        || !load.rate.is_finite()
        || load.rate <= 0.0
    {
        usage("--clients, --workers, --concurrency and --rate must be positive");
    }
    let (ideal, bound, capacity) = load.ideal();
    let timeout = Duration::from_secs(timeout_flag.unwrap_or((ideal * 20.0).max(600.0) as u64));

    let service = Service::open(&url, String::new(), &database_url).await?;
    let auth = listbackup_api::auth::AuthConfig::from_env();
    let tokens = (0..load.accounts)
        .map(|a| {
            listbackup_api::auth::mint_hs256_token(
                &auth,
                &format!("burst-{a:04}"),
                "bench",
                &[listbackup_api::auth::Role::Owner],
                Duration::from_secs(24 * 3600),
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("minting the accounts' tokens: {e}"))?;

    // The connections, `clients` requests at a time; how long they take sizes the lead time of the slot.
    let service = &service;
    let tokens = &tokens;
    let load = &load;
    eprintln!(
        "load_jobs: creating {} connections in {} accounts ({clients} clients)",
        load.connections, load.accounts
    );
    let started = Instant::now();
    let connections: Vec<String> = futures::stream::iter(0..load.connections)
        .map(|c| async move {
            let body = json!({
                "platformId": "stripe",
                "name": format!("burst {c}"),
                "credentials": {"secretKey": format!("sk_test_bench_{}", load.records)},
            });
            let (status, answer) = service
                .post_as(&tokens[c % load.accounts], "/connections", &body)
                .await?;
            match answer["connectionId"].as_str() {
                Some(id) if status == 201 => Ok(id.to_owned()),
                _ => Err(format!("POST /connections answered {status}: {answer}")),
            }
        })
        .buffered(clients)
        .collect::<Vec<Result<String, String>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let connections_seconds = started.elapsed().as_secs_f64();

    // The slot: the first whole minute after twice the time the sources should take at the connections'
    // pace, plus 5 s, so that every source exists before it (a schedule starts from the moment it is set).
    let expected = connections_seconds / load.connections as f64 * load.sources as f64;
    let lead = Duration::from_secs_f64(expected * 2.0 + 5.0);
    let earliest =
        chrono::Utc::now() + chrono::Duration::from_std(lead).map_err(|e| e.to_string())?;
    let minute = earliest.timestamp().div_euclid(60) + 1;
    let slot = chrono::DateTime::<chrono::Utc>::from_timestamp(minute * 60, 0)
        .ok_or("the slot is out of range")?;
    let cron = format!("{} {} * * *", slot.format("%-M"), slot.format("%-H"));
    eprintln!(
        "load_jobs: {} connections in {connections_seconds:.1} s; creating {} sources due at {} (cron \"{cron}\" UTC, in {:.0} s)",
        load.connections,
        load.sources,
        slot.to_rfc3339(),
        (slot - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0
    );
    let connections = &connections;
    let cron = &cron;
    let started = Instant::now();
    let sources: Vec<String> = futures::stream::iter(0..load.sources)
        .map(|s| async move {
            let c = s % load.connections;
            let body = json!({
                "connectionId": connections[c],
                "name": format!("burst {s}"),
                "dataTypes": ["customers"],
                "schedule": {"cron": cron, "timezone": "UTC"},
            });
            let (status, answer) = service
                .post_as(&tokens[c % load.accounts], "/sources", &body)
                .await?;
            let Some(id) = answer["sourceId"].as_str().filter(|_| status == 201) else {
                return Err(format!("POST /sources answered {status}: {answer}"));
            };
            let next = answer["nextSyncAt"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if next.map(|t| t.to_utc()) != Some(slot) {
                return Err(format!(
                    "source {id} is next due at {}, not at the slot {}: the slot passed while the sources were created",
                    answer["nextSyncAt"],
                    slot.to_rfc3339()
                ));
            }
            Ok(id.to_owned())
        })
        .buffered(clients)
        .collect::<Vec<Result<String, String>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let sources_seconds = started.elapsed().as_secs_f64();
    let margin = (slot - chrono::Utc::now()).num_milliseconds() as f64 / 1000.0;
    if margin <= 0.0 {
        return Err(format!(
            "the slot {} passed {:.1} s before the {} sources were all created ({sources_seconds:.1} s, expected \
             {expected:.1} s from the connections' pace): the scheduler may have started early; run again",
            slot.to_rfc3339(),
            -margin,
            sources.len()
        ));
    }
    let due: i64 = service
        .db
        .query_one(
            "SELECT count(*) FROM read_sources WHERE next_scheduled_at = $1",
            &[&slot],
        )
        .await
        .map_err(|e| format!("database: {e}"))?
        .get(0);
    if due != load.sources as i64 {
        return Err(format!(
            "{due} sources are due at the slot in the read model, not {}",
            load.sources
        ));
    }
    eprintln!(
        "load_jobs: {} sources in {sources_seconds:.1} s, all due at the slot; waiting {margin:.1} s for it",
        sources.len()
    );

    // The burst: from the slot until every job has ended (read model), with progress every 5 s.
    let slot_instant = Instant::now() + Duration::from_secs_f64(margin);
    tokio::time::sleep_until(slot_instant.into()).await;
    let cpu_at_slot: Vec<Option<f64>> = watched
        .iter()
        .map(|w| cpu_seconds(w.pid, clock_ticks))
        .collect();
    let machine_at_slot = machine_cpu();
    let emulator_before = emulator_stats(&service.http, emulator_url.as_deref()).await;
    let mut last_report = 0u64;
    let mut finished = false;
    let mut counts = (0i64, 0i64, 0i64);
    // The service's PostgreSQL sessions on this database (every process; the driver's own excluded).
    let mut peak_sessions = 0i64;
    while slot_instant.elapsed() < timeout {
        let row = service
            .db
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE status = 'running'), \
                        count(*) FILTER (WHERE finished_at IS NOT NULL), \
                        (SELECT count(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND pid <> pg_backend_pid()) \
                 FROM read_jobs",
                &[],
            )
            .await
            .map_err(|e| format!("database: {e}"))?;
        counts = (row.get(0), row.get(1), row.get(2));
        peak_sessions = peak_sessions.max(row.get(3));
        if counts.0 >= load.sources as i64 && counts.2 == counts.0 {
            finished = true;
            break;
        }
        let waited = slot_instant.elapsed().as_secs();
        if waited >= last_report + 5 {
            last_report = waited;
            eprintln!(
                "load_jobs: slot + {waited} s: {} jobs queued by the scheduler, {} running, {} ended",
                counts.0, counts.1, counts.2
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let processes: serde_json::Map<String, Value> = watched
        .iter()
        .zip(&cpu_at_slot)
        .map(|(w, before)| {
            let now = cpu_seconds(w.pid, clock_ticks);
            let during = match (before, now) {
                (Some(a), Some(b)) => json!(round_to(b - a, 2)),
                _ => Value::Null,
            };
            (
                w.name.clone(),
                json!({
                    "pid": w.pid,
                    "cpu_seconds_burst": during,
                    "cpu_seconds_total": now.map(|c| round_to(c, 2)),
                    "peak_rss_mib": memory_mib(w.pid, "VmHWM").map(|m| round_to(m, 1)),
                    "rss_mib": memory_mib(w.pid, "VmRSS").map(|m| round_to(m, 1)),
                }),
            )
        })
        .collect();
    let emulator_after = emulator_stats(&service.http, emulator_url.as_deref()).await;
    // How busy the whole machine was (every process, PostgreSQL and other users' work included).
    let machine_busy = match (machine_at_slot, machine_cpu()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            json!(round_to(100.0 * (b1 - b0) as f64 / (t1 - t0) as f64, 1))
        }
        _ => Value::Null,
    };

    // The figures, from the log and the read model.
    let slot_us = slot.timestamp_micros();
    let db = &service.db;
    let query = |sql: &'static str| async move {
        db.query(sql, &[])
            .await
            .map_err(|e| format!("database: {e}"))
    };
    let statuses: serde_json::Map<String, Value> =
        query("SELECT status, count(*) FROM read_jobs GROUP BY status ORDER BY status")
            .await?
            .iter()
            .map(|r| (r.get::<_, String>(0), json!(r.get::<_, i64>(1))))
            .collect();
    let failures: serde_json::Map<String, Value> = query(
        "SELECT payload -> 'JobFailed' ->> 'code', count(*) FROM events \
         WHERE aggregate_type = 'job' AND event_type = 'JobFailed' GROUP BY 1 ORDER BY 1",
    )
    .await?
    .iter()
    .map(|r| {
        (
            r.get::<_, Option<String>>(0).unwrap_or_default(),
            json!(r.get::<_, i64>(1)),
        )
    })
    .collect();
    let attempts = query(
        "SELECT count(*) FILTER (WHERE attempt > 1), coalesce(max(attempt), 0) FROM read_jobs",
    )
    .await?;
    let (retried, max_attempt): (i64, i32) = (attempts[0].get(0), attempts[0].get(1));
    let skipped: i64 =
        query("SELECT count(*) FROM events WHERE event_type = 'SyncSkipped'").await?[0].get(0);
    // Per job: when the scheduler queued it, when a worker first started it, when it ended, when its (last)
    // data type was stored.
    let mut jobs: std::collections::HashMap<String, [Option<i64>; 4]> = Default::default();
    for row in query(
        "SELECT payload -> 'SyncRequested' ->> 'jobId', \
                (extract(epoch FROM recorded_at) * 1000000)::bigint \
         FROM events WHERE aggregate_type = 'source' AND event_type = 'SyncRequested' \
           AND payload -> 'SyncRequested' ->> 'trigger' = 'schedule'",
    )
    .await?
    {
        jobs.entry(row.get(0)).or_default()[0] = Some(row.get(1));
    }
    for row in query(
        "SELECT aggregate_id, event_type, (extract(epoch FROM recorded_at) * 1000000)::bigint \
         FROM events WHERE aggregate_type = 'job' \
           AND event_type IN ('JobStarted', 'ResourceBackedUp', 'JobSucceeded', 'JobFailed', 'JobCancelled')",
    )
    .await?
    {
        let times = jobs.entry(row.get(0)).or_default();
        let at: i64 = row.get(2);
        match row.get::<_, String>(1).as_str() {
            "JobStarted" => times[1] = Some(times[1].map_or(at, |t: i64| t.min(at))),
            "ResourceBackedUp" => times[3] = Some(times[3].map_or(at, |t: i64| t.max(at))),
            _ => times[2] = Some(at),
        }
    }
    let requested: Vec<i64> = jobs.values().filter_map(|t| t[0]).collect();
    let ended: Vec<i64> = jobs.values().filter_map(|t| t[2]).collect();
    let waits: Vec<i64> = jobs.values().filter_map(|t| Some(t[1]? - t[0]?)).collect();
    let runs: Vec<(i64, i64)> = jobs.values().filter_map(|t| Some((t[1]?, t[2]?))).collect();
    // Backups running at once, from the log: +1 at JobStarted, −1 at the end (ends first on a tie).
    let mut steps: Vec<(i64, i32)> = runs.iter().flat_map(|(a, b)| [(*a, 1), (*b, -1)]).collect();
    steps.sort_unstable();
    let (mut running, mut peak_running) = (0i32, 0i32);
    for (_, step) in &steps {
        running += step;
        peak_running = peak_running.max(running);
    }
    // Backups running at each whole second after the slot, to see where slots stood idle.
    let running_by_second: Vec<i32> = {
        let mut at = Vec::new();
        let mut running = 0i32;
        let mut next = steps.iter().peekable();
        let last = steps.last().map_or(slot_us, |s| s.0);
        let mut second = slot_us;
        while second <= last + 1_000_000 {
            while let Some((_, step)) = next.next_if(|(t, _)| *t <= second) {
                running += step;
            }
            at.push(running);
            second += 1_000_000;
        }
        at
    };
    // Backups started in each second after the slot: how fast free slots were filled again.
    let mut started_by_second = vec![0u32; running_by_second.len()];
    for (start, _) in &runs {
        if let Some(n) = usize::try_from((start - slot_us).div_euclid(1_000_000))
            .ok()
            .and_then(|i| started_by_second.get_mut(i))
        {
            *n += 1;
        }
    }
    let first_start = runs.iter().map(|r| r.0).min();
    let last_end = ended.iter().copied().max();
    let busy_us: i64 = runs.iter().map(|(a, b)| b - a).sum();
    let mean_running = match (first_start, last_end) {
        (Some(a), Some(b)) if b > a => json!(round_to(busy_us as f64 / (b - a) as f64, 1)),
        _ => Value::Null,
    };
    let since_slot = |us: Option<i64>| us.map(|t| round_to((t - slot_us) as f64 / 1e6, 3));
    let seconds = since_slot(last_end);
    let succeeded = statuses
        .get("succeeded")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let total_jobs: i64 = statuses.values().filter_map(Value::as_i64).sum();
    let not_succeeded = load.sources as i64 - succeeded;
    let pages = load.sources as u64 * load.pages_per_source();
    let requests = match (&emulator_before, &emulator_after) {
        (Some(a), Some(b)) => json!(b["requests"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(a["requests"].as_u64().unwrap_or(0))),
        _ => Value::Null,
    };
    let ok = finished && not_succeeded == 0 && total_jobs == load.sources as i64;
    if !ok {
        eprintln!(
            "load_jobs: {} of {} jobs did not succeed (statuses {:?}, failures {:?}); the scheduler queued {}, {} ended{}",
            not_succeeded,
            load.sources,
            statuses,
            failures,
            counts.0,
            counts.2,
            if finished { "" } else { " when the wait timed out" }
        );
    }
    // Two objects: one `json!` of every field exceeds the macro's recursion limit.
    let mut summary = json!({
            "sources": load.sources,
            "accounts": load.accounts,
            "connections": load.connections,
            "records_per_source": load.records,
            "pages_per_source": load.pages_per_source(),
            "pages": pages,
            "busiest_connection_pages": load.sources_on_busiest_connection() * load.pages_per_source(),
            "rate_per_connection": load.rate,
            "latency_ms": load.latency_ms,
            "workers": load.workers,
            "concurrency_per_worker": load.concurrency,
            "pages_per_second_capacity": round_to(capacity, 1),
            "ideal_seconds": round_to(ideal, 2),
            "ideal_bound": bound,
            "slot": slot.to_rfc3339(),
            "seconds": seconds,
            "ratio_to_ideal": seconds.map(|s| round_to(s / ideal, 2)),
            "pages_per_second": seconds.map(|s| round_to(pages as f64 / s, 1)),
    });
    let timeline = json!({
            "finished": finished,
            "jobs": total_jobs,
            "statuses": statuses,
            "not_succeeded": not_succeeded,
            "failures": failures,
            "jobs_with_more_than_one_attempt": retried,
            "max_attempt": max_attempt,
            "sync_skipped": skipped,
            "first_queued_s": since_slot(requested.iter().copied().min()),
            "last_queued_s": since_slot(requested.iter().copied().max()),
            "first_started_s": since_slot(first_start),
            "last_started_s": since_slot(runs.iter().map(|r| r.0).max()),
            "peak_running": peak_running,
            "mean_running": mean_running,
            "queued_to_started": distribution(waits),
            "started_to_ended": distribution(runs.iter().map(|(a, b)| b - a).collect()),
            "started_to_backed_up": distribution(
                jobs.values().filter_map(|t| Some(t[3]? - t[1]?)).collect()
            ),
            "backed_up_to_ended": distribution(
                jobs.values().filter_map(|t| Some(t[2]? - t[3]?)).collect()
            ),
            "emulator_requests": requests,
            "emulator_in_flight_peak": emulator_after.as_ref().map(|s| s["inFlightPeak"].clone()),
            "peak_database_sessions": peak_sessions,
            "machine_cpu_busy_percent": machine_busy,
            "running_by_second": running_by_second,
            "started_by_second": started_by_second,
            "processes": processes,
            "creation": {
                "clients": clients,
                "connections_seconds": round_to(connections_seconds, 2),
                "sources_seconds": round_to(sources_seconds, 2),
                "sources_per_second": round_to(load.sources as f64 / sources_seconds.max(1e-9), 1),
                "slot_margin_seconds": round_to(margin, 1),
            },
    });
    if let (Some(summary), Value::Object(timeline)) = (summary.as_object_mut(), timeline) {
        summary.extend(timeline);
    }
    Ok((summary, ok))
}

// ---------------------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------------------
// expiry

async fn expiry(mut flags: Flags) -> Result<(Value, bool), String> {
    let service = Service::connect(&mut flags).await?;
    let connection = flags.text("--connection");
    let sources: usize = flags.number("--sources", 100);
    let backups: usize = flags.number("--backups", 101);
    let clients: usize = flags.number("--clients", 16);
    let data_type = flags
        .0
        .remove("--data-type")
        .unwrap_or_else(|| "customers".to_owned());
    let timeout = Duration::from_secs(flags.number("--timeout", 3600));
    let handshake = flags.0.remove("--handshake");
    flags.done();
    if backups < 2 || sources == 0 {
        usage("expiry needs at least one source and two backups a source");
    }

    let mut ids = Vec::with_capacity(sources);
    for n in 0..sources {
        ids.push(
            service
                .create_source(&connection, &format!("expiry {n}"), &data_type)
                .await?,
        );
    }
    eprintln!("load_jobs: {sources} sources created; backing each up {backups} times");
    let started = Instant::now();
    let service = &service;
    let outcomes: Vec<Result<(), String>> = futures::stream::iter(ids.iter())
        .map(|source| async move {
            for _ in 0..backups {
                let job_id = service.sync_when_free(source, timeout).await?;
                let outcome = service
                    .wait_for_end(&job_id, Duration::from_millis(50), timeout, |_| {})
                    .await?;
                if outcome != "JobSucceeded" {
                    return Err(format!(
                        "job {job_id} ended {outcome}: {}",
                        service.failure(&job_id).await
                    ));
                }
            }
            Ok(())
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    outcomes.into_iter().collect::<Result<Vec<()>, String>>()?;
    let seeded_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "load_jobs: {} backups succeeded in {seeded_seconds:.0} s; setting keepLast 1",
        sources * backups
    );

    if let Some(path) = &handshake {
        std::fs::write(format!("{path}.seeded"), b"").map_err(|e| format!("{path}.seeded: {e}"))?;
        let waiting = Instant::now();
        while !std::path::Path::new(path).exists() {
            if waiting.elapsed() > timeout {
                return Err(format!(
                    "{path} did not appear within {} s",
                    timeout.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // The database's clock, as the events' `recorded_at`.
    let clock = || async {
        service
            .db
            .query_one("SELECT clock_timestamp()", &[])
            .await
            .map(|row| row.get::<_, chrono::DateTime<chrono::Utc>>(0))
            .map_err(|e| format!("database: {e}"))
    };
    let first_change = clock().await?;
    for source in &ids {
        let (status, body) = service
            .put(&format!("/sources/{source}"), &json!({"keepLast": 1}))
            .await?;
        if status != 200 {
            return Err(format!("PUT /sources/{source} answered {status}: {body}"));
        }
    }
    let last_change = clock().await?;
    let expected = (sources * (backups - 1)) as i64;
    let count = || async {
        service
            .db
            .query_one(
                "SELECT count(*) FROM events WHERE aggregate_type = 'job' AND event_type = 'BackupExpired'",
                &[],
            )
            .await
            .map(|row| row.get::<_, i64>(0))
            .map_err(|e| format!("database: {e}"))
    };
    let waiting = Instant::now();
    let mut reported = 0;
    loop {
        let expired = count().await?;
        if expired >= expected {
            break;
        }
        if waiting.elapsed() > timeout {
            return Err(format!(
                "{expired} of {expected} backups expired within {} s",
                timeout.as_secs()
            ));
        }
        if waiting.elapsed().as_secs() >= reported + 10 {
            reported = waiting.elapsed().as_secs();
            eprintln!("load_jobs: {expired} of {expected} expired after {reported} s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let row = service
        .db
        .query_one(
            "SELECT count(*), extract(epoch FROM max(recorded_at) - $1)::float8,
                    extract(epoch FROM max(recorded_at) - $2)::float8,
                    sum((payload -> 'BackupExpired' ->> 'files')::bigint)::bigint,
                    sum((payload -> 'BackupExpired' ->> 'bytes')::bigint)::bigint
             FROM events WHERE aggregate_type = 'job' AND event_type = 'BackupExpired'",
            &[&first_change, &last_change],
        )
        .await
        .map_err(|e| format!("database: {e}"))?;
    let expired: i64 = row.get(0);
    let from_first: f64 = row.get(1);
    let from_last: f64 = row.get(2);
    let files: i64 = row.get(3);
    let bytes: i64 = row.get(4);
    Ok((
        json!({
            "sources": sources,
            "backups": sources * backups,
            "expired": expired,
            "seconds_from_first_policy_change": round_to(from_first, 2),
            "seconds_from_last_policy_change": round_to(from_last, 2),
            "expiries_per_second": round_to(expired as f64 / from_first.max(1e-9), 1),
            "freed_files": files,
            "freed_bytes": bytes,
            "seeding_seconds": round_to(seeded_seconds, 1),
        }),
        expired == expected,
    ))
}

/// Deletes every JetStream stream whose name starts with `prefix` (a run's `<PREFIX>_`: its events, its
/// backup queue, its delivery advisories, and whatever a later version adds), so no run leaves streams behind
/// on a shared NATS server.
async fn delete_streams(mut args: impl Iterator<Item = String>) -> Result<(Value, bool), String> {
    let prefix = args
        .next()
        .unwrap_or_else(|| usage("delete-nats-streams needs a stream name prefix"));
    if prefix.len() < 4 {
        usage("delete-nats-streams: the prefix is too short to name one run's streams");
    }
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
    let js = async_nats::jetstream::new(client);
    let names: Vec<String> = js
        .stream_names()
        .try_collect()
        .await
        .map_err(|e| format!("listing streams: {e}"))?;
    let mut deleted = Vec::new();
    for name in names.into_iter().filter(|n| n.starts_with(&prefix)) {
        js.delete_stream(&name)
            .await
            .map_err(|e| format!("deleting stream {name}: {e}"))?;
        deleted.push(name);
    }
    Ok((json!({ "deleted": deleted }), true))
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
            "burst" => burst(Flags::parse(args)).await,
            "expiry" => expiry(Flags::parse(args)).await,
            "delete-nats-streams" => delete_streams(args).await,
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
