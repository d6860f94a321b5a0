//! `GET /platforms`: the catalog, as clients need it to build a connect form. No client secret is in it.

use actix_web::{get, web, HttpResponse};
use listbackup_domain::platform::{self, AuthType, CredentialFieldType, Platform};
use serde::Serialize;
use utoipa::ToSchema;

use listbackup_commands::platform_client::DemoPlatforms;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{NoParams, QueryParams};
use crate::state::AppState;
use listbackup_domain::ResourceKind;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformView {
    pub platform_id: &'static str,
    pub name: &'static str,
    pub category: &'static str,
    /// `oauth2` and/or `api_key`.
    pub auth_types: Vec<&'static str>,
    pub credential_fields: Vec<CredentialFieldView>,
    pub data_types: Vec<DataTypeView>,
    pub oauth_scopes: Vec<&'static str>,
    /// The field `POST /connections/oauth/start` needs for this platform, whose every account is its own
    /// OAuth authorization server: `shop` (Shopify), `subdomain` (Zendesk). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oauth_account_field: Option<&'static str>,
    /// Whether ListBackup can back up any of its data types.
    pub can_back_up: bool,
    /// Set while the service runs in demo mode (`LISTBACKUP_DEMO=true`) and emulates this platform: a
    /// connection created with exactly these credentials is a demo connection, served by the emulation on
    /// the service's machine; any other credentials make a real connection. Null otherwise.
    pub demo: Option<DemoView>,
}

/// How to connect to a platform's demo.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemoView {
    /// The credentials of a demo connection (`POST /connections` with `credentials` set to these).
    pub credentials: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialFieldView {
    pub name: &'static str,
    pub label: &'static str,
    /// `string`, `url` or `email`.
    #[serde(rename = "type")]
    pub field_type: &'static str,
    pub required: bool,
    /// Secret fields are stored encrypted and never shown again.
    pub secret: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataTypeView {
    pub name: &'static str,
    pub description: &'static str,
    /// Whether ListBackup can back it up; a source cannot select one it cannot (400).
    pub can_back_up: bool,
    /// Whether an incremental source fetches only what changed since its last backup (otherwise everything,
    /// every time).
    pub incremental: bool,
    /// OAuth scopes it needs beyond the platform's `oauthScopes`.
    pub oauth_scopes: Vec<&'static str>,
    /// Whether a restore (`POST /sources/{id}/restores`) can write its records back to the platform; a
    /// restore naming one that is not is refused (422).
    pub writable: bool,
    /// OAuth scopes a restore's writes need beyond those of backing it up (empty when not writable, or when
    /// the platform's scopes already cover writes). A restore through an OAuth connection not granted them is
    /// refused (422); `writeAccess: true` on `POST /connections/oauth/start` or
    /// `/connections/{id}/reconnect` asks for them.
    pub write_scopes: Vec<&'static str>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformList {
    pub platforms: Vec<PlatformView>,
    /// Whether the service runs in demo mode (each emulated platform's `demo` holds its credentials).
    pub demo: bool,
    /// Always null: the catalog fits in one page.
    pub next_cursor: Option<String>,
}

impl From<&'static Platform> for PlatformView {
    fn from(p: &'static Platform) -> Self {
        Self {
            platform_id: p.id,
            name: p.name,
            category: p.category,
            auth_types: p
                .auth_types
                .iter()
                .map(|a| match a {
                    AuthType::Oauth2 => "oauth2",
                    AuthType::ApiKey => "api_key",
                })
                .collect(),
            credential_fields: p
                .credential_fields
                .iter()
                .map(|f| CredentialFieldView {
                    name: f.name,
                    label: f.label,
                    field_type: match f.field_type {
                        CredentialFieldType::String => "string",
                        CredentialFieldType::Url => "url",
                        CredentialFieldType::Email => "email",
                    },
                    required: f.required,
                    secret: f.secret,
                })
                .collect(),
            data_types: p
                .data_types
                .iter()
                .map(|d| DataTypeView {
                    name: d.name,
                    description: d.description,
                    can_back_up: d.can_back_up(),
                    incremental: d.listing.is_some_and(|l| l.incremental.is_some()),
                    oauth_scopes: d.scopes.to_vec(),
                    writable: d.is_writable(),
                    write_scopes: d.write_scopes().to_vec(),
                })
                .collect(),
            oauth_scopes: p.oauth_scopes.to_vec(),
            oauth_account_field: p.oauth.and_then(|o| o.account_host).map(|h| h.field),
            can_back_up: p.data_types.iter().any(|d| d.can_back_up()),
            demo: None,
        }
    }
}

impl PlatformView {
    /// The platform as the catalog shows it, with its demo credentials when demo mode emulates it.
    fn with_demo(p: &'static Platform, demo: Option<&DemoPlatforms>) -> Self {
        let demo = demo
            .filter(|demo| demo.serves(p.id))
            .and_then(|_| p.demo_credentials())
            .map(|credentials| DemoView { credentials });
        Self {
            demo,
            ..Self::from(p)
        }
    }
}

/// Every platform ListBackup can back up.
#[utoipa::path(tag = "platforms", security(("bearer" = [])),
    responses((status = 200, body = PlatformList), (status = 401, body = crate::error::Problem)))]
#[get("/platforms")]
pub async fn list(
    principal: Principal,
    state: web::Data<AppState>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let demo = state.demo.as_ref();
    let platforms = platform::CATALOG
        .iter()
        .map(|p| PlatformView::with_demo(p, demo))
        .collect();
    Ok(HttpResponse::Ok().json(PlatformList {
        platforms,
        demo: demo.is_some(),
        next_cursor: None,
    }))
}

/// One platform of the catalog.
#[utoipa::path(tag = "platforms", security(("bearer" = [])),
    params(("platformId" = String, Path, description = "e.g. `stripe`")),
    responses((status = 200, body = PlatformView), (status = 404, body = crate::error::Problem)))]
#[get("/platforms/{platformId}")]
pub async fn get(
    principal: Principal,
    path: web::Path<String>,
    state: web::Data<AppState>,
    _: QueryParams<NoParams>,
) -> Result<HttpResponse, ApiError> {
    principal.require_read()?;
    let platform = platform::find(&path.into_inner())
        .ok_or_else(|| ApiError::not_found(ResourceKind::Platform))?;
    Ok(HttpResponse::Ok().json(PlatformView::with_demo(platform, state.demo.as_ref())))
}
