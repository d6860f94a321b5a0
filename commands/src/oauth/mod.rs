//! OAuth connections (DESIGN §4, issue 3): the authorization-code flow with PKCE for the nine OAuth platforms,
//! reconnect, and the token lifecycle (refresh before use, a background refresher, one refresh at a time per
//! connection across processes).
//!
//! Secrets handled here (authorization codes, PKCE verifiers, states, access and refresh tokens) never reach an
//! event, an error message or a log line: tokens go to the [`CredentialVault`], the verifier is stored encrypted,
//! the state only as a hash.

mod flow;
mod refresher;
mod state;
mod tokens;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use listbackup_domain::connection::Connection;
use listbackup_domain::platform::CATALOG;

use crate::bus::{BoxError, CommandBus, CommandError};
use crate::platform_client::PlatformEndpoints;
use crate::vault::{CredentialVault, VaultError};

pub use flow::{CallbackParams, Connected, StartRequest, Started};
pub use refresher::{RefreshOutcome, BACKGROUND_WINDOW, USE_WINDOW};
pub use state::STATE_TTL;
pub use tokens::TokenError;

/// One platform's OAuth client registration and endpoint overrides
/// (`LISTBACKUP_PLATFORM_<ID>_{CLIENT_ID,CLIENT_SECRET,AUTH_URL,TOKEN_URL}`).
#[derive(Clone, Default)]
pub struct OauthClientConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// Replaces the catalog's authorization URL; may contain the account host's `{shop}` or `{subdomain}`.
    pub auth_url: Option<String>,
    /// Replaces the catalog's token URL; may contain the account host's `{shop}` or `{subdomain}`.
    pub token_url: Option<String>,
}

/// OAuth settings of the service. No `Debug`: it holds client secrets.
#[derive(Clone)]
pub struct OauthSettings {
    /// `LISTBACKUP_PUBLIC_URL`, without a trailing slash.
    pub public_url: String,
    /// Origins (`scheme://host[:port]`) a `returnUrl` may point to (`LISTBACKUP_ALLOWED_RETURN_ORIGINS`).
    pub allowed_return_origins: Vec<String>,
    pub clients: BTreeMap<String, OauthClientConfig>,
    /// How often the background refresher looks for tokens about to expire
    /// (`LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS`, default 60).
    pub refresh_interval: Duration,
}

impl OauthSettings {
    /// Reads the OAuth keys from any key/value source (the environment, a config file, a test map).
    pub fn from_lookup(
        public_url: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let value = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut allowed_return_origins = Vec::new();
        for raw in value("LISTBACKUP_ALLOWED_RETURN_ORIGINS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
        {
            let origin = origin_of(raw).ok_or_else(|| {
                format!("LISTBACKUP_ALLOWED_RETURN_ORIGINS: `{raw}` is not an http(s) origin")
            })?;
            allowed_return_origins.push(origin);
        }
        let clients = CATALOG
            .iter()
            .filter(|p| p.oauth.is_some())
            .map(|p| {
                let key = |suffix: &str| {
                    value(&format!(
                        "LISTBACKUP_PLATFORM_{}_{suffix}",
                        p.id.to_ascii_uppercase()
                    ))
                };
                let config = OauthClientConfig {
                    client_id: key("CLIENT_ID"),
                    client_secret: key("CLIENT_SECRET"),
                    auth_url: key("AUTH_URL"),
                    token_url: key("TOKEN_URL"),
                };
                (p.id.to_owned(), config)
            })
            .collect();
        let refresh_interval = match value("LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS") {
            None => Duration::from_secs(60),
            Some(raw) => raw
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or("LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS must be a number of seconds")?,
        };
        Ok(Self {
            public_url: public_url.trim().trim_end_matches('/').to_owned(),
            allowed_return_origins,
            clients,
            refresh_interval,
        })
    }

    /// The one redirect URI registered with every platform.
    pub fn redirect_uri(&self) -> String {
        format!("{}/connections/oauth/callback", self.public_url)
    }

    /// Whether `url` is an absolute http(s) URL on an allowed origin.
    pub fn return_url_allowed(&self, url: &str) -> bool {
        origin_of(url).is_some_and(|o| self.allowed_return_origins.contains(&o))
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL without credentials.
fn origin_of(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw).ok()?;
    let ok = matches!(url.scheme(), "http" | "https")
        && url.host_str().is_some()
        && url.username().is_empty()
        && url.password().is_none();
    ok.then(|| url.origin().ascii_serialization())
}

/// Why an OAuth operation failed. Messages never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum OauthError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("OAuth is not configured for {0} on this server")]
    NotConfigured(&'static str),
    #[error("the OAuth state is unknown, expired or already used: start the connection again")]
    UnknownState,
    #[error("the platform did not authorize the connection: {error}")]
    Denied { error: String },
    #[error("the platform's token endpoint refused the authorization: {0}")]
    TokenExchange(#[source] tokens::TokenError),
    #[error("the platform did not say which account was authorized: {0}")]
    UserInfo(#[source] crate::platform_client::IdentifyError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The OAuth state store or the server's own OAuth configuration failed (a 500 whose details stay in the
    /// log). `context` says what was being done; `source` is the underlying error when there is one, kept
    /// whole so a log prints its chain.
    #[error("OAuth storage failure: {context}")]
    Store {
        context: Cow<'static, str>,
        #[source]
        source: Option<BoxError>,
    },
}

impl From<VaultError> for OauthError {
    fn from(err: VaultError) -> Self {
        Self::Command(err.into())
    }
}

impl From<tokio_postgres::Error> for OauthError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::store("a query of the OAuth state store failed", err)
    }
}

impl From<deadpool_postgres::PoolError> for OauthError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Command(CommandError::unavailable(
            "the database is unavailable",
            err,
        ))
    }
}

