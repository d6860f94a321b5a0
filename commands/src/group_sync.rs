//! Syncing a source group (`POST /source-groups/{id}/sync`): one backup job per member that can take one.
//! The rules:
//!
//! 1. The group must be live for the caller's account; otherwise it is not found.
//! 2. Members are taken newest first (source ids are UUIDv7, so descending id order), as
//!    `GET /source-groups/{id}` lists them.
//! 3. Only an active member is synced: a paused or deleted one (a deleted source leaves its groups through
//!    the membership saga, which may not have run yet) is left out.
//! 4. Each member's job is queued by the source's own `SyncRequested` (trigger `group`, naming the group),
//!    so the source aggregate decides, as for `POST /sources/{id}/sync`.
//! 5. A member the source refuses, because it already has a queued or running job (that job is its backup)
//!    or because it was deleted since the group was read, gets no job and does not fail the others; any
//!    other error ends the sync with it. A member whose last job has just ended, before the source recorded
//!    that end, is queued once the source has ([`crate::source_sync`]); one whose source does not catch up
//!    in time is skipped like a busy one.
//!
//! Group and sources are read from the event store, never from a read model, so a member added or paused a
//! moment ago is seen as it is.

use listbackup_domain::job::JobTrigger;
use listbackup_domain::source::SourceStatus;
use listbackup_domain::ErrorKind;

use crate::bus::{CommandError, Committed};
use crate::jobs::JobCommands;
use crate::metadata::EventMetadata;
use crate::source_groups::SourceGroupCommands;
use crate::source_sync::queue_sync;
use crate::sources::{SourceCommands, SyncRequest};

/// A job that a group sync queued.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// The member whose `SyncRequested` queued the job: the caller's read-your-writes waits for
    /// `committed.version` on it.
    pub source_id: listbackup_domain::SourceId,
    /// The new job's id (UUIDv7).
    pub job_id: listbackup_domain::JobId,
    /// The source's command result.
    pub committed: Committed,
}

/// Syncs group `group_id` of `metadata.account_id` (see the module's rules): the jobs queued, in member
/// order. Not found for a group that is not live for the account.
pub async fn sync_group(
    groups: &SourceGroupCommands,
    sources: &SourceCommands,
    jobs: &JobCommands,
    metadata: &EventMetadata,
    group_id: &listbackup_domain::SourceGroupId,
) -> Result<Vec<QueuedJob>, CommandError> {
    let (group, _) = groups.live(metadata, group_id).await?;
    let mut queued = Vec::new();
    for source_id in group.members().iter().rev() {
        match sources.live(metadata, source_id).await {
            Ok((source, _)) if source.status() == SourceStatus::Active => {}
            // Paused, or deleted since it was added (rule 3).
            Ok(_) => continue,
            Err(err) if err.is_not_found() => continue,
            Err(err) => return Err(err),
        }
        let job_id = listbackup_domain::JobId::new();
        let sync = SyncRequest {
            trigger: JobTrigger::Group,
            retry_of: None,
            group_id: Some(*group_id),
            data_types: None,
        };
        match queue_sync(sources, jobs, metadata, source_id, job_id, sync, None).await {
            Ok(committed) => queued.push(QueuedJob {
                source_id: *source_id,
                job_id,
                committed,
            }),
            // Busy, or deleted since it was read (rule 5).
            Err(
                CommandError::Domain {
                    kind: ErrorKind::NotFound | ErrorKind::Conflict,
                    ..
                }
                | CommandError::CatchingUp { .. },
            ) => {
                tracing::info!(%source_id, %group_id, "group sync skipped a member");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(queued)
}
