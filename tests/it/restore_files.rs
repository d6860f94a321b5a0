//! Restores of a file platform's files (issue 13 §5), round-tripped through each emulation (Dropbox, Box,
//! Google Drive) with an OAuth connection granted write access: back up, delete a file and change another on
//! the platform, plan a dry run (nothing written), restore, then check on the platform and in a second backup
//! that a new restore folder holds every backed-up file with the bytes of the backup (sha256), in the folders
//! it was in; that nothing existing was overwritten (the changed file keeps its new bytes, the deleted one
//! stays deleted); and that a second restore makes a second folder.

use std::collections::HashMap;

use listbackup_domain::platform::find;
use serde_json::{json, Value};

use crate::support::files::{service, sha256, Service};

/// Runs a restore to its end (requested once the source is free); the finished job.
async fn restore(svc: &Service, source_id: &str, body: Value) -> Value {
    svc.backup
        .restore_to_end(&svc.token, source_id, &body)
        .await
}

fn counts(done: &Value) -> (u64, u64, u64, u64) {
    let restore = &done["restore"];
    let n = |k: &str| restore[k].as_u64().unwrap_or_else(|| panic!("{k}: {done}"));
    (n("created"), n("updated"), n("skipped"), n("failed"))
}

/// The record's id as text.
fn id_of(record: &Value) -> String {
    match &record["id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    }
}

/// The names of the folders holding created item `id` on the platform, from the top, as the emulation
/// keeps them.
fn created_path(items: &[listbackup_emulators::Created], id: &str) -> Vec<String> {
    let by_id: HashMap<&str, &listbackup_emulators::Created> =
        items.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut names = Vec::new();
    let mut at = by_id[id].parent.as_str();
    while let Some(folder) = by_id.get(at) {
        names.push(folder.name.clone());
        at = folder.parent.as_str();
    }
    names.reverse();
    names
}

/// The files of a job's manifest: id → sha256.
fn contents(manifest: &Value) -> HashMap<String, String> {
    manifest["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                c["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn round_trip(platform: &'static str, write_scope: &str) {
    const FILES: u64 = 8;
    const FOLDERS: u64 = 3;
    let svc = service(platform).await;
    let api = &svc.backup.api;
    api.seed_files(platform, FOLDERS, FILES, 3000);
    if platform == "google" {
        // Over the 5 MB of a multipart upload: a resumable one.
        api.set_file_size(platform, 5, 5 * 1024 * 1024 + 1);
        // A Google Doc, backed up as its .docx export and restored as that file.
        api.set_file_kind(platform, 3, "application/vnd.google-apps.document");
    } else {
        api.set_file_size(platform, 5, 70_000);
    }
    let app = &svc.backup.app;

    // The catalog says files are writable, and with which scope.
    let catalog: Value = app
        .get(&format!("/platforms/{platform}"), &svc.token)
        .await
        .json()
        .await
        .unwrap();
    let files = catalog["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "files")
        .unwrap()
        .clone();
    assert_eq!(files["writable"], true, "{files}");
    assert_eq!(files["writeScopes"], json!([write_scope]), "{files}");

    let connection = svc.connect_with(json!({"writeAccess": true})).await;
    let source = svc.source(&connection, &["files"], false).await;
    let first = svc.run(&source).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let snapshot = first["jobId"].as_str().unwrap().to_owned();
    let backed_up = contents(&svc.manifest(&source, &snapshot));
    assert_eq!(backed_up.len() as u64, FILES);
    let records = svc.records(&source, &snapshot, "files");
    let folder_records = records.len() as u64 - FILES;
    let by_id: HashMap<String, Value> = records.iter().map(|r| (id_of(r), r.clone())).collect();
    let writes = find(platform)
        .unwrap()
        .data_type("files")
        .unwrap()
        .file_writes
        .unwrap();

    // On the platform since: a file deleted, another changed.
    let deleted = api.file_id(platform, 1);
    let changed = api.file_id(platform, 2);
    api.delete_file(platform, 1);
    api.change_file(platform, 2);
    let changed_now = sha256(&api.file_bytes(platform, 2));
    assert_ne!(backed_up[&changed], changed_now);

    // A dry run plans each file as a create and writes nothing.
    let body = |dry_run: bool| json!({"snapshot": snapshot, "dataTypes": ["files"], "mode": "missing", "dryRun": dry_run});
    let dry = restore(&svc, &source, body(true)).await;
    assert_eq!(counts(&dry), (FILES, 0, folder_records, 0), "{dry}");
    assert!(api.created_items(platform).is_empty(), "the dry run wrote");
    let plan = svc
        .backup
        .restore_report(&svc.token, dry["jobId"].as_str().unwrap())
        .await;
    for id in backed_up.keys() {
        let line = plan.iter().find(|l| l["oldId"] == id.as_str()).unwrap();
        assert_eq!(line["action"], "create", "{line}");
        assert_eq!(line["newId"], Value::Null, "{line}");
    }

    // The restore: a new folder in the root, every file beneath it in its folders.
    let done = restore(&svc, &source, body(false)).await;
    assert_eq!(counts(&done), (FILES, 0, folder_records, 0), "{done}");
    if platform == "google" {
        // One request per file, and two (the session, then the bytes) for the one over 5 MB.
        assert_eq!(api.hits("/google/upload/drive/v3/files") as u64, FILES + 1);
    }
    let report = svc
        .backup
        .restore_report(&svc.token, done["jobId"].as_str().unwrap())
        .await;
    let created = api.created_items(platform);
    let tops: Vec<&listbackup_emulators::Created> = created
        .iter()
        .filter(|c| !created.iter().any(|p| p.id == c.parent))
        .collect();
    assert_eq!(tops.len(), 1, "one restore folder: {created:?}");
    let restore_folder = tops[0].name.clone();
    assert!(tops[0].is_folder());
    assert!(
        restore_folder.starts_with("ListBackup restore "),
        "{restore_folder}"
    );
    let mut new_ids = HashMap::new();
    for (old_id, sha) in &backed_up {
        let line = report
            .iter()
            .find(|l| l["oldId"] == old_id.as_str())
            .unwrap_or_else(|| panic!("{old_id} is not reported"));
        assert_eq!(line["action"], "create", "{line}");
        let new_id = line["newId"].as_str().unwrap().to_owned();
        assert_ne!(&new_id, old_id);
        let item = created.iter().find(|c| c.id == new_id).unwrap();
        assert_eq!(
            &sha256(item.bytes.as_deref().unwrap()),
            sha,
            "{old_id}: the bytes uploaded are the backup's"
        );
        let old = &by_id[old_id];
        let name = old["name"].as_str().unwrap();
        if old["mimeType"] == "application/vnd.google-apps.document" {
            assert_eq!(item.name, format!("{name}.docx"), "{old_id}");
            assert_eq!(
                item.mime_type.as_deref(),
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
            );
        } else {
            assert_eq!(item.name, name, "{old_id}");
        }
        let mut expected = vec![restore_folder.clone()];
        expected.extend(writes.folders_of(old, &by_id));
        assert_eq!(created_path(&created, &new_id), expected, "{old_id}");
        assert_eq!(line["restoredInto"], expected.join("/"), "{line}");
        new_ids.insert(old_id.clone(), new_id);
    }
    // Each folder was created once.
    let folders: Vec<(String, Vec<String>)> = created
        .iter()
        .filter(|c| c.is_folder())
        .map(|c| (c.name.clone(), created_path(&created, &c.id)))
        .collect();
    let mut unique = folders.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), folders.len(), "{folders:?}");

    // Backed up again: the platform lists and sends the restored files with the backup's bytes; the changed
    // file keeps its new bytes and the deleted one stays deleted (nothing existing was touched).
    let again = svc.run(&source).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let now = contents(&svc.manifest(&source, again["jobId"].as_str().unwrap()));
    for (old_id, new_id) in &new_ids {
        assert_eq!(
            now.get(new_id),
            backed_up.get(old_id),
            "{old_id} → {new_id}"
        );
    }
    assert_eq!(now.get(&changed), Some(&changed_now));
    assert!(!now.contains_key(&deleted));
    assert_eq!(now.len() as u64, 2 * FILES - 1);

    // A second restore makes a second folder, and leaves the first alone.
    let second = restore(&svc, &source, body(false)).await;
    assert_eq!(counts(&second), (FILES, 0, folder_records, 0), "{second}");
    let after = api.created_items(platform);
    let tops: Vec<&listbackup_emulators::Created> = after
        .iter()
        .filter(|c| !after.iter().any(|p| p.id == c.parent))
        .collect();
    assert_eq!(tops.len(), 2, "{tops:?}");
    assert_ne!(tops[0].name, tops[1].name);
    assert_eq!(&after[..created.len()], &created[..]);
    svc.backup.stop().await;
}

#[tokio::test]
async fn dropbox_files_are_restored_into_a_new_folder() {
    round_trip("dropbox", "files.content.write").await;
}

#[tokio::test]
async fn box_files_are_restored_into_a_new_folder() {
    round_trip("box", "root_readwrite").await;
}

#[tokio::test]
async fn google_drive_files_are_restored_into_a_new_folder() {
    round_trip("google", "https://www.googleapis.com/auth/drive.file").await;
}

#[tokio::test]
async fn a_read_only_connection_is_refused_and_a_file_the_platform_refuses_is_reported() {
    use crate::support::oauth_provider::{consent, deliver};
    let svc = service("dropbox").await;
    let api = &svc.backup.api;
    api.seed_files("dropbox", 0, 3, 1000);
    api.set_file_size("dropbox", 2, 5000);
    // The emulation takes at most 4 KiB per upload here (Dropbox: 150 MB): file 2 is refused, 409
    // `payload_too_large`.
    api.set_dropbox_upload_limit(4096);
    let connection = svc.connect().await;
    let source = svc.source(&connection, &["files"], false).await;
    let snapshot = svc.run(&source).await["jobId"].as_str().unwrap().to_owned();
    let body = |dry_run: bool| json!({"snapshot": snapshot, "dataTypes": ["files"], "mode": "missing", "dryRun": dry_run});

    // Read-only: the restore is refused at request time, naming the write scope; a dry run only reads.
    let response = svc
        .backup
        .app
        .post(
            &format!("/sources/{source}/restores"),
            &svc.token,
            &body(false),
        )
        .await;
    assert_eq!(response.status(), 422);
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "dataTypes", "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("files.content.write"),
        "{problem}"
    );
    let dry = restore(&svc, &source, body(true)).await;
    assert_eq!(counts(&dry), (3, 0, 0, 0), "{dry}");
    assert!(api.created_items("dropbox").is_empty());
    // `recordIds` choose files; one the snapshot does not hold is reported.
    let mut chosen = body(true);
    chosen["recordIds"] = json!([api.file_id("dropbox", 0), "id:not-in-the-snapshot"]);
    let dry = restore(&svc, &source, chosen).await;
    assert_eq!(counts(&dry), (1, 0, 0, 1), "{dry}");
    let plan = svc
        .backup
        .restore_report(&svc.token, dry["jobId"].as_str().unwrap())
        .await;
    let unknown = plan
        .iter()
        .find(|l| l["oldId"] == "id:not-in-the-snapshot")
        .unwrap();
    assert_eq!(unknown["action"], "cannot_restore", "{unknown}");

    // Reconnected with write access: two files uploaded, the refused one reported with the platform's error.
    let response = svc
        .backup
        .app
        .post(
            &format!("/connections/{connection}/reconnect"),
            &svc.token,
            &json!({"writeAccess": true}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    let redirect = consent(again["authorizationUrl"].as_str().unwrap()).await;
    let response = deliver(&svc.backup.app, &redirect).await;
    assert!(response.status().is_success(), "{}", response.status());
    let done = restore(&svc, &source, body(false)).await;
    assert_eq!(counts(&done), (2, 0, 0, 1), "{done}");
    let report = svc
        .backup
        .restore_report(&svc.token, done["jobId"].as_str().unwrap())
        .await;
    let refused = report
        .iter()
        .find(|l| l["oldId"] == api.file_id("dropbox", 2).as_str())
        .unwrap();
    assert_eq!(refused["action"], "cannot_restore", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("payload_too_large"),
        "{refused}"
    );
    assert_eq!(refused["newId"], Value::Null);
    let uploaded: Vec<_> = api
        .created_items("dropbox")
        .into_iter()
        .filter(|c| !c.is_folder())
        .collect();
    assert_eq!(uploaded.len(), 2);
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_dropbox_file_over_one_requests_limit_goes_through_an_upload_session() {
    use futures::StreamExt;
    use listbackup_commands::platform_client::PlatformEndpoints;
    use listbackup_workers::connectors::{
        Connector, FetchError, FileTarget, FileUpload, RateLimit, RateLimits, UploadStream,
    };
    let fx = crate::support::files::direct("dropbox").await;
    // 4 KiB per request on both sides here (Dropbox and the client: 150 MB).
    fx.api.set_dropbox_upload_limit(4096);
    let endpoints = PlatformEndpoints::default()
        .with_api_url("dropbox", &fx.api.api_url("dropbox"))
        .with_host_url("dropbox", "CONTENT", &fx.api.content_url("dropbox"));
    let connector = Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with("dropbox", RateLimit::unlimited()))
        .with_upload_request_max(4096);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    assert_eq!(folder, "/Restore");
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let open = || {
        let pieces: Vec<Result<actix_web::web::Bytes, listbackup_commands::BoxError>> = bytes
            .chunks(1000)
            .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c)))
            .collect();
        async move { Ok::<UploadStream, FetchError>(futures::stream::iter(pieces).boxed()) }
    };
    let file = |name| FileUpload {
        parent: "/Restore",
        name,
        mime_type: "application/octet-stream",
        size: 10_000,
    };
    let id = connector
        .upload_file(target, file("big.bin"), open)
        .await
        .unwrap();
    let hits = |f: &str| fx.api.hits(&format!("/dropbox/content/2/files/{f}"));
    // 4096 + 4096 + 1808 bytes: a start, two appends, a finish with no bytes; no single upload.
    assert_eq!(
        [
            hits("upload_session/start"),
            hits("upload_session/append_v2"),
            hits("upload_session/finish"),
            hits("upload")
        ],
        [1, 2, 1, 0]
    );
    let created = fx.api.created_items("dropbox");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.name, "big.bin");
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));

    // By default the client keeps to Dropbox's 150 MB: the same file is one `files/upload`.
    fx.api.set_dropbox_upload_limit(150 * 1024 * 1024);
    let id = fx
        .connector
        .upload_file(target, file("small.bin"), open)
        .await
        .unwrap();
    assert_eq!(hits("upload"), 1);
    assert_eq!(hits("upload_session/start"), 1);
    let created = fx.api.created_items("dropbox");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));
}

