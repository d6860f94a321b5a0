//! `read_jobs`: one row per job, what `GET /jobs` shows. The row is born `queued` from the source's
//! `SyncRequested` and then follows the Job stream (guarded by `version < seq`, so replays change nothing).
//! Should the Job stream's `JobStarted` be folded before the request, it makes the row and the request later
//! adds what only it knows ([`queue`]): the row never depends on how the two streams interleave.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::job::{
    summarise, DataTypeFailure, Failure, JobErrorCode, JobEvent, JobKind, JobStatus, RestoreMode,
    RestoreRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::Row;

use listbackup_domain::{ConnectionId, JobId, SourceGroupId, SourceId};

use super::{Header, Rows, Table};
use crate::pagination::{into_page, Page, PageRequest};
use crate::ReadError;

/// A job as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    #[schema(value_type = String, format = Uuid)]
    pub job_id: JobId,
    #[schema(value_type = String, format = Uuid)]
    pub source_id: SourceId,
    #[schema(value_type = String, format = Uuid)]
    pub connection_id: ConnectionId,
    pub platform_id: String,
    /// `manual`, `schedule`, `group` or `retry`.
    pub trigger: String,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub group_id: Option<SourceGroupId>,
    /// `queued`, `running`, `succeeded`, `partial` (some data types backed up, the others failed: their
    /// files and the manifest are kept, see `dataTypes`), `failed` or `cancelled`.
    pub status: JobStatus,
    /// 0 while queued, then the attempt running or last run.
    pub attempt: i32,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub retry_of: Option<JobId>,
    pub progress: JobProgress,
    pub data_types: Vec<JobDataType>,
    /// `{code, message, retryable}` of a failed job, or of a partial job's failed data types summed up (the
    /// first one's code, `retryable` if any of them is, a message naming each).
    pub error: Option<Failure>,
    /// The manifest's sha256 once the job succeeded or partially succeeded.
    pub manifest_sha256: Option<String>,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The hold keeping the backup from expiring, if any.
    pub hold: Option<Hold>,
    /// When retention expired the backup (its files are deleted: the files routes answer 410).
    pub expired_at: Option<DateTime<Utc>>,
    /// Objects and bytes the expiry deleted from storage (the storage freed).
    pub freed_files: Option<u64>,
    pub freed_bytes: Option<u64>,
    /// The last time the backup was read back and checked (`POST /jobs/{id}/verify`, the background verifier).
    pub verification: Option<VerificationView>,
    /// `backup`, or `restore` (`POST /sources/{id}/restores`): a restore writes a backup's records back to
    /// the platform; its report is its one file (`GET /jobs/{id}/files`).
    pub kind: JobKind,
    /// A restore's request and its counts so far; `null` for a backup.
    pub restore: Option<RestoreView>,
}

/// A restore job's request and what it did so far (summed over its `RecordsRestored` batches of the current
/// attempt). In a dry run the counts are the plan: nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RestoreView {
    /// The backup restored from (its job id).
    pub snapshot: String,
    pub mode: RestoreMode,
    pub dry_run: bool,
    /// Only these record ids, if given.
    #[serde(default)]
    pub record_ids: Option<Vec<String>>,
    /// Records created again (missing from the platform).
    #[serde(default)]
    pub created: u64,
    /// Records put back as backed up (mode `overwrite`).
    #[serde(default)]
    pub updated: u64,
    /// Records left alone: unchanged, or existing while the mode is `missing`.
    #[serde(default)]
    pub skipped: u64,
    /// Records the platform refused or cannot take (see the report for why).
    #[serde(default)]
    pub failed: u64,
}

/// A hold on a backup: who placed it (the event's actor), why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hold {
    pub reason: String,
    /// `user:<sub>` of who placed it.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// The outcome of a backup's last verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationView {
    /// `verified` or `corrupted`.
    pub status: String,
    pub at: DateTime<Utc>,
    /// Files read back (verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The file that does not match (corrupted): a file name, or `manifest.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// Its sha256 now, or `missing`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found: Option<String>,
}

