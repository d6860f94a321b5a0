//! The token lifecycle: access tokens are refreshed before use when they expire within [`USE_WINDOW`], and a
//! background refresher renews those expiring within [`BACKGROUND_WINDOW`].
//!
//! One refresh at a time per connection, across processes: the refresh runs while holding a Postgres advisory
//! lock on the connection (`pg_advisory_xact_lock`), and the vault is read again once the lock is held, so a
//! process that waited finds the tokens another one just renewed instead of spending a refresh token the
//! platform has already rotated.

use std::time::Duration;

use chrono::{DateTime, Utc};
use listbackup_domain::connection::ConnectionCommand;
use listbackup_domain::platform::{PlatformId, OAUTH_ACCESS_TOKEN};
use listbackup_domain::values::{AccountId, CredentialRef};
use listbackup_domain::ConnectionId;
use listbackup_domain::ErrorChain;
use tokio_util::sync::CancellationToken;

use super::flow::{secret_of, EXPIRES_AT, REFRESH_TOKEN};
use super::tokens::{self, IssuedTokens, TokenError};
use super::{OauthError, OauthService};
use crate::metadata::EventMetadata;
use crate::vault::SecretCredentials;

/// Tokens expiring within this are refreshed before they are used.
pub const USE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The background refresher renews tokens expiring within this.
pub const BACKGROUND_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Connections looked at per background round.
const BATCH: i64 = 100;

/// What [`OauthService::ensure_fresh`] did. Two outcomes are equal when they are the same outcome; two
/// failures, when their messages ([`TokenError::message`]) are.
#[derive(Debug)]
pub enum RefreshOutcome {
    /// The access token is valid for longer than the window (perhaps because another process just renewed it).
    Fresh,
    Refreshed {
        expires_at: Option<DateTime<Utc>>,
    },
    /// No stored tokens, no refresh token, or not an OAuth connection: nothing to do.
    NotRefreshable,
    /// The platform refused the grant (now or earlier): the connection is `expired` until reconnected.
    ReauthRequired,
    /// The refresh failed for a reason that may pass (recorded as TokenRefreshFailed, not permanent). The
    /// token endpoint's error, its transport error (without the URL) as its source: a message made of it shows
    /// the chain ([`error_chain`](crate::error_chain)), the reason why.
    Failed(TokenError),
}

impl PartialEq for RefreshOutcome {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Fresh, Self::Fresh)
            | (Self::NotRefreshable, Self::NotRefreshable)
            | (Self::ReauthRequired, Self::ReauthRequired) => true,
            (Self::Refreshed { expires_at: a }, Self::Refreshed { expires_at: b }) => a == b,
            (Self::Failed(a), Self::Failed(b)) => a.message() == b.message(),
            _ => false,
        }
    }
}

/// A per-connection advisory lock, held by an open transaction on a dedicated connection.
pub(super) struct ConnectionLock {
    client: Option<deadpool_postgres::Object>,
}

impl ConnectionLock {
    pub(super) async fn release(mut self) {
        if let Some(client) = self.client.take() {
            if client.batch_execute("COMMIT").await.is_err() {
                // Closing the session releases the lock whatever state it is in.
                drop(deadpool_postgres::Object::take(client));
            }
        }
    }
}

