use std::collections::BTreeMap;

use super::{JobErrorCode, JobTrigger, QueuedJob};
use crate::platform::PlatformId;
use crate::values::AccountId;
use crate::{ConnectionId, JobId, SourceId};

/// What may be asked of a job. Each carries the caller's account: a job answers only to its own.
#[derive(Debug, Clone)]
pub enum JobCommand {
    /// A worker takes a queued job on (attempt 1); `worker` identifies this run, see [`JobCommand::Restart`]. Only valid on an empty stream: a second `Start`, by the
    /// same or another worker, conflicts, which is how a duplicated or redelivered message is recognised.
    Start {
        /// The id `SyncRequested` chose for the job (UUID v7); also the aggregate id.
        job_id: JobId,
        account_id: AccountId,
        source_id: SourceId,
        connection_id: ConnectionId,
        platform_id: PlatformId,
        trigger: JobTrigger,
        /// Required with `trigger: Retry`, refused with any other trigger.
        retry_of: Option<JobId>,
        worker: String,
        data_types: Vec<String>,
        /// A backup, or a restore (whose request the worker read from the source's `RestoreRequested`).
        kind: super::JobKind,
    },
    /// A worker runs a started job again because its message was redelivered: the worker of the previous
    /// attempt stopped acknowledging it (killed, partitioned). The attempt number is the aggregate's to count.
    Restart {
        account_id: AccountId,
        worker: String,
    },
    RecordProgress {
        account_id: AccountId,
        /// The worker sending it: must be the current attempt's (see [`JobCommand::Restart`]).
        worker: String,
        data_types_done: u32,
        data_types_total: u32,
        current_data_type: Option<String>,
        records: u64,
        bytes: u64,
    },
    /// One data type's artifact is stored completely.
    RecordResource {
        account_id: AccountId,
        worker: String,
        data_type: String,
        records: u64,
        bytes: u64,
        sha256: String,
        object: String,
    },
    /// One data type could not be backed up by the current attempt (see `ResourceBackupFailed`).
    RecordResourceFailure {
        account_id: AccountId,
        worker: String,
        data_type: String,
        code: JobErrorCode,
        message: String,
        retryable: bool,
    },
    /// A restore's batch of records of one data type is written (or planned, dry): see `RecordsRestored`.
    RecordRestored {
        account_id: AccountId,
        worker: String,
        data_type: String,
        created: u64,
        updated: u64,
        skipped: u64,
        failed: u64,
    },
    /// Every data type is backed up and the manifest is written. For a restore: every data type was
    /// restored and its report (the "manifest") is written.
    Succeed {
        account_id: AccountId,
        worker: String,
        manifest: String,
        manifest_sha256: String,
        records: u64,
        bytes: u64,
        cursors: BTreeMap<String, serde_json::Value>,
    },
    /// Every data type is either backed up or failed, at least one of each, and the manifest of the backed-up
    /// ones is written. The failures are the aggregate's to list (`JobPartiallySucceeded.failedDataTypes`).
    PartiallySucceed {
        account_id: AccountId,
        worker: String,
        manifest: String,
        manifest_sha256: String,
        records: u64,
        bytes: u64,
        /// The backed-up data types' cursors only.
        cursors: BTreeMap<String, serde_json::Value>,
    },
    Fail {
        account_id: AccountId,
        /// The current attempt's worker, or `None` when the system fails the job on its behalf (its message
        /// exhausted its deliveries, its source was deleted).
        worker: Option<String>,
        code: JobErrorCode,
        message: String,
        retryable: bool,
        /// The job's identity, given by the system when it fails a job that may never have started (its message
        /// exhausted its deliveries before any worker started it): recorded in `JobFailed` only when the
        /// stream is empty, so the stream knows whose it is. Must name the command's account.
        queued: Option<QueuedJob>,
    },
    /// Asks a queued or running job to stop. Repeating it while the running job winds down changes nothing.
    RequestCancel {
        account_id: AccountId,
        /// The job's id and source: recorded only when the job is still queued (its stream is empty), so the
        /// stream knows whose it is. The caller checked that the queued job is this account's (read model).
        job_id: JobId,
        source_id: SourceId,
    },
    /// A job whose cancellation was requested has stopped. Not fenced by worker: the outcome is the same
    /// whoever confirms it, and the run receiving a redelivered message of such a job (which it must not run
    /// again) confirms on behalf of the dead one.
    ConfirmCancelled { account_id: AccountId },
    /// Keeps a backup (a succeeded or partial job) from expiring; `reason` says why (1 to 500 characters).
    /// Who holds it is the command's actor (event metadata).
    PlaceHold {
        account_id: AccountId,
        reason: String,
    },
    /// Lets retention apply to the backup again. Releasing a backup that is not held records nothing.
    ReleaseHold { account_id: AccountId },
    /// Retention expires the backup: refused while it is held, and a backup already expired records nothing
    /// (so any number of sweepers expire it once). `files` and `bytes` are what its directory holds.
    Expire {
        account_id: AccountId,
        files: u64,
        bytes: u64,
    },
    /// The outcome of reading the backup's files back (see [`super::Verification`]).
    RecordVerification {
        account_id: AccountId,
        outcome: super::Verification,
    },
}

impl JobCommand {
    pub fn account_id(&self) -> &AccountId {
        match self {
            Self::Start { account_id, .. }
            | Self::Restart { account_id, .. }
            | Self::RecordProgress { account_id, .. }
            | Self::RecordResource { account_id, .. }
            | Self::RecordResourceFailure { account_id, .. }
            | Self::RecordRestored { account_id, .. }
            | Self::Succeed { account_id, .. }
            | Self::PartiallySucceed { account_id, .. }
            | Self::Fail { account_id, .. }
            | Self::RequestCancel { account_id, .. }
            | Self::ConfirmCancelled { account_id }
            | Self::PlaceHold { account_id, .. }
            | Self::ReleaseHold { account_id }
            | Self::Expire { account_id, .. }
            | Self::RecordVerification { account_id, .. } => account_id,
        }
    }
}
