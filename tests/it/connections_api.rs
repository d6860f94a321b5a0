//! The connections API as a REST client sees it: DESIGN §4 conventions on the first resource.

use crate::support;

use listbackup_api::auth::Role;
use serde_json::{json, Value};
use support::{problem_code, TestApp};

#[tokio::test]
async fn a_created_connection_is_readable_at_once_and_shows_no_secret() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let response = app
        .post(
            "/connections",
            &token,
            &json!({"platformId": "stripe", "name": "  Stripe live ", "credentials": {"secretKey": "sk_test_abc123"}}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(response.headers().contains_key("x-request-id"));
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "Stripe live");
    assert_eq!(created["platformId"], "stripe");
    assert_eq!(created["status"], "active");
    assert_eq!(created["version"], 1);
    assert_eq!(etag, "\"1\"");
    let id = created["connectionId"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(location, format!("/connections/{id}"));
    assert!(!created.to_string().contains("sk_test_abc123"));

    // Read-your-writes: the very next GET sees it.
    let got = app.get(&location, &token).await;
    assert_eq!(got.status(), 200);
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["connectionId"], id);
    assert_eq!(got["credentialFields"], json!(["secretKey"]));
    app.stop().await;
}

/// A write answers with the resource exactly as the next read shows it (the answer is taken from what the
/// projector has just written, not read back from the table: both must agree to the byte).
#[tokio::test]
async fn a_write_answers_what_the_next_read_shows() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let created = app
        .post(
            "/connections",
            &token,
            &json!({"platformId": "zendesk", "name": "Support",
                    "credentials": {"subdomain": "acme", "email": "ops@acme.test", "apiToken": "tok_1"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let id = created["connectionId"].as_str().unwrap().to_owned();
    let path = format!("/connections/{id}");
    let read: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(created, read, "created, then read");

    let renamed = app.put(&path, &token, &json!({"name": "Support EU"})).await;
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["name"], "Support EU");
    let read: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(renamed, read, "renamed, then read");

    let replaced = app
        .put(
            &path,
            &token,
            &json!({"credentials": {"subdomain": "acme-eu", "email": "ops@acme.test", "apiToken": "tok_2"}}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["settings"]["subdomain"], "acme-eu");
    assert_eq!(replaced["version"], 3);
    let read: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(replaced, read, "replaced, then read");
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_field_errors_never_a_500() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"platformId": "myspace", "name": "x", "credentials": {}}),
            "platformId",
        ),
        (
            json!({"platformId": "google", "name": "x", "credentials": {}}),
            "platformId",
        ),
        (
            json!({"platformId": "stripe", "name": "   ", "credentials": {"secretKey": "sk"}}),
            "name",
        ),
        (
            json!({"platformId": "stripe", "name": "x", "credentials": {}}),
            "credentials.secretKey",
        ),
        (
            json!({"platformId": "stripe", "name": "x", "credentials": {"secretKey": "sk", "pin": "1"}}),
            "credentials.pin",
        ),
        (
            json!({"platformId": "stripe", "name": "x", "credentials": {"secretKey": 42}}),
            "credentials.secretKey",
        ),
        (
            json!({"platformId": "stripe", "name": 7, "credentials": {"secretKey": "sk"}}),
            "name",
        ),
        (
            json!({"platformId": "stripe", "name": "x", "credentials": {"secretKey": "sk"}, "admin": true}),
            "admin",
        ),
        (
            json!({"name": "x", "credentials": {"secretKey": "sk"}}),
            "platformId",
        ),
    ];
    for (body, field) in cases {
        let (status, problem) = problem_code(app.post("/connections", &token, &body).await).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["code"], "VALIDATION_ERROR", "{body}");
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{body}: expected an error on {field}, got {problem}"
        );
        assert!(problem["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    }

    // Malformed JSON and a wrong content type (a body over 64 KiB is a 413: tests/hardening.rs).
    let raw = |body: Vec<u8>, content_type: &'static str| {
        app.http
            .post(app.url("/connections"))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (response, expected) in [
        (
            raw(b"{\"platformId\": ".to_vec(), "application/json")
                .await
                .unwrap(),
            (400, "VALIDATION_ERROR"),
        ),
        (
            raw(
                b"platformId=stripe".to_vec(),
                "application/x-www-form-urlencoded",
            )
            .await
            .unwrap(),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
        ),
    ] {
        let (status, problem) = problem_code(response).await;
        assert_eq!((status, problem["code"].as_str().unwrap()), expected);
    }
    let too_large = raw(
        format!("{{\"name\": \"{}\"}}", "x".repeat(70 * 1024)).into_bytes(),
        "application/json",
    )
    .await
    .unwrap();
    let (status, problem) = problem_code(too_large).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );

    // Unknown query parameters are refused, not ignored.
    let (status, problem) =
        problem_code(app.get("/connections?platform=stripe", &token).await).await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "platform");
    let (status, _) = problem_code(app.get("/connections?limit=0", &token).await).await;
    assert_eq!(status, 400);
    let (status, _) = problem_code(app.get("/connections?limit=abc", &token).await).await;
    assert_eq!(status, 400);
    let (status, _) = problem_code(app.get("/connections?cursor=forged", &token).await).await;
    assert_eq!(status, 400);
    let (status, _) = problem_code(app.get("/connections/not-a-uuid", &token).await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn lists_filter_and_page_newest_first() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = app
            .create_stripe_connection(&token, &format!("stripe {i}"), "sk_test_1")
            .await;
        ids.push(c["connectionId"].as_str().unwrap().to_owned());
    }
    let zendesk = app
        .post(
            "/connections",
            &token,
            &json!({"platformId": "zendesk", "name": "Support", "credentials": {"subdomain": "acme", "email": "ops@acme.test", "apiToken": "zd-token"}}),
        )
        .await;
    assert_eq!(zendesk.status(), 201);
    let zendesk: Value = zendesk.json().await.unwrap();
    assert_eq!(
        zendesk["settings"]["subdomain"], "acme",
        "non-secret fields are shown"
    );
    assert!(zendesk["settings"].get("apiToken").is_none());

    // Pages of 2 over the 5 Stripe connections, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/connections?platformId=stripe&limit=2".to_owned(),
            Some(c) => format!("/connections?platformId=stripe&limit=2&cursor={c}"),
        };
        let page: Value = app.get(&path, &token).await.json().await.unwrap();
        let items = page["connections"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|c| c["connectionId"].as_str().unwrap().to_owned()),
        );
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);

    let all: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(all["connections"].as_array().unwrap().len(), 6);
    assert_eq!(all["connections"][0]["platformId"], "zendesk");
    let active: Value = app
        .get("/connections?status=active&platformId=zendesk", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(active["connections"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let created = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let path = format!("/connections/{}", created["connectionId"].as_str().unwrap());

    let renamed = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Stripe EU"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    assert_eq!(renamed.headers()["etag"], "\"2\"");
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["name"], "Stripe EU");

    // A stale version is refused with 412 and changes nothing.
    let stale = app
        .http
        .put(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"1\"")
        .json(&json!({"name": "Lost update"}))
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_code(stale).await;
    assert_eq!(status, 412);
    assert_eq!(problem["code"], "VERSION_CONFLICT");
    let current: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(current["name"], "Stripe EU");

    // New credentials get a new fingerprint.
    let replaced = app
        .put(
            &path,
            &token,
            &json!({"credentials": {"secretKey": "sk_test_2"}}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_ne!(
        replaced["credentialFingerprint"],
        created["credentialFingerprint"]
    );
    assert_eq!(replaced["version"], 3);

    let (status, _) = problem_code(app.put(&path, &token, &json!({"nickname": "x"})).await).await;
    assert_eq!(status, 400);

    let stale_delete = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"2\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale_delete.status(), 412);
    let deleted = app
        .http
        .delete(app.url(&path))
        .bearer_auth(&token)
        .header("if-match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let (status, _) = problem_code(app.get(&path, &token).await).await;
    assert_eq!(status, 404);
    let list: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(list["connections"].as_array().unwrap().len(), 0);
    let (status, _) = problem_code(app.delete(&path, &token).await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_replay_the_first_response() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let body =
        json!({"platformId": "stripe", "name": "Once", "credentials": {"secretKey": "sk_test_1"}});
    let send = |body: Value| {
        app.http
            .post(app.url("/connections"))
            .bearer_auth(&token)
            .header("idempotency-key", "create-once-1")
            .json(&body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let location = second.headers()["location"].to_str().unwrap().to_owned();
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["connectionId"], second["connectionId"]);
    assert_eq!(
        location,
        format!("/connections/{}", first["connectionId"].as_str().unwrap())
    );

    let mut other = body.clone();
    other["name"] = json!("Twice");
    let (status, _) = problem_code(send(other).await.unwrap()).await;
    assert_eq!(status, 422);

    let list: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(
        list["connections"].as_array().unwrap().len(),
        1,
        "one connection, not two"
    );

    // While a key's first request is still running, a repeat answers 409; a claim abandoned by a process
    // that died (its first request never finished) is taken over after two minutes.
    let db = app.db.connect().await;
    db.execute(
        "UPDATE idempotency_keys SET status = NULL, response = NULL WHERE key = 'create-once-1'",
        &[],
    )
    .await
    .unwrap();
    let (status, problem) = problem_code(send(body.clone()).await.unwrap()).await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("CONFLICT")));
    db.execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '3 minutes' WHERE key = 'create-once-1'",
        &[],
    )
    .await
    .unwrap();
    let retaken = send(body.clone()).await.unwrap();
    assert_eq!(retaken.status(), 201);
    assert!(retaken.headers().get("idempotent-replayed").is_none());
    app.stop().await;
}

#[tokio::test]
async fn accounts_are_isolated_and_roles_enforced() {
    let app = TestApp::spawn().await;
    let owner = app.owner("acme");
    let created = app
        .create_stripe_connection(&owner, "Stripe", "sk_test_1")
        .await;
    let path = format!("/connections/{}", created["connectionId"].as_str().unwrap());

    // Another account cannot tell the connection exists.
    let intruder = app.owner("globex");
    for response in [
        app.get(&path, &intruder).await,
        app.put(&path, &intruder, &json!({"name": "mine"})).await,
        app.delete(&path, &intruder).await,
        app.post(&format!("{path}/test"), &intruder, &json!({}))
            .await,
    ] {
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 404);
        assert_eq!(problem["code"], "NOT_FOUND");
    }
    let theirs: Value = app
        .get("/connections", &intruder)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["connections"].as_array().unwrap().len(), 0);

    // A viewer reads but cannot write; a manager writes.
    let viewer = app.token("acme", &[Role::Viewer]);
    assert_eq!(app.get(&path, &viewer).await.status(), 200);
    let (status, problem) =
        problem_code(app.put(&path, &viewer, &json!({"name": "v"})).await).await;
    assert_eq!(status, 403);
    assert_eq!(problem["code"], "FORBIDDEN");
    let manager = app.token("acme", &[Role::Manager]);
    assert_eq!(
        app.put(&path, &manager, &json!({"name": "m"}))
            .await
            .status(),
        200
    );

    // No token, or a bad one: 401.
    let anonymous = app.http.get(app.url(&path)).send().await.unwrap();
    let (status, problem) = problem_code(anonymous).await;
    assert_eq!(status, 401);
    assert_eq!(problem["code"], "UNAUTHORIZED");
    let (status, _) = problem_code(app.get(&path, "not.a.jwt").await).await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn platforms_catalog_lists_all_twelve_without_client_secrets() {
    let app = TestApp::spawn_with(|c| {
        c.insert(
            "LISTBACKUP_PLATFORM_GOOGLE_CLIENT_SECRET".into(),
            "google-client-secret-xyz".into(),
        );
    })
    .await;
    let token = app.token("acme", &[Role::Viewer]);
    let response = app.get("/platforms", &token).await;
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains("google-client-secret-xyz"));
    let body: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<&str> = body["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["platformId"].as_str().unwrap())
        .collect();
    for id in [
        "keap",
        "stripe",
        "hubspot",
        "shopify",
        "quickbooks",
        "google",
        "dropbox",
        "box",
        "gohighlevel",
        "mailchimp",
        "activecampaign",
        "zendesk",
    ] {
        assert!(ids.contains(&id), "{id} missing");
    }
    assert_eq!(ids.len(), 12);
    // The catalog tells the truth: every platform, and every data type of each, can be backed up.
    for platform in body["platforms"].as_array().unwrap() {
        let id = &platform["platformId"];
        assert_eq!(platform["canBackUp"], true, "{id}");
        let data_types = platform["dataTypes"].as_array().unwrap();
        assert!(!data_types.is_empty(), "{id}");
        for data_type in data_types {
            assert_eq!(data_type["canBackUp"], true, "{id}: {data_type}");
        }
    }
    let zendesk: Value = app
        .get("/platforms/zendesk", &token)
        .await
        .json()
        .await
        .unwrap();
    // An API token, or OAuth against the account's own subdomain (which the start request names).
    assert_eq!(zendesk["authTypes"], json!(["oauth2", "api_key"]));
    assert_eq!(zendesk["oauthAccountField"], "subdomain");
    assert_eq!(zendesk["oauthScopes"], json!(["read"]));
    assert!(zendesk["credentialFields"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["secret"] == true));
    assert!(!zendesk["dataTypes"].as_array().unwrap().is_empty());
    let google: Value = app
        .get("/platforms/google", &token)
        .await
        .json()
        .await
        .unwrap();
    assert!(!google["oauthScopes"].as_array().unwrap().is_empty());
    let (status, _) = problem_code(app.get("/platforms/myspace", &token).await).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn operations_endpoints_need_no_token() {
    let app = TestApp::spawn().await;
    let live = app.http.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.http.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["postgres"], "up");
    assert_eq!(ready["nats"], "up");

    let spec: Value = app.openapi().await;
    assert!(spec["paths"]["/connections"]["post"].is_object());
    assert!(spec["paths"]["/connections/{id}"]["put"].is_object());
    assert!(spec["paths"]["/platforms"]["get"].is_object());
    assert!(spec["components"]["schemas"]["ConnectionView"].is_object());

    let docs = app.http.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("swagger"));
    // The UI's assets are served from the binary.
    let bundle = app
        .http
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(bundle.status(), 200);

    // An incoming request id is echoed; an unknown route is a problem, not an HTML page.
    let echoed = app
        .http
        .get(app.url("/health/live"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc-123");
    let (status, problem) =
        problem_code(app.http.get(app.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "NOT_FOUND");
    app.stop().await;
}

#[tokio::test]
async fn readiness_fails_while_nats_is_unreachable() {
    // A port nothing listens on: the service still starts and serves, but is not ready.
    let app = TestApp::spawn_with(|c| {
        c.insert("NATS_URL".into(), "nats://127.0.0.1:1".into());
    })
    .await;
    let (status, problem) =
        problem_code(app.http.get(app.url("/health/ready")).send().await.unwrap()).await;
    assert_eq!(status, 503);
    assert!(problem["detail"].as_str().unwrap().contains("nats"));
    let token = app.owner("acme");
    app.create_stripe_connection(&token, "still works", "sk_test_1")
        .await;
    app.stop().await;
}

/// A path the API has, asked with a method it does not answer there: 405 with `Allow` (RFC 9110 §15.5.6),
/// not 404 (issue 11). A path it does not have stays a 404.
#[tokio::test]
async fn a_wrong_method_is_a_405_naming_the_allowed_ones() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let connection = app
        .create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    let id = connection["connectionId"].as_str().unwrap();
    for (method, path, allowed) in [
        (
            reqwest::Method::DELETE,
            "/platforms".to_owned(),
            "GET, HEAD",
        ),
        (
            reqwest::Method::PATCH,
            format!("/connections/{id}"),
            "GET, HEAD, PUT, DELETE",
        ),
        (reqwest::Method::PUT, "/jobs".to_owned(), "GET, HEAD, POST"),
    ] {
        let response = app
            .http
            .request(method.clone(), app.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    let response = app.get("/no-such-thing", &token).await;
    assert_eq!(response.status(), 404);
    app.stop().await;
}

/// The field names of a 400's errors.
async fn refused_fields(response: reqwest::Response, what: &str) -> Vec<String> {
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 400, "{what}: {problem}");
    assert_eq!(problem["code"], "VALIDATION_ERROR", "{what}: {problem}");
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// A credential that names a host (ActiveCampaign's API URL, Zendesk's subdomain, Shopify's shop,
/// Mailchimp's data centre) is held to the shape the platform documents, at create and at every credential
/// update: the fresh-clone audit's inputs (the demo's loopback emulation, a metadata service, a database
/// port) and every other way out of the platform's domain are a 400 naming the field, never a connection
/// the service would then connect to.
#[tokio::test]
async fn a_credential_that_names_a_host_is_held_to_the_documented_host() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let activecampaign = |api_url: &str| {
        json!({"platformId": "activecampaign", "name": "AC",
               "credentials": {"apiUrl": api_url, "apiKey": "demo"}})
    };
    let refused_urls = [
        "http://127.0.0.1:41511/activecampaign",
        "https://127.0.0.1:41511/activecampaign",
        "http://169.254.169.254/latest",
        "https://169.254.169.254/latest",
        "http://127.0.0.1:5432",
        "http://127.0.0.1:8081",
        "https://localhost",
        "http://acme.api-us1.com",
        "https://admin:pw@acme.api-us1.com",
        "https://acme.api-us1.com@127.0.0.1",
        "https://acme.api-us1.com:8443",
        "https://acme.api-us1.com/api/3",
        "https://acme.api-us1.com.evil.example",
        "https://acme.example.com",
        "https://acme.api-eu.com",
    ];
    for api_url in refused_urls {
        let fields = refused_fields(
            app.post("/connections", &token, &activecampaign(api_url))
                .await,
            api_url,
        )
        .await;
        assert_eq!(fields, ["credentials.apiUrl"], "{api_url}");
    }
    let others = [
        (
            json!({"platformId": "zendesk", "name": "Z",
                   "credentials": {"subdomain": "127.0.0.1", "email": "a@b.co", "apiToken": "t"}}),
            "credentials.subdomain",
        ),
        (
            json!({"platformId": "shopify", "name": "S",
                   "credentials": {"shop": "127.0.0.1:8081", "adminApiAccessToken": "shpat_x"}}),
            "credentials.shop",
        ),
        (
            json!({"platformId": "mailchimp", "name": "M",
                   "credentials": {"apiKey": "0123abcd-127.0.0.1:5432"}}),
            "credentials.apiKey",
        ),
    ];
    for (body, field) in others {
        let fields = refused_fields(app.post("/connections", &token, &body).await, field).await;
        assert_eq!(fields, [field], "{body}");
    }
    let listed: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(listed["connections"], json!([]), "nothing was created");

    // The documented form is accepted, and kept as its origin.
    let created = app
        .post(
            "/connections",
            &token,
            &activecampaign("https://Acme.api-us1.com/"),
        )
        .await;
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        created["settings"]["apiUrl"], "https://acme.api-us1.com",
        "{created}"
    );
    let path = format!("/connections/{}", created["connectionId"].as_str().unwrap());

    // Replacing the credentials is held to the same rule, and a refused update changes nothing.
    for api_url in refused_urls {
        let body = json!({"credentials": {"apiUrl": api_url, "apiKey": "demo"}});
        let fields = refused_fields(app.put(&path, &token, &body).await, api_url).await;
        assert_eq!(fields, ["credentials.apiUrl"], "{api_url}");
    }
    let current: Value = app.get(&path, &token).await.json().await.unwrap();
    assert_eq!(current["version"], created["version"], "{current}");
    assert_eq!(
        current["credentialFingerprint"],
        created["credentialFingerprint"]
    );
    let replaced = app
        .put(
            &path,
            &token,
            &json!({"credentials": {"apiUrl": "https://acme.activehosted.com", "apiKey": "k2"}}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    // An account outside the United States: its Developer tab shows another region's API URL.
    let replaced = app
        .put(
            &path,
            &token,
            &json!({"credentials": {"apiUrl": "https://Acme.api-eu1.com", "apiKey": "k3"}}),
        )
        .await;
    assert_eq!(replaced.status(), 200);
    let replaced: Value = replaced.json().await.unwrap();
    assert_eq!(replaced["settings"]["apiUrl"], "https://acme.api-eu1.com");
    app.stop().await;
}
