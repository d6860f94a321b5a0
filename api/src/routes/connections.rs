//! `/connections`: API-key connections (OAuth ones arrive with issue 3).

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use listbackup_commands::connection_deletion;
use listbackup_commands::connections::NewApiKeyConnection;
use listbackup_domain::platform::{self, AuthType, Credentials, PlatformId};
use listbackup_domain::values::DisplayName;
use listbackup_domain::ErrorChain;
use listbackup_projections::read_models::connections::{
    self as read, ConnectionFilter, ConnectionView,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::consistency::read_back;
use crate::error::{ApiError, FieldError};
use crate::extract::{
    if_match, page_request, with_etag, JsonBody, NoBody, NoParams, PathId, QueryParams,
};
use crate::idempotency::{self, Created};
use crate::ports::ReadModels;
use crate::routes::metadata;
use crate::state::AppState;
use listbackup_domain::ConnectionId;
use listbackup_domain::ResourceKind;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateConnection {
    /// A platform that supports `api_key` (see `GET /platforms`).
    pub platform_id: String,
    pub name: String,
    /// The platform's `credentialFields`, by name.
    #[schema(value_type = Object)]
    pub credentials: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateConnection {
    pub name: Option<String>,
    /// Replaces every credential field (send the whole set).
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    pub platform_id: Option<String>,
    /// `active` or `expired`.
    pub status: Option<String>,
    /// 1 to 200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Also delete the sources that use the connection.
    pub cascade: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionList {
    pub connections: Vec<ConnectionView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTestResponse {
    pub ok: bool,
    pub checked_at: chrono::DateTime<chrono::Utc>,
    pub latency_ms: u64,
    pub message: String,
    /// Why the test failed, an error code of DESIGN §4: `UNAUTHORIZED` when the platform said the credentials
    /// are not valid (each platform's own answer for it, e.g. ActiveCampaign's 403), `FORBIDDEN`,
    /// `RATE_LIMITED`, `PLATFORM_ERROR`, `UNAVAILABLE` or `VALIDATION_ERROR`. Absent when the test passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "UNAUTHORIZED")]
    pub code: Option<&'static str>,
}

fn credential_errors(problems: Vec<platform::CredentialProblem>) -> Vec<FieldError> {
    problems
        .into_iter()
        .map(|p| FieldError::new(format!("credentials.{}", p.field), p.message))
        .collect()
}

fn parse_create(body: CreateConnection) -> Result<NewApiKeyConnection, ApiError> {
    let mut errors = Vec::new();
    let name = DisplayName::parse(&body.name)
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok();
    let platform = match PlatformId::parse(&body.platform_id) {
        None => {
            errors.push(FieldError::new(
                "platformId",
                "is not a known platform (see GET /platforms)",
            ));
            None
        }
        Some(id) if !id.platform().supports(AuthType::ApiKey) => {
            errors.push(FieldError::new(
                "platformId",
                "connects through OAuth only: use POST /connections/oauth/start",
            ));
            None
        }
        Some(id) => Some(id),
    };
    let credentials = platform.and_then(|id| {
        id.platform()
            .parse_credentials(&body.credentials)
            .map_err(|p| errors.extend(credential_errors(p)))
            .ok()
    });
    match (platform, name, credentials) {
        (Some(platform), Some(name), Some(credentials)) if errors.is_empty() => {
            Ok(NewApiKeyConnection {
                platform,
                name,
                credentials,
            })
        }
        _ => Err(ApiError::validation(errors)),
    }
}

/// Connects an API-key platform. The credentials are sealed in the vault; events and responses only ever
/// carry a fingerprint.
#[utoipa::path(tag = "connections", security(("bearer" = [])), request_body = CreateConnection,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response")),
    responses((status = 201, body = ConnectionView), (status = 400, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
#[post("/connections")]
pub async fn create(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<CreateConnection>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let new = parse_create(body)?;
    idempotency::create_once(
        &state.db,
        &req,
        &principal.account_id,
        "/connections",
        || async {
            let connection_id = ConnectionId::new();
            let committed = state
                .connections
                .create_api_key(&metadata(&req, &principal), &connection_id, new)
                .await?;
            let view = read_back::<ConnectionView>(
                &state,
                &principal.account_id,
                connection_id,
                committed.version,
            )
            .await?
            .ok_or_else(|| ApiError::from_unexpected("a created connection is missing"))?;
            Created::new(connection_id, view.version, &view)
        },
    )
    .await
}

/// The account's connections, newest first. Secrets are never shown.
#[utoipa::path(tag = "connections", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = ConnectionList), (status = 400, body = crate::error::Problem)))]
#[get("/connections")]
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
        if !["active", "expired"].contains(&s.as_str()) {
            errors.push(FieldError::new("status", "must be `active` or `expired`"));
        }
    }
    let page = page_request(params.limit, params.cursor.as_deref(), &mut errors);
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = ConnectionFilter {
        platform_id: params.platform_id,
        status: params.status,
    };
    let client = state.db.get().await?;
    let page = read::list(&client, &principal.account_id, &filter, &page).await?;
    Ok(HttpResponse::Ok().json(ConnectionList {
        connections: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// One connection.
#[utoipa::path(tag = "connections", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), crate::routes::audit::GetParams),
    responses((status = 200, body = ConnectionView, headers(("ETag" = String))),
              (status = 404, body = crate::error::Problem)))]
#[get("/connections/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    principal: Principal,
    path: PathId<ConnectionId>,
    QueryParams(params): QueryParams<crate::routes::audit::GetParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let as_of = params.as_of(&principal)?;
    let id = path.get()?;
    if let Some(point) = as_of {
        return crate::routes::audit::resource_as_of(
            &state,
            &principal,
            crate::routes::audit::Resource::Connection(id),
            point,
        )
        .await;
    }
    let client = state.db.get().await?;
    let view = read::get(&client, &principal.account_id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Connection))?;
    Ok(with_etag(&view, view.version))
}

/// Renames the connection and/or replaces its credentials. `If-Match` makes it conditional.
#[utoipa::path(tag = "connections", security(("bearer" = [])), request_body = UpdateConnection,
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = ConnectionView), (status = 412, body = crate::error::Problem)))]
#[put("/connections/{id}")]
pub async fn update(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<ConnectionId>,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<UpdateConnection>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    if body.name.is_none() && body.credentials.is_none() {
        return Err(ApiError::bad_request("send `name`, `credentials`, or both"));
    }
    let mut errors = Vec::new();
    let name = body
        .name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()
        .map_err(|m| errors.push(FieldError::new("name", m)))
        .ok()
        .flatten();
    let credentials: Option<Credentials> = match &body.credentials {
        None => None,
        Some(submitted) => {
            // The platform is needed to check the fields: look it up in what this account can see.
            let client = state.db.get().await?;
            let current = read::get(&client, &principal.account_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found(ResourceKind::Connection))?;
            let platform = platform::find(&current.platform_id)
                .ok_or_else(|| ApiError::from_unexpected("connection with unknown platform"))?;
            platform
                .parse_credentials(submitted)
                .map_err(|p| errors.extend(credential_errors(p)))
                .ok()
        }
    };
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let committed = state
        .connections
        .update(
            &metadata(&req, &principal),
            &id,
            expected,
            name,
            credentials,
        )
        .await?;
    let view = read_back::<ConnectionView>(&state, &principal.account_id, id, committed.version)
        .await?
        .ok_or_else(|| ApiError::not_found(ResourceKind::Connection))?;
    Ok(with_etag(&view, view.version))
}

