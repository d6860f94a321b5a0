//! The credential vault: the secrets of platform connections (API keys, OAuth tokens), encrypted at rest with
//! AES-256-GCM under a master key (DESIGN §7, `LISTBACKUP_MASTER_KEY`).
//!
//! Events never carry secrets (DESIGN §2): they carry a [`CredentialRef`], i.e. the id of the master key that
//! encrypted the secret and a keyed fingerprint of it. The secret itself lives only in the `credential_vault`
//! table (migration `0002_credential_vault.sql`), one row per connection.
//!
//! Rules kept throughout this module:
//! - a fresh random 96-bit nonce for every encryption;
//! - the AAD binds a ciphertext to its row (`listbackup:v1:{account_id}:{connection_id}`), so a ciphertext
//!   copied to another row fails to decrypt;
//! - no secret value, and no key material, ever reaches an error message, a log line or a `Debug` output;
//! - plaintext buffers are zeroized when dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::event_repository::{Companion, CompanionValue};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// AES-GCM's standard nonce size: 96 bits.
const NONCE_LEN: usize = 12;
/// AES-256: 32-byte keys.
const KEY_LEN: usize = 32;
/// Rows re-encrypted per round trip by [`CredentialVault::rotate`].
const ROTATE_BATCH: i64 = 100;

/// Secret credential fields: field name → value (e.g. `api_key`, `access_token`, `refresh_token`).
///
/// `Debug` prints only the field names (values `"[redacted]"`), and the map is zeroized on drop. Deliberately
/// neither `Serialize` nor `Clone`: a secret should not be copied around or end up in an event by accident.
pub struct SecretCredentials(BTreeMap<String, String>);

impl SecretCredentials {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    /// The value of one field.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// The field names (never secret), in sorted order.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The whole map, values included: for the code that actually calls the platform.
    pub fn expose(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The canonical JSON form that is encrypted and fingerprinted: a `BTreeMap` serializes with sorted keys and
    /// serde_json writes it compactly, so equal secrets always give the same bytes.
    fn to_canonical_json(&self) -> Zeroizing<Vec<u8>> {
        // Serializing a map of strings cannot fail; `unreachable!` rather than `expect` so that not even the
        // error's Debug form could reach a panic message.
        Zeroizing::new(
            serde_json::to_vec(&self.0).unwrap_or_else(|_| unreachable!("a string map serializes")),
        )
    }

    fn from_canonical_json(json: &[u8]) -> Result<Self, VaultError> {
        serde_json::from_slice(json).map(Self).map_err(|e| {
            // serde_json's message may quote the offending value ("invalid type: string \"...\""), which would be
            // (part of) a secret: report only the error class and position.
            VaultError::NotCredentials {
                category: e.classify(),
                line: e.line(),
                column: e.column(),
            }
        })
    }
}

impl fmt::Debug for SecretCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|field| (field, "[redacted]")))
            .finish()
    }
}

impl Drop for SecretCredentials {
    fn drop(&mut self) {
        // A BTreeMap gives no mutable access to its keys, so take the entries out and wipe each string.
        for (mut field, mut value) in std::mem::take(&mut self.0) {
            field.zeroize();
            value.zeroize();
        }
    }
}

/// One master key, ready to use.
struct MasterKey {
    /// First 8 bytes of SHA-256(key), hex.
    id: String,
    /// The cipher keeps the expanded key for the process's lifetime (aes-gcm's `zeroize` feature is off, so the
    /// key schedule is not wiped on drop; master keys live as long as the process anyway).
    cipher: Aes256Gcm,
    /// The HMAC key for fingerprints, derived from the master key so a fingerprint cannot be recomputed (and a
    /// low-entropy secret brute-forced) by someone who reads events but does not hold the master key.
    /// HKDF (RFC 5869) over the master key, extracted once: each account's fingerprint key is expanded from it.
    fingerprint_keys: Hkdf<Sha256>,
}

