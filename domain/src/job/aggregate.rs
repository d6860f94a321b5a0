use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{
    DataTypeFailure, JobCommand, JobEvent, JobKind, JobTrigger, QueuedJob, AGGREGATE_TYPE,
};
use crate::error::{DomainError, ErrorKind};
use crate::{AccountOwned, JobId, SourceId};

/// Where a job is in its life: the one status type of the domain, the read model (`read_jobs.status`, the
/// `status` of `GET /jobs/{id}`) and the `?status=` filter. A job is `queued` from its source's
/// `SyncRequested` until its own stream begins (an aggregate with no stream yet is `Queued` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    #[default]
    Queued,
    Running,
    Succeeded,
    /// Some data types backed up, the others failed (`JobPartiallySucceeded`).
    Partial,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Partial => "partial",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Succeeded, partial, failed or cancelled: nothing more happens to the job.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Partial | Self::Failed | Self::Cancelled
        )
    }

    /// How a finished job ended, as a verb: "the job has already {ended}".
    fn ended(self) -> &'static str {
        match self {
            Self::Partial => "partially succeeded",
            other => other.as_str(),
        }
    }
}

impl JobStatus {
    /// Every status, in the order of a job's life.
    pub const ALL: [JobStatus; 6] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Partial,
        Self::Failed,
        Self::Cancelled,
    ];
}

/// A status name that is none of [`JobStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of queued, running, succeeded, partial, failed, cancelled (not {0:?})")]
pub struct UnknownJobStatus(pub String);

impl std::str::FromStr for JobStatus {
    type Err = UnknownJobStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownJobStatus(s.to_owned()))
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a job needs to decide on commands; the read model holds what is shown.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Job {
    /// `None` until the stream names its job (its first event).
    id: Option<JobId>,
    account_id: String,
    source_id: Option<SourceId>,
    status: JobStatus,
    attempt: u32,
    worker: String,
    data_types: Vec<String>,
    /// Data types stored completely by the current attempt.
    backed_up: BTreeSet<String>,
    /// Data types the current attempt could not back up, and why.
    #[serde(default)]
    failed: BTreeMap<String, DataTypeFailure>,
    cancel_requested: bool,
    /// The reason of the hold the backup is under, if any.
    #[serde(default)]
    hold: Option<String>,
    /// Whether retention expired the backup (its files are deleted).
    #[serde(default)]
    expired: bool,
    /// The manifest's sha256 its outcome recorded (`JobSucceeded`, `JobPartiallySucceeded`).
    #[serde(default)]
    manifest_sha256: Option<String>,
    /// A backup or a restore.
    #[serde(default)]
    kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("{}", crate::ResourceKind::Job.not_found())]
    NotFound,
    #[error("the job was already started (or cancelled before it started)")]
    AlreadyStarted,
    #[error("the job has already {}", .0.ended())]
    Finished(JobStatus),
    #[error("the job's cancellation was requested: it is not run again")]
    CancelRequested,
    #[error("another run of the job is current (attempt {attempt}, worker {worker})")]
    NotCurrentWorker { attempt: u32, worker: String },
    #[error("no cancellation of the job was requested")]
    NoCancelRequested,
    #[error("{0}")]
    InvalidDataTypes(&'static str),
    #[error("retryOf is required with trigger retry and refused with any other")]
    RetryOfMismatch,
    #[error("dataTypesDone must not exceed dataTypesTotal")]
    InvalidProgress,
    #[error("{0} is not one of the job's data types")]
    UnknownDataType(String),
    #[error("{0} was already backed up by this attempt")]
    AlreadyBackedUp(String),
    #[error("{0} has already failed in this attempt")]
    AlreadyFailed(String),
    #[error("data types not backed up yet: {}", .0.join(", "))]
    Incomplete(Vec<String>),
    #[error("data types failed, so the job cannot succeed (only partially): {}", .0.join(", "))]
    DataTypesFailed(Vec<String>),
    #[error("no data type was backed up: the job failed")]
    NothingBackedUp,
    #[error("no data type failed: the job succeeded")]
    NothingFailed,
    /// Holds, expiry and verification are about a stored backup: a succeeded or partial job.
    #[error("the job is {0}: only a succeeded or partial job holds a backup")]
    NotABackup(JobStatus),
    #[error("the backup has expired: its files were deleted by retention")]
    Expired,
    #[error("the backup is under a hold ({0}): release it first")]
    Held(String),
    #[error("a hold needs a reason of 1 to 500 characters")]
    InvalidHoldReason,
    /// Holds, expiry, verification and being restored from are about backups, not restores.
    #[error("the job is a restore: it holds a report, not a backup")]
    NotABackupJob,
    /// `RecordsRestored` belongs to restore jobs only.
    #[error("the job is a backup: it restores nothing")]
    NotARestore,
}

