//! The driver of `bench/file-backup` (issue 10; run by hand, never by the tests): a file platform's files
//! backed up by the worker's own code, in a process apart from the platform emulation, timed, with the
//! process's peak memory.
//!
//! ```text
//! file_backup serve --platform google --files 1000 --size 1048576
//!     starts the platform emulation (the `listbackup-emulators` crate, the one the tests use) on a loopback
//!     port, seeded with that many files of that size, prints `{"url": …, "contentUrl": …}` on one line and
//!     serves until killed
//! file_backup run --platform google --url URL [--content-url URL] --storage DIR
//!     backs up the data type `files` into DIR the way a job's run does (the connector lists the files; each
//!     file's bytes stream from the download into a multipart upload of the local store, hashed on the way;
//!     the records go to files.ndjson.gz): `backup::files::back_up_data_type`, the worker's code minus the
//!     job's events. Prints one JSON line: files, bytes, seconds, MiB/s, the process's resident memory
//!     before the backup and its peak (VmHWM) after, the largest part a writer held
//! file_backup drain --platform google --url URL [--content-url URL]
//!     the baseline: the same listing and downloads by a plain reqwest client that reads each body and drops
//!     it (no storage, no hashing): how fast the emulation and the loopback go on their own
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::find;
use listbackup_emulators::PlatformApi;
use listbackup_workers::backup::files::{back_up_data_type, FileContents};
use listbackup_workers::connectors::{Connector, FetchRequest, RateLimit, RateLimits};
use listbackup_workers::storage::BackupStore;
use serde_json::{json, Value};

const TOKEN: &str = "bench-access-token";

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn required(args: &[String], name: &str) -> String {
    arg(args, name).unwrap_or_else(|| panic!("{name} is required"))
}

/// `VmRSS` or `VmHWM` of this process, in KiB.
fn memory_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn endpoints(platform: &str, url: &str, content_url: Option<&str>) -> PlatformEndpoints {
    let endpoints = PlatformEndpoints::default().with_api_url(platform, url);
    match content_url {
        Some(content) => endpoints.with_host_url(platform, "CONTENT", content),
        None => endpoints,
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let platform = arg(&args, "--platform").unwrap_or_else(|| "google".into());
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let files: u64 = required(&args, "--files").parse().unwrap();
            let size: u64 = required(&args, "--size").parse().unwrap();
            let api = PlatformApi::start().await;
            api.accept(&platform, TOKEN);
            api.seed_files(&platform, 0, files, size);
            let content = (platform == "dropbox").then(|| api.content_url("dropbox"));
            println!(
                "{}",
                json!({"url": api.api_url(&platform), "contentUrl": content})
            );
            tokio::signal::ctrl_c().await.ok();
            // SIGTERM ends the process without running this; the emulation owns nothing to clean up.
        }
        Some("run") => {
            let url = required(&args, "--url");
            let storage = required(&args, "--storage");
            let content_url = arg(&args, "--content-url");
            let rss_before = memory_kib("VmRSS:");
            let connector = Connector::new(endpoints(&platform, &url, content_url.as_deref()))
                .with_rate_limits(RateLimits::default().with(&platform, RateLimit::unlimited()));
            let store = BackupStore::from_url(&format!("file://{storage}")).unwrap();
            let artifacts = store.job("bench", "source", "job");
            let mut manifest = artifacts.new_manifest(&platform, 1, chrono::Utc::now());
            let platform_ref = find(&platform).unwrap();
            let credentials = BTreeMap::from([("accessToken".to_owned(), TOKEN.to_owned())]);
            let request = FetchRequest::new("bench", platform_ref, "files", &credentials);
            let contents = FileContents::new("files", platform_ref.listing("files").unwrap());
            let started = Instant::now();
            let (file, _, counts) =
                back_up_data_type(&connector, request, &artifacts, &mut manifest, contents)
                    .await
                    .unwrap_or_else(|err| panic!("the backup failed: {err:?}"));
            let seconds = started.elapsed().as_secs_f64();
            let mib = counts.bytes as f64 / (1024.0 * 1024.0);
            let (sha_ok, stored) = (
                manifest.contents.len() as u64 == counts.downloaded,
                manifest.contents.iter().map(|c| c.bytes).sum::<u64>(),
            );
            println!(
                "{}",
                json!({"files": counts.downloaded, "records": file.records, "bytes": counts.bytes,
                    "storedBytes": stored, "manifestComplete": sha_ok, "seconds": seconds,
                    "mibPerSecond": mib / seconds, "rssBeforeMib": rss_before as f64 / 1024.0,
                    "peakRssMib": memory_kib("VmHWM:") as f64 / 1024.0,
                    "peakBufferedMib": counts.peak_buffered as f64 / (1024.0 * 1024.0),
                    "partSizeMib": store.part_size() as f64 / (1024.0 * 1024.0),
                    "firstSha256": manifest.contents.first().map(|c| c.sha256.clone())})
            );
        }
        Some("drain") => {
            let url = required(&args, "--url");
            let content_url = arg(&args, "--content-url");
            let rss_before = memory_kib("VmRSS:");
            let http = reqwest::Client::new();
            let started = Instant::now();
            let (mut files, mut bytes) = (0u64, 0u64);
            // The Drive listing, page by page, then each file's bytes read and dropped.
            assert_eq!(platform, "google", "the baseline drains Google Drive");
            let _ = content_url;
            let mut token: Option<String> = None;
            loop {
                let mut query = vec![
                    ("pageSize", "1000".to_owned()),
                    ("fields", "nextPageToken,files(id)".to_owned()),
                ];
                if let Some(t) = &token {
                    query.push(("pageToken", t.clone()));
                }
                let page: Value = http
                    .get(format!("{url}/drive/v3/files"))
                    .bearer_auth(TOKEN)
                    .query(&query)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                for file in page["files"].as_array().unwrap() {
                    let mut response = http
                        .get(format!(
                            "{url}/drive/v3/files/{}",
                            file["id"].as_str().unwrap()
                        ))
                        .bearer_auth(TOKEN)
                        .query(&[("alt", "media")])
                        .send()
                        .await
                        .unwrap();
                    while let Some(chunk) = response.chunk().await.unwrap() {
                        bytes += chunk.len() as u64;
                    }
                    files += 1;
                }
                token = page["nextPageToken"].as_str().map(str::to_owned);
                if token.is_none() {
                    break;
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"files": files, "bytes": bytes, "seconds": seconds,
                    "mibPerSecond": bytes as f64 / (1024.0 * 1024.0) / seconds,
                    "rssBeforeMib": rss_before as f64 / 1024.0,
                    "peakRssMib": memory_kib("VmHWM:") as f64 / 1024.0})
            );
        }
        _ => {
            eprintln!("usage: file_backup serve|run|drain --platform google …");
            std::process::exit(2);
        }
    }
}