impl MasterKey {
    fn from_base64(encoded: &str, what: &str) -> Result<Self, VaultError> {
        let bytes =
            Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| {
                VaultError::InvalidMasterKey(format!("{what} is not valid base64"))
            })?);
        if bytes.len() != KEY_LEN {
            return Err(VaultError::InvalidMasterKey(format!(
                "{what} decodes to {} bytes, expected {KEY_LEN}",
                bytes.len()
            )));
        }
        let id = hex::encode(&Sha256::digest(&bytes[..])[..8]);
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| {
            VaultError::InvalidMasterKey(format!("{what} is not a valid AES-256 key"))
        })?;
        // A key of its own per account, independent of the AES key, so a fingerprint says nothing across accounts.
        let fingerprint_keys = Hkdf::<Sha256>::new(Some(FINGERPRINT_SALT), &bytes[..]);
        Ok(Self {
            id,
            cipher,
            fingerprint_keys,
        })
    }

    /// HMAC-SHA256 of the canonical JSON of a secret under the account's fingerprint key, first 8 bytes as 16
    /// hex characters: the same key held by two accounts has two unrelated fingerprints.
    fn fingerprint(&self, account_id: &str, canonical_json: &[u8]) -> String {
        let mut key = Zeroizing::new([0u8; 32]);
        self.fingerprint_keys
            .expand(account_id.as_bytes(), &mut key[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hex::encode(&hmac_sha256(&key[..], canonical_json)[..8])
    }
}

/// The master keys: one current key that encrypts, older ones that still decrypt (rotation).
pub struct MasterKeys {
    current: MasterKey,
    /// Retired keys, still accepted for decryption until [`CredentialVault::rotate`] has moved every row off them.
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// `current` is `LISTBACKUP_MASTER_KEY` (base64 of exactly 32 bytes); `previous` are retired keys
    /// (`LISTBACKUP_MASTER_KEYS_PREVIOUS`, comma separated) still accepted for decryption.
    ///
    /// Surrounding whitespace is ignored and empty entries of `previous` are skipped (so splitting an empty
    /// variable on commas works); a previous key equal to the current one is ignored.
    pub fn from_base64(current: &str, previous: &[&str]) -> Result<Self, VaultError> {
        let current = MasterKey::from_base64(current, "LISTBACKUP_MASTER_KEY")?;
        let mut retired: Vec<MasterKey> = Vec::with_capacity(previous.len());
        for (index, encoded) in previous.iter().enumerate() {
            if encoded.trim().is_empty() {
                continue;
            }
            // Name the entry by position only: the message must not echo key material.
            let what = format!("LISTBACKUP_MASTER_KEYS_PREVIOUS entry {}", index + 1);
            let key = MasterKey::from_base64(encoded, &what)?;
            if key.id != current.id && retired.iter().all(|k| k.id != key.id) {
                retired.push(key);
            }
        }
        Ok(Self {
            current,
            previous: retired,
        })
    }

    /// Key id = first 8 bytes of SHA-256(key) as hex: identifies a key without revealing it.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of the retired keys still accepted for decryption.
    pub fn previous_key_ids(&self) -> impl Iterator<Item = &str> {
        self.previous.iter().map(|k| k.id.as_str())
    }

    /// Encrypts `plaintext` (a data key, see [`crate::data_keys`]) under the current master key with a fresh
    /// random 96-bit nonce, bound to `aad`. Returns the master key's id, the nonce and the ciphertext (with
    /// its 16-byte tag).
    pub(crate) fn wrap(
        &self,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, [u8; NONCE_LEN], Vec<u8>), VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // aead's error is opaque by design (it says nothing to an attacker): there is no detail to keep.
            .map_err(|_| VaultError::Encrypt("a key could not be wrapped"))?;
        Ok((self.current.id.clone(), nonce, ciphertext))
    }

    /// Decrypts what [`wrap`](Self::wrap) produced under master key `key_id` (the current one or a retired
    /// one still configured). [`VaultError::UnknownKey`] for a key this process does not hold,
    /// [`VaultError::Decrypt`] when it does not authenticate.
    pub(crate) fn unwrap_key(
        &self,
        key_id: &str,
        aad: &[u8],
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let key = self
            .find(key_id)
            .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
        if nonce.len() != NONCE_LEN {
            return Err(VaultError::Decrypt);
        }
        key.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Decrypt)
    }

    fn find(&self, key_id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == key_id)
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("current", &self.current.id)
            .field("previous", &self.previous_key_ids().collect::<Vec<_>>())
            .finish()
    }
}

/// What events carry instead of a secret: which key encrypted it and a keyed fingerprint of it.
///
/// The fingerprint is computed under the key named by `key_id`, so the same secret gets a new fingerprint after a
/// key rotation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CredentialRef {
    pub key_id: String,
    pub fingerprint: String,
}

