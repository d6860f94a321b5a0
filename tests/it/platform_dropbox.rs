//! Dropbox (issue 10): the connector against the emulation of Dropbox API v2 (RPC lists continued by
//! cursor, with and without `has_more`; per-file revisions requested with the file's id in a JSON body), the
//! bytes of each file from the content host (`Dropbox-API-Arg`, no JSON content type, unchanged files skipped
//! by `content_hash`, files deleted mid-run passed over), and whole backups through the service with an OAuth
//! connection.

use crate::support;

use std::collections::BTreeSet;

use listbackup_workers::connectors::FetchError;
use serde_json::{json, Value};
use support::files::{direct, ids, service, sha256};
use support::platform_api::RetryAfter;

#[tokio::test]
async fn an_empty_dropbox_is_one_request_and_no_record() {
    let fx = direct("dropbox").await;
    fx.api.seed_files("dropbox", 0, 0, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert!(records.is_empty());
    assert_eq!(summary.requests, 1);
    for data_type in ["shared_folders", "shared_links", "file_requests"] {
        let (records, summary) = fx.drain_ok(data_type).await;
        assert!(records.is_empty(), "{data_type}");
        assert_eq!(summary.requests, 1, "{data_type}");
    }
}

#[tokio::test]
async fn a_full_page_ends_with_has_more_false_and_continuations_carry_the_cursor() {
    let fx = direct("dropbox").await;
    // Exactly one page of 2000 (Dropbox's largest `limit`).
    fx.api.seed_files("dropbox", 0, 2000, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(records.len(), 2000);
    assert_eq!(summary.requests, 1);
    assert_eq!(fx.api.hits("/dropbox/2/files/list_folder/continue"), 0);
    // Two full pages: the second, exactly full, is the last.
    fx.api.seed_files("dropbox", 7, 3993, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(summary.requests, 2);
    assert_eq!(fx.api.hits("/dropbox/2/files/list_folder/continue"), 1);
    let unique: BTreeSet<String> = ids(&records, "id").into_iter().collect();
    assert_eq!(unique.len(), 4000);
    // Folders come before what they hold.
    assert_eq!(records[0][".tag"], "folder");
    assert_eq!(records[7][".tag"], "file");
}

#[tokio::test]
async fn shared_folders_continue_while_a_cursor_comes_back_and_shared_links_page_by_has_more() {
    let fx = direct("dropbox").await;
    fx.api.seed("dropbox", "shared_folders", 2500);
    let (folders, summary) = fx.drain_ok("shared_folders").await;
    assert_eq!(folders.len(), 2500);
    assert_eq!(
        summary.requests, 3,
        "1000 + 1000 + 500, the last without a cursor"
    );
    let unique: BTreeSet<String> = ids(&folders, "shared_folder_id").into_iter().collect();
    assert_eq!(unique.len(), 2500);
    fx.api.seed("dropbox", "shared_links", 250);
    let (links, summary) = fx.drain_ok("shared_links").await;
    assert_eq!(links.len(), 250);
    assert_eq!(summary.requests, 3);
    assert_eq!(fx.api.hits("/dropbox/2/sharing/list_shared_links"), 3);
    fx.api.seed("dropbox", "file_requests", 1001);
    let (requests, summary) = fx.drain_ok("file_requests").await;
    assert_eq!(requests.len(), 1001);
    assert_eq!(summary.requests, 2);
    assert_eq!(fx.api.hits("/dropbox/2/file_requests/list/continue"), 1);
}

#[tokio::test]
async fn a_429_mid_run_is_waited_out_a_500_retried_and_a_rejected_token_unauthorized() {
    let fx = direct("dropbox").await;
    fx.api.seed_files("dropbox", 0, 5000, 10);
    let mut pager = fx.connector.pages(fx.request("files")).unwrap();
    assert_eq!(
        pager.next_page().await.unwrap().unwrap().records.len(),
        2000
    );
    fx.api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    let waited = std::time::Instant::now();
    assert_eq!(
        pager.next_page().await.unwrap().unwrap().records.len(),
        2000
    );
    assert!(waited.elapsed() >= std::time::Duration::from_millis(900));
    fx.api.fail_next(1, 500);
    assert_eq!(
        pager.next_page().await.unwrap().unwrap().records.len(),
        1000
    );
    assert!(pager.next_page().await.unwrap().is_none());
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 2));
    fx.api.revoke("dropbox", support::files::SECRET);
    let err = fx.drain("files").await.unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
}

#[tokio::test]
async fn revisions_are_asked_per_file_with_its_id_in_the_body_and_a_deleted_file_is_passed_over() {
    let fx = direct("dropbox").await;
    fx.api.seed_files("dropbox", 3, 5, 10);
    fx.api.change_file("dropbox", 1);
    fx.api.vanish_file("dropbox", 4);
    let (revisions, summary) = fx.drain_ok("file_revisions").await;
    // Folders are not asked (Dropbox answers them `path/not_file`); file 1 has two revisions, 4 is gone.
    assert_eq!(revisions.len(), 5);
    assert_eq!(fx.api.hits("/dropbox/2/files/list_revisions"), 5);
    assert_eq!(summary.gone_parents, 1);
    let of_one: Vec<&Value> = revisions
        .iter()
        .filter(|r| r["id"] == fx.api.file_id("dropbox", 1))
        .collect();
    assert_eq!(of_one.len(), 2);
    assert_ne!(of_one[0]["rev"], of_one[1]["rev"]);
}

#[tokio::test]
async fn files_come_from_the_content_host_and_paper_docs_are_listed_only() {
    let fx = direct("dropbox").await;
    fx.api.seed_files("dropbox", 1, 5, 7000);
    fx.api.set_file_kind("dropbox", 2, "paper");
    fx.api.vanish_file("dropbox", 3);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!((counts.downloaded, counts.gone, counts.refused), (3, 1, 0));
    // The content host refuses a JSON content type or a body, so every download here came without one.
    assert_eq!(fx.api.hits("/dropbox/content/2/files/download"), 4);
    for content in &manifest.contents {
        let index: u64 = content.id["id:dRoPbOxFiLe".len()..].parse().unwrap();
        let bytes = fx.api.file_bytes("dropbox", index);
        assert_eq!(content.sha256, sha256(&bytes));
        assert_eq!(fx.stored("j1", &content.name), bytes);
        // Stored under the Dropbox id itself.
        assert_eq!(content.name, format!("files/{}", content.id));
    }
    assert_eq!(manifest.contents_not_stored[0].code.as_str(), "GONE");
    assert_eq!(
        manifest.contents_not_stored[0].id,
        fx.api.file_id("dropbox", 3)
    );
}

#[tokio::test]
async fn an_incremental_run_downloads_only_files_whose_content_hash_moved() {
    let fx = direct("dropbox").await;
    fx.api.seed_files("dropbox", 2, 10, 500);
    let (first, _) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!(fx.api.downloads("dropbox"), 10);
    fx.api.change_file("dropbox", 9);
    let hits = fx.api.hits("/dropbox/content/2/files/download");
    let (second, counts) = fx
        .back_up("j2", "files", Some(("j1", &first)))
        .await
        .unwrap();
    assert_eq!((counts.downloaded, counts.unchanged), (1, 9));
    assert_eq!(
        fx.api.hits("/dropbox/content/2/files/download") - hits,
        1,
        "one request to the content host"
    );
    let changed = second
        .contents
        .iter()
        .find(|c| c.id == fx.api.file_id("dropbox", 9))
        .unwrap();
    assert_eq!(changed.job_id, None);
    assert_eq!(changed.sha256, sha256(&fx.api.file_bytes("dropbox", 9)));
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

#[tokio::test]
async fn a_backup_stores_every_data_type_and_each_files_bytes() {
    let svc = service("dropbox").await;
    let api = &svc.backup.api;
    api.seed_files("dropbox", 3, 8, 2048);
    api.seed("dropbox", "shared_folders", 4);
    api.seed("dropbox", "shared_links", 120);
    api.seed("dropbox", "file_requests", 2);
    let connection = svc.connect().await;
    let data_types = [
        "files",
        "file_revisions",
        "shared_folders",
        "shared_links",
        "file_requests",
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
    assert_eq!(files.len(), 11);
    let expected: BTreeSet<String> = (0..8).map(|i| api.file_id("dropbox", i)).collect();
    let listed: BTreeSet<String> = files
        .iter()
        .filter(|f| f[".tag"] == "file")
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(svc.records(&source, job_id, "file_revisions").len(), 8);
    assert_eq!(svc.records(&source, job_id, "shared_folders").len(), 4);
    assert_eq!(svc.records(&source, job_id, "shared_links").len(), 120);
    assert_eq!(svc.records(&source, job_id, "file_requests").len(), 2);
    let manifest = svc.manifest(&source, job_id);
    let contents = manifest["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 8);
    for content in contents {
        let index: u64 = content["id"].as_str().unwrap()["id:dRoPbOxFiLe".len()..]
            .parse()
            .unwrap();
        assert_eq!(content["sha256"], sha256(&api.file_bytes("dropbox", index)));
        assert_eq!(content["bytes"], 2048);
    }
    svc.backup.stop().await;
}

#[tokio::test]
async fn an_incremental_source_skips_unchanged_files_and_a_rejected_token_is_refreshed_once() {
    let svc = service("dropbox").await;
    let api = &svc.backup.api;
    api.seed_files("dropbox", 0, 5, 300);
    let connection = svc.connect().await;
    let source = svc.source(&connection, &["files"], true).await;
    assert_eq!(svc.run(&source).await["status"], "succeeded");
    api.change_file("dropbox", 0);
    svc.provider.revoke_access_tokens("dropbox");
    let second = svc.run(&source).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(svc.provider.refreshes("dropbox"), 1);
    assert_eq!(api.downloads("dropbox"), 6);
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_damaged_answer_fails_one_data_type_and_the_others_back_up() {
    let svc = service("dropbox").await;
    let api = &svc.backup.api;
    api.seed_files("dropbox", 0, 2, 100);
    api.seed("dropbox", "file_requests", 3);
    api.truncate_every("/dropbox/2/file_requests/list_v2");
    let connection = svc.connect().await;
    let source = svc
        .source(&connection, &["files", "file_requests"], false)
        .await;
    let job = svc.run(&source).await;
    assert_eq!(job["status"], "partial", "{job}");
    let manifest = svc.manifest(&source, job["jobId"].as_str().unwrap());
    assert_eq!(manifest["failedDataTypes"][0]["dataType"], "file_requests");
    assert_eq!(
        manifest["contents"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );
    svc.backup.stop().await;
}
