use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{ConnectionAuth, ExternalAccount};
use crate::platform::PlatformId;
use crate::values::{AccountId, CredentialRef, DisplayName};
use crate::ConnectionId;

/// What may be asked of a connection. Each carries the caller's account: a connection answers only to its own.
#[derive(Debug, Clone)]
pub enum ConnectionCommand {
    Create {
        /// Chosen by the caller (UUID v7), so the id is known before the event is stored.
        connection_id: ConnectionId,
        account_id: AccountId,
        platform_id: PlatformId,
        name: DisplayName,
        auth: ConnectionAuth,
        /// Non-secret credential fields (e.g. a Zendesk subdomain), safe to show and to record.
        settings: BTreeMap<String, String>,
        /// Names of every credential field supplied (secret values live in the vault only).
        credential_fields: Vec<String>,
        credential: CredentialRef,
    },
    /// Creates a connection from a completed OAuth authorization (tokens already sealed in the vault).
    CreateOauth {
        connection_id: ConnectionId,
        account_id: AccountId,
        platform_id: PlatformId,
        name: DisplayName,
        grant: OauthGrant,
    },
    /// The customer authorized an existing OAuth connection again; its tokens were replaced in the vault.
    Reauthorize {
        account_id: AccountId,
        grant: OauthGrant,
    },
    /// The access token was renewed (new tokens already in the vault).
    RecordTokenRefresh {
        account_id: AccountId,
        expires_at: Option<DateTime<Utc>>,
        credential: CredentialRef,
    },
    /// Renewing the access token failed; a `permanent` failure means the customer must reconnect.
    RecordTokenRefreshFailure {
        account_id: AccountId,
        reason: String,
        permanent: bool,
    },
    /// Rename and/or replace credentials, atomically (one commit, so one `If-Match` covers both).
    Update {
        account_id: AccountId,
        name: Option<DisplayName>,
        credentials: Option<CredentialsChange>,
    },
    RecordTest {
        account_id: AccountId,
        ok: bool,
        latency_ms: u64,
        message: String,
        checked_at: DateTime<Utc>,
        /// Why the test failed (`None` when it passed): see [`super::ConnectionTestResult::code`].
        code: Option<String>,
    },
    Delete {
        account_id: AccountId,
    },
}

impl ConnectionCommand {
    pub fn account_id(&self) -> &AccountId {
        match self {
            Self::Create { account_id, .. }
            | Self::CreateOauth { account_id, .. }
            | Self::Reauthorize { account_id, .. }
            | Self::RecordTokenRefresh { account_id, .. }
            | Self::RecordTokenRefreshFailure { account_id, .. }
            | Self::Update { account_id, .. }
            | Self::RecordTest { account_id, .. }
            | Self::Delete { account_id } => account_id,
        }
    }
}

/// New credentials for a connection, already sealed in the vault.
#[derive(Debug, Clone)]
pub struct CredentialsChange {
    pub settings: BTreeMap<String, String>,
    pub credential_fields: Vec<String>,
    pub credential: CredentialRef,
}

/// What an OAuth authorization produced, minus the secrets (sealed in the vault, referenced by `credential`).
#[derive(Debug, Clone)]
pub struct OauthGrant {
    /// Non-secret values the flow handed over (QuickBooks' `realmId`, Shopify's `shop`, HighLevel's
    /// `locationId`), kept on the connection and shown.
    pub settings: BTreeMap<String, String>,
    /// Names of the fields stored in the vault (`accessToken`, `refreshToken`, …).
    pub credential_fields: Vec<String>,
    pub credential: CredentialRef,
    pub external_account: Option<ExternalAccount>,
}
