//! `read_sources`: one row per source, what `GET /sources` shows. Deleted sources keep their row (status
//! `deleted`) so read-your-writes can see the deletion, but no query returns them.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::source::{Schedule, SourceEvent};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::Row;

use crate::pagination::{into_page, Page, PageRequest};
use crate::{ReadError, StoredEvent};

/// A source as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceView {
    pub source_id: String,
    pub connection_id: String,
    pub platform_id: String,
    pub name: String,
    /// `active` or `paused`.
    pub status: String,
    pub data_types: Vec<String>,
    /// `{frequency, time, dayOfWeek?, dayOfMonth?, timezone}` or `{cron, timezone}`, defaults filled in.
    #[schema(value_type = Object)]
    pub schedule: Value,
    pub retention_days: i32,
    pub incremental: bool,
    /// When the schedule next fires (computed at read time); `null` for paused or manual sources.
    pub next_sync_at: Option<DateTime<Utc>>,
    /// The source's event-stream sequence: send it back in `If-Match`.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "s.source_id, s.connection_id, s.platform_id, s.name, s.status, s.data_types, \
    s.schedule, s.retention_days, s.incremental, s.version, s.created_at, s.updated_at";

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
        Self {
            source_id: row.get("source_id"),
            connection_id: row.get("connection_id"),
            platform_id: row.get("platform_id"),
            name: row.get("name"),
            status,
            data_types: serde_json::from_value(data_types).unwrap_or_default(),
            schedule,
            retention_days: row.get("retention_days"),
            incremental: row.get("incremental"),
            next_sync_at,
            version: row.get("version"),
            created_at: row.get("created_at"),
            updated_at: row.get("updated_at"),
        }
    }
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or_default()
}

pub(crate) async fn apply(
    client: &impl GenericClient,
    event: &StoredEvent,
) -> Result<(), ReadError> {
    let id = &event.aggregate_id;
    let at = event.recorded_at;
    let seq = event.sequence;
    // Every UPDATE is guarded by `version < seq`, so applying an event twice changes nothing.
    match event.decode::<SourceEvent>()? {
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
        } => {
            client
                .execute(
                    "INSERT INTO read_sources (source_id, account_id, connection_id, platform_id, name, status, \
                       data_types, schedule, retention_days, incremental, version, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $10, $11, $11) \
                     ON CONFLICT (source_id) DO NOTHING",
                    &[
                        &source_id,
                        &account_id,
                        &connection_id,
                        &platform_id,
                        &name,
                        &json(&data_types),
                        &json(&schedule),
                        &(retention_days as i32),
                        &incremental,
                        &seq,
                        &at,
                    ],
                )
                .await?;
        }
        SourceEvent::SourceUpdated {
            name,
            data_types,
            schedule,
            retention_days,
            incremental,
        } => {
            client
                .execute(
                    "UPDATE read_sources SET name = COALESCE($4, name), \
                       data_types = COALESCE($5, data_types), schedule = COALESCE($6, schedule), \
                       retention_days = COALESCE($7, retention_days), \
                       incremental = COALESCE($8, incremental), version = $2, updated_at = $3 \
                     WHERE source_id = $1 AND version < $2",
                    &[
                        id,
                        &seq,
                        &at,
                        &name,
                        &data_types.as_ref().map(json),
                        &schedule.as_ref().map(json),
                        &retention_days.map(|r| r as i32),
                        &incremental,
                    ],
                )
                .await?;
        }
        SourceEvent::SourcePaused {} => set_status(client, id, seq, at, "paused").await?,
        SourceEvent::SourceResumed {} => set_status(client, id, seq, at, "active").await?,
        SourceEvent::SourceDeleted {} => set_status(client, id, seq, at, "deleted").await?,
        // The source's own row only moves its version (what read-your-writes waits for); the job is a row of
        // `read_jobs`, born here as `queued`.
        SourceEvent::SyncRequested {
            job_id,
            trigger,
            retry_of,
            group_id,
        } => {
            bump_version(client, id, seq, at).await?;
            super::jobs::queue(
                client,
                &super::jobs::QueuedSync {
                    job_id: &job_id,
                    source_id: id,
                    trigger: trigger.as_str(),
                    retry_of: retry_of.as_deref(),
                    group_id: group_id.as_deref(),
                    at,
                },
            )
            .await?;
        }
        SourceEvent::SyncFinished { .. } => bump_version(client, id, seq, at).await?,
    }
    Ok(())
}

async fn set_status(
    client: &impl GenericClient,
    id: &str,
    seq: i64,
    at: DateTime<Utc>,
    status: &str,
) -> Result<(), ReadError> {
    client
        .execute(
            "UPDATE read_sources SET status = $4, version = $2, updated_at = $3 \
             WHERE source_id = $1 AND version < $2",
            &[&id, &seq, &at, &status],
        )
        .await?;
    Ok(())
}

async fn bump_version(
    client: &impl GenericClient,
    id: &str,
    seq: i64,
    at: DateTime<Utc>,
) -> Result<(), ReadError> {
    client
        .execute(
            "UPDATE read_sources SET version = $2, updated_at = $3 \
             WHERE source_id = $1 AND version < $2",
            &[&id, &seq, &at],
        )
        .await?;
    Ok(())
}

/// Filters of `GET /sources`, already validated.
#[derive(Debug, Clone, Default)]
pub struct SourceFilter {
    pub status: Option<String>,
    pub platform_id: Option<String>,
    pub connection_id: Option<String>,
    pub group_id: Option<String>,
}

/// One live source of the account.
pub async fn get(
    client: &impl GenericClient,
    account_id: &str,
    source_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<SourceView>, ReadError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM read_sources s \
         WHERE s.account_id = $1 AND s.source_id = $2 AND s.status <> 'deleted'"
    );
    let row = client.query_opt(&sql, &[&account_id, &source_id]).await?;
    Ok(row.as_ref().map(|r| SourceView::from_row(r, now)))
}

/// The version the read model has reached for a source, deleted or not (for read-your-writes).
pub async fn projected_version(
    client: &impl GenericClient,
    source_id: &str,
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
    s.data_types, s.schedule, s.retention_days, s.incremental, s.version, s.created_at, s.updated_at \
    FROM read_sources s \
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
    Ok(into_page(views, page.limit, |v: &SourceView| {
        v.source_id.as_str()
    }))
}

/// Ids of the account's live sources that use `connection_id` (for `DELETE /connections/{id}`).
pub async fn live_ids_for_connection(
    client: &impl GenericClient,
    account_id: &str,
    connection_id: &str,
) -> Result<Vec<String>, ReadError> {
    let rows = client
        .query(
            "SELECT source_id FROM read_sources \
             WHERE connection_id = $1 AND account_id = $2 AND status <> 'deleted' \
             ORDER BY source_id",
            &[&connection_id, &account_id],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
