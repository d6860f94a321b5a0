//! Google Drive (issue 10): the connector against the emulation of Drive API v3 (paging by `pageToken`,
//! partial responses, per-file lists, Google's rate-limit 403s), the bytes of each file (blobs downloaded,
//! Google Docs exported, unchanged files skipped, files deleted mid-run passed over, large files streamed in
//! flat memory), and whole backups through the service with an OAuth connection.

use crate::support;

use std::collections::BTreeSet;

use listbackup_workers::backup::files::ContentFailure;
use listbackup_workers::connectors::FetchError;
use serde_json::{json, Value};
use support::files::{direct, direct_with_part_size, ids, service, sha256};
use support::platform_api::RetryAfter;

const DOC: &str = "application/vnd.google-apps.document";

#[tokio::test]
async fn an_empty_drive_is_one_request_and_no_record() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 0, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert!(records.is_empty());
    assert_eq!(summary.requests, 1);
    let (drives, _) = fx.drain_ok("shared_drives").await;
    assert!(drives.is_empty());
}

#[tokio::test]
async fn exactly_one_full_page_is_one_request_and_a_last_full_page_ends_the_list() {
    let fx = direct("google").await;
    // 10 folders and 990 files: exactly one page of 1000.
    fx.api.seed_files("google", 10, 990, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(records.len(), 1000);
    assert_eq!(
        summary.requests, 1,
        "no token after a page that ends the list"
    );
    assert_eq!(
        fx.api.last_query("/google/drive/v3/files").unwrap(),
        "q=trashed+%3D+false&fields=nextPageToken%2CincompleteSearch%2Cfiles%28*%29&pageSize=1000",
        "every field, the bin left out, the largest page"
    );
    // Two full pages: the second is the last.
    fx.api.seed_files("google", 0, 2000, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(summary.requests, 2);
    let unique: BTreeSet<String> = ids(&records, "id").into_iter().collect();
    assert_eq!(unique.len(), 2000);
    // Every field came back (`files(*)`): what the file's bytes need too.
    assert!(records
        .iter()
        .all(|r| r["md5Checksum"].is_string() && r["size"].is_string()));
}

#[tokio::test]
async fn a_429_and_a_rate_limit_403_mid_run_are_waited_out_and_a_500_is_retried() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 2500, 10);
    let mut pager = fx.connector.pages(fx.request("files")).unwrap();
    let first = pager.next_page().await.unwrap().unwrap();
    assert_eq!(first.records.len(), 1000);
    // Drive's three ways of saying "slow down", and a server error, between pages.
    fx.api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    let waited = std::time::Instant::now();
    let second = pager.next_page().await.unwrap().unwrap();
    assert!(
        waited.elapsed() >= std::time::Duration::from_millis(900),
        "Retry-After honoured"
    );
    fx.api.google_rate_limit_next(2);
    fx.api.fail_next(1, 500);
    let third = pager.next_page().await.unwrap().unwrap();
    assert!(pager.next_page().await.unwrap().is_none());
    assert_eq!(second.records.len() + third.records.len(), 1500);
    let summary = pager.summary();
    assert_eq!(
        summary.rate_limited, 3,
        "the 429 and both 403 userRateLimitExceeded"
    );
    assert_eq!(summary.retries, 4);
}

#[tokio::test]
async fn a_rejected_token_is_unauthorized_and_another_403_is_forbidden() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 3, 10);
    fx.api.revoke("google", support::files::SECRET);
    let err = fx.drain("files").await.unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
    fx.api.accept("google", support::files::SECRET);
    fx.api.fail_next(1, 403);
    let err = fx.drain("files").await.unwrap_err();
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err}");
}

#[tokio::test]
async fn per_file_lists_walk_every_file_and_skip_what_cannot_have_them() {
    let fx = direct("google").await;
    // 3 folders, 7 files (one a Google Doc).
    fx.api.seed_files("google", 3, 7, 10);
    fx.api.set_file_kind("google", 1, DOC);
    let (permissions, summary) = fx.drain_ok("permissions").await;
    // Each of the 10 items has its owner; even files are shared with anyone.
    assert_eq!(permissions.len(), 10 + 4);
    let tagged: BTreeSet<String> = ids(&permissions, "fileId").into_iter().collect();
    assert_eq!(tagged.len(), 10, "each permission says whose it is");
    assert_eq!(
        summary.requests,
        1 + 10,
        "the files' page and one list per file"
    );
    // Revisions: folders have none and are not asked (Drive would refuse them).
    let (revisions, summary) = fx.drain_ok("revisions").await;
    assert_eq!(revisions.len(), 7);
    assert_eq!(summary.requests, 1 + 7);
    assert!(ids(&revisions, "fileId")
        .iter()
        .all(|id| id.starts_with("1fiLE")));
    // Comments need `fields`, which the listing sends; one file in three has a comment with its reply.
    let (comments, _) = fx.drain_ok("comments").await;
    assert_eq!(comments.len(), 3);
    assert_eq!(comments[0]["replies"][0]["content"], "Thanks");
}