// `default`: the stored JSON has no `percent` (computed at read time).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, rename_all = "camelCase")]
pub struct JobProgress {
    pub data_types_total: u32,
    pub data_types_done: u32,
    pub current_data_type: Option<String>,
    pub records: u64,
    pub bytes: u64,
    /// Data types done (backed up or failed) over data types total, 0–100.
    pub percent: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobDataType {
    pub name: String,
    /// `pending`, `done` (backed up) or `failed` (see `error`).
    pub status: String,
    pub records: u64,
    pub bytes: u64,
    pub sha256: Option<String>,
    /// Why a `failed` data type was not backed up.
    #[serde(default)]
    pub error: Option<DataTypeError>,
}

/// `{code, message, retryable}` of a data type that could not be backed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataTypeError {
    /// Why the data type failed.
    pub code: JobErrorCode,
    pub message: String,
    /// Whether running it again later may succeed without anyone changing anything.
    pub retryable: bool,
}

const COLUMNS: &str =
    "job_id, source_id, connection_id, platform_id, trigger, group_id, status, attempt, \
    retry_of, progress, data_types, error, manifest_sha256, queued_at, started_at, finished_at, \
    hold, expired_at, expired_files, expired_bytes, verification, kind, restore";

impl JobView {
    /// Succeeded, partial, failed or cancelled: nothing more happens to the job.
    pub fn has_ended(&self) -> bool {
        self.status.is_terminal()
    }

    /// The data types that failed, with why (a partial job's, or a failed job's when its data types failed).
    pub fn failed_data_types(&self) -> Vec<DataTypeFailure> {
        self.data_types
            .iter()
            .filter(|d| d.status == "failed")
            .filter_map(|d| {
                d.error.as_ref().map(|e| DataTypeFailure {
                    data_type: d.name.clone(),
                    code: e.code,
                    message: e.message.clone(),
                    retryable: e.retryable,
                })
            })
            .collect()
    }

    fn from_row(row: &Row) -> Self {
        let mut progress: JobProgress =
            serde_json::from_value(row.get("progress")).unwrap_or_default();
        // Written by this module only, from JobStatus::as_str.
        let status: JobStatus = row.get::<_, &str>("status").parse().unwrap_or_default();
        // A partial job is done with every data type (some failed): its progress is complete.
        progress.percent = if matches!(status, JobStatus::Succeeded | JobStatus::Partial) {
            100
        } else {
            (progress.data_types_done * 100)
                .checked_div(progress.data_types_total)
                .unwrap_or(0)
        };
        Self {
            job_id: row.get("job_id"),
            source_id: row.get("source_id"),
            connection_id: row.get("connection_id"),
            platform_id: row.get("platform_id"),
            trigger: row.get("trigger"),
            group_id: row.get("group_id"),
            status,
            attempt: row.get("attempt"),
            retry_of: row.get("retry_of"),
            progress,
            data_types: serde_json::from_value(row.get("data_types")).unwrap_or_default(),
            // Written by this module only, from a `Failure`.
            error: row
                .get::<_, Option<Value>>("error")
                .and_then(|e| serde_json::from_value(e).ok()),
            manifest_sha256: row.get("manifest_sha256"),
            queued_at: row.get("queued_at"),
            started_at: row.get("started_at"),
            finished_at: row.get("finished_at"),
            hold: row
                .get::<_, Option<Value>>("hold")
                .and_then(|h| serde_json::from_value(h).ok()),
            expired_at: row.get("expired_at"),
            freed_files: row
                .get::<_, Option<i64>>("expired_files")
                .map(|n| n.max(0) as u64),
            freed_bytes: row
                .get::<_, Option<i64>>("expired_bytes")
                .map(|n| n.max(0) as u64),
            verification: row
                .get::<_, Option<Value>>("verification")
                .and_then(|v| serde_json::from_value(v).ok()),
            // Written by this module only, from JobKind::as_str.
            kind: if row.get::<_, &str>("kind") == JobKind::Restore.as_str() {
                JobKind::Restore
            } else {
                JobKind::Backup
            },
            restore: row
                .get::<_, Option<Value>>("restore")
                .and_then(|v| serde_json::from_value(v).ok()),
        }
    }
}

