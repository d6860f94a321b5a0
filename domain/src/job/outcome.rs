//! A job's outcome from its data types' outcomes: one rule for the worker (which ends a job whose data types
//! all failed with `JobFailed`) and the read model (which sums up a partial job's failures in its `error`).

use serde::{Deserialize, Serialize};

use super::{DataTypeFailure, JobErrorCode};

/// A failure as `JobFailed` and the job's `error` state it: `{code, message, retryable}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub code: JobErrorCode,
    pub message: String,
    pub retryable: bool,
}

impl From<&DataTypeFailure> for Failure {
    fn from(failure: &DataTypeFailure) -> Self {
        Self {
            code: failure.code,
            message: failure.message.clone(),
            retryable: failure.retryable,
        }
    }
}

/// Sums up the failures of `failed` (at least one) among a job's `total` data types:
///
/// - `code`: the first one's (in the job's data type order), which is the code they share when they share one;
/// - `retryable`: whether any of them is (running the job again may then back up more);
/// - `message`: their one message when they share it (a connection-wide failure: "every data type failed:
///   the platform rejected the credentials (401)"), or else each data type with its own.
///
/// `None` when nothing failed.
pub fn summarise(failed: &[DataTypeFailure], total: usize) -> Option<Failure> {
    let first = failed.first()?;
    // The first failure names the code: the shared one when they share it.
    let code = first.code;
    let retryable = failed.iter().any(|f| f.retryable);
    let count = if failed.len() >= total {
        "every data type failed".to_owned()
    } else {
        format!("{} of {total} data types failed", failed.len())
    };
    let message = if failed.iter().all(|f| f.message == first.message) {
        let names: Vec<&str> = failed.iter().map(|f| f.data_type.as_str()).collect();
        if failed.len() >= total {
            format!("{count}: {}", first.message)
        } else {
            format!("{count} ({}): {}", names.join(", "), first.message)
        }
    } else {
        let each: Vec<String> = failed
            .iter()
            .map(|f| format!("{}: {}", f.data_type, f.message))
            .collect();
        format!("{count}: {}", each.join("; "))
    };
    Some(Failure {
        code,
        message,
        retryable,
    })
}
