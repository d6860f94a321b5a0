//! Backup files encrypted at rest (issue 13 §2): every data file and every file platform's file bytes are
//! encrypted on their way to the store, whatever the store, with the account's data key
//! ([`listbackup_commands::data_keys`]), and decrypted on their way out.
//!
//! The construction is STREAM (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance", CRYPTO 2015) over AES-256-GCM, as the RustCrypto `aead` crate implements
//! it (`aead::stream::EncryptorBE32`): the plaintext is cut into chunks of [`CHUNK_SIZE`] bytes, each sealed
//! with the nonce `prefix ‖ counter (32-bit big-endian) ‖ last-chunk flag`, so chunks cannot be reordered,
//! dropped or the file truncated without decryption failing, and memory stays at one chunk whatever the
//! file's size. Nothing here is hand-written cryptography: AES-GCM, STREAM and HKDF are the crates'.
//!
//! Each file has a key of its own, derived with HKDF-SHA256 (RFC 5869) from the data key, a random 256-bit
//! salt and the file's object path (the approach of Tink's "AES-GCM-HKDF streaming AEAD"): random nonces
//! under one key are then never a concern however many files an account stores, and a file copied to
//! another path does not decrypt. A stored file is:
//!
//! ```text
//! header: "LBEF" | version (1 byte, 1) | key id length n (1 byte) | key id (n bytes, ASCII)
//!         | salt (32 bytes) | nonce prefix (7 bytes) | chunk size (4 bytes, big-endian)
//! chunks: AES-256-GCM(chunk) ‖ tag (16 bytes), every chunk CHUNK_SIZE bytes of plaintext but the last,
//!         which is shorter (possibly empty)
//! ```
//!
//! The whole header is the associated data of every chunk, so none of it (the key id, the chunk size) can be
//! changed either. The key id names which data key to unwrap; the manifest records it too, with the
//! ciphertext's sha256 and size beside the plaintext's.

use aes_gcm::aead::stream::{EncryptorBE32, NewStream, StreamBE32, StreamPrimitive};
use aes_gcm::aead::KeyInit;
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use listbackup_commands::data_keys::DataKey;
use rand::rngs::OsRng;
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The file format's magic bytes: ListBackup Encrypted File.
pub const MAGIC: &[u8; 4] = b"LBEF";

/// The version of the format above.
pub const FORMAT_VERSION: u8 = 1;

/// Plaintext bytes per chunk: 64 KiB, what a reader or writer holds at most (plus one tag).
pub const CHUNK_SIZE: usize = 64 * 1024;

/// AES-GCM's tag, appended to each chunk.
pub const TAG_LEN: usize = 16;

const SALT_LEN: usize = 32;
/// A 96-bit AES-GCM nonce minus STREAM's 5 bytes (32-bit counter and last-chunk flag).
const NONCE_PREFIX_LEN: usize = 7;
/// The HKDF `info` prefix of a file key; the file's object path follows it.
const FILE_KEY_INFO: &[u8] = b"listbackup backup file v1 ";

pub use listbackup_domain::job::manifest::FileEncryption;

/// The `scheme` of this module's format.
pub const SCHEME: &str = "aes256gcm-stream-v1";

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EncryptionError {
    /// Not a file of this format (wrong magic, unknown version, a header cut short).
    #[error("not an encrypted backup file: {0}")]
    Format(String),
    /// The header names another key than the one given.
    #[error("the file is encrypted with data key {found}, not {expected}")]
    WrongKey { expected: String, found: String },
    /// A chunk failed to authenticate: the file was altered, truncated, extended or moved.
    #[error(
        "the file does not decrypt: chunk {0} does not authenticate (altered, truncated or moved)"
    )]
    Authentication(u64),
    /// More chunks than STREAM's 32-bit counter allows (256 TiB).
    #[error("the file is too large to encrypt")]
    TooLarge,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key_id: String,
    salt: [u8; SALT_LEN],
    nonce_prefix: [u8; NONCE_PREFIX_LEN],
    chunk_size: usize,
    /// The header's bytes: every chunk's associated data.
    bytes: Vec<u8>,
}

