//! Snapshots and record history (issue 13 §4, §6): a source's backups as points in time, browsed, searched
//! and exported through the record version index, and one record's versions with what changed.
//!
//! The index (`record_versions`, `source_snapshots`; written by the workers' record indexer) says which
//! version of which record a snapshot holds and where its bytes are: line `ordinal` of the data file of the
//! backup that first stored that version. The bytes themselves are only ever read through [`JobFiles`], the
//! one reader of backup files (downloads and verification use it too): decrypted on the fly, gunzipped as
//! they stream, read up to the last line needed and no further. Nothing of a record's content is kept in
//! Postgres, so an erased account's data stays unreadable.
//!
//! A snapshot of backup `n` holds, per data type, every version with `first_seq ≤ n` and `last_seq` null or
//! `≥ n`: an incremental backup's chain merged into the full state as of that backup.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::Write as _;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use futures::stream::{BoxStream, StreamExt};
use listbackup_domain::ErrorChain;
use listbackup_domain::{JobId, SourceId};
use serde_json::Value;

use crate::artifacts::{JobFiles, JobLocation};

/// Index rows a search (`q`) reads at most per request: a page with fewer matches than asked and a
/// `nextCursor` means the scan goes on from there.
pub const SEARCH_SCAN_LIMIT: i64 = 10_000;

/// Lines a read decompresses on its way to a later line before it seeks instead: about one seek
/// interval of 1 KB records (the workers start a gzip member every 256 KiB of records).
const READ_ON_AT_MOST: i32 = 256;

/// Ordinals fetched from the index at once while an export reads a file.
const EXPORT_BATCH: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No such backup of the source in the index (missing, another account's, not succeeded or partial).
    #[error("snapshot not found")]
    SnapshotNotFound,
    /// The record was never backed up in the source's data type.
    #[error("record not found")]
    RecordNotFound,
    /// Retention expired the backup: its files are deleted.
    #[error("the backup expired at {} (retention): its files were deleted", .at.to_rfc3339())]
    Expired { at: DateTime<Utc> },
    /// The snapshot reads records from an earlier backup of its chain that retention expired.
    #[error("the snapshot reads records stored by backup {job_id}, whose files were deleted (retention)")]
    ChainExpired { job_id: String },
    /// The account's data key is destroyed: its backups cannot be decrypted.
    #[error("the account was erased at {}: its backups' data key is destroyed and their files cannot be decrypted", .at.to_rfc3339())]
    Erased { at: DateTime<Utc> },
    /// A cursor this API did not issue.
    #[error("cursor: is not a cursor this API issued")]
    BadCursor,
    #[error("record index: database")]
    Database(#[from] tokio_postgres::Error),
    #[error("record index: database pool")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// Reading a stored file failed.
    #[error("reading {name} of backup {job_id}")]
    Storage {
        job_id: String,
        name: String,
        #[source]
        source: crate::bus::BoxError,
    },
    /// A line the index points at is not a JSON record: the file and the index disagree.
    #[error("line {ordinal} of {name} of backup {job_id} is not a JSON record")]
    Damaged {
        job_id: String,
        name: String,
        ordinal: i32,
        #[source]
        source: serde_json::Error,
    },
    /// The stored file ends before the line the index points at.
    #[error("{name} of backup {job_id} has no line {ordinal}")]
    MissingLine {
        job_id: String,
        name: String,
        ordinal: i32,
    },
    /// The index names a place among the source's backups that it does not list.
    #[error("the record index names backup #{seq} of the source, which it does not list")]
    UnknownBackup { seq: i32 },
    #[error("export: zip")]
    Zip(#[from] async_zip::error::ZipError),
    #[error("export: csv")]
    Csv(#[from] csv::Error),
    #[error("export: i/o")]
    Io(#[from] std::io::Error),
}

/// One backup of a source as a point in time.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotPoint {
    pub job_id: String,
    /// Its place among the source's backups: 1, 2, 3… in the order they ended.
    pub seq: i32,
    pub finished_at: DateTime<Utc>,
    /// Whether any data type was fetched incrementally (only changes; the rest comes from earlier backups).
    pub incremental: bool,
    /// Whether some data types failed (they keep their state of the previous snapshot).
    pub partial: bool,
    /// Records per data type in the merged state as of this backup.
    pub counts: BTreeMap<String, i64>,
    /// What this backup changed per data type: `{added, changed, deleted}`.
    pub changes: Value,
    /// When retention expired it (its files are deleted: browsing and exporting it answer 410).
    pub expired_at: Option<DateTime<Utc>>,
}

/// A page of a snapshot's records.
#[derive(Debug, Clone)]
pub struct RecordPage {
    pub records: Vec<SnapshotRecord>,
    pub next_cursor: Option<String>,
}

/// One record of a snapshot, as stored.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub record_id: String,
    /// The backup that stored this version of the record.
    pub stored_by_job_id: String,
    /// Its JSON text exactly as stored: never parsed into a `serde_json::Value`, which would round
    /// `12345678901234567890.123` and integers past `u64`, and could not hold `1e400` or `"\ud800"`.
    pub record: Box<serde_json::value::RawValue>,
}

/// Which records of a snapshot to read.
#[derive(Debug, Clone)]
pub struct RecordQuery<'a> {
    pub data_type: &'a str,
    /// Case-insensitive substring of the record's JSON text (its keys and values as stored).
    pub q: Option<&'a str>,
    pub cursor: Option<&'a str>,
    /// 1 to 200.
    pub limit: i64,
}

/// One backed-up version of a record.
#[derive(Debug, Clone)]
pub struct RecordVersion {
    /// The first backup that held this version, and when it ended.
    pub first_job_id: String,
    pub first_backed_up_at: DateTime<Utc>,
    /// The last backup that held it (the latest backup, while it is current).
    pub last_job_id: String,
    pub last_backed_up_at: DateTime<Utc>,
    /// Whether the source's latest backup holds this version.
    pub current: bool,
    /// The backup that no longer held the record at all (deleted on the platform), if this version ended so.
    pub deleted_by_job_id: Option<String>,
    /// Hex of the version's content hash (the first 16 bytes of the SHA-256 of its JSON text).
    pub content_hash: String,
    /// The record's JSON text exactly as stored (see [`SnapshotRecord::record`]); `None` when its backup
    /// has expired (retention).
    pub record: Option<Box<serde_json::value::RawValue>>,
    /// RFC 6902 JSON Patch from the previous version to this one; `None` for the first version, or when
    /// either side's backup has expired.
    pub changes: Option<json_patch::Patch>,
}

/// The export's file format, one file per data type in the zip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `{dataType}.ndjson`: the records as stored, one per line.
    Ndjson,
    /// `{dataType}.csv`: a header of the union of the records' top-level keys (`id` first, then in order of
    /// first appearance); a string value as itself, `null` or an absent key as an empty cell, any other value
    /// (number, boolean, object, array) as its JSON text.
    Csv,
}