impl Drop for ConnectionLock {
    fn drop(&mut self) {
        // Dropped without `release` (an error path): never hand a connection that holds the lock back to the
        // pool; closing it ends the transaction and frees the lock.
        if let Some(client) = self.client.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

fn expires_at_of(secret: &SecretCredentials) -> Option<DateTime<Utc>> {
    secret
        .get(EXPIRES_AT)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

fn due(secret: &SecretCredentials, within: Duration) -> bool {
    let window = chrono::Duration::from_std(within).unwrap_or_default();
    expires_at_of(secret).is_some_and(|at| at <= Utc::now() + window)
}

impl OauthService {
    /// Takes the per-connection refresh lock, waiting for another holder (in any process) to finish.
    pub(super) async fn lock_connection(
        &self,
        connection_id: &str,
    ) -> Result<ConnectionLock, OauthError> {
        let client = self.db.get().await?;
        let mut lock = ConnectionLock {
            client: Some(client),
        };
        let client = lock.client.as_mut().expect("just set");
        client.batch_execute("BEGIN").await?;
        client
            .execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                &[&format!("listbackup:oauth-refresh:{connection_id}")],
            )
            .await?;
        Ok(lock)
    }

    /// Makes sure the connection's access token stays valid for at least `within`, refreshing it (once, across
    /// processes) when it does not. Records TokenRefreshed or TokenRefreshFailed (and ConnectionReauthRequired
    /// on `invalid_grant`) with `metadata`.
    pub async fn ensure_fresh(
        &self,
        metadata: &EventMetadata,
        connection_id: &ConnectionId,
        within: Duration,
    ) -> Result<RefreshOutcome, OauthError> {
        let id = *connection_id;
        // The vault, the token table and the lock name the connection by its text.
        let connection_id = id.to_string();
        let connection_id = connection_id.as_str();
        let account_id = metadata.account_id.as_str();
        // Cheap check first, without the lock: most calls find a valid token.
        match self.vault.load(account_id, connection_id).await? {
            None => {
                // Deleted (its secret destroyed) or not this account's: nothing to track.
                self.forget_tokens(account_id, connection_id).await?;
                return Ok(RefreshOutcome::NotRefreshable);
            }
            Some(secret) if !due(&secret, within) => return Ok(RefreshOutcome::Fresh),
            Some(_) => {}
        }
        let lock = self.lock_connection(connection_id).await?;
        let outcome = self.refresh_locked(metadata, id, Some(within)).await;
        lock.release().await;
        outcome
    }

    /// The platform answered 401 to `rejected`, an access token of this connection, before it expired:
    /// refreshes now (once across processes), unless the stored token is another one already (someone renewed
    /// it meanwhile), which is then the one to try. A caller that is refused again calls
    /// [`OauthService::require_reauth`]: one refresh per rejection, never a loop.
    pub async fn refresh_rejected(
        &self,
        metadata: &EventMetadata,
        connection_id: &ConnectionId,
        rejected: &str,
    ) -> Result<RefreshOutcome, OauthError> {
        let id = *connection_id;
        let connection_id = id.to_string();
        let connection_id = connection_id.as_str();
        let lock = self.lock_connection(connection_id).await?;
        let outcome = async {
            let account_id = metadata.account_id.as_str();
            match self.vault.load(account_id, connection_id).await? {
                None => Ok(RefreshOutcome::NotRefreshable),
                Some(secret) if secret.get(OAUTH_ACCESS_TOKEN) != Some(rejected) => {
                    Ok(RefreshOutcome::Fresh)
                }
                Some(_) => self.refresh_locked(metadata, id, None).await,
            }
        }
        .await;
        lock.release().await;
        outcome
    }

    /// The platform refuses the connection's credentials even just after a refresh: the customer must
    /// reconnect. Records ConnectionReauthRequired (the connection shows `expired`) and stops the background
    /// refresher from trying.
    pub async fn require_reauth(
        &self,
        metadata: &EventMetadata,
        connection_id: &ConnectionId,
        reason: &str,
    ) -> Result<(), OauthError> {
        let account = AccountId::parse(&metadata.account_id).map_err(OauthError::corrupt)?;
        self.mark_tokens(&connection_id.to_string(), "needs_reauth = true")
            .await?;
        let command = ConnectionCommand::RecordTokenRefreshFailure {
            account_id: account,
            reason: reason.to_owned(),
            permanent: true,
        };
        self.bus
            .execute(connection_id, command, metadata, None)
            .await?;
        Ok(())
    }

    async fn refresh_locked(
        &self,
        metadata: &EventMetadata,
        id: ConnectionId,
        // `None`: refresh whatever the token's expiry (the platform rejected it).
        within: Option<Duration>,
    ) -> Result<RefreshOutcome, OauthError> {
        let connection_id = id.to_string();
        let connection_id = connection_id.as_str();
        let account_id = metadata.account_id.as_str();
        // Read again under the lock: another process may have refreshed while we waited.
        let Some(secret) = self.vault.load(account_id, connection_id).await? else {
            self.forget_tokens(account_id, connection_id).await?;
            return Ok(RefreshOutcome::NotRefreshable);
        };
        if within.is_some_and(|within| !due(&secret, within)) {
            return Ok(RefreshOutcome::Fresh);
        }
        let (connection, _) = self.bus.load(&id).await?;
        if !connection.is_live_for(account_id) {
            self.forget_tokens(account_id, connection_id).await?;
            return Ok(RefreshOutcome::NotRefreshable);
        }
        if !connection.is_active_for(account_id) {
            self.mark_tokens(connection_id, "needs_reauth = true")
                .await?;
            return Ok(RefreshOutcome::ReauthRequired);
        }
        let Some(refresh_token) = secret.get(REFRESH_TOKEN) else {
            return Ok(RefreshOutcome::NotRefreshable);
        };
        let platform = PlatformId::parse(connection.platform_id())
            .ok_or_else(|| OauthError::corrupt("connection names an unknown platform"))?
            .platform();
        let provider = platform
            .oauth
            .as_ref()
            .ok_or(OauthError::NotConfigured(platform.name))?;
        let host = provider.account_host.and_then(|h| secret.get(h.field));
        let client = tokens::client(&self.settings, platform, provider, host)?;
        let account = AccountId::parse(account_id).map_err(OauthError::corrupt)?;
        match tokens::refresh(&self.http, &client, refresh_token).await {
            Ok(issued) => {
                // Everything but the tokens stays (realmId, shop, locationId…); a rotated refresh token replaces
                // the old one, which is not kept anywhere.
                let settings = secret
                    .expose()
                    .iter()
                    .filter(|(k, _)| {
                        ![
                            listbackup_domain::platform::OAUTH_ACCESS_TOKEN,
                            REFRESH_TOKEN,
                            EXPIRES_AT,
                        ]
                        .contains(&k.as_str())
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let renewed = secret_of(&settings, &issued, Some(refresh_token));
                let stored = self
                    .vault
                    .store(account_id, connection_id, &renewed)
                    .await?;
                self.track_tokens(account_id, connection_id, platform.id, &issued)
                    .await?;
                let command = ConnectionCommand::RecordTokenRefresh {
                    account_id: account,
                    expires_at: issued.expires_at,
                    credential: CredentialRef {
                        key_id: stored.key_id,
                        fingerprint: stored.fingerprint,
                    },
                };
                self.bus.execute(&id, command, metadata, None).await?;
                tracing::info!(connection_id, platform = platform.id, expires_at = ?issued.expires_at,
                    "access token refreshed");
                Ok(RefreshOutcome::Refreshed {
                    expires_at: issued.expires_at,
                })
            }
            Err(err) => {
                let permanent = matches!(err, TokenError::InvalidGrant(_));
                tracing::warn!(
                    connection_id,
                    platform = platform.id,
                    permanent,
                    error = %ErrorChain(&err),
                    "access token refresh failed"
                );
                self.mark_tokens(
                    connection_id,
                    if permanent {
                        "needs_reauth = true"
                    } else {
                        "retry_after = now() + interval '1 minute'"
                    },
                )
                .await?;
                let command = ConnectionCommand::RecordTokenRefreshFailure {
                    account_id: account,
                    reason: err.message().to_owned(),
                    permanent,
                };
                self.bus.execute(&id, command, metadata, None).await?;
                Ok(if permanent {
                    RefreshOutcome::ReauthRequired
                } else {
                    RefreshOutcome::Failed(err)
                })
            }
        }
    }

    /// Records when the connection's new access token expires, for the background refresher.
    pub(super) async fn track_tokens(
        &self,
        account_id: &str,
        connection_id: &str,
        platform_id: &str,
        issued: &IssuedTokens,
    ) -> Result<(), OauthError> {
        let client = self.db.get().await?;
        // A refresh without a new refresh token keeps the old one: refreshable stays as it was.
        client
            .execute(
                "INSERT INTO oauth_tokens (connection_id, account_id, platform_id, expires_at, refreshable) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (connection_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, \
                   refreshable = oauth_tokens.refreshable OR EXCLUDED.refreshable, \
                   needs_reauth = false, retry_after = NULL, updated_at = now()",
                &[
                    &connection_id,
                    &account_id,
                    &platform_id,
                    &issued.expires_at,
                    &issued.refresh_token.is_some(),
                ],
            )
            .await?;
        Ok(())
    }

    async fn forget_tokens(&self, account_id: &str, connection_id: &str) -> Result<(), OauthError> {
        let client = self.db.get().await?;
        client
            .execute(
                "DELETE FROM oauth_tokens WHERE account_id = $1 AND connection_id = $2",
                &[&account_id, &connection_id],
            )
            .await?;
        Ok(())
    }

    /// `set` is one of this module's fixed assignments, never input.
    async fn mark_tokens(&self, connection_id: &str, set: &'static str) -> Result<(), OauthError> {
        let client = self.db.get().await?;
        client
            .execute(
                &format!(
                    "UPDATE oauth_tokens SET {set}, updated_at = now() WHERE connection_id = $1"
                ),
                &[&connection_id],
            )
            .await?;
        Ok(())
    }

    /// One background round: renews every token expiring within `within`. Returns how many were refreshed.
    pub async fn refresh_due(&self, within: Duration) -> Result<usize, OauthError> {
        let rows = {
            let client = self.db.get().await?;
            let seconds = within.as_secs_f64();
            client
                .query(
                    "SELECT account_id, connection_id FROM oauth_tokens \
                     WHERE refreshable AND NOT needs_reauth \
                       AND (retry_after IS NULL OR retry_after <= now()) \
                       AND expires_at <= now() + make_interval(secs => $1) \
                     ORDER BY expires_at LIMIT $2",
                    &[&seconds, &BATCH],
                )
                .await?
        };
        let mut refreshed = 0;
        for row in rows {
            let account_id: String = row.try_get(0)?;
            let connection_id: String = row.try_get(1)?;
            // The token table keeps the connection's text; one that is not a UUID names no connection.
            let Ok(id) = connection_id.parse::<ConnectionId>() else {
                tracing::warn!(connection_id, "a tracked token names no connection");
                continue;
            };
            let request_id = uuid::Uuid::now_v7().to_string();
            let metadata = EventMetadata {
                account_id,
                actor: "system".into(),
                request_id: request_id.clone(),
                correlation_id: request_id.clone(),
                causation_id: request_id,
            };
            match self.ensure_fresh(&metadata, &id, within).await {
                Ok(RefreshOutcome::Refreshed { .. }) => refreshed += 1,
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(connection_id, error = %ErrorChain(&err), "background token refresh failed")
                }
            }
        }
        Ok(refreshed)
    }

    /// The background refresher: a round every `refresh_interval` until `shutdown`.
    pub async fn run_refresher(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let interval = self.settings.refresh_interval;
        tracing::info!(?interval, "OAuth token refresher started");
        loop {
            if let Err(err) = self.refresh_due(BACKGROUND_WINDOW).await {
                tracing::warn!(error = %ErrorChain(&err), "OAuth token refresher round failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!("OAuth token refresher stopped");
    }
}
