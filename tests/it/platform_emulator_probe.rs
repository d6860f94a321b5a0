//! The connection prober against a local emulation of every API-key platform's test endpoint.

use std::collections::BTreeMap;

use listbackup_commands::platform_client::{PlatformClient, PlatformEndpoints, ProbeOutcome};
use listbackup_domain::platform::{find, AuthType, CATALOG};
use listbackup_emulators::PlatformApi;
use serde_json::{json, Value};

/// Good credentials per API-key platform, and the secret field of each.
fn good_credentials() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        (
            "stripe",
            json!({"secretKey": "sk_test_4eC39HqLyjWDarjtT1zdp7dc"}),
            "secretKey",
        ),
        (
            "keap",
            json!({"apiKey": "KeapAK-0a1b2c3d4e5f6a7b8c9d"}),
            "apiKey",
        ),
        (
            "hubspot",
            json!({"accessToken": "pat-na1-11111111-2222-3333-4444-555555555555"}),
            "accessToken",
        ),
        (
            "shopify",
            json!({"shop": "acme-test.myshopify.com", "adminApiAccessToken": "shpat_0123456789abcdef0123456789abcdef"}),
            "adminApiAccessToken",
        ),
        (
            "gohighlevel",
            json!({"privateIntegrationToken": "pit-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", "locationId": "ve9EPM428h8vShlRW1KT"}),
            "privateIntegrationToken",
        ),
        (
            "mailchimp",
            json!({"apiKey": "0123456789abcdef0123456789abcdef-us21"}),
            "apiKey",
        ),
        (
            "activecampaign",
            json!({"apiUrl": "https://acme.api-us1.com", "apiKey": "ac0123456789abcdef0123456789abcdef"}),
            "apiKey",
        ),
        (
            "zendesk",
            json!({"subdomain": "acme", "email": "agent@acme.test", "apiToken": "zdtok0123456789abcdef"}),
            "apiToken",
        ),
    ]
}

fn as_map(credentials: &Value) -> BTreeMap<String, String> {
    credentials
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

fn client_for(emulator: &PlatformApi) -> PlatformClient {
    let endpoints = good_credentials()
        .iter()
        .fold(PlatformEndpoints::default(), |endpoints, (id, _, _)| {
            endpoints.with_api_url(id, &emulator.api_url(id))
        });
    PlatformClient::new(endpoints)
}

async fn probe(client: &PlatformClient, platform_id: &str, credentials: &Value) -> ProbeOutcome {
    client
        .test_connection(find(platform_id).unwrap(), &as_map(credentials))
        .await
}

/// The probe's message must not contain the secret, nor its tail (Stripe's error echoes the last four).
fn assert_no_secret(outcome: &ProbeOutcome, secret: &str) {
    assert!(!outcome.message.contains(secret), "{}", outcome.message);
    let tail = &secret[secret.len() - 6..];
    assert!(!outcome.message.contains(tail), "{}", outcome.message);
}

#[test]
fn the_emulated_set_is_every_api_key_platform() {
    let emulated: Vec<_> = good_credentials().iter().map(|(id, _, _)| *id).collect();
    let api_key: Vec<_> = CATALOG
        .iter()
        .filter(|p| p.supports(AuthType::ApiKey))
        .map(|p| p.id)
        .collect();
    let mut sorted = emulated.clone();
    sorted.sort_unstable();
    let mut expected = api_key.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected);
}

#[tokio::test]
async fn good_credentials_are_accepted_by_every_platform() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    for (id, credentials, secret_field) in good_credentials() {
        emulator.accept_credentials(id, credentials.clone());
        let outcome = probe(&client, id, &credentials).await;
        assert!(outcome.ok, "{id}: {outcome:?}");
        assert_eq!(outcome.http_status, Some(200), "{id}");
        assert_no_secret(&outcome, credentials[secret_field].as_str().unwrap());
    }
}

#[tokio::test]
async fn the_message_names_the_account() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    let expectations = [
        ("stripe", "authenticated as Acme Test"),
        ("hubspot", "authenticated as 62515"),
        ("zendesk", "authenticated as agent@acme.test"),
        ("shopify", "authenticated as Emulated Store"),
        ("mailchimp", "authenticated as Emulated Newsletters"),
    ];
    for (id, expected) in expectations {
        let (_, credentials, _) = good_credentials().into_iter().find(|c| c.0 == id).unwrap();
        emulator.accept_credentials(id, credentials.clone());
        let outcome = probe(&client, id, &credentials).await;
        assert_eq!(outcome.message, expected, "{id}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_rejected_without_echoing_them() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    for (id, good, secret_field) in good_credentials() {
        emulator.accept_credentials(id, good.clone());
        let mut wrong = good.clone();
        let bad_secret = format!("{}x9y8z7", good[secret_field].as_str().unwrap());
        wrong[secret_field] = json!(bad_secret);
        let outcome = probe(&client, id, &wrong).await;
        assert!(!outcome.ok, "{id}: {outcome:?}");
        // Each platform's documented answer to a key that is not valid: 401, except ActiveCampaign, which
        // sends no 401 and answers 403. Either way the test says UNAUTHORIZED, not FORBIDDEN.
        let documented = if id == "activecampaign" { 403 } else { 401 };
        assert_eq!(outcome.http_status, Some(documented), "{id}");
        assert_eq!(outcome.code, Some("UNAUTHORIZED"), "{id}: {outcome:?}");
        assert!(
            outcome.message.contains("rejected the credentials"),
            "{id}: {}",
            outcome.message
        );
        assert_no_secret(&outcome, &bad_secret);
        assert_no_secret(&outcome, good[secret_field].as_str().unwrap());
    }
}

