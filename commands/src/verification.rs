//! Verifying a stored backup (issue 13 §3): its files are read back from storage and hashed, each checked
//! against the manifest's sha256, and the manifest itself against the `manifestSha256` its job recorded in
//! the event log (`JobSucceeded` / `JobPartiallySucceeded`). The outcome is recorded on the job's stream
//! (`BackupVerified` or `BackupCorrupted`). `POST /jobs/{id}/verify` and the background verifier both run
//! [`BackupVerifier::verify`].
//!
//! A file stored encrypted (issue 13 §2, its manifest entry's `encryption`) is checked twice in one read:
//! the stored ciphertext against `encryption.ciphertextSha256`, then, when the account's data key is still
//! there, its decryption (every chunk must authenticate) against the plaintext `sha256`. After an account's
//! erasure only the ciphertext can be checked, and is.

use std::sync::Arc;

use futures::StreamExt;
use listbackup_domain::job::manifest::{Manifest, MANIFEST_FILE as MANIFEST};
use listbackup_domain::job::Verification;
use listbackup_domain::{JobId, ResourceKind};
use sha2::{Digest, Sha256};

use crate::artifacts::{JobFiles, JobLocation};
use crate::bus::{BoxError, CommandError, Committed};
use crate::jobs::JobCommands;
use crate::metadata::EventMetadata;

/// What `found` says of a file that could not be read at all.
pub const MISSING: &str = "missing";

/// What `found` says of an encrypted file whose stored bytes match their sha256 but do not decrypt (a
/// chunk does not authenticate, or the file names another key).
pub const UNDECRYPTABLE: &str = "undecryptable";

/// Reads backups back and records what it found.
pub struct BackupVerifier {
    jobs: Arc<JobCommands>,
    files: Arc<dyn JobFiles>,
}

impl BackupVerifier {
    pub fn new(jobs: Arc<JobCommands>, files: Arc<dyn JobFiles>) -> Self {
        Self { jobs, files }
    }

    /// Verifies the backup of job `job_id` for `metadata.account_id` and records the outcome (returned with
    /// the commit that recorded it). Not found for a job of another account (or none); a conflict for a job
    /// without a backup; gone once it has expired.
    pub async fn verify(
        &self,
        metadata: &EventMetadata,
        job_id: JobId,
    ) -> Result<(Verification, Committed), CommandError> {
        let (job, _) = self.jobs.load(job_id).await?;
        if job.account_id() != metadata.account_id {
            return Err(CommandError::not_found(ResourceKind::Job));
        }
        job.check_backup()
            .map_err(|e| CommandError::from(cqrs_es::AggregateError::UserError(e)))?;
        let expected = job.manifest_sha256().unwrap_or_default().to_owned();
        // A stored backup always names its source; a job without one has no files to verify.
        let Some(source_id) = job.source_id() else {
            return Err(CommandError::not_found(ResourceKind::Job));
        };
        let location = JobLocation {
            account_id: &metadata.account_id,
            source_id,
            job_id,
        };
        let outcome = self.check(location, &expected).await?;
        let committed = self
            .jobs
            .record_verification(metadata, job_id, outcome.clone())
            .await?;
        Ok((outcome, committed))
    }

    /// Reads every file back; the first mismatch is the outcome.
    async fn check(
        &self,
        location: JobLocation<'_>,
        manifest_sha256: &str,
    ) -> Result<Verification, CommandError> {
        let corrupted = |file: &str, expected: &str, found: String| Verification::Corrupted {
            file: file.to_owned(),
            expected: expected.to_owned(),
            found,
        };
        let Some(manifest) = self.read(location, MANIFEST, true).await? else {
            return Ok(corrupted(MANIFEST, manifest_sha256, MISSING.into()));
        };
        if manifest.sha256 != manifest_sha256 {
            return Ok(corrupted(MANIFEST, manifest_sha256, manifest.sha256));
        }
        let stored: Manifest = serde_json::from_slice(&manifest.body)
            .map_err(|e| CommandError::store("the manifest does not parse", e))?;
        let mut files = 1u64;
        let mut bytes = manifest.size;
        let unavailable =
            |e: BoxError| CommandError::unavailable("backup storage is unavailable", e);
        // Each data file, and each file's bytes (in this job's directory or the earlier one's it names).
        let entries = (stored
            .files
            .iter()
            .map(|f| (&f.name, &f.sha256, &f.encryption)))
        .chain(
            stored
                .contents
                .iter()
                .map(|c| (&c.name, &c.sha256, &c.encryption)),
        );
        for (name, sha256, encryption) in entries {
            // What is stored: the ciphertext of an encrypted file, the file itself otherwise.
            let stored_sha256 = encryption.as_ref().map_or(sha256, |e| &e.ciphertext_sha256);
            let check = self
                .files
                .check(location, name)
                .await
                .map_err(unavailable)?;
            let Some(check) = check else {
                return Ok(corrupted(name, stored_sha256, MISSING.into()));
            };
            if check.stored_sha256 != *stored_sha256 {
                return Ok(corrupted(name, stored_sha256, check.stored_sha256));
            }
            // An encrypted file whose key is still there must also decrypt to what the manifest says.
            match check.plaintext {
                Some(Ok((plaintext_sha256, _))) if plaintext_sha256 != *sha256 => {
                    return Ok(corrupted(name, sha256, plaintext_sha256))
                }
                Some(Err(_)) => return Ok(corrupted(name, sha256, UNDECRYPTABLE.into())),
                _ => {}
            }
            files += 1;
            bytes += check.stored_bytes;
        }
        Ok(Verification::Verified { files, bytes })
    }

    /// Reads the stored manifest back, hashing it as it streams; `keep` keeps its bytes. `None` when it is
    /// not stored.
    async fn read(
        &self,
        location: JobLocation<'_>,
        name: &str,
        keep: bool,
    ) -> Result<Option<ReadBack>, CommandError> {
        let unavailable =
            |e: BoxError| CommandError::unavailable("backup storage is unavailable", e);
        let Some(mut stream) = self.files.open(location, name).await.map_err(unavailable)? else {
            return Ok(None);
        };
        let mut hasher = Sha256::new();
        let mut body = Vec::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(unavailable)?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            if keep {
                body.extend_from_slice(&chunk);
            }
        }
        Ok(Some(ReadBack {
            sha256: hex::encode(hasher.finalize()),
            size,
            body,
        }))
    }
}

/// A file read back.
struct ReadBack {
    sha256: String,
    size: u64,
    /// Its bytes, when asked to keep them.
    body: Vec<u8>,
}
