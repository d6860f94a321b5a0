//! Given/when/then tests of the Connection aggregate with cqrs-es's TestFramework.

use std::collections::BTreeMap;

use chrono::{TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::platform::PlatformId;
use crate::values::{AccountId, CredentialRef, DisplayName};

type ConnectionTest = TestFramework<Connection>;

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
        connection_id: "c1".into(),
        account_id: "acme".into(),
        platform_id: "stripe".into(),
        name: "Stripe live".into(),
        auth_type: ConnectionAuth::ApiKey,
        settings: BTreeMap::new(),
        credential_fields: vec!["secretKey".into()],
        credential: credential("f1"),
    }
}

#[test]
fn creating_records_a_reference_to_the_credentials_not_the_secret() {
    ConnectionTest::with(())
        .given_no_previous_events()
        .when(ConnectionCommand::Create {
            connection_id: "c1".into(),
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
            connection_id: "c1".into(),
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
        })
        .then_expect_events(vec![ConnectionEvent::ConnectionTested(
            ConnectionTestResult {
                ok: false,
                latency_ms: 12,
                message: "credentials rejected (401)".into(),
                checked_at,
            },
        )]);
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
