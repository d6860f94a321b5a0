//! The Account aggregate: what happens to a whole account. For now one thing: its erasure (issue 13 §2),
//! recorded once as `AccountErased` on the stream `account/{accountId}`. The event is appended through the
//! event store like any other, so it is hash-chained (migration 0010) and `GET /audit/verify` covers it;
//! the account's other streams are left as they are, as evidence.
//!
//! What erasure destroys (the account's data key, which makes its backups unreadable ciphertext, and its
//! connections' stored credentials) lives outside the log: `listbackup_commands::accounts` destroys it after
//! recording the event.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::error::{DomainError, ErrorKind};
use crate::values::AccountId;
use crate::AccountOwned;

/// The aggregate type name in the event store and in NATS subjects.
pub const AGGREGATE_TYPE: &str = "account";

/// What may be asked of an account.
#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// Records the erasure; erasing an erased account records nothing.
    Erase {
        account_id: AccountId,
        /// The actor (`user:<sub>`).
        by: String,
        at: DateTime<Utc>,
    },
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account's data key and credentials were destroyed (after this event is recorded): its backups
    /// are unreadable ciphertext and its connections cannot authenticate. `by` is the actor who asked.
    #[serde(rename_all = "camelCase")]
    AccountErased {
        account_id: String,
        by: String,
        at: DateTime<Utc>,
    },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> String {
        match self {
            Self::AccountErased { .. } => "AccountErased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
    }
}

/// An account's state: whether (and when, by whom) it was erased.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    account_id: Option<String>,
    erased: Option<(String, DateTime<Utc>)>,
}

impl Account {
    /// Who erased the account and when; `None` while it is not erased.
    pub fn erased(&self) -> Option<(&str, DateTime<Utc>)> {
        self.erased.as_ref().map(|(by, at)| (by.as_str(), *at))
    }
}

/// Never refused: erasing twice records nothing the second time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("account command refused")]
pub struct AccountError;

impl DomainError for AccountError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Conflict
    }
}

impl AccountOwned for Account {
    const KIND: crate::ResourceKind = crate::ResourceKind::Account;
    type Id = crate::values::AccountId;

    fn owner_account(&self) -> Option<&str> {
        self.account_id.as_deref()
    }
}

impl Aggregate for Account {
    const TYPE: &'static str = AGGREGATE_TYPE;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AccountCommand::Erase { account_id, by, at } => {
                if self.erased.is_some() {
                    return Ok(());
                }
                sink.write(
                    AccountEvent::AccountErased {
                        account_id: account_id.as_str().to_owned(),
                        by,
                        at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AccountEvent::AccountErased { account_id, by, at } => {
                self.account_id = Some(account_id);
                self.erased = Some((by, at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    fn erase(at: DateTime<Utc>) -> AccountCommand {
        AccountCommand::Erase {
            account_id: AccountId::parse("acme").unwrap(),
            by: "user:alice".into(),
            at,
        }
    }

    #[test]
    fn an_account_is_erased_once() {
        let at = Utc::now();
        let erased = AccountEvent::AccountErased {
            account_id: "acme".into(),
            by: "user:alice".into(),
            at,
        };
        TestFramework::<Account>::with(())
            .given_no_previous_events()
            .when(erase(at))
            .then_expect_events(vec![erased.clone()]);
        TestFramework::<Account>::with(())
            .given(vec![erased])
            .when(erase(Utc::now()))
            .then_expect_events(vec![]);
    }
}
