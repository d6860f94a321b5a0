use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, PutPayload};
use sha2::{Digest, Sha256};

use listbackup_commands::data_keys::{DataKey, DataKeys};

use super::encryption::{
    decrypting, decrypting_with, FileDecryptor, FileEncryption, FileEncryptor,
};
use super::{content_key, ContentWriter, Manifest, NdjsonWriter, ObjectPath, StorageError};

/// The manifest's file name in a job's directory.
pub use listbackup_domain::job::manifest::MANIFEST_FILE as MANIFEST_NAME;

const DATA_SUFFIX: &str = ".ndjson.gz";

/// One stored object of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactInfo {
    /// The file name in the job's directory (`customers.ndjson.gz`, `manifest.json`).
    pub name: String,
    pub path: ObjectPath,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// One job's directory: `accounts/{accountId}/sources/{sourceId}/jobs/{jobId}/`.
#[derive(Debug, Clone)]
pub struct JobArtifacts {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    gzip_level: u32,
    account_id: String,
    source_id: String,
    job_id: String,
    dir: ObjectPath,
    /// Set when the store is a local directory (see [`JobArtifacts::discard`]).
    local: Option<Arc<LocalFileSystem>>,
    /// Set when files are encrypted (see [`super::BackupStore::with_data_keys`]).
    data_keys: Option<DataKeys>,
    /// The account's data key for writing, fetched once for all the job's files.
    write_key: Arc<tokio::sync::OnceCell<Arc<DataKey>>>,
    /// False only for benchmarks (see [`super::BackupStore::writing_plaintext`]).
    encrypt_writes: bool,
}

