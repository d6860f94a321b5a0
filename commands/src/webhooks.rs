//! Webhook use cases (issue 14 §5): create, change, rotate the signing secret of and delete a webhook, and
//! queue a test delivery; the signing secrets' encrypted store; the one insert into the delivery queue.
//!
//! A signing secret is `whsec_` followed by 32 random bytes in unpadded base64url. It is shown once (at
//! creation and at each rotation) and otherwise lives only in `webhook_secrets`, encrypted with AES-256-GCM
//! under the master key as the credential vault's rows are ([`crate::vault`]): the AAD
//! `listbackup:webhook:v1:{account_id}:{webhook_id}` binds a ciphertext to its row. Events never carry it.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use listbackup_domain::source_group::Description;
use listbackup_domain::webhook::{
    Subscriptions, TargetPolicy, Webhook, WebhookCommand, WebhookTarget,
};
use listbackup_domain::ResourceKind;
use rand::rngs::OsRng;
use rand::RngCore as _;
use serde_json::Value;
use uuid::Uuid;
use zeroize::Zeroizing;

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;
use crate::sources::account;
use crate::vault::{MasterKeys, VaultError};

/// The prefix of every signing secret, as Stripe's `whsec_`: a leaked secret is recognisable by scanners.
pub const SECRET_PREFIX: &str = "whsec_";

/// A webhook's signing secret in the clear: the HMAC-SHA256 key of its signatures is the whole string,
/// prefix included (as Stripe's). `Debug` never shows it; the buffer is wiped when dropped.
pub struct WebhookSecret(Zeroizing<String>);

impl WebhookSecret {
    /// A fresh secret: `whsec_` and 32 bytes from the operating system's CSPRNG, unpadded base64url.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(&mut bytes[..]);
        Self(Zeroizing::new(format!(
            "{SECRET_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(&bytes[..])
        )))
    }

    /// The secret itself: for the one response that shows it, and for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// The signing secrets, encrypted at rest under the master keys.
#[derive(Clone)]
pub struct WebhookSecrets {
    pool: deadpool_postgres::Pool,
    keys: Arc<MasterKeys>,
}

fn aad(account_id: &str, webhook_id: &str) -> String {
    format!("listbackup:webhook:v1:{account_id}:{webhook_id}")
}

impl WebhookSecrets {
    pub fn new(pool: deadpool_postgres::Pool, keys: Arc<MasterKeys>) -> Self {
        Self { pool, keys }
    }

    /// Encrypts `secret` under the current master key and stores it as the webhook's (replacing any).
    pub async fn store(
        &self,
        account_id: &str,
        webhook_id: &str,
        secret: &WebhookSecret,
    ) -> Result<(), VaultError> {
        let (key_id, nonce, ciphertext) = self.keys.wrap(
            aad(account_id, webhook_id).as_bytes(),
            secret.expose().as_bytes(),
        )?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO webhook_secrets (account_id, webhook_id, key_id, nonce, ciphertext)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (account_id, webhook_id) DO UPDATE SET key_id = EXCLUDED.key_id,
                     nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()",
                &[&account_id, &webhook_id, &key_id, &&nonce[..], &ciphertext],
            )
            .await?;
        Ok(())
    }

    /// The webhook's secret, decrypted; `None` when it has none (deleted).
    pub async fn load(
        &self,
        account_id: &str,
        webhook_id: &str,
    ) -> Result<Option<WebhookSecret>, VaultError> {
        let client = self.pool.get().await?;
        let Some(row) = client
            .query_opt(
                "SELECT key_id, nonce, ciphertext FROM webhook_secrets
                 WHERE account_id = $1 AND webhook_id = $2",
                &[&account_id, &webhook_id],
            )
            .await?
        else {
            return Ok(None);
        };
        let key_id: &str = row.try_get(0)?;
        let nonce: &[u8] = row.try_get(1)?;
        let ciphertext: &[u8] = row.try_get(2)?;
        let plaintext = self.keys.unwrap_key(
            key_id,
            aad(account_id, webhook_id).as_bytes(),
            nonce,
            ciphertext,
        )?;
        let text = String::from_utf8(plaintext.to_vec())
            .map_err(|_| VaultError::NotText("webhook secret"))?;
        Ok(Some(WebhookSecret(Zeroizing::new(text))))
    }

    /// Re-encrypts every secret not under the current master key (`listbackup rotate-keys`, beside the
    /// credential vault's and the data keys' rotation); returns how many. A row rewritten meanwhile (a
    /// rotation of the webhook's secret) is left as it is. [`VaultError::UnknownKey`] for a row under a key
    /// this process does not hold.
    pub async fn rotate(&self) -> Result<u64, VaultError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT account_id, webhook_id, key_id, nonce, ciphertext FROM webhook_secrets WHERE key_id <> $1",
                &[&self.keys.current_key_id()],
            )
            .await?;
        let mut rotated = 0;
        for row in &rows {
            let account_id: &str = row.try_get(0)?;
            let webhook_id: &str = row.try_get(1)?;
            let key_id: &str = row.try_get(2)?;
            let nonce: &[u8] = row.try_get(3)?;
            let ciphertext: &[u8] = row.try_get(4)?;
            let aad = aad(account_id, webhook_id);
            let plaintext = self
                .keys
                .unwrap_key(key_id, aad.as_bytes(), nonce, ciphertext)?;
            let (new_key, new_nonce, new_ciphertext) =
                self.keys.wrap(aad.as_bytes(), &plaintext)?;
            rotated += client
                .execute(
                    "UPDATE webhook_secrets SET key_id = $3, nonce = $4, ciphertext = $5, updated_at = now()
                     WHERE account_id = $1 AND webhook_id = $2 AND key_id = $6 AND nonce = $7",
                    &[
                        &account_id,
                        &webhook_id,
                        &new_key,
                        &&new_nonce[..],
                        &new_ciphertext,
                        &key_id,
                        &nonce,
                    ],
                )
                .await?;
        }
        Ok(rotated)
    }

    /// Destroys the webhook's secret (idempotent).
    pub async fn destroy(&self, account_id: &str, webhook_id: &str) -> Result<(), VaultError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM webhook_secrets WHERE account_id = $1 AND webhook_id = $2",
                &[&account_id, &webhook_id],
            )
            .await?;
        Ok(())
    }
}