/// The snapshot use cases over the index and the stored files.
#[derive(Clone)]
pub struct Snapshots {
    db: Pool,
    files: Arc<dyn JobFiles>,
}

fn cursor_of(seq: i32, ordinal: i32) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:r:{seq}:{ordinal}"))
}

fn parse_cursor(cursor: &str) -> Result<(i32, i32), SnapshotError> {
    let text = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or(SnapshotError::BadCursor)?;
    let rest = text.strip_prefix("v1:r:").ok_or(SnapshotError::BadCursor)?;
    let (seq, ordinal) = rest.split_once(':').ok_or(SnapshotError::BadCursor)?;
    Ok((
        seq.parse().map_err(|_| SnapshotError::BadCursor)?,
        ordinal.parse().map_err(|_| SnapshotError::BadCursor)?,
    ))
}

/// A data file's name in its job's directory.
fn data_file(data_type: &str) -> String {
    format!("{data_type}.ndjson.gz")
}

impl Snapshots {
    pub fn new(db: Pool, files: Arc<dyn JobFiles>) -> Self {
        Self { db, files }
    }

    /// The source's snapshots, newest first: at most `limit` after the job `before_job_id` (the previous
    /// page's last), and whether more follow.
    pub async fn list(
        &self,
        account_id: &str,
        source_id: SourceId,
        before_job_id: Option<JobId>,
        limit: i64,
    ) -> Result<(Vec<SnapshotPoint>, bool), SnapshotError> {
        let source = *source_id.as_uuid();
        let before = before_job_id.map(|id| *id.as_uuid());
        let client = self.db.get().await?;
        let rows = client
            .query(
                "SELECT s.job_id, s.seq, s.finished_at, s.incremental, s.partial, s.counts, s.changes, \
                        j.expired_at \
                 FROM source_snapshots s LEFT JOIN read_jobs j ON j.job_id = s.job_id::text \
                 WHERE s.source_id = $1 AND s.account_id = $2 \
                   AND ($3::uuid IS NULL OR s.seq < (SELECT seq FROM source_snapshots WHERE job_id = $3)) \
                 ORDER BY s.seq DESC LIMIT $4",
                &[&source, &account_id, &before, &(limit + 1)],
            )
            .await?;
        let mut points: Vec<SnapshotPoint> = rows.iter().map(point).collect();
        let more = points.len() as i64 > limit;
        points.truncate(limit as usize);
        Ok((points, more))
    }

