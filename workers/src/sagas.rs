//! Sagas of sources and source groups, driven by the event log rather than by in-process calls: a catch-up
//! reader with its own checkpoint (`source-sagas`), so a crash between a deletion and its follow-ups
//! only delays them. Follow-up commands are idempotent (removing a non-member is refused and ignored), so
//! replaying a batch after a crash is harmless.
//!
//! - `SourceDeleted` → `SourceRemovedFromGroup` on every group the source was ever added to (asked of the log
//!   itself, which never lags, through an expression index), and `JobCancelRequested` on the source's queued
//!   or running job (a queued one is cancelled at once, a running one by its worker).
//! - `SourceAddedToGroup` of a source whose deletion comes earlier in the log (deleted between the route's
//!   check and the commit) → `SourceRemovedFromGroup` again.
//! - `ConnectionDeleted` → `SourceDeleted` on every live source created on the connection. `DELETE
//!   /connections/{id}` refuses (or, with `?cascade=true`, deletes the sources itself) before the connection
//!   goes; this catches a source created concurrently, after that check.
//! - `JobSucceeded`, `JobPartiallySucceeded`, `JobFailed`, `JobCancelled` → `SyncFinished` on the job's
//!   source, which frees the source for its next sync (the source is named by the job stream's first event:
//!   `JobStarted`, or the `JobCancelRequested` / `JobFailed` of a job that ended before it started). A
//!   succeeded or partial job names the data types it backed up, whose cursors the source takes.
//! - `SourceGroupDeleted` needs no command: the event names the memberships and the projection drops them.
//!
//! Follow-ups are recorded with actor `system`, `causationId` = the triggering event's id, and the triggering
//! request's `correlationId`.

use std::sync::Arc;

use deadpool_postgres::Pool;
use listbackup_commands::jobs::JobCommands;
use listbackup_commands::source_groups::SourceGroupCommands;
use listbackup_commands::sources::SourceCommands;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::JobKind;
use listbackup_domain::source::SyncOutcome;
use listbackup_domain::ErrorChain;
use listbackup_domain::{ErrorKind, JobId, ResourceId, SourceGroupId, SourceId};
use listbackup_projections::{ProjectedWatch, StoredEvent};

use crate::log_follower::{Checkpoint, Handled, LogFollower};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The saga's checkpoint name.
pub const CHECKPOINT: &str = "source-sagas";

