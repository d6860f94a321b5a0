//! The platform catalog: which SaaS platforms ListBackup can back up, how a customer authenticates to each,
//! which data types each offers and how each is listed. Pure data plus pure functions; the HTTP edges
//! (`commands`, `workers`) read it to validate input and to call the platforms.
//!
//! **Everything about one platform lives in its module** (`stripe.rs`, `hubspot.rs`, …): its catalog entry and
//! credential fields, how requests authenticate, the one "who am I" call (used by the connection test and by
//! OAuth), its OAuth quirks, its default rate, where its error bodies hold a message, and its data types with
//! their listings ([`listing`]). [`CATALOG`] is the registry: one line per platform.

mod credentials;
mod demo;
pub mod listing;
pub mod writes;

mod activecampaign;
mod box_;
mod dropbox;
mod gohighlevel;
mod google;
mod hubspot;
mod keap;
pub(crate) mod mailchimp;
mod quickbooks;
mod shopify;
mod stripe;
mod zendesk;

#[cfg(test)]
mod tests;

pub use credentials::{CredentialProblem, Credentials};
pub use demo::DEMO_WORD;
pub use listing::{
    scalar_text, Condition, ContentHost, ContentRequest, Endpoint, ErrorMatch, FileContent,
    FolderWalk, IncrementalFetch, JsonArg, Listing, OffsetParam, PageSize, Pagination, PerParent,
    Test, TimeField, TimeFilter, TimeFormat,
};
pub use shopify::{validate_shop, API_VERSION as SHOPIFY_API_VERSION};

// Building blocks of the platform modules.
const OAUTH: &[AuthType] = &[AuthType::Oauth2];
const API_KEY: &[AuthType] = &[AuthType::ApiKey];
const BOTH: &[AuthType] = &[AuthType::Oauth2, AuthType::ApiKey];

/// A required secret field (encrypted in the vault, never shown again).
const fn secret(name: &'static str, label: &'static str) -> CredentialField {
    CredentialField {
        name,
        label,
        field_type: CredentialFieldType::String,
        required: true,
        secret: true,
        shape: FieldShape::Any,
    }
}

/// A required non-secret field (an account URL, a subdomain, a login e-mail).
const fn plain(
    name: &'static str,
    label: &'static str,
    field_type: CredentialFieldType,
) -> CredentialField {
    CredentialField {
        name,
        label,
        field_type,
        required: true,
        secret: false,
        shape: FieldShape::Any,
    }
}

/// The registry: every platform ListBackup knows, one line each. A platform's module holds all of it.
pub static CATALOG: &[Platform] = &[
    keap::PLATFORM,
    stripe::PLATFORM,
    hubspot::PLATFORM,
    shopify::PLATFORM,
    quickbooks::PLATFORM,
    google::PLATFORM,
    dropbox::PLATFORM,
    box_::PLATFORM,
    gohighlevel::PLATFORM,
    mailchimp::PLATFORM,
    activecampaign::PLATFORM,
    zendesk::PLATFORM,
];

use std::time::Duration;

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
    /// What a value must look like beyond its type, so a value that cannot work is refused when the connection
    /// is created rather than at its first use.
    #[serde(skip)]
    pub shape: FieldShape,
}

/// The shape a credential value must have, from the platform's documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldShape {
    /// Anything printable.
    Any,
    /// Starts with one of these (Stripe's secret `sk_` and restricted `rk_` keys).
    Prefixed(&'static [&'static str]),
    /// One DNS label: letters, digits and `-` (a Zendesk subdomain).
    HostLabel,
    /// `<name>.myshopify.com`.
    ShopDomain,
    /// Ends with `-<data centre>`, letters and digits (a Mailchimp API key: `…-us21`).
    DataCenterSuffix,
    /// Letters, digits, `-` and `_` (an id that goes into a URL path).
    Identifier,
    /// The account's own API origin on one of the platform's documented domains: `https://<account>.<domain>`,
    /// `<account>` one host name label (ActiveCampaign's `https://<account>.api-us1.com`). Parsed as a URL:
    /// `https` only, no user name or password, no port, no IP address, no path but `/`, no query or fragment;
    /// kept as `https://<host>`, lower-cased. The domains are a closed list, never a pattern: a customer who
    /// could name the domain could register one that resolves to a loopback or private address.
    AccountUrl(&'static [&'static str]),
}