#[tokio::test]
async fn a_box_file_over_the_direct_upload_limit_goes_through_a_chunked_upload_session() {
    use futures::StreamExt;
    use listbackup_workers::connectors::{FetchError, FileTarget, FileUpload, UploadStream};
    let fx = crate::support::files::direct("box").await;
    let api_url = fx.api.api_url("box");
    let upload_url = format!("{}/upload/api/2.0", api_url.trim_end_matches("/2.0"));
    let endpoints = listbackup_commands::platform_client::PlatformEndpoints::default()
        .with_api_url("box", &api_url)
        .with_host_url("box", "UPLOAD", &upload_url);
    let retry = listbackup_workers::connectors::RetryPolicy {
        base_backoff: std::time::Duration::from_millis(20),
        max_backoff: std::time::Duration::from_millis(100),
        ..listbackup_workers::connectors::RetryPolicy::default()
    };
    let connector = || {
        listbackup_workers::connectors::Connector::new(endpoints.clone())
            .with_rate_limits(listbackup_workers::connectors::RateLimits::default().with(
                "box",
                listbackup_workers::connectors::RateLimit::unlimited(),
            ))
            .with_retry_policy(retry)
    };
    let direct = connector();
    // 4 KiB per direct upload here (Box: 50 MB), parts of 4 KiB (Box: 8 MiB and up).
    let chunked = connector().with_upload_request_max(4096);
    fx.api.set_box_part_size(4096);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = chunked
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let open = || {
        let pieces: Vec<Result<actix_web::web::Bytes, listbackup_commands::BoxError>> = bytes
            .chunks(1000)
            .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c)))
            .collect();
        async move { Ok::<UploadStream, FetchError>(futures::stream::iter(pieces).boxed()) }
    };
    let file = |name| FileUpload {
        parent: &folder,
        name,
        mime_type: "application/octet-stream",
        size: 10_000,
    };
    // The second part fails once (503) and is sent again; the commit is answered 202 once (parts being
    // processed) and asked again after its Retry-After.
    fx.api.box_reject_parts_next(1);
    fx.api.box_commit_pending_next(1);
    let before = fx.api.total_hits();
    let id = chunked
        .upload_file(target, file("big.bin"), open)
        .await
        .unwrap();
    // The session, 4096 + 4096 + 1808 bytes in three parts (one sent twice), two commits; no direct upload.
    assert_eq!(fx.api.total_hits() - before, 1 + 4 + 2);
    assert_eq!(fx.api.hits("/box/upload/api/2.0/files/upload_sessions"), 1);
    assert_eq!(fx.api.hits("/box/upload/api/2.0/files/content"), 0);
    assert_eq!(fx.api.box_open_sessions(), 0, "the session was committed");
    let created = fx.api.created_items("box");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.name, "big.bin");
    assert_eq!(item.parent, folder);
    assert_eq!(
        sha256(item.bytes.as_deref().unwrap()),
        sha256(&bytes),
        "the bytes committed are the backup's"
    );

    // A part the platform keeps refusing fails the upload, and the session is aborted.
    fx.api.box_reject_parts_next(usize::MAX);
    let err = chunked
        .upload_file(target, file("refused.bin"), open)
        .await
        .unwrap_err();
    assert!(err.retryable(), "{err:?}");
    fx.api.box_reject_parts_next(0);
    assert_eq!(
        fx.api.box_open_sessions(),
        0,
        "the failed session was aborted"
    );
    assert!(!fx
        .api
        .created_items("box")
        .iter()
        .any(|c| c.name == "refused.bin"));

    // The emulation checks parts as Box documents: a digest that does not match is 412, a range that is not
    // the session's 416.
    let http = reqwest::Client::new();
    let token = crate::support::files::SECRET;
    let session: Value = http
        .post(format!("{upload_url}/files/upload_sessions"))
        .bearer_auth(token)
        .json(&json!({"folder_id": folder, "file_size": 10_000, "file_name": "checked.bin"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(session["part_size"], 4096, "{session}");
    assert_eq!(session["total_parts"], 3, "{session}");
    let part_url = format!(
        "{upload_url}/files/upload_sessions/{}",
        session["id"].as_str().unwrap()
    );
    let put = |range: &'static str, digest: &'static str| {
        http.put(&part_url)
            .bearer_auth(token)
            .header("Content-Range", range)
            .header("Digest", digest)
            .body(bytes[..4096].to_vec())
            .send()
    };
    let wrong_digest = put("bytes 0-4095/10000", "sha=fpRyg5eVQletdZqEKaFlqwBXJzM=")
        .await
        .unwrap();
    assert_eq!(wrong_digest.status(), 412);
    let wrong_range = put("bytes 1-4096/10000", "sha=fpRyg5eVQletdZqEKaFlqwBXJzM=")
        .await
        .unwrap();
    assert_eq!(wrong_range.status(), 416);

    // By default the client keeps to Box's 50 MB: the same file is one direct upload.
    let id = direct
        .upload_file(target, file("small.bin"), open)
        .await
        .unwrap();
    assert_eq!(fx.api.hits("/box/upload/api/2.0/files/content"), 1);
    assert_eq!(fx.api.hits("/box/upload/api/2.0/files/upload_sessions"), 3);
    let created = fx.api.created_items("box");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));
}