#[tokio::test]
async fn a_file_deleted_before_its_own_lists_are_read_is_passed_over() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 5, 10);
    fx.api.vanish_file("google", 2);
    let (permissions, summary) = fx.drain_ok("permissions").await;
    assert_eq!(summary.gone_parents, 1);
    let owners: BTreeSet<String> = ids(&permissions, "fileId").into_iter().collect();
    assert_eq!(owners.len(), 4);
    assert!(!owners.contains(&fx.api.file_id("google", 2)));
}

#[tokio::test]
async fn blobs_are_downloaded_google_docs_exported_and_the_bin_left_out() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 2, 6, 3000);
    fx.api.set_file_kind("google", 1, DOC);
    fx.api
        .set_file_kind("google", 3, "application/vnd.google-apps.form");
    fx.api.trash_file("google", 4);
    // A Google Doc too large to export (Drive's 10 MB limit).
    fx.api.set_file_kind("google", 5, DOC);
    fx.api.set_file_size("google", 5, 11 * 1024 * 1024);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    // Blobs 0 and 2 downloaded, the Doc exported; the Form and the folders have no bytes; 4 is in the bin.
    let stored: Vec<(&str, Option<&str>)> = manifest
        .contents
        .iter()
        .map(|c| (c.id.as_str(), c.export_as.as_deref()))
        .collect();
    let id = |i| fx.api.file_id("google", i);
    assert_eq!(
        stored,
        [
            (id(0).as_str(), None),
            (
                id(1).as_str(),
                Some("application/vnd.openxmlformats-officedocument.wordprocessingml.document")
            ),
            (id(2).as_str(), None),
        ]
    );
    for content in &manifest.contents {
        let index: u64 = content.id[5..17].parse().unwrap();
        let bytes = fx.api.file_bytes("google", index);
        assert_eq!(fx.stored("j1", &content.name), bytes);
        assert_eq!(content.sha256, sha256(&bytes));
        assert_eq!(content.bytes, 3000);
        assert_eq!(content.job_id, None);
    }
    assert_eq!(manifest.contents_not_stored.len(), 1);
    assert_eq!(manifest.contents_not_stored[0].id, id(5));
    assert_eq!(manifest.contents_not_stored[0].code.as_str(), "FORBIDDEN");
    assert!(manifest.contents_not_stored[0]
        .message
        .contains("too large"));
    assert_eq!((counts.downloaded, counts.refused), (3, 1));
}

#[tokio::test]
async fn an_incremental_run_downloads_only_files_whose_version_moved() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 1, 8, 2000);
    fx.api.set_file_kind("google", 3, DOC);
    let (first, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!(counts.downloaded, 8);
    assert_eq!(fx.api.downloads("google"), 8);
    fx.api.change_file("google", 2);
    fx.api.change_file("google", 3);
    let (second, counts) = fx
        .back_up("j2", "files", Some(("j1", &first)))
        .await
        .unwrap();
    assert_eq!((counts.downloaded, counts.unchanged), (2, 6));
    assert_eq!(
        fx.api.downloads("google"),
        10,
        "two more downloads, not eight"
    );
    assert_eq!(fx.api.downloads_of("google", 2), 2);
    assert_eq!(fx.api.downloads_of("google", 0), 1);
    // The new manifest lists every file: the unchanged ones in the first job's directory.
    assert_eq!(second.contents.len(), 8);
    for content in &second.contents {
        let changed =
            content.id == fx.api.file_id("google", 2) || content.id == fx.api.file_id("google", 3);
        assert_eq!(
            content.job_id.as_deref(),
            (!changed).then_some("j1"),
            "{}",
            content.id
        );
    }
    // A third run refers to the first job directly, not through the second.
    let (third, counts) = fx
        .back_up("j3", "files", Some(("j2", &second)))
        .await
        .unwrap();
    assert_eq!(counts.downloaded, 0);
    let holders: BTreeSet<&str> = third
        .contents
        .iter()
        .filter_map(|c| c.job_id.as_deref())
        .collect();
    assert_eq!(holders, BTreeSet::from(["j1", "j2"]));
}

#[tokio::test]
async fn a_file_deleted_between_listing_and_download_does_not_fail_the_data_type() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 4, 100);
    fx.api.vanish_file("google", 1);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!((counts.downloaded, counts.gone), (3, 1));
    assert_eq!(manifest.contents_not_stored[0].code.as_str(), "GONE");
    assert_eq!(
        manifest.contents_not_stored[0].id,
        fx.api.file_id("google", 1)
    );
}

