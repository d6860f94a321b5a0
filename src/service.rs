//! Wires the parts into one running service: migrations, pools, the command side, the projector, the relay
//! and the API. `listbackup serve` runs this; the black-box tests start exactly the same thing on port 0.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use listbackup_api::auth::Authenticator;
use listbackup_api::{AppState, Application};
use listbackup_commands::connections::ConnectionCommands;
use listbackup_commands::platform_client::PlatformClient;
use listbackup_commands::vault::{CredentialVault, MasterKeys};
use listbackup_commands::CommandBus;
use listbackup_domain::ErrorChain;
use listbackup_projections::Projector;
use listbackup_workers::connectors::Connector;
use listbackup_workers::{NatsNames, Relay};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// A started service. Dropping it does not stop it: call [`RunningService::stop`].
pub struct RunningService {
    pub port: u16,
    api: actix_web::dev::ServerHandle,
    api_task: JoinHandle<std::io::Result<()>>,
    shutdown: CancellationToken,
    /// Ends the open event streams, which would otherwise hold a graceful stop until their jobs end.
    closing_streams: CancellationToken,
    background: Vec<JoinHandle<()>>,
    /// The backup worker (when this process runs one) and what tells it to drain; it stops before the rest.
    backup_worker: Option<(CancellationToken, JoinHandle<()>)>,
    /// Demo mode's emulations, served until the service is dropped.
    demo: Option<crate::demo::Demo>,
    /// `GET /metrics` on `LISTBACKUP_METRICS_BIND`, when set; stopped last.
    metrics: Option<crate::metrics::MetricsServer>,
    /// The most each step of [`RunningService::stop`] may take: the shutdown grace and a margin.
    stop_bound: Duration,
}

impl RunningService {
    /// Stops gracefully (SIGTERM): stops accepting connections, ends the live event streams, lets running
    /// backups finish within the shutdown grace (backups still running then are handed back for redelivery:
    /// see `BackupWorker::run`), then lets in-flight requests finish and stops the HTTP server; then stops the
    /// projector, relay, sagas and the rest, each after the batch in hand (its checkpoint saved).
    ///
    /// The HTTP server stops after the backups, not beside them: each of its worker threads runs a runtime of
    /// its own, and a pooled database connection opened while serving a request is that runtime's. A backup
    /// that used such a connection after its runtime ended failed ("A Tokio 1.x context was found, but it is
    /// being shutdown") and was recorded failed instead of finishing. Paused, the server accepts no new
    /// connection while its threads live on.
    ///
    /// No step waits for ever: one that outlasts the shutdown grace and a margin (`stop_bound`) is logged at
    /// `error` and the stop goes on (a task still running is aborted), so that a stop always ends; what a
    /// backup aborted so leaves behind is what a crash leaves, handled by its lease and redelivery.
    pub async fn stop(self) {
        let bound = self.stop_bound;
        self.closing_streams.cancel();
        if tokio::time::timeout(bound, self.api.pause()).await.is_err() {
            tracing::error!(
                seconds = bound.as_secs(),
                "stop: the HTTP server did not pause in time"
            );
        }
        if let Some((drain, worker)) = self.backup_worker {
            drain.cancel();
            bounded_join(worker, bound, "the backup worker").await;
        }
        if tokio::time::timeout(bound, self.api.stop(true))
            .await
            .is_err()
        {
            tracing::error!(
                seconds = bound.as_secs(),
                "stop: the HTTP server did not stop in time"
            );
        }
        bounded_join(self.api_task, bound, "the HTTP server").await;
        self.shutdown.cancel();
        for task in self.background {
            bounded_join(task, bound, "a background task").await;
        }
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        drop(self.demo);
    }

    /// The port `GET /metrics` is served on, when `LISTBACKUP_METRICS_BIND` is set.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|m| m.port)
    }

    /// The base URL of demo mode's emulations, when demo mode is on.
    pub fn demo_url(&self) -> Option<&str> {
        self.demo.as_ref().map(crate::demo::Demo::base_url)
    }

    /// Waits until the API server ends on its own (it only does on a fatal error).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        (&mut self.api_task)
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Waits for `task` for at most `bound`; past it, logs at `error` and aborts it.
async fn bounded_join<T>(mut task: JoinHandle<T>, bound: Duration, what: &str) {
    if tokio::time::timeout(bound, &mut task).await.is_err() {
        tracing::error!(
            seconds = bound.as_secs(),
            "stop: {what} did not end in time; aborted"
        );
        task.abort();
    }
}

