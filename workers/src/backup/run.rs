//! One attempt of one job: every data type in turn from the platform into storage, then the manifest, then
//! the outcome. Credentials come from the vault; an OAuth token rejected mid-run is refreshed once.
//!
//! Each data type ends backed up or failed (`ResourceBackupFailed`), and one failing does not stop the
//! others: the job ends succeeded (all backed up), partial (some of each: the manifest and the good files are
//! kept) or failed (none backed up: nothing is kept). A failure of the connection itself (credentials
//! rejected or unusable) fails every data type still to come at once, without asking the platform again.
//! Failures of our own infrastructure (storage, the event store) and cancellation end the attempt as a whole.

use chrono::Utc;
use listbackup_commands::jobs::{BackedUp, NotBackedUp, Progress, Succeeded};
use listbackup_commands::oauth::{RefreshOutcome, USE_WINDOW};
use listbackup_commands::vault::SecretCredentials;
use listbackup_commands::EventMetadata;
use listbackup_domain::job::{summarise, DataTypeFailure, JobErrorCode};
use listbackup_domain::platform::OAUTH_ACCESS_TOKEN;
use listbackup_domain::source::Source;
use listbackup_domain::ErrorChain;
use listbackup_domain::{ConnectionId, JobId};
use serde_json::json;

use super::files::{ContentFailure, FileContents, CONTENTS_OF};
use super::progress::ProgressReporter;
use super::{cancelled, reauth_failure, BackupWorker, Run, RunFailure, CANCEL_CHECK};
use crate::connectors::{FetchError, FetchRequest, IncrementalCursor, PageCursor};
use crate::metrics;
use crate::record_index::StagedRecords;

/// Why one data type was not backed up: its own failure, or the connection's (`connection_wide`: every
/// data type still to come would fail the same way, so they fail with it and the run stops asking).
struct Unfetched {
    failure: RunFailure,
    connection_wide: bool,
}

impl From<FetchError> for Unfetched {
    fn from(err: FetchError) -> Self {
        Self {
            connection_wide: err.is_connection_wide(),
            failure: err.into(),
        }
    }
}

impl Unfetched {
    fn connection(failure: RunFailure) -> Self {
        Self {
            failure,
            connection_wide: true,
        }
    }
}

/// `failure` as the failure of `data_type`.
fn failure_of(data_type: &str, failure: &RunFailure) -> DataTypeFailure {
    DataTypeFailure {
        data_type: data_type.to_owned(),
        code: failure.code,
        message: failure.message.clone(),
        retryable: failure.retryable,
    }
}

/// Failures of our own infrastructure (the event store, storage; see the `From` impls of [`RunFailure`]):
/// they end the attempt, whatever data type was running.
fn is_infrastructure(failure: &RunFailure) -> bool {
    failure.code.is_infrastructure()
}