#[tokio::test]
async fn a_file_larger_than_a_part_streams_through_one_part_of_memory() {
    const PART: usize = 256 * 1024;
    let fx = direct_with_part_size("google", PART).await;
    // 5 MiB and a bit: twenty parts.
    fx.api.seed_files("google", 0, 1, 5 * 1024 * 1024 + 123);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!(counts.downloaded, 1);
    assert!(
        counts.peak_buffered <= PART,
        "peak {} bytes",
        counts.peak_buffered
    );
    assert!(counts.peak_buffered >= PART / 2);
    let bytes = fx.api.file_bytes("google", 0);
    assert_eq!(manifest.contents[0].bytes, bytes.len() as u64);
    assert_eq!(manifest.contents[0].sha256, sha256(&bytes));
}

#[tokio::test]
async fn a_download_cut_off_mid_body_starts_over_and_stores_the_whole_file() {
    let fx = direct_with_part_size("google", 64 * 1024).await;
    fx.api.seed_files("google", 0, 1, 300_000);
    fx.api.cut_next_download("google", 150_000);
    let (manifest, _) = fx.back_up("j1", "files", None).await.unwrap();
    let bytes = fx.api.file_bytes("google", 0);
    assert_eq!(manifest.contents[0].sha256, sha256(&bytes));
    assert_eq!(fx.stored("j1", &manifest.contents[0].name), bytes);
    assert_eq!(
        fx.api.downloads_of("google", 0),
        2,
        "the cut-off answer and the whole one"
    );
}

