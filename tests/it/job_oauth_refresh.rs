//! A backup of an OAuth connection whose access token the platform stops accepting before it expires
//! (issue 5): the worker refreshes the token once and carries on; when the refresh is refused as well, the
//! connection needs the customer to reconnect (`expired`) and the job fails saying so.

use crate::support;

use serde_json::{json, Value};
use support::backup::{sync, BackupApp};
use support::oauth_provider::{configure_service, connect_ok, OauthProvider};

const DATA_SECRET: &str = "keap-data-plane-secret";

/// A service with a backup worker whose Keap API is the OAuth provider emulation, itself answering data
/// requests from the platform data emulation once it has checked the access token.
async fn keap_backup(provider: &OauthProvider) -> BackupApp {
    let backup = BackupApp::spawn_with(|values| configure_service(provider, values)).await;
    provider.serve_data("keap", &backup.api.api_url("keap"), DATA_SECRET);
    backup.api.accept("keap", DATA_SECRET);
    backup
}

async fn keap_source(backup: &BackupApp, token: &str) -> (String, String) {
    let connection = connect_ok(&backup.app, token, "keap", json!({})).await;
    let connection_id = connection["connectionId"].as_str().unwrap().to_owned();
    let response = backup
        .app
        .post(
            "/sources",
            token,
            &json!({"connectionId": connection_id, "name": "Keap", "dataTypes": ["contacts"]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let source: Value = response.json().await.unwrap();
    (
        connection_id,
        source["sourceId"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_rejected_access_token_is_refreshed_once_and_the_backup_carries_on() {
    let provider = OauthProvider::start().await;
    let backup = keap_backup(&provider).await;
    backup.api.seed("keap", "contacts", 450);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = keap_source(&backup, &token).await;
    // Valid for an hour, so not refreshed before use; the platform stops accepting it anyway.
    provider.revoke_access_tokens("keap");
    assert_eq!(provider.refreshes("keap"), 0);

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["records"], 450);
    assert_eq!(
        provider.refreshes("keap"),
        1,
        "one refresh, not one per request"
    );
    let events = backup.app.event_types(&connection_id).await;
    assert!(events.contains(&"TokenRefreshed".to_owned()), "{events:?}");
    assert!(!events.contains(&"ConnectionReauthRequired".to_owned()));
    let connection: Value = backup
        .app
        .get(&format!("/connections/{connection_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "active");
    backup.stop().await;
}

#[tokio::test]
async fn a_refresh_refused_as_well_asks_for_reauthorization_and_fails_the_job() {
    let provider = OauthProvider::start().await;
    let backup = keap_backup(&provider).await;
    backup.api.seed("keap", "contacts", 50);
    let token = backup.app.owner("acme");
    let (connection_id, source_id) = keap_source(&backup, &token).await;
    // The customer disconnected the app: neither token works any more.
    provider.revoke_access_tokens("keap");
    provider.revoke_refresh_tokens();

    let job_id = sync(&backup.app, &token, &source_id).await;
    let job = backup.finished(&token, &job_id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "REAUTH_REQUIRED", "{job}");
    assert_eq!(job["error"]["retryable"], false);
    assert_eq!(
        provider.refreshes("keap") + provider.refused_refreshes("keap"),
        1
    );
    let events = backup.app.event_types(&connection_id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "ConnectionReauthRequired")
            .count(),
        1,
        "{events:?}"
    );
    let connection: Value = backup
        .app
        .get(&format!("/connections/{connection_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "expired");
    // Nothing of the failed run looks like a backup.
    let dir = backup
        .storage
        .join(format!("accounts/acme/sources/{source_id}/jobs/{job_id}"));
    assert!(!dir.join("manifest.json").exists());
    backup.stop().await;
}

/// `POST /connections/{id}/test` of an OAuth connection handles a 401 as a backup does (issue 10): one
/// refresh and the test goes on. Before, it answered `ok: false` and left a working connection looking broken.
#[tokio::test]
async fn a_connection_test_refreshes_a_rejected_access_token_once() {
    let provider = OauthProvider::start().await;
    let backup = keap_backup(&provider).await;
    let token = backup.app.owner("acme");
    let (connection_id, _) = keap_source(&backup, &token).await;
    provider.revoke_access_tokens("keap");

    let response = backup
        .app
        .post(
            &format!("/connections/{connection_id}/test"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["ok"], true, "{outcome}");
    assert_eq!(provider.refreshes("keap"), 1);
    let events = backup.app.event_types(&connection_id).await;
    assert!(events.contains(&"TokenRefreshed".to_owned()), "{events:?}");
    assert!(!events.contains(&"ConnectionReauthRequired".to_owned()));
    backup.stop().await;
}

/// Refused again (the refresh token is revoked too): the connection needs the customer, shows `expired`, and
/// the test says to reconnect.
#[tokio::test]
async fn a_connection_test_refused_after_a_refresh_asks_for_reauthorization() {
    let provider = OauthProvider::start().await;
    let backup = keap_backup(&provider).await;
    let token = backup.app.owner("acme");
    let (connection_id, _) = keap_source(&backup, &token).await;
    provider.revoke_access_tokens("keap");
    provider.revoke_refresh_tokens();

    let response = backup
        .app
        .post(
            &format!("/connections/{connection_id}/test"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    assert_eq!(outcome["ok"], false, "{outcome}");
    assert!(
        outcome["message"].as_str().unwrap().contains("reconnect"),
        "{outcome}"
    );
    let events = backup.app.event_types(&connection_id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "ConnectionReauthRequired")
            .count(),
        1,
        "{events:?}"
    );
    let connection: Value = backup
        .app
        .get(&format!("/connections/{connection_id}"), &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(connection["status"], "expired");
    backup.stop().await;
}
