//! What the record index (issue 13 §4) needs of retention: a backup's files are deleted only when no kept
//! backup's snapshot reads them.
//!
//! The index keeps one row per version of a record, located at its line in the data file of the backup that
//! first held it (`first_seq`, `ordinal`), and every later snapshot that still holds that version reads it
//! there: an incremental backup's untouched records, and a full backup's unchanged ones alike. So before a
//! backup `s` is expired, each of its versions that a kept snapshot holds must be read from elsewhere:
//!
//! - the earliest kept backup `k` holding the version re-stored it (a full fetch of its data type, or an
//!   incremental one that listed it again): its file holds the very same bytes (the same content hash), and
//!   the version is moved there (`first_seq = k`, `ordinal` its line in `k`'s file). Backups between `s`
//!   and `k` are all expired, so no snapshot loses it;
//! - otherwise (`k` is an incremental backup that did not list the record: its snapshot reads it from `s`'s
//!   file), `s` is needed, and stays until nothing kept needs it.
//!
//! A backup the index has not merged yet says nothing of what it needs: while the source has one whose end the
//! indexer has not read, the source's backups wait for the next sweep.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::BufRead;

use deadpool_postgres::Pool;
use futures::TryStreamExt;
use listbackup_projections::ReadError;

use crate::record_index::content_hash;
use crate::storage::{BackupStore, StorageError};

/// Why the index's needs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IndexNeedsError {
    #[error("record index: database")]
    Database(#[from] ReadError),
    #[error("reading a kept backup's file")]
    Storage(#[from] StorageError),
    #[error("a kept backup's file of {data_type} is not gzip NDJSON")]
    Unreadable {
        data_type: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<tokio_postgres::Error> for IndexNeedsError {
    fn from(err: tokio_postgres::Error) -> Self {
        Self::Database(err.into())
    }
}

impl From<deadpool_postgres::PoolError> for IndexNeedsError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        Self::Database(err.into())
    }
}

/// Where the versions of an expiring backup move: per data type, `(old ordinal, new first_seq, new ordinal)`.
#[derive(Debug, Default)]
pub struct Relocation {
    source: uuid::Uuid,
    seq: i32,
    moves: BTreeMap<String, Vec<(i32, i32, i32)>>,
}

/// Whether the record indexer has merged every stored backup of the source whose end it could have read
/// (a backup that predates the index never will be: its end is behind the indexer's checkpoint).
pub async fn caught_up(pool: &Pool, source_id: &str) -> Result<bool, IndexNeedsError> {
    let client = pool.get().await?;
    let lagging: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM read_jobs j JOIN events e \
               ON e.aggregate_type = 'job' AND e.aggregate_id = j.job_id \
              AND e.event_type IN ('JobSucceeded', 'JobPartiallySucceeded') \
             WHERE j.source_id = $1 AND j.kind = 'backup' AND j.status IN ('succeeded', 'partial') \
               AND j.expired_at IS NULL \
               AND NOT EXISTS (SELECT 1 FROM source_snapshots s WHERE s.job_id::text = j.job_id) \
               AND NOT EXISTS (SELECT 1 FROM checkpoints c WHERE c.name = $2 \
                   AND (c.transaction_id, c.position) >= (e.transaction_id, e.global_position)))",
            &[&source_id, &crate::record_index::CHECKPOINT],
        )
        .await?
        .get(0);
    Ok(!lagging)
}

