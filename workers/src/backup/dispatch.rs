//! How a worker process chooses what to run next (issue 9): up to [`DispatchSettings::concurrency`] backups at
//! once, a message taken only when a slot is free, fairly between accounts, within each connection's limits.
//!
//! The loop: wait for a free slot (and take every other one free); list the partitions of the work queue
//! holding messages (`queue`) and the leases of the other processes, once for all of those slots; keep
//! those this process may run (no other process holds the connection, fewer than
//! [`DispatchSettings::per_connection`] of its backups run here, and some message of it is not already running
//! here); order them by the account's backups running in every process (fewest first) and, among equals, in
//! turn after the account served last (round-robin); pull one message from the first that has one ready, and
//! choose again for the next slot with it counted. When
//! nothing is ready, wait for a message to arrive (a core NATS subscription on the queue's subjects), a run to
//! end, or a second.
//!
//! So when one account has work it may use every free slot, and when several have, the slots are shared
//! among them: an account's 500 due sources do not stand in front of another's one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::{StreamExt, TryStreamExt};
use listbackup_domain::ErrorChain;
use listbackup_domain::JobId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::leases::{Claim, LeaseError};
use super::queue::{Partition, QueueError};
use super::BackupWorker;

/// How much a worker process runs at once (`LISTBACKUP_WORKER_CONCURRENCY`,
/// `LISTBACKUP_WORKER_CONNECTION_CONCURRENCY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchSettings {
    /// Backups running at once in one process (its slots).
    pub concurrency: usize,
    /// Backups of one connection running at once (all in one process: see `leases`).
    pub per_connection: usize,
}

impl Default for DispatchSettings {
    /// 16 slots, chosen by `bench/backup-burst` (`docs/benchmarks.md`, "Backup burst"): a backup mostly waits
    /// on its platform, so a slot costs about 1–2 MiB and little CPU; with 16 one worker process on the 2-core
    /// development machine finished the 1,000-source burst within 1.3× of the ideal for its slots. 32 slots
    /// finished the same burst about a quarter sooner for about 15 MiB more, with the machine's CPUs then
    /// saturated: a deployment with more cores per worker should raise it. Two per connection share the
    /// connection's rate budget between two of its sources.
    fn default() -> Self {
        Self {
            concurrency: 16,
            per_connection: 2,
        }
    }
}

/// How long to wait before looking at the queue again when nothing was ready (messages arriving and runs
/// ending wake the loop sooner).
const IDLE_POLL: Duration = Duration::from_secs(1);

/// How long the first pull from a partition's freshly created consumer may wait for a message.
const FIRST_PULL_WAIT: Duration = Duration::from_millis(500);

/// A run whose connection another process took in the meantime asks again this often.
const CLAIM_RETRY: Duration = Duration::from_millis(500);

/// The runs of this process, by partition, connection and account (messages pulled and not settled yet).
#[derive(Debug, Default)]
pub(super) struct LocalRuns {
    partitions: HashMap<String, usize>,
    connections: HashMap<String, usize>,
    accounts: HashMap<String, usize>,
    /// The account served last, for the round-robin among equally served accounts.
    last_account: Option<String>,
}

impl LocalRuns {
    fn add(&mut self, partition: &Partition) {
        *self
            .partitions
            .entry(partition.subject.clone())
            .or_default() += 1;
        *self
            .connections
            .entry(partition.connection_key.clone())
            .or_default() += 1;
        *self
            .accounts
            .entry(partition.account_key.clone())
            .or_default() += 1;
        self.last_account = Some(partition.account_key.clone());
    }

    fn remove(&mut self, partition: &Partition) {
        fn decrement(map: &mut HashMap<String, usize>, key: &str) {
            if let Some(n) = map.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    map.remove(key);
                }
            }
        }
        decrement(&mut self.partitions, &partition.subject);
        decrement(&mut self.connections, &partition.connection_key);
        decrement(&mut self.accounts, &partition.account_key);
    }

    fn count(map: &HashMap<String, usize>, key: &str) -> usize {
        map.get(key).copied().unwrap_or(0)
    }
}

/// Removes a settled run from [`LocalRuns`] and wakes the dispatcher (its connection may take another).
struct LocalRun {
    worker: Arc<BackupWorker>,
    partition: Partition,
}

