use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{
    DataTypes, KeepLast, Schedule, SourceChanges, SourceCommand, SourceEvent, SyncOutcome,
    WantedStatus, AGGREGATE_TYPE,
};
use crate::error::{DomainError, ErrorKind};
use crate::platform::PlatformId;
use crate::{AccountOwned, ConnectionId, JobId, SourceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// Not created yet.
    #[default]
    New,
    Active,
    Paused,
    Deleted,
}

impl SourceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Deleted => "deleted",
        }
    }
}

/// The state a source needs to decide on commands; the read model holds what is shown.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Source {
    /// `None` until the stream names its source (`SourceCreated`), as is `connection_id`.
    id: Option<SourceId>,
    account_id: String,
    connection_id: Option<ConnectionId>,
    platform_id: String,
    status: SourceStatus,
    name: String,
    data_types: Vec<String>,
    schedule: Option<Schedule>,
    retention_days: u32,
    incremental: bool,
    /// Retention's limit by count (`keepLast`), if any.
    #[serde(default)]
    keep_last: Option<u32>,
    /// The job requested and not finished yet (queued or running): at most one per source.
    #[serde(default)]
    active_job: Option<JobId>,
    /// The last schedule slot handled (a job queued for it, or skipped): an earlier or equal slot is not run.
    #[serde(default)]
    last_scheduled_slot: Option<DateTime<Utc>>,
    /// Per data type, where the next incremental job starts: the cursors of the last job that succeeded.
    #[serde(default)]
    cursors: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{}", crate::ResourceKind::Source.not_found())]
    NotFound,
    #[error("the source already exists")]
    AlreadyExists,
    #[error("{0}")]
    InvalidDataTypes(String),
    #[error("the source already has a queued or running job ({0})")]
    SyncInProgress(JobId),
    #[error("{}: no longer selected on the source, so there is nothing to run again", .0.join(", "))]
    DataTypesNoLongerSelected(Vec<String>),
    #[error("data types to run must name at least one data type, without repeats")]
    InvalidRequestedDataTypes,
    /// A restore named a data type the platform's API cannot write (the catalog's `writable: false`).
    #[error("{} cannot be restored: the platform does not let ListBackup write them back (see the catalog's writable)", .0.join(", "))]
    NotWritable(Vec<String>),
}

impl DomainError for SourceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists => ErrorKind::Conflict,
            Self::InvalidDataTypes(_) | Self::InvalidRequestedDataTypes | Self::NotWritable(_) => {
                ErrorKind::Invalid
            }
            Self::SyncInProgress(_) | Self::DataTypesNoLongerSelected(_) => ErrorKind::Conflict,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidDataTypes(_) | Self::InvalidRequestedDataTypes | Self::NotWritable(_) => {
                Some("dataTypes")
            }
            _ => None,
        }
    }
}

impl Source {
    pub fn status(&self) -> SourceStatus {
        self.status
    }

    /// The connection the source backs up; `None` before the source is created.
    pub fn connection_id(&self) -> Option<ConnectionId> {
        self.connection_id
    }

    pub fn platform_id(&self) -> &str {
        &self.platform_id
    }

    pub fn data_types(&self) -> &[String] {
        &self.data_types
    }

    /// Whether jobs fetch only what changed since the previous successful job (where the platform can).
    pub fn incremental(&self) -> bool {
        self.incremental
    }

    /// The cursors of the last successful job, per data type (opaque to the domain: the connector's).
    pub fn cursors(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.cursors
    }

    /// The source's id; `None` before the source is created.
    pub fn id(&self) -> Option<SourceId> {
        self.id
    }

    /// `None` before the source is created.
    pub fn schedule(&self) -> Option<&Schedule> {
        self.schedule.as_ref()
    }

    /// The last schedule slot the source handled, if any.
    pub fn last_scheduled_slot(&self) -> Option<DateTime<Utc>> {
        self.last_scheduled_slot
    }

    /// The job requested and not finished yet, if any.
    pub fn active_job(&self) -> Option<JobId> {
        self.active_job
    }

    /// Exists, is not deleted, and belongs to `account_id` (deleted and foreign sources look the same).
    pub fn is_live_for(&self, account_id: &str) -> bool {
        matches!(self.status, SourceStatus::Active | SourceStatus::Paused)
            && self.account_id == account_id
    }

