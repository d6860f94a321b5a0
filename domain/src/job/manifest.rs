//! `manifest.json`, the last file of a job's backup: the one type the workers write it as and the API and
//! the verifier read it back as.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{DataTypeFailure, JobErrorCode};

/// The manifest's file name in a job's directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// How a stored file is encrypted, as its manifest entry records it (`encryption`): absent for files stored
/// before encryption, which are read as they are. The format itself is the workers' (`storage::encryption`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEncryption {
    /// The construction: `aes256gcm-stream-v1` (the workers' format, version 1).
    pub scheme: String,
    /// The account's data key that encrypted it (`dk_…`), also in the file's header.
    pub key_id: String,
    /// Size of the stored ciphertext, header and tags included.
    pub ciphertext_bytes: u64,
    /// Hex sha256 of the stored ciphertext: what verification compares the stored object with.
    pub ciphertext_sha256: String,
}

/// Bumped when the manifest's shape changes incompatibly (not for an added optional field, such as
/// `failedDataTypes`: readers of version 1 ignore it, and manifests without it still read).
pub const MANIFEST_VERSION: u32 = 1;

/// `manifest.json`: what a job stored, written after every data file. Its sha256 goes into `JobSucceeded`
/// (or `JobPartiallySucceeded`, whose manifest also lists the data types that failed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub version: u32,
    pub job_id: String,
    pub account_id: String,
    pub source_id: String,
    pub platform_id: String,
    /// The attempt that wrote these artifacts (see `JobAttemptStarted`).
    pub attempt: u32,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Whether the files hold only what changed since the previous job's cursors (`ManifestFile::since`).
    pub incremental: bool,
    /// One per data type backed up, in the order written.
    pub files: Vec<ManifestFile>,
    /// The job's data types that could not be backed up (a partial job), with why, in the job's order: they
    /// have no file. Absent when every data type was backed up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_data_types: Vec<DataTypeFailure>,
    /// The bytes of the files a file platform's data types list (Google Drive, Dropbox, Box): one entry per
    /// file with content, in the order listed, with the sha256 and size of its bytes. An incremental job
    /// lists every file too: those unchanged since the previous backup name the earlier job whose directory
    /// holds their bytes (`jobId`), so each manifest describes every file as it was at its job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents: Vec<ManifestContent>,
    /// Files listed whose bytes are not stored, with why: deleted between their listing and their download
    /// (`GONE`), or refused by the platform (a Google Doc too large to export, a file flagged as abuse).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contents_not_stored: Vec<ContentNotStored>,
    /// Per data type, where the next incremental job resumes.
    pub cursors: BTreeMap<String, serde_json::Value>,
    /// Records over `files`.
    pub records: u64,
    /// Bytes this job stored: its data files, and the file contents it downloaded (not those of `contents`
    /// it refers to in an earlier job).
    pub bytes: u64,
    /// Always true in a stored manifest: it is written only once every file it lists is stored. Present so a
    /// reader of the file alone can tell. (Whether every data type of the job is among them is
    /// `failedDataTypes`' to say.)
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// The file name in the job's directory, e.g. `customers.ndjson.gz`.
    pub name: String,
    pub data_type: String,
    pub records: u64,
    /// Size of the compressed file: what a download gives back (stored as it is, or encrypted).
    pub bytes: u64,
    /// Hex sha256 of the compressed file: what a download gives back.
    pub sha256: String,
    /// The cursor an incremental fetch started from (absent: everything was fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<serde_json::Value>,
    /// How the file is encrypted in the store (issue 13 §2), with the stored ciphertext's size and sha256.
    /// Absent: stored as it is (a backup made before encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<FileEncryption>,
    /// Where a reader can start in the compressed file without decompressing what comes before: each a
    /// line and the byte offset of the gzip member that begins with it, ascending (the file's start, line 0
    /// at offset 0, is implied). Absent for a file of a single member (small, or stored before seek points).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seek_points: Vec<SeekPoint>,
}

