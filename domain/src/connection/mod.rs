//! The Connection aggregate: a customer's authenticated link to one platform account.

mod aggregate;
mod commands;
mod events;

#[cfg(test)]
mod tests;

pub use aggregate::{Connection, ConnectionError, ConnectionStatus, GRANTED_SCOPES};
pub use commands::{ConnectionCommand, CredentialsChange, OauthGrant};
pub use events::{ConnectionEvent, ConnectionTestResult, ExternalAccount};

use crate::platform::AuthType;
use serde::{Deserialize, Serialize};

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "connection";

/// Serialized form of [`AuthType`] inside events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionAuth {
    Oauth2,
    ApiKey,
}

impl From<AuthType> for ConnectionAuth {
    fn from(value: AuthType) -> Self {
        match value {
            AuthType::Oauth2 => Self::Oauth2,
            AuthType::ApiKey => Self::ApiKey,
        }
    }
}

impl ConnectionAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oauth2 => "oauth2",
            Self::ApiKey => "api_key",
        }
    }
}
