//! Given/when/then tests of the Source aggregate with cqrs-es's TestFramework.

use cqrs_es::test::TestFramework;

use super::*;
use crate::platform::PlatformId;
use crate::values::{AccountId, DisplayName};
use crate::{ConnectionId, JobId, SourceId};

type SourceTest = TestFramework<Source>;

const S1: SourceId = SourceId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000b001,
));
const S2: SourceId = SourceId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000b002,
));
const C1: ConnectionId = ConnectionId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000c001,
));
/// `job(1)` as events store it.
const J1_TEXT: &str = "0190f5c2-7d3e-7a11-8b2c-00000000a001";

/// Job `n`'s id (`n` < 16), a UUID as the service mints them.
fn job(n: u8) -> JobId {
    JobId::from_uuid(uuid::Uuid::from_u128(
        0x0190f5c2_7d3e_7a11_8b2c_00000000a000 + u128::from(n),
    ))
}

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
        source_id: S1,
        account_id: "acme".into(),
        connection_id: C1,
        platform_id: "stripe".into(),
        name: "Stripe nightly".into(),
        data_types: all_stripe_types(),
        schedule: Schedule::default(),
        retention_days: 90,
        incremental: true,
        keep_last: None,
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
            source_id: S1,
            account_id: account("acme"),
            connection_id: C1,
            platform_id: stripe(),
            name: DisplayName::parse("Stripe nightly").unwrap(),
            data_types: DataTypes::all_of(stripe().platform()),
            schedule: Schedule::default(),
            retention_days: RetentionDays::DEFAULT,
            incremental: true,
            keep_last: None,
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn a_source_cannot_be_created_twice() {
    SourceTest::with(())
        .given(vec![created()])
        .when(SourceCommand::Create {
            source_id: S1,
            account_id: account("acme"),
            connection_id: C1,
            platform_id: stripe(),
            name: DisplayName::parse("again").unwrap(),
            data_types: DataTypes::all_of(stripe().platform()),
            schedule: Schedule::default(),
            retention_days: RetentionDays::DEFAULT,
            incremental: true,
            keep_last: None,
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
            keep_last: None,
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
                keep_last: None,
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

fn request_sync(job_id: JobId) -> SourceCommand {
    SourceCommand::RequestSync {
        account_id: account("acme"),
        job_id,
        trigger: crate::job::JobTrigger::Manual,
        retry_of: None,
        group_id: None,
        data_types: None,
    }
}

fn sync_requested(job_id: JobId) -> SourceEvent {
    SourceEvent::SyncRequested {
        job_id,
        trigger: crate::job::JobTrigger::Manual,
        retry_of: None,
        group_id: None,
        slot: None,
        data_types: None,
    }
}

fn finish_sync(job_id: JobId) -> SourceCommand {
    SourceCommand::FinishSync {
        account_id: account("acme"),
        job_id,
        outcome: SyncOutcome::Failed,
        cursors: Default::default(),
        backed_up: None,
    }
}

#[test]
fn requesting_a_sync_queues_a_job() {
    SourceTest::with(())
        .given(vec![created()])
        .when(request_sync(job(1)))
        .then_expect_events(vec![sync_requested(job(1))]);
}

#[test]
fn a_second_sync_while_one_is_queued_or_running_conflicts() {
    SourceTest::with(())
        .given(vec![created(), sync_requested(job(1))])
        .when(request_sync(job(2)))
        .then_expect_error(SourceError::SyncInProgress(job(1)));
}

#[test]
fn a_finished_sync_frees_the_source() {
    SourceTest::with(())
        .given(vec![created(), sync_requested(job(1))])
        .when(finish_sync(job(1)))
        .then_expect_events(vec![SourceEvent::SyncFinished {
            job_id: job(1),
            outcome: SyncOutcome::Failed,
            cursors: Default::default(),
            backed_up: None,
        }]);
    SourceTest::with(())
        .given(vec![
            created(),
            sync_requested(job(1)),
            SourceEvent::SyncFinished {
                job_id: job(1),
                outcome: SyncOutcome::Succeeded,
                cursors: Default::default(),
                backed_up: None,
            },
        ])
        .when(request_sync(job(2)))
        .then_expect_events(vec![sync_requested(job(2))]);
}

#[test]
fn finishing_a_job_that_is_not_the_current_one_records_nothing() {
    SourceTest::with(())
        .given(vec![created(), sync_requested(job(2))])
        .when(finish_sync(job(1)))
        .then_expect_events(vec![]);
}

#[test]
fn another_account_cannot_sync_a_source() {
    SourceTest::with(())
        .given(vec![created()])
        .when(SourceCommand::RequestSync {
            account_id: account("other"),
            job_id: job(1),
            trigger: crate::job::JobTrigger::Manual,
            retry_of: None,
            group_id: None,
            data_types: None,
        })
        .then_expect_error(SourceError::NotFound);
}

fn every_minute() -> Schedule {
    schedule(serde_json::json!({"cron": "* * * * *"}))
}

fn created_every_minute() -> SourceEvent {
    match created() {
        SourceEvent::SourceCreated {
            source_id,
            account_id,
            connection_id,
            platform_id,
            name,
            data_types,
            retention_days,
            incremental,
            ..
        } => SourceEvent::SourceCreated {
            source_id,
            account_id,
            connection_id,
            platform_id,
            name,
            data_types,
            schedule: every_minute(),
            retention_days,
            incremental,
            keep_last: None,
        },
        other => other,
    }
}

fn at(hour: u32, minute: u32) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(2026, 3, 10, hour, minute, 0)
        .unwrap()
}

fn run_slot(slot: chrono::DateTime<chrono::Utc>) -> SourceCommand {
    SourceCommand::RunScheduledSlot {
        account_id: account("acme"),
        slot,
    }
}

fn scheduled(slot: chrono::DateTime<chrono::Utc>) -> SourceEvent {
    SourceEvent::SyncRequested {
        job_id: scheduled_job_id(S1, slot),
        trigger: crate::job::JobTrigger::Schedule,
        retry_of: None,
        group_id: None,
        slot: Some(slot),
        data_types: None,
    }
}

#[test]
fn a_slot_queues_a_job_named_by_the_source_and_the_slot() {
    SourceTest::with(())
        .given(vec![created_every_minute()])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![scheduled(at(12, 0))]);
    let id = *scheduled_job_id(S1, at(12, 0)).as_uuid();
    assert_eq!(id.get_version_num(), 7, "a UUID v7 like every id");
    let (seconds, _) = id.get_timestamp().unwrap().to_unix();
    assert_eq!(seconds as i64, at(12, 0).timestamp(), "ordered by its slot");
    assert_eq!(
        scheduled_job_id(S1, at(12, 0)),
        scheduled_job_id(S1, at(12, 0))
    );
    assert_ne!(
        scheduled_job_id(S1, at(12, 0)),
        scheduled_job_id(S1, at(12, 1))
    );
    assert_ne!(
        scheduled_job_id(S1, at(12, 0)),
        scheduled_job_id(S2, at(12, 0))
    );
}

#[test]
fn a_slot_already_handled_records_nothing() {
    // The second scheduler to offer the slot: the job is queued (or finished) already.
    SourceTest::with(())
        .given(vec![created_every_minute(), scheduled(at(12, 0))])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![]);
    SourceTest::with(())
        .given(vec![
            created_every_minute(),
            scheduled(at(12, 1)),
            SourceEvent::SyncFinished {
                job_id: scheduled_job_id(S1, at(12, 1)),
                outcome: SyncOutcome::Succeeded,
                cursors: Default::default(),
                backed_up: None,
            },
        ])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![]);
}