/// A connector against `fx`'s emulation that uploads at most 4 KiB per request (the platforms: megabytes),
/// with short backoffs.
fn small_requests(
    fx: &crate::support::files::Direct,
    endpoints: listbackup_commands::platform_client::PlatformEndpoints,
) -> listbackup_workers::connectors::Connector {
    use listbackup_workers::connectors::{Connector, RateLimit, RateLimits, RetryPolicy};
    Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with(fx.platform.id, RateLimit::unlimited()))
        .with_retry_policy(RetryPolicy {
            base_backoff: std::time::Duration::from_millis(20),
            max_backoff: std::time::Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .with_upload_request_max(4096)
}

/// 10 000 bytes that differ from one offset to the next, and a way to stream them as a stored file does
/// (1000-byte pieces), once per call.
fn ten_thousand_bytes() -> Vec<u8> {
    (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn stream_of(
    bytes: &[u8],
) -> impl std::future::Future<
    Output = Result<
        listbackup_workers::connectors::UploadStream,
        listbackup_workers::connectors::FetchError,
    >,
> {
    use futures::StreamExt;
    let pieces: Vec<Result<actix_web::web::Bytes, listbackup_commands::BoxError>> = bytes
        .chunks(1000)
        .map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c)))
        .collect();
    async move {
        Ok::<listbackup_workers::connectors::UploadStream, _>(futures::stream::iter(pieces).boxed())
    }
}

