//! `GET /metrics` (issue 14 §1), black-box: a real `listbackup serve` process of its own (so that its
//! counters are its alone, and exact) with `LISTBACKUP_METRICS_BIND`, a backup against the Stripe emulation
//! (one 429 on the way) and a few requests; the scrapes show the counters moved with the right labels, the
//! gauges while the backup runs and after, and no id or account anywhere. Then SIGTERM: a clean exit.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::notifications::WebhookReceiver;
use support::platform_api::PlatformApi;
use support::worker_process::{free_port, WorkerProcess};
use support::{
    nats_url, random_master_key, require_nats, wait_until, NatsStreamsGuard, TestDatabase,
};

/// One sample of a scrape: the metric's name and its labels, sorted.
type Series = (String, BTreeMap<String, String>);

/// The samples of a Prometheus text exposition (comments skipped).
fn parse(text: &str) -> Vec<(Series, f64)> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap();
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            ((name.to_owned(), labels), value.parse().unwrap())
        })
        .collect()
}

struct Scrape {
    text: String,
    samples: Vec<(Series, f64)>,
}

impl Scrape {
    /// The value of the sample named `name` with exactly these labels; `None` when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|((n, l), _)| n == name && *l == labels)
            .map(|(_, v)| *v)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.text))
    }
}

struct Service {
    process: WorkerProcess,
    base: String,
    metrics: String,
    http: reqwest::Client,
    token: String,
}

