//! The background verifier (issue 13 §3): reads stored backups back at a configured rate
//! (`LISTBACKUP_VERIFY_PER_HOUR` per process; 0: off), the least recently verified first, so every backup is
//! checked in turn. Each check is the same use case as `POST /jobs/{id}/verify`
//! ([`BackupVerifier::verify`]) and records `BackupVerified` or `BackupCorrupted` with actor `system`.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use listbackup_commands::verification::BackupVerifier;
use listbackup_commands::{BoxError, EventMetadata};
use listbackup_domain::job::Verification;
use listbackup_domain::ErrorChain;
use listbackup_projections::read_models::jobs::least_recently_verified;
use tokio_util::sync::CancellationToken;

/// The actor recorded on the verifier's events.
pub const ACTOR: &str = "system";

/// Samples backups and verifies them.
pub struct BackgroundVerifier {
    pool: Pool,
    verifier: Arc<BackupVerifier>,
    per_hour: u32,
}

impl BackgroundVerifier {
    pub fn new(pool: Pool, verifier: Arc<BackupVerifier>, per_hour: u32) -> Self {
        Self {
            pool,
            verifier,
            per_hour,
        }
    }

    /// Verifies one backup every hour / `per_hour` until `shutdown`; returns at once when `per_hour` is 0.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.per_hour == 0 {
            return;
        }
        let every = Duration::from_secs_f64(3600.0 / f64::from(self.per_hour));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(err) = self.verify_one().await {
                tracing::warn!(error = %ErrorChain(&*err), "background verification failed; trying the next one later");
            }
        }
    }

    /// Verifies the least recently verified backup, if any. Fails with the database's error or the
    /// verification's ([`CommandError`](listbackup_commands::CommandError)), kept whole for the log's chain.
    pub async fn verify_one(&self) -> Result<Option<Verification>, BoxError> {
        let next = {
            let client = self.pool.get().await?;
            least_recently_verified(&client).await?
        };
        let Some((account_id, job_id)) = next else {
            return Ok(None);
        };
        let metadata = EventMetadata::for_request(
            &account_id,
            ACTOR.to_owned(),
            &uuid::Uuid::now_v7().to_string(),
        );
        let (outcome, _) = self.verifier.verify(&metadata, job_id).await?;
        match &outcome {
            Verification::Verified { files, bytes } => {
                tracing::info!(%job_id, files, bytes, "backup verified")
            }
            Verification::Corrupted {
                file,
                expected,
                found,
            } => tracing::warn!(%job_id, %file, %expected, %found, "backup corrupted"),
        }
        Ok(Some(outcome))
    }
}
