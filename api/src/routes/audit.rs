//! The event log for auditors (issue 12): `GET /events`, `GET /{connections|sources|source-groups|jobs}/{id}
//! /history`, `GET /events/export` (a signed NDJSON download), `GET /audit/verify`, the public key of export
//! signatures at `GET /.well-known/listbackup-audit-key`, and `?asOf=` on the resource GETs.
//!
//! The log is for roles `auditor` and `owner` (403 for the others) and shows only the caller's account: the
//! events whose metadata names it. Another account's resource is the same 404 as a missing one. Events come
//! in log order, oldest first (the order they are replayed in), unlike the resource lists: the log is read
//! forwards.

use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{get, web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures::stream;
use listbackup_domain::ErrorChain;
use listbackup_projections::audit::as_of::{self, AsOf, AsOfError};
use listbackup_projections::audit::export::ExportStream;
use listbackup_projections::audit::log::{self, LogFilter, LogReader};
use listbackup_projections::audit::verify::{verify_chains, ChainReport};
use listbackup_projections::audit::LoggedEvent;
use listbackup_projections::pagination::{DEFAULT_LIMIT, MAX_LIMIT};
use listbackup_projections::LogPosition;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use listbackup_domain::ResourceKind;

use crate::auth::Principal;
use crate::error::{ApiError, ErrorCode, FieldError};
use crate::extract::{with_etag, NoParams, QueryParams};
use crate::state::AppState;

/// The media type of streamed events (one JSON event per line).
pub const NDJSON: &str = "application/x-ndjson";

pub(crate) const AGGREGATE_TYPES: &[&str] =
    &["connection", "source", "source_group", "job", "account"];

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventLogParams {
    /// `connection`, `source`, `source_group`, `job` or `account` (its erasure).
    pub aggregate_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// e.g. `SourceUpdated`.
    pub event_type: Option<String>,
    /// metadata `correlationId`: everything that followed from one request.
    pub correlation_id: Option<String>,
    /// metadata `actor`: `user:<sub>`, `worker:<id>`, `scheduler` or `system`.
    pub actor: Option<String>,
    /// RFC 3339; events recorded at or after it.
    pub from: Option<String>,
    /// RFC 3339; events recorded before it.
    pub to: Option<String>,
    /// A `position` (e.g. the `nextCursor` of the previous page): events after it in log order.
    pub after: Option<String>,
    /// 1 to 200, default 50. With `Accept: application/x-ndjson`, no default and no maximum.
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// A `position`: events after it.
    pub after: Option<String>,
    /// 1 to 200, default 50 (no maximum with `Accept: application/x-ndjson`).
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// RFC 3339; events recorded at or after it.
    pub from: Option<String>,
    /// RFC 3339; events recorded before it.
    pub to: Option<String>,
}

/// A page of the log.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub events: Vec<LoggedEvent>,
    /// The last event's position when more may follow: pass it as `?after=`.
    pub next_cursor: Option<String>,
}

/// The public key audit exports are signed with.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditKey {
    /// `Ed25519`.
    pub algorithm: String,
    /// Base64 of the 32-byte public key: `listbackup events verify-export --public-key <this>`.
    pub public_key: String,
}

fn parse_time(
    field: &str,
    raw: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let raw = raw?;
    match DateTime::parse_from_rfc3339(raw) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                field,
                "must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
            ));
            None
        }
    }
}

fn wants_ndjson(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(NDJSON)
        })
}

