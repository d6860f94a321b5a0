//! `/sources`: what to back up from a connection, on what schedule.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use listbackup_commands::sources::NewSource;
use listbackup_domain::platform;
use listbackup_domain::source::{
    KeepLast, RetentionDays, Schedule, ScheduleSpec, SourceChanges, WantedStatus,
};
use listbackup_domain::values::DisplayName;
use listbackup_projections::read_models::sources::{self as read, SourceFilter, SourceView};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::consistency::{read_back, wait_for};
use crate::error::{ApiError, FieldError};
use crate::extract::{if_match, with_etag, JsonBody, NoBody, NoParams, PathId, QueryParams};
use crate::idempotency::{self, Created};
use crate::routes::metadata;
use crate::state::AppState;
use listbackup_domain::SourceId;
use listbackup_domain::{ConnectionId, ResourceKind};
use listbackup_projections::read_models::connections::ConnectionView;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSource {
    /// An active connection of the account.
    #[schema(value_type = String, format = Uuid)]
    pub connection_id: String,
    pub name: String,
    /// A subset of the platform's data types; default all of them.
    pub data_types: Option<Vec<String>>,
    /// `{frequency: manual|hourly|daily|weekly|monthly, time?: "HH:MM", dayOfWeek?, dayOfMonth?, timezone?}`
    /// or `{cron, timezone?}`; default daily at 02:00 UTC.
    #[serde(default, deserialize_with = "crate::extract::object")]
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<ScheduleSpec>,
    /// 1 to 3650, default 90.
    pub retention_days: Option<i64>,
    /// Retention keeps at most this many newest backups (1 to 1000); default none: no limit by count.
    pub keep_last: Option<i64>,
    /// Default true.
    pub incremental: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSource {
    pub name: Option<String>,
    pub data_types: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::extract::object")]
    #[schema(value_type = Option<Object>)]
    pub schedule: Option<ScheduleSpec>,
    pub retention_days: Option<i64>,
    /// 1 to 1000, or `null` to remove the limit by count.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable)]
    pub keep_last: Option<Option<i64>>,
    pub incremental: Option<bool>,
    /// `active` (resume) or `paused`.
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `active` or `paused`.
    pub status: Option<String>,
    pub platform_id: Option<String>,
    pub connection_id: Option<String>,
    pub group_id: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceList {
    pub sources: Vec<SourceView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataTypeCheck {
    pub name: String,
    /// Whether the first page could be fetched; `null` when the data type has no connector yet.
    pub ok: Option<bool>,
    /// Records on the first page; `null` when the data type was not sampled.
    pub sample_count: Option<u64>,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceTestResponse {
    pub ok: bool,
    pub checked_at: chrono::DateTime<Utc>,
    pub latency_ms: u64,
    pub message: String,
    /// Why the connection test failed, as in `POST /connections/{id}/test` (`UNAUTHORIZED`: the platform said
    /// the credentials are not valid). Absent when it passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "UNAUTHORIZED")]
    pub code: Option<&'static str>,
    pub data_types: Vec<DataTypeCheck>,
}

fn schedule(spec: &ScheduleSpec, errors: &mut Vec<FieldError>) -> Option<Schedule> {
    Schedule::parse(spec)
        .map_err(|p| errors.push(FieldError::new(format!("schedule.{}", p.field), p.message)))
        .ok()
}

fn retention(days: i64, errors: &mut Vec<FieldError>) -> Option<RetentionDays> {
    RetentionDays::parse(days)
        .map_err(|m| errors.push(FieldError::new("retentionDays", m)))
        .ok()
}

/// A field that may be sent as `null` (`Some(None)`), told apart from one not sent (`None`, by `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

fn keep_last(count: i64, errors: &mut Vec<FieldError>) -> Option<KeepLast> {
    KeepLast::parse(count)
        .map_err(|m| errors.push(FieldError::new("keepLast", m)))
        .ok()
}

fn name(raw: &str, errors: &mut Vec<FieldError>) -> Option<DisplayName> {
    DisplayName::parse(raw)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok()
}

fn parse_create(body: CreateSource) -> Result<NewSource, ApiError> {
    let mut errors = Vec::new();
    let connection_id = body
        .connection_id
        .parse::<ConnectionId>()
        .map_err(|_| errors.push(FieldError::new("connectionId", "is not a connection id")))
        .ok();
    let name = name(&body.name, &mut errors);
    let schedule = match &body.schedule {
        None => Some(Schedule::default()),
        Some(spec) => schedule(spec, &mut errors),
    };
    let retention_days = match body.retention_days {
        None => Some(RetentionDays::DEFAULT),
        Some(days) => retention(days, &mut errors),
    };
    let keep_last = match body.keep_last {
        None => Some(None),
        Some(count) => keep_last(count, &mut errors).map(Some),
    };
    match (connection_id, name, schedule, retention_days, keep_last) {
        (
            Some(connection_id),
            Some(name),
            Some(schedule),
            Some(retention_days),
            Some(keep_last),
        ) if errors.is_empty() => Ok(NewSource {
            connection_id,
            name,
            data_types: body.data_types,
            schedule,
            retention_days,
            incremental: body.incremental.unwrap_or(true),
            keep_last,
        }),
        _ => Err(ApiError::validation(errors)),
    }
}

fn parse_update(body: UpdateSource) -> Result<SourceChanges, ApiError> {
    if body.name.is_none()
        && body.data_types.is_none()
        && body.schedule.is_none()
        && body.retention_days.is_none()
        && body.keep_last.is_none()
        && body.incremental.is_none()
        && body.status.is_none()
    {
        return Err(ApiError::bad_request(
            "send at least one of `name`, `dataTypes`, `schedule`, `retentionDays`, `keepLast`, `incremental`, `status`",
        ));
    }
    let mut errors = Vec::new();
    let changes = SourceChanges {
        name: body.name.as_deref().and_then(|n| name(n, &mut errors)),
        data_types: body.data_types,
        schedule: body
            .schedule
            .as_ref()
            .and_then(|s| schedule(s, &mut errors)),
        retention_days: body.retention_days.and_then(|d| retention(d, &mut errors)),
        incremental: body.incremental,
        keep_last: match body.keep_last {
            None => None,
            Some(None) => Some(None),
            Some(Some(count)) => keep_last(count, &mut errors).map(Some),
        },
        status: match body.status.as_deref() {
            None => None,
            Some("active") => Some(WantedStatus::Active),
            Some("paused") => Some(WantedStatus::Paused),
            Some(_) => {
                errors.push(FieldError::new("status", "must be `active` or `paused`"));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(ApiError::validation(errors))
    }
}

pub(crate) use crate::extract::page_request;

/// A list's id filter (`?connectionId=`, `?groupId=`, `?sourceId=`) as its typed id; text that is not an id
/// is a validation error on `field`.
pub(crate) fn id_filter<I: std::str::FromStr>(
    raw: Option<String>,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<I> {
    raw.and_then(|r| match r.parse() {
        Ok(id) => Some(id),
        Err(_) => {
            errors.push(FieldError::new(field, "is not an id"));
            None
        }
    })
}

/// Defines a source on an active connection of the account.
#[utoipa::path(tag = "sources", security(("bearer" = [])), request_body = CreateSource,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response")),
    responses((status = 201, body = SourceView), (status = 400, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 409, body = crate::error::Problem)))]
#[post("/sources")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateSource>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let new = parse_create(body)?;
    idempotency::create_once(
        &state.db,
        &req,
        &principal.account_id,
        "/sources",
        || async {
            let source_id = SourceId::new();
            let committed = state
                .sources
                .create(&metadata(&req, &principal), &source_id, new)
                .await?;
            let view = read_back::<SourceView>(
                &state,
                &principal.account_id,
                source_id,
                committed.version,
            )
            .await?
            .ok_or_else(|| ApiError::from_unexpected("a created source is missing"))?;
            Created::new(source_id, view.version, &view)
        },
    )
    .await
}

/// The account's sources, newest first.
#[utoipa::path(tag = "sources", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = SourceList), (status = 400, body = crate::error::Problem)))]
#[get("/sources")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let mut errors = Vec::new();
    if let Some(p) = &params.platform_id {
        if platform::find(p).is_none() {
            errors.push(FieldError::new("platformId", "is not a known platform"));
        }
    }
    if let Some(s) = &params.status {
        if !["active", "paused"].contains(&s.as_str()) {
            errors.push(FieldError::new("status", "must be `active` or `paused`"));
        }
    }
    let connection_id = id_filter(params.connection_id, "connectionId", &mut errors);
    let group_id = id_filter(params.group_id, "groupId", &mut errors);
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = SourceFilter {
        status: params.status,
        platform_id: params.platform_id,
        connection_id,
        group_id,
    };
    let client = state.db.get().await?;
    let page = read::list(&client, &principal.account_id, &filter, &page, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(SourceList {
        sources: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One source.
#[utoipa::path(tag = "sources", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), crate::routes::audit::GetParams),
    responses((status = 200, body = SourceView, headers(("ETag" = String))),
              (status = 404, body = crate::error::Problem)))]
#[get("/sources/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<SourceId>,
    QueryParams(params): QueryParams<crate::routes::audit::GetParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let as_of = params.as_of(&principal)?;
    let id = path.get()?;
    if let Some(point) = as_of {
        return crate::routes::audit::resource_as_of(
            &state,
            &principal,
            crate::routes::audit::Resource::Source(id),
            point,
        )
        .await;
    }
    let client = state.db.get().await?;
    let view = read::get(&client, &principal.account_id, id, Utc::now())
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Source))?;
    Ok(with_etag(&view, view.version))
}

/// Changes settings, pauses (`status: paused`) or resumes (`status: active`). `If-Match` makes it conditional.
#[utoipa::path(tag = "sources", security(("bearer" = [])), request_body = UpdateSource,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = SourceView), (status = 404, body = crate::error::Problem),
              (status = 412, body = crate::error::Problem)))]
