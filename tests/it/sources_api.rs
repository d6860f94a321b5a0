//! The sources API as a REST client sees it (issue 4): create on an active connection, defaults, schedules,
//! filters and cursors, pause/resume, soft delete, the connection-delete rules, and concurrent updates.

use crate::support;

use std::time::Duration;

use serde_json::{json, Value};
use support::platform_api::PlatformApi;
use support::{problem_code, wait_until, TestApp};

async fn connection(app: &TestApp, token: &str) -> String {
    app.create_stripe_connection(token, "Stripe", "sk_test_1")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn create_source(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/sources", token, &body).await;
    assert_eq!(response.status(), 201, "create source {body}");
    response.json().await.unwrap()
}

fn id_of(view: &Value) -> String {
    view["sourceId"].as_str().unwrap().to_owned()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/sources{query}"), token).await;
    assert_eq!(response.status(), 200, "GET /sources{query}");
    response.json().await.unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

#[tokio::test]
async fn a_created_source_has_its_defaults_and_a_next_sync() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let connection_id = connection(&app, &token).await;
    let response = app
        .post(
            "/sources",
            &token,
            &json!({"connectionId": connection_id, "name": " Stripe nightly "}),
        )
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = id_of(&created);
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/sources/{id}"));
    assert_eq!(created["name"], "Stripe nightly");
    assert_eq!(created["connectionId"], connection_id.as_str());
    assert_eq!(created["platformId"], "stripe");
    assert_eq!(created["status"], "active");
    assert_eq!(created["retentionDays"], 90);
    assert_eq!(created["incremental"], true);
    assert_eq!(
        created["schedule"],
        json!({"frequency": "daily", "time": "02:00", "timezone": "UTC"})
    );
    let stripe = listbackup_domain::platform::find("stripe").unwrap();
    let all: Vec<&str> = stripe.data_types.iter().map(|d| d.name).collect();
    assert_eq!(created["dataTypes"], json!(all));
    let next: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(created["nextSyncAt"].clone()).unwrap();
    assert!(next > chrono::Utc::now() && next <= chrono::Utc::now() + chrono::Duration::days(1));
    assert_eq!(next.format("%H:%M").to_string(), "02:00");

    let got: Value = app.get(&location, &token).await.json().await.unwrap();
    assert_eq!(got["sourceId"], id.as_str());
    assert_eq!(got["version"], 1);

    // Everything given explicitly is kept as given.
    let custom = create_source(
        &app,
        &token,
        json!({"connectionId": connection_id, "name": "Weekly", "dataTypes": [all[1], all[0]],
               "schedule": {"frequency": "weekly", "dayOfWeek": "friday", "time": "23:15", "timezone": "Europe/Paris"},
               "retentionDays": 3650, "incremental": false}),
    )
    .await;
    assert_eq!(custom["dataTypes"], json!([all[0], all[1]]));
    assert_eq!(custom["schedule"]["dayOfWeek"], "friday");
    assert_eq!(custom["retentionDays"], 3650);
    assert_eq!(custom["incremental"], false);
    let manual = create_source(
        &app,
        &token,
        json!({"connectionId": connection_id, "name": "Manual", "schedule": {"frequency": "manual"}}),
    )
    .await;
    assert_eq!(manual["nextSyncAt"], Value::Null);
    let cron = create_source(
        &app,
        &token,
        json!({"connectionId": connection_id, "name": "Cron", "schedule": {"cron": "*/15 * * * *"}}),
    )
    .await;
    assert_eq!(
        cron["schedule"],
        json!({"cron": "*/15 * * * *", "timezone": "UTC"})
    );
    assert!(cron["nextSyncAt"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn bad_source_input_gets_field_errors_never_a_500() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({"connectionId": "nope", "name": "x"}), "connectionId"),
        (json!({"connectionId": c, "name": "  "}), "name"),
        (json!({"connectionId": c}), "name"),
        (
            json!({"connectionId": c, "name": "x", "dataTypes": ["tweets"]}),
            "dataTypes",
        ),
        (
            json!({"connectionId": c, "name": "x", "dataTypes": []}),
            "dataTypes",
        ),
        (
            json!({"connectionId": c, "name": "x", "retentionDays": 0}),
            "retentionDays",
        ),
        (
            json!({"connectionId": c, "name": "x", "retentionDays": 3651}),
            "retentionDays",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"frequency": "yearly"}}),
            "schedule.frequency",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"frequency": "daily", "time": "24:00"}}),
            "schedule.time",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"frequency": "daily", "timezone": "Moon/Base"}}),
            "schedule.timezone",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"cron": "not a cron"}}),
            "schedule.cron",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"cron": "99 * * * *"}}),
            "schedule.cron",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"frequency": "daily", "every": 2}}),
            "schedule.every",
        ),
        (
            json!({"connectionId": c, "name": "x", "schedule": {"frequency": "monthly", "dayOfMonth": 400}}),
            "schedule.dayOfMonth",
        ),
        (
            json!({"connectionId": c, "name": "x", "owner": "me"}),
            "owner",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = problem_code(app.post("/sources", &token, &body).await).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_eq!(problem["code"], "VALIDATION_ERROR", "{body}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected {field}, got {problem}"
        );
    }
    for query in [
        "?status=deleted",
        "?platformId=myspace",
        "?limit=0",
        "?cursor=abc",
        "?groupId=x",
        "?sort=name",
    ] {
        let (status, _) = problem_code(app.get(&format!("/sources{query}"), &token).await).await;
        assert_eq!(status, 400, "{query}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_connection_must_exist_be_the_accounts_and_be_live() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let theirs = connection(&app, &app.owner("globex")).await;
    let (status, problem) = problem_code(
        app.post(
            "/sources",
            &token,
            &json!({"connectionId": theirs, "name": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, problem["code"].as_str()), (404, Some("NOT_FOUND")));
    let missing = uuid::Uuid::now_v7().to_string();
    let (status, _) = problem_code(
        app.post(
            "/sources",
            &token,
            &json!({"connectionId": missing, "name": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    let mine = connection(&app, &token).await;
    assert_eq!(
        app.delete(&format!("/connections/{mine}"), &token)
            .await
            .status(),
        204
    );
    let (status, _) = problem_code(
        app.post(
            "/sources",
            &token,
            &json!({"connectionId": mine, "name": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 404);
    // Viewers read, they do not write.
    let viewer = app.token("acme", &[listbackup_api::auth::Role::Viewer]);
    let (status, _) = problem_code(
        app.post(
            "/sources",
            &viewer,
            &json!({"connectionId": mine, "name": "x"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, 403);
    app.stop().await;
}

#[tokio::test]
async fn sources_are_listed_newest_first_with_filters_and_cursors() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let first = connection(&app, &token).await;
    let second = connection(&app, &token).await;
    let mut created = Vec::new();
    for i in 0..5 {
        let c = if i % 2 == 0 { &first } else { &second };
        created.push(id_of(
            &create_source(
                &app,
                &token,
                json!({"connectionId": c, "name": format!("s{i}")}),
            )
            .await,
        ));
    }
    // Another account's sources never show.
    let other = app.owner("globex");
    let theirs = connection(&app, &other).await;
    create_source(
        &app,
        &other,
        json!({"connectionId": theirs, "name": "theirs"}),
    )
    .await;

    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(ids(&list(&app, &token, "").await), newest_first);

    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page = list(&app, &token, &query).await;
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);

    let by_connection = ids(&list(&app, &token, &format!("?connectionId={second}")).await);
    assert_eq!(by_connection, vec![created[3].clone(), created[1].clone()]);
    assert_eq!(
        ids(&list(&app, &token, "?platformId=stripe").await).len(),
        5
    );
    assert!(ids(&list(&app, &token, "?platformId=zendesk").await).is_empty());

    let paused = app
        .put(
            &format!("/sources/{}", created[2]),
            &token,
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(paused.status(), 200);
    assert_eq!(
        ids(&list(&app, &token, "?status=paused").await),
        vec![created[2].clone()]
    );
    assert_eq!(ids(&list(&app, &token, "?status=active").await).len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn updates_pause_and_resume_under_if_match() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let source = create_source(&app, &token, json!({"connectionId": c, "name": "s"})).await;
    let path = format!("/sources/{}", id_of(&source));

    let response = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(
            &json!({"name": "renamed", "schedule": {"frequency": "hourly", "time": "00:30"},
                       "retentionDays": 7, "incremental": false, "status": "paused"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["status"], "paused");
    assert_eq!(updated["retentionDays"], 7);
    assert_eq!(updated["incremental"], false);
    assert_eq!(updated["schedule"]["frequency"], "hourly");
    assert_eq!(
        updated["nextSyncAt"],
        Value::Null,
        "a paused source has no next sync"
    );

    // A stale version is refused, and changes nothing.
    let stale = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "late"}))
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_code(stale).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (412, Some("VERSION_CONFLICT"))
    );

    let resumed: Value = app
        .put(&path, &token, &json!({"status": "active"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["status"], "active");
    assert_eq!(resumed["version"], 4);
    assert!(resumed["nextSyncAt"].is_string());
    // Nothing changed: no event, same version.
    let same: Value = app
        .put(
            &path,
            &token,
            &json!({"status": "active", "name": "renamed"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(same["version"], 4);

    let (status, _) = problem_code(app.put(&path, &token, &json!({})).await).await;
    assert_eq!(status, 400);
    let (status, problem) = problem_code(
        app.put(&path, &token, &json!({"dataTypes": ["tweets"]}))
            .await,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "dataTypes");
    // Another account cannot see or touch it.
    let other = app.owner("globex");
    assert_eq!(app.get(&path, &other).await.status(), 404);
    assert_eq!(
        app.put(&path, &other, &json!({"name": "mine"}))
            .await
            .status(),
        404
    );
    assert_eq!(app.delete(&path, &other).await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn a_deleted_source_is_gone_from_views_but_kept_in_the_history() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let source = create_source(&app, &token, json!({"connectionId": c, "name": "s"})).await;
    let id = id_of(&source);
    let path = format!("/sources/{id}");
    assert_eq!(app.delete(&path, &token).await.status(), 204);
    assert_eq!(app.get(&path, &token).await.status(), 404);
    assert!(ids(&list(&app, &token, "").await).is_empty());
    assert_eq!(app.delete(&path, &token).await.status(), 404);
    assert_eq!(
        app.put(&path, &token, &json!({"name": "back"}))
            .await
            .status(),
        404
    );
    let db = app.db.connect().await;
    let types: Vec<String> = db
        .query(
            "SELECT event_type FROM events WHERE aggregate_type = 'source' AND aggregate_id = $1 ORDER BY sequence",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(types, vec!["SourceCreated", "SourceDeleted"]);
    app.stop().await;
}

#[tokio::test]
async fn a_connection_in_use_is_deleted_only_with_cascade() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let unused = connection(&app, &token).await;
    let a = id_of(&create_source(&app, &token, json!({"connectionId": c, "name": "a"})).await);
    let b = id_of(&create_source(&app, &token, json!({"connectionId": c, "name": "b"})).await);
    app.put(
        &format!("/sources/{b}"),
        &token,
        &json!({"status": "paused"}),
    )
    .await;

    let (status, problem) =
        problem_code(app.delete(&format!("/connections/{c}"), &token).await).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("CONFLICT")));
    assert_eq!(
        app.get(&format!("/connections/{c}"), &token).await.status(),
        200
    );
    assert_eq!(
        app.delete(&format!("/connections/{unused}"), &token)
            .await
            .status(),
        204
    );

    let cascade = app
        .delete(&format!("/connections/{c}?cascade=true"), &token)
        .await;
    assert_eq!(cascade.status(), 204);
    assert_eq!(
        app.get(&format!("/connections/{c}"), &token).await.status(),
        404
    );
    for id in [&a, &b] {
        assert_eq!(
            app.get(&format!("/sources/{id}"), &token).await.status(),
            404
        );
    }
    assert!(ids(&list(&app, &token, "").await).is_empty());
    app.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_puts_with_one_if_match_one_wins() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let source = create_source(&app, &token, json!({"connectionId": c, "name": "s"})).await;
    let path = format!("/sources/{}", id_of(&source));
    let requests = (0..50).map(|i| {
        app.http
            .put(app.url(&path))
            .bearer_auth(&token)
            .header("if-match", "\"1\"")
            .json(&json!({"name": format!("writer {i}")}))
            .send()
    });
    let responses = futures::future::join_all(requests).await;
    let mut statuses: Vec<u16> = responses
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 412).count(),
        49,
        "{statuses:?}"
    );
    let view: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(view["version"], 2);
    assert!(view["name"].as_str().unwrap().starts_with("writer "));
    app.stop().await;
}

#[tokio::test]
async fn testing_a_source_tests_its_connection_and_samples_each_data_type() {
    let platform = PlatformApi::start().await;
    platform.accept("stripe", "sk_test_good");
    platform.seed("stripe", "customers", 7);
    platform.seed("stripe", "invoices", 0);
    let app = TestApp::spawn_with(|c| {
        c.insert(
            "LISTBACKUP_PLATFORM_STRIPE_API_URL".into(),
            platform.api_url("stripe"),
        );
    })
    .await;
    let token = app.owner("acme");
    let c = app
        .create_stripe_connection(&token, "Stripe", "sk_test_good")
        .await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let source = create_source(
        &app,
        &token,
        json!({"connectionId": c, "name": "s", "dataTypes": ["customers", "invoices"]}),
    )
    .await;
    let response = app
        .post(
            &format!("/sources/{}/test", id_of(&source)),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["ok"], true, "{result}");
    let by_name = |name: &str| {
        result["dataTypes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_name("customers")["ok"], true);
    assert_eq!(by_name("customers")["sampleCount"], 7);
    assert_eq!(by_name("invoices")["sampleCount"], 0);
    assert_eq!(
        platform.hits("/stripe/v1/customers"),
        1,
        "one page, no more"
    );
    // Nothing about the source is stored: its version does not move.
    let view: Value = app
        .get(&format!("/sources/{}", id_of(&source)), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["version"], 1);
    let connection: Value = app
        .get(&format!("/connections/{c}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["lastTest"]["ok"], true);

    // A key the platform no longer accepts fails the test, per data type too, without echoing the key.
    platform.revoke("stripe", "sk_test_good");
    let result: Value = app
        .post(
            &format!("/sources/{}/test", id_of(&source)),
            &token,
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(result["ok"], false, "{result}");
    assert_eq!(result["dataTypes"][0]["ok"], false);
    assert!(!result.to_string().contains("sk_test_good"));
    app.stop().await;
}

#[tokio::test]
async fn sources_left_on_a_deleted_connection_are_deleted_by_the_saga() {
    // A source created concurrently with `DELETE /connections/{id}`, after the route's check, would outlive
    // its connection; the saga reacting to ConnectionDeleted catches it. Simulated by recording the
    // deletion straight into the log, as if the route's check had run before the source existed.
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let s = id_of(&create_source(&app, &token, json!({"connectionId": c, "name": "late"})).await);
    let db = app.db.connect().await;
    db.execute(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT aggregate_type, aggregate_id, max(sequence) + 1, 'ConnectionDeleted', '1.0', \
                '{\"ConnectionDeleted\": {}}', \
                '{\"accountId\": \"acme\", \"actor\": \"user:test\", \"requestId\": \"r\", \
                  \"correlationId\": \"r\", \"causationId\": \"r\"}' \
         FROM events WHERE aggregate_type = 'connection' AND aggregate_id = $1 \
         GROUP BY aggregate_type, aggregate_id",
        &[&c],
    )
    .await
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the saga deletes the source",
        || async { app.get(&format!("/sources/{s}"), &token).await.status() == 404 },
    )
    .await;
    let metadata: Value = db
        .query_one(
            "SELECT metadata::jsonb FROM events WHERE aggregate_id = $1 AND event_type = 'SourceDeleted'",
            &[&s],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(metadata["actor"], "system");
    assert_eq!(metadata["correlationId"], "r");
    app.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_source() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let c = connection(&app, &token).await;
    let post = |body: Value| {
        app.http
            .post(app.url("/sources"))
            .bearer_auth(&token)
            .header("idempotency-key", "create-s-1")
            .json(&body)
            .send()
    };
    let body = json!({"connectionId": c, "name": "once"});
    let first = post(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post(body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["sourceId"], first["sourceId"]);
    assert_eq!(ids(&list(&app, &token, "").await).len(), 1);
    let (status, _) = problem_code(
        post(json!({"connectionId": c, "name": "other"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    app.stop().await;
}
