//! Given/when/then tests of the Source aggregate with cqrs-es's TestFramework.

use cqrs_es::test::TestFramework;

use super::*;
use crate::platform::PlatformId;
use crate::values::{AccountId, DisplayName};

type SourceTest = TestFramework<Source>;

fn account(raw: &str) -> AccountId {
    AccountId::parse(raw).unwrap()
}

fn schedule(json: serde_json::Value) -> Schedule {
    Schedule::parse(&serde_json::from_value(json).unwrap()).unwrap()
}

fn stripe() -> PlatformId {
    PlatformId::parse("stripe").unwrap()
}

fn all_stripe_types() -> Vec<String> {
    DataTypes::all_of(stripe().platform()).names().to_vec()
}

fn created() -> SourceEvent {
    SourceEvent::SourceCreated {
        source_id: "s1".into(),
        account_id: "acme".into(),
        connection_id: "c1".into(),
        platform_id: "stripe".into(),
        name: "Stripe nightly".into(),
        data_types: all_stripe_types(),
        schedule: Schedule::default(),
        retention_days: 90,
        incremental: true,
    }
}

fn update(changes: SourceChanges) -> SourceCommand {
    SourceCommand::Update {
        account_id: account("acme"),
        changes,
    }
}

#[test]
fn creating_a_source_records_every_setting() {
    SourceTest::with(())
        .given_no_previous_events()
        .when(SourceCommand::Create {
            source_id: "s1".into(),
            account_id: account("acme"),
            connection_id: "c1".into(),
            platform_id: stripe(),
            name: DisplayName::parse("Stripe nightly").unwrap(),
            data_types: DataTypes::all_of(stripe().platform()),
            schedule: Schedule::default(),
            retention_days: RetentionDays::DEFAULT,
            incremental: true,
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn a_source_cannot_be_created_twice() {
    SourceTest::with(())
        .given(vec![created()])
        .when(SourceCommand::Create {
            source_id: "s1".into(),
            account_id: account("acme"),
            connection_id: "c1".into(),
            platform_id: stripe(),
            name: DisplayName::parse("again").unwrap(),
            data_types: DataTypes::all_of(stripe().platform()),
            schedule: Schedule::default(),
            retention_days: RetentionDays::DEFAULT,
            incremental: true,
        })
        .then_expect_error(SourceError::AlreadyExists);
}

#[test]
fn an_update_records_only_what_changes() {
    let hourly = schedule(serde_json::json!({"frequency": "hourly"}));
    SourceTest::with(())
        .given(vec![created()])
        .when(update(SourceChanges {
            name: Some(DisplayName::parse("Stripe nightly").unwrap()),
            schedule: Some(hourly.clone()),
            retention_days: Some(RetentionDays::parse(90).unwrap()),
            incremental: Some(false),
            ..SourceChanges::default()
        }))
        .then_expect_events(vec![SourceEvent::SourceUpdated {
            name: None,
            data_types: None,
            schedule: Some(hourly),
            retention_days: None,
            incremental: Some(false),
        }]);
}

#[test]
fn an_update_that_changes_nothing_records_nothing() {
    SourceTest::with(())
        .given(vec![created()])
        .when(update(SourceChanges {
            schedule: Some(Schedule::default()),
            status: Some(WantedStatus::Active),
            ..SourceChanges::default()
        }))
        .then_expect_events(vec![]);
}

#[test]
fn data_types_must_belong_to_the_platform() {
    SourceTest::with(())
        .given(vec![created()])
        .when(update(SourceChanges {
            data_types: Some(vec!["tweets".into()]),
            ..SourceChanges::default()
        }))
        .then_expect_error_message(
            "`tweets` is not a data type of Stripe (see GET /platforms/stripe)",
        );
}

#[test]
fn pausing_and_resuming() {
    SourceTest::with(())
        .given(vec![created()])
        .when(update(SourceChanges {
            status: Some(WantedStatus::Paused),
            name: Some(DisplayName::parse("Renamed").unwrap()),
            ..SourceChanges::default()
        }))
        .then_expect_events(vec![
            SourceEvent::SourceUpdated {
                name: Some("Renamed".into()),
                data_types: None,
                schedule: None,
                retention_days: None,
                incremental: None,
            },
            SourceEvent::SourcePaused {},
        ]);
    SourceTest::with(())
        .given(vec![created(), SourceEvent::SourcePaused {}])
        .when(update(SourceChanges {
            status: Some(WantedStatus::Active),
            ..SourceChanges::default()
        }))
        .then_expect_events(vec![SourceEvent::SourceResumed {}]);
}

#[test]
fn a_deleted_source_is_not_found() {
    SourceTest::with(())
        .given(vec![created(), SourceEvent::SourceDeleted {}])
        .when(update(SourceChanges {
            incremental: Some(false),
            ..SourceChanges::default()
        }))
        .then_expect_error(SourceError::NotFound);
    SourceTest::with(())
        .given(vec![created(), SourceEvent::SourceDeleted {}])
        .when(SourceCommand::Delete {
            account_id: account("acme"),
        })
        .then_expect_error(SourceError::NotFound);
}

#[test]
fn another_accounts_source_is_not_found() {
    SourceTest::with(())
        .given(vec![created()])
        .when(SourceCommand::Delete {
            account_id: account("globex"),
        })
        .then_expect_error(SourceError::NotFound);
}

#[test]
fn events_round_trip_through_json() {
    let event = created();
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["SourceCreated"]["schedule"]["frequency"], "daily");
    assert_eq!(json["SourceCreated"]["retentionDays"], 90);
    assert_eq!(serde_json::from_value::<SourceEvent>(json).unwrap(), event);
}

fn request_sync(job_id: &str) -> SourceCommand {
    SourceCommand::RequestSync {
        account_id: account("acme"),
        job_id: job_id.into(),
        trigger: crate::job::JobTrigger::Manual,
        retry_of: None,
        group_id: None,
    }
}

fn sync_requested(job_id: &str) -> SourceEvent {
    SourceEvent::SyncRequested {
        job_id: job_id.into(),
        trigger: crate::job::JobTrigger::Manual,
        retry_of: None,
        group_id: None,
    }
}

fn finish_sync(job_id: &str) -> SourceCommand {
    SourceCommand::FinishSync {
        account_id: account("acme"),
        job_id: job_id.into(),
        outcome: SyncOutcome::Failed,
        cursors: Default::default(),
    }
}

#[test]
fn requesting_a_sync_queues_a_job() {
    SourceTest::with(())
        .given(vec![created()])
        .when(request_sync("j1"))
        .then_expect_events(vec![sync_requested("j1")]);
}

#[test]
fn a_second_sync_while_one_is_queued_or_running_conflicts() {
    SourceTest::with(())
        .given(vec![created(), sync_requested("j1")])
        .when(request_sync("j2"))
        .then_expect_error(SourceError::SyncInProgress("j1".into()));
}

#[test]
fn a_finished_sync_frees_the_source() {
    SourceTest::with(())
        .given(vec![created(), sync_requested("j1")])
        .when(finish_sync("j1"))
        .then_expect_events(vec![SourceEvent::SyncFinished {
            job_id: "j1".into(),
            outcome: SyncOutcome::Failed,
            cursors: Default::default(),
        }]);
    SourceTest::with(())
        .given(vec![
            created(),
            sync_requested("j1"),
            SourceEvent::SyncFinished {
                job_id: "j1".into(),
                outcome: SyncOutcome::Succeeded,
                cursors: Default::default(),
            },
        ])
        .when(request_sync("j2"))
        .then_expect_events(vec![sync_requested("j2")]);
}

#[test]
fn finishing_a_job_that_is_not_the_current_one_records_nothing() {
    SourceTest::with(())
        .given(vec![created(), sync_requested("j2")])
        .when(finish_sync("j1"))
        .then_expect_events(vec![]);
}

#[test]
fn another_account_cannot_sync_a_source() {
    SourceTest::with(())
        .given(vec![created()])
        .when(SourceCommand::RequestSync {
            account_id: account("other"),
            job_id: "j1".into(),
            trigger: crate::job::JobTrigger::Manual,
            retry_of: None,
            group_id: None,
        })
        .then_expect_error(SourceError::NotFound);
}
