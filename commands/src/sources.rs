//! Source use cases: the checks that reach beyond the Source aggregate (its connection), then one command.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use listbackup_domain::connection::Connection;
use listbackup_domain::job::JobTrigger;
use listbackup_domain::platform::PlatformId;
use listbackup_domain::source::{
    DataTypes, RetentionDays, Schedule, Source, SourceChanges, SourceCommand, SyncOutcome,
};
use listbackup_domain::values::{AccountId, DisplayName};
use listbackup_domain::{ConnectionId, ErrorKind, JobId, ResourceKind, SourceGroupId, SourceId};

use crate::bus::{CommandBus, CommandError, Committed};
use crate::metadata::EventMetadata;

/// A new source, parsed by the caller; data types are checked here against the connection's platform.
#[derive(Debug, Clone)]
pub struct NewSource {
    pub connection_id: ConnectionId,
    pub name: DisplayName,
    /// `None`: every data type of the platform.
    pub data_types: Option<Vec<String>>,
    pub schedule: Schedule,
    pub retention_days: RetentionDays,
    pub incremental: bool,
    /// Retention keeps at most this many newest backups; `None`: no limit by count.
    pub keep_last: Option<listbackup_domain::source::KeepLast>,
}

/// Why a sync is requested, and what it relates to.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub trigger: JobTrigger,
    /// The failed or cancelled job a retry repeats.
    pub retry_of: Option<JobId>,
    /// The group whose sync requested it.
    pub group_id: Option<SourceGroupId>,
    /// Only these data types (a retry of the ones that failed); `None`: every data type of the source.
    pub data_types: Option<Vec<String>>,
}

impl SyncRequest {
    pub fn manual() -> Self {
        Self {
            trigger: JobTrigger::Manual,
            retry_of: None,
            group_id: None,
            data_types: None,
        }
    }
}

pub struct SourceCommands {
    bus: CommandBus<Source>,
    connections: CommandBus<Connection>,
}

impl SourceCommands {
    pub fn new(bus: CommandBus<Source>, connections: CommandBus<Connection>) -> Self {
        Self { bus, connections }
    }

    /// Records SourceCreated once the connection is known to exist, to be the caller's, and to be active.
    /// The connection is read from the event store, not a read model, so a connection deleted a moment ago
    /// is never used.
    pub async fn create(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        new: NewSource,
    ) -> Result<Committed, CommandError> {
        let account_id = account(metadata)?;
        let connection_id = new.connection_id;
        let (connection, _) = self.connections.load(&connection_id).await?;
        if !connection.is_live_for(&metadata.account_id) {
            return Err(CommandError::not_found_field(
                ResourceKind::Connection,
                "connectionId",
            ));
        }
        if !connection.is_active_for(&metadata.account_id) {
            return Err(CommandError::Domain {
                kind: ErrorKind::Conflict,
                field: Some("connectionId"),
                message: "the connection must be reconnected before it can be used".into(),
            });
        }
        let platform_id = PlatformId::parse(connection.platform_id())
            .ok_or_else(|| CommandError::corrupt("connection names an unknown platform"))?;
        let data_types = DataTypes::parse(platform_id.platform(), new.data_types.as_deref())
            .map_err(|message| CommandError::Domain {
                kind: ErrorKind::Invalid,
                field: Some("dataTypes"),
                message,
            })?;
        require_granted(&connection, &connection_id, data_types.names())?;
        let command = SourceCommand::Create {
            source_id: *source_id,
            account_id,
            connection_id,
            platform_id,
            name: new.name,
            data_types,
            schedule: new.schedule,
            retention_days: new.retention_days,
            incremental: new.incremental,
            keep_last: new.keep_last,
        };
        self.bus.execute(source_id, command, metadata, None).await
    }

    /// Changes settings and/or pauses or resumes, as one commit.
    pub async fn update(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        expected_version: impl Into<crate::ExpectedVersion>,
        changes: SourceChanges,
    ) -> Result<Committed, CommandError> {
        if let Some(data_types) = &changes.data_types {
            let (source, _) = self.live(metadata, source_id).await?;
            let connection_id = connection_of(&source)?;
            let (connection, _) = self.connections.load(&connection_id).await?;
            require_granted(&connection, &connection_id, data_types)?;
        }
        let command = SourceCommand::Update {
            account_id: account(metadata)?,
            changes,
        };
        self.bus
            .execute(source_id, command, metadata, expected_version)
            .await
    }

    /// Soft delete. Its groups let go of it through the membership saga, driven by SourceDeleted.
    pub async fn delete(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        expected_version: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = SourceCommand::Delete {
            account_id: account(metadata)?,
        };
        self.bus
            .execute(source_id, command, metadata, expected_version)
            .await
    }

    /// Records SyncRequested: the job `job_id` is queued. A conflict while an earlier job of the source is
    /// queued or running (checked by the aggregate, so two concurrent requests cannot both queue one), or when
    /// `sync.data_types` are all deselected from the source since. `expected`: the source's version the caller
    /// saw (`If-Match`); another version is [`CommandError::VersionMismatch`]. Requests from clients go
    /// through [`crate::source_sync::queue_sync`], which tells a job that has just ended from one still going.
    pub async fn request_sync(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        job_id: JobId,
        sync: SyncRequest,
        expected: impl Into<crate::ExpectedVersion>,
    ) -> Result<Committed, CommandError> {
        let command = SourceCommand::RequestSync {
            account_id: account(metadata)?,
            job_id,
            trigger: sync.trigger,
            retry_of: sync.retry_of,
            group_id: sync.group_id,
            data_types: sync.data_types,
        };
        self.bus
            .execute(source_id, command, metadata, expected)
            .await
    }

