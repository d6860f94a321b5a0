//! `read_sources`: one row per source, what `GET /sources` shows. Deleted sources keep their row (status
//! `deleted`) so read-your-writes can see the deletion, but no query returns them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::source::{Schedule, SourceEvent};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;

use super::{Header, Rows, Table};
use crate::pagination::{into_page, Page, PageRequest};
use crate::ReadError;

/// A source as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    #[schema(value_type = String, format = Uuid)]
    pub source_id: listbackup_domain::SourceId,
    #[schema(value_type = String, format = Uuid)]
    pub connection_id: listbackup_domain::ConnectionId,
    pub platform_id: String,
    pub name: String,
    /// `active` or `paused`.
    pub status: String,
    pub data_types: Vec<String>,
    /// `{frequency, time, dayOfWeek?, dayOfMonth?, timezone}` or `{cron, timezone}`, defaults filled in.
    #[schema(value_type = Object)]
    pub schedule: Value,
    pub retention_days: i32,
    /// Retention keeps at most this many newest backups; `null`: no limit by count (see README "Retention").
    pub keep_last: Option<i32>,
    pub incremental: bool,
    /// When the schedule next fires (computed at read time); `null` for paused or manual sources.
    pub next_sync_at: Option<DateTime<Utc>>,
    /// The last schedule slot the scheduler handled: a job was queued for it, or it was skipped.
    pub last_scheduled_slot: Option<DateTime<Utc>>,
    /// The last schedule slot skipped because the source's previous job was still queued or running (the
    /// source's `SyncSkipped` event says which job).
    pub last_skipped_slot: Option<DateTime<Utc>>,
    /// The source's most recent job, `null` before its first; its full record is `GET /jobs/{jobId}`.
    pub last_job: Option<LastJob>,
    /// The source's event-stream sequence: send it back in `If-Match`. Only the source's own changes move
    /// it: `lastJob` follows the job's events without changing the source's version.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A source's most recent job: the one its latest sync request (manual, scheduled, group or retry) queued,
/// whatever has become of it since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastJob {
    #[schema(value_type = String, format = Uuid)]
    pub job_id: listbackup_domain::JobId,
    pub status: listbackup_domain::job::JobStatus,
    /// When it ended; `null` while it is queued or running.
    pub finished_at: Option<DateTime<Utc>>,
    /// Records backed up: so far while it runs, in all once it has ended.
    pub records: u64,
    /// Bytes stored: so far while it runs, in all once it has ended.
    pub bytes: u64,
}

const COLUMNS: &str =
    "s.source_id, s.connection_id, s.platform_id, s.name, s.status, s.data_types, \
    s.schedule, s.retention_days, s.keep_last, s.incremental, s.version, s.created_at, s.updated_at, \
    s.last_scheduled_slot, s.last_skipped_slot, \
    j.job_id AS last_job_id, j.status AS last_job_status, j.finished_at AS last_job_finished_at, \
    COALESCE((j.progress->>'records')::bigint, 0) AS last_job_records, \
    COALESCE((j.progress->>'bytes')::bigint, 0) AS last_job_bytes";

/// The sources with their last job (a primary-key lookup per row).
const FROM: &str = "read_sources s LEFT JOIN read_jobs j ON j.job_id = s.last_job_id";

