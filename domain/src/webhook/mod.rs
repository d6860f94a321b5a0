//! The Webhook aggregate (issue 14 §5): where an account wants to be told about backup outcomes. A webhook
//! is an HTTPS endpoint (signed POSTs) or an e-mail address (`mailto:`, sent through the configured SMTP
//! server), and the notification types it subscribes to.
//!
//! Its signing secret is never in an event: it is kept encrypted outside the log (the write side's webhook
//! secrets, under the master key), and `WebhookSecretRotated` only says that it changed.

mod aggregate;
mod target;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

pub use aggregate::{Webhook, WebhookError};
pub use target::{is_public, TargetPolicy, WebhookTarget};

use crate::source_group::Description;
use crate::values::AccountId;
use crate::WebhookId;

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "webhook";

/// What a webhook can be notified of: the `type` of a notification, in the dotted form Stripe and GitHub
/// use for theirs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum NotificationType {
    /// A job ended without a backup (`JobFailed`).
    #[serde(rename = "job.failed")]
    JobFailed,
    /// A job backed up some of its data types, and others failed (`JobPartiallySucceeded`).
    #[serde(rename = "job.partial")]
    JobPartial,
    /// A job backed up every data type (`JobSucceeded`).
    #[serde(rename = "job.succeeded")]
    JobSucceeded,
    /// A connection's platform refused its authorization; the customer must reconnect
    /// (`ConnectionReauthRequired`).
    #[serde(rename = "connection.reauth_required")]
    ConnectionReauthRequired,
    /// A stored backup no longer matches its manifest (`BackupCorrupted`).
    #[serde(rename = "backup.corrupted")]
    BackupCorrupted,
}

impl NotificationType {
    /// Every type a webhook may subscribe to.
    pub const ALL: [Self; 5] = [
        Self::JobFailed,
        Self::JobPartial,
        Self::JobSucceeded,
        Self::ConnectionReauthRequired,
        Self::BackupCorrupted,
    ];

    /// The dotted name (`job.failed`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::JobFailed => "job.failed",
            Self::JobPartial => "job.partial",
            Self::JobSucceeded => "job.succeeded",
            Self::ConnectionReauthRequired => "connection.reauth_required",
            Self::BackupCorrupted => "backup.corrupted",
        }
    }

    /// Parses the dotted name; the error lists the names there are.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == raw)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown event type {raw:?}: one of {}", names.join(", "))
            })
    }
}

/// The notification types of a webhook: at least one, each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Subscriptions(BTreeSet<NotificationType>);

impl Subscriptions {
    /// At least one type; a repeated one counts once.
    pub fn new(types: impl IntoIterator<Item = NotificationType>) -> Result<Self, String> {
        let set: BTreeSet<_> = types.into_iter().collect();
        if set.is_empty() {
            return Err("must name at least one event type".into());
        }
        Ok(Self(set))
    }

    pub fn contains(&self, kind: NotificationType) -> bool {
        self.0.contains(&kind)
    }

    pub fn iter(&self) -> impl Iterator<Item = NotificationType> + '_ {
        self.0.iter().copied()
    }
}

/// What may be asked of a webhook. Each carries the caller's account.
#[derive(Debug, Clone)]
pub enum WebhookCommand {
    Create {
        webhook_id: WebhookId,
        account_id: AccountId,
        target: WebhookTarget,
        events: Subscriptions,
        description: Option<Description>,
    },
    /// Only what is `Some` changes; `description: Some(None)` clears it.
    Update {
        account_id: AccountId,
        target: Option<WebhookTarget>,
        events: Option<Subscriptions>,
        description: Option<Option<Description>>,
    },
    /// The caller has stored a new signing secret; this records that the old one no longer signs.
    RotateSecret {
        account_id: AccountId,
    },
    Delete {
        account_id: AccountId,
    },
}

impl WebhookCommand {
    pub fn account_id(&self) -> &AccountId {
        match self {
            Self::Create { account_id, .. }
            | Self::Update { account_id, .. }
            | Self::RotateSecret { account_id }
            | Self::Delete { account_id } => account_id,
        }
    }
}

/// What happened to a webhook. No event carries its signing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum WebhookEvent {
    #[serde(rename_all = "camelCase")]
    WebhookCreated {
        webhook_id: WebhookId,
        account_id: String,
        /// `https://…` (or `http://…` where allowed), or `mailto:address`.
        url: String,
        events: Vec<NotificationType>,
        #[serde(default)]
        description: Option<String>,
    },
    /// Only what changed is present; `description: null` clears it.
    #[serde(rename_all = "camelCase")]
    WebhookUpdated {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        events: Option<Vec<NotificationType>>,
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "double_option"
        )]
        description: Option<Option<String>>,
    },
    /// A new signing secret replaced the old one (the secret itself is not here).
    #[serde(rename_all = "camelCase")]
    WebhookSecretRotated {},
    /// The webhook gets no more notifications; its secret is destroyed after this event.
    #[serde(rename_all = "camelCase")]
    WebhookDeleted {},
}

impl DomainEvent for WebhookEvent {
    fn event_type(&self) -> String {
        match self {
            Self::WebhookCreated { .. } => "WebhookCreated",
            Self::WebhookUpdated { .. } => "WebhookUpdated",
            Self::WebhookSecretRotated {} => "WebhookSecretRotated",
            Self::WebhookDeleted {} => "WebhookDeleted",
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
