//! The loop shared by the readers of the event log that must run in one process at a time (the relay, the
//! sagas): take a Postgres advisory lock, make sure the reader's checkpoint row exists and read it (once per
//! lead), then handle batch after batch from the position kept in memory, idling after a batch that was not
//! full until this process's projector sees a commit (or the log's listener or the poll interval wakes it,
//! for commits of other processes). A batch that changed something moves the stored checkpoint in the same
//! transaction; a batch that only read (events that do not concern this reader, or work that is idempotent,
//! like the relay's deduplicated publishes) leaves it to this loop, which stores the position it reached at
//! most once every [`STORE_EVERY`] and when it stops: most of the log concerns few readers, and a checkpoint
//! update per reader per batch was most of what a command cost Postgres (docs/benchmarks.md). Every store
//! is a compare and set against the stored position: a leader that lost its lock without noticing fails
//! there and starts over. Failures are retried from the stored checkpoint with backoff, so nothing is
//! skipped; a crash replays at most what was read since the last store (about a second).

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::Pool;
use listbackup_domain::ErrorChain;
use listbackup_projections::event_log::{
    advance_checkpoint, ensure_checkpoint, read_after, Commit,
};
use listbackup_projections::{LogPosition, LogWake, ProjectedWatch, ReadError, StoredEvent};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often, at most, a follower stores a position that its batches did not store themselves: the most a
/// crash makes it read (and, for idempotent work, handle) again.
pub const STORE_EVERY: Duration = Duration::from_secs(1);

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
    /// How often, at most, positions the batches did not store are stored ([`STORE_EVERY`]).
    store_every: Duration,
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
            store_every: STORE_EVERY,
        }
    }

    /// The next `limit` events after `from` ([`read_after`]), below the commit horizon or the horizon this
    /// follower's log listener last saw ([`LogWake::horizon_floor`]), whichever is higher. Taken from this
    /// process's projector's last batches when they hold them ([`ProjectedWatch::applied_after`]): the
    /// projector has just read the same events, and a follower woken by its tick needs no second read; none
    /// when the projector has just read to the end and the log listener knows of no other process's commit
    /// past it.
    pub async fn read(
        &self,
        client: &deadpool_postgres::Object,
        from: LogPosition,
        limit: i64,
    ) -> Result<Vec<StoredEvent>, ReadError> {
        let others_horizon = self.log.as_ref().and_then(LogWake::others_horizon);
        if let Some(events) = self.wake.as_ref().and_then(|projected| {
            projected.applied_after(from, usize::try_from(limit).ok()?, others_horizon)
        }) {
            return Ok(events);
        }
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

    /// Stores the positions its batches did not store every `every` at most, instead of [`STORE_EVERY`].
    pub fn storing_every(self, every: Duration) -> Self {
        Self {
            store_every: every,
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
    /// calls `batch` with where it stands ([`Checkpoint`]) until shutdown: it handles the events after
    /// `handled` and, when it changed something, moves the stored checkpoint from `stored` in the same
    /// transaction ([`Handled`] says how far and whether it stored). Positions the batches did not store are
    /// stored here every [`STORE_EVERY`] at most and at shutdown. An error from either pauses the follower,
    /// releases the lock and starts over from the stored checkpoint after a backoff (200 ms doubling to 5 s).
    /// Shutdown is seen between batches, never in one: the batch in hand finishes and its position is
    /// stored, so a restart does not handle it again.
    pub async fn run<E, Lead, LeadFut, Batch, BatchFut>(
        &self,
        shutdown: CancellationToken,
        mut on_lead: Lead,
        mut batch: Batch,
    ) where
        E: std::error::Error
            + 'static
            + From<deadpool_postgres::PoolError>
            + From<tokio_postgres::Error>
            + From<ReadError>,
        Lead: FnMut() -> LeadFut,
        LeadFut: Future<Output = Result<(), E>>,
        Batch: FnMut(Checkpoint) -> BatchFut,
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
                    tracing::warn!(error = %ErrorChain(&err), follower = self.name, "paused; retrying");
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
        Batch: FnMut(Checkpoint) -> BatchFut,
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
            let stored = ensure_checkpoint(&session, self.checkpoint).await?;
            let mut at = Checkpoint {
                handled: stored,
                stored,
            };
            let mut stored_at = Instant::now();
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
                    at.handled = last;
                    if handled.stored {
                        at.stored = last;
                        stored_at = Instant::now();
                    }
                }
                if shutdown.is_cancelled() {
                    self.store(&session, &mut at).await?;
                    return Ok(());
                }
                if at.stored != at.handled && stored_at.elapsed() >= self.store_every {
                    self.store(&session, &mut at).await?;
                    stored_at = Instant::now();
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
                    // A position read but not stored is stored when it is due even if nothing else comes.
                    let store_due = async {
                        if at.stored == at.handled {
                            std::future::pending::<()>().await;
                        }
                        tokio::time::sleep_until(stored_at + self.store_every).await;
                    };
                    let idle = async {
                        tokio::select! {
                            _ = projected => {}
                            _ = logged => {}
                            _ = store_due => {}
                        }
                    };
                    let stopping = tokio::select! {
                        _ = shutdown.cancelled() => true,
                        _ = idle => false,
                    };
                    if stopping {
                        self.store(&session, &mut at).await?;
                        return Ok(());
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

impl LogFollower {
    /// Stores the position read up to when the batches did not (compare and set against the stored one).
    /// Without waiting for the WAL flush: a position lost in a crash is read again, no more.
    async fn store(
        &self,
        session: &deadpool_postgres::Object,
        at: &mut Checkpoint,
    ) -> Result<(), ReadError> {
        if at.stored == at.handled {
            return Ok(());
        }
        if !advance_checkpoint(
            session,
            self.checkpoint,
            at.stored,
            at.handled,
            Commit::Asynchronous,
        )
        .await?
        {
            return Err(ReadError::CheckpointMoved {
                name: self.checkpoint.to_owned(),
            });
        }
        at.stored = at.handled;
        Ok(())
    }
}

/// Where a leading follower stands in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last event handled (read past): the next batch reads after it.
    pub handled: LogPosition,
    /// Where the follower's row in `checkpoints` stands: a batch that stores moves it from here (compare and
    /// set, [`advance_checkpoint`]). Behind `handled` by the batches that did not store, for a second at most.
    pub stored: LogPosition,
}

/// What one batch of a follower did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    /// The last event handled (read past); `None` when there was none.
    pub last: Option<LogPosition>,
    /// The batch moved the stored checkpoint to `last` itself (in the transaction of what it changed).
    /// Otherwise the follower stores it later ([`STORE_EVERY`]).
    pub stored: bool,
    /// The batch was full: more events may be readable already, so the next one is read at once. Otherwise
    /// the batch took everything readable when it was read, and the follower waits to be woken.
    pub full: bool,
}

impl Handled {
    /// The outcome of a batch read with `limit` that returned `events`, its position not stored.
    pub fn of(events: &[StoredEvent], limit: i64) -> Self {
        Self {
            last: events.last().map(|e| e.position),
            full: events.len() as i64 >= limit,
            stored: false,
        }
    }

    /// The same, the batch having moved the stored checkpoint to its last event.
    pub fn stored(self) -> Self {
        Self {
            stored: true,
            ..self
        }
    }
}
