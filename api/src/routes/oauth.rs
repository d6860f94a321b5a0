//! OAuth connections: `POST /connections/oauth/start`, the callback the platforms redirect to, and
//! `POST /connections/{id}/reconnect`.
//!
//! The callback is not behind bearer authentication: the single-use `state` (bound at start to the account,
//! the user, the platform and the return URL) is what authenticates it. Neither the code nor the state is ever
//! logged (the request log records paths only).

use actix_web::http::{header, StatusCode};
use actix_web::{get, post, web, HttpMessage, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use listbackup_commands::oauth::{CallbackParams, Connected, OauthError, StartRequest};
use listbackup_projections::read_models::connections::ConnectionView;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::consistency::read_back;
use crate::error::{ApiError, ErrorCode};
use crate::extract::{
    content_coding, declares_json, etag, parse_json, JsonBody, NoParams, Object, PathId,
    QueryParams,
};
use crate::request_id::RequestId;
use crate::state::AppState;
use listbackup_domain::ConnectionId;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StartOauth {
    /// A platform whose `authTypes` include `oauth2`.
    pub platform_id: String,
    /// Defaults to the platform's name and the authorized account's.
    pub name: Option<String>,
    /// Where the browser goes after the callback (`?connectionId=…` or `?error=…` appended); must be on an
    /// allowed origin.
    pub return_url: Option<String>,
    /// Shopify only: `<name>.myshopify.com`.
    pub shop: Option<String>,
    /// Zendesk only: the subdomain of `<subdomain>.zendesk.com` (each Zendesk account is its own OAuth
    /// authorization server).
    pub subdomain: Option<String>,
    /// The data types the customer means to back up: the authorization asks only for the scopes they need
    /// (see each data type's `oauthScopes` in `GET /platforms/{platformId}`). Omitted: every data type's.
    pub data_types: Option<Vec<String>>,
    /// Ask for write access as well: the `writeScopes` of these data types (of every writable one when
    /// `dataTypes` is omitted), which a restore through the connection needs. Default false: read only.
    #[serde(default)]
    pub write_access: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReconnectOauth {
    pub return_url: Option<String>,
    /// Data types to add consent for: the authorization asks for the scopes already granted and theirs.
    pub data_types: Option<Vec<String>>,
    /// Ask for write access as well, as a restore needs (see `StartOauth.writeAccess`): the `writeScopes`
    /// of `dataTypes`, or of every writable data type when omitted.
    #[serde(default)]
    pub write_access: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OauthStarted {
    /// Send the customer's browser here.
    pub authorization_url: String,
    /// Single use, valid until `expiresAt`.
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

impl From<OauthError> for ApiError {
    fn from(err: OauthError) -> Self {
        match err {
            OauthError::Invalid { field, message } => ApiError::field(field, message),
            OauthError::NotConfigured(_) => ApiError::unavailable(err.to_string()),
            OauthError::UnknownState | OauthError::Denied { .. } => {
                ApiError::bad_request(err.to_string())
            }
            OauthError::TokenExchange(_) | OauthError::UserInfo(_) => {
                ApiError::new(ErrorCode::PlatformError, err.to_string())
            }
            OauthError::Command(e) => e.into(),
            err @ OauthError::Store { .. } => ApiError::from_unexpected(err),
        }
    }
}

fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

fn started(started: listbackup_commands::oauth::Started) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(OauthStarted {
            authorization_url: started.authorization_url,
            state: started.state,
            expires_at: started.expires_at,
        })
}

/// Starts connecting an OAuth platform: returns the URL to send the customer's browser to. PKCE (S256) and a
/// single-use state valid for 10 minutes.
#[utoipa::path(tag = "connections", security(("bearer" = [])), request_body = StartOauth,
    responses((status = 200, body = OauthStarted), (status = 400, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)))]
#[post("/connections/oauth/start")]
pub async fn start(
    state: web::Data<AppState>,
    principal: Principal,
    _: QueryParams<NoParams>,
    JsonBody(body): JsonBody<StartOauth>,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let request = StartRequest {
        account_id: principal.account_id.clone(),
        user_id: principal.user_id.clone(),
        platform_id: body.platform_id,
        name: body.name,
        return_url: body.return_url,
        shop: body.shop,
        subdomain: body.subdomain,
        data_types: body.data_types,
        write_access: body.write_access,
    };
    Ok(started(state.oauth.start(request).await?))
}

/// Authorizes an existing OAuth connection again (e.g. once it is `expired`); its tokens are replaced at the
/// callback.
#[utoipa::path(tag = "connections", security(("bearer" = [])), request_body = Option<ReconnectOauth>,
    params(("id" = uuid::Uuid, Path)),
    responses((status = 200, body = OauthStarted), (status = 404, body = crate::error::Problem),
              (status = 409, body = crate::error::Problem)))]