/// What expiring backup `job_id` of the source takes, `kept` (job ids) staying: `Ok(None)` when a kept
/// snapshot reads versions only that backup's files hold (it must stay), else the moves that keep every kept
/// snapshot complete without it (none for a backup the index does not know).
pub async fn plan(
    pool: &Pool,
    store: &BackupStore,
    account_id: &str,
    source_id: &str,
    job_id: &str,
    kept: &HashSet<String>,
) -> Result<Option<Relocation>, IndexNeedsError> {
    let (Ok(source), Ok(job)) = (
        uuid::Uuid::parse_str(source_id),
        uuid::Uuid::parse_str(job_id),
    ) else {
        return Ok(Some(Relocation::default()));
    };
    let client = pool.get().await?;
    let Some(row) = client
        .query_opt(
            "SELECT seq, counts FROM source_snapshots WHERE job_id = $1",
            &[&job],
        )
        .await?
    else {
        return Ok(Some(Relocation {
            source,
            ..Relocation::default()
        }));
    };
    let seq: i32 = row.get(0);
    let counts: BTreeMap<String, i64> = serde_json::from_value(row.get(1)).unwrap_or_default();
    let kept_ids: Vec<uuid::Uuid> = kept
        .iter()
        .filter_map(|id| uuid::Uuid::parse_str(id).ok())
        .collect();
    let kept_rows = client
        .query(
            "SELECT seq, job_id FROM source_snapshots \
             WHERE source_id = $1 AND job_id = ANY($2) AND seq > $3",
            &[&source, &kept_ids, &seq],
        )
        .await?;
    let later: Vec<i32> = kept_rows.iter().map(|r| r.get(0)).collect();
    let jobs: HashMap<i32, String> = kept_rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, uuid::Uuid>(1).to_string()))
        .collect();
    let mut relocation = Relocation {
        source,
        seq,
        moves: BTreeMap::new(),
    };
    for data_type in counts.keys() {
        // This backup's versions a kept snapshot holds, with the earliest kept backup holding each.
        let rows = client
            .query(
                "SELECT v.ordinal, v.content_hash, \
                   (SELECT min(k) FROM unnest($4::int[]) k \
                     WHERE k > v.first_seq AND (v.last_seq IS NULL OR k <= v.last_seq)) AS target \
                 FROM record_versions v \
                 WHERE v.source_id = $1 AND v.data_type = $2 AND v.first_seq = $3",
                &[&source, data_type, &seq, &later],
            )
            .await?;
        let mut by_target: BTreeMap<i32, Vec<(i32, Vec<u8>)>> = BTreeMap::new();
        for row in &rows {
            if let Some(target) = row.get::<_, Option<i32>>(2) {
                by_target
                    .entry(target)
                    .or_default()
                    .push((row.get(0), row.get(1)));
            }
        }
        for (target, versions) in by_target {
            // The target's lines already indexed are other versions': not candidates.
            let taken: HashSet<i32> = client
                .query(
                    "SELECT ordinal FROM record_versions \
                     WHERE source_id = $1 AND data_type = $2 AND first_seq = $3",
                    &[&source, data_type, &target],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let Some(target_job) = jobs.get(&target) else {
                return Ok(None);
            };
            let mut lines = lines_by_hash(
                store, account_id, source_id, target_job, data_type, &versions, &taken,
            )
            .await?;
            let moves = relocation.moves.entry(data_type.clone()).or_default();
            for (ordinal, hash) in versions {
                match lines.get_mut(&hash).and_then(VecDeque::pop_front) {
                    Some(line) => moves.push((ordinal, target, line)),
                    // The kept backup did not store it: its snapshot reads it from this one.
                    None => return Ok(None),
                }
            }
        }
    }
    Ok(Some(relocation))
}

/// The lines (0-based, ascending) of `job_id`'s file of `data_type` whose content hash is one of `versions`',
/// not in `taken`; empty when that backup stored no such file.
async fn lines_by_hash(
    store: &BackupStore,
    account_id: &str,
    source_id: &str,
    job_id: &str,
    data_type: &str,
    versions: &[(i32, Vec<u8>)],
    taken: &HashSet<i32>,
) -> Result<HashMap<Vec<u8>, VecDeque<i32>>, IndexNeedsError> {
    let wanted: HashSet<&[u8]> = versions.iter().map(|(_, h)| h.as_slice()).collect();
    let mut found: HashMap<Vec<u8>, VecDeque<i32>> = HashMap::new();
    let artifacts = store.job(account_id, source_id, job_id);
    let Some(manifest) = artifacts.read_manifest().await? else {
        return Ok(found);
    };
    let Some(file) = manifest.files.iter().find(|f| f.data_type == data_type) else {
        return Ok(found);
    };
    let gzip: Vec<u8> = artifacts
        .open_plaintext(&file.name, file.encryption.as_ref())
        .await?
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    let reader = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gzip[..]));
    for (ordinal, line) in reader.split(b'\n').enumerate() {
        let line = line.map_err(|source| IndexNeedsError::Unreadable {
            data_type: data_type.to_owned(),
            source,
        })?;
        let ordinal = ordinal as i32;
        if taken.contains(&ordinal) {
            continue;
        }
        let text = String::from_utf8_lossy(&line);
        let hash = content_hash(&text);
        if wanted.contains(hash.as_slice()) {
            found.entry(hash.to_vec()).or_default().push_back(ordinal);
        }
    }
    Ok(found)
}

/// Moves the versions as planned, in one transaction: from then on the kept snapshots read them from the
/// kept backups' files.
pub async fn apply(pool: &Pool, relocation: &Relocation) -> Result<(), IndexNeedsError> {
    if relocation.moves.values().all(Vec::is_empty) {
        return Ok(());
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    for (data_type, moves) in &relocation.moves {
        let old: Vec<i32> = moves.iter().map(|m| m.0).collect();
        let seqs: Vec<i32> = moves.iter().map(|m| m.1).collect();
        let new: Vec<i32> = moves.iter().map(|m| m.2).collect();
        tx.execute(
            "UPDATE record_versions v SET first_seq = r.seq, ordinal = r.ordinal \
             FROM unnest($4::int[], $5::int[], $6::int[]) AS r(old, seq, ordinal) \
             WHERE v.source_id = $1 AND v.data_type = $2 AND v.first_seq = $3 AND v.ordinal = r.old",
            &[
                &relocation.source,
                data_type,
                &relocation.seq,
                &old,
                &seqs,
                &new,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
