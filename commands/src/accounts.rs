//! Account use cases: erasure (issue 13 §2).
//!
//! Erasing an account records `AccountErased {by, at}` on the account's own stream (`account/{accountId}`)
//! first, then destroys what makes the account's data readable: its data key ([`DataKeys::erase`], so its
//! backups become ciphertext nobody can read) and its connections' stored credentials
//! ([`CredentialVault::destroy_account`], so the connections cannot authenticate to their platforms).
//! Nothing else is touched: every event stays where it is and every stream's hash chain still verifies,
//! so the history remains evidence of what happened, including the erasure.
//!
//! The event comes first, as for a connection's deletion: should the process stop between the two steps,
//! [`AccountCommands::sweep_erased`] (run at start-up) finishes the destruction for every erasure in the log.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use listbackup_domain::account::{Account, AccountCommand};

use crate::bus::{CommandBus, CommandError};
use crate::data_keys::{DataKeyError, DataKeys};
use crate::metadata::EventMetadata;
use crate::sources::account;
use crate::vault::CredentialVault;

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erasure {
    /// The actor of the (first) erasure.
    pub by: String,
    /// When the account was (first) erased.
    pub at: DateTime<Utc>,
    /// Whether this call recorded the erasure (false: the account was already erased).
    pub recorded: bool,
    /// The aggregate's version after the command.
    pub version: u64,
}

pub struct AccountCommands {
    bus: CommandBus<Account>,
    data_keys: DataKeys,
    vault: CredentialVault,
    pool: deadpool_postgres::Pool,
    known: Mutex<HashMap<String, KnownErasure>>,
}

/// How long this process trusts a "not erased" answer before asking the database again: the longest an
/// erasure made by another process takes to refuse this one's changes (the erasing process refuses them at
/// once). An erasure is never forgotten.
pub const ERASURE_RECHECK: Duration = Duration::from_secs(5);

/// Entries kept before the stale "not erased" ones are dropped (one per account that changed something).
const KNOWN_ACCOUNTS_CAP: usize = 10_000;

#[derive(Debug, Clone, Copy)]
enum KnownErasure {
    Erased(DateTime<Utc>),
    NotErasedAsOf(Instant),
}

impl AccountCommands {
    pub fn new(
        bus: CommandBus<Account>,
        vault: CredentialVault,
        pool: deadpool_postgres::Pool,
    ) -> Self {
        let data_keys = DataKeys::new(pool.clone(), Arc::clone(vault.keys_arc()));
        Self {
            bus,
            data_keys,
            vault,
            pool,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Erases `metadata.account_id` on behalf of `metadata.actor`: records `AccountErased`, then destroys
    /// the account's data key and credentials. Idempotent: erasing again records nothing and destroys
    /// whatever is left (a credential stored since).
    pub async fn erase(&self, metadata: &EventMetadata) -> Result<Erasure, CommandError> {
        let account_id = account(metadata)?;
        let command = AccountCommand::Erase {
            account_id: account_id.clone(),
            by: metadata.actor.clone(),
            at: Utc::now(),
        };
        let committed = self
            .bus
            .execute(&account_id, command, metadata, None)
            .await?;
        let (state, version) = self.bus.load(&account_id).await?;
        let (by, at) = state
            .erased()
            .map(|(by, at)| (by.to_owned(), at))
            .ok_or_else(|| CommandError::corrupt("the erasure was not recorded"))?;
        self.remember(&metadata.account_id, KnownErasure::Erased(at));
        self.destroy(&metadata.account_id, at).await?;
        Ok(Erasure {
            by,
            at,
            recorded: committed.events > 0,
            version,
        })
    }

    /// When the account was erased; `None` while it is not.
    pub async fn erased_at(&self, account_id: &str) -> Result<Option<DateTime<Utc>>, CommandError> {
        self.data_keys
            .erased_at(account_id)
            .await
            .map_err(unavailable)
    }

    /// When the account was erased, as asked before every change the account makes: an erased account
    /// records nothing more (its history stays readable). Answered from memory where it can be: an erasure
    /// is remembered for good, a "not erased" for [`ERASURE_RECHECK`].
    ///
    /// # Errors
    /// [`CommandError::Unavailable`] when the database cannot be asked.
    pub async fn erased_before_change(
        &self,
        account_id: &str,
    ) -> Result<Option<DateTime<Utc>>, CommandError> {
        let known = self.lock_known().get(account_id).copied();
        match known {
            Some(KnownErasure::Erased(at)) => return Ok(Some(at)),
            Some(KnownErasure::NotErasedAsOf(asked)) if asked.elapsed() < ERASURE_RECHECK => {
                return Ok(None)
            }
            _ => {}
        }
        let erased = self.erased_at(account_id).await?;
        self.remember(
            account_id,
            match erased {
                Some(at) => KnownErasure::Erased(at),
                None => KnownErasure::NotErasedAsOf(Instant::now()),
            },
        );
        Ok(erased)
    }

    fn remember(&self, account_id: &str, erasure: KnownErasure) {
        let mut known = self.lock_known();
        if known.len() >= KNOWN_ACCOUNTS_CAP {
            known.retain(|_, k| match k {
                KnownErasure::Erased(_) => true,
                KnownErasure::NotErasedAsOf(asked) => asked.elapsed() < ERASURE_RECHECK,
            });
        }
        known.insert(account_id.to_owned(), erasure);
    }

    fn lock_known(&self) -> std::sync::MutexGuard<'_, HashMap<String, KnownErasure>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.known
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Finishes the destruction of every account whose erasure is in the log (a process that stopped
    /// between the event and the destruction). Run at start-up; returns how many accounts it finished.
    pub async fn sweep_erased(&self) -> Result<u64, CommandError> {
        let client = self.pool.get().await.map_err(|e| unavailable(e.into()))?;
        let rows = client
            .query(
                "SELECT e.aggregate_id, (e.payload->'AccountErased'->>'at')::timestamptz FROM events e
                 WHERE e.aggregate_type = 'account' AND e.event_type = 'AccountErased'
                   AND (NOT EXISTS (SELECT 1 FROM account_data_keys k
                                    WHERE k.account_id = e.aggregate_id AND k.erased_at IS NOT NULL)
                        OR EXISTS (SELECT 1 FROM credential_vault v WHERE v.account_id = e.aggregate_id))",
                &[],
            )
            .await
            .map_err(|e| unavailable(e.into()))?;
        drop(client);
        for row in &rows {
            let account_id: String = row.get(0);
            let at: DateTime<Utc> = row.get(1);
            self.destroy(&account_id, at).await?;
        }
        Ok(rows.len() as u64)
    }

    async fn destroy(&self, account_id: &str, at: DateTime<Utc>) -> Result<(), CommandError> {
        self.data_keys
            .erase(account_id, at)
            .await
            .map_err(unavailable)?;
        self.vault
            .destroy_account(account_id)
            .await
            .map_err(|e| unavailable(e.into()))?;
        Ok(())
    }
}

fn unavailable(err: DataKeyError) -> CommandError {
    CommandError::unavailable("the account's keys are unavailable", err)
}
