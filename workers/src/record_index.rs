//! The record version index (issue 13 §4), written in two steps so that only committed backups show:
//!
//! 1. [`StagedRecords`]: as a worker stores a data type's records, it stages one row per record (its
//!    [`index_key`], content hash, line in the file) in `record_index_staged`, keyed by job and attempt
//!    (batches `COPY`d by a task beside the fetch; a record listed twice in one fetch is staged twice), and
//!    one row per finished data file in `record_index_staged_files` once all its rows are written. Nothing
//!    reads these but step 2.
//! 2. [`RecordIndexer`]: a catch-up reader of the event log (checkpoint `record-index`). On `JobSucceeded` or
//!    `JobPartiallySucceeded` it merges the staged rows of the job's last attempt into `record_versions` and
//!    adds the backup to `source_snapshots`, in one transaction with its checkpoint; the snapshot's primary
//!    key (the job) makes a merge happen once whatever replays. `JobFailed` and `JobCancelled` drop the job's
//!    staged rows. A failed or cancelled backup therefore never shows in the index, and a redelivered one
//!    (a new attempt) replaces its staged rows before it writes (`clear`).
//!
//! The merge, per data type of the backup (`seq` its place among the source's backups; a record staged twice
//! counts with its last line):
//! - a staged record whose current version has another content hash closes that version at `seq - 1`, and a
//!   staged record with no current version (new, changed, or back after a deletion) opens one at `seq`;
//! - a data type fetched whole (not incrementally) closes at `seq - 1` the current versions of records it no
//!   longer holds: deleted on the platform.
//!
//! A data type the backup did not store (failed in a partial backup, or not selected) is left as it was.

use std::collections::BTreeMap;

use deadpool_postgres::Pool;
use listbackup_projections::event_log::{advance_checkpoint, Commit};
use listbackup_projections::ReadError;
use listbackup_projections::{ProjectedWatch, StoredEvent};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_util::sync::CancellationToken;

use crate::log_follower::{Checkpoint, Handled, LogFollower};

/// The indexer's checkpoint name.
pub const CHECKPOINT: &str = "record-index";

/// Names the indexer's advisory lock ("LBRIDX"): one process merges at a time.
pub const INDEX_LOCK: i64 = 0x0000_4c42_5249_4458;

/// Staged rows sent to Postgres in one `COPY`.
const STAGE_BATCH: usize = 2000;

/// Batches of a data type on their way to Postgres at once: the fetch runs this far ahead of the staging
/// (at most `STAGE_IN_FLIGHT × STAGE_BATCH` rows of ~60 bytes held) before it waits for it.
const STAGE_IN_FLIGHT: usize = 4;