impl DomainError for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyStarted
            | Self::Finished(_)
            | Self::CancelRequested
            | Self::NotCurrentWorker { .. }
            | Self::NoCancelRequested
            | Self::AlreadyBackedUp(_)
            | Self::AlreadyFailed(_)
            | Self::Incomplete(_)
            | Self::DataTypesFailed(_)
            | Self::NothingBackedUp
            | Self::NothingFailed
            | Self::NotABackup(_)
            | Self::NotABackupJob
            | Self::NotARestore
            | Self::Held(_) => ErrorKind::Conflict,
            Self::Expired => ErrorKind::Gone,
            Self::InvalidDataTypes(_)
            | Self::RetryOfMismatch
            | Self::InvalidProgress
            | Self::UnknownDataType(_)
            | Self::InvalidHoldReason => ErrorKind::Invalid,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidDataTypes(_) => Some("dataTypes"),
            Self::RetryOfMismatch => Some("retryOf"),
            Self::InvalidProgress => Some("dataTypesDone"),
            Self::UnknownDataType(_) => Some("dataType"),
            Self::InvalidHoldReason => Some("reason"),
            _ => None,
        }
    }
}

impl Job {
    /// The job's id; `None` for an empty stream (a job still queued, or none at all).
    pub fn id(&self) -> Option<JobId> {
        self.id
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    /// The job's source; `None` for an empty stream.
    pub fn source_id(&self) -> Option<SourceId> {
        self.source_id
    }

    /// 1 for the first run, incremented by every redelivery that runs the job again; 0 before it started.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The worker running the current attempt.
    pub fn worker(&self) -> &str {
        &self.worker
    }

    pub fn data_types(&self) -> &[String] {
        &self.data_types
    }

    /// The current attempt's failed data types, in the job's data type order.
    pub fn failed_data_types(&self) -> Vec<DataTypeFailure> {
        self.data_types
            .iter()
            .filter_map(|d| self.failed.get(d).cloned())
            .collect()
    }

    /// The job's data types the current attempt has neither backed up nor failed yet.
    fn unresolved(&self) -> Vec<String> {
        self.data_types
            .iter()
            .filter(|d| !self.backed_up.contains(*d) && !self.failed.contains_key(*d))
            .cloned()
            .collect()
    }

    /// Whether `worker` runs the job's current attempt and the job has not ended: only then may that run
    /// touch the job's files. A run presumed dead that comes back finds this false.
    pub fn is_run_by(&self, worker: &str) -> bool {
        self.status == JobStatus::Running && self.worker == worker
    }

    /// The reason of the hold the backup is under, if any.
    pub fn hold(&self) -> Option<&str> {
        self.hold.as_deref()
    }

    /// Whether retention expired the backup.
    pub fn is_expired(&self) -> bool {
        self.expired
    }

    /// The sha256 of the backup's manifest as its outcome recorded it; `None` for a job without a backup.
    pub fn manifest_sha256(&self) -> Option<&str> {
        self.manifest_sha256.as_deref()
    }

    /// A backup or a restore (a job with no stream yet reads as a backup).
    pub fn kind(&self) -> JobKind {
        self.kind
    }

    /// The account the job belongs to (empty while it is queued).
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// Whether the job holds a stored backup that has not expired (and what is wrong otherwise).
    pub fn check_backup(&self) -> Result<(), JobError> {
        self.require_backup()
    }

    /// A stored backup (succeeded or partial) that has not expired, or why not.
    fn require_backup(&self) -> Result<(), JobError> {
        if self.kind == JobKind::Restore {
            return Err(JobError::NotABackupJob);
        }
        if !matches!(self.status, JobStatus::Succeeded | JobStatus::Partial) {
            return Err(JobError::NotABackup(self.status));
        }
        if self.expired {
            return Err(JobError::Expired);
        }
        Ok(())
    }

    /// Decides the commands about a stored backup (holds, expiry, verification); `None` for the others.
    fn decide_on_backup(&self, command: &JobCommand) -> Option<Result<Option<JobEvent>, JobError>> {
        let decided = match command {
            JobCommand::PlaceHold { reason, .. } => {
                let reason = reason.trim();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Some(Err(JobError::InvalidHoldReason));
                }
                self.require_backup().map(|()| {
                    (self.hold.as_deref() != Some(reason)).then(|| JobEvent::BackupHeld {
                        reason: reason.to_owned(),
                    })
                })
            }
            JobCommand::ReleaseHold { .. } => self.require_backup().map(|()| {
                self.hold
                    .is_some()
                    .then_some(JobEvent::BackupHoldReleased {})
            }),
            JobCommand::Expire { files, bytes, .. } => {
                if self.expired {
                    // Another sweeper expired it first: nothing to record.
                    return Some(Ok(None));
                }
                self.require_backup().and_then(|()| match &self.hold {
                    Some(reason) => Err(JobError::Held(reason.clone())),
                    None => Ok(Some(JobEvent::BackupExpired {
                        files: *files,
                        bytes: *bytes,
                    })),
                })
            }
            JobCommand::RecordVerification { outcome, .. } => self
                .require_backup()
                .map(|()| Some(outcome.clone().into_event())),
            _ => return None,
        };
        Some(decided)
    }