    /// One snapshot of the source, readable: 404 unless it is one of the account's, 410 once expired or the
    /// account erased.
    pub async fn readable(
        &self,
        account_id: &str,
        source_id: SourceId,
        job_id: JobId,
    ) -> Result<SnapshotPoint, SnapshotError> {
        let (source, job) = (*source_id.as_uuid(), *job_id.as_uuid());
        let client = self.db.get().await?;
        let row = client
            .query_opt(
                "SELECT s.job_id, s.seq, s.finished_at, s.incremental, s.partial, s.counts, s.changes, \
                        j.expired_at \
                 FROM source_snapshots s LEFT JOIN read_jobs j ON j.job_id = s.job_id::text \
                 WHERE s.source_id = $1 AND s.account_id = $2 AND s.job_id = $3",
                &[&source, &account_id, &job],
            )
            .await?
            .ok_or(SnapshotError::SnapshotNotFound)?;
        let point = point(&row);
        if let Some(at) = point.expired_at {
            return Err(SnapshotError::Expired { at });
        }
        if let Some(at) = crate::data_keys::erased_at(&client, account_id).await? {
            return Err(SnapshotError::Erased { at });
        }
        Ok(point)
    }

    /// A page of the snapshot's records of one data type, in the order they were stored (backup by backup,
    /// line by line). With `q`, only records whose JSON text holds it (case-insensitive), scanning at most
    /// [`SEARCH_SCAN_LIMIT`] records per request.
    pub async fn records(
        &self,
        account_id: &str,
        source_id: SourceId,
        job_id: JobId,
        query: RecordQuery<'_>,
    ) -> Result<RecordPage, SnapshotError> {
        let snapshot = self.readable(account_id, source_id, job_id).await?;
        let source = *source_id.as_uuid();
        let (mut after_seq, mut after_ordinal) = match query.cursor {
            Some(cursor) => parse_cursor(cursor)?,
            None => (0, -1),
        };
        let needle = query.q.map(str::to_lowercase);
        let jobs = self.jobs_of(source).await?;
        let mut records = Vec::new();
        let mut scanned = 0i64;
        loop {
            let batch = if needle.is_some() {
                (SEARCH_SCAN_LIMIT - scanned).min(1000)
            } else {
                query.limit + 1 - records.len() as i64
            };
            if batch <= 0 {
                break;
            }
            let client = self.db.get().await?;
            let rows = client
                .query(
                    "SELECT record_id, first_seq, ordinal FROM record_versions \
                     WHERE source_id = $1 AND data_type = $2 AND first_seq <= $3 \
                       AND (last_seq IS NULL OR last_seq >= $3) \
                       AND (first_seq, ordinal) > ($4, $5) \
                     ORDER BY first_seq, ordinal LIMIT $6",
                    &[
                        &source,
                        &query.data_type,
                        &snapshot.seq,
                        &after_seq,
                        &after_ordinal,
                        &batch,
                    ],
                )
                .await?;
            drop(client);
            let exhausted = (rows.len() as i64) < batch;
            let located: Vec<(String, i32, i32)> = rows
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let lines = self
                .read_located(account_id, source_id, &jobs, query.data_type, &located)
                .await?;
            for ((record_id, seq, ordinal), text) in located.into_iter().zip(lines) {
                scanned += 1;
                if records.len() as i64 == query.limit {
                    // One more record exists: the page ends before it.
                    return Ok(RecordPage {
                        records,
                        next_cursor: Some(cursor_of(after_seq, after_ordinal)),
                    });
                }
                after_seq = seq;
                after_ordinal = ordinal;
                if let Some(needle) = &needle {
                    if !text.to_lowercase().contains(needle.as_str()) {
                        continue;
                    }
                }
                let job_id = job_of(&jobs, seq)?.to_string();
                let record = raw_line(text, &job_id, query.data_type, ordinal)?;
                records.push(SnapshotRecord {
                    record_id,
                    stored_by_job_id: job_id,
                    record,
                });
            }
            if exhausted {
                return Ok(RecordPage {
                    records,
                    next_cursor: None,
                });
            }
            if needle.is_some() && scanned >= SEARCH_SCAN_LIMIT {
                break;
            }
        }
        // A search that used up its scan: it goes on from the last record read.
        Ok(RecordPage {
            records,
            next_cursor: Some(cursor_of(after_seq, after_ordinal)),
        })
    }