/// `?limit`: 1..=200 (default 50) for pages; any positive number, or none, for NDJSON.
fn limit(raw: Option<i64>, ndjson: bool, errors: &mut Vec<FieldError>) -> Option<i64> {
    match (raw, ndjson) {
        (None, true) => None,
        (None, false) => Some(DEFAULT_LIMIT),
        (Some(n), true) if n >= 1 => Some(n),
        (Some(n), false) if (1..=MAX_LIMIT).contains(&n) => Some(n),
        (Some(_), true) => {
            errors.push(FieldError::new("limit", "must be at least 1"));
            None
        }
        (Some(_), false) => {
            errors.push(FieldError::new(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
            None
        }
    }
}

/// `?after=<position>`, located in log order.
async fn after(state: &AppState, raw: Option<&str>) -> Result<LogPosition, ApiError> {
    let Some(raw) = raw else {
        return Ok(LogPosition::default());
    };
    let position =
        raw.parse::<i64>().ok().filter(|p| *p >= 0).ok_or_else(|| {
            ApiError::field("after", "must be an event's position (a whole number)")
        })?;
    let client = state.db.get().await?;
    log::locate(&client, position)
        .await?
        .ok_or_else(|| ApiError::field("after", "no event has this position"))
}

/// A page as JSON, or the whole range as NDJSON.
async fn respond(
    state: &AppState,
    filter: LogFilter,
    after: LogPosition,
    limit: Option<i64>,
    ndjson: bool,
) -> Result<HttpResponse, ApiError> {
    if ndjson {
        let reader = LogReader::start(state.db.clone(), filter, after).await?;
        return Ok(HttpResponse::Ok()
            .content_type(NDJSON)
            .streaming(ndjson_events(reader, limit)));
    }
    let client = state.db.get().await?;
    let page = log::page(&client, &filter, after, limit.unwrap_or(DEFAULT_LIMIT)).await?;
    Ok(HttpResponse::Ok().json(EventList {
        events: page.events,
        next_cursor: page.next_cursor,
    }))
}

/// Streams events batch by batch (a connection per batch, none held while the client reads). A failure
/// halfway aborts the response, so a client can never take a cut-short stream for a complete one.
fn ndjson_events(
    reader: LogReader,
    limit: Option<i64>,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
    stream::try_unfold(
        (reader, limit.unwrap_or(i64::MAX)),
        |(mut reader, left)| async move {
            if left <= 0 {
                return Ok(None);
            }
            let mut events = reader.next_batch().await.map_err(|e| {
                tracing::error!(
                    error = %ErrorChain(&e),
                    "event log stream failed"
                );
                actix_web::error::ErrorInternalServerError("the event log could not be read")
            })?;
            if events.is_empty() {
                return Ok(None);
            }
            events.truncate(left.min(events.len() as i64) as usize);
            let mut chunk = Vec::with_capacity(events.len() * 512);
            for event in &events {
                serde_json::to_writer(&mut chunk, event)
                    .map_err(actix_web::error::ErrorInternalServerError)?;
                chunk.push(b'\n');
            }
            Ok(Some((
                Bytes::from(chunk),
                (reader, left - events.len() as i64),
            )))
        },
    )
}

/// The account's event log, in log order. `Accept: application/x-ndjson` streams the whole range (pinned
/// to the moment the request arrived) instead of one page.
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(EventLogParams),
    responses((status = 200, body = EventList, description = "a page; with Accept: application/x-ndjson, one event per line"),
              (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem)))]
#[get("/events")]
pub async fn list(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    QueryParams(params): QueryParams<EventLogParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_audit()?;
    let ndjson = wants_ndjson(&req);
    let mut errors = Vec::new();
    if let Some(t) = &params.aggregate_type {
        if !AGGREGATE_TYPES.contains(&t.as_str()) {
            errors.push(FieldError::new(
                "aggregateType",
                "must be connection, source, source_group, job or account",
            ));
        }
    }
    let from = parse_time("from", params.from.as_deref(), &mut errors);
    let to = parse_time("to", params.to.as_deref(), &mut errors);
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            errors.push(FieldError::new("to", "must not be before `from`"));
        }
    }
    let limit = limit(params.limit, ndjson, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let after = after(&state, params.after.as_deref()).await?;
    let filter = LogFilter {
        account_id: principal.account_id.clone(),
        aggregate_type: params.aggregate_type,
        aggregate_id: params.aggregate_id,
        event_type: params.event_type,
        correlation_id: params.correlation_id,
        actor: params.actor,
        from,
        to,
    };
    respond(&state, filter, after, limit, ndjson).await
}

