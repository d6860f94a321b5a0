//! Given/when/then tests of the Job aggregate with cqrs-es's TestFramework.

use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;

use super::*;
use crate::error::{DomainError, ErrorKind};
use crate::platform::PlatformId;
use crate::values::AccountId;
use crate::AccountOwned;
use crate::{ConnectionId, JobId, SourceId};

type JobTest = TestFramework<Job>;

const J1_TEXT: &str = "0190f5c2-7d3e-7a11-8b2c-00000000a001";
const S1_TEXT: &str = "0190f5c2-7d3e-7a11-8b2c-00000000b001";
const C1_TEXT: &str = "0190f5c2-7d3e-7a11-8b2c-00000000c001";
const J1: JobId = JobId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000a001,
));
const J0: JobId = JobId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000a000,
));
const S1: SourceId = SourceId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000b001,
));
const C1: ConnectionId = ConnectionId::from_uuid(uuid::Uuid::from_u128(
    0x0190f5c2_7d3e_7a11_8b2c_00000000c001,
));

fn account(raw: &str) -> AccountId {
    AccountId::parse(raw).unwrap()
}

fn acme() -> AccountId {
    account("acme")
}

fn start(worker: &str) -> JobCommand {
    start_with(worker, JobTrigger::Manual, None, &["customers", "invoices"])
}

fn start_with(
    worker: &str,
    trigger: JobTrigger,
    retry_of: Option<JobId>,
    data_types: &[&str],
) -> JobCommand {
    JobCommand::Start {
        job_id: J1,
        account_id: acme(),
        source_id: S1,
        connection_id: C1,
        platform_id: PlatformId::parse("stripe").unwrap(),
        trigger,
        retry_of,
        worker: worker.into(),
        data_types: data_types.iter().map(|d| d.to_string()).collect(),
        kind: JobKind::Backup,
    }
}

fn started() -> JobEvent {
    JobEvent::JobStarted {
        job_id: J1,
        account_id: "acme".into(),
        source_id: S1,
        connection_id: C1,
        platform_id: "stripe".into(),
        trigger: JobTrigger::Manual,
        retry_of: None,
        attempt: 1,
        worker: "w1".into(),
        data_types: vec!["customers".into(), "invoices".into()],
        kind: JobKind::Backup,
    }
}

fn backed_up(data_type: &str) -> JobEvent {
    JobEvent::ResourceBackedUp {
        data_type: data_type.into(),
        records: 10,
        bytes: 100,
        sha256: format!("sha-{data_type}"),
        object: format!("accounts/acme/sources/s1/jobs/j1/{data_type}.ndjson.gz"),
    }
}

fn record(data_type: &str) -> JobCommand {
    record_by("w1", data_type)
}

fn record_by(worker: &str, data_type: &str) -> JobCommand {
    JobCommand::RecordResource {
        account_id: acme(),
        worker: worker.into(),
        data_type: data_type.into(),
        records: 10,
        bytes: 100,
        sha256: format!("sha-{data_type}"),
        object: format!("accounts/acme/sources/s1/jobs/j1/{data_type}.ndjson.gz"),
    }
}

fn succeed() -> JobCommand {
    succeed_by("w1")
}

fn succeed_by(worker: &str) -> JobCommand {
    JobCommand::Succeed {
        account_id: acme(),
        worker: worker.into(),
        manifest: "accounts/acme/sources/s1/jobs/j1/manifest.json".into(),
        manifest_sha256: "m-sha".into(),
        records: 20,
        bytes: 200,
        cursors: Default::default(),
    }
}

fn succeeded() -> JobEvent {
    JobEvent::JobSucceeded {
        manifest: "accounts/acme/sources/s1/jobs/j1/manifest.json".into(),
        manifest_sha256: "m-sha".into(),
        records: 20,
        bytes: 200,
        cursors: Default::default(),
    }
}

fn fail() -> JobCommand {
    JobCommand::Fail {
        account_id: acme(),
        worker: Some("w1".into()),
        code: JobErrorCode::PlatformError,
        message: "stripe answered 500 five times".into(),
        retryable: true,
        queued: None,
    }
}

fn failed() -> JobEvent {
    JobEvent::JobFailed {
        code: JobErrorCode::PlatformError,
        message: "stripe answered 500 five times".into(),
        retryable: true,
        queued: None,
    }
}

fn queued_job(account_id: &str) -> QueuedJob {
    QueuedJob {
        job_id: J1,
        account_id: account_id.into(),
        source_id: S1,
    }
}

/// The system giving up on the job after its message exhausted its deliveries, started or not.
fn give_up(account_id: &str) -> JobCommand {
    JobCommand::Fail {
        account_id: account(account_id),
        worker: None,
        code: JobErrorCode::DeliveryExhausted,
        message: "the job's message was delivered 5 times without an outcome".into(),
        retryable: true,
        queued: Some(queued_job(account_id)),
    }
}

fn given_up(queued: Option<QueuedJob>) -> JobEvent {
    JobEvent::JobFailed {
        code: JobErrorCode::DeliveryExhausted,
        message: "the job's message was delivered 5 times without an outcome".into(),
        retryable: true,
        queued,
    }
}

fn request_cancel() -> JobCommand {
    JobCommand::RequestCancel {
        account_id: acme(),
        job_id: J1,
        source_id: S1,
    }
}

fn cancel_requested() -> JobEvent {
    JobEvent::JobCancelRequested { queued: None }
}

fn confirm_cancelled() -> JobCommand {
    JobCommand::ConfirmCancelled { account_id: acme() }
}

fn restart(worker: &str) -> JobCommand {
    JobCommand::Restart {
        account_id: acme(),
        worker: worker.into(),
    }
}

