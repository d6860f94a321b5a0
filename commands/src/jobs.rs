//! Job use cases for the backup workers: each is one command on the Job aggregate, fenced by the worker
//! running the current attempt, plus the connection's credentials for the run.
//!
//! A run's reports are decided again when they lose a race on the stream (the command bus's conflict policy): another
//! writer's event, a cancellation request most often, is no reason to fail a backup, and fencing makes the
//! second decision safe. Starting and restarting are not retried: their conflicts are how a duplicated or
//! raced message is recognised.

use std::collections::BTreeMap;

use listbackup_domain::connection::Connection;
use listbackup_domain::job::{
    Job, JobCommand, JobErrorCode, JobKind, JobTrigger, QueuedJob, Verification,
};
use listbackup_domain::platform::PlatformId;
use listbackup_domain::{ConnectionId, JobId, SourceId};
use serde::Serialize;

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;
use crate::sources::account;
use crate::vault::{CredentialVault, SecretCredentials};

/// What a worker needs to start a queued job (from the source's `SyncRequested` and the source itself).
#[derive(Debug, Clone)]
pub struct JobStart {
    pub job_id: JobId,
    pub source_id: SourceId,
    pub connection_id: ConnectionId,
    pub platform_id: PlatformId,
    pub trigger: JobTrigger,
    /// The job this one retries (required with `trigger: Retry`).
    pub retry_of: Option<JobId>,
    pub data_types: Vec<String>,
    /// A backup, or a restore (from the source's `RestoreRequested`).
    pub kind: JobKind,
}

/// One batch of a restore's records of one data type, counted by what happened to them (`RecordsRestored`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoredBatch {
    pub data_type: String,
    pub created: u64,
    pub updated: u64,
    pub skipped: u64,
    pub failed: u64,
}

/// One data type stored completely.
#[derive(Debug, Clone)]
pub struct BackedUp {
    pub data_type: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: String,
    pub object: String,
}

/// One data type that could not be backed up, and why (`ResourceBackupFailed`).
#[derive(Debug, Clone)]
pub struct NotBackedUp {
    pub data_type: String,
    pub code: JobErrorCode,
    pub message: String,
    pub retryable: bool,
}

/// A finished backup (of every data type, or of some of them for [`JobCommands::partially_succeed`]): its
/// manifest and what the source's next incremental job continues from.
#[derive(Debug, Clone)]
pub struct Succeeded {
    pub manifest: String,
    pub manifest_sha256: String,
    pub records: u64,
    pub bytes: u64,
    pub cursors: BTreeMap<String, serde_json::Value>,
}

/// Where a running backup stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub data_types_done: u32,
    pub data_types_total: u32,
    pub current_data_type: Option<String>,
    /// Records and stored (compressed) bytes so far, over every data type of the attempt.
    pub records: u64,
    pub bytes: u64,
}

pub struct JobCommands {
    bus: CommandBus<Job>,
    connections: CommandBus<Connection>,
    vault: CredentialVault,
}

impl JobCommands {
    /// Runs `command` on the job `job_id` names, without `If-Match` (the job's own worker and sweeps record its
    /// events; a lost race is retried by the bus). An id that is not a job's is the job's not-found.
    async fn record(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        command: JobCommand,
    ) -> Result<Committed, CommandError> {
        self.bus.execute(&job_id, command, metadata, None).await
    }

    pub fn new(
        bus: CommandBus<Job>,
        connections: CommandBus<Connection>,
        vault: CredentialVault,
    ) -> Self {
        Self {
            bus,
            connections,
            vault,
        }
    }

    /// The job as the write side knows it.
    pub async fn load(&self, job_id: JobId) -> Result<(Job, u64), CommandError> {
        self.bus.load(&job_id).await
    }

    /// JobStarted, attempt 1: only valid on an empty stream, so a duplicated message conflicts here.
    pub async fn start(
        &self,
        metadata: &EventMetadata,
        worker: &str,
        start: JobStart,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Start {
            job_id: start.job_id,
            account_id: account(metadata)?,
            source_id: start.source_id,
            connection_id: start.connection_id,
            platform_id: start.platform_id,
            trigger: start.trigger,
            retry_of: start.retry_of,
            worker: worker.to_owned(),
            data_types: start.data_types,
            kind: start.kind,
        };
        // The aggregate refuses a second Start (conflict); two racing first Starts collide on sequence 1.
        self.bus
            .execute_once(&start.job_id, command, metadata, None)
            .await
    }

    /// JobAttemptStarted: this worker takes over a job whose previous worker stopped acknowledging it.
    pub async fn restart(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Restart {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
        };
        self.bus
            .execute_once(&job_id, command, metadata, None)
            .await
    }

    pub async fn record_resource(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        resource: BackedUp,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RecordResource {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            data_type: resource.data_type,
            records: resource.records,
            bytes: resource.bytes,
            sha256: resource.sha256,
            object: resource.object,
        };
        self.record(metadata, job_id, command).await
    }

    /// RecordsRestored: one batch of a restore's records is written (or planned, dry).
    pub async fn record_restored(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        batch: RestoredBatch,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RecordRestored {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            data_type: batch.data_type,
            created: batch.created,
            updated: batch.updated,
            skipped: batch.skipped,
            failed: batch.failed,
        };
        self.record(metadata, job_id, command).await
    }

