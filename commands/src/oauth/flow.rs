//! Start → platform → callback: the authorization-code flow that creates (or reconnects) a connection.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use listbackup_domain::connection::{
    ConnectionAuth, ConnectionCommand, ExternalAccount, OauthGrant, GRANTED_SCOPES,
};
use listbackup_domain::platform::{AuthType, Oauth, Platform, PlatformId, OAUTH_ACCESS_TOKEN};
use listbackup_domain::values::{AccountId, DisplayName};
use zeroize::Zeroizing;

use super::state::{self, PendingAuthorization};
use super::tokens::{self, IssuedTokens};
use super::{OauthError, OauthService};
use crate::bus::CommandError;
use crate::metadata::EventMetadata;
use crate::platform_client::{Identified, IdentifyError};
use crate::vault::SecretCredentials;

/// Vault field names of an OAuth connection, next to `accessToken`.
pub(super) const REFRESH_TOKEN: &str = "refreshToken";
pub(super) const EXPIRES_AT: &str = "expiresAt";

/// `POST /connections/oauth/start`, parsed.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub account_id: String,
    pub user_id: String,
    pub platform_id: String,
    pub name: Option<String>,
    pub return_url: Option<String>,
    /// Shopify's shop (`<name>.myshopify.com`): the platform's `Oauth::account_host`.
    pub shop: Option<String>,
    /// Zendesk's subdomain (`<subdomain>.zendesk.com`): the platform's `Oauth::account_host`.
    pub subdomain: Option<String>,
    /// The data types the customer means to back up: the authorization asks for their scopes only (the
    /// platform's base scopes, then each data type's). `None`: every data type's.
    pub data_types: Option<Vec<String>>,
    /// Ask for the write scopes of those data types as well (of every writable one when `None`), which a
    /// restore through the connection needs ([`RecordWrites::scopes`](listbackup_domain::platform::writes::RecordWrites::scopes)).
    pub write_access: bool,
}

#[derive(Debug, Clone)]
pub struct Started {
    pub authorization_url: String,
    /// Returned to the client as well (the platform hands it back to the callback).
    pub state: String,
    pub expires_at: DateTime<Utc>,
}

/// What the platform sent to the redirect URI.
#[derive(Debug, Clone, Default)]
pub struct CallbackParams {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    /// Everything else (QuickBooks' `realmId`, Shopify's `shop`).
    pub extra: BTreeMap<String, String>,
}

/// A completed authorization.
#[derive(Debug, Clone)]
pub struct Connected {
    pub connection_id: listbackup_domain::ConnectionId,
    pub account_id: String,
    pub version: u64,
    pub return_url: Option<String>,
    /// True when an existing connection was reconnected.
    pub reconnected: bool,
}

/// A failed callback, with where to send the browser when the state named a return URL.
#[derive(Debug)]
pub struct CallbackFailure {
    pub error: OauthError,
    pub return_url: Option<String>,
}

/// The value naming the account's own authorization server ([`AccountHost`]), validated: required by a
/// platform that has one, refused by the others.
fn account_host(provider: &Oauth, request: &StartRequest) -> Result<Option<String>, OauthError> {
    let given = [("shop", &request.shop), ("subdomain", &request.subdomain)];
    for (field, value) in given {
        if value.is_some() && provider.account_host.map(|h| h.field) != Some(field) {
            return Err(invalid(field, "does not apply to this platform"));
        }
    }
    let Some(host) = provider.account_host else {
        return Ok(None);
    };
    let raw = given
        .iter()
        .find(|(field, _)| *field == host.field)
        .and_then(|(_, value)| value.as_deref())
        .ok_or_else(|| invalid(host.field, "is required for this platform"))?;
    host.parse(raw)
        .map(Some)
        .ok_or_else(|| invalid(host.field, format!("must be {}", host.example)))
}

fn invalid(field: &'static str, message: impl Into<String>) -> OauthError {
    OauthError::Invalid {
        field,
        message: message.into(),
    }
}