/// A gzip member's start in a data file, serialized `[line, offset]`: `line` (0-based) is the first record
/// of the member, `offset` the byte of the compressed file (as a download gives it) where the member begins.
///
/// A gzip file is a series of members, each decompressing on its own (RFC 1952 §2.2), and the whole
/// decompresses to their concatenation: so a data file cut into members every few hundred KiB of records is
/// still one ordinary `.ndjson.gz` for a user, while the snapshot routes seek to the member that holds the
/// record they want (issue 13 §4: a page deep in a million-record backup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekPoint(pub u64, pub u64);

impl SeekPoint {
    /// The member's first line.
    pub fn line(&self) -> u64 {
        self.0
    }

    /// The member's start in the compressed file, in bytes.
    pub fn offset(&self) -> u64 {
        self.1
    }
}

/// The stored bytes of one listed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestContent {
    pub data_type: String,
    /// The file's id on the platform (its record's id in `{dataType}.ndjson.gz`).
    pub id: String,
    /// Where the bytes are, relative to the directory of the job that stored them: `{dataType}/{key}`.
    pub name: String,
    /// The platform's value that changes with the bytes (Drive's `md5Checksum` or `version`, Dropbox's
    /// `content_hash`, Box's `sha1`), when the record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub bytes: u64,
    /// Hex sha256 of the bytes.
    pub sha256: String,
    /// The format the platform exported the file to (Google Docs as `.docx`): the bytes are that export.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_as: Option<String>,
    /// The earlier job whose directory holds the bytes, for a file unchanged since it (absent: this job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// How the bytes are encrypted in the store (issue 13 §2), with the stored ciphertext's size and
    /// sha256. Absent: stored as the platform sent them (a backup made before encryption).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<FileEncryption>,
}

/// A listed file whose bytes are not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentNotStored {
    pub data_type: String,
    pub id: String,
    /// `GONE` (deleted since it was listed: nothing to back up), or the failure's code (`FORBIDDEN`,
    /// `PLATFORM_ERROR`, `VALIDATION_ERROR`).
    pub code: JobErrorCode,
    pub message: String,
}

impl ManifestFile {
    /// The last seek point at or before `line`: where reading must start to reach it (the file's start
    /// when no member begins at or before it).
    pub fn seek_point_before(&self, line: u64) -> SeekPoint {
        let after = self.seek_points.partition_point(|p| p.line() <= line);
        after
            .checked_sub(1)
            .map_or(SeekPoint(0, 0), |i| self.seek_points[i])
    }
}

