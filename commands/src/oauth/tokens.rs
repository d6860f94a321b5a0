//! The token endpoint, through the `oauth2` crate: authorization URLs with PKCE S256, the code exchange and the
//! refresh grant. The response type is our own so that the platforms' extra fields (Stripe's `stripe_user_id`,
//! HighLevel's `locationId`) are kept and a missing `token_type` (Shopify) is accepted.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use listbackup_domain::platform::{AccountHost, ClientAuth, Oauth, Platform};
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, Scope, StandardRevocableToken, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{OauthError, OauthSettings};

/// Any `token_type` (case as sent); Shopify sends none, which means Bearer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AnyTokenType(String);

impl Default for AnyTokenType {
    fn default() -> Self {
        Self("bearer".into())
    }
}

impl oauth2::TokenType for AnyTokenType {}

/// A token endpoint's answer, extra fields included.
#[derive(Serialize, Deserialize)]
pub struct ProviderTokenResponse {
    access_token: AccessToken,
    #[serde(default)]
    token_type: AnyTokenType,
    #[serde(default)]
    expires_in: Option<Value>,
    #[serde(default)]
    refresh_token: Option<RefreshToken>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

impl fmt::Debug for ProviderTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Extra fields may hold secrets too (Google's id_token): names only.
        f.debug_struct("ProviderTokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("extra", &self.extra.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl TokenResponse for ProviderTokenResponse {
    type TokenType = AnyTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &AnyTokenType {
        &self.token_type
    }

    fn expires_in(&self) -> Option<Duration> {
        // Some platforms send the number as a string.
        let seconds = match self.expires_in.as_ref()? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }?;
        Some(Duration::from_secs(seconds))
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

type ProviderClient = oauth2::Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// Tokens as issued, ready for the vault.
pub struct IssuedTokens {
    pub access_token: Zeroizing<String>,
    pub refresh_token: Option<Zeroizing<String>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Non-token fields of the response (secrets among them are never kept: see `token_settings`).
    pub extra: Map<String, Value>,
}

impl fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTokens")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl From<ProviderTokenResponse> for IssuedTokens {
    fn from(response: ProviderTokenResponse) -> Self {
        let expires_at = response
            .expires_in()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d);
        Self {
            access_token: Zeroizing::new(response.access_token.secret().clone()),
            refresh_token: response
                .refresh_token
                .as_ref()
                .map(|t| Zeroizing::new(t.secret().clone())),
            expires_at,
            extra: response.extra,
        }
    }
}

/// Why the token endpoint did not issue tokens.
#[derive(Debug)]
pub enum TokenError {
    /// The grant was refused for good (`invalid_grant`): the customer must authorize again.
    InvalidGrant(String),
    /// Anything else (network, 5xx, a malformed answer, a misconfigured client): may work later.
    Other(String),
}

impl TokenError {
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidGrant(m) | Self::Other(m) => m,
        }
    }
}

/// Fills the account host's `{placeholder}` (`{shop}`, `{subdomain}`) in an endpoint template.
fn endpoint(
    template: &str,
    account_host: Option<AccountHost>,
    value: Option<&str>,
) -> Result<String, OauthError> {
    let Some(host) = account_host else {
        return Ok(template.to_owned());
    };
    let placeholder = format!("{{{}}}", host.field);
    if template.contains(&placeholder) {
        let value = value.ok_or(OauthError::Invalid {
            field: host.field,
            message: "is required for this platform".into(),
        })?;
        Ok(template.replace(&placeholder, value))
    } else {
        Ok(template.to_owned())
    }
}

