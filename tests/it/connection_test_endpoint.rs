//! `POST /connections/{id}/test` calls the platform's real test endpoint (here its local emulation) and
//! records the outcome as ConnectionTested.

use crate::support;

use serde_json::{json, Value};
use support::platform_api::PlatformApi;
use support::TestApp;

async fn app_with(emulator: &PlatformApi) -> TestApp {
    let urls: Vec<(String, String)> = ["stripe", "zendesk", "mailchimp"]
        .iter()
        .map(|p| {
            (
                format!("LISTBACKUP_PLATFORM_{}_API_URL", p.to_uppercase()),
                emulator.api_url(p),
            )
        })
        .collect();
    TestApp::spawn_with(|c| c.extend(urls)).await
}

#[tokio::test]
async fn a_good_key_tests_ok_and_the_result_is_recorded() {
    let emulator = PlatformApi::start().await;
    emulator.accept_credentials("stripe", json!({"secretKey": "sk_test_good"}));
    let app = app_with(&emulator).await;
    let token = app.owner("acme");
    let created = app
        .create_stripe_connection(&token, "Stripe", "sk_test_good")
        .await;
    let id = created["connectionId"].as_str().unwrap();

    let response = app
        .post(&format!("/connections/{id}/test"), &token, &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let result: Value = response.json().await.unwrap();
    assert_eq!(result["ok"], true, "{result}");
    assert!(result["latencyMs"].is_u64());
    assert!(result["checkedAt"].is_string());
    assert_eq!(emulator.hits("/stripe/v1/account"), 1);

    let view: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["lastTest"]["ok"], true);
    assert_eq!(view["lastTest"]["checkedAt"], result["checkedAt"]);
    // A passed test has no code, in its answer and on the connection alike.
    assert!(view["lastTest"].get("code").is_none(), "{view}");
    assert_eq!(view["version"], 2);

    let db = app.db.connect().await;
    let payload: Value = db
        .query_one(
            "SELECT payload FROM events WHERE event_type = 'ConnectionTested'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(payload["ConnectionTested"]["ok"], true);
    app.stop().await;
}

#[tokio::test]
async fn a_rejected_key_tests_not_ok_without_echoing_it() {
    let emulator = PlatformApi::start().await;
    emulator.accept_credentials("stripe", json!({"secretKey": "sk_test_the_right_one"}));
    let app = app_with(&emulator).await;
    let token = app.owner("acme");
    let created = app
        .create_stripe_connection(&token, "Stripe", "sk_test_WRONGKEY42")
        .await;
    let id = created["connectionId"].as_str().unwrap();
    let result: Value = app.test_connection(&token, id).await;
    assert_eq!(result["ok"], false);
    let message = result["message"].as_str().unwrap();
    assert!(
        !message.contains("WRONGKEY42") && !message.contains("KEY42"),
        "{message}"
    );
    let view: Value = app
        .get(&format!("/connections/{id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["lastTest"]["ok"], false);
    // The connection shows the failed test's code as the test's own answer gave it, in the list too.
    assert_eq!(result["code"], "UNAUTHORIZED", "{result}");
    assert_eq!(view["lastTest"]["code"], result["code"]);
    let list: Value = app.get("/connections", &token).await.json().await.unwrap();
    assert_eq!(list["connections"][0]["lastTest"]["code"], result["code"]);
    app.stop().await;
}

#[tokio::test]
async fn a_rate_limited_platform_is_retried_after_its_retry_after() {
    let emulator = PlatformApi::start().await;
    emulator.accept_credentials(
        "zendesk",
        json!({"subdomain": "acme", "email": "ops@acme.test", "apiToken": "zd-token"}),
    );
    let app = app_with(&emulator).await;
    let token = app.owner("acme");
    let created: Value = app
        .post(
            "/connections",
            &token,
            &json!({"platformId": "zendesk", "name": "Support", "credentials": {"subdomain": "acme", "email": "ops@acme.test", "apiToken": "zd-token"}}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["connectionId"].as_str().unwrap();
    emulator.rate_limit_next(1, 1);
    let result: Value = app.test_connection(&token, id).await;
    assert_eq!(result["ok"], true, "{result}");
    assert_eq!(emulator.hits("/zendesk/api/v2/users/me.json"), 2);
    app.stop().await;
}
