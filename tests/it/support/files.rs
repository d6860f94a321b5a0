//! The file platforms (Google Drive, Dropbox, Box) in tests, two ways: the connector and the backup's file
//! code driven directly against the emulation ([`Direct`]: paging details, downloads, memory), and the whole
//! service with an OAuth connection ([`Service`]: jobs, manifests, refresh, the API).

use std::collections::BTreeMap;
use std::time::Duration;

use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_domain::platform::{find, Platform};
use listbackup_workers::backup::files::{
    back_up_data_type, ContentCounts, ContentFailure, FileContents,
};
use listbackup_workers::connectors::{
    Connector, FetchError, FetchRequest, FetchSummary, RateLimit, RateLimits, RetryPolicy,
};
use listbackup_workers::storage::{BackupStore, JobArtifacts, Manifest};
use serde_json::{json, Value};

use super::backup::{gunzip_lines, BackupApp};
use super::oauth_provider::{configure_service, connect, OauthProvider};
use super::platform_api::PlatformApi;

/// What the emulation accepts from the connector (directly) or from the OAuth provider (forwarding).
pub const SECRET: &str = "file-platform-access-token";

/// How long one fetch may take here.
const DEADLINE: Duration = Duration::from_secs(60);

/// The connector against the emulation, no rate limit, short backoffs, a storage directory of its own.
pub struct Direct {
    pub api: PlatformApi,
    pub connector: Connector,
    pub platform: &'static Platform,
    pub credentials: BTreeMap<String, String>,
    pub storage: std::path::PathBuf,
    pub store: BackupStore,
}

impl Drop for Direct {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

pub async fn direct(platform: &str) -> Direct {
    direct_with_part_size(platform, 1024 * 1024).await
}

/// With a storage part size of `part_size` bytes (what a file's writer holds at most).
pub async fn direct_with_part_size(platform: &str, part_size: usize) -> Direct {
    let api = PlatformApi::start().await;
    api.accept(platform, SECRET);
    let mut endpoints = PlatformEndpoints::default().with_api_url(platform, &api.api_url(platform));
    if platform == "dropbox" {
        endpoints = endpoints.with_host_url("dropbox", "CONTENT", &api.content_url("dropbox"));
    }
    let connector = Connector::new(endpoints)
        .with_rate_limits(RateLimits::default().with(platform, RateLimit::unlimited()))
        .with_retry_policy(RetryPolicy {
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..RetryPolicy::default()
        });
    let storage = std::env::temp_dir().join(format!("listbackup-files-{}", uuid::Uuid::new_v4()));
    let store = BackupStore::from_url(&format!("file://{}", storage.display()))
        .unwrap()
        .with_part_size(part_size);
    Direct {
        api,
        connector,
        platform: find(platform).unwrap(),
        credentials: BTreeMap::from([("accessToken".to_owned(), SECRET.to_owned())]),
        storage,
        store,
    }
}

impl Direct {
    pub fn request<'a>(&'a self, data_type: &'a str) -> FetchRequest<'a> {
        FetchRequest::new("conn-1", self.platform, data_type, &self.credentials)
    }

    /// Every record of `data_type`, in order, and the summary.
    pub async fn drain(&self, data_type: &str) -> Result<(Vec<Value>, FetchSummary), FetchError> {
        tokio::time::timeout(DEADLINE, async {
            let mut pager = self.connector.pages(self.request(data_type))?;
            let mut records = Vec::new();
            while let Some(page) = pager.next_page().await? {
                records.extend(
                    page.records
                        .iter()
                        .map(|r| serde_json::from_str::<Value>(r.get()).unwrap()),
                );
            }
            Ok((records, pager.summary()))
        })
        .await
        .unwrap_or_else(|_| panic!("{data_type}: still paging after {DEADLINE:?}"))
    }

    pub async fn drain_ok(&self, data_type: &str) -> (Vec<Value>, FetchSummary) {
        self.drain(data_type)
            .await
            .unwrap_or_else(|err| panic!("{data_type}: {err}"))
    }

    pub fn artifacts(&self, job: &str) -> JobArtifacts {
        self.store.job("acme", "src-1", job)
    }