fn vault_error(err: VaultError) -> CommandError {
    match err {
        VaultError::Pool(_) | VaultError::Database(_) => {
            CommandError::unavailable("the webhook secrets are unavailable", err)
        }
        other => CommandError::store("a webhook secret could not be sealed or opened", other),
    }
}

/// A delivery to queue: one notification for one webhook.
#[derive(Debug, Clone)]
pub struct NewDelivery<'a> {
    pub webhook_id: &'a str,
    pub account_id: &'a str,
    /// Deliveries with the same key (per webhook) are sent in queue order, one at a time.
    pub ordering_key: &'a str,
    /// The notification's id (`Webhook-Id`): the event's id, so a replayed event queues nothing twice.
    pub notification_id: Uuid,
    /// `job.failed`, …, or `ping`.
    pub event_type: &'a str,
    /// The JSON body sent (and the e-mail's content).
    pub payload: &'a Value,
    pub created_at: DateTime<Utc>,
}

/// Queues `delivery`, due at once; a notification already queued for the webhook is not queued again.
/// Returns the new delivery's id, `None` when it was queued before.
pub async fn enqueue(
    client: &impl GenericClient,
    delivery: &NewDelivery<'_>,
) -> Result<Option<Uuid>, tokio_postgres::Error> {
    let id = Uuid::now_v7();
    let inserted = client
        .execute(
            "INSERT INTO webhook_deliveries (delivery_id, webhook_id, account_id, ordering_key,
                 notification_id, event_type, payload, next_attempt_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (webhook_id, notification_id) DO NOTHING",
            &[
                &id,
                &delivery.webhook_id,
                &delivery.account_id,
                &delivery.ordering_key,
                &delivery.notification_id,
                &delivery.event_type,
                delivery.payload,
                &delivery.created_at,
            ],
        )
        .await?;
    Ok((inserted == 1).then_some(id))
}

/// What `create` and `rotate_secret` return: the commit, and the secret to show once.
#[derive(Debug)]
pub struct WithSecret {
    pub committed: Committed,
    pub secret: WebhookSecret,
}

/// The webhook use cases.
pub struct WebhookCommands {
    bus: CommandBus<Webhook>,
    secrets: WebhookSecrets,
    policy: TargetPolicy,
}

impl WebhookCommands {
    /// `policy` says which targets this deployment accepts (`LISTBACKUP_WEBHOOK_ALLOW_HTTP`, SMTP configured).
    pub fn new(bus: CommandBus<Webhook>, secrets: WebhookSecrets, policy: TargetPolicy) -> Self {
        Self {
            bus,
            secrets,
            policy,
        }
    }

