//! OAuth connections ask for no more than they need (issue 10): the scopes an authorization asks for follow the
//! data types the customer means to back up, the connection records what was granted, a source selecting a
//! data type the connection was not granted is refused with the way out, and a reconnection adds consent.

use crate::support;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use support::oauth_provider::{consent, deliver, spawn_app, start, OauthProvider};
use support::{problem_code, TestApp};

fn params_of(authorization_url: &str) -> BTreeMap<String, String> {
    url::Url::parse(authorization_url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn scopes_of(authorization_url: &str) -> Vec<String> {
    params_of(authorization_url)["scope"]
        .split(' ')
        .map(str::to_owned)
        .collect::<Vec<_>>()
}

async fn connection(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/connections/{id}"), token)
        .await
        .json()
        .await
        .unwrap()
}

async fn source(
    app: &TestApp,
    token: &str,
    connection_id: &str,
    data_types: &[&str],
) -> reqwest::Response {
    app.post(
        "/sources",
        token,
        &json!({"connectionId": connection_id, "name": "HubSpot", "dataTypes": data_types}),
    )
    .await
}

#[tokio::test]
async fn an_authorization_asks_for_the_scopes_of_the_chosen_data_types_only() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    let started = start(
        &app,
        &token,
        json!({"platformId": "hubspot", "dataTypes": ["contacts", "notes"]}),
    )
    .await;
    let url = started["authorizationUrl"].as_str().unwrap();
    assert_eq!(scopes_of(url), ["oauth", "crm.objects.contacts.read"]);

    // Without data types: every data type's, which is more.
    let everything = start(&app, &token, json!({"platformId": "hubspot"})).await;
    let all = scopes_of(everything["authorizationUrl"].as_str().unwrap());
    assert!(
        all.contains(&"crm.objects.deals.read".to_owned()),
        "{all:?}"
    );
    assert!(all.contains(&"sales-email-read".to_owned()), "{all:?}");

    // A name that is not a data type of the platform is refused, naming it.
    let response = app
        .post(
            "/connections/oauth/start",
            &token,
            &json!({"platformId": "hubspot", "dataTypes": ["contacts", "invoices"]}),
        )
        .await;
    let (status, problem) = problem_code(response).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "dataTypes", "{problem}");
    assert!(problem.to_string().contains("invoices"), "{problem}");
    app.stop().await;
}

#[tokio::test]
async fn a_data_type_not_granted_is_refused_until_a_reconnection_adds_its_consent() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    let started = start(
        &app,
        &token,
        json!({"platformId": "hubspot", "dataTypes": ["contacts"]}),
    )
    .await;
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["connectionId"].as_str().unwrap().to_owned();
    let shown = connection(&app, &token, &id).await;
    assert_eq!(
        shown["settings"]["grantedScopes"], "oauth crm.objects.contacts.read",
        "{shown}"
    );

    assert_eq!(source(&app, &token, &id, &["contacts"]).await.status(), 201);
    let (status, problem) =
        problem_code(source(&app, &token, &id, &["contacts", "deals"]).await).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["code"], "CONFLICT", "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default().to_owned() + &problem.to_string();
    assert!(
        detail.contains("deals") && detail.contains("reconnect"),
        "{problem}"
    );

    // The customer consents to deals as well: the reconnection keeps what was granted and adds it.
    let response = app
        .post(
            &format!("/connections/{id}/reconnect"),
            &token,
            &json!({"dataTypes": ["deals"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    let url = again["authorizationUrl"].as_str().unwrap();
    assert_eq!(
        scopes_of(url),
        [
            "oauth",
            "crm.objects.contacts.read",
            "crm.objects.deals.read"
        ]
    );
    let redirect = consent(url).await;
    let response = deliver(&app, &redirect).await;
    assert!(response.status().is_success(), "{}", response.status());
    let shown = connection(&app, &token, &id).await;
    assert_eq!(
        shown["settings"]["grantedScopes"],
        "oauth crm.objects.contacts.read crm.objects.deals.read",
        "{shown}"
    );
    assert_eq!(
        source(&app, &token, &id, &["contacts", "deals"])
            .await
            .status(),
        201
    );
    app.stop().await;
}

/// Google's incremental authorization ("Using OAuth 2.0 for Web Server Applications"): every authorization
/// URL asks `include_granted_scopes=true`, so the consent that adds a data type later keeps the scopes
/// granted before in the new token.
#[tokio::test]
async fn google_asks_to_keep_the_scopes_granted_before() {
    let provider = OauthProvider::start().await;
    let app = spawn_app(&provider, |_| {}).await;
    let token = app.owner("acme");

    let started = start(
        &app,
        &token,
        json!({"platformId": "google", "dataTypes": ["permissions"]}),
    )
    .await;
    let url = started["authorizationUrl"].as_str().unwrap();
    let params = params_of(url);
    assert_eq!(params["include_granted_scopes"], "true", "{url}");
    assert_eq!(params["access_type"], "offline", "{url}");
    assert_eq!(
        scopes_of(url),
        [
            "openid",
            "email",
            "https://www.googleapis.com/auth/drive.metadata.readonly"
        ]
    );
    let redirect = consent(url).await;
    let response = deliver(&app, &redirect).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let id = created["connectionId"].as_str().unwrap().to_owned();

    // Adding file contents later: the reconnection asks for the new scope, and again for the granted ones
    // to be kept.
    let response = app
        .post(
            &format!("/connections/{id}/reconnect"),
            &token,
            &json!({"dataTypes": ["files"]}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    let url = again["authorizationUrl"].as_str().unwrap();
    assert_eq!(params_of(url)["include_granted_scopes"], "true", "{url}");
    let scopes = scopes_of(url);
    for scope in [
        "https://www.googleapis.com/auth/drive.metadata.readonly",
        "https://www.googleapis.com/auth/drive.readonly",
    ] {
        assert!(scopes.iter().any(|s| s == scope), "{scope}: {scopes:?}");
    }
    app.stop().await;
}