fn attempt_started(attempt: u32, worker: &str) -> JobEvent {
    JobEvent::JobAttemptStarted {
        attempt,
        worker: worker.into(),
    }
}

fn progress(done: u32, total: u32) -> JobCommand {
    JobCommand::RecordProgress {
        account_id: acme(),
        worker: "w1".into(),
        data_types_done: done,
        data_types_total: total,
        current_data_type: Some("invoices".into()),
        records: 1234,
        bytes: 56789,
    }
}

fn record_failure(data_type: &str) -> JobCommand {
    record_failure_by("w1", data_type)
}

fn record_failure_by(worker: &str, data_type: &str) -> JobCommand {
    JobCommand::RecordResourceFailure {
        account_id: acme(),
        worker: worker.into(),
        data_type: data_type.into(),
        code: JobErrorCode::PlatformError,
        message: "the platform answered 404".into(),
        retryable: false,
    }
}

fn backup_failed(data_type: &str) -> JobEvent {
    JobEvent::ResourceBackupFailed {
        data_type: data_type.into(),
        code: JobErrorCode::PlatformError,
        message: "the platform answered 404".into(),
        retryable: false,
    }
}

fn failure_of(data_type: &str) -> DataTypeFailure {
    DataTypeFailure {
        data_type: data_type.into(),
        code: JobErrorCode::PlatformError,
        message: "the platform answered 404".into(),
        retryable: false,
    }
}

fn partially_succeed_by(worker: &str) -> JobCommand {
    JobCommand::PartiallySucceed {
        account_id: acme(),
        worker: worker.into(),
        manifest: "accounts/acme/sources/s1/jobs/j1/manifest.json".into(),
        manifest_sha256: "m-sha".into(),
        records: 10,
        bytes: 100,
        cursors: Default::default(),
    }
}

fn partially_succeeded(failed: &[&str]) -> JobEvent {
    JobEvent::JobPartiallySucceeded {
        manifest: "accounts/acme/sources/s1/jobs/j1/manifest.json".into(),
        manifest_sha256: "m-sha".into(),
        records: 10,
        bytes: 100,
        cursors: Default::default(),
        failed_data_types: failed.iter().map(|d| failure_of(d)).collect(),
    }
}

/// The four terminal histories.
fn terminal_histories() -> Vec<(JobStatus, Vec<JobEvent>)> {
    vec![
        (
            JobStatus::Succeeded,
            vec![
                started(),
                backed_up("customers"),
                backed_up("invoices"),
                succeeded(),
            ],
        ),
        (
            JobStatus::Partial,
            vec![
                started(),
                backed_up("customers"),
                backup_failed("invoices"),
                partially_succeeded(&["invoices"]),
            ],
        ),
        (JobStatus::Failed, vec![started(), failed()]),
        (
            JobStatus::Cancelled,
            vec![started(), cancel_requested(), JobEvent::JobCancelled {}],
        ),
    ]
}

// ---- starting ---------------------------------------------------------------------------------------------

#[test]
fn a_worker_starts_a_queued_job_as_attempt_one() {
    JobTest::with(())
        .given_no_previous_events()
        .when(start("w1"))
        .then_expect_events(vec![started()]);
}

#[test]
fn a_second_start_conflicts_so_two_workers_cannot_both_run_the_job() {
    JobTest::with(())
        .given(vec![started()])
        .when(start("w2"))
        .then_expect_error(JobError::AlreadyStarted);
    assert_eq!(JobError::AlreadyStarted.kind(), ErrorKind::Conflict);
}

#[test]
fn a_finished_job_cannot_be_started_again() {
    for (_, history) in terminal_histories() {
        JobTest::with(())
            .given(history)
            .when(start("w2"))
            .then_expect_error(JobError::AlreadyStarted);
    }
}

#[test]
fn a_retry_job_records_what_it_retries() {
    let JobEvent::JobStarted {
        job_id,
        account_id,
        source_id,
        connection_id,
        platform_id,
        attempt,
        worker,
        data_types,
        ..
    } = started()
    else {
        unreachable!()
    };
    JobTest::with(())
        .given_no_previous_events()
        .when(start_with(
            "w1",
            JobTrigger::Retry,
            Some(J0),
            &["customers", "invoices"],
        ))
        .then_expect_events(vec![JobEvent::JobStarted {
            job_id,
            account_id,
            source_id,
            connection_id,
            platform_id,
            trigger: JobTrigger::Retry,
            retry_of: Some(J0),
            attempt,
            worker,
            data_types,
            kind: JobKind::Backup,
        }]);
}

#[test]
fn retry_of_goes_with_the_retry_trigger_only() {
    JobTest::with(())
        .given_no_previous_events()
        .when(start_with("w1", JobTrigger::Retry, None, &["customers"]))
        .then_expect_error(JobError::RetryOfMismatch);
    JobTest::with(())
        .given_no_previous_events()
        .when(start_with(
            "w1",
            JobTrigger::Schedule,
            Some(J0),
            &["customers"],
        ))
        .then_expect_error(JobError::RetryOfMismatch);
    assert_eq!(JobError::RetryOfMismatch.field(), Some("retryOf"));
}

#[test]
fn a_job_needs_distinct_data_types() {
    JobTest::with(())
        .given_no_previous_events()
        .when(start_with("w1", JobTrigger::Manual, None, &[]))
        .then_expect_error(JobError::InvalidDataTypes(
            "a job backs up at least one data type",
        ));
    JobTest::with(())
        .given_no_previous_events()
        .when(start_with(
            "w1",
            JobTrigger::Manual,
            None,
            &["customers", "customers"],
        ))
        .then_expect_error(JobError::InvalidDataTypes("data types must not repeat"));
}

