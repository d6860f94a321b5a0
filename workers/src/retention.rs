//! The retention sweep (issue 13 §1): expires the backups past their source's policy, in every `serve` and
//! `listbackup worker` process, with no leader.
//!
//! Which backups a policy expires is the domain's to say (`listbackup_domain::job::retention`); that each is
//! expired once is the Job aggregate's: every sweeper may offer the same backup, the first `BackupExpired`
//! wins, and the others record nothing (a lost race) or are refused (a hold placed meanwhile). Only the
//! process whose event was recorded deletes the backup's objects, after the event: a backup is never deleted
//! without its expiry on record, and never while held. Should that process die between the two, a later sweep
//! (any process) finishes the deletion of every backup expired in the last week and not yet noted in `backup_purges`.
//!
//! File platforms: a later job's manifest may name an earlier job's directory for a file's bytes
//! (`contents[].jobId`). A backup whose own file contents a kept backup of its source still refers to is not
//! expired: it stays, and expires on the first sweep after no kept backup refers to it.
//!
//! Snapshots (issue 13 §4): a backup whose files a kept backup's snapshot reads (an incremental chain's full
//! backup and earlier incrementals; the first store of records unchanged since) is not expired either, unless
//! a later kept backup stored the same records, to which the record index then moves them before the files
//! go ([`index`]).
//!
//! The sweep also removes staged uploads untouched for a day (see
//! [`BackupStore::sweep_abandoned_uploads`]), at most once an hour.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use listbackup_commands::jobs::JobCommands;
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::job::retention::{expirable, RetentionPolicy};
use listbackup_domain::ErrorChain;
use listbackup_domain::ErrorKind;
use listbackup_projections::read_models::jobs::{
    sources_past_retention, stored_backups, RetentionSource,
};
use listbackup_projections::ReadError;
use tokio_util::sync::CancellationToken;

use crate::scheduler::Clock;

pub mod index;
use crate::storage::{BackupStore, JobArtifacts};

/// The actor recorded on expiries (DESIGN §2).
pub const ACTOR: &str = "system";

/// How old a staged upload must be (since its last write) to be swept as abandoned.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::days(1);

/// How often the storage walk for abandoned uploads runs at most.
const ABANDONED_SWEEP_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Backups this process expired (recorded `BackupExpired` and deleted).
    pub expired: usize,
    /// Objects and bytes deleted for them: the storage freed.
    pub freed_files: u64,
    pub freed_bytes: u64,
    /// Backups another process expired first (nothing recorded here).
    pub lost_races: usize,
    /// Backups kept because a kept backup's manifest still refers to their file contents.
    pub kept_referenced: usize,
    /// Backups kept because a kept backup's snapshot reads records only their files hold.
    pub kept_for_snapshots: usize,
    /// Sources passed over because the record index has not merged all their backups yet.
    pub waiting_for_index: usize,
    /// Backups put under a hold between the read and the expiry (refused by the aggregate).
    pub held: usize,
    /// Expired backups whose deletion an earlier sweeper left unfinished, finished now.
    pub purged_late: usize,
    /// Staged uploads removed as abandoned, and their bytes.
    pub abandoned_uploads: u64,
    pub abandoned_bytes: u64,
    /// Expiries or deletions that failed, tried again on the next sweep.
    pub failed: usize,
}

/// Applies the sources' retention policies.
pub struct RetentionSweeper {
    pool: Pool,
    /// Where the record index's versions are moved: by default `pool`; in the service, sessions that never
    /// append (migration 0220), so a long move does not hold back the event log's readers.
    index_pool: Pool,
    jobs: Arc<JobCommands>,
    store: BackupStore,
    clock: Clock,
    interval: Duration,
    page_size: i64,
    last_abandoned_sweep: std::sync::Mutex<Option<DateTime<Utc>>>,
}

impl RetentionSweeper {
    pub fn new(pool: Pool, jobs: Arc<JobCommands>, store: BackupStore) -> Self {
        Self {
            index_pool: pool.clone(),
            pool,
            jobs,
            store,
            clock: Clock::System,
            interval: Duration::from_secs(30),
            page_size: 200,
            last_abandoned_sweep: std::sync::Mutex::new(None),
        }
    }

    /// Moves the record index's versions over `pool`'s sessions (see [`RetentionSweeper::index_pool`]).
    pub fn with_index_pool(mut self, pool: Pool) -> Self {
        self.index_pool = pool;
        self
    }

