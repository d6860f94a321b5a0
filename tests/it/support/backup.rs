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
        register_storage(&storage, &app.config);
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
        register_storage(&storage, &app.config);
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
        register_storage(&storage, &app.config);
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

    /// `POST /sources/{source_id}/restores` with `body` once the source is free (the previous job's end frees
    /// it through a saga; until then the request is refused 409, the one refusal allowed here): the queued
    /// restore job.
    pub async fn request_restore(&self, token: &str, source_id: &str, body: &Value) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let response = self
                .app
                .post(&format!("/sources/{source_id}/restores"), token, body)
                .await;
            let status = response.status().as_u16();
            let answer: Value = response.json().await.unwrap();
            if status == 202 {
                return answer;
            }
            assert_eq!(
                status, 409,
                "only a job in progress may refuse it: {answer}"
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "the source stayed busy: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Self::request_restore`], then waits for the job's end: the finished job, which must have succeeded.
    pub async fn restore_to_end(&self, token: &str, source_id: &str, body: &Value) -> Value {
        let job = self.request_restore(token, source_id, body).await;
        let done = self.finished(token, job["jobId"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        done
    }

    /// A restore job's report (`report.ndjson.gz`), downloaded through the API: one JSON value per record
    /// (`{dataType, oldId, newId, action, reason?, error?, dryRun, sets?}`).
    pub async fn restore_report(&self, token: &str, job_id: &str) -> Vec<Value> {
        use std::io::BufRead;
        let response = self
            .app
            .get(&format!("/jobs/{job_id}/files/report.ndjson.gz"), token)
            .await;
        assert_eq!(response.status(), 200);
        let gzip = response.bytes().await.unwrap();
        std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&gzip[..]))
            .lines()
            .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
            .collect()
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
        unregister_storage(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The records of a gzip NDJSON artifact: a stored one (decrypted, see [`stored_plaintext`]) or a
/// downloaded one.
pub fn gunzip_lines(path: &std::path::Path) -> Vec<Value> {
    use std::io::BufRead;
    let plaintext = stored_plaintext(path);
    std::io::BufReader::new(flate2::read::MultiGzDecoder::new(&plaintext[..]))
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect()
}

/// The storage directories of the running test services, with what reads their encrypted files: the
/// service's database (its data keys) and master key.
static STORAGES: std::sync::Mutex<Vec<(std::path::PathBuf, String, String)>> =
    std::sync::Mutex::new(Vec::new());

/// Lets [`stored_plaintext`] decrypt the files stored under `storage` by the service of `config`.
pub fn register_storage(storage: &std::path::Path, config: &listbackup::Config) {
    STORAGES.lock().unwrap().push((
        storage.to_owned(),
        config.database_url.clone(),
        config.master_key.clone().expect("a master key"),
    ));
}

fn unregister_storage(storage: &std::path::Path) {
    STORAGES
        .lock()
        .unwrap()
        .retain(|(dir, _, _)| dir != storage);
}

/// A stored file's plaintext, as a download gives it: the file itself when it is not encrypted (a file
/// written without data keys, a downloaded file), decrypted with its account's data key when it is (issue
/// 13 §2). Blocking: the key is read from the service's database on a thread of its own.
pub fn stored_plaintext(path: &std::path::Path) -> Vec<u8> {
    use listbackup_workers::storage::encryption::{FileDecryptor, Header, MAGIC};
    let stored = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    if !stored.starts_with(MAGIC) {
        return stored;
    }
    let (root, database_url, master_key) = STORAGES
        .lock()
        .unwrap()
        .iter()
        .find(|(dir, _, _)| path.starts_with(dir))
        .cloned()
        .unwrap_or_else(|| panic!("{} is encrypted, in no registered storage", path.display()));
    // The object path (what the file key is bound to) and the account, from the layout
    // `accounts/{accountId}/…`.
    let relative: Vec<String> = path
        .strip_prefix(&root)
        .unwrap()
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let object_path = listbackup_workers::storage::ObjectPath::parse(relative.join("/")).unwrap();
    let account_id = object_path.parts().nth(1).unwrap().as_ref().to_owned();
    let (header, _) = Header::parse(&stored).unwrap().unwrap();
    let key = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let pool = deadpool_postgres::Config {
                    url: Some(database_url),
                    pool: Some(deadpool_postgres::PoolConfig::new(1)),
                    ..Default::default()
                }
                .create_pool(
                    Some(deadpool_postgres::Runtime::Tokio1),
                    tokio_postgres::NoTls,
                )
                .unwrap();
                let keys =
                    listbackup_commands::vault::MasterKeys::from_base64(&master_key, &[]).unwrap();
                listbackup_commands::data_keys::DataKeys::new(pool, std::sync::Arc::new(keys))
                    .for_reading(&account_id, &header.key_id)
                    .await
            })
    })
    .join()
    .unwrap()
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut decryptor = FileDecryptor::new(std::sync::Arc::new(key), object_path.as_ref());
    let mut plaintext = Vec::new();
    decryptor.update(&stored, &mut plaintext).unwrap();
    decryptor.finish(&mut plaintext).unwrap();
    plaintext
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
