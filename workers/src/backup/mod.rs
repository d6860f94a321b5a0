//! The backup worker. Queued backups wait in a JetStream work queue partitioned by account and connection
//! (`queue`); a worker process runs up to its concurrency of them at once, choosing fairly between accounts and
//! within each connection's limits (`dispatch`, `leases`). Each message is one queued job: the worker starts the
//! Job aggregate (the stream's first event, so a duplicated message conflicts and is dropped), streams every
//! selected data type from the platform into storage (`run`), writes the manifest last, and records the outcome.
//! The message is acknowledged only once the outcome is recorded; while a backup runs, in-progress acks keep its
//! ack wait from expiring (`deliveries`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use listbackup_commands::jobs::{JobCommands, JobStart};
use listbackup_commands::oauth::OauthService;
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::{JobErrorCode, JobKind, JobStatus, JobTrigger, RestoreRequest};
use listbackup_domain::platform::PlatformId;
use listbackup_domain::source::Source;
use listbackup_domain::ErrorChain;
use listbackup_domain::{ErrorKind, JobId, SourceId};
use serde::Deserialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::connectors::{Connector, FetchError};
use crate::names::NatsNames;
use crate::relay::Relay;
use crate::storage::{BackupStore, JobArtifacts, StorageError};

mod progress;
// One attempt of one job, data type by data type.
mod run;
// One attempt of a restore job: the snapshot's records written back, data type by data type.
mod restore;
// A restore of a file platform's files: uploaded into a new folder.
mod restore_files;
// The bytes of a file platform's files, beside their records.
pub mod files;
// The work queue of backups waiting for a worker, partitioned by account and connection, and its feeder.
mod queue;
// Which backup a worker runs next, and how many at once.
mod dispatch;
// Which process runs which connection's backups, shared through Postgres.
mod leases;

pub use dispatch::DispatchSettings;
pub use leases::Leases;
pub use queue::partition_key;
use queue::Partition;

pub use progress::{ProgressMessage, PERSIST_INTERVAL};

// Ack wait, keep-alive, max_deliver with backoff, and what happens when a message's deliveries run out.
mod deliveries;

pub use deliveries::DeliverySettings;

/// The relay's message body, as far as the worker reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventMessage {
    event_id: String,
    /// The source's id (the stream the request is an event of).
    aggregate_id: SourceId,
    payload: QueuedJobMessage,
    metadata: serde_json::Value,
}

/// A queued job: a backup (`SyncRequested`) or a restore (`RestoreRequested`), told apart by their fields.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum QueuedJobMessage {
    Restore(RestoreRequested),
    Sync(SyncRequested),
}

impl QueuedJobMessage {
    fn job_id(&self) -> JobId {
        match self {
            Self::Restore(restore) => restore.job_id,
            Self::Sync(sync) => sync.job_id,
        }
    }
}

/// A source's `RestoreRequested`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestoreRequested {
    job_id: JobId,
    #[serde(flatten)]
    restore: RestoreRequest,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncRequested {
    job_id: JobId,
    trigger: JobTrigger,
    #[serde(default)]
    retry_of: Option<JobId>,
    /// Only these data types (a retry of the failed ones); absent: the source's.
    #[serde(default)]
    data_types: Option<Vec<String>>,
}

/// Why a run failed, as recorded in JobFailed.
#[derive(Debug)]
struct RunFailure {
    code: JobErrorCode,
    message: String,
    retryable: bool,
}

/// How often a running backup looks for a cancellation request (one progress interval).
const CANCEL_CHECK: Duration = Duration::from_secs(1);

/// How long a stopping worker lets its running backups finish (`LISTBACKUP_SHUTDOWN_GRACE_SECS`): 25 s, so
/// that the drain, the hand-back of what did not finish and the process's exit fit in the 30 s an orchestrator
/// waits between SIGTERM and SIGKILL by default (Kubernetes' `terminationGracePeriodSeconds`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// The redelivery delay of a message handed back at shutdown: at once (an explicit delay, since a NAK
/// without one waits out the consumer's backoff).
const HAND_BACK_DELAY: Duration = Duration::from_millis(1);

