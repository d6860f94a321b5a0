//! `read_jobs`: one row per job, what `GET /jobs` shows. The row is born `queued` from the source's
//! `SyncRequested` and then follows the Job stream (guarded by `version < seq`, so replays change nothing).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::job::{
    summarise, DataTypeFailure, Failure, JobErrorCode, JobEvent, JobStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_postgres::Row;

use crate::pagination::{into_page, Page, PageRequest};
use crate::{ReadError, StoredEvent};

/// A job as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    pub job_id: String,
    pub source_id: String,
    pub connection_id: String,
    pub platform_id: String,
    /// `manual`, `schedule`, `group` or `retry`.
    pub trigger: String,
    pub group_id: Option<String>,
    /// `queued`, `running`, `succeeded`, `partial` (some data types backed up, the others failed: their
    /// files and the manifest are kept, see `dataTypes`), `failed` or `cancelled`.
    pub status: JobStatus,
    /// 0 while queued, then the attempt running or last run.
    pub attempt: i32,
    pub retry_of: Option<String>,
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
    hold, expired_at, expired_files, expired_bytes, verification";

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
        }
    }
}

/// A `SyncRequested`, as the jobs model needs it.
pub(crate) struct QueuedSync<'a> {
    pub job_id: &'a str,
    pub source_id: &'a str,
    pub trigger: &'a str,
    pub retry_of: Option<&'a str>,
    pub group_id: Option<&'a str>,
    /// Only these data types (a retry of failed ones); `None`: the source's, known once the job starts.
    pub data_types: Option<&'a [String]>,
    pub at: DateTime<Utc>,
}

