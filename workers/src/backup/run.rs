//! One attempt of one job: every data type in turn from the platform into storage, then the manifest, then
//! the outcome. Credentials come from the vault; an OAuth token rejected mid-run is refreshed once.

use chrono::Utc;
use listbackup_commands::jobs::{BackedUp, Progress, Succeeded};
use listbackup_commands::oauth::{RefreshOutcome, USE_WINDOW};
use listbackup_commands::vault::SecretCredentials;
use listbackup_commands::EventMetadata;
use listbackup_domain::platform::OAUTH_ACCESS_TOKEN;

use super::progress::ProgressReporter;
use super::{cancelled, reauth_failure, BackupWorker, Run, RunFailure, CANCEL_CHECK};
use crate::connectors::{FetchError, FetchRequest, IncrementalCursor, PageCursor};

impl BackupWorker {
    /// Runs one attempt: every data type in turn, then the manifest, then JobSucceeded.
    pub(super) async fn backup(&self, run: Run<'_>) -> Result<(), RunFailure> {
        let Run {
            metadata,
            worker,
            job_id,
            attempt,
            platform_id,
            source,
            artifacts,
        } = run;
        let connection_id = source.connection_id();
        let started_at = Utc::now();
        if let Err(err) = self
            .oauth
            .ensure_fresh(metadata, connection_id, USE_WINDOW)
            .await
        {
            // An API-key connection has nothing to refresh; a failed refresh shows as the platform's 401.
            tracing::debug!(%connection_id, error = %err, "token refresh before the backup");
        }
        let mut credentials = self.credentials(metadata, connection_id).await?;
        let platform = platform_id.platform();
        let data_types = source.data_types();
        let mut manifest = artifacts.new_manifest(platform_id.as_str(), attempt, started_at);
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
        for data_type in data_types {
            progress.current_data_type = Some(data_type.clone());
            reporter.boundary(&progress).await?;
            // An incremental source continues from the last successful job's cursor for this data type; a
            // cursor the connector cannot read (another version's) means a full fetch, never a failure.
            let since: Option<IncrementalCursor> = source
                .incremental()
                .then(|| source.cursors().get(data_type))
                .flatten()
                .and_then(|cursor| serde_json::from_value(cursor.clone()).ok());
            let mut writer = artifacts.data_type_writer(data_type).await?;
            let mut resume: Option<PageCursor> = None;
            let mut refreshed = false;
            let summary = 'fetch: loop {
                let request =
                    FetchRequest::new(connection_id, platform, data_type, credentials.expose())
                        .since(since.clone())
                        .resume(resume.clone());
                let mut pager = match self.connector.pages(request) {
                    Ok(pager) => pager,
                    Err(err) => {
                        let _ = writer.abort().await;
                        return Err(err.into());
                    }
                };
                loop {
                    let page = match pager.next_page().await {
                        Ok(Some(page)) => page,
                        Ok(None) => break 'fetch pager.summary(),
                        Err(FetchError::Unauthorized) if !refreshed => {
                            // An OAuth token can be revoked or rotated before its expiry: one refresh, then the
                            // same fetch continues after the last page stored.
                            refreshed = true;
                            match self
                                .refresh_rejected(metadata, connection_id, &credentials)
                                .await
                            {
                                Ok(Some(renewed)) => {
                                    credentials = renewed;
                                    continue 'fetch;
                                }
                                Ok(None) => {}
                                Err(err) => {
                                    let _ = writer.abort().await;
                                    return Err(err);
                                }
                            }
                            let _ = writer.abort().await;
                            return Err(FetchError::Unauthorized.into());
                        }
                        Err(FetchError::Unauthorized) => {
                            // Refused again right after a refresh: only the customer can fix this.
                            let _ = writer.abort().await;
                            return Err(self.reauth_required(metadata, connection_id).await);
                        }
                        Err(err) => {
                            let _ = writer.abort().await;
                            return Err(err.into());
                        }
                    };
                    for record in &page.records {
                        writer.write_raw(record).await?;
                    }
                    resume = Some(page.cursor.clone());
                    progress.records += page.records.len() as u64;
                    let stored_before = progress.bytes;
                    progress.bytes = stored_before + writer.bytes_written();
                    reporter.page(&progress, page.number).await?;
                    progress.bytes = stored_before;
                    // Between pages, at most once per interval: has someone asked the job to stop?
                    if last_check.elapsed() >= CANCEL_CHECK {
                        last_check = tokio::time::Instant::now();
                        if self.cancel_requested(job_id).await? {
                            let _ = writer.abort().await;
                            return Err(cancelled());
                        }
                    }
                }
            };
            let file = writer.finish().await?;
            progress.bytes += file.bytes;
            progress.data_types_done += 1;
            let since_json = summary
                .incremental
                .then(|| since.as_ref().and_then(|s| serde_json::to_value(s).ok()))
                .flatten();
            manifest.incremental |= summary.incremental;
            manifest.add_file(&file, since_json);
            if let Some(next) = summary
                .next_cursor
                .as_ref()
                .and_then(|c| serde_json::to_value(c).ok())
            {
                manifest.cursors.insert(data_type.clone(), next);
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
        // The manifest is what makes the directory a backup: it is not written for a job another run has taken
        // over (its files are that run's now), and a cancellation that came in during the last data type
        // still wins over success.
        let (job, _) = self.jobs.load(job_id).await?;
        if !job.is_run_by(worker) {
            return Err(RunFailure {
                code: "SUPERSEDED",
                message: "another run owns the job now".into(),
                retryable: false,
            });
        }
        if job.cancel_requested() {
            return Err(cancelled());
        }
        manifest.finished_at = Utc::now();
        let (sha256, path) = artifacts.write_manifest(&manifest).await?;
        self.jobs
            .succeed(
                metadata,
                job_id,
                worker,
                Succeeded {
                    manifest: path.to_string(),
                    manifest_sha256: sha256,
                    records: manifest.records,
                    bytes: manifest.bytes,
                    cursors: manifest.cursors.clone(),
                },
            )
            .await?;
        Ok(())
    }

    /// The connection's decrypted credentials, or a non-retryable failure when the connection is gone.
    async fn credentials(
        &self,
        metadata: &EventMetadata,
        connection_id: &str,
    ) -> Result<SecretCredentials, RunFailure> {
        self.jobs
            .credentials(metadata, connection_id)
            .await?
            .ok_or_else(|| RunFailure {
                code: "CONNECTION_MISSING",
                message: "the source's connection or its credentials are gone".into(),
                retryable: false,
            })
    }

    /// After a 401: the renewed credentials of an OAuth connection (refreshed now, or by someone else just
    /// before), or `None` when there is nothing to refresh (an API key: the 401 is final).
    async fn refresh_rejected(
        &self,
        metadata: &EventMetadata,
        connection_id: &str,
        rejected: &SecretCredentials,
    ) -> Result<Option<SecretCredentials>, RunFailure> {
        let Some(token) = rejected.get(OAUTH_ACCESS_TOKEN) else {
            return Ok(None);
        };
        let outcome = self
            .oauth
            .refresh_rejected(metadata, connection_id, token)
            .await
            .map_err(|err| RunFailure {
                code: "UNAVAILABLE",
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
            RefreshOutcome::Failed(reason) => Err(RunFailure {
                code: "UNAVAILABLE",
                message: format!("refreshing the access token failed: {reason}"),
                retryable: true,
            }),
        }
    }

    /// Marks the connection as needing the customer to reconnect, and the failure the job ends with.
    async fn reauth_required(&self, metadata: &EventMetadata, connection_id: &str) -> RunFailure {
        if let Err(err) = self
            .oauth
            .require_reauth(
                metadata,
                connection_id,
                "the platform rejected the access token after a refresh",
            )
            .await
        {
            tracing::warn!(%connection_id, error = %err, "recording that the connection needs reauthorization");
        }
        reauth_failure()
    }
}
