//! The catch-up projector: reads the log after its checkpoint and applies each batch of events to the read
//! models ([`read_models::apply_batch`]: the rows it touches are loaded, folded in memory, written back),
//! committing the read-model writes and the new checkpoint in one transaction, so a crash can neither skip
//! an event nor apply one twice.

use listbackup_domain::ErrorChain;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{watch, Notify};

use crate::log_signal::LogWake;
use tokio_util::sync::CancellationToken;

use crate::event_log::{
    advance_checkpoint, ensure_checkpoint, read_after_checkpoint, CheckpointBatch, Commit,
    LogPosition, StoredEvent,
};
use crate::read_models::{self, connections::ConnectionRow, Written};
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
    /// The `read_connections` rows written lately, as written, by connection id: the newest
    /// [`RecentlyApplied::ROWS`] (a request reads its write back right after the projector commits it).
    connections: HashMap<String, ConnectionRow>,
    connections_order: VecDeque<String>,
}

impl RecentlyApplied {
    const CAPACITY: usize = 65_536;
    /// How many written rows are kept (each a few hundred bytes).
    const ROWS: usize = 4_096;

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

    /// Keeps what a committed batch wrote; the oldest rows make room.
    fn remember(&mut self, written: Written) {
        for row in written.connections {
            let id = row.connection_id.clone();
            if self.connections.insert(id.clone(), row).is_none() {
                self.connections_order.push_back(id);
                if self.connections_order.len() > Self::ROWS {
                    if let Some(oldest) = self.connections_order.pop_front() {
                        self.connections.remove(&oldest);
                    }
                }
            }
        }
    }
}

/// The batches the projector applied lately, in the order it applied them, for this process's other readers
/// of the log ([`ProjectedWatch::applied_after`]). Bounded: the oldest make room.
#[derive(Default)]
struct RecentBatches {
    batches: VecDeque<Arc<AppliedBatch>>,
    /// The end of the newest read that took everything there was: no event after `position` below commit
    /// horizon `horizon` exists or ever will.
    end: Option<ReadEnd>,
}

#[derive(Clone, Copy)]
struct ReadEnd {
    position: LogPosition,
    /// A transaction id ([`crate::event_log::CheckpointBatch::horizon`]).
    horizon: u64,
    read_at: std::time::Instant,
}

/// How long the end of the projector's newest read stands for the log's other readers: past it (a projector
/// that stopped reading, say failing on an event) they read the log themselves when woken.
const READ_END_FRESH: Duration = Duration::from_secs(1);

/// One batch as the projector read it: the events after `from`, in log order, below the commit horizon.
struct AppliedBatch {
    from: LogPosition,
    events: Vec<StoredEvent>,
}

impl RecentBatches {
    const CAPACITY: usize = 32;

    fn push(&mut self, batch: AppliedBatch) {
        if self.batches.len() == Self::CAPACITY {
            self.batches.pop_front();
        }
        self.batches.push_back(Arc::new(batch));
    }

    /// Records that a read after `at` below `horizon` found no more events than the projector took.
    fn read_to_end(&mut self, at: LogPosition, horizon: u64) {
        if self.end.is_none_or(|end| end.position <= at) {
            self.end = Some(ReadEnd {
                position: at,
                horizon,
                read_at: std::time::Instant::now(),
            });
        }
    }

    /// The batch that holds the events after `at` (`at` is where it starts or one of its events, not its
    /// last), and the index of the first of them.
    fn holding_after(&self, at: LogPosition) -> Option<(&AppliedBatch, usize)> {
        self.batches.iter().rev().find_map(|batch| {
            let last = batch.events.last()?.position;
            if at == batch.from {
                return Some((&**batch, 0));
            }
            if at <= batch.from || at >= last {
                return None;
            }
            let index = batch
                .events
                .binary_search_by(|event| event.position.cmp(&at))
                .ok()?;
            Some((&**batch, index + 1))
        })
    }
}

/// Ticks every time the projector commits a batch, and tells which aggregate versions it applied, so API
/// requests waiting to read their own write re-check at once, in memory, instead of polling the database.
/// It also keeps the projector's last batches, so the process's other readers of the log (relay, sagas,
/// notifications, record index), which are woken by the same ticks, take those events from memory instead
/// of reading them again ([`ProjectedWatch::applied_after`]).
#[derive(Clone)]
pub struct ProjectedWatch {
    ticks: watch::Receiver<u64>,
    applied: Arc<Mutex<RecentlyApplied>>,
    batches: Arc<Mutex<RecentBatches>>,
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