    /// Records RestoreRequested: the restore job `job_id` is queued (see [`crate::restores`], which checks
    /// the snapshot first). A conflict while another job of the source is queued or running; invalid when a
    /// data type is not writable.
    pub(crate) async fn request_restore(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        job_id: JobId,
        restore: listbackup_domain::job::RestoreRequest,
    ) -> Result<Committed, CommandError> {
        let (source, _) = self.live(metadata, source_id).await?;
        let connection_id = connection_of(&source)?;
        let (connection, _) = self.connections.load(&connection_id).await?;
        if !restore.dry_run {
            require_write_access(&connection, &connection_id, &restore.data_types)?;
        }
        let command = SourceCommand::RequestRestore {
            account_id: account(metadata)?,
            job_id,
            restore,
        };
        self.bus.execute(source_id, command, metadata, None).await
    }

    /// Offers schedule slot `slot` to the source (the scheduler's command): records SyncRequested for the
    /// slot's job, or SyncSkipped while a job is unfinished, or nothing when the slot was handled already,
    /// the source is paused, or its schedule no longer fires then. Losing a race with another scheduler is
    /// decided again on the winner's state, where the slot is handled: `events: 0`.
    pub async fn run_scheduled_slot(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        slot: DateTime<Utc>,
    ) -> Result<Committed, CommandError> {
        let command = SourceCommand::RunScheduledSlot {
            account_id: account(metadata)?,
            slot,
        };
        self.bus.execute(source_id, command, metadata, None).await
    }

    /// Records SyncFinished for `job_id` (the source's next sync is accepted again). A job that is not the
    /// source's current one records nothing, so replaying the end of a job is harmless. `backed_up`: the data
    /// types a succeeded or partial job stored, whose cursors `cursors` replace.
    pub async fn finish_sync(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
        job_id: JobId,
        outcome: SyncOutcome,
        cursors: BTreeMap<String, serde_json::Value>,
        backed_up: Option<Vec<String>>,
    ) -> Result<Committed, CommandError> {
        let command = SourceCommand::FinishSync {
            account_id: account(metadata)?,
            job_id,
            outcome,
            cursors,
            backed_up,
        };
        self.bus.execute(source_id, command, metadata, None).await
    }

    /// The source as the write side knows it, if it is a live source of the caller's account.
    pub async fn live(
        &self,
        metadata: &EventMetadata,
        source_id: &SourceId,
    ) -> Result<(Source, u64), CommandError> {
        let (source, version) = self.bus.load(source_id).await?;
        if source.is_live_for(&metadata.account_id) {
            Ok((source, version))
        } else {
            Err(CommandError::not_found(ResourceKind::Source))
        }
    }

    /// The job queued or running on the source, deleted or not: what the deletion saga cancels.
    pub async fn active_job(&self, source_id: &SourceId) -> Result<Option<JobId>, CommandError> {
        let (source, _) = self.bus.load(source_id).await?;
        Ok(source.active_job())
    }
}

/// The connection of `source`, a created source (its `SourceCreated` names it); a source that names none is
/// not found.
pub fn connection_of(source: &Source) -> Result<ConnectionId, CommandError> {
    source
        .connection_id()
        .ok_or_else(|| CommandError::not_found(ResourceKind::Source))
}

/// Data types an OAuth connection was not granted the scopes of are refused until the customer consents
/// (connections that recorded no scopes are not checked).
fn require_granted(
    connection: &Connection,
    connection_id: &ConnectionId,
    data_types: &[String],
) -> Result<(), CommandError> {
    let (Some(granted), Some(platform)) = (
        connection.granted_scopes(),
        PlatformId::parse(connection.platform_id()),
    ) else {
        return Ok(());
    };
    let ungranted = platform.platform().ungranted(granted, data_types);
    if ungranted.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = ungranted.iter().map(|(name, _)| *name).collect();
    let scopes: Vec<&str> = ungranted.iter().map(|(_, scope)| *scope).collect();
    Err(CommandError::Domain {
        kind: ErrorKind::Conflict,
        field: Some("dataTypes"),
        message: format!(
            "the connection was not granted what {} need ({}): reconnect it with POST /connections/\
             {connection_id}/reconnect {{\"dataTypes\": [{}]}} and consent again",
            names.join(", "),
            scopes.join(", "),
            names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// A restore through an OAuth connection not granted its data types' write scopes
/// ([`RecordWrites::scopes`](listbackup_domain::platform::writes::RecordWrites::scopes)) is refused before
/// it is queued, naming the scopes and the way to consent to them (the platform would refuse every write).
/// A dry run only reads, and is let through.
/// Connections that recorded no scopes (API keys) are not checked; unknown or unwritable data types are
/// the aggregate's to refuse.
fn require_write_access(
    connection: &Connection,
    connection_id: &ConnectionId,
    data_types: &[String],
) -> Result<(), CommandError> {
    let (Some(granted), Some(platform)) = (
        connection.granted_scopes(),
        PlatformId::parse(connection.platform_id()),
    ) else {
        return Ok(());
    };
    let missing = platform.platform().ungranted_writes(granted, data_types);
    if missing.is_empty() {
        return Ok(());
    }
    Err(CommandError::Domain {
        kind: ErrorKind::Invalid,
        field: Some("dataTypes"),
        message: format!(
            "the connection was granted read access only: restoring {} needs the scope{} {}, which it was \
             not granted. Reconnect it with write access (POST /connections/{connection_id}/reconnect \
             {{\"writeAccess\": true}}) and consent again, or use API credentials that may write",
            data_types.join(", "),
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
        ),
    })
}

pub(crate) fn account(metadata: &EventMetadata) -> Result<AccountId, CommandError> {
    AccountId::parse(&metadata.account_id).map_err(|message| CommandError::Domain {
        kind: ErrorKind::Invalid,
        field: None,
        message,
    })
}
