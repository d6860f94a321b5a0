//! Box (issue 10): the connector against the emulation of Box API 2.0 (the folder tree walked from "All
//! Files" by marker paging, per-file and per-folder lists), each file's bytes through Box's redirect to a
//! pre-signed URL on another host, which must receive no credentials, and whole backups through the service
//! with an OAuth connection.

use crate::support;

use std::collections::BTreeSet;

use listbackup_workers::connectors::FetchError;
use serde_json::{json, Value};
use support::files::{direct, ids, service, sha256};
use support::platform_api::RetryAfter;

#[tokio::test]
async fn an_empty_box_is_one_request_and_no_record() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 0, 0, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert!(records.is_empty());
    assert_eq!(summary.requests, 1, "All Files, empty");
    assert_eq!(fx.api.hits("/box/2.0/folders/0/items"), 1);
}

#[tokio::test]
async fn a_full_folder_page_ends_without_a_marker_and_a_last_full_page_ends_the_folder() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 0, 1000, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(records.len(), 1000);
    assert_eq!(summary.requests, 1);
    let query = fx.api.last_query("/box/2.0/folders/0/items").unwrap();
    assert!(
        query.starts_with("usemarker=true&fields=id%2Ctype%2Cname"),
        "{query}"
    );
    assert!(query.ends_with("&limit=1000"), "{query}");
    fx.api.seed_files("box", 0, 2000, 10);
    let (records, summary) = fx.drain_ok("files").await;
    assert_eq!(summary.requests, 2);
    let unique: BTreeSet<String> = ids(&records, "id").into_iter().collect();
    assert_eq!(unique.len(), 2000);
}

#[tokio::test]
async fn the_tree_is_walked_from_all_files_and_each_data_type_keeps_its_own_items() {
    let fx = direct("box").await;
    // Folders 1..6 (1 in All Files, 2 and 3 in 1, 4 and 5 in 2, 6 in 3), 20 files and 5 web links spread
    // over the seven folders.
    fx.api.seed_files("box", 6, 20, 10);
    fx.api.seed_web_links(5);
    let (files, summary) = fx.drain_ok("files").await;
    assert_eq!(files.len(), 20);
    assert!(files.iter().all(|f| f["type"] == "file"));
    assert_eq!(
        summary.requests, 7,
        "one request per folder, each folder once"
    );
    let expected: BTreeSet<String> = (0..20).map(|i| fx.api.file_id("box", i)).collect();
    assert_eq!(
        ids(&files, "id").into_iter().collect::<BTreeSet<_>>(),
        expected
    );
    // Only the fields asked for (and the mini representation).
    assert!(files[0]["sha1"].is_string() && files[0]["folder_upload_email"].is_null());
    let (folders, _) = fx.drain_ok("folders").await;
    assert_eq!(folders.len(), 6);
    assert!(folders
        .iter()
        .all(|f| f["type"] == "folder" && f["parent"]["id"].is_string()));
    let (links, _) = fx.drain_ok("web_links").await;
    assert_eq!(links.len(), 5);
    assert!(links.iter().all(|l| l["url"].is_string()));
}

#[tokio::test]
async fn a_429_mid_walk_is_waited_out_a_500_retried_and_a_rejected_token_unauthorized() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 1, 3000, 10);
    let mut pager = fx.connector.pages(fx.request("files")).unwrap();
    let mut records = pager.next_page().await.unwrap().unwrap().records.len();
    fx.api.rate_limit_next_with(1, RetryAfter::Seconds(1));
    records += pager.next_page().await.unwrap().unwrap().records.len();
    fx.api.fail_next(1, 503);
    while let Some(page) = pager.next_page().await.unwrap() {
        records += page.records.len();
    }
    assert_eq!(records, 3000);
    let summary = pager.summary();
    assert_eq!((summary.rate_limited, summary.retries), (1, 2));
    fx.api.revoke("box", support::files::SECRET);
    let err = fx.drain("files").await.unwrap_err();
    assert!(matches!(err, FetchError::Unauthorized), "{err}");
}

