//! Connection use cases: each is one command on the Connection aggregate, plus the vault or platform work
//! that must surround it.

use chrono::Utc;
use listbackup_domain::connection::{
    Connection, ConnectionAuth, ConnectionCommand, CredentialsChange,
};
use listbackup_domain::platform::{
    AuthType, Credentials, Platform, PlatformId, OAUTH_ACCESS_TOKEN,
};
use listbackup_domain::values::{AccountId, CredentialRef, DisplayName};
use listbackup_domain::ErrorChain;
use listbackup_domain::ResourceKind;

use std::sync::Arc;

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;
use crate::oauth::{OauthService, RefreshOutcome, USE_WINDOW};
use crate::platform_client::{PlatformClient, ProbeOutcome};
use crate::sampling::{DataTypeSample, DataTypeSampler, NoSampler};
use crate::vault::{CredentialVault, SecretCredentials, VaultError};

/// A new API-key connection, parsed and validated against the catalog by the caller.
#[derive(Debug)]
pub struct NewApiKeyConnection {
    pub platform: PlatformId,
    pub name: DisplayName,
    pub credentials: Credentials,
}

/// What `POST /connections/{id}/test` reports.
#[derive(Debug, Clone)]
pub struct ConnectionTestOutcome {
    pub ok: bool,
    pub latency_ms: u64,
    pub message: String,
    /// Why it failed, an error code of DESIGN §4 (`UNAUTHORIZED`: the platform said the credentials are
    /// not valid); `None` when it passed.
    pub code: Option<&'static str>,
    pub checked_at: chrono::DateTime<Utc>,
    pub committed: Committed,
}

pub struct ConnectionCommands {
    bus: CommandBus<Connection>,
    vault: CredentialVault,
    platforms: PlatformClient,
    sampler: Arc<dyn DataTypeSampler>,
    /// Refreshes an OAuth connection's rejected token during a test, as a backup does.
    oauth: Option<Arc<OauthService>>,
}

impl From<VaultError> for CommandError {
    fn from(err: VaultError) -> Self {
        // VaultError's messages never contain secret values (see vault.rs), so they may be logged. A pool
        // that cannot give a connection, or a connection that broke, is the database being unavailable.
        match &err {
            VaultError::Pool(_) => Self::unavailable("the credential vault is unavailable", err),
            VaultError::Database(db) if db.is_closed() => {
                Self::unavailable("the credential vault is unavailable", err)
            }
            _ => Self::store("the credential vault failed", err),
        }
    }
}

impl ConnectionCommands {
    pub fn new(
        bus: CommandBus<Connection>,
        vault: CredentialVault,
        platforms: PlatformClient,
    ) -> Self {
        Self {
            bus,
            vault,
            platforms,
            sampler: Arc::new(NoSampler),
            oauth: None,
        }
    }

    /// Uses `sampler` to fetch sample pages of data types (the workers' connectors, in `serve`).
    pub fn with_sampler(self, sampler: Arc<dyn DataTypeSampler>) -> Self {
        Self { sampler, ..self }
    }

    /// Lets a test of an OAuth connection refresh its token first when it is about to expire, and once
    /// more when the platform rejects it (without, a 401 is simply reported).
    pub fn with_oauth(self, oauth: Arc<OauthService>) -> Self {
        Self {
            oauth: Some(oauth),
            ..self
        }
    }

    /// Fetches one page of each data type with the connection's stored credentials; nothing is stored and
    /// nothing is recorded. The secret never leaves this call.
    pub async fn sample(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        data_types: &[String],
    ) -> Result<Vec<DataTypeSample>, CommandError> {
        let (connection, _) = self.live(metadata, connection_id).await?;
        let platform: &'static Platform = PlatformId::parse(connection.platform_id())
            .ok_or_else(|| CommandError::corrupt("connection names an unknown platform"))?
            .platform();
        let secret = self
            .vault
            .load(&metadata.account_id, &connection_id.to_string())
            .await?
            .ok_or_else(|| CommandError::corrupt("the connection's credentials are missing"))?;
        let mut samples = Vec::with_capacity(data_types.len());
        for data_type in data_types {
            samples.push(
                self.sampler
                    .sample(
                        platform,
                        &connection_id.to_string(),
                        secret.expose(),
                        data_type,
                    )
                    .await,
            );
        }
        Ok(samples)
    }

    pub fn vault(&self) -> &CredentialVault {
        &self.vault
    }

