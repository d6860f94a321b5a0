//! The backups work queue (issue 9): where a queued backup waits until a worker has a free slot for it.
//!
//! `SyncRequested` events reach JetStream through the relay (`<PREFIX>_EVENTS`). A **feeder** (a durable
//! consumer on `<prefix>.events.source.SyncRequested`, run by every worker process) copies each into the work
//! queue `<PREFIX>_BACKUPS` under the subject of its partition, `<prefix>.backups.<accountKey>.<connectionKey>`,
//! then acknowledges it. The stream has work-queue retention: a message leaves it when a worker acknowledges it,
//! once the job's outcome is recorded.
//!
//! Each partition has its own pull consumer (`<prefix>-backups-<hash of the subject>`), created on first use
//! and removed by JetStream after a day without use. A worker with a free slot lists the partitions holding
//! messages, picks one (the account with the fewest backups running, in turn among equals, and only a
//! connection it may take: see `leases`) and pulls **one** message from it. So a backup waiting its turn waits
//! in the stream, never in a worker's buffer, and never spends a delivery by waiting; and one account's 500
//! queued backups do not stand in front of another account's one.
//!
//! Partition keys are subject tokens: an id made of letters, digits, `-` and `_` (64 at most) is its own key;
//! any other (an account id from an identity provider may hold dots or spaces) is `x` followed by 32 hex digits
//! of its SHA-256.

use std::borrow::Cow;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures::StreamExt;
use listbackup_commands::{BoxError, CommandError, EventMetadata};
use listbackup_domain::ErrorChain;
use listbackup_domain::ErrorKind;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::BackupWorker;

/// Why a work-queue task (the feeders, the dispatcher, the exhausted-deliveries watcher) stopped: what it was
/// doing, and the NATS, JetStream or command error that stopped it, kept whole so the log prints its chain.
/// The task is started again with backoff (`keep_running`).
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub(super) struct QueueError {
    context: Cow<'static, str>,
    #[source]
    source: Option<BoxError>,
}

impl QueueError {
    /// `context` failed because of `source`.
    pub(super) fn new(context: impl Into<Cow<'static, str>>, source: impl Into<BoxError>) -> Self {
        Self {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A stream of messages that ended (its consumer was removed): no underlying error.
    pub(super) fn ended(context: &'static str) -> Self {
        Self {
            context: context.into(),
            source: None,
        }
    }

    /// For `map_err`: `context` failed because of the error given.
    pub(super) fn by<E: Into<BoxError>>(context: &'static str) -> impl FnOnce(E) -> Self {
        move |source| Self::new(context, source)
    }
}

/// The durable consumer that moves `SyncRequested` events into the work queue.
const FEEDER_CONSUMER: &str = "backup-feeder";

/// The queued jobs the feeders move into the work queue: `(source event type, feeder consumer)`. Backups and
/// restores wait in the same queue and are run by the same workers; one feeder per subject, as a consumer
/// with several filter subjects needs NATS 2.10.
pub(super) const FEEDS: [(&str, &str); 2] = [
    ("SyncRequested", FEEDER_CONSUMER),
    ("RestoreRequested", "restore-feeder"),
];

/// The consumers of the partitions are named `<prefix>-backups-<hash>`.
pub(super) const PARTITION_CONSUMER: &str = "backups-";

/// A copy published twice within this window (a feeder that died between publishing and acknowledging) is
/// stored once: JetStream drops it by its `Nats-Msg-Id`, the job id.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A partition consumer nobody pulled from for this long is removed by JetStream (it is created again on use).
const PARTITION_CONSUMER_IDLE: Duration = Duration::from_secs(24 * 60 * 60);

/// The partition key of connections a queued job could not be placed under (its source is gone, or belongs to
/// another database on a shared NATS server); the worker acknowledges those as it always has.
pub(super) const NO_CONNECTION: &str = "_";

/// The subject token of an id: see the module documentation.
pub fn partition_key(id: &str) -> String {
    if crate::names::is_plain_token(id) {
        id.to_owned()
    } else {
        format!("x{}", &hex::encode(Sha256::digest(id.as_bytes()))[..32])
    }
}

/// One queue partition: the backups of one connection of one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Partition {
    pub subject: String,
    pub account_key: String,
    pub connection_key: String,
}

/// What the feeder reads of a `SyncRequested` message.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Queued {
    /// The source's id: a message naming no source by a UUID is unreadable, as the worker finds it too.
    aggregate_id: listbackup_domain::SourceId,
    payload: QueuedPayload,
    metadata: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueuedPayload {
    job_id: String,
}

impl BackupWorker {
    /// The partition of a subject of the work queue.
    pub(super) fn partition(&self, subject: &str) -> Option<Partition> {
        let (account_key, connection_key) = self.names.backup_subject_keys(subject)?;
        Some(Partition {
            subject: subject.to_owned(),
            account_key: account_key.to_owned(),
            connection_key: connection_key.to_owned(),
        })
    }

