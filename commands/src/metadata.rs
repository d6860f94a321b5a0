//! The metadata stamped on every event (DESIGN §2): who did it, for which account, and what caused it.

use std::collections::HashMap;

/// Who and what is behind a command. Built once per request (or per worker message) and copied onto
/// every event the command records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMetadata {
    pub account_id: String,
    /// `user:<sub>`, `worker:<id>`, `scheduler` or `system`.
    pub actor: String,
    pub request_id: String,
    /// Shared by everything that follows from one original request.
    pub correlation_id: String,
    /// The event or request that directly caused this command.
    pub causation_id: String,
}

impl EventMetadata {
    /// Metadata for a command issued directly by an API request: the request is its own cause and correlation.
    pub fn for_request(account_id: &str, actor: String, request_id: &str) -> Self {
        Self {
            account_id: account_id.to_owned(),
            actor,
            request_id: request_id.to_owned(),
            correlation_id: request_id.to_owned(),
            causation_id: request_id.to_owned(),
        }
    }

    pub(crate) fn to_map(&self) -> HashMap<String, String> {
        HashMap::from([
            ("accountId".to_owned(), self.account_id.clone()),
            ("actor".to_owned(), self.actor.clone()),
            ("requestId".to_owned(), self.request_id.clone()),
            ("correlationId".to_owned(), self.correlation_id.clone()),
            ("causationId".to_owned(), self.causation_id.clone()),
        ])
    }
}
