//! Progress of a running backup, at two grains (DESIGN §5):
//! - fine: every page, on core NATS `<prefix>.progress.<jobId>`. Not persisted, lost when nobody listens:
//!   it is for live displays (`GET /jobs/{id}/events`), which also follow the read model;
//! - coarse: `JobProgressed` in the event log, at most once per [`PERSIST_INTERVAL`] and at every data type
//!   boundary, so the history shows how a job went without one event per page.

use std::time::Duration;

use chrono::{DateTime, Utc};
use listbackup_commands::jobs::{JobCommands, Progress};
use listbackup_commands::{CommandError, EventMetadata};
use listbackup_domain::ErrorChain;
use listbackup_domain::JobId;
use serde::Serialize;
use tokio::time::Instant;

/// At most one `JobProgressed` per job per interval (boundaries aside).
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(1);

/// The body of a message on `<prefix>.progress.<jobId>`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressMessage<'a> {
    pub job_id: JobId,
    pub attempt: u32,
    #[serde(flatten)]
    pub progress: &'a Progress,
    /// Pages fetched of the current data type.
    pub pages: u64,
    pub at: DateTime<Utc>,
}

/// Reports one attempt's progress; owned by the run.
pub struct ProgressReporter<'a> {
    nats: &'a async_nats::Client,
    subject: String,
    jobs: &'a JobCommands,
    metadata: &'a EventMetadata,
    job_id: JobId,
    worker: &'a str,
    attempt: u32,
    last_persisted: Option<Instant>,
}

impl<'a> ProgressReporter<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        nats: &'a async_nats::Client,
        subject: String,
        jobs: &'a JobCommands,
        metadata: &'a EventMetadata,
        job_id: JobId,
        worker: &'a str,
        attempt: u32,
    ) -> Self {
        Self {
            nats,
            subject,
            jobs,
            metadata,
            job_id,
            worker,
            attempt,
            last_persisted: None,
        }
    }

    /// After a page: always on NATS; in the log when the last `JobProgressed` is an interval old.
    pub async fn page(&mut self, progress: &Progress, pages: u64) -> Result<(), CommandError> {
        self.publish(progress, pages).await;
        if self
            .last_persisted
            .is_none_or(|at| at.elapsed() >= PERSIST_INTERVAL)
        {
            self.persist(progress).await?;
        }
        Ok(())
    }

    /// At a data type boundary (a data type begins, or the last one ended): always persisted.
    pub async fn boundary(&mut self, progress: &Progress) -> Result<(), CommandError> {
        self.publish(progress, 0).await;
        self.persist(progress).await
    }

    async fn persist(&mut self, progress: &Progress) -> Result<(), CommandError> {
        self.jobs
            .record_progress(self.metadata, self.job_id, self.worker, progress.clone())
            .await?;
        self.last_persisted = Some(Instant::now());
        Ok(())
    }

    /// Best effort: a lost progress message costs a display update, never a backup.
    async fn publish(&self, progress: &Progress, pages: u64) {
        let message = ProgressMessage {
            job_id: self.job_id,
            attempt: self.attempt,
            progress,
            pages,
            at: Utc::now(),
        };
        let body = match serde_json::to_vec(&message) {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(
                    error = %ErrorChain(&err),
                    "progress message not encoded"
                );
                return;
            }
        };
        if let Err(err) = self.nats.publish(self.subject.clone(), body.into()).await {
            tracing::debug!(
                error = %ErrorChain(&err),
                job_id = %self.job_id,
                "progress not published"
            );
        }
    }
}
