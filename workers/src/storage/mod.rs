//! Backup artifacts in object storage (DESIGN §6): a local directory by default, S3 by configuration.
//!
//! Layout, relative to the storage root:
//!
//! ```text
//! accounts/{accountId}/sources/{sourceId}/jobs/{jobId}/{dataType}.ndjson.gz
//! accounts/{accountId}/sources/{sourceId}/jobs/{jobId}/{dataType}/{key}
//! accounts/{accountId}/sources/{sourceId}/jobs/{jobId}/manifest.json
//! ```
//!
//! `{dataType}/{key}` holds the bytes of one file of a file platform (Google Drive, Dropbox, Box), as the
//! platform sent them (not gzipped: see [`ContentWriter`]); `key` is the file's id ([`content_key`]). Its
//! metadata is its record in `{dataType}.ndjson.gz`; the manifest lists every file's name, id, version,
//! size and sha256 (`contents`). An incremental job downloads only the files whose version changed since the
//! previous backup and lists the others with the job whose directory holds their bytes (`jobId`): a job's
//! directory is then not self-contained, and removing an old job (retention) must keep the bytes later
//! manifests refer to.
//!
//! A job's data files are written first, each as one multipart upload that becomes visible only when it
//! completes; the manifest is written last, with a single atomic put. **The manifest's presence means the job's
//! artifacts are complete**: a reader never trusts a job directory without one, and [`JobArtifacts::discard`]
//! removes the manifest first so that an interrupted discard cannot leave a complete-looking job either.
//!
//! Writing streams ([`NdjsonWriter`]): records are gzipped as they arrive, hashed as the compressed bytes go
//! out, and uploaded part by part, so a worker's memory is bounded by the part size, not by the data set.
//!
//! Encrypted at rest (issue 13 §2, [`encryption`]): with data keys ([`BackupStore::with_data_keys`], every
//! process that serves or stores backups), each data file and each file's bytes is encrypted on its way out
//! with the account's data key, and its manifest entry records `encryption` (key id, ciphertext size and
//! sha256) beside the plaintext's. The manifest itself is stored as it is (it holds no records).

mod artifacts;
mod content;
pub mod encryption;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;

use listbackup_commands::data_keys::DataKeys;
use listbackup_domain::job::manifest::SeekPoint;

pub use artifacts::{ArtifactInfo, JobArtifacts, MANIFEST_NAME};
pub use content::{content_key, ContentWriter, StoredContent};
pub use listbackup_domain::job::manifest::{
    ContentNotStored, Manifest, ManifestContent, ManifestFile, MANIFEST_FILE, MANIFEST_VERSION,
};
pub use object_store::path::Path as ObjectPath;
pub use writer::{NdjsonWriter, WrittenFile};

/// The default multipart part size: above S3's 5 MiB minimum, and the bound on what a writer buffers.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// gzip's own default: a balance of speed and size.
pub const DEFAULT_GZIP_LEVEL: u32 = 6;

/// S3 refuses parts below 5 MiB (except a file's last).
pub const MIN_S3_PART_SIZE: usize = 5 * 1024 * 1024;

