use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{
    ConnectionAuth, ConnectionCommand, ConnectionEvent, ConnectionTestResult, ExternalAccount,
    AGGREGATE_TYPE,
};
use crate::error::{DomainError, ErrorKind};
use crate::{AccountOwned, ConnectionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Not created yet.
    #[default]
    New,
    Active,
    /// The platform refused the grant (`invalid_grant`): the customer must reconnect.
    Expired,
    Deleted,
}

/// The state a connection needs to decide on commands; the read model holds what is shown.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Connection {
    /// `None` until the stream names its connection (`ConnectionCreated`).
    id: Option<ConnectionId>,
    account_id: String,
    platform_id: String,
    status: ConnectionStatus,
    name: String,
    credential_fingerprint: String,
    last_test: Option<ConnectionTestResult>,
    #[serde(default)]
    auth_type: Option<ConnectionAuth>,
    #[serde(default)]
    external_account: Option<ExternalAccount>,
    /// The OAuth scopes the platform granted (the `grantedScopes` setting), when recorded.
    #[serde(default)]
    granted_scopes: Option<Vec<String>>,
}

/// The setting of an OAuth connection naming the scopes it was granted, space-separated.
pub const GRANTED_SCOPES: &str = "grantedScopes";

/// The granted scopes recorded in a connection's settings.
fn scopes_of(settings: &std::collections::BTreeMap<String, String>) -> Option<Vec<String>> {
    settings
        .get(GRANTED_SCOPES)
        .map(|scopes| scopes.split_whitespace().map(str::to_owned).collect())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("{}", crate::ResourceKind::Connection.not_found())]
    NotFound,
    #[error("the connection already exists")]
    AlreadyExists,
    #[error("the connection does not use OAuth")]
    NotOauth,
    #[error("the connection must be reconnected first: the platform no longer accepts its grant")]
    ReauthRequired,
    #[error("the authorization is for another platform account ({0}) than the connection's")]
    OtherExternalAccount(String),
}

impl DomainError for ConnectionError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists
            | Self::NotOauth
            | Self::ReauthRequired
            | Self::OtherExternalAccount(_) => ErrorKind::Conflict,
        }
    }
}

impl Connection {
    pub fn status(&self) -> ConnectionStatus {
        self.status
    }

    pub fn platform_id(&self) -> &str {
        &self.platform_id
    }

    pub fn credential_fingerprint(&self) -> &str {
        &self.credential_fingerprint
    }

    /// `oauth2` or `api_key` (`None` before creation).
    pub fn auth_type(&self) -> Option<ConnectionAuth> {
        self.auth_type
    }

    /// The OAuth scopes the platform granted, when the connection recorded them (connections made before
    /// they were recorded say nothing: `None`).
    pub fn granted_scopes(&self) -> Option<&[String]> {
        self.granted_scopes.as_deref()
    }

    pub fn external_account(&self) -> Option<&ExternalAccount> {
        self.external_account.as_ref()
    }

    /// Whether `account_id` may see this connection: it exists, is not deleted, and is theirs. An `expired`
    /// connection is live (it can be renamed, reconnected or deleted), just not usable until reconnected.
    pub fn is_live_for(&self, account_id: &str) -> bool {
        matches!(
            self.status,
            ConnectionStatus::Active | ConnectionStatus::Expired
        ) && self.account_id == account_id
    }

    /// Live and usable: not waiting for the customer to reconnect.
    pub fn is_active_for(&self, account_id: &str) -> bool {
        self.status == ConnectionStatus::Active && self.account_id == account_id
    }

    fn require_oauth(&self) -> Result<(), ConnectionError> {
        if self.auth_type == Some(ConnectionAuth::Oauth2) {
            Ok(())
        } else {
            Err(ConnectionError::NotOauth)
        }
    }

    /// A live connection of this account, or NotFound: deleted ones and other accounts' look the same.
    fn require_live(&self, account_id: &str) -> Result<(), ConnectionError> {
        if self.is_live_for(account_id) {
            Ok(())
        } else {
            Err(ConnectionError::NotFound)
        }
    }
}

impl AccountOwned for Connection {
    const KIND: crate::ResourceKind = crate::ResourceKind::Connection;
    type Id = crate::ConnectionId;

    fn owner_account(&self) -> Option<&str> {
        (self.status != ConnectionStatus::New).then_some(self.account_id.as_str())
    }
}