/// A deadpool pool for the read side, the vault and the idempotency keys.
///
/// Its connections are opened on the runtime that calls this (the process's main one), whoever asks for one:
/// see [`HomeRuntimeConnect`].
pub fn read_pool(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    deadpool_over(config, config.database_url.parse()?, config.db_pool_size)
}

/// Connections the record index is written with (the workers' staging, the indexer's merge, the retention
/// sweep's moves): sessions that never append to the event log (migration 0220), so that their transactions,
/// long ones included (a million-record backup's merge), do not hold back the projections and the commands
/// waiting on them. As many as the read pool (`LISTBACKUP_DB_POOL_SIZE`), opened when first used.
pub fn never_appending_pool(config: &Config) -> anyhow::Result<deadpool_postgres::Pool> {
    let pg_config =
        listbackup_projections::event_log::never_appending(config.database_url.parse()?);
    deadpool_over(config, pg_config, config.db_pool_size)
}

fn deadpool_over(
    config: &Config,
    pg_config: tokio_postgres::Config,
    size: usize,
) -> anyhow::Result<deadpool_postgres::Pool> {
    let manager = deadpool_postgres::Manager::from_connect(
        pg_config,
        HomeRuntimeConnect {
            runtime: tokio::runtime::Handle::try_current()
                .map_err(|_| anyhow::anyhow!("the read pool is made inside a Tokio runtime"))?,
        },
        deadpool_postgres::ManagerConfig::default(),
    );
    Ok(deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(config.db_pool_timeout))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}

/// Opens a pool's connections on one runtime, the process's main one, whichever task asks.
///
/// A `tokio_postgres` connection is a task and a socket of the runtime it was opened on. The HTTP server's
/// worker threads each run a runtime of their own, which ends when the server stops: a connection opened
/// while serving a request would die with it, and whoever drew it from the pool next (a backup finishing
/// during the shutdown grace, the projector's last batch, a late request) would fail with "A Tokio 1.x
/// context was found, but it is being shutdown". The `Client` itself only talks to its connection task
/// through a channel, so it serves any runtime.
struct HomeRuntimeConnect {
    runtime: tokio::runtime::Handle,
}

impl deadpool_postgres::Connect for HomeRuntimeConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> futures::future::BoxFuture<
        '_,
        Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>,
    > {
        async fn open(
            pg_config: tokio_postgres::Config,
        ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error>
        {
            let (client, connection) = pg_config.connect(tokio_postgres::NoTls).await?;
            let task = tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %ErrorChain(&err), "a pooled database connection ended");
                }
            });
            Ok((client, task))
        }
        let pg_config = pg_config.clone();
        let runtime = self.runtime.clone();
        Box::pin(async move {
            match runtime.spawn(open(pg_config.clone())).await {
                Ok(result) => result,
                // The main runtime is shutting down and took the task: open it here, as a last resort.
                Err(_) => open(pg_config).await,
            }
        })
    }
}

/// The master key and the retired ones, which seal and open stored credentials.
pub fn master_keys(config: &Config) -> anyhow::Result<Arc<MasterKeys>> {
    let master_key = config.master_key.as_deref().ok_or_else(|| {
        anyhow::anyhow!("LISTBACKUP_MASTER_KEY is required (base64 of 32 random bytes)")
    })?;
    let previous: Vec<&str> = config
        .previous_master_keys
        .iter()
        .map(String::as_str)
        .collect();
    Ok(Arc::new(MasterKeys::from_base64(master_key, &previous)?))
}

/// The sqlx pool postgres-es appends events through. Its sessions leave the log's notification to the
/// process (`log_signal::NOTIFY_AFTER_COMMIT`): whoever starts the buses over it must run
/// `log_signal::announce` on their `committed` signal.
pub(crate) async fn event_store_pool(config: &Config) -> anyhow::Result<sqlx::PgPool> {
    let options: sqlx::postgres::PgConnectOptions = config.database_url.parse()?;
    let options = options.options([listbackup_projections::log_signal::NOTIFY_AFTER_COMMIT]);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(config.db_pool_size as u32)
        // No ping before every use: a broken connection fails its statement, which surfaces as UNAVAILABLE
        // (retryable) and makes the pool drop it. The ping was one round trip on every command.
        .test_before_acquire(false)
        .acquire_timeout(config.db_pool_timeout)
        .connect_with(options)
        .await?)
}

/// NATS, when configured. Retrying in the background keeps the service up (and commands accepted) while
/// NATS is down; readiness reports it.
pub(crate) async fn connect_nats(config: &Config) -> anyhow::Result<Option<async_nats::Client>> {
    Ok(match &config.nats_url {
        Some(url) => Some(
            async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connection_timeout(Duration::from_secs(5))
                .connect(url)
                .await?,
        ),
        None => None,
    })
}

