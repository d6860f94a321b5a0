//! Demo mode (issue 11): `LISTBACKUP_DEMO=true` serves the platforms' emulations inside the service, the
//! catalog shows each API-key platform's demo credentials, and a connection made with exactly those is
//! routed to the emulation, per connection: real credentials on the same platform never are. The README's
//! quick start, step by step over HTTP.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::backup::gunzip_lines;
use support::{wait_until, TestApp};

/// A port nothing listens on: a "real" platform that refuses connections, so no test depends on the
/// network (and a request that reached it would fail, never succeed).
const REFUSING: &str = "http://127.0.0.1:9";

/// A temporary backup directory, removed when the test ends.
struct Storage(std::path::PathBuf);

impl Storage {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("listbackup-demo-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn spawn(demo: bool, storage: &Storage, more: &[(&str, &str)]) -> TestApp {
    let storage_url = storage.url();
    TestApp::spawn_with(|values| {
        values.insert("LISTBACKUP_DEMO".into(), demo.to_string());
        values.insert("LISTBACKUP_STORAGE_URL".into(), storage_url);
        for (key, value) in more {
            values.insert((*key).into(), (*value).into());
        }
    })
    .await
}

async fn json_of(response: reqwest::Response, status: u16, what: &str) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{what}: {body}");
    body
}

/// Platform requests the demo's emulation has received so far.
async fn emulation_requests(app: &TestApp) -> u64 {
    let url = format!(
        "{}/_emulator/stats",
        app.demo_url().expect("demo mode is on")
    );
    let stats: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    stats["requests"].as_u64().unwrap()
}

async fn connect(app: &TestApp, token: &str, platform: &str, credentials: &Value) -> String {
    let created = app
        .post(
            "/connections",
            token,
            &json!({"platformId": platform, "name": format!("{platform} demo"), "credentials": credentials}),
        )
        .await;
    let created = json_of(created, 201, "create the connection").await;
    created["connectionId"].as_str().unwrap().to_owned()
}

async fn test_connection(app: &TestApp, token: &str, connection_id: &str) -> Value {
    let response = app
        .post(
            &format!("/connections/{connection_id}/test"),
            token,
            &json!({}),
        )
        .await;
    json_of(response, 200, "test the connection").await
}