    /// Every backed-up version of one record, oldest first, each with what changed since the one before.
    pub async fn versions(
        &self,
        account_id: &str,
        source_id: SourceId,
        data_type: &str,
        record_id: &str,
    ) -> Result<Vec<RecordVersion>, SnapshotError> {
        let source = *source_id.as_uuid();
        let client = self.db.get().await?;
        if let Some(at) = crate::data_keys::erased_at(&client, account_id).await? {
            return Err(SnapshotError::Erased { at });
        }
        let rows = client
            .query(
                "SELECT v.first_seq, v.last_seq, v.ordinal, v.content_hash FROM record_versions v \
                 WHERE v.source_id = $1 AND v.data_type = $2 AND v.record_id = $3 \
                   AND EXISTS (SELECT 1 FROM source_snapshots s \
                               WHERE s.source_id = $1 AND s.account_id = $4) \
                 ORDER BY v.first_seq",
                &[&source, &data_type, &record_id, &account_id],
            )
            .await?;
        if rows.is_empty() {
            return Err(SnapshotError::RecordNotFound);
        }
        let snapshots = client
            .query(
                "SELECT s.seq, s.job_id, s.finished_at, j.expired_at FROM source_snapshots s \
                 LEFT JOIN read_jobs j ON j.job_id = s.job_id::text \
                 WHERE s.source_id = $1 ORDER BY s.seq",
                &[&source],
            )
            .await?;
        drop(client);
        let by_seq: HashMap<i32, (JobId, DateTime<Utc>, bool)> = snapshots
            .iter()
            .map(|r| {
                let job = JobId::from_uuid(r.get(1));
                let expired: Option<DateTime<Utc>> = r.get(3);
                (r.get(0), (job, r.get(2), expired.is_some()))
            })
            .collect();
        let latest = snapshots.last().map(|r| r.get::<_, i32>(0)).unwrap_or(0);
        let mut versions = Vec::with_capacity(rows.len());
        let mut previous: Option<Option<Value>> = None;
        for (i, row) in rows.iter().enumerate() {
            let first_seq: i32 = row.get(0);
            let last_seq: Option<i32> = row.get(1);
            let ordinal: i32 = row.get(2);
            let hash: Vec<u8> = row.get(3);
            // A version always starts at a backup the index lists; were it missing, the version shows
            // without its record (as if expired) rather than failing the whole history.
            let (first_job, first_at, expired) = match by_seq.get(&first_seq) {
                Some(&(job, at, expired)) => (Some(job), at, expired),
                None => (None, DateTime::<Utc>::MIN_UTC, true),
            };
            let last = last_seq.unwrap_or(latest);
            let (last_job, last_at) = by_seq
                .get(&last)
                .map(|&(job, at, _)| (Some(job), at))
                .unwrap_or((first_job, first_at));
            // Ended, and the next version (if any) does not start right after: the record was gone.
            let next_first: Option<i32> = rows.get(i + 1).map(|r| r.get(0));
            let deleted_by_job_id = match last_seq {
                Some(last) if next_first != Some(last + 1) => {
                    by_seq.get(&(last + 1)).map(|(job, _, _)| job.to_string())
                }
                _ => None,
            };
            let record = match first_job {
                Some(job_id) if !expired => {
                    let location = JobLocation {
                        account_id,
                        source_id,
                        job_id,
                    };
                    match self.read_lines(location, data_type, &[ordinal]).await {
                        Ok(mut lines) => Some(raw_line(
                            lines.swap_remove(0),
                            &job_id.to_string(),
                            data_type,
                            ordinal,
                        )?),
                        Err(SnapshotError::ChainExpired { .. }) => None,
                        Err(err) => return Err(err),
                    }
                }
                _ => None,
            };
            // The patch is computed on parsed values: none when either side holds what a `Value` cannot.
            let parsed = record
                .as_ref()
                .and_then(|raw| serde_json::from_str::<Value>(raw.get()).ok());
            let changes = match (&previous, &parsed) {
                (Some(Some(before)), Some(after)) => Some(json_patch::diff(before, after)),
                _ => None,
            };
            previous = Some(parsed);
            versions.push(RecordVersion {
                first_job_id: first_job.map(|j| j.to_string()).unwrap_or_default(),
                first_backed_up_at: first_at,
                last_job_id: last_job.map(|j| j.to_string()).unwrap_or_default(),
                last_backed_up_at: last_at,
                current: last_seq.is_none(),
                deleted_by_job_id,
                content_hash: hex::encode(hash),
                record,
                changes,
            });
        }
        Ok(versions)
    }