#[tokio::test]
async fn per_file_and_per_folder_lists_page_their_own_way() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 3, 9, 10);
    // Versions: the previous ones only; file 2 changed twice.
    fx.api.change_file("box", 2);
    fx.api.change_file("box", 2);
    let (versions, summary) = fx.drain_ok("file_versions").await;
    assert_eq!(versions.len(), 2);
    assert!(versions
        .iter()
        .all(|v| v["fileId"] == fx.api.file_id("box", 2)));
    // The walk (4 folders) and one request per file.
    assert_eq!(summary.requests, 4 + 9);
    let (comments, _) = fx.drain_ok("comments").await;
    assert_eq!(comments.len(), 3, "files 0, 3 and 6");
    let (tasks, _) = fx.drain_ok("tasks").await;
    assert_eq!(tasks.len(), 3, "files 0, 4 and 8");
    // Collaborations per folder: the odd ones have one.
    let (collaborations, _) = fx.drain_ok("collaborations").await;
    assert_eq!(collaborations.len(), 2);
    assert!(collaborations.iter().all(|c| c["item"]["type"] == "folder"));
}

#[tokio::test]
async fn a_download_follows_the_redirect_without_the_access_token() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 2, 6, 5000);
    fx.api.box_not_ready_next(1);
    let (manifest, counts) = fx.back_up("j1", "files", None).await.unwrap();
    assert_eq!(counts.downloaded, 6);
    // The download host saw six requests and none of them carried credentials (it refuses those).
    assert_eq!(fx.api.box_authorized_downloads(), 0);
    assert_eq!(fx.api.downloads("box"), 6);
    // The first answer was 202 (not ready): waited out, then the 302.
    let content_requests: usize = (0..6)
        .map(|i| {
            fx.api.hits(&format!(
                "/box/2.0/files/{}/content",
                fx.api.file_id("box", i)
            ))
        })
        .sum();
    assert_eq!(content_requests, 7);
    for content in &manifest.contents {
        let index = content.id.parse::<u64>().unwrap() - 1_000_000_000;
        let bytes = fx.api.file_bytes("box", index);
        assert_eq!(content.sha256, sha256(&bytes));
        assert_eq!(fx.stored("j1", &content.name), bytes);
    }
}

#[tokio::test]
async fn an_incremental_run_downloads_only_files_whose_sha1_moved_and_gone_files_are_passed_over() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 1, 6, 800);
    let (first, _) = fx.back_up("j1", "files", None).await.unwrap();
    fx.api.change_file("box", 5);
    fx.api.vanish_file("box", 1);
    let (second, counts) = fx
        .back_up("j2", "files", Some(("j1", &first)))
        .await
        .unwrap();
    // File 1 is unchanged: it is not downloaded, so its deletion goes unnoticed until it leaves the listing.
    assert_eq!(
        (counts.downloaded, counts.unchanged, counts.gone),
        (1, 5, 0)
    );
    assert_eq!(fx.api.downloads("box"), 7);
    fx.api.change_file("box", 1);
    let (_, counts) = fx
        .back_up("j3", "files", Some(("j2", &second)))
        .await
        .unwrap();
    assert_eq!((counts.downloaded, counts.gone), (0, 1));
}

// ---------------------------------------------------------------------------------------------------------
// Through the service