#[tokio::test]
async fn when_no_file_can_be_downloaded_the_data_type_fails() {
    let fx = direct("google").await;
    fx.api.seed_files("google", 0, 2, 100);
    // Every download refused (a scope without the files' contents): the connection's problem, not two files'.
    fx.api.fail_path(
        &format!("/google/drive/v3/files/{}", fx.api.file_id("google", 0)),
        403,
    );
    fx.api.fail_path(
        &format!("/google/drive/v3/files/{}", fx.api.file_id("google", 1)),
        403,
    );
    let err = fx.back_up("j1", "files", None).await.err().unwrap();
    assert!(
        matches!(err, ContentFailure::Fetch(FetchError::Forbidden { .. })),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

#[tokio::test]
async fn a_backup_stores_every_data_type_and_each_files_bytes() {
    let svc = service("google").await;
    let api = &svc.backup.api;
    api.seed_files("google", 2, 9, 4096);
    api.set_file_kind("google", 4, DOC);
    api.vanish_file("google", 7);
    api.seed("google", "shared_drives", 3);
    let connection = svc.connect().await;
    let data_types = [
        "files",
        "shared_drives",
        "permissions",
        "revisions",
        "comments",
    ];
    let source = svc.source(&connection, &data_types, false).await;
    let app = &svc.backup.app;

    let tested: Value = app
        .post(
            &format!("/connections/{connection}/test"),
            &svc.token,
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    let sampled: Value = app
        .post(&format!("/sources/{source}/test"), &svc.token, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sampled["ok"], true, "{sampled}");

    let job = svc.run(&source).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let job_id = job["jobId"].as_str().unwrap();
    let files = svc.records(&source, job_id, "files");
    assert_eq!(files.len(), 11, "2 folders and 9 files");
    let drives = svc.records(&source, job_id, "shared_drives");
    assert_eq!(
        ids(&drives, "id"),
        [
            "0ADrive000000Uk9PVA",
            "0ADrive000001Uk9PVA",
            "0ADrive000002Uk9PVA"
        ]
    );
    // File 7 vanished after the listing: its own lists are passed over too.
    // Owners of the 2 folders and 8 files, and anyone with the link on the 5 even files.
    assert_eq!(svc.records(&source, job_id, "permissions").len(), 2 + 8 + 5);
    assert_eq!(svc.records(&source, job_id, "revisions").len(), 8);
    assert_eq!(svc.records(&source, job_id, "comments").len(), 3);

    let manifest = svc.manifest(&source, job_id);
    let contents = manifest["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 8, "{manifest}");
    for content in contents {
        let index: u64 = content["id"].as_str().unwrap()[5..17].parse().unwrap();
        let bytes = api.file_bytes("google", index);
        assert_eq!(content["sha256"], sha256(&bytes));
        let stored = support::backup::stored_plaintext(
            &svc.job_dir(&source, job_id)
                .join(content["name"].as_str().unwrap()),
        );
        assert_eq!(stored, bytes);
    }
    assert_eq!(manifest["contentsNotStored"][0]["code"], "GONE");
    assert_eq!(manifest["cursors"]["files"], json!({"contentsOf": job_id}));

    // The API lists each file's bytes with its size and hash, and serves them.
    let listed: Value = app
        .get(&format!("/jobs/{job_id}/files"), &svc.token)
        .await
        .json()
        .await
        .unwrap();
    let first = contents[0]["name"].as_str().unwrap();
    let entry = listed["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == first)
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(entry["sha256"], contents[0]["sha256"]);
    assert_eq!(entry["bytes"], 4096);
    let download = app
        .get(&format!("/jobs/{job_id}/files/{first}"), &svc.token)
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(
        sha256(&download.bytes().await.unwrap()),
        contents[0]["sha256"].as_str().unwrap()
    );
    svc.backup.stop().await;
}

#[tokio::test]
async fn an_incremental_source_skips_unchanged_files_and_a_rejected_token_is_refreshed_once() {
    let svc = service("google").await;
    let api = &svc.backup.api;
    api.seed_files("google", 1, 6, 1000);
    let connection = svc.connect().await;
    let source = svc.source(&connection, &["files"], true).await;
    let first = svc.run(&source).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    assert_eq!(api.downloads("google"), 6);

    api.change_file("google", 4);
    // The platform stops accepting the token before its expiry: one refresh, and the run carries on.
    svc.provider.revoke_access_tokens("google");
    let second = svc.run(&source).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(svc.provider.refreshes("google"), 1);
    assert_eq!(api.downloads("google"), 7, "only the changed file");
    let first_id = first["jobId"].as_str().unwrap();
    let manifest = svc.manifest(&source, second["jobId"].as_str().unwrap());
    assert_eq!(manifest["incremental"], true);
    let referred = manifest["contents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["jobId"] == first_id)
        .count();
    assert_eq!(referred, 5);
    // The earlier job's bytes are served through the later job too.
    let unchanged = manifest["contents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jobId"] == first_id)
        .unwrap();
    let download = svc
        .backup
        .app
        .get(
            &format!(
                "/jobs/{}/files/{}",
                second["jobId"].as_str().unwrap(),
                unchanged["name"].as_str().unwrap()
            ),
            &svc.token,
        )
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(
        sha256(&download.bytes().await.unwrap()),
        unchanged["sha256"].as_str().unwrap()
    );
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_damaged_answer_fails_one_data_type_and_the_others_back_up() {
    let svc = service("google").await;
    let api = &svc.backup.api;
    api.seed_files("google", 0, 3, 100);
    api.seed("google", "shared_drives", 2);
    api.truncate_every("/google/drive/v3/drives");
    let connection = svc.connect().await;
    let source = svc
        .source(&connection, &["files", "shared_drives"], false)
        .await;
    let job = svc.run(&source).await;
    assert_eq!(job["status"], "partial", "{job}");
    let job_id = job["jobId"].as_str().unwrap();
    assert_eq!(svc.records(&source, job_id, "files").len(), 3);
    let manifest = svc.manifest(&source, job_id);
    assert_eq!(manifest["failedDataTypes"][0]["dataType"], "shared_drives");
    assert_eq!(
        manifest["contents"].as_array().map(Vec::len),
        Some(3),
        "{manifest}"
    );
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_per_file_listing_resumed_from_a_page_cursor_goes_on_with_the_next_files() {
    let fx = direct("google").await;
    // 1,500 files: the parents take two pages, and each file has one or two permissions.
    fx.api.seed_files("google", 0, 1500, 10);
    let (all, _) = fx.drain_ok("permissions").await;
    let key = |r: &Value| {
        format!(
            "{}/{}",
            r["fileId"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        )
    };
    let mut pager = fx.connector.pages(fx.request("permissions")).unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    // Past the first page of parents.
    for _ in 0..1200 {
        let page = pager.next_page().await.unwrap().unwrap();
        seen.extend(
            page.records
                .iter()
                .map(|r| key(&serde_json::from_str(r.get()).unwrap())),
        );
        cursor = Some(page.cursor);
    }
    drop(pager);
    let mut resumed = fx
        .connector
        .pages(fx.request("permissions").resume(cursor))
        .unwrap();
    while let Some(page) = resumed.next_page().await.unwrap() {
        seen.extend(
            page.records
                .iter()
                .map(|r| key(&serde_json::from_str(r.get()).unwrap())),
        );
    }
    let expected: Vec<String> = all.iter().map(key).collect();
    let first_difference = seen.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        seen == expected,
        "{} seen, {} expected, first difference at {first_difference:?}",
        seen.len(),
        expected.len()
    );
}
