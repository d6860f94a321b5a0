//! Calls a platform's "who am I" endpoint with a connection's credentials: the engine behind
//! `POST /connections/{id}/test`.
//!
//! Credential values only ever go into request headers. Nothing the prober reports (messages, errors, logs)
//! is built from them, and the platform's own error bodies are not relayed either: Stripe, for one, echoes
//! part of a rejected key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::public_addresses::PublicAddressesOnly;

use listbackup_domain::platform::{
    url_placeholders, ApiAuth, AuthType, BasicPart, ContentHost, CredentialFieldType, HttpMethod,
    Identity, Platform, UrlParam, CATALOG, OAUTH_ACCESS_TOKEN,
};
use listbackup_domain::ErrorChain;
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(15);
/// A 429 asking to wait longer than this is reported rather than waited out: a test is interactive.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);
/// Used when a 429 carries no usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
const MAX_IDENTITY_LEN: usize = 120;

/// Why the platform's identity call ([`PlatformClient::identify`]) told nobody. The message is safe to show;
/// the source (the HTTP client's error, its URL removed) stays for the log.
#[derive(Debug, thiserror::Error)]
pub enum IdentifyError {
    /// The request could not be built from the credentials.
    #[error(transparent)]
    Request(#[from] ProbeError),
    /// The platform could not be reached (or the request not sent).
    #[error("{}", unreachable_message(.0))]
    Unreachable(#[source] reqwest::Error),
    /// The identity call answered a status other than 2xx.
    #[error("the platform's identity call answered {0}")]
    Status(reqwest::StatusCode),
    /// The identity call's 2xx body is not JSON.
    #[error("the platform's identity answer is not JSON")]
    NotJson(#[source] reqwest::Error),
    /// The answer names no account, and nothing else does (OAuth: no setting names it, no name either).
    #[error("no account id in the user-info answer")]
    NoAccountId,
    /// The platform answered as for no user at all.
    #[error("the platform treated the access token as anonymous")]
    Anonymous,
}

/// Why a request to a platform could not even be built. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the credential `{0}` is missing")]
    MissingCredential(String),
    #[error("the credential `{field}` is not usable: {reason}")]
    InvalidCredential { field: String, reason: &'static str },
    #[error("the API URL placeholder `{{{0}}}` cannot be filled")]
    UnknownPlaceholder(String),
    #[error("these credentials do not say how to authenticate to the platform")]
    NoAuthentication,
    /// A demo connection ([`DEMO_CONNECTION`]) used where demo mode is not running: it is never sent to the
    /// real platform.
    #[error("this is a demo connection, and demo mode is not running (LISTBACKUP_DEMO=true, in `listbackup serve`)")]
    DemoNotRunning,
}

/// The field a demo connection's sealed credentials carry beside the platform's own (never one of them: the
/// connect form refuses any field the catalog does not name, so a client cannot set it). Only
/// [`PlatformEndpoints::credentials_to_seal`] adds it, and only while demo mode is on and the credentials
/// are the platform's documented demo set. A connection whose credentials carry it is routed to the demo's
/// emulation and nowhere else; one without it never is.
pub const DEMO_CONNECTION: &str = "listbackup.demo";

/// Demo mode's routing: the base URLs of the platforms' emulations running in this process, and the
/// credentials that make a demo connection (the catalog's [`Platform::demo_credentials`]).
#[derive(Debug, Clone, Default)]
pub struct DemoPlatforms {
    api_urls: BTreeMap<String, String>,
    host_urls: BTreeMap<(String, String), String>,
}

impl DemoPlatforms {
    /// Routes demo connections of `platform_id` to `url` (the emulation's API base URL, used as given).
    pub fn with_api_url(mut self, platform_id: &str, url: &str) -> Self {
        self.api_urls.insert(
            platform_id.to_owned(),
            url.trim().trim_end_matches('/').to_owned(),
        );
        self
    }

    /// Routes demo connections' requests to the platform's host `name` (see [`ContentHost::Other`]) to `url`.
    pub fn with_host_url(mut self, platform_id: &str, name: &str, url: &str) -> Self {
        self.host_urls.insert(
            (platform_id.to_owned(), name.to_owned()),
            url.trim().trim_end_matches('/').to_owned(),
        );
        self
    }

    /// Whether the demo emulates this platform.
    pub fn serves(&self, platform_id: &str) -> bool {
        self.api_urls.contains_key(platform_id)
    }

    /// The platforms the demo emulates.
    pub fn platforms(&self) -> impl Iterator<Item = &str> {
        self.api_urls.keys().map(String::as_str)
    }
}

/// Per-platform API base URLs that replace the catalog's (`LISTBACKUP_PLATFORM_<ID>_API_URL`, DESIGN §7), and
/// the base URLs of a platform's other hosts (`LISTBACKUP_PLATFORM_<ID>_<NAME>_URL`, e.g. Dropbox's content
/// host, `LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL`).
#[derive(Debug, Clone, Default)]
pub struct PlatformEndpoints {
    api_urls: BTreeMap<String, String>,
    /// (platform id, host name) → base URL.
    host_urls: BTreeMap<(String, String), String>,
    /// Demo mode, when on: where demo connections go.
    demo: Option<std::sync::Arc<DemoPlatforms>>,
}

impl PlatformEndpoints {
    /// Reads `LISTBACKUP_PLATFORM_<ID>_API_URL` for every catalog platform.
    pub fn from_env() -> Self {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`from_env`](Self::from_env) with any key/value source (a config file, a test map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        CATALOG.iter().fold(Self::default(), |endpoints, platform| {
            let id = platform.id.to_ascii_uppercase();
            let key = format!("LISTBACKUP_PLATFORM_{id}_API_URL");
            let endpoints = match lookup(&key) {
                Some(url) if !url.trim().is_empty() => endpoints.with_api_url(platform.id, &url),
                _ => endpoints,
            };
            other_hosts(platform).fold(endpoints, |endpoints, name| {
                match lookup(&format!("LISTBACKUP_PLATFORM_{id}_{name}_URL")) {
                    Some(url) if !url.trim().is_empty() => {
                        endpoints.with_host_url(platform.id, name, &url)
                    }
                    _ => endpoints,
                }
            })
        })
    }

    /// Replaces the base URL of the platform's host `name` (see [`ContentHost::Other`]).
    pub fn with_host_url(mut self, platform_id: &str, name: &str, url: &str) -> Self {
        self.host_urls.insert(
            (platform_id.to_owned(), name.to_owned()),
            url.trim().trim_end_matches('/').to_owned(),
        );
        self
    }

    /// The base URL of `host` for these credentials: the API's ([`api_base`](Self::api_base)), or another
    /// host's (its override if one is set, otherwise the catalog's).
    pub fn host_base(
        &self,
        platform: &Platform,
        host: ContentHost,
        credentials: &BTreeMap<String, String>,
    ) -> Result<String, ProbeError> {
        match host {
            ContentHost::Api => self.api_base(platform, credentials),
            ContentHost::Other { name, .. } if credentials.contains_key(DEMO_CONNECTION) => self
                .demo
                .as_ref()
                .and_then(|demo| {
                    demo.host_urls
                        .get(&(platform.id.to_owned(), name.to_owned()))
                        .cloned()
                })
                .ok_or(ProbeError::DemoNotRunning),
            ContentHost::Other { name, url } => Ok(self
                .host_urls
                .get(&(platform.id.to_owned(), name.to_owned()))
                .cloned()
                .unwrap_or_else(|| url.to_owned())),
        }
    }

    /// Replaces the platform's documented API base URL (`LISTBACKUP_PLATFORM_<ID>_API_URL`) with `url`.
    /// An origin alone (`http://127.0.0.1:12111`: scheme, host and port) takes the place of the documented
    /// base's origin and keeps its API path ([`Platform::api_path`]: Stripe's `/v1`, Keap's `/crm/rest/v1`),
    /// so it and `http://127.0.0.1:12111/v1` both mean Stripe's `/v1` API on that server; a URL with a path
    /// is the whole API base, used as given (an emulation under a prefix: `http://h/stripe/v1`).
    pub fn with_api_url(mut self, platform_id: &str, url: &str) -> Self {
        self.api_urls.insert(
            platform_id.to_owned(),
            url.trim().trim_end_matches('/').to_owned(),
        );
        self
    }

    /// Turns demo mode on: connections sealed with [`DEMO_CONNECTION`] go to these emulations.
    pub fn with_demo(self, demo: DemoPlatforms) -> Self {
        Self {
            demo: Some(std::sync::Arc::new(demo)),
            ..self
        }
    }

    /// Demo mode's routing, when it is on.
    pub fn demo(&self) -> Option<&DemoPlatforms> {
        self.demo.as_deref()
    }

    /// The host names of every base URL the operator configured (the overrides and demo mode's
    /// emulations), lower-case: the names the platform clients resolve without refusing private
    /// addresses ([`PublicAddressesOnly::except`]).
    pub fn operator_hosts(&self) -> Vec<String> {
        let demo = self
            .demo
            .iter()
            .flat_map(|demo| demo.api_urls.values().chain(demo.host_urls.values()));
        self.api_urls
            .values()
            .chain(self.host_urls.values())
            .chain(demo)
            .filter_map(|base| {
                url::Url::parse(base)
                    .ok()?
                    .host_str()
                    .map(str::to_ascii_lowercase)
            })
            .collect()
    }

    /// A resolver for the clients that call platform APIs: host names built from a customer's credentials
    /// (ActiveCampaign's account URL, Zendesk's subdomain, …) are connected to only at public addresses;
    /// the operator's own hosts ([`operator_hosts`](Self::operator_hosts)) as they resolve.
    pub fn resolver(&self) -> std::sync::Arc<PublicAddressesOnly> {
        std::sync::Arc::new(PublicAddressesOnly::except(self.operator_hosts()))
    }

    /// Whether these submitted credentials make a demo connection of the platform: demo mode is on, it
    /// emulates the platform, and they are exactly the platform's documented demo set.
    pub fn is_demo(&self, platform: &Platform, credentials: &BTreeMap<String, String>) -> bool {
        self.demo
            .as_ref()
            .is_some_and(|demo| demo.serves(platform.id))
            && platform.demo_credentials().as_ref() == Some(credentials)
    }

    /// What to seal in the vault for credentials submitted on a connect form: the credentials, marked with
    /// [`DEMO_CONNECTION`] when they make a demo connection ([`is_demo`](Self::is_demo)), as they are
    /// otherwise. The mark is decided here, once, when the credentials are set; every request later reads it.
    pub fn credentials_to_seal(
        &self,
        platform: &Platform,
        credentials: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut sealed = credentials.clone();
        if self.is_demo(platform, credentials) {
            sealed.insert(DEMO_CONNECTION.to_owned(), "true".to_owned());
        }
        sealed
    }

    /// The API base URL for these credentials: a demo connection's is the demo's emulation (or
    /// [`ProbeError::DemoNotRunning`]); any other connection's is the override if one is set (with the
    /// catalog's API path, see [`with_api_url`](Self::with_api_url)), otherwise the catalog template with its
    /// `{placeholders}` filled from the credentials. Nothing but the mark sends a request to the demo.
    pub fn api_base(
        &self,
        platform: &Platform,
        credentials: &BTreeMap<String, String>,
    ) -> Result<String, ProbeError> {
        if credentials.contains_key(DEMO_CONNECTION) {
            return self
                .demo
                .as_ref()
                .and_then(|demo| demo.api_urls.get(platform.id).cloned())
                .ok_or(ProbeError::DemoNotRunning);
        }
        match self.api_urls.get(platform.id) {
            Some(url) => with_api_path(platform, url, credentials),
            None => fill_template(platform, platform.api_base_url, credentials),
        }
    }
}

/// An override that is an origin alone with the catalog's API path appended (its placeholders, such as
/// QuickBooks' `{realmId}`, filled from the credentials); an override with a path, as given.
fn with_api_path(
    platform: &Platform,
    url: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<String, ProbeError> {
    let origin_only = url
        .split_once("://")
        .is_some_and(|(_, rest)| !rest.contains('/'));
    if origin_only {
        Ok(format!(
            "{url}{}",
            fill_template(platform, platform.api_path(), credentials)?
        ))
    } else {
        Ok(url.to_owned())
    }
}

/// The names of the platform's hosts other than its API (`CONTENT` for Dropbox, `UPLOAD` for Box), once each.
fn other_hosts(platform: &Platform) -> impl Iterator<Item = &'static str> {
    let mut names: Vec<&'static str> = platform
        .data_types
        .iter()
        .filter_map(|d| d.listing.as_ref()?.content)
        .flat_map(|content| content.requests)
        .map(|request| request.host)
        // The hosts a restore uploads files to (Box's upload host), and looks an upload up on.
        .chain(
            platform
                .data_types
                .iter()
                .filter_map(|d| d.file_writes)
                .flat_map(|w| {
                    [w.create_folder.host, w.upload.host]
                        .into_iter()
                        .chain(w.upload.lost_answer.map(|lookup| lookup.host))
                }),
        )
        .filter_map(|host| match host {
            ContentHost::Other { name, .. } => Some(name),
            ContentHost::Api => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names.into_iter()
}

/// Fills `{placeholders}` from credential fields or derived URL parameters. Values are checked so that
/// they cannot move the request to another host or path than the template intends.
pub fn fill_template(
    platform: &Platform,
    template: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<String, ProbeError> {
    let mut url = template.to_owned();
    for name in url_placeholders(template) {
        let value = placeholder_value(platform, name, credentials)?;
        url = url.replace(&format!("{{{name}}}"), &value);
    }
    Ok(url)
}

fn placeholder_value(
    platform: &Platform,
    name: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<String, ProbeError> {
    let required = |field: &str| {
        credentials
            .get(field)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ProbeError::MissingCredential(field.to_owned()))
    };
    let invalid = |reason| ProbeError::InvalidCredential {
        field: name.to_owned(),
        reason,
    };
    if let Some(field) = platform.credential_field(name) {
        // The field's own rule (`CredentialField::parse_value`), as at the connect form: a value stored before
        // a rule tightened never reaches a host the platform does not document.
        let value = field
            .parse_value(required(name)?)
            .map_err(|_| invalid("does not have the shape the platform documents"))?;
        return if field.field_type == CredentialFieldType::Url {
            // A whole base URL (ActiveCampaign's account URL), parsed to `https://<host>`.
            Ok(value)
        } else {
            host_segment(&value).ok_or_else(|| invalid("must be a plain host name part"))
        };
    }
    match platform.url_param(name) {
        Some(UrlParam::SuffixOf { field, .. }) => {
            let value = required(field)?;
            value
                .rsplit_once('-')
                .and_then(|(_, suffix)| host_segment(suffix))
                .ok_or_else(|| ProbeError::InvalidCredential {
                    field: (*field).to_owned(),
                    reason: "does not end with a data centre suffix such as `-us21`",
                })
        }
        Some(UrlParam::FromOauth { .. }) => {
            host_segment(required(name)?).ok_or_else(|| invalid("must be a plain identifier"))
        }
        None => Err(ProbeError::UnknownPlaceholder(name.to_owned())),
    }
}

/// Letters, digits, `.`, `-` and `_` only: safe inside a host name or as one path segment.
fn host_segment(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    ok.then(|| value.to_owned())
}

/// The result of a connection test, safe to show and to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub latency_ms: u64,
    /// Human readable; never contains a credential value.
    pub message: String,
    pub http_status: Option<u16>,
    /// Why the test failed, as an error code of DESIGN §4 (`None` when it passed): `UNAUTHORIZED` when the
    /// platform said the credentials are not valid (`Platform::credentials_rejected`: a 401, ActiveCampaign's
    /// 403, Zendesk's anonymous "me"), `FORBIDDEN` for valid credentials refused this call,
    /// `RATE_LIMITED`, `PLATFORM_ERROR` for any other answer, `UNAVAILABLE` when the platform could not be
    /// reached, `VALIDATION_ERROR` when the credentials cannot even make the request.
    pub code: Option<&'static str>,
}

impl ProbeOutcome {
    fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            latency_ms: 0,
            message: message.into(),
            http_status: None,
            code: Some(code),
        }
    }

    /// Whether the platform said the credentials are not valid (an OAuth connection then refreshes its
    /// token once, as a backup does).
    pub fn credentials_rejected(&self) -> bool {
        self.code == Some("UNAUTHORIZED")
    }
}

pub struct PlatformClient {
    http: reqwest::Client,
    endpoints: PlatformEndpoints,
}

impl PlatformClient {
    pub fn new(endpoints: PlatformEndpoints) -> Self {
        let http = reqwest::Client::builder()
            .dns_resolver(endpoints.resolver())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(TOTAL_TIMEOUT)
            // Redirects are not followed: reqwest strips `Authorization` on a cross-host redirect but not
            // custom headers such as `X-Shopify-Access-Token`, which would then leak to the new host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("listbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with static settings always builds");
        Self { http, endpoints }
    }

    /// Where this client sends each connection's requests.
    pub fn endpoints(&self) -> &PlatformEndpoints {
        &self.endpoints
    }

    /// Calls the platform's test endpoint with these credentials: the API-key fields of the platform, or
    /// `accessToken` (plus any OAuth URL parameter such as QuickBooks' `realmId`) for an OAuth connection.
    pub async fn test_connection(
        &self,
        platform: &Platform,
        credentials: &BTreeMap<String, String>,
    ) -> ProbeOutcome {
        let request = match self.build_request(platform, credentials) {
            Ok(request) => request,
            Err(err) => return ProbeOutcome::failed("VALIDATION_ERROR", err.to_string()),
        };
        let outcome = self.send_with_one_retry(platform, request).await;
        // Belt and braces: the message is built from statuses and the platform's account name, but an
        // account name could in theory repeat a credential.
        ProbeOutcome {
            message: scrub(&outcome.message, platform, credentials),
            ..outcome
        }
    }

    /// Calls the platform's identity endpoint ([`Identity`]) and reads who the credentials belong to. An
    /// [`IdentifyError`]'s message is safe to show (statuses and reasons, never a credential).
    pub async fn identify(
        &self,
        platform: &Platform,
        credentials: &BTreeMap<String, String>,
    ) -> Result<Identified, IdentifyError> {
        let request = self.build_request(platform, credentials)?;
        let response = request
            .send()
            .await
            .map_err(|err| IdentifyError::Unreachable(err.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(IdentifyError::Status(status));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|err| IdentifyError::NotJson(err.without_url()))?;
        Ok(identified(&platform.identity, &body))
    }

    fn build_request(
        &self,
        platform: &Platform,
        credentials: &BTreeMap<String, String>,
    ) -> Result<reqwest::RequestBuilder, ProbeError> {
        let auth = choose_auth(platform, credentials)?;
        if matches!(auth, Chosen::ApiKey(_)) {
            for field in platform.credential_fields.iter().filter(|f| f.required) {
                if credentials
                    .get(field.name)
                    .is_none_or(|v| v.trim().is_empty())
                {
                    return Err(ProbeError::MissingCredential(field.name.to_owned()));
                }
            }
        }
        let base = self.endpoints.api_base(platform, credentials)?;
        let path = fill_template(platform, platform.identity.path, credentials)?;
        let url = format!("{base}{path}");
        let mut request = match platform.identity.method {
            HttpMethod::Get => self.http.get(&url),
            HttpMethod::Post => self.http.post(&url),
        };
        request = request.header(reqwest::header::ACCEPT, "application/json");
        for (name, value) in platform.api_headers {
            request = request.header(*name, *value);
        }
        apply_auth(request, auth.api_auth(), credentials)
    }

    async fn send_with_one_retry(
        &self,
        platform: &Platform,
        request: reqwest::RequestBuilder,
    ) -> ProbeOutcome {
        // Requests without a streaming body can always be cloned.
        let retry = request.try_clone();
        let (mut response, mut latency) = timed(platform, request).await;
        if let (Ok(first), Some(retry)) = (&response, retry) {
            if first.status() == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after(first).unwrap_or(DEFAULT_RETRY_AFTER);
                if wait > MAX_RETRY_AFTER {
                    return ProbeOutcome {
                        ok: false,
                        latency_ms: latency,
                        message: format!(
                            "the platform is rate limiting requests (429); try again in {} s",
                            wait.as_secs()
                        ),
                        http_status: Some(429),
                        code: Some("RATE_LIMITED"),
                    };
                }
                tracing::debug!(platform = platform.id, ?wait, "rate limited, retrying once");
                crate::platform_metrics::platform_retry(
                    platform.id,
                    crate::platform_metrics::RetryReason::RateLimited,
                );
                tokio::time::sleep(wait).await;
                (response, latency) = timed(platform, retry).await;
            }
        }
        match response {
            Ok(response) => outcome_of(platform, response, latency).await,
            Err(err) => {
                let message = unreachable_message(&err);
                // The outcome says what failed; the reason (a refused connection, a DNS failure) goes to the
                // log, without the URL.
                let err = err.without_url();
                tracing::info!(platform = platform.id, error = %ErrorChain(&err),
                    "the platform could not be reached");
                ProbeOutcome {
                    latency_ms: latency,
                    ..ProbeOutcome::failed("UNAVAILABLE", message)
                }
            }
        }
    }
}

/// Which authentication the credentials carry (public for the backup connectors, which authenticate the
/// same way).
pub enum Chosen {
    ApiKey(ApiAuth),
    Oauth(ApiAuth),
}

impl Chosen {
    pub fn api_auth(&self) -> ApiAuth {
        match self {
            Chosen::ApiKey(auth) | Chosen::Oauth(auth) => *auth,
        }
    }
}

pub fn choose_auth(
    platform: &Platform,
    credentials: &BTreeMap<String, String>,
) -> Result<Chosen, ProbeError> {
    let has_oauth_token = credentials.contains_key(OAUTH_ACCESS_TOKEN);
    match (platform.api_key_auth, platform.oauth) {
        // HubSpot's private-app field is also called `accessToken`; both go out as Bearer anyway.
        (Some(auth), _)
            if platform.supports(AuthType::ApiKey)
                && auth_fields(&auth).all(|f| credentials.contains_key(f)) =>
        {
            Ok(Chosen::ApiKey(auth))
        }
        (_, Some(oauth)) if has_oauth_token && platform.supports(AuthType::Oauth2) => {
            Ok(Chosen::Oauth(oauth.api_auth))
        }
        (Some(auth), _) if platform.supports(AuthType::ApiKey) => {
            Err(ProbeError::MissingCredential(
                auth_fields(&auth)
                    .find(|f| !credentials.contains_key(*f))
                    .unwrap_or_default()
                    .to_owned(),
            ))
        }
        (_, Some(_)) => Err(ProbeError::MissingCredential(OAUTH_ACCESS_TOKEN.to_owned())),
        _ => Err(ProbeError::NoAuthentication),
    }
}

fn auth_fields(auth: &ApiAuth) -> impl Iterator<Item = &'static str> {
    let part = |p: BasicPart| match p {
        BasicPart::Literal(_) => None,
        BasicPart::Field(f) | BasicPart::FieldWithSuffix(f, _) => Some(f),
    };
    let fields = match *auth {
        ApiAuth::Bearer { token_field } | ApiAuth::Header { token_field, .. } => {
            [Some(token_field), None]
        }
        ApiAuth::Basic { user, password } => [part(user), part(password)],
    };
    fields.into_iter().flatten()
}

pub fn apply_auth(
    request: reqwest::RequestBuilder,
    auth: ApiAuth,
    credentials: &BTreeMap<String, String>,
) -> Result<reqwest::RequestBuilder, ProbeError> {
    let value = |field: &str| {
        let value = credentials
            .get(field)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ProbeError::MissingCredential(field.to_owned()))?;
        // Checked here so a bad value becomes a clear error instead of reqwest's opaque builder error.
        if HeaderValue::from_str(value).is_err() {
            return Err(ProbeError::InvalidCredential {
                field: field.to_owned(),
                reason: "contains characters not allowed in an HTTP header",
            });
        }
        Ok(value.to_owned())
    };
    let part = |p: BasicPart| -> Result<String, ProbeError> {
        Ok(match p {
            BasicPart::Literal(text) => text.to_owned(),
            BasicPart::Field(field) => value(field)?,
            BasicPart::FieldWithSuffix(field, suffix) => format!("{}{suffix}", value(field)?),
        })
    };
    Ok(match auth {
        ApiAuth::Bearer { token_field } => request.bearer_auth(value(token_field)?),
        ApiAuth::Header {
            header,
            token_field,
        } => {
            let mut secret =
                HeaderValue::from_str(&value(token_field)?).expect("checked by `value` above");
            // Keeps the value out of reqwest's and our own `Debug` output.
            secret.set_sensitive(true);
            let name =
                HeaderName::from_bytes(header.as_bytes()).expect("catalog header names are valid");
            request.header(name, secret)
        }
        ApiAuth::Basic { user, password } => request.basic_auth(part(user)?, Some(part(password)?)),
    })
}

async fn timed(
    platform: &Platform,
    request: reqwest::RequestBuilder,
) -> (reqwest::Result<reqwest::Response>, u64) {
    let started = Instant::now();
    let response = request.send().await;
    crate::platform_metrics::platform_request(
        platform.id,
        response.as_ref().ok().map(|r| r.status().as_u16()),
        started.elapsed(),
    );
    let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    (response, latency)
}

/// `Retry-After` in delta-seconds (what rate limiters send; an HTTP date is treated as absent).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn outcome_of(
    platform: &Platform,
    response: reqwest::Response,
    latency_ms: u64,
) -> ProbeOutcome {
    let status = response.status();
    let http_status = Some(status.as_u16());
    let failed = |code: &'static str, message: String| ProbeOutcome {
        ok: false,
        latency_ms,
        message,
        http_status,
        code: Some(code),
    };
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return failed(
            "RATE_LIMITED",
            "the platform is still rate limiting requests (429)".to_owned(),
        );
    }
    if !status.is_success() {
        // A 401's body is not read (Stripe echoes part of a rejected key); others may say what they mean.
        let body = if status == StatusCode::UNAUTHORIZED {
            serde_json::Value::Null
        } else {
            response.json().await.unwrap_or(serde_json::Value::Null)
        };
        if platform.rejects_credentials(code, &body) {
            return failed(
                "UNAUTHORIZED",
                format!("the platform rejected the credentials ({code}): they are not valid"),
            );
        }
        if status == StatusCode::FORBIDDEN {
            return failed(
                "FORBIDDEN",
                "the platform refused the credentials access to the account (403)".to_owned(),
            );
        }
        return failed("PLATFORM_ERROR", format!("the platform answered {status}"));
    }
    let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
    match identified(&platform.identity, &body) {
        Identified::Anonymous => failed(
            "UNAUTHORIZED",
            "the platform treated the request as anonymous: the credentials were not accepted"
                .to_owned(),
        ),
        Identified::Account { id, name } => ProbeOutcome {
            ok: true,
            latency_ms,
            message: match name.or(id) {
                Some(name) => format!("authenticated as {name}"),
                None => "the platform accepted the credentials".to_owned(),
            },
            http_status,
            code: None,
        },
    }
}

