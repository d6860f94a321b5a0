//! The OAuth token lifecycle: refresh before use, the background refresher, one refresh at a time per connection
//! across processes (with rotating refresh tokens), `invalid_grant` → expired, and reconnect.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use listbackup_commands::oauth::{OauthService, RefreshOutcome, USE_WINDOW};
use listbackup_commands::vault::{CredentialVault, MasterKeys};
use listbackup_commands::{CommandBus, EventMetadata};
use serde_json::{json, Value};
use support::oauth_provider::{
    connect_ok, consent, deliver, spawn_app, start, OauthProvider, RETURN_ORIGIN,
};
use support::{problem_code, wait_until, TestApp};

async fn payloads(app: &TestApp, connection_id: &str) -> String {
    app.db
        .connect()
        .await
        .query(
            "SELECT payload::text FROM events WHERE aggregate_id = $1 ORDER BY sequence",
            &[&connection_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A refresher of its own (own pools, own event-store handle), as another process would have.
async fn another_process(app: &TestApp) -> OauthService {
    let config = &app.config;
    let keys =
        Arc::new(MasterKeys::from_base64(config.master_key.as_deref().unwrap(), &[]).unwrap());
    let db = listbackup::service::read_pool(config).unwrap();
    let event_store = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&config.database_url)
        .await
        .unwrap();
    OauthService::new(
        CommandBus::new(event_store, (), Arc::new(tokio::sync::Notify::new())),
        CredentialVault::new(db.clone(), keys),
        db,
        config.oauth.clone(),
        config.platforms.clone(),
    )
}

fn system(account: &str) -> EventMetadata {
    EventMetadata::for_request(account, "system".into(), &uuid::Uuid::now_v7().to_string())
}

async fn vault_tokens(
    app: &TestApp,
    account: &str,
    connection_id: &str,
) -> (String, Option<String>) {
    let keys =
        Arc::new(MasterKeys::from_base64(app.config.master_key.as_deref().unwrap(), &[]).unwrap());
    let vault = CredentialVault::new(listbackup::service::read_pool(&app.config).unwrap(), keys);
    let secret = vault.load(account, connection_id).await.unwrap().unwrap();
    (
        secret.get("accessToken").unwrap().to_owned(),
        secret.get("refreshToken").map(str::to_owned),
    )
}

#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_before_use_and_a_rotated_refresh_token_replaces_the_old(
) {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    // Valid for 4 minutes: inside the 5-minute window.
    provider.set_lifetime(240);
    let view = connect_ok(&app, &token, "keap", json!({})).await;
    let id = view["connectionId"].as_str().unwrap();
    let (old_access, old_refresh) = vault_tokens(&app, "acme", id).await;
    provider.set_lifetime(3600);

    let tested: Value = app.test_connection(&token, id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(provider.refreshes("keap"), 1);
    let (new_access, new_refresh) = vault_tokens(&app, "acme", id).await;
    assert_ne!(new_access, old_access);
    assert!(provider.is_valid_access_token(&new_access));
    // Keap rotates: the new refresh token replaced the old one, which nothing keeps.
    assert_ne!(new_refresh, old_refresh);
    assert!(new_refresh.is_some());
    assert_eq!(
        app.event_types(id).await,
        ["ConnectionCreated", "TokenRefreshed", "ConnectionTested"]
    );
    let payloads = payloads(&app, id).await;
    for secret in [
        &old_access,
        &new_access,
        old_refresh.as_ref().unwrap(),
        new_refresh.as_ref().unwrap(),
    ] {
        assert!(!payloads.contains(secret.as_str()));
    }
    assert!(payloads.contains("expiresAt"), "{payloads}");
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(got["credentialFingerprint"], view["credentialFingerprint"]);

    // Fresh now: using it again refreshes nothing.
    let tested: Value = app.test_connection(&token, id).await;
    assert_eq!(tested["ok"], true);
    assert_eq!(provider.refreshes("keap"), 1);
    app.stop().await;
}

#[tokio::test]
async fn two_refreshers_at_once_make_a_single_refresh() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    provider.set_lifetime(60);
    let view = connect_ok(&app, &token, "gohighlevel", json!({})).await;
    let id = view["connectionId"].as_str().unwrap();
    let (_, old_refresh) = vault_tokens(&app, "acme", id).await;
    provider.set_lifetime(3600);
    // The platform takes its time: both refreshers are in flight together.
    provider.set_refresh_delay(Duration::from_millis(400));

    let first = another_process(&app).await;
    let second = another_process(&app).await;
    let (one, two) = (system("acme"), system("acme"));
    let typed_id = id.parse().unwrap();
    let (a, b) = tokio::join!(
        first.ensure_fresh(&one, &typed_id, USE_WINDOW),
        second.ensure_fresh(&two, &typed_id, USE_WINDOW),
    );
    let mut outcomes = [a.unwrap(), b.unwrap()];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes[0], RefreshOutcome::Fresh, "{outcomes:?}");
    assert!(
        matches!(outcomes[1], RefreshOutcome::Refreshed { .. }),
        "{outcomes:?}"
    );
    // HighLevel rotates refresh tokens: a second use of the old one would have been refused.
    assert_eq!(provider.refreshes("gohighlevel"), 1);
    assert_eq!(provider.refused_refreshes("gohighlevel"), 0);
    let (access, refresh) = vault_tokens(&app, "acme", id).await;
    assert!(provider.is_valid_access_token(&access));
    assert_ne!(refresh, old_refresh);
    let events = app.event_types(id).await;
    assert_eq!(events, ["ConnectionCreated", "TokenRefreshed"]);
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "active");
    app.stop().await;
}

