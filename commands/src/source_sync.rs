//! Queuing a backup of one source (`POST /sources/{id}/sync`, `POST /jobs`, `POST /jobs/{id}/retry`). The
//! rules:
//!
//! 1. The source aggregate records `SyncRequested` for the new job, or refuses while a job of the source is
//!    queued or running (409 CONFLICT), so two concurrent requests can never both queue one.
//! 2. The source learns that its job ended from the job's end in the event log: the sagas record
//!    `SyncFinished` on the source a moment after the job's own end, which the job already shows. A request
//!    in between (a client that saw its last job succeed and syncs again at once) is not a conflict: when the
//!    job the source still holds has ended, the request waits for the source to record that end (at most
//!    [`FOLLOW_UP_WAIT`]) and is decided again; past the wait it is a 503 to retry, never a 409 naming a job
//!    that has ended. A job still queued or running is the 409 at once.
//! 3. With `If-Match` the request is decided on the version the caller saw, once: no wait (the source's end
//!    of its job is a new version the caller has not seen).

use std::time::Duration;

use listbackup_domain::{ErrorKind, JobId, SourceId};
use tokio::time::Instant;

use crate::bus::{CommandError, Committed};
use crate::jobs::JobCommands;
use crate::metadata::EventMetadata;
use crate::sources::{SourceCommands, SyncRequest};

/// How long a sync waits for its source to record that its last job ended (the sagas take milliseconds,
/// longer only while the service is starting or overloaded).
pub const FOLLOW_UP_WAIT: Duration = Duration::from_secs(3);

/// How often a waiting sync looks at the source again.
const FOLLOW_UP_RECHECK: Duration = Duration::from_millis(20);

/// Queues job `job_id` of source `source_id` (see the module's rules). `expected`: the source's version the
/// caller saw (`If-Match`). The errors of [`SourceCommands::request_sync`], and
/// [`CommandError::CatchingUp`] when the source has not recorded the end of its last job in time.
pub async fn queue_sync(
    sources: &SourceCommands,
    jobs: &JobCommands,
    metadata: &EventMetadata,
    source_id: &SourceId,
    job_id: JobId,
    sync: SyncRequest,
    expected: impl Into<crate::ExpectedVersion>,
) -> Result<Committed, CommandError> {
    let expected = expected.into();
    let deadline = Instant::now() + FOLLOW_UP_WAIT;
    let mut freed_once = false;
    loop {
        let refused = match sources
            .request_sync(metadata, source_id, job_id, sync.clone(), expected.clone())
            .await
        {
            Err(
                err @ CommandError::Domain {
                    kind: ErrorKind::Conflict,
                    ..
                },
            ) if expected.is_any() => err,
            other => return other,
        };
        // Refused while a job is held: is that job still going, or has its end just not reached the source?
        let Some(held) = sources.active_job(source_id).await? else {
            // No job held now: the one that was has been recorded ended since the refusal (decided again,
            // once), or the refusal had another reason (a connection to fix, every data type deselected),
            // which stands.
            if freed_once {
                return Err(refused);
            }
            freed_once = true;
            continue;
        };
        let (job, _) = jobs.load(held).await?;
        if !job.status().is_terminal() {
            return Err(refused);
        }
        if Instant::now() >= deadline {
            tracing::warn!(%source_id, job_id = %held, "the source has not recorded the end of its last job in time");
            return Err(CommandError::CatchingUp {
                context: format!(
                    "the source's last job ({held}) has ended ({}), and the source has not recorded it yet; \
                     retry shortly",
                    job.status()
                )
                .into(),
            });
        }
        tokio::time::sleep(FOLLOW_UP_RECHECK).await;
    }
}