/// A row of `read_jobs`, column for column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct JobRow {
    pub job_id: String,
    pub account_id: String,
    pub source_id: String,
    pub connection_id: String,
    pub platform_id: String,
    pub group_id: Option<String>,
    pub trigger: String,
    pub status: String,
    pub attempt: i32,
    pub retry_of: Option<String>,
    pub progress: Value,
    pub data_types: Value,
    pub error: Option<Value>,
    pub manifest: Option<String>,
    pub manifest_sha256: Option<String>,
    /// The Job stream's sequence folded so far (0 while queued: the row is born from the source's stream).
    pub version: i64,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub hold: Option<Value>,
    pub expired_at: Option<DateTime<Utc>>,
    pub expired_files: Option<i64>,
    pub expired_bytes: Option<i64>,
    pub verification: Option<Value>,
    pub verified_at: Option<DateTime<Utc>>,
    /// `backup` or `restore`.
    #[serde(default = "backup")]
    pub kind: String,
    /// A restore's [`RestoreView`].
    #[serde(default)]
    pub restore: Option<Value>,
}

fn backup() -> String {
    JobKind::Backup.as_str().to_owned()
}

impl Table for JobRow {
    const NAME: &'static str = "read_jobs";
    const KEY: &'static str = "job_id";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "source_id",
        "connection_id",
        "platform_id",
        "group_id",
        "trigger",
        "status",
        "attempt",
        "retry_of",
        "progress",
        "data_types",
        "error",
        "manifest",
        "manifest_sha256",
        "version",
        "queued_at",
        "started_at",
        "finished_at",
        "hold",
        "expired_at",
        "expired_files",
        "expired_bytes",
        "verification",
        "verified_at",
        "kind",
        "restore",
    ];
    fn key(&self) -> &str {
        &self.job_id
    }
}

/// A `SyncRequested`, as the jobs model needs it.
pub(crate) struct QueuedSync<'a> {
    pub job_id: String,
    pub source_id: &'a str,
    pub trigger: &'a str,
    pub retry_of: Option<String>,
    pub group_id: Option<String>,
    /// Only these data types (a retry of failed ones); `None`: the source's, known once the job starts.
    pub data_types: Option<Vec<String>>,
    pub at: DateTime<Utc>,
    /// A restore's request (`RestoreRequested`); `None`: a backup.
    pub restore: Option<RestoreRequest>,
}