#[tokio::test]
async fn the_quick_start_backs_up_a_demo_platform_and_the_files_download() {
    let storage = Storage::new();
    let app = spawn(true, &storage, &[]).await;
    let token = app.owner("demo");

    // The catalog marks the demo, with each API-key platform's credentials.
    let catalog = json_of(app.get("/platforms", &token).await, 200, "catalog").await;
    assert_eq!(catalog["demo"], true);
    let platforms = catalog["platforms"].as_array().unwrap();
    let stripe = platforms
        .iter()
        .find(|p| p["platformId"] == "stripe")
        .unwrap();
    assert_eq!(
        stripe["demo"]["credentials"],
        json!({"secretKey": "sk_demo"})
    );
    for platform in platforms {
        let api_key = platform["authTypes"]
            .as_array()
            .unwrap()
            .contains(&json!("api_key"));
        assert_eq!(
            platform["demo"].is_object(),
            api_key,
            "{}: demo credentials for every API-key platform, none for the others",
            platform["platformId"]
        );
    }
    let one = json_of(app.get("/platforms/stripe", &token).await, 200, "stripe").await;
    assert_eq!(one["demo"], stripe["demo"]);

    // Every API-key platform's demo connection passes its connection test, against the emulation.
    for platform in platforms.iter().filter(|p| p["demo"].is_object()) {
        let id = platform["platformId"].as_str().unwrap();
        let connection_id = connect(&app, &token, id, &platform["demo"]["credentials"]).await;
        let tested = test_connection(&app, &token, &connection_id).await;
        assert_eq!(tested["ok"], true, "{id}: {tested}");
    }

    // The quick start: a demo connection, a source, a backup that succeeds with records.
    let connection_id = connect(&app, &token, "stripe", &stripe["demo"]["credentials"]).await;
    let source = app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection_id, "name": "Stripe demo",
                    "schedule": {"frequency": "daily", "time": "03:00"}}),
        )
        .await;
    let source = json_of(source, 201, "create the source").await;
    let source_id = source["sourceId"].as_str().unwrap();
    let sync = app
        .post(&format!("/sources/{source_id}/sync"), &token, &json!({}))
        .await;
    let job = json_of(sync, 202, "sync").await;
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    let path = format!("/jobs/{job_id}");
    wait_until(
        Duration::from_secs(120),
        "the demo backup to end",
        || async {
            let job: Value = app.get(&path, &token).await.json().await.unwrap();
            ["succeeded", "partial", "failed", "cancelled"]
                .contains(&job["status"].as_str().unwrap())
        },
    )
    .await;
    let job = json_of(app.get(&path, &token).await, 200, "job").await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let records = job["progress"]["records"].as_u64().unwrap();
    assert!(records >= 300, "{job}");

    // Its files: every data type's gzip NDJSON downloads and holds JSON records.
    let files = json_of(
        app.get(&format!("/jobs/{job_id}/files"), &token).await,
        200,
        "files",
    )
    .await;
    let names: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"manifest.json"), "{names:?}");
    assert!(names.contains(&"customers.ndjson.gz"), "{names:?}");
    let mut downloaded = 0;
    for name in names.iter().filter(|n| n.ends_with(".ndjson.gz")) {
        let response = app
            .get(&format!("/jobs/{job_id}/files/{name}"), &token)
            .await;
        assert_eq!(response.status(), 200, "{name}");
        let bytes = response.bytes().await.unwrap();
        let file = storage.0.join(format!("download-{name}"));
        std::fs::write(&file, &bytes).unwrap();
        let lines = gunzip_lines(&file);
        assert!(
            lines.iter().all(|record| record["id"].is_string()),
            "{name}"
        );
        downloaded += lines.len() as u64;
    }
    assert_eq!(downloaded, records, "every record of the job downloads");
    app.stop().await;
}

#[tokio::test]
async fn real_credentials_are_never_routed_to_the_emulation() {
    let storage = Storage::new();
    // The real Stripe, here a port that refuses connections (its override: the origin alone, `/v1` is the
    // catalog's).
    let app = spawn(
        true,
        &storage,
        &[("LISTBACKUP_PLATFORM_STRIPE_API_URL", REFUSING)],
    )
    .await;
    let token = app.owner("acct");
    let demo = connect(&app, &token, "stripe", &json!({"secretKey": "sk_demo"})).await;
    let before = emulation_requests(&app).await;
    assert_eq!(test_connection(&app, &token, &demo).await["ok"], true);
    assert_eq!(emulation_requests(&app).await, before + 1);

    // Same platform, same demo mode, other credentials (a near miss of the demo key among them): real.
    let mut real = Vec::new();
    for key in ["sk_live_51HxYz", "sk_demo2", "rk_demo"] {
        real.push(connect(&app, &token, "stripe", &json!({"secretKey": key})).await);
    }
    for connection_id in &real {
        let tested = test_connection(&app, &token, connection_id).await;
        assert_eq!(tested["ok"], false, "{tested}");
    }
    assert_eq!(
        emulation_requests(&app).await,
        before + 1,
        "no real connection reached the emulation"
    );

    // A demo connection given real credentials is a real connection from then on.
    let response = app
        .put(
            &format!("/connections/{demo}"),
            &token,
            &json!({"credentials": {"secretKey": "sk_live_51HxYz"}}),
        )
        .await;
    json_of(response, 200, "update the credentials").await;
    assert_eq!(test_connection(&app, &token, &demo).await["ok"], false);
    assert_eq!(emulation_requests(&app).await, before + 1);
    app.stop().await;
}