    /// Backs `data_type` up as job `job` (after `previous`, whose unchanged files are not downloaded), the way
    /// a run does: its manifest (not written) and what happened to its files.
    pub async fn back_up(
        &self,
        job: &str,
        data_type: &str,
        previous: Option<(&str, &Manifest)>,
    ) -> Result<(Manifest, ContentCounts), ContentFailure> {
        let artifacts = self.artifacts(job);
        let mut manifest = artifacts.new_manifest(self.platform.id, 1, chrono::Utc::now());
        let listing = self.platform.listing(data_type).unwrap();
        let contents = FileContents::new(data_type, listing).map(|files| match previous {
            Some((job, manifest)) => files.with_previous(job, manifest),
            None => files,
        });
        let (_, _, counts) = tokio::time::timeout(
            DEADLINE,
            back_up_data_type(
                &self.connector,
                self.request(data_type),
                &artifacts,
                &mut manifest,
                contents,
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{data_type}: still backing up after {DEADLINE:?}"))?;
        Ok((manifest, counts))
    }

    /// The stored bytes of a file of job `job`.
    pub fn stored(&self, job: &str, name: &str) -> Vec<u8> {
        std::fs::read(
            self.storage
                .join(format!("accounts/acme/sources/src-1/jobs/{job}/{name}")),
        )
        .unwrap()
    }
}

/// Hex sha256.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The service with a backup worker, `platform` connected through the OAuth provider emulation, which
/// forwards data requests to the platform emulation (see `oauth_provider.rs`).
pub struct Service {
    pub backup: BackupApp,
    pub provider: OauthProvider,
    pub token: String,
    pub platform: &'static str,
}

pub async fn service(platform: &'static str) -> Service {
    service_with(platform, |_| {}).await
}

/// As [`service`], with more configuration (`values` are the service's environment).
pub async fn service_with(
    platform: &'static str,
    customize: impl FnOnce(&mut BTreeMap<String, String>),
) -> Service {
    let provider = OauthProvider::start().await;
    let base = provider.base_url.clone();
    let backup = BackupApp::spawn_with(|values| {
        configure_service(&provider, values);
        values.insert(
            "LISTBACKUP_PLATFORM_DROPBOX_CONTENT_URL".into(),
            format!("{base}/dropbox/api/content"),
        );
        // Box's upload host (`https://upload.box.com/api/2.0`), under the same forwarding.
        values.insert(
            "LISTBACKUP_PLATFORM_BOX_UPLOAD_URL".into(),
            format!("{base}/box/api/upload"),
        );
        for id in ["GOOGLE", "DROPBOX", "BOX"] {
            values.insert(
                format!("LISTBACKUP_PLATFORM_{id}_RATE_LIMIT"),
                "unlimited".into(),
            );
        }
        customize(values);
    })
    .await;
    provider.serve_data(platform, &backup.api.api_url(platform), SECRET);
    backup.api.accept(platform, SECRET);
    let token = backup.app.owner("acme");
    Service {
        backup,
        provider,
        token,
        platform,
    }
}

impl Service {
    /// Connects the platform by OAuth; the connection's id. On a machine this busy the callback may answer
    /// 503 ("recorded, but the read model has not caught up yet"): the connection exists, and is waited for.
    pub async fn connect(&self) -> String {
        self.connect_with(json!({})).await
    }

    /// As [`connect`](Self::connect), with more fields for `POST /connections/oauth/start`
    /// (`{"writeAccess": true}`).
    pub async fn connect_with(&self, extra: Value) -> String {
        let app = &self.backup.app;
        let response = connect(app, &self.token, self.platform, extra).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        if status == 201 {
            return body["connectionId"].as_str().unwrap().to_owned();
        }
        assert_eq!(status, 503, "{body}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let list: Value = app
                .get("/connections", &self.token)
                .await
                .json()
                .await
                .unwrap();
            if let Some(id) = list["connections"]
                .as_array()
                .and_then(|c| c.first())
                .and_then(|c| c["connectionId"].as_str())
            {
                return id.to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new connection was never listed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A source of `data_types`; its id.
    pub async fn source(
        &self,
        connection_id: &str,
        data_types: &[&str],
        incremental: bool,
    ) -> String {
        let response = self
            .backup
            .app
            .post(
                "/sources",
                &self.token,
                &json!({"connectionId": connection_id, "name": self.platform,
                        "dataTypes": data_types, "incremental": incremental}),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "{body}");
        body["sourceId"].as_str().unwrap().to_owned()
    }

    /// Syncs the source and waits for the job to end; the job.
    pub async fn run(&self, source_id: &str) -> Value {
        let job_id = super::backup::sync_when_free(&self.backup.app, &self.token, source_id).await;
        self.backup.finished(&self.token, &job_id).await
    }

    pub fn job_dir(&self, source_id: &str, job_id: &str) -> std::path::PathBuf {
        self.backup
            .storage
            .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"))
    }

    pub fn manifest(&self, source_id: &str, job_id: &str) -> Value {
        let text = std::fs::read(self.job_dir(source_id, job_id).join("manifest.json")).unwrap();
        serde_json::from_slice(&text).unwrap()
    }

    /// The records of `data_type` a job stored.
    pub fn records(&self, source_id: &str, job_id: &str, data_type: &str) -> Vec<Value> {
        gunzip_lines(
            &self
                .job_dir(source_id, job_id)
                .join(format!("{data_type}.ndjson.gz")),
        )
    }
}

/// The `id` of each record, as text.
pub fn ids(records: &[Value], field: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| match &r[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}