/// Names the saga's advisory lock among all advisory locks ("LBSAGSM"): one process runs it at a time.
const SAGA_LOCK: i64 = 0x004c_4253_4147_534d;

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("event log: {0}")]
    Log(#[from] listbackup_projections::ReadError),
    #[error("command: {0}")]
    Command(#[from] CommandError),
}

pub struct SourceSagas {
    pool: Pool,
    groups: Arc<SourceGroupCommands>,
    sources: Arc<SourceCommands>,
    jobs: Arc<JobCommands>,
    batch_size: i64,
    /// One saga runner at a time across processes, woken by this process's commits.
    follower: LogFollower,
}

impl SourceSagas {
    pub fn new(
        pool: Pool,
        groups: Arc<SourceGroupCommands>,
        sources: Arc<SourceCommands>,
        jobs: Arc<JobCommands>,
    ) -> Self {
        Self {
            follower: LogFollower::new(pool.clone(), SAGA_LOCK, "source sagas", CHECKPOINT),
            pool,
            groups,
            sources,
            jobs,
            batch_size: 200,
        }
    }

    /// Follows up as soon as this process's projector has seen a commit, not at the next poll.
    pub fn woken_by(self, projected: ProjectedWatch) -> Self {
        Self {
            follower: self.follower.clone().woken_by(projected),
            ..self
        }
    }

    /// Wakes on the event log's notifications (other processes' commits) instead of polling.
    pub fn woken_by_log(self, log: listbackup_projections::LogWake) -> Self {
        Self {
            follower: self.follower.clone().woken_by_log(log),
            ..self
        }
    }

    /// Runs until `shutdown`: waits for the saga lock, then follows the log. Failures are retried with
    /// backoff from the last checkpoint; nothing is skipped.
    pub async fn run(self, shutdown: CancellationToken) {
        self.follower
            .run(
                shutdown,
                || async { Ok::<(), SagaError>(()) },
                |from| self.run_batch(from),
            )
            .await
    }

    /// Handles the next batch after `at.handled`. Leaves the checkpoint to the follower, which stores it
    /// about once a second ([`crate::log_follower::STORE_EVERY`]): every follow-up is idempotent (a command
    /// that finds its work done records nothing), so the events a crash makes it read again are harmless, and
    /// most batches (connections, groups, most job events) hold nothing for the sagas at all.
    pub async fn run_batch(&self, at: Checkpoint) -> Result<Handled, SagaError> {
        let client = self.pool.get().await?;
        let events = self
            .follower
            .read(&client, at.handled, self.batch_size)
            .await?;
        for event in &events {
            self.handle(&client, event).await?;
        }
        Ok(Handled::of(&events, self.batch_size))
    }

    async fn handle(
        &self,
        client: &deadpool_postgres::Client,
        event: &StoredEvent,
    ) -> Result<(), SagaError> {
        match (event.aggregate_type.as_str(), event.event_type.as_str()) {
            (listbackup_domain::source::AGGREGATE_TYPE, "SourceDeleted") => {
                let rows = client
                    .query(
                        "SELECT DISTINCT aggregate_id FROM events \
                         WHERE aggregate_type = 'source_group' AND event_type = 'SourceAddedToGroup' \
                           AND (payload -> 'SourceAddedToGroup' ->> 'sourceId') = $1",
                        &[&event.aggregate_id],
                    )
                    .await?;
                let metadata = follow_up(event);
                let Some(source_id) = logged_id::<SourceId>(&event.aggregate_id) else {
                    return Ok(());
                };
                for row in rows {
                    let group_id: String = row.get(0);
                    if let Some(group_id) = logged_id::<SourceGroupId>(&group_id) {
                        self.remove(&metadata, group_id, source_id).await?;
                    }
                }
                self.cancel_active_job(&metadata, source_id).await?;
            }
            (listbackup_domain::connection::AGGREGATE_TYPE, "ConnectionDeleted") => {
                let rows = client
                    .query(
                        "SELECT aggregate_id FROM events \
                         WHERE aggregate_type = 'source' AND event_type = 'SourceCreated' \
                           AND (payload -> 'SourceCreated' ->> 'connectionId') = $1",
                        &[&event.aggregate_id],
                    )
                    .await?;
                let metadata = follow_up(event);
                for row in rows {
                    let source_id: String = row.get(0);
                    let Some(source_id) = logged_id::<SourceId>(&source_id) else {
                        continue;
                    };
                    match self.sources.delete(&metadata, &source_id, None).await {
                        Ok(_) => tracing::info!(
                            %source_id,
                            connection_id = %event.aggregate_id,
                            "source of a deleted connection deleted"
                        ),
                        // Already deleted (the usual case: the route deleted it first).
                        Err(CommandError::Domain {
                            kind: ErrorKind::NotFound,
                            ..
                        }) => {}
                        Err(err @ CommandError::Domain { .. }) => {
                            tracing::warn!(%source_id, error = %ErrorChain(&err), "saga follow-up refused")
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
            }
            (listbackup_domain::source_group::AGGREGATE_TYPE, "SourceAddedToGroup") => {
                let Some(source_id) = event.body().get("sourceId").and_then(Value::as_str) else {
                    return Ok(());
                };
                // Only a deletion *before* this add in the log needs handling here: a later one is handled
                // when the saga reaches it (so each removal names the deletion as its cause).
                let deleted_before = client
                    .query_opt(
                        "SELECT event_id FROM events \
                         WHERE aggregate_type = 'source' AND aggregate_id = $1 \
                           AND event_type = 'SourceDeleted' \
                           AND (transaction_id, global_position) < ($2::text::xid8, $3)",
                        &[
                            &source_id,
                            &event.position.transaction_id.to_string(),
                            &event.position.global_position,
                        ],
                    )
                    .await?;
                if deleted_before.is_some() {
                    let (Some(group_id), Some(source_id)) = (
                        logged_id::<SourceGroupId>(&event.aggregate_id),
                        logged_id::<SourceId>(source_id),
                    ) else {
                        return Ok(());
                    };
                    self.remove(&follow_up(event), group_id, source_id).await?;
                }
            }
            (listbackup_domain::job::AGGREGATE_TYPE, "JobSucceeded") => {
                self.finish_sync(client, event, SyncOutcome::Succeeded)
                    .await?
            }
            (listbackup_domain::job::AGGREGATE_TYPE, "JobPartiallySucceeded") => {
                self.finish_sync(client, event, SyncOutcome::Partial)
                    .await?
            }
            (listbackup_domain::job::AGGREGATE_TYPE, "JobFailed") => {
                self.finish_sync(client, event, SyncOutcome::Failed).await?
            }
            (listbackup_domain::job::AGGREGATE_TYPE, "JobCancelled") => {
                self.finish_sync(client, event, SyncOutcome::Cancelled)
                    .await?
            }
            _ => {}
        }
        Ok(())
    }

    /// Records the end of a job on its source.
    async fn finish_sync(
        &self,
        client: &deadpool_postgres::Client,
        event: &StoredEvent,
        outcome: SyncOutcome,
    ) -> Result<(), SagaError> {
        let Some(job_id) = logged_id::<JobId>(&event.aggregate_id) else {
            return Ok(());
        };
        // The first event names the source: JobStarted, or the JobCancelRequested / JobFailed of a job that
        // ended while queued (cancelled, or given up after its message exhausted its deliveries).
        let first = client
            .query_opt(
                "SELECT COALESCE(payload -> 'JobStarted' ->> 'sourceId', \
                                 payload -> 'JobCancelRequested' -> 'queued' ->> 'sourceId', \
                                 payload -> 'JobFailed' -> 'queued' ->> 'sourceId'), \
                        payload -> 'JobStarted' -> 'dataTypes', \
                        payload -> 'JobStarted' ->> 'kind' \
                 FROM events WHERE aggregate_type = 'job' AND aggregate_id = $1 AND sequence = 1",
                &[&event.aggregate_id],
            )
            .await?;
        let Some((source_id, data_types)) = first.and_then(|row| {
            let source_id = row.get::<_, Option<String>>(0)?;
            // A restore backed nothing up: the source's cursors stay as they are.
            let restore = row.get::<_, Option<&str>>(2) == Some(JobKind::Restore.as_str());
            let data_types: Vec<String> = row
                .get::<_, Option<Value>>(1)
                .filter(|_| !restore)
                .and_then(|d| serde_json::from_value(d).ok())
                .unwrap_or_default();
            Some((source_id, data_types))
        }) else {
            tracing::warn!(%job_id, "a job ended whose source is unknown");
            return Ok(());
        };
        let Some(source_id) = logged_id::<SourceId>(&source_id) else {
            return Ok(());
        };
        // A succeeded or partial job hands the cursors of the data types it backed up to the source, where
        // the next job starts from; a data type that failed is not among them, and keeps its previous cursor.
        let body = event.body();
        let cursors = body
            .get("cursors")
            .and_then(|cursors| serde_json::from_value(cursors.clone()).ok())
            .unwrap_or_default();
        let backed_up = match outcome {
            SyncOutcome::Succeeded => Some(data_types),
            SyncOutcome::Partial => {
                let failed: Vec<&str> = body
                    .get("failedDataTypes")
                    .and_then(Value::as_array)
                    .map(|failed| {
                        failed
                            .iter()
                            .filter_map(|f| f.get("dataType").and_then(Value::as_str))
                            .collect()
                    })
                    .unwrap_or_default();
                Some(
                    data_types
                        .into_iter()
                        .filter(|d| !failed.contains(&d.as_str()))
                        .collect(),
                )
            }
            SyncOutcome::Failed | SyncOutcome::Cancelled => None,
        };
        match self
            .sources
            .finish_sync(
                &follow_up(event),
                &source_id,
                job_id,
                outcome,
                cursors,
                backed_up,
            )
            .await
        {
            Ok(_) => Ok(()),
            // The source was deleted meanwhile: nothing left to free.
            Err(CommandError::Domain {
                kind: ErrorKind::NotFound,
                ..
            }) => Ok(()),
            Err(err @ CommandError::Domain { .. }) => {
                tracing::warn!(%source_id, %job_id, error = %ErrorChain(&err), "SyncFinished refused");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// A deleted source's queued or running job is cancelled: nothing runs for a source that is gone. Replays
    /// are harmless: cancelling again, or cancelling a job that ended meanwhile, is refused and ignored.
    async fn cancel_active_job(
        &self,
        metadata: &EventMetadata,
        source_id: SourceId,
    ) -> Result<(), SagaError> {
        let Some(job_id) = self.sources.active_job(&source_id).await? else {
            return Ok(());
        };
        match self.jobs.request_cancel(metadata, job_id, source_id).await {
            Ok(committed) => {
                if committed.events > 0 {
                    tracing::info!(%source_id, %job_id, "the deleted source's job was asked to stop");
                }
                Ok(())
            }
            Err(err @ CommandError::Domain { .. }) => {
                tracing::info!(%source_id, %job_id, error = %ErrorChain(&err), "the deleted source's job needs no cancelling");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    async fn remove(
        &self,
        metadata: &EventMetadata,
        group_id: SourceGroupId,
        source_id: SourceId,
    ) -> Result<(), SagaError> {
        match self
            .groups
            .remove_source(metadata, &group_id, &source_id, None)
            .await
        {
            Ok(committed) => {
                if committed.events > 0 {
                    tracing::info!(%group_id, %source_id, "deleted source removed from its group");
                }
                Ok(())
            }
            // Not a member (any more), or the group is gone: nothing to do.
            Err(CommandError::Domain {
                kind: ErrorKind::NotFound,
                ..
            }) => Ok(()),
            // Retrying cannot change a refusal: log it rather than stall the saga behind it.
            Err(err @ CommandError::Domain { .. }) => {
                tracing::warn!(%group_id, %source_id, error = %ErrorChain(&err), "saga follow-up refused");
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }
}

/// The typed id `raw` names, as the log holds it (an `aggregate_id`, or an id in a payload). The command bus
/// names every stream by its typed id, so text that is not a UUID names nothing this saga can command: the
/// follow-up is skipped, with a warning, rather than retried for ever.
fn logged_id<I: ResourceId>(raw: &str) -> Option<I> {
    let id = raw.parse().ok();
    if id.is_none() {
        tracing::warn!(id = raw, kind = ?I::KIND, "the log names a resource by an id that is not a UUID: no follow-up");
    }
    id
}

/// The metadata of a command that follows from `event`.
fn follow_up(event: &StoredEvent) -> EventMetadata {
    let text = |key: &str| {
        event
            .metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let event_id = event.event_id.to_string();
    EventMetadata {
        account_id: text("accountId").unwrap_or_default(),
        actor: "system".to_owned(),
        request_id: text("requestId").unwrap_or_default(),
        correlation_id: text("correlationId").unwrap_or_else(|| event_id.clone()),
        causation_id: event_id,
    }
}
