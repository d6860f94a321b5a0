//! A source's backups as points in time (issue 13 §4, §6): the snapshots, their records (browsed and
//! searched without downloading files), one record's versions with what changed, and a snapshot's export.
//! The use cases are `listbackup_commands::snapshots`; these routes parse, authorize and map.

use std::collections::BTreeMap;

use actix_web::{get, web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use listbackup_commands::snapshots::{
    ExportFormat, RecordQuery, RecordVersion, SnapshotPoint, SnapshotRecord, Snapshots,
};
use listbackup_domain::ErrorChain;
use listbackup_domain::ResourceKind;
use listbackup_projections::pagination::encode_cursor;
use listbackup_projections::read_models::sources as read_sources;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::{page_request, resource_id, PathId, QueryParams};
use crate::state::AppState;
use listbackup_domain::{JobId, SourceId};

/// One backup of the source as a point in time: an incremental backup's chain merged into the full state as
/// of that backup.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotView {
    /// The backup's job.
    pub job_id: String,
    pub finished_at: DateTime<Utc>,
    /// Whether any data type was fetched incrementally (only changes; the rest comes from earlier backups).
    pub incremental: bool,
    /// Whether some data types failed: they keep their state of the snapshot before.
    pub partial: bool,
    /// Records per data type in the merged state as of this backup.
    pub records: BTreeMap<String, i64>,
    /// What this backup changed, per data type: `{added, changed, deleted}`.
    #[schema(value_type = Object)]
    pub changes: serde_json::Value,
    /// When retention expired the backup: browsing and exporting it then answer 410.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<DateTime<Utc>>,
}

