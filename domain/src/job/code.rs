//! Why a job, or one of its data types, failed: the one error code type of the worker that records a failure,
//! the job's events (`ResourceBackupFailed`, `JobPartiallySucceeded`, `JobFailed`), the manifest, the read
//! model and the API (`error.code` of `GET /jobs/{id}`).
//!
//! Serialized as the SCREAMING_SNAKE names of DESIGN §4 (`PLATFORM_ERROR`…), as these events have always
//! stored them. There is deliberately no catch-all variant: every code ever recorded is one of these (the
//! repository's history holds no other code written by a worker or the system; `DELIVERIES_EXHAUSTED`
//! appeared once, in a test's literal, and never in code that records events), so a stored event with any
//! other code is a corrupt event, and fails to load as loudly as any other malformed event.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The code of a job's or a data type's failure. "Retryable" below is the `retryable` recorded with it:
/// whether running the job again later may succeed without anyone changing anything (`POST
/// /jobs/{id}/retry` has its own rule for when a job may be retried at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobErrorCode {
    /// The platform refused or mangled a request: a 4xx other than 401/403/429 (an endpoint the account
    /// does not have), a persistent 5xx, a response that does not parse, a list that pages in a loop or
    /// changed while paging. Retryable for a persistent 5xx only.
    PlatformError,
    /// The platform rejected the connection's credentials (401), and no token refresh helped. Not retryable
    /// until the connection's credentials change.
    Unauthorized,
    /// The platform accepted the credentials but refused the data (403): a permission or scope the user must
    /// grant on the platform. Not retryable by itself, but a retry is allowed (the fix is invisible to us).
    Forbidden,
    /// The platform refused the connection even after refreshing its OAuth token: the customer must
    /// reconnect it (the connection is marked `reauth_required`). Not retryable until reconnected.
    ReauthRequired,
    /// The platform kept answering 429 beyond the retry budget. Retryable.
    RateLimited,
    /// The platform (or its OAuth token endpoint) could not be reached: DNS, connection, timeout. Retryable.
    Unavailable,
    /// ListBackup's backup storage failed to store or read the job's files. Retryable; ends the attempt.
    StorageError,
    /// The job's message was delivered the configured number of times without any worker recording an
    /// outcome (each worker died or stalled): the system fails the job. Retryable.
    DeliveryExhausted,
    /// ListBackup itself failed (the event store could not be written). Retryable; ends the attempt.
    Internal,
    /// The request cannot be made as configured: a data type the platform does not support, or credentials
    /// of the wrong shape. Not retryable by itself, but a retry is allowed (fixed on the source or platform).
    ValidationError,
    /// The source's connection or its stored credentials are gone (deleted while the job was queued). Not
    /// retryable.
    ConnectionMissing,
    /// A listed file was deleted on the platform between its listing and its download: recorded in the
    /// manifest's `contentsNotStored` only (nothing to back up), never as a job's or data type's failure.
    Gone,
    /// Another attempt of the job took over while this one ran (its message was redelivered): this attempt
    /// stops without writing a manifest. Not retryable (the other attempt carries on).
    Superseded,
    /// The run stopped because cancellation was requested. Never recorded as a failure: the worker confirms
    /// the cancellation (`JobCancelled`) instead.
    Cancelled,
}

impl JobErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [JobErrorCode; 14] = [
        Self::PlatformError,
        Self::Unauthorized,
        Self::Forbidden,
        Self::ReauthRequired,
        Self::RateLimited,
        Self::Unavailable,
        Self::StorageError,
        Self::DeliveryExhausted,
        Self::Internal,
        Self::ValidationError,
        Self::ConnectionMissing,
        Self::Gone,
        Self::Superseded,
        Self::Cancelled,
    ];

    /// The code as stored and shown: `PLATFORM_ERROR`…
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PlatformError => "PLATFORM_ERROR",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::ReauthRequired => "REAUTH_REQUIRED",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unavailable => "UNAVAILABLE",
            Self::StorageError => "STORAGE_ERROR",
            Self::DeliveryExhausted => "DELIVERY_EXHAUSTED",
            Self::Internal => "INTERNAL",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::ConnectionMissing => "CONNECTION_MISSING",
            Self::Gone => "GONE",
            Self::Superseded => "SUPERSEDED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// A failure of ListBackup's own infrastructure (the event store, backup storage): it ends the attempt,
    /// whatever data type was running.
    pub fn is_infrastructure(self) -> bool {
        matches!(self, Self::Internal | Self::StorageError)
    }
}

/// A code that is none of [`JobErrorCode::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a job error code: {0:?}")]
pub struct UnknownJobErrorCode(pub String);

impl std::str::FromStr for JobErrorCode {
    type Err = UnknownJobErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownJobErrorCode(s.to_owned()))
    }
}

impl fmt::Display for JobErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_serializes_as_its_stored_name_and_parses_back() {
        for code in JobErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(serde_json::from_value::<JobErrorCode>(json).unwrap(), code);
            assert_eq!(code.as_str().parse::<JobErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn the_names_stored_by_earlier_versions_still_read() {
        // The literals the workers have written since the first JobFailed (see the module's doc).
        let stored = [
            "PLATFORM_ERROR",
            "UNAUTHORIZED",
            "FORBIDDEN",
            "REAUTH_REQUIRED",
            "RATE_LIMITED",
            "UNAVAILABLE",
            "STORAGE_ERROR",
            "DELIVERY_EXHAUSTED",
            "INTERNAL",
            "VALIDATION_ERROR",
            "CONNECTION_MISSING",
            "GONE",
            "SUPERSEDED",
        ];
        for name in stored {
            let code: JobErrorCode = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(code.as_str(), name);
        }
    }

    #[test]
    fn an_unknown_code_is_refused() {
        assert_eq!(
            "NOPE".parse::<JobErrorCode>(),
            Err(UnknownJobErrorCode("NOPE".into()))
        );
        assert!(serde_json::from_str::<JobErrorCode>("\"platform_error\"").is_err());
    }
}