impl OauthService {
    /// Validates the request and returns the platform's authorization URL with a fresh single-use state.
    pub async fn start(&self, request: StartRequest) -> Result<Started, OauthError> {
        let platform = PlatformId::parse(&request.platform_id)
            .ok_or_else(|| invalid("platformId", "is not a known platform (see GET /platforms)"))?
            .platform();
        if !platform.supports(AuthType::Oauth2) {
            return Err(invalid(
                "platformId",
                "does not connect through OAuth: use POST /connections with an API key",
            ));
        }
        if let Some(name) = &request.name {
            DisplayName::parse(name).map_err(|m| invalid("name", m))?;
        }
        self.begin(platform, request, None, None).await
    }

    /// Runs the flow again for an existing OAuth connection of the account; its tokens are replaced at the
    /// callback.
    pub async fn reconnect(
        &self,
        account_id: &str,
        user_id: &str,
        connection_id: &listbackup_domain::ConnectionId,
        return_url: Option<String>,
        data_types: Option<Vec<String>>,
        write_access: bool,
    ) -> Result<Started, OauthError> {
        let (connection, _) = self.bus.load(connection_id).await?;
        // The vault and the pending authorization name the connection by its text.
        let connection_id = connection_id.to_string();
        if !connection.is_live_for(account_id) {
            return Err(
                CommandError::not_found(listbackup_domain::ResourceKind::Connection).into(),
            );
        }
        if connection.auth_type() != Some(ConnectionAuth::Oauth2) {
            return Err(CommandError::Domain {
                kind: listbackup_domain::ErrorKind::Conflict,
                field: None,
                message: "the connection uses an API key: replace its credentials with PUT instead"
                    .into(),
            }
            .into());
        }
        let platform = PlatformId::parse(connection.platform_id())
            .ok_or_else(|| OauthError::corrupt("connection names an unknown platform"))?
            .platform();
        // The account's own authorization server (Shopify's shop, Zendesk's subdomain) is part of the
        // connection: read it from the vault (it is a setting there too).
        let host_field = platform.oauth.and_then(|o| o.account_host).map(|h| h.field);
        let host = match (
            host_field,
            self.vault.load(account_id, &connection_id).await?,
        ) {
            (Some(field), Some(secret)) => secret.get(field).map(str::to_owned),
            _ => None,
        };
        let request = StartRequest {
            account_id: account_id.to_owned(),
            user_id: user_id.to_owned(),
            platform_id: platform.id.to_owned(),
            name: None,
            return_url,
            shop: host.clone().filter(|_| host_field == Some("shop")),
            subdomain: host.filter(|_| host_field == Some("subdomain")),
            data_types,
            write_access,
        };
        // A reconnection keeps what was granted and asks for more where data types need it: the platforms
        // grant the union (Google with `include_granted_scopes`), and nothing a source backs up is lost.
        let granted = connection.granted_scopes().map(<[String]>::to_vec);
        self.begin(platform, request, Some(connection_id), granted)
            .await
    }

    async fn begin(
        &self,
        platform: &'static Platform,
        request: StartRequest,
        connection_id: Option<String>,
        granted: Option<Vec<String>>,
    ) -> Result<Started, OauthError> {
        let provider = platform
            .oauth
            .as_ref()
            .ok_or(OauthError::NotConfigured(platform.name))?;
        let scopes = requested_scopes(
            platform,
            request.data_types.as_deref(),
            granted,
            request.write_access,
        )?;
        if let Some(url) = &request.return_url {
            if !self.settings.return_url_allowed(url) {
                return Err(invalid(
                    "returnUrl",
                    "must be an absolute URL on an allowed origin (LISTBACKUP_ALLOWED_RETURN_ORIGINS)",
                ));
            }
        }
        let host = account_host(provider, &request)?;
        let client = tokens::client(&self.settings, platform, provider, host.as_deref())?;
        let state = state::new_state();
        let (url, verifier) = tokens::authorization_url(&client, provider, &scopes, &state);
        let pending = PendingAuthorization {
            account_id: request.account_id,
            user_id: request.user_id,
            platform_id: platform.id.to_owned(),
            connection_id,
            name: request.name,
            return_url: request.return_url,
            account_host: host,
            scopes,
        };
        let expires_at = state::save(&self.db, &state, &verifier, &pending).await?;
        Ok(Started {
            authorization_url: url.to_string(),
            state: state.to_string(),
            expires_at,
        })
    }