#[tokio::test]
async fn a_rejected_oauth_access_token_is_unauthorized_on_every_oauth_platform() {
    let emulator = PlatformApi::start().await;
    let oauth: Vec<_> = CATALOG
        .iter()
        .filter(|p| p.supports(AuthType::Oauth2))
        .collect();
    let endpoints = oauth
        .iter()
        .fold(PlatformEndpoints::default(), |endpoints, p| {
            endpoints.with_api_url(p.id, &emulator.api_url(p.id))
        });
    let client = PlatformClient::new(endpoints);
    for platform in oauth {
        emulator.accept(platform.id, "good-access-token");
        let mut credentials = json!({"accessToken": "revoked-access-token"});
        if platform.id == "quickbooks" {
            credentials["realmId"] = json!(listbackup_emulators::quickbooks::REALM_ID);
        }
        if platform.id == "shopify" {
            credentials["shop"] = json!("acme-test.myshopify.com");
        }
        if platform.id == "zendesk" {
            credentials["subdomain"] = json!("acme");
        }
        if platform.id == "gohighlevel" {
            credentials["locationId"] = json!("ve9EPM428h8vShlRW1KT");
        }
        let outcome = probe(&client, platform.id, &credentials).await;
        assert!(!outcome.ok, "{}: {outcome:?}", platform.id);
        assert_eq!(outcome.http_status, Some(401), "{}", platform.id);
        assert_eq!(
            outcome.code,
            Some("UNAUTHORIZED"),
            "{}: {outcome:?}",
            platform.id
        );
        assert_no_secret(&outcome, "revoked-access-token");
    }
}

#[tokio::test]
async fn a_highlevel_token_for_another_location_is_rejected() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    let (_, good, _) = good_credentials()
        .into_iter()
        .find(|c| c.0 == "gohighlevel")
        .unwrap();
    emulator.accept_credentials("gohighlevel", good.clone());
    let mut other = good;
    other["locationId"] = json!("someOtherLocation123");
    let outcome = probe(&client, "gohighlevel", &other).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.http_status, Some(403));
    // A valid token refused one location: FORBIDDEN, not a rejected credential.
    assert_eq!(outcome.code, Some("FORBIDDEN"));
}

#[tokio::test]
async fn one_rate_limit_is_waited_out() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    for (id, credentials, _) in good_credentials() {
        emulator.accept_credentials(id, credentials.clone());
        let test_path = emulator.api_url(id)[emulator.base_url.len()..].to_owned()
            + match id {
                "stripe" => "/account",
                "keap" => "/account/profile",
                "hubspot" => "/account-info/v3/details",
                "shopify" => "/shop.json",
                "gohighlevel" => "/locations/ve9EPM428h8vShlRW1KT",
                "mailchimp" => "/",
                "activecampaign" => "/users/me",
                "zendesk" => "/users/me.json",
                _ => unreachable!(),
            };
        emulator.rate_limit_next(1, 1);
        let outcome = probe(&client, id, &credentials).await;
        assert!(outcome.ok, "{id}: {outcome:?}");
        assert_eq!(emulator.hits(&test_path), 2, "{id}: {test_path}");
    }
}

#[tokio::test]
async fn a_second_rate_limit_is_reported() {
    let emulator = PlatformApi::start().await;
    let client = client_for(&emulator);
    let (_, credentials, _) = good_credentials().into_iter().next().unwrap();
    emulator.accept_credentials("stripe", credentials.clone());
    emulator.rate_limit_next(2, 1);
    let outcome = probe(&client, "stripe", &credentials).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.http_status, Some(429));
    assert_eq!(emulator.hits("/stripe/v1/account"), 2);
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let emulator = PlatformApi::start().await;
    let url = emulator.api_url("stripe");
    drop(emulator);
    // Give the server a moment to release the port.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let client = PlatformClient::new(PlatformEndpoints::default().with_api_url("stripe", &url));
    let (_, credentials, _) = good_credentials().into_iter().next().unwrap();
    let outcome = probe(&client, "stripe", &credentials).await;
    assert!(!outcome.ok);
    assert!(
        outcome.message.starts_with("could not reach"),
        "{}",
        outcome.message
    );
    assert_eq!(outcome.http_status, None);
}

