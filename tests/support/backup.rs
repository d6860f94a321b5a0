//! A service with a backup worker: a local emulation of the platforms' APIs, backups into a temporary
//! directory removed when the test ends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

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
        let api = PlatformApi::start().await;
        let storage =
            std::env::temp_dir().join(format!("listbackup-jobs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&storage).unwrap();
        let stripe_url = api.api_url("stripe");
        let storage_url = format!("file://{}", storage.display());
        let app = TestApp::spawn_with(|values| {
            values.insert("LISTBACKUP_PLATFORM_STRIPE_API_URL".into(), stripe_url);
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

    pub async fn job(&self, token: &str, job_id: &str) -> Value {
        let response = self.app.get(&format!("/jobs/{job_id}"), token).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Waits until the job has ended, and returns it.
    pub async fn finished(&self, token: &str, job_id: &str) -> Value {
        wait_until(Duration::from_secs(60), "the job to end", || async {
            let job = self.job(token, job_id).await;
            ["succeeded", "failed", "cancelled"].contains(&job["status"].as_str().unwrap())
        })
        .await;
        self.job(token, job_id).await
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
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