impl Header {
    fn new(key_id: &str) -> Result<Self, EncryptionError> {
        let id_len = u8::try_from(key_id.len())
            .map_err(|_| EncryptionError::Format("the key id is longer than 255 bytes".into()))?;
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce_prefix);
        let mut bytes = Vec::with_capacity(4 + 2 + key_id.len() + SALT_LEN + NONCE_PREFIX_LEN + 4);
        bytes.extend_from_slice(MAGIC);
        bytes.push(FORMAT_VERSION);
        bytes.push(id_len);
        bytes.extend_from_slice(key_id.as_bytes());
        bytes.extend_from_slice(&salt);
        bytes.extend_from_slice(&nonce_prefix);
        bytes.extend_from_slice(&(CHUNK_SIZE as u32).to_be_bytes());
        Ok(Self {
            key_id: key_id.to_owned(),
            salt,
            nonce_prefix,
            chunk_size: CHUNK_SIZE,
            bytes,
        })
    }

    /// Parses a header from the start of `bytes`: `Ok(None)` while more bytes are needed, else the header
    /// and its length.
    pub fn parse(bytes: &[u8]) -> Result<Option<(Self, usize)>, EncryptionError> {
        let need = |n: usize| bytes.len() < n;
        if need(6) {
            if !MAGIC.starts_with(&bytes[..bytes.len().min(4)]) {
                return Err(EncryptionError::Format("no LBEF magic".into()));
            }
            return Ok(None);
        }
        if &bytes[..4] != MAGIC {
            return Err(EncryptionError::Format("no LBEF magic".into()));
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(EncryptionError::Format(format!(
                "unknown format version {}",
                bytes[4]
            )));
        }
        let id_len = usize::from(bytes[5]);
        let len = 6 + id_len + SALT_LEN + NONCE_PREFIX_LEN + 4;
        if need(len) {
            return Ok(None);
        }
        let key_id = std::str::from_utf8(&bytes[6..6 + id_len])
            .map_err(|_| EncryptionError::Format("the key id is not UTF-8".into()))?
            .to_owned();
        let mut at = 6 + id_len;
        let salt: [u8; SALT_LEN] = bytes[at..at + SALT_LEN].try_into().expect("length checked");
        at += SALT_LEN;
        let nonce_prefix: [u8; NONCE_PREFIX_LEN] = bytes[at..at + NONCE_PREFIX_LEN]
            .try_into()
            .expect("length checked");
        at += NONCE_PREFIX_LEN;
        let chunk_size =
            u32::from_be_bytes(bytes[at..at + 4].try_into().expect("length checked")) as usize;
        // Bounds what a reader would buffer for one chunk: a forged header cannot make it hold gigabytes.
        if !(1..=16 * 1024 * 1024).contains(&chunk_size) {
            return Err(EncryptionError::Format(format!(
                "chunk size {chunk_size} out of range"
            )));
        }
        Ok(Some((
            Self {
                key_id,
                salt,
                nonce_prefix,
                chunk_size,
                bytes: bytes[..len].to_vec(),
            },
            len,
        )))
    }

    /// The file's own key: HKDF-SHA256(data key, salt, info = prefix ‖ object path).
    fn cipher(&self, key: &DataKey, object_path: &str) -> Aes256Gcm {
        let mut file_key = Zeroizing::new([0u8; 32]);
        Hkdf::<Sha256>::new(Some(&self.salt), key.secret())
            .expand_multi_info(&[FILE_KEY_INFO, object_path.as_bytes()], &mut file_key[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Aes256Gcm::new_from_slice(&file_key[..]).expect("a 32-byte key")
    }
}

/// Encrypts one file as it is written: plaintext in, ciphertext out, one chunk held at most. Hashes and
/// counts the ciphertext it emits (for the manifest).
pub struct FileEncryptor {
    header: Header,
    /// `None` once finished.
    stream: Option<EncryptorBE32<Aes256Gcm>>,
    header_emitted: bool,
    /// Plaintext waiting for a full chunk (always shorter than one).
    pending: Vec<u8>,
    hasher: Sha256,
    bytes: u64,
}

impl FileEncryptor {
    /// An encryptor of the file stored at `object_path` (the path is bound into its key).
    pub fn new(key: &DataKey, object_path: &str) -> Result<Self, EncryptionError> {
        let header = Header::new(key.id())?;
        let stream = EncryptorBE32::from_aead(
            header.cipher(key, object_path),
            header.nonce_prefix.as_slice().into(),
        );
        Ok(Self {
            header,
            stream: Some(stream),
            header_emitted: false,
            pending: Vec::with_capacity(CHUNK_SIZE + TAG_LEN),
            hasher: Sha256::new(),
            bytes: 0,
        })
    }

    /// Encrypts what `plaintext` completes of full chunks, appending the ciphertext (the header first) to
    /// `out`; keeps the rest for the next call.
    pub fn update(
        &mut self,
        mut plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EncryptionError> {
        let start = out.len();
        self.emit_header(out);
        let stream = self.stream.as_mut().ok_or(EncryptionError::TooLarge)?;
        let aad = &self.header.bytes;
        while !plaintext.is_empty() {
            let room = CHUNK_SIZE - self.pending.len();
            let (now, rest) = plaintext.split_at(room.min(plaintext.len()));
            self.pending.extend_from_slice(now);
            plaintext = rest;
            if self.pending.len() == CHUNK_SIZE {
                // A full chunk is never the last one (the last is always shorter): seal it now.
                stream
                    .encrypt_next_in_place(aad, &mut self.pending)
                    .map_err(|_| EncryptionError::TooLarge)?;
                out.extend_from_slice(&self.pending);
                self.pending.clear();
            }
        }
        self.count(&out[start..]);
        Ok(())
    }

    /// Seals the last chunk (what is pending, possibly nothing) and appends it to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncryptionError> {
        let start = out.len();
        self.emit_header(out);
        let stream = self.stream.take().ok_or(EncryptionError::TooLarge)?;
        stream
            .encrypt_last_in_place(&self.header.bytes, &mut self.pending)
            .map_err(|_| EncryptionError::TooLarge)?;
        out.extend_from_slice(&self.pending);
        self.pending.clear();
        self.count(&out[start..]);
        Ok(())
    }

    /// What the manifest records of the ciphertext emitted so far (all of it once finished).
    pub fn record(&self) -> FileEncryption {
        FileEncryption {
            scheme: SCHEME.to_owned(),
            key_id: self.header.key_id.clone(),
            ciphertext_bytes: self.bytes,
            ciphertext_sha256: hex::encode(self.hasher.clone().finalize()),
        }
    }

    /// Ciphertext bytes emitted so far.
    pub fn ciphertext_bytes(&self) -> u64 {
        self.bytes
    }

    fn emit_header(&mut self, out: &mut Vec<u8>) {
        if !self.header_emitted {
            out.extend_from_slice(&self.header.bytes);
            self.header_emitted = true;
        }
    }

    fn count(&mut self, emitted: &[u8]) {
        self.hasher.update(emitted);
        self.bytes += emitted.len() as u64;
    }
}

impl std::fmt::Debug for FileEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEncryptor")
            .field("key_id", &self.header.key_id)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// Decrypts one file as it is read: ciphertext in (in pieces of any size), plaintext out, one chunk held
/// at most. Every chunk is authenticated before any of its plaintext is given out.
///
/// It reads a file from its start, or, after the header, from any chunk on ([`FileDecryptor::seek`]): each
/// chunk's nonce is its position, so a chunk decrypts on its own, and still only at its own position.
pub struct FileDecryptor {
    key: std::sync::Arc<DataKey>,
    object_path: String,
    /// Bytes before the header is complete; then the ciphertext of the chunk being gathered.
    buffer: Vec<u8>,
    /// Set once the header is read, with its length.
    state: Option<(Header, usize, StreamBE32<Aes256Gcm>)>,
    /// The position of the chunk being gathered.
    chunks: u64,
    finished: bool,
}

impl FileDecryptor {
    /// A decryptor of the file stored at `object_path` with `key` (the key its header must name).
    pub fn new(key: std::sync::Arc<DataKey>, object_path: &str) -> Self {
        Self {
            key,
            object_path: object_path.to_owned(),
            buffer: Vec::new(),
            state: None,
            chunks: 0,
            finished: false,
        }
    }

    /// Takes the next ciphertext bytes; appends to `out` the plaintext of every chunk they complete.
    pub fn update(
        &mut self,
        mut ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EncryptionError> {
        if self.state.is_none() {
            self.buffer.extend_from_slice(ciphertext);
            let Some((header, len)) = Header::parse(&self.buffer)? else {
                return Ok(());
            };
            if header.key_id != self.key.id() {
                return Err(EncryptionError::WrongKey {
                    expected: self.key.id().to_owned(),
                    found: header.key_id,
                });
            }
            let stream = StreamBE32::from_aead(
                header.cipher(&self.key, &self.object_path),
                header.nonce_prefix.as_slice().into(),
            );
            let rest = self.buffer.split_off(len);
            self.buffer = Vec::with_capacity(header.chunk_size + TAG_LEN);
            self.state = Some((header, len, stream));
            return self.update(&rest, out);
        }
        let (header, _, stream) = self.state.as_ref().expect("set above");
        let sealed = header.chunk_size + TAG_LEN;
        while !ciphertext.is_empty() {
            let room = sealed - self.buffer.len();
            let (now, rest) = ciphertext.split_at(room.min(ciphertext.len()));
            self.buffer.extend_from_slice(now);
            ciphertext = rest;
            // A full sealed chunk is never the last (the last holds less than a chunk of plaintext).
            if self.buffer.len() == sealed {
                let position = u32::try_from(self.chunks).map_err(|_| EncryptionError::TooLarge)?;
                stream
                    .decrypt_in_place(position, false, &header.bytes, &mut self.buffer)
                    .map_err(|_| EncryptionError::Authentication(self.chunks))?;
                self.chunks += 1;
                out.extend_from_slice(&self.buffer);
                self.buffer.clear();
            }
        }
        Ok(())
    }

    /// The end of the ciphertext: authenticates the last chunk and appends its plaintext to `out`. Fails for
    /// a file cut short (at a chunk boundary too: the last chunk is marked as such).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EncryptionError> {
        if self.finished {
            return Ok(());
        }
        let Some((header, _, stream)) = self.state.take() else {
            return Err(EncryptionError::Format("the header is cut short".into()));
        };
        self.finished = true;
        let position = u32::try_from(self.chunks).map_err(|_| EncryptionError::TooLarge)?;
        stream
            .decrypt_in_place(position, true, &header.bytes, &mut self.buffer)
            .map_err(|_| EncryptionError::Authentication(self.chunks))?;
        out.extend_from_slice(&self.buffer);
        self.buffer.clear();
        Ok(())
    }

    /// Once the header is read (given to [`update`](Self::update) alone), prepares to read the plaintext
    /// from byte `offset` on: answers where in the stored file the ciphertext to give next starts (the
    /// chunk holding `offset`), and how many plaintext bytes of that chunk come before `offset` (for the
    /// caller to drop). A ciphertext cut there still fails to decrypt if it was truncated or reordered.
    pub fn seek(&mut self, offset: u64) -> Result<(u64, usize), EncryptionError> {
        let Some((header, len, _)) = &self.state else {
            return Err(EncryptionError::Format("the header is cut short".into()));
        };
        if !self.buffer.is_empty() || self.chunks != 0 {
            return Err(EncryptionError::Format(
                "seek is only possible right after the header".into(),
            ));
        }
        let chunk = header.chunk_size as u64;
        let index = offset / chunk;
        self.chunks = index;
        Ok((
            *len as u64 + index * (chunk + TAG_LEN as u64),
            (offset - index * chunk) as usize,
        ))
    }
}

/// The length of a file's header when its data key is `key_id` (what a reader fetches before seeking).
pub fn header_len(key_id: &str) -> u64 {
    (6 + key_id.len() + SALT_LEN + NONCE_PREFIX_LEN + 4) as u64
}

/// Streams a stored file's plaintext out of its ciphertext `stored`, chunk by chunk (flat memory): what a
/// download sends. An error ends the stream (a chunk that does not authenticate is never given out).
pub fn decrypting<E>(
    stored: futures::stream::BoxStream<'static, Result<bytes::Bytes, E>>,
    key: std::sync::Arc<DataKey>,
    object_path: &str,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, E>>
where
    E: From<EncryptionError> + Send + 'static,
{
    decrypting_with(stored, FileDecryptor::new(key, object_path), 0)
}

/// Streams the plaintext of `stored` through `decryptor` (which may have read the header and
/// [sought](FileDecryptor::seek)), dropping the first `skip` bytes of plaintext.
pub fn decrypting_with<E>(
    stored: futures::stream::BoxStream<'static, Result<bytes::Bytes, E>>,
    decryptor: FileDecryptor,
    skip: usize,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, E>>
where
    E: From<EncryptionError> + Send + 'static,
{
    use futures::StreamExt;
    futures::stream::try_unfold(
        (stored, decryptor, skip, false),
        |(mut stored, mut decryptor, mut skip, done)| async move {
            if done {
                return Ok(None);
            }
            loop {
                let mut out = Vec::new();
                let ended = match stored.next().await {
                    Some(chunk) => {
                        decryptor.update(&chunk?, &mut out)?;
                        false
                    }
                    None => {
                        decryptor.finish(&mut out)?;
                        true
                    }
                };
                let dropped = skip.min(out.len());
                out.drain(..dropped);
                skip -= dropped;
                if !out.is_empty() || ended {
                    let out = bytes::Bytes::from(out);
                    return Ok(Some((out, (stored, decryptor, skip, ended))));
                }
            }
        },
    )
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> DataKey {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        DataKey::from_bytes(id, bytes)
    }

    fn encrypt(
        key: &DataKey,
        path: &str,
        plaintext: &[u8],
        piece: usize,
    ) -> (Vec<u8>, FileEncryption) {
        let mut encryptor = FileEncryptor::new(key, path).unwrap();
        let mut out = Vec::new();
        for part in plaintext.chunks(piece.max(1)) {
            encryptor.update(part, &mut out).unwrap();
        }
        encryptor.finish(&mut out).unwrap();
        (out, encryptor.record())
    }

    fn decrypt(
        key: DataKey,
        path: &str,
        ciphertext: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, EncryptionError> {
        let mut decryptor = FileDecryptor::new(std::sync::Arc::new(key), path);
        let mut out = Vec::new();
        for part in ciphertext.chunks(piece.max(1)) {
            decryptor.update(part, &mut out)?;
        }
        decryptor.finish(&mut out)?;
        Ok(out)
    }

    fn same(key: &DataKey) -> DataKey {
        DataKey::from_bytes(key.id(), *key.secret())
    }

    #[test]
    fn files_of_every_size_round_trip_whatever_the_pieces() {
        let key = key("dk_1");
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            3 * CHUNK_SIZE,
            200_000,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            for piece in [1000, 7, CHUNK_SIZE, 1 << 20] {
                let (ciphertext, record) = encrypt(&key, "a/b", &plaintext, piece);
                let chunks = len / CHUNK_SIZE + 1;
                assert_eq!(record.ciphertext_bytes as usize, ciphertext.len());
                assert_eq!(
                    record.ciphertext_sha256,
                    hex::encode(Sha256::digest(&ciphertext))
                );
                assert_eq!(record.key_id, "dk_1");
                let header = Header::parse(&ciphertext).unwrap().unwrap().1;
                assert_eq!(
                    ciphertext.len(),
                    header + len + chunks * TAG_LEN,
                    "len {len}"
                );
                for read_piece in [1, 4096, 70_000] {
                    if len > 100_000 && read_piece == 1 {
                        continue;
                    }
                    assert_eq!(
                        decrypt(same(&key), "a/b", &ciphertext, read_piece).unwrap(),
                        plaintext
                    );
                }
            }
        }
    }

    #[test]
    fn the_stored_bytes_hold_no_plaintext() {
        let key = key("dk_1");
        let plaintext = br#"{"id":"cus_1","email":"jenny.rosen@example.com"}"#.repeat(100);
        let (ciphertext, _) = encrypt(&key, "a/b", &plaintext, 1 << 20);
        assert!(!ciphertext.windows(11).any(|w| w == b"jenny.rosen"));
    }

    #[test]
    fn any_change_is_refused_flipped_truncated_extended_reordered_or_moved() {
        let key = key("dk_1");
        let plaintext: Vec<u8> = (0..3 * CHUNK_SIZE + 10).map(|i| (i % 253) as u8).collect();
        let (ciphertext, _) = encrypt(&key, "a/b", &plaintext, 1 << 20);
        let header = Header::parse(&ciphertext).unwrap().unwrap().1;
        let sealed = CHUNK_SIZE + TAG_LEN;
        // A flipped byte anywhere: in a chunk, in a tag, in the header's salt.
        for at in [header + 5, header + sealed - 1, ciphertext.len() - 1, 10] {
            let mut altered = ciphertext.clone();
            altered[at] ^= 0x01;
            assert!(
                decrypt(same(&key), "a/b", &altered, 4096).is_err(),
                "flip at {at}"
            );
        }
        // Truncated at a chunk boundary, or mid-chunk; a chunk dropped; two swapped; bytes appended.
        assert!(decrypt(same(&key), "a/b", &ciphertext[..header + sealed], 4096).is_err());
        assert!(decrypt(same(&key), "a/b", &ciphertext[..header + 2 * sealed], 4096).is_err());
        assert!(decrypt(same(&key), "a/b", &ciphertext[..ciphertext.len() - 3], 4096).is_err());
        let mut dropped = ciphertext[..header + sealed].to_vec();
        dropped.extend_from_slice(&ciphertext[header + 2 * sealed..]);
        assert!(decrypt(same(&key), "a/b", &dropped, 4096).is_err());
        let mut swapped = ciphertext[..header].to_vec();
        swapped.extend_from_slice(&ciphertext[header + sealed..header + 2 * sealed]);
        swapped.extend_from_slice(&ciphertext[header..header + sealed]);
        swapped.extend_from_slice(&ciphertext[header + 2 * sealed..]);
        assert!(decrypt(same(&key), "a/b", &swapped, 4096).is_err());
        let mut extended = ciphertext.clone();
        extended.extend_from_slice(&[0; TAG_LEN + 1]);
        assert!(decrypt(same(&key), "a/b", &extended, 4096).is_err());
        // Another path (a file copied elsewhere), another key, another key's id.
        assert!(decrypt(same(&key), "a/c", &ciphertext, 4096).is_err());
        assert!(decrypt(
            DataKey::from_bytes("dk_1", [7; 32]),
            "a/b",
            &ciphertext,
            4096
        )
        .is_err());
        assert!(matches!(
            decrypt(
                DataKey::from_bytes("dk_2", *key.secret()),
                "a/b",
                &ciphertext,
                4096
            ),
            Err(EncryptionError::WrongKey { .. })
        ));
        // Not this format at all (a file stored before encryption).
        assert!(matches!(
            decrypt(same(&key), "a/b", b"\x1f\x8b\x08\x00plain gzip", 4096),
            Err(EncryptionError::Format(_))
        ));
        assert_eq!(
            decrypt(same(&key), "a/b", &ciphertext, 4096).unwrap(),
            plaintext
        );
    }

    #[test]
    fn reading_from_any_offset_decrypts_from_there_and_still_only_at_its_position() {
        let key = key("dk_1");
        let plaintext: Vec<u8> = (0..3 * CHUNK_SIZE + 10).map(|i| (i % 241) as u8).collect();
        let (ciphertext, _) = encrypt(&key, "a/b", &plaintext, 1 << 20);
        let header = header_len("dk_1") as usize;
        assert_eq!(Header::parse(&ciphertext).unwrap().unwrap().1, header);
        let read_from = |offset: u64, stored: &[u8]| -> Result<Vec<u8>, EncryptionError> {
            let mut decryptor = FileDecryptor::new(std::sync::Arc::new(same(&key)), "a/b");
            let mut out = Vec::new();
            decryptor.update(&stored[..header], &mut out)?;
            let (at, skip) = decryptor.seek(offset)?;
            for part in stored[at as usize..].chunks(5000) {
                decryptor.update(part, &mut out)?;
            }
            decryptor.finish(&mut out)?;
            Ok(out[skip..].to_vec())
        };
        for offset in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            2 * CHUNK_SIZE + 7,
            3 * CHUNK_SIZE + 9,
        ] {
            assert_eq!(
                read_from(offset as u64, &ciphertext).unwrap(),
                &plaintext[offset..],
                "offset {offset}"
            );
        }
        // A chunk moved to another position does not decrypt there.
        let sealed = CHUNK_SIZE + TAG_LEN;
        let mut moved = ciphertext.clone();
        moved.copy_within(header..header + sealed, header + sealed);
        assert!(matches!(
            read_from(CHUNK_SIZE as u64, &moved),
            Err(EncryptionError::Authentication(1))
        ));
        // Cut short: the last chunk is missing its mark.
        let cut = &ciphertext[..header + 3 * sealed];
        assert!(read_from(2 * CHUNK_SIZE as u64, cut).is_err());
    }

    #[test]
    fn the_same_plaintext_encrypts_differently_each_time() {
        let key = key("dk_1");
        let (a, _) = encrypt(&key, "a/b", b"same", 10);
        let (b, _) = encrypt(&key, "a/b", b"same", 10);
        assert_ne!(a, b, "a random salt and nonce prefix per file");
    }
}
