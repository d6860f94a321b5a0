use cqrs_es::DomainEvent;
use std::collections::BTreeMap;

use super::{JobErrorCode, JobKind};
use crate::{ConnectionId, JobId, SourceId};
use serde::{Deserialize, Serialize};

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker took the job on. Always the stream's first event, and always attempt 1: later attempts of the
    /// same job are [`JobEvent::JobAttemptStarted`].
    #[serde(rename_all = "camelCase")]
    JobStarted {
        job_id: JobId,
        account_id: String,
        source_id: SourceId,
        connection_id: ConnectionId,
        platform_id: String,
        trigger: JobTrigger,
        /// The failed or cancelled job this one retries (`trigger: retry` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<JobId>,
        attempt: u32,
        /// The worker running this attempt (`worker:<id>` in the event metadata's actor as well).
        worker: String,
        data_types: Vec<String>,
        /// A backup (absent from backups' events) or a restore (its request is the source's
        /// `RestoreRequested`).
        #[serde(default, skip_serializing_if = "JobKind::is_backup")]
        kind: JobKind,
    },
    /// The job's message was redelivered because the worker running the previous attempt died; another worker
    /// runs it again from the start. Progress and backed-up resources of earlier attempts no longer count.
    #[serde(rename_all = "camelCase")]
    JobAttemptStarted { attempt: u32, worker: String },
    /// Coarse progress (at most once a second, and at every data type boundary).
    #[serde(rename_all = "camelCase")]
    JobProgressed {
        data_types_done: u32,
        data_types_total: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_data_type: Option<String>,
        records: u64,
        bytes: u64,
    },
    /// One data type is stored completely: `object` is its artifact's path, `sha256` the stored file's hash.
    #[serde(rename_all = "camelCase")]
    ResourceBackedUp {
        data_type: String,
        records: u64,
        bytes: u64,
        sha256: String,
        object: String,
    },
    /// One data type could not be backed up by this attempt: the platform refused or kept failing its
    /// requests, or the connection failed while it was still to come (then every data type not backed up yet
    /// fails with the same code). Nothing of it is stored; the attempt goes on with the next data type. Not
    /// recorded for failures of ListBackup's own infrastructure or for cancellation: those end the attempt.
    #[serde(rename_all = "camelCase")]
    ResourceBackupFailed {
        data_type: String,
        /// Why the data type failed.
        code: JobErrorCode,
        /// Why, for people; never carries a credential.
        message: String,
        /// Whether running the data type again later may succeed without anyone changing anything.
        retryable: bool,
    },
    /// A restore wrote (or, dry, planned) one batch of a data type's records: how many were created again,
    /// updated back to the snapshot, skipped (unchanged, or left alone by mode `missing`) and failed (the
    /// platform refused the write, or cannot take it). The per-record detail is in the restore's report.
    #[serde(rename_all = "camelCase")]
    RecordsRestored {
        data_type: String,
        created: u64,
        updated: u64,
        skipped: u64,
        failed: u64,
    },
    /// Every data type is stored and the manifest written last; `manifest_sha256` proves which manifest.
    #[serde(rename_all = "camelCase")]
    JobSucceeded {
        manifest: String,
        manifest_sha256: String,
        records: u64,
        bytes: u64,
        /// Per data type, where the source's next incremental job starts (the manifest's `cursors`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        cursors: BTreeMap<String, serde_json::Value>,
    },
    /// The job ended with a backup of some of its data types: every other one failed
    /// (`ResourceBackupFailed`, repeated here). The succeeded data types' files and the manifest, which lists
    /// the failures, are kept; the job's status is `partial`: AWS Backup's word (`PARTIAL` backup job state)
    /// for a run that stored only part of what it was asked to, as Airbyte's `incomplete` is for a sync, so
    /// that neither "succeeded" hides the missing data nor "failed" hides the stored data.
    /// `cursors` hold only the backed-up data types' cursors: a failed one keeps its previous cursor.
    #[serde(rename_all = "camelCase")]
    JobPartiallySucceeded {
        manifest: String,
        manifest_sha256: String,
        /// Totals over the stored files.
        records: u64,
        bytes: u64,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        cursors: BTreeMap<String, serde_json::Value>,
        /// At least one; in the job's data type order.
        failed_data_types: Vec<DataTypeFailure>,
    },
    /// The job ended without a backup. Usually recorded by the worker running it; when the system gives up on
    /// a job whose message exhausted its deliveries before any worker started it, this is the stream's first
    /// event and carries the job's identity in `queued`, as `JobCancelRequested` does.
    #[serde(rename_all = "camelCase")]
    JobFailed {
        code: JobErrorCode,
        message: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<QueuedJob>,
    },
    /// Someone asked the job to stop. For a running job the worker confirms with `JobCancelled` within one
    /// progress interval. A job cancelled while still queued has no stream yet: then this is its first event,
    /// carries the job's identity in `queued` (so the stream knows its owner) and is followed by `JobCancelled`
    /// in the same commit; a worker receiving the job later cannot start it.
    #[serde(rename_all = "camelCase")]
    JobCancelRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<QueuedJob>,
    },
    /// The job stopped on request; whatever it had written is discarded, not presented as a backup.
    #[serde(rename_all = "camelCase")]
    JobCancelled {},
    /// Someone put the backup under a hold: retention does not expire it until the hold is released. Who is
    /// the event metadata's `actor`; why is `reason`. Placing a hold again replaces the reason.
    #[serde(rename_all = "camelCase")]
    BackupHeld { reason: String },
    /// The hold was released (who: the metadata's `actor`): retention applies to the backup again.
    #[serde(rename_all = "camelCase")]
    BackupHoldReleased {},
    /// Retention expired the backup: its stored objects (`files` of them, `bytes` in all, as listed just
    /// before) are deleted from storage after this event, and its files are gone for good (410). Recorded
    /// once: a second expiry of the same backup records nothing.
    #[serde(rename_all = "camelCase")]
    BackupExpired { files: u64, bytes: u64 },
    /// Every stored file of the backup was read back and matches the manifest's sha256, and the manifest
    /// matches the `manifestSha256` its job recorded.
    #[serde(rename_all = "camelCase")]
    BackupVerified { files: u64, bytes: u64 },
    /// A stored file (or the manifest itself, `manifest.json`) does not hash to what was recorded for it:
    /// `found` is its sha256 now, or `missing` when it could not be found at all.
    #[serde(rename_all = "camelCase")]
    BackupCorrupted {
        file: String,
        expected: String,
        found: String,
    },
}