    /// Completes the flow: consumes the state, exchanges the code (with the PKCE verifier), asks the platform
    /// who authorized, seals the tokens in the vault and creates (or reauthorizes) the connection. Any
    /// failure leaves nothing behind.
    pub async fn callback(
        &self,
        params: CallbackParams,
        request_id: &str,
    ) -> Result<Connected, CallbackFailure> {
        let fail = |error, return_url| CallbackFailure { error, return_url };
        let state = params
            .state
            .as_deref()
            .ok_or_else(|| fail(OauthError::UnknownState, None))?;
        let consumed = state::consume(&self.db, state)
            .await
            .map_err(|e| fail(e, None))?;
        let return_url = consumed.pending.return_url.clone();
        self.complete(consumed, params, request_id)
            .await
            .map_err(|e| fail(e, return_url))
    }

    async fn complete(
        &self,
        consumed: state::Consumed,
        params: CallbackParams,
        request_id: &str,
    ) -> Result<Connected, OauthError> {
        let pending = &consumed.pending;
        if let Some(error) = &params.error {
            // The platform's error code is a short token (RFC 6749 §4.1.2.1); keep it so, nothing else.
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(OauthError::Denied {
                error: if error.is_empty() {
                    "access_denied".into()
                } else {
                    error
                },
            });
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("code", "is missing from the callback"))?;
        let platform = PlatformId::parse(&pending.platform_id)
            .ok_or_else(|| OauthError::corrupt("state names an unknown platform"))?
            .platform();
        let provider = platform
            .oauth
            .as_ref()
            .ok_or(OauthError::NotConfigured(platform.name))?;
        // A callback that names the account (Shopify's `shop`) must name the one authorized.
        if let (Some(expected), Some(host)) = (&pending.account_host, provider.account_host) {
            if let Some(got) = params.extra.get(host.field) {
                if !got.eq_ignore_ascii_case(expected) {
                    return Err(invalid(
                        host.field,
                        "the callback names another account than the one authorized",
                    ));
                }
            }
        }
        if provider.signed_callback {
            self.verify_shopify_hmac(platform.id, &params)?;
        }
        let client = tokens::client(
            &self.settings,
            platform,
            provider,
            pending.account_host.as_deref(),
        )?;
        let issued = tokens::exchange_code(&self.http, &client, code, &consumed.verifier)
            .await
            .map_err(OauthError::TokenExchange)?;

        let settings = settings_of(provider, pending, &params, &issued)?;
        let secret = secret_of(&settings, &issued, None);
        let external = self.user_info(platform, &secret).await?;

        let metadata = EventMetadata::for_request(
            &pending.account_id,
            format!("user:{}", pending.user_id),
            request_id,
        );
        let account_id =
            AccountId::parse(&pending.account_id).map_err(|m| invalid("account", m))?;
        let grant_fields: Vec<String> = secret
            .fields()
            .filter(|f| *f != EXPIRES_AT)
            .map(str::to_owned)
            .collect();
        match &pending.connection_id {
            None => {
                let id = listbackup_domain::ConnectionId::new();
                let connection_id = id.to_string();
                let name = default_name(pending.name.as_deref(), platform, &external);
                // Stored by the statement that records ConnectionCreated, or not at all.
                let (sealed, vault_row) =
                    self.vault
                        .seal_new(&pending.account_id, &connection_id, &secret)?;
                let command = ConnectionCommand::CreateOauth {
                    connection_id: id,
                    account_id,
                    platform_id: PlatformId::parse(platform.id).expect("catalog id"),
                    name,
                    grant: OauthGrant {
                        settings,
                        credential_fields: grant_fields,
                        credential: sealed.into(),
                        external_account: Some(external),
                    },
                };
                let committed = self
                    .bus
                    .execute_new_with(&id, command, &metadata, Some(vault_row))
                    .await?;
                self.track_tokens(&pending.account_id, &connection_id, platform.id, &issued)
                    .await?;
                Ok(Connected {
                    connection_id: id,
                    account_id: pending.account_id.clone(),
                    version: committed.version,
                    return_url: pending.return_url.clone(),
                    reconnected: false,
                })
            }
            Some(connection_id) => {
                // Check before the vault is touched: a refused reconnect must not replace working tokens.
                let id: listbackup_domain::ConnectionId = crate::typed_id(connection_id)?;
                let (connection, _) = self.bus.load(&id).await?;
                if !connection.is_live_for(&pending.account_id)
                    || connection.platform_id() != platform.id
                {
                    return Err(CommandError::not_found(
                        listbackup_domain::ResourceKind::Connection,
                    )
                    .into());
                }
                if let Some(known) = connection.external_account() {
                    if known.id != external.id {
                        return Err(OauthError::Command(CommandError::Domain {
                            kind: listbackup_domain::ErrorKind::Conflict,
                            field: None,
                            message: format!(
                                "the platform authorized another account ({}) than the connection's ({})",
                                external.name, known.name
                            ),
                        }));
                    }
                }
                // Serialize with refreshers: the tokens are replaced under the same per-connection lock.
                let lock = self.lock_connection(connection_id).await?;
                let credential = self
                    .vault
                    .store(&pending.account_id, connection_id, &secret)
                    .await?;
                let command = ConnectionCommand::Reauthorize {
                    account_id,
                    grant: OauthGrant {
                        settings,
                        credential_fields: grant_fields,
                        credential: listbackup_domain::values::CredentialRef {
                            key_id: credential.key_id,
                            fingerprint: credential.fingerprint,
                        },
                        external_account: Some(external),
                    },
                };
                let committed = self.bus.execute(&id, command, &metadata, None).await?;
                self.track_tokens(&pending.account_id, connection_id, platform.id, &issued)
                    .await?;
                lock.release().await;
                Ok(Connected {
                    connection_id: id,
                    account_id: pending.account_id.clone(),
                    version: committed.version,
                    return_url: pending.return_url.clone(),
                    reconnected: true,
                })
            }
        }
    }