    /// Whether the running job was asked to stop (the worker polls this between pages).
    pub fn cancel_requested(&self) -> bool {
        self.cancel_requested
    }

    /// A started (or cancelled-while-queued) job of this account, or NotFound: others' look missing.
    fn require_owned(&self, account_id: &str) -> Result<(), JobError> {
        if self.status != JobStatus::Queued && self.account_id == account_id {
            Ok(())
        } else {
            Err(JobError::NotFound)
        }
    }

    /// Fencing: only the current attempt's run may report on the job.
    fn require_current_worker(&self, worker: &str) -> Result<(), JobError> {
        if worker == self.worker {
            Ok(())
        } else {
            Err(JobError::NotCurrentWorker {
                attempt: self.attempt,
                worker: self.worker.clone(),
            })
        }
    }

    fn require_known_data_type(&self, data_type: &str) -> Result<(), JobError> {
        if self.data_types.iter().any(|d| d == data_type) {
            Ok(())
        } else {
            Err(JobError::UnknownDataType(data_type.to_owned()))
        }
    }
}

impl AccountOwned for Job {
    const KIND: crate::ResourceKind = crate::ResourceKind::Job;
    type Id = crate::JobId;

    fn owner_account(&self) -> Option<&str> {
        (self.status != JobStatus::Queued).then_some(self.account_id.as_str())
    }
}

