//! Keap's REST API v1, as its reference documents it: <https://developer.infusionsoft.com/docs/rest/>
//! (authentication: <https://developer.infusionsoft.com/getting-started-oauth-keys/>, personal access tokens and
//! service account keys: <https://developer.infusionsoft.com/pat-and-sak/>).
//!
//! - `X-Keap-API-Key` or an OAuth `Bearer` token. `GET /<type>?limit=&offset=` with `limit` ≤ 1000,
//!   `{"<type>":[…],"count":total,"next":url,"previous":url}` — `next` is present even past the end, as Keap
//!   does; contacts take `since`/`until` on their last update. Errors from its gateway (Apigee) are
//!   `{"fault":{"faultstring":…,"detail":{"errorcode":…}}}`.
//! - Contacts' writes (<https://developer.infusionsoft.com/docs/rest/#tag/Contact>): `POST /contacts` creates
//!   (201, the contact; at least one e-mail address or phone number, else a 400), `PATCH /contacts/{id}`
//!   changes the fields sent (200), `DELETE /contacts/{id}` deletes (204); plain JSON in the contact's shape.
//!   A field the contact model does not have is a 400 `{"message": "Input could not be converted to a valid
//!   request"}`-style refusal; an unknown id a 404 `{"message": "Contact not found"}`.

use std::collections::HashSet;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::DateTime;
use serde_json::{json, Value};

use crate::dataset::Dataset;
use crate::faults::PagingFault;
use crate::request::{bearer, header, param, Query};

pub(crate) const TYPES: &[&str] = &[
    "contacts",
    "companies",
    "opportunities",
    "orders",
    "subscriptions",
    "transactions",
    "products",
    "tags",
    "tasks",
    "notes",
    "emails",
    "appointments",
    "campaigns",
    "users",
];

pub(crate) fn auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let key = header(req, "X-Keap-API-Key")
        .or_else(|| bearer(req))
        .unwrap_or_default();
    let fault = |text: &str, code: &str| {
        HttpResponse::Unauthorized()
            .json(json!({"fault": {"faultstring": text, "detail": {"errorcode": code}}}))
    };
    if key.is_empty() {
        return Err(fault(
            "Invalid Access Token",
            "keymanagement.service.invalid_access_token",
        ));
    }
    if accepted.contains(key) {
        Ok(())
    } else {
        Err(fault("Invalid ApiKey", "oauth.v2.InvalidApiKey"))
    }
}

/// Keap's time format: milliseconds and an offset without a colon.
pub(crate) fn time(ms: i64) -> String {
    // RFC 3339 with milliseconds, `+0000` for `Z` (cheaper than a strftime pattern: benchmarks list millions).
    let mut text = crate::request::iso_ms(ms);
    text.pop();
    text.push_str("+0000");
    text
}

