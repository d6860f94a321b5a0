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
//! any of its forms ([`RetryAfter`]), a 200 whose body is cut off ([`PlatformApi::truncate_nth`]), a
//! request served whose answer is lost ([`PlatformApi::lose_answer_nth`]),
//! pretty-printed bodies ([`PlatformApi::pretty`]), paging that goes in circles or never ends
//! ([`PagingFault`]), records deleted or made visible late ([`PlatformApi::delete`], [`PlatformApi::hide`],
//! [`PlatformApi::reveal`]), many records changed at one instant ([`PlatformApi::touch_together`]).
//!
//! The crate is the one emulation of each platform, shared by the black-box tests (a dev-dependency), the
//! benchmarks and the demo mode. Layout: [`server`] (the actix server, [`PlatformApi`] and the faults applied
//! before a platform answers), [`dataset`] (records computed from their index), [`faults`], [`request`]
//! (reading queries and credentials), one module per platform, each declaring its `EMULATION` (base path,
//! how it serves and authenticates, its error and 429 bodies, record ids), and here the registry of those,
//! one line per platform ([`EMULATIONS`]), and the router that picks one by the first path segment.
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

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub use faults::{PagingFault, RetryAfter};
pub use files::Created;
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
        format!("{}{}", self.base_url, (emulation(platform).base_path)())
    }

    /// The id of record `index` as the platform shows it.
    pub fn id_of(&self, platform: &str, data_type: &str, index: u64) -> String {
        record_id(platform, data_type, index)
    }

    /// Every id in the order a full listing returns them (Stripe: newest first; the others: by id).
    pub fn listing_ids(&self, platform: &str, data_type: &str) -> Vec<String> {
        let emulation = emulation(platform);
        let mut state = self.state();
        let dataset = state.dataset(platform, data_type);
        let visible = |i: &u64| dataset.visible(*i) && (emulation.listed)(data_type, *i);
        let ids = (0..dataset.count).filter(visible);
        let id = |i| (emulation.record_id)(data_type, i);
        if emulation.newest_first {
            ids.rev().map(id).collect()
        } else {
            ids.map(id).collect()
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The registry: one line per platform

/// Everything the router needs from one platform's emulation, declared by its module (`EMULATION`).
/// Adding a platform to the emulation is its module and one line of [`EMULATIONS`].
pub(crate) struct Emulation {
    /// The platform id, also the first path segment of its requests (`/stripe/…`).
    pub id: &'static str,
    /// The path of its API base URL under the server (`/stripe/v1`).
    pub base_path: fn() -> String,
    /// Answers a request whose faults have been applied ([`apply_faults`]): authentication included.
    pub serve: fn(&mut State, &Call) -> HttpResponse,
    /// The body of its 429.
    pub rate_limited_body: fn() -> Value,
    /// The body of an error with this status, in the platform's shape (for `fail_next` and friends).
    pub error_body: fn(StatusCode) -> Value,
    /// The id of record `index` of a data type, as the platform shows it.
    pub record_id: fn(&str, u64) -> String,
    /// Whether full listings return the newest record first (Stripe).
    pub newest_first: bool,
    /// Whether record `index` of a data type is in a full listing (Stripe lists some only when asked).
    pub listed: fn(&str, u64) -> bool,
}

/// One request as a platform module sees it.
pub(crate) struct Call<'a> {
    pub req: &'a HttpRequest,
    /// The path after the platform's segment (`/v1/customers`).
    pub rest: &'a str,
    pub query: &'a Query,
    pub body: &'a [u8],
    /// `<scheme>://<host>/<platform>`: what next-page links start with.
    pub base: &'a str,
    pub fault: Option<PagingFault>,
    /// The secrets this platform accepts ([`PlatformApi::accept`]).
    pub accepted: &'a HashSet<String>,
}

/// Every emulated platform, one line each.
pub(crate) static EMULATIONS: &[Emulation] = &[
    stripe::EMULATION,
    hubspot::EMULATION,
    keap::EMULATION,
    mailchimp::EMULATION,
    activecampaign::EMULATION,
    quickbooks::EMULATION,
    shopify::EMULATION,
    zendesk::EMULATION,
    gohighlevel::EMULATION,
    google::EMULATION,
    dropbox::EMULATION,
    box_::EMULATION,
];

/// The emulation of `platform`; panics for one that is not emulated (a test's mistake).
fn emulation(platform: &str) -> &'static Emulation {
    find_emulation(platform)
        .unwrap_or_else(|| panic!("the platform API emulation does not emulate {platform}"))
}

fn find_emulation(platform: &str) -> Option<&'static Emulation> {
    EMULATIONS.iter().find(|e| e.id == platform)
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
    if req.method() != actix_web::http::Method::GET {
        state
            .received
            .entry(path.clone())
            .or_default()
            .push(String::from_utf8_lossy(body).into_owned());
    }
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
    let Some(emulation) = find_emulation(&platform) else {
        return (
            HttpResponse::NotFound().json(json!({"error": "not found", "path": path})),
            None,
        );
    };
    let call = Call {
        req,
        rest: &rest,
        query: &query,
        body,
        base: &base,
        fault,
        accepted: &accepted,
    };
    let response = (emulation.serve)(&mut state, &call);
    (response, reshape)
}

pub(crate) fn rate_limited(platform: &str, retry_after: RetryAfter) -> HttpResponse {
    let body = match find_emulation(platform) {
        Some(emulation) => (emulation.rate_limited_body)(),
        None => json!({"message": "Too Many Requests"}),
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
    let body = match find_emulation(platform) {
        Some(emulation) => (emulation.error_body)(status),
        None => json!({"message": status.canonical_reason().unwrap_or("Error")}),
    };
    let mut response = HttpResponse::build(status);
    if let Some(retry_after) = retry_after {
        response.insert_header(("Retry-After", retry_after.header_value()));
    }
    response.json(body)
}

pub(crate) fn record_id(platform: &str, data_type: &str, index: u64) -> String {
    match find_emulation(platform) {
        Some(emulation) => (emulation.record_id)(data_type, index),
        None => (index + 1).to_string(),
    }
}
