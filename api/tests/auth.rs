//! Bearer JWT authentication: HS256 with the shared secret, RS256/ES256 against a JWKS served locally, the
//! classic forgeries, and the `Principal` extractor. No database needed.
//!
//! The RSA and EC keys are test-only fixtures (see `tests/fixtures/README.md`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{header, StatusCode};
use actix_web::test::{call_service, init_service, read_body_json, TestRequest};
use actix_web::{web, App, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use listbackup_api::auth::{mint_hs256_token, AuthConfig, Authenticator, Principal, Role};
use listbackup_api::error::{ApiError, ErrorCode};

const SECRET: &str = "test-only-hs256-secret-0123456789abcdef";
const RSA_PRIVATE_PEM: &str = include_str!("fixtures/test-only-rsa-private.pem");
const RSA_PUBLIC_PEM: &str = include_str!("fixtures/test-only-rsa-public.pem");
const EC_PRIVATE_PEM: &str = include_str!("fixtures/test-only-ec-p256-private.pem");
const JWKS: &str = include_str!("fixtures/test-only-jwks.json");
const RSA_KID: &str = "test-only-rsa";
const EC_KID: &str = "test-only-ec-p256";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn hs256_config() -> AuthConfig {
    AuthConfig {
        hs256_secret: Some(SECRET.into()),
        ..AuthConfig::default()
    }
}

fn jwks_config(url: &str) -> AuthConfig {
    AuthConfig {
        jwks_url: Some(url.into()),
        ..AuthConfig::default()
    }
}

/// Valid claims for the default claim names, one hour to live.
fn claims() -> Value {
    json!({
        "sub": "user-1",
        "account_id": "account-1",
        "roles": ["manager", "viewer"],
        "iat": now(),
        "exp": now() + 3600,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn sign_rs256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn sign_es256(claims: &Value, kid: &str) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_ec_pem(EC_PRIVATE_PEM.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// A token with a hand-written header and no signature (jsonwebtoken cannot produce `alg: none`).
fn unsigned_token(header: &Value, claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

async fn authenticate(config: AuthConfig, token: &str) -> Result<Principal, ApiError> {
    Authenticator::new(config)
        .unwrap()
        .authenticate(token)
        .await
}

/// Asserts a 401 whose reason does not echo the token, and returns it for a closer look.
#[track_caller]
fn assert_unauthorized(result: Result<Principal, ApiError>, token: &str) -> ApiError {
    let err = result.expect_err("the token must be refused");
    assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
    assert!(!err.detail.is_empty());
    assert!(
        !err.detail.contains(token),
        "the reason must not echo the token"
    );
    err
}

#[track_caller]
fn assert_reason(err: ApiError, expected: &str) {
    assert!(
        err.detail.contains(expected),
        "{:?} does not mention {expected:?}",
        err.detail
    );
}

/// Serves `body` as JSON on 127.0.0.1 and counts the requests. One request per connection, which is all
/// a JWKS client needs.
async fn serve_json(body: &'static str) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // Read the request head; the GET has no body.
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (url, hits)
}

// ---------------------------------------------------------------------------------------------------------
// Configuration

#[test]
fn an_authenticator_needs_a_secret_or_a_jwks() {
    assert!(Authenticator::new(AuthConfig::default()).is_err());
    let empty_secret = AuthConfig {
        hs256_secret: Some(String::new()),
        ..AuthConfig::default()
    };
    assert!(Authenticator::new(empty_secret).is_err());
    // RFC 7518 §3.2: an HS256 key is at least 32 bytes; a shorter one is refused, not merely warned about.
    for (secret, accepted) in [
        ("a", false),
        (&"k".repeat(31), false),
        (&"k".repeat(32), true),
    ] {
        let config = AuthConfig {
            hs256_secret: Some(secret.to_string()),
            ..AuthConfig::default()
        };
        let result = Authenticator::new(config.clone());
        assert_eq!(result.is_ok(), accepted, "{} bytes", secret.len());
        if !accepted {
            assert!(result.unwrap_err().contains("LISTBACKUP_JWT_SECRET"));
            assert!(
                mint_hs256_token(&config, "a", "u", &[], std::time::Duration::from_secs(60))
                    .is_err()
            );
        }
    }
    assert!(Authenticator::new(jwks_config("ftp://idp.example/jwks")).is_err());
    assert!(Authenticator::new(hs256_config()).is_ok());
    assert!(Authenticator::new(jwks_config("https://idp.example/.well-known/jwks.json")).is_ok());
}

// ---------------------------------------------------------------------------------------------------------
// HS256

#[tokio::test]
async fn a_good_hs256_token_yields_the_principal() {
    let claims = with(
        claims(),
        "roles",
        json!(["manager", "viewer", "superhero", "manager"]),
    );
    let principal = authenticate(hs256_config(), &sign_hs256(&claims, SECRET.as_bytes()))
        .await
        .unwrap();
    assert_eq!(principal.account_id, "account-1");
    assert_eq!(principal.user_id, "user-1");
    // Unknown roles are ignored, duplicates collapse.
    assert_eq!(principal.roles, [Role::Manager, Role::Viewer]);
    assert_eq!(principal.actor(), "user:user-1");
}

#[tokio::test]
async fn a_minted_token_round_trips_with_issuer_and_audience() {
    let config = AuthConfig {
        issuer: Some("https://listbackup.test".into()),
        audience: Some("listbackup-api".into()),
        account_claim: "tenant".into(),
        roles_claim: "groups".into(),
        ..hs256_config()
    };
    let token = mint_hs256_token(
        &config,
        "account-9",
        "user-9",
        &[Role::Owner, Role::Auditor],
        Duration::from_secs(600),
    )
    .unwrap();
    let principal = authenticate(config.clone(), &token).await.unwrap();
    assert_eq!(principal.account_id, "account-9");
    assert_eq!(principal.user_id, "user-9");
    assert_eq!(principal.roles, [Role::Owner, Role::Auditor]);

    let no_secret = AuthConfig {
        hs256_secret: None,
        ..config
    };
    assert!(mint_hs256_token(
        &no_secret,
        "a",
        "u",
        &[Role::Owner],
        Duration::from_secs(60)
    )
    .is_err());
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let token = sign_hs256(
        &with(claims(), "exp", json!(now() - 120)),
        SECRET.as_bytes(),
    );
    let err = assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    assert_reason(err, "expired");
}

#[tokio::test]
async fn a_token_without_exp_is_refused() {
    let token = sign_hs256(&without(claims(), "exp"), SECRET.as_bytes());
    assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let token = sign_hs256(
        &with(claims(), "nbf", json!(now() + 600)),
        SECRET.as_bytes(),
    );
    assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    // nbf in the past is fine.
    let token = sign_hs256(
        &with(claims(), "nbf", json!(now() - 600)),
        SECRET.as_bytes(),
    );
    authenticate(hs256_config(), &token).await.unwrap();
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_refused() {
    let token = sign_hs256(&claims(), b"test-only-some-other-secret-0123456789");
    let err = assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    assert_reason(err, "signature");
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let config = AuthConfig {
        issuer: Some("https://listbackup.test".into()),
        audience: Some("listbackup-api".into()),
        ..hs256_config()
    };
    let good = with(
        with(claims(), "iss", json!("https://listbackup.test")),
        "aud",
        json!(["other-api", "listbackup-api"]),
    );
    authenticate(config.clone(), &sign_hs256(&good, SECRET.as_bytes()))
        .await
        .unwrap();

    for (bad, reason) in [
        (
            with(good.clone(), "iss", json!("https://evil.test")),
            "issuer",
        ),
        (with(good.clone(), "aud", json!("other-api")), "audience"),
        (without(good.clone(), "iss"), "`iss`"),
        (without(good.clone(), "aud"), "`aud`"),
    ] {
        let token = sign_hs256(&bad, SECRET.as_bytes());
        let err = assert_unauthorized(authenticate(config.clone(), &token).await, &token);
        assert_reason(err, reason);
    }

    // Not configured: not checked.
    authenticate(hs256_config(), &sign_hs256(&good, SECRET.as_bytes()))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_subject_and_account_must_be_non_empty_strings() {
    for bad in [
        without(claims(), "sub"),
        with(claims(), "sub", json!("")),
        with(claims(), "sub", json!(42)),
        without(claims(), "account_id"),
        with(claims(), "account_id", json!("")),
        with(claims(), "account_id", json!(["account-1"])),
        // Signed, yet not identifiers: a NUL cannot be stored, a line break must not reach a log line.
        with(claims(), "account_id", json!("a\u{0}b")),
        with(claims(), "account_id", json!("a\nb")),
        with(claims(), "account_id", json!("x".repeat(129))),
        with(claims(), "sub", json!("user\u{0}")),
        with(claims(), "sub", json!("u".repeat(257))),
    ] {
        let token = sign_hs256(&bad, SECRET.as_bytes());
        assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    }
}

#[tokio::test]
async fn the_roles_claim_must_be_an_array_of_strings() {
    for bad in [
        with(claims(), "roles", json!("owner")),
        with(claims(), "roles", json!(["owner", 7])),
    ] {
        let token = sign_hs256(&bad, SECRET.as_bytes());
        assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    }
}

#[tokio::test]
async fn a_token_without_known_roles_authenticates_but_may_not_read() {
    for claims in [
        without(claims(), "roles"),
        with(claims(), "roles", json!([])),
        with(claims(), "roles", json!(["admin"])),
    ] {
        let principal = authenticate(hs256_config(), &sign_hs256(&claims, SECRET.as_bytes()))
            .await
            .unwrap();
        assert!(principal.roles.is_empty());
        assert_eq!(
            principal.require_read().unwrap_err().code,
            ErrorCode::Forbidden
        );
    }
}

#[tokio::test]
async fn unsigned_and_unknown_algorithm_tokens_are_refused() {
    let claims = claims();
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None", "typ": "JWT"}),
        json!({"typ": "JWT"}),
        json!({"alg": "HS1024", "typ": "JWT"}),
    ] {
        let token = unsigned_token(&header, &claims);
        assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    }
    // A known algorithm that the configuration does not enable.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert_unauthorized(authenticate(hs256_config(), &token).await, &token);

    for garbage in ["not-a-jwt", "a.b.c", "..", "Bearer"] {
        assert_unauthorized(authenticate(hs256_config(), garbage).await, garbage);
    }
}

#[tokio::test]
async fn asymmetric_tokens_are_refused_without_a_jwks() {
    for token in [
        sign_rs256(&claims(), RSA_KID),
        sign_es256(&claims(), EC_KID),
    ] {
        assert_unauthorized(authenticate(hs256_config(), &token).await, &token);
    }
}

// ---------------------------------------------------------------------------------------------------------
// RS256 / ES256 against a JWKS

#[tokio::test]
async fn rs256_and_es256_tokens_verify_against_the_jwks() {
    let (url, hits) = serve_json(JWKS).await;
    let authenticator = Authenticator::new(jwks_config(&url)).unwrap();

    let principal = authenticator
        .authenticate(&sign_rs256(&claims(), RSA_KID))
        .await
        .unwrap();
    assert_eq!(principal.account_id, "account-1");
    assert_eq!(principal.user_id, "user-1");
    assert_eq!(principal.roles, [Role::Manager, Role::Viewer]);

    let principal = authenticator
        .authenticate(&sign_es256(&claims(), EC_KID))
        .await
        .unwrap();
    assert_eq!(principal.account_id, "account-1");

    // The keys are cached: one fetch for both tokens.
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Still subject to the usual claim checks.
    let expired = sign_rs256(&with(claims(), "exp", json!(now() - 120)), RSA_KID);
    assert_unauthorized(authenticator.authenticate(&expired).await, &expired);
}

#[tokio::test]
async fn the_key_type_must_match_the_algorithm() {
    let (url, _) = serve_json(JWKS).await;
    let authenticator = Authenticator::new(jwks_config(&url)).unwrap();
    // Right signature, but the kid names a key of the other type.
    for token in [
        sign_rs256(&claims(), EC_KID),
        sign_es256(&claims(), RSA_KID),
    ] {
        assert_unauthorized(authenticator.authenticate(&token).await, &token);
    }
    // No kid at all.
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_unauthorized(authenticator.authenticate(&token).await, &token);
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // The algorithm-confusion forgery: the attacker knows the public key and uses it as an HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(RSA_KID.into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(RSA_PUBLIC_PEM.as_bytes()),
    )
    .unwrap();

    let (url, _) = serve_json(JWKS).await;
    let err = assert_unauthorized(authenticate(jwks_config(&url), &forged).await, &forged);
    assert_reason(err, "algorithm");

    // With both configured, HS256 is only ever verified with the configured secret.
    let both = AuthConfig {
        hs256_secret: Some(SECRET.into()),
        ..jwks_config(&url)
    };
    assert_unauthorized(authenticate(both, &forged).await, &forged);
}

#[tokio::test]
async fn unknown_kids_do_not_hammer_the_identity_provider() {
    let (url, hits) = serve_json(JWKS).await;
    let authenticator = Authenticator::new(jwks_config(&url)).unwrap();

    // Concurrently, from a cold cache: the fetches are single-flight and rate limited.
    let tokens: Vec<String> = (0..20)
        .map(|i| sign_rs256(&claims(), &format!("bogus-kid-{i}")))
        .collect();
    let results =
        futures::future::join_all(tokens.iter().map(|token| authenticator.authenticate(token)))
            .await;
    for (result, token) in results.into_iter().zip(&tokens) {
        assert_reason(assert_unauthorized(result, token), "signing key");
    }
    let fetches = hits.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&fetches),
        "{fetches} JWKS fetches for 20 unknown kids"
    );

    // One after the other, with a warm cache: the refetch interval holds them back.
    for token in &tokens {
        assert_unauthorized(authenticator.authenticate(token).await, token);
    }
    assert_eq!(hits.load(Ordering::SeqCst), fetches);

    // The cached keys still verify good tokens without another fetch.
    authenticator
        .authenticate(&sign_es256(&claims(), EC_KID))
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), fetches);
}

#[tokio::test]
async fn an_unreachable_jwks_is_unavailable_not_unauthorized() {
    // A port nobody listens on any more.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    drop(listener);

    let authenticator = Authenticator::new(jwks_config(&url)).unwrap();
    let token = sign_rs256(&claims(), RSA_KID);
    let err = authenticator.authenticate(&token).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(err.retry_after.is_some());
    // Within the refetch interval, the answer stays the same without another attempt.
    let err = authenticator.authenticate(&token).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// The extractor

async fn whoami(principal: Principal) -> HttpResponse {
    HttpResponse::Ok().json(json!({"accountId": principal.account_id, "userId": principal.user_id}))
}

#[actix_web::test]
async fn the_principal_extractor_requires_a_valid_bearer_token() {
    let authenticator = Authenticator::new(hs256_config()).unwrap();
    let app = init_service(
        App::new()
            .app_data(web::Data::new(authenticator))
            .route("/whoami", web::get().to(whoami)),
    )
    .await;

    let good = sign_hs256(&claims(), SECRET.as_bytes());
    let expired = sign_hs256(
        &with(claims(), "exp", json!(now() - 120)),
        SECRET.as_bytes(),
    );
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz".to_string()),
        Some("Bearer".to_string()),
        Some("Bearer ".to_string()),
        Some(format!("Bearer {good} extra")),
        Some(format!("Bearer {expired}")),
    ] {
        let mut request = TestRequest::get().uri("/whoami");
        if let Some(value) = &authorization {
            request = request.insert_header((header::AUTHORIZATION, value.as_str()));
        }
        let response = call_service(&app, request.to_request()).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{authorization:?}"
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer"
        );
        let body: Value = read_body_json(response).await;
        assert_eq!(body["code"], "UNAUTHORIZED");
        assert_eq!(body["status"], 401);
    }

    for scheme in ["Bearer", "bearer"] {
        let request = TestRequest::get()
            .uri("/whoami")
            .insert_header((header::AUTHORIZATION, format!("{scheme} {good}")))
            .to_request();
        let response = call_service(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = read_body_json(response).await;
        assert_eq!(body, json!({"accountId": "account-1", "userId": "user-1"}));
    }
}

#[actix_web::test]
async fn the_principal_extractor_without_an_authenticator_is_an_internal_error() {
    let app = init_service(App::new().route("/whoami", web::get().to(whoami))).await;
    let request = TestRequest::get()
        .uri("/whoami")
        .insert_header((
            header::AUTHORIZATION,
            format!("Bearer {}", sign_hs256(&claims(), SECRET.as_bytes())),
        ))
        .to_request();
    let response = call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}
