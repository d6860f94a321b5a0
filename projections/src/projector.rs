//! The catch-up projector: reads the log after its checkpoint and applies each batch of events to the read
//! models ([`read_models::apply_batch`]: the rows it touches are loaded, folded in memory, written back),
//! committing the read-model writes and the new checkpoint in one transaction, so a crash can neither skip
//! an event nor apply one twice.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{watch, Notify};

use crate::log_signal::LogWake;
use tokio_util::sync::CancellationToken;

use crate::event_log::{advance_checkpoint, ensure_checkpoint, read_after_checkpoint, Commit};
use crate::read_models;
use crate::ReadError;

/// The checkpoint name of the read-model projector.
pub const CHECKPOINT: &str = "projector";

/// What the projector has applied lately, kept in memory so requests waiting to read their own write can
/// check it without a query. Bounded: the oldest entries make room, and a waiter that finds nothing falls back
/// to the read model itself.
#[derive(Default)]
struct RecentlyApplied {
    versions: HashMap<String, i64>,
    order: VecDeque<String>,
}

impl RecentlyApplied {
    const CAPACITY: usize = 65_536;

    fn record(&mut self, aggregate_id: &str, sequence: i64) {
        match self.versions.get_mut(aggregate_id) {
            Some(version) => *version = (*version).max(sequence),
            None => {
                if self.order.len() == Self::CAPACITY {
                    if let Some(oldest) = self.order.pop_front() {
                        self.versions.remove(&oldest);
                    }
                }
                self.versions.insert(aggregate_id.to_owned(), sequence);
                self.order.push_back(aggregate_id.to_owned());
            }
        }
    }
}

/// Ticks every time the projector commits a batch, and tells which aggregate versions it applied, so API
/// requests waiting to read their own write re-check at once, in memory, instead of polling the database.
#[derive(Clone)]
pub struct ProjectedWatch {
    ticks: watch::Receiver<u64>,
    applied: Arc<Mutex<RecentlyApplied>>,
}

impl ProjectedWatch {
    /// Waits for the next projector commit, or `timeout`, whichever comes first.
    pub async fn next_commit(&mut self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.ticks.changed()).await;
    }

    /// Marks everything committed so far as seen, so `next_commit` waits for a later one.
    pub fn mark_seen(&mut self) {
        self.ticks.borrow_and_update();
    }

    /// The version of `aggregate_id` this process's projector has applied, if it applied any lately.
    pub fn applied_version(&self, aggregate_id: &str) -> Option<i64> {
        self.applied
            .lock()
            .ok()
            .and_then(|applied| applied.versions.get(aggregate_id).copied())
    }
}

pub struct Projector {
    pool: Pool,
    /// Woken by the in-process command bus after each commit.
    wake: Arc<Notify>,
    projected: watch::Sender<u64>,
    applied: Arc<Mutex<RecentlyApplied>>,
    batch_size: i64,
    /// Wakes us when other processes' events (or ours held back by the commit horizon) become readable;
    /// without a listener, a poll every 100 ms.
    log: LogWake,
    /// Set once the checkpoint row is known to exist: it is made once, not before every read.
    checkpoint_ensured: tokio::sync::OnceCell<()>,
}

impl Projector {
    pub fn new(pool: Pool, wake: Arc<Notify>) -> Self {
        Self {
            pool,
            wake,
            projected: watch::channel(0).0,
            applied: Arc::default(),
            batch_size: 500,
            log: LogWake::polling(Duration::from_millis(100)),
            checkpoint_ensured: tokio::sync::OnceCell::new(),
        }
    }

    /// Wakes on the event log's notifications ([`crate::log_signal::listen`]) instead of polling.
    pub fn woken_by_log(self, log: LogWake) -> Self {
        Self { log, ..self }
    }

    pub fn watch(&self) -> ProjectedWatch {
        ProjectedWatch {
            ticks: self.projected.subscribe(),
            applied: self.applied.clone(),
        }
    }