#[tokio::test]
async fn a_backup_stores_every_data_type_and_each_files_bytes() {
    let svc = service("box").await;
    let api = &svc.backup.api;
    api.seed_files("box", 4, 10, 3333);
    api.seed_web_links(2);
    api.change_file("box", 3);
    let connection = svc.connect().await;
    let data_types = [
        "files",
        "folders",
        "file_versions",
        "collaborations",
        "comments",
        "tasks",
        "web_links",
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
    let expected: BTreeSet<String> = (0..10).map(|i| api.file_id("box", i)).collect();
    assert_eq!(
        ids(&files, "id").into_iter().collect::<BTreeSet<_>>(),
        expected
    );
    assert_eq!(svc.records(&source, job_id, "folders").len(), 4);
    assert_eq!(svc.records(&source, job_id, "web_links").len(), 2);
    assert_eq!(svc.records(&source, job_id, "file_versions").len(), 1);
    assert_eq!(svc.records(&source, job_id, "collaborations").len(), 2);
    assert_eq!(svc.records(&source, job_id, "comments").len(), 4);
    assert_eq!(svc.records(&source, job_id, "tasks").len(), 3);
    let manifest = svc.manifest(&source, job_id);
    let contents = manifest["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 10);
    for content in contents {
        let index = content["id"].as_str().unwrap().parse::<u64>().unwrap() - 1_000_000_000;
        assert_eq!(content["sha256"], sha256(&api.file_bytes("box", index)));
        assert_eq!(
            content["version"],
            files.iter().find(|f| f["id"] == content["id"]).unwrap()["sha1"]
        );
    }
    // Through the OAuth provider's resource server and the redirect: no token reached the download host.
    assert_eq!(api.box_authorized_downloads(), 0);
    svc.backup.stop().await;
}

#[tokio::test]
async fn an_incremental_source_skips_unchanged_files_and_a_rejected_token_is_refreshed_once() {
    let svc = service("box").await;
    let api = &svc.backup.api;
    api.seed_files("box", 2, 6, 300);
    let connection = svc.connect().await;
    let source = svc.source(&connection, &["files", "folders"], true).await;
    assert_eq!(svc.run(&source).await["status"], "succeeded");
    api.change_file("box", 2);
    svc.provider.revoke_access_tokens("box");
    let second = svc.run(&source).await;
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(svc.provider.refreshes("box"), 1);
    assert_eq!(api.downloads("box"), 7);
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_damaged_answer_fails_one_data_type_and_the_others_back_up() {
    let svc = service("box").await;
    let api = &svc.backup.api;
    api.seed_files("box", 1, 4, 100);
    let connection = svc.connect().await;
    let source = svc.source(&connection, &["files", "tasks"], false).await;
    for i in 0..4 {
        api.truncate_every(&format!("/box/2.0/files/{}/tasks", api.file_id("box", i)));
    }
    let job = svc.run(&source).await;
    assert_eq!(job["status"], "partial", "{job}");
    let manifest = svc.manifest(&source, job["jobId"].as_str().unwrap());
    assert_eq!(manifest["failedDataTypes"][0]["dataType"], "tasks");
    assert_eq!(
        manifest["contents"].as_array().map(Vec::len),
        Some(4),
        "{manifest}"
    );
    svc.backup.stop().await;
}

#[tokio::test]
async fn a_walk_resumed_from_a_page_cursor_lists_the_rest_of_the_tree_once() {
    let fx = direct("box").await;
    // Folder 1 holds 1,200 items: its listing takes two pages, and the walk goes on to four more folders.
    fx.api.seed_files("box", 4, 6000, 10);
    let (all, _) = fx.drain_ok("files").await;
    let mut pager = fx.connector.pages(fx.request("files")).unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut cursor = None;
    for _ in 0..3 {
        let page = pager.next_page().await.unwrap().unwrap();
        seen.extend(page.records.iter().map(|r| {
            serde_json::from_str::<Value>(r.get()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
        cursor = Some(page.cursor);
    }
    drop(pager);
    // As a run continues after a token refresh: from the last page stored.
    let mut resumed = fx
        .connector
        .pages(fx.request("files").resume(cursor))
        .unwrap();
    while let Some(page) = resumed.next_page().await.unwrap() {
        seen.extend(page.records.iter().map(|r| {
            serde_json::from_str::<Value>(r.get()).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }));
    }
    let expected = ids(&all, "id");
    let first_difference = seen.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        seen == expected,
        "every file once, in the same order: {} seen, {} expected, first difference at {first_difference:?}",
        seen.len(),
        expected.len()
    );
}

#[tokio::test]
async fn all_files_answering_not_found_fails_the_walk_instead_of_backing_up_nothing() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 2, 4, 10);
    // A folder deleted mid-walk is passed over, but "All Files" not found means the requests are wrong.
    fx.api.fail_path("/box/2.0/folders/0/items", 404);
    let err = fx.drain("files").await.unwrap_err();
    assert!(
        matches!(err, FetchError::Platform { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn version_pages_held_below_the_limit_asked_go_on_to_total_count() {
    let fx = direct("box").await;
    fx.api.seed_files("box", 0, 1, 10);
    for _ in 0..7 {
        fx.api.change_file("box", 0);
    }
    let file = fx.api.file_id("box", 0);
    fx.api
        .cap_page_size(&format!("/box/2.0/files/{file}/versions"), 2);
    let (versions, _) = fx.drain_ok("file_versions").await;
    let unique: BTreeSet<String> = ids(&versions, "id").into_iter().collect();
    assert_eq!((versions.len(), unique.len()), (7, 7), "{versions:?}");
}