/// Where backups go, when configured.
pub(crate) fn backup_store(
    config: &Config,
) -> anyhow::Result<Option<listbackup_workers::storage::BackupStore>> {
    config
        .storage_url
        .as_deref()
        .map(|url| {
            let store = listbackup_workers::storage::BackupStore::from_url(url)
                .map(|store| store.with_gzip_level(config.backup_gzip_level))
                .map_err(|e| anyhow::anyhow!("LISTBACKUP_STORAGE_URL: {e}"))?;
            if config.storage_encryption {
                Ok(store)
            } else {
                tracing::warn!(
                    "LISTBACKUP_STORAGE_ENCRYPTION=off: new backup files are written in PLAINTEXT \
                     (for benchmarks only)"
                );
                Ok(store.writing_plaintext())
            }
        })
        .transpose()
}

/// The retention sweep and the background verifier over `store`, started (in `serve` and `listbackup
/// worker`: every process that stores backups).
pub(crate) fn retention_tasks(
    config: &Config,
    db: &deadpool_postgres::Pool,
    jobs: &Arc<listbackup_commands::jobs::JobCommands>,
    index_db: &deadpool_postgres::Pool,
    store: &listbackup_workers::storage::BackupStore,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let sweeper = listbackup_workers::retention::RetentionSweeper::new(
        db.clone(),
        jobs.clone(),
        store.clone(),
    )
    .with_index_pool(index_db.clone())
    .with_clock(config.scheduler_clock.clone())
    .with_interval(config.retention_sweep_interval);
    let files: Arc<dyn listbackup_commands::artifacts::JobFiles> = Arc::new(store.clone());
    let verifier = Arc::new(listbackup_commands::verification::BackupVerifier::new(
        jobs.clone(),
        files,
    ));
    let background = listbackup_workers::verifier::BackgroundVerifier::new(
        db.clone(),
        verifier,
        config.verify_per_hour,
    );
    vec![
        tokio::spawn(sweeper.run(shutdown.clone())),
        tokio::spawn(background.run(shutdown.clone())),
    ]
}

/// The projector over the configured database (for `listbackup projections rebuild`).
pub fn projector(config: &Config) -> anyhow::Result<Projector> {
    Ok(Projector::new(read_pool(config)?, Arc::new(Notify::new())))
}