/// Bytes of a record's SHA-256 kept as its content hash: 128 bits tell versions of one record apart (a
/// collision between two versions of the same record is ~2^-64 likely after 2^32 versions) at half the size.
pub const CONTENT_HASH_BYTES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RecordIndexError {
    #[error("record index: database")]
    Database(#[from] tokio_postgres::Error),
    #[error("record index: database pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("record index: event log")]
    Log(#[from] listbackup_projections::ReadError),
    /// The task writing staged rows stopped without a database error (it panicked or was cancelled); the
    /// runtime's error says which.
    #[error("record index: the staging task stopped")]
    Stager(#[source] tokio::task::JoinError),
    /// The task writing staged rows stopped taking batches, yet ended without an error.
    #[error("record index: the staging task ended early")]
    StagerEnded,
    /// An event of the Job stream that does not have the shape this code reads.
    #[error("record index: job {job_id} has no JobStarted naming its source")]
    UnknownJob { job_id: String },
}

/// The content hash of one stored record: the first [`CONTENT_HASH_BYTES`] of the SHA-256 of its JSON text
/// exactly as stored (one NDJSON line, without the newline).
pub fn content_hash(text: &str) -> [u8; CONTENT_HASH_BYTES] {
    let digest = Sha256::digest(text.as_bytes());
    let mut hash = [0; CONTENT_HASH_BYTES];
    hash.copy_from_slice(&digest[..CONTENT_HASH_BYTES]);
    hash
}

/// One staged row of the data type being written: the record's [`index_key`], its content hash, its line in
/// the file.
struct StagedRow {
    key: String,
    hash: [u8; CONTENT_HASH_BYTES],
    ordinal: i32,
}

/// Prefix of the key of a record without an id: `sha256:` and the hex of its [`content_hash`].
pub const CONTENT_KEY_PREFIX: &str = "sha256:";

/// The key a record is indexed under within its source and data type (`record_versions.record_id`, the
/// `recordId` of the snapshot and version routes):
///
/// - its id (`id_field` of the data type's listing, as text), as the platform gives it;
/// - for a per-parent listing's record, `<parent id>/<id>`: ids are unique only under their parent
///   (Mailchimp's member id is the hash of the e-mail address, the same in every audience; merge fields are
///   numbered per audience), as the incremental cursor already knows them;
/// - without an id (a data type whose records carry none, or a record missing its field), `sha256:<hex>`, its
///   [`content_hash`] (behind `<parent id>/` likewise). The catalog names no natural key for any data type,
///   and the content is what such a record is: an unchanged one keeps its one version from backup to backup,
///   a changed one shows as the old deleted and the new added (its history cannot be followed across a
///   change, there being nothing that says the two are one record). Identical records in one listing are
///   told apart by their place among the copies: the second is `sha256:<hex>.2` ([`StagedRecords::add`]).
pub fn index_key(parent: Option<&str>, record_id: Option<&str>, hash: &[u8]) -> String {
    let own = match record_id {
        Some(id) => id.to_owned(),
        None => format!("{CONTENT_KEY_PREFIX}{}", hex::encode(hash)),
    };
    match parent {
        Some(parent) => format!("{parent}/{own}"),
        None => own,
    }
}

/// Stages the index rows of one attempt of one job, data type by data type, as its records are stored.
///
/// The rows go to Postgres off the fetch loop: [`add`](Self::add) fills a batch, a full batch goes over a
/// bounded channel to a task of the data type that `COPY`s it into `record_index_staged`, and
/// [`finish`](Self::finish) waits for every batch to be written before it records the data type's file. A
/// backup's end (`JobSucceeded`, `JobPartiallySucceeded`) is recorded only after every finished data type's
/// rows are committed, so the merge always finds them whole; a data type that failed has no file row and its
/// rows are never merged. A record listed twice in one fetch (a page boundary shifting under an insert) is
/// staged twice under one key: the merge keeps its last line.
pub struct StagedRecords {
    pool: Pool,
    job_id: uuid::Uuid,
    attempt: i32,
    data_type: String,
    batch: Vec<StagedRow>,
    writer: Option<BatchWriter>,
    /// Records without an id staged so far in this data type, by content key: how many.
    repeats: std::collections::HashMap<String, u32>,
}

/// The task writing the current data type's batches, and the way to it.
struct BatchWriter {
    batches: mpsc::Sender<Vec<StagedRow>>,
    task: JoinHandle<Result<(), RecordIndexError>>,
}

impl BatchWriter {
    /// Waits for every batch sent to be written; the first failure if one was not.
    async fn join(self) -> Result<(), RecordIndexError> {
        drop(self.batches);
        match self.task.await {
            Ok(written) => written,
            Err(err) => Err(RecordIndexError::Stager(err)),
        }
    }
}

impl StagedRecords {
    /// Drops whatever earlier attempts of the job staged (an attempt that died, a redelivery) and starts the
    /// staging of `attempt`.
    pub async fn clear(pool: &Pool, job_id: &str, attempt: u32) -> Result<Self, RecordIndexError> {
        let job = parse_job(job_id)?;
        let client = pool.get().await?;
        client
            .execute("DELETE FROM record_index_staged WHERE job_id = $1", &[&job])
            .await?;
        client
            .execute(
                "DELETE FROM record_index_staged_files WHERE job_id = $1",
                &[&job],
            )
            .await?;
        Ok(Self {
            pool: pool.clone(),
            job_id: job,
            attempt: attempt as i32,
            data_type: String::new(),
            batch: Vec::new(),
            writer: None,
            repeats: std::collections::HashMap::new(),
        })
    }

    /// Starts a data type: rows staged before for it in this attempt are dropped (it is written again from
    /// its first record), and a task to write its batches is started.
    pub async fn start(&mut self, data_type: &str) -> Result<(), RecordIndexError> {
        if let Some(previous) = self.writer.take() {
            // A data type that failed: its writes stop (its rows are never merged, having no file row).
            previous.task.abort();
        }
        self.data_type = data_type.to_owned();
        self.batch = Vec::with_capacity(STAGE_BATCH);
        self.repeats.clear();
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM record_index_staged WHERE job_id = $1 AND attempt = $2 AND data_type = $3",
                &[&self.job_id, &self.attempt, &self.data_type],
            )
            .await?;
        let (batches, received) = mpsc::channel(STAGE_IN_FLIGHT);
        let task = tokio::spawn(write_batches(
            self.pool.clone(),
            self.job_id,
            self.attempt,
            self.data_type.clone(),
            received,
        ));
        self.writer = Some(BatchWriter { batches, task });
        Ok(())
    }

    /// Stages the record stored at line `ordinal` of the data type's file (`text`: its line without the
    /// newline) under its [`index_key`]: its id (qualified by `parent` for a per-parent listing's records),
    /// or, without one (not an object, or no id field), its content. Waits only when [`STAGE_IN_FLIGHT`]
    /// batches are still being written.
    pub async fn add(
        &mut self,
        parent: Option<&str>,
        record_id: Option<&str>,
        text: &str,
        ordinal: u64,
    ) -> Result<(), RecordIndexError> {
        let hash = content_hash(text);
        let mut key = index_key(parent, record_id, &hash);
        if record_id.is_none() {
            // Identical records without an id in one listing are as many records: the second is `….2`.
            let seen = self.repeats.entry(key.clone()).or_default();
            *seen += 1;
            if *seen > 1 {
                key = format!("{key}.{seen}");
            }
        }
        self.batch.push(StagedRow {
            key,
            hash,
            ordinal: ordinal as i32,
        });
        if self.batch.len() >= STAGE_BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// Hands the batch to the data type's writer.
    async fn send(&mut self) -> Result<(), RecordIndexError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(STAGE_BATCH));
        let writer = self
            .writer
            .as_ref()
            .expect("records are staged between start and finish");
        if writer.batches.send(batch).await.is_err() {
            // The writer stopped: it failed, and says why.
            let writer = self.writer.take().expect("checked above");
            writer.join().await?;
            return Err(RecordIndexError::StagerEnded);
        }
        Ok(())
    }

    /// The data type's file is stored: its last rows are staged and every batch is written, then the file
    /// is recorded, with whether it holds the whole data type (`complete`) or only changes.
    pub async fn finish(&mut self, complete: bool, records: u64) -> Result<(), RecordIndexError> {
        self.send().await?;
        if let Some(writer) = self.writer.take() {
            writer.join().await?;
        }
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO record_index_staged_files (job_id, attempt, data_type, complete, records) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (job_id, attempt, data_type) \
                 DO UPDATE SET complete = EXCLUDED.complete, records = EXCLUDED.records",
                &[
                    &self.job_id,
                    &self.attempt,
                    &self.data_type,
                    &complete,
                    &(records as i64),
                ],
            )
            .await?;
        Ok(())
    }
}