impl SourceView {
    fn from_row(row: &Row, now: DateTime<Utc>) -> Self {
        let data_types: Value = row.get("data_types");
        let schedule: Value = row.get("schedule");
        let status: String = row.get("status");
        let next_sync_at = if status == "active" {
            serde_json::from_value::<Schedule>(schedule.clone())
                .ok()
                .and_then(|s| s.next_after(now))
        } else {
            None
        };
        let last_job = row
            .get::<_, Option<listbackup_domain::JobId>>("last_job_id")
            .map(|job_id| LastJob {
                job_id,
                // Written by the jobs model from JobStatus::as_str.
                status: row
                    .get::<_, &str>("last_job_status")
                    .parse()
                    .unwrap_or_default(),
                finished_at: row.get("last_job_finished_at"),
                records: row.get::<_, i64>("last_job_records").max(0) as u64,
                bytes: row.get::<_, i64>("last_job_bytes").max(0) as u64,
            });
        Self {
            source_id: row.get("source_id"),
            connection_id: row.get("connection_id"),
            platform_id: row.get("platform_id"),
            name: row.get("name"),
            status,
            data_types: serde_json::from_value(data_types).unwrap_or_default(),
            schedule,
            retention_days: row.get("retention_days"),
            keep_last: row.get("keep_last"),
            incremental: row.get("incremental"),
            next_sync_at,
            last_scheduled_slot: row.get("last_scheduled_slot"),
            last_skipped_slot: row.get("last_skipped_slot"),
            last_job,
            version: row.get("version"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// The first slot of `schedule` after `after`: where the scheduler starts looking (`None`: manual).
fn first_slot_after(schedule: &Value, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    serde_json::from_value::<Schedule>(schedule.clone())
        .ok()
        .and_then(|s| s.next_after(after))
}

/// A row of `read_sources`, column for column.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub(crate) struct SourceRow {
    pub source_id: String,
    pub account_id: String,
    pub connection_id: String,
    pub platform_id: String,
    pub name: String,
    pub status: String,
    pub data_types: Value,
    pub schedule: Value,
    pub retention_days: i32,
    pub incremental: bool,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The first slot nobody has handled yet (`None`: paused, deleted or manual).
    pub next_scheduled_at: Option<DateTime<Utc>>,
    pub last_scheduled_slot: Option<DateTime<Utc>>,
    pub last_skipped_slot: Option<DateTime<Utc>>,
    pub last_job_id: Option<String>,
    pub keep_last: Option<i32>,
}

impl Table for SourceRow {
    const NAME: &'static str = "read_sources";
    const KEY: &'static str = "source_id";
    const COLUMNS: &'static [&'static str] = &[
        "account_id",
        "connection_id",
        "platform_id",
        "name",
        "status",
        "data_types",
        "schedule",
        "retention_days",
        "incremental",
        "version",
        "created_at",
        "updated_at",
        "next_scheduled_at",
        "last_scheduled_slot",
        "last_skipped_slot",
        "last_job_id",
        "keep_last",
    ];
    fn key(&self) -> &str {
        &self.source_id
    }
}

/// A handled slot (queued or skipped): the scheduler looks for the next one after it. Slots offered while
/// paused are never handled, so the source is active here unless a pause is still being projected.
fn slot_handled(row: &mut SourceRow, slot: DateTime<Utc>, skipped: bool) {
    row.last_scheduled_slot = Some(slot);
    if skipped {
        row.last_skipped_slot = Some(slot);
    }
    row.next_scheduled_at = if row.status == "active" {
        first_slot_after(&row.schedule, slot)
    } else {
        None
    };
}

/// What `read_sources` does with a source's event (and `read_jobs`, whose rows a `SyncRequested` creates).
/// Every change but the creations is guarded by `version < sequence`, so folding an event twice changes
/// nothing.
pub(crate) fn fold(rows: &mut Rows, header: &Header<'_>, event: SourceEvent) {
    let (id, seq, at) = (header.aggregate_id, header.sequence, header.recorded_at);
    let event = match event {
        SourceEvent::SourceCreated {
            source_id,
            account_id,
            connection_id,
            platform_id,
            name,
            data_types,
            schedule,
            retention_days,
            incremental,
            keep_last,
        } => {
            let source_id = source_id.to_string();
            rows.sources
                .entry(source_id.clone())
                .or_insert_with(|| SourceRow {
                    source_id,
                    account_id,
                    connection_id: connection_id.to_string(),
                    platform_id,
                    name,
                    status: "active".into(),
                    data_types: json(&data_types),
                    schedule: json(&schedule),
                    retention_days: retention_days as i32,
                    incremental,
                    version: seq,
                    created_at: at,
                    updated_at: at,
                    // Slots before the source existed are not its to catch up.
                    next_scheduled_at: schedule.next_after(at),
                    last_scheduled_slot: None,
                    last_skipped_slot: None,
                    last_job_id: None,
                    keep_last: keep_last.map(|k| k as i32),
                });
            return;
        }
        // The job is a row of `read_jobs`, born here as `queued` (if the source's row exists, and whether
        // or not this event was folded already: a job's row is created once).
        SourceEvent::SyncRequested {
            job_id,
            trigger,
            retry_of,
            group_id,
            slot,
            data_types,
        } => {
            if let Some(row) = rows.sources.get_mut(id).filter(|row| row.version < seq) {
                row.version = seq;
                row.updated_at = at;
                // The source's own row only moves its version (what read-your-writes waits for), its last
                // job and its slot.
                row.last_job_id = Some(job_id.to_string());
                if let Some(slot) = slot {
                    slot_handled(row, slot, false);
                }
            }
            super::jobs::queue(
                rows,
                super::jobs::QueuedSync {
                    job_id: job_id.to_string(),
                    source_id: id,
                    trigger: trigger.as_str(),
                    retry_of: retry_of.map(|id| id.to_string()),
                    group_id: group_id.map(|id| id.to_string()),
                    data_types,
                    at,
                    restore: None,
                },
            );
            return;
        }
        // A restore is a job too, born `queued` here like a backup's.
        SourceEvent::RestoreRequested { job_id, restore } => {
            if let Some(row) = rows.sources.get_mut(id).filter(|row| row.version < seq) {
                row.version = seq;
                row.updated_at = at;
                row.last_job_id = Some(job_id.to_string());
            }
            super::jobs::queue(
                rows,
                super::jobs::QueuedSync {
                    job_id: job_id.to_string(),
                    source_id: id,
                    trigger: listbackup_domain::job::JobTrigger::Manual.as_str(),
                    retry_of: None,
                    group_id: None,
                    data_types: Some(restore.data_types.clone()),
                    at,
                    restore: Some(restore),
                },
            );
            return;
        }
        other => other,
    };
    let Some(row) = rows.sources.get_mut(id) else {
        return;
    };
    if row.version >= seq {
        return;
    }
    row.version = seq;
    row.updated_at = at;
    match event {
        SourceEvent::SourceCreated { .. }
        | SourceEvent::SyncRequested { .. }
        | SourceEvent::RestoreRequested { .. } => {}
        SourceEvent::SourceUpdated {
            name,
            data_types,
            schedule,
            retention_days,
            incremental,
            keep_last,
        } => {
            if let Some(name) = name {
                row.name = name;
            }
            // 0: the limit by count was removed.
            if let Some(keep_last) = keep_last {
                row.keep_last = (keep_last != 0).then_some(keep_last as i32);
            }
            if let Some(data_types) = data_types {
                row.data_types = json(&data_types);
            }
            if let Some(retention_days) = retention_days {
                row.retention_days = retention_days as i32;
            }
            if let Some(incremental) = incremental {
                row.incremental = incremental;
            }
            if let Some(schedule) = schedule {
                // A new schedule starts from now: the old one's missed slots are not caught up.
                row.next_scheduled_at = if row.status == "active" {
                    schedule.next_after(at)
                } else {
                    None
                };
                row.schedule = json(&schedule);
            }
        }
        SourceEvent::SourcePaused {} => {
            row.status = "paused".into();
            row.next_scheduled_at = None;
        }
        // Slots that passed while paused are not caught up: the owner asked for no backups then.
        SourceEvent::SourceResumed {} => {
            row.status = "active".into();
            row.next_scheduled_at = first_slot_after(&row.schedule, at);
        }
        SourceEvent::SourceDeleted {} => {
            row.status = "deleted".into();
            row.next_scheduled_at = None;
        }
        SourceEvent::SyncSkipped { slot, .. } => slot_handled(row, slot, true),
        SourceEvent::SyncFinished { .. } => {}
    }
}

/// Filters of `GET /sources`, already validated.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    pub status: Option<String>,
    pub platform_id: Option<String>,
    pub connection_id: Option<listbackup_domain::ConnectionId>,
    pub group_id: Option<listbackup_domain::SourceGroupId>,
}

/// One live source of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    source_id: listbackup_domain::SourceId,
    now: DateTime<Utc>,
) -> Result<Option<SourceView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM {FROM} \
         WHERE s.account_id = $1 AND s.source_id = $2 AND s.status <> 'deleted'"
    );
    let row = client.query_opt(&sql, &[&account_id, &source_id]).await?;
    Ok(row.as_ref().map(|r| SourceView::from_row(r, now)))
}