impl From<CredentialRef> for listbackup_domain::values::CredentialRef {
    fn from(sealed: CredentialRef) -> Self {
        Self {
            key_id: sealed.key_id,
            fingerprint: sealed.fingerprint,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// A master key could not be parsed. The message never contains key material, so the decoder's error is
    /// not kept as a source: base64's names the offending symbol (`InvalidByte`, `InvalidLastSymbol`), which
    /// may be a character of the key, and AES's says nothing more than the length already does.
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    /// The stored secret was encrypted under a key this process does not hold (the key id is given).
    #[error("credential encrypted under unknown master key {0}")]
    UnknownKey(String),
    /// Authentication failed: wrong key, tampered row, or a ciphertext moved to another row.
    #[error("credential failed to decrypt (wrong key, tampered data, or ciphertext of another connection)")]
    Decrypt,
    #[error("credential vault database error: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("credential vault connection pool error: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Decrypted credentials are not a JSON object of strings. Only serde_json's error class and position are
    /// kept, not the error itself: its message may quote the offending value, which would be (part of) a
    /// secret.
    #[error(
        "decrypted credentials are not a JSON object of strings ({category:?} error at line {line}, column {column})"
    )]
    NotCredentials {
        category: serde_json::error::Category,
        line: usize,
        column: usize,
    },
    /// A decrypted secret that must be text (what is named) is not UTF-8. Nothing of it is kept.
    #[error("a decrypted {0} is not UTF-8")]
    NotText(&'static str),
    /// AES-GCM refused to encrypt (only for absurdly long inputs). What was being encrypted; the AEAD error
    /// itself is opaque by design, so there is no source to keep.
    #[error("{0}")]
    Encrypt(&'static str),
}

/// One encryption's output, as stored in a row.
struct Sealed {
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
    fingerprint: String,
}

/// The vault row's insert, the start of every statement that writes one.
macro_rules! vault_insert {
    () => {
        "INSERT INTO credential_vault (account_id, connection_id, key_id, nonce, ciphertext, fingerprint)"
    };
}

/// What a write of a row that exists does: replaces the secret.
macro_rules! vault_on_conflict {
    () => {
        "ON CONFLICT (account_id, connection_id) DO UPDATE SET \
         key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, \
         fingerprint = EXCLUDED.fingerprint, updated_at = now()"
    };
}

/// The upsert of [`CredentialVault::store`].
const STORE: &str = concat!(
    vault_insert!(),
    " VALUES ($1, $2, $3, $4, $5, $6) ",
    vault_on_conflict!()
);

/// Stores, loads, destroys and re-keys connection secrets in the `credential_vault` table.
#[derive(Clone)]
pub struct CredentialVault {
    pool: deadpool_postgres::Pool,
    keys: Arc<MasterKeys>,
}

impl fmt::Debug for CredentialVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialVault")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl CredentialVault {
    pub fn new(pool: deadpool_postgres::Pool, keys: Arc<MasterKeys>) -> Self {
        Self { pool, keys }
    }

    pub fn keys(&self) -> &MasterKeys {
        &self.keys
    }

    /// The master keys, shared (the data keys are wrapped with them too: [`crate::data_keys`]).
    pub fn keys_arc(&self) -> &Arc<MasterKeys> {
        &self.keys
    }

    /// Encrypts and upserts the secret of one connection under the current master key. The AAD binds the
    /// ciphertext to `listbackup:v1:{account_id}:{connection_id}`, so a ciphertext copied to another row does not
    /// decrypt. On disk when it returns.
    pub async fn store(
        &self,
        account_id: &str,
        connection_id: &str,
        secret: &SecretCredentials,
    ) -> Result<CredentialRef, VaultError> {
        self.upsert(account_id, connection_id, secret).await
    }

    /// Seals the secret of a connection being created and returns its row, for the command bus to write in
    /// the same statement as the connection's creating event ([`crate::bus::CommandBus::execute_new_with`]):
    /// the secret is stored if and only if the connection is, and the event's synchronous commit puts both
    /// on disk. Nothing is written here. The row is [`store`](Self::store)'s (the same upsert).
    pub fn seal_new(
        &self,
        account_id: &str,
        connection_id: &str,
        secret: &SecretCredentials,
    ) -> Result<(CredentialRef, Companion), VaultError> {
        let key = &self.keys.current;
        let sealed = seal(key, account_id, connection_id, secret)?;
        tracing::debug!(account_id, connection_id, key_id = %key.id, fingerprint = %sealed.fingerprint,
            "credential sealed for its connection's creation");
        let reference = CredentialRef {
            key_id: key.id.clone(),
            fingerprint: sealed.fingerprint.clone(),
        };
        let row = Companion {
            insert: vault_insert!(),
            on_conflict: vault_on_conflict!(),
            values: vec![
                CompanionValue::Text(account_id.to_owned()),
                CompanionValue::Text(connection_id.to_owned()),
                CompanionValue::Text(key.id.clone()),
                CompanionValue::Bytes(sealed.nonce.to_vec()),
                CompanionValue::Bytes(sealed.ciphertext),
                CompanionValue::Text(sealed.fingerprint),
            ],
        };
        Ok((reference, row))
    }

    async fn upsert(
        &self,
        account_id: &str,
        connection_id: &str,
        secret: &SecretCredentials,
    ) -> Result<CredentialRef, VaultError> {
        let key = &self.keys.current;
        let sealed = seal(key, account_id, connection_id, secret)?;
        let client = self.pool.get().await?;
        // Prepared once per pooled connection: this runs on every credential change.
        let insert = client.prepare_cached(STORE).await?;
        client
            .execute(
                &insert,
                &[
                    &account_id,
                    &connection_id,
                    &key.id,
                    &&sealed.nonce[..],
                    &sealed.ciphertext,
                    &sealed.fingerprint,
                ],
            )
            .await?;
        tracing::debug!(account_id, connection_id, key_id = %key.id, fingerprint = %sealed.fingerprint,
            "credential stored");
        Ok(CredentialRef {
            key_id: key.id.clone(),
            fingerprint: sealed.fingerprint,
        })
    }

    /// Computes the fingerprint of `secret` of `account_id` under the current master key, without storing
    /// anything: HMAC-SHA256 over the canonical JSON of the secret, keyed with the account's key derived from the
    /// master key (HKDF), first 16 hex characters. Never a plain hash of the secret, which could be brute-forced
    /// for short API keys, and never comparable between accounts.
    pub fn fingerprint(&self, account_id: &str, secret: &SecretCredentials) -> String {
        self.keys
            .current
            .fingerprint(account_id, &secret.to_canonical_json())
    }

    /// The [`CredentialRef`] of `secret` of `account_id` under the current key, without storing it.
    pub fn credential_ref(&self, account_id: &str, secret: &SecretCredentials) -> CredentialRef {
        CredentialRef {
            key_id: self.keys.current.id.clone(),
            fingerprint: self.fingerprint(account_id, secret),
        }
    }

    /// Loads and decrypts the secret of one connection; `None` if none is stored (or it was destroyed).
    pub async fn load(
        &self,
        account_id: &str,
        connection_id: &str,
    ) -> Result<Option<SecretCredentials>, VaultError> {
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(
                "SELECT key_id, nonce, ciphertext FROM credential_vault
                 WHERE account_id = $1 AND connection_id = $2",
            )
            .await?;
        let row = client
            .query_opt(&select, &[&account_id, &connection_id])
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key_id: String = row.try_get(0)?;
        let nonce: Vec<u8> = row.try_get(1)?;
        let ciphertext: Vec<u8> = row.try_get(2)?;
        open(
            &self.keys,
            account_id,
            connection_id,
            &key_id,
            &nonce,
            &ciphertext,
        )
        .map(Some)
    }

    /// Destroys the stored secret for good (deletes the row). Idempotent.
    pub async fn destroy(&self, account_id: &str, connection_id: &str) -> Result<(), VaultError> {
        let client = self.pool.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM credential_vault WHERE account_id = $1 AND connection_id = $2",
                &[&account_id, &connection_id],
            )
            .await?;
        tracing::debug!(account_id, connection_id, deleted, "credential destroyed");
        Ok(())
    }