// ---- attempts ---------------------------------------------------------------------------------------------

#[test]
fn a_redelivered_job_runs_again_as_the_next_attempt() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(restart("w2"))
        .then_expect_events(vec![attempt_started(2, "w2")]);
    JobTest::with(())
        .given(vec![started(), attempt_started(2, "w2")])
        .when(restart("w3"))
        .then_expect_events(vec![attempt_started(3, "w3")]);
}

#[test]
fn a_new_attempt_backs_every_data_type_up_again() {
    // Attempt 1 stored `customers` before its worker died; attempt 2 must store it again, and may.
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            attempt_started(2, "w2"),
        ])
        .when(record_by("w2", "customers"))
        .then_expect_events(vec![backed_up("customers")]);
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backed_up("invoices"),
            attempt_started(2, "w2"),
            backed_up("invoices"),
        ])
        .when(succeed_by("w2"))
        .then_expect_error(JobError::Incomplete(vec!["customers".into()]));
}

#[test]
fn the_run_of_an_earlier_attempt_is_fenced_off() {
    // w1 was presumed dead and the job restarted as w2's attempt 2, but w1 is still going.
    let restarted = vec![started(), attempt_started(2, "w2")];
    let fenced = JobError::NotCurrentWorker {
        attempt: 2,
        worker: "w2".into(),
    };
    for command in [
        record_by("w1", "customers"),
        record_failure_by("w1", "customers"),
        progress(1, 2),
        succeed_by("w1"),
        partially_succeed_by("w1"),
        fail(),
    ] {
        JobTest::with(())
            .given(restarted.clone())
            .when(command)
            .then_expect_error(fenced.clone());
    }
    assert_eq!(fenced.kind(), ErrorKind::Conflict);
    // The current run reports as usual.
    JobTest::with(())
        .given(vec![
            started(),
            attempt_started(2, "w2"),
            backed_up("customers"),
            backed_up("invoices"),
        ])
        .when(succeed_by("w2"))
        .then_expect_events(vec![succeeded()]);
}

#[test]
fn the_system_fails_a_job_on_its_workers_behalf() {
    // A message that exhausted its deliveries: no worker is running the job any more.
    JobTest::with(())
        .given(vec![started(), attempt_started(2, "w2")])
        .when(JobCommand::Fail {
            account_id: acme(),
            worker: None,
            code: JobErrorCode::DeliveryExhausted,
            message: "the job's message was delivered 5 times".into(),
            retryable: true,
            queued: None,
        })
        .then_expect_events(vec![JobEvent::JobFailed {
            code: JobErrorCode::DeliveryExhausted,
            message: "the job's message was delivered 5 times".into(),
            retryable: true,
            queued: None,
        }]);
}

#[test]
fn giving_up_on_a_started_job_records_no_identity() {
    // The stream's JobStarted already says whose it is.
    JobTest::with(())
        .given(vec![started(), attempt_started(2, "w2")])
        .when(give_up("acme"))
        .then_expect_events(vec![given_up(None)]);
}

#[test]
fn the_system_gives_up_on_a_job_that_never_started_and_it_never_starts() {
    JobTest::with(())
        .given_no_previous_events()
        .when(give_up("acme"))
        .then_expect_events(vec![given_up(Some(queued_job("acme")))]);
    JobTest::with(())
        .given(vec![given_up(Some(queued_job("acme")))])
        .when(start("w1"))
        .then_expect_error(JobError::AlreadyStarted);
    JobTest::with(())
        .given(vec![given_up(Some(queued_job("acme")))])
        .when(request_cancel())
        .then_expect_error(JobError::Finished(JobStatus::Failed));

    // The stream knows whose it is: a failed job of its account and source, refused to others.
    let mut job = Job::default();
    job.apply(given_up(Some(queued_job("acme"))));
    assert_eq!(job.status(), JobStatus::Failed);
    assert_eq!(job.owner_account(), Some("acme"));
    assert_eq!(job.id(), Some(J1));
    assert_eq!(job.source_id(), Some(S1));
    assert_eq!(job.attempt(), 0, "no attempt ever ran");
    JobTest::with(())
        .given(vec![given_up(Some(queued_job("acme")))])
        .when(JobCommand::Restart {
            account_id: account("globex"),
            worker: "w9".into(),
        })
        .then_expect_error(JobError::NotFound);
}

#[test]
fn only_the_system_with_the_jobs_identity_fails_a_job_that_never_started() {
    // A worker cannot fail what it never started, identity or not.
    let mut by_worker = give_up("acme");
    if let JobCommand::Fail { worker, .. } = &mut by_worker {
        *worker = Some("w1".into());
    }
    JobTest::with(())
        .given_no_previous_events()
        .when(by_worker)
        .then_expect_error(JobError::NotFound);
    // Without the identity the stream would have no owner.
    let mut anonymous = give_up("acme");
    if let JobCommand::Fail { queued, .. } = &mut anonymous {
        *queued = None;
    }
    JobTest::with(())
        .given_no_previous_events()
        .when(anonymous)
        .then_expect_error(JobError::NotFound);
    // An identity naming another account than the command's is refused.
    let mut mismatched = give_up("acme");
    if let JobCommand::Fail { queued, .. } = &mut mismatched {
        *queued = Some(queued_job("globex"));
    }
    JobTest::with(())
        .given_no_previous_events()
        .when(mismatched)
        .then_expect_error(JobError::NotFound);
}

#[test]
fn any_run_may_confirm_a_requested_cancellation() {
    // w2 received the redelivered message of a job cancelled while w1 ran it: it does not run the job again,
    // it confirms the cancellation.
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(restart("w2"))
        .then_expect_error(JobError::CancelRequested);
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(confirm_cancelled())
        .then_expect_events(vec![JobEvent::JobCancelled {}]);
}