    /// Shopify signs its redirect: HMAC-SHA256 with the app's client secret over the other parameters, sorted and
    /// joined as `k=v&…`, hex encoded in `hmac`.
    fn verify_shopify_hmac(
        &self,
        platform_id: &str,
        params: &CallbackParams,
    ) -> Result<(), OauthError> {
        let secret = self
            .settings
            .clients
            .get(platform_id)
            .and_then(|c| c.client_secret.as_deref())
            .ok_or(OauthError::NotConfigured("Shopify"))?;
        let signed = params
            .extra
            .get("hmac")
            .ok_or_else(|| invalid("hmac", "Shopify's callback signature is missing"))?;
        let mut pairs: Vec<(&str, &str)> = params
            .extra
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "hmac" | "signature"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(params.code.as_deref().map(|c| ("code", c)))
            .chain(params.state.as_deref().map(|s| ("state", s)))
            .chain(params.error.as_deref().map(|e| ("error", e)))
            .collect();
        pairs.sort();
        let message = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        // `verify_slice` compares in constant time, so the time taken does not tell how much of a forgery
        // was right.
        let same = hex::decode(signed.trim()).is_ok_and(|signature| {
            let mut mac =
                <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_bytes())
                    .expect("HMAC takes a key of any length");
            hmac::Mac::update(&mut mac, message.as_bytes());
            hmac::Mac::verify_slice(mac, &signature).is_ok()
        });
        if same {
            Ok(())
        } else {
            Err(invalid(
                "hmac",
                "Shopify's callback signature does not match",
            ))
        }
    }

    /// Asks the platform which account the access token belongs to: its identity call, the same one the
    /// connection test makes. Without an id in the answer, the account is the platform's setting that names
    /// it (QuickBooks' realm), or else its name.
    async fn user_info(
        &self,
        platform: &'static Platform,
        secret: &SecretCredentials,
    ) -> Result<ExternalAccount, OauthError> {
        let identity = &platform.identity;
        match self.identity.identify(platform, secret.expose()).await {
            Ok(Identified::Account { id, name }) => {
                let id = id
                    .or_else(|| {
                        identity
                            .id_setting
                            .and_then(|s| secret.get(s))
                            .map(str::to_owned)
                    })
                    .or_else(|| name.clone())
                    .ok_or(OauthError::UserInfo(IdentifyError::NoAccountId))?;
                Ok(ExternalAccount {
                    name: name.unwrap_or_else(|| id.clone()),
                    id,
                })
            }
            Ok(Identified::Anonymous) => Err(OauthError::UserInfo(IdentifyError::Anonymous)),
            Err(err) => Err(OauthError::UserInfo(err)),
        }
    }
}