    /// Destroys the stored secrets of every connection of `account_id` (account erasure, see
    /// [`crate::data_keys`]): their rows are deleted, so the connections can no longer authenticate to their
    /// platforms. Idempotent; returns how many it destroyed.
    pub async fn destroy_account(&self, account_id: &str) -> Result<u64, VaultError> {
        let client = self.pool.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM credential_vault WHERE account_id = $1",
                &[&account_id],
            )
            .await?;
        tracing::info!(
            account_id,
            deleted,
            "credentials of an erased account destroyed"
        );
        Ok(deleted)
    }

    /// Destroys the secrets of every connection whose deletion is recorded in the event log. A deletion
    /// records ConnectionDeleted first and destroys the secret second; this finishes the second step for a
    /// process that stopped in between. Run at start-up; returns how many secrets it destroyed.
    pub async fn sweep_deleted(&self) -> Result<u64, VaultError> {
        let client = self.pool.get().await?;
        let destroyed = client
            .execute(
                "DELETE FROM credential_vault v WHERE EXISTS ( \
                   SELECT 1 FROM events e \
                   WHERE e.aggregate_type = 'connection' AND e.aggregate_id = v.connection_id \
                     AND e.event_type = 'ConnectionDeleted')",
                &[],
            )
            .await?;
        Ok(destroyed)
    }

    /// Re-encrypts every row not under the current key, and returns how many were re-encrypted. Run it after
    /// making a new key current (the old one listed as previous); once it returns, the old key can be retired.
    ///
    /// Rows are processed in batches, each update on its own: an interrupted rotation keeps what it did and can
    /// simply be run again. A row rewritten concurrently (by `store`) is left alone, not overwritten. The stored
    /// fingerprint is recomputed under the current key so the row's `(key_id, fingerprint)` stays a consistent
    /// [`CredentialRef`]. Fails with [`VaultError::UnknownKey`] on a row under a key this process does not hold.
    pub async fn rotate(&self) -> Result<u64, VaultError> {
        let current = &self.keys.current;
        let client = self.pool.get().await?;
        let mut rotated = 0;
        // Keyset pagination over the primary key: also guarantees termination if rows keep being skipped.
        let mut after: Option<(String, String)> = None;
        loop {
            let (after_account, after_connection) = match &after {
                Some((a, c)) => (Some(a.as_str()), Some(c.as_str())),
                None => (None, None),
            };
            let rows = client
                .query(
                    "SELECT account_id, connection_id, key_id, nonce, ciphertext FROM credential_vault
                     WHERE key_id <> $1
                       AND ($2::text IS NULL OR (account_id, connection_id) > ($2, $3::text))
                     ORDER BY account_id, connection_id
                     LIMIT $4",
                    &[&current.id, &after_account, &after_connection, &ROTATE_BATCH],
                )
                .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = Some((last.try_get(0)?, last.try_get(1)?));
            for row in &rows {
                let account_id: &str = row.try_get(0)?;
                let connection_id: &str = row.try_get(1)?;
                let key_id: &str = row.try_get(2)?;
                let nonce: &[u8] = row.try_get(3)?;
                let ciphertext: &[u8] = row.try_get(4)?;
                let secret = open(
                    &self.keys,
                    account_id,
                    connection_id,
                    key_id,
                    nonce,
                    ciphertext,
                )?;
                let sealed = seal(current, account_id, connection_id, &secret)?;
                // Compare-and-swap on the old (key_id, nonce): if `store` rewrote the row meanwhile, keep its write.
                let updated = client
                    .execute(
                        "UPDATE credential_vault
                         SET key_id = $3, nonce = $4, ciphertext = $5, fingerprint = $6, updated_at = now()
                         WHERE account_id = $1 AND connection_id = $2 AND key_id = $7 AND nonce = $8",
                        &[
                            &account_id,
                            &connection_id,
                            &current.id,
                            &&sealed.nonce[..],
                            &sealed.ciphertext,
                            &sealed.fingerprint,
                            &key_id,
                            &nonce,
                        ],
                    )
                    .await?;
                rotated += updated;
            }
        }
        tracing::info!(rotated, key_id = %current.id, "credential vault rotated to the current master key");
        Ok(rotated)
    }
}