/// The fresh-clone audit's finding: an ActiveCampaign connection whose API URL named the demo's emulation on
/// loopback was created and answered as the emulation's admin. The API URL is a credential the customer
/// types, so it may only name ActiveCampaign's documented domains: the emulation's URL (or any loopback, a
/// metadata service, a database port) is refused when the connection is created or its credentials are
/// replaced, and a connection on a documented domain that is not the demo set goes where the operator's
/// configuration sends ActiveCampaign (here a refusing port), never to the emulation.
#[tokio::test]
async fn a_customer_api_url_never_reaches_the_emulation() {
    let storage = Storage::new();
    let app = spawn(
        true,
        &storage,
        &[("LISTBACKUP_PLATFORM_ACTIVECAMPAIGN_API_URL", REFUSING)],
    )
    .await;
    let token = app.owner("acct");
    let demo_url = app.demo_url().expect("demo mode is on");
    let catalog = json_of(
        app.get("/platforms/activecampaign", &token).await,
        200,
        "catalog",
    )
    .await;
    let demo_set = catalog["demo"]["credentials"].clone();
    assert_eq!(
        demo_set,
        json!({"apiUrl": "https://demo.api-us1.com", "apiKey": "demo"}),
        "{catalog}"
    );
    let demo = connect(&app, &token, "activecampaign", &demo_set).await;
    let before = emulation_requests(&app).await;
    let tested = test_connection(&app, &token, &demo).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(emulation_requests(&app).await, before + 1);

    // The audit's inputs: the emulation itself, and the internal targets a connection test would probe.
    let aimed = [
        format!("{demo_url}/activecampaign"),
        demo_url.clone(),
        "http://169.254.169.254/latest".to_owned(),
        "http://127.0.0.1:5432".to_owned(),
        "http://127.0.0.1:8081".to_owned(),
    ];
    for api_url in &aimed {
        let body = json!({"platformId": "activecampaign", "name": "x",
                          "credentials": {"apiUrl": api_url, "apiKey": "demo"}});
        let (status, problem) =
            support::problem_code(app.post("/connections", &token, &body).await).await;
        assert_eq!(status, 400, "{api_url}: {problem}");
        assert_eq!(
            problem["errors"][0]["field"], "credentials.apiUrl",
            "{problem}"
        );
        // Nor can a demo connection be turned into one.
        let (status, problem) = support::problem_code(
            app.put(
                &format!("/connections/{demo}"),
                &token,
                &json!({"credentials": {"apiUrl": api_url, "apiKey": "demo"}}),
            )
            .await,
        )
        .await;
        assert_eq!(status, 400, "{api_url}: {problem}");
        assert_eq!(
            problem["errors"][0]["field"], "credentials.apiUrl",
            "{problem}"
        );
    }

    // Documented domains with the demo key, but not the demo set: real connections, sent to the operator's
    // ActiveCampaign (refusing here), never to the emulation.
    for api_url in ["https://acme.api-us1.com", "https://demo.activehosted.com"] {
        let real = connect(
            &app,
            &token,
            "activecampaign",
            &json!({"apiUrl": api_url, "apiKey": "demo"}),
        )
        .await;
        let tested = test_connection(&app, &token, &real).await;
        assert_eq!(tested["ok"], false, "{api_url}: {tested}");
        assert_eq!(tested["code"], "UNAVAILABLE", "{api_url}: {tested}");
    }
    assert_eq!(
        emulation_requests(&app).await,
        before + 1,
        "no real connection reached the emulation"
    );
    app.stop().await;
}