impl Drop for StagedRecords {
    /// An attempt that ends early (a failure, a cancellation) stops writing what it staged: its rows are
    /// dropped by the next attempt or by the job's end.
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            writer.task.abort();
        }
    }
}

/// Writes the batches of one data type as they come, one `COPY … FROM STDIN (FORMAT binary)` each (a
/// statement of its own: no transaction stays open across the fetch), until the sender is dropped.
async fn write_batches(
    pool: Pool,
    job_id: uuid::Uuid,
    attempt: i32,
    data_type: String,
    mut batches: mpsc::Receiver<Vec<StagedRow>>,
) -> Result<(), RecordIndexError> {
    while let Some(batch) = batches.recv().await {
        let client = pool.get().await?;
        let sink = client
            .copy_in(
                "COPY record_index_staged \
                   (job_id, attempt, data_type, record_id, content_hash, ordinal) \
                 FROM STDIN (FORMAT binary)",
            )
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[
                Type::UUID,
                Type::INT4,
                Type::TEXT,
                Type::TEXT,
                Type::BYTEA,
                Type::INT4,
            ],
        );
        let mut writer = std::pin::pin!(writer);
        for row in &batch {
            writer
                .as_mut()
                .write(&[
                    &job_id,
                    &attempt,
                    &data_type,
                    &row.key,
                    &&row.hash[..],
                    &row.ordinal,
                ])
                .await?;
        }
        writer.finish().await?;
    }
    Ok(())
}

