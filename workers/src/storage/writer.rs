use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use object_store::{MultipartUpload, PutPayload};
use serde::Serialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::encryption::{FileEncryption, FileEncryptor, CHUNK_SIZE};
use super::{ManifestFile, ObjectPath, StorageError};
use listbackup_domain::job::manifest::SeekPoint;

/// Uncompressed bytes of records after which the writer starts a new gzip member, and records a seek point
/// (see [`SeekPoint`]): a reader looking for one record decompresses at most about this much (and decrypts
/// at most one more encryption chunk) after seeking. 256 KiB costs a few hundredths of a percent of the
/// compressed size (one 18-byte member header and trailer, and deflate's 32 KiB window starting empty)
/// and gives a million-record file of 1 KB records about 4,000 points (some 80 KB of manifest).
pub const SEEK_POINT_INTERVAL: u64 = 256 * 1024;

/// Streams one data type's records into `{dataType}.ndjson.gz`: one JSON document per line, gzipped as it
/// goes, uploaded in parts of the store's part size. Nothing is visible at the file's path until
/// [`finish`](Self::finish) completes the upload; a writer dropped (or [`abort`](Self::abort)ed) before that
/// leaves no object behind.
///
/// Memory: the compressed output waiting to be uploaded (at most one part plus one record's worth), the
/// encoder's fixed-size state, and one serialized record. It does not grow with the number of records.
pub struct NdjsonWriter {
    name: String,
    data_type: String,
    path: ObjectPath,
    /// `None` once finished, aborted, or after a failed upload (which aborts it).
    upload: Option<Box<dyn MultipartUpload>>,
    /// Compresses into a `Vec` that is handed to the upload, and replaced by an empty one, every `part_size`.
    /// `None` once finished.
    encoder: Option<GzEncoder<Vec<u8>>>,
    part_size: usize,
    /// Reused for each record's serialized line, so that the encoder gets one write per record.
    line: Vec<u8>,
    hasher: Sha256,
    records: u64,
    uncompressed_bytes: u64,
    /// Compressed bytes handed to the upload so far.
    bytes: u64,
    parts: u32,
    peak_buffered: usize,
    /// Encrypts each part on its way to the store (issue 13 §2); `None`: stored as compressed.
    encryption: Option<FileEncryptor>,
    gzip_level: u32,
    /// Uncompressed bytes in the current gzip member.
    member_bytes: u64,
    seek_points: Vec<SeekPoint>,
}

/// A data file stored completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The file name in the job's directory, e.g. `customers.ndjson.gz`.
    pub name: String,
    pub data_type: String,
    /// The full object path (`accounts/…/customers.ndjson.gz`), as recorded in `ResourceBackedUp.object`.
    pub path: ObjectPath,
    pub records: u64,
    /// Size of the gzip file (what a download gives back; stored encrypted when `encryption` says so).
    pub bytes: u64,
    /// Size of the NDJSON before compression.
    pub uncompressed_bytes: u64,
    /// Hex sha256 of the gzip file.
    pub sha256: String,
    /// How the gzip file is encrypted in the store, with the stored ciphertext's size and sha256.
    pub encryption: Option<FileEncryption>,
    /// Where the gzip members after the first begin.
    pub seek_points: Vec<SeekPoint>,
}

impl WrittenFile {
    /// The manifest's entry for this file, fetched from `since` (an incremental fetch's cursor) or in full.
    pub fn manifest_file(&self, since: Option<serde_json::Value>) -> ManifestFile {
        ManifestFile {
            name: self.name.clone(),
            data_type: self.data_type.clone(),
            records: self.records,
            bytes: self.bytes,
            sha256: self.sha256.clone(),
            since,
            encryption: self.encryption.clone(),
            seek_points: self.seek_points.clone(),
        }
    }
}

impl NdjsonWriter {
    pub(super) fn new(
        upload: Box<dyn MultipartUpload>,
        path: ObjectPath,
        name: String,
        data_type: String,
        part_size: usize,
        gzip_level: u32,
    ) -> Self {
        // A part is uploaded once the buffer reaches `part_size`, so it holds at most that plus one record's
        // compressed output: reserving a little more avoids a doubling reallocation just past the threshold.
        let capacity = part_size.saturating_add(64 * 1024);
        Self {
            name,
            data_type,
            path,
            upload: Some(upload),
            encoder: Some(GzEncoder::new(
                Vec::with_capacity(capacity),
                Compression::new(gzip_level),
            )),
            part_size,
            line: Vec::new(),
            hasher: Sha256::new(),
            records: 0,
            uncompressed_bytes: 0,
            bytes: 0,
            parts: 0,
            peak_buffered: 0,
            encryption: None,
            gzip_level,
            member_bytes: 0,
            seek_points: Vec::new(),
        }
    }