    /// The data types a sync runs: every selected one, or those of `requested` the source still selects, in
    /// the source's order.
    /// A restore's data types: at least one, no repeats, each a writable data type of the source's platform.
    fn require_writable(&self, requested: &[String]) -> Result<(), SourceError> {
        let distinct: std::collections::BTreeSet<&String> = requested.iter().collect();
        if requested.is_empty() || distinct.len() != requested.len() {
            return Err(SourceError::InvalidRequestedDataTypes);
        }
        let platform = PlatformId::parse(&self.platform_id)
            .ok_or(SourceError::NotFound)?
            .platform();
        let not_writable: Vec<String> = requested
            .iter()
            .filter(|d| !platform.data_type(d).is_some_and(|d| d.is_writable()))
            .cloned()
            .collect();
        if !not_writable.is_empty() {
            return Err(SourceError::NotWritable(not_writable));
        }
        Ok(())
    }

    fn data_types_to_run(
        &self,
        requested: Option<Vec<String>>,
    ) -> Result<Option<Vec<String>>, SourceError> {
        let Some(requested) = requested else {
            return Ok(None);
        };
        let distinct: std::collections::BTreeSet<&String> = requested.iter().collect();
        if requested.is_empty() || distinct.len() != requested.len() {
            return Err(SourceError::InvalidRequestedDataTypes);
        }
        let selected: Vec<String> = self
            .data_types
            .iter()
            .filter(|d| requested.contains(d))
            .cloned()
            .collect();
        if selected.is_empty() {
            return Err(SourceError::DataTypesNoLongerSelected(requested));
        }
        Ok(Some(selected))
    }

    /// The events an update records: only what actually changes.
    fn changes(&self, changes: SourceChanges) -> Result<Vec<SourceEvent>, SourceError> {
        let data_types = match changes.data_types {
            None => None,
            Some(raw) => {
                let platform = PlatformId::parse(&self.platform_id)
                    .ok_or(SourceError::NotFound)?
                    .platform();
                let parsed = DataTypes::parse(platform, Some(&raw))
                    .map_err(SourceError::InvalidDataTypes)?;
                Some(parsed.names().to_vec())
            }
        };
        let name = changes
            .name
            .map(|n| n.as_str().to_owned())
            .filter(|n| *n != self.name);
        let data_types = data_types.filter(|d| *d != self.data_types);
        let schedule = changes
            .schedule
            .filter(|s| self.schedule.as_ref() != Some(s));
        let retention_days = changes
            .retention_days
            .map(|r| r.days())
            .filter(|r| *r != self.retention_days);
        let incremental = changes.incremental.filter(|i| *i != self.incremental);
        let keep_last = changes
            .keep_last
            .map(|k| k.map(KeepLast::count))
            .filter(|k| *k != self.keep_last)
            .map(|k| k.unwrap_or(0));
        let mut events = Vec::new();
        if name.is_some()
            || keep_last.is_some()
            || data_types.is_some()
            || schedule.is_some()
            || retention_days.is_some()
            || incremental.is_some()
        {
            events.push(SourceEvent::SourceUpdated {
                name,
                data_types,
                schedule,
                retention_days,
                incremental,
                keep_last,
            });
        }
        match (changes.status, self.status) {
            (Some(WantedStatus::Paused), SourceStatus::Active) => {
                events.push(SourceEvent::SourcePaused {})
            }
            (Some(WantedStatus::Active), SourceStatus::Paused) => {
                events.push(SourceEvent::SourceResumed {})
            }
            _ => {}
        }
        Ok(events)
    }
}

impl AccountOwned for Source {
    const KIND: crate::ResourceKind = crate::ResourceKind::Source;
    type Id = crate::SourceId;

    fn owner_account(&self) -> Option<&str> {
        (self.status != SourceStatus::New).then_some(self.account_id.as_str())
    }
}