/// Deletes the connection and destroys its stored secret.
#[utoipa::path(tag = "connections", security(("bearer" = [])),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header), DeleteParams),
    responses((status = 204), (status = 404, body = crate::error::Problem), (status = 412, body = crate::error::Problem)))]
#[delete("/connections/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<ConnectionId>,
    QueryParams(params): QueryParams<DeleteParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    let expected = if_match(&req)?;
    // Issue 4: 409 while live sources use the connection; `?cascade=true` deletes them first.
    let committed = connection_deletion::delete_connection(
        &state.connections,
        &state.sources,
        &ReadModels(&state.db),
        &metadata(&req, &principal),
        &id,
        expected,
        params.cascade.unwrap_or(false),
    )
    .await?;
    read_back::<ConnectionView>(&state, &principal.account_id, id, committed.version).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Calls the platform's test endpoint with the stored credentials; the outcome is recorded as ConnectionTested.
#[utoipa::path(tag = "connections", security(("bearer" = [])), params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = ConnectionTestResponse), (status = 404, body = crate::error::Problem)))]
#[post("/connections/{id}/test")]
pub async fn test(
    state: web::Data<AppState>,
    _no_body: NoBody,
    req: HttpRequest,
    principal: Principal,
    path: PathId<ConnectionId>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    // This reaches the platform: charged to the account's platform-call budget.
    crate::rate_limit::platform_call(&req, &principal)?;
    let id = path.get()?;
    // OAuth: an access token about to expire is refreshed before use (a no-op for API-key connections).
    if let Err(err) = state
        .oauth
        .ensure_fresh(
            &metadata(&req, &principal),
            &id,
            listbackup_commands::oauth::USE_WINDOW,
        )
        .await
    {
        tracing::warn!(connection_id = %id, error = %ErrorChain(&err), "token refresh before the test failed");
    }
    let outcome = state
        .connections
        .test(&metadata(&req, &principal), &id)
        .await?;
    read_back::<ConnectionView>(&state, &principal.account_id, id, outcome.committed.version)
        .await?;
    Ok(HttpResponse::Ok().json(ConnectionTestResponse {
        ok: outcome.ok,
        checked_at: outcome.checked_at,
        latency_ms: outcome.latency_ms,
        message: outcome.message,
        code: outcome.code,
    }))
}
