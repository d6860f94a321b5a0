use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::ConnectionAuth;
use crate::values::CredentialRef;
use crate::ConnectionId;

/// What happened to a connection. No variant ever holds a secret: credentials appear as a [`CredentialRef`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionEvent {
    #[serde(rename_all = "camelCase")]
    ConnectionCreated {
        connection_id: ConnectionId,
        account_id: String,
        platform_id: String,
        name: String,
        auth_type: ConnectionAuth,
        settings: BTreeMap<String, String>,
        credential_fields: Vec<String>,
        credential: CredentialRef,
        /// The platform account an OAuth connection authorized (absent for API-key connections).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_account: Option<ExternalAccount>,
    },
    #[serde(rename_all = "camelCase")]
    ConnectionRenamed {
        name: String,
    },
    #[serde(rename_all = "camelCase")]
    CredentialsReplaced {
        settings: BTreeMap<String, String>,
        credential_fields: Vec<String>,
        credential: CredentialRef,
    },
    ConnectionTested(ConnectionTestResult),
    /// The OAuth access token was renewed with the refresh token; the new tokens are in the vault.
    #[serde(rename_all = "camelCase")]
    TokenRefreshed {
        /// When the new access token expires (`None`: the platform did not say).
        expires_at: Option<DateTime<Utc>>,
        credential: CredentialRef,
    },
    /// Renewing the access token failed. `permanent` when the grant itself was refused (`invalid_grant`).
    #[serde(rename_all = "camelCase")]
    TokenRefreshFailed {
        reason: String,
        permanent: bool,
    },
    /// The platform no longer honours the grant: the customer must authorize again (status `expired`).
    #[serde(rename_all = "camelCase")]
    ConnectionReauthRequired {
        reason: String,
    },
    /// The customer authorized again (reconnect): new tokens are in the vault, the connection is active.
    #[serde(rename_all = "camelCase")]
    ConnectionReauthorized {
        settings: BTreeMap<String, String>,
        credential_fields: Vec<String>,
        credential: CredentialRef,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_account: Option<ExternalAccount>,
    },
    #[serde(rename_all = "camelCase")]
    ConnectionDeleted {},
}

/// The account on the platform side that an OAuth grant belongs to (from the platform's user-info endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAccount {
    pub id: String,
    pub name: String,
}

/// The outcome of calling the platform's test endpoint with the stored credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTestResult {
    pub ok: bool,
    pub latency_ms: u64,
    pub message: String,
    pub checked_at: DateTime<Utc>,
    /// Why the test failed, an error code of DESIGN §4 (`UNAUTHORIZED`, `FORBIDDEN`, `RATE_LIMITED`,
    /// `PLATFORM_ERROR`, `UNAVAILABLE`, `VALIDATION_ERROR`); `None` when it passed, and in events recorded
    /// before the field existed (which read unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl DomainEvent for ConnectionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ConnectionCreated { .. } => "ConnectionCreated",
            Self::ConnectionRenamed { .. } => "ConnectionRenamed",
            Self::CredentialsReplaced { .. } => "CredentialsReplaced",
            Self::ConnectionTested(_) => "ConnectionTested",
            Self::TokenRefreshed { .. } => "TokenRefreshed",
            Self::TokenRefreshFailed { .. } => "TokenRefreshFailed",
            Self::ConnectionReauthRequired { .. } => "ConnectionReauthRequired",
            Self::ConnectionReauthorized { .. } => "ConnectionReauthorized",
            Self::ConnectionDeleted {} => "ConnectionDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