/// The OAuth client of one platform, from the catalog, the configured registration and the provider specifics.
pub fn client(
    settings: &OauthSettings,
    platform: &'static Platform,
    provider: &Oauth,
    account_host: Option<&str>,
) -> Result<ProviderClient, OauthError> {
    let endpoints = platform
        .oauth
        .ok_or(OauthError::NotConfigured(platform.name))?;
    let config = settings
        .clients
        .get(platform.id)
        .cloned()
        .unwrap_or_default();
    let (Some(client_id), Some(client_secret)) = (config.client_id, config.client_secret) else {
        return Err(OauthError::NotConfigured(platform.name));
    };
    let auth_url = endpoint(
        config
            .auth_url
            .as_deref()
            .unwrap_or(endpoints.authorize_url),
        provider.account_host,
        account_host,
    )?;
    let token_url = endpoint(
        config.token_url.as_deref().unwrap_or(endpoints.token_url),
        provider.account_host,
        account_host,
    )?;
    let misconfigured = |what: &str, err: oauth2::url::ParseError| {
        OauthError::store(format!("{}: invalid {what}", platform.id), err)
    };
    Ok(oauth2::Client::new(ClientId::new(client_id))
        .set_client_secret(ClientSecret::new(client_secret))
        .set_auth_uri(AuthUrl::new(auth_url).map_err(|e| misconfigured("authorization URL", e))?)
        .set_token_uri(TokenUrl::new(token_url).map_err(|e| misconfigured("token URL", e))?)
        .set_redirect_uri(
            RedirectUrl::new(settings.redirect_uri())
                .map_err(|e| misconfigured("public URL", e))?,
        )
        .set_auth_type(match provider.client_auth {
            ClientAuth::Basic => AuthType::BasicAuth,
            ClientAuth::RequestBody => AuthType::RequestBody,
        }))
}

/// The authorization URL for `state`, and the PKCE verifier to keep for the callback.
pub fn authorization_url(
    client: &ProviderClient,
    provider: &Oauth,
    scopes: &[String],
    state: &str,
) -> (url::Url, Zeroizing<String>) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = state.to_owned();
    let mut request = client
        .authorize_url(move || CsrfToken::new(state))
        .set_pkce_challenge(challenge);
    if provider.scope_separator == " " {
        request = request.add_scopes(scopes.iter().map(|s| Scope::new(s.clone())));
    } else {
        request = request.add_extra_param("scope", scopes.join(provider.scope_separator));
    }
    for (name, value) in provider.authorize_params {
        request = request.add_extra_param(*name, *value);
    }
    let (url, _) = request.url();
    (url, Zeroizing::new(verifier.secret().clone()))
}

fn token_error(
    err: RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>,
) -> TokenError {
    match err {
        RequestTokenError::ServerResponse(response) => {
            // The error code is a fixed vocabulary; the description is the platform's own text, without secrets.
            let code = response.error().to_string();
            let description = response
                .error_description()
                .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            let message = format!("{code}{description}");
            if *response.error() == BasicErrorResponseType::InvalidGrant {
                TokenError::InvalidGrant(message)
            } else {
                TokenError::Other(message)
            }
        }
        RequestTokenError::Request(e) => TokenError::Other(match e {
            oauth2::HttpClientError::Reqwest(e) if e.is_timeout() => "the request timed out".into(),
            oauth2::HttpClientError::Reqwest(e) if e.is_connect() => {
                "the token endpoint could not be reached".into()
            }
            _ => "the request failed".into(),
        }),
        // Neither the parse error nor the body is shown: both may contain a token.
        RequestTokenError::Parse(_, _) => {
            TokenError::Other("the token endpoint's answer is not a token response".into())
        }
        RequestTokenError::Other(message) => TokenError::Other(message.chars().take(200).collect()),
    }
}

pub async fn exchange_code(
    http: &reqwest::Client,
    client: &ProviderClient,
    code: &str,
    verifier: &str,
) -> Result<IssuedTokens, TokenError> {
    client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(http)
        .await
        .map(IssuedTokens::from)
        .map_err(token_error)
}

pub async fn refresh(
    http: &reqwest::Client,
    client: &ProviderClient,
    refresh_token: &str,
) -> Result<IssuedTokens, TokenError> {
    client
        .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
        .request_async(http)
        .await
        .map(IssuedTokens::from)
        .map_err(token_error)
}