impl CredentialField {
    /// The same field with a shape its values must have.
    pub const fn shaped(self, shape: FieldShape) -> Self {
        Self { shape, ..self }
    }
}

/// One kind of record a platform holds, and how ListBackup lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DataType {
    pub name: &'static str,
    pub description: &'static str,
    /// How it is listed; `None` while ListBackup cannot back it up (the catalog says so, and a source cannot
    /// select it).
    #[serde(skip)]
    pub listing: Option<Listing>,
    /// The OAuth scopes listing it needs, beyond the platform's base scopes (`Platform::oauth_scopes`).
    #[serde(skip)]
    pub scopes: &'static [&'static str],
    /// How a restore writes its records back; `None`: not writable (the catalog's `writable: false`).
    #[serde(skip)]
    pub writes: Option<writes::RecordWrites>,
    /// How a restore puts a file platform's files back (uploaded into a new folder); `None` for every
    /// data type whose records are not files.
    #[serde(skip)]
    pub file_writes: Option<writes::FileWrites>,
}

impl DataType {
    /// A data type listed by `listing` with the platform's base scopes.
    pub const fn new(name: &'static str, description: &'static str, listing: Listing) -> Self {
        Self {
            name,
            description,
            listing: Some(listing),
            scopes: &[],
            writes: None,
            file_writes: None,
        }
    }

    /// A data type ListBackup cannot back up yet.
    pub const fn not_listed(name: &'static str, description: &'static str) -> Self {
        Self {
            name,
            description,
            listing: None,
            scopes: &[],
            writes: None,
            file_writes: None,
        }
    }

    /// The same data type needing these OAuth scopes beyond the base ones.
    pub const fn scopes(self, scopes: &'static [&'static str]) -> Self {
        Self { scopes, ..self }
    }

    /// Whether ListBackup can back it up.
    pub fn can_back_up(&self) -> bool {
        self.listing.is_some()
    }

    /// The same data type, writable back to the platform by a restore.
    pub const fn writes(self, writes: writes::RecordWrites) -> Self {
        Self {
            writes: Some(writes),
            ..self
        }
    }

    /// The same data type, its files restorable by uploading them into a new folder.
    pub const fn file_writes(self, file_writes: writes::FileWrites) -> Self {
        Self {
            file_writes: Some(file_writes),
            ..self
        }
    }

    /// Whether a restore can write its records back.
    pub fn is_writable(&self) -> bool {
        self.writes.is_some() || self.file_writes.is_some()
    }

    /// The OAuth scopes a restore's writes need beyond a backup's ([`writes::RecordWrites::scopes`],
    /// [`writes::FileWrites::scopes`]); empty when not writable.
    pub fn write_scopes(&self) -> &'static [&'static str] {
        match (self.writes, self.file_writes) {
            (Some(writes), _) => writes.scopes,
            (None, Some(files)) => files.scopes,
            (None, None) => &[],
        }
    }
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

/// The platform's "who am I" call: what `POST /connections/{id}/test` checks the credentials with, and what
/// names the authorized account at the end of an OAuth flow. Declared once per platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub method: HttpMethod,
    /// Path appended to the API base URL, e.g. `/account`. May hold the same `{placeholders}` as the base URL.
    pub path: &'static str,
    /// JSON pointers to the account's id in the answer, first match wins.
    pub id: &'static [&'static str],
    /// JSON pointers to a human-readable account name, first match wins.
    pub name: &'static [&'static str],
    /// A connection setting that is the account id when the answer does not name one (QuickBooks' realm).
    pub id_setting: Option<&'static str>,
}

impl Identity {
    pub const fn get(
        path: &'static str,
        id: &'static [&'static str],
        name: &'static [&'static str],
    ) -> Self {
        Self {
            method: HttpMethod::Get,
            path,
            id,
            name,
            id_setting: None,
        }
    }
}

/// How the client proves itself to the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields of the request body.
    RequestBody,
    /// `Authorization: Basic base64(client_id:client_secret)` (Intuit requires it).
    Basic,
}