    /// The next events after `at`, at most `limit`, in log order, as this process's projector read them from
    /// the log in its last batches (consecutive batches joined): exactly what reading the log after `at`
    /// would return, or a prefix of it, since each batch is the log's events after its start below the commit
    /// horizon, and no event can later appear before a position the horizon has passed
    /// ([`crate::event_log::read_after`]).
    ///
    /// Empty when `at` is where the projector's newest read (of the last second) ended having taken
    /// everything below its horizon, and `others_horizon` (the highest commit horizon the reader's log
    /// listener has seen pass another process's commit, [`crate::LogWake::others_horizon`]; `None` without a
    /// listener) is not past that horizon: whatever became readable since is this process's own commits,
    /// which wake the projector (through the command bus or the same listener), whose next batch wakes the
    /// reader; another process's commit raises that horizon first, and the reader then reads the log.
    ///
    /// `None` when no recent batch holds the events after `at` (the reader is behind them, or past the
    /// newest one's end) and the end does not apply: the reader reads the log itself.
    pub fn applied_after(
        &self,
        at: LogPosition,
        limit: usize,
        others_horizon: Option<u64>,
    ) -> Option<Vec<StoredEvent>> {
        let batches = self.batches.lock().ok()?;
        if let (Some(end), Some(known)) = (batches.end, others_horizon) {
            if at == end.position && known <= end.horizon && end.read_at.elapsed() < READ_END_FRESH
            {
                return Some(Vec::new());
            }
        }
        let mut events: Vec<StoredEvent> = Vec::new();
        let mut at = at;
        while events.len() < limit {
            let Some((batch, start)) = batches.holding_after(at) else {
                break;
            };
            let take = (limit - events.len()).min(batch.events.len() - start);
            events.extend_from_slice(&batch.events[start..start + take]);
            at = events.last().map_or(at, |event| event.position);
        }
        (!events.is_empty()).then_some(events)
    }

    /// The version of `aggregate_id` this process's projector has applied, if it applied any lately.
    pub fn applied_version(&self, aggregate_id: &str) -> Option<i64> {
        self.applied
            .lock()
            .ok()
            .and_then(|applied| applied.versions.get(aggregate_id).copied())
    }

    /// The `read_connections` row of `connection_id` as this process's projector last wrote it (committed),
    /// if it wrote it lately.
    pub(crate) fn written_connection(&self, connection_id: &str) -> Option<ConnectionRow> {
        self.applied
            .lock()
            .ok()
            .and_then(|applied| applied.connections.get(connection_id).cloned())
    }
}