#[test]
fn a_slot_while_a_job_is_unfinished_is_skipped_once() {
    let skipped = SourceEvent::SyncSkipped {
        slot: at(12, 1),
        active_job_id: job(1),
        reason: SkipReason::JobInProgress,
    };
    SourceTest::with(())
        .given(vec![created_every_minute(), sync_requested(job(1))])
        .when(run_slot(at(12, 1)))
        .then_expect_events(vec![skipped.clone()]);
    SourceTest::with(())
        .given(vec![
            created_every_minute(),
            sync_requested(job(1)),
            skipped,
        ])
        .when(run_slot(at(12, 1)))
        .then_expect_events(vec![]);
}

#[test]
fn the_next_slot_after_a_skip_runs_once_the_job_has_finished() {
    SourceTest::with(())
        .given(vec![
            created_every_minute(),
            sync_requested(job(1)),
            SourceEvent::SyncSkipped {
                slot: at(12, 1),
                active_job_id: job(1),
                reason: SkipReason::JobInProgress,
            },
            SourceEvent::SyncFinished {
                job_id: job(1),
                outcome: SyncOutcome::Succeeded,
                cursors: Default::default(),
                backed_up: None,
            },
        ])
        .when(run_slot(at(12, 2)))
        .then_expect_events(vec![scheduled(at(12, 2))]);
}