    /// Encrypts the file with `encryptor` on its way to the store (before anything is written).
    pub(super) fn with_encryption(mut self, encryptor: Option<FileEncryptor>) -> Self {
        self.encryption = encryptor;
        self
    }

    /// Appends one record as a line. The compact JSON serializer never emits a raw newline, so one line is
    /// always one record.
    pub async fn write_record<T: Serialize + ?Sized>(
        &mut self,
        record: &T,
    ) -> Result<(), StorageError> {
        self.check_open()?;
        self.line.clear();
        serde_json::to_writer(&mut self.line, record)?;
        self.line.push(b'\n');
        let line = std::mem::take(&mut self.line);
        let written = self.write_line(&line).await;
        self.line = line;
        written
    }

    /// Appends one record as a line, its JSON text exactly as given (as the platform sent it: no parsing and
    /// re-serializing). The connectors hand over single-line records; a record whose text spans lines anyway
    /// (pretty-printed) loses the whitespace outside its strings here, and nothing else (a re-serialization
    /// through `serde_json::Value` would round `12345678901234567890.123` and fail on `1e400` or `"\ud800"`),
    /// so one line is always one record.
    pub async fn write_raw(&mut self, record: &RawValue) -> Result<(), StorageError> {
        self.check_open()?;
        let text = record.get();
        let compacted;
        let text = if text.contains(['\n', '\r']) {
            compacted = crate::connectors::compact_json(text);
            compacted.as_str()
        } else {
            text
        };
        self.line.clear();
        self.line.reserve(text.len() + 1);
        self.line.extend_from_slice(text.as_bytes());
        self.line.push(b'\n');
        let line = std::mem::take(&mut self.line);
        let written = self.write_line(&line).await;
        self.line = line;
        written
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.encoder.is_none() || self.upload.is_none() {
            return Err(StorageError::WriterClosed);
        }
        Ok(())
    }

    /// Compresses one complete line (newline included) and uploads a part once enough is buffered. A line
    /// after [`SEEK_POINT_INTERVAL`] bytes of the current member starts a new member (so no member is
    /// ever empty, nor a line cut between two).
    async fn write_line(&mut self, line: &[u8]) -> Result<(), StorageError> {
        if self.member_bytes >= SEEK_POINT_INTERVAL {
            let member = self.encoder.take().ok_or(StorageError::WriterClosed)?;
            let buffered = member.finish()?;
            // Offsets count the compressed file: what was handed to the upload, then what is buffered.
            let offset = self.bytes + buffered.len() as u64;
            self.seek_points.push(SeekPoint(self.records, offset));
            self.encoder = Some(GzEncoder::new(buffered, Compression::new(self.gzip_level)));
            self.member_bytes = 0;
        }
        let encoder = self.encoder.as_mut().ok_or(StorageError::WriterClosed)?;
        encoder.write_all(line)?;
        self.records += 1;
        self.uncompressed_bytes += line.len() as u64;
        self.member_bytes += line.len() as u64;

        let buffered = encoder.get_ref().len();
        self.peak_buffered = self.peak_buffered.max(buffered);
        if buffered >= self.part_size {
            let part = std::mem::replace(
                encoder.get_mut(),
                Vec::with_capacity(self.part_size.saturating_add(64 * 1024)),
            );
            self.upload_part(part).await?;
        }
        Ok(())
    }