/// The additional authenticated data binding a ciphertext to its row.
fn aad(account_id: &str, connection_id: &str) -> String {
    format!("listbackup:v1:{account_id}:{connection_id}")
}

fn seal(
    key: &MasterKey,
    account_id: &str,
    connection_id: &str,
    secret: &SecretCredentials,
) -> Result<Sealed, VaultError> {
    let json = secret.to_canonical_json();
    let mut nonce = [0u8; NONCE_LEN];
    // Random 96-bit nonces stay safe up to about 2^32 encryptions per key (NIST SP 800-38D); a new key resets it.
    OsRng.fill_bytes(&mut nonce);
    let aad = aad(account_id, connection_id);
    let ciphertext = key
        .cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &json,
                aad: aad.as_bytes(),
            },
        )
        // Only fails for absurdly long inputs; the error type carries no detail.
        .map_err(|_| VaultError::Encrypt("credentials could not be encrypted"))?;
    Ok(Sealed {
        nonce,
        ciphertext,
        fingerprint: key.fingerprint(account_id, &json),
    })
}

fn open(
    keys: &MasterKeys,
    account_id: &str,
    connection_id: &str,
    key_id: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<SecretCredentials, VaultError> {
    let key = keys
        .find(key_id)
        .ok_or_else(|| VaultError::UnknownKey(key_id.to_owned()))?;
    if nonce.len() != NONCE_LEN {
        return Err(VaultError::Decrypt);
    }
    let aad = aad(account_id, connection_id);
    let plaintext = key
        .cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| VaultError::Decrypt)?;
    SecretCredentials::from_canonical_json(&plaintext)
}

