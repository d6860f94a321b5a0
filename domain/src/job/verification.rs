//! The outcome of reading a stored backup back (`POST /jobs/{id}/verify` and the background verifier).

use serde::{Deserialize, Serialize};

use super::JobEvent;

/// What reading a backup's files back found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "status")]
pub enum Verification {
    /// Every file matches the manifest's sha256, and the manifest the job's recorded `manifestSha256`.
    Verified { files: u64, bytes: u64 },
    /// The first file found not to match: `found` is its sha256 now, or `missing`.
    Corrupted {
        file: String,
        expected: String,
        found: String,
    },
}

impl Verification {
    /// The event recording it on the job's stream.
    pub fn into_event(self) -> JobEvent {
        match self {
            Self::Verified { files, bytes } => JobEvent::BackupVerified { files, bytes },
            Self::Corrupted {
                file,
                expected,
                found,
            } => JobEvent::BackupCorrupted {
                file,
                expected,
                found,
            },
        }
    }
}