    /// Flushes the gzip trailer, uploads the last part and completes the upload: only now does the file
    /// appear at its path.
    pub async fn finish(mut self) -> Result<WrittenFile, StorageError> {
        let encoder = self.encoder.take().ok_or(StorageError::WriterClosed)?;
        let last = encoder.finish()?;
        self.peak_buffered = self.peak_buffered.max(last.len());
        self.upload_part_of(last, true).await?;
        let mut upload = self.upload.take().ok_or(StorageError::WriterClosed)?;
        if let Err(error) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(error.into());
        }
        let hasher = std::mem::take(&mut self.hasher);
        Ok(WrittenFile {
            name: std::mem::take(&mut self.name),
            data_type: std::mem::take(&mut self.data_type),
            path: std::mem::take(&mut self.path),
            records: self.records,
            bytes: self.bytes,
            uncompressed_bytes: self.uncompressed_bytes,
            sha256: hex::encode(hasher.finalize()),
            encryption: self.encryption.as_ref().map(FileEncryptor::record),
            seek_points: std::mem::take(&mut self.seek_points),
        })
    }

    /// Gives the file up and waits for its partial upload to be removed (dropping the writer does the same
    /// in the background).
    pub async fn abort(mut self) -> Result<(), StorageError> {
        self.encoder = None;
        match self.upload.take() {
            Some(mut upload) => Ok(upload.abort().await?),
            None => Ok(()),
        }
    }

    async fn upload_part(&mut self, part: Vec<u8>) -> Result<(), StorageError> {
        self.upload_part_of(part, false).await
    }

    /// Uploads one part of the compressed file: as it is, or encrypted (`last` seals the last chunk, so
    /// even an empty last part uploads the ciphertext's end).
    async fn upload_part_of(&mut self, part: Vec<u8>, last: bool) -> Result<(), StorageError> {
        if part.is_empty() && !(last && self.encryption.is_some()) {
            return Ok(());
        }
        self.hasher.update(&part);
        let len = part.len() as u64;
        let part = match &mut self.encryption {
            Some(encryptor) => {
                // The chunk pending from the last part, this part, a tag per chunk and the header.
                let mut sealed =
                    Vec::with_capacity(part.len() + CHUNK_SIZE + part.len() / 1024 + 512);
                encryptor.update(&part, &mut sealed)?;
                if last {
                    encryptor.finish(&mut sealed)?;
                }
                // The plaintext part goes before the ciphertext is uploaded: two parts are held only while
                // one is being encrypted.
                drop(part);
                sealed
            }
            None => part,
        };
        if part.is_empty() {
            // Less than a chunk so far: it goes with the next part.
            self.bytes += len;
            return Ok(());
        }
        let mut upload = self.upload.take().ok_or(StorageError::WriterClosed)?;
        // One part in flight at a time: that is what bounds memory. The gzip encoder is the slower side for
        // local directories; for S3 a second part in flight would buy throughput at the cost of one more
        // part of memory.
        match upload.put_part(PutPayload::from(part)).await {
            Ok(()) => {
                self.bytes += len;
                self.parts += 1;
                self.upload = Some(upload);
                Ok(())
            }
            Err(error) => {
                // Leaves the writer closed: a file with a hole must never be completed.
                let _ = upload.abort().await;
                Err(error.into())
            }
        }
    }

    /// The file name this writer produces, e.g. `customers.ndjson.gz`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Compressed bytes uploaded so far.
    pub fn bytes_uploaded(&self) -> u64 {
        self.bytes
    }

    /// Compressed bytes written so far: uploaded, plus the compressed output waiting for the next part (for
    /// progress while a file is being written; the deflate state not yet flushed into the buffer, at most a
    /// few tens of KiB, shows up with the next write or at [`finish`](Self::finish)).
    pub fn bytes_written(&self) -> u64 {
        self.bytes
            + self
                .encoder
                .as_ref()
                .map_or(0, |encoder| encoder.get_ref().len() as u64)
    }

    pub fn uncompressed_bytes(&self) -> u64 {
        self.uncompressed_bytes
    }

    /// Parts uploaded so far.
    pub fn parts_uploaded(&self) -> u32 {
        self.parts
    }

    /// The most compressed output this writer ever held before uploading it: the memory bound, tested.
    pub fn peak_buffered_bytes(&self) -> usize {
        self.peak_buffered
    }
}

impl Drop for NdjsonWriter {
    fn drop(&mut self) {
        // Not finished: abort the multipart upload so that S3 does not keep (and bill) its parts. Local
        // uploads also clean their staging file up on drop. Without a runtime there is nothing to run the
        // abort on; a bucket lifecycle rule catches those.
        if let Some(mut upload) = self.upload.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = upload.abort().await;
                });
            }
        }
    }
}