#[post("/connections/{id}/reconnect")]
pub async fn reconnect(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
    path: PathId<ConnectionId>,
    _: QueryParams<NoParams>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    principal.require_write()?;
    let id = path.get()?;
    // No body, or `null` (the document says the body is optional), is no options; a body must be declared
    // JSON (415 otherwise, as every route's body) and be an object.
    let body: ReconnectOauth = if body.iter().all(u8::is_ascii_whitespace) {
        ReconnectOauth::default()
    } else if let Some(coding) = content_coding(&req) {
        return Err(ApiError::unsupported_content_coding(&coding));
    } else if !declares_json(&req) {
        return Err(ApiError::unsupported_media_type());
    } else {
        parse_json::<Option<Object<ReconnectOauth>>>(&body)?
            .map(|Object(options)| options)
            .unwrap_or_default()
    };
    let result = state
        .oauth
        .reconnect(
            &principal.account_id,
            &principal.user_id,
            &id,
            body.return_url,
            body.data_types,
            body.write_access,
        )
        .await?;
    Ok(started(result))
}

/// `url` with `params` appended to its query.
fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    match url::Url::parse(url) {
        Ok(mut url) => {
            url.query_pairs_mut().extend_pairs(params);
            url.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

fn see_other(location: String) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, location))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The platform's redirect after the customer's decision. Exchanges the code, creates (or reconnects) the
/// connection, then redirects to the start's `returnUrl` with `connectionId` (or `error`), or answers 201 with
/// the connection when there was no `returnUrl`.
#[utoipa::path(tag = "connections",
    params(("code" = Option<String>, Query), ("state" = String, Query), ("error" = Option<String>, Query)),
    responses((status = 201, body = ConnectionView), (status = 303, description = "to the returnUrl"),
              (status = 400, body = crate::error::Problem), (status = 502, body = crate::error::Problem)))]
#[get("/connections/oauth/callback")]
pub async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    // Platforms add parameters of their own (scope, hmac, host, realmId…): they are not refused here.
    let mut params = CallbackParams::default();
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "state" => params.state = Some(value),
            "code" => params.code = Some(value),
            "error" => params.error = Some(value),
            other => {
                params.extra.insert(other.to_owned(), value);
            }
        }
    }
    let connected: Connected = match state.oauth.callback(params, &request_id(&req)).await {
        Ok(connected) => connected,
        Err(failure) => {
            tracing::info!(reason = failure.error.slug(), "OAuth callback refused");
            return match failure.return_url {
                Some(url) => Ok(see_other(with_query(
                    &url,
                    &[
                        ("error", failure.error.slug().as_str()),
                        ("error_description", failure.error.to_string().as_str()),
                    ],
                ))),
                None => Err(failure.error.into()),
            };
        }
    };
    // Read-your-writes holds for the redirect too: the page at the return URL reads the connection next.
    let view: ConnectionView = read_back(
        &state,
        &connected.account_id,
        connected.connection_id,
        connected.version,
    )
    .await?
    .ok_or_else(|| ApiError::from_unexpected("an authorized connection is missing"))?;
    if let Some(url) = &connected.return_url {
        return Ok(see_other(with_query(
            url,
            &[("connectionId", connected.connection_id.to_string().as_str())],
        )));
    }
    let status = if connected.reconnected {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status)
        .insert_header((header::ETAG, etag(view.version)))
        .insert_header((
            header::LOCATION,
            format!("/connections/{}", view.connection_id),
        ))
        .json(view))
}