/// The job's row, `queued`, unless it exists; its account, connection and platform are the source's (folded
/// before it, in log order; no row without the source's). A job of chosen data types shows them, pending,
/// from the start.
///
/// If the row exists, the job's own stream was folded first (`JobStarted` makes the row when no queued one
/// is there): the request still gives what only it knows — when the job was queued, its group, a restore's
/// request — so the row is the same whichever of the two streams a reader folds first. The live projector
/// and a rebuild can meet them in different orders, and a row must not depend on it (load run of
/// 2026-11-30: rebuilt rows had `queuedAt` = `startedAt`). Idempotent: folding the request again sets the
/// same values.
pub(crate) fn queue(rows: &mut Rows, sync: QueuedSync<'_>) {
    if let Some(row) = rows.jobs.get_mut(&sync.job_id) {
        row.queued_at = sync.at;
        if sync.group_id.is_some() {
            row.group_id = sync.group_id;
        }
        if row.restore.is_none() {
            row.restore = sync.restore.map(restore_view);
        }
        return;
    }
    let Some(source) = rows.sources.get(sync.source_id) else {
        return;
    };
    let (progress, data_types) = match &sync.data_types {
        Some(data_types) => (
            json!({"dataTypesTotal": data_types.len(), "dataTypesDone": 0, "records": 0, "bytes": 0}),
            pending(data_types),
        ),
        None => (json!({}), json!([])),
    };
    let row = JobRow {
        job_id: sync.job_id.clone(),
        account_id: source.account_id.clone(),
        source_id: source.source_id.clone(),
        connection_id: source.connection_id.clone(),
        platform_id: source.platform_id.clone(),
        group_id: sync.group_id,
        trigger: sync.trigger.to_owned(),
        status: "queued".into(),
        attempt: 0,
        retry_of: sync.retry_of,
        progress,
        data_types,
        error: None,
        manifest: None,
        manifest_sha256: None,
        version: 0,
        queued_at: sync.at,
        started_at: None,
        finished_at: None,
        hold: None,
        expired_at: None,
        expired_files: None,
        expired_bytes: None,
        verification: None,
        verified_at: None,
        kind: match sync.restore {
            Some(_) => JobKind::Restore.as_str().to_owned(),
            None => backup(),
        },
        restore: sync.restore.map(restore_view),
    };
    rows.jobs.insert(sync.job_id, row);
}

/// A restore's [`RestoreView`] before any record was restored.
fn restore_view(r: RestoreRequest) -> Value {
    json!({"snapshot": r.snapshot, "mode": r.mode, "dryRun": r.dry_run,
           "recordIds": r.record_ids, "created": 0, "updated": 0, "skipped": 0, "failed": 0})
}

fn pending(data_types: &[String]) -> Value {
    Value::Array(
        data_types
            .iter()
            .map(|name| {
                json!({"name": name, "status": "pending", "records": 0, "bytes": 0, "sha256": null,
                       "error": null})
            })
            .collect(),
    )
}

/// `object || patch` of jsonb: the patch's keys replace the object's.
fn merge(object: &mut Value, patch: Value) {
    if let (Value::Object(object), Value::Object(patch)) = (object, patch) {
        object.extend(patch);
    }
}

/// The totals of an ended job's progress: every data type done, the outcome's records and bytes.
fn complete(progress: &mut Value, records: u64, bytes: u64) {
    let total = progress
        .get("dataTypesTotal")
        .cloned()
        .unwrap_or(Value::Null);
    merge(
        progress,
        json!({"dataTypesDone": total, "records": records, "bytes": bytes}),
    );
}

/// Replaces the entry of `data_type` in the job's `data_types`.
fn set_data_type(data_types: &mut Value, data_type: &str, entry: Value) {
    if let Value::Array(entries) = data_types {
        for d in entries.iter_mut() {
            if d.get("name").and_then(Value::as_str) == Some(data_type) {
                *d = entry.clone();
            }
        }
    }
}

