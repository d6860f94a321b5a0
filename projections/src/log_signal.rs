//! Wakes the readers of the event log when new events become readable, so that an idle service sends
//! Postgres nearly nothing instead of every reader polling the table several times a second.
//!
//! Every append notifies channel [`CHANNEL`] with the appending transaction's id (trigger `events_notify`,
//! `migrations/0020_log_notify.sql`); PostgreSQL delivers a notification only once its transaction has
//! committed. Committed is not yet readable: readers take events in `(transaction_id, global_position)`
//! order below the commit horizon `events_commit_horizon()` (migration 0130) ([`crate::event_log`]), and an
//! older transaction still open holds that horizon back. So the listener remembers the newest transaction it
//! was told about and, while the horizon has not passed it, asks for the horizon every
//! [`HORIZON_POLL`] (one statement, no transaction); once it has, it wakes the readers. Idle, the listener
//! sends nothing at all.
//!
//! A notification can be missed only while the listening connection is down: every (re)connection wakes the
//! readers once, and readers still look on their own every few seconds ([`LogWake::next`]'s fallback) in case
//! the listener cannot connect at all.
//!
//! The service's own appends do not notify inside their transaction: PostgreSQL serializes the commits of
//! notifying transactions cluster-wide (WAL flush included), which capped commands at one commit per flush.
//! Its event store sessions set [`NOTIFY_AFTER_COMMIT`] (the trigger then skips the NOTIFY,
//! `migrations/0070_log_notify_after_commit.sql`) and the process runs [`announce`], which notifies once
//! after one or more of its commits, in a transaction of its own whose id is newer than theirs. A process
//! that dies between a commit and its announcement leaves other processes' readers to their next wake-up or
//! their fallback poll.

use listbackup_domain::ErrorChain;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// The channel `events_notify` notifies.
pub const CHANNEL: &str = "listbackup_events";

/// How often the listener asks for the commit horizon while a notified transaction is still above it.
pub const HORIZON_POLL: Duration = Duration::from_millis(25);

/// The shortest time between two of [`announce`]'s notifications: commits that arrive sooner are covered
/// by the next one. Under a stream of commands this caps what announcing costs Postgres (a statement, a
/// transaction id and a commit each) at a hundred a second, whatever the rate of commits, for at most this
/// much delay before other processes' readers are woken; one commit alone is announced at once.
pub const ANNOUNCE_EVERY: Duration = Duration::from_millis(10);

/// How long a reader waits without any wake-up before it looks at the log anyway.
pub const FALLBACK: Duration = Duration::from_secs(30);

/// The session setting (a startup option of the event store's connections) by which a writer says that its
/// process announces its commits itself with [`announce`], so the `events_notify` trigger does not notify
/// inside the appending transaction.
pub const NOTIFY_AFTER_COMMIT: (&str, &str) = ("listbackup.notify_after_commit", "on");

/// The listener's session name (`application_name`, as `pg_stat_activity` shows it).
pub const LISTENER_APPLICATION_NAME: &str = "listbackup-log-listener";

/// What a listener has learnt of the commit horizon (transaction ids).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Horizons {
    /// The highest horizon it has read ([`LogWake::horizon_floor`]).
    floor: u64,
    /// The highest horizon it has read that passed a commit of another process, or anything it cannot tell
    /// apart (a NOTIFY without this process's mark, a (re)connection after which notifications may have been
    /// missed) ([`LogWake::others_horizon`]).
    others: u64,
}

/// The mark this process's announcements carry after the transaction id ([`announce`]), so that its own
/// listener tells them from other processes' commits: random, one per process.
static PROCESS_MARK: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{:016x}", rand::random::<u64>()));

/// A reader's handle on the signal: cheap to clone, one per reader.
#[derive(Clone, Debug)]
pub struct LogWake {
    /// Changed whenever events may have become readable; `None`: nobody listens, the reader polls. Its value
    /// is what the listener has learnt of the horizon ([`LogWake::horizon_floor`],
    /// [`LogWake::others_horizon`]).
    readable: Option<watch::Receiver<Horizons>>,
    fallback: Duration,
}

impl LogWake {
    /// A wake that never fires by itself: the reader looks every `fallback` (one-shot tools, tests that
    /// drive a reader by hand).
    pub fn polling(fallback: Duration) -> Self {
        Self {
            readable: None,
            fallback,
        }
    }

    /// The highest commit horizon this wake's listener has read (0 when none, or nobody listens). A reader
    /// whose statement starts after the listener read it may read below it even when its own
    /// `events_commit_horizon()` comes out lower ([`crate::event_log::read_after`]): every transaction below it
    /// had ended, or could not append here, when the listener looked. The horizon is not monotonic: a short
    /// transaction of another database, in the snapshot but ended by the time `pg_stat_activity` is read, holds
    /// it back for that one statement; a reader woken by a higher horizon would otherwise find nothing and
    /// sleep until the next commit or its fallback.
    pub fn horizon_floor(&self) -> u64 {
        self.readable.as_ref().map_or(0, |r| r.borrow().floor)
    }