#[tokio::test]
async fn the_background_refresher_renews_tokens_expiring_within_15_minutes() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |values| {
        values.insert(
            "LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS".into(),
            "0.2".into(),
        );
    })
    .await;
    let token = app.owner("acme");
    // An hour left: not due.
    provider.set_lifetime(3600);
    let google = connect_ok(&app, &token, "google", json!({})).await;
    // Ten minutes left: due for the background refresher (not yet for use).
    provider.set_lifetime(600);
    let box_view = connect_ok(&app, &token, "box", json!({})).await;
    provider.set_lifetime(3600);
    let box_id = box_view["connectionId"].as_str().unwrap().to_owned();
    wait_until(
        Duration::from_secs(10),
        "the box token to be refreshed",
        || async {
            app.event_types(&box_id)
                .await
                .contains(&"TokenRefreshed".to_owned())
        },
    )
    .await;
    // A few more rounds: nothing more is due.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(provider.refreshes("box"), 1);
    assert_eq!(provider.refreshes("google"), 0);
    let google_id = google["connectionId"].as_str().unwrap();
    assert_eq!(app.event_types(google_id).await, ["ConnectionCreated"]);
    let metadata: Value = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT metadata FROM events WHERE aggregate_id = $1 AND event_type = 'TokenRefreshed'",
            &[&box_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(metadata["actor"], "system");
    assert_eq!(metadata["accountId"], "acme");
    app.stop().await;
}

#[tokio::test]
async fn invalid_grant_expires_the_connection_and_reconnect_brings_it_back() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    provider.set_lifetime(60);
    let view = connect_ok(&app, &token, "google", json!({})).await;
    let id = view["connectionId"].as_str().unwrap().to_owned();

    // A transient failure is recorded and changes nothing else.
    provider.set_token_endpoint_down(true);
    let outcome = another_process(&app)
        .await
        .ensure_fresh(&system("acme"), &id.parse().unwrap(), USE_WINDOW)
        .await
        .unwrap();
    assert!(matches!(outcome, RefreshOutcome::Failed(_)), "{outcome:?}");
    provider.set_token_endpoint_down(false);
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "active");

    // The customer revoked the app: invalid_grant.
    provider.revoke_refresh_tokens();
    let tested: Value = app.test_connection(&token, &id).await;
    assert!(tested.get("ok").is_some(), "{tested}");
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "expired", "{got}");
    let expired: Value = app
        .get("/connections?status=expired", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(expired["connections"][0]["connectionId"], id.as_str());
    let events = app.event_types(&id).await;
    assert_eq!(
        &events[..5],
        [
            "ConnectionCreated",
            "TokenRefreshFailed",
            "TokenRefreshFailed",
            "ConnectionReauthRequired",
            "ConnectionTested"
        ]
    );
    let payloads = payloads(&app, &id).await.replace(' ', "");
    assert!(
        payloads.contains("\"permanent\":true") && payloads.contains("\"permanent\":false"),
        "{payloads}"
    );
    // Expired: no more refresh attempts, in use or in the background.
    let refused = provider.refused_refreshes("google");
    let outcome = another_process(&app)
        .await
        .ensure_fresh(&system("acme"), &id.parse().unwrap(), USE_WINDOW)
        .await
        .unwrap();
    assert_eq!(outcome, RefreshOutcome::ReauthRequired);
    assert_eq!(provider.refused_refreshes("google"), refused);

    // Reconnect: the same flow, for this connection.
    provider.set_lifetime(3600);
    let response = app
        .post(
            &format!("/connections/{id}/reconnect"),
            &token,
            &json!({"returnUrl": format!("{RETURN_ORIGIN}/back")}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let started: Value = response.json().await.unwrap();
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("{RETURN_ORIGIN}/back?connectionId={id}")
    );
    let got: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["status"], "active", "{got}");
    assert_eq!(got["externalAccount"], view["externalAccount"]);
    assert!(app
        .event_types(&id)
        .await
        .contains(&"ConnectionReauthorized".to_owned()));
    let (access, _) = vault_tokens(&app, "acme", &id).await;
    assert!(provider.is_valid_access_token(&access));
    let tested: Value = app.test_connection(&token, &id).await;
    assert_eq!(tested["ok"], true, "{tested}");
    let list: Value = app
        .get("/connections?status=expired", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["connections"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn reconnect_is_for_the_accounts_own_oauth_connections() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");
    let api_key = app
        .create_stripe_connection(&token, "Stripe key", "sk_test_123")
        .await;
    let api_key_id = api_key["connectionId"].as_str().unwrap();
    let response = app
        .post(
            &format!("/connections/{api_key_id}/reconnect"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 409);

    let view = connect_ok(&app, &token, "hubspot", json!({})).await;
    let id = view["connectionId"].as_str().unwrap();
    let response = app
        .post(
            &format!("/connections/{id}/reconnect"),
            &app.owner("intruder"),
            &json!({}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 404);
    let response = app
        .post(
            &format!("/connections/{id}/reconnect"),
            &token,
            &json!({"returnUrl": "https://evil.example"}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 400);
    let missing = uuid::Uuid::now_v7();
    let response = app
        .post(
            &format!("/connections/{missing}/reconnect"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(problem_code(response).await.0, 404);

    // Without a return URL the callback answers 200 with the connection.
    let started = start(&app, &token, json!({"platformId": "box"})).await;
    drop(started);
    let response = app
        .post(&format!("/connections/{id}/reconnect"), &token, &json!({}))
        .await;
    let started: Value = response.json().await.unwrap();
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 200);
    let got: Value = response.json().await.unwrap();
    assert_eq!(got["connectionId"], id);
    assert_eq!(got["status"], "active");
    app.stop().await;
}