impl JobArtifacts {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        part_size: usize,
        account_id: &str,
        source_id: &str,
        job_id: &str,
    ) -> Self {
        // `child` percent-encodes whatever would not be a single safe segment (`/`, `..`), so no id can
        // reach outside its directory.
        let dir = ObjectPath::from("accounts")
            .child(account_id)
            .child("sources")
            .child(source_id)
            .child("jobs")
            .child(job_id);
        Self {
            store,
            part_size,
            gzip_level: super::DEFAULT_GZIP_LEVEL,
            account_id: account_id.to_owned(),
            source_id: source_id.to_owned(),
            job_id: job_id.to_owned(),
            dir,
            local: None,
            data_keys: None,
            write_key: Arc::default(),
            encrypt_writes: true,
        }
    }

    pub(super) fn with_data_keys(mut self, data_keys: Option<DataKeys>) -> Self {
        self.data_keys = data_keys;
        self
    }

    pub(super) fn encrypting_writes(mut self, encrypt: bool) -> Self {
        self.encrypt_writes = encrypt;
        self
    }

    /// An encryptor for a new file at `path`, with the account's data key (made on the account's first
    /// file); `None` when this store does not encrypt. Fails for an erased account: nothing is stored for
    /// it any more.
    async fn encryptor(&self, path: &ObjectPath) -> Result<Option<FileEncryptor>, StorageError> {
        let Some(data_keys) = self.data_keys.as_ref().filter(|_| self.encrypt_writes) else {
            return Ok(None);
        };
        let key = self
            .write_key
            .get_or_try_init(|| async {
                data_keys.for_writing(&self.account_id).await.map(Arc::new)
            })
            .await?;
        Ok(Some(FileEncryptor::new(key, path.as_ref())?))
    }

    pub(super) fn with_gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level;
        self
    }

    pub(super) fn with_local(mut self, local: Option<Arc<LocalFileSystem>>) -> Self {
        self.local = local;
        self
    }

    /// The job's directory.
    pub fn dir(&self) -> &ObjectPath {
        &self.dir
    }

    /// The path of a file of this job (validated: a plain file name, or a file's bytes `{dataType}/{key}`).
    pub fn path_of(&self, name: &str) -> Result<ObjectPath, StorageError> {
        match name.split_once('/') {
            None if is_plain_name(name) => Ok(self.dir.child(name)),
            Some((data_type, key)) if is_plain_name(data_type) && is_key(key) => {
                Ok(self.dir.child(data_type).child(key))
            }
            _ => Err(StorageError::InvalidName(name.to_owned())),
        }
    }

    /// The directory of another job of the same source (where an earlier job's file contents are).
    pub fn job(&self, job_id: &str) -> JobArtifacts {
        JobArtifacts::new(
            Arc::clone(&self.store),
            self.part_size,
            &self.account_id,
            &self.source_id,
            job_id,
        )
        .with_local(self.local.clone())
        .with_gzip_level(self.gzip_level)
        .with_data_keys(self.data_keys.clone())
        .encrypting_writes(self.encrypt_writes)
        .sharing_write_key(&self.write_key)
    }

    fn sharing_write_key(mut self, key: &Arc<tokio::sync::OnceCell<Arc<DataKey>>>) -> Self {
        self.write_key = Arc::clone(key);
        self
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// Starts streaming the bytes of the file `id` of `data_type` into `{dataType}/{key}`. Writing it again
    /// (a new attempt) replaces the earlier bytes when the new ones complete.
    pub async fn content_writer(
        &self,
        data_type: &str,
        id: &str,
    ) -> Result<ContentWriter, StorageError> {
        if !is_plain_name(data_type) {
            return Err(StorageError::InvalidName(data_type.to_owned()));
        }
        let key = content_key(id);
        let name = format!("{data_type}/{key}");
        let path = self.dir.child(data_type).child(key.as_str());
        let encryptor = self.encryptor(&path).await?;
        let upload = self.store.put_multipart(&path).await?;
        Ok(ContentWriter::new(upload, path, name, self.part_size).with_encryption(encryptor))
    }

    /// The file name a data type is stored under.
    pub fn data_file_name(data_type: &str) -> Result<String, StorageError> {
        if !is_plain_name(data_type) {
            return Err(StorageError::InvalidName(data_type.to_owned()));
        }
        Ok(format!("{data_type}{DATA_SUFFIX}"))
    }

    /// Starts streaming one data type into `{dataType}.ndjson.gz`. Writing it again (a new attempt) replaces
    /// the earlier file when the new one completes.
    pub async fn data_type_writer(&self, data_type: &str) -> Result<NdjsonWriter, StorageError> {
        let name = Self::data_file_name(data_type)?;
        let path = self.dir.child(name.as_str());
        let encryptor = self.encryptor(&path).await?;
        let upload = self.store.put_multipart(&path).await?;
        Ok(NdjsonWriter::new(
            upload,
            path,
            name,
            data_type.to_owned(),
            self.part_size,
            self.gzip_level,
        )
        .with_encryption(encryptor))
    }

    /// An empty manifest for this job's attempt, to which the finished files are added.
    pub fn new_manifest(
        &self,
        platform_id: &str,
        attempt: u32,
        started_at: DateTime<Utc>,
    ) -> Manifest {
        Manifest::new(
            &self.job_id,
            &self.account_id,
            &self.source_id,
            platform_id,
            attempt,
            started_at,
        )
    }

    /// Writes `manifest.json`, the last object of a job: from now on its artifacts look complete. Refuses a
    /// manifest of another job, or one naming a file that is not stored with the size it records. Returns
    /// the hex sha256 of the stored manifest (for `JobSucceeded`) and its path.
    pub async fn write_manifest(
        &self,
        manifest: &Manifest,
    ) -> Result<(String, ObjectPath), StorageError> {
        if (
            manifest.account_id.as_str(),
            manifest.source_id.as_str(),
            manifest.job_id.as_str(),
        ) != (
            self.account_id.as_str(),
            self.source_id.as_str(),
            self.job_id.as_str(),
        ) {
            return Err(StorageError::Incomplete {
                reason: "the manifest is another job's".into(),
                source: None,
            });
        }
        if !manifest.complete {
            return Err(StorageError::Incomplete {
                reason: "a stored manifest always describes a complete job".into(),
                source: None,
            });
        }
        for file in &manifest.files {
            let path = self.path_of(&file.name)?;
            let meta =
                self.store.head(&path).await.map_err(|e| {
                    match StorageError::from_store(e, &path) {
                        not_found @ StorageError::NotFound { .. } => StorageError::Incomplete {
                            reason: format!("{path} is not stored"),
                            source: Some(Box::new(not_found)),
                        },
                        other => other,
                    }
                })?;
            let stored = file
                .encryption
                .as_ref()
                .map_or(file.bytes, |e| e.ciphertext_bytes);
            if meta.size != stored {
                return Err(StorageError::Incomplete {
                    reason: format!(
                        "{path} holds {} bytes, the manifest says {stored}",
                        meta.size
                    ),
                    source: None,
                });
            }
        }
        let mut body = serde_json::to_vec_pretty(manifest)?;
        body.push(b'\n');
        let sha256 = hex::encode(Sha256::digest(&body));
        let path = self.dir.child(MANIFEST_NAME);
        // A single put is atomic on every backend: the manifest is either entirely there or not at all.
        self.store.put(&path, PutPayload::from(body)).await?;
        Ok((sha256, path))
    }

    /// The stored manifest, if the job's artifacts are complete.
    pub async fn read_manifest(&self) -> Result<Option<Manifest>, StorageError> {
        let path = self.dir.child(MANIFEST_NAME);
        match self.store.get(&path).await {
            Ok(result) => Ok(Some(serde_json::from_slice(&result.bytes().await?)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(other) => Err(other.into()),
        }
    }

    /// Every stored object of the job, by name (a file's bytes as `{dataType}/{key}`). Uploads still in
    /// progress are not listed.
    pub async fn list(&self) -> Result<Vec<ArtifactInfo>, StorageError> {
        let dir = self.dir.clone();
        let mut artifacts: Vec<ArtifactInfo> = self
            .store
            .list(Some(&self.dir))
            .map_ok(|meta| ArtifactInfo {
                name: meta
                    .location
                    .prefix_match(&dir)
                    .map(|parts| {
                        parts
                            .map(|p| p.as_ref().to_owned())
                            .collect::<Vec<_>>()
                            .join("/")
                    })
                    .unwrap_or_default(),
                path: meta.location,
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .try_collect()
            .await?;
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(artifacts)
    }

    /// Streams one stored file's plaintext back, decrypting it on the fly (one chunk held at a time) when
    /// `encryption` (its manifest entry's) says it is encrypted; as stored otherwise. Fails before streaming
    /// when the key cannot be had ([`StorageError::DataKey`]: erased, or not the account's).
    pub async fn open_plaintext(
        &self,
        name: &str,
        encryption: Option<&FileEncryption>,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let stored = self.open(name).await?;
        match encryption {
            None => Ok(stored),
            Some(encryption) => {
                let key = self.read_key(&encryption.key_id).await?;
                let path = self.path_of(name)?;
                Ok(decrypting(stored, key, path.as_ref()))
            }
        }
    }

    /// Like [`open_plaintext`](Self::open_plaintext), from byte `offset` of the plaintext on (a seek point's
    /// offset, [`listbackup_domain::job::manifest::SeekPoint`]): ranged reads of the store, so nothing
    /// before it is fetched, but for the header and the rest of the encryption chunk that holds `offset`.
    pub async fn open_plaintext_from(
        &self,
        name: &str,
        encryption: Option<&FileEncryption>,
        offset: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        if offset == 0 {
            return self.open_plaintext(name, encryption).await;
        }
        let path = self.path_of(name)?;
        let Some(encryption) = encryption else {
            return self.open_range(&path, offset).await;
        };
        let key = self.read_key(&encryption.key_id).await?;
        let mut decryptor = FileDecryptor::new(key, path.as_ref());
        let header_len = super::encryption::header_len(&encryption.key_id);
        let header = self
            .store
            .get_range(&path, 0..header_len)
            .await
            .map_err(|e| StorageError::from_store(e, &path))?;
        decryptor.update(&header, &mut Vec::new())?;
        let (at, skip) = decryptor.seek(offset)?;
        let stored = self.open_range(&path, at).await?;
        Ok(decrypting_with(stored, decryptor, skip))
    }

    /// The stored bytes of `path` from `offset` to its end.
    async fn open_range(
        &self,
        path: &ObjectPath,
        offset: u64,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let options = object_store::GetOptions {
            range: Some(object_store::GetRange::Offset(offset)),
            ..Default::default()
        };
        let result = self
            .store
            .get_opts(path, options)
            .await
            .map_err(|e| StorageError::from_store(e, path))?;
        Ok(result.into_stream().map_err(StorageError::from).boxed())
    }

    /// The account's data key `key_id`, to decrypt a file with.
    pub async fn read_key(&self, key_id: &str) -> Result<Arc<DataKey>, StorageError> {
        let data_keys = self.data_keys.as_ref().ok_or(StorageError::NoDataKeys)?;
        Ok(Arc::new(
            data_keys.for_reading(&self.account_id, key_id).await?,
        ))
    }

    /// Streams one stored file back, as stored (the data files gzipped, encrypted files as ciphertext).
    pub async fn open(
        &self,
        name: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let path = self.path_of(name)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| StorageError::from_store(e, &path))?;
        Ok(result.into_stream().map_err(StorageError::from).boxed())
    }

    /// Removes everything a failed or cancelled attempt stored, manifest first: should this stop half-way,
    /// what is left does not look complete. A worker running attempt 2 or later calls it before writing, so
    /// that nothing of the dead attempt (a manifest it wrote before dying, a data type this attempt no
    /// longer produces) survives next to the new files.
    ///
    /// In a local directory it also removes the staged uploads (`customers.ndjson.gz#1`) of a writer that was
    /// killed before it could abort: object_store hides them from listings and refuses to delete them, yet
    /// they are files of the dead attempt. (On S3 an incomplete multipart upload is invisible and expires by
    /// the bucket's lifecycle rule.)
    pub async fn discard(&self) -> Result<(), StorageError> {
        self.delete_if_present(&self.dir.child(MANIFEST_NAME))
            .await?;
        self.remove_staged_uploads().await?;
        for artifact in self.list().await? {
            self.delete_if_present(&artifact.path).await?;
        }
        Ok(())
    }

    /// How many objects the job's directory holds, and their bytes (what expiring it frees).
    pub async fn usage(&self) -> Result<(u64, u64), StorageError> {
        let artifacts = self.list().await?;
        Ok((
            artifacts.len() as u64,
            artifacts.iter().map(|a| a.size).sum(),
        ))
    }

    /// Removes the file contents this job stored for `data_type` (a data type that failed after some of its
    /// files were stored: nothing of it is kept).
    pub async fn discard_contents(&self, data_type: &str) -> Result<(), StorageError> {
        if !is_plain_name(data_type) {
            return Err(StorageError::InvalidName(data_type.to_owned()));
        }
        let dir = self.dir.child(data_type);
        let paths: Vec<ObjectPath> = self
            .store
            .list(Some(&dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        for path in paths {
            self.delete_if_present(&path).await?;
        }
        Ok(())
    }

    async fn remove_staged_uploads(&self) -> Result<(), StorageError> {
        let Some(local) = &self.local else {
            return Ok(());
        };
        let manifest = local.path_to_filesystem(&self.dir.child(MANIFEST_NAME))?;
        let Some(dir) = manifest.parent().map(std::path::Path::to_path_buf) else {
            return Ok(());
        };
        // A handful of directory entries, but blocking calls all the same: off the async threads. The job's
        // directory and its data types' directories of file contents (one level down).
        tokio::task::spawn_blocking(move || {
            fn remove_staged(dir: &std::path::Path, depth: u32) -> std::io::Result<()> {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(err) => return Err(err),
                };
                let mut removed = false;
                for entry in entries {
                    let entry = entry?;
                    if depth > 0 && entry.file_type()?.is_dir() {
                        remove_staged(&entry.path(), depth - 1)?;
                    } else if is_staged_upload(&entry.file_name().to_string_lossy()) {
                        match std::fs::remove_file(entry.path()) {
                            Ok(()) => removed = true,
                            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                            Err(err) => return Err(err),
                        }
                    }
                }
                if removed {
                    // Left empty when nothing else was stored (the object deletions that follow remove it
                    // otherwise): only an empty directory is removed.
                    let _ = std::fs::remove_dir(dir);
                }
                Ok(())
            }
            remove_staged(&dir, 1)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(())
    }

    async fn delete_if_present(&self, path: &ObjectPath) -> Result<(), StorageError> {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(other) => Err(other.into()),
        }
    }
}

/// object_store's name for a multipart upload in progress in a local directory: `<file name>#<digits>`.
pub(super) fn is_staged_upload(file_name: &str) -> bool {
    matches!(file_name.rsplit_once('#'), Some((name, suffix))
        if !name.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()))
}

/// A file's key ([`content_key`]): a plain name that may also hold `:`.
fn is_key(key: &str) -> bool {
    content_key(key) == key
}

/// A single, unsurprising path segment: ASCII letters, digits, `_`, `-` and `.`, not starting with a dot,
/// at most 200 bytes. Data type names come from the catalog; file names from requests.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