fn parse_job(job_id: &str) -> Result<uuid::Uuid, RecordIndexError> {
    uuid::Uuid::parse_str(job_id).map_err(|_| RecordIndexError::UnknownJob {
        job_id: job_id.to_owned(),
    })
}

/// Follows the event log and merges each succeeded or partial backup's staged rows into the index (see the
/// module's documentation). One process at a time, by advisory lock.
pub struct RecordIndexer {
    pool: Pool,
    batch_size: i64,
    follower: LogFollower,
}

impl RecordIndexer {
    pub fn new(pool: Pool) -> Self {
        Self {
            follower: LogFollower::new(pool.clone(), INDEX_LOCK, "record indexer", CHECKPOINT),
            pool,
            batch_size: 100,
        }
    }

    /// Merges as soon as this process's projector has seen a commit.
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

    /// Runs until `shutdown`; failures are retried with backoff from the checkpoint.
    pub async fn run(self, shutdown: CancellationToken) {
        self.follower
            .run(
                shutdown,
                || async { Ok::<(), RecordIndexError>(()) },
                |from| self.run_batch(from),
            )
            .await
    }

    /// Handles the events after `from` (where the checkpoint stands) in one transaction with the checkpoint's
    /// move, so each backup is merged once.
    pub async fn run_batch(&self, at: Checkpoint) -> Result<Handled, RecordIndexError> {
        let mut client = self.pool.get().await?;
        let events = self
            .follower
            .read(&client, at.handled, self.batch_size)
            .await?;
        let handled = Handled::of(&events, self.batch_size);
        let Some(last) = handled.last else {
            return Ok(handled);
        };
        // A batch without a backup's end changes nothing: its position is stored by the follower.
        if !events.iter().any(ends_a_backup) {
            return Ok(handled);
        }
        let tx = client.transaction().await?;
        // Compare and set first: another indexer that moved it meanwhile owns this batch.
        if !advance_checkpoint(&tx, CHECKPOINT, at.stored, last, Commit::Synchronous).await? {
            return Err(ReadError::CheckpointMoved {
                name: CHECKPOINT.to_owned(),
            }
            .into());
        }
        for event in events.iter().filter(|event| ends_a_backup(event)) {
            match event.event_type.as_str() {
                "JobSucceeded" => merge(&tx, event, false).await?,
                "JobPartiallySucceeded" => merge(&tx, event, true).await?,
                "JobFailed" | "JobCancelled" => {
                    if let Ok(job) = uuid::Uuid::parse_str(&event.aggregate_id) {
                        tx.execute("DELETE FROM record_index_staged WHERE job_id = $1", &[&job])
                            .await?;
                        tx.execute(
                            "DELETE FROM record_index_staged_files WHERE job_id = $1",
                            &[&job],
                        )
                        .await?;
                    }
                }
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(handled.stored())
    }
}

/// Whether `event` ends a backup (merged into the index or, failed or cancelled, its staging dropped): the
/// only events the indexer acts on.
fn ends_a_backup(event: &StoredEvent) -> bool {
    event.aggregate_type == listbackup_domain::job::AGGREGATE_TYPE
        && matches!(
            event.event_type.as_str(),
            "JobSucceeded" | "JobPartiallySucceeded" | "JobFailed" | "JobCancelled"
        )
}

/// Merges the backup `event` ends into the index, once.
async fn merge(
    tx: &tokio_postgres::Transaction<'_>,
    event: &StoredEvent,
    partial: bool,
) -> Result<(), RecordIndexError> {
    let job_id = parse_job(&event.aggregate_id)?;
    let started = tx
        .query_opt(
            "SELECT payload -> 'JobStarted' ->> 'sourceId', payload -> 'JobStarted' ->> 'accountId' \
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = 'JobStarted'",
            &[
                &listbackup_domain::job::AGGREGATE_TYPE,
                &event.aggregate_id,
            ],
        )
        .await?
        .ok_or_else(|| RecordIndexError::UnknownJob {
            job_id: event.aggregate_id.clone(),
        })?;
    let (source, account_id): (Option<String>, Option<String>) = (started.get(0), started.get(1));
    let (Some(source), Some(account_id)) = (source, account_id) else {
        return Err(RecordIndexError::UnknownJob {
            job_id: event.aggregate_id.clone(),
        });
    };
    let source_id = parse_job(&source)?;
    merge_backup(
        tx,
        EndedBackup {
            job_id,
            source_id,
            account_id: &account_id,
            finished_at: event.recorded_at,
            partial,
        },
    )
    .await
}

/// A backup that ended succeeded or partial, as the merge needs it.
pub struct EndedBackup<'a> {
    pub job_id: uuid::Uuid,
    pub source_id: uuid::Uuid,
    pub account_id: &'a str,
    /// When its end was recorded: the snapshot's point in time.
    pub finished_at: chrono::DateTime<chrono::Utc>,
    /// Whether some of its data types failed (`JobPartiallySucceeded`).
    pub partial: bool,
}

/// Merges the staged rows of `backup`'s last attempt into the index and records its snapshot, inside `tx`
/// (see the module's documentation); nothing when it is merged already. Public for the tests, which stage
/// rows with [`StagedRecords`] and merge them without an event log.
pub async fn merge_backup(
    tx: &tokio_postgres::Transaction<'_>,
    backup: EndedBackup<'_>,
) -> Result<(), RecordIndexError> {
    let EndedBackup {
        job_id,
        source_id,
        account_id,
        finished_at,
        partial,
    } = backup;
    // The source's backups end one at a time (one job queued or running per source), and this reader is
    // alone: the next place is the last plus one. Merged already (a replayed batch): nothing to do.
    if tx
        .query_opt(
            "SELECT 1 FROM source_snapshots WHERE job_id = $1",
            &[&job_id],
        )
        .await?
        .is_some()
    {
        return Ok(());
    }
    let previous = tx
        .query_opt(
            "SELECT seq, counts FROM source_snapshots WHERE source_id = $1 ORDER BY seq DESC LIMIT 1",
            &[&source_id],
        )
        .await?;
    let (seq, mut counts): (i32, BTreeMap<String, i64>) = match previous {
        Some(row) => (
            row.get::<_, i32>(0) + 1,
            serde_json::from_value(row.get::<_, Value>(1)).unwrap_or_default(),
        ),
        None => (1, BTreeMap::new()),
    };
    // The attempt that ended the job is the last one that staged a file.
    let files = tx
        .query(
            "SELECT data_type, complete FROM record_index_staged_files \
             WHERE job_id = $1 AND attempt = \
               (SELECT max(attempt) FROM record_index_staged_files WHERE job_id = $1) \
             ORDER BY data_type",
            &[&job_id],
        )
        .await?;
    let attempt: Option<i32> = tx
        .query_one(
            "SELECT max(attempt) FROM record_index_staged_files WHERE job_id = $1",
            &[&job_id],
        )
        .await?
        .get(0);
    // The attempt's rows, a key staged twice (a record listed twice in one fetch) once with its last line, in
    // a table of this transaction.
    tx.batch_execute(
        "DROP TABLE IF EXISTS pg_temp.merge_staged; \
         CREATE TEMP TABLE merge_staged \
           (data_type text, record_id text, content_hash bytea, ordinal integer) ON COMMIT DROP; \
         DROP TABLE IF EXISTS pg_temp.merge_opened; \
         CREATE TEMP TABLE merge_opened \
           (record_id text, content_hash bytea, ordinal integer) ON COMMIT DROP",
    )
    .await?;
    tx.execute(
        "INSERT INTO merge_staged (data_type, record_id, content_hash, ordinal) \
         SELECT DISTINCT ON (data_type, record_id) data_type, record_id, content_hash, ordinal \
         FROM record_index_staged WHERE job_id = $1 AND attempt = $2 \
         ORDER BY data_type, record_id, ordinal DESC",
        &[&job_id, &attempt],
    )
    .await?;
    // Just written, unseen by autovacuum: without statistics the planner joins them to the index row by row
    // (a full backup of 20,000 records took a minute to merge, bench/record-index); the versions just written
    // by the previous merge likewise. The versions' statistics are taken as their owner whatever role this
    // runs as (a non-owner's ANALYZE only warns and skips; migration 0190); the temporary table is this
    // session's own, so any role may analyze it.
    tx.batch_execute("SELECT record_index_analyze(); ANALYZE merge_staged")
        .await?;
    let mut changes = serde_json::Map::new();
    let mut incremental = false;
    for file in &files {
        let data_type: String = file.get(0);
        let complete: bool = file.get(1);
        incremental |= !complete;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&data_type, &source_id, &seq];
        let changed = tx
            .execute(
                "UPDATE record_versions v SET last_seq = $3 - 1 \
                 FROM merge_staged s \
                 WHERE s.data_type = $1 \
                   AND v.source_id = $2 AND v.data_type = $1 AND v.record_id = s.record_id \
                   AND v.last_seq IS NULL AND v.content_hash <> s.content_hash",
                &params,
            )
            .await?;
        let deleted = if complete {
            tx.execute(
                "UPDATE record_versions v SET last_seq = $3 - 1 \
                 WHERE v.source_id = $2 AND v.data_type = $1 AND v.last_seq IS NULL \
                   AND NOT EXISTS (SELECT 1 FROM merge_staged s \
                     WHERE s.data_type = $1 AND s.record_id = v.record_id)",
                &params,
            )
            .await?
        } else {
            0
        };
        // The versions to open are found first, then inserted: one `INSERT … WHERE NOT EXISTS (… the same
        // table …)` is quadratic when the planner, trusting a table it has just analyzed empty (a source's
        // first backup), scans it for every staged row while the insert fills it (a million-record first
        // backup's merge had not ended after ten minutes, bench/record-history).
        tx.execute("TRUNCATE merge_opened", &[]).await?;
        tx.execute(
            "INSERT INTO merge_opened (record_id, content_hash, ordinal) \
             SELECT s.record_id, s.content_hash, s.ordinal FROM merge_staged s \
             WHERE s.data_type = $1 \
               AND NOT EXISTS (SELECT 1 FROM record_versions v \
                 WHERE v.source_id = $2 AND v.data_type = $1 AND v.record_id = s.record_id \
                   AND v.last_seq IS NULL)",
            &[&data_type, &source_id],
        )
        .await?;
        let opened = tx
            .execute(
                "INSERT INTO record_versions \
                   (source_id, data_type, record_id, first_seq, last_seq, content_hash, ordinal) \
                 SELECT $2, $1, o.record_id, $3, NULL, o.content_hash, o.ordinal FROM merge_opened o",
                &params,
            )
            .await?;
        let added = opened as i64 - changed as i64;
        *counts.entry(data_type.clone()).or_default() += added - deleted as i64;
        changes.insert(
            data_type,
            json!({"added": added, "changed": changed, "deleted": deleted}),
        );
    }
    tx.execute(
        "INSERT INTO source_snapshots \
           (source_id, seq, job_id, account_id, finished_at, incremental, partial, counts, changes) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &source_id,
            &seq,
            &job_id,
            &account_id,
            &finished_at,
            &incremental,
            &partial,
            &json!(counts),
            &Value::Object(changes),
        ],
    )
    .await?;
    tx.execute(
        "DELETE FROM record_index_staged WHERE job_id = $1",
        &[&job_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM record_index_staged_files WHERE job_id = $1",
        &[&job_id],
    )
    .await?;
    tracing::info!(%job_id, %source_id, seq, "backup merged into the record index");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_keyed_by_its_id_under_its_parent_or_by_its_content() {
        let hash = content_hash(r#"{"name":"x"}"#);
        assert_eq!(index_key(None, Some("cus_1"), &hash), "cus_1");
        assert_eq!(index_key(Some("list1"), Some("m1"), &hash), "list1/m1");
        let key = index_key(None, None, &hash);
        assert_eq!(key, format!("sha256:{}", hex::encode(hash)));
        assert_eq!(key.len(), "sha256:".len() + 2 * CONTENT_HASH_BYTES);
        assert_eq!(index_key(Some("t9"), None, &hash), format!("t9/{key}"));
        assert_ne!(index_key(None, None, &content_hash(r#"{"name":"y"}"#)), key);
    }
}