fn validate_data_types(data_types: &[String]) -> Result<(), JobError> {
    if data_types.is_empty() {
        return Err(JobError::InvalidDataTypes(
            "a job backs up at least one data type",
        ));
    }
    let distinct: BTreeSet<&str> = data_types.iter().map(String::as_str).collect();
    if distinct.len() != data_types.len() {
        return Err(JobError::InvalidDataTypes("data types must not repeat"));
    }
    Ok(())
}

impl Aggregate for Job {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = JobCommand;
    type Event = JobEvent;
    type Error = JobError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let account = command.account_id().as_str().to_owned();

        // The two commands valid on an empty stream come first.
        match command {
            JobCommand::Start {
                job_id,
                account_id,
                source_id,
                connection_id,
                platform_id,
                trigger,
                retry_of,
                worker,
                data_types,
                kind,
            } => {
                if self.status != JobStatus::Queued {
                    return Err(JobError::AlreadyStarted);
                }
                validate_data_types(&data_types)?;
                if (trigger == JobTrigger::Retry) != retry_of.is_some() {
                    return Err(JobError::RetryOfMismatch);
                }
                let event = JobEvent::JobStarted {
                    job_id,
                    account_id: account_id.as_str().to_owned(),
                    source_id,
                    connection_id,
                    platform_id: platform_id.as_str().to_owned(),
                    trigger,
                    retry_of,
                    attempt: 1,
                    worker,
                    data_types,
                    kind,
                };
                sink.write(event, self).await;
                return Ok(());
            }
            JobCommand::RequestCancel {
                job_id, source_id, ..
            } if self.status == JobStatus::Queued => {
                // Still queued: nothing runs, so nothing needs to confirm. Both events in one commit make the
                // stream non-empty, so a worker receiving the job afterwards fails to start it and drops it.
                let queued = QueuedJob {
                    job_id,
                    account_id: account,
                    source_id,
                };
                sink.write(
                    JobEvent::JobCancelRequested {
                        queued: Some(queued),
                    },
                    self,
                )
                .await;
                sink.write(JobEvent::JobCancelled {}, self).await;
                return Ok(());
            }
            JobCommand::Fail {
                worker: None,
                code,
                message,
                retryable,
                queued: Some(queued),
                ..
            } if self.status == JobStatus::Queued => {
                // The system gives up on a job no worker ever started (every delivery of its message was lost
                // before `JobStarted`): it still needs an end, and its stream an owner. A worker receiving the
                // job afterwards cannot start it.
                if queued.account_id != account {
                    return Err(JobError::NotFound);
                }
                let event = JobEvent::JobFailed {
                    code,
                    message,
                    retryable,
                    queued: Some(queued),
                };
                sink.write(event, self).await;
                return Ok(());
            }
            _ => {}
        }

        self.require_owned(&account)?;
        if let Some(decided) = self.decide_on_backup(&command) {
            if let Some(event) = decided? {
                sink.write(event, self).await;
            }
            return Ok(());
        }
        if self.status.is_terminal() {
            return Err(JobError::Finished(self.status));
        }