impl std::fmt::Debug for NdjsonWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NdjsonWriter")
            .field("path", &self.path)
            .field("records", &self.records)
            .field("bytes", &self.bytes)
            .field("parts", &self.parts)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod raw_tests {
    use std::io::Read;

    use flate2::read::MultiGzDecoder as GzDecoder;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use super::*;

    async fn writer(store: &InMemory, part_size: usize) -> NdjsonWriter {
        let path = ObjectPath::from("job/customers.ndjson.gz");
        let upload = store.put_multipart(&path).await.unwrap();
        NdjsonWriter::new(
            upload,
            path,
            "customers.ndjson.gz".into(),
            "customers".into(),
            part_size,
            6,
        )
    }

    async fn read_back(store: &InMemory) -> String {
        let path = ObjectPath::from("job/customers.ndjson.gz");
        let gz = store.get(&path).await.unwrap().bytes().await.unwrap();
        let mut text = String::new();
        GzDecoder::new(&gz[..]).read_to_string(&mut text).unwrap();
        text
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn a_large_file_is_gzip_members_each_starting_at_a_recorded_line_and_offset() {
        let store = InMemory::new();
        // Parts smaller than a member, so offsets cross part boundaries.
        let mut writer = writer(&store, 64 * 1024).await;
        let records = 3_000u64;
        for i in 0..records {
            let pad = format!("{i:x}").repeat(40 + (i as usize % 50));
            writer
                .write_record(&serde_json::json!({"id": i, "pad": pad}))
                .await
                .unwrap();
        }
        let file = writer.finish().await.unwrap();
        let per_member = SEEK_POINT_INTERVAL / (file.uncompressed_bytes / records) + 1;
        assert!(
            file.seek_points.len() as u64 >= records / per_member - 1,
            "{} seek points for {} uncompressed bytes",
            file.seek_points.len(),
            file.uncompressed_bytes
        );
        let path = ObjectPath::from("job/customers.ndjson.gz");
        let gz = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(gz.len() as u64, file.bytes);
        // The whole file still reads as one gzip file of every line, in order.
        let text = read_back(&store).await;
        assert_eq!(text.lines().count() as u64, records);
        let mut previous = SeekPoint(0, 0);
        for point in &file.seek_points {
            assert!(point.line() > previous.line() && point.offset() > previous.offset());
            // One member alone, from its offset: it starts with its line and ends at a line's end.
            let mut member = flate2::read::GzDecoder::new(&gz[point.offset() as usize..]);
            let mut text = String::new();
            member.read_to_string(&mut text).unwrap();
            assert!(text.ends_with('\n'));
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            assert_eq!(first["id"], point.line());
            assert!(text.len() as u64 <= SEEK_POINT_INTERVAL + 1024);
            previous = *point;
        }
        assert_eq!(file.manifest_file(None).seek_points, file.seek_points);
    }

    #[tokio::test]
    async fn raw_records_are_stored_byte_for_byte_one_per_line() {
        let store = InMemory::new();
        let mut writer = writer(&store, 1 << 20).await;
        // Key order, spacing and a number beyond u64/f64 survive: nothing is parsed and re-serialized.
        let exact = r#"{"z": 1, "a":123456789012345678901234567890,"s":"line\nbreak"}"#;
        writer.write_raw(&raw(exact)).await.unwrap();
        // A pretty-printed record would span lines: it is written compactly.
        writer
            .write_raw(&raw("{\n  \"id\": \"cus_2\",\n  \"n\": [1,\r\n 2]\n}"))
            .await
            .unwrap();
        // Spanning lines or not, what no `serde_json::Value` holds is kept as it is.
        writer
            .write_raw(&raw(
                "{\n  \"big\": 1e400,\n  \"d\": 12345678901234567890.123,\n  \"s\": \"a \\ud800 b\"\n}",
            ))
            .await
            .unwrap();
        writer
            .write_record(&serde_json::json!({"id": 3}))
            .await
            .unwrap();
        let file = writer.finish().await.unwrap();
        assert_eq!(file.records, 4);
        let text = read_back(&store).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                exact,
                r#"{"id":"cus_2","n":[1,2]}"#,
                r#"{"big":1e400,"d":12345678901234567890.123,"s":"a \ud800 b"}"#,
                r#"{"id":3}"#
            ]
        );
        assert_eq!(file.uncompressed_bytes, text.len() as u64);
    }

    #[tokio::test]
    async fn bytes_written_counts_what_is_buffered_before_any_part_is_uploaded() {
        let store = InMemory::new();
        let mut writer = writer(&store, 64 << 20).await;
        assert_eq!(writer.bytes_written(), 0);
        for i in 0..5_000u64 {
            // Hash-like noise keeps the output from compressing to nothing.
            let noise = hex::encode(Sha256::digest(i.to_le_bytes()));
            let record = format!(r#"{{"id":"cus_{i:08}","noise":"{noise}"}}"#);
            writer.write_raw(&raw(&record)).await.unwrap();
        }
        assert_eq!(writer.bytes_uploaded(), 0, "one part holds it all");
        let buffered = writer.bytes_written();
        assert!(buffered > 100_000, "{buffered}");
        let file = writer.finish().await.unwrap();
        assert!(file.bytes >= buffered, "{} < {buffered}", file.bytes);
    }
}