    /// The highest commit horizon this wake's listener has read that passed a commit of another process (or
    /// a notification it could not tell apart, or a reconnection); `None` when nobody listens. Events
    /// readable below a higher horizon than a read of this process took are either this process's own
    /// commits (which wake its projector, [`crate::ProjectedWatch`]) or, when this is higher, possibly
    /// another's.
    pub fn others_horizon(&self) -> Option<u64> {
        self.readable.as_ref().map(|r| r.borrow().others)
    }

    /// Forgets the wake-ups so far: call it before reading the log, so a commit from then on wakes the next
    /// [`next`](Self::next) and none is slept through.
    pub fn mark_seen(&mut self) {
        if let Some(readable) = self.readable.as_mut() {
            readable.borrow_and_update();
        }
    }

    /// Waits until events may have become readable since [`mark_seen`](Self::mark_seen), or the fallback
    /// interval has passed.
    pub async fn next(&mut self) {
        let fallback = tokio::time::sleep(self.fallback);
        tokio::pin!(fallback);
        match self.readable.as_mut() {
            Some(readable) => {
                tokio::select! {
                    changed = readable.changed() => {
                        if changed.is_err() {
                            // The listener is gone (shutting down): poll.
                            (&mut fallback).await;
                        }
                    }
                    _ = &mut fallback => {}
                }
            }
            None => fallback.await,
        }
    }
}

/// Listens on [`CHANNEL`] over its own connection to `database_url` until `shutdown`, reconnecting with
/// backoff; returns the handle readers wait on. The connection is one more session on the database, outside
/// any pool.
pub fn listen(database_url: String, shutdown: CancellationToken) -> LogWake {
    let (sender, readable) = watch::channel(Horizons::default());
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match listen_once(&database_url, &sender, &shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "event log listener lost its connection; reconnecting"
                    );
                    // Readers look again now: something may have been committed while we were not listening.
                    sender.send_modify(|_| {});
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
    LogWake {
        readable: Some(readable),
        fallback: FALLBACK,
    }
}

