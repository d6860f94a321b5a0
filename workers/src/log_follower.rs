//! The loop shared by the readers of the event log that must run in one process at a time (the relay, the
//! sagas): take a Postgres advisory lock, then handle batch after batch from the reader's checkpoint, idling
//! between empty batches until this process's projector sees a commit (or the poll interval passes, for
//! commits of other processes). Failures are retried from the checkpoint with backoff, so nothing is skipped.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use listbackup_projections::{LogWake, ProjectedWatch};
use tokio_util::sync::CancellationToken;

/// How a leader follows the log.
#[derive(Clone)]
pub struct LogFollower {
    pool: Pool,
    /// The advisory lock that makes this follower the only one of its kind across processes.
    lock: i64,
    /// What the logs call it ("relay", "source sagas").
    name: &'static str,
    /// How long an idle follower waits before looking again when nothing woke it.
    poll_interval: Duration,
    /// This process's projector ticks after each batch it applies: a commit made here wakes the follower at
    /// once instead of at its next poll.
    wake: Option<ProjectedWatch>,
    /// The event log's notifications: events of other processes, or held back by the commit horizon, became
    /// readable. Without it the follower polls every `poll_interval`.
    log: Option<LogWake>,
}

impl LogFollower {
    pub fn new(pool: Pool, lock: i64, name: &'static str) -> Self {
        Self {
            pool,
            lock,
            name,
            poll_interval: Duration::from_millis(100),
            wake: None,
            log: None,
        }
    }

    /// Wakes on the event log's notifications; polls only every few seconds as a fallback.
    pub fn woken_by_log(self, log: LogWake) -> Self {
        Self {
            poll_interval: listbackup_projections::log_signal::FALLBACK,
            log: Some(log),
            ..self
        }
    }

    pub fn woken_by(self, projected: ProjectedWatch) -> Self {
        Self {
            wake: Some(projected),
            ..self
        }
    }

    /// Runs until `shutdown`: waits to be the leader, calls `on_lead` once it is, then `batch` (which returns
    /// how many events it handled) until shutdown. An error from either pauses the follower, releases the lock
    /// and starts over after a backoff (200 ms doubling to 5 s). Shutdown is seen between batches, never in
    /// one: the batch in hand finishes and saves its checkpoint, so a restart does not handle it again.
    pub async fn run<E, Lead, LeadFut, Batch, BatchFut>(
        &self,
        shutdown: CancellationToken,
        mut on_lead: Lead,
        mut batch: Batch,
    ) where
        E: Display + From<deadpool_postgres::PoolError> + From<tokio_postgres::Error>,
        Lead: FnMut() -> LeadFut,
        LeadFut: Future<Output = Result<(), E>>,
        Batch: FnMut() -> BatchFut,
        BatchFut: Future<Output = Result<usize, E>>,
    {
        let mut backoff = Duration::from_millis(200);
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.lead(&shutdown, &mut on_lead, &mut batch).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, follower = self.name, "paused; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn lead<E, Lead, LeadFut, Batch, BatchFut>(
        &self,
        shutdown: &CancellationToken,
        on_lead: &mut Lead,
        batch: &mut Batch,
    ) -> Result<(), E>
    where
        E: From<deadpool_postgres::PoolError> + From<tokio_postgres::Error>,
        Lead: FnMut() -> LeadFut,
        LeadFut: Future<Output = Result<(), E>>,
        Batch: FnMut() -> BatchFut,
        BatchFut: Future<Output = Result<usize, E>>,
    {
        // A session-level lock held by this pooled connection, rather than a row lock in a transaction: a
        // long-lived transaction would hold back the commit horizon every log reader waits for. If the
        // process dies, Postgres releases the lock with the session.
        let session = self.pool.get().await?;
        loop {
            let locked: bool = session
                .query_one("SELECT pg_try_advisory_lock($1)", &[&self.lock])
                .await?
                .get(0);
            if locked {
                break;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        let result = async {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                led = on_lead() => led?,
            }
            let mut wake = self.wake.clone();
            let mut log = self.log.clone();
            loop {
                // Marked before reading: a commit from now on ticks again, so none is slept through.
                if let Some(wake) = wake.as_mut() {
                    wake.mark_seen();
                }
                if let Some(log) = log.as_mut() {
                    log.mark_seen();
                }
                let handled = batch().await?;
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if handled == 0 {
                    let projected = async {
                        match wake.as_mut() {
                            Some(wake) => wake.next_commit(self.poll_interval).await,
                            None => tokio::time::sleep(self.poll_interval).await,
                        }
                    };
                    let logged = async {
                        match log.as_mut() {
                            Some(log) => log.next().await,
                            None => std::future::pending().await,
                        }
                    };
                    let idle = async {
                        tokio::select! {
                            _ = projected => {}
                            _ = logged => {}
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = idle => {}
                    }
                }
            }
        }
        .await;
        let _ = session
            .execute("SELECT pg_advisory_unlock($1)", &[&self.lock])
            .await;
        result
    }
}
