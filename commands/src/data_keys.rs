//! Per-account data keys (issue 13 §2): each account's backup files are encrypted with a random 256-bit key
//! of its own, made the first time the account needs one and stored only wrapped (AES-256-GCM) under the
//! master key, in `account_data_keys` (migration `0080_account_data_keys.sql`).
//!
//! Why a data key per account rather than the master key itself: erasing an account is then destroying one
//! row (crypto-shredding: its backups stay in storage as ciphertext nobody can read, wherever they are
//! copied), and rotating the master key re-wraps one small row per account instead of re-encrypting
//! terabytes of backups.
//!
//! Master key rotation works as for the credential vault ([`crate::vault`]): a row records the id of the
//! master key that wrapped it; keys listed in `LISTBACKUP_MASTER_KEYS_PREVIOUS` still unwrap; and
//! [`DataKeys::rewrap`] moves every row onto the current master key (the data key itself, and so every
//! stored backup, is unchanged). Run it (with [`crate::vault::CredentialVault::rotate`]) after making a new
//! master key current; once it returns, the old master key can be retired.
//!
//! Rules kept: the AAD binds a wrapped key to its row (`listbackup:data-key:v1:{account_id}:{key_id}`); no key
//! material ever reaches an error, a log line, an event or a `Debug` output; unwrapped keys are zeroized
//! when dropped. Unwrapped keys are not cached between uses, so that an erasure takes effect at once in
//! every process.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::vault::{MasterKeys, VaultError};

/// A data key's length: 256 bits.
pub const DATA_KEY_LEN: usize = 32;

/// Rows re-wrapped per round trip by [`DataKeys::rewrap`].
const REWRAP_BATCH: i64 = 100;

/// One account's data key, unwrapped. `Debug` shows its id only; the key is zeroized when dropped.
pub struct DataKey {
    id: String,
    key: Zeroizing<[u8; DATA_KEY_LEN]>,
}

impl DataKey {
    /// The key's id (`dk_…`): written into every file header it encrypts, never secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key itself: for the code that encrypts and decrypts backup files only.
    pub fn secret(&self) -> &[u8; DATA_KEY_LEN] {
        &self.key
    }

    /// A key from its bytes (tests, and the benchmark's key that needs no database).
    pub fn from_bytes(id: &str, key: [u8; DATA_KEY_LEN]) -> Self {
        Self {
            id: id.to_owned(),
            key: Zeroizing::new(key),
        }
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    /// The account was erased: its data key is destroyed, its backups cannot be read or written.
    #[error("the account was erased at {}: its backups' data key is destroyed", .0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    Erased(DateTime<Utc>),
    /// A file names a data key the account does not have (another account's file, or a corrupt header).
    #[error("data key {0} is not this account's")]
    UnknownKey(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<tokio_postgres::Error> for DataKeyError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Vault(VaultError::Database(err))
    }
}

impl From<deadpool_postgres::PoolError> for DataKeyError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Vault(VaultError::Pool(err))
    }
}

/// Makes, unwraps, re-wraps and destroys the accounts' data keys in `account_data_keys`.
#[derive(Clone)]
pub struct DataKeys {
    pool: deadpool_postgres::Pool,
    keys: Arc<MasterKeys>,
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeys")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The additional authenticated data binding a wrapped key to its row.
fn aad(account_id: &str, key_id: &str) -> String {
    format!("listbackup:data-key:v1:{account_id}:{key_id}")
}

/// One row of `account_data_keys`.
struct Row {
    key_id: String,
    /// `(master_key_id, nonce, wrapped_key)`; `None` once erased.
    wrapped: Option<(String, Vec<u8>, Vec<u8>)>,
    erased_at: Option<DateTime<Utc>>,
}

impl DataKeys {
    pub fn new(pool: deadpool_postgres::Pool, keys: Arc<MasterKeys>) -> Self {
        Self { pool, keys }
    }

