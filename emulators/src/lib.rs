//! A local stand-in for the platforms' APIs: the list endpoints the backup connectors page through and the
//! calls a connection test makes, with the real paths, query parameters, pagination, authentication headers,
//! error shapes and rate limiting, for black-box tests and the backup benchmarks.
//!
//! Records are never stored: a data set is a count plus a few timestamps, and each record is computed from
//! its index when a page asks for it, so a million-record data set costs a few bytes (only records modified
//! with [`PlatformApi::touch`] are remembered). Ids and timestamps are deterministic and grow with the index.
//!
//! Each platform lives under its own prefix: `/stripe/v1/customers`, `/hubspot/crm/v3/objects/contacts`,
//! `/keap/crm/rest/v1/contacts`; [`PlatformApi::api_url`] gives the base URL to put in
//! `LISTBACKUP_PLATFORM_<ID>_API_URL`. The behaviour is written from the platforms' documentation, not from
//! ListBackup's connector tables, so a mistake in those fails the tests:
//!
//! - One module per platform (Stripe, HubSpot, Keap, Mailchimp, ActiveCampaign, QuickBooks, Shopify, Zendesk,
//!   HighLevel, Google Drive, Dropbox, Box): the data APIs the connectors page through and the platform's
//!   "who am I" call (the connection test's), each module headed by the platform's API reference and what it
//!   emulates of it; the file platforms share their file trees ([`files`]).
//!
//! Misbehaviour on demand, each the way real platforms misbehave: errors and 429s with `Retry-After` in
//! any of its forms ([`RetryAfter`]), a 200 whose body is cut off ([`PlatformApi::truncate_nth`]),
//! pretty-printed bodies ([`PlatformApi::pretty`]), paging that goes in circles or never ends
//! ([`PagingFault`]), records deleted or made visible late ([`PlatformApi::delete`], [`PlatformApi::hide`],
//! [`PlatformApi::reveal`]), many records changed at one instant ([`PlatformApi::touch_together`]).
//!
//! The crate is the one emulation of each platform, shared by the black-box tests (a dev-dependency), the
//! benchmarks and the demo mode. Layout: [`server`] (the actix server, [`PlatformApi`] and the faults applied
//! before a platform answers), [`dataset`] (records computed from their index), [`faults`], [`request`]
//! (reading queries and credentials), one module per platform, and here the router: which module answers
//! which platform prefix, and each platform's base URL.
// Handler steps return the error response itself as `Err`; its size does not matter in a test server.
#![allow(clippy::result_large_err)]

pub mod dataset;
pub mod faults;
pub mod request;
pub mod server;

// One module per platform.
mod activecampaign;
mod box_;
mod dropbox;
mod gohighlevel;
mod google;
pub mod hubspot;
pub mod keap;
mod mailchimp;
pub mod quickbooks;
mod shopify;
pub mod stripe;
mod zendesk;
// What the file platforms (Google Drive, Dropbox, Box) share.
mod files;

use std::sync::Mutex;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub use faults::{PagingFault, RetryAfter};
pub use server::{PlatformApi, ServeOptions};

// Every name the crate root held before it was split into modules stays reachable here (`crate::Dataset`,
// `super::param`, `crate::stripe_list`, …), so platform modules written against the single-file crate
// compile unchanged.
#[allow(unused_imports)]
use {
    actix_web::{dev::ServerHandle, App, HttpServer},
    base64::Engine,
    chrono::{DateTime, SecondsFormat, Utc},
    dataset::{merge_by, Dataset, EPOCH_MS, STEP_MS},
    faults::Reshape,
    hubspot::{
        answer as hubspot, auth as hubspot_auth, invalid as hubspot_invalid,
        limit_param as hubspot_limit, modified_property as hubspot_modified_property,
        record as hubspot_record, search as hubspot_search, tie_order, SearchFilter,
        SearchProperty, OBJECTS as HUBSPOT_OBJECTS, SEARCH_WINDOW as HUBSPOT_SEARCH_WINDOW,
    },
    keap::{
        auth as keap_auth, list as keap_list, record as keap_record, time as keap_time,
        TYPES as KEAP_TYPES,
    },
    request::{bearer, header, iso_ms, param, Query},
    serde_json::Value,
    server::{apply_faults, handle, reshaped, wait_while_held, State},
    std::collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    std::sync::Arc,
    stripe::{
        auth as stripe_auth, index_of as stripe_index, invalid as stripe_invalid,
        list as stripe_list, not_found as stripe_not_found, record as stripe_record,
        visible as stripe_visible, PREFIXES as STRIPE_PREFIXES,
    },
};

