use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{ConnectionCommand, ConnectionEvent, ConnectionTestResult, AGGREGATE_TYPE};
use crate::error::{DomainError, ErrorKind};
use crate::AccountOwned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    /// Not created yet.
    #[default]
    New,
    Active,
    Deleted,
}

/// The state a connection needs to decide on commands; the read model holds what is shown.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Connection {
    id: String,
    account_id: String,
    platform_id: String,
    status: ConnectionStatus,
    name: String,
    credential_fingerprint: String,
    last_test: Option<ConnectionTestResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection not found")]
    NotFound,
    #[error("the connection already exists")]
    AlreadyExists,
}

impl DomainError for ConnectionError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists => ErrorKind::Conflict,
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

    /// Whether `account_id` may see this connection: it exists, is not deleted, and is theirs.
    pub fn is_live_for(&self, account_id: &str) -> bool {
        self.status == ConnectionStatus::Active && self.account_id == account_id
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
        if !matches!(command, ConnectionCommand::Create { .. }) {
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
                }
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
                ..
            } => ConnectionEvent::ConnectionTested(ConnectionTestResult {
                ok,
                latency_ms,
                message,
                checked_at,
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
                ..
            } => {
                self.id = connection_id;
                self.account_id = account_id;
                self.platform_id = platform_id;
                self.name = name;
                self.credential_fingerprint = credential.fingerprint;
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
