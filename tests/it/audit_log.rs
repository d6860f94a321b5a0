//! The event log over REST (issue 12, items 1 and 2): `GET /events` with its filters and keyset pages,
//! the history routes, NDJSON streams without a page limit, and signed exports checked offline by
//! `listbackup events verify-export`.

use crate::support;

use std::collections::BTreeMap;
use std::process::Output;

use listbackup_api::auth::Role;
use listbackup_projections::audit::export::AuditSigner;
use listbackup_projections::audit::LoggedEvent;
use serde_json::{json, Value};
use support::{problem_code, TestApp};

async fn connection(app: &TestApp, token: &str, name: &str) -> String {
    app.create_stripe_connection(token, name, "sk_test_1").await["connectionId"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn rename(app: &TestApp, token: &str, id: &str, name: &str, request_id: &str) {
    let response = app
        .http
        .put(app.url(&format!("/connections/{id}")))
        .bearer_auth(token)
        .header("X-Request-Id", request_id)
        .json(&json!({"name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn page(app: &TestApp, token: &str, query: &str) -> Value {
    let response = app.get(&format!("/events{query}"), token).await;
    assert_eq!(response.status(), 200, "GET /events{query}");
    response.json().await.unwrap()
}

fn events(page: &Value) -> Vec<LoggedEvent> {
    serde_json::from_value(page["events"].clone()).unwrap()
}

async fn ndjson(app: &TestApp, token: &str, path: &str) -> Vec<LoggedEvent> {
    let response = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .header("Accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    let body = response.text().await.unwrap();
    body.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn the_log_shows_one_accounts_events_in_log_order_filtered_and_paged() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let c = connection(&app, &owner, "Stripe").await;
    rename(&app, &owner, &c, "Stripe live", "rename-request-1").await;
    let source = app
        .post(
            "/sources",
            &owner,
            &json!({"connectionId": c, "name": "nightly"}),
        )
        .await;
    assert_eq!(source.status(), 201);
    let s = source.json::<Value>().await.unwrap()["sourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let foreign = connection(&app, &app.owner("other"), "Theirs").await;

    let all = events(&page(&app, &auditor, "").await);
    let types: Vec<&str> = all.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["ConnectionCreated", "ConnectionRenamed", "SourceCreated"]
    );
    assert!(all.iter().all(|e| e.metadata["accountId"] == "acme"));
    assert!(all.iter().all(|e| e.aggregate_id != foreign));
    for pair in all.windows(2) {
        assert!(
            (pair[0].transaction(), pair[0].position) < (pair[1].transaction(), pair[1].position)
        );
    }
    // Every event carries its chain hash, and it verifies from the fields shown.
    for event in &all {
        assert_eq!(event.computed_hash().unwrap(), event.stated_hash().unwrap());
    }
    assert_eq!(
        all[1].previous_hash, all[0].hash,
        "the rename follows the creation"
    );
    assert_eq!(all[1].sequence, 2);
    assert_eq!(all[1].payload["ConnectionRenamed"]["name"], "Stripe live");
    assert_eq!(all[1].metadata["actor"], "user:test-user");
    // The owner sees the log too.
    assert_eq!(events(&page(&app, &owner, "").await).len(), 3);

    // Filters.
    let count = |query: &'static str| {
        let (app, auditor) = (&app, &auditor);
        async move { events(&page(app, auditor, query).await).len() }
    };
    assert_eq!(count("?aggregateType=source").await, 1);
    assert_eq!(
        events(&page(&app, &auditor, &format!("?aggregateId={c}")).await).len(),
        2
    );
    assert_eq!(count("?eventType=ConnectionRenamed").await, 1);
    assert_eq!(count("?actor=user:test-user").await, 3);
    assert_eq!(count("?actor=scheduler").await, 0);
    let correlated = events(&page(&app, &auditor, "?correlationId=rename-request-1").await);
    assert_eq!(correlated.len(), 1);
    assert_eq!(correlated[0].event_type, "ConnectionRenamed");
    assert_eq!(count("?from=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count("?to=2000-01-01T00:00:00Z").await, 0);
    let renamed_at = &all[1].recorded_at;
    let from_rename = events(
        &page(
            &app,
            &auditor,
            &format!("?from={}", renamed_at.replace('+', "%2B")),
        )
        .await,
    );
    assert_eq!(from_rename.len(), 2, "from is inclusive");
    let before_rename = events(&page(&app, &auditor, &format!("?to={renamed_at}")).await);
    assert_eq!(before_rename.len(), 1, "to is exclusive");

    // Keyset pages: one event each, following nextCursor through `after`.
    let mut seen = Vec::new();
    let mut query = "?limit=1".to_owned();
    loop {
        let p = page(&app, &auditor, &query).await;
        seen.extend(events(&p).into_iter().map(|e| e.position));
        match p["nextCursor"].as_str() {
            Some(cursor) => query = format!("?limit=1&after={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, all.iter().map(|e| e.position).collect::<Vec<_>>());

    // Bad input is a 400 naming the parameter; the log is for auditors and owners only.
    for (query, field) in [
        ("?bogus=1", "bogus"),
        ("?aggregateType=invoice", "aggregateType"),
        ("?from=yesterday", "from"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?after=abc", "after"),
        ("?after=999999999", "after"),
    ] {
        let (status, problem) =
            problem_code(app.get(&format!("/events{query}"), &auditor).await).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    for role in [Role::Viewer, Role::Manager] {
        let token = app.token("acme", &[role]);
        assert_eq!(app.get("/events", &token).await.status(), 403);
        assert_eq!(
            app.get(&format!("/connections/{c}/history"), &token)
                .await
                .status(),
            403
        );
    }
    assert_eq!(
        app.http
            .get(app.url("/events"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // History: one stream; another account's resource is the same 404 as a missing one.
    let history = events(&{
        let response = app
            .get(&format!("/connections/{c}/history"), &auditor)
            .await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    });
    assert_eq!(
        history.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2]
    );
    let source_history = app.get(&format!("/sources/{s}/history"), &auditor).await;
    assert_eq!(events(&source_history.json().await.unwrap()).len(), 1);
    for path in [
        format!("/connections/{foreign}/history"),
        format!("/connections/{}/history", uuid::Uuid::now_v7()),
        "/connections/not-an-id/history".to_owned(),
        format!("/jobs/{c}/history"),
    ] {
        let (status, _) = problem_code(app.get(&path, &auditor).await).await;
        assert_eq!(status, 404, "{path}");
    }
    app.stop().await;
}

#[tokio::test]
async fn ndjson_streams_the_whole_range_without_a_page_limit() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let c = connection(&app, &owner, "Stripe").await;
    for n in 0..210 {
        rename(&app, &owner, &c, &format!("Stripe {n}"), &format!("r-{n}")).await;
    }
    let page = page(&app, &auditor, "?limit=200").await;
    assert_eq!(events(&page).len(), 200);
    assert!(page["nextCursor"].is_string());

    let streamed = ndjson(&app, &auditor, "/events").await;
    assert_eq!(streamed.len(), 211, "every event, past the page maximum");
    assert_eq!(
        streamed.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=211).collect::<Vec<i64>>()
    );
    let history = ndjson(
        &app,
        &auditor,
        &format!("/connections/{c}/history?after={}", streamed[9].position),
    )
    .await;
    assert_eq!(history.len(), 201);
    assert_eq!(history[0].sequence, 11);
    let capped = ndjson(&app, &auditor, "/events?limit=5").await;
    assert_eq!(capped.len(), 5);
    app.stop().await;
}

fn cli(app: &TestApp, args: &[&str], signing_key: Option<&str>) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
    command
        .args(args)
        .env("DATABASE_URL", &app.db.url)
        .env("RUST_LOG", "warn")
        .env_remove("LISTBACKUP_AUDIT_SIGNING_KEY");
    if let Some(key) = signing_key {
        command.env("LISTBACKUP_AUDIT_SIGNING_KEY", key);
    }
    command.output().unwrap()
}

struct Checked {
    ok: bool,
    printed: String,
}

fn verify_file(app: &TestApp, lines: &[String], public_key: &str) -> Checked {
    let path = std::env::temp_dir().join(format!("lb-export-{}.ndjson", uuid::Uuid::new_v4()));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let output = cli(
        app,
        &[
            "events",
            "verify-export",
            path.to_str().unwrap(),
            "--public-key",
            public_key,
        ],
        None,
    );
    let _ = std::fs::remove_file(&path);
    Checked {
        ok: output.status.success(),
        printed: String::from_utf8_lossy(&output.stdout).into_owned(),
    }
}

fn fails_at(checked: &Checked, line: usize, why: &str) {
    assert!(!checked.ok, "should not verify: {}", checked.printed);
    assert!(
        checked.printed.contains(&format!("line {line}: ")) && checked.printed.contains(why),
        "expected line {line} ({why}): {}",
        checked.printed
    );
}

#[tokio::test]
async fn signed_exports_verify_offline_and_name_the_first_line_that_does_not() {
    let signer = AuditSigner::generate();
    let key = signer.secret_base64();
    let public = signer.public_key_base64();
    let app = TestApp::spawn_with(|values: &mut BTreeMap<String, String>| {
        values.insert("LISTBACKUP_AUDIT_SIGNING_KEY".into(), key.clone());
    })
    .await;
    let owner = app.owner("acme");
    let auditor = app.token("acme", &[Role::Auditor]);
    let first = connection(&app, &owner, "First").await;
    rename(&app, &owner, &first, "First, renamed", "r1").await;
    rename(&app, &owner, &first, "First, renamed again", "r2").await;
    let second = connection(&app, &owner, "Second").await;
    connection(&app, &app.owner("other"), "Theirs").await;

    // The public key is served without authentication.
    let served: Value = app
        .http
        .get(app.url("/.well-known/listbackup-audit-key"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served, json!({"algorithm": "Ed25519", "publicKey": public}));

    // The download, checked offline.
    let response = app.get("/events/export", &auditor).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    let body = response.text().await.unwrap();
    let lines: Vec<String> = body.lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5, "four events of acme, then the summary");
    let summary: Value = serde_json::from_str(&lines[4]).unwrap();
    assert_eq!(summary["summary"]["count"], 4);
    assert_eq!(summary["summary"]["accountId"], "acme");
    assert_eq!(summary["summary"]["from"], Value::Null);
    let verified = verify_file(&app, &lines, &public);
    assert!(verified.ok, "{}", verified.printed);
    assert!(
        verified
            .printed
            .contains("verified: 4 event(s) of account acme"),
        "{}",
        verified.printed
    );

    // The CLI export is the same log, signed the same way.
    let exported = cli(&app, &["events", "export", "--account", "acme"], Some(&key));
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let cli_lines: Vec<String> = String::from_utf8(exported.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(cli_lines[..4], lines[..4]);
    assert!(verify_file(&app, &cli_lines, &public).ok);
    // A range: events recorded from the second rename on (a stream may start mid-way).
    let third: LoggedEvent = serde_json::from_str(&lines[2]).unwrap();
    let ranged = cli(
        &app,
        &[
            "events",
            "export",
            "--account",
            "acme",
            "--from",
            &third.recorded_at,
        ],
        Some(&key),
    );
    let ranged: Vec<String> = String::from_utf8(ranged.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ranged.len(), 3);
    assert!(verify_file(&app, &ranged, &public).ok);
    assert_eq!(
        serde_json::from_str::<Value>(&ranged[2]).unwrap()["summary"]["from"],
        third.recorded_at
    );

    // Tampering, line by line. Lines 1-3: `first` (sequences 1-3); line 4: `second`; line 5: the summary.
    let edit = |index: usize, change: &dyn Fn(&mut LoggedEvent)| {
        let mut copy = lines.clone();
        let mut event: LoggedEvent = serde_json::from_str(&copy[index]).unwrap();
        change(&mut event);
        copy[index] = serde_json::to_string(&event).unwrap();
        copy
    };
    let modified = edit(1, &|e| {
        e.payload = json!({"ConnectionRenamed": {"name": "Forged"}})
    });
    fails_at(&verify_file(&app, &modified, &public), 2, "was modified");
    let mut removed = lines.clone();
    removed.remove(1);
    fails_at(
        &verify_file(&app, &removed, &public),
        2,
        "does not follow its stream's event 1 on line 1",
    );
    let mut swapped = lines.clone();
    swapped.swap(1, 2);
    fails_at(
        &verify_file(&app, &swapped, &public),
        2,
        "does not follow its stream's event 1 on line 1",
    );
    // Two events of different streams swapped: each follows its own stream, but not the log's order.
    let mut crossed = lines.clone();
    crossed.swap(2, 3);
    fails_at(&verify_file(&app, &crossed, &public), 4, "out of log order");
    let cut = lines[..4].to_vec();
    fails_at(
        &verify_file(&app, &cut, &public),
        5,
        "without its signed summary",
    );
    let mut recounted = lines.clone();
    recounted[4] = recounted[4].replace("\"count\":4", "\"count\":3");
    fails_at(
        &verify_file(&app, &recounted, &public),
        5,
        "signature does not verify",
    );
    fails_at(
        &verify_file(&app, &lines, &AuditSigner::generate().public_key_base64()),
        5,
        "signature does not verify",
    );
    // A careful forger recomputes the hash of the event changed (the last of its stream): every line checks
    // out alone, but the signed export hash does not.
    let forged = edit(3, &|e| {
        e.payload = json!({"ConnectionCreated": {"name": "Forged"}});
        e.hash = hex::encode(e.computed_hash().unwrap());
    });
    fails_at(
        &verify_file(&app, &forged, &public),
        5,
        "export hash does not match",
    );
    let _ = second;
    app.stop().await;
}

#[tokio::test]
async fn without_a_signing_key_exports_are_refused_and_nothing_is_signed() {
    let app = TestApp::spawn().await;
    let auditor = app.token("acme", &[Role::Auditor]);
    let (status, problem) = problem_code(app.get("/events/export", &auditor).await).await;
    assert_eq!(status, 503);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("LISTBACKUP_AUDIT_SIGNING_KEY"));
    let key = app
        .http
        .get(app.url("/.well-known/listbackup-audit-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), 404);
    let exported = cli(&app, &["events", "export", "--account", "acme"], None);
    assert!(!exported.status.success());
    assert!(exported.stdout.is_empty(), "nothing is written unsigned");
    assert!(String::from_utf8_lossy(&exported.stderr)
        .contains("LISTBACKUP_AUDIT_SIGNING_KEY is not set"));
    // A malformed key stops the service from starting rather than being ignored.
    let mut values = BTreeMap::from([
        ("DATABASE_URL".to_owned(), app.db.url.clone()),
        (
            "LISTBACKUP_AUDIT_SIGNING_KEY".to_owned(),
            "c2hvcnQ=".to_owned(),
        ),
    ]);
    let err = listbackup::Config::from_values(&values)
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("LISTBACKUP_AUDIT_SIGNING_KEY"),
        "{err}"
    );
    values.insert(
        "LISTBACKUP_AUDIT_SIGNING_KEY".to_owned(),
        AuditSigner::generate().secret_base64(),
    );
    assert!(listbackup::Config::from_values(&values).is_ok());
    app.stop().await;
}

/// Every `$ref` in the document, to check each one resolves.
fn refs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => refs(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| refs(i, found)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_the_audit_routes() {
    let app = TestApp::spawn().await;
    let spec: Value = app.openapi().await;
    for path in [
        "/events",
        "/events/export",
        "/audit/verify",
        "/.well-known/listbackup-audit-key",
        "/connections/{id}/history",
        "/sources/{id}/history",
        "/source-groups/{id}/history",
        "/jobs/{id}/history",
    ] {
        assert!(
            spec["paths"][path]["get"].is_object(),
            "{path} is documented"
        );
    }
    for path in [
        "/connections/{id}",
        "/sources/{id}",
        "/source-groups/{id}",
        "/jobs/{id}",
    ] {
        let params = spec["paths"][path]["get"]["parameters"].to_string();
        assert!(
            params.contains("\"asOf\""),
            "{path} documents asOf: {params}"
        );
    }
    let schemas = &spec["components"]["schemas"];
    for schema in [
        "LoggedEvent",
        "EventList",
        "ChainReport",
        "ChainFinding",
        "AuditKey",
    ] {
        assert!(schemas[schema].is_object(), "{schema} is a component");
    }
    let mut found = Vec::new();
    refs(&spec, &mut found);
    // Every reference (to a schema, or to a shared response such as the rate limit's 429) resolves.
    for target in found {
        let pointer = target.trim_start_matches('#');
        assert!(
            spec.pointer(pointer).is_some_and(Value::is_object),
            "{target} resolves"
        );
    }
    app.stop().await;
}

/// A NUL in any text parameter or body string is a 400 naming the field, on a page and on a stream alike:
/// PostgreSQL text cannot hold one, and before it reached the database as a 500 (a stream was cut off).
#[tokio::test]
async fn a_nul_in_a_filter_or_a_body_is_a_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let auditor = app.token("acme", &[Role::Auditor]);
    let owner = app.token("acme", &[Role::Owner]);
    for name in ["eventType", "aggregateId", "actor", "correlationId"] {
        for accept in ["application/json", "application/x-ndjson"] {
            let response = app
                .http
                .get(app.url(&format!("/events?{name}=a%00b")))
                .bearer_auth(&auditor)
                .header("Accept", accept)
                .send()
                .await
                .unwrap();
            let (status, problem) = problem_code(response).await;
            assert_eq!(status, 400, "{name} ({accept}): {problem}");
            assert_eq!(problem["code"], "VALIDATION_ERROR", "{problem}");
            assert_eq!(problem["errors"][0]["field"], name, "{problem}");
        }
    }
    let response = app
        .post(
            "/connections",
            &owner,
            &json!({"platformId": "stripe", "name": "ok",
                    "credentials": {"secretKey": "sk_test_a\u{0}b"}}),
        )
        .await;
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        problem["errors"][0]["field"], "credentials.secretKey",
        "{problem}"
    );
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("NUL character"),
        "{problem}"
    );
}