impl Service {
    async fn scrape(&self) -> Scrape {
        let response = self.http.get(&self.metrics).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = response.text().await.unwrap();
        Scrape {
            samples: parse(&text),
            text,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    async fn job(&self, job_id: &str) -> Value {
        self.call(reqwest::Method::GET, &format!("/jobs/{job_id}"), None)
            .await
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_a_backup_by_platform_without_ids() {
    let db = TestDatabase::create().await;
    require_nats().await;
    let nats = NatsStreamsGuard::new();
    let api = PlatformApi::start().await;
    api.accept("stripe", "sk_test_1");
    api.seed("stripe", "customers", 150);
    api.seed("stripe", "invoices", 20);
    let storage = std::env::temp_dir().join(format!("listbackup-metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&storage).unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url.clone()),
        ("NATS_URL", nats_url()),
        ("LISTBACKUP_NATS_PREFIX", nats.prefix.clone()),
        ("LISTBACKUP_MASTER_KEY", random_master_key()),
        (
            "LISTBACKUP_JWT_SECRET",
            format!("test-secret-{}", uuid::Uuid::new_v4()),
        ),
        ("LISTBACKUP_BIND", format!("127.0.0.1:{port}")),
        (
            "LISTBACKUP_METRICS_BIND",
            format!("127.0.0.1:{metrics_port}"),
        ),
        (
            "LISTBACKUP_STORAGE_URL",
            format!("file://{}", storage.display()),
        ),
        ("LISTBACKUP_PLATFORM_STRIPE_API_URL", api.api_url("stripe")),
        ("LISTBACKUP_DB_POOL_SIZE", "8".to_owned()),
        ("LISTBACKUP_WORKER_CONCURRENCY", "3".to_owned()),
        ("LISTBACKUP_SHUTDOWN_GRACE_SECS", "5".to_owned()),
        // A loopback webhook receiver, retried after 200 ms.
        ("LISTBACKUP_WEBHOOK_ALLOW_HTTP", "true".to_owned()),
        ("LISTBACKUP_WEBHOOK_RETRY_BASE_MS", "200".to_owned()),
        ("LISTBACKUP_WEBHOOK_RETRY_MAX_MS", "1000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = listbackup::Config::from_values(&env.iter().cloned().collect()).unwrap();
    let token = listbackup_api::auth::mint_hs256_token(
        &config.auth,
        "acme",
        "test-user",
        &[listbackup_api::auth::Role::Owner],
        Duration::from_secs(600),
    )
    .unwrap();
    let mut service = Service {
        process: WorkerProcess::serve(&env),
        base: format!("http://127.0.0.1:{port}"),
        metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
        http: reqwest::Client::new(),
        token,
    };
    wait_until(Duration::from_secs(60), "the service to answer", || async {
        service
            .http
            .get(format!("{}/health/live", service.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;

    let response = service
        .call(
            reqwest::Method::POST,
            "/connections",
            Some(json!({"platformId": "stripe", "name": "Stripe", "credentials": {"secretKey": "sk_test_1"}})),
        )
        .await;
    assert_eq!(response.status(), 201);
    let connection: Value = response.json().await.unwrap();
    let response = service
        .call(
            reqwest::Method::POST,
            "/sources",
            Some(
                json!({"connectionId": connection["connectionId"], "name": "Stripe",
                        "dataTypes": ["customers", "invoices"]}),
            ),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    let source_id = source["sourceId"].as_str().unwrap().to_owned();
    // The backup's success is notified to a webhook whose first attempt fails.
    let receiver = WebhookReceiver::start().await;
    receiver.fail_next(1);
    let response = service
        .call(
            reqwest::Method::POST,
            "/webhooks",
            Some(json!({"url": receiver.url, "events": ["job.succeeded"]})),
        )
        .await;
    assert_eq!(response.status(), 201);
    let missing = uuid::Uuid::now_v7().to_string();
    for _ in 0..2 {
        let response = service
            .call(reqwest::Method::GET, &format!("/sources/{missing}"), None)
            .await;
        assert_eq!(response.status(), 404);
    }
    let response = service
        .call(reqwest::Method::GET, &format!("/sources/{source_id}"), None)
        .await;
    assert_eq!(response.status(), 200);
    let response = service
        .call(reqwest::Method::GET, "/no/such/route/at/all", None)
        .await;
    assert_eq!(response.status(), 404);

    // The platform's first answer is a 429 (waited out and retried), then the second request is held: the
    // backup is caught running.
    api.rate_limit_next(1, 0);
    api.hold_after(2);
    let response = service
        .call(
            reqwest::Method::POST,
            &format!("/sources/{source_id}/sync"),
            Some(json!({})),
        )
        .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(60),
        "the backup to be held running",
        || async { api.held() >= 1 && service.job(&job_id).await["status"] == "running" },
    )
    .await;
    let running = service.scrape().await;
    assert_eq!(running.value("listbackup_worker_backups_running", &[]), 1.0);
    assert_eq!(running.value("listbackup_worker_slots_free", &[]), 2.0);
    assert_eq!(
        running.value(
            "listbackup_jobs",
            &[("platform", "stripe"), ("status", "running")]
        ),
        1.0
    );

    api.release();
    wait_until(Duration::from_secs(60), "the backup to succeed", || async {
        service.job(&job_id).await["status"] == "succeeded"
    })
    .await;
    wait_until(
        Duration::from_secs(30),
        "the notification delivered",
        || async { receiver.received().iter().any(|r| r.answered == 200) },
    )
    .await;
    wait_until(
        Duration::from_secs(30),
        "an empty webhook queue",
        || async {
            let scrape = service.scrape().await;
            scrape.get("listbackup_webhook_queue_pending", &[]) == Some(0.0)
                && scrape.get(
                    "listbackup_webhook_deliveries_total",
                    &[("event", "job.succeeded"), ("outcome", "delivered")],
                ) == Some(1.0)
        },
    )
    .await;
    let scrape = service.scrape().await;
    for (outcome, attempts) in [("failed", 1.0), ("delivered", 1.0)] {
        assert_eq!(
            scrape.value(
                "listbackup_webhook_attempts_total",
                &[("event", "job.succeeded"), ("outcome", outcome)]
            ),
            attempts
        );
    }
    assert_eq!(
        scrape.value("listbackup_webhook_queue_oldest_seconds", &[]),
        0.0
    );
    assert_eq!(
        scrape.value("listbackup_webhook_queue_overdue_seconds", &[]),
        0.0
    );
    assert_eq!(
        scrape.get(
            "listbackup_webhook_deliveries_total",
            &[("event", "job.succeeded"), ("outcome", "given_up")]
        ),
        None
    );
    receiver.stop().await;
    let http = "http_server_request_duration_seconds_count";
    assert_eq!(
        scrape.value(
            http,
            &[
                ("method", "GET"),
                ("route", "/sources/{id}"),
                ("status", "404")
            ]
        ),
        2.0
    );
    assert_eq!(
        scrape.value(
            http,
            &[
                ("method", "GET"),
                ("route", "/sources/{id}"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            http,
            &[
                ("method", "POST"),
                ("route", "/sources/{id}/sync"),
                ("status", "202")
            ]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            http,
            &[("method", "GET"), ("route", "unmatched"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        scrape.value(
            "http_server_request_duration_seconds_bucket",
            &[
                ("method", "POST"),
                ("route", "/connections"),
                ("status", "201"),
                ("le", "+Inf")
            ]
        ) == 1.0,
        "a latency histogram"
    );
    // Platform calls: the 429, its retry, and the pages of both data types.
    assert_eq!(
        scrape.value(
            "listbackup_platform_requests_total",
            &[("platform", "stripe"), ("status", "429")]
        ),
        1.0
    );
    assert!(
        scrape.value(
            "listbackup_platform_requests_total",
            &[("platform", "stripe"), ("status", "200")]
        ) >= 3.0
    );
    assert_eq!(
        scrape.value(
            "listbackup_platform_retries_total",
            &[("platform", "stripe"), ("reason", "rate_limited")]
        ),
        1.0
    );
    // The job, its duration, and what it stored.
    assert_eq!(
        scrape.value(
            "listbackup_jobs_finished_total",
            &[("platform", "stripe"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value(
            "listbackup_job_duration_seconds_count",
            &[("platform", "stripe"), ("outcome", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        scrape.value("listbackup_backup_records_total", &[("platform", "stripe")]),
        170.0
    );
    assert!(scrape.value("listbackup_backup_bytes_total", &[("platform", "stripe")]) > 0.0);
    // The gauges once it is over.
    assert_eq!(scrape.value("listbackup_worker_backups_running", &[]), 0.0);
    assert_eq!(scrape.value("listbackup_worker_slots_free", &[]), 3.0);
    assert_eq!(
        scrape.value(
            "listbackup_jobs",
            &[("platform", "stripe"), ("status", "running")]
        ),
        0.0
    );
    assert_eq!(scrape.value("listbackup_nats_connected", &[]), 1.0);
    assert_eq!(scrape.value("listbackup_db_up", &[]), 1.0);
    assert_eq!(
        scrape.value("listbackup_db_pool_max_connections", &[("pool", "read")]),
        8.0
    );
    assert!(scrape
        .get("listbackup_db_pool_waiting", &[("pool", "read")])
        .is_some());
    for reader in ["projector", "relay", "source-sagas"] {
        assert!(
            scrape
                .get("listbackup_log_reader_lag_events", &[("reader", reader)])
                .is_some(),
            "{reader}:\n{}",
            scrape.text
        );
        assert!(scrape
            .get("listbackup_log_reader_lag_seconds", &[("reader", reader)])
            .is_some());
    }
    // Nothing names a resource or an account.
    for private in [&source_id, &job_id, &missing, "acme", "sk_test_1"] {
        assert!(!scrape.text.contains(private), "{private} in the metrics");
    }
    // The public API port does not serve them.
    let response = service.call(reqwest::Method::GET, "/metrics", None).await;
    assert_eq!(response.status(), 404);

    // SIGTERM: the service stops cleanly.
    service.process.signal("-TERM").await;
    service.process.exits_cleanly(Duration::from_secs(30)).await;
    assert!(service.process.logged("stopped"));
    let _ = std::fs::remove_dir_all(&storage);
}