    /// The account's data key for encrypting, made (and stored wrapped) on first need. Two processes making
    /// it at once agree on one: the first insert wins and both read it back. [`DataKeyError::Erased`] for an
    /// erased account: no key is ever made for it again.
    pub async fn for_writing(&self, account_id: &str) -> Result<DataKey, DataKeyError> {
        if let Some(row) = self.row(account_id).await? {
            return self.unwrap_row(account_id, row);
        }
        let key_id = format!("dk_{}", uuid::Uuid::new_v4().simple());
        let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
        OsRng.fill_bytes(&mut key[..]);
        let (master_key_id, nonce, wrapped) = self
            .keys
            .wrap(aad(account_id, &key_id).as_bytes(), &key[..])?;
        let client = self.pool.get().await?;
        let inserted = client
            .execute(
                "INSERT INTO account_data_keys (account_id, key_id, master_key_id, nonce, wrapped_key)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id) DO NOTHING",
                &[&account_id, &key_id, &master_key_id, &&nonce[..], &wrapped],
            )
            .await?;
        drop(client);
        if inserted == 1 {
            tracing::info!(account_id, key_id, master_key_id, "data key made");
            return Ok(DataKey { id: key_id, key });
        }
        // Another process made it first: use theirs.
        let row = self
            .row(account_id)
            .await?
            .ok_or_else(|| DataKeyError::UnknownKey(key_id))?;
        self.unwrap_row(account_id, row)
    }

    /// The data key `key_id` of `account_id`, for decrypting a file whose header names it.
    /// [`DataKeyError::Erased`] once the account is erased; [`DataKeyError::UnknownKey`] for a key that is not
    /// the account's.
    pub async fn for_reading(
        &self,
        account_id: &str,
        key_id: &str,
    ) -> Result<DataKey, DataKeyError> {
        let row = self
            .row(account_id)
            .await?
            .ok_or_else(|| DataKeyError::UnknownKey(key_id.to_owned()))?;
        if let Some(at) = row.erased_at {
            return Err(DataKeyError::Erased(at));
        }
        if row.key_id != key_id {
            return Err(DataKeyError::UnknownKey(key_id.to_owned()));
        }
        self.unwrap_row(account_id, row)
    }

    /// When the account was erased; `None` while it is not.
    pub async fn erased_at(&self, account_id: &str) -> Result<Option<DateTime<Utc>>, DataKeyError> {
        let client = self.pool.get().await?;
        Ok(erased_at(&client, account_id).await?)
    }

    /// Destroys the account's data key for good: its row is overwritten (no wrapped key, no nonce, no master
    /// key id) and kept as a tombstone with `erased_at`, so that no new key is made for the account either.
    /// Idempotent: the first erasure's time stays. Returns the erasure's time.
    ///
    /// What is destroyed is the only copy of the data key this service holds. PostgreSQL keeps the old row
    /// version until VACUUM reclaims it (and database backups keep it as long as they are kept): still
    /// wrapped, so it is readable only together with the master key of that time, and rotating the master key
    /// (and retiring the old one) after an erasure puts those copies out of reach too.
    pub async fn erase(
        &self,
        account_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, DataKeyError> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO account_data_keys (account_id, key_id, erased_at)
                 VALUES ($1, $2, $3)
                 ON CONFLICT (account_id) DO UPDATE SET
                     master_key_id = NULL, nonce = NULL, wrapped_key = NULL, updated_at = now(),
                     erased_at = COALESCE(account_data_keys.erased_at, EXCLUDED.erased_at)
                 RETURNING erased_at",
                &[
                    &account_id,
                    &format!("dk_erased_{}", uuid::Uuid::new_v4().simple()),
                    &at,
                ],
            )
            .await?;
        let erased_at: DateTime<Utc> = row.try_get(0)?;
        tracing::info!(account_id, %erased_at, "data key destroyed (account erased)");
        Ok(erased_at)
    }

    /// Re-wraps every data key not under the current master key; returns how many it re-wrapped. The keys
    /// themselves do not change, so no stored backup is touched. Like the vault's rotation: batches, each
    /// update a compare-and-swap on the old wrapping, safe to interrupt and run again; fails with
    /// [`VaultError::UnknownKey`] on a row under a master key this process does not hold.
    pub async fn rewrap(&self) -> Result<u64, DataKeyError> {
        let current = self.keys.current_key_id().to_owned();
        let client = self.pool.get().await?;
        let mut rewrapped = 0;
        let mut after: Option<String> = None;
        loop {
            let rows = client
                .query(
                    "SELECT account_id, key_id, master_key_id, nonce, wrapped_key FROM account_data_keys
                     WHERE erased_at IS NULL AND master_key_id <> $1
                       AND ($2::text IS NULL OR account_id > $2)
                     ORDER BY account_id LIMIT $3",
                    &[&current, &after, &REWRAP_BATCH],
                )
                .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = Some(last.try_get(0)?);
            for row in &rows {
                let account_id: &str = row.try_get(0)?;
                let key_id: &str = row.try_get(1)?;
                let master_key_id: &str = row.try_get(2)?;
                let nonce: &[u8] = row.try_get(3)?;
                let wrapped: &[u8] = row.try_get(4)?;
                let aad = aad(account_id, key_id);
                let key = self
                    .keys
                    .unwrap_key(master_key_id, aad.as_bytes(), nonce, wrapped)?;
                let (new_master, new_nonce, new_wrapped) = self.keys.wrap(aad.as_bytes(), &key)?;
                rewrapped += client
                    .execute(
                        "UPDATE account_data_keys
                         SET master_key_id = $3, nonce = $4, wrapped_key = $5, updated_at = now()
                         WHERE account_id = $1 AND key_id = $2 AND erased_at IS NULL
                           AND master_key_id = $6 AND nonce = $7",
                        &[
                            &account_id,
                            &key_id,
                            &new_master,
                            &&new_nonce[..],
                            &new_wrapped,
                            &master_key_id,
                            &nonce,
                        ],
                    )
                    .await?;
            }
        }
        tracing::info!(rewrapped, master_key_id = %current, "data keys re-wrapped under the current master key");
        Ok(rewrapped)
    }

