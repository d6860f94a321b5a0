//! The bytes of a file platform's files (Google Drive, Dropbox, Box), backed up beside their records: each
//! listed record with content ([`FileRef`]) is downloaded and streamed into its own artifact
//! (`{dataType}/{key}`, see `storage`), and the manifest lists its id, version, size and sha256.
//!
//! **Unchanged files are skipped on an incremental run.** The data type's cursor names the job whose manifest
//! lists the files as they were last backed up (`{"contentsOf": "<jobId>"}`, written by every successful run);
//! an incremental run reads that manifest first and keeps, per id, the version and where the bytes are. A
//! file whose version equals the one recorded there is not downloaded again: the new manifest lists it with
//! the job holding its bytes. Cost: that manifest is read whole, and its entries for the data type (id,
//! version, location, size, hash: about 200 bytes a file) stay in memory for the run, like the entries of the
//! manifest being written; a million files cost a few hundred MB. A cursor naming one job, not every file,
//! keeps the source's event stream small.
//!
//! A file's failure is its own, not its data type's, when the platform refuses that one file: deleted since
//! it was listed (`GONE`), forbidden (a Google Doc too large to export, a file flagged as abuse), or another
//! 4xx/5xx that persisted through the retries. It is recorded in the manifest (`contentsNotStored`) and the
//! run goes on; an incremental run tries it again, since the manifest does not list it as stored. When every
//! download of a run was refused, though, the refusal is the connection's (a missing scope), and the data
//! type fails. A rejected token (401), rate limiting that outlasted the retries and an unreachable platform
//! fail the data type as a page would; the worker refreshes an OAuth token once, as for pages.

use std::collections::{HashMap, HashSet};

use listbackup_domain::job::JobErrorCode;
use listbackup_domain::platform::Listing;
use listbackup_domain::ErrorChain;
use serde_json::value::RawValue;

use crate::connectors::{Connector, FetchError, FetchRequest, FileRef};
use crate::storage::{ContentNotStored, JobArtifacts, Manifest, ManifestContent, StorageError};

/// The cursor field naming the job whose manifest lists the data type's files as last backed up.
pub const CONTENTS_OF: &str = "contentsOf";

/// Why storing a file's bytes stopped the data type (or the run).
#[derive(Debug)]
pub enum ContentFailure {
    /// The platform's, for the data type as a whole (see the module's rules).
    Fetch(FetchError),
    /// Our storage's: the run stops.
    Storage(StorageError),
}

impl From<StorageError> for ContentFailure {
    fn from(err: StorageError) -> Self {
        ContentFailure::Storage(err)
    }
}

/// What a run did with the files of one data type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ContentCounts {
    /// Files downloaded and stored by this run.
    pub downloaded: u64,
    /// Files whose version matched the previous backup's: not downloaded, referred to.
    pub unchanged: u64,
    /// Files deleted between their listing and their download.
    pub gone: u64,
    /// Files the platform refused (recorded, not stored).
    pub refused: u64,
    /// Bytes downloaded and stored by this run.
    pub bytes: u64,
    /// The most bytes any file's writer held at once: the memory a download costs, whatever its size.
    pub peak_buffered: usize,
}

/// The file contents of one data type of one run.
pub struct FileContents {
    data_type: String,
    listing: &'static Listing,
    /// The previous backup's files, by id, each with the job holding its bytes.
    previous: HashMap<String, ManifestContent>,
    /// Files listed by this run so far (a page fetched again after a token refresh is not downloaded twice).
    done: HashSet<String>,
    counts: ContentCounts,
    /// The first refusal, reported if every download is refused.
    first_refusal: Option<FetchError>,
}

impl FileContents {
    /// For a data type whose `listing` has content; `None` otherwise.
    pub fn new(data_type: &str, listing: &'static Listing) -> Option<Self> {
        listing.content.map(|_| Self {
            data_type: data_type.to_owned(),
            listing,
            previous: HashMap::new(),
            done: HashSet::new(),
            counts: ContentCounts::default(),
            first_refusal: None,
        })
    }

    /// Skips the files `manifest` (of the job `job_id`) lists for this data type with the same version.
    pub fn with_previous(mut self, job_id: &str, manifest: &Manifest) -> Self {
        self.previous = manifest
            .contents
            .iter()
            .filter(|content| content.data_type == self.data_type)
            .map(|content| {
                let mut content = content.clone();
                content.job_id.get_or_insert_with(|| job_id.to_owned());
                (content.id.clone(), content)
            })
            .collect();
        self
    }

    /// Whether a previous backup's versions are known (the run is incremental for the bytes).
    pub fn incremental(&self) -> bool {
        !self.previous.is_empty()
    }

    pub fn counts(&self) -> ContentCounts {
        self.counts
    }

    /// `Some` when downloads were refused and none succeeded: the data type's failure.
    pub fn all_refused(&mut self) -> Option<FetchError> {
        (self.counts.downloaded + self.counts.unchanged == 0)
            .then(|| self.first_refusal.take())
            .flatten()
    }

