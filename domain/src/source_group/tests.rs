//! Given/when/then tests of the SourceGroup aggregate.

use std::collections::BTreeSet;

use cqrs_es::test::TestFramework;

use super::*;
use crate::values::{AccountId, DisplayName};
use crate::{SourceGroupId, SourceId};

type GroupTest = TestFramework<SourceGroup>;

const G1: SourceGroupId = SourceGroupId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000d001,
));

/// Source `n`'s id (`n` < 16), a UUID as the service mints them.
fn source(n: u8) -> SourceId {
    SourceId::from_uuid(uuid::Uuid::from_u128(
        0x0190f5c2_7d3e_7a11_8b2c_00000000b000 + u128::from(n),
    ))
}

fn acme() -> AccountId {
    AccountId::parse("acme").unwrap()
}

fn created() -> SourceGroupEvent {
    SourceGroupEvent::SourceGroupCreated {
        group_id: G1,
        account_id: "acme".into(),
        name: "Finance".into(),
        description: None,
    }
}

fn added(source_id: SourceId) -> SourceGroupEvent {
    SourceGroupEvent::SourceAddedToGroup { source_id }
}

fn add(source_id: SourceId) -> SourceGroupCommand {
    SourceGroupCommand::AddSource {
        account_id: acme(),
        source_id,
    }
}

#[test]
fn creating_a_group() {
    GroupTest::with(())
        .given_no_previous_events()
        .when(SourceGroupCommand::Create {
            group_id: G1,
            account_id: acme(),
            name: DisplayName::parse("Finance").unwrap(),
            description: None,
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn adding_a_source_twice_records_it_once() {
    GroupTest::with(())
        .given(vec![created()])
        .when(add(source(1)))
        .then_expect_events(vec![added(source(1))]);
    GroupTest::with(())
        .given(vec![created(), added(source(1))])
        .when(add(source(1)))
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_non_member_is_not_found() {
    GroupTest::with(())
        .given(vec![created(), added(source(1))])
        .when(SourceGroupCommand::RemoveSource {
            account_id: acme(),
            source_id: source(2),
        })
        .then_expect_error(SourceGroupError::NotAMember);
    GroupTest::with(())
        .given(vec![created(), added(source(1))])
        .when(SourceGroupCommand::RemoveSource {
            account_id: acme(),
            source_id: source(1),
        })
        .then_expect_events(vec![SourceGroupEvent::SourceRemovedFromGroup {
            source_id: source(1),
        }]);
}

#[test]
fn deleting_a_group_names_its_last_members() {
    GroupTest::with(())
        .given(vec![created(), added(source(1)), added(source(2))])
        .when(SourceGroupCommand::Delete { account_id: acme() })
        .then_expect_events(vec![SourceGroupEvent::SourceGroupDeleted {
            source_ids: BTreeSet::from([source(1), source(2)]),
        }]);
    GroupTest::with(())
        .given(vec![
            created(),
            SourceGroupEvent::SourceGroupDeleted {
                source_ids: BTreeSet::new(),
            },
        ])
        .when(add(source(3)))
        .then_expect_error(SourceGroupError::NotFound);
}

#[test]
fn updates_record_only_changes_and_can_clear_the_description() {
    GroupTest::with(())
        .given(vec![created()])
        .when(SourceGroupCommand::Update {
            account_id: acme(),
            name: Some(DisplayName::parse("Finance").unwrap()),
            description: Some(Some(Description::parse("books").unwrap())),
        })
        .then_expect_events(vec![SourceGroupEvent::SourceGroupUpdated {
            name: None,
            description: Some(Some("books".into())),
        }]);
    let cleared = SourceGroupEvent::SourceGroupUpdated {
        name: None,
        description: Some(None),
    };
    let json = serde_json::to_value(&cleared).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"SourceGroupUpdated": {"description": null}})
    );
    assert_eq!(
        serde_json::from_value::<SourceGroupEvent>(json).unwrap(),
        cleared
    );
}

#[test]
fn another_account_cannot_touch_the_group() {
    GroupTest::with(())
        .given(vec![created()])
        .when(SourceGroupCommand::AddSource {
            account_id: AccountId::parse("globex").unwrap(),
            source_id: source(1),
        })
        .then_expect_error(SourceGroupError::NotFound);
}