pub(crate) fn list(
    dataset: &Dataset,
    data_type: &str,
    query: &Query,
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let invalid = |message: &str| HttpResponse::BadRequest().json(json!({"message": message}));
    let limit = match param(query, "limit").map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return invalid("Invalid limit"),
    };
    let Ok(offset) = param(query, "offset").map_or(Ok(0), str::parse::<u64>) else {
        return invalid("Invalid offset");
    };
    let requested_offset = offset;
    let offset = match fault {
        Some(PagingFault::IgnoresCursor | PagingFault::RepeatsRecords) => 0,
        _ => offset,
    };
    let parse_time = |name: &str| -> Result<Option<i64>, HttpResponse> {
        match param(query, name) {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Some(t.timestamp_millis()))
                .map_err(|_| invalid(&format!("Invalid {name}: {text}"))),
        }
    };
    // `since`/`until` filter contacts on their last update.
    let (since, until) = if data_type == "contacts" {
        match (parse_time("since"), parse_time("until")) {
            (Ok(s), Ok(u)) => (s, u),
            (Err(e), _) | (_, Err(e)) => return e,
        }
    } else {
        (None, None)
    };
    let (records, count): (Vec<Value>, u64) = match (since, until) {
        (None, None) if fault == Some(PagingFault::Endless) => {
            // Every page is full: past the visible records come records that were never counted (indices
            // past `count`), however far the offset goes.
            let visible = dataset.visible_count();
            let records = (offset..offset + limit)
                .map(|position| match position {
                    p if p < visible => dataset.nth_visible(p),
                    p => dataset.count + (p - visible),
                })
                .map(|i| record(dataset, data_type, i))
                .collect();
            (records, visible)
        }
        (None, None) => {
            let first = dataset.nth_visible(offset);
            let records = (first..dataset.count)
                .filter(|i| dataset.visible(*i))
                .take(limit as usize)
                .map(|i| record(dataset, data_type, i))
                .collect();
            (records, dataset.visible_count())
        }
        (since, until) => {
            let until = until.unwrap_or(i64::MAX);
            let matching = || {
                dataset
                    .changed_since_by_index(since.unwrap_or(i64::MIN))
                    .filter(move |i| dataset.visible(*i) && dataset.updated_ms(*i) <= until)
            };
            let records = matching()
                .skip(offset as usize)
                .take(limit as usize)
                .map(|i| record(dataset, data_type, i))
                .collect();
            (records, matching().count() as u64)
        }
    };
    let extra: String = query
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .map(|(k, v)| format!("&{k}={v}"))
        .collect();
    let page_url = |offset: u64| {
        format!("{base}/crm/rest/v1/{data_type}/?limit={limit}&offset={offset}{extra}")
    };
    HttpResponse::Ok().json(json!({
        data_type: records,
        "count": count,
        // Keap always links a next page, even past the end.
        "next": page_url(requested_offset + limit),
        "previous": page_url(requested_offset.saturating_sub(limit)),
    }))
}

/// The contact fields a create or an update may send (the reference's contact model, less what Keap sets).
const CONTACT_FIELDS: &[&str] = &[
    "given_name",
    "middle_name",
    "family_name",
    "email_addresses",
    "phone_numbers",
    "addresses",
    "job_title",
    "website",
    "birthday",
    "spouse_name",
    "preferred_name",
    "prefix",
    "suffix",
    "contact_type",
    "company",
    "owner_id",
    "opt_in_reason",
    "source_type",
    "lead_source_id",
    "custom_fields",
];

pub(crate) fn record(dataset: &Dataset, data_type: &str, index: u64) -> Value {
    let id = index + 1;
    let created = time(dataset.created_ms(index));
    let updated = time(dataset.updated_ms(index));
    match data_type {
        "contacts" => {
            let mut contact = json!({
                "id": id,
                "tag_ids": [index % 7 + 1],
                "owner_id": null,
                "email_status": "SingleOptIn",
                "email_opted_in": true,
                "date_created": created,
                "last_updated": updated,
            });
            let fields = dataset.fields(index, || {
                json!({
                    "given_name": "Contact",
                    "family_name": index.to_string(),
                    "email_addresses": [{"email": format!("contact{index}@example.test"), "field": "EMAIL1"}],
                    "phone_numbers": [{"number": format!("555-{:04}", index % 10_000), "field": "PHONE1"}],
                    "addresses": [],
                })
            });
            if let Some(contact) = contact.as_object_mut() {
                contact.extend(fields);
            }
            contact
        }
        "companies" => json!({"id": id, "company_name": format!("Company {index}"),
            "email_address": format!("company{index}@example.test"), "date_created": created,
            "last_updated": updated}),
        "tags" => json!({"id": id, "name": format!("Tag {index}"), "description": "",
            "category": {"id": 1, "name": "Imported"}}),
        "users" => json!({"id": id, "email_address": format!("user{index}@example.test"),
            "given_name": "User", "family_name": index.to_string(), "status": "Active",
            "created_date": created}),
        _ => json!({"id": id, "title": format!("{data_type} {index}"), "date_created": created,
            "last_updated": updated}),
    }
}