/// The job's row, `queued`; its account, connection and platform are the source's (projected before it, in
/// the same log order). A job of chosen data types shows them, pending, from the start.
pub(crate) async fn queue(
    client: &impl GenericClient,
    sync: &QueuedSync<'_>,
) -> Result<(), ReadError> {
    let (progress, data_types) = match sync.data_types {
        Some(data_types) => (
            json!({"dataTypesTotal": data_types.len(), "dataTypesDone": 0, "records": 0, "bytes": 0}),
            pending(data_types),
        ),
        None => (json!({}), json!([])),
    };
    client
        .execute(
            "INSERT INTO read_jobs (job_id, account_id, source_id, connection_id, platform_id, group_id, \
               trigger, status, retry_of, queued_at, progress, data_types) \
             SELECT $1, s.account_id, s.source_id, s.connection_id, s.platform_id, $3, $4, 'queued', $5, $6, \
               $7, $8 \
             FROM read_sources s WHERE s.source_id = $2 \
             ON CONFLICT (job_id) DO NOTHING",
            &[
                &sync.job_id,
                &sync.source_id,
                &sync.group_id,
                &sync.trigger,
                &sync.retry_of,
                &sync.at,
                &progress,
                &data_types,
            ],
        )
        .await?;
    Ok(())
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

pub(crate) async fn apply(
    client: &impl GenericClient,
    event: &StoredEvent,
) -> Result<(), ReadError> {
    let id = &event.aggregate_id;
    let at = event.recorded_at;
    let seq = event.sequence;
    match event.decode::<JobEvent>()? {
        JobEvent::JobStarted {
            job_id,
            account_id,
            source_id,
            connection_id,
            platform_id,
            trigger,
            retry_of,
            attempt,
            data_types,
            ..
        } => {
            let progress = json!({"dataTypesTotal": data_types.len(), "dataTypesDone": 0,
                                  "records": 0, "bytes": 0});
            // Normally the queued row exists; the upsert keeps a job visible even if it does not.
            client
                .execute(
                    "INSERT INTO read_jobs (job_id, account_id, source_id, connection_id, platform_id, \
                       trigger, status, attempt, retry_of, progress, data_types, version, queued_at, started_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8, $9, $10, $11, $12, $12) \
                     ON CONFLICT (job_id) DO UPDATE SET status = 'running', attempt = $7, progress = $9, \
                       data_types = $10, version = $11, started_at = $12 \
                     WHERE read_jobs.version < $11",
                    &[
                        &job_id,
                        &account_id,
                        &source_id,
                        &connection_id,
                        &platform_id,
                        &trigger.as_str(),
                        &(attempt as i32),
                        &retry_of,
                        &progress,
                        &pending(&data_types),
                        &seq,
                        &at,
                    ],
                )
                .await?;
        }
        JobEvent::JobAttemptStarted { attempt, .. } => {
            // Earlier attempts' progress no longer counts: every data type is pending again.
            client
                .execute(
                    "UPDATE read_jobs SET status = 'running', attempt = $3, started_at = $4, \
                       progress = progress || '{\"dataTypesDone\": 0, \"records\": 0, \"bytes\": 0}', \
                       data_types = COALESCE((SELECT jsonb_agg(d || '{\"status\": \"pending\", \"records\": 0, \
                         \"bytes\": 0, \"sha256\": null, \"error\": null}') \
                         FROM jsonb_array_elements(data_types) d), '[]'), \
                       version = $2 \
                     WHERE job_id = $1 AND version < $2",
                    &[id, &seq, &(attempt as i32), &at],
                )
                .await?;
        }
        JobEvent::JobProgressed {
            data_types_done,
            data_types_total,
            current_data_type,
            records,
            bytes,
        } => {
            let progress = json!({"dataTypesTotal": data_types_total, "dataTypesDone": data_types_done,
                                  "currentDataType": current_data_type, "records": records, "bytes": bytes});
            client
                .execute(
                    "UPDATE read_jobs SET progress = $3, version = $2 WHERE job_id = $1 AND version < $2",
                    &[id, &seq, &progress],
                )
                .await?;
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
            set_data_type(client, id, seq, &data_type, &done).await?;
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
            set_data_type(client, id, seq, &data_type, &failed).await?;
        }
        JobEvent::JobSucceeded {
            manifest,
            manifest_sha256,
            records,
            bytes,
            ..
        } => {
            client
                .execute(
                    "UPDATE read_jobs SET status = 'succeeded', manifest = $4, manifest_sha256 = $5, \
                       progress = progress || jsonb_build_object('dataTypesDone', \
                         progress->'dataTypesTotal', 'records', $6::bigint, 'bytes', $7::bigint), \
                       finished_at = $3, version = $2 \
                     WHERE job_id = $1 AND version < $2",
                    &[
                        id,
                        &seq,
                        &at,
                        &manifest,
                        &manifest_sha256,
                        &(records as i64),
                        &(bytes as i64),
                    ],
                )
                .await?;
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
            let total: Option<i64> = client
                .query_opt(
                    "SELECT jsonb_array_length(data_types)::bigint FROM read_jobs WHERE job_id = $1",
                    &[id],
                )
                .await?
                .map(|row| row.get(0));
            let total = (total.unwrap_or(0) as usize).max(failed_data_types.len());
            let error = summarise(&failed_data_types, total)
                .map(|summary| serde_json::to_value(summary).unwrap_or(Value::Null));
            client
                .execute(
                    "UPDATE read_jobs SET status = 'partial', manifest = $4, manifest_sha256 = $5, \
                       progress = progress || jsonb_build_object('dataTypesDone', \
                         progress->'dataTypesTotal', 'records', $6::bigint, 'bytes', $7::bigint), \
                       error = $8, finished_at = $3, version = $2 \
                     WHERE job_id = $1 AND version < $2",
                    &[
                        id,
                        &seq,
                        &at,
                        &manifest,
                        &manifest_sha256,
                        &(records as i64),
                        &(bytes as i64),
                        &error,
                    ],
                )
                .await?;
        }
        // A job given up before it started fails its `queued` row like any other: the row exists since
        // SyncRequested.
        JobEvent::JobFailed {
            code,
            message,
            retryable,
            ..
        } => {
            let error = json!({"code": code, "message": message, "retryable": retryable});
            finish(client, id, seq, at, JobStatus::Failed, Some(error)).await?;
        }
        // A cancel request leaves a running job running until the worker confirms; a queued job's request
        // is followed by JobCancelled in the same commit.
        JobEvent::JobCancelRequested { .. } => {
            client
                .execute(
                    "UPDATE read_jobs SET version = $2 WHERE job_id = $1 AND version < $2",
                    &[id, &seq],
                )
                .await?;
        }
        JobEvent::JobCancelled {} => {
            finish(client, id, seq, at, JobStatus::Cancelled, None).await?
        }
        JobEvent::BackupHeld { reason } => {
            let by = event.metadata["actor"].as_str().unwrap_or_default();
            let hold = json!({"reason": reason, "by": by, "at": at});
            client
                .execute(
                    "UPDATE read_jobs SET hold = $3, version = $2 WHERE job_id = $1 AND version < $2",
                    &[id, &seq, &hold],
                )
                .await?;
        }
        JobEvent::BackupHoldReleased {} => {
            client
                .execute(
                    "UPDATE read_jobs SET hold = NULL, version = $2 WHERE job_id = $1 AND version < $2",
                    &[id, &seq],
                )
                .await?;
        }
        JobEvent::BackupExpired { files, bytes } => {
            client
                .execute(
                    "UPDATE read_jobs SET expired_at = $3, expired_files = $4, expired_bytes = $5, \
                       version = $2 WHERE job_id = $1 AND version < $2",
                    &[id, &seq, &at, &(files as i64), &(bytes as i64)],
                )
                .await?;
        }
        JobEvent::BackupVerified { files, bytes } => {
            let verification =
                json!({"status": "verified", "at": at, "files": files, "bytes": bytes});
            set_verification(client, id, seq, at, &verification).await?;
        }
        JobEvent::BackupCorrupted {
            file,
            expected,
            found,
        } => {
            let verification = json!({"status": "corrupted", "at": at, "file": file,
                                      "expected": expected, "found": found});
            set_verification(client, id, seq, at, &verification).await?;
        }
    }
    Ok(())
}

async fn set_verification(
    client: &impl GenericClient,
    id: &str,
    seq: i64,
    at: DateTime<Utc>,
    verification: &Value,
) -> Result<(), ReadError> {
    client
        .execute(
            "UPDATE read_jobs SET verification = $3, verified_at = $4, version = $2 \
             WHERE job_id = $1 AND version < $2",
            &[&id, &seq, verification, &at],
        )
        .await?;
    Ok(())
}

/// Replaces the entry of `data_type` in the job's `data_types`.
async fn set_data_type(
    client: &impl GenericClient,
    id: &str,
    seq: i64,
    data_type: &str,
    entry: &Value,
) -> Result<(), ReadError> {
    client
        .execute(
            "UPDATE read_jobs SET data_types = COALESCE((SELECT jsonb_agg( \
                 CASE WHEN d->>'name' = $3 THEN $4::jsonb ELSE d END) \
               FROM jsonb_array_elements(data_types) d), '[]'), version = $2 \
             WHERE job_id = $1 AND version < $2",
            &[&id, &seq, &data_type, entry],
        )
        .await?;
    Ok(())
}

async fn finish(
    client: &impl GenericClient,
    id: &str,
    seq: i64,
    at: DateTime<Utc>,
    status: JobStatus,
    error: Option<Value>,
) -> Result<(), ReadError> {
    let status = status.as_str();
    client
        .execute(
            "UPDATE read_jobs SET status = $4, error = $5, finished_at = $3, version = $2 \
             WHERE job_id = $1 AND version < $2",
            &[&id, &seq, &at, &status, &error],
        )
        .await?;
    Ok(())
}

/// Filters of `GET /jobs`, already validated.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub source_id: Option<String>,
    pub group_id: Option<String>,
}

/// One job of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    job_id: &str,
) -> Result<Option<JobView>, ReadError> {
    let sql = format!("SELECT {COLUMNS} FROM read_jobs WHERE account_id = $1 AND job_id = $2");
    let row = client.query_opt(&sql, &[&account_id, &job_id]).await?;
    Ok(row.as_ref().map(JobView::from_row))
}

/// The Job stream's version the read model has reached (0 while queued; for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    job_id: &str,
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
            ],
        )
        .await?;
    let views = rows.iter().map(JobView::from_row).collect();
    Ok(into_page(views, page.limit, |v: &JobView| {
        v.job_id.as_str()
    }))
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
             WHERE j.status IN ('succeeded', 'partial') AND j.expired_at IS NULL \
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
               AND finished_at IS NOT NULL",
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
) -> Result<Option<(String, String)>, ReadError> {
    let row = client
        .query_opt(
            "SELECT account_id, job_id FROM read_jobs \
             WHERE status IN ('succeeded', 'partial') AND expired_at IS NULL \
             ORDER BY verified_at NULLS FIRST, finished_at LIMIT 1",
            &[],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1))))
}
