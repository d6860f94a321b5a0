//! OAuth connections end to end against a local provider emulation: start → consent → callback, the errors that
//! create nothing, return URLs, and each platform's specifics.

use crate::support;

use std::collections::BTreeMap;

use listbackup_api::auth::Role;
use serde_json::{json, Value};
use support::oauth_provider::{
    connect, connect_ok, consent, deliver, no_redirects, spawn_app, start, OauthProvider,
    LOCATION_ID, PUBLIC_URL, REALM_ID, RETURN_ORIGIN, STRIPE_ACCOUNT,
};
use support::{problem_code, TestApp};

fn params(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// Every event payload and metadata of the database, as text.
async fn all_events(app: &TestApp) -> Vec<(String, String)> {
    let client = app.db.connect().await;
    client
        .query(
            "SELECT event_type, payload::text || metadata::text FROM events ORDER BY global_position",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db
        .connect()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

async fn nothing_created(app: &TestApp) {
    assert_eq!(count(app, "SELECT count(*) FROM events").await, 0);
    assert_eq!(count(app, "SELECT count(*) FROM credential_vault").await, 0);
    assert_eq!(count(app, "SELECT count(*) FROM oauth_tokens").await, 0);
}

#[tokio::test]
async fn connecting_google_creates_an_active_connection_with_its_external_account() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    let started = start(
        &app,
        &token,
        json!({"platformId": "google", "name": "Team Drive"}),
    )
    .await;
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(started["expiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires_at.signed_duration_since(chrono::Utc::now());
    assert!(
        ttl > chrono::Duration::minutes(9) && ttl <= chrono::Duration::minutes(10),
        "{ttl}"
    );
    let auth_url = started["authorizationUrl"].as_str().unwrap();
    let query = params(auth_url);
    assert!(auth_url.starts_with(&format!("{}/google/authorize?", provider.base_url)));
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["client_id"], "client-google");
    assert_eq!(
        query["redirect_uri"],
        format!("{PUBLIC_URL}/connections/oauth/callback")
    );
    assert_eq!(query["state"], started["state"].as_str().unwrap());
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert!(
        started["state"].as_str().unwrap().len() >= 43,
        "32 random bytes"
    );

    let redirect = consent(auth_url).await;
    // The callback carries no bearer token: the state authenticates it.
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    let id = created["connectionId"].as_str().unwrap();
    assert_eq!(location, format!("/connections/{id}"));
    assert_eq!(created["platformId"], "google");
    assert_eq!(created["name"], "Team Drive");
    assert_eq!(created["authType"], "oauth2");
    assert_eq!(created["status"], "active");
    assert_eq!(
        created["externalAccount"],
        json!({"id": "109876543210987654321", "name": "owner@example.com"})
    );
    let fields: Vec<&str> = created["credentialFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    // The settings (the granted scopes here) are kept in the vault with the tokens.
    assert_eq!(fields, ["accessToken", "grantedScopes", "refreshToken"]);

    // The same through GET and the list; and another account does not see it.
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, created);
    let list: Value = app
        .get("/connections?status=active", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["connections"].as_array().unwrap().len(), 1);
    let other = app
        .get(&format!("/connections/{id}"), &app.owner("intruder"))
        .await;
    assert_eq!(other.status(), 404);

    // No secret anywhere but the vault: not in events, the read model or the state table.
    let events = all_events(&app).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "ConnectionCreated");
    let read_model: String = app
        .db
        .connect()
        .await
        .query_one("SELECT row_to_json(c)::text FROM read_connections c", &[])
        .await
        .unwrap()
        .get(0);
    let states: String = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT coalesce(string_agg(row_to_json(s)::text, ''), '') FROM oauth_states s",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let code = &params(redirect.as_str())["code"];
    let state = started["state"].as_str().unwrap();
    for text in [&events[0].1, &read_model, &states, &created.to_string()] {
        for secret in [
            "at-google",
            "rt-google",
            "id_token",
            "eyJhbGciOi",
            code.as_str(),
            state,
        ] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM credential_vault").await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_state_is_single_use_and_unknown_or_expired_states_create_nothing() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    // Unknown state.
    let response = no_redirects()
        .get(app.url("/connections/oauth/callback?code=x&state=not-a-state"))
        .send()
        .await
        .unwrap();
    let (status, problem) = problem_code(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("state"),
        "{problem}"
    );
    // No state at all.
    let response = no_redirects()
        .get(app.url("/connections/oauth/callback?code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(response).await.0, 400);

    // Expired state.
    let started = start(&app, &token, json!({"platformId": "box"})).await;
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    app.db
        .connect()
        .await
        .execute(
            "UPDATE oauth_states SET expires_at = now() - interval '1 second'",
            &[],
        )
        .await
        .unwrap();
    let (status, _) = problem_code(deliver(&app, &redirect).await).await;
    assert_eq!(status, 400);
    nothing_created(&app).await;

    // A used state cannot be replayed.
    let started = start(&app, &token, json!({"platformId": "box"})).await;
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    assert_eq!(deliver(&app, &redirect).await.status(), 201);
    let (status, problem) = problem_code(deliver(&app, &redirect).await).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(
        count(&app, "SELECT count(*) FROM read_connections").await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_refusal_or_a_failing_token_endpoint_creates_nothing() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    let return_url = format!("{RETURN_ORIGIN}/settings/connections?tab=new");

    // The customer says no: back to the return URL with the platform's error.
    provider.deny_next();
    let started = start(
        &app,
        &token,
        json!({"platformId": "dropbox", "returnUrl": return_url}),
    )
    .await;
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    assert_eq!(params(redirect.as_str())["error"], "access_denied");
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{RETURN_ORIGIN}/settings/connections?")),
        "{location}"
    );
    let back = params(&location);
    assert_eq!(back["tab"], "new");
    assert_eq!(back["error"], "access_denied");
    assert!(!back.contains_key("connectionId"));

    // Without a return URL: a problem.
    provider.deny_next();
    let response = connect(&app, &token, "dropbox", json!({})).await;
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("access_denied"),
        "{problem}"
    );

    // The token endpoint fails: 502, or back to the return URL.
    provider.set_token_endpoint_down(true);
    let response = connect(&app, &token, "dropbox", json!({})).await;
    let (status, problem) = problem_code(response).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (502, Some("PLATFORM_ERROR")),
        "{problem}"
    );
    let response = connect(&app, &token, "dropbox", json!({"returnUrl": return_url})).await;
    assert_eq!(response.status(), 303);
    let back = params(response.headers()["location"].to_str().unwrap());
    assert_eq!(back["error"], "token_exchange_failed");

    // A code with the wrong verifier (here: a code of another request) is refused by the platform.
    provider.set_token_endpoint_down(false);
    let first = start(&app, &token, json!({"platformId": "dropbox"})).await;
    let second = start(&app, &token, json!({"platformId": "dropbox"})).await;
    let first_redirect = consent(first["authorizationUrl"].as_str().unwrap()).await;
    let mut swapped = first_redirect.clone();
    swapped
        .query_pairs_mut()
        .clear()
        .append_pair("code", &params(first_redirect.as_str())["code"])
        .append_pair("state", second["state"].as_str().unwrap());
    let (status, problem) = problem_code(deliver(&app, &swapped).await).await;
    assert_eq!(status, 502, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("invalid_grant"),
        "{problem}"
    );
    nothing_created(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_return_url_receives_the_connection_and_must_be_on_an_allowed_origin() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    for bad in [
        "https://evil.example/steal",
        "https://app.listbackup.test.evil.example/x",
        "http://app.listbackup.test/x",
        "javascript:alert(1)",
        "/relative/path",
        "https://user@app.listbackup.test/x",
    ] {
        let response = app
            .post(
                "/connections/oauth/start",
                &token,
                &json!({"platformId": "box", "returnUrl": bad}),
            )
            .await;
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(problem["errors"][0]["field"], "returnUrl", "{bad}");
    }

    let response = connect(
        &app,
        &token,
        "box",
        json!({"returnUrl": "http://localhost:3000/done"}),
    )
    .await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with("http://localhost:3000/done?connectionId="),
        "{location}"
    );
    let id = &params(&location)["connectionId"];
    let view: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["platformId"], "box");
    assert_eq!(view["status"], "active");
    app.stop().await;
}

#[tokio::test]
async fn start_validates_its_input_and_the_caller() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |values| {
        values.remove("LISTBACKUP_PLATFORM_BOX_CLIENT_ID");
    })
    .await;
    let token = app.owner("acme");
    let cases = [
        (json!({"platformId": "mailchimp"}), "platformId"),
        (json!({"platformId": "nope"}), "platformId"),
        (json!({"platformId": "shopify"}), "shop"),
        (
            json!({"platformId": "shopify", "shop": "evil.example"}),
            "shop",
        ),
        (
            json!({"platformId": "shopify", "shop": "acme.myshopify.com/admin"}),
            "shop",
        ),
        (
            json!({"platformId": "google", "shop": "acme.myshopify.com"}),
            "shop",
        ),
        (json!({"platformId": "zendesk"}), "subdomain"),
        (
            json!({"platformId": "zendesk", "subdomain": "acme.evil.example"}),
            "subdomain",
        ),
        (
            json!({"platformId": "zendesk", "shop": "acme.myshopify.com"}),
            "shop",
        ),
        (
            json!({"platformId": "shopify", "subdomain": "acme"}),
            "subdomain",
        ),
        (json!({"platformId": "google", "name": "   "}), "name"),
        (json!({"platformId": "google", "bogus": 1}), "bogus"),
    ];
    for (body, field) in cases {
        let response = app.post("/connections/oauth/start", &token, &body).await;
        let (status, problem) = problem_code(response).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }
    // A platform without a configured client.
    let response = app
        .post(
            "/connections/oauth/start",
            &token,
            &json!({"platformId": "box"}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 503);
    // Roles and authentication.
    let viewer = app.token("acme", &[Role::Viewer]);
    let response = app
        .post(
            "/connections/oauth/start",
            &viewer,
            &json!({"platformId": "google"}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 403);
    let response = app
        .http
        .post(app.url("/connections/oauth/start"))
        .json(&json!({"platformId": "google"}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem_code(response).await.0, 401);
    app.stop().await;
}

/// Each of the ten OAuth platforms connects, with its own specifics checked at the emulated platform, and the stored
/// tokens then pass the platform's own connection test.
#[tokio::test]
async fn each_platform_connects_with_its_specifics() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    for platform in support::oauth_provider::PLATFORMS {
        let extra = match platform {
            "shopify" => json!({"shop": "Emulated-Store.myshopify.com"}),
            "zendesk" => json!({"subdomain": "Emulated"}),
            _ => json!({}),
        };
        let view = connect_ok(&app, &token, platform, extra).await;
        let authorize = provider
            .authorize_requests()
            .into_iter()
            .rfind(|r| r.platform == platform)
            .unwrap();
        let token_request = provider
            .token_requests()
            .into_iter()
            .rfind(|r| r.platform == platform)
            .unwrap();
        let q = &authorize.params;
        let scope = q.get("scope").cloned().unwrap_or_default();
        let settings = &view["settings"];
        let external = &view["externalAccount"];
        assert_eq!(q["code_challenge_method"], "S256", "{platform}");
        if platform == "quickbooks" {
            assert!(
                token_request.basic_auth && !token_request.secret_in_body,
                "{platform}: HTTP Basic"
            );
        } else {
            assert!(
                !token_request.basic_auth && token_request.secret_in_body,
                "{platform}: body auth"
            );
        }
        match platform {
            "google" => {
                assert_eq!(q["access_type"], "offline");
                assert_eq!(q["prompt"], "consent");
                assert_eq!(q["include_granted_scopes"], "true");
                assert!(scope
                    .split(' ')
                    .any(|s| s == "https://www.googleapis.com/auth/drive.readonly"));
                // A Drive connection never asks to read the user's e-mail (issue 10).
                assert!(!scope.contains("gmail"), "{scope}");
                assert_eq!(external["name"], "owner@example.com");
            }
            "dropbox" => {
                assert_eq!(q["token_access_type"], "offline");
                assert_eq!(external["id"], "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc");
            }
            "shopify" => {
                assert_eq!(
                    authorize.shop.as_deref(),
                    Some("emulated-store.myshopify.com")
                );
                assert!(
                    scope.contains("read_orders,") && !scope.contains(' '),
                    "comma separated: {scope}"
                );
                assert_eq!(settings["shop"], "emulated-store.myshopify.com");
                assert_eq!(
                    external,
                    &json!({"id": "548380009", "name": "Emulated Store"})
                );
                // Offline tokens: no refresh token, no expiry.
                assert_eq!(
                    view["credentialFields"],
                    json!(["accessToken", "grantedScopes", "shop"])
                );
                // What Shopify's token answer says it granted (comma-separated there): what was asked.
                let asked = provider
                    .authorize_requests()
                    .into_iter()
                    .rev()
                    .find(|r| r.platform == "shopify")
                    .unwrap()
                    .params["scope"]
                    .replace(',', " ");
                assert_eq!(settings["grantedScopes"], asked.as_str());
            }
            "quickbooks" => {
                assert_eq!(scope, "com.intuit.quickbooks.accounting");
                assert_eq!(settings["realmId"], REALM_ID);
                assert_eq!(
                    external,
                    &json!({"id": REALM_ID, "name": "Emulated Books Inc"})
                );
            }
            "stripe" => {
                assert_eq!(scope, "read_only");
                assert_eq!(settings["stripeUserId"], STRIPE_ACCOUNT);
                assert_eq!(
                    external,
                    &json!({"id": STRIPE_ACCOUNT, "name": "Emulated Payments"})
                );
            }
            "hubspot" => {
                assert!(scope.split(' ').any(|s| s == "oauth"), "{scope}");
                assert!(
                    scope.split(' ').any(|s| s == "crm.objects.contacts.read"),
                    "{scope}"
                );
                assert_eq!(external, &json!({"id": "62515", "name": "62515"}));
            }
            "keap" => {
                assert_eq!(scope, "full");
                assert_eq!(
                    external,
                    &json!({"id": "owner@keap.example", "name": "Emulated Keap App"})
                );
            }
            "gohighlevel" => {
                assert!(
                    scope.split(' ').any(|s| s == "contacts.readonly"),
                    "{scope}"
                );
                assert_eq!(settings["locationId"], LOCATION_ID);
                assert_eq!(
                    external,
                    &json!({"id": LOCATION_ID, "name": "Emulated Location"})
                );
            }
            "zendesk" => {
                // Each account is its own authorization server: the subdomain, lower-cased, chose it.
                assert_eq!(authorize.shop.as_deref(), Some("emulated"));
                assert_eq!(scope, "read");
                assert_eq!(settings["subdomain"], "emulated");
                assert_eq!(
                    external,
                    &json!({"id": "35436", "name": "owner@zendesk.example"})
                );
            }
            "box" => {
                assert_eq!(scope, "root_readonly");
                assert_eq!(
                    external,
                    &json!({"id": "11446498", "name": "owner@box.example"})
                );
            }
            other => panic!("unexpected platform {other}"),
        }
        // The stored tokens work against the platform (Shopify's go in X-Shopify-Access-Token, QuickBooks'
        // realm and HighLevel's location fill the test endpoint's URL).
        let id = view["connectionId"].as_str().unwrap();
        let tested: Value = app.test_connection(&token, id).await;
        assert_eq!(tested["ok"], true, "{platform}: {tested}");
    }
    // Only the tokens are secret: no event holds one.
    for (event_type, text) in all_events(&app).await {
        assert!(
            !text.contains("at-") && !text.contains("rt-"),
            "{event_type}: {text}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_shopify_callback_must_carry_shopifys_signature() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    let started = start(
        &app,
        &token,
        json!({"platformId": "shopify", "shop": "emulated-store.myshopify.com"}),
    )
    .await;
    // Each shop is its own authorization server.
    let auth_url = started["authorizationUrl"].as_str().unwrap();
    assert!(
        auth_url.starts_with(&format!(
            "{}/shopify/emulated-store.myshopify.com/admin/oauth/authorize?",
            provider.base_url
        )),
        "{auth_url}"
    );
    let redirect = consent(auth_url).await;
    let mut forged = redirect.clone();
    let pairs: Vec<(String, String)> = redirect
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "timestamp" {
                (k, "1800000000".to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, problem) = problem_code(deliver(&app, &forged).await).await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "hmac", "{problem}");
    nothing_created(&app).await;
    // The state was spent on the forgery: the genuine redirect cannot be replayed after it either.
    assert_eq!(problem_code(deliver(&app, &redirect).await).await.0, 400);
    app.stop().await;
}
