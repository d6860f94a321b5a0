//! Given/when/then tests of the Connection aggregate with cqrs-es's TestFramework.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::platform::PlatformId;
use crate::values::{AccountId, CredentialRef, DisplayName};
use crate::ConnectionId;

type ConnectionTest = TestFramework<Connection>;

const C1: ConnectionId = ConnectionId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000c001,
));
const C2: ConnectionId = ConnectionId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000c002,
));

fn account(raw: &str) -> AccountId {
    AccountId::parse(raw).unwrap()
}

fn credential(fingerprint: &str) -> CredentialRef {
    CredentialRef {
        key_id: "k1".into(),
        fingerprint: fingerprint.into(),
    }
}

fn created() -> ConnectionEvent {
    ConnectionEvent::ConnectionCreated {
        connection_id: C1,
        account_id: "acme".into(),
        platform_id: "stripe".into(),
        name: "Stripe live".into(),
        auth_type: ConnectionAuth::ApiKey,
        settings: BTreeMap::new(),
        credential_fields: vec!["secretKey".into()],
        credential: credential("f1"),
        external_account: None,
    }
}

fn google_account() -> ExternalAccount {
    ExternalAccount {
        id: "g-123".into(),
        name: "ann@example.com".into(),
    }
}

fn oauth_grant(fingerprint: &str, external: Option<ExternalAccount>) -> OauthGrant {
    OauthGrant {
        settings: BTreeMap::new(),
        credential_fields: vec!["accessToken".into(), "refreshToken".into()],
        credential: credential(fingerprint),
        external_account: external,
    }
}

fn oauth_created() -> ConnectionEvent {
    ConnectionEvent::ConnectionCreated {
        connection_id: C2,
        account_id: "acme".into(),
        platform_id: "google".into(),
        name: "Drive".into(),
        auth_type: ConnectionAuth::Oauth2,
        settings: BTreeMap::new(),
        credential_fields: vec!["accessToken".into(), "refreshToken".into()],
        credential: credential("o1"),
        external_account: Some(google_account()),
    }
}

fn reauth_required() -> ConnectionEvent {
    ConnectionEvent::ConnectionReauthRequired {
        reason: "invalid_grant".into(),
    }
}

#[test]
fn an_oauth_authorization_creates_a_connection_with_its_external_account() {
    ConnectionTest::with(())
        .given_no_previous_events()
        .when(ConnectionCommand::CreateOauth {
            connection_id: C2,
            account_id: account("acme"),
            platform_id: PlatformId::parse("google").unwrap(),
            name: DisplayName::parse("Drive").unwrap(),
            grant: oauth_grant("o1", Some(google_account())),
        })
        .then_expect_events(vec![oauth_created()]);
}

#[test]
fn a_refresh_records_the_expiry_and_the_new_fingerprint_only() {
    let expires_at = Utc.with_ymd_and_hms(2026, 11, 24, 13, 0, 0).unwrap();
    ConnectionTest::with(())
        .given(vec![oauth_created()])
        .when(ConnectionCommand::RecordTokenRefresh {
            account_id: account("acme"),
            expires_at: Some(expires_at),
            credential: credential("o2"),
        })
        .then_expect_events(vec![ConnectionEvent::TokenRefreshed {
            expires_at: Some(expires_at),
            credential: credential("o2"),
        }]);
}

#[test]
fn a_transient_refresh_failure_keeps_the_connection_active() {
    ConnectionTest::with(())
        .given(vec![oauth_created()])
        .when(ConnectionCommand::RecordTokenRefreshFailure {
            account_id: account("acme"),
            reason: "token endpoint answered 503".into(),
            permanent: false,
        })
        .then_expect_events(vec![ConnectionEvent::TokenRefreshFailed {
            reason: "token endpoint answered 503".into(),
            permanent: false,
        }]);
}

#[test]
fn invalid_grant_expires_the_connection() {
    ConnectionTest::with(())
        .given(vec![oauth_created()])
        .when(ConnectionCommand::RecordTokenRefreshFailure {
            account_id: account("acme"),
            reason: "invalid_grant".into(),
            permanent: true,
        })
        .then_expect_events(vec![
            ConnectionEvent::TokenRefreshFailed {
                reason: "invalid_grant".into(),
                permanent: true,
            },
            reauth_required(),
        ]);
}

