//! Reading a job's stored backup: its manifest and its files. Storage belongs to the workers; the API only
//! knows this trait (as with [`crate::sampling`]), and the service wires the workers' store in.

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use listbackup_domain::job::manifest::Manifest;

/// Where one job's artifacts live.
#[derive(Debug, Clone, Copy)]
pub struct JobLocation<'a> {
    pub account_id: &'a str,
    pub source_id: &'a str,
    pub job_id: &'a str,
}

/// A stored file's bytes, streamed as stored (data files gzipped).
pub type FileStream = BoxStream<'static, Result<Bytes, String>>;

pub trait JobFiles: Send + Sync {
    /// The stored `manifest.json`, parsed; `None` while the job's artifacts are not complete.
    fn manifest<'a>(
        &'a self,
        job: JobLocation<'a>,
    ) -> BoxFuture<'a, Result<Option<Manifest>, String>>;

    /// One stored file of the job; `None` when it is not stored.
    fn open<'a>(
        &'a self,
        job: JobLocation<'a>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<FileStream>, String>>;
}