        let event = match command {
            JobCommand::Start { .. } => unreachable!("handled above"),
            // Attempt N ≥ 2. `JobStarted` must stay sequence 1 (that is what makes starting exclusive), so a
            // rerun of the same job cannot be another `JobStarted`: it is `JobAttemptStarted`, appended to the
            // running job by the worker that received the redelivered message. JetStream redelivers only after
            // the previous worker stopped extending its ack deadline, so it is presumed gone; should it still be
            // running (a long pause, a partition), the event names the new run and every report of the old one
            // is refused from now on (`require_current_worker`), which makes it stop. Should two workers race
            // on the same redelivery, the event store's sequence check lets exactly one append. A job whose
            // cancellation was requested is not run again: that worker confirms the cancellation instead.
            JobCommand::Restart { worker, .. } => {
                if self.cancel_requested {
                    return Err(JobError::CancelRequested);
                }
                JobEvent::JobAttemptStarted {
                    attempt: self.attempt + 1,
                    worker,
                }
            }
            JobCommand::RecordProgress {
                worker,
                data_types_done,
                data_types_total,
                current_data_type,
                records,
                bytes,
                ..
            } => {
                self.require_current_worker(&worker)?;
                if data_types_done > data_types_total {
                    return Err(JobError::InvalidProgress);
                }
                JobEvent::JobProgressed {
                    data_types_done,
                    data_types_total,
                    current_data_type,
                    records,
                    bytes,
                }
            }
            JobCommand::RecordResource {
                worker,
                data_type,
                records,
                bytes,
                sha256,
                object,
                ..
            } => {
                self.require_current_worker(&worker)?;
                self.require_known_data_type(&data_type)?;
                if self.backed_up.contains(&data_type) {
                    return Err(JobError::AlreadyBackedUp(data_type));
                }
                if self.failed.contains_key(&data_type) {
                    return Err(JobError::AlreadyFailed(data_type));
                }
                JobEvent::ResourceBackedUp {
                    data_type,
                    records,
                    bytes,
                    sha256,
                    object,
                }
            }
            JobCommand::RecordResourceFailure {
                worker,
                data_type,
                code,
                message,
                retryable,
                ..
            } => {
                self.require_current_worker(&worker)?;
                self.require_known_data_type(&data_type)?;
                if self.backed_up.contains(&data_type) {
                    return Err(JobError::AlreadyBackedUp(data_type));
                }
                if self.failed.contains_key(&data_type) {
                    return Err(JobError::AlreadyFailed(data_type));
                }
                JobEvent::ResourceBackupFailed {
                    data_type,
                    code,
                    message,
                    retryable,
                }
            }
            JobCommand::RecordRestored {
                worker,
                data_type,
                created,
                updated,
                skipped,
                failed,
                ..
            } => {
                self.require_current_worker(&worker)?;
                self.require_known_data_type(&data_type)?;
                if self.kind != JobKind::Restore {
                    return Err(JobError::NotARestore);
                }
                JobEvent::RecordsRestored {
                    data_type,
                    created,
                    updated,
                    skipped,
                    failed,
                }
            }
            // A restore succeeds once its report is written: records the platform refused are counted and
            // reported, not a failure of the job.
            JobCommand::Succeed {
                worker,
                manifest,
                manifest_sha256,
                records,
                bytes,
                cursors,
                ..
            } if self.kind == JobKind::Restore => {
                self.require_current_worker(&worker)?;
                JobEvent::JobSucceeded {
                    manifest,
                    manifest_sha256,
                    records,
                    bytes,
                    cursors,
                }
            }
            // A job that finishes while its cancellation is pending may still succeed or fail: the outcome is
            // true, and the worker simply had not seen the request yet.
            JobCommand::Succeed {
                worker,
                manifest,
                manifest_sha256,
                records,
                bytes,
                cursors,
                ..
            } => {
                self.require_current_worker(&worker)?;
                let missing = self.unresolved();
                if !missing.is_empty() {
                    return Err(JobError::Incomplete(missing));
                }
                if !self.failed.is_empty() {
                    let failed = self.failed_data_types();
                    return Err(JobError::DataTypesFailed(
                        failed.into_iter().map(|f| f.data_type).collect(),
                    ));
                }
                JobEvent::JobSucceeded {
                    manifest,
                    manifest_sha256,
                    records,
                    bytes,
                    cursors,
                }
            }
            // Only once every data type has an outcome, and only when they differ: all backed up is a success,
            // all failed is a failure.
            JobCommand::PartiallySucceed {
                worker,
                manifest,
                manifest_sha256,
                records,
                bytes,
                cursors,
                ..
            } => {
                self.require_current_worker(&worker)?;
                let missing = self.unresolved();
                if !missing.is_empty() {
                    return Err(JobError::Incomplete(missing));
                }
                if self.backed_up.is_empty() {
                    return Err(JobError::NothingBackedUp);
                }
                if self.failed.is_empty() {
                    return Err(JobError::NothingFailed);
                }
                JobEvent::JobPartiallySucceeded {
                    manifest,
                    manifest_sha256,
                    records,
                    bytes,
                    cursors,
                    failed_data_types: self.failed_data_types(),
                }
            }
            JobCommand::Fail {
                worker,
                code,
                message,
                retryable,
                ..
            } => {
                if let Some(worker) = worker {
                    self.require_current_worker(&worker)?;
                }
                // A started job's stream already knows whose it is: an identity given along is not recorded.
                JobEvent::JobFailed {
                    code,
                    message,
                    retryable,
                    queued: None,
                }
            }
            JobCommand::RequestCancel { .. } => {
                if self.cancel_requested {
                    // Idempotent: the worker has not confirmed yet; asking again records nothing.
                    return Ok(());
                }
                JobEvent::JobCancelRequested { queued: None }
            }
            JobCommand::PlaceHold { .. }
            | JobCommand::ReleaseHold { .. }
            | JobCommand::Expire { .. }
            | JobCommand::RecordVerification { .. } => unreachable!("decided above"),
            JobCommand::ConfirmCancelled { .. } => {
                if !self.cancel_requested {
                    return Err(JobError::NoCancelRequested);
                }
                JobEvent::JobCancelled {}
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            JobEvent::JobStarted {
                job_id,
                account_id,
                source_id,
                attempt,
                worker,
                data_types,
                kind,
                ..
            } => {
                self.kind = kind;
                self.id = Some(job_id);
                self.account_id = account_id;
                self.source_id = Some(source_id);
                self.attempt = attempt;
                self.worker = worker;
                self.data_types = data_types;
                self.status = JobStatus::Running;
            }
            JobEvent::JobAttemptStarted { attempt, worker } => {
                self.attempt = attempt;
                self.worker = worker;
                // The new attempt writes every artifact again, and tries every data type again.
                self.backed_up.clear();
                self.failed.clear();
            }
            JobEvent::JobProgressed { .. } | JobEvent::RecordsRestored { .. } => {}
            JobEvent::ResourceBackedUp { data_type, .. } => {
                self.backed_up.insert(data_type);
            }
            JobEvent::ResourceBackupFailed {
                data_type,
                code,
                message,
                retryable,
            } => {
                let failure = DataTypeFailure {
                    data_type: data_type.clone(),
                    code,
                    message,
                    retryable,
                };
                self.failed.insert(data_type, failure);
            }
            JobEvent::JobSucceeded {
                manifest_sha256, ..
            } => {
                self.status = JobStatus::Succeeded;
                self.manifest_sha256 = Some(manifest_sha256);
            }
            JobEvent::JobPartiallySucceeded {
                manifest_sha256, ..
            } => {
                self.status = JobStatus::Partial;
                self.manifest_sha256 = Some(manifest_sha256);
            }
            JobEvent::JobFailed { queued, .. } => {
                if let Some(queued) = queued {
                    self.id = Some(queued.job_id);
                    self.account_id = queued.account_id;
                    self.source_id = Some(queued.source_id);
                }
                self.status = JobStatus::Failed;
            }
            JobEvent::JobCancelRequested { queued } => {
                if let Some(queued) = queued {
                    self.id = Some(queued.job_id);
                    self.account_id = queued.account_id;
                    self.source_id = Some(queued.source_id);
                }
                self.cancel_requested = true;
            }
            JobEvent::JobCancelled {} => self.status = JobStatus::Cancelled,
            JobEvent::BackupHeld { reason } => self.hold = Some(reason),
            JobEvent::BackupHoldReleased {} => self.hold = None,
            JobEvent::BackupExpired { .. } => self.expired = true,
            JobEvent::BackupVerified { .. } | JobEvent::BackupCorrupted { .. } => {}
        }
    }
}