impl BackupWorker {
    /// Runs one attempt: every data type in turn, then the manifest, then JobSucceeded or
    /// JobPartiallySucceeded. `Err` when the attempt failed as a whole (the caller discards its files and
    /// records JobFailed, or confirms a cancellation), which includes every data type failing.
    pub(super) async fn backup(&self, run: Run<'_>) -> Result<(), RunFailure> {
        let Run {
            metadata,
            worker,
            job_id,
            attempt,
            platform_id,
            source,
            artifacts,
            ..
        } = run;
        let connection = listbackup_commands::sources::connection_of(source)?;
        // The platform client keys the connection by its text.
        let connection_text = connection.to_string();
        let connection_id = connection_text.as_str();
        let started_at = Utc::now();
        let started = std::time::Instant::now();
        if let Err(err) = self
            .oauth
            .ensure_fresh(metadata, &connection, USE_WINDOW)
            .await
        {
            // An API-key connection has nothing to refresh; a failed refresh shows as the platform's 401.
            tracing::debug!(%connection_id, error = %ErrorChain(&err), "token refresh before the backup");
        }
        let mut credentials = self.credentials(metadata, connection).await?;
        let platform = platform_id.platform();
        // The job's data types (JobStarted): the source's, or the failed ones a retry runs again.
        let data_types = self.jobs.load(job_id).await?.0.data_types().to_vec();
        let mut manifest = artifacts.new_manifest(platform_id.as_str(), attempt, started_at);
        // The record version index of this attempt, staged as records are stored (issue 13 §4).
        let mut staged = StagedRecords::clear(&self.index_db, &job_id.to_string(), attempt).await?;
        let mut progress = Progress {
            data_types_done: 0,
            data_types_total: data_types.len() as u32,
            current_data_type: None,
            records: 0,
            bytes: 0,
        };
        let mut reporter = ProgressReporter::new(
            &self.nats,
            self.names.progress_subject(job_id),
            &self.jobs,
            metadata,
            job_id,
            worker,
            attempt,
        );
        let mut last_check = tokio::time::Instant::now();
        let mut failed: Vec<DataTypeFailure> = Vec::new();
        // The first failure's code, which a job whose data types all failed fails with (`summarise`).
        let mut first_code: Option<JobErrorCode> = None;
        // Set once the connection itself failed: every later data type fails with it, unasked.
        let mut connection_failure: Option<Unfetched> = None;
        for data_type in &data_types {
            if let Some(Unfetched { failure, .. }) = &connection_failure {
                // Not run at all: no progress boundary of its own, the one after the last data type counts it.
                let failure = failure_of(data_type, failure);
                self.record_failure(metadata, job_id, worker, &failure)
                    .await?;
                manifest.add_failure(failure.clone());
                failed.push(failure);
                progress.data_types_done += 1;
                continue;
            }
            progress.current_data_type = Some(data_type.clone());
            reporter.boundary(&progress).await?;
            // An incremental source continues from the last successful job's cursor for this data type; a
            // cursor the connector cannot read (another version's) means a full fetch, never a failure.
            let since: Option<IncrementalCursor> = source
                .incremental()
                .then(|| source.cursors().get(data_type))
                .flatten()
                .and_then(|cursor| serde_json::from_value(cursor.clone()).ok());
            // A file platform's data type stores its files' bytes too; an incremental run skips those whose
            // version the previous backup's manifest already holds (`files`).
            let mut contents = platform
                .listing(data_type)
                .and_then(|listing| FileContents::new(data_type, listing));
            let mut contents_since = None;
            if source.incremental() {
                if let Some(files) = contents.take() {
                    let (files, cursor) = self
                        .previous_contents(files, artifacts, source, data_type)
                        .await;
                    contents = Some(files);
                    contents_since = cursor;
                }
            }
            let mut writer = artifacts.data_type_writer(data_type).await?;
            staged.start(data_type).await?;
            let mut resume: Option<PageCursor> = None;
            let mut refreshed = false;
            // `Err`: this data type is not backed up, and why; the attempt goes on.
            let fetched: Result<_, Unfetched> = 'fetch: loop {
                let request =
                    FetchRequest::new(connection_id, platform, data_type, credentials.expose())
                        .since(since.clone())
                        .resume(resume.clone());
                let mut pager = match self.connector.pages(request.clone()) {
                    Ok(pager) => pager,
                    Err(err) => break 'fetch Err(err.into()),
                };
                loop {
                    let err = match pager.next_page().await {
                        Ok(Some(mut page)) => {
                            // The files' bytes first: a page fetched again after a token refresh then holds
                            // no record stored twice, and its files already stored are not downloaded again.
                            let mut failed = None;
                            if let Some(files) = contents.as_mut() {
                                let stored = self
                                    .store_contents(
                                        files,
                                        &request,
                                        artifacts,
                                        &page.records,
                                        &mut manifest,
                                        &mut progress,
                                        &mut last_check,
                                        job_id,
                                    )
                                    .await;
                                match stored {
                                    Ok(outcome) => failed = outcome,
                                    Err(failure) => {
                                        let _ = writer.abort().await;
                                        return Err(failure);
                                    }
                                }
                            }
                            match failed {
                                Some(err) => err,
                                None => {
                                    // Each record's id as the pager read it (the listing's id field).
                                    let ids = std::mem::take(&mut page.ids);
                                    for (record, id) in page.records.iter().zip(ids) {
                                        let ordinal = writer.records();
                                        writer.write_raw(record).await?;
                                        staged
                                            .add(
                                                page.parent.as_deref(),
                                                id.as_deref(),
                                                record.get(),
                                                ordinal,
                                            )
                                            .await?;
                                    }
                                    resume = Some(page.cursor.clone());
                                    progress.records += page.records.len() as u64;
                                    let stored_before = progress.bytes;
                                    progress.bytes = stored_before + writer.bytes_written();
                                    reporter.page(&progress, page.number).await?;
                                    progress.bytes = stored_before;
                                    // Between pages, at most once per interval: has someone asked the job to
                                    // stop?
                                    if last_check.elapsed() >= CANCEL_CHECK {
                                        last_check = tokio::time::Instant::now();
                                        if self.cancel_requested(job_id).await? {
                                            let _ = writer.abort().await;
                                            return Err(cancelled());
                                        }
                                    }
                                    continue;
                                }
                            }
                        }
                        Ok(None) => match contents.as_mut().and_then(FileContents::all_refused) {
                            // Not one file could be downloaded: the refusal is the connection's.
                            Some(err) => break 'fetch Err(err.into()),
                            None => break 'fetch Ok(pager.summary()),
                        },
                        Err(err) => err,
                    };
                    match err {
                        FetchError::Unauthorized if !refreshed => {
                            // An OAuth token can be revoked or rotated before its expiry: one refresh, then the
                            // same fetch continues after the last page stored.
                            refreshed = true;
                            match self
                                .refresh_rejected(metadata, connection, &credentials)
                                .await
                            {
                                Ok(Some(renewed)) => {
                                    credentials = renewed;
                                    continue 'fetch;
                                }
                                Ok(None) => {}
                                Err(err) if is_infrastructure(&err) => {
                                    let _ = writer.abort().await;
                                    return Err(err);
                                }
                                Err(err) => break 'fetch Err(Unfetched::connection(err)),
                            }
                            break 'fetch Err(FetchError::Unauthorized.into());
                        }
                        FetchError::Unauthorized => {
                            // Refused again right after a refresh: only the customer can fix this.
                            let failure = self.reauth_required(metadata, connection).await;
                            break 'fetch Err(Unfetched::connection(failure));
                        }
                        err => break 'fetch Err(err.into()),
                    }
                }
            };
            let summary = match fetched {
                Ok(summary) => summary,
                Err(unfetched) => {
                    // Nothing of the data type is stored (its files' bytes neither); its previous cursor stays
                    // the source's.
                    let _ = writer.abort().await;
                    if contents.is_some() {
                        progress.bytes -= manifest.drop_contents(data_type);
                        artifacts.discard_contents(data_type).await?;
                    }
                    let failure = failure_of(data_type, &unfetched.failure);
                    tracing::warn!(%job_id, %data_type, code = %failure.code, message = %failure.message,
                        connection_wide = unfetched.connection_wide, "data type not backed up");
                    self.record_failure(metadata, job_id, worker, &failure)
                        .await?;
                    manifest.add_failure(failure.clone());
                    failed.push(failure);
                    first_code.get_or_insert(unfetched.failure.code);
                    progress.data_types_done += 1;
                    if unfetched.connection_wide {
                        connection_failure = Some(unfetched);
                    }
                    continue;
                }
            };
            let file = writer.finish().await?;
            staged.finish(!summary.incremental, file.records).await?;
            progress.bytes += file.bytes;
            progress.data_types_done += 1;
            let since_json = summary
                .incremental
                .then(|| since.as_ref().and_then(|s| serde_json::to_value(s).ok()))
                .flatten()
                .or(contents_since);
            manifest.incremental |= summary.incremental || since_json.is_some();
            manifest.add_file(file.manifest_file(since_json));
            if let Some(next) = summary
                .next_cursor
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
            {
                manifest.cursors.insert(data_type.clone(), next);
            }
            if let Some(files) = &contents {
                // The next incremental run skips the files this manifest lists unchanged.
                manifest
                    .cursors
                    .insert(data_type.clone(), json!({ CONTENTS_OF: job_id }));
                let counts = files.counts();
                tracing::info!(%job_id, %data_type, downloaded = counts.downloaded,
                    unchanged = counts.unchanged, gone = counts.gone, refused = counts.refused,
                    bytes = counts.bytes, "file contents backed up");
            }
            self.jobs
                .record_resource(
                    metadata,
                    job_id,
                    worker,
                    BackedUp {
                        data_type: data_type.clone(),
                        records: file.records,
                        bytes: file.bytes,
                        sha256: file.sha256.clone(),
                        object: file.path.to_string(),
                    },
                )
                .await?;
        }
        progress.current_data_type = None;
        reporter.boundary(&progress).await?;
        if failed.len() == data_types.len() {
            // Nothing backed up: the job fails, with its data types' failures summed up (the caller discards
            // the attempt's files and records JobFailed).
            let summary = summarise(&failed, data_types.len()).unwrap_or_else(|| {
                unreachable!("a job has at least one data type, and every one failed")
            });
            return Err(RunFailure {
                code: first_code.unwrap_or(JobErrorCode::PlatformError),
                message: summary.message,
                retryable: summary.retryable,
            });
        }
        // The manifest is what makes the directory a backup: it is not written for a job another run has taken
        // over (its files are that run's now), and a cancellation that came in during the last data type
        // still wins over success.
        let (job, _) = self.jobs.load(job_id).await?;
        if !job.is_run_by(worker) {
            return Err(RunFailure {
                code: JobErrorCode::Superseded,
                message: "another run owns the job now".into(),
                retryable: false,
            });
        }
        if job.cancel_requested() {
            return Err(cancelled());
        }
        manifest.finished_at = Utc::now();
        let (sha256, path) = artifacts.write_manifest(&manifest).await?;
        let outcome = Succeeded {
            manifest: path.to_string(),
            manifest_sha256: sha256,
            records: manifest.records,
            bytes: manifest.bytes,
            // Only the backed-up data types have a cursor here: a failed one keeps its previous one.
            cursors: manifest.cursors.clone(),
        };
        let stored = Some((manifest.records, manifest.bytes));
        if failed.is_empty() {
            self.jobs.succeed(metadata, job_id, worker, outcome).await?;
            metrics::job_finished(
                platform_id.as_str(),
                metrics::Outcome::Succeeded,
                started.elapsed(),
                stored,
            );
        } else {
            tracing::warn!(%job_id, failed = failed.len(), of = data_types.len(),
                "backup partially succeeded: some data types failed");
            self.jobs
                .partially_succeed(metadata, job_id, worker, outcome)
                .await?;
            metrics::job_finished(
                platform_id.as_str(),
                metrics::Outcome::Partial,
                started.elapsed(),
                stored,
            );
        }
        Ok(())
    }

    /// Stores the bytes of a page's files (see `files`), looking for a cancellation between files (one can
    /// take long). `Ok(Some(err))`: the data type fails with `err` (or, for a 401, refreshes the token and
    /// goes on); `Err`: the run stops (storage, cancellation).
    #[allow(clippy::too_many_arguments)]
    async fn store_contents(
        &self,
        files: &mut FileContents,
        request: &FetchRequest<'_>,
        artifacts: &crate::storage::JobArtifacts,
        records: &[Box<serde_json::value::RawValue>],
        manifest: &mut crate::storage::Manifest,
        progress: &mut Progress,
        last_check: &mut tokio::time::Instant,
        job_id: JobId,
    ) -> Result<Option<FetchError>, RunFailure> {
        for record in records {
            match files
                .store(&self.connector, request, artifacts, record, manifest)
                .await
            {
                Ok(bytes) => progress.bytes += bytes,
                Err(ContentFailure::Storage(err)) => return Err(err.into()),
                Err(ContentFailure::Fetch(err)) => return Ok(Some(err)),
            }
            if last_check.elapsed() >= CANCEL_CHECK {
                *last_check = tokio::time::Instant::now();
                if self.cancel_requested(job_id).await? {
                    return Err(cancelled());
                }
            }
        }
        Ok(None)
    }

    /// The file contents of an incremental run, knowing the versions of the previous backup (the job its
    /// cursor names) and the cursor it ran from; without them (a first run, a manifest removed since), every
    /// file is downloaded.
    async fn previous_contents(
        &self,
        files: FileContents,
        artifacts: &crate::storage::JobArtifacts,
        source: &Source,
        data_type: &str,
    ) -> (FileContents, Option<serde_json::Value>) {
        let Some(cursor) = source.cursors().get(data_type) else {
            return (files, None);
        };
        let Some(previous_job) = cursor.get(CONTENTS_OF).and_then(|job| job.as_str()) else {
            return (files, None);
        };
        match artifacts.job(previous_job).read_manifest().await {
            Ok(Some(manifest)) => {
                let files = files.with_previous(previous_job, &manifest);
                let since = files.incremental().then(|| cursor.clone());
                (files, since)
            }
            Ok(None) => {
                tracing::warn!(%data_type, %previous_job,
                    "the previous backup's manifest is gone: every file is downloaded");
                (files, None)
            }
            Err(err) => {
                tracing::warn!(%data_type, %previous_job, error = %ErrorChain(&err),
                    "the previous backup's manifest cannot be read: every file is downloaded");
                (files, None)
            }
        }
    }

    /// ResourceBackupFailed for one data type of the running attempt.
    async fn record_failure(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
        worker: &str,
        failure: &DataTypeFailure,
    ) -> Result<(), RunFailure> {
        self.jobs
            .record_failure(
                metadata,
                job_id,
                worker,
                NotBackedUp {
                    data_type: failure.data_type.clone(),
                    code: failure.code,
                    message: failure.message.clone(),
                    retryable: failure.retryable,
                },
            )
            .await?;
        Ok(())
    }

    /// The connection's decrypted credentials, or a non-retryable failure when the connection is gone.
    pub(super) async fn credentials(
        &self,
        metadata: &EventMetadata,
        connection_id: ConnectionId,
    ) -> Result<SecretCredentials, RunFailure> {
        self.jobs
            .credentials(metadata, connection_id)
            .await?
            .ok_or_else(|| RunFailure {
                code: JobErrorCode::ConnectionMissing,
                message: "the source's connection or its credentials are gone".into(),
                retryable: false,
            })
    }

    /// After a 401: the renewed credentials of an OAuth connection (refreshed now, or by someone else just
    /// before), or `None` when there is nothing to refresh (an API key: the 401 is final).
    async fn refresh_rejected(
        &self,
        metadata: &EventMetadata,
        connection_id: ConnectionId,
        rejected: &SecretCredentials,
    ) -> Result<Option<SecretCredentials>, RunFailure> {
        let Some(token) = rejected.get(OAUTH_ACCESS_TOKEN) else {
            return Ok(None);
        };
        let outcome = self
            .oauth
            .refresh_rejected(metadata, &connection_id, token)
            .await
            .map_err(|err| RunFailure {
                code: JobErrorCode::Unavailable,
                message: format!("refreshing the access token failed: {err}"),
                retryable: true,
            })?;
        match outcome {
            RefreshOutcome::Refreshed { .. } | RefreshOutcome::Fresh => {
                Ok(Some(self.credentials(metadata, connection_id).await?))
            }
            RefreshOutcome::ReauthRequired => Err(reauth_failure()),
            RefreshOutcome::NotRefreshable => {
                // No refresh token: the rejected token cannot be replaced without the customer.
                Err(self.reauth_required(metadata, connection_id).await)
            }
            RefreshOutcome::Failed(err) => Err(RunFailure {
                code: JobErrorCode::Unavailable,
                message: format!(
                    "refreshing the access token failed: {}",
                    listbackup_commands::error_chain(&err)
                ),
                retryable: true,
            }),
        }
    }

    /// Marks the connection as needing the customer to reconnect, and the failure the job ends with.
    async fn reauth_required(
        &self,
        metadata: &EventMetadata,
        connection_id: ConnectionId,
    ) -> RunFailure {
        if let Err(err) = self
            .oauth
            .require_reauth(
                metadata,
                &connection_id,
                "the platform rejected the access token after a refresh",
            )
            .await
        {
            tracing::warn!(%connection_id, error = %ErrorChain(&err), "recording that the connection needs reauthorization");
        }
        reauth_failure()
    }
}
