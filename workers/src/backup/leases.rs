//! Which backups run where, shared by every worker process through Postgres (`backup_runs`, migration 0009).
//!
//! Two rules read it (DESIGN §6, "keeps each connection within its platform's limits across every worker
//! process"):
//!
//! - **A lease per connection.** A connection's backups run in one worker process at a time, at most
//!   [`DispatchSettings::per_connection`](super::DispatchSettings) there. That process's rate budget
//!   (`connectors::rate`) is then the connection's only budget, so two processes never each spend the platform's
//!   whole limit on one connection. A budget shared through Postgres would let several processes work on one
//!   connection, at the price of a database round trip per platform request; a backup is bound by the
//!   platform's rate, not by one process's CPU, so the lease costs nothing that matters.
//! - **Fairness between accounts.** A worker picks the waiting backup of the account with the fewest backups
//!   running in every process ([`RunningElsewhere::account`]).
//!
//! A row lives while its process renews it ([`Leases::renew`], every keep-alive tick): a killed process's rows
//! expire one ack wait after its last renewal, which is when JetStream redelivers its messages to others.

use std::collections::HashMap;
use std::time::Duration;

use deadpool_postgres::Pool;

/// An error of the lease table: the database refused a statement, or no connection could be had. The
/// driver's error is kept whole as the source, so a log prints its chain.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("backup leases: a statement failed")]
    Database(#[from] tokio_postgres::Error),
    #[error("backup leases: the database is unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
}

/// What one run asks for: its job, the queue partition it came from, and the process running it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub job_id: &'a str,
    pub account_key: &'a str,
    pub connection_key: &'a str,
    /// The worker process (see [`super::BackupWorker`]), not the run.
    pub process_id: &'a str,
    /// At most this many backups of the connection in this process.
    pub per_connection: usize,
    /// How long the row lives without a renewal.
    pub ttl: Duration,
}

/// The backups other worker processes are running, by partition key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunningElsewhere {
    connections: HashMap<String, usize>,
    accounts: HashMap<String, usize>,
}

impl RunningElsewhere {
    /// Backups of this connection in other processes: while any runs, this process leaves the connection alone.
    pub fn connection(&self, connection_key: &str) -> usize {
        self.connections.get(connection_key).copied().unwrap_or(0)
    }

    /// Backups of this account in other processes.
    pub fn account(&self, account_key: &str) -> usize {
        self.accounts.get(account_key).copied().unwrap_or(0)
    }
}

/// The `backup_runs` table.
#[derive(Clone)]
pub struct Leases {
    db: Pool,
}

impl Leases {
    pub fn new(db: Pool) -> Self {
        Self { db }
    }

    /// Takes the connection for this run when no other process holds it and this one runs fewer than
    /// `per_connection` of its backups; `false` otherwise (try again later). A run taking over a job from a
    /// presumed-dead process replaces that process's row of the same job. Concurrent claims on one connection
    /// are serialized by a transaction-scoped advisory lock on it.
    pub async fn claim(&self, claim: Claim<'_>) -> Result<bool, LeaseError> {
        let mut client = self.db.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('listbackup.backup_runs.' || $1, 0))",
            &[&claim.connection_key],
        )
        .await?;
        tx.execute(
            "DELETE FROM backup_runs WHERE connection_key = $1 AND expires_at <= now()",
            &[&claim.connection_key],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE worker_id <> $2), count(*) FILTER (WHERE worker_id = $2) \
                 FROM backup_runs WHERE connection_key = $1 AND job_id <> $3",
                &[&claim.connection_key, &claim.process_id, &claim.job_id],
            )
            .await?;
        let (elsewhere, here): (i64, i64) = (row.get(0), row.get(1));
        if elsewhere > 0 || here >= claim.per_connection as i64 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO backup_runs (job_id, account_key, connection_key, worker_id, expires_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
             ON CONFLICT (job_id) DO UPDATE SET account_key = $2, connection_key = $3, worker_id = $4, \
               claimed_at = now(), expires_at = now() + make_interval(secs => $5)",
            &[
                &claim.job_id,
                &claim.account_key,
                &claim.connection_key,
                &claim.process_id,
                &claim.ttl.as_secs_f64(),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Extends every row of this process by `ttl` from now: one statement per tick, however many runs.
    pub async fn renew(&self, process_id: &str, ttl: Duration) -> Result<u64, LeaseError> {
        let client = self.db.get().await?;
        Ok(client
            .execute(
                "UPDATE backup_runs SET expires_at = now() + make_interval(secs => $2) WHERE worker_id = $1",
                &[&process_id, &ttl.as_secs_f64()],
            )
            .await?)
    }

    /// Ends this process's run of the job (a later run of it, elsewhere, keeps its own row).
    pub async fn release(&self, job_id: &str, process_id: &str) -> Result<(), LeaseError> {
        let client = self.db.get().await?;
        client
            .execute(
                "DELETE FROM backup_runs WHERE job_id = $1 AND worker_id = $2",
                &[&job_id, &process_id],
            )
            .await?;
        Ok(())
    }

    /// Ends every run of this process (it is stopping: what it ran is left to redelivery).
    pub async fn release_all(&self, process_id: &str) -> Result<u64, LeaseError> {
        let client = self.db.get().await?;
        Ok(client
            .execute(
                "DELETE FROM backup_runs WHERE worker_id = $1",
                &[&process_id],
            )
            .await?)
    }

    /// The live runs of every other process, counted by connection and by account.
    pub async fn running_elsewhere(
        &self,
        process_id: &str,
    ) -> Result<RunningElsewhere, LeaseError> {
        let client = self.db.get().await?;
        let rows = client
            .query(
                "SELECT account_key, connection_key FROM backup_runs \
                 WHERE worker_id <> $1 AND expires_at > now()",
                &[&process_id],
            )
            .await?;
        let mut running = RunningElsewhere::default();
        for row in rows {
            *running.accounts.entry(row.get(0)).or_default() += 1;
            *running.connections.entry(row.get(1)).or_default() += 1;
        }
        Ok(running)
    }
}