/// The emulator itself speaks the platforms' error shapes.
#[tokio::test]
async fn emulator_answers_with_real_error_shapes() {
    let emulator = PlatformApi::start().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", emulator.base_url));

    let stripe = get("/stripe/v1/account")
        .bearer_auth("sk_test_nope1234")
        .send()
        .await
        .unwrap();
    assert_eq!(stripe.status(), 401);
    let body: Value = stripe.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"].as_str().unwrap().ends_with("1234"));

    let mailchimp = get("/mailchimp/3.0/ping").send().await.unwrap();
    assert_eq!(mailchimp.status(), 401);
    assert!(mailchimp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    let body: Value = mailchimp.json().await.unwrap();
    assert_eq!(body["title"], "API Key Missing");

    let zendesk = get("/zendesk/api/v2/users/me.json")
        .basic_auth("a@b.test/token", Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(zendesk.status(), 401);
    assert_eq!(
        zendesk.json::<Value>().await.unwrap(),
        json!({"error": "Couldn't authenticate you"})
    );
    // A Zendesk API token works with the email of its account only.
    emulator.accept_credentials(
        "zendesk",
        json!({"subdomain": "acme", "email": "agent@acme.test", "apiToken": "zdtok-right"}),
    );
    let as_owner = |email: &str| {
        get("/zendesk/api/v2/users/me.json")
            .basic_auth(format!("{email}/token"), Some("zdtok-right"))
            .send()
    };
    assert_eq!(as_owner("agent@acme.test").await.unwrap().status(), 200);
    assert_eq!(as_owner("someone@else.test").await.unwrap().status(), 401);

    // Zendesk's "me" without credentials is the anonymous user, which the prober must not take as success.
    let anonymous: Value = get("/zendesk/api/v2/users/me.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(anonymous["user"]["id"].is_null());

    // A wrong key, answered as each reference documents it, and read by each platform module as "these
    // credentials are not valid".
    let rejected = |id: &str, status: u16, body: &Value| {
        assert!(
            find(id).unwrap().rejects_credentials(status, body),
            "{id}: {status} {body}"
        );
    };
    let mailchimp = get("/mailchimp/3.0/ping")
        .basic_auth("anystring", Some("ffffffffffffffffffffffffffffffff-us21"))
        .send()
        .await
        .unwrap();
    assert_eq!(mailchimp.status(), 401);
    let body: Value = mailchimp.json().await.unwrap();
    assert_eq!(body["title"], "API Key Invalid");
    assert_eq!(body["status"], 401);
    rejected("mailchimp", 401, &body);

    let shopify = get("/shopify/admin/api/2026-10/shop.json")
        .header("X-Shopify-Access-Token", "shpat_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(shopify.status(), 401);
    let body: Value = shopify.json().await.unwrap();
    assert!(body["errors"]
        .as_str()
        .unwrap()
        .starts_with("[API] Invalid API key or access token"));
    rejected("shopify", 401, &body);

    let hubspot = get("/hubspot/account-info/v3/details")
        .bearer_auth("pat-na1-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(hubspot.status(), 401);
    let body: Value = hubspot.json().await.unwrap();
    assert_eq!(body["category"], "INVALID_AUTHENTICATION");
    rejected("hubspot", 401, &body);

    let keap = get("/keap/crm/rest/v1/account/profile")
        .header("X-Keap-API-Key", "KeapAK-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(keap.status(), 401);
    rejected("keap", 401, &keap.json().await.unwrap_or(Value::Null));

    let activecampaign = get("/activecampaign/api/3/users/me")
        .header("Api-Token", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(activecampaign.status(), 403, "ActiveCampaign sends no 401");
    let body: Value = activecampaign.json().await.unwrap();
    rejected("activecampaign", 403, &body);

    let highlevel = get("/gohighlevel/locations/x")
        .bearer_auth("pit-wrong")
        .header("Version", "2021-07-28")
        .send()
        .await
        .unwrap();
    assert_eq!(highlevel.status(), 401);
    let body: Value = highlevel.json().await.unwrap();
    assert_eq!(body["message"], "Invalid JWT");
    rejected("gohighlevel", 401, &body);

    let highlevel = get("/gohighlevel/locations/x")
        .bearer_auth("pit-x")
        .send()
        .await
        .unwrap();
    assert_eq!(highlevel.status(), 400, "the Version header is mandatory");

    assert_eq!(get("/nowhere").send().await.unwrap().status(), 404);
}