/// Letters, digits, `.`, `-` and `_`: safe as one URL path segment.
pub(super) fn is_segment(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 200
        && !value.starts_with('.')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The scopes an authorization asks for: the platform's base scopes and those of `data_types` (every data
/// type's when `None`), then their write scopes with `write_access`, after those already `granted` when
/// reconnecting. A name that is not a data type of the platform is refused. A platform that takes one scope
/// ([`Oauth::single_scope`](listbackup_domain::platform::Oauth::single_scope)) gets the broadest: a write
/// scope if any, else the last.
fn requested_scopes(
    platform: &Platform,
    data_types: Option<&[String]>,
    granted: Option<Vec<String>>,
    write_access: bool,
) -> Result<Vec<String>, OauthError> {
    let names: Option<Vec<&str>> = data_types.map(|d| d.iter().map(String::as_str).collect());
    if let Some(unknown) = names
        .iter()
        .flatten()
        .find(|name| platform.data_type(name).is_none())
    {
        return Err(invalid(
            "dataTypes",
            format!(
                "`{unknown}` is not a data type of {} (see GET /platforms/{})",
                platform.name, platform.id
            ),
        ));
    }
    let mut scopes = granted.unwrap_or_default();
    let mut wanted = platform.scopes_for(names.as_deref());
    if write_access {
        wanted.extend(platform.write_scopes_for(names.as_deref()));
    }
    for scope in wanted {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if platform.oauth.is_some_and(|o| o.single_scope) && scopes.len() > 1 {
        // A write scope granted or wanted wins (it reads as well), so a reconnection never loses it.
        let writes = platform.write_scopes_for(None);
        let broadest = scopes
            .iter()
            .find(|s| writes.contains(&s.as_str()))
            .or(scopes.last())
            .cloned();
        scopes = broadest.into_iter().collect();
    }
    Ok(scopes)
}

/// The scopes the platform says it granted (`scope` of the token answer, RFC 6749 §5.1: space-separated;
/// Shopify separates them with commas), or else the ones asked for.
fn granted_scopes(issued: &IssuedTokens, asked: &[String]) -> String {
    match issued
        .extra
        .get("scope")
        .and_then(serde_json::Value::as_str)
    {
        Some(scope) if !scope.trim().is_empty() => scope
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
        _ => asked.join(" "),
    }
}

/// The non-secret values the connection keeps: the account's host (Shopify's shop, Zendesk's subdomain),
/// callback parameters, token response fields.
fn settings_of(
    provider: &Oauth,
    pending: &PendingAuthorization,
    params: &CallbackParams,
    issued: &IssuedTokens,
) -> Result<BTreeMap<String, String>, OauthError> {
    let mut settings = BTreeMap::new();
    if let (Some(value), Some(host)) = (&pending.account_host, provider.account_host) {
        settings.insert(host.field.to_owned(), value.clone());
    }
    settings.insert(
        GRANTED_SCOPES.to_owned(),
        granted_scopes(issued, &pending.scopes),
    );
    for name in provider.callback_settings {
        let value = params
            .extra
            .get(*name)
            .filter(|v| is_segment(v))
            .ok_or_else(|| {
                invalid(
                    "callback",
                    format!("the platform did not send a valid `{name}`"),
                )
            })?;
        settings.insert((*name).to_owned(), value.clone());
    }
    for (field, name) in provider.token_settings {
        let value = match issued.extra.get(*field) {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if let Some(value) = value.filter(|v| is_segment(v)) {
            settings.insert((*name).to_owned(), value);
        }
    }
    Ok(settings)
}

/// The vault's content for an OAuth connection: settings, tokens, expiry. A refresh without a new refresh
/// token keeps `previous_refresh` (the platform did not rotate it).
pub(super) fn secret_of(
    settings: &BTreeMap<String, String>,
    issued: &IssuedTokens,
    previous_refresh: Option<&str>,
) -> SecretCredentials {
    let mut map = settings.clone();
    map.insert(
        OAUTH_ACCESS_TOKEN.to_owned(),
        issued.access_token.to_string(),
    );
    let refresh = issued
        .refresh_token
        .as_ref()
        .map(|t| Zeroizing::new(t.to_string()))
        .or_else(|| previous_refresh.map(|t| Zeroizing::new(t.to_owned())));
    if let Some(refresh) = refresh {
        map.insert(REFRESH_TOKEN.to_owned(), refresh.to_string());
    }
    if let Some(expires_at) = issued.expires_at {
        map.insert(EXPIRES_AT.to_owned(), expires_at.to_rfc3339());
    }
    SecretCredentials::new(map)
}

fn default_name(
    requested: Option<&str>,
    platform: &Platform,
    external: &ExternalAccount,
) -> DisplayName {
    requested
        .and_then(|n| DisplayName::parse(n).ok())
        .or_else(|| DisplayName::parse(&format!("{} ({})", platform.name, external.name)).ok())
        .unwrap_or_else(|| DisplayName::parse(platform.name).expect("catalog names are valid"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use listbackup_domain::platform::find;

    fn asked(
        platform: &str,
        data_types: Option<&[&str]>,
        granted: &[&str],
        write: bool,
    ) -> Vec<String> {
        let names: Option<Vec<String>> =
            data_types.map(|d| d.iter().map(|s| (*s).to_owned()).collect());
        let granted =
            (!granted.is_empty()).then(|| granted.iter().map(|s| (*s).to_owned()).collect());
        requested_scopes(find(platform).unwrap(), names.as_deref(), granted, write)
            .ok()
            .unwrap()
    }

    #[test]
    fn write_access_adds_the_write_scopes_of_the_data_types_asked_for() {
        assert_eq!(
            asked("hubspot", Some(&["contacts"]), &[], false),
            ["oauth", "crm.objects.contacts.read"]
        );
        assert_eq!(
            asked("hubspot", Some(&["contacts", "notes"]), &[], true),
            [
                "oauth",
                "crm.objects.contacts.read",
                "crm.objects.contacts.write"
            ]
        );
        // Every writable data type's when none are named.
        let all = asked("hubspot", None, &[], true);
        for scope in ["crm.objects.companies.write", "crm.objects.deals.write"] {
            assert!(all.iter().any(|s| s == scope), "{all:?}");
        }
        // A platform whose one scope covers writes asks for nothing more.
        assert_eq!(
            asked("quickbooks", None, &[], true),
            ["com.intuit.quickbooks.accounting"]
        );
    }

    #[test]
    fn a_single_scope_platform_gets_the_broadest_and_keeps_it_on_reconnection() {
        assert_eq!(asked("stripe", None, &[], false), ["read_only"]);
        assert_eq!(asked("stripe", None, &[], true), ["read_write"]);
        assert_eq!(
            asked("stripe", None, &["read_write"], false),
            ["read_write"]
        );
    }
}