/// `GET /account/profile` (<https://developer.infusionsoft.com/docs/rest/#tag/Account-Info>): the account the
/// key belongs to, the connection test's call.
pub(crate) fn profile() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": "Acme Test",
        "email": "owner@acme.test",
        "phone": "555-0100",
        "website": "https://acme.test",
        "time_zone": "America/New_York",
        "currency_code": "USD",
        "language_tag": "en-US",
        "business_type": "Consulting",
        "address": {"line1": "1 Main St", "locality": "Springfield", "country_code": "USA"}
    }))
}

/// A contact created (`index` `None`) or changed (see the module).
fn write_contact(state: &mut crate::State, index: Option<u64>, body: &[u8]) -> HttpResponse {
    let bad = |message: String| HttpResponse::BadRequest().json(json!({"message": message}));
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        _ => return bad("Input could not be converted to a valid request".into()),
    };
    if let Some(name) = fields
        .keys()
        .find(|f| !CONTACT_FIELDS.contains(&f.as_str()))
    {
        return bad(format!(
            "Input could not be converted to a valid request: unknown field {name}"
        ));
    }
    for list in ["email_addresses", "phone_numbers", "addresses"] {
        if !matches!(fields.get(list), None | Some(Value::Null | Value::Array(_))) {
            return bad(format!("{list} must be a list"));
        }
    }
    let index = match index {
        Some(index) => {
            state.update_record("keap", "contacts", index, fields);
            return HttpResponse::Ok().json(record(
                state.dataset("keap", "contacts"),
                "contacts",
                index,
            ));
        }
        None => {
            let has = |list: &str| {
                fields
                    .get(list)
                    .and_then(Value::as_array)
                    .is_some_and(|l| !l.is_empty())
            };
            if !has("email_addresses") && !has("phone_numbers") {
                return bad("At least one of email_addresses or phone_numbers is required".into());
            }
            state.create_record("keap", "contacts", fields)
        }
    };
    HttpResponse::Created().json(record(state.dataset("keap", "contacts"), "contacts", index))
}

/// Keap in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "keap",
    base_path: || "/keap/crm/rest/v1".to_owned(),
    serve: |state, call| {
        if let Err(denied) = auth(call.req, call.accepted) {
            return denied;
        }
        if call.rest == "/crm/rest/v1/account/profile" && call.req.method() == Method::GET {
            return profile();
        }
        if let Some(id) = call.rest.strip_prefix("/crm/rest/v1/contacts/") {
            let dataset = state.dataset("keap", "contacts");
            let Some(index) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| id.checked_sub(1))
                .filter(|i| dataset.exists(*i))
            else {
                return HttpResponse::NotFound().json(json!({"message": "Contact not found"}));
            };
            return match *call.req.method() {
                Method::PATCH => write_contact(state, Some(index), call.body),
                Method::DELETE => {
                    dataset.hidden.insert(index);
                    HttpResponse::NoContent().finish()
                }
                _ => {
                    HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"}))
                }
            };
        }
        let Some(data_type) = call
            .rest
            .strip_prefix("/crm/rest/v1/")
            .filter(|t| TYPES.contains(t))
        else {
            return HttpResponse::NotFound().json(json!({"message": "Not Found"}));
        };
        if data_type == "contacts" && call.req.method() == Method::POST {
            return write_contact(state, None, call.body);
        }
        if call.req.method() != Method::GET {
            return HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"}));
        }
        list(
            state.dataset("keap", data_type),
            data_type,
            call.query,
            call.base,
            call.fault,
        )
    },
    // Keap's gateway (Apigee) answers its own errors.
    rate_limited_body: || {
        json!({"fault": {"faultstring": "Rate limit quota violation. Quota limit exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"}}})
    },
    error_body: |status| {
        if status == StatusCode::SERVICE_UNAVAILABLE {
            json!({"fault": {
                "faultstring": "The Service is temporarily unavailable",
                "detail": {"errorcode": "messaging.adaptors.http.flow.ServiceUnavailable"}}})
        } else {
            json!({"message": status.canonical_reason().unwrap_or("Error")})
        }
    },
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};