    /// ResourceBackupFailed: one data type could not be backed up; the run goes on with the next one.
    pub async fn record_failure(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        failure: NotBackedUp,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RecordResourceFailure {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            data_type: failure.data_type,
            code: failure.code,
            message: failure.message,
            retryable: failure.retryable,
        };
        self.record(metadata, job_id, command).await
    }

    /// JobPartiallySucceeded: every data type is either stored or failed, at least one of each, and the
    /// manifest of the stored ones is written. A conflict when that is not so (all stored: succeed; none:
    /// fail).
    pub async fn partially_succeed(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        outcome: Succeeded,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::PartiallySucceed {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            manifest: outcome.manifest,
            manifest_sha256: outcome.manifest_sha256,
            records: outcome.records,
            bytes: outcome.bytes,
            cursors: outcome.cursors,
        };
        self.record(metadata, job_id, command).await
    }

    /// JobSucceeded: every data type is stored and the manifest written.
    pub async fn succeed(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        outcome: Succeeded,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Succeed {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            manifest: outcome.manifest,
            manifest_sha256: outcome.manifest_sha256,
            records: outcome.records,
            bytes: outcome.bytes,
            cursors: outcome.cursors,
        };
        self.record(metadata, job_id, command).await
    }

    /// JobProgressed: coarse progress, persisted (the worker sends it at most once a second and at every data
    /// type boundary; finer progress goes on core NATS only).
    pub async fn record_progress(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        progress: Progress,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RecordProgress {
            account_id: account(metadata)?,
            worker: worker.to_owned(),
            data_types_done: progress.data_types_done,
            data_types_total: progress.data_types_total,
            current_data_type: progress.current_data_type,
            records: progress.records,
            bytes: progress.bytes,
        };
        self.record(metadata, job_id, command).await
    }

    pub async fn fail(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: Option<&str>,
        code: JobErrorCode,
        message: &str,
        retryable: bool,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Fail {
            account_id: account(metadata)?,
            worker: worker.map(str::to_owned),
            code,
            message: message.to_owned(),
            retryable,
            queued: None,
        };
        self.record(metadata, job_id, command).await
    }

    /// JobFailed recorded by the system, not by a worker: nobody is running the job any more (its message
    /// exhausted its deliveries). Valid whether or not the job ever started: a job no worker started gets its
    /// identity (`job_id` of `source_id`, the metadata's account) recorded with the failure. A conflict means
    /// the job has ended meanwhile.
    pub async fn give_up(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        source_id: SourceId,
        code: JobErrorCode,
        message: &str,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Fail {
            account_id: account(metadata)?,
            worker: None,
            code,
            message: message.to_owned(),
            // Nothing about the job itself failed: running it again may well succeed.
            retryable: true,
            queued: Some(QueuedJob {
                job_id,
                account_id: metadata.account_id.clone(),
                source_id,
            }),
        };
        self.record(metadata, job_id, command).await
    }

    /// Asks the job to stop: a queued job (no stream yet) is cancelled at once; a running one is cancelled by
    /// its worker, which confirms with [`JobCommands::confirm_cancelled`]. The caller checked (read model)
    /// that the job `job_id` of `source_id` is this account's.
    pub async fn request_cancel(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        source_id: SourceId,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RequestCancel {
            account_id: account(metadata)?,
            job_id,
            source_id,
        };
        self.record(metadata, job_id, command).await
    }

    /// The worker stopped a job whose cancellation was requested, and discarded what it had written.
    pub async fn confirm_cancelled(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::ConfirmCancelled {
            account_id: account(metadata)?,
        };
        self.record(metadata, job_id, command).await
    }

    /// The connection's decrypted credentials for a backup run; `None` when the connection is gone.
    /// OAuth connections must be refreshed by the caller first (`OauthService::ensure_fresh`).
    pub async fn credentials(
        &self,
        metadata: &EventMetadata,
        connection_id: ConnectionId,
    ) -> Result<Option<SecretCredentials>, CommandError> {
        let (connection, _) = self.connections.load(&connection_id).await?;
        if !connection.is_live_for(&metadata.account_id) {
            return Ok(None);
        }
        Ok(self
            .vault
            .load(&metadata.account_id, &connection_id.to_string())
            .await?)
    }
}

/// Holds, expiry and verification records: the stored backup's side of a job.
impl JobCommands {
    /// BackupHeld: keeps the backup from expiring, for `reason`; who is the metadata's actor. Placing the
    /// same hold again records nothing; another reason replaces it.
    pub async fn place_hold(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        reason: &str,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::PlaceHold {
            account_id: account(metadata)?,
            reason: reason.to_owned(),
        };
        self.record(metadata, job_id, command).await
    }

    /// BackupHoldReleased: retention applies to the backup again (nothing recorded when it is not held).
    pub async fn release_hold(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::ReleaseHold {
            account_id: account(metadata)?,
        };
        self.record(metadata, job_id, command).await
    }

    /// BackupExpired {files, bytes}: the Job aggregate decides, so whichever sweeper gets here first records
    /// it and every other records nothing (`events == 0`); refused (conflict) while the backup is held.
    pub async fn expire(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        files: u64,
        bytes: u64,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::Expire {
            account_id: account(metadata)?,
            files,
            bytes,
        };
        self.record(metadata, job_id, command).await
    }

    /// BackupVerified or BackupCorrupted.
    pub async fn record_verification(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        outcome: Verification,
    ) -> Result<Committed, CommandError> {
        let command = JobCommand::RecordVerification {
            account_id: account(metadata)?,
            outcome,
        };
        self.record(metadata, job_id, command).await
    }
}