/// Why a message was not settled: it is left for redelivery after its ack wait, or handed back at once.
#[derive(Debug, thiserror::Error)]
enum Unsettled {
    /// Running it failed (an error recording its outcome, a lease that could not be taken): redelivered after
    /// the ack wait, with the consumer's backoff.
    #[error(transparent)]
    Failed(#[from] CommandError),
    /// The process is stopping and the shutdown grace ran out before the backup finished: the run was
    /// stopped, its lease released, and the message handed back (NAK) for another worker to take at once.
    #[error("interrupted by shutdown after the grace period")]
    Interrupted,
}

impl From<FetchError> for RunFailure {
    fn from(err: FetchError) -> Self {
        Self {
            code: err.code(),
            retryable: err.retryable(),
            // FetchError's messages never carry credential values; its sources (the HTTP client's error
            // without its URL, the JSON parser's) say why.
            message: listbackup_commands::error_chain(&err),
        }
    }
}

impl From<StorageError> for RunFailure {
    fn from(err: StorageError) -> Self {
        Self {
            code: JobErrorCode::StorageError,
            message: listbackup_commands::error_chain(&err),
            retryable: true,
        }
    }
}

impl From<crate::record_index::RecordIndexError> for RunFailure {
    fn from(err: crate::record_index::RecordIndexError) -> Self {
        Self {
            code: JobErrorCode::Internal,
            message: listbackup_commands::error_chain(&err),
            retryable: true,
        }
    }
}

impl From<CommandError> for RunFailure {
    fn from(err: CommandError) -> Self {
        Self {
            code: JobErrorCode::Internal,
            message: listbackup_commands::error_chain(&err),
            retryable: true,
        }
    }
}

/// One attempt of one job, as [`BackupWorker::backup`] runs it.
struct Run<'a> {
    metadata: &'a EventMetadata,
    worker: &'a str,
    job_id: JobId,
    attempt: u32,
    platform_id: &'a PlatformId,
    source_id: SourceId,
    source: &'a Source,
    artifacts: &'a JobArtifacts,
}

fn cancelled() -> RunFailure {
    RunFailure {
        code: JobErrorCode::Cancelled,
        message: "cancelled on request".into(),
        retryable: false,
    }
}

