//! The records of a snapshot (issue 13 §4–5): a source's state as of one backup, merged from the full backup
//! of each data type before it and the incrementals up to it, the last version of each record winning.
//!
//! Which backups make the chain is read from the event store (the source's succeeded or partial backup jobs
//! that have not expired, by job id: UUID v7, so in the order they were queued), what each holds from its
//! manifest, and the records from its encrypted gzip NDJSON files through the storage reader
//! ([`JobArtifacts::open_plaintext`]). A data type's chain ends, going back from the snapshot, at the first
//! file of it fetched whole (no `since` in its manifest entry).
//!
//! A data type's merged records are held in memory (about the size of its uncompressed NDJSON): enough for
//! restores of tens of thousands of records, not for a million.

use std::collections::HashMap;
use std::io::BufRead;

use futures::TryStreamExt;
use listbackup_domain::job::manifest::Manifest;
use serde_json::Value;

use crate::storage::{BackupStore, StorageError};

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading the source's backups from the event store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("reading a backup's files failed")]
    Storage(#[from] StorageError),
    #[error(
        "the snapshot {0} is not a stored backup of this source (expired, or never completed)"
    )]
    NotABackup(String),
    #[error("a backed-up file of {data_type} is not gzip NDJSON")]
    Unreadable {
        data_type: String,
        #[source]
        source: std::io::Error,
    },
}

/// One source's snapshot: the backups that make it, newest (the snapshot itself) first, with their manifests.
pub struct Snapshot {
    account_id: String,
    source_id: String,
    /// `(job id, manifest)`, newest first; the first is the snapshot's own backup.
    chain: Vec<(String, Manifest)>,
    store: BackupStore,
}

/// The merged records of one data type, in the order the chain's files first hold them.
#[derive(Debug, Default)]
pub struct SnapshotRecords {
    pub records: Vec<Value>,
}

impl Snapshot {
    /// The snapshot of backup `job_id` of source `source_id`: its own manifest and those of the source's
    /// earlier stored backups. [`SnapshotError::NotABackup`] when `job_id` is not one of them.
    pub async fn open(
        db: &deadpool_postgres::Pool,
        store: &BackupStore,
        account_id: &str,
        source_id: &str,
        job_id: &str,
    ) -> Result<Self, SnapshotError> {
        let store_error = |e: Box<dyn std::error::Error + Send + Sync>| SnapshotError::Store(e);
        let client = db.get().await.map_err(|e| store_error(e.into()))?;
        // The source's backups up to the snapshot that ended with a backup and were not expired since.
        let rows = client
            .query(
                "SELECT s.aggregate_id FROM events s \
                 WHERE s.aggregate_type = 'job' AND s.sequence = 1 AND s.aggregate_id <= $2 \
                   AND s.payload -> 'JobStarted' ->> 'sourceId' = $1 \
                   AND COALESCE(s.payload -> 'JobStarted' ->> 'kind', 'backup') = 'backup' \
                   AND EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'job' \
                       AND e.aggregate_id = s.aggregate_id \
                       AND e.event_type IN ('JobSucceeded', 'JobPartiallySucceeded')) \
                   AND NOT EXISTS (SELECT 1 FROM events e WHERE e.aggregate_type = 'job' \
                       AND e.aggregate_id = s.aggregate_id AND e.event_type = 'BackupExpired') \
                 ORDER BY s.aggregate_id DESC",
                &[&source_id, &job_id],
            )
            .await
            .map_err(|e| store_error(e.into()))?;
        let mut chain = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(0);
            if let Some(manifest) = store
                .job(account_id, source_id, &id)
                .read_manifest()
                .await?
            {
                chain.push((id, manifest));
            }
        }
        if chain.first().map(|(id, _)| id.as_str()) != Some(job_id) {
            return Err(SnapshotError::NotABackup(job_id.to_owned()));
        }
        Ok(Self {
            account_id: account_id.to_owned(),
            source_id: source_id.to_owned(),
            chain,
            store: store.clone(),
        })
    }

    /// The merged records of `data_type` as of the snapshot (empty when no backup of the chain holds it).
    /// `id_field` names a record's id; records without one are kept as they come.
    pub async fn records(
        &self,
        data_type: &str,
        id_field: &str,
    ) -> Result<SnapshotRecords, SnapshotError> {
        // Newest first, back to the first full fetch of the data type.
        let mut files = Vec::new();
        for (job_id, manifest) in &self.chain {
            if let Some(file) = manifest.files.iter().find(|f| f.data_type == data_type) {
                files.push((job_id, file));
                if file.since.is_none() {
                    break;
                }
            }
        }
        let mut merged = SnapshotRecords::default();
        let mut positions: HashMap<String, usize> = HashMap::new();
        for (job_id, file) in files.into_iter().rev() {
            let artifacts = self.store.job(&self.account_id, &self.source_id, job_id);
            let gzip: Vec<u8> = artifacts
                .open_plaintext(&file.name, file.encryption.as_ref())
                .await?
                .try_fold(Vec::new(), |mut all, chunk| async move {
                    all.extend_from_slice(&chunk);
                    Ok(all)
                })
                .await?;
            let unreadable = |source| SnapshotError::Unreadable {
                data_type: data_type.to_owned(),
                source,
            };
            let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gzip[..]));
            for line in reader.lines() {
                let line = line.map_err(unreadable)?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: Value = serde_json::from_str(&line).map_err(|e| {
                    unreadable(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                })?;
                match record_id(&record, id_field) {
                    Some(id) => match positions.get(&id) {
                        Some(&at) => merged.records[at] = record,
                        None => {
                            positions.insert(id, merged.records.len());
                            merged.records.push(record);
                        }
                    },
                    None => merged.records.push(record),
                }
            }
        }
        Ok(merged)
    }
}

/// A record's id as text (`"cus_…"`, or a number's digits).
pub fn record_id(record: &Value, id_field: &str) -> Option<String> {
    match record.get(id_field)? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}