    async fn row(&self, account_id: &str) -> Result<Option<Row>, DataKeyError> {
        let client = self.pool.get().await?;
        let select = client
            .prepare_cached(
                "SELECT key_id, master_key_id, nonce, wrapped_key, erased_at FROM account_data_keys
                 WHERE account_id = $1",
            )
            .await?;
        let Some(row) = client.query_opt(&select, &[&account_id]).await? else {
            return Ok(None);
        };
        let master_key_id: Option<String> = row.try_get(1)?;
        let nonce: Option<Vec<u8>> = row.try_get(2)?;
        let wrapped_key: Option<Vec<u8>> = row.try_get(3)?;
        Ok(Some(Row {
            key_id: row.try_get(0)?,
            wrapped: match (master_key_id, nonce, wrapped_key) {
                (Some(m), Some(n), Some(w)) => Some((m, n, w)),
                _ => None,
            },
            erased_at: row.try_get(4)?,
        }))
    }

    fn unwrap_row(&self, account_id: &str, row: Row) -> Result<DataKey, DataKeyError> {
        let (master_key_id, nonce, wrapped) = match (row.erased_at, row.wrapped) {
            (None, Some(wrapped)) => wrapped,
            (Some(at), _) => return Err(DataKeyError::Erased(at)),
            // The table's CHECK rules a row without a key and without an erasure out.
            (None, None) => return Err(DataKeyError::Vault(VaultError::Decrypt)),
        };
        let plain = self.keys.unwrap_key(
            &master_key_id,
            aad(account_id, &row.key_id).as_bytes(),
            &nonce,
            &wrapped,
        )?;
        let key: [u8; DATA_KEY_LEN] = plain[..]
            .try_into()
            .map_err(|_| DataKeyError::Vault(VaultError::Decrypt))?;
        Ok(DataKey {
            id: row.key_id,
            key: Zeroizing::new(key),
        })
    }
}

