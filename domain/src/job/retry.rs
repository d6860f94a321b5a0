//! Whether an ended job may be retried, and what the retry runs: the one place the rule lives
//! (`POST /jobs/{id}/retry` asks it; README "Retrying a job" states it).
//!
//! **The rule.** A failure may be retried when
//!
//! 1. it is `retryable` (the platform was unavailable, rate limited, answered 5xx or a cut-off body, our
//!    storage or the event store failed, the job's message ran out of deliveries): running it again may
//!    succeed without anyone changing anything; or
//! 2. its code is one a user fixes outside ListBackup, where ListBackup cannot see the fix:
//!    `FORBIDDEN` (the key's permissions or the OAuth scopes, the platform account's plan) and
//!    `VALIDATION_ERROR` (a data type the platform account cannot list, credentials missing a field; fixed in
//!    the platform account, the connection or the source); or
//! 3. its code is the connection's credentials, `UNAUTHORIZED` or `REAUTH_REQUIRED`, and the connection is
//!    active and shows the fix: since the job ended, its credentials were replaced (`PUT /connections/{id}`),
//!    it was reconnected (OAuth), or a connection test succeeded (`POST /connections/{id}/test`, after fixing
//!    the key on the platform). Retrying before that fails the same way.
//!
//! Every other non-retryable failure is refused: the platform refused the request in a way that no change a
//! user can make is known to fix (`PLATFORM_ERROR` for a 404 or a 400: an endpoint the account does not
//! have), or the connection is gone (`CONNECTION_MISSING`).
//!
//! **What the retry runs.** A cancelled job, or a failed one whose data types did not all fail (it failed
//! before any ran, or our infrastructure failed and its files were discarded), runs the source's data types
//! again, if its failure may be retried. A partial job, or a failed one whose data types all failed, runs its
//! failed data types the rule allows, and is refused when the rule allows none of them.

use super::outcome::Failure;
use super::{DataTypeFailure, JobErrorCode, JobStatus};
use crate::error::{DomainError, ErrorKind};

/// What a retry knows about the job's connection (from the read side: the rule itself is pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionEvidence {
    /// The connection exists and is usable: not deleted, not waiting to be reconnected.
    pub active: bool,
    /// Since the job ended, the connection's credentials were replaced or reauthorized, or a test of the
    /// connection succeeded.
    pub fixed_since_job_ended: bool,
}

/// The ended job a retry is asked of.
#[derive(Debug, Clone, Copy)]
pub struct EndedJob<'a> {
    pub status: JobStatus,
    /// The job's own failure (`JobFailed`); `None` unless failed.
    pub failure: Option<&'a Failure>,
    /// Its data types that failed, in the job's order.
    pub failed_data_types: &'a [DataTypeFailure],
    /// How many data types the job had (0: it failed before it started).
    pub data_type_count: usize,
}

/// What the retry runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    /// Only these data types; `None`: the source's data types.
    pub data_types: Option<Vec<String>>,
}

/// Why a job may not be retried (a conflict: the job's state, not the request, is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryRefused {
    #[error("only a failed, partial or cancelled job can be retried; this one is {0}")]
    NotEnded(String),
    #[error("{0}")]
    NothingToFix(String),
}

impl DomainError for RetryRefused {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

/// Codes a user fixes outside ListBackup, with nothing ListBackup can observe.
const FIXED_BY_USER: [JobErrorCode; 2] = [JobErrorCode::Forbidden, JobErrorCode::ValidationError];
/// Codes of the connection's credentials: fixed on the connection, which shows it.
const FIXED_ON_CONNECTION: [JobErrorCode; 2] =
    [JobErrorCode::Unauthorized, JobErrorCode::ReauthRequired];

/// The rule for one failure: `None` when it may be retried, else why not (for a problem+json `detail`).
pub fn why_not_retryable(
    code: JobErrorCode,
    retryable: bool,
    connection: ConnectionEvidence,
) -> Option<String> {
    if retryable || FIXED_BY_USER.contains(&code) {
        return None;
    }
    if FIXED_ON_CONNECTION.contains(&code) {
        if !connection.active {
            return Some(format!(
                "{code}: the connection must be reconnected (or its credentials replaced) first"
            ));
        }
        if !connection.fixed_since_job_ended {
            return Some(format!(
                "{code}: the platform rejected the connection's credentials, and they have not changed since; \
                 replace them (PUT /connections/{{id}}) or reconnect, or fix them on the platform and test the \
                 connection (POST /connections/{{id}}/test), then retry"
            ));
        }
        return None;
    }
    Some(format!(
        "{code} is not retryable: running it again fails the same way, and no change to the connection, the \
         source or the platform account is known to fix it"
    ))
}

/// Decides whether `job` may be retried, and what the retry runs (see the module's rule).
pub fn plan_retry(
    job: EndedJob<'_>,
    connection: ConnectionEvidence,
) -> Result<RetryPlan, RetryRefused> {
    let every_data_type_failed =
        job.data_type_count > 0 && job.failed_data_types.len() >= job.data_type_count;
    match job.status {
        JobStatus::Cancelled => Ok(RetryPlan { data_types: None }),
        JobStatus::Partial => retry_failed_data_types(job.failed_data_types, connection),
        JobStatus::Failed if every_data_type_failed => {
            retry_failed_data_types(job.failed_data_types, connection)
        }
        JobStatus::Failed => {
            // Failed as a whole: before any data type ran, or by our infrastructure (its files discarded).
            let refusal = job
                .failure
                .and_then(|f| why_not_retryable(f.code, f.retryable, connection));
            match refusal {
                None => Ok(RetryPlan { data_types: None }),
                Some(why) => Err(RetryRefused::NothingToFix(why)),
            }
        }
        other => Err(RetryRefused::NotEnded(other.as_str().to_owned())),
    }
}

/// The failed data types the rule allows, or why none of them.
fn retry_failed_data_types(
    failed: &[DataTypeFailure],
    connection: ConnectionEvidence,
) -> Result<RetryPlan, RetryRefused> {
    let mut allowed = Vec::new();
    // Each reason once, with the data types it refuses (a connection-wide failure refuses them all alike).
    let mut refused: Vec<(String, Vec<&str>)> = Vec::new();
    for failure in failed {
        match why_not_retryable(failure.code, failure.retryable, connection) {
            None => allowed.push(failure.data_type.clone()),
            Some(why) => match refused.iter_mut().find(|(reason, _)| *reason == why) {
                Some((_, names)) => names.push(&failure.data_type),
                None => refused.push((why, vec![&failure.data_type])),
            },
        }
    }
    if allowed.is_empty() {
        if refused.is_empty() {
            return Err(RetryRefused::NothingToFix(
                "no data type of the job failed".to_owned(),
            ));
        }
        let reasons: Vec<String> = refused
            .iter()
            .map(|(why, names)| format!("{} ({})", why, names.join(", ")))
            .collect();
        return Err(RetryRefused::NothingToFix(format!(
            "no failed data type of the job may be retried: {}",
            reasons.join("; ")
        )));
    }
    Ok(RetryPlan {
        data_types: Some(allowed),
    })
}
