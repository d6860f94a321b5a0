use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Schedule, SkipReason};
use crate::job::JobTrigger;
use crate::{ConnectionId, JobId, SourceGroupId, SourceId};

/// What happened to a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceEvent {
    #[serde(rename_all = "camelCase")]
    SourceCreated {
        source_id: SourceId,
        account_id: String,
        connection_id: ConnectionId,
        platform_id: String,
        name: String,
        data_types: Vec<String>,
        schedule: Schedule,
        retention_days: u32,
        incremental: bool,
        /// Retention keeps at most this many newest backups (absent: no limit by count).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_last: Option<u32>,
    },
    /// Only the settings that changed are present.
    #[serde(rename_all = "camelCase")]
    SourceUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_types: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<Schedule>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retention_days: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incremental: Option<bool>,
        /// A new `keepLast`; `0` when the limit by count was removed (`keepLast: null`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep_last: Option<u32>,
    },
    #[serde(rename_all = "camelCase")]
    SourcePaused {},
    #[serde(rename_all = "camelCase")]
    SourceResumed {},
    #[serde(rename_all = "camelCase")]
    SourceDeleted {},
    /// A backup was asked for: the job is `queued` from here until a worker records `JobStarted`.
    #[serde(rename_all = "camelCase")]
    SyncRequested {
        job_id: JobId,
        trigger: JobTrigger,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_of: Option<JobId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_id: Option<SourceGroupId>,
        /// The schedule slot this job runs for (trigger `schedule` only): the source remembers the last slot
        /// it handled, so no slot is run twice. Absent from events older than the scheduler.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot: Option<DateTime<Utc>>,
        /// Only these of the source's data types (a retry of the data types that failed); absent: every
        /// data type of the source, as in events older than partial jobs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data_types: Option<Vec<String>>,
    },
    /// A restore was asked for (issue 13 §5): the job `jobId`, of kind restore, is `queued` from here until a
    /// worker records `JobStarted`. While it is queued or running the source takes no other job.
    #[serde(rename_all = "camelCase")]
    RestoreRequested {
        job_id: JobId,
        #[serde(flatten)]
        restore: crate::job::RestoreRequest,
    },
    /// A schedule slot came while the source's previous job was still queued or running: no job for it.
    #[serde(rename_all = "camelCase")]
    SyncSkipped {
        slot: DateTime<Utc>,
        active_job_id: JobId,
        reason: SkipReason,
    },
    /// The job ended (a saga records this from the job's last event); the source is free for its next sync.
    #[serde(rename_all = "camelCase")]
    SyncFinished {
        job_id: JobId,
        outcome: SyncOutcome,
        /// Incremental cursors per data type, for the next job.
        #[serde(default)]
        cursors: BTreeMap<String, serde_json::Value>,
        /// The data types the job backed up (succeeded or partial): only their cursors are replaced by
        /// `cursors`. Absent from events older than partial jobs, whose successful job backed up every data type
        /// of the source.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backed_up: Option<Vec<String>>,
    },
}

/// How a job ended, as the source remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncOutcome {
    Succeeded,
    /// Some data types backed up, the others failed.
    Partial,
    Failed,
    Cancelled,
}

impl DomainEvent for SourceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SourceCreated { .. } => "SourceCreated",
            Self::SourceUpdated { .. } => "SourceUpdated",
            Self::SourcePaused {} => "SourcePaused",
            Self::SourceResumed {} => "SourceResumed",
            Self::SourceDeleted {} => "SourceDeleted",
            Self::SyncRequested { .. } => "SyncRequested",
            Self::RestoreRequested { .. } => "RestoreRequested",
            Self::SyncSkipped { .. } => "SyncSkipped",
            Self::SyncFinished { .. } => "SyncFinished",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