/// When `account_id` was erased, read with any client (the API's read pool); `None` while it is not.
pub async fn erased_at(
    client: &impl deadpool_postgres::GenericClient,
    account_id: &str,
) -> Result<Option<DateTime<Utc>>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT erased_at FROM account_data_keys WHERE account_id = $1",
            &[&account_id],
        )
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<DateTime<Utc>>>(0)))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    const MIGRATION: &str = include_str!("../../migrations/0080_account_data_keys.sql");
    const ADMIN_URL: &str = "postgres://root@127.0.0.1:5432/postgres";

    /// A throw-away database with the data keys' table, dropped at the end (also when the test panics).
    struct TestDb {
        name: String,
        url: String,
    }

    impl TestDb {
        async fn create() -> Self {
            let name = format!("data_keys_test_{}", uuid::Uuid::new_v4().simple());
            connect(ADMIN_URL)
                .await
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .await
                .unwrap();
            let db = TestDb {
                url: format!("postgres://root@127.0.0.1:5432/{name}"),
                name,
            };
            connect(&db.url)
                .await
                .batch_execute(MIGRATION)
                .await
                .unwrap();
            db
        }

        fn keys(&self, current: &str, previous: &[&str]) -> DataKeys {
            let pool = deadpool_postgres::Config {
                url: Some(self.url.clone()),
                pool: Some(deadpool_postgres::PoolConfig::new(2)),
                ..Default::default()
            }
            .create_pool(
                Some(deadpool_postgres::Runtime::Tokio1),
                tokio_postgres::NoTls,
            )
            .unwrap();
            DataKeys::new(
                pool,
                Arc::new(MasterKeys::from_base64(current, previous).unwrap()),
            )
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let name = self.name.clone();
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(async {
                        connect(ADMIN_URL)
                            .await
                            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .await
                    })
            })
            .join();
        }
    }

    async fn connect(url: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    fn master_key() -> String {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        base64::engine::general_purpose::STANDARD.encode(key)
    }

    #[tokio::test]
    async fn an_accounts_data_key_is_made_once_and_stored_only_wrapped() {
        let db = TestDb::create().await;
        let keys = db.keys(&master_key(), &[]);
        let (a, b) = tokio::join!(keys.for_writing("acme"), keys.for_writing("acme"));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.id(), b.id(), "two processes at once agree on one key");
        assert_eq!(a.secret(), b.secret());
        assert!(a.id().starts_with("dk_"), "{}", a.id());
        let again = keys.for_reading("acme", a.id()).await.unwrap();
        assert_eq!(again.secret(), a.secret());
        let other = keys.for_writing("globex").await.unwrap();
        assert_ne!(other.secret(), a.secret(), "a key per account");
        // Another account's key id is not this account's.
        assert!(matches!(
            keys.for_reading("acme", other.id()).await,
            Err(DataKeyError::UnknownKey(_))
        ));
        // Stored wrapped: the row holds the key's 32 bytes encrypted (plus the tag), never the key.
        let row = connect(&db.url)
            .await
            .query_one(
                "SELECT wrapped_key FROM account_data_keys WHERE account_id = 'acme'",
                &[],
            )
            .await
            .unwrap();
        let wrapped: Vec<u8> = row.get(0);
        assert_eq!(wrapped.len(), DATA_KEY_LEN + 16);
        assert!(!wrapped
            .windows(8)
            .any(|w| a.secret().windows(8).any(|k| k == w)));
        // Debug shows the id only.
        let debug = format!("{a:?}");
        assert!(
            debug.contains(a.id()) && !debug.contains(&hex::encode(a.secret())),
            "{debug}"
        );
    }

    #[tokio::test]
    async fn a_retired_master_key_still_unwraps_until_the_rewrap_moves_every_row_off_it() {
        let db = TestDb::create().await;
        let (old, new) = (master_key(), master_key());
        let before = db.keys(&old, &[]);
        let key = before.for_writing("acme").await.unwrap();
        // A new master key, the old one retired but configured.
        let rotated = db.keys(&new, &[&old]);
        assert_eq!(
            rotated
                .for_reading("acme", key.id())
                .await
                .unwrap()
                .secret(),
            key.secret()
        );
        assert_eq!(rotated.rewrap().await.unwrap(), 1);
        assert_eq!(rotated.rewrap().await.unwrap(), 0, "nothing left to move");
        // The old master key can go: the new one alone unwraps the same data key.
        let retired = db.keys(&new, &[]);
        assert_eq!(
            retired
                .for_reading("acme", key.id())
                .await
                .unwrap()
                .secret(),
            key.secret()
        );
        // And the old one alone no longer does.
        assert!(matches!(
            before.for_reading("acme", key.id()).await,
            Err(DataKeyError::Vault(VaultError::UnknownKey(_)))
        ));
    }

    #[tokio::test]
    async fn an_erased_accounts_key_is_gone_and_never_made_again() {
        let db = TestDb::create().await;
        let keys = db.keys(&master_key(), &[]);
        let key = keys.for_writing("acme").await.unwrap();
        let at = Utc::now();
        let erased = keys.erase("acme", at).await.unwrap();
        assert_eq!(erased.timestamp_micros(), at.timestamp_micros());
        // Idempotent: the first erasure's time stays.
        let later = keys
            .erase("acme", at + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert_eq!(later, erased);
        assert!(
            matches!(keys.for_reading("acme", key.id()).await, Err(DataKeyError::Erased(t)) if t == erased)
        );
        assert!(matches!(
            keys.for_writing("acme").await,
            Err(DataKeyError::Erased(_))
        ));
        assert_eq!(keys.erased_at("acme").await.unwrap(), Some(erased));
        let row = connect(&db.url)
            .await
            .query_one(
                "SELECT wrapped_key IS NULL AND nonce IS NULL AND master_key_id IS NULL
                 FROM account_data_keys WHERE account_id = 'acme'",
                &[],
            )
            .await
            .unwrap();
        assert!(row.get::<_, bool>(0), "the wrapped key is overwritten");
        // An account erased before it ever had a key gets none either.
        keys.erase("initech", at).await.unwrap();
        assert!(matches!(
            keys.for_writing("initech").await,
            Err(DataKeyError::Erased(_))
        ));
        // Others are untouched.
        assert_eq!(keys.erased_at("globex").await.unwrap(), None);
        keys.for_writing("globex").await.unwrap();
    }
}