#[tokio::test]
async fn a_google_drive_upload_broken_off_resumes_where_drive_stopped() {
    use listbackup_workers::connectors::{FileTarget, FileUpload};
    let fx = crate::support::files::direct("google").await;
    let endpoints = listbackup_commands::platform_client::PlatformEndpoints::default()
        .with_api_url("google", &fx.api.api_url("google"));
    let connector = small_requests(&fx, endpoints);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes = ten_thousand_bytes();
    let open = || stream_of(&bytes);
    let file = |name| FileUpload {
        parent: &folder,
        name,
        mime_type: "application/octet-stream",
        size: 10_000,
    };
    let uploaded = |id: &str| {
        let created = fx.api.created_items("google");
        let item = created.iter().find(|c| c.id == id).unwrap().clone();
        let named = created.iter().filter(|c| c.name == item.name).count();
        (item, named)
    };
    let hits = || fx.api.hits("/google/upload/drive/v3/files");

    // The `PUT` breaks after 4000 bytes, which Drive keeps: asked how far it got, Drive says 0-3999, and the
    // rest goes in a second `PUT`. Every byte is sent once.
    fx.api.google_cut_next_upload(4000);
    let id = connector
        .upload_file(target, file("resumed.bin"), open)
        .await
        .unwrap();
    let (item, named) = uploaded(&id);
    assert_eq!(
        item.bytes.as_deref(),
        Some(&bytes[..]),
        "the bytes are the backup's"
    );
    assert_eq!(named, 1);
    assert_eq!(
        fx.api.google_upload_bytes_received(),
        10_000,
        "4000 bytes, then the other 6000: none sent twice"
    );
    // The session, the broken `PUT`, the status query, the rest.
    assert_eq!(hits(), 4);

    // The `PUT` breaks after every byte arrived (the file is made, its answer lost): the status query
    // answers the file, which is not uploaded again.
    let (received, before) = (fx.api.google_upload_bytes_received(), hits());
    fx.api.google_cut_next_upload(10_000);
    let id = connector
        .upload_file(target, file("answer-lost.bin"), open)
        .await
        .unwrap();
    let (item, named) = uploaded(&id);
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));
    assert_eq!(named, 1, "one file");
    assert_eq!(fx.api.google_upload_bytes_received() - received, 10_000);
    assert_eq!(hits() - before, 3);

    // The session expired meanwhile (the status query answers 404): a new session, from the first byte.
    let (received, before) = (fx.api.google_upload_bytes_received(), hits());
    fx.api.google_cut_next_upload(4000);
    fx.api.google_expire_next_status_query();
    let id = connector
        .upload_file(target, file("expired.bin"), open)
        .await
        .unwrap();
    let (item, named) = uploaded(&id);
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));
    assert_eq!(named, 1, "one file");
    assert_eq!(fx.api.google_upload_bytes_received() - received, 14_000);
    // The session, the broken `PUT`, the status query (404), a new session, every byte.
    assert_eq!(hits() - before, 5);
}