    /// Seals the credentials and records ConnectionCreated with a reference to them, the vault's row and the
    /// event in one statement ([`CredentialVault::seal_new`], [`CommandBus::execute_new_with`]): a
    /// connection never exists without its credentials, and no ciphertext is left behind by a creation that
    /// failed.
    pub async fn create_api_key(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        new: NewApiKeyConnection,
    ) -> Result<Committed, CommandError> {
        let account_id = account(metadata)?;
        let (sealed, vault_row) = self.vault.seal_new(
            &metadata.account_id,
            &connection_id.to_string(),
            &self.secret_to_seal(new.platform.platform(), &new.credentials),
        )?;
        let credential = sealed.into();
        let command = ConnectionCommand::Create {
            connection_id: *connection_id,
            account_id,
            platform_id: new.platform,
            name: new.name,
            auth: ConnectionAuth::from(AuthType::ApiKey),
            settings: new.credentials.settings.clone(),
            credential_fields: new.credentials.field_names(),
            credential,
        };
        // The id was minted for this request: no stream to load.
        self.bus
            .execute_new_with(connection_id, command, metadata, Some(vault_row))
            .await
    }

    /// Renames and/or replaces the credentials, as one commit.
    pub async fn update(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        expected_version: impl Into<crate::ExpectedVersion>,
        name: Option<DisplayName>,
        credentials: Option<Credentials>,
    ) -> Result<Committed, CommandError> {
        let expected_version = expected_version.into();
        let account_id = account(metadata)?;
        let credentials = match credentials {
            None => None,
            Some(credentials) => {
                // Check visibility and If-Match before touching the vault, so a refused update does not
                // overwrite the stored secret. (A concurrent update slipping in between is caught by the
                // event store's optimistic lock; the vault then holds the newer secret of the two writers.)
                let connection = self
                    .require_version(metadata, connection_id, expected_version.clone())
                    .await?;
                let platform = PlatformId::parse(connection.platform_id())
                    .ok_or_else(|| CommandError::corrupt("connection names an unknown platform"))?
                    .platform();
                let credential = self
                    .seal_replacement(metadata, connection_id, platform, &credentials)
                    .await?;
                Some(CredentialsChange {
                    settings: credentials.settings.clone(),
                    credential_fields: credentials.field_names(),
                    credential,
                })
            }
        };
        let command = ConnectionCommand::Update {
            account_id,
            name,
            credentials,
        };
        self.bus
            .execute(connection_id, command, metadata, expected_version)
            .await
    }

    /// Records ConnectionDeleted, then destroys the stored secret.
    pub async fn delete(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = ConnectionCommand::Delete {
            account_id: account(metadata)?,
        };
        let committed = self
            .bus
            .execute(connection_id, command, metadata, expected_version)
            .await?;
        // If we crash right here the deletion is recorded but the ciphertext remains; `sweep_deleted`,
        // run at every start-up, destroys the secrets of every deleted connection.
        self.vault
            .destroy(&metadata.account_id, &connection_id.to_string())
            .await?;
        Ok(committed)
    }

    /// Calls the platform's test endpoint with the stored credentials and records ConnectionTested.
    pub async fn test(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
    ) -> Result<ConnectionTestOutcome, CommandError> {
        let (connection, _) = self.live(metadata, connection_id).await?;
        let platform: &Platform = PlatformId::parse(connection.platform_id())
            .ok_or_else(|| CommandError::corrupt("connection names an unknown platform"))?
            .platform();
        let oauth = self
            .oauth
            .as_ref()
            .filter(|_| connection.auth_type() == Some(ConnectionAuth::Oauth2));
        if let Some(oauth) = oauth {
            // As before a backup: a token about to expire is renewed first (a failure shows as the 401 below).
            if let Err(err) = oauth
                .ensure_fresh(metadata, connection_id, USE_WINDOW)
                .await
            {
                tracing::debug!(%connection_id, error = %ErrorChain(&err), "token refresh before the connection test");
            }
        }
        let secret = self.secret(metadata, connection_id).await?;
        let mut probe = self
            .platforms
            .test_connection(platform, secret.expose())
            .await;
        if let (Some(oauth), true) = (oauth, probe.credentials_rejected()) {
            probe = self
                .test_after_rejection(oauth, metadata, connection_id, platform, &secret, probe)
                .await?;
        }
        let checked_at = Utc::now();
        let command = ConnectionCommand::RecordTest {
            account_id: account(metadata)?,
            ok: probe.ok,
            latency_ms: probe.latency_ms,
            message: probe.message.clone(),
            checked_at,
            code: probe.code.map(str::to_owned),
        };
        let committed = self
            .bus
            .execute(connection_id, command, metadata, None)
            .await?;
        Ok(ConnectionTestOutcome {
            ok: probe.ok,
            latency_ms: probe.latency_ms,
            message: probe.message,
            code: probe.code,
            checked_at,
            committed,
        })
    }

    async fn secret(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
    ) -> Result<SecretCredentials, CommandError> {
        self.vault
            .load(&metadata.account_id, &connection_id.to_string())
            .await?
            .ok_or_else(|| CommandError::corrupt("the connection's credentials are missing"))
    }