impl From<SnapshotPoint> for SnapshotView {
    fn from(point: SnapshotPoint) -> Self {
        Self {
            job_id: point.job_id,
            finished_at: point.finished_at,
            incremental: point.incremental,
            partial: point.partial,
            records: point.counts,
            changes: point.changes,
            expired_at: point.expired_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SnapshotListParams {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RecordListParams {
    /// The data type to read (required): one the snapshot holds.
    pub data_type: Option<String>,
    /// Case-insensitive substring of the record's JSON text (its keys and values as stored). A search reads
    /// at most 10,000 records per request: a page may hold fewer than `limit` records and still have a
    /// `nextCursor`, from which the search goes on.
    pub q: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// One record of a snapshot, as the platform sent it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecordView {
    pub record_id: String,
    /// The backup that stored this version of the record (an earlier one of the chain, for a record an
    /// incremental backup did not fetch again).
    pub stored_by_job_id: String,
    /// The record's JSON text exactly as stored (numbers keep every digit).
    #[schema(value_type = Object)]
    pub record: Box<serde_json::value::RawValue>,
}

impl From<SnapshotRecord> for SnapshotRecordView {
    fn from(r: SnapshotRecord) -> Self {
        Self {
            record_id: r.record_id,
            stored_by_job_id: r.stored_by_job_id,
            record: r.record,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRecordList {
    pub records: Vec<SnapshotRecordView>,
    pub next_cursor: Option<String>,
}

/// One backed-up version of a record.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordVersionView {
    /// The first backup that held this version (when the change was seen), and when it ended.
    pub first_job_id: String,
    pub first_backed_up_at: DateTime<Utc>,
    /// The last backup that held it: the source's latest, while `current`.
    pub last_job_id: String,
    pub last_backed_up_at: DateTime<Utc>,
    pub current: bool,
    /// The backup that no longer held the record (deleted on the platform), when this version ended so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_by_job_id: Option<String>,
    /// Hex of the first 16 bytes of the SHA-256 of the version's JSON text as stored.
    pub content_hash: String,
    /// The record as stored, its JSON text exactly; null once its backup has expired (retention).
    #[schema(value_type = Option<Object>)]
    pub record: Option<Box<serde_json::value::RawValue>>,
    /// RFC 6902 JSON Patch turning the previous version into this one; null for the first version, or when
    /// either side's backup has expired.
    #[schema(value_type = Option<Vec<Object>>)]
    pub changes: Option<serde_json::Value>,
}

impl From<RecordVersion> for RecordVersionView {
    fn from(v: RecordVersion) -> Self {
        Self {
            first_job_id: v.first_job_id,
            first_backed_up_at: v.first_backed_up_at,
            last_job_id: v.last_job_id,
            last_backed_up_at: v.last_backed_up_at,
            current: v.current,
            deleted_by_job_id: v.deleted_by_job_id,
            content_hash: v.content_hash,
            record: v.record,
            changes: v
                .changes
                .map(|p| serde_json::to_value(p).unwrap_or(serde_json::Value::Null)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordVersionList {
    pub record_id: String,
    pub data_type: String,
    /// Oldest first.
    pub versions: Vec<RecordVersionView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (default): `{dataType}.ndjson`, the records as stored; `csv`: `{dataType}.csv`, columns the
    /// union of the records' top-level keys (`id` first), strings as themselves, null or absent as an empty
    /// cell, other values as their JSON text.
    pub format: Option<String>,
}

/// The snapshot use cases, or 503 without backup storage.
fn snapshots(state: &AppState) -> Result<&Snapshots, ApiError> {
    state
        .snapshots
        .as_deref()
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "backup storage is not configured"))
}

/// The account's live source, or the 404 (a deleted source's snapshots are not served, as the source is not).
async fn owned_source(
    state: &AppState,
    principal: &Principal,
    id: &SourceId,
) -> Result<SourceId, ApiError> {
    let client = state.db.get().await?;
    read_sources::get(&client, &principal.account_id, *id, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Source))?;
    Ok(*id)
}

/// A path segment that PostgreSQL text can hold, or a 400 naming it.
fn text_segment(field: &str, value: &str) -> Result<(), ApiError> {
    if value.contains('\0') || value.is_empty() || value.len() > 1000 {
        return Err(ApiError::field(
            field,
            "must be 1 to 1000 characters, without NUL",
        ));
    }
    Ok(())
}

/// The source's successful and partial backups as points in time, newest first, each with its records per
/// data type as of that backup and what it changed.
#[utoipa::path(tag = "snapshots", security(("bearer" = [])), params(("id" = String, Path), SnapshotListParams),
    responses((status = 200, body = SnapshotList), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/sources/{id}/snapshots")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<SourceId>,
    QueryParams(params): QueryParams<SnapshotListParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let source_id = owned_source(&state, &principal, &path.get()?).await?;
    let mut errors = Vec::new();
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let (points, more) = snapshots(&state)?
        .list(
            &principal.account_id,
            source_id,
            // A cursor naming no job (not a UUID) starts from the newest, as before.
            page.before_id.as_deref().and_then(|id| id.parse().ok()),
            page.limit,
        )
        .await?;
    let next_cursor = if more {
        points.last().map(|p| encode_cursor(&p.job_id))
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(SnapshotList {
        snapshots: points.into_iter().map(SnapshotView::from).collect(),
        next_cursor,
    }))
}

/// Browses or searches the records of one data type as of the snapshot, without downloading files: in the
/// order they were stored. 410 once the backup (or one its chain reads from) has expired, or the account is
/// erased.
#[utoipa::path(tag = "snapshots", security(("bearer" = [])),
    params(("id" = String, Path), ("jobId" = String, Path), RecordListParams),
    responses((status = 200, body = SnapshotRecordList), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 410, body = crate::error::Problem)))]
#[get("/sources/{id}/snapshots/{jobId}/records")]
pub async fn records(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    QueryParams(params): QueryParams<RecordListParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let (raw_source, raw_job) = path.into_inner();
    // The snapshot first: another account's is the one 404 whatever the query.
    let source_id = owned_source(
        &state,
        &principal,
        &resource_id(&raw_source, ResourceKind::Source)?,
    )
    .await?;
    let job_id = resource_id::<JobId>(&raw_job, ResourceKind::Snapshot)?;
    let snapshots = snapshots(&state)?;
    let snapshot = snapshots
        .readable(&principal.account_id, source_id, job_id)
        .await?;
    let mut errors = Vec::new();
    // Validated as a page request's limit; the cursor is the snapshot's own (checked by the use case).
    let limit = page_request(params.limit, None, &mut errors).limit;
    match params.data_type.as_deref() {
        None => errors.push(FieldError::new("dataType", "is required")),
        Some(d) if !snapshot.counts.contains_key(d) => {
            let known: Vec<&str> = snapshot.counts.keys().map(String::as_str).collect();
            errors.push(FieldError::new(
                "dataType",
                format!(
                    "is not a data type of this snapshot (it holds: {})",
                    known.join(", ")
                ),
            ))
        }
        Some(_) => {}
    }
    if let Some(q) = &params.q {
        if q.is_empty() || q.len() > 200 {
            errors.push(FieldError::new("q", "must be 1 to 200 characters"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let data_type = params.data_type.as_deref().unwrap_or_default();
    let page = snapshots
        .records(
            &principal.account_id,
            source_id,
            job_id,
            RecordQuery {
                data_type,
                q: params.q.as_deref(),
                cursor: params.cursor.as_deref(),
                limit,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(SnapshotRecordList {
        records: page
            .records
            .into_iter()
            .map(SnapshotRecordView::from)
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Every backed-up version of one record, oldest first: when each was first and last backed up, whether the
/// record was deleted after it, and what changed from the version before (an RFC 6902 JSON Patch).
#[utoipa::path(tag = "snapshots", security(("bearer" = [])),
    params(("id" = String, Path), ("dataType" = String, Path), ("recordId" = String, Path)),
    responses((status = 200, body = RecordVersionList), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 410, body = crate::error::Problem)))]
#[get("/sources/{id}/records/{dataType}/{recordId}/versions")]
pub async fn versions(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String, String)>,
    _: QueryParams<crate::extract::NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let (raw_source, data_type, record_id) = path.into_inner();
    let source_id = owned_source(
        &state,
        &principal,
        &resource_id(&raw_source, ResourceKind::Source)?,
    )
    .await?;
    text_segment("dataType", &data_type)?;
    text_segment("recordId", &record_id)?;
    let versions = snapshots(&state)?
        .versions(&principal.account_id, source_id, &data_type, &record_id)
        .await?;
    Ok(HttpResponse::Ok().json(RecordVersionList {
        record_id,
        data_type,
        versions: versions.into_iter().map(RecordVersionView::from).collect(),
    }))
}

/// Streams a zip of the snapshot: one file per data type it holds, `{dataType}.ndjson` or `{dataType}.csv`.
/// Memory stays flat whatever the snapshot's size. 410 once the backup (or one its chain reads from) has
/// expired, or the account is erased.
#[utoipa::path(tag = "snapshots", security(("bearer" = [])),
    params(("id" = String, Path), ("jobId" = String, Path), ExportParams),
    responses((status = 200, content_type = "application/zip"), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 410, body = crate::error::Problem)))]
#[get("/sources/{id}/snapshots/{jobId}/export")]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<(String, String)>,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let (raw_source, raw_job) = path.into_inner();
    let source_id = owned_source(
        &state,
        &principal,
        &resource_id(&raw_source, ResourceKind::Source)?,
    )
    .await?;
    let format = match params.format.as_deref() {
        None | Some("ndjson") => ExportFormat::Ndjson,
        Some("csv") => ExportFormat::Csv,
        Some(_) => return Err(ApiError::field("format", "must be ndjson or csv")),
    };
    let job_id = resource_id::<JobId>(&raw_job, ResourceKind::Snapshot)?;
    let stream = snapshots(&state)?
        .export(&principal.account_id, source_id, job_id, format)
        .await?;
    let name = match format {
        ExportFormat::Ndjson => "ndjson",
        ExportFormat::Csv => "csv",
    };
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"snapshot-{job_id}-{name}.zip\""),
        ))
        .streaming(futures::TryStreamExt::map_err(stream, |e| {
            tracing::error!(
                error = %ErrorChain(&e),
                "snapshot export cut short"
            );
            actix_web::error::ErrorInternalServerError("the export failed")
        })))
}