/// A platform's OAuth 2.0 authorization server and what differs from one platform to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oauth {
    /// May contain `{shop}` (Shopify: each store is its own authorization server).
    pub authorize_url: &'static str,
    pub token_url: &'static str,
    /// How API calls carry the OAuth access token, stored as the credential `accessToken`
    /// (Bearer everywhere except Shopify, which wants `X-Shopify-Access-Token`).
    pub api_auth: ApiAuth,
    pub client_auth: ClientAuth,
    /// Added to the authorization URL as they are.
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Scopes are joined with this (Shopify wants commas; everyone else follows RFC 6749's spaces).
    pub scope_separator: &'static str,
    /// Each customer's account is its own authorization server (Shopify's store, Zendesk's subdomain): the
    /// flow needs this value before it starts, to fill the `{placeholder}` of the authorization and token
    /// URLs. `None`: one authorization server for everyone.
    pub account_host: Option<AccountHost>,
    /// The callback is signed with the client secret (Shopify's `hmac` parameter), and refused unless the
    /// signature holds.
    pub signed_callback: bool,
    /// Query parameters of the callback kept as connection settings (QuickBooks' company id).
    pub callback_settings: &'static [&'static str],
    /// Fields of the token response kept as settings: (field in the response, setting name).
    pub token_settings: &'static [(&'static str, &'static str)],
    /// The authorization takes one scope, the broadest of those wanted (the last): Stripe Connect's `scope`
    /// is `read_only` or `read_write` (<https://docs.stripe.com/connect/oauth-reference>), the latter
    /// reading as well.
    pub single_scope: bool,
}

impl Oauth {
    /// An authorization server with RFC 6749's defaults: client credentials in the body, scopes joined
    /// with spaces, the access token as a Bearer token, nothing kept from the callback or the token answer.
    pub const fn new(authorize_url: &'static str, token_url: &'static str) -> Self {
        Self {
            authorize_url,
            token_url,
            api_auth: ApiAuth::Bearer {
                token_field: OAUTH_ACCESS_TOKEN,
            },
            client_auth: ClientAuth::RequestBody,
            authorize_params: &[],
            scope_separator: " ",
            account_host: None,
            signed_callback: false,
            callback_settings: &[],
            token_settings: &[],
            single_scope: false,
        }
    }
}

/// The value that names a customer's own OAuth authorization server, given to `POST /connections/oauth/start`
/// and kept as a connection setting (the API URLs read it too): Shopify's `shop`
/// (`<name>.myshopify.com`), Zendesk's `subdomain` (`<subdomain>.zendesk.com`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountHost {
    /// The field of the start request, the `{placeholder}` of the OAuth URLs and the connection setting.
    pub field: &'static str,
    /// What a value must look like: it becomes part of a host name.
    pub shape: FieldShape,
    /// An example, for the answer that refuses a value.
    pub example: &'static str,
}

impl AccountHost {
    /// The value trimmed and lower-cased (host names are case-insensitive), or `None` when it does not
    /// have the shape.
    pub fn parse(&self, raw: &str) -> Option<String> {
        let value = raw.trim().to_ascii_lowercase();
        self.shape.parse(&value).ok()
    }
}

/// A platform's default outbound rate per connection (`LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT` overrides it),
/// and how it says a request went over its limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DefaultRate {
    /// Requests per second.
    pub per_second: f64,
    /// Requests that may go out back to back from an idle budget (at least 1).
    pub burst: u32,
    /// Answers other than 429 that mean "too many requests" and are waited out like one (Google's 403
    /// `userRateLimitExceeded` and `rateLimitExceeded`).
    pub limited_when: &'static [ErrorMatch],
}

impl DefaultRate {
    pub const fn per_second(per_second: f64) -> Self {
        Self {
            per_second,
            burst: 1,
            limited_when: &[],
        }
    }

    /// The same rate, with these answers counting as rate limiting.
    pub const fn limited_when(self, limited_when: &'static [ErrorMatch]) -> Self {
        Self {
            limited_when,
            ..self
        }
    }
}