#[test]
fn paused_manual_and_rescheduled_sources_run_no_slot() {
    SourceTest::with(())
        .given(vec![created_every_minute(), SourceEvent::SourcePaused {}])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![]);
    let manual = SourceEvent::SourceUpdated {
        name: None,
        data_types: None,
        schedule: Some(schedule(serde_json::json!({"frequency": "manual"}))),
        retention_days: None,
        incremental: None,
        keep_last: None,
    };
    SourceTest::with(())
        .given(vec![created_every_minute(), manual])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![]);
    // The default schedule fires daily at 02:00: 12:00 is a stale slot of an older schedule, not one of this.
    SourceTest::with(())
        .given(vec![created()])
        .when(run_slot(at(12, 0)))
        .then_expect_events(vec![]);
    SourceTest::with(())
        .given(vec![created()])
        .when(run_slot(at(2, 0)))
        .then_expect_events(vec![scheduled(at(2, 0))]);
}

#[test]
fn a_deleted_source_runs_no_slot() {
    SourceTest::with(())
        .given(vec![created_every_minute(), SourceEvent::SourceDeleted {}])
        .when(run_slot(at(12, 0)))
        .then_expect_error(SourceError::NotFound);
}

#[test]
fn scheduler_events_round_trip_and_old_sync_requests_still_decode() {
    let old = serde_json::json!({"SyncRequested": {"jobId": J1_TEXT, "trigger": "manual"}});
    assert_eq!(
        serde_json::from_value::<SourceEvent>(old).unwrap(),
        sync_requested(job(1))
    );
    let event = scheduled(at(12, 0));
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["SyncRequested"]["slot"], "2026-03-10T12:00:00Z");
    assert_eq!(json["SyncRequested"]["trigger"], "schedule");
    assert_eq!(serde_json::from_value::<SourceEvent>(json).unwrap(), event);
    let skipped = SourceEvent::SyncSkipped {
        slot: at(12, 1),
        active_job_id: job(1),
        reason: SkipReason::JobInProgress,
    };
    let json = serde_json::to_value(&skipped).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"SyncSkipped": {"slot": "2026-03-10T12:01:00Z", "activeJobId": J1_TEXT, "reason": "job_in_progress"}})
    );
    assert_eq!(
        serde_json::from_value::<SourceEvent>(json).unwrap(),
        skipped
    );
}

