//! The relay: publishes every committed event to the JetStream stream `<PREFIX>_EVENTS`, once, in log order.
//!
//! - Order and completeness come from the same gap-safe reader the projector uses (`(transaction_id,
//!   global_position)` below the snapshot horizon), with the relay's own checkpoint.
//! - "Once" comes from `Nats-Msg-Id: <eventId>` and the stream's duplicate window (≥ 10 minutes): events
//!   published just before a crash, whose checkpoint was not saved yet, are published again on restart and
//!   dropped by JetStream as duplicates.
//! - One active relay at a time: a Postgres advisory lock, held on a dedicated session (not a transaction: a
//!   long transaction would hold back the snapshot horizon every reader waits on).
//! - While NATS is down, nothing advances: commands are still accepted (they only touch Postgres) and the
//!   relay catches up when NATS returns.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use deadpool_postgres::Pool;
use listbackup_projections::{ProjectedWatch, StoredEvent};

use crate::log_follower::{Checkpoint, Handled, LogFollower};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::names::NatsNames;

/// The relay's checkpoint name.
pub const CHECKPOINT: &str = "relay";

/// Names the relay's advisory lock among all advisory locks ("LBRELAY").
const RELAY_LOCK: i64 = 0x004c_4252_454c_4159;

/// How long JetStream remembers message ids to drop duplicates: at least 10 minutes (DESIGN §5).
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("database: {0}")]
    Database(#[from] tokio_postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("event log: {0}")]
    Log(#[from] listbackup_projections::ReadError),
    /// NATS refused or failed a publish (the client's error, kept whole for the log's chain).
    #[error("NATS")]
    Nats(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn nats_err(err: impl std::error::Error + Send + Sync + 'static) -> RelayError {
    RelayError::Nats(Box::new(err))
}

pub struct Relay {
    pool: Pool,
    jetstream: jetstream::Context,
    names: NatsNames,
    batch_size: i64,
    /// One relay at a time across processes, woken by this process's commits.
    follower: LogFollower,
}

impl Relay {
    pub fn new(pool: Pool, nats: async_nats::Client, names: NatsNames) -> Self {
        Self {
            follower: LogFollower::new(pool.clone(), RELAY_LOCK, "relay", CHECKPOINT),
            pool,
            jetstream: jetstream::new(nats),
            names,
            batch_size: 500,
        }
    }

    /// Publishes as soon as this process's projector has seen a commit, not at the next poll.
    pub fn woken_by(self, projected: ProjectedWatch) -> Self {
        Self {
            follower: self.follower.clone().woken_by(projected),
            ..self
        }
    }

    /// Wakes on the event log's notifications (other processes' commits) instead of polling.
    pub fn woken_by_log(self, log: listbackup_projections::LogWake) -> Self {
        Self {
            follower: self.follower.clone().woken_by_log(log),
            ..self
        }
    }

    /// Creates the events stream if it does not exist yet.
    pub async fn ensure_stream(&self) -> Result<(), RelayError> {
        self.jetstream
            .get_or_create_stream(stream::Config {
                name: self.names.events_stream(),
                subjects: vec![self.names.events_wildcard()],
                duplicate_window: DUPLICATE_WINDOW,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(nats_err)?;
        Ok(())
    }

    /// Runs until `shutdown`: waits for the relay lock, then publishes forever. Failures (NATS or Postgres
    /// down) are retried with backoff; nothing is skipped.
    pub async fn run(self, shutdown: CancellationToken) {
        self.follower
            .run(
                shutdown,
                || self.ensure_stream(),
                |from| self.publish_batch(from),
            )
            .await
    }

    /// Publishes the next batch after `at.handled` and waits for JetStream's acks. Leaves the checkpoint to
    /// the follower, which stores it about once a second ([`crate::log_follower::STORE_EVERY`]): what a crash
    /// makes it publish again carries the same `Nats-Msg-Id`s, which JetStream drops within its duplicate
    /// window ([`DUPLICATE_WINDOW`], minutes, far longer than the second).
    pub async fn publish_batch(&self, at: Checkpoint) -> Result<Handled, RelayError> {
        let client = self.pool.get().await?;
        let events = self
            .follower
            .read(&client, at.handled, self.batch_size)
            .await?;
        let handled = Handled::of(&events, self.batch_size);
        if events.is_empty() {
            return Ok(handled);
        }
        // Publish the whole batch, then wait for every ack: JetStream keeps one connection's publishes in order.
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let subject = self
                .names
                .event_subject(&event.aggregate_type, &event.event_type);
            let ack = self
                .jetstream
                .publish_with_headers(subject, headers(event), message(event).into())
                .await
                .map_err(nats_err)?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.map_err(nats_err)?;
        }
        Ok(handled)
    }
}

fn headers(event: &StoredEvent) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        event.event_id.to_string().as_str(),
    );
    headers.insert(
        "Listbackup-Global-Position",
        event.position.global_position.to_string().as_str(),
    );
    headers.insert(
        "Listbackup-Transaction-Id",
        event.position.transaction_id.to_string().as_str(),
    );
    headers.insert("Listbackup-Aggregate-Type", event.aggregate_type.as_str());
    headers.insert("Listbackup-Aggregate-Id", event.aggregate_id.as_str());
    headers.insert("Listbackup-Sequence", event.sequence.to_string().as_str());
    headers
}

/// The message body: the event with its identity, place in the log and metadata.
fn message(event: &StoredEvent) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "eventId": event.event_id,
        "aggregateType": event.aggregate_type,
        "aggregateId": event.aggregate_id,
        "sequence": event.sequence,
        "eventType": event.event_type,
        "eventVersion": event.event_version,
        "globalPosition": event.position.global_position,
        "transactionId": event.position.transaction_id.to_string(),
        "recordedAt": event.recorded_at,
        "payload": event.body(),
        "metadata": event.metadata,
    }))
    .unwrap_or_default()
}