    /// Streams a zip of the snapshot, one file per data type it holds, in `format`. The snapshot is checked
    /// (404, 410) before anything streams; a failure while streaming ends the stream with the error (the zip
    /// is then incomplete: it has no central directory). Memory stays flat: one file's decompression state,
    /// a batch of index rows, and the zip's deflate state; for CSV the set of column names.
    pub async fn export(
        &self,
        account_id: &str,
        source_id: SourceId,
        job_id: JobId,
        format: ExportFormat,
    ) -> Result<BoxStream<'static, Result<Bytes, SnapshotError>>, SnapshotError> {
        let snapshot = self.readable(account_id, source_id, job_id).await?;
        let source = *source_id.as_uuid();
        let jobs = self.jobs_of(source).await?;
        let (writer, reader) = tokio::io::duplex(64 * 1024);
        let (tx, rx) = tokio::sync::mpsc::channel::<SnapshotError>(1);
        let this = self.clone();
        let account_id = account_id.to_owned();
        tokio::spawn(async move {
            let export = Export {
                snapshots: &this,
                account_id: &account_id,
                source_id,
                source,
                seq: snapshot.seq,
                jobs: &jobs,
            };
            if let Err(err) = export.write_zip(writer, &snapshot.counts, format).await {
                tracing::error!(
                    error = %ErrorChain(&err),
                    "snapshot export failed"
                );
                let _ = tx.send(err).await;
            }
        });
        let bytes =
            tokio_util::io::ReaderStream::new(reader).map(|r| r.map_err(SnapshotError::from));
        // The export task's error, if any, ends the stream after what was sent.
        let failure = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|err| (Err(err), rx))
        });
        Ok(bytes.chain(failure).boxed())
    }

    /// Every record of one data type of the snapshot, each as parsed from its stored JSON text, in the order
    /// of the records route and the export (file by file, line by line; each file read once): the one
    /// definition of "the merged state as of a backup", which restores read too (issue 13 §5). Memory: the
    /// data type's records. The errors of [`Snapshots::readable`] and of reading the files.
    ///
    /// Each record comes with its key in the index, the `recordId` of the snapshot and version routes: its
    /// id, `<parent id>/<id>` for a per-parent listing's records (a Mailchimp member's `<list_id>/<id>`),
    /// `sha256:<hex>` for a record without an id.
    ///
    /// `T` is what each record's text is read into: a `serde_json::Value`, or a `Box<RawValue>` that keeps
    /// the text as stored (a restore writes the values back exactly: `1e400`, digits past f64, a lone
    /// surrogate escape, which no `Value` of this workspace holds).
    pub async fn all_records<T: serde::de::DeserializeOwned>(
        &self,
        account_id: &str,
        source_id: SourceId,
        job_id: JobId,
        data_type: &str,
    ) -> Result<Vec<(String, T)>, SnapshotError> {
        let snapshot = self.readable(account_id, source_id, job_id).await?;
        let source = *source_id.as_uuid();
        let jobs = self.jobs_of(source).await?;
        let export = Export {
            snapshots: self,
            account_id,
            source_id,
            source,
            seq: snapshot.seq,
            jobs: &jobs,
        };
        let mut records = Vec::new();
        export
            .each_record(
                data_type,
                &mut futures::io::sink(),
                |text, _, (stored_by, ordinal, key)| {
                    let record =
                        serde_json::from_slice(text).map_err(|source| SnapshotError::Damaged {
                            job_id: stored_by.to_owned(),
                            name: data_file(data_type),
                            ordinal,
                            source,
                        })?;
                    records.push((key.to_owned(), record));
                    Ok(())
                },
            )
            .await?;
        Ok(records)
    }

    /// The source's backups by place: seq → job id.
    async fn jobs_of(&self, source: uuid::Uuid) -> Result<HashMap<i32, JobId>, SnapshotError> {
        let client = self.db.get().await?;
        let rows = client
            .query(
                "SELECT seq, job_id FROM source_snapshots WHERE source_id = $1",
                &[&source],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), JobId::from_uuid(r.get(1))))
            .collect())
    }

    /// The lines `located` points at ((record id, seq, ordinal) in index order), in the same order: each
    /// file read once, up to its last line needed.
    async fn read_located(
        &self,
        account_id: &str,
        source_id: SourceId,
        jobs: &HashMap<i32, JobId>,
        data_type: &str,
        located: &[(String, i32, i32)],
    ) -> Result<Vec<String>, SnapshotError> {
        let mut by_file: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for (_, seq, ordinal) in located {
            by_file.entry(*seq).or_default().push(*ordinal);
        }
        let mut texts: HashMap<(i32, i32), String> = HashMap::new();
        for (seq, mut ordinals) in by_file {
            ordinals.sort_unstable();
            let location = JobLocation {
                account_id,
                source_id,
                job_id: job_of(jobs, seq)?,
            };
            let lines = self.read_lines(location, data_type, &ordinals).await?;
            for (ordinal, text) in ordinals.into_iter().zip(lines) {
                texts.insert((seq, ordinal), text);
            }
        }
        Ok(located
            .iter()
            .map(|(_, seq, ordinal)| texts.remove(&(*seq, *ordinal)).unwrap_or_default())
            .collect())
    }

    /// Lines `ordinals` (ascending, 0-based) of the data type's file of one backup: read from the gzip
    /// member holding the first of them up to the last one (the file's seek points), or, for lines far
    /// apart, from the member holding each.
    async fn read_lines(
        &self,
        location: JobLocation<'_>,
        data_type: &str,
        ordinals: &[i32],
    ) -> Result<Vec<String>, SnapshotError> {
        let Some(first) = ordinals.first() else {
            return Ok(Vec::new());
        };
        let mut lines = self.lines_from(location, data_type, *first).await?;
        let mut found = Vec::with_capacity(ordinals.len());
        for wanted in ordinals {
            if lines.next_ordinal.saturating_add(READ_ON_AT_MOST) < *wanted {
                // Far ahead: seeking is cheaper than decompressing everything in between.
                lines = self.lines_from(location, data_type, *wanted).await?;
            }
            loop {
                match lines.next_line().await? {
                    Some((ordinal, line)) if ordinal == *wanted => {
                        found.push(String::from_utf8_lossy(line).into_owned());
                        break;
                    }
                    Some(_) => {}
                    None => {
                        return Err(SnapshotError::MissingLine {
                            job_id: location.job_id.to_string(),
                            name: data_file(data_type),
                            ordinal: *wanted,
                        })
                    }
                }
            }
        }
        Ok(found)
    }

    /// The lines of the data type's file of one backup, read through [`JobFiles::open`] (decrypted, then
    /// gunzipped here). A file that is not stored any more: [`SnapshotError::ChainExpired`].
    async fn lines(
        &self,
        location: JobLocation<'_>,
        data_type: &str,
    ) -> Result<Lines, SnapshotError> {
        self.lines_from(location, data_type, 0).await
    }

    /// Like [`lines`](Self::lines), from the gzip member holding line `ordinal` on (through
    /// [`JobFiles::open_at_line`]): the first line given may come before `ordinal`, never after it.
    async fn lines_from(
        &self,
        location: JobLocation<'_>,
        data_type: &str,
        ordinal: i32,
    ) -> Result<Lines, SnapshotError> {
        let name = data_file(data_type);
        let line = u64::try_from(ordinal).unwrap_or(0);
        let (first_line, stream) = self
            .files
            .open_at_line(location, &name, line)
            .await
            .map_err(|source| SnapshotError::Storage {
                job_id: location.job_id.to_string(),
                name: name.clone(),
                source,
            })?
            .ok_or_else(|| SnapshotError::ChainExpired {
                job_id: location.job_id.to_string(),
            })?;
        Ok(Lines {
            job_id: location.job_id.to_string(),
            name,
            stream,
            decoder: flate2::write::MultiGzDecoder::new(Vec::new()),
            start: 0,
            next_ordinal: i32::try_from(first_line).map_err(|_| SnapshotError::MissingLine {
                job_id: location.job_id.to_string(),
                name: data_file(data_type),
                ordinal,
            })?,
            ended: false,
        })
    }
}