/// What `read_jobs` does with a job's event. The row is born `queued` from the source's `SyncRequested`
/// ([`queue`]); every change is guarded by `version < sequence`, so folding an event twice changes nothing.
pub(crate) fn fold(rows: &mut Rows, header: &Header<'_>, event: JobEvent) {
    let (id, seq, at) = (header.aggregate_id, header.sequence, header.recorded_at);
    if let JobEvent::JobStarted {
        job_id,
        account_id,
        source_id,
        connection_id,
        platform_id,
        trigger,
        retry_of,
        attempt,
        data_types,
        kind,
        ..
    } = event
    {
        let progress = json!({"dataTypesTotal": data_types.len(), "dataTypesDone": 0,
                              "records": 0, "bytes": 0});
        // The rows are keyed and held by the ids' stored text, as the events' headers name them.
        let job_id = job_id.to_string();
        match rows.jobs.get_mut(&job_id) {
            Some(row) => {
                if row.version < seq {
                    row.status = "running".into();
                    row.attempt = attempt as i32;
                    row.progress = progress;
                    row.data_types = pending(&data_types);
                    row.version = seq;
                    row.started_at = Some(at);
                }
            }
            // Normally the queued row exists; this keeps a job visible even if it does not.
            None => {
                let row = JobRow {
                    job_id: job_id.clone(),
                    account_id,
                    source_id: source_id.to_string(),
                    connection_id: connection_id.to_string(),
                    platform_id,
                    group_id: None,
                    trigger: trigger.as_str().to_owned(),
                    status: "running".into(),
                    attempt: attempt as i32,
                    retry_of: retry_of.map(|id| id.to_string()),
                    progress,
                    data_types: pending(&data_types),
                    error: None,
                    manifest: None,
                    manifest_sha256: None,
                    version: seq,
                    queued_at: at,
                    started_at: Some(at),
                    finished_at: None,
                    hold: None,
                    expired_at: None,
                    expired_files: None,
                    expired_bytes: None,
                    verification: None,
                    verified_at: None,
                    kind: kind.as_str().to_owned(),
                    restore: None,
                };
                rows.jobs.insert(job_id, row);
            }
        }
        return;
    }
    let Some(row) = rows.jobs.get_mut(id) else {
        return;
    };
    if row.version >= seq {
        return;
    }
    row.version = seq;
    match event {
        JobEvent::JobStarted { .. } => {}
        JobEvent::JobAttemptStarted { attempt, .. } => {
            // Earlier attempts' progress no longer counts: every data type is pending again.
            row.status = "running".into();
            row.attempt = attempt as i32;
            row.started_at = Some(at);
            merge(
                &mut row.progress,
                json!({"dataTypesDone": 0, "records": 0, "bytes": 0}),
            );
            if let Some(restore) = &mut row.restore {
                merge(
                    restore,
                    json!({"created": 0, "updated": 0, "skipped": 0, "failed": 0}),
                );
            }
            if let Value::Array(entries) = &mut row.data_types {
                for d in entries.iter_mut() {
                    merge(
                        d,
                        json!({"status": "pending", "records": 0, "bytes": 0, "sha256": null,
                               "error": null}),
                    );
                }
            }
        }
        JobEvent::JobProgressed {
            data_types_done,
            data_types_total,
            current_data_type,
            records,
            bytes,
        } => {
            row.progress = json!({"dataTypesTotal": data_types_total, "dataTypesDone": data_types_done,
                                  "currentDataType": current_data_type, "records": records, "bytes": bytes});
        }
        JobEvent::ResourceBackedUp {
            data_type,
            records,
            bytes,
            sha256,
            ..
        } => {
            let done = json!({"name": data_type, "status": "done", "records": records, "bytes": bytes,
                              "sha256": sha256, "error": null});
            set_data_type(&mut row.data_types, &data_type, done);
        }
        JobEvent::RecordsRestored {
            data_type,
            created,
            updated,
            skipped,
            failed,
        } => {
            if let Some(restore) = &mut row.restore {
                let sum = |field: &str, n: u64| {
                    json!(restore.get(field).and_then(Value::as_u64).unwrap_or(0) + n)
                };
                let patch = json!({"created": sum("created", created), "updated": sum("updated", updated),
                                   "skipped": sum("skipped", skipped), "failed": sum("failed", failed)});
                merge(restore, patch);
            }
            let batch = created + updated + skipped + failed;
            if let Value::Array(entries) = &mut row.data_types {
                for d in entries
                    .iter_mut()
                    .filter(|d| d["name"] == data_type.as_str())
                {
                    let records = d["records"].as_u64().unwrap_or(0) + batch;
                    merge(d, json!({"records": records}));
                }
            }
        }
        JobEvent::ResourceBackupFailed {
            data_type,
            code,
            message,
            retryable,
        } => {
            let failed = json!({"name": data_type, "status": "failed", "records": 0, "bytes": 0,
                                "sha256": null,
                                "error": {"code": code, "message": message, "retryable": retryable}});
            set_data_type(&mut row.data_types, &data_type, failed);
        }
        JobEvent::JobSucceeded {
            manifest,
            manifest_sha256,
            records,
            bytes,
            ..
        } => {
            row.status = JobStatus::Succeeded.as_str().into();
            row.manifest = Some(manifest);
            row.manifest_sha256 = Some(manifest_sha256);
            complete(&mut row.progress, records, bytes);
            row.finished_at = Some(at);
        }
        // Like a success for the stored files and the manifest; `error` sums up what failed.
        JobEvent::JobPartiallySucceeded {
            manifest,
            manifest_sha256,
            records,
            bytes,
            failed_data_types,
            ..
        } => {
            let total = row.data_types.as_array().map_or(0, Vec::len);
            let total = total.max(failed_data_types.len());
            row.status = JobStatus::Partial.as_str().into();
            row.manifest = Some(manifest);
            row.manifest_sha256 = Some(manifest_sha256);
            complete(&mut row.progress, records, bytes);
            row.error = summarise(&failed_data_types, total)
                .map(|summary| serde_json::to_value(summary).unwrap_or(Value::Null));
            row.finished_at = Some(at);
        }
        // A job given up before it started fails its `queued` row like any other: the row exists since
        // SyncRequested.
        JobEvent::JobFailed {
            code,
            message,
            retryable,
            ..
        } => {
            row.status = JobStatus::Failed.as_str().into();
            row.error = Some(json!({"code": code, "message": message, "retryable": retryable}));
            row.finished_at = Some(at);
        }
        // A cancel request leaves a running job running until the worker confirms; a queued job's request
        // is followed by JobCancelled in the same commit.
        JobEvent::JobCancelRequested { .. } => {}
        JobEvent::JobCancelled {} => {
            row.status = JobStatus::Cancelled.as_str().into();
            row.error = None;
            row.finished_at = Some(at);
        }
        JobEvent::BackupHeld { reason } => {
            let by = header.metadata.actor();
            row.hold = Some(json!({"reason": reason, "by": by, "at": at}));
        }
        JobEvent::BackupHoldReleased {} => row.hold = None,
        JobEvent::BackupExpired { files, bytes } => {
            row.expired_at = Some(at);
            row.expired_files = Some(files as i64);
            row.expired_bytes = Some(bytes as i64);
        }
        JobEvent::BackupVerified { files, bytes } => {
            row.verification =
                Some(json!({"status": "verified", "at": at, "files": files, "bytes": bytes}));
            row.verified_at = Some(at);
        }
        JobEvent::BackupCorrupted {
            file,
            expected,
            found,
        } => {
            row.verification = Some(json!({"status": "corrupted", "at": at, "file": file,
                                           "expected": expected, "found": found}));
            row.verified_at = Some(at);
        }
    }
}