#[tokio::test]
async fn a_dropbox_append_applied_before_its_answer_was_lost_is_not_applied_twice() {
    use listbackup_workers::connectors::{FileTarget, FileUpload};
    let fx = crate::support::files::direct("dropbox").await;
    fx.api.set_dropbox_upload_limit(4096);
    let endpoints = listbackup_commands::platform_client::PlatformEndpoints::default()
        .with_api_url("dropbox", &fx.api.api_url("dropbox"))
        .with_host_url("dropbox", "CONTENT", &fx.api.content_url("dropbox"));
    let connector = small_requests(&fx, endpoints);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes = ten_thousand_bytes();
    // The first append (bytes 4096-8191) is applied, but its answer is lost: sent again, it is answered
    // 409 `incorrect_offset` with `correct_offset` 8192, the end of the chunk: the upload carries on.
    fx.api
        .lose_answer_nth("/dropbox/content/2/files/upload_session/append_v2", 1);
    let id = connector
        .upload_file(
            target,
            FileUpload {
                parent: &folder,
                name: "big.bin",
                mime_type: "application/octet-stream",
                size: 10_000,
            },
            || stream_of(&bytes),
        )
        .await
        .unwrap();
    let hits = |f: &str| fx.api.hits(&format!("/dropbox/content/2/files/{f}"));
    assert_eq!(
        [
            hits("upload_session/start"),
            hits("upload_session/append_v2"),
            hits("upload_session/finish"),
        ],
        [1, 3, 1]
    );
    let created = fx.api.created_items("dropbox");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.name, "big.bin");
    assert_eq!(
        item.bytes.as_deref(),
        Some(&bytes[..]),
        "the bytes are the backup's, the chunk once"
    );
}

