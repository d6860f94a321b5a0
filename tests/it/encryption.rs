//! Encryption at rest (issue 13 §2): every backup file is stored encrypted with its account's data key,
//! whatever it holds (records, a file platform's bytes); a download gives back exactly the plaintext the
//! manifest's `sha256` names; verification checks the stored ciphertext and its decryption; erasing an
//! account destroys its keys and credentials, its downloads then answer 410, and the audit chain of every
//! stream still verifies.

use crate::support;

use std::io::Read;

use serde_json::{json, Value};
use sha2::Digest;
use support::backup::{stripe_source, sync_when_free, BackupApp};
use support::{problem_code, wait_until};

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn job_dir(backup: &BackupApp, source_id: &str, job_id: &str) -> std::path::PathBuf {
    backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"))
}

fn manifest(dir: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap()
}

/// A Stripe backup of 40 customers and 12 invoices, succeeded; `(source id, job id)`.
async fn stripe_backup(backup: &BackupApp, token: &str) -> (String, String) {
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 40);
    backup.api.seed("stripe", "invoices", 12);
    let source_id = stripe_source(
        &backup.app,
        token,
        "Stripe",
        &["customers", "invoices"],
        false,
    )
    .await;
    let job_id = sync_when_free(&backup.app, token, &source_id).await;
    let job = backup.finished(token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    (source_id, job_id)
}

async fn download(backup: &BackupApp, token: &str, job_id: &str, name: &str) -> Vec<u8> {
    let response = backup
        .app
        .get(&format!("/jobs/{job_id}/files/{name}"), token)
        .await;
    assert_eq!(response.status(), 200, "{name}");
    response.bytes().await.unwrap().to_vec()
}

