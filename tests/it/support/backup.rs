//! A service with a backup worker: a local emulation of the platforms' APIs, backups into a temporary
//! directory removed when the test ends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::platform_api::PlatformApi;
use super::{wait_until, TestApp};

/// A service with a backup worker: Stripe pointed at a local emulation, backups into a temporary directory.
pub struct BackupApp {
    pub app: TestApp,
    pub api: PlatformApi,
    pub storage: std::path::PathBuf,
    // Declared last: dropped after the service has stopped writing.
    _cleanup: RemoveOnDrop,
}

impl BackupApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// With more configuration (`values` are the service's environment).
    pub async fn spawn_with(customize: impl FnOnce(&mut BTreeMap<String, String>)) -> Self {
        Self::spawn_for(&[], customize).await
    }

    /// With `platforms` pointed at the emulation as well as Stripe (their API URLs), and more configuration.
    pub async fn spawn_for(
        platforms: &[&str],
        customize: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Self {
        let api = PlatformApi::start().await;
        let urls: Vec<(String, String)> = platforms
            .iter()
            .map(|id| {
                let key = format!("LISTBACKUP_PLATFORM_{}_API_URL", id.to_ascii_uppercase());
                (key, api.api_url(id))
            })
            .collect();
        let storage =
            std::env::temp_dir().join(format!("listbackup-jobs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&storage).unwrap();
        let stripe_url = api.api_url("stripe");
        let storage_url = format!("file://{}", storage.display());
        let app = TestApp::spawn_with(|values| {
            values.insert("LISTBACKUP_PLATFORM_STRIPE_API_URL".into(), stripe_url);
            values.insert("LISTBACKUP_STORAGE_URL".into(), storage_url);
            values.extend(urls);
            customize(values);
        })
        .await;
        Self {
            app,
            api,
            _cleanup: RemoveOnDrop(storage.clone()),
            storage,
        }
    }

    /// With more configuration, and `adjust` changing the parsed configuration (settings no variable
    /// reaches, such as the hand-set clock of the scheduler and the retention sweep).
    pub async fn spawn_configured(
        customize: impl FnOnce(&mut BTreeMap<String, String>),
        adjust: impl FnOnce(&mut listbackup::Config),
    ) -> Self {
        let api = PlatformApi::start().await;
        let storage =
            std::env::temp_dir().join(format!("listbackup-jobs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&storage).unwrap();
        let stripe_url = api.api_url("stripe");
        let storage_url = format!("file://{}", storage.display());
        let app = TestApp::spawn_configured(
            |values| {
                values.insert("LISTBACKUP_PLATFORM_STRIPE_API_URL".into(), stripe_url);
                values.insert("LISTBACKUP_STORAGE_URL".into(), storage_url);
                customize(values);
            },
            adjust,
        )
        .await;
        Self {
            app,
            api,
            _cleanup: RemoveOnDrop(storage.clone()),
            storage,
        }
    }

    /// With these platforms' APIs (besides Stripe's) pointed at the emulation; `customize` may add keys.
    pub async fn spawn_emulating(
        platforms: &[&str],
        customize: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Self {
        let api = PlatformApi::start().await;
        let storage =
            std::env::temp_dir().join(format!("listbackup-jobs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&storage).unwrap();
        let urls: Vec<(String, String)> = std::iter::once("stripe")
            .chain(platforms.iter().copied())
            .map(|id| {
                let key = format!("LISTBACKUP_PLATFORM_{}_API_URL", id.to_ascii_uppercase());
                (key, api.api_url(id))
            })
            .collect();
        let storage_url = format!("file://{}", storage.display());
        let app = TestApp::spawn_with(|values| {
            values.extend(urls);
            values.insert("LISTBACKUP_STORAGE_URL".into(), storage_url);
            customize(values);
        })
        .await;
        Self {
            app,
            api,
            _cleanup: RemoveOnDrop(storage.clone()),
            storage,
        }
    }

    /// The records of a data type's artifact of a job.
    pub fn stored(
        &self,
        account: &str,
        source_id: &str,
        job_id: &str,
        data_type: &str,
    ) -> Vec<Value> {
        let dir = self.storage.join(format!(
            "accounts/{account}/sources/{source_id}/jobs/{job_id}"
        ));
        gunzip_lines(&dir.join(format!("{data_type}.ndjson.gz")))
    }

    pub async fn job(&self, token: &str, job_id: &str) -> Value {
        let response = self.app.get(&format!("/jobs/{job_id}"), token).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until the job has ended, and returns it.
    pub async fn finished(&self, token: &str, job_id: &str) -> Value {
        wait_until(Duration::from_secs(60), "the job to end", || async {
            let job = self.job(token, job_id).await;
            ["succeeded", "partial", "failed", "cancelled"]
                .contains(&job["status"].as_str().unwrap())
        })
        .await;
        self.job(token, job_id).await
    }

    /// An API-key connection to `platform_id` with `credentials` (ListBackup's field names) and a source of
    /// it backing up `data_types` (every data type when `None`): (connection id, source id).
    pub async fn key_source(
        &self,
        token: &str,
        platform_id: &str,
        credentials: Value,
        data_types: Option<&[&str]>,
    ) -> (String, String) {
        let response = self
            .app
            .post(
                "/connections",
                token,
                &json!({"platformId": platform_id, "name": platform_id, "credentials": credentials}),
            )
            .await;
        assert_eq!(
            response.status(),
            201,
            "create the {platform_id} connection"
        );
        let connection: Value = response.json().await.unwrap();
        let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
        let mut body = json!({"connectionId": connection_id, "name": platform_id});
        if let Some(data_types) = data_types {
            body["dataTypes"] = json!(data_types);
        }
        let response = self.app.post("/sources", token, &body).await;
        assert_eq!(response.status(), 201, "create the {platform_id} source");
        let source: Value = response.json().await.unwrap();
        (
            connection_id,
            source["sourceId"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}

/// A job's entry for the data type `name` (`{name, status, records, bytes, sha256, error?}`).
pub fn job_data_type<'a>(job: &'a Value, name: &str) -> &'a Value {
    job["dataTypes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .unwrap_or_else(|| panic!("{name}: {job}"))
}

/// Removes the storage directory when the test ends, also when it fails half-way.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The records of a gzip NDJSON artifact.
pub fn gunzip_lines(path: &std::path::Path) -> Vec<Value> {
    use std::io::BufRead;
    let file = std::fs::File::open(path).unwrap();
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(file))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// A Stripe source (key `sk_test_1`) of `data_types`; its id.
pub async fn stripe_source(
    app: &TestApp,
    token: &str,
    name: &str,
    data_types: &[&str],
    incremental: bool,
) -> String {
    let connection = app.create_stripe_connection(token, name, "sk_test_1").await;
    let response = app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection["connectionId"], "name": name,
                    "dataTypes": data_types, "incremental": incremental}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let view: Value = response.json().await.unwrap();
    view["sourceId"].as_str().unwrap().to_owned()
}

/// Queues a job of the source (202); its id.
pub async fn sync(app: &TestApp, token: &str, source_id: &str) -> String {
    let response = app
        .post(&format!("/sources/{source_id}/sync"), token, &json!({}))
        .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    job["jobId"].as_str().unwrap().to_owned()
}

/// Syncs the source as soon as its previous job has freed it (SyncFinished, recorded by a saga).
pub async fn sync_when_free(app: &TestApp, token: &str, source_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .post(&format!("/sources/{source_id}/sync"), token, &json!({}))
            .await;
        if response.status() == 202 {
            let job: Value = response.json().await.unwrap();
            return job["jobId"].as_str().unwrap().to_owned();
        }
        assert_eq!(
            response.status(),
            409,
            "only a job in progress may refuse it"
        );
        assert!(
            tokio::time::Instant::now() < deadline,
            "the source was not freed within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