/// The platform refuses the connection until the customer reconnects it.
fn reauth_failure() -> RunFailure {
    RunFailure {
        code: JobErrorCode::ReauthRequired,
        message: "the platform rejected the connection's credentials even after a token refresh; \
                  reconnect the connection"
            .into(),
        retryable: false,
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
    dispatch: DispatchSettings,
    leases: Leases,
    /// The event store's database, through which a restore reads its snapshot.
    db: deadpool_postgres::Pool,
    /// Where the record version index is staged (issue 13 §4, [`crate::record_index`]): by default `db`; in the service, sessions that never append (migration
    /// 0220), so that staging does not hold back the event log's readers.
    index_db: deadpool_postgres::Pool,
    /// This worker process, as its rows of `backup_runs` name it (each run has its own `worker:<id>`).
    process_id: String,
    /// The runs of this process.
    local: Mutex<dispatch::LocalRuns>,
    /// A run settled: the dispatcher looks at the queue again.
    run_ended: Notify,
    /// How long a stopping worker lets its running backups finish before handing them back.
    shutdown_grace: Duration,
    /// Cancelled when the shutdown grace has run out: every run still going stops and hands its message back.
    interrupt: CancellationToken,
    /// Set once the process stops taking messages (shutdown): it has no free slot any more.
    draining: std::sync::atomic::AtomicBool,
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
        db: deadpool_postgres::Pool,
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
            dispatch: DispatchSettings::default(),
            leases: Leases::new(db.clone()),
            index_db: db.clone(),
            db,
            process_id: format!("process:{}", uuid::Uuid::now_v7()),
            local: Mutex::default(),
            run_ended: Notify::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            interrupt: CancellationToken::new(),
            draining: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Sets how long a stopping worker lets its running backups finish (default: [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Stages the record index over `pool`'s sessions (see [`BackupWorker::index_db`]).
    pub fn with_index_pool(mut self, pool: deadpool_postgres::Pool) -> Self {
        self.index_db = pool;
        self
    }

    /// Sets how many backups run at once (default: [`DispatchSettings::default`]).
    pub fn with_dispatch(mut self, dispatch: DispatchSettings) -> Self {
        self.dispatch = dispatch;
        self
    }

    /// Runs until `shutdown`, then drains: the feeder of the work queue, the dispatcher of its messages, and
    /// beside them the advisories of messages whose deliveries ran out (see [`deliveries`]) and the renewal of
    /// this process's leases. NATS failures are retried with backoff.
    ///
    /// At `shutdown` no further message is taken; the backups running then get the shutdown grace to finish
    /// (their leases renewed and their deliveries kept alive meanwhile). Those still running when it runs out
    /// are stopped, their leases released and their messages handed back to JetStream (NAK) for another worker
    /// to take at once; that worker runs the job again as its next attempt, from a clean directory. Returns
    /// once every run has settled one way or the other.
    pub async fn run(self, shutdown: CancellationToken) {
        let worker = Arc::new(self);
        // Leases live as long as runs do, past `shutdown` while the drain lasts.
        let settled = CancellationToken::new();
        tokio::join!(
            worker.keep_running("backup queue feeder", &shutdown, || worker
                .feed(&shutdown, queue::FEEDS[0])),
            worker.keep_running("restore queue feeder", &shutdown, || worker
                .feed(&shutdown, queue::FEEDS[1])),
            async {
                worker.dispatch_until_drained(&shutdown).await;
                settled.cancel();
            },
            worker.keep_running("exhausted-deliveries watcher", &shutdown, || {
                worker.watch_exhausted(&shutdown)
            }),
            worker.renew_leases(&settled),
        );
    }

    /// Runs `task` until it returns `Ok` or `shutdown`, starting it again with backoff after each error.
    async fn keep_running<F, Fut>(&self, what: &str, shutdown: &CancellationToken, task: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), queue::QueueError>>,
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
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "{what} paused; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Runs one message's job, keeping the delivery alive meanwhile; acknowledges it once the job's outcome
    /// is recorded (or there is nothing to run). An error recording the outcome leaves it unacknowledged,
    /// so it is redelivered.
    async fn handle(&self, message: &jetstream::Message, partition: &Partition) {
        let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
        let run = self.process(&message.payload, delivered, partition);
        tokio::pin!(run);
        let mut keep_alive = tokio::time::interval(self.deliveries.keep_alive());
        keep_alive.tick().await;
        let settled = loop {
            tokio::select! {
                settled = &mut run => break settled,
                _ = keep_alive.tick() => {
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %ErrorChain(&*err), "in-progress ack failed");
                    }
                }
            }
        };
        match settled {
            Ok(()) => {
                if let Err(err) = message.ack().await {
                    tracing::warn!(
                        error = %ErrorChain(&*err),
                        "ack failed; the job's message will be redelivered"
                    );
                }
            }
            // The last delivery: JetStream will not redeliver it, so this worker ends the job itself (and if
            // even that fails, JetStream's advisory has it ended; see `deliveries`).
            Err(Unsettled::Interrupted) => {
                crate::metrics::handed_back();
                tracing::info!(
                    delivered,
                    "shutdown grace over: the backup is handed back for redelivery"
                );
                if let Err(err) = message.ack_with(AckKind::Nak(Some(HAND_BACK_DELAY))).await {
                    tracing::warn!(
                        error = %ErrorChain(&*err),
                        "handing the job's message back failed; it is redelivered after its ack wait"
                    );
                }
            }
            Err(Unsettled::Failed(err)) if delivered >= self.deliveries.max_deliver => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    delivered,
                    "the job's last delivery failed; giving up on the job"
                );
                match self.give_up(&message.payload, delivered).await {
                    Ok(()) => {
                        if let Err(err) = message.ack().await {
                            tracing::warn!(
                                error = %ErrorChain(&*err),
                                "ack of a given-up job's message failed"
                            );
                        }
                    }
                    Err(err) => {
                        tracing::warn!(
                            error = %ErrorChain(&err),
                            "giving up failed; left to the max-deliveries advisory"
                        )
                    }
                }
            }
            Err(Unsettled::Failed(err)) => tracing::warn!(
                error = %ErrorChain(&err),
                "job message left for redelivery"
            ),
        }
    }

    /// `Ok` when the message is settled (job ended, or nothing to do); `Err` to have it redelivered (see
    /// [`Unsettled`]).
    async fn process(
        &self,
        body: &[u8],
        delivered: i64,
        partition: &Partition,
    ) -> Result<(), Unsettled> {
        let event: EventMessage = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "unreadable SyncRequested message dropped"
                );
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
        let job_id = event.payload.job_id();
        let source_id = event.aggregate_id;
        let source = match self.sources.live(&metadata, &source_id).await {
            Ok((source, _)) => source,
            Err(CommandError::Domain {
                kind: ErrorKind::NotFound,
                ..
            }) => {
                // Another database's message (shared NATS), or a source deleted since: nothing to run.
                return Ok(self
                    .source_gone(&metadata, job_id, source_id, delivered)
                    .await?);
            }
            Err(err) => return Err(err.into()),
        };
        let Some(platform_id) = PlatformId::parse(source.platform_id()) else {
            tracing::warn!(%job_id, %source_id, "source names an unknown platform");
            return Ok(());
        };
        let (trigger, retry_of, data_types, kind, restore) = match &event.payload {
            QueuedJobMessage::Sync(sync) => (
                sync.trigger,
                sync.retry_of,
                sync.data_types
                    .clone()
                    .unwrap_or_else(|| source.data_types().to_vec()),
                JobKind::Backup,
                None,
            ),
            QueuedJobMessage::Restore(restore) => (
                JobTrigger::Manual,
                None,
                restore.restore.data_types.clone(),
                JobKind::Restore,
                Some(&restore.restore),
            ),
        };
        let start = JobStart {
            job_id,
            source_id,
            connection_id: listbackup_commands::sources::connection_of(&source)?,
            platform_id,
            trigger,
            retry_of,
            data_types,
            kind,
        };
        let artifacts = self.store.job(
            &metadata.account_id,
            &source_id.to_string(),
            &job_id.to_string(),
        );
        // The connection's lease first (see `leases`): its platform's rate budget is this process's alone.
        // Interrupted at the end of the shutdown grace: what the run left is the next attempt's to discard
        // (as after a crash), and its lease is released at once rather than left to expire.
        let settled = tokio::select! {
            settled = async {
                self.claim_connection(job_id, partition).await.map_err(|e| {
                    CommandError::unavailable("claiming the connection's lease failed", e)
                })?;
                self.start_and_run(
                    &metadata, &worker, start, &artifacts, delivered, &source, restore,
                )
                .await
            } => settled.map_err(Unsettled::from),
            _ = self.interrupt.cancelled() => Err(Unsettled::Interrupted),
        };
        self.release_connection(job_id).await;
        settled
    }

    /// Starts the job (attempt 1, or the next attempt of a job whose run died) and runs it to its outcome: a
    /// backup, or with `restore` a restore.
    #[allow(clippy::too_many_arguments)]
    async fn start_and_run(
        &self,
        metadata: &EventMetadata,
        worker: &str,
        start: JobStart,
        artifacts: &JobArtifacts,
        delivered: i64,
        source: &Source,
        restore: Option<&RestoreRequest>,
    ) -> Result<(), CommandError> {
        let (job_id, source_id, platform_id) = (start.job_id, start.source_id, start.platform_id);
        let attempt = match self.jobs.start(metadata, worker, start).await {
            Ok(_) => 1,
            Err(CommandError::Domain {
                kind: ErrorKind::Conflict,
                ..
            })
            | Err(CommandError::Concurrency) => {
                let (job, _) = self.jobs.load(job_id).await?;
                // A redelivery of a job left running: its worker stopped acknowledging, so it is dead or cut
                // off. Run it again as the next attempt, from a clean directory.
                if delivered > 1 && job.status() == JobStatus::Running && job.cancel_requested() {
                    // The dead run was asked to stop: nothing is run again, this run confirms for it.
                    if let Err(err) = artifacts.discard().await {
                        tracing::warn!(%job_id, error = %ErrorChain(&err), "discarding a cancelled attempt");
                    }
                    return match self.jobs.confirm_cancelled(metadata, job_id).await {
                        Ok(_) | Err(CommandError::Domain { .. }) => Ok(()),
                        Err(err) => Err(err),
                    };
                }
                if delivered > 1 && job.status() == JobStatus::Running {
                    artifacts.discard().await.map_err(|e| {
                        CommandError::unavailable("discarding a dead attempt's files failed", e)
                    })?;
                    match self.jobs.restart(metadata, job_id, worker).await {
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
        let started = std::time::Instant::now();
        let run = Run {
            metadata,
            worker,
            job_id,
            attempt,
            platform_id: &platform_id,
            source_id,
            source,
            artifacts,
        };
        let outcome = match restore {
            Some(request) => self.restore(run, request).await,
            None => self.backup(run).await,
        };
        if outcome.is_err() && self.superseded(job_id, worker).await? {
            // Another run took the job over (this one was presumed dead: paused, partitioned) or the job ended
            // meanwhile. The job's directory is that run's now: discarding it here would delete the files of a
            // backup in progress, so nothing is touched and nothing recorded.
            tracing::warn!(%job_id, %worker, "this run no longer owns the job; stopping without a trace");
            return Ok(());
        }
        match outcome {
            Ok(()) => {
                tracing::info!(%job_id, "backup succeeded");
                Ok(())
            }
            Err(failure) if failure.code == JobErrorCode::Cancelled => {
                tracing::info!(%job_id, "backup cancelled");
                // Nothing of a cancelled run may look like a backup.
                if let Err(err) = artifacts.discard().await {
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "discarding a cancelled attempt's artifacts");
                }
                match self.jobs.confirm_cancelled(metadata, job_id).await {
                    Ok(_) => {
                        crate::metrics::job_finished(
                            platform_id.as_str(),
                            crate::metrics::Outcome::Cancelled,
                            started.elapsed(),
                            None,
                        );
                        Ok(())
                    }
                    Err(CommandError::Domain { .. }) => Ok(()),
                    Err(err) => Err(err),
                }
            }
            Err(failure) => {
                tracing::warn!(%job_id, code = %failure.code, message = %failure.message, "backup failed");
                // Nothing of a failed attempt may look like a backup.
                if let Err(err) = artifacts.discard().await {
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "discarding a failed attempt's artifacts");
                }
                match self
                    .jobs
                    .fail(
                        metadata,
                        job_id,
                        Some(worker),
                        failure.code,
                        &failure.message,
                        failure.retryable,
                    )
                    .await
                {
                    Ok(_) => {
                        crate::metrics::job_finished(
                            platform_id.as_str(),
                            crate::metrics::Outcome::Failed,
                            started.elapsed(),
                            None,
                        );
                        Ok(())
                    }
                    // Another attempt took over, or the job ended meanwhile: this run's word no longer counts.
                    Err(CommandError::Domain { .. }) => Ok(()),
                    Err(err) => Err(err),
                }
            }
        }
    }

    /// Whether the job is no longer this run's: another attempt's worker runs it, or it has ended.
    async fn superseded(&self, job_id: JobId, worker: &str) -> Result<bool, CommandError> {
        let (job, _) = self.jobs.load(job_id).await?;
        Ok(!job.is_run_by(worker))
    }

    async fn cancel_requested(&self, job_id: JobId) -> Result<bool, CommandError> {
        Ok(self.jobs.load(job_id).await?.0.cancel_requested())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_failure_is_recorded_with_its_reason() {
        let source = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        let reason = source.to_string();
        let failure = RunFailure::from(FetchError::UnreadableBody {
            what: "the platform's answer is not complete JSON".into(),
            source,
        });
        assert_eq!(failure.code, JobErrorCode::PlatformError);
        assert!(failure.retryable);
        // The variant's message, then the parser's reason it keeps as its source.
        assert_eq!(
            failure.message,
            format!(
                "the platform's answers kept arriving damaged: the platform's answer is not complete \
                 JSON: {reason}"
            )
        );
    }

    #[test]
    fn a_storage_failure_is_recorded_with_its_reason_once() {
        // `StorageError::Io` shows its source in its own message: the chain does not repeat it.
        let err = StorageError::Io(std::io::Error::other("disk full"));
        let failure = RunFailure::from(err);
        assert_eq!(failure.message, "compression: disk full");
    }
}