/// Announces this process's commits on [`CHANNEL`] until `shutdown`: each time `committed` is notified (after
/// one or more appends through sessions with [`NOTIFY_AFTER_COMMIT`] have committed), and at most once per
/// [`ANNOUNCE_EVERY`], one `NOTIFY` whose
/// payload is its own transaction's id, a space and this process's mark (so its own listener knows them). That id is newer than the appending transactions', so a listener
/// that waits for the commit horizon to pass it waits for theirs too. Commits arriving while a notification
/// is being sent are covered by the next one (a [`Notify`](tokio::sync::Notify) keeps one permit). Its own
/// connection to `database_url`, reconnecting with backoff; announces once on every (re)connection, in case
/// a commit went unannounced meanwhile.
pub fn announce(
    database_url: String,
    committed: std::sync::Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match announce_once(&database_url, &committed, &shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %ErrorChain(&err), "commit announcer lost its connection; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    });
}

async fn announce_once(
    database_url: &str,
    committed: &tokio::sync::Notify,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    // The notification's commit need not wait for the disk: the commits it announces have been flushed, and
    // a notification is never replayed after a crash anyway. Holding PostgreSQL's notify lock for a flush
    // is what the announcer exists to avoid.
    client.batch_execute("SET synchronous_commit = off").await?;
    let notify = client
        .prepare("SELECT pg_notify($1, pg_current_xact_id()::text || ' ' || $2)")
        .await?;
    let mark: &str = &PROCESS_MARK;
    let result = async {
        loop {
            client.execute(&notify, &[&CHANNEL, &mark]).await?;
            let next = tokio::time::Instant::now() + ANNOUNCE_EVERY;
            tokio::select! {
                biased;
                _ = committed.notified() => {}
                _ = shutdown.cancelled() => return Ok(()),
            }
            // Commits until then join this one's notification.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
    .await;
    connection.abort();
    result
}

/// Why a listening connection ended (the listener then reconnects).
#[derive(Debug, thiserror::Error)]
enum ListenerLost {
    #[error(transparent)]
    Database(#[from] tokio_postgres::Error),
    #[error("the listening connection closed")]
    Closed,
}

/// One connection's life: LISTEN, wake everyone once, then wake them whenever a notified transaction falls
/// below the commit horizon. `Ok` only on shutdown; any end of the connection is an error, so the caller
/// always reconnects.
async fn listen_once(
    database_url: &str,
    readable: &watch::Sender<Horizons>,
    shutdown: &CancellationToken,
) -> Result<(), ListenerLost> {
    let mut config: tokio_postgres::Config = database_url.parse()?;
    config.application_name(LISTENER_APPLICATION_NAME);
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    // The connection's notifications, then its error if it fails; the channel closes when the connection ends.
    let (notify_tx, mut notified) =
        mpsc::unbounded_channel::<Result<Notified, tokio_postgres::Error>>();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures::StreamExt;
        while let Some(message) = messages.next().await {
            let failed = message.is_err();
            let forwarded = match message {
                Ok(AsyncMessage::Notification(n)) => Some(Ok(Notified::of(n.payload()))),
                Ok(_) => None,
                Err(err) => Some(Err(err)),
            };
            if let Some(forwarded) = forwarded {
                let _ = notify_tx.send(forwarded);
            }
            if failed {
                return;
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Notifications may have been missed before this connection listened: wake the readers once, with the
    // horizon now counted as another process's.
    let horizon: String = client
        .query_one("SELECT events_commit_horizon()::text", &[])
        .await?
        .get(0);
    let horizon: u64 = horizon.parse().unwrap_or(0);
    readable.send_modify(|known| {
        known.floor = known.floor.max(horizon);
        known.others = known.others.max(horizon);
    });

    // Transactions we were told committed and whose events the readers cannot take yet: whether each is
    // this process's own announcement.
    let mut pending = BTreeMap::<u64, bool>::new();
    // A NOTIFY without a transaction id arrived: the next horizon read counts as another process's.
    let mut unknown = false;
    // The horizon is asked at most once per HORIZON_POLL, however many commits arrive.
    let mut asked = Instant::now() - HORIZON_POLL;
    loop {
        if (unknown || !pending.is_empty()) && asked.elapsed() >= HORIZON_POLL {
            asked = Instant::now();
            let horizon: String = client
                .query_one("SELECT events_commit_horizon()::text", &[])
                .await?
                .get(0);
            let horizon: u64 = horizon.parse().unwrap_or(0);
            // Wake as soon as any of them is readable (those below the horizon): under a steady stream of
            // commits the newest is always above it, and readers must not wait for a quiet moment. The
            // readers read below at least this horizon (LogWake::horizon_floor).
            let still_pending = pending.split_off(&horizon);
            let others = unknown || pending.values().any(|ours| !ours);
            if unknown || !pending.is_empty() {
                readable.send_modify(|known| {
                    known.floor = known.floor.max(horizon);
                    if others {
                        known.others = known.others.max(horizon);
                    }
                });
            }
            pending = still_pending;
            unknown = false;
        }
        let next_ask = tokio::time::Instant::from_std(asked + HORIZON_POLL);
        let wait_horizon = async {
            if pending.is_empty() && !unknown {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep_until(next_ask).await
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            message = notified.recv() => {
                let mut message = message;
                loop {
                    match message {
                        Some(Ok(Notified::Commit { txid, ours })) => {
                            pending.insert(txid, ours);
                        }
                        // A payload that is not a transaction id (someone else's NOTIFY): wake the readers
                        // anyway.
                        Some(Ok(Notified::Other)) => {
                            unknown = true;
                            readable.send_modify(|_| {});
                        }
                        Some(Err(err)) => return Err(err.into()),
                        None => return Err(ListenerLost::Closed),
                    }
                    match notified.try_recv() {
                        Ok(more) => message = Some(more),
                        Err(_) => break,
                    }
                }
            }
            _ = wait_horizon => {}
        }
    }
}

/// A notification on [`CHANNEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Notified {
    /// A transaction that committed: the `events_notify` trigger's (its id alone) or an [`announce`]ment
    /// (its id, a space and its process's mark); `ours` when the mark is this process's.
    Commit { txid: u64, ours: bool },
    /// Any other payload.
    Other,
}

impl Notified {
    fn of(payload: &str) -> Self {
        let (txid, mark) = match payload.split_once(' ') {
            Some((txid, mark)) => (txid, Some(mark)),
            None => (payload, None),
        };
        match txid.parse() {
            Ok(txid) => Notified::Commit {
                txid,
                ours: mark == Some(PROCESS_MARK.as_str()),
            },
            Err(_) => Notified::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Notified, PROCESS_MARK};

    #[test]
    fn notifications_tell_this_process_announcements_from_other_commits() {
        assert_eq!(
            Notified::of(&format!("42 {}", *PROCESS_MARK)),
            Notified::Commit {
                txid: 42,
                ours: true
            }
        );
        assert_eq!(
            Notified::of("42 0123456789abcdef0"),
            Notified::Commit {
                txid: 42,
                ours: false
            },
            "another process's mark"
        );
        assert_eq!(
            Notified::of("42"),
            Notified::Commit {
                txid: 42,
                ours: false
            },
            "the trigger's notification"
        );
        assert_eq!(Notified::of("marker"), Notified::Other);
        assert_eq!(Notified::of(""), Notified::Other);
    }
}