/// Why one data type of a job was not backed up: `ResourceBackupFailed`, and the manifest's and
/// `JobPartiallySucceeded`'s lists of failures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataTypeFailure {
    pub data_type: String,
    pub code: JobErrorCode,
    pub message: String,
    pub retryable: bool,
}

/// Why a job runs. Mirrors `SyncRequested.trigger` on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    Manual,
    Schedule,
    Group,
    Retry,
}

impl JobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
            Self::Group => "group",
            Self::Retry => "retry",
        }
    }
}

/// The identity of a job that ended (cancelled, or failed by the system) before any worker started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedJob {
    pub job_id: JobId,
    pub account_id: String,
    pub source_id: SourceId,
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        match self {
            Self::JobStarted { .. } => "JobStarted",
            Self::JobAttemptStarted { .. } => "JobAttemptStarted",
            Self::JobProgressed { .. } => "JobProgressed",
            Self::ResourceBackedUp { .. } => "ResourceBackedUp",
            Self::ResourceBackupFailed { .. } => "ResourceBackupFailed",
            Self::RecordsRestored { .. } => "RecordsRestored",
            Self::JobSucceeded { .. } => "JobSucceeded",
            Self::JobPartiallySucceeded { .. } => "JobPartiallySucceeded",
            Self::JobFailed { .. } => "JobFailed",
            Self::JobCancelRequested { .. } => "JobCancelRequested",
            Self::JobCancelled {} => "JobCancelled",
            Self::BackupHeld { .. } => "BackupHeld",
            Self::BackupHoldReleased {} => "BackupHoldReleased",
            Self::BackupExpired { .. } => "BackupExpired",
            Self::BackupVerified { .. } => "BackupVerified",
            Self::BackupCorrupted { .. } => "BackupCorrupted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