#[tokio::test]
async fn a_box_part_whose_answer_was_lost_is_sent_again_and_taken() {
    use listbackup_workers::connectors::{FileTarget, FileUpload};
    let fx = crate::support::files::direct("box").await;
    let api_url = fx.api.api_url("box");
    let upload_url = format!("{}/upload/api/2.0", api_url.trim_end_matches("/2.0"));
    let endpoints = listbackup_commands::platform_client::PlatformEndpoints::default()
        .with_api_url("box", &api_url)
        .with_host_url("box", "UPLOAD", &upload_url);
    let connector = small_requests(&fx, endpoints);
    fx.api.set_box_part_size(4096);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes = ten_thousand_bytes();
    // The second part is taken but its answer is lost: the same part again is answered the same (Box
    // refuses only another part over its range).
    fx.api
        .lose_answer_nth("/box/upload/api/2.0/files/upload_sessions/", 2);
    let before = fx.api.total_hits();
    let id = connector
        .upload_file(
            target,
            FileUpload {
                parent: &folder,
                name: "big.bin",
                mime_type: "application/octet-stream",
                size: 10_000,
            },
            || stream_of(&bytes),
        )
        .await
        .unwrap();
    // The session, three parts (the second twice), the commit.
    assert_eq!(fx.api.total_hits() - before, 1 + 4 + 1);
    assert_eq!(fx.api.box_open_sessions(), 0, "the session was committed");
    let created = fx.api.created_items("box");
    let item = created.iter().find(|c| c.id == id).unwrap();
    assert_eq!(item.bytes.as_deref(), Some(&bytes[..]));
}