impl Manifest {
    /// An empty manifest for a job's attempt.
    pub fn new(
        job_id: &str,
        account_id: &str,
        source_id: &str,
        platform_id: &str,
        attempt: u32,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            version: MANIFEST_VERSION,
            job_id: job_id.to_owned(),
            account_id: account_id.to_owned(),
            source_id: source_id.to_owned(),
            platform_id: platform_id.to_owned(),
            attempt,
            started_at,
            finished_at: started_at,
            incremental: false,
            files: Vec::new(),
            failed_data_types: Vec::new(),
            contents: Vec::new(),
            contents_not_stored: Vec::new(),
            cursors: BTreeMap::new(),
            records: 0,
            bytes: 0,
            complete: true,
        }
    }

    /// Adds a finished file and updates the totals.
    pub fn add_file(&mut self, file: ManifestFile) {
        self.records += file.records;
        self.bytes += file.bytes;
        self.files.push(file);
    }

    /// Adds a file's stored bytes; those stored by this job (not `job_id`) count in the totals.
    pub fn add_content(&mut self, content: ManifestContent) {
        if content.job_id.is_none() {
            self.bytes += content.bytes;
        }
        self.contents.push(content);
    }

    /// Removes the file contents of a data type that is not backed up after all; the bytes this job had
    /// stored for it (now out of the totals).
    pub fn drop_contents(&mut self, data_type: &str) -> u64 {
        let stored: u64 = self
            .contents
            .iter()
            .filter(|c| c.data_type == data_type && c.job_id.is_none())
            .map(|c| c.bytes)
            .sum();
        self.contents.retain(|c| c.data_type != data_type);
        self.contents_not_stored
            .retain(|c| c.data_type != data_type);
        self.bytes -= stored;
        stored
    }

    /// Records a data type that could not be backed up (it has no file).
    pub fn add_failure(&mut self, failure: DataTypeFailure) {
        self.failed_data_types.push(failure);
    }

    pub fn file(&self, name: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.name == name)
    }

    /// How a listed file (`customers.ndjson.gz`, or a file's bytes `{dataType}/{key}`) is stored: `None`
    /// when it is not listed, `Some(None)` when stored as it is, `Some(Some(_))` when encrypted.
    pub fn encryption_of(&self, name: &str) -> Option<Option<&FileEncryption>> {
        if let Some(file) = self.file(name) {
            return Some(file.encryption.as_ref());
        }
        self.contents
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.encryption.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn manifest() -> Manifest {
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
        Manifest::new("j1", "acme", "s1", "stripe", 1, at)
    }

    #[test]
    fn seek_points_are_pairs_and_the_one_before_a_line_is_where_reading_starts() {
        let file: ManifestFile = serde_json::from_value(json!({
            "name": "customers.ndjson.gz", "dataType": "customers", "records": 900, "bytes": 5000,
            "sha256": "00", "seekPoints": [[300, 1200], [600, 2500]]
        }))
        .unwrap();
        assert_eq!(
            file.seek_points,
            vec![SeekPoint(300, 1200), SeekPoint(600, 2500)]
        );
        assert_eq!(file.seek_point_before(0), SeekPoint(0, 0));
        assert_eq!(file.seek_point_before(299), SeekPoint(0, 0));
        assert_eq!(file.seek_point_before(300), SeekPoint(300, 1200));
        assert_eq!(file.seek_point_before(599), SeekPoint(300, 1200));
        assert_eq!(file.seek_point_before(10_000), SeekPoint(600, 2500));
        assert_eq!(
            serde_json::to_value(&file).unwrap()["seekPoints"],
            json!([[300, 1200], [600, 2500]])
        );
        // A file without them (small, or stored before them) keeps its manifest entry as it was.
        let old: ManifestFile = serde_json::from_value(json!({
            "name": "customers.ndjson.gz", "dataType": "customers", "records": 1, "bytes": 50,
            "sha256": "00"
        }))
        .unwrap();
        assert!(serde_json::to_value(&old)
            .unwrap()
            .get("seekPoints")
            .is_none());
        assert_eq!(old.seek_point_before(5), SeekPoint(0, 0));
    }

    #[test]
    fn a_partial_jobs_manifest_lists_the_failed_data_types() {
        let mut manifest = manifest();
        manifest.add_failure(DataTypeFailure {
            data_type: "disputes".into(),
            code: JobErrorCode::PlatformError,
            message: "the platform answered 404".into(),
            retryable: false,
        });
        let json = serde_json::to_value(&manifest).unwrap();
        assert_eq!(
            json["failedDataTypes"],
            json!([{"dataType": "disputes", "code": "PLATFORM_ERROR",
                    "message": "the platform answered 404", "retryable": false}])
        );
        let read: Manifest = serde_json::from_value(json).unwrap();
        assert_eq!(read, manifest);
    }

    #[test]
    fn a_manifest_without_failures_reads_and_writes_as_before() {
        let manifest = manifest();
        let json = serde_json::to_value(&manifest).unwrap();
        assert!(json.get("failedDataTypes").is_none(), "{json}");
        // Written before failed data types were listed: still a manifest.
        let old = json!({
            "version": 1, "jobId": "j1", "accountId": "acme", "sourceId": "s1", "platformId": "stripe",
            "attempt": 1, "startedAt": "2026-11-24T12:00:00Z", "finishedAt": "2026-11-24T12:00:00Z",
            "incremental": false, "files": [], "cursors": {}, "records": 0, "bytes": 0, "complete": true
        });
        let read: Manifest = serde_json::from_value(old).unwrap();
        assert_eq!(read, manifest);
    }
}
