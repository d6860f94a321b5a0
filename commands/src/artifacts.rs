//! Reading a job's stored backup: its manifest and its files. Storage belongs to the workers; the API only
//! knows this trait (as with [`crate::sampling`]), and the service wires the workers' store in.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use listbackup_domain::job::manifest::Manifest;
use listbackup_domain::{JobId, SourceId};

use crate::bus::BoxError;

/// Where one job's artifacts live: under the account, the source and the job (the store spells the ids as
/// their hyphenated text in its paths).
#[derive(Debug, Clone, Copy)]
pub struct JobLocation<'a> {
    pub account_id: &'a str,
    pub source_id: SourceId,
    pub job_id: JobId,
}

/// A stored file's bytes as a download gives them: data files gzipped, decrypted when stored encrypted.
///
/// A stream's error, like every error of [`JobFiles`], is the store's own, kept whole (a log prints its chain).
pub type FileStream = BoxStream<'static, Result<Bytes, BoxError>>;

/// What reading one stored file back found (verification, issue 13 §2 and §3).
#[derive(Debug)]
pub struct StoredCheck {
    /// Hex sha256 of the bytes as stored: the ciphertext of an encrypted file.
    pub stored_sha256: String,
    /// Size of the bytes as stored.
    pub stored_bytes: u64,
    /// For an encrypted file whose key is available: `Ok` with the plaintext's hex sha256 and size when
    /// every chunk authenticates, `Err` with why not. `None` for a file stored unencrypted, or when its key
    /// is gone (an erased account: only the ciphertext can be checked).
    pub plaintext: Option<Result<(String, u64), BoxError>>,
}

pub trait JobFiles: Send + Sync {
    /// The stored `manifest.json`, parsed; `None` while the job's artifacts are not complete.
    fn manifest<'a>(
        &'a self,
        job: JobLocation<'a>,
    ) -> BoxFuture<'a, Result<Option<Manifest>, BoxError>>;

    /// One stored file of the job, as a download gives it (decrypted); `None` when it is not stored.
    fn open<'a>(
        &'a self,
        job: JobLocation<'a>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FileStream>, BoxError>>;

    /// One stored data file of the job from the gzip member that holds line `line` (0-based) on, as a
    /// download gives it from that member's start: the line the stream begins with (`line` itself or one
    /// before it; 0 for a file without seek points), and the stream. `None` when it is not stored. What
    /// comes before that member is neither fetched nor decrypted (issue 13 §4: pages deep in large backups).
    fn open_at_line<'a>(
        &'a self,
        job: JobLocation<'a>,
        name: &'a str,
        line: u64,
    ) -> BoxFuture<'a, Result<Option<(u64, FileStream)>, BoxError>>;

    /// Reads one stored file back in one pass, hashing what is stored and, when it is encrypted and its key
    /// is available, checking that it decrypts; `None` when it is not stored.
    fn check<'a>(
        &'a self,
        job: JobLocation<'a>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredCheck>, BoxError>>;
}