impl Aggregate for Source {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = SourceCommand;
    type Event = SourceEvent;
    type Error = SourceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let account = command.account_id().as_str().to_owned();
        if !matches!(command, SourceCommand::Create { .. }) && !self.is_live_for(&account) {
            return Err(SourceError::NotFound);
        }
        let events = match command {
            SourceCommand::Create {
                source_id,
                account_id,
                connection_id,
                platform_id,
                name,
                data_types,
                schedule,
                retention_days,
                incremental,
                keep_last,
            } => {
                if self.status != SourceStatus::New {
                    return Err(SourceError::AlreadyExists);
                }
                vec![SourceEvent::SourceCreated {
                    source_id,
                    account_id: account_id.as_str().to_owned(),
                    connection_id,
                    platform_id: platform_id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    data_types: data_types.names().to_vec(),
                    schedule,
                    retention_days: retention_days.days(),
                    incremental,
                    keep_last: keep_last.map(KeepLast::count),
                }]
            }
            SourceCommand::Update { changes, .. } => self.changes(changes)?,
            SourceCommand::Delete { .. } => vec![SourceEvent::SourceDeleted {}],
            SourceCommand::RequestSync {
                job_id,
                trigger,
                retry_of,
                group_id,
                data_types,
                ..
            } => {
                if let Some(active) = self.active_job {
                    return Err(SourceError::SyncInProgress(active));
                }
                let data_types = self.data_types_to_run(data_types)?;
                vec![SourceEvent::SyncRequested {
                    job_id,
                    trigger,
                    retry_of,
                    group_id,
                    slot: None,
                    data_types,
                }]
            }
            SourceCommand::RequestRestore {
                job_id, restore, ..
            } => {
                if let Some(active) = self.active_job {
                    return Err(SourceError::SyncInProgress(active));
                }
                self.require_writable(&restore.data_types)?;
                vec![SourceEvent::RestoreRequested { job_id, restore }]
            }
            SourceCommand::RunScheduledSlot { slot, .. } => self.on_slot(slot),
            SourceCommand::FinishSync {
                job_id,
                outcome,
                cursors,
                backed_up,
                ..
            } => {
                if self.active_job != Some(job_id) {
                    vec![]
                } else {
                    vec![SourceEvent::SyncFinished {
                        job_id,
                        outcome,
                        cursors,
                        backed_up,
                    }]
                }
            }
        };
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SourceEvent::SourceCreated {
                source_id,
                account_id,
                connection_id,
                platform_id,
                name,
                data_types,
                schedule,
                retention_days,
                incremental,
                keep_last,
            } => {
                self.keep_last = keep_last;
                self.id = Some(source_id);
                self.account_id = account_id;
                self.connection_id = Some(connection_id);
                self.platform_id = platform_id;
                self.name = name;
                self.data_types = data_types;
                self.schedule = Some(schedule);
                self.retention_days = retention_days;
                self.incremental = incremental;
                self.status = SourceStatus::Active;
            }
            SourceEvent::SourceUpdated {
                name,
                data_types,
                schedule,
                retention_days,
                incremental,
                keep_last,
            } => {
                if let Some(keep_last) = keep_last {
                    self.keep_last = (keep_last > 0).then_some(keep_last);
                }
                if let Some(name) = name {
                    self.name = name;
                }
                if let Some(data_types) = data_types {
                    // A deselected data type's cursor goes: selected again later, it starts with a full
                    // fetch, not from a cursor whose earlier backups may have expired meanwhile.
                    self.cursors.retain(|d, _| data_types.contains(d));
                    self.data_types = data_types;
                }
                if let Some(schedule) = schedule {
                    self.schedule = Some(schedule);
                }
                if let Some(retention_days) = retention_days {
                    self.retention_days = retention_days;
                }
                if let Some(incremental) = incremental {
                    self.incremental = incremental;
                }
            }
            SourceEvent::SourcePaused {} => self.status = SourceStatus::Paused,
            SourceEvent::SourceResumed {} => self.status = SourceStatus::Active,
            SourceEvent::SourceDeleted {} => self.status = SourceStatus::Deleted,
            SourceEvent::SyncRequested { job_id, slot, .. } => {
                self.active_job = Some(job_id);
                if slot.is_some() {
                    self.last_scheduled_slot = slot;
                }
            }
            SourceEvent::RestoreRequested { job_id, .. } => self.active_job = Some(job_id),
            SourceEvent::SyncSkipped { slot, .. } => self.last_scheduled_slot = Some(slot),
            SourceEvent::SyncFinished {
                outcome,
                mut cursors,
                backed_up,
                ..
            } => {
                self.active_job = None;
                // A failed or cancelled job stored nothing to continue from: the next job starts where the last
                // successful one ended. A succeeded or partial job replaces the cursors of the data types it
                // backed up (one without a cursor now, a full fetch of a type that has none, loses its old one)
                // and leaves the others' alone: a data type that failed, or that a retry did not run, continues
                // from where its last backup ended.
                if matches!(outcome, SyncOutcome::Succeeded | SyncOutcome::Partial) {
                    match backed_up {
                        Some(backed_up) => {
                            for data_type in backed_up {
                                match cursors.remove(&data_type) {
                                    Some(cursor) => self.cursors.insert(data_type, cursor),
                                    None => self.cursors.remove(&data_type),
                                };
                            }
                        }
                        // An event from before partial jobs: its job backed up every data type.
                        None => self.cursors = cursors,
                    }
                    self.cursors.retain(|d, _| self.data_types.contains(d));
                }
            }
        }
    }
}