#[put("/sources/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<UpdateSource>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let changes = parse_update(body)?;
    let committed = state
        .sources
        .update(&metadata(&req, &principal), &id, expected, changes)
        .await?;
    let view = read_back::<SourceView>(&state, &principal.account_id, id, committed.version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Source))?;
    Ok(with_etag(&view, view.version))
}

/// Soft delete: gone from lists and gets, kept in the history; its groups let go of it.
#[utoipa::path(tag = "sources", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 412, body = crate::error::Problem)))]
#[delete("/sources/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let committed = state
        .sources
        .delete(&metadata(&req, &principal), &id, expected)
        .await?;
    wait_for::<SourceView>(&state, id, committed.version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Tests the source: its connection's test endpoint with the stored credentials (recorded on the connection
/// as ConnectionTested), then one page of each selected data type, counted and not stored. A data type with
/// no connector yet reports `ok: null`.
#[utoipa::path(tag = "sources", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = SourceTestResponse), (status = 404, body = crate::error::Problem)))]
#[post("/sources/{id}/test")]
pub async fn test(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    // This reaches the platform: charged to the account's platform-call budget.
    crate::rate_limit::platform_call(&req, &principal)?;
    let id = path.get()?;
    let meta = metadata(&req, &principal);
    let outcome = listbackup_commands::source_test::test_source(
        &state.sources,
        &state.connections,
        &state.oauth,
        &meta,
        &id,
    )
    .await?;
    // Read-your-writes: the connection's next GET shows this test.
    let connection_id = &outcome.connection_id;
    wait_for::<ConnectionView>(&state, *connection_id, outcome.connection.committed.version)
        .await?;
    let data_types = outcome
        .data_types
        .into_iter()
        .map(|s| DataTypeCheck {
            name: s.data_type,
            ok: s.ok,
            sample_count: s.sample_count,
            message: s.message,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SourceTestResponse {
        ok: outcome.ok,
        checked_at: outcome.connection.checked_at,
        latency_ms: outcome.connection.latency_ms,
        message: outcome.connection.message,
        code: outcome.connection.code,
        data_types,
    }))
}