impl Drop for LocalRun {
    fn drop(&mut self) {
        self.worker
            .local
            .lock()
            .expect("local runs lock")
            .remove(&self.partition);
        self.worker.report_slots();
        self.worker.run_ended.notify_one();
    }
}

impl BackupWorker {
    /// Dispatches until `shutdown`, then drains the runs in progress (see [`BackupWorker::run`]). A failure
    /// setting up the queue is retried with backoff (200 ms doubling to 5 s).
    pub(super) async fn dispatch_until_drained(self: &Arc<Self>, shutdown: &CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut runs = JoinSet::new();
        loop {
            match self.dispatch(shutdown, &mut runs).await {
                Ok(()) => break,
                Err(err) => {
                    tracing::warn!(error = %ErrorChain(&err), "backup dispatcher paused; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        self.drain(runs).await;
    }

    /// Lets the runs in progress finish within the shutdown grace, then interrupts the others (each hands its
    /// message back and releases its lease: see `handle`) and waits for them to settle.
    async fn drain(&self, mut runs: JoinSet<()>) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.report_slots();
        while runs.try_join_next().is_some() {}
        if runs.is_empty() {
            return;
        }
        tracing::info!(
            running = runs.len(),
            grace_secs = self.shutdown_grace.as_secs_f64(),
            "draining: no new backups are taken; the running ones may finish within the shutdown grace"
        );
        let grace = tokio::time::sleep(self.shutdown_grace);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = runs.join_next() => if next.is_none() {
                    tracing::info!("drained: every running backup finished");
                    return;
                },
                _ = &mut grace => break,
            }
        }
        tracing::info!(
            interrupted = runs.len(),
            "shutdown grace over: stopping the backups still running and handing them back"
        );
        self.interrupt.cancel();
        while runs.join_next().await.is_some() {}
    }

    /// Takes messages into free slots until `shutdown`; the runs it starts go into `runs`, which outlive it.
    async fn dispatch(
        self: &Arc<Self>,
        shutdown: &CancellationToken,
        runs: &mut JoinSet<()>,
    ) -> Result<(), QueueError> {
        let js = jetstream::new(self.nats.clone());
        let setup = async {
            let queue = self.backups_stream(&js).await?;
            let arrivals = self
                .nats
                .subscribe(self.names.backups_wildcard())
                .await
                .map_err(QueueError::by("subscribing to the arrivals of queued jobs"))?;
            Ok::<_, QueueError>((queue, arrivals))
        };
        let (queue, mut arrivals) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ready = setup => ready?,
        };
        let slots = Arc::new(Semaphore::new(self.dispatch.concurrency.max(1)));
        self.report_slots();
        let mut consumers: HashMap<String, consumer::PullConsumer> = HashMap::new();
        loop {
            while runs.try_join_next().is_some() {}
            let first = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                permit = slots.clone().acquire_owned() => permit.expect("the slots are never closed"),
            };
            // Every free slot is filled in one pass: one look at the queue and the leases for all of them.
            let mut free = vec![first];
            while let Ok(permit) = slots.clone().try_acquire_owned() {
                free.push(permit);
            }
            let wanted = free.len();
            match self.pick(&queue, &mut consumers, wanted).await {
                Ok(picked) => {
                    let started = picked.len();
                    for ((message, partition), permit) in picked.into_iter().zip(free) {
                        runs.spawn(self.clone().run_message(message, partition, permit));
                    }
                    if started == wanted {
                        continue;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %ErrorChain(&err), "looking for a backup to run failed; trying again");
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = arrivals.next() => {}
                _ = self.run_ended.notified() => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    /// Up to `wanted` messages, each pulled from the partition this process should serve next (see the module
    /// documentation), counted as running here as they are pulled so that each next choice sees the previous.
    /// Fewer when fewer are ready.
    async fn pick(
        &self,
        queue: &stream::Stream,
        consumers: &mut HashMap<String, consumer::PullConsumer>,
        wanted: usize,
    ) -> Result<Vec<(jetstream::Message, Partition)>, QueueError> {
        let mut waiting: HashMap<String, usize> = queue
            .info_with_subjects(self.names.backups_wildcard())
            .await
            .map_err(QueueError::by("reading the partitions of the work queue"))?
            .try_collect()
            .await
            .map_err(QueueError::by("reading the partitions of the work queue"))?;
        waiting.retain(|_, count| *count > 0);
        let mut picked = Vec::new();
        if waiting.is_empty() {
            return Ok(picked);
        }
        let elsewhere = self
            .leases
            .running_elsewhere(&self.process_id)
            .await
            .map_err(QueueError::by("reading the leases of running jobs"))?;
        // Partitions that answered nothing in this pass (their messages run elsewhere, or wait for redelivery).
        let mut dry: std::collections::HashSet<String> = std::collections::HashSet::new();
        'fill: while picked.len() < wanted {
            let mut candidates = {
                let local = self.local.lock().expect("local runs lock");
                let last = local.last_account.clone().unwrap_or_default();
                let mut candidates = Vec::new();
                for (subject, count) in &waiting {
                    if dry.contains(subject) {
                        continue;
                    }
                    let Some(partition) = self.partition(subject) else {
                        continue;
                    };
                    // Every message of it is running here already (work-queue messages stay until
                    // acknowledged).
                    if *count <= LocalRuns::count(&local.partitions, subject) {
                        continue;
                    }
                    if elsewhere.connection(&partition.connection_key) > 0
                        || LocalRuns::count(&local.connections, &partition.connection_key)
                            >= self.dispatch.per_connection.max(1)
                    {
                        continue;
                    }
                    let served = elsewhere.account(&partition.account_key)
                        + LocalRuns::count(&local.accounts, &partition.account_key);
                    // Round-robin among equally served accounts: those after the last one served come first.
                    let turn = partition.account_key.as_str() <= last.as_str();
                    candidates.push(((served, turn, partition.account_key.clone()), partition));
                }
                candidates
            };
            candidates.sort_by(|a, b| a.0.cmp(&b.0));
            for (_, partition) in candidates {
                match self.pull(queue, consumers, &partition).await? {
                    Some(message) => {
                        self.local.lock().expect("local runs lock").add(&partition);
                        self.report_slots();
                        picked.push((message, partition));
                        continue 'fill;
                    }
                    None => {
                        dry.insert(partition.subject.clone());
                    }
                }
            }
            break;
        }
        Ok(picked)
    }

    /// One message of `partition`, if one is ready.
    async fn pull(
        &self,
        queue: &stream::Stream,
        consumers: &mut HashMap<String, consumer::PullConsumer>,
        partition: &Partition,
    ) -> Result<Option<jetstream::Message>, QueueError> {
        let (consumer, created) = match consumers.get(&partition.subject) {
            Some(consumer) => (consumer.clone(), false),
            None => {
                let consumer = self.partition_consumer(queue, partition).await?;
                consumers.insert(partition.subject.clone(), consumer.clone());
                (consumer, true)
            }
        };
        // `fetch` does not wait: a partition whose only messages are running elsewhere, or waiting for
        // their redelivery, answers nothing at once. A consumer just created may not have taken stock of
        // its subject's messages yet, so its first pull waits a moment for them.
        let pull = if created {
            consumer
                .batch()
                .max_messages(1)
                .expires(FIRST_PULL_WAIT)
                .messages()
                .await
        } else {
            consumer.fetch().max_messages(1).messages().await
        };
        let next = match pull {
            Ok(mut batch) => batch.next().await,
            Err(err) => {
                // Removed by JetStream after a day unused: created again next time.
                consumers.remove(&partition.subject);
                return Err(QueueError::new(
                    format!("pulling from {}", partition.subject),
                    err,
                ));
            }
        };
        match next {
            Some(Ok(message)) => Ok(Some(message)),
            Some(Err(err)) => {
                consumers.remove(&partition.subject);
                Err(QueueError::new(
                    format!("pulling from {}", partition.subject),
                    err,
                ))
            }
            None => Ok(None),
        }
    }

    /// Runs one pulled message in its slot; the slot and the local count are given back when it settles.
    async fn run_message(
        self: Arc<Self>,
        message: jetstream::Message,
        partition: Partition,
        _slot: OwnedSemaphorePermit,
    ) {
        let _local = LocalRun {
            worker: self.clone(),
            partition: partition.clone(),
        };
        self.handle(&message, &partition).await;
    }

    /// Waits until this run may take its connection (see `leases`), then holds it until the returned guard is
    /// released. The dispatcher only pulls a message whose connection is free, so waiting here is rare: a
    /// race with another process, or a takeover whose dead process's other leases have not expired yet. The
    /// message is kept alive meanwhile by the caller's in-progress acks.
    pub(super) async fn claim_connection(
        &self,
        job_id: JobId,
        partition: &Partition,
    ) -> Result<(), LeaseError> {
        let job_id = job_id.to_string();
        let job_id = job_id.as_str();
        let mut waited = false;
        loop {
            let claimed = self
                .leases
                .claim(Claim {
                    job_id,
                    account_key: &partition.account_key,
                    connection_key: &partition.connection_key,
                    process_id: &self.process_id,
                    per_connection: self.dispatch.per_connection.max(1),
                    ttl: self.deliveries.ack_wait,
                })
                .await?;
            if claimed {
                return Ok(());
            }
            if !waited {
                tracing::info!(%job_id, connection = %partition.connection_key,
                    "the connection is busy in another worker process; waiting for it");
                waited = true;
            }
            tokio::time::sleep(CLAIM_RETRY).await;
        }
    }

    /// Ends this process's lease of the job (best effort: it expires anyway).
    pub(super) async fn release_connection(&self, job_id: JobId) {
        if let Err(err) = self
            .leases
            .release(&job_id.to_string(), &self.process_id)
            .await
        {
            tracing::warn!(%job_id, error = %ErrorChain(&err), "releasing the backup's lease failed; it will expire");
        }
    }

    /// Renews this process's leases every keep-alive interval until `settled` (every run of this process has
    /// ended or been handed back), then gives up whatever is left.
    pub(super) async fn renew_leases(&self, settled: &CancellationToken) {
        let mut tick = tokio::time::interval(self.deliveries.keep_alive());
        loop {
            tokio::select! {
                _ = settled.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(err) = self.leases.renew(&self.process_id, self.deliveries.ack_wait).await {
                        tracing::warn!(error = %ErrorChain(&err), "renewing the backup leases failed");
                    }
                }
            }
        }
        // Each run releases its own lease; this catches any a failed release left behind.
        if let Err(err) = self.leases.release_all(&self.process_id).await {
            tracing::warn!(
                error = %ErrorChain(&err),
                "releasing the backup leases at shutdown failed; they will expire"
            );
        }
    }

    /// Sets the running-backups and free-slots gauges (`metrics`) from this process's runs.
    fn report_slots(&self) {
        crate::metrics::worker_slots(
            self.running(),
            self.dispatch.concurrency.max(1),
            self.draining.load(std::sync::atomic::Ordering::Relaxed),
        );
    }

    /// Backups running in this process right now.
    pub fn running(&self) -> usize {
        self.local
            .lock()
            .expect("local runs lock")
            .partitions
            .values()
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(account: &str, connection: &str) -> Partition {
        Partition {
            subject: format!("p.backups.{account}.{connection}"),
            account_key: account.into(),
            connection_key: connection.into(),
        }
    }

    #[test]
    fn local_runs_count_by_partition_connection_and_account() {
        let mut local = LocalRuns::default();
        let a1 = partition("a", "c1");
        let a2 = partition("a", "c2");
        local.add(&a1);
        local.add(&a1);
        local.add(&a2);
        assert_eq!(LocalRuns::count(&local.partitions, &a1.subject), 2);
        assert_eq!(LocalRuns::count(&local.connections, "c2"), 1);
        assert_eq!(LocalRuns::count(&local.accounts, "a"), 3);
        assert_eq!(local.last_account.as_deref(), Some("a"));
        local.remove(&a1);
        local.remove(&a1);
        assert_eq!(LocalRuns::count(&local.partitions, &a1.subject), 0);
        assert!(!local.connections.contains_key("c1"));
        assert_eq!(LocalRuns::count(&local.accounts, "a"), 1);
    }

    #[test]
    fn the_default_runs_several_backups_and_two_per_connection() {
        let settings = DispatchSettings::default();
        assert!(settings.concurrency > 1);
        assert_eq!(settings.per_connection, 2);
    }
}