#[test]
fn a_job_whose_cancellation_was_requested_is_not_run_again() {
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(restart("w2"))
        .then_expect_error(JobError::CancelRequested);
}

#[test]
fn a_job_that_never_started_cannot_be_restarted() {
    JobTest::with(())
        .given_no_previous_events()
        .when(restart("w2"))
        .then_expect_error(JobError::NotFound);
}

// ---- progress and resources ------------------------------------------------------------------------------

#[test]
fn progress_is_recorded() {
    JobTest::with(())
        .given(vec![started()])
        .when(progress(1, 2))
        .then_expect_events(vec![JobEvent::JobProgressed {
            data_types_done: 1,
            data_types_total: 2,
            current_data_type: Some("invoices".into()),
            records: 1234,
            bytes: 56789,
        }]);
}

#[test]
fn progress_past_the_total_is_invalid() {
    JobTest::with(())
        .given(vec![started()])
        .when(progress(3, 2))
        .then_expect_error(JobError::InvalidProgress);
    assert_eq!(JobError::InvalidProgress.kind(), ErrorKind::Invalid);
}

#[test]
fn a_backed_up_data_type_is_recorded() {
    JobTest::with(())
        .given(vec![started()])
        .when(record("customers"))
        .then_expect_events(vec![backed_up("customers")]);
}

#[test]
fn a_data_type_outside_the_job_is_refused() {
    JobTest::with(())
        .given(vec![started()])
        .when(record("payouts"))
        .then_expect_error(JobError::UnknownDataType("payouts".into()));
}

#[test]
fn a_data_type_is_backed_up_once_per_attempt() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(record("customers"))
        .then_expect_error(JobError::AlreadyBackedUp("customers".into()));
}

#[test]
fn progress_and_resources_are_still_recorded_while_a_cancellation_is_pending() {
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(record("customers"))
        .then_expect_events(vec![backed_up("customers")]);
}

// ---- outcomes ---------------------------------------------------------------------------------------------

#[test]
fn a_job_with_every_data_type_backed_up_succeeds() {
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backed_up("invoices"),
        ])
        .when(succeed())
        .then_expect_events(vec![succeeded()]);
}

#[test]
fn a_job_cannot_succeed_with_data_types_missing() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(succeed())
        .then_expect_error(JobError::Incomplete(vec!["invoices".into()]));
}

#[test]
fn a_running_job_fails_with_a_code_and_whether_to_retry() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(fail())
        .then_expect_events(vec![failed()]);
}

#[test]
fn a_job_finishing_while_cancellation_is_pending_keeps_its_true_outcome() {
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backed_up("invoices"),
            cancel_requested(),
        ])
        .when(succeed())
        .then_expect_events(vec![succeeded()]);
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(fail())
        .then_expect_events(vec![failed()]);
}

#[test]
fn a_job_that_never_started_cannot_succeed_or_fail() {
    JobTest::with(())
        .given_no_previous_events()
        .when(succeed())
        .then_expect_error(JobError::NotFound);
    JobTest::with(())
        .given_no_previous_events()
        .when(fail())
        .then_expect_error(JobError::NotFound);
}

// ---- cancelling -------------------------------------------------------------------------------------------

#[test]
fn cancelling_a_running_job_asks_the_worker_to_stop() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(request_cancel())
        .then_expect_events(vec![cancel_requested()]);
}

#[test]
fn asking_again_to_cancel_records_nothing() {
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(request_cancel())
        .then_expect_events(vec![]);
}

#[test]
fn the_worker_confirms_the_cancellation() {
    JobTest::with(())
        .given(vec![started(), cancel_requested()])
        .when(confirm_cancelled())
        .then_expect_events(vec![JobEvent::JobCancelled {}]);
}

#[test]
fn a_job_is_not_cancelled_without_a_request() {
    JobTest::with(())
        .given(vec![started()])
        .when(confirm_cancelled())
        .then_expect_error(JobError::NoCancelRequested);
}

#[test]
fn cancelling_a_queued_job_cancels_it_at_once_and_it_never_starts() {
    let queued = JobEvent::JobCancelRequested {
        queued: Some(QueuedJob {
            job_id: J1,
            account_id: "acme".into(),
            source_id: S1,
        }),
    };
    JobTest::with(())
        .given_no_previous_events()
        .when(request_cancel())
        .then_expect_events(vec![queued.clone(), JobEvent::JobCancelled {}]);
    JobTest::with(())
        .given(vec![queued.clone(), JobEvent::JobCancelled {}])
        .when(start("w1"))
        .then_expect_error(JobError::AlreadyStarted);

    // The stream knows whose it is.
    let mut job = Job::default();
    job.apply(queued);
    job.apply(JobEvent::JobCancelled {});
    assert_eq!(job.status(), JobStatus::Cancelled);
    assert_eq!(job.owner_account(), Some("acme"));
    assert_eq!(job.source_id(), Some(S1));
}

#[test]
fn cancelling_a_finished_job_conflicts() {
    for (status, history) in terminal_histories() {
        JobTest::with(())
            .given(history)
            .when(request_cancel())
            .then_expect_error(JobError::Finished(status));
    }
    assert_eq!(
        JobError::Finished(JobStatus::Succeeded).to_string(),
        "the job has already succeeded"
    );
    assert_eq!(
        JobError::Finished(JobStatus::Partial).to_string(),
        "the job has already partially succeeded"
    );
}

// ---- terminal states and ownership ------------------------------------------------------------------------

