use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::ConnectionAuth;
use crate::values::CredentialRef;

/// What happened to a connection. No variant ever holds a secret: credentials appear as a [`CredentialRef`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionEvent {
    #[serde(rename_all = "camelCase")]
    ConnectionCreated {
        connection_id: String,
        account_id: String,
        platform_id: String,
        name: String,
        auth_type: ConnectionAuth,
        settings: BTreeMap<String, String>,
        credential_fields: Vec<String>,
        credential: CredentialRef,
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
    #[serde(rename_all = "camelCase")]
    ConnectionDeleted {},
}

/// The outcome of calling the platform's test endpoint with the stored credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionTestResult {
    pub ok: bool,
    pub latency_ms: u64,
    pub message: String,
    pub checked_at: DateTime<Utc>,
}

impl DomainEvent for ConnectionEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ConnectionCreated { .. } => "ConnectionCreated",
            Self::ConnectionRenamed { .. } => "ConnectionRenamed",
            Self::CredentialsReplaced { .. } => "CredentialsReplaced",
            Self::ConnectionTested(_) => "ConnectionTested",
            Self::ConnectionDeleted {} => "ConnectionDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