/// Filters of `GET /jobs`, already validated.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub source_id: Option<listbackup_domain::SourceId>,
    pub group_id: Option<listbackup_domain::SourceGroupId>,
    /// Backups or restores only.
    pub kind: Option<JobKind>,
}

/// One job of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    job_id: listbackup_domain::JobId,
) -> Result<Option<JobView>, ReadError> {
    let sql = format!("SELECT {COLUMNS} FROM read_jobs WHERE account_id = $1 AND job_id = $2");
    let row = client.query_opt(&sql, &[&account_id, &job_id]).await?;
    Ok(row.as_ref().map(JobView::from_row))
}

/// The Job stream's version the read model has reached (0 while queued; for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    job_id: listbackup_domain::JobId,
) -> Result<Option<i64>, ReadError> {
    let row = client
        .query_opt(
            "SELECT version FROM read_jobs WHERE job_id = $1",
            &[&job_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The account's jobs, newest first.
pub async fn list(
    client: &impl GenericClient,
    account_id: &str,
    filter: &JobFilter,
    page: &PageRequest,
) -> Result<Page<JobView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_jobs WHERE account_id = $1 \
           AND ($2::text IS NULL OR status = $2) \
           AND ($3::text IS NULL OR source_id = $3) \
           AND ($4::text IS NULL OR group_id = $4) \
           AND ($5::text IS NULL OR job_id < $5) \
           AND ($7::text IS NULL OR kind = $7) \
         ORDER BY job_id DESC LIMIT $6"
    );
    let rows = client
        .query(
            &sql,
            &[
                &account_id,
                &filter.status.map(JobStatus::as_str),
                &filter.source_id,
                &filter.group_id,
                &page.before_id,
                &(page.limit + 1),
                &filter.kind.map(JobKind::as_str),
            ],
        )
        .await?;
    let views = rows.iter().map(JobView::from_row).collect();
    Ok(into_page(views, page.limit, |v: &JobView| v.job_id))
}

/// A source whose stored backups its retention policy may expire some of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSource {
    pub source_id: String,
    pub account_id: String,
    pub retention_days: u32,
    pub keep_last: Option<u32>,
}