#[test]
fn the_last_successful_job_leaves_its_cursors_for_the_next_one() {
    use cqrs_es::Aggregate;
    let finished =
        |job_id: JobId, outcome, cursor: Option<serde_json::Value>| SourceEvent::SyncFinished {
            job_id,
            outcome,
            cursors: cursor
                .into_iter()
                .map(|c| ("events".to_owned(), c))
                .collect(),
            backed_up: None,
        };
    let mut source = Source::default();
    source.apply(created());
    assert!(source.incremental());
    assert!(source.cursors().is_empty());
    source.apply(sync_requested(job(1)));
    source.apply(finished(
        job(1),
        SyncOutcome::Succeeded,
        Some(serde_json::json!({"since": 1})),
    ));
    assert_eq!(source.cursors()["events"], serde_json::json!({"since": 1}));
    // A failed job stored nothing to continue from: the next job still starts from j1's cursors.
    source.apply(sync_requested(job(2)));
    source.apply(finished(
        job(2),
        SyncOutcome::Failed,
        Some(serde_json::json!({"since": 2})),
    ));
    assert_eq!(source.cursors()["events"], serde_json::json!({"since": 1}));
    // A successful job without a cursor for a data type (deselected since) drops the old one.
    source.apply(sync_requested(job(3)));
    source.apply(finished(job(3), SyncOutcome::Succeeded, None));
    assert!(source.cursors().is_empty());
}

// ---- retries of some data types, and partial jobs -----------------------------------------------------------

fn request_data_types(job_id: JobId, data_types: &[&str]) -> SourceCommand {
    SourceCommand::RequestSync {
        account_id: account("acme"),
        job_id,
        trigger: crate::job::JobTrigger::Retry,
        retry_of: Some(job(0)),
        group_id: None,
        data_types: Some(data_types.iter().map(|d| d.to_string()).collect()),
    }
}

fn retry_requested(job_id: JobId, data_types: &[&str]) -> SourceEvent {
    SourceEvent::SyncRequested {
        job_id,
        trigger: crate::job::JobTrigger::Retry,
        retry_of: Some(job(0)),
        group_id: None,
        slot: None,
        data_types: Some(data_types.iter().map(|d| d.to_string()).collect()),
    }
}

fn deselect_all_but(kept: &[&str]) -> SourceEvent {
    SourceEvent::SourceUpdated {
        name: None,
        data_types: Some(kept.iter().map(|d| d.to_string()).collect()),
        schedule: None,
        retention_days: None,
        incremental: None,
        keep_last: None,
    }
}

#[test]
fn a_retry_runs_the_requested_data_types_the_source_still_selects_in_its_order() {
    SourceTest::with(())
        .given(vec![created()])
        .when(request_data_types(job(1), &["payouts", "disputes"]))
        .then_expect_events(vec![retry_requested(job(1), &["disputes", "payouts"])]);
    // One of them deselected since: the other still runs.
    SourceTest::with(())
        .given(vec![created(), deselect_all_but(&["customers", "payouts"])])
        .when(request_data_types(job(1), &["disputes", "payouts"]))
        .then_expect_events(vec![retry_requested(job(1), &["payouts"])]);
}

#[test]
fn a_retry_of_data_types_all_deselected_since_conflicts() {
    SourceTest::with(())
        .given(vec![created(), deselect_all_but(&["customers"])])
        .when(request_data_types(job(1), &["disputes", "payouts"]))
        .then_expect_error(SourceError::DataTypesNoLongerSelected(vec![
            "disputes".into(),
            "payouts".into(),
        ]));
    let error = SourceError::DataTypesNoLongerSelected(vec!["disputes".into()]);
    assert_eq!(crate::DomainError::kind(&error), crate::ErrorKind::Conflict);
    assert!(error
        .to_string()
        .starts_with("disputes: no longer selected"));
}

#[test]
fn requested_data_types_must_be_some_without_repeats() {
    for requested in [&[][..], &["disputes", "disputes"][..]] {
        SourceTest::with(())
            .given(vec![created()])
            .when(request_data_types(job(1), requested))
            .then_expect_error(SourceError::InvalidRequestedDataTypes);
    }
    assert_eq!(
        crate::DomainError::kind(&SourceError::InvalidRequestedDataTypes),
        crate::ErrorKind::Invalid
    );
}

