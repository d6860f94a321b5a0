//! Given/when/then tests of the SourceGroup aggregate.

use std::collections::BTreeSet;

use cqrs_es::test::TestFramework;

use super::*;
use crate::values::{AccountId, DisplayName};

type GroupTest = TestFramework<SourceGroup>;

fn acme() -> AccountId {
    AccountId::parse("acme").unwrap()
}

fn created() -> SourceGroupEvent {
    SourceGroupEvent::SourceGroupCreated {
        group_id: "g1".into(),
        account_id: "acme".into(),
        name: "Finance".into(),
        description: None,
    }
}

fn added(source_id: &str) -> SourceGroupEvent {
    SourceGroupEvent::SourceAddedToGroup {
        source_id: source_id.into(),
    }
}

fn add(source_id: &str) -> SourceGroupCommand {
    SourceGroupCommand::AddSource {
        account_id: acme(),
        source_id: source_id.into(),
    }
}

#[test]
fn creating_a_group() {
    GroupTest::with(())
        .given_no_previous_events()
        .when(SourceGroupCommand::Create {
            group_id: "g1".into(),
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
        .when(add("s1"))
        .then_expect_events(vec![added("s1")]);
    GroupTest::with(())
        .given(vec![created(), added("s1")])
        .when(add("s1"))
        .then_expect_events(vec![]);
}

#[test]
fn removing_a_non_member_is_not_found() {
    GroupTest::with(())
        .given(vec![created(), added("s1")])
        .when(SourceGroupCommand::RemoveSource {
            account_id: acme(),
            source_id: "s2".into(),
        })
        .then_expect_error(SourceGroupError::NotAMember);
    GroupTest::with(())
        .given(vec![created(), added("s1")])
        .when(SourceGroupCommand::RemoveSource {
            account_id: acme(),
            source_id: "s1".into(),
        })
        .then_expect_events(vec![SourceGroupEvent::SourceRemovedFromGroup {
            source_id: "s1".into(),
        }]);
}

#[test]
fn deleting_a_group_names_its_last_members() {
    GroupTest::with(())
        .given(vec![created(), added("s1"), added("s2")])
        .when(SourceGroupCommand::Delete { account_id: acme() })
        .then_expect_events(vec![SourceGroupEvent::SourceGroupDeleted {
            source_ids: BTreeSet::from(["s1".to_owned(), "s2".to_owned()]),
        }]);
    GroupTest::with(())
        .given(vec![
            created(),
            SourceGroupEvent::SourceGroupDeleted {
                source_ids: BTreeSet::new(),
            },
        ])
        .when(add("s3"))
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
            source_id: "s1".into(),
        })
        .then_expect_error(SourceGroupError::NotFound);
}