/// The part size of a local directory. A local part is a write to a staging file, with no minimum and no
/// per-request cost, so a small part only lowers what a writer holds: a worker's memory stays near its
/// start-up size whether it stores ten thousand records or ten million (`bench/backup-throughput`).
pub const LOCAL_PART_SIZE: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The storage URL is not one this store can use; `source` is the parser's reason when it gave one.
    #[error(
        "unsupported storage URL {url:?}: expected file:///path, s3://bucket/prefix or memory://"
    )]
    InvalidUrl {
        url: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A data type or file name that cannot name an artifact (the name as given).
    #[error("invalid artifact name {0:?}")]
    InvalidName(String),
    /// The object store has no object at `path`.
    #[error("artifact not found: {path}")]
    NotFound {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// The manifest would describe artifacts that are not all stored as it says: `reason` says how, `source`
    /// is the store's own answer when one showed it.
    #[error("the job's artifacts are incomplete: {reason}")]
    Incomplete {
        reason: String,
        #[source]
        source: Option<Box<StorageError>>,
    },
    /// A previous write of this writer failed; its upload was aborted.
    #[error("the writer was closed after an earlier error")]
    WriterClosed,
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("compression: {0}")]
    Io(#[from] std::io::Error),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    /// A stored file does not decrypt (altered, truncated, moved), or is not in the encrypted format.
    #[error("encryption: {0}")]
    Encryption(#[from] encryption::EncryptionError),
    /// The account's data key cannot be had: erased, or the key store unavailable.
    #[error("data key: {0}")]
    DataKey(#[from] listbackup_commands::data_keys::DataKeyError),
    /// A file is encrypted but this store was given no data keys to read it with.
    #[error("the file is encrypted and this process has no data keys")]
    NoDataKeys,
}

impl StorageError {
    /// Maps object_store's not-found to ours, naming the object.
    fn from_store(error: object_store::Error, path: &ObjectPath) -> Self {
        match error {
            source @ object_store::Error::NotFound { .. } => Self::NotFound {
                path: path.to_string(),
                source,
            },
            other => Self::ObjectStore(other),
        }
    }
}

/// Where backups are stored. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    part_size: usize,
    /// gzip level of the data files, 1 (fastest) to 9 (smallest).
    gzip_level: u32,
    /// The same store when it is a local directory: a discard also removes the staged uploads a killed
    /// writer left there, which object_store neither lists nor deletes.
    local: Option<Arc<LocalFileSystem>>,
    /// The accounts' data keys: with them every file written is encrypted (issue 13 §2) and encrypted files
    /// are read back decrypted; without them (tests of the storage alone) files are stored as they are.
    data_keys: Option<DataKeys>,
    /// False only for benchmarks: see [`Self::writing_plaintext`].
    encrypt_writes: bool,
}

impl BackupStore {
    /// Any object store, its root being the layout's root.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store,
            part_size: DEFAULT_PART_SIZE,
            gzip_level: DEFAULT_GZIP_LEVEL,
            local: None,
            data_keys: None,
            encrypt_writes: true,
        }
    }

    /// Encrypts every file written from now on with its account's data key, and decrypts encrypted files
    /// read back (issue 13 §2). Every process that serves or stores backups sets it.
    pub fn with_data_keys(mut self, data_keys: DataKeys) -> Self {
        self.data_keys = Some(data_keys);
        self
    }

    /// Writes every new file in plaintext although the store has data keys (encrypted files still read
    /// back decrypted). For measuring what encryption costs (`LISTBACKUP_STORAGE_ENCRYPTION=off`,
    /// `bench/backup-throughput --encryption both`), never for a deployment: the configuration refuses it
    /// with `LISTBACKUP_ENV=production`.
    pub fn writing_plaintext(mut self) -> Self {
        self.encrypt_writes = false;
        self
    }

    /// Whether files written are encrypted.
    pub fn encrypts(&self) -> bool {
        self.data_keys.is_some() && self.encrypt_writes
    }

    /// Builds the store `LISTBACKUP_STORAGE_URL` names:
    ///
    /// - `file:///var/lib/listbackup/backups` (or a bare absolute path): a local directory, created if missing;
    /// - `s3://bucket/optional/prefix`: S3, configured further by the usual `AWS_*` environment variables
    ///   (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for
    ///   MinIO and other S3-compatible servers);
    /// - `memory://`: in memory, for tests.
    ///
    /// On S3, configure a lifecycle rule aborting incomplete multipart uploads: a worker killed mid-upload
    /// cannot abort its own.
    pub fn from_url(url: &str) -> Result<Self, StorageError> {
        let invalid =
            |source: Option<Box<dyn std::error::Error + Send + Sync>>| StorageError::InvalidUrl {
                url: url.to_owned(),
                source,
            };
        if url.starts_with('/') {
            return Self::local(std::path::Path::new(url));
        }
        let parsed = url::Url::parse(url).map_err(|e| invalid(Some(e.into())))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "file" => {
                let dir = parsed.to_file_path().map_err(|()| invalid(None))?;
                return Self::local(&dir);
            }
            "s3" | "s3a" => {
                if parsed.host_str().unwrap_or_default().is_empty() {
                    return Err(invalid(None));
                }
                let s3 = AmazonS3Builder::from_env().with_url(url).build()?;
                let prefix = parsed.path().trim_matches('/');
                if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    let prefix = ObjectPath::parse(prefix).map_err(|e| invalid(Some(e.into())))?;
                    Arc::new(PrefixStore::new(s3, prefix))
                }
            }
            "memory" => Arc::new(InMemory::new()),
            _ => return Err(invalid(None)),
        };
        Ok(Self::new(store))
    }

    fn local(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        // Automatic cleanup removes the directories a discard empties, so nothing of the job is left behind.
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true));
        Ok(Self {
            local: Some(Arc::clone(&store)),
            ..Self::new(store).with_part_size(LOCAL_PART_SIZE)
        })
    }

    /// Sets the multipart part size: what a writer buffers before uploading a part. S3 needs at least
    /// [`MIN_S3_PART_SIZE`]; smaller sizes suit local directories and tests. Encrypted (see
    /// [`with_data_keys`](Self::with_data_keys)), a part uploads only whole 64 KiB chunks, so its ciphertext
    /// may be up to one chunk shorter than the part (the rest goes with the next): on S3 keep parts at least
    /// 64 KiB above the minimum (the default, 8 MiB, is).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// Sets the gzip level of the data files (clamped to 1–9). Lower is faster and larger: on the
    /// benchmark's Stripe customers, level 1 backs up about 1.5 times as many records a second as level 6 and
    /// stores about 1.6 times the bytes (`docs/benchmarks.md`).
    pub fn with_gzip_level(mut self, level: u32) -> Self {
        self.gzip_level = level.clamp(1, 9);
        self
    }

    /// The underlying object store (e.g. for health checks).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Removes the staged uploads (`customers.ndjson.gz#1`) of a local directory that were last written
    /// before `older_than`: what a writer killed mid-upload leaves when no later attempt of its job discards
    /// it (the job was given up, or its next attempt ran elsewhere). A live upload writes its staging file
    /// at every part, so one untouched for a day is abandoned. Returns how many files and bytes it removed.
    /// On S3 nothing is listed here: incomplete multipart uploads expire by the bucket's lifecycle rule.
    pub async fn sweep_abandoned_uploads(
        &self,
        older_than: chrono::DateTime<chrono::Utc>,
    ) -> Result<(u64, u64), StorageError> {
        let Some(local) = &self.local else {
            return Ok((0, 0));
        };
        let root = local.path_to_filesystem(&ObjectPath::from("accounts"))?;
        let older_than: std::time::SystemTime = older_than.into();
        let swept = tokio::task::spawn_blocking(move || {
            fn walk(
                dir: &std::path::Path,
                older_than: std::time::SystemTime,
                swept: &mut (u64, u64),
            ) -> std::io::Result<()> {
                let entries = match std::fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                    Err(err) => return Err(err),
                };
                for entry in entries {
                    let entry = entry?;
                    let kind = entry.file_type()?;
                    if kind.is_dir() {
                        walk(&entry.path(), older_than, swept)?;
                    } else if artifacts::is_staged_upload(&entry.file_name().to_string_lossy()) {
                        let meta = entry.metadata()?;
                        if meta.modified()? < older_than {
                            match std::fs::remove_file(entry.path()) {
                                Ok(()) => {
                                    swept.0 += 1;
                                    swept.1 += meta.len();
                                }
                                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                                Err(err) => return Err(err),
                            }
                        }
                    }
                }
                Ok(())
            }
            let mut swept = (0, 0);
            walk(&root, older_than, &mut swept).map(|()| swept)
        })
        .await
        .map_err(std::io::Error::other)??;
        Ok(swept)
    }

    /// The artifacts of the job `location` names (see [`BackupStore::job`]).
    pub fn job_at(
        &self,
        location: listbackup_commands::artifacts::JobLocation<'_>,
    ) -> JobArtifacts {
        self.job(
            location.account_id,
            &location.source_id.to_string(),
            &location.job_id.to_string(),
        )
    }

    /// The artifacts of one job. Ids are used as path segments; anything unsafe in them is percent-encoded.
    pub fn job(&self, account_id: &str, source_id: &str, job_id: &str) -> JobArtifacts {
        JobArtifacts::new(
            Arc::clone(&self.store),
            self.part_size,
            account_id,
            source_id,
            job_id,
        )
        .with_local(self.local.clone())
        .with_gzip_level(self.gzip_level)
        .with_data_keys(self.data_keys.clone())
        .encrypting_writes(self.encrypt_writes)
    }
}