fn finished_with(
    job_id: JobId,
    outcome: SyncOutcome,
    cursors: &[(&str, i64)],
    backed_up: &[&str],
) -> SourceEvent {
    SourceEvent::SyncFinished {
        job_id,
        outcome,
        cursors: cursors
            .iter()
            .map(|(d, c)| (d.to_string(), serde_json::json!({"since": c})))
            .collect(),
        backed_up: Some(backed_up.iter().map(|d| d.to_string()).collect()),
    }
}

#[test]
fn a_partial_job_advances_only_the_cursors_of_the_data_types_it_backed_up() {
    use cqrs_es::Aggregate;
    let mut source = Source::default();
    source.apply(created());
    source.apply(sync_requested(job(1)));
    source.apply(finished_with(
        job(1),
        SyncOutcome::Succeeded,
        &[("events", 1), ("balance_transactions", 1)],
        &["events", "balance_transactions"],
    ));
    // j2: events backed up, balance_transactions failed: its cursor stays where j1 left it.
    source.apply(sync_requested(job(2)));
    source.apply(finished_with(
        job(2),
        SyncOutcome::Partial,
        &[("events", 2)],
        &["events"],
    ));
    assert_eq!(source.cursors()["events"], serde_json::json!({"since": 2}));
    assert_eq!(
        source.cursors()["balance_transactions"],
        serde_json::json!({"since": 1})
    );
    // j3 retries balance_transactions only: events keeps j2's cursor.
    source.apply(retry_requested(job(3), &["balance_transactions"]));
    source.apply(finished_with(
        job(3),
        SyncOutcome::Succeeded,
        &[("balance_transactions", 3)],
        &["balance_transactions"],
    ));
    assert_eq!(source.cursors()["events"], serde_json::json!({"since": 2}));
    assert_eq!(
        source.cursors()["balance_transactions"],
        serde_json::json!({"since": 3})
    );
    // A data type backed up without a cursor (a full fetch) loses its old one; a deselected one too.
    source.apply(sync_requested(job(4)));
    source.apply(finished_with(
        job(4),
        SyncOutcome::Succeeded,
        &[("balance_transactions", 4)],
        &["events", "balance_transactions"],
    ));
    assert!(!source.cursors().contains_key("events"));
    source.apply(deselect_all_but(&["customers"]));
    assert!(source.cursors().is_empty());
}

#[test]
fn partial_outcomes_and_requested_data_types_are_on_the_wire_and_old_events_still_read() {
    assert_eq!(
        serde_json::to_value(SyncOutcome::Partial).unwrap(),
        serde_json::json!("partial")
    );
    let json = serde_json::to_value(retry_requested(job(1), &["disputes"])).unwrap();
    assert_eq!(
        json["SyncRequested"]["dataTypes"],
        serde_json::json!(["disputes"])
    );
    let json = serde_json::to_value(finished_with(
        job(1),
        SyncOutcome::Partial,
        &[],
        &["customers"],
    ))
    .unwrap();
    assert_eq!(json["SyncFinished"]["outcome"], "partial");
    assert_eq!(
        json["SyncFinished"]["backedUp"],
        serde_json::json!(["customers"])
    );
    // Stored before partial jobs: no `dataTypes`, no `backedUp`.
    let old: SourceEvent = serde_json::from_value(serde_json::json!({"SyncRequested": {
        "jobId": J1_TEXT, "trigger": "manual"}}))
    .unwrap();
    assert_eq!(old, sync_requested(job(1)));
    let old: SourceEvent = serde_json::from_value(serde_json::json!({"SyncFinished": {
        "jobId": J1_TEXT, "outcome": "succeeded", "cursors": {}}}))
    .unwrap();
    assert!(matches!(
        old,
        SourceEvent::SyncFinished {
            backed_up: None,
            ..
        }
    ));
}