impl PlatformApi {
    /// The API base URL for `LISTBACKUP_PLATFORM_<ID>_API_URL`.
    pub fn api_url(&self, platform: &str) -> String {
        let base_path = match platform {
            "stripe" => "/stripe/v1",
            "hubspot" => "/hubspot",
            "keap" => "/keap/crm/rest/v1",
            "mailchimp" => "/mailchimp/3.0",
            "activecampaign" => "/activecampaign/api/3",
            "quickbooks" => &format!("/quickbooks/v3/company/{}", quickbooks::REALM_ID),
            "shopify" => shopify::BASE_PATH,
            "zendesk" => "/zendesk/api/v2",
            "gohighlevel" => "/gohighlevel",
            "google" => "/google",
            "dropbox" => "/dropbox",
            "box" => "/box/2.0",
            other => panic!("the platform API emulation does not emulate {other}"),
        };
        format!("{}{base_path}", self.base_url)
    }

    /// The id of record `index` as the platform shows it.
    pub fn id_of(&self, platform: &str, data_type: &str, index: u64) -> String {
        record_id(platform, data_type, index)
    }

    /// Every id in the order a full listing returns them (Stripe: newest first; the others: by id).
    pub fn listing_ids(&self, platform: &str, data_type: &str) -> Vec<String> {
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        let visible = |i: &u64| {
            dataset.visible(*i) && (platform != "stripe" || stripe_visible(data_type, *i, true))
        };
        let ids = (0..dataset.count).filter(visible);
        if platform == "stripe" {
            ids.rev()
                .map(|i| record_id(platform, data_type, i))
                .collect()
        } else {
            ids.map(|i| record_id(platform, data_type, i)).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Requests

/// Answers one request: the faults asked for first ([`apply_faults`]), then the platform's module, chosen by
/// the first path segment (`/stripe/…`, `/hubspot/…`).
pub(crate) fn answer(
    req: &HttpRequest,
    body: &[u8],
    state: &Mutex<State>,
) -> (HttpResponse, Option<Reshape>) {
    let path = req.path().to_owned();
    let (platform, rest) = match path.split_once('/').map(|(_, p)| p) {
        Some(p) => match p.split_once('/') {
            Some((platform, rest)) => (platform.to_owned(), format!("/{rest}")),
            None => (p.to_owned(), String::new()),
        },
        None => (String::new(), String::new()),
    };
    let mut state = state.lock().unwrap();
    let reshape = match apply_faults(&mut state, req, &path, &platform) {
        Ok(reshape) => reshape,
        Err(fault) => return (fault, None),
    };
    let fault = state.paging_faults.get(&path).copied();
    let accepted = state.accepted.get(&platform).cloned().unwrap_or_default();
    let query: Query = match web::Query::<Query>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(_) => {
            return (
                platform_error(&platform, StatusCode::BAD_REQUEST, None),
                None,
            )
        }
    };
    let base = format!(
        "{}://{}/{platform}",
        req.connection_info().scheme(),
        req.connection_info().host()
    );
    let response = match platform.as_str() {
        "stripe" => {
            if let Err(denied) = stripe_auth(req, &accepted) {
                return (denied, None);
            }
            stripe::answer(&mut state, req, &rest, &query, fault)
        }
        "hubspot" => {
            if let Err(denied) = hubspot_auth(req, &accepted) {
                return (denied, None);
            }
            hubspot(&mut state, req, &rest, &query, body, &base, fault)
        }
        "keap" => {
            if let Err(denied) = keap_auth(req, &accepted) {
                return (denied, None);
            }
            if rest == "/crm/rest/v1/account/profile" && req.method() == Method::GET {
                return (keap::profile(), reshape);
            }
            let Some(data_type) = rest
                .strip_prefix("/crm/rest/v1/")
                .filter(|t| KEAP_TYPES.contains(t))
            else {
                return (
                    HttpResponse::NotFound().json(json!({"message": "Not Found"})),
                    None,
                );
            };
            if req.method() != Method::GET {
                return (
                    HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"})),
                    None,
                );
            }
            let data_type = data_type.to_owned();
            keap_list(
                state.dataset("keap", &data_type),
                &data_type,
                &query,
                &base,
                fault,
            )
        }
        "mailchimp" => mailchimp::answer(&mut state, req, &rest, &query, fault),
        "activecampaign" => activecampaign::answer(&mut state, req, &rest, &query, fault),
        "quickbooks" => quickbooks::answer(&mut state, req, &rest, &query, body, fault),
        "shopify" => shopify::answer(&mut state, req, &rest, &query, &base, fault),
        "zendesk" => zendesk::answer(&mut state, req, &rest, &query, &base, fault),
        "gohighlevel" => gohighlevel::answer(&mut state, req, &rest, &query, fault),
        "google" => google::answer(&mut state, req, &rest, &query, &accepted),
        "dropbox" => dropbox::answer(&mut state, req, &rest, &query, body, &accepted),
        "box" => box_::answer(&mut state, req, &rest, &query, &accepted),
        _ => HttpResponse::NotFound().json(json!({"error": "not found", "path": path})),
    };
    (response, reshape)
}

pub(crate) fn rate_limited(platform: &str, retry_after: RetryAfter) -> HttpResponse {
    let body = match platform {
        "stripe" => json!({"error": {"code": "rate_limit", "type": "invalid_request_error",
            "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."}}),
        "google" | "dropbox" | "box" => files::rate_limited_body(platform),
        "hubspot" => json!({"status": "error", "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT", "correlationId": "7c1f5b0e-2f0a-4c4a-9d0c-1f3f7e0b2a11",
            "policyName": "SECONDLY"}),
        "mailchimp" => mailchimp::error_body(StatusCode::TOO_MANY_REQUESTS),
        "activecampaign" => activecampaign::error_body(StatusCode::TOO_MANY_REQUESTS),
        "quickbooks" => quickbooks::error_body(StatusCode::TOO_MANY_REQUESTS),
        "shopify" => shopify::rate_limited_body(),
        "zendesk" => zendesk::rate_limited_body(),
        "gohighlevel" => gohighlevel::rate_limited_body(),
        _ => json!({"fault": {"faultstring": "Rate limit quota violation. Quota limit exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}}),
    };
    HttpResponse::TooManyRequests()
        .insert_header(("Retry-After", retry_after.header_value()))
        .json(body)
}

/// The platform's error body for a status `fail_next` asked for.
pub(crate) fn platform_error(
    platform: &str,
    status: StatusCode,
    retry_after: Option<RetryAfter>,
) -> HttpResponse {
    let message = status.canonical_reason().unwrap_or("Error");
    let body = match platform {
        "stripe" => {
            let kind = if status.is_server_error() {
                "api_error"
            } else {
                "invalid_request_error"
            };
            json!({"error": {"type": kind, "message": message}})
        }
        "google" | "dropbox" | "box" => files::error_body(platform, status.as_u16(), message),
        "hubspot" => json!({"status": "error", "message": message,
            "correlationId": "2b9d1c77-0f7e-4b0e-8a54-5d6c0c1e9f20",
            "category": if status.is_server_error() { "INTERNAL_ERROR" } else { "VALIDATION_ERROR" }}),
        "mailchimp" => mailchimp::error_body(status),
        "activecampaign" => activecampaign::error_body(status),
        "quickbooks" => quickbooks::error_body(status),
        "shopify" => shopify::error_body(status),
        "zendesk" => zendesk::error_body(status),
        "gohighlevel" => gohighlevel::error_body(status),
        _ if status == StatusCode::SERVICE_UNAVAILABLE => json!({"fault": {
            "faultstring": "The Service is temporarily unavailable",
            "detail": {"errorcode": "messaging.adaptors.http.flow.ServiceUnavailable"}}}),
        _ => json!({"message": message}),
    };
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after {
        response.insert_header(("Retry-After", retry_after.header_value()));
    }
    response.json(body)
}

pub(crate) fn record_id(platform: &str, data_type: &str, index: u64) -> String {
    match platform {
        "stripe" => stripe::record_id(data_type, index),
        "hubspot" if data_type == "pipelines" => {
            if index == 0 {
                "default".to_owned()
            } else {
                (1000 * index).to_string()
            }
        }
        "mailchimp" => mailchimp::record_id(data_type, index),
        "gohighlevel" => gohighlevel::record_id(data_type, index),
        _ => (index + 1).to_string(),
    }
}