impl Aggregate for Connection {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = ConnectionCommand;
    type Event = ConnectionEvent;
    type Error = ConnectionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let account = command.account_id().as_str().to_owned();
        if !matches!(
            command,
            ConnectionCommand::Create { .. } | ConnectionCommand::CreateOauth { .. }
        ) {
            self.require_live(&account)?;
        }
        let event = match command {
            ConnectionCommand::Create {
                connection_id,
                account_id,
                platform_id,
                name,
                auth,
                settings,
                credential_fields,
                credential,
            } => {
                if self.status != ConnectionStatus::New {
                    return Err(ConnectionError::AlreadyExists);
                }
                ConnectionEvent::ConnectionCreated {
                    connection_id,
                    account_id: account_id.as_str().to_owned(),
                    platform_id: platform_id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    auth_type: auth,
                    settings,
                    credential_fields,
                    credential,
                    external_account: None,
                }
            }
            ConnectionCommand::CreateOauth {
                connection_id,
                account_id,
                platform_id,
                name,
                grant,
            } => {
                if self.status != ConnectionStatus::New {
                    return Err(ConnectionError::AlreadyExists);
                }
                ConnectionEvent::ConnectionCreated {
                    connection_id,
                    account_id: account_id.as_str().to_owned(),
                    platform_id: platform_id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    auth_type: ConnectionAuth::Oauth2,
                    settings: grant.settings,
                    credential_fields: grant.credential_fields,
                    credential: grant.credential,
                    external_account: grant.external_account,
                }
            }
            ConnectionCommand::Reauthorize { grant, .. } => {
                self.require_oauth()?;
                // Reconnecting must not silently turn the connection into another platform account's.
                if let (Some(known), Some(new)) = (&self.external_account, &grant.external_account)
                {
                    if known.id != new.id {
                        return Err(ConnectionError::OtherExternalAccount(new.name.clone()));
                    }
                }
                ConnectionEvent::ConnectionReauthorized {
                    settings: grant.settings,
                    credential_fields: grant.credential_fields,
                    credential: grant.credential,
                    external_account: grant.external_account,
                }
            }
            ConnectionCommand::RecordTokenRefresh {
                expires_at,
                credential,
                ..
            } => {
                self.require_oauth()?;
                if self.status == ConnectionStatus::Expired {
                    return Err(ConnectionError::ReauthRequired);
                }
                ConnectionEvent::TokenRefreshed {
                    expires_at,
                    credential,
                }
            }
            ConnectionCommand::RecordTokenRefreshFailure {
                reason, permanent, ..
            } => {
                self.require_oauth()?;
                sink.write(
                    ConnectionEvent::TokenRefreshFailed {
                        reason: reason.clone(),
                        permanent,
                    },
                    self,
                )
                .await;
                if permanent && self.status == ConnectionStatus::Active {
                    sink.write(ConnectionEvent::ConnectionReauthRequired { reason }, self)
                        .await;
                }
                return Ok(());
            }
            ConnectionCommand::Update {
                name, credentials, ..
            } => {
                // Only what actually changes is recorded.
                if let Some(name) = name.filter(|n| n.as_str() != self.name) {
                    sink.write(
                        ConnectionEvent::ConnectionRenamed {
                            name: name.as_str().to_owned(),
                        },
                        self,
                    )
                    .await;
                }
                if let Some(change) = credentials {
                    sink.write(
                        ConnectionEvent::CredentialsReplaced {
                            settings: change.settings,
                            credential_fields: change.credential_fields,
                            credential: change.credential,
                        },
                        self,
                    )
                    .await;
                }
                return Ok(());
            }
            ConnectionCommand::RecordTest {
                ok,
                latency_ms,
                message,
                checked_at,
                code,
                ..
            } => ConnectionEvent::ConnectionTested(ConnectionTestResult {
                ok,
                latency_ms,
                message,
                checked_at,
                code,
            }),
            ConnectionCommand::Delete { .. } => ConnectionEvent::ConnectionDeleted {},
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ConnectionEvent::ConnectionCreated {
                connection_id,
                account_id,
                platform_id,
                name,
                credential,
                auth_type,
                external_account,
                settings,
                ..
            } => {
                self.granted_scopes = scopes_of(&settings);
                self.id = Some(connection_id);
                self.account_id = account_id;
                self.platform_id = platform_id;
                self.name = name;
                self.credential_fingerprint = credential.fingerprint;
                self.auth_type = Some(auth_type);
                self.external_account = external_account;
                self.status = ConnectionStatus::Active;
            }
            ConnectionEvent::TokenRefreshed { credential, .. } => {
                self.credential_fingerprint = credential.fingerprint
            }
            ConnectionEvent::TokenRefreshFailed { .. } => {}
            ConnectionEvent::ConnectionReauthRequired { .. } => {
                self.status = ConnectionStatus::Expired
            }
            ConnectionEvent::ConnectionReauthorized {
                credential,
                external_account,
                settings,
                ..
            } => {
                if let Some(scopes) = scopes_of(&settings) {
                    self.granted_scopes = Some(scopes);
                }
                self.credential_fingerprint = credential.fingerprint;
                if external_account.is_some() {
                    self.external_account = external_account;
                }
                self.status = ConnectionStatus::Active;
            }
            ConnectionEvent::ConnectionRenamed { name } => self.name = name,
            ConnectionEvent::CredentialsReplaced { credential, .. } => {
                self.credential_fingerprint = credential.fingerprint
            }
            ConnectionEvent::ConnectionTested(result) => self.last_test = Some(result),
            ConnectionEvent::ConnectionDeleted {} => self.status = ConnectionStatus::Deleted,
        }
    }
}
