//! Wakes the readers of the event log when new events become readable, so that an idle service sends
//! Postgres nearly nothing instead of every reader polling the table several times a second.
//!
//! Every append notifies channel [`CHANNEL`] with the appending transaction's id (trigger `events_notify`,
//! `migrations/0020_log_notify.sql`); PostgreSQL delivers a notification only once its transaction has
//! committed. Committed is not yet readable: readers take events in `(transaction_id, global_position)`
//! order below the commit horizon `pg_snapshot_xmin(pg_current_snapshot())` ([`crate::event_log`]), and an
//! older transaction still open holds that horizon back. So the listener remembers the newest transaction it
//! was told about and, while the horizon has not passed it, asks for the horizon every
//! [`HORIZON_POLL`] (one statement, no transaction); once it has, it wakes the readers. Idle, the listener
//! sends nothing at all.
//!
//! A notification can be missed only while the listening connection is down: every (re)connection wakes the
//! readers once, and readers still look on their own every few seconds ([`LogWake::next`]'s fallback) in case
//! the listener cannot connect at all.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;

/// The channel `events_notify` notifies.
pub const CHANNEL: &str = "listbackup_events";

/// How often the listener asks for the commit horizon while a notified transaction is still above it.
pub const HORIZON_POLL: Duration = Duration::from_millis(25);

/// How long a reader waits without any wake-up before it looks at the log anyway.
pub const FALLBACK: Duration = Duration::from_secs(30);

/// A reader's handle on the signal: cheap to clone, one per reader.
#[derive(Clone, Debug)]
pub struct LogWake {
    /// Bumped whenever events may have become readable; `None`: nobody listens, the reader polls.
    readable: Option<watch::Receiver<u64>>,
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
    let (sender, readable) = watch::channel(0u64);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            match listen_once(&database_url, &sender, &shutdown).await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "event log listener lost its connection; reconnecting");
                    // Readers look again now: something may have been committed while we were not listening.
                    sender.send_modify(|n| *n += 1);
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

/// One connection's life: LISTEN, wake everyone once, then wake them whenever a notified transaction falls
/// below the commit horizon. `Ok` only on shutdown.
async fn listen_once(
    database_url: &str,
    readable: &watch::Sender<u64>,
    shutdown: &CancellationToken,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) =
        tokio_postgres::connect(database_url, tokio_postgres::NoTls).await?;
    // The connection's messages: notifications go to `notified`, and the task ends (dropping the sender)
    // when the connection does, which ends the loop below with an error.
    let (notify_tx, mut notified) = mpsc::unbounded_channel::<Option<u64>>();
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel::<tokio_postgres::Error>();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        use futures::StreamExt;
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = notify_tx.send(n.payload().parse().ok());
                }
                Ok(_) => {}
                Err(err) => {
                    let _ = closed_tx.send(err);
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    readable.send_modify(|n| *n += 1);

    // Transactions we were told committed and whose events the readers cannot take yet.
    let mut pending = BTreeSet::<u64>::new();
    // The horizon is asked at most once per HORIZON_POLL, however many commits arrive.
    let mut asked = Instant::now() - HORIZON_POLL;
    loop {
        if !pending.is_empty() && asked.elapsed() >= HORIZON_POLL {
            asked = Instant::now();
            let horizon: String = client
                .query_one("SELECT pg_snapshot_xmin(pg_current_snapshot())::text", &[])
                .await?
                .get(0);
            let horizon: u64 = horizon.parse().unwrap_or(0);
            // Wake as soon as any of them is readable: under a steady stream of commits the newest is
            // always above the horizon, and readers must not wait for a quiet moment.
            // Those at or above the horizon stay; the ones below it are readable now.
            let still_pending = pending.split_off(&horizon);
            if !pending.is_empty() {
                readable.send_modify(|n| *n += 1);
            }
            pending = still_pending;
        }
        let next_ask = tokio::time::Instant::from_std(asked + HORIZON_POLL);
        let wait_horizon = async {
            if pending.is_empty() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep_until(next_ask).await
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            err = &mut closed => {
                if let Ok(err) = err {
                    return Err(err);
                }
                // The connection task ended without an error: make the caller reconnect.
                return client.batch_execute("SELECT 1").await;
            }
            message = notified.recv() => match message {
                // A payload that is not a transaction id (someone else's NOTIFY): wake the readers anyway.
                Some(None) => readable.send_modify(|n| *n += 1),
                Some(Some(txid)) => {
                    pending.insert(txid);
                    while let Ok(more) = notified.try_recv() {
                        if let Some(txid) = more {
                            pending.insert(txid);
                        }
                    }
                }
                None => return client.batch_execute("SELECT 1").await,
            },
            _ = wait_horizon => {}
        }
    }
}