/// One resource's history: its stream, the same 404 for another account's resource as for a missing one.
async fn history(
    state: &AppState,
    req: &HttpRequest,
    principal: &Principal,
    aggregate_type: &str,
    kind: ResourceKind,
    raw_id: &str,
    params: HistoryParams,
) -> Result<HttpResponse, ApiError> {
    principal.require_audit()?;
    // The kind is the caller's (one handler serves every resource's history): parsed as an id is (the
    // hyphenated UUID only), shown as the stream's `aggregate_id` text.
    let id = listbackup_domain::parse_hyphenated(raw_id)
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::not_found(kind))?;
    let ndjson = wants_ndjson(req);
    let mut errors = Vec::new();
    let limit = limit(params.limit, ndjson, &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let after = after(state, params.after.as_deref()).await?;
    {
        let client = state.db.get().await?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 \
                   AND metadata ->> 'accountId' = $3 LIMIT 1",
                &[&aggregate_type, &id, &principal.account_id],
            )
            .await
            .map_err(listbackup_projections::ReadError::from)?
            .is_some();
        if !exists {
            return Err(ApiError::not_found(kind));
        }
    }
    let filter = LogFilter {
        account_id: principal.account_id.clone(),
        aggregate_type: Some(aggregate_type.to_owned()),
        aggregate_id: Some(id),
        ..LogFilter::default()
    };
    respond(state, filter, after, limit, ndjson).await
}

/// A connection's events, in log order (deleted connections included).
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), HistoryParams),
    responses((status = 200, body = EventList), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/connections/{id}/history")]
pub async fn connection_history(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    history(
        &state,
        &req,
        &principal,
        "connection",
        ResourceKind::Connection,
        &path,
        params,
    )
    .await
}

/// A source's events, in log order (its `SyncRequested` events name its jobs).
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), HistoryParams),
    responses((status = 200, body = EventList), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/sources/{id}/history")]
pub async fn source_history(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    history(
        &state,
        &req,
        &principal,
        "source",
        ResourceKind::Source,
        &path,
        params,
    )
    .await
}

/// A source group's events, in log order.
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), HistoryParams),
    responses((status = 200, body = EventList), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/source-groups/{id}/history")]
pub async fn source_group_history(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    history(
        &state,
        &req,
        &principal,
        "source_group",
        ResourceKind::SourceGroup,
        &path,
        params,
    )
    .await
}

/// A job's events, in log order (the `SyncRequested` that queued it is its source's).
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), HistoryParams),
    responses((status = 200, body = EventList), (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem)))]
#[get("/jobs/{id}/history")]
pub async fn job_history(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<String>,
    QueryParams(params): QueryParams<HistoryParams>,
) -> Result<HttpResponse, ApiError> {
    history(
        &state,
        &req,
        &principal,
        "job",
        ResourceKind::Job,
        &path,
        params,
    )
    .await
}

/// The account's log as a signed NDJSON file, verifiable offline (`listbackup events verify-export`): one
/// event per line, then the signed summary. 503 when the server has no signing key configured.
#[utoipa::path(tag = "audit", security(("bearer" = [])), params(ExportParams),
    responses((status = 200, content_type = "application/x-ndjson", description = "events, then the signed summary"),
              (status = 400, body = crate::error::Problem), (status = 403, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)))]
#[get("/events/export")]
pub async fn export(
    state: web::Data<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ExportParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_audit()?;
    let mut errors = Vec::new();
    let from = parse_time("from", params.from.as_deref(), &mut errors);
    let to = parse_time("to", params.to.as_deref(), &mut errors);
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            errors.push(FieldError::new("to", "must not be before `from`"));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let signer = state.audit_signer.clone().ok_or_else(|| {
        ApiError::unavailable(
            "signed exports are not configured on this server (LISTBACKUP_AUDIT_SIGNING_KEY is not set)",
        )
    })?;
    let export =
        ExportStream::start(state.db.clone(), signer, &principal.account_id, from, to).await?;
    let body = stream::try_unfold(export, |mut export| async move {
        match export.next_chunk().await {
            Ok(Some(chunk)) => Ok(Some((Bytes::from(chunk), export))),
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "audit export failed");
                Err(actix_web::error::ErrorInternalServerError(
                    "the export could not be completed",
                ))
            }
        }
    });
    let filename = format!(
        "listbackup-events-{}.ndjson",
        principal
            .account_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect::<String>()
    );
    Ok(HttpResponse::Ok()
        .content_type(NDJSON)
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        ))
        .streaming(body))
}

