//! The notification dispatcher: a reader of the event log with its own checkpoint (`notifications`), run
//! by one process at a time (an advisory lock, as the sagas and the relay). Each batch, in one transaction:
//! read the events after the checkpoint, queue a delivery of each notification to every webhook of its
//! account subscribed to its type (and created before the event), move the checkpoint. A crash before the
//! commit queues the batch again, and nothing twice (deliveries are unique per webhook and event). Nothing is
//! queued for an account whose erasure (`AccountErased`) is in the log.

use std::sync::Arc;

use deadpool_postgres::Pool;
use listbackup_commands::webhooks::{enqueue, NewDelivery};
use listbackup_projections::event_log::{advance_checkpoint, Commit};
use listbackup_projections::read_models::webhooks::subscribed;
use listbackup_projections::ReadError;
use listbackup_projections::{LogWake, ProjectedWatch, StoredEvent};
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::payload::{identity, notification, notification_type};
use crate::log_follower::{Checkpoint, Handled, LogFollower};

/// The dispatcher's checkpoint name.
pub const CHECKPOINT: &str = "notifications";

/// Names the dispatcher's advisory lock among all advisory locks ("LBNOTIF").
const DISPATCHER_LOCK: i64 = 0x004c_424e_4f54_4946;

/// Why a batch could not be dispatched (it is retried from the checkpoint).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("event log")]
    Log(#[from] listbackup_projections::ReadError),
}

/// Queues notifications of the log's events for delivery.
pub struct NotificationDispatcher {
    pool: Pool,
    follower: LogFollower,
    batch_size: i64,
    /// Woken after a batch queued deliveries, so this process's sender sends them at once.
    queued: Arc<Notify>,
}

impl NotificationDispatcher {
    /// `queued` is notified whenever deliveries were queued.
    pub fn new(pool: Pool, queued: Arc<Notify>) -> Self {
        Self {
            follower: LogFollower::new(
                pool.clone(),
                DISPATCHER_LOCK,
                "notification dispatcher",
                CHECKPOINT,
            ),
            pool,
            batch_size: 200,
            queued,
        }
    }

    /// Dispatches as soon as this process's projector has seen a commit.
    pub fn woken_by(self, projected: ProjectedWatch) -> Self {
        Self {
            follower: self.follower.clone().woken_by(projected),
            ..self
        }
    }

    /// Wakes on the event log's notifications (other processes' commits) instead of polling.
    pub fn woken_by_log(self, log: LogWake) -> Self {
        Self {
            follower: self.follower.clone().woken_by_log(log),
            ..self
        }
    }

    /// Runs until `shutdown`; failures are retried from the checkpoint with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        self.follower
            .run(
                shutdown,
                || async { Ok::<(), DispatchError>(()) },
                |from| self.run_batch(from),
            )
            .await
    }

    /// Dispatches the batch after `from` (where the checkpoint stands): queues its deliveries and moves the
    /// checkpoint in one transaction, so a restart neither loses nor repeats a notification.
    pub async fn run_batch(&self, at: Checkpoint) -> Result<Handled, DispatchError> {
        let mut client = self.pool.get().await?;
        let events = self
            .follower
            .read(&client, at.handled, self.batch_size)
            .await?;
        let handled = Handled::of(&events, self.batch_size);
        let Some(last) = handled.last else {
            return Ok(handled);
        };
        // A batch without a notifiable event changes nothing: its position is stored by the follower.
        if !events
            .iter()
            .any(|event| notification_type(event).is_some())
        {
            return Ok(handled);
        }
        let tx = client.transaction().await?;
        // Compare and set first: another dispatcher that moved it meanwhile owns this batch.
        if !advance_checkpoint(&tx, CHECKPOINT, at.stored, last, Commit::Synchronous).await? {
            return Err(ReadError::CheckpointMoved {
                name: CHECKPOINT.to_owned(),
            }
            .into());
        }
        let mut queued = 0;
        for event in &events {
            queued += self.dispatch(&tx, event).await?;
        }
        tx.commit().await?;
        if queued > 0 {
            self.queued.notify_one();
        }
        Ok(handled.stored())
    }

    /// Queues the event's notification for every subscribed webhook; returns how many were queued.
    async fn dispatch(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        event: &StoredEvent,
    ) -> Result<usize, DispatchError> {
        let Some(kind) = notification_type(event) else {
            return Ok(0);
        };
        let Some(account_id) = event.metadata.get("accountId").and_then(Value::as_str) else {
            tracing::warn!(event_id = %event.event_id, "an event without accountId: no notification");
            return Ok(0);
        };
        let webhooks = subscribed(tx, account_id, kind, event.recorded_at).await?;
        if webhooks.is_empty() {
            return Ok(0);
        }
        // An erased account (issue 13 §2) is told nothing more, whatever its streams record afterwards (a
        // backup that was running ends, say). Looked up in the log itself, on its primary key's prefix, so an
        // erasure counts even before this reader's checkpoint reaches it.
        let erased = tx
            .query_opt(
                "SELECT 1 FROM events WHERE aggregate_type = 'account' AND aggregate_id = $1 \
                   AND event_type = 'AccountErased' LIMIT 1",
                &[&account_id],
            )
            .await?
            .is_some();
        if erased {
            return Ok(0);
        }
        // The stream's first event names what the notification is about (the job's source, the platform).
        let first: Value = tx
            .query_opt(
                "SELECT payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1",
                &[&event.aggregate_type, &event.aggregate_id],
            )
            .await?
            .map(|row| row.get(0))
            .unwrap_or(Value::Null);
        let Some(notification) = notification(event, kind, identity(&first)) else {
            return Ok(0);
        };
        let mut queued = 0;
        for webhook_id in &webhooks {
            let new = enqueue(
                tx,
                &NewDelivery {
                    webhook_id,
                    account_id: &notification.account_id,
                    ordering_key: &notification.ordering_key,
                    notification_id: notification.id,
                    event_type: notification.kind.as_str(),
                    payload: &notification.payload,
                    created_at: notification.recorded_at,
                },
            )
            .await?;
            queued += usize::from(new.is_some());
        }
        Ok(queued)
    }
}