    /// Applies one batch of at most `batch_size` events; returns how many it applied (0 when caught up).
    ///
    /// Several processes may run a projector over the same read models. The batch is read with the
    /// checkpoint in one statement, outside any transaction (an empty batch costs that one statement); then
    /// one transaction moves the checkpoint from where the batch starts to its last event (compare and set,
    /// first, so the row lock orders this projector against the others and against a rebuild's swap),
    /// applies the batch, and commits both together, so a crash can neither skip an event nor apply one
    /// twice. If another projector moved the checkpoint meanwhile, nothing is applied and the batch is read
    /// again.
    pub async fn catch_up_batch(&self) -> Result<usize, ReadError> {
        let mut client = self.pool.get().await?;
        self.checkpoint_ensured
            .get_or_try_init(|| async { ensure_checkpoint(&client, CHECKPOINT).await.map(|_| ()) })
            .await?;
        loop {
            let (from, events) = read_after_checkpoint(
                &client,
                CHECKPOINT,
                self.batch_size,
                self.log.horizon_floor(),
            )
            .await?;
            let (Some(from), Some(last)) = (from, events.last().map(|e| e.position)) else {
                return Ok(0);
            };
            let tx = client.transaction().await?;
            // Read models are derived data: if a crash loses this commit, it loses the checkpoint with it, and
            // the events are simply applied again from the log. So the commit need not wait for its WAL flush.
            if !advance_checkpoint(&tx, CHECKPOINT, from, last, Commit::Asynchronous).await? {
                // Another process's projector applied (some of) these events first.
                tx.rollback().await?;
                continue;
            }
            read_models::apply_batch(&tx, &events).await?;
            tx.commit().await?;
            // Only once committed: a waiter told "applied" must find it in the tables.
            if let Ok(mut applied) = self.applied.lock() {
                for event in &events {
                    applied.record(&event.aggregate_id, event.sequence);
                }
            }
            self.projected.send_modify(|n| *n += 1);
            return Ok(events.len());
        }
    }

    /// Applies batches until nothing is left below the commit horizon: a batch shorter than a full one
    /// took everything readable when it was read, so no further read is made for it (a commit after that
    /// read wakes [`run`](Self::run) again).
    pub async fn catch_up(&self) -> Result<usize, ReadError> {
        let mut total = 0;
        loop {
            let applied = self.catch_up_batch().await?;
            total += applied;
            if (applied as i64) < self.batch_size {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` is cancelled. A failing batch is retried with backoff, never skipped: an event
    /// the read models cannot take must be fixed, not silently dropped.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut log = self.log.clone();
        loop {
            // Marked before reading: an event that becomes readable from now on wakes us again.
            log.mark_seen();
            match self.catch_up().await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(err) => {
                    tracing::error!(
                        error = &err as &dyn std::error::Error,
                        "projector batch failed; retrying"
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = log.next() => {}
            }
        }
    }

    /// Rebuilds every read model from the whole log into fresh tables while the live ones keep serving,
    /// then swaps them in one short transaction ([`crate::rebuild`]). Returns how many events it folded.
    pub async fn rebuild(&self) -> Result<usize, ReadError> {
        let rebuilt = crate::rebuild::rebuild(&self.pool).await?;
        self.projected.send_modify(|n| *n += 1);
        Ok(rebuilt.events)
    }
}

#[cfg(test)]
mod tests {
    use super::RecentlyApplied;

    #[test]
    fn recent_versions_keep_the_highest_and_forget_the_oldest() {
        let mut applied = RecentlyApplied::default();
        applied.record("a", 2);
        applied.record("a", 1);
        assert_eq!(applied.versions["a"], 2);
        for i in 0..RecentlyApplied::CAPACITY {
            applied.record(&format!("x{i}"), 1);
        }
        assert!(
            !applied.versions.contains_key("a"),
            "the oldest entry made room"
        );
        assert_eq!(applied.versions.len(), RecentlyApplied::CAPACITY);
    }
}
