use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Schedule;

/// What happened to a source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceEvent {
    #[serde(rename_all = "camelCase")]
    SourceCreated {
        source_id: String,
        account_id: String,
        connection_id: String,
        platform_id: String,
        name: String,
        data_types: Vec<String>,
        schedule: Schedule,
        retention_days: u32,
        incremental: bool,
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
    },
    #[serde(rename_all = "camelCase")]
    SourcePaused {},
    #[serde(rename_all = "camelCase")]
    SourceResumed {},
    #[serde(rename_all = "camelCase")]
    SourceDeleted {},
}

impl DomainEvent for SourceEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SourceCreated { .. } => "SourceCreated",
            Self::SourceUpdated { .. } => "SourceUpdated",
            Self::SourcePaused {} => "SourcePaused",
            Self::SourceResumed {} => "SourceResumed",
            Self::SourceDeleted {} => "SourceDeleted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}
