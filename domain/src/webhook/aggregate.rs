use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use super::{NotificationType, WebhookCommand, WebhookEvent, AGGREGATE_TYPE};
use crate::error::{DomainError, ErrorKind};
use crate::AccountOwned;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum WebhookStatus {
    #[default]
    New,
    Active,
    Deleted,
}

/// The state a webhook needs to decide on commands.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Webhook {
    account_id: String,
    status: WebhookStatus,
    url: String,
    events: Vec<NotificationType>,
    description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("{}", crate::ResourceKind::Webhook.not_found())]
    NotFound,
    #[error("the webhook already exists")]
    AlreadyExists,
}

impl DomainError for WebhookError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound => ErrorKind::NotFound,
            Self::AlreadyExists => ErrorKind::Conflict,
        }
    }
}

impl Webhook {
    /// Whether this is a live webhook of `account_id`.
    pub fn is_live_for(&self, account_id: &str) -> bool {
        self.status == WebhookStatus::Active && self.account_id == account_id
    }
}

impl AccountOwned for Webhook {
    const KIND: crate::ResourceKind = crate::ResourceKind::Webhook;
    type Id = crate::WebhookId;

    fn owner_account(&self) -> Option<&str> {
        (self.status != WebhookStatus::New).then_some(self.account_id.as_str())
    }
}

impl Aggregate for Webhook {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = WebhookCommand;
    type Event = WebhookEvent;
    type Error = WebhookError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let account = command.account_id().as_str().to_owned();
        if !matches!(command, WebhookCommand::Create { .. }) && !self.is_live_for(&account) {
            return Err(WebhookError::NotFound);
        }
        let event = match command {
            WebhookCommand::Create {
                webhook_id,
                account_id,
                target,
                events,
                description,
            } => {
                if self.status != WebhookStatus::New {
                    return Err(WebhookError::AlreadyExists);
                }
                WebhookEvent::WebhookCreated {
                    webhook_id,
                    account_id: account_id.as_str().to_owned(),
                    url: target.as_url(),
                    events: events.iter().collect(),
                    description: description.map(|d| d.as_str().to_owned()),
                }
            }
            WebhookCommand::Update {
                target,
                events,
                description,
                ..
            } => {
                let url = target.map(|t| t.as_url()).filter(|u| *u != self.url);
                let events = events
                    .map(|e| e.iter().collect::<Vec<_>>())
                    .filter(|e| *e != self.events);
                let description = description
                    .map(|d| d.map(|d| d.as_str().to_owned()))
                    .filter(|d| *d != self.description);
                if url.is_none() && events.is_none() && description.is_none() {
                    return Ok(());
                }
                WebhookEvent::WebhookUpdated {
                    url,
                    events,
                    description,
                }
            }
            WebhookCommand::RotateSecret { .. } => WebhookEvent::WebhookSecretRotated {},
            WebhookCommand::Delete { .. } => WebhookEvent::WebhookDeleted {},
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            WebhookEvent::WebhookCreated {
                account_id,
                url,
                events,
                description,
                ..
            } => {
                self.account_id = account_id;
                self.url = url;
                self.events = events;
                self.description = description;
                self.status = WebhookStatus::Active;
            }
            WebhookEvent::WebhookUpdated {
                url,
                events,
                description,
            } => {
                if let Some(url) = url {
                    self.url = url;
                }
                if let Some(events) = events {
                    self.events = events;
                }
                if let Some(description) = description {
                    self.description = description;
                }
            }
            WebhookEvent::WebhookSecretRotated {} => {}
            WebhookEvent::WebhookDeleted {} => self.status = WebhookStatus::Deleted,
        }
    }
}