/// Who the credentials belong to, as the platform's identity call ([`Identity`]) answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identified {
    /// The account's id and a human-readable name, where the answer holds them (control characters removed,
    /// at most [`MAX_IDENTITY_LEN`] characters).
    Account {
        id: Option<String>,
        name: Option<String>,
    },
    /// The answer names nobody: every id it names is `null`. Zendesk answers `/users/me` for an
    /// unauthenticated caller with 200 and an anonymous user.
    Anonymous,
}

/// Reads the identity call's answer with the platform's pointers (first match wins).
pub fn identified(identity: &Identity, body: &serde_json::Value) -> Identified {
    let present = |pointer: &&str| body.pointer(pointer).is_some();
    if !identity.id.is_empty()
        && identity.id.iter().any(present)
        && identity
            .id
            .iter()
            .all(|p| body.pointer(p).is_none_or(serde_json::Value::is_null))
    {
        return Identified::Anonymous;
    }
    let text = |pointers: &[&str]| {
        pointers.iter().find_map(|p| match body.pointer(p)? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(clean(s.trim())),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    Identified::Account {
        id: text(identity.id),
        name: text(identity.name),
    }
}

fn clean(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_IDENTITY_LEN)
        .collect()
}

/// Error text of a failed connection. `without_url` because a URL is not ours to show in full.
fn unreachable_message(err: &reqwest::Error) -> String {
    let why = if err.is_timeout() {
        "the request timed out"
    } else if err.is_connect() {
        "the connection failed"
    } else if err.is_builder() {
        "the request could not be built"
    } else {
        "the request failed"
    };
    format!("could not reach the platform: {why}")
}

/// Replaces any secret credential value (and any OAuth token) found in `message`.
pub fn scrub(message: &str, platform: &Platform, credentials: &BTreeMap<String, String>) -> String {
    let is_secret = |name: &str| {
        name == OAUTH_ACCESS_TOKEN
            || platform
                .credential_field(name)
                .is_none_or(|field| field.secret)
    };
    credentials
        .iter()
        .filter(|(name, value)| is_secret(name) && value.trim().len() >= 4)
        .fold(message.to_owned(), |message, (_, value)| {
            message.replace(value.trim(), "[redacted]")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_domain::platform::find;

    fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn platform(id: &str) -> &'static Platform {
        find(id).unwrap()
    }

    /// The names the platform clients resolve unfiltered are the operator's: its overrides and demo mode's
    /// emulations, never a host built from credentials.
    #[test]
    fn the_operator_hosts_are_the_overrides_and_the_demo() {
        let endpoints = PlatformEndpoints::from_lookup(|key| match key {
            "LISTBACKUP_PLATFORM_STRIPE_API_URL" => Some("http://LocalHost:12111".into()),
            "LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL" => {
                Some("http://emulator.internal:9000".into())
            }
            _ => None,
        })
        .with_demo(DemoPlatforms::default().with_api_url("keap", "http://127.0.0.1:4100/keap"));
        let mut hosts = endpoints.operator_hosts();
        hosts.sort();
        assert_eq!(hosts, ["127.0.0.1", "emulator.internal", "localhost"]);
        assert!(PlatformEndpoints::default().operator_hosts().is_empty());
    }

    #[test]
    fn fills_catalog_templates() {
        let endpoints = PlatformEndpoints::default();
        let base = |id, c: &[(&str, &str)]| endpoints.api_base(platform(id), &creds(c));
        assert_eq!(
            base("mailchimp", &[("apiKey", "abc123-us21")]).unwrap(),
            "https://us21.api.mailchimp.com/3.0"
        );
        assert_eq!(
            base(
                "zendesk",
                &[("subdomain", "acme"), ("email", "a@b.c"), ("apiToken", "t")]
            )
            .unwrap(),
            "https://acme.zendesk.com/api/v2"
        );
        assert_eq!(
            base(
                "activecampaign",
                &[("apiUrl", "https://acme.api-us1.com/"), ("apiKey", "k")]
            )
            .unwrap(),
            "https://acme.api-us1.com/api/3"
        );
        assert_eq!(
            base("shopify", &[("shop", "acme.myshopify.com")]).unwrap(),
            "https://acme.myshopify.com/admin/api/2026-10"
        );
        assert_eq!(base("stripe", &[]).unwrap(), "https://api.stripe.com/v1");
        assert_eq!(
            base("quickbooks", &[("realmId", "9130")]).unwrap(),
            "https://quickbooks.api.intuit.com/v3/company/9130"
        );
    }

    #[test]
    fn rejects_values_that_would_change_the_host() {
        let endpoints = PlatformEndpoints::default();
        let err = endpoints
            .api_base(platform("zendesk"), &creds(&[("subdomain", "evil.com/x#")]))
            .unwrap_err();
        assert!(matches!(err, ProbeError::InvalidCredential { .. }));
        let err = endpoints
            .api_base(platform("mailchimp"), &creds(&[("apiKey", "nodatacentre")]))
            .unwrap_err();
        assert_eq!(
            err,
            ProbeError::InvalidCredential {
                field: "apiKey".into(),
                reason: "does not end with a data centre suffix such as `-us21`"
            }
        );
        assert!(!err.to_string().contains("nodatacentre"));
        let err = endpoints
            .api_base(platform("activecampaign"), &creds(&[("apiUrl", "ftp://x")]))
            .unwrap_err();
        assert!(matches!(err, ProbeError::InvalidCredential { .. }));
        // Credentials stored before the connect form held an API URL to its documented domains are held to
        // them at every use: never a loopback emulation, a metadata service or a database port.
        for stored in [
            "http://127.0.0.1:41511/activecampaign",
            "https://127.0.0.1:41511",
            "http://169.254.169.254/latest",
            "https://acme.api-us1.com:5432",
            "https://user@acme.api-us1.com",
            "https://acme.example.com",
        ] {
            let err = endpoints
                .api_base(platform("activecampaign"), &creds(&[("apiUrl", stored)]))
                .unwrap_err();
            assert_eq!(
                err,
                ProbeError::InvalidCredential {
                    field: "apiUrl".into(),
                    reason: "does not have the shape the platform documents"
                },
                "{stored}"
            );
        }
        // A Shopify shop or a Zendesk subdomain is one documented host name, whatever was stored.
        for (id, field, stored) in [
            ("shopify", "shop", "evil.example"),
            ("shopify", "shop", "127.0.0.1"),
            ("zendesk", "subdomain", "evil.example"),
        ] {
            let err = endpoints
                .api_base(platform(id), &creds(&[(field, stored)]))
                .unwrap_err();
            assert!(
                matches!(err, ProbeError::InvalidCredential { .. }),
                "{id}: {stored}"
            );
        }
    }

    #[test]
    fn override_replaces_the_template_whole() {
        let endpoints = PlatformEndpoints::from_lookup(|key| {
            (key == "LISTBACKUP_PLATFORM_MAILCHIMP_API_URL")
                .then(|| "http://127.0.0.1:9/mailchimp/3.0/".to_owned())
        });
        assert_eq!(
            endpoints
                .api_base(platform("mailchimp"), &creds(&[]))
                .unwrap(),
            "http://127.0.0.1:9/mailchimp/3.0"
        );
        assert!(endpoints
            .api_base(platform("zendesk"), &creds(&[]))
            .is_err());
    }

    #[test]
    fn an_override_takes_the_documented_base_and_keeps_the_api_path() {
        let endpoints = |url: &str| PlatformEndpoints::default().with_api_url("stripe", url);
        let stripe = |url: &str| {
            endpoints(url)
                .api_base(platform("stripe"), &creds(&[]))
                .unwrap()
        };
        // An origin alone keeps Stripe's documented `/v1`; given, it is there once.
        assert_eq!(
            stripe("http://127.0.0.1:12111"),
            "http://127.0.0.1:12111/v1"
        );
        assert_eq!(
            stripe("http://127.0.0.1:12111/"),
            "http://127.0.0.1:12111/v1"
        );
        assert_eq!(
            stripe("http://127.0.0.1:12111/v1"),
            "http://127.0.0.1:12111/v1"
        );
        // A path is the whole base (an emulation under a prefix, a test double without the version).
        assert_eq!(stripe("http://h/stripe/v1"), "http://h/stripe/v1");
        assert_eq!(stripe("http://h/stripe/api"), "http://h/stripe/api");
        let keap = PlatformEndpoints::default()
            .with_api_url("keap", "http://h")
            .api_base(platform("keap"), &creds(&[]))
            .unwrap();
        assert_eq!(keap, "http://h/crm/rest/v1");
        // A path with a placeholder is filled from the credentials.
        let quickbooks = |url: &str| {
            PlatformEndpoints::default()
                .with_api_url("quickbooks", url)
                .api_base(platform("quickbooks"), &creds(&[("realmId", "42")]))
                .unwrap()
        };
        assert_eq!(quickbooks("http://h"), "http://h/v3/company/42");
        assert_eq!(
            quickbooks("http://h/q/v3/company/7"),
            "http://h/q/v3/company/7"
        );
    }

    #[test]
    fn only_a_demo_connection_reaches_the_demo() {
        let stripe = platform("stripe");
        let demo_set = stripe.demo_credentials().unwrap();
        let off = PlatformEndpoints::default().with_api_url("stripe", "http://real");
        let on = off
            .clone()
            .with_demo(DemoPlatforms::default().with_api_url("stripe", "http://demo/stripe/v1"));
        // Demo mode off: the demo set is only credentials.
        assert!(!off.is_demo(stripe, &demo_set));
        assert_eq!(off.credentials_to_seal(stripe, &demo_set), demo_set);
        // On: exactly the demo set is marked, nothing else (a near miss, an extra field, another platform).
        let sealed = on.credentials_to_seal(stripe, &demo_set);
        assert_eq!(
            sealed.get(DEMO_CONNECTION).map(String::as_str),
            Some("true")
        );
        assert_eq!(
            on.api_base(stripe, &sealed).unwrap(),
            "http://demo/stripe/v1"
        );
        for real in [
            creds(&[("secretKey", "sk_demo2")]),
            creds(&[("secretKey", "sk_demo"), ("other", "x")]),
            creds(&[("secretKey", "sk_live_1")]),
        ] {
            let sealed = on.credentials_to_seal(stripe, &real);
            assert!(!sealed.contains_key(DEMO_CONNECTION), "{:?}", real.keys());
            assert_eq!(on.api_base(stripe, &sealed).unwrap(), "http://real/v1");
        }
        let keap = platform("keap");
        assert!(
            !on.is_demo(keap, &keap.demo_credentials().unwrap()),
            "keap is not emulated here"
        );
        // A marked connection where demo mode is off is refused, never sent to the real platform.
        assert_eq!(
            off.api_base(stripe, &sealed),
            Err(ProbeError::DemoNotRunning)
        );
    }

    #[test]
    fn another_host_of_a_platform_has_its_own_override() {
        let dropbox = platform("dropbox");
        let download = dropbox.listing("files").unwrap().content.unwrap().requests[0].host;
        assert_eq!(
            PlatformEndpoints::default()
                .host_base(dropbox, download, &creds(&[]))
                .unwrap(),
            "https://content.dropboxapi.com"
        );
        let endpoints = PlatformEndpoints::from_lookup(|key| match key {
            "LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL" => Some("http://127.0.0.1:9/content/".into()),
            "LISTBACKUP_PLATFORM_DROPBOX_API_URL" => Some("http://127.0.0.1:9/api".into()),
            _ => None,
        });
        assert_eq!(
            endpoints.host_base(dropbox, download, &creds(&[])).unwrap(),
            "http://127.0.0.1:9/content"
        );
        assert_eq!(
            endpoints
                .host_base(dropbox, ContentHost::Api, &creds(&[]))
                .unwrap(),
            "http://127.0.0.1:9/api"
        );
    }

    #[tokio::test]
    async fn missing_credentials_are_named_not_shown() {
        let client = PlatformClient::new(PlatformEndpoints::default());
        let outcome = client
            .test_connection(
                platform("zendesk"),
                &creds(&[("apiToken", "zd-secret-token")]),
            )
            .await;
        assert!(!outcome.ok);
        assert_eq!(outcome.http_status, None);
        assert!(outcome.message.contains("email"), "{}", outcome.message);
        assert!(!outcome.message.contains("zd-secret-token"));
    }

    #[tokio::test]
    async fn unreachable_platform_is_reported_without_secrets() {
        // Port 9 (discard) on loopback is closed on any test machine.
        let endpoints =
            PlatformEndpoints::default().with_api_url("stripe", "http://127.0.0.1:9/v1");
        let outcome = PlatformClient::new(endpoints)
            .test_connection(
                platform("stripe"),
                &creds(&[("secretKey", "sk_test_supersecret")]),
            )
            .await;
        assert!(!outcome.ok);
        assert!(
            outcome.message.starts_with("could not reach"),
            "{}",
            outcome.message
        );
        assert!(!outcome.message.contains("sk_test_supersecret"));
    }

    #[tokio::test]
    async fn an_unreachable_identity_call_keeps_its_cause_without_the_url() {
        let endpoints =
            PlatformEndpoints::default().with_api_url("stripe", "http://127.0.0.1:9/v1");
        let err = PlatformClient::new(endpoints)
            .identify(
                platform("stripe"),
                &creds(&[("secretKey", "sk_test_supersecret")]),
            )
            .await
            .unwrap_err();
        // What a client is shown is unchanged; the HTTP client's error stays underneath for the log.
        let shown = crate::oauth::OauthError::UserInfo(err);
        assert_eq!(
            shown.to_string(),
            "the platform did not say which account was authorized: could not reach the platform: \
             the connection failed"
        );
        let cause = std::error::Error::source(&shown)
            .and_then(std::error::Error::source)
            .expect("the HTTP client's error is kept");
        assert!(cause.downcast_ref::<reqwest::Error>().is_some());
        let chain = crate::error_chain(&shown);
        assert!(
            !chain.contains("127.0.0.1") && !chain.contains("sk_test"),
            "{chain}"
        );
    }

    #[test]
    fn scrub_removes_secret_values_only() {
        let c = creds(&[
            ("subdomain", "acme"),
            ("email", "a@b.c"),
            ("apiToken", "tok-123456"),
        ]);
        let scrubbed = scrub("acme a@b.c tok-123456", platform("zendesk"), &c);
        assert_eq!(scrubbed, "acme a@b.c [redacted]");
    }

    #[test]
    fn zendesk_anonymous_user_is_not_a_success() {
        let zendesk = &platform("zendesk").identity;
        let anonymous = serde_json::json!({"user": {"id": null, "name": "Anonymous user"}});
        assert_eq!(identified(zendesk, &anonymous), Identified::Anonymous);
        let agent = serde_json::json!({"user": {"id": 1, "email": "agent@acme.test"}});
        assert_eq!(
            identified(zendesk, &agent),
            Identified::Account {
                id: Some("1".into()),
                name: Some("agent@acme.test".into())
            }
        );
        // An answer without the id at all (another shape) is not taken for an anonymous one.
        assert!(matches!(
            identified(zendesk, &serde_json::json!({"other": 1})),
            Identified::Account { id: None, .. }
        ));
    }

    #[test]
    fn oauth_credentials_use_the_oauth_header() {
        let c = creds(&[("accessToken", "shpua_x"), ("shop", "acme.myshopify.com")]);
        let chosen = choose_auth(platform("shopify"), &c).ok().unwrap();
        assert!(matches!(
            chosen,
            Chosen::Oauth(ApiAuth::Header {
                header: "X-Shopify-Access-Token",
                ..
            })
        ));
        let chosen = choose_auth(platform("box"), &creds(&[("accessToken", "t")]))
            .ok()
            .unwrap();
        assert!(matches!(chosen, Chosen::Oauth(ApiAuth::Bearer { .. })));
    }
}