#[test]
fn a_finished_job_refuses_every_further_command() {
    for (status, history) in terminal_histories() {
        for command in [
            restart("w2"),
            progress(1, 2),
            record("customers"),
            record_failure("customers"),
            succeed(),
            partially_succeed_by("w1"),
            fail(),
            request_cancel(),
            confirm_cancelled(),
        ] {
            JobTest::with(())
                .given(history.clone())
                .when(command)
                .then_expect_error(JobError::Finished(status));
        }
        assert_eq!(JobError::Finished(status).kind(), ErrorKind::Conflict);
    }
}

#[test]
fn another_account_cannot_tell_the_job_exists() {
    for command in [
        JobCommand::Fail {
            account_id: account("intruder"),
            worker: None,
            code: JobErrorCode::PlatformError,
            message: "x".into(),
            retryable: false,
            queued: None,
        },
        JobCommand::RequestCancel {
            account_id: account("intruder"),
            job_id: J1,
            source_id: S1,
        },
        JobCommand::Restart {
            account_id: account("intruder"),
            worker: "w9".into(),
        },
    ] {
        JobTest::with(())
            .given(vec![started()])
            .when(command)
            .then_expect_error(JobError::NotFound);
    }
}

#[test]
fn the_state_follows_the_events() {
    let mut job = Job::default();
    assert_eq!(job.owner_account(), None);
    assert_eq!(job.attempt(), 0);
    job.apply(started());
    assert_eq!(job.status(), JobStatus::Running);
    assert_eq!(job.owner_account(), Some("acme"));
    assert_eq!(job.id(), Some(J1));
    assert_eq!(job.attempt(), 1);
    assert_eq!(job.worker(), "w1");
    assert_eq!(job.data_types(), ["customers", "invoices"]);
    assert!(job.is_run_by("w1"));
    job.apply(attempt_started(2, "w2"));
    assert_eq!((job.attempt(), job.worker()), (2, "w2"));
    assert!(
        !job.is_run_by("w1"),
        "the first run lost the job to the second"
    );
    assert!(job.is_run_by("w2"));
    assert!(!job.cancel_requested());
    job.apply(cancel_requested());
    assert!(job.cancel_requested());
    job.apply(JobEvent::JobCancelled {});
    assert!(job.status().is_terminal());
    assert!(!job.is_run_by("w2"), "an ended job is nobody's to run");
}

// ---- the wire format --------------------------------------------------------------------------------------

/// The ids typed in the events (issue 11 §3) read and write exactly the text stored before: the payload of a
/// stored `JobStarted` and a system-failed `JobFailed`, as `events.payload` holds them, read and written
/// back byte for byte.
#[test]
fn typed_ids_keep_the_stored_events_byte_for_byte() {
    let stored = [
        r#"{"JobStarted":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","accountId":"acme","sourceId":"0190f5c2-7d3e-7a11-8b2c-00000000b001","connectionId":"0190f5c2-7d3e-7a11-8b2c-00000000c001","platformId":"stripe","trigger":"retry","retryOf":"0190f5c2-7d3e-7a11-8b2c-00000000a000","attempt":1,"worker":"w1","dataTypes":["customers"]}}"#,
        r#"{"JobFailed":{"code":"DELIVERY_EXHAUSTED","message":"gone","retryable":true,"queued":{"jobId":"0190f5c2-7d3e-7a11-8b2c-00000000a001","accountId":"acme","sourceId":"0190f5c2-7d3e-7a11-8b2c-00000000b001"}}}"#,
    ];
    for text in stored {
        let event: JobEvent = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), text);
    }
    // A stored id that is not a UUID names no job: the event does not read (no such event was ever written).
    assert!(serde_json::from_str::<JobEvent>(&stored[1].replace(J1_TEXT, "j1")).is_err());
}

#[test]
fn events_are_camel_case_and_externally_tagged() {
    let json = serde_json::to_value(started()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"JobStarted": {
            "jobId": J1_TEXT, "accountId": "acme", "sourceId": S1_TEXT, "connectionId": C1_TEXT,
            "platformId": "stripe", "trigger": "manual", "attempt": 1, "worker": "w1",
            "dataTypes": ["customers", "invoices"]
        }})
    );
    assert_eq!(
        serde_json::to_value(cancel_requested()).unwrap(),
        serde_json::json!({"JobCancelRequested": {}})
    );
    // A worker's failure has no `queued`; events recorded before the field existed still read.
    assert_eq!(
        serde_json::to_value(failed()).unwrap(),
        serde_json::json!({"JobFailed": {
            "code": "PLATFORM_ERROR", "message": "stripe answered 500 five times", "retryable": true
        }})
    );
    assert_eq!(
        serde_json::to_value(given_up(Some(queued_job("acme")))).unwrap()["JobFailed"]["queued"],
        serde_json::json!({"jobId": J1_TEXT, "accountId": "acme", "sourceId": S1_TEXT})
    );
    assert_eq!(
        serde_json::to_value(JobEvent::JobCancelled {}).unwrap(),
        serde_json::json!({"JobCancelled": {}})
    );
    let progressed = serde_json::to_value(JobEvent::JobProgressed {
        data_types_done: 1,
        data_types_total: 2,
        current_data_type: None,
        records: 3,
        bytes: 4,
    })
    .unwrap();
    assert_eq!(
        progressed,
        serde_json::json!({"JobProgressed": {
            "dataTypesDone": 1, "dataTypesTotal": 2, "records": 3, "bytes": 4
        }})
    );
    assert_eq!(
        serde_json::to_value(backup_failed("disputes")).unwrap(),
        serde_json::json!({"ResourceBackupFailed": {
            "dataType": "disputes", "code": "PLATFORM_ERROR", "message": "the platform answered 404",
            "retryable": false
        }})
    );
    assert_eq!(
        serde_json::to_value(partially_succeeded(&["disputes"])).unwrap(),
        serde_json::json!({"JobPartiallySucceeded": {
            "manifest": "accounts/acme/sources/s1/jobs/j1/manifest.json", "manifestSha256": "m-sha",
            "records": 10, "bytes": 100,
            "failedDataTypes": [{"dataType": "disputes", "code": "PLATFORM_ERROR",
                                 "message": "the platform answered 404", "retryable": false}]
        }})
    );
    for event in [
        started(),
        attempt_started(2, "w2"),
        backed_up("customers"),
        backup_failed("invoices"),
        succeeded(),
        partially_succeeded(&["invoices"]),
        failed(),
        given_up(Some(queued_job("acme"))),
        cancel_requested(),
        JobEvent::JobCancelled {},
    ] {
        let round: JobEvent =
            serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        assert_eq!(round, event);
        assert_eq!(cqrs_es::DomainEvent::event_version(&event), "1.0");
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(
            json.as_object().unwrap().keys().next().unwrap(),
            &cqrs_es::DomainEvent::event_type(&event)
        );
    }
}