/// The version the read model has reached for a source, deleted or not (for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    source_id: listbackup_domain::SourceId,
) -> Result<Option<i64>, ReadError> {
    let row = client
        .query_opt(
            "SELECT version FROM read_sources WHERE source_id = $1",
            &[&source_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// The SQL of one page of `GET /sources` (also what the benchmark runs through pgbench).
pub const LIST_SQL: &str = "SELECT s.source_id, s.connection_id, s.platform_id, s.name, s.status, \
    s.data_types, s.schedule, s.retention_days, s.keep_last, s.incremental, s.version, s.created_at, s.updated_at, \
    s.last_scheduled_slot, s.last_skipped_slot, \
    j.job_id AS last_job_id, j.status AS last_job_status, j.finished_at AS last_job_finished_at, \
    COALESCE((j.progress->>'records')::bigint, 0) AS last_job_records, \
    COALESCE((j.progress->>'bytes')::bigint, 0) AS last_job_bytes \
    FROM read_sources s LEFT JOIN read_jobs j ON j.job_id = s.last_job_id \
    WHERE s.account_id = $1 AND s.status <> 'deleted' \
      AND ($2::text IS NULL OR s.status = $2) \
      AND ($3::text IS NULL OR s.platform_id = $3) \
      AND ($4::text IS NULL OR s.connection_id = $4) \
      AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM read_source_group_members m \
                                       WHERE m.group_id = $5 AND m.source_id = s.source_id)) \
      AND ($6::text IS NULL OR s.source_id < $6) \
    ORDER BY s.source_id DESC LIMIT $7";

/// The account's live sources, newest first.
pub async fn list(
    client: &impl GenericClient,
    account_id: &str,
    filter: &SourceFilter,
    page: &PageRequest,
    now: DateTime<Utc>,
) -> Result<Page<SourceView>, ReadError> {
    let rows = client
        .query(
            LIST_SQL,
            &[
                &account_id,
                &filter.status,
                &filter.platform_id,
                &filter.connection_id,
                &filter.group_id,
                &page.before_id,
                &(page.limit + 1),
            ],
        )
        .await?;
    let views = rows.iter().map(|r| SourceView::from_row(r, now)).collect();
    Ok(into_page(views, page.limit, |v: &SourceView| v.source_id))
}

/// Ids of the account's live sources that use `connection_id` (for `DELETE /connections/{id}`).
pub async fn live_ids_for_connection(
    client: &impl GenericClient,
    account_id: &str,
    connection_id: listbackup_domain::ConnectionId,
) -> Result<Vec<listbackup_domain::SourceId>, ReadError> {
    let rows = client
        .query(
            "SELECT source_id FROM read_sources \
             WHERE connection_id = $1 AND account_id = $2 AND status <> 'deleted' \
             ORDER BY source_id",
            &[&connection_id, &account_id],
        )
        .await?;
    // A row whose id is not a UUID is an error (a corrupt read model), not a source.
    Ok(rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?)
}

/// A source with a schedule slot due, as the scheduler reads it.
#[derive(Debug, Clone)]
pub struct DueSource {
    pub source_id: listbackup_domain::SourceId,
    pub account_id: String,
    pub schedule: Schedule,
    /// The first slot nobody has handled yet (at or before the `now` asked about).
    pub first_unhandled: DateTime<Utc>,
}

/// Where a walk through the due sources has got to: the last row returned.
pub type DueCursor = (DateTime<Utc>, listbackup_domain::SourceId);

/// Up to `limit` active sources whose first unhandled slot is at or before `now`, after `after`, in slot order
/// (all accounts but erased ones, which record nothing more: the scheduler's query). The source itself decides
/// what the slot becomes.
pub async fn due_for_schedule(
    client: &impl GenericClient,
    now: DateTime<Utc>,
    after: Option<&DueCursor>,
    limit: i64,
) -> Result<Vec<DueSource>, ReadError> {
    let (after_at, after_id) = match after {
        Some((at, id)) => (Some(*at), Some(*id)),
        None => (None, None),
    };
    let rows = crate::statements::query(
        client,
        "SELECT source_id, account_id, schedule, next_scheduled_at FROM read_sources \
         WHERE next_scheduled_at <= $1 AND status = 'active' \
           AND NOT EXISTS (SELECT 1 FROM account_data_keys k \
                           WHERE k.account_id = read_sources.account_id AND k.erased_at IS NOT NULL) \
           AND ($2::timestamptz IS NULL OR (next_scheduled_at, source_id) > ($2, $3::text)) \
         ORDER BY next_scheduled_at, source_id LIMIT $4",
        &[&now, &after_at, &after_id, &limit],
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            // A stored schedule always parses (it was validated before it was recorded).
            let schedule = serde_json::from_value(row.get("schedule")).ok()?;
            Some(DueSource {
                source_id: row.get("source_id"),
                account_id: row.get("account_id"),
                schedule,
                first_unhandled: row.get("next_scheduled_at"),
            })
        })
        .collect())
}
