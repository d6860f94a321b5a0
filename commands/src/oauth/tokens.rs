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

/// Why the token endpoint did not issue tokens. The messages never hold a secret: an error code and the
/// platform's description, or what went wrong with the request; the transport's own error is kept as the
/// source (for the log's chain), the answer's body and its parse error are not (both may hold a token).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The grant was refused for good (`invalid_grant`, RFC 6749 §5.2): the customer must authorize again.
    #[error("{0}")]
    InvalidGrant(String),
    /// Another error code of RFC 6749 §5.2 (`invalid_client`, `temporarily_unavailable`…), with the platform's
    /// description: may work later.
    #[error("{0}")]
    Refused(String),
    /// The request got no answer (a timeout, a refused connection, TLS): may work later.
    #[error("{message}")]
    Unreachable {
        message: &'static str,
        #[source]
        source: oauth2::HttpClientError<reqwest::Error>,
    },
    /// The answer is not a token response.
    #[error("the token endpoint's answer is not a token response")]
    Malformed,
    /// Anything else the `oauth2` crate refused (its own message, cut to 200 characters: `oauth2`'s
    /// `RequestTokenError::Other` carries only text, no error to keep as a source).
    #[error("{0}")]
    Other(String),
}

impl TokenError {
    /// What went wrong, without the source: recorded in events (`TokenRefreshFailed`'s reason) and shown.
    pub fn message(&self) -> &str {
        match self {
            Self::InvalidGrant(m) | Self::Refused(m) | Self::Other(m) => m,
            Self::Unreachable { message, .. } => message,
            Self::Malformed => "the token endpoint's answer is not a token response",
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
        // Checked again at every use (a refresh reads it back from the vault): the value is part of the
        // host the tokens are sent to.
        let value = host.parse(value).ok_or_else(|| OauthError::Invalid {
            field: host.field,
            message: format!("must be {}", host.example),
        })?;
        Ok(template.replace(&placeholder, &value))
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
                TokenError::Refused(message)
            }
        }
        RequestTokenError::Request(source) => TokenError::Unreachable {
            message: match &source {
                oauth2::HttpClientError::Reqwest(e) if e.is_timeout() => "the request timed out",
                oauth2::HttpClientError::Reqwest(e) if e.is_connect() => {
                    "the token endpoint could not be reached"
                }
                _ => "the request failed",
            },
            // Without its URL, as a platform request's error (`platform_client::unreachable_message`): the chain
            // may end up in a job's failure message.
            source: match source {
                oauth2::HttpClientError::Reqwest(e) => {
                    oauth2::HttpClientError::Reqwest(Box::new(e.without_url()))
                }
                other => other,
            },
        },
        // Neither the parse error nor the body is kept: both may contain a token.
        RequestTokenError::Parse(_, _) => TokenError::Malformed,
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[tokio::test]
    async fn a_request_that_got_no_answer_keeps_the_transport_error_as_its_source() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let refused = reqwest::Client::new()
            .get("http://127.0.0.1:1/token")
            .send()
            .await
            .unwrap_err();
        let err = token_error(RequestTokenError::Request(
            oauth2::HttpClientError::Reqwest(Box::new(refused)),
        ));
        assert!(matches!(err, TokenError::Unreachable { .. }), "{err:?}");
        assert_eq!(err.message(), "the token endpoint could not be reached");
        assert_eq!(err.to_string(), err.message());
        // The chain goes down to reqwest's own error, without the URL (nor a body), to the refused connection.
        let transport = err.source().expect("the transport error is kept");
        let reqwest = transport.source().expect("oauth2 keeps reqwest's error");
        // oauth2 boxes it (`HttpClientError::Reqwest(Box<reqwest::Error>)`).
        let reqwest = reqwest
            .downcast_ref::<Box<reqwest::Error>>()
            .expect("reqwest's error");
        assert!(reqwest.url().is_none(), "{reqwest:?}");
        let chain = crate::error_chain(&err);
        assert!(!chain.contains("127.0.0.1"), "{chain}");
        assert!(chain.to_lowercase().contains("refused"), "{chain}");
        // Wrapped as the callback's error, the message clients see is unchanged and the chain continues.
        let oauth = OauthError::TokenExchange(err);
        assert_eq!(
            oauth.to_string(),
            "the platform's token endpoint refused the authorization: the token endpoint could not be reached"
        );
        assert!(oauth.source().and_then(|s| s.source()).is_some());
    }

    #[test]
    fn an_answer_that_is_not_a_token_response_keeps_neither_body_nor_parse_error() {
        let body = br#"{"access_token": 7, "token_type": "secret-looking"}"#.to_vec();
        let parse = serde_path_to_error::deserialize::<_, serde_json::Value>(
            &mut serde_json::Deserializer::from_slice(b"{"),
        )
        .unwrap_err();
        let err = token_error(RequestTokenError::Parse(parse, body));
        assert!(matches!(err, TokenError::Malformed));
        assert!(err.source().is_none());
        assert!(!format!("{err:?}").contains("secret-looking"));
    }
}