#[tokio::test]
async fn without_demo_mode_nothing_is_advertised_or_emulated() {
    let storage = Storage::new();
    let mut app = spawn(
        false,
        &storage,
        &[("LISTBACKUP_PLATFORM_STRIPE_API_URL", REFUSING)],
    )
    .await;
    assert!(app.demo_url().is_none());
    let token = app.owner("acct");
    let catalog = json_of(app.get("/platforms", &token).await, 200, "catalog").await;
    assert_eq!(catalog["demo"], false);
    assert!(catalog["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["demo"].is_null()));
    // The demo credentials are only credentials: sent to the (here refusing) real platform.
    let connection_id = connect(&app, &token, "stripe", &json!({"secretKey": "sk_demo"})).await;
    let tested = test_connection(&app, &token, &connection_id).await;
    assert_eq!(tested["ok"], false, "{tested}");

    // A demo connection made while demo mode was on, after a restart with it off: refused, never sent to
    // the real platform.
    app.config.demo = true;
    app.restart().await;
    let demo = connect(&app, &token, "stripe", &json!({"secretKey": "sk_demo"})).await;
    assert_eq!(test_connection(&app, &token, &demo).await["ok"], true);
    app.config.demo = false;
    app.restart().await;
    let tested = test_connection(&app, &token, &demo).await;
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(
        tested["message"].as_str().unwrap().contains("demo mode"),
        "{tested}"
    );
    app.stop().await;
}

#[test]
fn a_demo_data_set_is_hundreds_to_thousands_of_records_per_data_type() {
    let sizes: BTreeMap<&str, u64> =
        listbackup::demo::data_set(listbackup_domain::platform::find("stripe").unwrap())
            .into_iter()
            .collect();
    assert!(sizes.contains_key("customers"), "{sizes:?}");
    assert!(
        sizes.values().all(|n| (100..=2_500).contains(n)),
        "{sizes:?}"
    );
}

#[tokio::test]
async fn every_api_key_platform_s_demo_backs_up_in_full() {
    let storage = Storage::new();
    // The platforms' rate limits hold in demo mode too; this test is about the data sets, so it lifts the
    // ones ListBackup sets (Shopify's emulation still keeps its own leaky bucket, as Shopify does).
    let unlimited: Vec<(String, &str)> = listbackup_domain::platform::CATALOG
        .iter()
        .map(|p| {
            let key = format!(
                "LISTBACKUP_PLATFORM_{}_RATE_LIMIT",
                p.id.to_ascii_uppercase()
            );
            (key, "unlimited")
        })
        .collect();
    let more: Vec<(&str, &str)> = unlimited.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let app = spawn(true, &storage, &more).await;
    let token = app.owner("demo");
    let catalog = json_of(app.get("/platforms", &token).await, 200, "catalog").await;
    let mut jobs = Vec::new();
    for platform in catalog["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["demo"].is_object())
    {
        let id = platform["platformId"].as_str().unwrap().to_owned();
        let connection_id = connect(&app, &token, &id, &platform["demo"]["credentials"]).await;
        let source = app
            .post(
                "/sources",
                &token,
                &json!({"connectionId": connection_id, "name": format!("{id} demo")}),
            )
            .await;
        let source = json_of(source, 201, "create the source").await;
        let sync = app
            .post(
                &format!("/sources/{}/sync", source["sourceId"].as_str().unwrap()),
                &token,
                &json!({}),
            )
            .await;
        let job = json_of(sync, 202, "sync").await;
        jobs.push((id, job["jobId"].as_str().unwrap().to_owned()));
    }
    for (platform, job_id) in jobs {
        let path = format!("/jobs/{job_id}");
        wait_until(
            Duration::from_secs(120),
            "the demo backups to end",
            || async {
                let job: Value = app.get(&path, &token).await.json().await.unwrap();
                ["succeeded", "partial", "failed", "cancelled"]
                    .contains(&job["status"].as_str().unwrap())
            },
        )
        .await;
        let job = json_of(app.get(&path, &token).await, 200, "job").await;
        eprintln!(
            "{platform}: {} {} records in {} data types, {} → {}",
            job["status"],
            job["progress"]["records"],
            job["dataTypes"].as_array().map_or(0, Vec::len),
            job["startedAt"],
            job["finishedAt"]
        );
        assert_eq!(job["status"], "succeeded", "{platform}: {job}");
        assert!(
            job["progress"]["records"].as_u64().unwrap() >= 300,
            "{platform}: {job}"
        );
        // Every data type has records, per parent ones included (Mailchimp's audience members once came
        // back empty: the demo seeded a set the emulation never read).
        for data_type in job["dataTypes"].as_array().unwrap() {
            assert!(
                data_type["records"].as_u64().unwrap() > 0,
                "{platform}: {data_type}"
            );
        }
    }
    app.stop().await;
}