impl OauthError {
    /// `context` failed because of `source`.
    pub fn store(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self::Store {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A stored or configured state that cannot be, found without any underlying error.
    pub fn corrupt(context: impl Into<Cow<'static, str>>) -> Self {
        Self::Store {
            context: context.into(),
            source: None,
        }
    }

    /// A short machine-readable reason for `returnUrl?error=…`.
    pub fn slug(&self) -> String {
        match self {
            Self::Invalid { .. } => "invalid_request".into(),
            Self::NotConfigured(_) => "not_configured".into(),
            Self::UnknownState => "invalid_state".into(),
            Self::Denied { error } => error.clone(),
            Self::TokenExchange(_) => "token_exchange_failed".into(),
            Self::UserInfo(_) => "user_info_failed".into(),
            Self::Command(_) | Self::Store { .. } => "server_error".into(),
        }
    }
}

/// The OAuth flow and the token lifecycle.
pub struct OauthService {
    bus: CommandBus<Connection>,
    vault: CredentialVault,
    db: deadpool_postgres::Pool,
    http: reqwest::Client,
    settings: OauthSettings,
    /// The platforms' identity calls (the account an authorization is for).
    identity: crate::platform_client::PlatformClient,
}

impl OauthService {
    pub fn new(
        bus: CommandBus<Connection>,
        vault: CredentialVault,
        db: deadpool_postgres::Pool,
        settings: OauthSettings,
        endpoints: PlatformEndpoints,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(20))
            // Token endpoints must not redirect (an authorization code or a token would follow the redirect).
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("listbackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with static settings always builds");
        Self {
            bus,
            vault,
            db,
            http,
            settings,
            identity: crate::platform_client::PlatformClient::new(endpoints),
        }
    }

    pub fn settings(&self) -> &OauthSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<OauthSettings, String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OauthSettings::from_lookup("https://api.listbackup.ai/", |k| map.get(k).cloned())
    }

    #[test]
    fn the_redirect_uri_is_the_public_url_plus_the_callback_path() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            s.redirect_uri(),
            "https://api.listbackup.ai/connections/oauth/callback"
        );
        assert_eq!(s.refresh_interval, Duration::from_secs(60));
    }

    #[test]
    fn return_urls_must_match_an_allowed_origin_exactly() {
        let s = settings(&[(
            "LISTBACKUP_ALLOWED_RETURN_ORIGINS",
            "https://app.listbackup.ai, http://localhost:3000/",
        )])
        .unwrap();
        assert!(s.return_url_allowed("https://app.listbackup.ai/connections?x=1"));
        assert!(s.return_url_allowed("http://localhost:3000"));
        for bad in [
            "https://app.listbackup.ai.evil.com/",
            "http://app.listbackup.ai/",
            "https://app.listbackup.ai:8443/",
            "https://evil.com@app.listbackup.ai/",
            "//app.listbackup.ai/x",
            "javascript:alert(1)",
            "data:text/html,x",
        ] {
            assert!(!s.return_url_allowed(bad), "{bad}");
        }
        assert!(!settings(&[])
            .unwrap()
            .return_url_allowed("https://app.listbackup.ai/"));
        assert!(settings(&[("LISTBACKUP_ALLOWED_RETURN_ORIGINS", "not an origin")]).is_err());
    }

    #[test]
    fn per_platform_clients_and_the_interval_are_read() {
        let s = settings(&[
            ("LISTBACKUP_PLATFORM_GOOGLE_CLIENT_ID", "gid"),
            ("LISTBACKUP_PLATFORM_GOOGLE_CLIENT_SECRET", "gsecret"),
            (
                "LISTBACKUP_PLATFORM_GOOGLE_TOKEN_URL",
                "http://127.0.0.1:9/token",
            ),
            ("LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS", "0.5"),
        ])
        .unwrap();
        let google = &s.clients["google"];
        assert_eq!(google.client_id.as_deref(), Some("gid"));
        assert_eq!(
            google.token_url.as_deref(),
            Some("http://127.0.0.1:9/token")
        );
        assert!(google.auth_url.is_none());
        assert!(!s.clients.contains_key("mailchimp"));
        assert_eq!(s.refresh_interval, Duration::from_millis(500));
        assert!(settings(&[("LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS", "-1")]).is_err());
    }
}