// ---- per data type outcomes and partial jobs --------------------------------------------------------------

#[test]
fn a_data_type_that_could_not_be_backed_up_is_recorded() {
    JobTest::with(())
        .given(vec![started(), backed_up("customers")])
        .when(record_failure("invoices"))
        .then_expect_events(vec![backup_failed("invoices")]);
}

#[test]
fn a_data_type_has_one_outcome_per_attempt() {
    JobTest::with(())
        .given(vec![started(), backup_failed("invoices")])
        .when(record_failure("invoices"))
        .then_expect_error(JobError::AlreadyFailed("invoices".into()));
    JobTest::with(())
        .given(vec![started(), backup_failed("invoices")])
        .when(record("invoices"))
        .then_expect_error(JobError::AlreadyFailed("invoices".into()));
    JobTest::with(())
        .given(vec![started(), backed_up("invoices")])
        .when(record_failure("invoices"))
        .then_expect_error(JobError::AlreadyBackedUp("invoices".into()));
    JobTest::with(())
        .given(vec![started()])
        .when(record_failure("payouts"))
        .then_expect_error(JobError::UnknownDataType("payouts".into()));
    assert_eq!(
        JobError::AlreadyFailed("x".into()).kind(),
        ErrorKind::Conflict
    );
}

#[test]
fn a_job_with_a_failed_data_type_cannot_succeed() {
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backup_failed("invoices"),
        ])
        .when(succeed())
        .then_expect_error(JobError::DataTypesFailed(vec!["invoices".into()]));
}

#[test]
fn a_job_with_some_data_types_backed_up_and_the_others_failed_partially_succeeds() {
    // The failures are the aggregate's to list, in the job's data type order.
    JobTest::with(())
        .given(vec![
            started(),
            backup_failed("invoices"),
            backed_up("customers"),
        ])
        .when(partially_succeed_by("w1"))
        .then_expect_events(vec![partially_succeeded(&["invoices"])]);

    let mut job = Job::default();
    for event in [
        started(),
        backup_failed("invoices"),
        backed_up("customers"),
        partially_succeeded(&["invoices"]),
    ] {
        job.apply(event);
    }
    assert_eq!(job.status(), JobStatus::Partial);
    assert!(job.status().is_terminal());
    assert_eq!(job.status().as_str(), "partial");
    assert_eq!(job.failed_data_types(), vec![failure_of("invoices")]);
    assert!(!job.is_run_by("w1"), "an ended job is nobody's to run");
}

#[test]
fn a_job_partially_succeeds_only_once_every_data_type_has_an_outcome_of_each_kind() {
    JobTest::with(())
        .given(vec![started(), backup_failed("invoices")])
        .when(partially_succeed_by("w1"))
        .then_expect_error(JobError::Incomplete(vec!["customers".into()]));
    // Every data type failed: that is a failed job.
    JobTest::with(())
        .given(vec![
            started(),
            backup_failed("customers"),
            backup_failed("invoices"),
        ])
        .when(partially_succeed_by("w1"))
        .then_expect_error(JobError::NothingBackedUp);
    // Every data type backed up: that is a success.
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backed_up("invoices"),
        ])
        .when(partially_succeed_by("w1"))
        .then_expect_error(JobError::NothingFailed);
    // Only the current attempt's run may end it.
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backup_failed("invoices"),
            attempt_started(2, "w2"),
        ])
        .when(partially_succeed_by("w1"))
        .then_expect_error(JobError::NotCurrentWorker {
            attempt: 2,
            worker: "w2".into(),
        });
}

#[test]
fn a_new_attempt_tries_every_failed_data_type_again() {
    JobTest::with(())
        .given(vec![
            started(),
            backup_failed("invoices"),
            attempt_started(2, "w2"),
        ])
        .when(record_by("w2", "invoices"))
        .then_expect_events(vec![backed_up("invoices")]);
    // The first attempt's failure no longer counts towards the second's outcome.
    JobTest::with(())
        .given(vec![
            started(),
            backed_up("customers"),
            backup_failed("invoices"),
            attempt_started(2, "w2"),
            backed_up("customers"),
        ])
        .when(partially_succeed_by("w2"))
        .then_expect_error(JobError::Incomplete(vec!["invoices".into()]));
}

#[test]
fn a_job_whose_data_types_all_failed_fails() {
    JobTest::with(())
        .given(vec![
            started(),
            backup_failed("customers"),
            backup_failed("invoices"),
        ])
        .when(fail())
        .then_expect_events(vec![failed()]);
}