pub struct Projector {
    pool: Pool,
    /// Woken by the in-process command bus after each commit.
    wake: Arc<Notify>,
    projected: watch::Sender<u64>,
    applied: Arc<Mutex<RecentlyApplied>>,
    batches: Arc<Mutex<RecentBatches>>,
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
            batches: Arc::default(),
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
            batches: self.batches.clone(),
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
            let Some(CheckpointBatch {
                from,
                events,
                horizon,
            }) = read_after_checkpoint(
                &client,
                CHECKPOINT,
                self.batch_size,
                self.log.horizon_floor(),
            )
            .await?
            else {
                return Ok(0);
            };
            let whole = (events.len() as i64) < self.batch_size;
            let Some(last) = events.last().map(|e| e.position) else {
                if let Ok(mut batches) = self.batches.lock() {
                    batches.read_to_end(from, horizon);
                }
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
            let written = read_models::apply_batch(&tx, &events).await?;
            tx.commit().await?;
            // Only once committed: a waiter told "applied" must find it in the tables.
            if let Ok(mut applied) = self.applied.lock() {
                for event in &events {
                    applied.record(&event.aggregate_id, event.sequence);
                }
                applied.remember(written);
            }
            let count = events.len();
            if let Ok(mut batches) = self.batches.lock() {
                batches.push(AppliedBatch { from, events });
                if whole {
                    batches.read_to_end(last, horizon);
                }
            }
            self.projected.send_modify(|n| *n += 1);
            return Ok(count);
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
                        error = %ErrorChain(&err),
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
    use std::sync::{Arc, Mutex};

    use tokio::sync::watch;

    use super::{AppliedBatch, ProjectedWatch, RecentBatches, RecentlyApplied};
    use crate::event_log::{LogPosition, StoredEvent};

    fn at(transaction_id: u64, global_position: i64) -> LogPosition {
        LogPosition {
            transaction_id,
            global_position,
        }
    }

    fn event(position: LogPosition) -> StoredEvent {
        StoredEvent {
            position,
            event_id: uuid::Uuid::now_v7(),
            aggregate_type: "test".into(),
            aggregate_id: format!("{}", position.global_position),
            sequence: 1,
            event_type: "Happened".into(),
            event_version: "1.0".into(),
            payload: serde_json::json!({"Happened": {}}),
            metadata: serde_json::json!({}),
            recorded_at: chrono::Utc::now(),
        }
    }

    fn watch_of(batches: Vec<(LogPosition, Vec<LogPosition>)>) -> ProjectedWatch {
        let mut recent = RecentBatches::default();
        for (from, events) in batches {
            recent.push(AppliedBatch {
                from,
                events: events.into_iter().map(event).collect(),
            });
        }
        ProjectedWatch {
            ticks: watch::channel(0).1,
            applied: Arc::default(),
            batches: Arc::new(Mutex::new(recent)),
        }
    }

    fn positions(events: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
        events.map(|events| events.iter().map(|e| e.position.global_position).collect())
    }

    #[test]
    fn applied_batches_answer_reads_they_hold_and_only_those() {
        // Two consecutive batches (positions 1..=3 after the start, then 4..=5), transaction ids rising.
        let watch = watch_of(vec![
            (at(0, 0), vec![at(10, 1), at(10, 2), at(11, 3)]),
            (at(11, 3), vec![at(12, 4), at(13, 5)]),
        ]);
        // From a batch's start, across into the next one.
        assert_eq!(
            positions(watch.applied_after(at(0, 0), 10, None)),
            Some(vec![1, 2, 3, 4, 5])
        );
        // From an event inside a batch, and limited.
        assert_eq!(
            positions(watch.applied_after(at(10, 1), 3, None)),
            Some(vec![2, 3, 4])
        );
        // From a batch's last event: the next batch.
        assert_eq!(
            positions(watch.applied_after(at(11, 3), 10, None)),
            Some(vec![4, 5])
        );
        // At the newest end, past it, behind every batch, or at a position no batch read: the log is read.
        assert_eq!(positions(watch.applied_after(at(13, 5), 10, None)), None);
        assert_eq!(positions(watch.applied_after(at(14, 6), 10, None)), None);
        assert_eq!(positions(watch.applied_after(at(10, 2), 0, None)), None);
        let later = watch_of(vec![(at(11, 3), vec![at(12, 4)])]);
        assert_eq!(positions(later.applied_after(at(0, 0), 10, None)), None);
        assert_eq!(positions(later.applied_after(at(10, 1), 10, None)), None);
        assert_eq!(positions(watch.applied_after(at(10, 7), 10, None)), None);
    }

    #[test]
    fn a_read_to_the_end_answers_nothing_more_until_the_listener_knows_a_later_horizon() {
        let watch = watch_of(vec![(at(0, 0), vec![at(10, 1), at(11, 2)])]);
        watch.batches.lock().unwrap().read_to_end(at(11, 2), 20);
        // At the end, the listener knowing no later horizon: nothing to read.
        assert_eq!(
            positions(watch.applied_after(at(11, 2), 10, Some(20))),
            Some(vec![])
        );
        assert_eq!(
            positions(watch.applied_after(at(11, 2), 10, Some(0))),
            Some(vec![])
        );
        // The listener saw a later horizon (another process's commit), or there is no listener: read.
        assert_eq!(
            positions(watch.applied_after(at(11, 2), 10, Some(21))),
            None
        );
        assert_eq!(positions(watch.applied_after(at(11, 2), 10, None)), None);
        // Events before the end still come from the batch.
        assert_eq!(
            positions(watch.applied_after(at(10, 1), 10, Some(20))),
            Some(vec![2])
        );
        // An end never moves back; a stale one stands for nothing.
        watch.batches.lock().unwrap().read_to_end(at(10, 1), 30);
        assert_eq!(
            positions(watch.applied_after(at(11, 2), 10, Some(20))),
            Some(vec![])
        );
        watch.batches.lock().unwrap().end.as_mut().unwrap().read_at -= super::READ_END_FRESH;
        assert_eq!(
            positions(watch.applied_after(at(11, 2), 10, Some(20))),
            None
        );
    }

    #[test]
    fn applied_batches_keep_the_newest() {
        let mut recent = RecentBatches::default();
        for i in 0..RecentBatches::CAPACITY as i64 + 1 {
            recent.push(AppliedBatch {
                from: at(1, i),
                events: vec![event(at(1, i + 1))],
            });
        }
        assert!(
            recent.holding_after(at(1, 0)).is_none(),
            "the oldest made room"
        );
        assert!(recent.holding_after(at(1, 1)).is_some());
    }

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

    /// A request reading back its own write takes the row the projector wrote (committed) when it holds the
    /// version asked for, and reads the table otherwise.
    #[test]
    fn the_connection_row_last_written_answers_read_backs_of_its_version() {
        use crate::read_models::connections::{recently_projected, ConnectionRow};
        use crate::read_models::Written;

        let id: listbackup_domain::ConnectionId =
            "0190f5c2-7d3e-7a11-8b2c-00000000c001".parse().unwrap();
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-01T09:00:00.123456Z")
            .unwrap()
            .to_utc();
        let row = |version: i64, status: &str| ConnectionRow {
            connection_id: id.to_string(),
            account_id: "acme".into(),
            platform_id: "stripe".into(),
            name: "Stripe".into(),
            auth_type: "api_key".into(),
            status: status.into(),
            settings: serde_json::json!({"region": "eu"}),
            credential_fields: serde_json::json!(["secretKey"]),
            credential_fingerprint: Some("fp".into()),
            last_test: None,
            version,
            created_at: at,
            updated_at: at,
            external_account: None,
        };
        let applied = Arc::new(Mutex::new(RecentlyApplied::default()));
        let watch = ProjectedWatch {
            ticks: watch::channel(0).1,
            applied: applied.clone(),
            batches: Arc::default(),
        };
        // Nothing written yet: read the table.
        assert!(recently_projected(&watch, "acme", id, 1).is_none());

        {
            let mut applied = applied.lock().unwrap();
            applied.record(&id.to_string(), 2);
            applied.remember(Written {
                connections: vec![row(2, "active")],
            });
        }
        let view = recently_projected(&watch, "acme", id, 2)
            .expect("the row written at version 2 answers")
            .expect("a live connection of its account");
        assert_eq!(view.connection_id, id);
        assert_eq!(view.version, 2);
        assert_eq!(view.settings.get("region").map(String::as_str), Some("eu"));
        assert_eq!(view.credential_fields, vec!["secretKey".to_owned()]);
        assert_eq!((view.created_at, view.updated_at), (at, at));
        // An earlier version is answered by the later row too (read-your-writes asks for "at least").
        assert!(recently_projected(&watch, "acme", id, 1).is_some_and(|v| v.is_some()));
        // A later version than the row holds: read the table.
        assert!(recently_projected(&watch, "acme", id, 3).is_none());
        // Another account's connection is not theirs to see.
        assert_eq!(recently_projected(&watch, "other", id, 2), Some(None));

        // A deleted connection is not live.
        {
            let mut applied = applied.lock().unwrap();
            applied.record(&id.to_string(), 3);
            applied.remember(Written {
                connections: vec![row(3, "deleted")],
            });
        }
        assert_eq!(recently_projected(&watch, "acme", id, 3), Some(None));

        // Only the newest rows are kept.
        let mut bounded = RecentlyApplied::default();
        for n in 0..=RecentlyApplied::ROWS {
            bounded.remember(Written {
                connections: vec![ConnectionRow {
                    connection_id: format!("row-{n}"),
                    ..row(1, "active")
                }],
            });
        }
        assert_eq!(bounded.connections.len(), RecentlyApplied::ROWS);
        assert!(
            !bounded.connections.contains_key("row-0"),
            "the oldest made room"
        );
        assert!(bounded
            .connections
            .contains_key(&format!("row-{}", RecentlyApplied::ROWS)));
    }
}