/// A stored data file read line by line as it streams. Memory: one stored chunk's decompressed bytes and
/// one partial line.
struct Lines {
    job_id: String,
    name: String,
    stream: crate::artifacts::FileStream,
    /// Decompresses into its `Vec`, which holds the lines not yet handed out from `start` on.
    decoder: flate2::write::MultiGzDecoder<Vec<u8>>,
    start: usize,
    next_ordinal: i32,
    ended: bool,
}

impl Lines {
    fn storage(&self, source: crate::bus::BoxError) -> SnapshotError {
        SnapshotError::Storage {
            job_id: self.job_id.clone(),
            name: self.name.clone(),
            source,
        }
    }

    /// The next line (0-based ordinal, without its newline); `None` at the end of the file.
    async fn next_line(&mut self) -> Result<Option<(i32, &[u8])>, SnapshotError> {
        loop {
            let buffered = &self.decoder.get_ref()[self.start..];
            if let Some(end) = buffered.iter().position(|b| *b == b'\n') {
                let (from, to) = (self.start, self.start + end);
                self.start = to + 1;
                let ordinal = self.next_ordinal;
                self.next_ordinal += 1;
                return Ok(Some((ordinal, &self.decoder.get_ref()[from..to])));
            }
            if self.ended {
                if buffered.is_empty() {
                    return Ok(None);
                }
                // A last line without a newline.
                let from = self.start;
                self.start = self.decoder.get_ref().len();
                let ordinal = self.next_ordinal;
                self.next_ordinal += 1;
                return Ok(Some((ordinal, &self.decoder.get_ref()[from..])));
            }
            // Keeps only the partial line before decompressing more.
            let start = self.start;
            self.decoder.get_mut().drain(..start);
            self.start = 0;
            match self.stream.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| self.storage(e))?;
                    self.decoder
                        .write_all(&chunk)
                        .map_err(|e| self.storage(e.into()))?;
                }
                None => {
                    self.decoder
                        .try_finish()
                        .map_err(|e| self.storage(e.into()))?;
                    self.ended = true;
                }
            }
        }
    }
}