/// Dropbox's content hash of `bytes` (<https://www.dropbox.com/developers/reference/content-hash>): the
/// SHA-256 of the SHA-256s of each 4 MiB block.
fn dropbox_content_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digests: Vec<u8> = bytes
        .chunks(4 * 1024 * 1024)
        .flat_map(|block| sha2::Sha256::digest(block).to_vec())
        .collect();
    hex::encode(sha2::Sha256::digest(&digests))
}

#[tokio::test]
async fn a_dropbox_finish_committed_before_its_answer_was_lost_is_recognised_not_failed() {
    use listbackup_workers::connectors::{FileTarget, FileUpload};
    let fx = crate::support::files::direct("dropbox").await;
    fx.api.set_dropbox_upload_limit(4096);
    let endpoints = listbackup_commands::platform_client::PlatformEndpoints::default()
        .with_api_url("dropbox", &fx.api.api_url("dropbox"))
        .with_host_url("dropbox", "CONTENT", &fx.api.content_url("dropbox"));
    let connector = small_requests(&fx, endpoints);
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes = ten_thousand_bytes();
    // The finish commits the file but its answer is lost: sent again, it is answered 409
    // `lookup_failed/closed`; the file at the commit's path has the size and content hash sent: it is the
    // upload's.
    fx.api
        .lose_answer_nth("/dropbox/content/2/files/upload_session/finish", 1);
    let id = connector
        .upload_file(
            target,
            FileUpload {
                parent: &folder,
                name: "big.bin",
                mime_type: "application/octet-stream",
                size: 10_000,
            },
            || stream_of(&bytes),
        )
        .await
        .expect("the file committed is recognised");
    let hits = |f: &str| fx.api.hits(&format!("/dropbox/content/2/files/{f}"));
    assert_eq!(
        [
            hits("upload_session/start"),
            hits("upload_session/append_v2"),
            hits("upload_session/finish"),
        ],
        [1, 2, 2]
    );
    assert_eq!(fx.api.hits("/dropbox/2/files/get_metadata"), 1);
    let files: Vec<_> = fx
        .api
        .created_items("dropbox")
        .into_iter()
        .filter(|c| !c.is_folder())
        .collect();
    assert_eq!(files.len(), 1, "one file: {files:?}");
    assert_eq!(files[0].id, id);
    assert_eq!(files[0].name, "big.bin");
    assert_eq!(files[0].bytes.as_deref(), Some(&bytes[..]));

    // The emulation answers `files/get_metadata` as Dropbox documents it: the file's metadata with its
    // `content_hash` (SHA-256 of the 4 MiB blocks' SHA-256s), 409 `path/not_found` for nothing, 400 for the
    // root.
    let http = reqwest::Client::new();
    let get_metadata = |path: &'static str| {
        http.post(format!(
            "{}/2/files/get_metadata",
            fx.api.api_url("dropbox")
        ))
        .bearer_auth(crate::support::files::SECRET)
        .json(&json!({"path": path}))
        .send()
    };
    let found = get_metadata("/restore/BIG.bin").await.unwrap();
    assert_eq!(found.status(), 200);
    let found: Value = found.json().await.unwrap();
    assert_eq!(found[".tag"], "file", "{found}");
    assert_eq!(found["id"], id.as_str(), "{found}");
    assert_eq!(found["path_display"], "/Restore/big.bin", "{found}");
    assert_eq!(found["size"], 10_000, "{found}");
    assert_eq!(
        found["content_hash"],
        dropbox_content_hash(&bytes),
        "{found}"
    );
    let missing = get_metadata("/Restore/nothing.bin").await.unwrap();
    assert_eq!(missing.status(), 409);
    let missing: Value = missing.json().await.unwrap();
    assert_eq!(missing["error_summary"], "path/not_found/..", "{missing}");
    assert_eq!(get_metadata("").await.unwrap().status(), 400);
}

