//! `GET /metrics` (issue 14 §1): the process's metrics in the Prometheus text format, served on a listener
//! of its own (`LISTBACKUP_METRICS_BIND`), never on the public API port.
//!
//! **Who may read it.** Whoever can reach that address: it answers without authentication, as Prometheus
//! scrapes, so it is bound to a private address (loopback, a pod's or the host's internal interface) that
//! the load balancer does not route. What it shows is safe for operators by construction: labels are route
//! templates, methods, statuses, platforms, outcomes and reader names, never an id, a path, an account or a
//! secret. Unset (the default), no metrics are recorded or served.
//!
//! The crates record through the `metrics` facade (`listbackup_api::metrics`, `listbackup_workers::metrics`,
//! `listbackup_commands::platform_metrics`); this module installs the recorder (one per process, shared by
//! every service the process starts) and samples, at each scrape, what is read rather than counted: the
//! database pools, the NATS connection, and in processes running the log's readers their lag and the jobs
//! waiting or running. `docs/operations.md` lists every metric, with alert rules.

use listbackup_domain::ErrorChain;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::task::JoinHandle;

/// Gauge: connections of a database pool by `pool` (`read`: queries, vault, leases; `event_store`: appends)
/// and `state` (`in_use`, `idle`).
pub const DB_POOL_CONNECTIONS: &str = "listbackup_db_pool_connections";
/// Gauge: the most connections a pool opens (`LISTBACKUP_DB_POOL_SIZE`), by `pool`.
pub const DB_POOL_MAX: &str = "listbackup_db_pool_max_connections";
/// Gauge: tasks waiting for a connection of the `read` pool right now (they answer 503 after
/// `LISTBACKUP_DB_POOL_TIMEOUT_SECS`).
pub const DB_POOL_WAITING: &str = "listbackup_db_pool_waiting";
/// Gauge: 1 while the process is connected to NATS, 0 while it is not (reconnecting); absent without NATS.
pub const NATS_CONNECTED: &str = "listbackup_nats_connected";
/// Gauge: committed events a reader of the log has not handled yet, by `reader` (capped at 100,000).
pub const READER_LAG_EVENTS: &str = "listbackup_log_reader_lag_events";
/// Gauge: age in seconds of the oldest event a reader of the log has not handled yet, by `reader`.
pub const READER_LAG_SECONDS: &str = "listbackup_log_reader_lag_seconds";
/// Gauge: jobs queued or running now, by `platform` and `status`.
pub const JOBS: &str = "listbackup_jobs";
/// Gauge: 1 when the last scrape could read the database, 0 when it could not (the lag and job gauges then
/// keep their previous values).
pub const DB_UP: &str = "listbackup_db_up";

/// How long a scrape waits for the database before answering with what it has.
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. Histograms get buckets fit for what they
/// measure (requests in milliseconds to seconds, backups in seconds to a day).
pub fn recorder() -> anyhow::Result<PrometheusHandle> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let request_buckets = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let job_buckets = [
        1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
    ];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(listbackup_api::metrics::HTTP_REQUEST_DURATION.into()),
            &request_buckets,
        )?
        .set_buckets_for_metric(
            Matcher::Full(listbackup_workers::metrics::PLATFORM_REQUEST_DURATION.into()),
            &request_buckets,
        )?
        .set_buckets_for_metric(
            Matcher::Full(listbackup_workers::metrics::JOB_DURATION.into()),
            &job_buckets,
        )?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Another service of this process may have won the race: its recorder is the process's.
    if metrics::set_global_recorder(recorder).is_err() {
        return RECORDER.get().cloned().ok_or_else(|| {
            anyhow::anyhow!("another metrics recorder is installed in this process")
        });
    }
    Ok(RECORDER.get_or_init(|| handle).clone())
}

/// What a scrape reads besides the recorded metrics.
pub struct Probes {
    /// The read side's pool (`read`).
    pub db: deadpool_postgres::Pool,
    /// The event store's pool (`event_store`).
    pub event_store: sqlx::PgPool,
    pub nats: Option<async_nats::Client>,
    /// Whether this process runs the projector, relay and sagas: only then does it report their lag and the
    /// jobs gauge (a `listbackup worker` would report the same database's values again).
    pub log_readers: bool,
    /// The `(platform, status)` pairs of [`JOBS`] reported before, set to 0 when they have no job any more.
    seen_jobs: Mutex<BTreeSet<(String, String)>>,
}

