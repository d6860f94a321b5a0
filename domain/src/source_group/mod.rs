//! The SourceGroup aggregate: a named set of sources of one account, synced together.

mod aggregate;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

pub use aggregate::{SourceGroup, SourceGroupError};

use crate::values::{AccountId, DisplayName};
use crate::{SourceGroupId, SourceId};

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "source_group";

/// A group's free-text description: trimmed, at most 1000 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 1000;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let trimmed = raw.trim();
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(format!("must be at most {} characters", Self::MAX_CHARS));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err("must not contain control characters".into());
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What may be asked of a group. Each carries the caller's account.
#[derive(Debug, Clone)]
pub enum SourceGroupCommand {
    Create {
        group_id: SourceGroupId,
        account_id: AccountId,
        name: DisplayName,
        description: Option<Description>,
    },
    /// `description: Some(None)` clears it.
    Update {
        account_id: AccountId,
        name: Option<DisplayName>,
        description: Option<Option<Description>>,
    },
    /// The caller has checked that the source is a live source of the same account.
    /// Adding a member twice records nothing.
    AddSource {
        account_id: AccountId,
        source_id: SourceId,
    },
    RemoveSource {
        account_id: AccountId,
        source_id: SourceId,
    },
    Delete {
        account_id: AccountId,
    },
}

impl SourceGroupCommand {
    pub fn account_id(&self) -> &AccountId {
        match self {
            Self::Create { account_id, .. }
            | Self::Update { account_id, .. }
            | Self::AddSource { account_id, .. }
            | Self::RemoveSource { account_id, .. }
            | Self::Delete { account_id } => account_id,
        }
    }
}

/// What happened to a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceGroupEvent {
    #[serde(rename_all = "camelCase")]
    SourceGroupCreated {
        group_id: SourceGroupId,
        account_id: String,
        name: String,
        #[serde(default)]
        description: Option<String>,
    },
    /// Only what changed is present; `description: null` clears it.
    #[serde(rename_all = "camelCase")]
    SourceGroupUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "double_option"
        )]
        description: Option<Option<String>>,
    },
    #[serde(rename_all = "camelCase")]
    SourceAddedToGroup { source_id: SourceId },
    #[serde(rename_all = "camelCase")]
    SourceRemovedFromGroup { source_id: SourceId },
    #[serde(rename_all = "camelCase")]
    SourceGroupDeleted {
        /// The members at deletion, so readers need no other state to drop the memberships.
        source_ids: BTreeSet<SourceId>,
    },
}

impl DomainEvent for SourceGroupEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SourceGroupCreated { .. } => "SourceGroupCreated",
            Self::SourceGroupUpdated { .. } => "SourceGroupUpdated",
            Self::SourceAddedToGroup { .. } => "SourceAddedToGroup",
            Self::SourceRemovedFromGroup { .. } => "SourceRemovedFromGroup",
            Self::SourceGroupDeleted { .. } => "SourceGroupDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// `Some(None)` ⇄ JSON `null`, `Some(Some(v))` ⇄ `v`; absence (`None`) is handled by `default`/`skip`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<Option<String>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(deserializer).map(Some)
    }
}