async fn verify(backup: &BackupApp, token: &str, job_id: &str) -> Value {
    let response = backup
        .app
        .post(&format!("/jobs/{job_id}/verify"), token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_backup_is_stored_encrypted_and_downloads_give_the_plaintext_back() {
    let backup = BackupApp::spawn().await;
    let token = backup.app.owner("acme");
    let (source_id, job_id) = stripe_backup(&backup, &token).await;
    let dir = job_dir(&backup, &source_id, &job_id);
    let manifest = manifest(&dir);
    let key_id: String = backup
        .app
        .db
        .connect()
        .await
        .query_one(
            "SELECT key_id FROM account_data_keys WHERE account_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let listed: Value = backup
        .app
        .get(&format!("/jobs/{job_id}/files"), &token)
        .await
        .json()
        .await
        .unwrap();
    for (data_type, records) in [("customers", 40), ("invoices", 12)] {
        let name = format!("{data_type}.ndjson.gz");
        let stored = std::fs::read(dir.join(&name)).unwrap();
        let entry = manifest["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap();
        // The manifest records the ciphertext as stored, and the key that encrypted it.
        let encryption = &entry["encryption"];
        assert_eq!(encryption["scheme"], "aes256gcm-stream-v1", "{entry}");
        assert_eq!(encryption["keyId"], key_id.as_str());
        assert_eq!(encryption["ciphertextSha256"], sha256(&stored));
        assert_eq!(encryption["ciphertextBytes"], stored.len() as u64);
        // Stored: the format's header, and no gzip stream, nothing of the records readable.
        assert!(stored.starts_with(b"LBEF"), "{name}");
        let mut text = String::new();
        assert!(
            flate2::read::MultiGzDecoder::new(&stored[..])
                .read_to_string(&mut text)
                .is_err(),
            "{name} is not a gzip stream as stored"
        );

        // A download gives the plaintext back: the sha256 and size the manifest and the listing name.
        let downloaded = download(&backup, &token, &job_id, &name).await;
        assert_eq!(entry["sha256"], sha256(&downloaded));
        assert_eq!(entry["bytes"], downloaded.len() as u64);
        let listing = listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap();
        assert_eq!(listing["sha256"], entry["sha256"]);
        let mut ndjson = String::new();
        flate2::read::MultiGzDecoder::new(&downloaded[..])
            .read_to_string(&mut ndjson)
            .unwrap();
        let lines: Vec<Value> = ndjson
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), records, "{name}");
        // A known record value: in the plaintext, absent from the stored bytes.
        let id = lines[0]["id"].as_str().unwrap();
        assert!(ndjson.contains(id));
        assert!(
            !stored.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} is readable in the stored {name}"
        );
    }
    // The manifest is stored as it is (it holds no record): still the file whose sha256 the job recorded.
    let job = backup.job(&token, &job_id).await;
    assert_eq!(
        sha256(&download(&backup, &token, &job_id, "manifest.json").await),
        job["manifestSha256"].as_str().unwrap()
    );
    // Verification reads the ciphertext and decrypts it: intact.
    let result = verify(&backup, &token, &job_id).await;
    assert_eq!(result["status"], "verified", "{result}");
    assert_eq!(result["files"], 3, "{result}");
    backup.stop().await;
}

#[tokio::test]
async fn a_file_platforms_bytes_are_stored_encrypted_and_a_flipped_byte_is_reported_by_verify() {
    let svc = support::files::service("google").await;
    let backup = &svc.backup;
    let token = &svc.token;
    backup.api.seed_files("google", 1, 4, 3000);
    let connection = svc.connect().await;
    let drive = svc.source(&connection, &["files"], false).await;
    let job = svc.run(&drive).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_id = job["jobId"].as_str().unwrap();
    let manifest = svc.manifest(&drive, job_id);
    let contents = manifest["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 4, "{manifest}");
    for content in contents {
        let name = content["name"].as_str().unwrap();
        let index: u64 = content["id"].as_str().unwrap()[5..17].parse().unwrap();
        let bytes = backup.api.file_bytes("google", index);
        let stored = std::fs::read(svc.job_dir(&drive, job_id).join(name)).unwrap();
        assert_eq!(content["encryption"]["ciphertextSha256"], sha256(&stored));
        // None of the file's bytes are stored as they are: no 32-byte run of them is in the stored file.
        assert!(
            bytes
                .chunks(32)
                .filter(|c| c.len() == 32)
                .all(|c| !stored.windows(32).any(|w| w == c)),
            "{name}"
        );
        assert_eq!(download(backup, token, job_id, name).await, bytes, "{name}");
        assert_eq!(content["sha256"], sha256(&bytes));
    }

    // One byte flipped in one stored file's ciphertext: verify names it, with its ciphertext's sha256.
    let victim = contents[2]["name"].as_str().unwrap();
    let path = svc.job_dir(&drive, job_id).join(victim);
    let mut stored = std::fs::read(&path).unwrap();
    let middle = stored.len() / 2;
    stored[middle] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    let result = verify(backup, token, job_id).await;
    assert_eq!(result["status"], "corrupted", "{result}");
    assert_eq!(result["file"], victim);
    assert_eq!(
        result["expected"],
        contents[2]["encryption"]["ciphertextSha256"]
    );
    assert_eq!(result["found"], sha256(&stored));
    // Its download is refused (it does not authenticate), never served altered.
    let response = backup
        .app
        .get(&format!("/jobs/{job_id}/files/{victim}"), token)
        .await;
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 500, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be read back"),
        "{problem}"
    );
    svc.backup.stop().await;
}

/// `LISTBACKUP_STORAGE_ENCRYPTION=off` (benchmarks only) writes new files in plaintext: plain gzip stored, no
/// `encryption` in the manifest, and the download and verification the same as for encrypted files.
#[tokio::test]
async fn with_storage_encryption_off_files_are_written_in_plaintext() {
    let backup = BackupApp::spawn_with(|values| {
        values.insert("LISTBACKUP_STORAGE_ENCRYPTION".into(), "off".into());
    })
    .await;
    let token = backup.app.owner("acme");
    let (source_id, job_id) = stripe_backup(&backup, &token).await;
    let dir = job_dir(&backup, &source_id, &job_id);
    let manifest = manifest(&dir);
    for file in manifest["files"].as_array().unwrap() {
        assert!(file.get("encryption").is_none(), "{file}");
    }
    let stored = std::fs::read(dir.join("customers.ndjson.gz")).unwrap();
    let mut ndjson = String::new();
    flate2::read::MultiGzDecoder::new(&stored[..])
        .read_to_string(&mut ndjson)
        .unwrap();
    assert_eq!(ndjson.lines().count(), 40);
    assert_eq!(
        download(&backup, &token, &job_id, "customers.ndjson.gz").await,
        stored
    );
    assert_eq!(verify(&backup, &token, &job_id).await["status"], "verified");
    backup.stop().await;
}

/// `listbackup jobs download JOB NAME -o DIR`, as a user runs it.
async fn cli_download(
    backup: &BackupApp,
    token: &str,
    job_id: &str,
    name: &str,
    dir: &std::path::Path,
) -> std::process::Output {
    tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"))
            .args(["jobs", "download", job_id, name, "-o"])
            .arg(dir)
            .env_remove("LISTBACKUP_CONFIG")
            .env("LISTBACKUP_URL", backup.app.address.as_str())
            .env("LISTBACKUP_TOKEN", token)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the CLI exits within two minutes")
    .unwrap()
}

/// Every file below `dir` (none when it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// A stored file spans chunks of 64 KiB; one that fails to authenticate after the first has been sent cannot
/// change the answer's status any more: the body is broken off (no final chunk), so every HTTP client sees
/// an incomplete transfer rather than a short file, and nothing altered is ever sent.
#[tokio::test]
async fn a_damaged_later_chunk_breaks_the_download_off_and_sends_nothing_altered() {
    let svc = support::files::service("google").await;
    let backup = &svc.backup;
    let token = &svc.token;
    let size = 300_000;
    backup.api.seed_files("google", 1, 1, size);
    let connection = svc.connect().await;
    let drive = svc.source(&connection, &["files"], false).await;
    let job = svc.run(&drive).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_id = job["jobId"].as_str().unwrap();
    let manifest = svc.manifest(&drive, job_id);
    let content = &manifest["contents"][0];
    let name = content["name"].as_str().unwrap();
    let index: u64 = content["id"].as_str().unwrap()[5..17].parse().unwrap();
    let bytes = backup.api.file_bytes("google", index);
    assert_eq!(bytes.len() as u64, size);

    // One byte flipped near the end: in the last of the file's five chunks.
    let path = svc.job_dir(&drive, job_id).join(name);
    let mut stored = std::fs::read(&path).unwrap();
    let last = stored.len() - 100;
    stored[last] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();

    let response = backup
        .app
        .get(&format!("/jobs/{job_id}/files/{name}"), token)
        .await;
    // The first chunk authenticated, so the answer had begun.
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let mut body = response.bytes_stream();
    let mut broken_off = false;
    while let Some(piece) = futures::StreamExt::next(&mut body).await {
        match piece {
            Ok(piece) => received.extend_from_slice(&piece),
            Err(_) => {
                broken_off = true;
                break;
            }
        }
    }
    assert!(
        broken_off,
        "the body ended as if complete ({} bytes)",
        received.len()
    );
    assert!(received.len() < bytes.len(), "{} bytes", received.len());
    assert!(
        received.len() >= 64 * 1024,
        "the chunks before it were sent"
    );
    assert_eq!(
        received,
        bytes[..received.len()],
        "only authenticated bytes were sent"
    );

    // The CLI reports it and leaves no partial file behind.
    let dir = std::env::temp_dir().join(format!("lb-download-{}", uuid::Uuid::new_v4().simple()));
    let output = cli_download(backup, token, job_id, name, &dir).await;
    assert!(!output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("broke off"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left = walk(&dir);
    assert!(left.is_empty(), "left behind: {left:?}");

    // Intact again, the CLI writes the file platform's file below the directory, as `files/{key}`.
    stored[last] ^= 0x01;
    std::fs::write(&path, &stored).unwrap();
    let output = cli_download(backup, token, job_id, name, &dir).await;
    assert!(output.status.success(), "{output:?}");
    assert_eq!(std::fs::read(dir.join(name)).unwrap(), bytes);
    let _ = std::fs::remove_dir_all(&dir);
    svc.backup.stop().await;
}

#[tokio::test]
async fn erasing_an_account_destroys_its_keys_and_credentials_and_leaves_every_chain_verifiable() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    let token = app.owner("acme");
    let (source_id, job_id) = stripe_backup(&backup, &token).await;
    let listed: Value = app
        .get(&format!("/jobs/{job_id}/files"), &token)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<String> = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names.len(), 3, "{listed}");
    // The backup as a snapshot, and one record of it, readable before the erasure.
    let records_path =
        format!("/sources/{source_id}/snapshots/{job_id}/records?dataType=customers&limit=1");
    wait_until(
        std::time::Duration::from_secs(45),
        "the backup to be indexed",
        || async { app.get(&records_path, &token).await.status() == 200 },
    )
    .await;
    let page: Value = app.get(&records_path, &token).await.json().await.unwrap();
    let record_id = page["records"][0]["recordId"].as_str().unwrap().to_owned();
    // A schedule: the scheduler offers its slots until the erasure, none after.
    let scheduled = app
        .put(
            &format!("/sources/{source_id}"),
            &token,
            &json!({"schedule": {"cron": "0 3 * * *"}}),
        )
        .await;
    assert_eq!(scheduled.status(), 200);
    let pool = app.db.pool();
    let due_sources = || async {
        let db = pool.get().await.unwrap();
        let far = chrono::Utc::now() + chrono::Duration::days(3);
        listbackup_projections::read_models::sources::due_for_schedule(&db, far, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|due| due.source_id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(due_sources().await, vec![source_id.clone()]);
    // Another account, untouched by acme's erasure.
    let other = app.owner("globex");
    app.create_stripe_connection(&other, "Stripe", "sk_test_1")
        .await;

    // An explicit confirmation, from an owner.
    for body in [
        json!({}),
        json!({"confirm": "globex"}),
        json!({"confirm": ""}),
    ] {
        let (status, problem) = problem_code(app.post("/account/erase", &token, &body).await).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "confirm", "{problem}");
    }
    let manager = app.token("acme", &[listbackup_api::auth::Role::Manager]);
    let (status, _) = problem_code(
        app.post("/account/erase", &manager, &json!({"confirm": "acme"}))
            .await,
    )
    .await;
    assert_eq!(status, 403);
    // Nothing was erased by those.
    assert!(!download(&backup, &token, &job_id, "customers.ndjson.gz")
        .await
        .is_empty());

    let response = app
        .post("/account/erase", &token, &json!({"confirm": "acme"}))
        .await;
    assert_eq!(response.status(), 200);
    let erased: Value = response.json().await.unwrap();
    assert_eq!(erased["accountId"], "acme");
    assert_eq!(erased["erasedBy"], "user:test-user");
    let erased_at = erased["erasedAt"].as_str().unwrap().to_owned();

    // The key and the credentials are gone; the other account's are not.
    let db = app.db.connect().await;
    let row = db
        .query_one(
            "SELECT wrapped_key IS NULL, erased_at IS NOT NULL FROM account_data_keys \
             WHERE account_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0) && row.get::<_, bool>(1));
    let credentials = |account: &'static str| {
        let db = &db;
        async move {
            db.query_one(
                "SELECT count(*) FROM credential_vault WHERE account_id = $1",
                &[&account],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
        }
    };
    assert_eq!(credentials("acme").await, 0);
    assert_eq!(credentials("globex").await, 1);
    // Recorded once, through the event store, on the account's own stream, with who and when.
    let events = db
        .query(
            "SELECT event_type, payload::jsonb, metadata->>'actor' FROM events \
             WHERE aggregate_type = 'account' AND aggregate_id = 'acme'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].get::<_, String>(0), "AccountErased");
    let payload: Value = events[0].get(1);
    assert_eq!(payload["AccountErased"]["by"], "user:test-user");
    assert_eq!(events[0].get::<_, String>(2), "user:test-user");

    // Every file of every backup: a clear 410, not a 500.
    for name in &names {
        let (status, problem) = problem_code(
            app.get(&format!("/jobs/{job_id}/files/{name}"), &token)
                .await,
        )
        .await;
        assert_eq!(status, 410, "{name}: {problem}");
        assert_eq!(problem["code"], "GONE");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("the account was erased"),
            "{problem}"
        );
    }
    // Every route that reads an erased backup's records: the same 410.
    for path in [
        records_path.clone(),
        format!("/sources/{source_id}/records/customers/{record_id}/versions"),
        format!("/sources/{source_id}/snapshots/{job_id}/export?format=ndjson"),
    ] {
        let (status, problem) = problem_code(app.get(&path, &token).await).await;
        assert_eq!(status, 410, "{path}: {problem}");
        assert_eq!(problem["code"], "GONE", "{path}: {problem}");
    }
    // The stored ciphertext is still there and still checks out against its manifest (evidence), though
    // nothing can decrypt it any more.
    let result = verify(&backup, &token, &job_id).await;
    assert_eq!(result["status"], "verified", "{result}");
    assert!(job_dir(&backup, &source_id, &job_id)
        .join("customers.ndjson.gz")
        .exists());

    // The account records nothing more: every change is a 410 naming the erasure (a backup, a new
    // connection, an edit, a deletion), while its history stays readable. The other account is untouched.
    for (method, path, body) in [
        ("POST", format!("/sources/{source_id}/sync"), json!({})),
        (
            "POST",
            "/connections".to_owned(),
            json!({"platformId": "stripe", "name": "again", "credentials": {"secretKey": "sk_test_2"}}),
        ),
        (
            "PUT",
            format!("/sources/{source_id}"),
            json!({"name": "renamed"}),
        ),
        ("DELETE", format!("/sources/{source_id}"), json!({})),
        (
            "POST",
            format!("/jobs/{job_id}/hold"),
            json!({"reason": "audit"}),
        ),
    ] {
        let response = match method {
            "POST" => app.post(&path, &token, &body).await,
            "PUT" => app.put(&path, &token, &body).await,
            _ => app.delete(&path, &token).await,
        };
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 410, "{method} {path}: {problem}");
        assert_eq!(problem["code"], "GONE", "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("erased at"),
            "{problem}"
        );
    }
    let source = app.get(&format!("/sources/{source_id}"), &token).await;
    assert_eq!(source.status(), 200, "reads stay open after an erasure");
    assert!(
        due_sources().await.is_empty(),
        "an erased account's schedules are not offered"
    );
    app.create_stripe_connection(&other, "Stripe 2", "sk_test_3")
        .await;

    // Every stream of the account still verifies, the erasure's included.
    let report: Value = app.get("/audit/verify", &token).await.json().await.unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["findingsTotal"], 0, "{report}");
    assert!(report["streams"].as_u64().unwrap() >= 4, "{report}");
    let logged: Value = app
        .get("/events?aggregateType=account", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        logged["events"][0]["eventType"], "AccountErased",
        "{logged}"
    );

    // Erasing again changes nothing and answers the first erasure.
    let again: Value = app
        .post("/account/erase", &token, &json!({"confirm": "acme"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["erasedAt"], erased_at.as_str());
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM events WHERE event_type = 'AccountErased'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    backup.stop().await;
}