#[test]
fn an_expired_connection_is_not_asked_to_reauthorize_twice() {
    ConnectionTest::with(())
        .given(vec![oauth_created(), reauth_required()])
        .when(ConnectionCommand::RecordTokenRefreshFailure {
            account_id: account("acme"),
            reason: "invalid_grant".into(),
            permanent: true,
        })
        .then_expect_events(vec![ConnectionEvent::TokenRefreshFailed {
            reason: "invalid_grant".into(),
            permanent: true,
        }]);
}

#[test]
fn an_expired_connection_cannot_record_a_refresh() {
    ConnectionTest::with(())
        .given(vec![oauth_created(), reauth_required()])
        .when(ConnectionCommand::RecordTokenRefresh {
            account_id: account("acme"),
            expires_at: None,
            credential: credential("o3"),
        })
        .then_expect_error(ConnectionError::ReauthRequired);
}

#[test]
fn reconnecting_brings_an_expired_connection_back() {
    let grant = oauth_grant("o4", Some(google_account()));
    ConnectionTest::with(())
        .given(vec![oauth_created(), reauth_required()])
        .when(ConnectionCommand::Reauthorize {
            account_id: account("acme"),
            grant,
        })
        .then_expect_events(vec![ConnectionEvent::ConnectionReauthorized {
            settings: BTreeMap::new(),
            credential_fields: vec!["accessToken".into(), "refreshToken".into()],
            credential: credential("o4"),
            external_account: Some(google_account()),
        }]);
}

#[test]
fn an_expired_connection_is_still_visible_and_reauthorized_is_active_again() {
    let mut connection = Connection::default();
    for event in [oauth_created(), reauth_required()] {
        cqrs_es::Aggregate::apply(&mut connection, event);
    }
    assert_eq!(connection.status(), ConnectionStatus::Expired);
    assert!(connection.is_live_for("acme"));
    assert!(!connection.is_active_for("acme"));
    cqrs_es::Aggregate::apply(
        &mut connection,
        ConnectionEvent::ConnectionReauthorized {
            settings: BTreeMap::new(),
            credential_fields: vec![],
            credential: credential("o5"),
            external_account: None,
        },
    );
    assert!(connection.is_active_for("acme"));
    assert_eq!(connection.credential_fingerprint(), "o5");
}

#[test]
fn reconnecting_with_another_platform_account_is_refused() {
    let other = ExternalAccount {
        id: "g-999".into(),
        name: "bob@example.com".into(),
    };
    ConnectionTest::with(())
        .given(vec![oauth_created()])
        .when(ConnectionCommand::Reauthorize {
            account_id: account("acme"),
            grant: oauth_grant("o6", Some(other)),
        })
        .then_expect_error(ConnectionError::OtherExternalAccount(
            "bob@example.com".into(),
        ));
}

#[test]
fn api_key_connections_have_no_tokens_to_refresh_or_reconnect() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::RecordTokenRefresh {
            account_id: account("acme"),
            expires_at: None,
            credential: credential("x"),
        })
        .then_expect_error(ConnectionError::NotOauth);
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Reauthorize {
            account_id: account("acme"),
            grant: oauth_grant("x", None),
        })
        .then_expect_error(ConnectionError::NotOauth);
}

#[test]
fn oauth_events_carry_no_secret_fields() {
    let events = [
        oauth_created(),
        ConnectionEvent::TokenRefreshed {
            expires_at: None,
            credential: credential("o2"),
        },
        ConnectionEvent::TokenRefreshFailed {
            reason: "invalid_grant".into(),
            permanent: true,
        },
        reauth_required(),
    ];
    for event in events {
        let json = serde_json::to_string(&event).unwrap().to_lowercase();
        for word in ["access_token\"", "refresh_token\"", "\"code\"", "verifier"] {
            assert!(!json.contains(word), "{json}");
        }
    }
}