    /// Reads the time from `clock` (tests set it by hand so that `retentionDays` pass at once).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The wait between two sweeps (30 s by default: a backup past its policy goes within a minute of the
    /// end of the backup that put it there).
    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sweeps every `interval` until `shutdown`. A failing sweep is logged and the next one tries again.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            match self.sweep(self.clock.now()).await {
                Ok(report) => {
                    if report != SweepReport::default() {
                        tracing::info!(
                            expired = report.expired,
                            freed_files = report.freed_files,
                            freed_bytes = report.freed_bytes,
                            lost_races = report.lost_races,
                            kept_referenced = report.kept_referenced,
                            kept_for_snapshots = report.kept_for_snapshots,
                            waiting_for_index = report.waiting_for_index,
                            held = report.held,
                            purged_late = report.purged_late,
                            abandoned_uploads = report.abandoned_uploads,
                            abandoned_bytes = report.abandoned_bytes,
                            failed = report.failed,
                            "retention sweep"
                        );
                    }
                }
                Err(err) => tracing::warn!(
                    error = %ErrorChain(&err),
                    "retention sweep failed; retrying"
                ),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One sweep at `now`.
    pub async fn sweep(&self, now: DateTime<Utc>) -> Result<SweepReport, ReadError> {
        let mut report = SweepReport::default();
        let mut after: Option<String> = None;
        loop {
            let sources = {
                let client = self.pool.get().await?;
                sources_past_retention(&client, now, after.as_deref(), self.page_size).await?
            };
            let Some(last) = sources.last() else { break };
            after = Some(last.source_id.clone());
            let full = sources.len() as i64 == self.page_size;
            for source in &sources {
                self.sweep_source(source, now, &mut report).await?;
            }
            if !full {
                break;
            }
        }
        self.purge_unfinished(&mut report).await?;
        self.sweep_abandoned(now, &mut report).await;
        Ok(report)
    }

    async fn sweep_source(
        &self,
        source: &RetentionSource,
        now: DateTime<Utc>,
        report: &mut SweepReport,
    ) -> Result<(), ReadError> {
        let backups = {
            let client = self.pool.get().await?;
            stored_backups(&client, &source.source_id).await?
        };
        let policy = RetentionPolicy {
            retention_days: source.retention_days,
            keep_last: source.keep_last,
        };
        let candidates = expirable(&backups, &policy, now);
        if candidates.is_empty() {
            return Ok(());
        }
        // What the kept snapshots need is known once the index has merged every backup.
        match index::caught_up(&self.pool, &source.source_id).await {
            Ok(true) => {}
            Ok(false) => {
                report.waiting_for_index += 1;
                return Ok(());
            }
            Err(err) => {
                report.failed += 1;
                tracing::warn!(source_id = %source.source_id, error = %ErrorChain(&err), "retention: the record index could not be read");
                return Ok(());
            }
        }
        // The storage and the record index name jobs by their text.
        let mut kept: HashSet<String> = backups
            .iter()
            .map(|b| b.job_id)
            .filter(|id| !candidates.contains(id))
            .map(|id| id.to_string())
            .collect();
        // Per kept backup, the earlier jobs its manifest takes file contents from (read once per sweep).
        let mut refers_to: HashMap<String, HashSet<String>> = HashMap::new();
        let metadata = EventMetadata::for_request(
            &source.account_id,
            ACTOR.to_owned(),
            &uuid::Uuid::now_v7().to_string(),
        );
        // Newest first: a newer candidate that refers to an older one goes before it.
        for id in candidates {
            let job_id = id.to_string();
            let artifacts = self
                .store
                .job(&source.account_id, &source.source_id, &job_id);
            match self
                .referenced_by_kept(&artifacts, &job_id, &kept, &mut refers_to)
                .await
            {
                Ok(false) => {}
                Ok(true) => {
                    report.kept_referenced += 1;
                    kept.insert(job_id);
                    continue;
                }
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the backup's manifests could not be read");
                    kept.insert(job_id);
                    continue;
                }
            }
            let relocation = match index::plan(
                &self.pool,
                &self.store,
                &source.account_id,
                &source.source_id,
                &job_id,
                &kept,
            )
            .await
            {
                Ok(Some(relocation)) => relocation,
                Ok(None) => {
                    report.kept_for_snapshots += 1;
                    kept.insert(job_id);
                    continue;
                }
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: what the kept snapshots need could not be read");
                    kept.insert(job_id);
                    continue;
                }
            };
            let (files, bytes) = match artifacts.usage().await {
                Ok(usage) => usage,
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the backup's storage could not be listed");
                    kept.insert(job_id);
                    continue;
                }
            };
            match self.jobs.expire(&metadata, id, files, bytes).await {
                Ok(committed) if committed.events > 0 => {
                    // The kept snapshots read the moved versions elsewhere before the files go; should this
                    // fail, the files stay and a later sweep (`purge_unfinished`) plans again.
                    if let Err(err) = index::apply(&self.index_pool, &relocation).await {
                        report.failed += 1;
                        tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the record index could not be moved off the expired backup; its files stay for now");
                        continue;
                    }
                    if self.purge(&artifacts, &job_id).await {
                        report.expired += 1;
                        report.freed_files += files;
                        report.freed_bytes += bytes;
                        tracing::info!(%job_id, source_id = %source.source_id, files, bytes, "backup expired");
                    } else {
                        report.failed += 1;
                    }
                }
                Ok(_) => report.lost_races += 1,
                Err(CommandError::Domain {
                    kind: ErrorKind::Conflict,
                    ..
                }) => {
                    report.held += 1;
                    kept.insert(job_id);
                }
                Err(err) => {
                    report.failed += 1;
                    tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the expiry was not recorded; retrying");
                    kept.insert(job_id);
                }
            }
        }
        Ok(())
    }

    /// Whether a kept backup's manifest takes file contents from `job_id`'s directory. Only a backup that
    /// stored file contents itself can be referred to, so others cost one manifest read.
    async fn referenced_by_kept(
        &self,
        artifacts: &JobArtifacts,
        job_id: &str,
        kept: &HashSet<String>,
        refers_to: &mut HashMap<String, HashSet<String>>,
    ) -> Result<bool, crate::storage::StorageError> {
        let stores_contents = artifacts
            .read_manifest()
            .await?
            .is_some_and(|m| m.contents.iter().any(|c| c.job_id.is_none()));
        if !stores_contents {
            return Ok(false);
        }
        for other in kept {
            if !refers_to.contains_key(other) {
                let referred = artifacts
                    .job(other)
                    .read_manifest()
                    .await?
                    .map(|m| m.contents.into_iter().filter_map(|c| c.job_id).collect())
                    .unwrap_or_default();
                refers_to.insert(other.clone(), referred);
            }
            if refers_to[other].contains(job_id) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Deletes an expired backup's objects and notes it; false when that failed (a later sweep retries).
    async fn purge(&self, artifacts: &JobArtifacts, job_id: &str) -> bool {
        if let Err(err) = artifacts.discard().await {
            tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the expired backup's objects could not all be deleted; retrying");
            return false;
        }
        let noted = async {
            let client = self.pool.get().await?;
            client
                .execute(
                    "INSERT INTO backup_purges (job_id) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&job_id],
                )
                .await?;
            Ok::<_, ReadError>(())
        }
        .await;
        if let Err(err) = noted {
            tracing::warn!(%job_id, error = %ErrorChain(&err), "retention: the deletion could not be noted; a later sweep deletes again");
        }
        true
    }

    /// Finishes the deletion of expired backups whose sweeper died between the event and the deletion,
    /// within a week of their expiry (the window keeps this query from reading every expired backup ever).
    async fn purge_unfinished(&self, report: &mut SweepReport) -> Result<(), ReadError> {
        let rows = {
            let client = self.pool.get().await?;
            client
                .query(
                    "SELECT j.account_id, j.source_id, j.job_id FROM read_jobs j \
                     WHERE j.expired_at > now() - interval '7 days' \
                       AND NOT EXISTS (SELECT 1 FROM backup_purges p WHERE p.job_id = j.job_id) \
                     ORDER BY j.expired_at LIMIT 100",
                    &[],
                )
                .await?
        };
        for row in rows {
            let (account, source, job): (String, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if !self.relocate_unfinished(&account, &source, &job).await {
                report.failed += 1;
                continue;
            }
            if self
                .purge(&self.store.job(&account, &source, &job), &job)
                .await
            {
                report.purged_late += 1;
            } else {
                report.failed += 1;
            }
        }
        Ok(())
    }

    /// Moves the record index off an expired backup whose files are still there, its source's stored
    /// backups kept; false when a kept snapshot still reads them (they stay) or that failed.
    async fn relocate_unfinished(&self, account: &str, source: &str, job: &str) -> bool {
        let done = async {
            let kept: HashSet<String> = {
                let client = self.pool.get().await.map_err(ReadError::from)?;
                stored_backups(&client, source)
                    .await?
                    .into_iter()
                    .map(|b| b.job_id.to_string())
                    .collect()
            };
            match index::plan(&self.pool, &self.store, account, source, job, &kept).await? {
                Some(relocation) => index::apply(&self.index_pool, &relocation)
                    .await
                    .map(|()| true),
                None => Ok(false),
            }
        }
        .await;
        match done {
            Ok(true) => true,
            Ok(false) => {
                tracing::warn!(%job, "retention: an expired backup's files are still read by a kept snapshot; they stay");
                false
            }
            Err(err) => {
                tracing::warn!(%job, error = %ErrorChain(&err), "retention: the record index could not be moved off an expired backup; retrying");
                false
            }
        }
    }

    async fn sweep_abandoned(&self, now: DateTime<Utc>, report: &mut SweepReport) {
        {
            let mut last = self
                .last_abandoned_sweep
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| now - at < ABANDONED_SWEEP_EVERY && at <= now) {
                return;
            }
            *last = Some(now);
        }
        match self
            .store
            .sweep_abandoned_uploads(now - ABANDONED_AFTER)
            .await
        {
            Ok((files, bytes)) => {
                report.abandoned_uploads = files;
                report.abandoned_bytes = bytes;
            }
            Err(err) => {
                report.failed += 1;
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "retention: abandoned uploads could not be swept"
                );
            }
        }
    }
}
