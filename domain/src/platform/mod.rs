//! The platform catalog: which SaaS platforms ListBackup can back up, how a customer authenticates to each,
//! and which data types each offers. Pure data; the HTTP edges read it to validate input and to call platforms.

mod catalog;
mod credentials;

pub use catalog::CATALOG;
pub use credentials::{CredentialProblem, Credentials};

use serde::Serialize;

/// How a customer connects a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    Oauth2,
    ApiKey,
}

/// The JSON type a credential field takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialFieldType {
    String,
    Url,
    Email,
}

/// One field the customer fills in to connect an API-key platform.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialField {
    pub name: &'static str,
    pub label: &'static str,
    #[serde(rename = "type")]
    pub field_type: CredentialFieldType,
    pub required: bool,
    /// Secret fields are encrypted in the vault and never shown again.
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DataType {
    pub name: &'static str,
    pub description: &'static str,
}

/// How an API request proves who it is, built from the stored credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuth {
    /// `Authorization: Bearer <field>`
    Bearer { token_field: &'static str },
    /// A custom header carrying a credential field, e.g. `X-Keap-API-Key`.
    Header {
        header: &'static str,
        token_field: &'static str,
    },
    /// HTTP Basic with a fixed or credential-derived user and password.
    Basic {
        user: BasicPart,
        password: BasicPart,
    },
}

/// One side of an HTTP Basic pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicPart {
    Literal(&'static str),
    Field(&'static str),
    /// A credential field followed by a literal suffix, e.g. Zendesk's `<email>/token`.
    FieldWithSuffix(&'static str, &'static str),
}

/// The HTTP method of a platform call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    /// Dropbox's RPC endpoints (e.g. `users/get_current_account`) only answer POST.
    Post,
}

/// The platform's "who am I" endpoint, used by `POST /connections/{id}/test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestEndpoint {
    pub method: HttpMethod,
    /// Path appended to the API base URL, e.g. `/account`. May hold the same `{placeholders}` as the base URL.
    pub path: &'static str,
}

/// OAuth2 endpoints of a platform (issue 3 wires the flow).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OauthEndpoints {
    /// May contain `{shop}` (Shopify: each store is its own authorization server).
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    /// How API calls carry the OAuth access token, stored as the credential `accessToken`
    /// (Bearer everywhere except Shopify, which wants `X-Shopify-Access-Token`).
    pub api_auth: ApiAuth,
}

/// The credential name under which an OAuth connection keeps its access token.
pub const OAUTH_ACCESS_TOKEN: &str = "accessToken";

/// A `{placeholder}` of the API URLs that is not itself a credential field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlParam {
    /// The text after the last `-` of a credential field: Mailchimp's data centre `us21` in `<key>-us21`.
    SuffixOf {
        name: &'static str,
        field: &'static str,
    },
    /// A value the OAuth flow hands over with the tokens and the connection keeps next to them
    /// (QuickBooks sends `realmId`, the company id, to the redirect URL).
    FromOauth { name: &'static str },
}

impl UrlParam {
    pub fn name(&self) -> &'static str {
        match self {
            UrlParam::SuffixOf { name, .. } | UrlParam::FromOauth { name } => name,
        }
    }
}

/// The `{placeholder}` names in a URL template, in order.
pub fn url_placeholders(template: &str) -> impl Iterator<Item = &str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
}

/// A platform the service can connect to.
#[derive(Debug, Clone)]
pub struct Platform {
    /// Lower-case stable id used in URLs and events, e.g. `stripe`.
    pub id: &'static str,
    pub name: &'static str,
    /// e.g. `crm`, `payments`, `ecommerce`, `accounting`, `file_storage`, `marketing`, `support`.
    pub category: &'static str,
    pub auth_types: &'static [AuthType],
    /// Fields of an API-key connection; empty for OAuth-only platforms.
    pub credential_fields: &'static [CredentialField],
    pub data_types: &'static [DataType],
    pub oauth_scopes: &'static [&'static str],
    /// Base URL of the REST API. May contain `{field}` placeholders filled from non-secret or secret
    /// credential fields (Mailchimp's data centre, Zendesk's subdomain, ActiveCampaign's account URL,
    /// Shopify's shop). `LISTBACKUP_PLATFORM_<ID>_API_URL` replaces it whole.
    pub api_base_url: &'static str,
    /// How API-key requests authenticate; `None` for OAuth-only platforms (they use the access token as Bearer).
    pub api_key_auth: Option<ApiAuth>,
    /// Fixed headers every API call carries, e.g. GoHighLevel's mandatory `Version`.
    pub api_headers: &'static [(&'static str, &'static str)],
    /// URL placeholders that are not credential fields.
    pub url_params: &'static [UrlParam],
    pub test_endpoint: TestEndpoint,
    pub oauth: Option<OauthEndpoints>,
}

impl Platform {
    pub fn supports(&self, auth: AuthType) -> bool {
        self.auth_types.contains(&auth)
    }

    pub fn credential_field(&self, name: &str) -> Option<&CredentialField> {
        self.credential_fields.iter().find(|f| f.name == name)
    }

    pub fn data_type(&self, name: &str) -> Option<&DataType> {
        self.data_types.iter().find(|d| d.name == name)
    }

    pub fn url_param(&self, name: &str) -> Option<&UrlParam> {
        self.url_params.iter().find(|p| p.name() == name)
    }
}

/// A validated platform id: one that names a platform in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlatformId(&'static str);

impl PlatformId {
    pub fn parse(raw: &str) -> Option<Self> {
        find(raw).map(|p| Self(p.id))
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    pub fn platform(&self) -> &'static Platform {
        find(self.0).expect("a PlatformId always names a catalog platform")
    }
}

/// Looks a platform up by id.
pub fn find(id: &str) -> Option<&'static Platform> {
    CATALOG.iter().find(|p| p.id == id)
}
