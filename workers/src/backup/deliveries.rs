//! How a job's message is delivered, and what happens when its deliveries run out (DESIGN §5: "bounded
//! `max_deliver` with backoff; a message that exhausts its deliveries fails the job, never vanishes").
//!
//! - **Ack wait, keep-alive, backoff.** A delivery not acknowledged within its ack wait is redelivered (its
//!   worker is presumed dead). A running backup extends it with an in-progress ack every ack wait / 3. The
//!   consumer's `backoff` lists the ack wait of each delivery: the configured ack wait for the first, doubling
//!   for each redelivery (capped), so a job whose workers keep dying is not retried back to back.
//! - **Exhausted deliveries** end the job with `JobFailed {code: DELIVERY_EXHAUSTED, retryable: true}` (or
//!   `JobCancelled` when its cancellation was pending), through two paths, since either alone can lose it:
//!   1. the worker holding the last delivery, when its run ends without a recorded outcome (an error
//!      recording it), gives up on the job itself instead of leaving the message for a redelivery that
//!      will not come;
//!   2. a worker killed during the last delivery cannot. JetStream then publishes a max-deliveries advisory
//!      on core NATS, which is fire-and-forget: the stream `<PREFIX>_DELIVERY_ADVISORIES` captures it, so it
//!      waits there while no worker runs, and every worker consumes it through one durable consumer,
//!      fetches the `SyncRequested` it names from the backups work queue, gives up on that job, and removes
//!      the message from the queue (a work queue keeps what nobody acknowledged).
//!
//! Deliveries are spent only by runs that stopped, never by waiting: a worker pulls a message only when it has
//! a free slot for it (`dispatch`), so a queued job stays in the stream, undelivered, however long it waits.
//!
//!   A job that never started (every delivery was lost before `JobStarted`) is failed too: its `JobFailed` is
//!   the stream's first event and carries the job's identity. Together with fencing (a dead attempt's reports
//!   are refused once another run took over or the job ended), no job stays `running` without a live worker
//!   for longer than its deliveries' ack waits, as long as some worker runs.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use futures::StreamExt;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::{JobErrorCode, JobStatus};
use listbackup_domain::ErrorChain;
use listbackup_domain::{ErrorKind, JobId, SourceId};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::queue::QueueError;
use super::{BackupWorker, EventMessage};

/// The longest a redelivery waits, however many deliveries came before.
const MAX_REDELIVERY_WAIT: Duration = Duration::from_secs(10 * 60);

/// How long captured advisories are kept: far longer than any worker outage they must outlive.
const ADVISORY_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The durable consumer of the captured max-deliveries advisories.
const ADVISORY_CONSUMER: &str = "delivery-exhausted";

/// Delivery settings of the backup workers' consumer (`LISTBACKUP_WORKER_ACK_WAIT_SECS`,
/// `LISTBACKUP_WORKER_MAX_DELIVER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverySettings {
    /// How long a first delivery may go without an ack or in-progress ack before it is redelivered.
    pub ack_wait: Duration,
    /// Deliveries of one message, the first included; at least 1.
    pub max_deliver: i64,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
        }
    }
}

impl DeliverySettings {
    /// In-progress acks while a backup runs: three per ack wait, so one lost ack does not cost the delivery.
    pub fn keep_alive(&self) -> Duration {
        self.ack_wait / 3
    }

    /// The ack wait of each delivery but the last (which keeps the last entry's): the ack wait, doubling up
    /// to [`MAX_REDELIVERY_WAIT`] (or the ack wait, when that is longer). JetStream requires fewer entries than
    /// `max_deliver`, uses the first as the consumer's ack wait, and applies every entry to in-progress acks
    /// too, so the keep-alive stays well inside each.
    pub fn backoff(&self) -> Vec<Duration> {
        let cap = MAX_REDELIVERY_WAIT.max(self.ack_wait);
        let entries = usize::try_from(self.max_deliver.saturating_sub(1)).unwrap_or(0);
        (0..entries)
            .map(|i| {
                let factor = 1u32 << i.min(20);
                self.ack_wait.checked_mul(factor).unwrap_or(cap).min(cap)
            })
            .collect()
    }

