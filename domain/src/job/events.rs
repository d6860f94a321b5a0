use cqrs_es::DomainEvent;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A worker took the job on. Always the stream's first event, and always attempt 1: later attempts of the
    /// same job are [`JobEvent::JobAttemptStarted`].
    #[serde(rename_all = "camelCase")]
    JobStarted {
        job_id: String,
        account_id: String,
        source_id: String,
        connection_id: String,
        platform_id: String,
        trigger: JobTrigger,
        /// The failed or cancelled job this one retries (`trigger: retry` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<String>,
        attempt: u32,
        /// The worker running this attempt (`worker:<id>` in the event metadata's actor as well).
        worker: String,
        data_types: Vec<String>,
    },
    /// The job's message was redelivered because the worker running the previous attempt died; another worker
    /// runs it again from the start. Progress and backed-up resources of earlier attempts no longer count.
    #[serde(rename_all = "camelCase")]
    JobAttemptStarted { attempt: u32, worker: String },
    /// Coarse progress (at most once a second, and at every data type boundary).
    #[serde(rename_all = "camelCase")]
    JobProgressed {
        data_types_done: u32,
        data_types_total: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        current_data_type: Option<String>,
        records: u64,
        bytes: u64,
    },
    /// One data type is stored completely: `object` is its artifact's path, `sha256` the stored file's hash.
    #[serde(rename_all = "camelCase")]
    ResourceBackedUp {
        data_type: String,
        records: u64,
        bytes: u64,
        sha256: String,
        object: String,
    },
    /// Every data type is stored and the manifest written last; `manifest_sha256` proves which manifest.
    #[serde(rename_all = "camelCase")]
    JobSucceeded {
        manifest: String,
        manifest_sha256: String,
        records: u64,
        bytes: u64,
        /// Per data type, where the source's next incremental job starts (the manifest's `cursors`).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        cursors: BTreeMap<String, serde_json::Value>,
    },
    /// The job ended without a backup. Usually recorded by the worker running it; when the system gives up on
    /// a job whose message exhausted its deliveries before any worker started it, this is the stream's first
    /// event and carries the job's identity in `queued`, as `JobCancelRequested` does.
    #[serde(rename_all = "camelCase")]
    JobFailed {
        code: String,
        message: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<QueuedJob>,
    },
    /// Someone asked the job to stop. For a running job the worker confirms with `JobCancelled` within one
    /// progress interval. A job cancelled while still queued has no stream yet: then this is its first event,
    /// carries the job's identity in `queued` (so the stream knows its owner) and is followed by `JobCancelled`
    /// in the same commit; a worker receiving the job later cannot start it.
    #[serde(rename_all = "camelCase")]
    JobCancelRequested {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queued: Option<QueuedJob>,
    },
    /// The job stopped on request; whatever it had written is discarded, not presented as a backup.
    #[serde(rename_all = "camelCase")]
    JobCancelled {},
}

/// Why a job runs. Mirrors `SyncRequested.trigger` on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    Manual,
    Schedule,
    Group,
    Retry,
}

impl JobTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
            Self::Group => "group",
            Self::Retry => "retry",
        }
    }
}

/// The identity of a job that ended (cancelled, or failed by the system) before any worker started it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueuedJob {
    pub job_id: String,
    pub account_id: String,
    pub source_id: String,
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        match self {
            Self::JobStarted { .. } => "JobStarted",
            Self::JobAttemptStarted { .. } => "JobAttemptStarted",
            Self::JobProgressed { .. } => "JobProgressed",
            Self::ResourceBackedUp { .. } => "ResourceBackedUp",
            Self::JobSucceeded { .. } => "JobSucceeded",
            Self::JobFailed { .. } => "JobFailed",
            Self::JobCancelRequested { .. } => "JobCancelRequested",
            Self::JobCancelled {} => "JobCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
