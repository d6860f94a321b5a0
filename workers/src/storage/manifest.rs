use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::WrittenFile;

/// Bumped when the manifest's shape changes incompatibly.
pub const MANIFEST_VERSION: u32 = 1;

/// `manifest.json`: what a job stored, written after every data file. Its sha256 goes into `JobSucceeded`.
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
    /// One per data type, in the order written.
    pub files: Vec<ManifestFile>,
    /// Per data type, where the next incremental job resumes.
    pub cursors: BTreeMap<String, serde_json::Value>,
    /// Totals over `files`.
    pub records: u64,
    pub bytes: u64,
    /// Always true in a stored manifest: it is written only once every file is stored. Present so a reader
    /// of the file alone can tell.
    pub complete: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestFile {
    /// The file name in the job's directory, e.g. `customers.ndjson.gz`.
    pub name: String,
    pub data_type: String,
    pub records: u64,
    /// Size of the stored (compressed) file.
    pub bytes: u64,
    /// Hex sha256 of the stored (compressed) file.
    pub sha256: String,
    /// The cursor an incremental fetch started from (absent: everything was fetched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<serde_json::Value>,
}

impl Manifest {
    /// An empty manifest for a job's attempt; see [`super::JobArtifacts::new_manifest`].
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
            cursors: BTreeMap::new(),
            records: 0,
            bytes: 0,
            complete: true,
        }
    }

    /// Adds a finished file (and its incremental starting point) and updates the totals.
    pub fn add_file(&mut self, file: &WrittenFile, since: Option<serde_json::Value>) {
        self.records += file.records;
        self.bytes += file.bytes;
        self.files.push(ManifestFile {
            name: file.name.clone(),
            data_type: file.data_type.clone(),
            records: file.records,
            bytes: file.bytes,
            sha256: file.sha256.clone(),
            since,
        });
    }

    pub fn file(&self, name: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.name == name)
    }
}
