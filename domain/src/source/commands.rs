use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{DataTypes, KeepLast, RetentionDays, Schedule, SyncOutcome};
use crate::job::JobTrigger;
use crate::platform::PlatformId;
use crate::values::{AccountId, DisplayName};
use crate::{ConnectionId, JobId, SourceGroupId, SourceId};

/// What may be asked of a source. Each carries the caller's account: a source answers only to its own.
#[derive(Debug, Clone)]
pub enum SourceCommand {
    Create {
        /// Chosen by the caller (UUID v7).
        source_id: SourceId,
        account_id: AccountId,
        /// Checked by the caller: a live, active connection of the same account.
        connection_id: ConnectionId,
        platform_id: PlatformId,
        name: DisplayName,
        data_types: DataTypes,
        schedule: Schedule,
        retention_days: RetentionDays,
        incremental: bool,
        /// Retention keeps at most this many newest backups; `None`: no limit by count.
        keep_last: Option<KeepLast>,
    },
    /// Any subset of the settings, and pause/resume, as one commit (so one `If-Match` covers all).
    Update {
        account_id: AccountId,
        changes: SourceChanges,
    },
    /// Soft delete: the stream stays, the source is gone from every view.
    Delete { account_id: AccountId },
    /// Queue a restore (a job of kind restore) of `restore.snapshot`, which the caller checked is a backup of
    /// this source. Refused (conflict) while another job of the source has not finished, and (invalid) when a
    /// data type is not a writable data type of the source's platform.
    RequestRestore {
        account_id: AccountId,
        /// Chosen by the caller (UUID v7); becomes the Job aggregate's id.
        job_id: JobId,
        restore: crate::job::RestoreRequest,
    },
    /// Queue a backup. Refused (conflict) while an earlier job of this source has not finished.
    RequestSync {
        account_id: AccountId,
        /// Chosen by the caller (UUID v7); becomes the Job aggregate's id.
        job_id: JobId,
        trigger: JobTrigger,
        retry_of: Option<JobId>,
        group_id: Option<SourceGroupId>,
        /// Only these data types (a retry of the ones that failed): those the source no longer selects are
        /// left out, and a conflict when that leaves none. `None`: every data type of the source.
        data_types: Option<Vec<String>>,
    },
    /// A slot of the source's schedule has come (sent by the scheduler): queue the slot's job, or record that
    /// the slot is skipped while the previous job is unfinished. The job id is derived from the source and
    /// the slot, and a slot already handled records nothing, so every scheduler may offer the same slot.
    RunScheduledSlot {
        account_id: AccountId,
        slot: DateTime<Utc>,
    },
    /// Record the end of the source's current job. Idempotent: a job that is not the current one is ignored,
    /// so a redelivered end event records nothing twice.
    FinishSync {
        account_id: AccountId,
        job_id: JobId,
        outcome: SyncOutcome,
        cursors: BTreeMap<String, serde_json::Value>,
        /// The data types the job backed up (see `SyncFinished.backed_up`).
        backed_up: Option<Vec<String>>,
    },
}

impl SourceCommand {
    pub fn account_id(&self) -> &AccountId {
        match self {
            Self::Create { account_id, .. }
            | Self::Update { account_id, .. }
            | Self::Delete { account_id }
            | Self::RequestSync { account_id, .. }
            | Self::RequestRestore { account_id, .. }
            | Self::RunScheduledSlot { account_id, .. }
            | Self::FinishSync { account_id, .. } => account_id,
        }
    }
}

/// The requested changes of an update. Data types arrive unparsed: whether they are valid depends on the
/// source's platform, which the aggregate knows.
#[derive(Debug, Clone, Default)]
pub struct SourceChanges {
    pub name: Option<DisplayName>,
    pub data_types: Option<Vec<String>>,
    pub schedule: Option<Schedule>,
    pub retention_days: Option<RetentionDays>,
    pub incremental: Option<bool>,
    /// `Some(None)` removes the limit by count.
    pub keep_last: Option<Option<KeepLast>>,
    pub status: Option<WantedStatus>,
}

/// The statuses a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantedStatus {
    Active,
    Paused,
}