/// The store as the API's read-only view of job artifacts.
impl listbackup_commands::artifacts::JobFiles for BackupStore {
    fn manifest<'a>(
        &'a self,
        job: listbackup_commands::artifacts::JobLocation<'a>,
    ) -> futures::future::BoxFuture<'a, Result<Option<Manifest>, listbackup_commands::BoxError>>
    {
        Box::pin(async move {
            let artifacts = self.job_at(job);
            artifacts
                .read_manifest()
                .await
                .map_err(listbackup_commands::BoxError::from)
        })
    }

    fn open<'a>(
        &'a self,
        job: listbackup_commands::artifacts::JobLocation<'a>,
        name: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<listbackup_commands::artifacts::FileStream>, listbackup_commands::BoxError>,
    > {
        Box::pin(async move {
            use futures::TryStreamExt;
            let Some(Located {
                artifacts,
                encryption,
                ..
            }) = self
                .locate(job, name)
                .await
                .map_err(listbackup_commands::BoxError::from)?
            else {
                return Ok(None);
            };
            match artifacts.open_plaintext(name, encryption.as_ref()).await {
                Ok(stream) => Ok(Some(
                    Box::pin(stream.map_err(listbackup_commands::BoxError::from)) as _,
                )),
                Err(StorageError::NotFound { .. }) => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn open_at_line<'a>(
        &'a self,
        job: listbackup_commands::artifacts::JobLocation<'a>,
        name: &'a str,
        line: u64,
    ) -> futures::future::BoxFuture<
        'a,
        Result<
            Option<(u64, listbackup_commands::artifacts::FileStream)>,
            listbackup_commands::BoxError,
        >,
    > {
        Box::pin(async move {
            use futures::TryStreamExt;
            let Some(located) = self
                .locate(job, name)
                .await
                .map_err(listbackup_commands::BoxError::from)?
            else {
                return Ok(None);
            };
            let point = located
                .data_file
                .as_ref()
                .map_or(SeekPoint(0, 0), |file| file.seek_point_before(line));
            match located
                .artifacts
                .open_plaintext_from(name, located.encryption.as_ref(), point.offset())
                .await
            {
                Ok(stream) => Ok(Some((
                    point.line(),
                    Box::pin(stream.map_err(listbackup_commands::BoxError::from)) as _,
                ))),
                Err(StorageError::NotFound { .. }) => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn check<'a>(
        &'a self,
        job: listbackup_commands::artifacts::JobLocation<'a>,
        name: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<Option<listbackup_commands::artifacts::StoredCheck>, listbackup_commands::BoxError>,
    > {
        Box::pin(async move {
            use futures::StreamExt;
            use sha2::{Digest, Sha256};
            let Some(Located {
                artifacts,
                encryption,
                ..
            }) = self
                .locate(job, name)
                .await
                .map_err(listbackup_commands::BoxError::from)?
            else {
                return Ok(None);
            };
            let mut stored = match artifacts.open(name).await {
                Ok(stream) => stream,
                Err(StorageError::NotFound { .. }) => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            // The decryptor of an encrypted file whose key is to be had; an erased account's is not: its
            // ciphertext alone is checked.
            let mut decryptor: Option<
                Result<encryption::FileDecryptor, listbackup_commands::BoxError>,
            > = match &encryption {
                None => None,
                Some(e) => match artifacts.read_key(&e.key_id).await {
                    Ok(key) => {
                        let path = artifacts
                            .path_of(name)
                            .map_err(listbackup_commands::BoxError::from)?;
                        Some(Ok(encryption::FileDecryptor::new(key, path.as_ref())))
                    }
                    Err(StorageError::DataKey(
                        listbackup_commands::data_keys::DataKeyError::Erased(_),
                    )) => None,
                    Err(StorageError::DataKey(
                        err @ listbackup_commands::data_keys::DataKeyError::UnknownKey(_),
                    )) => Some(Err(err.into())),
                    Err(err) => return Err(err.into()),
                },
            };
            let (mut stored_hash, mut stored_bytes) = (Sha256::new(), 0u64);
            let (mut plain_hash, mut plain_bytes) = (Sha256::new(), 0u64);
            let mut plain = Vec::new();
            while let Some(chunk) = stored.next().await {
                let chunk = chunk.map_err(listbackup_commands::BoxError::from)?;
                stored_hash.update(&chunk);
                stored_bytes += chunk.len() as u64;
                if let Some(Ok(d)) = &mut decryptor {
                    plain.clear();
                    match d.update(&chunk, &mut plain) {
                        Ok(()) => {
                            plain_hash.update(&plain);
                            plain_bytes += plain.len() as u64;
                        }
                        Err(err) => decryptor = Some(Err(err.into())),
                    }
                }
            }
            if let Some(Ok(d)) = &mut decryptor {
                plain.clear();
                match d.finish(&mut plain) {
                    Ok(()) => {
                        plain_hash.update(&plain);
                        plain_bytes += plain.len() as u64;
                    }
                    Err(err) => decryptor = Some(Err(err.into())),
                }
            }
            Ok(Some(listbackup_commands::artifacts::StoredCheck {
                stored_sha256: hex::encode(stored_hash.finalize()),
                stored_bytes,
                plaintext: decryptor
                    .map(|d| d.map(|_| (hex::encode(plain_hash.finalize()), plain_bytes))),
            }))
        })
    }
}

/// Where one file of a job is stored, and how ([`BackupStore::locate`]).
struct Located {
    /// The directory holding it: the job's, or an earlier job's for a file's unchanged bytes.
    artifacts: JobArtifacts,
    encryption: Option<encryption::FileEncryption>,
    /// A data file's manifest entry (none for other files, or without a manifest).
    data_file: Option<ManifestFile>,
}

impl BackupStore {
    /// Where one file of a job is, and how it is stored, from the job's manifest: a file's bytes may be in an
    /// earlier job's directory (its manifest entry's `jobId`). `None` for a file's bytes the manifest does not
    /// list; a plain name it does not list (the manifest itself) is read as stored.
    async fn locate(
        &self,
        job: listbackup_commands::artifacts::JobLocation<'_>,
        name: &str,
    ) -> Result<Option<Located>, StorageError> {
        let artifacts = self.job_at(job);
        let plain = |artifacts| Located {
            artifacts,
            encryption: None,
            data_file: None,
        };
        if name == MANIFEST_NAME {
            return Ok(Some(plain(artifacts)));
        }
        let manifest = artifacts.read_manifest().await?;
        if name.contains('/') {
            let Some(content) = manifest
                .as_ref()
                .and_then(|m| m.contents.iter().find(|c| c.name == name))
            else {
                return Ok(None);
            };
            let artifacts = match &content.job_id {
                Some(job_id) => artifacts.job(job_id),
                None => artifacts,
            };
            return Ok(Some(Located {
                encryption: content.encryption.clone(),
                ..plain(artifacts)
            }));
        }
        let Some(manifest) = manifest else {
            return Ok(Some(plain(artifacts)));
        };
        let encryption = manifest.encryption_of(name).flatten().cloned();
        Ok(Some(Located {
            artifacts,
            encryption,
            data_file: manifest.file(name).cloned(),
        }))
    }
}