// ---- summing up failures ----------------------------------------------------------------------------------

fn failure(data_type: &str, code: &str, message: &str, retryable: bool) -> DataTypeFailure {
    DataTypeFailure {
        data_type: data_type.into(),
        code: code.parse().unwrap(),
        message: message.into(),
        retryable,
    }
}

#[test]
fn failures_are_summed_up_by_their_code_and_message() {
    assert_eq!(summarise(&[], 3), None);
    // One cause for every data type (the connection's).
    let unauthorized = "the platform rejected the credentials (401)";
    let all = [
        failure("customers", "UNAUTHORIZED", unauthorized, false),
        failure("invoices", "UNAUTHORIZED", unauthorized, false),
    ];
    assert_eq!(
        summarise(&all, 2),
        Some(Failure {
            code: JobErrorCode::Unauthorized,
            message: format!("every data type failed: {unauthorized}"),
            retryable: false,
        })
    );
    // Some of them, with one cause.
    let some = [
        failure(
            "disputes",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
        failure(
            "payouts",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
    ];
    let summary = summarise(&some, 14).unwrap();
    assert_eq!(summary.code, JobErrorCode::PlatformError);
    assert_eq!(
        summary.message,
        "2 of 14 data types failed (disputes, payouts): the platform answered 404"
    );
    assert!(!summary.retryable);
    // Different causes: each is named; retryable when any is.
    let mixed = [
        failure(
            "disputes",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
        failure(
            "payouts",
            "UNAVAILABLE",
            "could not reach the platform",
            true,
        ),
    ];
    let summary = summarise(&mixed, 14).unwrap();
    assert_eq!(summary.code, JobErrorCode::PlatformError, "the first one's");
    assert_eq!(
        summary.message,
        "2 of 14 data types failed: disputes: the platform answered 404; payouts: could not reach the platform"
    );
    assert!(summary.retryable);
}

// ---- the retry rule ---------------------------------------------------------------------------------------

use retry::{plan_retry, why_not_retryable, ConnectionEvidence, EndedJob, RetryPlan, RetryRefused};

const UNCHANGED: ConnectionEvidence = ConnectionEvidence {
    active: true,
    fixed_since_job_ended: false,
};
const FIXED: ConnectionEvidence = ConnectionEvidence {
    active: true,
    fixed_since_job_ended: true,
};
const EXPIRED: ConnectionEvidence = ConnectionEvidence {
    active: false,
    fixed_since_job_ended: true,
};

fn ended<'a>(
    status: JobStatus,
    failure: Option<&'a Failure>,
    failed: &'a [DataTypeFailure],
    count: usize,
) -> EndedJob<'a> {
    EndedJob {
        status,
        failure,
        failed_data_types: failed,
        data_type_count: count,
    }
}

#[test]
fn a_retryable_failure_may_always_be_retried() {
    for code in [
        "PLATFORM_ERROR",
        "UNAVAILABLE",
        "RATE_LIMITED",
        "STORAGE_ERROR",
    ] {
        assert_eq!(
            why_not_retryable(code.parse().unwrap(), true, UNCHANGED),
            None,
            "{code}"
        );
    }
}

#[test]
fn a_failure_a_user_fixes_outside_listbackup_may_be_retried() {
    for code in ["FORBIDDEN", "VALIDATION_ERROR"] {
        assert_eq!(
            why_not_retryable(code.parse().unwrap(), false, UNCHANGED),
            None,
            "{code}"
        );
    }
}

#[test]
fn rejected_credentials_may_be_retried_once_the_connection_shows_the_fix() {
    for code in ["UNAUTHORIZED", "REAUTH_REQUIRED"] {
        let why = why_not_retryable(code.parse().unwrap(), false, UNCHANGED).unwrap();
        assert!(why.contains("PUT /connections/{id}"), "{why}");
        let why = why_not_retryable(code.parse().unwrap(), false, EXPIRED).unwrap();
        assert!(why.contains("reconnected"), "{why}");
        assert_eq!(
            why_not_retryable(code.parse().unwrap(), false, FIXED),
            None,
            "{code}"
        );
    }
}

#[test]
fn a_permanent_platform_refusal_is_not_retried() {
    for code in ["PLATFORM_ERROR", "CONNECTION_MISSING"] {
        let why = why_not_retryable(code.parse().unwrap(), false, FIXED).unwrap();
        assert!(
            why.starts_with(&format!("{code} is not retryable")),
            "{why}"
        );
    }
}

#[test]
fn a_partial_job_retries_the_failed_data_types_the_rule_allows() {
    let failed = [
        failure(
            "charges",
            "UNAVAILABLE",
            "could not reach the platform",
            true,
        ),
        failure(
            "disputes",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
        failure(
            "payouts",
            "FORBIDDEN",
            "the platform refused access (403)",
            false,
        ),
    ];
    assert_eq!(
        plan_retry(ended(JobStatus::Partial, None, &failed, 14), UNCHANGED),
        Ok(RetryPlan {
            data_types: Some(vec!["charges".into(), "payouts".into()])
        })
    );
}

#[test]
fn a_partial_job_whose_failures_cannot_be_fixed_is_not_retried() {
    let failed = [
        failure(
            "disputes",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
        failure(
            "payouts",
            "PLATFORM_ERROR",
            "the platform answered 404",
            false,
        ),
    ];
    let Err(RetryRefused::NothingToFix(why)) =
        plan_retry(ended(JobStatus::Partial, None, &failed, 14), FIXED)
    else {
        panic!("refused")
    };
    // One reason, naming both data types.
    assert!(why.contains("PLATFORM_ERROR is not retryable"), "{why}");
    assert!(why.contains("(disputes, payouts)"), "{why}");
    assert_eq!(RetryRefused::NothingToFix(why).kind(), ErrorKind::Conflict);
}

#[test]
fn a_failed_job_whose_data_types_all_failed_retries_them() {
    let unauthorized = "the platform rejected the credentials (401)";
    let failed = [
        failure("customers", "UNAUTHORIZED", unauthorized, false),
        failure("invoices", "UNAUTHORIZED", unauthorized, false),
    ];
    let summary = summarise(&failed, 2).unwrap();
    let job = ended(JobStatus::Failed, Some(&summary), &failed, 2);
    assert!(matches!(
        plan_retry(job, UNCHANGED),
        Err(RetryRefused::NothingToFix(_))
    ));
    assert_eq!(
        plan_retry(job, FIXED),
        Ok(RetryPlan {
            data_types: Some(vec!["customers".into(), "invoices".into()])
        })
    );
}

#[test]
fn a_job_that_failed_as_a_whole_retries_the_source_if_its_failure_allows() {
    // Before any data type ran, or by our own infrastructure (a data type had failed before that).
    let storage = Failure {
        code: JobErrorCode::StorageError,
        message: "object store: disk full".into(),
        retryable: true,
    };
    let failed = [failure(
        "invoices",
        "PLATFORM_ERROR",
        "the platform answered 404",
        false,
    )];
    assert_eq!(
        plan_retry(
            ended(JobStatus::Failed, Some(&storage), &failed, 2),
            UNCHANGED
        ),
        Ok(RetryPlan { data_types: None })
    );
    let missing = Failure {
        code: JobErrorCode::ConnectionMissing,
        message: "the source's connection or its credentials are gone".into(),
        retryable: false,
    };
    assert!(matches!(
        plan_retry(ended(JobStatus::Failed, Some(&missing), &[], 0), FIXED),
        Err(RetryRefused::NothingToFix(_))
    ));
}

#[test]
fn a_cancelled_job_retries_the_source_and_a_job_that_has_not_ended_badly_is_not_retried() {
    assert_eq!(
        plan_retry(ended(JobStatus::Cancelled, None, &[], 2), UNCHANGED),
        Ok(RetryPlan { data_types: None })
    );
    for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded] {
        assert_eq!(
            plan_retry(ended(status, None, &[], 2), FIXED),
            Err(RetryRefused::NotEnded(status.as_str().into()))
        );
    }
}

// Holds, expiry and verification (issue 13).

fn a_backup() -> Vec<JobEvent> {
    vec![
        started(),
        backed_up("customers"),
        backed_up("invoices"),
        succeeded(),
    ]
}

fn expire() -> JobCommand {
    JobCommand::Expire {
        account_id: acme(),
        files: 3,
        bytes: 300,
    }
}

fn hold(reason: &str) -> JobCommand {
    JobCommand::PlaceHold {
        account_id: acme(),
        reason: reason.into(),
    }
}

#[test]
fn a_backup_expires_once_and_a_second_expiry_records_nothing() {
    JobTest::with(())
        .given(a_backup())
        .when(expire())
        .then_expect_events(vec![JobEvent::BackupExpired {
            files: 3,
            bytes: 300,
        }]);
    let mut given = a_backup();
    given.push(JobEvent::BackupExpired {
        files: 3,
        bytes: 300,
    });
    JobTest::with(())
        .given(given)
        .when(expire())
        .then_expect_events(vec![]);
}

#[test]
fn a_held_backup_is_not_expired_until_released() {
    let mut given = a_backup();
    given.push(JobEvent::BackupHeld {
        reason: "legal".into(),
    });
    JobTest::with(())
        .given(given.clone())
        .when(expire())
        .then_expect_error(JobError::Held("legal".into()));
    JobTest::with(())
        .given(given.clone())
        .when(hold("legal"))
        .then_expect_events(vec![]);
    JobTest::with(())
        .given(given.clone())
        .when(JobCommand::ReleaseHold { account_id: acme() })
        .then_expect_events(vec![JobEvent::BackupHoldReleased {}]);
    given.push(JobEvent::BackupHoldReleased {});
    JobTest::with(())
        .given(given)
        .when(expire())
        .then_expect_events(vec![JobEvent::BackupExpired {
            files: 3,
            bytes: 300,
        }]);
}

#[test]
fn holds_and_verification_need_a_backup_that_has_not_expired() {
    JobTest::with(())
        .given(vec![started()])
        .when(hold("legal"))
        .then_expect_error(JobError::NotABackup(JobStatus::Running));
    JobTest::with(())
        .given(a_backup())
        .when(hold("  "))
        .then_expect_error(JobError::InvalidHoldReason);
    let mut expired = a_backup();
    expired.push(JobEvent::BackupExpired { files: 1, bytes: 1 });
    JobTest::with(())
        .given(expired.clone())
        .when(hold("legal"))
        .then_expect_error(JobError::Expired);
    assert_eq!(JobError::Expired.kind(), ErrorKind::Gone);
    JobTest::with(())
        .given(expired)
        .when(JobCommand::RecordVerification {
            account_id: acme(),
            outcome: Verification::Verified { files: 1, bytes: 1 },
        })
        .then_expect_error(JobError::Expired);
    JobTest::with(())
        .given(a_backup())
        .when(JobCommand::RecordVerification {
            account_id: acme(),
            outcome: Verification::Corrupted {
                file: "customers.ndjson.gz".into(),
                expected: "a".into(),
                found: "b".into(),
            },
        })
        .then_expect_events(vec![JobEvent::BackupCorrupted {
            file: "customers.ndjson.gz".into(),
            expected: "a".into(),
            found: "b".into(),
        }]);
}