/// Up to `limit` sources (after `after`, by id) holding more than one stored, unexpired backup and more
/// than their `keepLast`, or one older than their `retentionDays` at `now`: the only sources where retention
/// can expire anything (a source's latest backup is never expired, so one backup alone stays).
pub async fn sources_past_retention(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<RetentionSource>, ReadError> {
    let rows = client
        .query(
            "SELECT s.source_id, s.account_id, s.retention_days, s.keep_last \
             FROM read_sources s JOIN read_jobs j ON j.source_id = s.source_id \
             WHERE j.status IN ('succeeded', 'partial') AND j.expired_at IS NULL AND j.kind = 'backup' \
               AND ($2::text IS NULL OR s.source_id > $2) \
             GROUP BY s.source_id, s.account_id, s.retention_days, s.keep_last \
             HAVING count(*) > 1 AND (count(*) > COALESCE(s.keep_last, 2147483647) \
                 OR min(j.finished_at) < $1::timestamptz - make_interval(days => s.retention_days)) \
             ORDER BY s.source_id LIMIT $3",
            &[&now, &after, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| RetentionSource {
            source_id: row.get(0),
            account_id: row.get(1),
            retention_days: row.get::<_, i32>(2).max(0) as u32,
            keep_last: row.get::<_, Option<i32>>(3).map(|k| k.max(0) as u32),
        })
        .collect())
}

/// The source's stored backups (succeeded or partial) that have not expired.
pub async fn stored_backups(
    client: &impl GenericClient,
    source_id: &str,
) -> Result<Vec<listbackup_domain::job::retention::StoredBackup>, ReadError> {
    let rows = client
        .query(
            "SELECT job_id, status, finished_at, hold IS NOT NULL FROM read_jobs \
             WHERE source_id = $1 AND status IN ('succeeded', 'partial') AND expired_at IS NULL \
               AND finished_at IS NOT NULL AND kind = 'backup'",
            &[&source_id],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| listbackup_domain::job::retention::StoredBackup {
            job_id: row.get(0),
            status: row.get::<_, &str>(1).parse().unwrap_or_default(),
            finished_at: row.get(2),
            held: row.get(3),
        })
        .collect())
}

/// A stored backup to read back: the least recently verified one that has not expired (never verified
/// first, oldest first), with its account. `None` when there is none.
pub async fn least_recently_verified(
    client: &impl GenericClient,
) -> Result<Option<(String, listbackup_domain::JobId)>, ReadError> {
    let row = client
        .query_opt(
            "SELECT account_id, job_id FROM read_jobs \
             WHERE status IN ('succeeded', 'partial') AND expired_at IS NULL AND kind = 'backup' \
             ORDER BY verified_at NULLS FIRST, finished_at LIMIT 1",
            &[],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}
