//! The storage writer against a real local directory (`file://` URLs), one temporary directory per test.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{TimeZone, Utc};
use flate2::read::MultiGzDecoder as GzDecoder;
use futures::TryStreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;

/// A fresh directory under the system temp dir, removed (with everything in it) when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!(
            "listbackup-storage-test-{}-{}-{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Self(dir)
    }

    fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }

    fn store(&self) -> BackupStore {
        BackupStore::from_url(&self.url()).unwrap()
    }

    /// Every regular file under the directory, relative to it.
    fn files(&self) -> Vec<String> {
        fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(root, &path, out);
                } else {
                    out.push(path.strip_prefix(root).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &self.0, &mut out);
        out.sort();
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(i: u64) -> Value {
    // A hash per record keeps the data from compressing to nothing, so that large tests really upload many
    // parts.
    let noise = hex::encode(Sha256::digest(i.to_le_bytes()));
    json!({
        "id": format!("cus_{i:08}"),
        "email": format!("customer{i}@example.com"),
        "balance": i * 7 % 1000,
        "metadata": {"noise": noise, "note": "line\nbreaks and \"quotes\" stay inside one line"},
    })
}

async fn write_records(artifacts: &JobArtifacts, data_type: &str, count: u64) -> WrittenFile {
    let mut writer = artifacts.data_type_writer(data_type).await.unwrap();
    for i in 0..count {
        writer.write_record(&record(i)).await.unwrap();
    }
    writer.finish().await.unwrap()
}

fn gunzip_lines(gz: &[u8]) -> Vec<Value> {
    let mut text = String::new();
    GzDecoder::new(gz).read_to_string(&mut text).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn started_at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

#[tokio::test]
async fn ten_thousand_records_round_trip_through_the_designed_layout() {
    let dir = TempDir::new();
    // Small parts, so that the file is assembled from many.
    let store = dir.store().with_part_size(64 * 1024);
    let artifacts = store.job("acme", "s1", "j1");

    let file = write_records(&artifacts, "customers", 10_000).await;
    assert_eq!(file.records, 10_000);
    assert_eq!(file.name, "customers.ndjson.gz");
    assert_eq!(
        file.path.as_ref(),
        "accounts/acme/sources/s1/jobs/j1/customers.ndjson.gz"
    );

    let on_disk = dir
        .0
        .join("accounts/acme/sources/s1/jobs/j1/customers.ndjson.gz");
    let gz = std::fs::read(&on_disk).unwrap();
    assert_eq!(gz.len() as u64, file.bytes);
    assert!(gz.len() > 4 * 64 * 1024, "expected several parts");
    let records = gunzip_lines(&gz);
    assert_eq!(records.len(), 10_000);
    for (i, got) in records.iter().enumerate() {
        assert_eq!(got, &record(i as u64));
    }
    let raw: u64 = (0..10_000)
        .map(|i| serde_json::to_vec(&record(i)).unwrap().len() as u64 + 1)
        .sum();
    assert_eq!(file.uncompressed_bytes, raw);
}

#[tokio::test]
async fn the_recorded_sha256_is_the_stored_files() {
    let dir = TempDir::new();
    let store = dir.store().with_part_size(16 * 1024);
    let artifacts = store.job("acme", "s1", "j1");
    let file = write_records(&artifacts, "invoices", 3_000).await;

    let stored = std::fs::read(dir.0.join(file.path.as_ref())).unwrap();
    assert_eq!(file.sha256, hex::encode(Sha256::digest(&stored)));
    assert_eq!(file.sha256.len(), 64);
}

#[tokio::test]
async fn the_manifest_lists_every_file_and_is_written_last() {
    let dir = TempDir::new();
    let store = dir.store();
    let artifacts = store.job("acme", "s1", "j1");
    let mut manifest = artifacts.new_manifest("stripe", 1, started_at());
    manifest.incremental = true;

    let customers = write_records(&artifacts, "customers", 1_500).await;
    manifest.add_file(customers.manifest_file(Some(json!({"created": 1700000000}))));
    manifest
        .cursors
        .insert("customers".into(), json!({"created": 1700000500}));
    let empty = write_records(&artifacts, "payouts", 0).await;
    manifest.add_file(empty.manifest_file(None));
    assert!(
        artifacts.read_manifest().await.unwrap().is_none(),
        "no manifest before it is written"
    );
    manifest.finished_at = started_at() + chrono::Duration::seconds(42);

    let (sha256, path) = artifacts.write_manifest(&manifest).await.unwrap();
    assert_eq!(
        path.as_ref(),
        "accounts/acme/sources/s1/jobs/j1/manifest.json"
    );
    let stored = std::fs::read(dir.0.join(path.as_ref())).unwrap();
    assert_eq!(sha256, hex::encode(Sha256::digest(&stored)));

    let json: Value = serde_json::from_slice(&stored).unwrap();
    assert_eq!(json["jobId"], "j1");
    assert_eq!(json["attempt"], 1);
    assert_eq!(json["complete"], true);
    assert_eq!(json["incremental"], true);
    assert_eq!(json["records"], 1_500);
    assert_eq!(json["bytes"], customers.bytes + empty.bytes);
    assert_eq!(json["startedAt"], "2026-11-24T12:00:00Z");
    assert_eq!(json["finishedAt"], "2026-11-24T12:00:42Z");
    assert_eq!(json["cursors"]["customers"]["created"], 1700000500);
    let files = json["files"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(
        files[0],
        json!({
            "name": "customers.ndjson.gz", "dataType": "customers", "records": 1_500,
            "bytes": customers.bytes, "sha256": customers.sha256, "since": {"created": 1700000000},
            "seekPoints": customers.seek_points.iter().map(|p| [p.line(), p.offset()]).collect::<Vec<_>>()
        })
    );
    // 1,500 records of some 200 bytes: a second gzip member begins past 256 KiB.
    assert_eq!(customers.seek_points.len(), 1);
    assert_eq!(files[1]["records"], 0);
    assert_eq!(files[1]["sha256"], empty.sha256);

    let read = artifacts.read_manifest().await.unwrap().unwrap();
    assert_eq!(read, manifest);
    // Every file the manifest names is stored with the size and hash it says.
    for file in &read.files {
        let stored =
            std::fs::read(dir.0.join(artifacts.path_of(&file.name).unwrap().as_ref())).unwrap();
        assert_eq!(stored.len() as u64, file.bytes);
        assert_eq!(hex::encode(Sha256::digest(&stored)), file.sha256);
    }
    let names: Vec<String> = artifacts
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(
        names,
        ["customers.ndjson.gz", "manifest.json", "payouts.ndjson.gz"]
    );
}

#[tokio::test]
async fn a_manifest_naming_a_file_that_is_not_stored_is_refused() {
    let dir = TempDir::new();
    let artifacts = dir.store().job("acme", "s1", "j1");
    let mut manifest = artifacts.new_manifest("stripe", 1, started_at());
    let file = write_records(&artifacts, "customers", 10).await;
    let mut forged = file.clone();
    forged.name = "invoices.ndjson.gz".into();
    manifest.add_file(file.manifest_file(None));
    manifest.add_file(forged.manifest_file(None));
    assert!(matches!(
        artifacts.write_manifest(&manifest).await,
        Err(StorageError::Incomplete { .. })
    ));
    assert!(artifacts.read_manifest().await.unwrap().is_none());

    let other = dir.store().job("acme", "s1", "j2");
    let mut manifest = other.new_manifest("stripe", 1, started_at());
    manifest.add_file(file.manifest_file(None));
    assert!(matches!(
        artifacts.write_manifest(&manifest).await,
        Err(StorageError::Incomplete { .. })
    ));
}

#[tokio::test]
async fn open_streams_a_stored_file_back() {
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(8 * 1024).job("acme", "s1", "j1");
    let file = write_records(&artifacts, "customers", 2_000).await;

    let chunks: Vec<bytes::Bytes> = artifacts
        .open("customers.ndjson.gz")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let gz: Vec<u8> = chunks.concat();
    assert_eq!(gz.len() as u64, file.bytes);
    assert_eq!(hex::encode(Sha256::digest(&gz)), file.sha256);
    assert_eq!(gunzip_lines(&gz).len(), 2_000);

    assert!(matches!(
        artifacts.open("invoices.ndjson.gz").await,
        Err(StorageError::NotFound { .. })
    ));
    // A file's bytes are `{dataType}/{key}`: one level down, plain names only.
    assert!(matches!(
        artifacts.open("files/a").await,
        Err(StorageError::NotFound { .. })
    ));
    for bad in ["../../etc/passwd", ".hidden", "a/b/c", "a/..", "../a", ""] {
        assert!(
            matches!(artifacts.open(bad).await, Err(StorageError::InvalidName(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn discard_leaves_nothing_behind() {
    let dir = TempDir::new();
    let store = dir.store();
    let artifacts = store.job("acme", "s1", "j1");
    let sibling = store.job("acme", "s1", "j2");
    let kept = write_records(&sibling, "customers", 5).await;

    let mut manifest = artifacts.new_manifest("stripe", 1, started_at());
    for data_type in ["customers", "invoices"] {
        let file = write_records(&artifacts, data_type, 100).await;
        manifest.add_file(file.manifest_file(None));
    }
    artifacts.write_manifest(&manifest).await.unwrap();
    assert_eq!(artifacts.list().await.unwrap().len(), 3);

    artifacts.discard().await.unwrap();
    assert!(artifacts.list().await.unwrap().is_empty());
    assert!(artifacts.read_manifest().await.unwrap().is_none());
    assert!(!dir.0.join(artifacts.dir().as_ref()).exists());
    // Only the other job's file is left, on disk as well.
    assert_eq!(dir.files(), [kept.path.to_string()]);
    // Discarding nothing is fine.
    artifacts.discard().await.unwrap();
}

#[tokio::test]
async fn discard_removes_the_staged_uploads_of_a_killed_writer() {
    let dir = TempDir::new();
    let store = dir.store().with_part_size(4 * 1024);
    let artifacts = store.job("acme", "s1", "j1");
    let kept = write_records(&artifacts, "customers", 50).await;
    let mut writer = artifacts.data_type_writer("invoices").await.unwrap();
    for i in 0..1_000 {
        writer.write_record(&record(i)).await.unwrap();
    }
    // A killed process neither finishes nor aborts: its staged upload stays, hidden from listings.
    std::mem::forget(writer);
    let staged: Vec<String> = dir
        .files()
        .into_iter()
        .filter(|f| f.ends_with("invoices.ndjson.gz#1"))
        .collect();
    assert_eq!(staged.len(), 1, "{:?}", dir.files());
    assert_eq!(artifacts.list().await.unwrap().len(), 1);
    // Another job's staged upload is not this discard's business.
    let sibling = store.job("acme", "s1", "j2");
    let mut other = sibling.data_type_writer("invoices").await.unwrap();
    other.write_record(&record(1)).await.unwrap();

    artifacts.discard().await.unwrap();
    let left = dir.files();
    assert!(
        !left.iter().any(|f| f.contains("/jobs/j1/")),
        "nothing of j1 is left: {left:?}"
    );
    assert!(!left.contains(&kept.path.to_string()));
    assert!(left
        .iter()
        .any(|f| f.contains("/jobs/j2/invoices.ndjson.gz#")));
    other.abort().await.unwrap();
}

#[tokio::test]
async fn a_writer_dropped_before_finishing_leaves_nothing_that_looks_complete() {
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(4 * 1024).job("acme", "s1", "j1");
    let mut writer = artifacts.data_type_writer("customers").await.unwrap();
    for i in 0..2_000 {
        writer.write_record(&record(i)).await.unwrap();
    }
    assert!(writer.parts_uploaded() > 1, "parts were uploaded");
    drop(writer);

    assert!(artifacts.list().await.unwrap().is_empty());
    assert!(artifacts.read_manifest().await.unwrap().is_none());
    assert!(matches!(
        artifacts.open("customers.ndjson.gz").await,
        Err(StorageError::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_aborted_writer_removes_its_partial_upload() {
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(4 * 1024).job("acme", "s1", "j1");
    let mut writer = artifacts.data_type_writer("customers").await.unwrap();
    for i in 0..1_000 {
        writer.write_record(&record(i)).await.unwrap();
    }
    assert!(!dir.files().is_empty(), "the partial upload is staged");
    writer.abort().await.unwrap();
    assert_eq!(dir.files(), Vec::<String>::new());
}

#[tokio::test]
async fn a_new_attempt_replaces_the_previous_attempts_file() {
    let dir = TempDir::new();
    let artifacts = dir.store().job("acme", "s1", "j1");
    write_records(&artifacts, "customers", 50).await;
    let second = write_records(&artifacts, "customers", 7).await;
    let chunks: Vec<bytes::Bytes> = artifacts
        .open("customers.ndjson.gz")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(gunzip_lines(&chunks.concat()).len(), 7);
    assert_eq!(second.records, 7);
}

#[tokio::test]
async fn the_writers_buffer_stays_bounded_by_the_part_size() {
    const PART: usize = 256 * 1024;
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(PART).job("acme", "s1", "j1");
    let mut writer = artifacts.data_type_writer("customers").await.unwrap();
    for i in 0..200_000 {
        writer.write_record(&record(i)).await.unwrap();
    }
    let peak = writer.peak_buffered_bytes();
    let parts = writer.parts_uploaded();
    let file = writer.finish().await.unwrap();

    // The data set is many times the part size, the buffer never more than a part plus one compressor flush.
    assert!(
        file.bytes > 20 * PART as u64,
        "{} bytes is too little to tell",
        file.bytes
    );
    assert!(parts > 20, "{parts} parts");
    assert!(peak >= PART, "{peak}");
    assert!(peak <= PART + 64 * 1024, "peak buffer {peak} bytes");
    assert_eq!(file.records, 200_000);
}

#[test]
fn storage_urls() {
    let dir = TempDir::new();
    assert!(!dir.0.exists());
    BackupStore::from_url(&dir.url()).unwrap();
    assert!(dir.0.is_dir(), "a local directory is created");
    BackupStore::from_url(dir.0.to_str().unwrap()).unwrap();
    BackupStore::from_url("memory://").unwrap();
    BackupStore::from_url("s3://listbackup-backups/prod/eu").unwrap();
    for bad in ["ftp://host/x", "s3://", "relative/dir", ""] {
        assert!(
            matches!(
                BackupStore::from_url(bad),
                Err(StorageError::InvalidUrl { .. })
            ),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn ids_cannot_escape_their_directory() {
    let dir = TempDir::new();
    let artifacts = dir.store().job("../evil", "s/1", "..");
    write_records(&artifacts, "customers", 1).await;
    for file in dir.files() {
        assert!(file.starts_with("accounts/"), "{file}");
    }
    assert!(matches!(
        artifacts.data_type_writer("../customers").await,
        Err(StorageError::InvalidName(_))
    ));
}

#[tokio::test]
async fn the_memory_store_works_the_same() {
    let store = BackupStore::from_url("memory://").unwrap();
    let artifacts = store.job("acme", "s1", "j1");
    let file = write_records(&artifacts, "customers", 100).await;
    let mut manifest = artifacts.new_manifest("stripe", 2, started_at());
    manifest.add_file(file.manifest_file(None));
    artifacts.write_manifest(&manifest).await.unwrap();
    assert_eq!(artifacts.read_manifest().await.unwrap().unwrap().attempt, 2);
    artifacts.discard().await.unwrap();
    assert!(artifacts.list().await.unwrap().is_empty());
}

/// Workers run backups in spawned tasks on a multi-threaded runtime: everything here must be `Send`.
#[allow(dead_code)]
fn the_writer_and_its_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let store = BackupStore::from_url("memory://").unwrap();
    let artifacts = store.job("a", "s", "j");
    assert_send(&artifacts);
    assert_send(&artifacts.data_type_writer("customers"));
    assert_send(&artifacts.list());
    assert_send(&artifacts.discard());
    let writer: Option<NdjsonWriter> = None;
    if let Some(mut writer) = writer {
        assert_send(&writer.write_record(&json!({})));
        assert_send(&writer.finish());
    }
}

#[tokio::test]
async fn the_gzip_level_trades_size_for_speed_and_the_records_stay_the_same() {
    let dir = TempDir::new();
    let records: Vec<Value> = (0..2_000)
        .map(|i| json!({"id": format!("cus_{i:08}"), "email": format!("user{i}@example.com"),
                        "description": "a customer whose record repeats much of its neighbours' text",
                        "metadata": {"plan": if i % 3 == 0 { "gold" } else { "basic" }}}))
        .collect();
    let mut sizes = Vec::new();
    for (job, level) in [("fast", 1), ("small", 9)] {
        let artifacts = dir.store().with_gzip_level(level).job("acme", "s1", job);
        let mut writer = artifacts.data_type_writer("customers").await.unwrap();
        for record in &records {
            writer.write_record(record).await.unwrap();
        }
        let file = writer.finish().await.unwrap();
        let mut text = String::new();
        GzDecoder::new(&std::fs::read(dir.0.join(file.path.as_ref())).unwrap()[..])
            .read_to_string(&mut text)
            .unwrap();
        let stored: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(stored, records, "level {level}");
        sizes.push(file.bytes);
    }
    assert!(
        sizes[0] > sizes[1],
        "level 1 stores more than level 9: {sizes:?}"
    );
}

#[tokio::test]
async fn a_files_bytes_stream_through_one_part_of_memory_as_they_are() {
    const PART: usize = 256 * 1024;
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(PART).job("acme", "s1", "j1");
    let mut writer = artifacts
        .content_writer("files", "id:a4ayc_80_OEAAAAAAAAAXw")
        .await
        .unwrap();
    // Twenty parts and a bit, in uneven chunks as a network hands them over.
    let bytes: Vec<u8> = (0..20 * PART + 12_345)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    for chunk in bytes.chunks(16_411) {
        writer.write(chunk).await.unwrap();
        assert!(writer.peak_buffered_bytes() <= PART);
    }
    let peak = writer.peak_buffered_bytes();
    assert_eq!(
        writer.parts_uploaded(),
        20,
        "each full part is uploaded at once"
    );
    let stored = writer.finish().await.unwrap();
    assert_eq!(peak, PART, "never more than one part held");
    assert_eq!(stored.name, "files/id:a4ayc_80_OEAAAAAAAAAXw");
    assert_eq!(stored.bytes, bytes.len() as u64);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(&bytes)));
    // Stored as they are (not gzipped), under the data type's directory.
    let path = dir
        .0
        .join("accounts/acme/sources/s1/jobs/j1/files/id:a4ayc_80_OEAAAAAAAAAXw");
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    let opened: Vec<u8> = artifacts
        .open("files/id:a4ayc_80_OEAAAAAAAAAXw")
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .concat();
    assert_eq!(opened, bytes);
    let listed: Vec<String> = artifacts
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(listed, ["files/id:a4ayc_80_OEAAAAAAAAAXw"]);
}

#[tokio::test]
async fn an_empty_file_and_an_unusual_id_are_stored_too() {
    let dir = TempDir::new();
    let artifacts = dir.store().job("acme", "s1", "j1");
    let writer = artifacts
        .content_writer("files", "../etc/passwd")
        .await
        .unwrap();
    let stored = writer.finish().await.unwrap();
    assert_eq!(stored.bytes, 0);
    assert_eq!(stored.sha256, hex::encode(Sha256::digest(b"")));
    // An id that is not a plain name is stored under its hash: it never reaches outside the directory.
    assert!(stored.name.starts_with("files/sha256-"), "{}", stored.name);
    assert_eq!(
        dir.files(),
        [format!("accounts/acme/sources/s1/jobs/j1/{}", stored.name)]
    );
    assert!(artifacts.path_of("files/../x").is_err());
    assert!(artifacts.path_of("files/a/b").is_err());
}

#[tokio::test]
async fn a_failed_data_types_file_contents_are_discarded_with_it() {
    let dir = TempDir::new();
    let artifacts = dir.store().job("acme", "s1", "j1");
    for id in ["a", "b"] {
        let mut writer = artifacts.content_writer("files", id).await.unwrap();
        writer.write(b"bytes").await.unwrap();
        writer.finish().await.unwrap();
    }
    let kept = write_records(&artifacts, "shared_drives", 3).await;
    artifacts.discard_contents("files").await.unwrap();
    assert_eq!(
        dir.files(),
        [format!("accounts/acme/sources/s1/jobs/j1/{}", kept.name)]
    );
}

#[tokio::test]
async fn a_killed_content_writers_staged_upload_is_discarded_with_its_job() {
    let dir = TempDir::new();
    let artifacts = dir.store().with_part_size(1024).job("acme", "s1", "j1");
    let mut writer = artifacts.content_writer("files", "big").await.unwrap();
    writer.write(&[7u8; 4096]).await.unwrap();
    // A worker killed mid-download: nothing aborts the upload.
    std::mem::forget(writer);
    assert!(
        dir.files().iter().any(|f| f.contains("files/big#")),
        "{:?}",
        dir.files()
    );
    artifacts.discard().await.unwrap();
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

/// The store of `dir` with data keys whose database is never reached (a bogus address: the pool connects
/// lazily), for reading files that need no key.
fn keyed_store_without_database(dir: &TempDir) -> BackupStore {
    let pool = deadpool_postgres::Config {
        url: Some("postgres://nobody@127.0.0.1:1/none".into()),
        ..Default::default()
    }
    .create_pool(
        Some(deadpool_postgres::Runtime::Tokio1),
        tokio_postgres::NoTls,
    )
    .unwrap();
    let keys = listbackup_commands::vault::MasterKeys::from_base64(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &[],
    )
    .unwrap();
    dir.store()
        .with_data_keys(listbackup_commands::data_keys::DataKeys::new(
            pool,
            std::sync::Arc::new(keys),
        ))
}

#[tokio::test]
async fn a_backup_stored_before_encryption_still_downloads_and_checks_as_stored() {
    use listbackup_commands::artifacts::{JobFiles, JobLocation};
    let dir = TempDir::new();
    let plain = dir.store();
    let location = JobLocation {
        account_id: "acme",
        source_id: listbackup_domain::SourceId::new(),
        job_id: listbackup_domain::JobId::new(),
    };
    let artifacts = plain.job_at(location);
    let file = write_records(&artifacts, "customers", 500).await;
    assert_eq!(file.encryption, None);
    let mut manifest = artifacts.new_manifest("stripe", 1, started_at());
    manifest.add_file(file.manifest_file(None));
    artifacts.write_manifest(&manifest).await.unwrap();
    let json = serde_json::to_value(&manifest).unwrap();
    assert!(json["files"][0].get("encryption").is_none(), "{json}");

    // Read by a process that encrypts: the manifest has no encryption fields, so the file is as stored.
    let keyed = keyed_store_without_database(&dir);
    assert!(keyed.encrypts());
    let stream = keyed
        .open(location, "customers.ndjson.gz")
        .await
        .unwrap()
        .unwrap();
    let bytes: Vec<u8> = stream.map_ok(|b| b.to_vec()).try_concat().await.unwrap();
    assert_eq!(hex::encode(Sha256::digest(&bytes)), file.sha256);
    assert_eq!(gunzip_lines(&bytes).len(), 500);
    let check = keyed
        .check(location, "customers.ndjson.gz")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(check.stored_sha256, file.sha256);
    assert_eq!(check.stored_bytes, file.bytes);
    assert!(check.plaintext.is_none(), "nothing to decrypt");
}

#[tokio::test]
async fn an_encrypted_writer_streams_many_parts_and_records_both_hashes() {
    use listbackup_commands::data_keys::DataKey;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    let store = InMemory::new();
    let path = ObjectPath::from("accounts/acme/sources/s1/jobs/j1/customers.ndjson.gz");
    let key = std::sync::Arc::new(DataKey::from_bytes("dk_test", [9; 32]));
    // Parts smaller than a chunk and larger: chunks straddle parts either way.
    for part_size in [20 * 1024, 200 * 1024] {
        let upload = store.put_multipart(&path).await.unwrap();
        let mut writer = NdjsonWriter::new(
            upload,
            path.clone(),
            "customers.ndjson.gz".into(),
            "customers".into(),
            part_size,
            1,
        )
        .with_encryption(Some(
            encryption::FileEncryptor::new(&key, path.as_ref()).unwrap(),
        ));
        for i in 0..5_000 {
            writer.write_record(&record(i)).await.unwrap();
        }
        assert!(
            writer.peak_buffered_bytes() < part_size + 64 * 1024,
            "{}",
            writer.peak_buffered_bytes()
        );
        let file = writer.finish().await.unwrap();
        let stored = store.get(&path).await.unwrap().bytes().await.unwrap();
        let encryption = file.encryption.clone().unwrap();
        assert_eq!(encryption.key_id, "dk_test");
        assert_eq!(encryption.ciphertext_bytes, stored.len() as u64);
        assert_eq!(
            encryption.ciphertext_sha256,
            hex::encode(Sha256::digest(&stored))
        );
        // Decrypted, it is the gzip file whose sha256 and size the manifest gives as the file's.
        let mut decryptor = encryption::FileDecryptor::new(key.clone(), path.as_ref());
        let mut plain = Vec::new();
        for piece in stored.chunks(10_000) {
            decryptor.update(piece, &mut plain).unwrap();
        }
        decryptor.finish(&mut plain).unwrap();
        assert_eq!(plain.len() as u64, file.bytes);
        assert_eq!(hex::encode(Sha256::digest(&plain)), file.sha256);
        assert_eq!(gunzip_lines(&plain).len(), 5_000);
        assert_eq!(gunzip_lines(&plain)[4_999], record(4_999));
    }
}
