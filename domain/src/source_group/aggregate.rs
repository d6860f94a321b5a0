use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{SourceGroupCommand, SourceGroupEvent, AGGREGATE_TYPE};
use crate::error::{DomainError, ErrorKind};
use crate::{AccountOwned, SourceGroupId, SourceId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum GroupStatus {
    #[default]
    New,
    Active,
    Deleted,
}

/// The state a group needs to decide on commands: who it belongs to and who its members are.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct SourceGroup {
    /// `None` until the stream names its group (`SourceGroupCreated`).
    id: Option<SourceGroupId>,
    account_id: String,
    status: GroupStatus,
    name: String,
    description: Option<String>,
    members: BTreeSet<SourceId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceGroupError {
    #[error("{}", crate::ResourceKind::SourceGroup.not_found())]
    NotFound,
    #[error("the source group already exists")]
    AlreadyExists,
    #[error("the source is not in this group")]
    NotAMember,
}

impl DomainError for SourceGroupError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound | Self::NotAMember => ErrorKind::NotFound,
            Self::AlreadyExists => ErrorKind::Conflict,
        }
    }
}

impl SourceGroup {
    pub fn is_live_for(&self, account_id: &str) -> bool {
        self.status == GroupStatus::Active && self.account_id == account_id
    }

    pub fn members(&self) -> &BTreeSet<SourceId> {
        &self.members
    }
}

impl AccountOwned for SourceGroup {
    const KIND: crate::ResourceKind = crate::ResourceKind::SourceGroup;
    type Id = crate::SourceGroupId;

    fn owner_account(&self) -> Option<&str> {
        (self.status != GroupStatus::New).then_some(self.account_id.as_str())
    }
}

impl Aggregate for SourceGroup {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = SourceGroupCommand;
    type Event = SourceGroupEvent;
    type Error = SourceGroupError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let account = command.account_id().as_str().to_owned();
        if !matches!(command, SourceGroupCommand::Create { .. }) && !self.is_live_for(&account) {
            return Err(SourceGroupError::NotFound);
        }
        let event = match command {
            SourceGroupCommand::Create {
                group_id,
                account_id,
                name,
                description,
            } => {
                if self.status != GroupStatus::New {
                    return Err(SourceGroupError::AlreadyExists);
                }
                SourceGroupEvent::SourceGroupCreated {
                    group_id,
                    account_id: account_id.as_str().to_owned(),
                    name: name.as_str().to_owned(),
                    description: description.map(|d| d.as_str().to_owned()),
                }
            }
            SourceGroupCommand::Update {
                name, description, ..
            } => {
                let name = name
                    .map(|n| n.as_str().to_owned())
                    .filter(|n| *n != self.name);
                let description = description
                    .map(|d| d.map(|d| d.as_str().to_owned()))
                    .filter(|d| *d != self.description);
                if name.is_none() && description.is_none() {
                    return Ok(());
                }
                SourceGroupEvent::SourceGroupUpdated { name, description }
            }
            SourceGroupCommand::AddSource { source_id, .. } => {
                if self.members.contains(&source_id) {
                    return Ok(());
                }
                SourceGroupEvent::SourceAddedToGroup { source_id }
            }
            SourceGroupCommand::RemoveSource { source_id, .. } => {
                if !self.members.contains(&source_id) {
                    return Err(SourceGroupError::NotAMember);
                }
                SourceGroupEvent::SourceRemovedFromGroup { source_id }
            }
            SourceGroupCommand::Delete { .. } => SourceGroupEvent::SourceGroupDeleted {
                source_ids: self.members.clone(),
            },
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SourceGroupEvent::SourceGroupCreated {
                group_id,
                account_id,
                name,
                description,
            } => {
                self.id = Some(group_id);
                self.account_id = account_id;
                self.name = name;
                self.description = description;
                self.status = GroupStatus::Active;
            }
            SourceGroupEvent::SourceGroupUpdated { name, description } => {
                if let Some(name) = name {
                    self.name = name;
                }
                if let Some(description) = description {
                    self.description = description;
                }
            }
            SourceGroupEvent::SourceAddedToGroup { source_id } => {
                self.members.insert(source_id);
            }
            SourceGroupEvent::SourceRemovedFromGroup { source_id } => {
                self.members.remove(&source_id);
            }
            SourceGroupEvent::SourceGroupDeleted { .. } => {
                self.members.clear();
                self.status = GroupStatus::Deleted;
            }
        }
    }
}
