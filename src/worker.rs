//! `listbackup worker`: a process that runs backups and nothing else (DESIGN §7, "separate processes for
//! scale"): the backup worker, with its exhausted-deliveries watcher, and the OAuth token refresher. No HTTP
//! API, projector, relay or sagas: `listbackup api` (or `serve`) runs those, against the same database and
//! NATS prefix.

use std::sync::Arc;

use listbackup_commands::jobs::JobCommands;
use listbackup_commands::oauth::OauthService;
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::vault::CredentialVault;
use listbackup_commands::CommandBus;
use listbackup_workers::backup::BackupWorker;
use listbackup_workers::connectors::Connector;
use listbackup_workers::{NatsNames, Relay};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::service::{
    backup_store, connect_nats, event_store_pool, master_keys, never_appending_pool, read_pool,
    retention_tasks,
};

/// A started worker process. Dropping it does not stop it: call [`RunningWorker::stop`].
pub struct RunningWorker {
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// `GET /metrics` on `LISTBACKUP_METRICS_BIND`, when set; stopped last.
    metrics: Option<crate::metrics::MetricsServer>,
}

impl RunningWorker {
    /// Stops gracefully (SIGTERM): takes no further message, lets the running backups finish within the
    /// shutdown grace, hands those still running then back to JetStream (NAK, their leases released) so
    /// another worker runs them again at once as their next attempt, and returns once all has settled.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
    }
}

/// Migrates, then starts the backup worker and the token refresher. NATS and storage are required: without
/// them a worker has nothing to do.
pub async fn start(config: &Config) -> anyhow::Result<RunningWorker> {
    let store = backup_store(config)?
        .ok_or_else(|| anyhow::anyhow!("LISTBACKUP_STORAGE_URL is required by the worker"))?;
    let applied = crate::migrate::prepare(config).await?;
    if !applied.is_empty() {
        tracing::info!(?applied, "migrations applied");
    }
    let keys = master_keys(config)?;
    let event_store = event_store_pool(config).await?;
    let db = read_pool(config)?;
    let index_db = never_appending_pool(config)?;
    // Backups are encrypted with per-account data keys wrapped by the same master keys (issue 13 §2).
    let store = store.with_data_keys(listbackup_commands::data_keys::DataKeys::new(
        db.clone(),
        keys.clone(),
    ));
    let vault = CredentialVault::new(db.clone(), keys);
    // Read-your-writes is the API's concern: nothing in this process waits on commits, but every commit is
    // announced to the API processes' log listeners (the event store's sessions do not notify themselves).
    let committed = Arc::new(Notify::new());
    macro_rules! bus {
        () => {
            CommandBus::new(event_store.clone(), (), committed.clone())
        };
    }
    let oauth = Arc::new(OauthService::new(
        bus!(),
        vault.clone(),
        db.clone(),
        config.oauth.clone(),
        config.platforms.clone(),
    ));
    let jobs = Arc::new(JobCommands::new(bus!(), bus!(), vault));
    let sources = Arc::new(SourceCommands::new(bus!(), bus!()));
    let connector = Arc::new(
        Connector::new(config.platforms.clone()).with_rate_limits(config.rate_limits.clone()),
    );
    let nats = connect_nats(config)
        .await?
        .ok_or_else(|| anyhow::anyhow!("NATS_URL is required by the worker"))?;
    let names = NatsNames::new(&config.nats_prefix).map_err(|e| anyhow::anyhow!(e))?;
    // Its pools, its NATS connection and its slots; the log's readers (and their lag) are the API's.
    let metrics = config
        .metrics_bind
        .as_deref()
        .map(|bind| {
            crate::metrics::MetricsServer::start(
                bind,
                crate::metrics::Probes::new(
                    db.clone(),
                    event_store.clone(),
                    Some(nats.clone()),
                    false,
                ),
            )
        })
        .transpose()?;
    // The relay handle only makes sure the events stream exists; this process publishes nothing.
    let relay = Relay::new(db.clone(), nats.clone(), names.clone());
    let worker = BackupWorker::new(
        nats,
        names,
        relay,
        jobs.clone(),
        sources,
        oauth.clone(),
        connector,
        store.clone(),
        db.clone(),
    )
    .with_deliveries(config.worker_deliveries)
    .with_dispatch(config.worker_dispatch)
    .with_shutdown_grace(config.shutdown_grace)
    .with_index_pool(index_db.clone());

    let shutdown = CancellationToken::new();
    listbackup_projections::log_signal::announce(
        config.database_url.clone(),
        committed,
        shutdown.clone(),
    );
    let retention = retention_tasks(config, &db, &jobs, &index_db, &store, &shutdown);
    let mut tasks = vec![
        tokio::spawn(worker.run(shutdown.clone())),
        // Renews OAuth access tokens expiring within 15 minutes (one refresh per connection across processes).
        tokio::spawn(oauth.run_refresher(shutdown.clone())),
    ];
    tasks.extend(retention);
    tracing::info!(
        ack_wait_secs = config.worker_deliveries.ack_wait.as_secs(),
        max_deliver = config.worker_deliveries.max_deliver,
        concurrency = config.worker_dispatch.concurrency,
        per_connection = config.worker_dispatch.per_connection,
        "listbackup worker is running"
    );
    Ok(RunningWorker {
        shutdown,
        tasks,
        metrics,
    })
}
