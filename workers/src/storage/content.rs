use object_store::{MultipartUpload, PutPayload};
use sha2::{Digest, Sha256};

use super::encryption::{FileEncryption, FileEncryptor, CHUNK_SIZE};
use super::{ObjectPath, StorageError};

/// Streams one file's bytes, as the platform sent them, into `{dataType}/{key}` of the job's directory:
/// uploaded in parts of the store's part size as they arrive, hashed on the way. Not gzipped: most files
/// (images, video, archives, Office documents, PDFs) are compressed already, so gzip would spend CPU to
/// save nothing, and stored as they are the bytes are the file (a restore uploads them, the platform's own
/// checksum still applies). Nothing is visible at the path until [`finish`](Self::finish) completes the
/// upload; a writer dropped or [`abort`](Self::abort)ed before that leaves nothing behind.
///
/// Memory: one part (the buffer filling up), whatever the size of the file.
pub struct ContentWriter {
    name: String,
    path: ObjectPath,
    /// `None` once finished, aborted, or after a failed upload (which aborts it).
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: Vec<u8>,
    part_size: usize,
    hasher: Sha256,
    bytes: u64,
    parts: u32,
    peak_buffered: usize,
    /// Encrypts each part on its way to the store (issue 13 §2); `None`: stored as the platform sent them.
    encryption: Option<FileEncryptor>,
}

/// A file's bytes stored completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredContent {
    /// Relative to the job's directory: `{dataType}/{key}`.
    pub name: String,
    pub path: ObjectPath,
    pub bytes: u64,
    /// Hex sha256 of the bytes (the plaintext, as the platform sent them).
    pub sha256: String,
    /// How the bytes are encrypted in the store, with the stored ciphertext's size and sha256.
    pub encryption: Option<FileEncryption>,
}

impl ContentWriter {
    pub(super) fn new(
        upload: Box<dyn MultipartUpload>,
        path: ObjectPath,
        name: String,
        part_size: usize,
    ) -> Self {
        Self {
            name,
            path,
            upload: Some(upload),
            buffer: Vec::new(),
            part_size,
            hasher: Sha256::new(),
            bytes: 0,
            parts: 0,
            peak_buffered: 0,
            encryption: None,
        }
    }

    /// Encrypts the bytes with `encryptor` on their way to the store (before anything is written).
    pub(super) fn with_encryption(mut self, encryptor: Option<FileEncryptor>) -> Self {
        self.encryption = encryptor;
        self
    }

    /// Appends bytes, uploading each part as soon as it is full: at most one part is held.
    pub async fn write(&mut self, mut chunk: &[u8]) -> Result<(), StorageError> {
        if self.upload.is_none() {
            return Err(StorageError::WriterClosed);
        }
        self.hasher.update(chunk);
        self.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            if self.buffer.capacity() == 0 {
                // One allocation per part, never grown past it.
                self.buffer.reserve_exact(self.part_size);
            }
            let room = self.part_size - self.buffer.len();
            let (now, rest) = chunk.split_at(room.min(chunk.len()));
            self.buffer.extend_from_slice(now);
            chunk = rest;
            self.peak_buffered = self.peak_buffered.max(self.buffer.len());
            if self.buffer.len() >= self.part_size {
                let part = std::mem::take(&mut self.buffer);
                self.upload_part(part).await?;
            }
        }
        Ok(())
    }

    /// Uploads the last part and completes the upload: only now do the bytes appear at their path.
    pub async fn finish(mut self) -> Result<StoredContent, StorageError> {
        let last = std::mem::take(&mut self.buffer);
        // An empty file is one empty part: a multipart upload needs at least one. Encrypted, the last part
        // always holds the sealed last chunk.
        if !last.is_empty() || self.parts == 0 || self.encryption.is_some() {
            self.upload_part_of(last, true).await?;
        }
        let mut upload = self.upload.take().ok_or(StorageError::WriterClosed)?;
        if let Err(error) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(error.into());
        }
        Ok(StoredContent {
            name: std::mem::take(&mut self.name),
            path: std::mem::take(&mut self.path),
            bytes: self.bytes,
            sha256: hex::encode(std::mem::take(&mut self.hasher).finalize()),
            encryption: self.encryption.as_ref().map(FileEncryptor::record),
        })
    }

    /// Gives the file up and waits for its partial upload to be removed.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        match self.upload.take() {
            Some(mut upload) => Ok(upload.abort().await?),
            None => Ok(()),
        }
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), StorageError> {
        self.upload_part_of(part, false).await
    }

    /// Uploads one part: as it is, or encrypted (`last` seals the last chunk).
    async fn upload_part_of(&mut self, part: Vec<u8>, last: bool) -> Result<(), StorageError> {
        let part = match &mut self.encryption {
            Some(encryptor) => {
                let mut sealed =
                    Vec::with_capacity(part.len() + CHUNK_SIZE + part.len() / 1024 + 512);
                encryptor.update(&part, &mut sealed)?;
                if last {
                    encryptor.finish(&mut sealed)?;
                }
                drop(part);
                if sealed.is_empty() {
                    // Less than a chunk so far: it goes with the next part.
                    return Ok(());
                }
                sealed
            }
            None => part,
        };
        let mut upload = self.upload.take().ok_or(StorageError::WriterClosed)?;
        // One part in flight at a time: that is what bounds memory.
        match upload.put_part(PutPayload::from(part)).await {
            Ok(()) => {
                self.parts += 1;
                self.upload = Some(upload);
                Ok(())
            }
            Err(error) => {
                // A file with a hole must never be completed.
                let _ = upload.abort().await;
                Err(error.into())
            }
        }
    }

    /// `{dataType}/{key}`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Parts uploaded so far.
    pub fn parts_uploaded(&self) -> u32 {
        self.parts
    }

    /// The most bytes this writer ever held before uploading them: the memory bound, tested.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }
}

impl Drop for ContentWriter {
    fn drop(&mut self) {
        // Not finished: abort the multipart upload (see `NdjsonWriter`'s drop).
        if let Some(mut upload) = self.upload.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

impl std::fmt::Debug for ContentWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentWriter")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

/// The key a file's id is stored under, one path segment: the id itself when it is a plain name (letters,
/// digits, `_`, `-`, `.`, `:`, not starting with a dot, at most 200 bytes: Drive's, Box's and Dropbox's
/// `id:…` ids all are), otherwise `sha256-<hex of the id>` (the manifest maps every id to its key).
pub fn content_key(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if plain {
        id.to_owned()
    } else {
        format!("sha256-{}", hex::encode(Sha256::digest(id.as_bytes())))
    }
}
