//! The backup worker: a durable JetStream pull consumer on `<prefix>.events.source.SyncRequested`. Each
//! message is one queued job: the worker starts the Job aggregate (the stream's first event, so a duplicated
//! message conflicts and is dropped), streams every selected data type from the platform into storage, writes
//! the manifest last, and records the outcome. The message is acknowledged only once the outcome is recorded;
//! while a backup runs, in-progress acks keep its ack wait from expiring.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, AckKind};
use chrono::Utc;
use futures::StreamExt;
use listbackup_commands::jobs::{BackedUp, JobCommands, JobStart};
use listbackup_commands::oauth::{OauthService, USE_WINDOW};
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::{JobStatus, JobTrigger};
use listbackup_domain::platform::PlatformId;
use listbackup_domain::ErrorKind;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::connectors::{Connector, FetchError, FetchRequest};
use crate::names::NatsNames;
use crate::relay::Relay;
use crate::storage::{BackupStore, JobArtifacts, StorageError};

// Ack wait, keep-alive, max_deliver with backoff, and what happens when a message's deliveries run out.
mod deliveries;

pub use deliveries::{DeliverySettings, DELIVERY_EXHAUSTED};

/// The relay's message body, as far as the worker reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventMessage {
    event_id: String,
    aggregate_id: String,
    payload: SyncRequested,
    metadata: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncRequested {
    job_id: String,
    trigger: JobTrigger,
    #[serde(default)]
    retry_of: Option<String>,
}

/// Why a run failed, as recorded in JobFailed.
#[derive(Debug)]
struct RunFailure {
    code: &'static str,
    message: String,
    retryable: bool,
}

/// The code of a run stopped because its cancellation was requested (confirmed, not recorded as a failure).
const CANCELLED: &str = "CANCELLED";
/// How often a running backup looks for a cancellation request (one progress interval).
const CANCEL_CHECK: Duration = Duration::from_secs(1);

impl From<FetchError> for RunFailure {
    fn from(err: FetchError) -> Self {
        Self {
            code: err.code(),
            retryable: err.retryable(),
            // FetchError's messages never carry credential values.
            message: err.to_string(),
        }
    }
}

impl From<StorageError> for RunFailure {
    fn from(err: StorageError) -> Self {
        Self {
            code: "STORAGE_ERROR",
            message: err.to_string(),
            retryable: true,
        }
    }
}

impl From<CommandError> for RunFailure {
    fn from(err: CommandError) -> Self {
        Self {
            code: "INTERNAL",
            message: err.to_string(),
            retryable: true,
        }
    }
}

pub struct BackupWorker {
    nats: async_nats::Client,
    names: NatsNames,
    relay: Relay,
    jobs: Arc<JobCommands>,
    sources: Arc<SourceCommands>,
    oauth: Arc<OauthService>,
    connector: Arc<Connector>,
    store: BackupStore,
    deliveries: DeliverySettings,
}