    /// The targets this deployment accepts: what a route parses a `url` with.
    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// Creates a webhook with a fresh signing secret (stored first, so a recorded webhook always has one).
    pub async fn create(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
        target: WebhookTarget,
        events: Subscriptions,
        description: Option<Description>,
    ) -> Result<WithSecret, CommandError> {
        let account_id = account(metadata)?;
        let secret = WebhookSecret::generate();
        self.secrets
            .store(account_id.as_str(), &webhook_id.to_string(), &secret)
            .await
            .map_err(vault_error)?;
        let command = WebhookCommand::Create {
            webhook_id: *webhook_id,
            account_id,
            target,
            events,
            description,
        };
        let committed = self.bus.execute_new(webhook_id, command, metadata).await?;
        Ok(WithSecret { committed, secret })
    }

    /// Changes what is `Some`; `If-Match` is `expected_version`.
    pub async fn update(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
        expected_version: impl Into<crate::ExpectedVersion>,
        target: Option<WebhookTarget>,
        events: Option<Subscriptions>,
        description: Option<Option<Description>>,
    ) -> Result<Committed, CommandError> {
        let command = WebhookCommand::Update {
            account_id: account(metadata)?,
            target,
            events,
            description,
        };
        self.bus
            .execute(webhook_id, command, metadata, expected_version)
            .await
    }

    /// Replaces the signing secret with a fresh one, shown once. The webhook is checked first, so a foreign
    /// or missing webhook's secret is never written.
    pub async fn rotate_secret(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<WithSecret, CommandError> {
        self.live(metadata, webhook_id).await?;
        let secret = WebhookSecret::generate();
        self.secrets
            .store(&metadata.account_id, &webhook_id.to_string(), &secret)
            .await
            .map_err(vault_error)?;
        let command = WebhookCommand::RotateSecret {
            account_id: account(metadata)?,
        };
        let committed = self
            .bus
            .execute(webhook_id, command, metadata, expected_version)
            .await?;
        Ok(WithSecret { committed, secret })
    }

    /// Deletes the webhook, then destroys its secret; its queued deliveries are given up by the sender.
    pub async fn delete(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = WebhookCommand::Delete {
            account_id: account(metadata)?,
        };
        let committed = self
            .bus
            .execute(webhook_id, command, metadata, expected_version)
            .await?;
        self.secrets
            .destroy(&metadata.account_id, &webhook_id.to_string())
            .await
            .map_err(vault_error)?;
        Ok(committed)
    }

    /// Queues a `ping` to the webhook (`POST /webhooks/{id}/test`); returns the delivery's id.
    pub async fn send_test(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
        db: &deadpool_postgres::Pool,
        now: DateTime<Utc>,
    ) -> Result<Uuid, CommandError> {
        self.live(metadata, webhook_id).await?;
        let notification_id = Uuid::now_v7();
        let payload = serde_json::json!({
            "id": notification_id,
            "type": "ping",
            "createdAt": now,
            "accountId": metadata.account_id,
            "data": {"webhookId": webhook_id},
        });
        let client = db
            .get()
            .await
            .map_err(|e| CommandError::unavailable("the delivery queue is unavailable", e))?;
        let ordering_key = format!("ping:{webhook_id}");
        let webhook_id = webhook_id.to_string();
        enqueue(
            &client,
            &NewDelivery {
                webhook_id: &webhook_id,
                account_id: &metadata.account_id,
                ordering_key: &ordering_key,
                notification_id,
                event_type: "ping",
                payload: &payload,
                created_at: now,
            },
        )
        .await
        .map_err(|e| CommandError::unavailable("the delivery queue is unavailable", e))?
        .ok_or_else(|| CommandError::corrupt("a fresh ping was queued before"))
    }

    async fn live(
        &self,
        metadata: &EventMetadata,
        webhook_id: &listbackup_domain::WebhookId,
    ) -> Result<(), CommandError> {
        let (webhook, _) = self.bus.load(webhook_id).await?;
        if webhook.is_live_for(&metadata.account_id) {
            Ok(())
        } else {
            Err(CommandError::not_found(ResourceKind::Webhook))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_prefixed_random_and_never_in_debug() {
        let a = WebhookSecret::generate();
        let b = WebhookSecret::generate();
        assert!(a.expose().starts_with(SECRET_PREFIX));
        assert_eq!(a.expose().len(), SECRET_PREFIX.len() + 43);
        assert_ne!(a.expose(), b.expose());
        assert!(!format!("{a:?}").contains(&a.expose()[SECRET_PREFIX.len()..]));
    }
}