    /// The platform rejected an OAuth connection's access token: one refresh and one more try, as a backup
    /// does; refused again (or the refresh refused), the connection needs the customer to reconnect it and
    /// shows `expired` (`ConnectionReauthRequired`).
    async fn test_after_rejection(
        &self,
        oauth: &OauthService,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        platform: &Platform,
        rejected: &SecretCredentials,
        probe: ProbeOutcome,
    ) -> Result<ProbeOutcome, CommandError> {
        let token = rejected.get(OAUTH_ACCESS_TOKEN).unwrap_or_default();
        let failed = probe.clone();
        let reauth = |reason: &'static str| async move {
            if let Err(err) = oauth.require_reauth(metadata, connection_id, reason).await {
                tracing::warn!(%connection_id, error = %ErrorChain(&err), "recording that the connection needs reauthorization");
            }
            ProbeOutcome {
                ok: false,
                message:
                    "the platform rejected the connection's access token, even after a refresh: \
                          reconnect the connection"
                        .to_owned(),
                ..failed
            }
        };
        match oauth.refresh_rejected(metadata, connection_id, token).await {
            Ok(RefreshOutcome::Refreshed { .. } | RefreshOutcome::Fresh) => {
                let renewed = self.secret(metadata, connection_id).await?;
                let again = self
                    .platforms
                    .test_connection(platform, renewed.expose())
                    .await;
                if again.credentials_rejected() {
                    return Ok(
                        reauth("the platform rejected the access token after a refresh").await,
                    );
                }
                Ok(again)
            }
            Ok(RefreshOutcome::NotRefreshable) => Ok(reauth(
                "the platform rejected the access token, which cannot be refreshed",
            )
            .await),
            // The refresh itself was refused: already recorded as needing the customer.
            Ok(RefreshOutcome::ReauthRequired) => Ok(ProbeOutcome {
                message:
                    "the platform refused to renew the connection's access token: reconnect the \
                          connection"
                        .to_owned(),
                ..probe
            }),
            Ok(RefreshOutcome::Failed(err)) => Ok(ProbeOutcome {
                message: format!(
                    "{}; renewing the access token failed: {}",
                    probe.message,
                    crate::error_chain(&err)
                ),
                ..probe
            }),
            Err(err) => Ok(ProbeOutcome {
                message: format!("{}; renewing the access token failed: {err}", probe.message),
                ..probe
            }),
        }
    }

    /// Refuses, before anything is changed, a request whose `If-Match` (`expected_version`) is not the live
    /// connection's current version: the precondition is checked before the work it guards (replacing the
    /// stored secret, deleting the sources of a cascade). Not found unless the connection is the caller's.
    pub async fn require_version(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Connection, CommandError> {
        let expected = expected_version.into();
        let (connection, version) = self.live(metadata, connection_id).await?;
        if expected.admits(version) {
            Ok(connection)
        } else {
            Err(CommandError::VersionMismatch {
                expected,
                actual: Some(version),
            })
        }
    }

    async fn live(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
    ) -> Result<(Connection, u64), CommandError> {
        let (connection, version) = self.bus.load(connection_id).await?;
        if connection.is_live_for(&metadata.account_id) {
            Ok((connection, version))
        } else {
            Err(CommandError::not_found(ResourceKind::Connection))
        }
    }

    /// The secret a connect form's credentials are sealed as: marked as a demo connection when they are the
    /// platform's demo set while demo mode is on (see
    /// [`crate::platform_client::PlatformEndpoints::credentials_to_seal`]); replaced credentials are decided
    /// afresh, so a demo connection given real credentials is a real connection from then on.
    fn secret_to_seal(&self, platform: &Platform, credentials: &Credentials) -> SecretCredentials {
        SecretCredentials::new(
            self.platforms
                .endpoints()
                .credentials_to_seal(platform, &credentials.all),
        )
    }

    /// Seals and stores an existing connection's replacement credentials (on disk when it returns).
    async fn seal_replacement(
        &self,
        metadata: &EventMetadata,
        connection_id: &listbackup_domain::ConnectionId,
        platform: &Platform,
        credentials: &Credentials,
    ) -> Result<CredentialRef, CommandError> {
        let secret = self.secret_to_seal(platform, credentials);
        Ok(self
            .vault
            .store(&metadata.account_id, &connection_id.to_string(), &secret)
            .await?
            .into())
    }
}

fn account(metadata: &EventMetadata) -> Result<AccountId, CommandError> {
    AccountId::parse(&metadata.account_id).map_err(|message| CommandError::Domain {
        kind: listbackup_domain::ErrorKind::Invalid,
        field: None,
        message,
    })
}