/// Migrates, then starts the API on `listener` with the projector beside it.
pub async fn start(config: &Config, listener: TcpListener) -> anyhow::Result<RunningService> {
    let applied = crate::migrate::prepare(config).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    let keys = master_keys(config)?;
    // Demo mode: the emulations first, so that every part below routes demo connections to them.
    let demo = if config.demo {
        let demo = crate::demo::Demo::start()
            .await
            .map_err(|e| anyhow::anyhow!("demo mode: starting the platforms' emulations: {e}"))?;
        tracing::info!(
            emulations = demo.base_url(),
            "demo mode: connections made with a platform's demo credentials (GET /platforms) reach its emulation"
        );
        Some(demo)
    } else {
        None
    };
    let platforms = match &demo {
        Some(demo) => config.platforms.clone().with_demo(demo.routing()),
        None => config.platforms.clone(),
    };
    let authenticator = Authenticator::new(config.auth.clone())
        .map_err(|e| anyhow::anyhow!("authentication: {e}"))?;

    let event_store = event_store_pool(config).await?;
    let db = read_pool(config)?;
    let index_db = never_appending_pool(config)?;
    let metrics_pools = (db.clone(), event_store.clone());
    // Backups are encrypted with per-account data keys wrapped by the same master keys (issue 13 §2).
    let data_keys = listbackup_commands::data_keys::DataKeys::new(db.clone(), keys.clone());
    // Webhook signing secrets are sealed under the same master keys (issue 14 §5).
    let webhook_secrets =
        listbackup_commands::webhooks::WebhookSecrets::new(db.clone(), keys.clone());
    let vault = CredentialVault::new(db.clone(), keys);
    let swept = vault.sweep_deleted().await?;
    if swept > 0 {
        tracing::info!(
            swept,
            "destroyed credentials left behind by interrupted deletions"
        );
    }
    // Account erasure (issue 13 §2); finishes the destruction of erasures a stopped process left half-done.
    let accounts = Arc::new(listbackup_commands::accounts::AccountCommands::new(
        CommandBus::new(event_store.clone(), (), Arc::new(Notify::new())),
        vault.clone(),
        db.clone(),
    ));
    let finished = accounts.sweep_erased().await?;
    if finished > 0 {
        tracing::info!(finished, "finished destroying the keys of erased accounts");
    }

    let committed = Arc::new(Notify::new());
    let oauth = Arc::new(listbackup_commands::oauth::OauthService::new(
        CommandBus::new(event_store.clone(), (), committed.clone()),
        vault.clone(),
        db.clone(),
        config.oauth.clone(),
        platforms.clone(),
    ));
    // Sources and source groups (issue 4); the membership saga gets its own handle on the same stores.
    macro_rules! bus {
        () => {
            CommandBus::new(event_store.clone(), (), committed.clone())
        };
    }
    let sources = listbackup_commands::sources::SourceCommands::new(bus!(), bus!());
    let source_groups =
        listbackup_commands::source_groups::SourceGroupCommands::new(bus!(), bus!());
    let saga_sources = Arc::new(listbackup_commands::sources::SourceCommands::new(
        bus!(),
        bus!(),
    ));
    let saga_groups =
        Arc::new(listbackup_commands::source_groups::SourceGroupCommands::new(bus!(), bus!()));
    // One connector per process: source tests and backups share its per-connection rate budgets.
    let connector =
        Arc::new(Connector::new(platforms.clone()).with_rate_limits(config.rate_limits.clone()));
    let job_commands = Arc::new(listbackup_commands::jobs::JobCommands::new(
        bus!(),
        bus!(),
        vault.clone(),
    ));
    let api_jobs = Arc::new(listbackup_commands::jobs::JobCommands::new(
        bus!(),
        bus!(),
        vault.clone(),
    ));
    let worker_sources = Arc::new(listbackup_commands::sources::SourceCommands::new(
        bus!(),
        bus!(),
    ));
    let scheduler_sources = Arc::new(listbackup_commands::sources::SourceCommands::new(
        bus!(),
        bus!(),
    ));
    // Webhooks (issue 14 §5).
    let webhooks = listbackup_commands::webhooks::WebhookCommands::new(
        bus!(),
        webhook_secrets.clone(),
        listbackup_domain::webhook::TargetPolicy {
            allow_private: config.notifications.allow_private,
            allow_email: config.notifications.smtp.is_some(),
        },
    );
    let connections = ConnectionCommands::new(
        CommandBus::new(event_store, (), committed.clone()),
        vault,
        PlatformClient::new(platforms.clone()),
    )
    // Source tests sample one page per data type through the workers' connectors.
    .with_sampler(connector.clone())
    // An OAuth connection's test refreshes a rejected token once, as a backup does.
    .with_oauth(oauth.clone());
    let shutdown = CancellationToken::new();
    // One listener per process wakes every reader of the log when events become readable (no polling).
    let log =
        listbackup_projections::log_signal::listen(config.database_url.clone(), shutdown.clone());
    // Every commit of this process wakes its projector at once and is announced to every process's listener
    // (this one's included) after the fact: the event store's sessions do not notify in their transactions.
    let projector_wake = Arc::new(Notify::new());
    let announced = Arc::new(Notify::new());
    listbackup_projections::log_signal::announce(
        config.database_url.clone(),
        announced.clone(),
        shutdown.clone(),
    );
    tokio::spawn({
        let (projector_wake, shutdown) = (projector_wake.clone(), shutdown.clone());
        async move {
            loop {
                tokio::select! {
                    _ = committed.notified() => {
                        projector_wake.notify_one();
                        announced.notify_one();
                    }
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    });
    let projector = Projector::new(db.clone(), projector_wake).woken_by_log(log.clone());
    let projected = projector.watch();

    let nats = connect_nats(config).await?;
    let store = backup_store(config)?.map(|store| store.with_data_keys(data_keys));
    // Before any request or backup: the recorder is installed with the listener, and nothing recorded before
    // it would count.
    let metrics = config
        .metrics_bind
        .as_deref()
        .map(|bind| {
            let (db, event_store) = metrics_pools;
            crate::metrics::MetricsServer::start(
                bind,
                crate::metrics::Probes::new(db, event_store, nats.clone(), true),
            )
        })
        .transpose()?;

    let mut background = vec![tokio::spawn(projector.run(shutdown.clone()))];
    let mut backup_worker = None;
    // Retention and verification (issue 13) in every process that has the backups' storage.
    if let Some(store) = &store {
        background.extend(retention_tasks(
            config,
            &db,
            &job_commands,
            &index_db,
            store,
            &shutdown,
        ));
    }
    if let Some(nats) = &nats {
        let names = NatsNames::new(&config.nats_prefix).map_err(|e| anyhow::anyhow!(e))?;
        let relay = Relay::new(db.clone(), nats.clone(), names.clone())
            .woken_by(projected.clone())
            .woken_by_log(log.clone());
        background.push(tokio::spawn(relay.run(shutdown.clone())));
        // Backups need somewhere to go: without storage this process queues jobs but runs none. With
        // LISTBACKUP_SERVE_BACKUP_WORKER=false (and in `listbackup api`) `listbackup worker` processes run them.
        if let (Some(store), true) = (&store, config.serve_backup_worker) {
            let store = store.clone();
            let worker = listbackup_workers::backup::BackupWorker::new(
                nats.clone(),
                names.clone(),
                Relay::new(db.clone(), nats.clone(), names),
                job_commands,
                worker_sources,
                oauth.clone(),
                connector,
                store,
                db.clone(),
            )
            .with_deliveries(config.worker_deliveries)
            .with_dispatch(config.worker_dispatch)
            .with_shutdown_grace(config.shutdown_grace)
            .with_index_pool(index_db.clone());
            let drain = CancellationToken::new();
            backup_worker = Some((drain.clone(), tokio::spawn(worker.run(drain))));
        }
    }
    // Renews OAuth access tokens expiring within 15 minutes (one refresh per connection across processes).
    background.push(tokio::spawn(oauth.clone().run_refresher(shutdown.clone())));
    // Source and connection deletions cascade (issue 4), driven by the event log.
    let source_sagas = listbackup_workers::sagas::SourceSagas::new(
        db.clone(),
        saga_groups,
        saga_sources,
        api_jobs.clone(),
    )
    .woken_by(projected.clone())
    .woken_by_log(log.clone());
    background.push(tokio::spawn(source_sagas.run(shutdown.clone())));
    // Notifications (issue 14 §5): the dispatcher queues deliveries from the event log, the sender sends them.
    let queued = Arc::new(Notify::new());
    let dispatcher =
        listbackup_workers::notifications::NotificationDispatcher::new(db.clone(), queued.clone())
            .woken_by(projected.clone())
            .woken_by_log(log.clone());
    background.push(tokio::spawn(dispatcher.run(shutdown.clone())));
    let sender = listbackup_workers::notifications::DeliverySender::new(
        db.clone(),
        webhook_secrets,
        config.notifications.clone(),
        queued,
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    background.push(tokio::spawn(sender.run(shutdown.clone())));
    // Succeeded and partial backups merged into the record version index (issue 13 §4), once each.
    let record_indexer = listbackup_workers::record_index::RecordIndexer::new(index_db)
        .woken_by(projected.clone())
        .woken_by_log(log.clone());
    background.push(tokio::spawn(record_indexer.run(shutdown.clone())));
    // Schedule slots (issue 5): in every process, without a leader; the Source aggregate records each slot once.
    let scheduler = listbackup_workers::scheduler::Scheduler::new(db.clone(), scheduler_sources)
        .with_clock(config.scheduler_clock.clone())
        .with_poll_interval(config.scheduler_poll_interval);
    background.push(tokio::spawn(scheduler.run(shutdown.clone())));

    let closing_streams = CancellationToken::new();
    let api_jobs_for_verify = api_jobs.clone();
    let snapshots = store.as_ref().map(|s| {
        Arc::new(listbackup_commands::snapshots::Snapshots::new(
            db.clone(),
            Arc::new(s.clone()),
        ))
    });
    let state = AppState {
        db,
        connections,
        sources,
        source_groups,
        oauth,
        projected,
        nats,
        nats_prefix: config.nats_prefix.clone(),
        jobs: api_jobs,
        accounts,
        closing_streams: closing_streams.clone(),
        verifier: store.as_ref().map(|s| {
            Arc::new(listbackup_commands::verification::BackupVerifier::new(
                api_jobs_for_verify.clone(),
                Arc::new(s.clone()),
            ))
        }),
        snapshots,
        job_files: store.map(|s| Arc::new(s) as Arc<dyn listbackup_commands::artifacts::JobFiles>),
        audit_signer: config.audit_signer.clone(),
        demo: platforms.demo().cloned(),
        webhooks,
    };
    let app = Application::build(listener, state, authenticator, config.http.clone())?;
    let port = app.port();
    let api = app.handle();
    let api_task = tokio::spawn(app.run());
    tracing::info!(port, "listbackup is serving");
    Ok(RunningService {
        stop_bound: config.shutdown_grace + Duration::from_secs(10),
        port,
        api,
        api_task,
        shutdown,
        closing_streams,
        background,
        backup_worker,
        demo,
        metrics,
    })
}