/// Recomputes the hash chain of every stream of the account and reports the first modified, removed,
/// inserted or reordered event of each.
#[utoipa::path(tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = ChainReport), (status = 403, body = crate::error::Problem)))]
#[get("/audit/verify")]
pub async fn verify(
    state: web::Data<AppState>,
    principal: Principal,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_audit()?;
    let mut client = state.db.get().await?;
    let report = verify_chains(&mut client, Some(&principal.account_id)).await?;
    Ok(HttpResponse::Ok().json(report))
}

/// The public key of export signatures (no authentication: it is public). 404 when none is configured.
#[utoipa::path(tag = "audit", responses((status = 200, body = AuditKey), (status = 404, body = crate::error::Problem)))]
#[get("/.well-known/listbackup-audit-key")]
pub async fn public_key(
    state: web::Data<AppState>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let signer = state.audit_signer.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "no audit signing key is configured on this server",
        )
    })?;
    Ok(HttpResponse::Ok().json(AuditKey {
        algorithm: "Ed25519".into(),
        public_key: signer.public_key_base64(),
    }))
}

/// `?asOf=` of the resource GETs.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct GetParams {
    /// The resource as it stood then (roles auditor and owner): an RFC 3339 time (events recorded at or
    /// before it) or a log position (events up to and including that one, in log order). Before the
    /// resource existed, or after it was deleted: 404.
    pub as_of: Option<String>,
}

impl GetParams {
    /// The point asked for, if any; only auditors and owners may look back.
    pub fn as_of(&self, principal: &Principal) -> Result<Option<AsOf>, ApiError> {
        let Some(raw) = &self.as_of else {
            return Ok(None);
        };
        principal.require_audit()?;
        AsOf::parse(raw).map(Some).ok_or_else(|| {
            ApiError::field(
                "asOf",
                "must be an RFC 3339 time or an event's position (a whole number)",
            )
        })
    }
}

fn as_of_error(err: AsOfError) -> ApiError {
    match err {
        AsOfError::UnknownPosition(_) => ApiError::field("asOf", "no event has this position"),
        AsOfError::Read(e) => e.into(),
    }
}

/// Which resource an as-of GET folds, by its id.
#[derive(Debug, Clone, Copy)]
pub enum Resource {
    Connection(listbackup_domain::ConnectionId),
    Source(listbackup_domain::SourceId),
    SourceGroup(listbackup_domain::SourceGroupId),
    Job(listbackup_domain::JobId),
}

/// The resource as it stood at `point`, with its version then as `ETag`.
pub async fn resource_as_of(
    state: &AppState,
    principal: &Principal,
    resource: Resource,
    point: AsOf,
) -> Result<HttpResponse, ApiError> {
    let mut client = state.db.get().await?;
    let account = principal.account_id.as_str();
    let found = match resource {
        Resource::Connection(id) => as_of::connection(&mut client, account, id, point)
            .await
            .map_err(as_of_error)?
            .map(|t| (serde_json::to_value(&t.view), t.version)),
        Resource::Source(id) => as_of::source(&mut client, account, id, point)
            .await
            .map_err(as_of_error)?
            .map(|t| (serde_json::to_value(&t.view), t.version)),
        Resource::SourceGroup(id) => as_of::source_group(&mut client, account, id, point)
            .await
            .map_err(as_of_error)?
            .map(|t| (serde_json::to_value(&t.view), t.version)),
        Resource::Job(id) => as_of::job(&mut client, account, id, point)
            .await
            .map_err(as_of_error)?
            .map(|t| (serde_json::to_value(&t.view), t.version)),
    };
    let what = match resource {
        Resource::Connection(_) => ResourceKind::Connection,
        Resource::Source(_) => ResourceKind::Source,
        Resource::SourceGroup(_) => ResourceKind::SourceGroup,
        Resource::Job(_) => ResourceKind::Job,
    }
    .noun();
    match found {
        Some((Ok(view), version)) => Ok(with_etag(&view, version)),
        Some((Err(e), _)) => Err(ApiError::from_unexpected(e)),
        None => Err(ApiError::new(
            ErrorCode::NotFound,
            format!("{what} not found at that point of the log"),
        )),
    }
}