/// The backup at place `seq` of the source's backups (`jobs`, from [`Snapshots::jobs_of`]): the index only
/// names places of backups it lists, so a missing one is an index that disagrees with itself.
fn job_of(jobs: &HashMap<i32, JobId>, seq: i32) -> Result<JobId, SnapshotError> {
    jobs.get(&seq)
        .copied()
        .ok_or(SnapshotError::UnknownBackup { seq })
}

fn point(row: &tokio_postgres::Row) -> SnapshotPoint {
    SnapshotPoint {
        job_id: row.get::<_, uuid::Uuid>(0).to_string(),
        seq: row.get(1),
        finished_at: row.get(2),
        incremental: row.get(3),
        partial: row.get(4),
        counts: serde_json::from_value(row.get(5)).unwrap_or_default(),
        changes: row.get(6),
        expired_at: row.get(7),
    }
}

/// A stored line as the record's JSON text, checked to be JSON (not parsed into a value).
fn raw_line(
    text: String,
    job_id: &str,
    data_type: &str,
    ordinal: i32,
) -> Result<Box<serde_json::value::RawValue>, SnapshotError> {
    serde_json::value::RawValue::from_string(text).map_err(|source| SnapshotError::Damaged {
        job_id: job_id.to_owned(),
        name: data_file(data_type),
        ordinal,
        source,
    })
}

/// One export in progress.
struct Export<'a> {
    snapshots: &'a Snapshots,
    account_id: &'a str,
    source_id: SourceId,
    source: uuid::Uuid,
    seq: i32,
    jobs: &'a HashMap<i32, JobId>,
}

