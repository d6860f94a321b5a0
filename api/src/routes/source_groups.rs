//! `/source-groups`: named sets of sources, and their membership.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use listbackup_domain::source_group::Description;
use listbackup_domain::values::DisplayName;
use listbackup_projections::read_models::source_groups::{self as read, SourceGroupView};
use listbackup_projections::read_models::sources::{self as read_sources, SourceFilter};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::consistency::{read_back, wait_for};
use crate::error::{ApiError, FieldError};
use crate::extract::{if_match, resource_id, with_etag, JsonBody, NoParams, PathId, QueryParams};
use crate::idempotency::{self, Created};
use crate::routes::metadata;
use crate::routes::sources::{page_request, SourceList};
use crate::state::AppState;
use listbackup_domain::ResourceKind;
use listbackup_domain::{SourceGroupId, SourceId};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSourceGroup {
    pub name: String,
    pub description: Option<String>,
}

/// `null` for a field that was sent as `null`, as opposed to left out.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateSourceGroup {
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddMember {
    #[schema(value_type = String, format = Uuid)]
    pub source_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourceGroupList {
    pub source_groups: Vec<SourceGroupView>,
    pub next_cursor: Option<String>,
}

fn description(raw: &str, errors: &mut Vec<FieldError>) -> Option<Description> {
    Description::parse(raw)
        .map_err(|m| errors.push(FieldError::new("description", m)))
        .ok()
}

fn name(raw: &str, errors: &mut Vec<FieldError>) -> Option<DisplayName> {
    DisplayName::parse(raw)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok()
}

/// Creates a group.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), request_body = CreateSourceGroup,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response")),
    responses((status = 201, body = SourceGroupView), (status = 400, body = crate::error::Problem)))]
#[post("/source-groups")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateSourceGroup>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let mut errors = Vec::new();
    let name = name(&body.name, &mut errors);
    let description = body
        .description
        .as_deref()
        .and_then(|d| description(d, &mut errors));
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(ApiError::validation(errors));
    };
    idempotency::create_once(
        &state.db,
        &req,
        &principal.account_id,
        "/source-groups",
        || async {
            let group_id = SourceGroupId::new();
            let committed = state
                .source_groups
                .create(&metadata(&req, &principal), &group_id, name, description)
                .await?;
            let view = read_back::<SourceGroupView>(
                &state,
                &principal.account_id,
                group_id,
                committed.version,
            )
            .await?
            .ok_or_else(|| ApiError::from_unexpected("a created group is missing"))?;
            Created::new(group_id, view.version, &view)
        },
    )
    .await
}

/// The account's groups, newest first, each with its `sourceCount`.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), params(PageParams),
    responses((status = 200, body = SourceGroupList), (status = 400, body = crate::error::Problem)))]
#[get("/source-groups")]
pub async fn list(
    state: web::Data<AppState>,
    principal: Principal,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let mut errors = Vec::new();
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let client = state.db.get().await?;
    let page = read::list(&client, &principal.account_id, &page).await?;
    Ok(HttpResponse::Ok().json(SourceGroupList {
        source_groups: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One group, with its `sourceIds`.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), crate::routes::audit::GetParams),
    responses((status = 200, body = SourceGroupView, headers(("ETag" = String))),
              (status = 404, body = crate::error::Problem)))]
#[get("/source-groups/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<SourceGroupId>,
    QueryParams(params): QueryParams<crate::routes::audit::GetParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let as_of = params.as_of(&principal)?;
    let id = path.get()?;
    if let Some(point) = as_of {
        return crate::routes::audit::resource_as_of(
            &state,
            &principal,
            crate::routes::audit::Resource::SourceGroup(id),
            point,
        )
        .await;
    }
    let client = state.db.get().await?;
    let view = read::get(&client, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::SourceGroup))?;
    Ok(with_etag(&view, view.version))
}

/// Renames the group and/or changes its description. `If-Match` makes it conditional.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), request_body = UpdateSourceGroup,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = SourceGroupView), (status = 404, body = crate::error::Problem),
              (status = 412, body = crate::error::Problem)))]
#[put("/source-groups/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceGroupId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<UpdateSourceGroup>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    if body.name.is_none() && body.description.is_none() {
        return Err(ApiError::bad_request("send `name`, `description`, or both"));
    }
    let mut errors = Vec::new();
    let name = body.name.as_deref().and_then(|n| name(n, &mut errors));
    let description = body
        .description
        .map(|d| d.as_deref().and_then(|d| description(d, &mut errors)));
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let committed = state
        .source_groups
        .update(
            &metadata(&req, &principal),
            &id,
            expected,
            name,
            description,
        )
        .await?;
    let view = read_back::<SourceGroupView>(&state, &principal.account_id, id, committed.version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::SourceGroup))?;
    Ok(with_etag(&view, view.version))
}

/// Deletes the group; its sources stay, only the memberships go.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 412, body = crate::error::Problem)))]
#[delete("/source-groups/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceGroupId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let committed = state
        .source_groups
        .delete(&metadata(&req, &principal), &id, expected)
        .await?;
    wait_for::<SourceGroupView>(&state, id, committed.version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Adds a source to the group (adding it again changes nothing). A deleted or unknown source is a 404.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), request_body = AddMember,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = SourceGroupView), (status = 404, body = crate::error::Problem)))]
#[post("/source-groups/{id}/sources")]
pub async fn add_source(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<SourceGroupId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<AddMember>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    let source_id = resource_id(&body.source_id, ResourceKind::Source)?;
    let committed = state
        .source_groups
        .add_source(&metadata(&req, &principal), &id, &source_id, expected)
        .await?;
    let view = read_back::<SourceGroupView>(&state, &principal.account_id, id, committed.version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::SourceGroup))?;
    Ok(with_etag(&view, view.version))
}

/// Takes a source out of the group (the source itself stays).
#[utoipa::path(tag = "source-groups", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("sourceId" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = crate::error::Problem)))]
#[delete("/source-groups/{id}/sources/{sourceId}")]
pub async fn remove_source(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: web::Path<(String, String)>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let (group, source) = path.into_inner();
    let id: SourceGroupId = resource_id(&group, ResourceKind::SourceGroup)?;
    let source_id: SourceId = resource_id(&source, ResourceKind::Source)?;
    let expected = if_match(&req)?;
    let committed = state
        .source_groups
        .remove_source(&metadata(&req, &principal), &id, &source_id, expected)
        .await?;
    wait_for::<SourceGroupView>(&state, id, committed.version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The group's live sources, newest first.
#[utoipa::path(tag = "source-groups", security(("bearer" = [])), params(("id" = uuid::Uuid, Path), PageParams),
    responses((status = 200, body = crate::routes::sources::SourceList), (status = 404, body = crate::error::Problem)))]
#[get("/source-groups/{id}/sources")]
pub async fn list_sources(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<SourceGroupId>,
    QueryParams(params): QueryParams<PageParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let id = path.get()?;
    let mut errors = Vec::new();
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let client = state.db.get().await?;
    if !read::exists(&client, &principal.account_id, id).await? {
        return Err(ApiError::not_found(ResourceKind::SourceGroup));
    }
    let filter = SourceFilter {
        group_id: Some(id),
        ..SourceFilter::default()
    };
    let page =
        read_sources::list(&client, &principal.account_id, &filter, &page, Utc::now()).await?;
    Ok(HttpResponse::Ok().json(SourceList {
        sources: page.items,
        next_cursor: page.next_cursor,
    }))
}
