//! Requesting a restore (`POST /sources/{id}/restores`, issue 13 §5). The rules:
//!
//! 1. The source must be live for the caller's account; otherwise it is not found.
//! 2. `snapshot` must be a backup of that source that can still be read: a succeeded or partial backup job
//!    (not a restore) that retention has not expired. Anything else — another source's or account's job, a
//!    missing id, a failed or running job — is the same 422 on `snapshot`, so nothing about other accounts'
//!    jobs leaks.
//! 3. The source aggregate decides the rest: every data type must be a writable one of its platform (422
//!    naming them), and the source must have no queued or running job (409), as for a sync.
//!
//! The restore is then a job of kind restore, queued by the source's `RestoreRequested`, which the workers run
//! like a backup.

use listbackup_domain::job::{JobKind, JobStatus, RestoreRequest};
use listbackup_domain::ErrorKind;

use crate::bus::{CommandError, Committed};
use crate::jobs::JobCommands;
use crate::metadata::EventMetadata;
use crate::sources::SourceCommands;

/// A restore job just queued.
#[derive(Debug, Clone)]
pub struct QueuedRestore {
    /// The new job's id (UUID v7).
    pub job_id: listbackup_domain::JobId,
    /// The source's command result (`RestoreRequested`): read-your-writes waits for its version.
    pub committed: Committed,
}

/// Queues a restore of `request.snapshot` into source `source_id`'s platform (see the module's rules).
pub async fn request_restore(
    sources: &SourceCommands,
    jobs: &JobCommands,
    metadata: &EventMetadata,
    source_id: &listbackup_domain::SourceId,
    request: RestoreRequest,
) -> Result<QueuedRestore, CommandError> {
    sources.live(metadata, source_id).await?;
    let (snapshot, _) = jobs.load(request.snapshot).await?;
    let not_a_backup = |why: &str| CommandError::Domain {
        kind: ErrorKind::Invalid,
        field: Some("snapshot"),
        message: format!(
            "{why}: the snapshot must be a succeeded or partial backup of this source"
        ),
    };
    if snapshot.status() == JobStatus::Queued
        || snapshot.account_id() != metadata.account_id
        || snapshot.source_id() != Some(*source_id)
    {
        return Err(not_a_backup("no backup of this source has this id"));
    }
    if snapshot.kind() != JobKind::Backup {
        return Err(not_a_backup("the job is a restore"));
    }
    if let Err(err) = snapshot.check_backup() {
        return Err(not_a_backup(&err.to_string()));
    }
    let job_id = listbackup_domain::JobId::new();
    let committed = sources
        .request_restore(metadata, source_id, job_id, request)
        .await?;
    Ok(QueuedRestore { job_id, committed })
}