impl Export<'_> {
    async fn write_zip(
        &self,
        out: tokio::io::DuplexStream,
        counts: &BTreeMap<String, i64>,
        format: ExportFormat,
    ) -> Result<(), SnapshotError> {
        use async_zip::{Compression, ZipEntryBuilder};
        let mut zip = async_zip::tokio::write::ZipFileWriter::with_tokio(out);
        for data_type in counts.keys() {
            let extension = match format {
                ExportFormat::Ndjson => "ndjson",
                ExportFormat::Csv => "csv",
            };
            let entry = ZipEntryBuilder::new(
                format!("{data_type}.{extension}").into(),
                Compression::Deflate,
            );
            let mut file = zip.write_entry_stream(entry).await?;
            match format {
                ExportFormat::Ndjson => {
                    self.each_record(data_type, &mut file, |text, buffer, _| {
                        buffer.extend_from_slice(text);
                        buffer.push(b'\n');
                        Ok(())
                    })
                    .await?;
                }
                ExportFormat::Csv => {
                    // A first pass for the columns: the union of the records' top-level keys.
                    let mut columns: Vec<String> = vec!["id".to_owned()];
                    let mut seen: HashSet<String> = columns.iter().cloned().collect();
                    self.each_record(data_type, &mut futures::io::sink(), |text, _, _| {
                        if let Ok(map) = serde_json::from_slice::<RawObject>(text) {
                            for key in map.keys() {
                                if seen.insert(key.clone()) {
                                    columns.push(key.clone());
                                }
                            }
                        }
                        Ok(())
                    })
                    .await?;
                    let mut header = csv::Writer::from_writer(Vec::new());
                    header.write_record(&columns)?;
                    let header = header.into_inner().map_err(|e| e.into_error())?;
                    futures::io::AsyncWriteExt::write_all(&mut file, &header).await?;
                    self.each_record(data_type, &mut file, |text, buffer, _| {
                        let map: RawObject = serde_json::from_slice(text).unwrap_or_default();
                        let mut row = csv::Writer::from_writer(std::mem::take(buffer));
                        row.write_record(
                            columns.iter().map(|c| cell(map.get(c).map(|raw| &**raw))),
                        )?;
                        *buffer = row.into_inner().map_err(|e| e.into_error())?;
                        Ok(())
                    })
                    .await?;
                }
            }
            file.close().await?;
        }
        let mut out = zip.close().await?;
        tokio::io::AsyncWriteExt::shutdown(out.get_mut()).await?;
        Ok(())
    }

    /// Calls `record` with the JSON text of every record of the data type in the snapshot (and the backup and
    /// line it is read from, and its key in the index), file by file in
    /// the order stored, and writes what it leaves in its buffer to `out` every 64 KiB: each file read once,
    /// the index's rows for it fetched in batches as the file is read.
    async fn each_record<F, W>(
        &self,
        data_type: &str,
        out: &mut W,
        mut record: F,
    ) -> Result<(), SnapshotError>
    where
        F: FnMut(&[u8], &mut Vec<u8>, (&str, i32, &str)) -> Result<(), SnapshotError>,
        W: futures::io::AsyncWrite + Unpin,
    {
        use futures::io::AsyncWriteExt;
        let client = self.snapshots.db.get().await?;
        let files: Vec<i32> = client
            .query(
                "SELECT DISTINCT first_seq FROM record_versions \
                 WHERE source_id = $1 AND data_type = $2 AND first_seq <= $3 \
                   AND (last_seq IS NULL OR last_seq >= $3) ORDER BY first_seq",
                &[&self.source, &data_type, &self.seq],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(client);
        let mut buffer = Vec::with_capacity(128 * 1024);
        for first_seq in files {
            let location = JobLocation {
                account_id: self.account_id,
                source_id: self.source_id,
                job_id: job_of(self.jobs, first_seq)?,
            };
            let job_id = location.job_id.to_string();
            let mut lines = self.snapshots.lines(location, data_type).await?;
            let mut wanted: VecDeque<(i32, String)> = VecDeque::new();
            let mut after = -1i32;
            let mut index_done = false;
            loop {
                if wanted.is_empty() {
                    if index_done {
                        break;
                    }
                    // The next batch of this file's lines the snapshot holds.
                    let client = self.snapshots.db.get().await?;
                    let rows = client
                        .query(
                            "SELECT ordinal, record_id FROM record_versions \
                             WHERE source_id = $1 AND data_type = $2 AND first_seq = $3 \
                               AND (last_seq IS NULL OR last_seq >= $4) AND ordinal > $5 \
                             ORDER BY ordinal LIMIT $6",
                            &[
                                &self.source,
                                &data_type,
                                &first_seq,
                                &self.seq,
                                &after,
                                &EXPORT_BATCH,
                            ],
                        )
                        .await?;
                    index_done = (rows.len() as i64) < EXPORT_BATCH;
                    wanted.extend(
                        rows.iter()
                            .map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1))),
                    );
                    match wanted.back() {
                        Some((last, _)) => after = *last,
                        None => break,
                    }
                }
                let Some((ordinal, line)) = lines.next_line().await? else {
                    return Err(SnapshotError::MissingLine {
                        job_id: job_id.clone(),
                        name: data_file(data_type),
                        ordinal: wanted[0].0,
                    });
                };
                if wanted.front().is_some_and(|(o, _)| *o == ordinal) {
                    let (_, key) = wanted.pop_front().expect("checked above");
                    record(line, &mut buffer, (&job_id, ordinal, &key))?;
                    if buffer.len() >= 64 * 1024 {
                        out.write_all(&buffer).await?;
                        buffer.clear();
                    }
                }
            }
        }
        out.write_all(&buffer).await?;
        Ok(())
    }
}

/// A record's top-level members, each its JSON text as stored: a CSV row of a record holding what a
/// `serde_json::Value` cannot (`1e400`, `"\ud800"`) is not left empty, and numbers keep every digit.
type RawObject = BTreeMap<String, Box<serde_json::value::RawValue>>;

/// A CSV cell for a top-level value: a string's content, nothing for null, any other value as its JSON text
/// as stored.
fn cell(value: Option<&serde_json::value::RawValue>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    let text = value.get();
    if text == "null" {
        String::new()
    } else if text.starts_with('"') {
        serde_json::from_str::<String>(text).unwrap_or_else(|_| text.to_owned())
    } else {
        text.to_owned()
    }
}