    /// The consumer configuration: created with it, or updated to it when the durable consumer exists with
    /// other settings (the last worker started wins: run every worker with the same settings).
    pub(super) fn consumer_config(
        &self,
        name: &str,
        filter_subject: String,
    ) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(name.to_owned()),
            filter_subject,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver,
            backoff: self.backoff(),
            ..Default::default()
        }
    }
}

/// What the worker reads of a max-deliveries advisory (`io.nats.jetstream.advisory.v1.max_deliver`).
#[derive(Debug, Deserialize)]
struct MaxDeliveriesAdvisory {
    stream: String,
    consumer: String,
    stream_seq: u64,
    deliveries: i64,
}

impl BackupWorker {
    /// Sets how job messages are delivered (default: [`DeliverySettings::default`]).
    pub fn with_deliveries(mut self, deliveries: DeliverySettings) -> Self {
        self.deliveries = deliveries;
        self
    }

    /// Ends the job of a `SyncRequested` whose deliveries ran out without a recorded outcome: every worker
    /// that took it stopped (killed, cut off) or failed to record how it went. A job whose cancellation was
    /// pending is cancelled; any other unfinished job fails with [`JobErrorCode::DeliveryExhausted`], its dead attempt's
    /// artifacts discarded first. `Err` when it could not be recorded (to be tried again).
    pub(super) async fn give_up(&self, body: &[u8], deliveries: i64) -> Result<(), CommandError> {
        let event: EventMessage = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "unreadable SyncRequested message: no job to end"
                );
                return Ok(());
            }
        };
        let metadata = system_metadata(&event);
        let job_id = event.payload.job_id();
        let source_id = event.aggregate_id;
        let (job, _) = self.jobs.load(job_id).await?;
        let message = format!(
            "the job's message was delivered {deliveries} time(s) and no worker recorded an outcome \
             (each one stopped or was cut off before finishing)"
        );
        match job.status() {
            // The outcome is recorded: nothing was lost.
            status if status.is_terminal() => return Ok(()),
            JobStatus::Queued => {
                // Never started. Only a job of a live source of this database is ended here: another
                // database's message (shared NATS) is not ours, and a deleted source's job is cancelled by
                // the deletion saga.
                match self.sources.live(&metadata, &source_id).await {
                    Ok(_) => {}
                    Err(CommandError::Domain {
                        kind: ErrorKind::NotFound,
                        ..
                    }) => {
                        tracing::warn!(%job_id, %source_id, "exhausted deliveries of an unknown source's job ignored");
                        return Ok(());
                    }
                    Err(err) => return Err(err),
                }
            }
            _ => {
                // Nothing of the dead attempt may look like a backup.
                let artifacts = self.store.job(
                    &metadata.account_id,
                    &source_id.to_string(),
                    &job_id.to_string(),
                );
                artifacts.discard().await.map_err(|e| {
                    CommandError::unavailable("discarding a dead attempt's files failed", e)
                })?;
                if job.cancel_requested() {
                    return match self.jobs.confirm_cancelled(&metadata, job_id).await {
                        Ok(_) | Err(CommandError::Domain { .. }) => Ok(()),
                        Err(err) => Err(err),
                    };
                }
            }
        }
        match self
            .jobs
            .give_up(
                &metadata,
                job_id,
                source_id,
                JobErrorCode::DeliveryExhausted,
                &message,
            )
            .await
        {
            Ok(_) => {
                tracing::warn!(%job_id, %source_id, deliveries, "job failed: its message exhausted its deliveries");
                Ok(())
            }
            // It ended meanwhile (a late outcome, a cancellation): that outcome stands.
            Err(CommandError::Domain { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// The message's source is not a live source of this database: another database's message (shared
    /// NATS) or a source deleted since. Nothing is run. A redelivered job of a deleted source that a dead
    /// worker left running is cancelled for it once the deletion saga has asked (until then the message is
    /// left for redelivery, and when deliveries run out [`BackupWorker::give_up`] ends the job).
    pub(super) async fn source_gone(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        source_id: SourceId,
        delivered: i64,
    ) -> Result<(), CommandError> {
        let (job, _) = self.jobs.load(job_id).await?;
        // A first delivery cannot tell a dead run from a live one: a running job is its worker's business.
        if delivered <= 1 || job.status() != JobStatus::Running {
            tracing::warn!(%job_id, %source_id, "SyncRequested for an unknown source acknowledged");
            return Ok(());
        }
        if !job.cancel_requested() {
            return Err(CommandError::Unavailable {
                context: "the job's source is deleted; waiting for the deletion to cancel the job"
                    .into(),
                source: None,
            });
        }
        let artifacts = self.store.job(
            &metadata.account_id,
            &source_id.to_string(),
            &job_id.to_string(),
        );
        if let Err(err) = artifacts.discard().await {
            tracing::warn!(%job_id, error = %ErrorChain(&err), "discarding a cancelled attempt");
        }
        match self.jobs.confirm_cancelled(metadata, job_id).await {
            Ok(_) | Err(CommandError::Domain { .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Follows the captured max-deliveries advisories of the work queue's consumers until `shutdown`, giving up on
    /// each one's job (path 2 in the module documentation).
    pub(super) async fn watch_exhausted(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<(), QueueError> {
        let js = jetstream::new(self.nats.clone());
        let setup = async {
            self.relay
                .ensure_stream()
                .await
                .map_err(QueueError::by("setting up the events stream"))?;
            let events = self.backups_stream(&js).await?;
            // Created, or updated from an earlier version's subjects (the advisories of the events stream's
            // single backup consumer, before the work queue).
            js.create_or_update_stream(stream::Config {
                name: self.names.delivery_advisories_stream(),
                subjects: vec![self.names.backup_max_deliveries_advisories()],
                max_age: ADVISORY_RETENTION,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(QueueError::by("creating the delivery advisories stream"))?;
            let advisories = js
                .get_stream(self.names.delivery_advisories_stream())
                .await
                .map_err(QueueError::by("opening the delivery advisories stream"))?;
            let name = self.names.consumer(ADVISORY_CONSUMER);
            // No delivery limit: an advisory is acknowledged once its job has ended, and retried until then.
            let consumer: consumer::PullConsumer = advisories
                .get_or_create_consumer(
                    &name,
                    consumer::pull::Config {
                        durable_name: Some(name.clone()),
                        ack_policy: consumer::AckPolicy::Explicit,
                        ack_wait: self.deliveries.ack_wait,
                        ..Default::default()
                    },
                )
                .await
                .map_err(QueueError::by("creating the advisories' consumer"))?;
            let messages = consumer
                .messages()
                .await
                .map_err(QueueError::by("reading the advisories"))?;
            Ok::<_, QueueError>((events, messages))
        };
        let (events, mut messages) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ready = setup => ready?,
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = messages.next() => match next {
                    Some(message) => message.map_err(QueueError::by("reading the advisories"))?,
                    None => {
                        return Err(QueueError::ended(
                            "the advisory consumer's message stream ended",
                        ))
                    }
                },
            };
            match self.on_advisory(&events, &message.payload).await {
                Ok(()) => {
                    if let Err(err) = message.ack().await {
                        tracing::warn!(
                            error = %ErrorChain(&*err),
                            "advisory ack failed; it will be handled again"
                        );
                    }
                }
                Err(err) => {
                    tracing::warn!(
                        error = %ErrorChain(&err),
                        "exhausted deliveries not recorded yet; retrying later"
                    );
                    // Sooner than the ack wait: the job should not stay `running` longer than needed.
                    let _ = message
                        .ack_with(AckKind::Nak(Some(self.deliveries.keep_alive())))
                        .await;
                }
            }
        }
    }

    async fn on_advisory(
        &self,
        events: &jetstream::stream::Stream,
        body: &[u8],
    ) -> Result<(), CommandError> {
        let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(body) {
            Ok(advisory) => advisory,
            Err(err) => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "unreadable max-deliveries advisory dropped"
                );
                return Ok(());
            }
        };
        let partition_consumers = self.names.consumer(super::queue::PARTITION_CONSUMER);
        if advisory.stream != self.names.backups_stream()
            || !advisory.consumer.starts_with(&partition_consumers)
        {
            return Ok(());
        }
        let message = match events.get_raw_message(advisory.stream_seq).await {
            Ok(message) => message,
            Err(err) => {
                use async_nats::jetstream::stream::RawMessageErrorKind;
                // Gone from the stream (its limits): there is no job to name. Anything else is retried.
                if matches!(err.kind(), RawMessageErrorKind::NoMessageFound) {
                    tracing::warn!(
                        stream_seq = advisory.stream_seq,
                        "exhausted message no longer in the stream"
                    );
                    return Ok(());
                }
                return Err(CommandError::unavailable(
                    format!(
                        "reading message {} of the backups work queue failed",
                        advisory.stream_seq
                    ),
                    err,
                ));
            }
        };
        self.give_up(&message.payload, advisory.deliveries).await?;
        // JetStream will not deliver it again, and a work queue keeps what nobody acknowledged: without this it
        // would stay listed as waiting for ever.
        if let Err(err) = events.delete_message(advisory.stream_seq).await {
            tracing::warn!(
                stream_seq = advisory.stream_seq,
                error = %ErrorChain(&err),
                "removing an exhausted message from the work queue failed"
            );
        }
        Ok(())
    }
}

/// Metadata of what the system records about the job of `event` (the `SyncRequested` caused it).
fn system_metadata(event: &EventMessage) -> EventMetadata {
    let text = |key: &str| {
        event
            .metadata
            .get(key)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    EventMetadata {
        account_id: text("accountId").unwrap_or_default(),
        actor: "system".to_owned(),
        request_id: text("requestId").unwrap_or_default(),
        correlation_id: text("correlationId").unwrap_or_else(|| event.event_id.clone()),
        causation_id: event.event_id.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_thirty_seconds_and_five_deliveries() {
        let settings = DeliverySettings::default();
        assert_eq!(settings.ack_wait, Duration::from_secs(30));
        assert_eq!(settings.keep_alive(), Duration::from_secs(10));
        assert_eq!(
            settings.backoff(),
            [30, 60, 120, 240].map(Duration::from_secs),
            "one entry fewer than max_deliver, starting at the ack wait, doubling"
        );
    }

    #[test]
    fn the_backoff_is_capped_and_fits_max_deliver() {
        let settings = DeliverySettings {
            ack_wait: Duration::from_secs(60),
            max_deliver: 30,
        };
        let backoff = settings.backoff();
        assert_eq!(backoff.len(), 29);
        assert_eq!(backoff[0], settings.ack_wait);
        assert!(backoff.iter().all(|d| *d <= MAX_REDELIVERY_WAIT));
        assert_eq!(*backoff.last().unwrap(), MAX_REDELIVERY_WAIT);
        assert!(backoff.windows(2).all(|w| w[0] <= w[1]));
        assert!(backoff.iter().all(|d| settings.keep_alive() < *d));
        // A single delivery needs no backoff (and JetStream would refuse one as long as max_deliver).
        let once = DeliverySettings {
            ack_wait: Duration::from_secs(2),
            max_deliver: 1,
        };
        assert!(once.backoff().is_empty());
        // An ack wait longer than the cap is never shortened.
        let long = DeliverySettings {
            ack_wait: Duration::from_secs(3600),
            max_deliver: 3,
        };
        assert_eq!(long.backoff(), [3600, 3600].map(Duration::from_secs));
    }

    #[test]
    fn the_consumer_config_carries_the_settings() {
        let settings = DeliverySettings {
            ack_wait: Duration::from_secs(2),
            max_deliver: 3,
        };
        let config =
            settings.consumer_config("p-backup-workers", "p.events.source.SyncRequested".into());
        assert_eq!(config.durable_name.as_deref(), Some("p-backup-workers"));
        assert_eq!(config.ack_wait, Duration::from_secs(2));
        assert_eq!(config.max_deliver, 3);
        assert_eq!(config.backoff, [2, 4].map(Duration::from_secs));
    }

    #[test]
    fn an_advisory_is_read_as_jetstream_sends_it() {
        let body = br#"{"type":"io.nats.jetstream.advisory.v1.max_deliver","id":"x","timestamp":"2024-01-01T00:00:00Z",
            "stream":"P_EVENTS","consumer":"p-backup-workers","stream_seq":42,"deliveries":5}"#;
        let advisory: MaxDeliveriesAdvisory = serde_json::from_slice(body).unwrap();
        assert_eq!(advisory.stream_seq, 42);
        assert_eq!(advisory.deliveries, 5);
        assert_eq!(advisory.consumer, "p-backup-workers");
        assert_eq!(advisory.stream, "P_EVENTS");
    }
}