/// The HKDF salt of the fingerprint keys (RFC 5869 §3.1: a fixed, application-specific salt).
const FINGERPRINT_SALT: &[u8] = b"listbackup credential fingerprint";

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIGRATION: &str = include_str!("../../migrations/0002_credential_vault.sql");
    const ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

    /// A throw-away database with the vault migration applied, dropped when the guard goes out of scope, also
    /// when the test panics.
    struct TestDb {
        name: String,
        url: String,
    }

    impl TestDb {
        async fn create() -> Self {
            let name = format!("vault_test_{}", uuid::Uuid::new_v4().simple());
            let admin = connect(ADMIN_URL).await;
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            // The guard exists from here on, so a failing migration still drops the database.
            let db = TestDb {
                url: format!("postgres://root@127.0.0.1:5432/{name}"),
                name,
            };
            connect(&db.url)
                .await
                .batch_execute(MIGRATION)
                .await
                .expect("apply migration");
            db
        }

        fn pool(&self) -> deadpool_postgres::Pool {
            pool(&self.url)
        }

        async fn client(&self) -> tokio_postgres::Client {
            connect(&self.url).await
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let name = self.name.clone();
            // Drop cannot await, and the test's runtime may be shutting down or single-threaded: use a fresh
            // thread with its own runtime. WITH (FORCE) ends the pool's lingering connections.
            let dropped = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(async {
                        connect(ADMIN_URL)
                            .await
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await
                    })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test database {}", self.name);
            }
        }
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to PostgreSQL");
        tokio::spawn(connection);
        client
    }

    fn pool(url: &str) -> deadpool_postgres::Pool {
        deadpool_postgres::Config {
            url: Some(url.to_owned()),
            ..Default::default()
        }
        .create_pool(
            Some(deadpool_postgres::Runtime::Tokio1),
            tokio_postgres::NoTls,
        )
        .expect("pool")
    }

    fn random_key() -> String {
        let mut key = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut key);
        BASE64.encode(key)
    }

    fn keys(current: &str, previous: &[&str]) -> Arc<MasterKeys> {
        Arc::new(MasterKeys::from_base64(current, previous).expect("valid keys"))
    }

    fn secret(pairs: &[(&str, &str)]) -> SecretCredentials {
        SecretCredentials::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    const API_KEY: &str = "sk_live_51HsecretValueThatMustNotLeak";

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[tokio::test]
    async fn round_trip() {
        let db = TestDb::create().await;
        let vault = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        let stored = secret(&[("api_key", API_KEY), ("account", "acct_1")]);

        let reference = vault.store("acc1", "conn1", &stored).await.unwrap();
        assert_eq!(reference.key_id, vault.keys().current_key_id());
        assert_eq!(reference.fingerprint, vault.fingerprint("acc1", &stored));
        assert_eq!(reference, vault.credential_ref("acc1", &stored));

        let loaded = vault.load("acc1", "conn1").await.unwrap().expect("stored");
        assert_eq!(loaded.expose(), stored.expose());
        assert_eq!(loaded.get("api_key"), Some(API_KEY));
        assert_eq!(loaded.fields().collect::<Vec<_>>(), ["account", "api_key"]);
        assert!(vault.load("acc1", "other").await.unwrap().is_none());

        // Upsert: storing again replaces the secret.
        vault
            .store("acc1", "conn1", &secret(&[("api_key", "new")]))
            .await
            .unwrap();
        let loaded = vault.load("acc1", "conn1").await.unwrap().unwrap();
        assert_eq!(loaded.get("api_key"), Some("new"));
    }

    #[tokio::test]
    async fn ciphertext_does_not_contain_the_secret_and_nonces_are_fresh() {
        let db = TestDb::create().await;
        let vault = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        let stored = secret(&[("api_key", API_KEY)]);
        let client = db.client().await;
        let read = || async {
            let row = client
                .query_one(
                    "SELECT nonce, ciphertext, key_id, fingerprint FROM credential_vault",
                    &[],
                )
                .await
                .unwrap();
            let nonce: Vec<u8> = row.get(0);
            let ciphertext: Vec<u8> = row.get(1);
            let key_id: String = row.get(2);
            let fingerprint: String = row.get(3);
            (nonce, ciphertext, key_id, fingerprint)
        };

        vault.store("acc1", "conn1", &stored).await.unwrap();
        let (nonce1, ciphertext1, key_id, fingerprint) = read().await;
        assert_eq!(nonce1.len(), NONCE_LEN);
        for column in [&ciphertext1[..], key_id.as_bytes(), fingerprint.as_bytes()] {
            assert!(!contains(column, API_KEY.as_bytes()));
            assert!(!contains(column, b"api_key"));
        }

        // Same secret stored again: a fresh nonce, hence a different ciphertext.
        vault.store("acc1", "conn1", &stored).await.unwrap();
        let (nonce2, ciphertext2, _, _) = read().await;
        assert_ne!(nonce1, nonce2);
        assert_ne!(ciphertext1, ciphertext2);
    }

    #[tokio::test]
    async fn ciphertext_copied_to_another_row_does_not_decrypt() {
        let db = TestDb::create().await;
        let vault = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        vault
            .store("acc1", "conn1", &secret(&[("api_key", API_KEY)]))
            .await
            .unwrap();
        db.client()
            .await
            .batch_execute(
                "INSERT INTO credential_vault (account_id, connection_id, key_id, nonce, ciphertext, fingerprint)
                 SELECT account_id, 'conn2', key_id, nonce, ciphertext, fingerprint FROM credential_vault
                 UNION ALL
                 SELECT 'acc2', connection_id, key_id, nonce, ciphertext, fingerprint FROM credential_vault",
            )
            .await
            .unwrap();

        for (account, connection) in [("acc1", "conn2"), ("acc2", "conn1")] {
            let err = vault.load(account, connection).await.unwrap_err();
            assert!(matches!(err, VaultError::Decrypt), "{err:?}");
            assert!(!err.to_string().contains(API_KEY));
        }
        assert!(vault.load("acc1", "conn1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn rotation_moves_rows_to_the_current_key() {
        let db = TestDb::create().await;
        let (key_a, key_b) = (random_key(), random_key());
        let vault_a = CredentialVault::new(db.pool(), keys(&key_a, &[]));
        for connection in ["conn1", "conn2", "conn3"] {
            vault_a
                .store("acc1", connection, &secret(&[("api_key", API_KEY)]))
                .await
                .unwrap();
        }

        // B current, A still accepted: old rows load before rotation.
        let vault_ba = CredentialVault::new(db.pool(), keys(&key_b, &["", &key_a, &key_b]));
        assert_eq!(
            vault_ba.keys().previous_key_ids().collect::<Vec<_>>(),
            [vault_a.keys().current_key_id()]
        );
        let loaded = vault_ba.load("acc1", "conn1").await.unwrap().unwrap();
        assert_eq!(loaded.get("api_key"), Some(API_KEY));
        // A row already under B is not counted.
        vault_ba
            .store("acc1", "conn3", &secret(&[("api_key", API_KEY)]))
            .await
            .unwrap();

        assert_eq!(vault_ba.rotate().await.unwrap(), 2);
        let key_ids: Vec<String> = db
            .client()
            .await
            .query("SELECT DISTINCT key_id FROM credential_vault", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(key_ids, [vault_ba.keys().current_key_id()]);
        assert_eq!(vault_ba.rotate().await.unwrap(), 0);

        // A retired entirely: everything still loads under B alone.
        let vault_b = CredentialVault::new(db.pool(), keys(&key_b, &[]));
        for connection in ["conn1", "conn2", "conn3"] {
            let loaded = vault_b.load("acc1", connection).await.unwrap().unwrap();
            assert_eq!(loaded.get("api_key"), Some(API_KEY));
        }
    }

    #[tokio::test]
    async fn unknown_key_is_reported_by_id() {
        let db = TestDb::create().await;
        let vault_a = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        vault_a
            .store("acc1", "conn1", &secret(&[("api_key", API_KEY)]))
            .await
            .unwrap();

        let vault_b = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        match vault_b.load("acc1", "conn1").await {
            Err(VaultError::UnknownKey(id)) => assert_eq!(id, vault_a.keys().current_key_id()),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        assert!(matches!(
            vault_b.rotate().await,
            Err(VaultError::UnknownKey(_))
        ));
    }

    #[tokio::test]
    async fn destroy_is_final_and_idempotent() {
        let db = TestDb::create().await;
        let vault = CredentialVault::new(db.pool(), keys(&random_key(), &[]));
        vault
            .store("acc1", "conn1", &secret(&[("api_key", API_KEY)]))
            .await
            .unwrap();
        vault
            .store("acc1", "conn2", &secret(&[("api_key", API_KEY)]))
            .await
            .unwrap();

        vault.destroy("acc1", "conn1").await.unwrap();
        assert!(vault.load("acc1", "conn1").await.unwrap().is_none());
        vault.destroy("acc1", "conn1").await.unwrap();
        assert!(vault.load("acc1", "conn2").await.unwrap().is_some());
    }

    #[test]
    fn debug_redacts_values() {
        let debug = format!("{:?}", secret(&[("api_key", API_KEY)]));
        assert!(!debug.contains(API_KEY), "{debug}");
        assert!(
            debug.contains("api_key") && debug.contains("[redacted]"),
            "{debug}"
        );
        let keys_debug = format!("{:?}", keys(&random_key(), &[]));
        assert!(keys_debug.contains("MasterKeys"));
    }

    #[tokio::test]
    async fn fingerprint_is_keyed_stable_and_reveals_nothing() {
        // No database needed: the pool connects lazily.
        let key = random_key();
        let vault = CredentialVault::new(pool(ADMIN_URL), keys(&key, &[]));
        let stored = secret(&[("api_key", API_KEY)]);

        let fingerprint = vault.fingerprint("acc1", &stored);
        assert_eq!(fingerprint.len(), 16);
        assert!(fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            fingerprint,
            vault.fingerprint("acc1", &secret(&[("api_key", API_KEY)]))
        );
        assert_eq!(
            fingerprint,
            CredentialVault::new(pool(ADMIN_URL), keys(&key, &[])).fingerprint("acc1", &stored)
        );
        assert_ne!(
            fingerprint,
            vault.fingerprint("acc1", &secret(&[("api_key", "other")]))
        );
        assert_ne!(
            fingerprint,
            vault.fingerprint("acc1", &secret(&[("token", API_KEY)]))
        );
        // Another account holding the very same key cannot be linked to this one by it.
        assert_ne!(fingerprint, vault.fingerprint("acc2", &stored));
        assert!(!API_KEY.contains(&fingerprint) && !fingerprint.contains("sk_live"));

        // Not a plain hash: another master key gives another fingerprint for the same secret.
        let other = CredentialVault::new(pool(ADMIN_URL), keys(&random_key(), &[]));
        assert_ne!(fingerprint, other.fingerprint("acc1", &stored));
        let plain = hex::encode(&Sha256::digest(stored.to_canonical_json().as_slice())[..8]);
        assert_ne!(fingerprint, plain);
    }

    #[test]
    fn master_key_parsing() {
        let key = random_key();
        let keys = MasterKeys::from_base64(&format!(" {key}\n"), &[]).unwrap();
        assert_eq!(keys.current_key_id().len(), 16);
        let raw = BASE64.decode(&key).unwrap();
        assert_eq!(
            keys.current_key_id(),
            hex::encode(&Sha256::digest(&raw)[..8])
        );

        let short = BASE64.encode([7u8; 16]);
        for (current, previous) in [
            ("not base64!", vec![]),
            (short.as_str(), vec![]),
            (key.as_str(), vec![short.as_str()]),
        ] {
            let err = MasterKeys::from_base64(current, &previous).unwrap_err();
            assert!(matches!(err, VaultError::InvalidMasterKey(_)), "{err:?}");
            assert!(!err.to_string().contains(&short) && !err.to_string().contains(&key));
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