    /// Creates the work-queue stream, or returns it.
    pub(super) async fn backups_stream(
        &self,
        js: &jetstream::Context,
    ) -> Result<stream::Stream, QueueError> {
        js.get_or_create_stream(stream::Config {
            name: self.names.backups_stream(),
            subjects: vec![self.names.backups_wildcard()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await
        .map_err(QueueError::by("creating the backups work queue"))
    }

    /// The pull consumer of one partition, created (or brought to this worker's delivery settings).
    pub(super) async fn partition_consumer(
        &self,
        queue: &stream::Stream,
        partition: &Partition,
    ) -> Result<consumer::PullConsumer, QueueError> {
        let hash = hex::encode(Sha256::digest(partition.subject.as_bytes()));
        let name = self
            .names
            .consumer(&format!("{PARTITION_CONSUMER}{}", &hash[..24]));
        let config = consumer::pull::Config {
            inactive_threshold: PARTITION_CONSUMER_IDLE,
            ..self
                .deliveries
                .consumer_config(&name, partition.subject.clone())
        };
        queue
            .create_consumer(config)
            .await
            .map_err(|e| QueueError::new(format!("the consumer of {}", partition.subject), e))
    }

    /// Runs until `shutdown`: moves every `event_type` (`SyncRequested`, `RestoreRequested`) of the events
    /// stream into its partition of the work queue through the durable consumer `feeder`. A message is
    /// acknowledged only once JetStream has stored its copy.
    pub(super) async fn feed(
        &self,
        shutdown: &CancellationToken,
        (event_type, feeder): (&str, &str),
    ) -> Result<(), QueueError> {
        self.relay
            .ensure_stream()
            .await
            .map_err(QueueError::by("setting up the events stream"))?;
        let js = jetstream::new(self.nats.clone());
        self.backups_stream(&js).await?;
        let events = js
            .get_stream(self.names.events_stream())
            .await
            .map_err(QueueError::by("opening the events stream"))?;
        let name = self.names.consumer(feeder);
        let feeder: consumer::PullConsumer = events
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name),
                filter_subject: self.names.event_subject("source", event_type),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(QueueError::by("creating the feeder's consumer"))?;
        // Copying a message takes a few milliseconds, so a small batch waits in this buffer only briefly.
        let mut messages = feeder
            .stream()
            .max_messages_per_batch(32)
            .messages()
            .await
            .map_err(QueueError::by("reading the feeder's messages"))?;
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => match next {
                    Some(message) => message.map_err(QueueError::by("reading the feeder's messages"))?,
                    None => return Err(QueueError::ended("the feeder's message stream ended")),
                },
            };
            match self.enqueue(&js, &message.payload).await {
                Ok(()) => {
                    if let Err(err) = message.ack().await {
                        tracing::warn!(
                            error = %ErrorChain(&*err),
                            "feeder ack failed; the copy will be deduplicated"
                        );
                    }
                }
                Err(err) => {
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "a queued backup was not moved yet; retrying"
                    );
                    let _ = message
                        .ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1))))
                        .await;
                }
            }
        }
    }

    /// Publishes one `SyncRequested` (its bytes unchanged) under its partition's subject.
    async fn enqueue(&self, js: &jetstream::Context, body: &[u8]) -> Result<(), QueueError> {
        let queued: Queued = match serde_json::from_slice(body) {
            Ok(queued) => queued,
            Err(err) => {
                // Nothing could run it: the worker would drop it too.
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "unreadable SyncRequested message dropped"
                );
                return Ok(());
            }
        };
        let account_id = queued
            .metadata
            .get("accountId")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let metadata = EventMetadata {
            account_id: account_id.clone(),
            actor: "system".into(),
            request_id: String::new(),
            correlation_id: String::new(),
            causation_id: String::new(),
        };
        let connection_key = match self.sources.live(&metadata, &queued.aggregate_id).await {
            Ok((source, _)) => source.connection_id().map_or_else(
                || NO_CONNECTION.to_owned(),
                |id| partition_key(&id.to_string()),
            ),
            Err(CommandError::Domain {
                kind: ErrorKind::NotFound,
                ..
            }) => NO_CONNECTION.to_owned(),
            Err(err) => return Err(QueueError::new("reading the queued job's source", err)),
        };
        let account_key = if account_id.is_empty() {
            NO_CONNECTION.to_owned()
        } else {
            partition_key(&account_id)
        };
        let subject = self.names.backup_subject(&account_key, &connection_key);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", queued.payload.job_id.as_str());
        js.publish_with_headers(subject, headers, body.to_vec().into())
            .await
            .map_err(QueueError::by("publishing a queued job to its partition"))?
            .await
            .map_err(QueueError::by("storing a queued job in its partition"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_ids_are_their_own_keys_and_others_are_hashed() {
        assert_eq!(
            partition_key("0192f0c4-7a1b-7c3e-9d2f-123456789abc"),
            "0192f0c4-7a1b-7c3e-9d2f-123456789abc"
        );
        assert_eq!(partition_key("acme_1"), "acme_1");
        let dotted = partition_key("acme.example.com");
        assert_eq!(dotted.len(), 33);
        assert!(dotted.starts_with('x'));
        assert_ne!(dotted, partition_key("acme.example.org"));
        assert_eq!(dotted, partition_key("acme.example.com"));
        assert!(partition_key("a b").starts_with('x'));
        assert!(partition_key(&"a".repeat(65)).starts_with('x'));
    }
}
