//! The loop shared by the readers of the event log that must run in one process at a time (the relay, the
//! sagas): take a Postgres advisory lock, make sure the reader's checkpoint row exists and read it (once per
//! lead), then handle batch after batch from the position kept in memory, idling after a batch that was not
//! full until this process's projector sees a commit (or the log's listener or the poll interval wakes it,
//! for commits of other processes). Each batch moves the stored checkpoint from where it started (compare
//! and set: a leader that lost its lock without noticing fails there and starts over). Failures are retried
//! from the stored checkpoint with backoff, so nothing is skipped.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use listbackup_projections::event_log::{ensure_checkpoint, read_after};
use listbackup_projections::{LogPosition, LogWake, ProjectedWatch, ReadError, StoredEvent};
use tokio_util::sync::CancellationToken;

/// How a leader follows the log.
#[derive(Clone)]
pub struct LogFollower {
    pool: Pool,
    /// The advisory lock that makes this follower the only one of its kind across processes.
    lock: i64,
    /// What the logs call it ("relay", "source sagas").
    name: &'static str,
    /// The name of its row in `checkpoints`.
    checkpoint: &'static str,
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
    pub fn new(pool: Pool, lock: i64, name: &'static str, checkpoint: &'static str) -> Self {
        Self {
            pool,
            lock,
            name,
            checkpoint,
            poll_interval: Duration::from_millis(100),
            wake: None,
            log: None,
        }
    }

    /// The next `limit` events after `from` ([`read_after`]), below the commit horizon or the horizon this
    /// follower's log listener last saw ([`LogWake::horizon_floor`]), whichever is higher.
    pub async fn read(
        &self,
        client: &deadpool_postgres::Object,
        from: LogPosition,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        let floor = self.log.as_ref().map_or(0, LogWake::horizon_floor);
        read_after(client, from, limit, floor).await
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

    /// Runs until `shutdown`: waits to be the leader, calls `on_lead` once it is, reads the checkpoint, then
    /// calls `batch` with the position to read after until shutdown (it handles the events after it and moves
    /// the stored checkpoint: [`Handled`] says how far). An error from either pauses the follower, releases
    /// the lock and starts over after a backoff (200 ms doubling to 5 s). Shutdown is seen between batches,
    /// never in one: the batch in hand finishes and saves its checkpoint, so a restart does not handle it
    /// again.
    pub async fn run<E, Lead, LeadFut, Batch, BatchFut>(
        &self,
        shutdown: CancellationToken,
        mut on_lead: Lead,
        mut batch: Batch,
    ) where
        E: Display
            + From<deadpool_postgres::PoolError>
            + From<tokio_postgres::Error>
            + From<ReadError>,
        Lead: FnMut() -> LeadFut,
        LeadFut: Future<Output = Result<(), E>>,
        Batch: FnMut(LogPosition) -> BatchFut,
        BatchFut: Future<Output = Result<Handled, E>>,
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
        E: From<deadpool_postgres::PoolError> + From<tokio_postgres::Error> + From<ReadError>,
        Lead: FnMut() -> LeadFut,
        LeadFut: Future<Output = Result<(), E>>,
        Batch: FnMut(LogPosition) -> BatchFut,
        BatchFut: Future<Output = Result<Handled, E>>,
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
            // Only the leader moves this checkpoint: read once, then kept here.
            let mut at = ensure_checkpoint(&session, self.checkpoint).await?;
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
                let handled = batch(at).await?;
                if let Some(last) = handled.last {
                    at = last;
                }
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if !handled.full {
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

/// What one batch of a follower did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// The last event handled, where the stored checkpoint now stands; `None` when there was none.
    pub last: Option<LogPosition>,
    /// The batch was full: more events may be readable already, so the next one is read at once. Otherwise
    /// the batch took everything readable when it was read, and the follower waits to be woken.
    pub full: bool,
}

impl Handled {
    /// The outcome of a batch read with `limit` that returned `events`.
    pub fn of(events: &[StoredEvent], limit: i64) -> Self {
        Self {
            last: events.last().map(|e| e.position),
            full: events.len() as i64 >= limit,
        }
    }
}