#[test]
fn creating_records_a_reference_to_the_credentials_not_the_secret() {
    ConnectionTest::with(())
        .given_no_previous_events()
        .when(ConnectionCommand::Create {
            connection_id: C1,
            account_id: account("acme"),
            platform_id: PlatformId::parse("stripe").unwrap(),
            name: DisplayName::parse(" Stripe live ").unwrap(),
            auth: ConnectionAuth::ApiKey,
            settings: BTreeMap::new(),
            credential_fields: vec!["secretKey".into()],
            credential: credential("f1"),
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn creating_twice_conflicts() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Create {
            connection_id: C1,
            account_id: account("acme"),
            platform_id: PlatformId::parse("stripe").unwrap(),
            name: DisplayName::parse("again").unwrap(),
            auth: ConnectionAuth::ApiKey,
            settings: BTreeMap::new(),
            credential_fields: vec![],
            credential: credential("f2"),
        })
        .then_expect_error(ConnectionError::AlreadyExists);
}

#[test]
fn renaming_records_the_new_name() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Update {
            account_id: account("acme"),
            name: Some(DisplayName::parse("Stripe EU").unwrap()),
            credentials: None,
        })
        .then_expect_events(vec![ConnectionEvent::ConnectionRenamed {
            name: "Stripe EU".into(),
        }]);
}

#[test]
fn renaming_to_the_same_name_records_nothing() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Update {
            account_id: account("acme"),
            name: Some(DisplayName::parse("Stripe live").unwrap()),
            credentials: None,
        })
        .then_expect_events(vec![]);
}

#[test]
fn another_account_cannot_tell_the_connection_exists() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Delete {
            account_id: account("intruder"),
        })
        .then_expect_error(ConnectionError::NotFound);
}

#[test]
fn a_deleted_connection_is_gone() {
    ConnectionTest::with(())
        .given(vec![created(), ConnectionEvent::ConnectionDeleted {}])
        .when(ConnectionCommand::Update {
            account_id: account("acme"),
            name: Some(DisplayName::parse("back").unwrap()),
            credentials: None,
        })
        .then_expect_error(ConnectionError::NotFound);
}

#[test]
fn commands_on_a_missing_connection_are_not_found() {
    ConnectionTest::with(())
        .given_no_previous_events()
        .when(ConnectionCommand::Delete {
            account_id: account("acme"),
        })
        .then_expect_error(ConnectionError::NotFound);
}

#[test]
fn a_test_result_is_recorded() {
    let checked_at = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::RecordTest {
            account_id: account("acme"),
            ok: false,
            latency_ms: 12,
            message: "credentials rejected (401)".into(),
            checked_at,
            code: Some("UNAUTHORIZED".into()),
        })
        .then_expect_events(vec![ConnectionEvent::ConnectionTested(
            ConnectionTestResult {
                ok: false,
                latency_ms: 12,
                message: "credentials rejected (401)".into(),
                checked_at,
                code: Some("UNAUTHORIZED".into()),
            },
        )]);
}

#[test]
fn a_test_result_recorded_before_its_code_reads_unchanged() {
    let stored = serde_json::json!({"ConnectionTested": {
        "ok": false, "latencyMs": 12, "message": "credentials rejected (401)",
        "checkedAt": "2026-11-24T12:00:00Z"}});
    let event: ConnectionEvent = serde_json::from_value(stored.clone()).unwrap();
    let ConnectionEvent::ConnectionTested(result) = &event else {
        panic!("{event:?}")
    };
    assert_eq!(result.code, None);
    assert_eq!(serde_json::to_value(&event).unwrap(), stored);
}

#[test]
fn renaming_and_replacing_credentials_is_one_commit() {
    ConnectionTest::with(())
        .given(vec![created()])
        .when(ConnectionCommand::Update {
            account_id: account("acme"),
            name: Some(DisplayName::parse("Renamed").unwrap()),
            credentials: Some(CredentialsChange {
                settings: BTreeMap::new(),
                credential_fields: vec!["secretKey".into()],
                credential: credential("f2"),
            }),
        })
        .then_expect_events(vec![
            ConnectionEvent::ConnectionRenamed {
                name: "Renamed".into(),
            },
            ConnectionEvent::CredentialsReplaced {
                settings: BTreeMap::new(),
                credential_fields: vec!["secretKey".into()],
                credential: credential("f2"),
            },
        ]);
}