/// The answer most platforms give credentials that are not valid: 401 Unauthorized, whatever the body.
const REJECTED_401: &[ErrorMatch] = &[ErrorMatch::status(401)];

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
    /// The scopes every OAuth authorization asks for; each data type may add its own ([`DataType::scopes`]).
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
    /// The "who am I" call (connection test, OAuth account).
    pub identity: Identity,
    pub oauth: Option<Oauth>,
    /// Outbound requests per second per connection, from the platform's documented limits.
    pub rate: DefaultRate,
    /// JSON pointers to the human-readable message of the platform's error bodies, first match wins.
    pub error_messages: &'static [&'static str],
    /// How the platform says "these credentials are not valid" (a wrong, revoked or expired key or token),
    /// from its API reference: a 401 almost everywhere, ActiveCampaign's 403. An answer matching one of them
    /// fails a connection test (`POST /connections/{id}/test`) and a backup with `UNAUTHORIZED` (an OAuth
    /// connection refreshes its token once first) rather than `FORBIDDEN`, which stays for valid
    /// credentials that may not see some data. Any 401 counts as well (RFC 9110 §15.5.2).
    pub credentials_rejected: &'static [ErrorMatch],
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

    /// Whether an answer with `status` and the (JSON, or `null`) `body` says the credentials are not valid:
    /// any 401, or an answer the platform declares for it ([`Platform::credentials_rejected`]).
    pub fn rejects_credentials(&self, status: u16, body: &serde_json::Value) -> bool {
        status == 401
            || self
                .credentials_rejected
                .iter()
                .any(|rule| rule.matches(status, body))
    }

    pub fn url_param(&self, name: &str) -> Option<&UrlParam> {
        self.url_params.iter().find(|p| p.name() == name)
    }

    /// How a data type of this platform is listed; `None` for an unknown data type or one ListBackup cannot
    /// back up.
    pub fn listing(&self, data_type: &str) -> Option<&Listing> {
        self.data_type(data_type)?.listing.as_ref()
    }

    /// The data types among `data_types` whose scopes were not `granted`, each with the first scope it lacks:
    /// backing them up needs the customer's consent again (`POST /connections/{id}/reconnect`).
    pub fn ungranted<'a>(
        &self,
        granted: &[String],
        data_types: &'a [String],
    ) -> Vec<(&'a str, &'static str)> {
        data_types
            .iter()
            .filter_map(|name| {
                let data_type = self.data_type(name)?;
                let lacking = data_type
                    .scopes
                    .iter()
                    .find(|scope| !granted.iter().any(|g| g == *scope))?;
                Some((name.as_str(), *lacking))
            })
            .collect()
    }

    /// The OAuth scopes a restore's writes of `data_types` need ([`writes::RecordWrites::scopes`]), once
    /// each, in catalog order; those of every writable data type when `None`.
    pub fn write_scopes_for(&self, data_types: Option<&[&str]>) -> Vec<&'static str> {
        let mut scopes: Vec<&'static str> = Vec::new();
        let wanted = self
            .data_types
            .iter()
            .filter(|d| data_types.is_none_or(|names| names.contains(&d.name)));
        for scope in wanted.flat_map(|d| d.write_scopes()) {
            if !scopes.contains(scope) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// The write scopes a restore of `data_types` needs that were not `granted` (empty: it may go on).
    pub fn ungranted_writes(&self, granted: &[String], data_types: &[String]) -> Vec<&'static str> {
        let names: Vec<&str> = data_types.iter().map(String::as_str).collect();
        self.write_scopes_for(Some(&names))
            .into_iter()
            .filter(|scope| !granted.iter().any(|g| g == scope))
            .collect()
    }

    /// The OAuth scopes needed to back up `data_types` (the base scopes first, then each data type's, once
    /// each); all data types when `None`.
    pub fn scopes_for(&self, data_types: Option<&[&str]>) -> Vec<&'static str> {
        let mut scopes: Vec<&'static str> = self.oauth_scopes.to_vec();
        let wanted = self
            .data_types
            .iter()
            .filter(|d| data_types.is_none_or(|names| names.contains(&d.name)));
        for scope in wanted.flat_map(|d| d.scopes) {
            if !scopes.contains(scope) {
                scopes.push(scope);
            }
        }
        scopes
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
