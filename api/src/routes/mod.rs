//! One module per resource. A route parses, authorizes, calls one command or one query, and maps the result.

pub mod audit;
pub mod connections;
pub mod health;
pub mod job_events;
pub mod jobs;
pub mod oauth;
pub mod platforms;
pub mod source_groups;
pub mod sources;

use actix_web::{HttpMessage, HttpRequest};

use crate::auth::Principal;
use crate::request_id::RequestId;
use listbackup_commands::EventMetadata;

/// The event metadata of a command issued by this request.
pub(crate) fn metadata(req: &HttpRequest, principal: &Principal) -> EventMetadata {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    EventMetadata::for_request(&principal.account_id, principal.actor(), &request_id)
}