#[tokio::test]
async fn a_small_dropbox_upload_not_taken_is_looked_up_then_sent_again() {
    use listbackup_workers::connectors::{FileTarget, FileUpload};
    let fx = crate::support::files::direct("dropbox").await;
    let writes = fx.platform.data_type("files").unwrap().file_writes.unwrap();
    let target = FileTarget {
        connection_id: "conn-1",
        platform: fx.platform,
        writes: &writes,
        credentials: &fx.credentials,
    };
    let folder = fx
        .connector
        .create_folder(target, writes.root, "Restore")
        .await
        .unwrap();
    let bytes = ten_thousand_bytes();
    // A 503 that did not take the file (it could have): nothing at its path, so it is sent again.
    fx.api.fail_next(1, 503);
    let id = fx
        .connector
        .upload_file(
            target,
            FileUpload {
                parent: &folder,
                name: "small.bin",
                mime_type: "application/octet-stream",
                size: 10_000,
            },
            || stream_of(&bytes),
        )
        .await
        .unwrap();
    assert_eq!(fx.api.hits("/dropbox/content/2/files/upload"), 2);
    assert_eq!(fx.api.hits("/dropbox/2/files/get_metadata"), 1);
    let files: Vec<_> = fx
        .api
        .created_items("dropbox")
        .into_iter()
        .filter(|c| !c.is_folder())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].id, id);
    assert_eq!(files[0].bytes.as_deref(), Some(&bytes[..]));
}

#[tokio::test]
async fn a_dropbox_restore_whose_upload_answer_was_lost_keeps_one_copy_of_the_file() {
    let svc = service("dropbox").await;
    let api = &svc.backup.api;
    api.seed_files("dropbox", 0, 3, 1000);
    let connection = svc.connect_with(json!({"writeAccess": true})).await;
    let source = svc.source(&connection, &["files"], false).await;
    let backup = svc.run(&source).await;
    assert_eq!(backup["status"], "succeeded", "{backup}");
    let snapshot = backup["jobId"].as_str().unwrap().to_owned();
    let backed_up = contents(&svc.manifest(&source, &snapshot));
    // The first file's `files/upload` is taken, but its answer is lost. Sent again (`mode: add`,
    // `autorename`), Dropbox would keep it a second time as `file-… (1).bin`; looked up first, it is found.
    api.lose_answer_nth("/dropbox/content/2/files/upload", 1);
    let done = restore(
        &svc,
        &source,
        json!({"snapshot": snapshot, "dataTypes": ["files"], "mode": "missing", "dryRun": false}),
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(counts(&done), (3, 0, 0, 0), "{done}");
    assert_eq!(api.hits("/dropbox/content/2/files/upload"), 3);
    assert_eq!(api.hits("/dropbox/2/files/get_metadata"), 1);
    let files: Vec<_> = api
        .created_items("dropbox")
        .into_iter()
        .filter(|c| !c.is_folder())
        .collect();
    let mut names: Vec<&str> = files.iter().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["file-000000.bin", "file-000001.bin", "file-000002.bin"],
        "one copy each, no `(1)`"
    );
    let report = svc
        .backup
        .restore_report(&svc.token, done["jobId"].as_str().unwrap())
        .await;
    for (old_id, sha) in &backed_up {
        let line = report
            .iter()
            .find(|l| l["oldId"] == old_id.as_str())
            .unwrap();
        let item = files.iter().find(|c| c.id == line["newId"]).unwrap();
        assert_eq!(&sha256(item.bytes.as_deref().unwrap()), sha, "{old_id}");
    }
    svc.backup.stop().await;
}