impl BackupWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nats: async_nats::Client,
        names: NatsNames,
        relay: Relay,
        jobs: Arc<JobCommands>,
        sources: Arc<SourceCommands>,
        oauth: Arc<OauthService>,
        connector: Arc<Connector>,
        store: BackupStore,
    ) -> Self {
        Self {
            nats,
            names,
            relay,
            jobs,
            sources,
            oauth,
            connector,
            store,
            deliveries: DeliverySettings::default(),
        }
    }

    /// Runs until `shutdown`: the job messages, and beside them the advisories of messages whose deliveries
    /// ran out (see [`deliveries`]). NATS failures are retried with backoff. A backup interrupted by shutdown
    /// is not acknowledged, so it is redelivered after its ack wait (and run again as the next attempt).
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::join!(
            self.keep_running("backup worker", &shutdown, || self.consume(&shutdown)),
            self.keep_running("exhausted-deliveries watcher", &shutdown, || {
                self.watch_exhausted(&shutdown)
            }),
        );
    }

    /// Runs `task` until it returns `Ok` or `shutdown`, starting it again with backoff after each error.
    async fn keep_running<F, Fut>(&self, what: &str, shutdown: &CancellationToken, task: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut backoff = Duration::from_millis(200);
        loop {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = task() => outcome,
            };
            match outcome {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "{what} paused; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn consume(&self, shutdown: &CancellationToken) -> Result<(), String> {
        // The relay creates the stream too; whoever comes first creates it, with the same settings.
        self.relay
            .ensure_stream()
            .await
            .map_err(|e| e.to_string())?;
        let js = jetstream::new(self.nats.clone());
        let stream = js
            .get_stream(self.names.events_stream())
            .await
            .map_err(|e| e.to_string())?;
        let name = self.names.consumer(deliveries::BACKUP_CONSUMER);
        // Create, or update a durable consumer left with other settings (an earlier version, another
        // configuration): a consumer's settings are its own, not each client's.
        let consumer: consumer::PullConsumer = stream
            .create_consumer(
                self.deliveries
                    .consumer_config(&name, self.names.event_subject("source", "SyncRequested")),
            )
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => match next {
                    Some(message) => message.map_err(|e| e.to_string())?,
                    None => return Err("the consumer's message stream ended".into()),
                },
            };
            self.handle(&message).await;
        }
    }

    /// Runs one message's job, keeping the delivery alive meanwhile; acknowledges it once the job's outcome
    /// is recorded (or there is nothing to run). An error recording the outcome leaves it unacknowledged,
    /// so it is redelivered.
    async fn handle(&self, message: &jetstream::Message) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let run = self.process(&message.payload, delivered);
        tokio::pin!(run);
        let mut keep_alive = tokio::time::interval(self.deliveries.keep_alive());
        keep_alive.tick().await;
        let settled = loop {
            tokio::select! {
                settled = &mut run => break settled,
                _ = keep_alive.tick() => {
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %err, "in-progress ack failed");
                    }
                }
            }
        };
        match settled {
            Ok(()) => {
                if let Err(err) = message.ack().await {
                    tracing::warn!(error = %err, "ack failed; the job's message will be redelivered");
                }
            }
            // The last delivery: JetStream will not redeliver it, so this worker ends the job itself (and if
            // even that fails, JetStream's advisory has it ended; see `deliveries`).
            Err(err) if delivered >= self.deliveries.max_deliver => {
                tracing::warn!(error = %err, delivered, "the job's last delivery failed; giving up on the job");
                match self.give_up(&message.payload, delivered).await {
                    Ok(()) => {
                        if let Err(err) = message.ack().await {
                            tracing::warn!(error = %err, "ack of a given-up job's message failed");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "giving up failed; left to the max-deliveries advisory")
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "job message left for redelivery"),
        }
    }

    /// `Ok` when the message is settled (job ended, or nothing to do); `Err` to have it redelivered.
    async fn process(&self, body: &[u8], delivered: i64) -> Result<(), CommandError> {
        let event: EventMessage = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "unreadable SyncRequested message dropped");
                return Ok(());
            }
        };
        let text = |key: &str| {
            event
                .metadata
                .get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let worker = format!("worker:{}", uuid::Uuid::now_v7());
        let metadata = EventMetadata {
            account_id: text("accountId").unwrap_or_default(),
            actor: worker.clone(),
            request_id: text("requestId").unwrap_or_default(),
            correlation_id: text("correlationId").unwrap_or_else(|| event.event_id.clone()),
            causation_id: event.event_id.clone(),
        };
        let job_id = event.payload.job_id.clone();
        let source_id = event.aggregate_id.clone();
        let source = match self.sources.live(&metadata, &source_id).await {
            Ok((source, _)) => source,
            Err(CommandError::Domain {
                kind: ErrorKind::NotFound,
                ..
            }) => {
                // Another database's message (shared NATS), or a source deleted since: nothing to run.
                return self
                    .source_gone(&metadata, &job_id, &source_id, delivered)
                    .await;
            }
            Err(err) => return Err(err),
        };
        let Some(platform_id) = PlatformId::parse(source.platform_id()) else {
            tracing::warn!(%job_id, %source_id, "source names an unknown platform");
            return Ok(());
        };
        let start = JobStart {
            job_id: job_id.clone(),
            source_id: source_id.clone(),
            connection_id: source.connection_id().to_owned(),
            platform_id,
            trigger: event.payload.trigger,
            retry_of: event.payload.retry_of.clone(),
            data_types: source.data_types().to_vec(),
        };
        let artifacts = self.store.job(&metadata.account_id, &source_id, &job_id);
        let attempt = match self.jobs.start(&metadata, &worker, start).await {
            Ok(_) => 1,
            Err(CommandError::Domain {
                kind: ErrorKind::Conflict,
                ..
            })
            | Err(CommandError::Concurrency) => {
                let (job, _) = self.jobs.load(&job_id).await?;
                // A redelivery of a job left running: its worker stopped acknowledging, so it is dead or cut
                // off. Run it again as the next attempt, from a clean directory.
                if delivered > 1 && job.status() == JobStatus::Running && job.cancel_requested() {
                    // The dead run was asked to stop: nothing is run again, this run confirms for it.
                    if let Err(err) = artifacts.discard().await {
                        tracing::warn!(%job_id, error = %err, "discarding a cancelled attempt");
                    }
                    return match self.jobs.confirm_cancelled(&metadata, &job_id).await {
                        Ok(_) | Err(CommandError::Domain { .. }) => Ok(()),
                        Err(err) => Err(err),
                    };
                }
                if delivered > 1 && job.status() == JobStatus::Running {
                    artifacts.discard().await.map_err(|e| {
                        CommandError::Unavailable(format!("discarding a dead attempt: {e}"))
                    })?;
                    match self.jobs.restart(&metadata, &job_id, &worker).await {
                        Ok(_) => job.attempt() + 1,
                        Err(CommandError::Domain { .. }) => return Ok(()),
                        Err(err) => return Err(err),
                    }
                } else {
                    tracing::info!(%job_id, "job already taken by another worker; message dropped");
                    return Ok(());
                }
            }
            Err(err) => return Err(err),
        };
        tracing::info!(%job_id, %source_id, attempt, %worker, "backup started");
        let data_types = source.data_types().to_vec();
        let outcome = self
            .backup(
                &metadata,
                &worker,
                &job_id,
                source.connection_id(),
                &platform_id,
                &data_types,
                &artifacts,
                attempt,
            )
            .await;
        match outcome {
            Ok(()) => {
                tracing::info!(%job_id, "backup succeeded");
                Ok(())
            }
            Err(failure) if failure.code == CANCELLED => {
                tracing::info!(%job_id, "backup cancelled");
                // Nothing of a cancelled run may look like a backup.
                if let Err(err) = artifacts.discard().await {
                    tracing::warn!(%job_id, error = %err, "discarding a cancelled attempt's artifacts");
                }
                match self.jobs.confirm_cancelled(&metadata, &job_id).await {
                    Ok(_) | Err(CommandError::Domain { .. }) => Ok(()),
                    Err(err) => Err(err),
                }
            }
            Err(failure) => {
                tracing::warn!(%job_id, code = failure.code, message = %failure.message, "backup failed");
                // Nothing of a failed attempt may look like a backup.
                if let Err(err) = artifacts.discard().await {
                    tracing::warn!(%job_id, error = %err, "discarding a failed attempt's artifacts");
                }
                match self
                    .jobs
                    .fail(
                        &metadata,
                        &job_id,
                        Some(&worker),
                        failure.code,
                        &failure.message,
                        failure.retryable,
                    )
                    .await
                {
                    Ok(_) => Ok(()),
                    // Another attempt took over, or the job ended meanwhile: this run's word no longer counts.
                    Err(CommandError::Domain { .. }) => Ok(()),
                    Err(err) => Err(err),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn backup(
        &self,
        metadata: &EventMetadata,
        worker: &str,
        job_id: &str,
        connection_id: &str,
        platform_id: &PlatformId,
        data_types: &[String],
        artifacts: &JobArtifacts,
        attempt: u32,
    ) -> Result<(), RunFailure> {
        let started_at = Utc::now();
        if let Err(err) = self
            .oauth
            .ensure_fresh(metadata, connection_id, USE_WINDOW)
            .await
        {
            // An API-key connection has nothing to refresh; a failed refresh shows as the platform's 401.
            tracing::debug!(%connection_id, error = %err, "token refresh before the backup");
        }
        let credentials = self
            .jobs
            .credentials(metadata, connection_id)
            .await?
            .ok_or_else(|| RunFailure {
                code: "CONNECTION_MISSING",
                message: "the source's connection or its credentials are gone".into(),
                retryable: false,
            })?;
        let platform = platform_id.platform();
        let mut manifest = artifacts.new_manifest(platform_id.as_str(), attempt, started_at);
        let mut last_check = tokio::time::Instant::now();
        for data_type in data_types {
            let request =
                FetchRequest::new(connection_id, platform, data_type, credentials.expose());
            let mut pager = self.connector.pages(request)?;
            let mut writer = artifacts.data_type_writer(data_type).await?;
            loop {
                let page = match pager.next_page().await {
                    Ok(Some(page)) => page,
                    Ok(None) => break,
                    Err(err) => {
                        let _ = writer.abort().await;
                        return Err(err.into());
                    }
                };
                for record in &page.records {
                    writer.write_record(record).await?;
                }
                // Between pages, at most once per interval: has someone asked the job to stop?
                if last_check.elapsed() >= CANCEL_CHECK {
                    last_check = tokio::time::Instant::now();
                    if self.cancel_requested(job_id).await? {
                        let _ = writer.abort().await;
                        return Err(RunFailure {
                            code: CANCELLED,
                            message: "cancelled on request".into(),
                            retryable: false,
                        });
                    }
                }
            }
            let file = writer.finish().await?;
            manifest.add_file(&file, None);
            self.jobs
                .record_resource(
                    metadata,
                    job_id,
                    worker,
                    BackedUp {
                        data_type: data_type.clone(),
                        records: file.records,
                        bytes: file.bytes,
                        sha256: file.sha256.clone(),
                        object: file.path.to_string(),
                    },
                )
                .await?;
        }
        // A request that came in during the last data type still wins over success.
        if self.cancel_requested(job_id).await? {
            return Err(RunFailure {
                code: CANCELLED,
                message: "cancelled on request".into(),
                retryable: false,
            });
        }
        manifest.finished_at = Utc::now();
        let (sha256, path) = artifacts.write_manifest(&manifest).await?;
        self.jobs
            .succeed(
                metadata,
                job_id,
                worker,
                path.as_ref(),
                &sha256,
                manifest.records,
                manifest.bytes,
            )
            .await?;
        Ok(())
    }

    async fn cancel_requested(&self, job_id: &str) -> Result<bool, CommandError> {
        Ok(self.jobs.load(job_id).await?.0.cancel_requested())
    }
}
