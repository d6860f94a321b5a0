//! One module per resource. A route parses, authorizes, calls one command or one query, and maps the result.

pub mod account;
pub mod audit;
pub mod connections;
pub mod health;
pub mod job_events;
pub mod jobs;
pub mod oauth;
pub mod platforms;
pub mod snapshots;
pub mod source_groups;
pub mod sources;
pub mod webhooks;

use actix_web::{HttpMessage, HttpRequest};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::auth::Principal;
use crate::request_id::RequestId;
use listbackup_commands::EventMetadata;

/// Every route of the API, registered once: actix serves them in this order (the first that matches a path
/// wins) and the OpenAPI document (`/openapi.json`, [`crate::openapi::document`]) is collected from the same
/// calls, so a route cannot be served undocumented or documented unserved.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health::live)
        .service(health::ready)
        // The event log for auditors (issue 12). `/events/export` before anything that could take it.
        .service(audit::export)
        .service(audit::list)
        .service(audit::verify)
        .service(audit::public_key)
        .service(audit::connection_history)
        .service(audit::source_history)
        .service(audit::source_group_history)
        .service(audit::job_history)
        .service(account::erase)
        .service(platforms::list)
        .service(platforms::get)
        // Before `/connections/{id}…` so that `oauth` is never taken for an id.
        .service(oauth::start)
        .service(oauth::callback)
        .service(oauth::reconnect)
        .service(connections::create)
        .service(connections::list)
        .service(connections::get)
        .service(connections::update)
        .service(connections::remove)
        .service(connections::test)
        .service(sources::create)
        .service(sources::list)
        .service(sources::get)
        .service(sources::update)
        .service(sources::remove)
        .service(sources::test)
        // Snapshots and record history (issue 13 §4, §6).
        .service(snapshots::list)
        .service(snapshots::records)
        .service(snapshots::export)
        .service(snapshots::versions)
        .service(jobs::sync_source)
        .service(jobs::sync_group)
        .service(jobs::create_restore)
        .service(jobs::create)
        .service(jobs::list)
        .service(jobs::get)
        .service(job_events::stream)
        .service(jobs::list_files)
        .service(jobs::download)
        .service(jobs::retry)
        .service(jobs::cancel)
        .service(jobs::place_hold)
        .service(jobs::release_hold)
        .service(jobs::verify)
        .service(source_groups::create)
        .service(source_groups::list)
        .service(source_groups::get)
        .service(source_groups::update)
        .service(source_groups::remove)
        .service(source_groups::add_source)
        .service(source_groups::remove_source)
        .service(source_groups::list_sources)
        .service(webhooks::create)
        .service(webhooks::list)
        .service(webhooks::get)
        .service(webhooks::update)
        .service(webhooks::remove)
        .service(webhooks::rotate_secret)
        .service(webhooks::test)
        .service(webhooks::deliveries);
}

/// The event metadata of a command issued by this request.
pub(crate) fn metadata(req: &HttpRequest, principal: &Principal) -> EventMetadata {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    EventMetadata::for_request(&principal.account_id, principal.actor(), &request_id)
}