    /// Backs up the bytes of `record` if it is a file with content, and lists them in `manifest`; the bytes
    /// stored (0 for a record without content, an unchanged file, one gone or refused).
    pub async fn store(
        &mut self,
        connector: &Connector,
        request: &FetchRequest<'_>,
        artifacts: &JobArtifacts,
        record: &RawValue,
        manifest: &mut Manifest,
    ) -> Result<u64, ContentFailure> {
        let file = match FileRef::of(self.listing, record) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(0),
            Err(why) => {
                let id = record_id(record, self.listing.id_field);
                self.refuse(
                    manifest,
                    &id,
                    FetchError::InvalidResponse(format!("the file cannot be downloaded: {why}")),
                );
                return Ok(0);
            }
        };
        if !self.done.insert(file.id.clone()) {
            return Ok(0);
        }
        if let Some(previous) = self.previous.get(&file.id) {
            if previous.version.is_some()
                && previous.version == file.version
                && previous.export_as.as_deref() == file.export_as
            {
                self.counts.unchanged += 1;
                manifest.add_content(previous.clone());
                return Ok(0);
            }
        }
        let policy = *connector.retry_policy();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut stream = match connector.download(request, &file).await {
                Ok(stream) => stream,
                Err(FetchError::Gone { status, message }) => {
                    self.counts.gone += 1;
                    tracing::info!(data_type = %self.data_type, id = %file.id, status,
                        "a file was deleted between its listing and its download");
                    manifest.contents_not_stored.push(ContentNotStored {
                        data_type: self.data_type.clone(),
                        id: file.id.clone(),
                        code: JobErrorCode::Gone,
                        message: format!(
                            "deleted since it was listed ({status}){}",
                            if message.is_empty() {
                                String::new()
                            } else {
                                format!(": {message}")
                            }
                        ),
                    });
                    return Ok(0);
                }
                Err(err) if is_the_files_own(&err) => {
                    self.refuse(manifest, &file.id, err);
                    return Ok(0);
                }
                Err(err) => return Err(ContentFailure::Fetch(err)),
            };
            let mut writer = artifacts.content_writer(&self.data_type, &file.id).await?;
            let copied = loop {
                match stream.chunk().await {
                    Ok(Some(bytes)) => {
                        if let Err(err) = writer.write(&bytes).await {
                            let _ = writer.abort().await;
                            return Err(err.into());
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(err) => break Err(err),
                }
            };
            self.counts.peak_buffered = self.counts.peak_buffered.max(writer.peak_buffered_bytes());
            match copied {
                Ok(()) => {
                    let stored = writer.finish().await?;
                    self.counts.downloaded += 1;
                    self.counts.bytes += stored.bytes;
                    manifest.add_content(ManifestContent {
                        data_type: self.data_type.clone(),
                        id: file.id.clone(),
                        name: stored.name,
                        version: file.version.clone(),
                        bytes: stored.bytes,
                        sha256: stored.sha256,
                        export_as: file.export_as.map(str::to_owned),
                        job_id: None,
                        encryption: stored.encryption,
                    });
                    return Ok(stored.bytes);
                }
                Err(err) => {
                    // Cut off mid-body: its partial bytes go with their upload, and the download starts over.
                    let _ = writer.abort().await;
                    if attempt >= policy.max_attempts {
                        return Err(ContentFailure::Fetch(err));
                    }
                    let wait = policy.backoff(attempt);
                    tracing::debug!(data_type = %self.data_type, id = %file.id, ?wait, error = %ErrorChain(&err),
                        "a download was cut off; starting it again");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn refuse(&mut self, manifest: &mut Manifest, id: &str, err: FetchError) {
        self.counts.refused += 1;
        tracing::warn!(data_type = %self.data_type, %id, code = %err.code(), error = %ErrorChain(&err),
            "a file's bytes are not stored");
        manifest.contents_not_stored.push(ContentNotStored {
            data_type: self.data_type.clone(),
            id: id.to_owned(),
            code: err.code(),
            message: listbackup_commands::error_chain(&err),
        });
        self.first_refusal.get_or_insert(err);
    }
}

/// Backs up one data type outside a job, as a run does it minus the job's events, progress and token
/// refresh: every page, each file's bytes first (when the data type has content), then the records into
/// `{dataType}.ndjson.gz`. For the benchmarks and tests of the file platforms.
pub async fn back_up_data_type(
    connector: &Connector,
    request: FetchRequest<'_>,
    artifacts: &JobArtifacts,
    manifest: &mut Manifest,
    mut contents: Option<FileContents>,
) -> Result<
    (
        crate::storage::WrittenFile,
        crate::connectors::FetchSummary,
        ContentCounts,
    ),
    ContentFailure,
> {
    let mut writer = artifacts.data_type_writer(request.data_type).await?;
    let mut pager = connector
        .pages(request.clone())
        .map_err(ContentFailure::Fetch)?;
    while let Some(page) = pager.next_page().await.map_err(ContentFailure::Fetch)? {
        if let Some(files) = contents.as_mut() {
            for record in &page.records {
                files
                    .store(connector, &request, artifacts, record, manifest)
                    .await?;
            }
        }
        for record in &page.records {
            writer.write_raw(record).await?;
        }
    }
    if let Some(err) = contents.as_mut().and_then(FileContents::all_refused) {
        return Err(ContentFailure::Fetch(err));
    }
    let file = writer.finish().await?;
    manifest.add_file(file.manifest_file(None));
    let counts = contents.map(|c| c.counts()).unwrap_or_default();
    Ok((file, pager.summary(), counts))
}

/// Whether a download's failure is the file's own (recorded, and the run goes on) rather than the data
/// type's: the platform refused that request (403, another 4xx, a 5xx that outlasted the retries, an answer
/// not followed). Rejected credentials, rate limiting and an unreachable platform are not.
fn is_the_files_own(err: &FetchError) -> bool {
    matches!(
        err,
        FetchError::Forbidden { .. }
            | FetchError::Platform { .. }
            | FetchError::InvalidResponse(_)
            | FetchError::Undecodable { .. }
    )
}

/// The record's id as text, for a file that cannot be downloaded (empty if it has none), read as the pager
/// reads it (whatever else the record holds).
fn record_id(record: &RawValue, field: &str) -> String {
    crate::connectors::record_id(record, field).unwrap_or_default()
}