impl Probes {
    pub fn new(
        db: deadpool_postgres::Pool,
        event_store: sqlx::PgPool,
        nats: Option<async_nats::Client>,
        log_readers: bool,
    ) -> Self {
        Self {
            db,
            event_store,
            nats,
            log_readers,
            seen_jobs: Mutex::default(),
        }
    }

    /// Sets the sampled gauges.
    async fn sample(&self) {
        let status = self.db.status();
        let in_use = status.size.saturating_sub(status.available);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "read", "state" => "in_use")
            .set(in_use as f64);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "read", "state" => "idle")
            .set(status.available as f64);
        metrics::gauge!(DB_POOL_MAX, "pool" => "read").set(status.max_size as f64);
        metrics::gauge!(DB_POOL_WAITING, "pool" => "read").set(status.waiting as f64);
        let size = self.event_store.size() as usize;
        let idle = self.event_store.num_idle();
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "event_store", "state" => "in_use")
            .set(size.saturating_sub(idle) as f64);
        metrics::gauge!(DB_POOL_CONNECTIONS, "pool" => "event_store", "state" => "idle")
            .set(idle as f64);
        metrics::gauge!(DB_POOL_MAX, "pool" => "event_store")
            .set(f64::from(self.event_store.options().get_max_connections()));
        if let Some(nats) = &self.nats {
            let connected = matches!(
                nats.connection_state(),
                async_nats::connection::State::Connected
            );
            metrics::gauge!(NATS_CONNECTED).set(if connected { 1.0 } else { 0.0 });
        }
        if self.log_readers {
            let read = tokio::time::timeout(SAMPLE_TIMEOUT, self.sample_database()).await;
            let up = matches!(read, Ok(Ok(())));
            if let Ok(Err(err)) = &read {
                tracing::warn!(
                    error = %ErrorChain(err),
                    "metrics: reading the readers' lag and the jobs failed"
                );
            }
            metrics::gauge!(DB_UP).set(if up { 1.0 } else { 0.0 });
        }
    }

    async fn sample_database(&self) -> Result<(), listbackup_projections::ReadError> {
        let client = self.db.get().await?;
        for lag in listbackup_projections::operations::reader_lags(&**client).await? {
            metrics::gauge!(READER_LAG_EVENTS, "reader" => lag.reader.clone())
                .set(lag.events as f64);
            metrics::gauge!(READER_LAG_SECONDS, "reader" => lag.reader).set(lag.seconds);
        }
        let jobs = listbackup_projections::operations::active_jobs(&**client).await?;
        let mut seen = self.seen_jobs.lock().expect("seen jobs lock");
        let now: BTreeSet<(String, String)> = jobs
            .iter()
            .map(|(p, s, _)| (p.clone(), s.clone()))
            .collect();
        for (platform, status) in seen.difference(&now) {
            metrics::gauge!(JOBS, "platform" => platform.clone(), "status" => status.clone())
                .set(0.0);
        }
        for (platform, status, count) in jobs {
            metrics::gauge!(JOBS, "platform" => platform, "status" => status).set(count as f64);
        }
        seen.extend(now);
        Ok(())
    }
}

/// The metrics listener, running until [`MetricsServer::stop`].
pub struct MetricsServer {
    pub port: u16,
    server: actix_web::dev::ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
    upkeep: JoinHandle<()>,
}

impl MetricsServer {
    /// Binds `bind` and serves `GET /metrics` there (anything else is a 404).
    pub fn start(bind: &str, probes: Probes) -> anyhow::Result<Self> {
        let handle = recorder()?;
        let listener = std::net::TcpListener::bind(bind).map_err(|e| {
            anyhow::anyhow!("LISTBACKUP_METRICS_BIND: cannot listen on {bind}: {e}")
        })?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new((handle.clone(), Arc::new(probes)));
        // Histograms and summaries are compacted now and then, besides at each scrape.
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/metrics", web::get().to(scrape))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tracing::info!(address = bind, port, "metrics are served at /metrics");
        Ok(Self {
            port,
            server: handle,
            task: tokio::spawn(server),
            upkeep,
        })
    }

    pub async fn stop(self) {
        self.upkeep.abort();
        self.server.stop(true).await;
        let _ = self.task.await;
    }
}

async fn scrape(state: web::Data<(PrometheusHandle, Arc<Probes>)>) -> HttpResponse {
    let (handle, probes) = &**state;
    probes.sample().await;
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
