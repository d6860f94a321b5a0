//! ActiveCampaign API v3, as its reference describes it (https://developers.activecampaign.com/reference/overview,
//! with .../reference/authentication, .../reference/pagination, .../reference/errors,
//! .../reference/rate-limits, .../reference/list-all-contacts and .../reference/list-all-deals). Served
//! under `/activecampaign/api/3` (the account's API URL is `/activecampaign`).
//!
//! - Authentication: the key in `Api-Token`. A missing or wrong key is a 403 ("The request could not be
//!   authenticated or the authenticated user is not authorized to access the requested resource": the API
//!   sends no 401), `{"message": "Forbidden"}`.
//! - Collections: `GET /contacts`, `/fieldValues`, `/accounts`, `/deals`, `/lists`, `/tags`,
//!   `/contactTags`, `/fields`, `/campaigns`, `/messages`, `/automations`, `/notes`, `/dealTasks`,
//!   `/users` (and `/users/me`). `limit` defaults to 20 and is held to 100 at most; `offset` is 0-based;
//!   unknown parameters are ignored. The answer: the records under the collection's name (ids as strings)
//!   and `meta.total`, a numeric string. Records come in id order; `orders[id]=DESC` reverses it.
//! - Contacts also take `id_greater` (the guide's keyset for large accounts), and contacts and deals
//!   `filters[updated_after]` / `filters[updated_before]` on `udate` / `mdate` ("after": strictly, at the
//!   second; a date or a date and time, with or without an offset). Times carry the account's offset,
//!   `-05:00` here.
//! - Errors: `{"message": …}`, and 422 `{"errors":[{"title","detail","code","source"}]}` for a filter
//!   that is not a date. 429 carries `Retry-After` in seconds.
//! - Contacts' writes (…/reference/create-a-new-contact, …/reference/update-a-contact-new, …/reference/
//!   delete-contact): `POST /contacts` `{"contact": {"email", "firstName", "lastName", "phone", …}}` creates
//!   (201 `{"fieldValues": [], "contact": {…, "id": "<n>"}}`), `PUT /contacts/{id}` changes the fields sent
//!   (200 `{"contact": {…}}`), `DELETE /contacts/{id}` deletes (200 `{}`). An e-mail address already in use
//!   is a 422 `{"errors":[{"title":"Email address already exists in the system.","detail":"","code":
//!   "duplicate","source":{"pointer":"/data/attributes/email"}}]}`, a missing or malformed one a 422
//!   `email_invalid`; an unknown id a 404 `{"message":"No Result found for Subscriber with id <id>"}`.

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use serde_json::{json, Value};

use crate::{param, Dataset, PagingFault, Query, State};

/// The collections: (path segment, data set, records field).
const COLLECTIONS: &[(&str, &str, &str)] = &[
    ("contacts", "contacts", "contacts"),
    ("fieldValues", "contact_field_values", "fieldValues"),
    ("accounts", "accounts", "accounts"),
    ("deals", "deals", "deals"),
    ("lists", "lists", "lists"),
    ("tags", "tags", "tags"),
    ("contactTags", "contact_tags", "contactTags"),
    ("fields", "custom_fields", "fields"),
    ("campaigns", "campaigns", "campaigns"),
    ("messages", "messages", "messages"),
    ("automations", "automations", "automations"),
    ("notes", "notes", "notes"),
    ("dealTasks", "tasks", "dealTasks"),
    ("users", "users", "users"),
];

/// The error body of a status injected by the fault controls (`fail_next`, `rate_limit_next`).
pub(crate) fn error_body(status: StatusCode) -> Value {
    json!({"message": status.canonical_reason().unwrap_or("Error")})
}

/// The account's offset: ActiveCampaign writes times in the account's time zone.
fn offset() -> FixedOffset {
    FixedOffset::west_opt(5 * 3600).unwrap()
}

fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&offset())
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A date filter as ActiveCampaign reads it: RFC 3339, or a date and time without an offset (the
/// account's), or a date alone (its midnight).
fn parse_time(text: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis());
    }
    let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })?;
    Some(
        naive
            .and_local_timezone(offset())
            .single()?
            .timestamp_millis(),
    )
}

fn forbidden() -> HttpResponse {
    HttpResponse::Forbidden().json(json!({"message": "Forbidden"}))
}

/// Answers a request under `/activecampaign` (`rest` is the path after it).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    fault: Option<PagingFault>,
) -> HttpResponse {
    let token = crate::header(req, "Api-Token").unwrap_or_default();
    let accepted = state
        .accepted
        .get("activecampaign")
        .is_some_and(|keys| keys.contains(token));
    if token.is_empty() || !accepted {
        return forbidden();
    }
    let Some(path) = rest.strip_prefix("/api/3/") else {
        return HttpResponse::NotFound().json(json!({"message": "No Result found"}));
    };
    if path == "contacts" && req.method() == Method::POST {
        return write_contact(state, None, body);
    }
    if let Some(id) = path.strip_prefix("contacts/") {
        let dataset = state.dataset("activecampaign", "contacts");
        let Some(index) = id
            .parse::<u64>()
            .ok()
            .and_then(|id| id.checked_sub(1))
            .filter(|i| dataset.exists(*i))
        else {
            return HttpResponse::NotFound()
                .json(json!({"message": format!("No Result found for Subscriber with id {id}")}));
        };
        return match *req.method() {
            Method::PUT => write_contact(state, Some(index), body),
            Method::DELETE => {
                dataset.hidden.insert(index);
                HttpResponse::Ok().json(json!({}))
            }
            _ => HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"})),
        };
    }
    if req.method() != Method::GET {
        return HttpResponse::MethodNotAllowed().json(json!({"message": "Method Not Allowed"}));
    }
    if path == "users/me" {
        return HttpResponse::Ok().json(json!({"user": {"id": "1", "username": "admin",
            "firstName": "Ada", "lastName": "Admin", "email": "admin@emulated.test", "phone": "",
            "signature": null, "links": {"lists": "/api/3/users/1/lists"}}}));
    }
    match COLLECTIONS.iter().find(|(segment, _, _)| *segment == path) {
        Some((_, data_type, field)) => collection(state, data_type, field, query, fault),
        None => HttpResponse::NotFound()
            .json(json!({"message": format!("No Result found for route {path}")})),
    }
}

fn unprocessable(param: &str) -> HttpResponse {
    HttpResponse::UnprocessableEntity().json(json!({"errors": [{
        "title": format!("The {param} filter is not a valid date"),
        "detail": "", "code": "field_invalid", "source": {"pointer": format!("/{param}")}}]}))
}

/// One page: `limit`/`offset`, the contacts' `id_greater`, the time filters of contacts and deals.
fn collection(
    state: &mut State,
    data_type: &str,
    field: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    // ActiveCampaign holds `limit` to its maximum rather than refuse it.
    let limit = param(query, "limit")
        .and_then(|l| l.parse::<u64>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let offset = param(query, "offset")
        .and_then(|o| o.parse::<u64>().ok())
        .unwrap_or(0);
    let ignores_cursor = fault == Some(PagingFault::IgnoresCursor);
    let offset = if ignores_cursor { 0 } else { offset };
    // `id_greater` is the contacts' own (ids are 1-based: record `i` has id `i + 1`).
    let id_greater = param(query, "id_greater")
        .filter(|_| data_type == "contacts" && !ignores_cursor)
        .and_then(|id| id.parse::<u64>().ok());
    let timed = matches!(data_type, "contacts" | "deals");
    let bound = |name: &str| -> Result<Option<i64>, HttpResponse> {
        match param(query, name).filter(|_| timed) {
            None => Ok(None),
            Some(text) => parse_time(text)
                .map(Some)
                .ok_or_else(|| unprocessable(name)),
        }
    };
    let (after, before) = match (
        bound("filters[updated_after]"),
        bound("filters[updated_before]"),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let descending = param(query, "orders[id]").is_some_and(|o| o.eq_ignore_ascii_case("DESC"));
    let dataset = state.dataset("activecampaign", data_type);
    // `udate` and `mdate` are written to the second; the filters compare what is written.
    let updated = |i: u64| dataset.updated_ms(i).div_euclid(1000) * 1000;
    let mut matching: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .filter(|i| id_greater.is_none_or(|id| i + 1 > id))
        .filter(|i| after.is_none_or(|a| updated(*i) > a))
        .filter(|i| before.is_none_or(|b| updated(*i) < b))
        .collect();
    if descending {
        matching.reverse();
    }
    let records: Vec<Value> = matching
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|i| record(dataset, data_type, *i))
        .collect();
    let mut body = json!({field: records, "meta": {"total": matching.len().to_string(),
        "page_input": {"limit": limit, "offset": offset}}});
    if data_type == "contacts" {
        body["scoreValues"] = json!([]);
    }
    HttpResponse::Ok().json(body)
}

/// The contact fields a create or an update sets.
const CONTACT_FIELDS: &[&str] = &["email", "firstName", "lastName", "phone", "orgid"];

/// A contact created (`index` `None`) or changed (see the module).
fn write_contact(state: &mut State, index: Option<u64>, body: &[u8]) -> HttpResponse {
    let invalid = |code: &str, title: &str| {
        HttpResponse::UnprocessableEntity().json(json!({"errors": [{"title": title, "detail": "",
            "code": code, "source": {"pointer": "/data/attributes/email"}}]}))
    };
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut body)) => match body.remove("contact") {
            Some(Value::Object(fields)) => fields,
            _ => return HttpResponse::BadRequest().json(json!({"message": "contact is required"})),
        },
        _ => return HttpResponse::BadRequest().json(json!({"message": "Invalid JSON"})),
    };
    // Values are strings; a field the API does not know is ignored.
    let fields: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter(|(name, _)| CONTACT_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| match value {
            Value::Null => (name, Value::String(String::new())),
            Value::String(text) => (name, Value::String(text)),
            other => (name, Value::String(other.to_string())),
        })
        .collect();
    match fields.get("email").and_then(Value::as_str) {
        Some(email) if !email.contains('@') => {
            return invalid("email_invalid", "Contact Email Address is not valid.")
        }
        None if index.is_none() => {
            return invalid("email_invalid", "Contact Email Address is not valid.")
        }
        Some(email) => {
            let dataset = state.dataset("activecampaign", "contacts");
            let taken = (0..dataset.count).any(|i| {
                Some(i) != index
                    && dataset.exists(i)
                    && record(dataset, "contacts", i)["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
            if taken {
                return invalid("duplicate", "Email address already exists in the system.");
            }
        }
        None => {}
    }
    match index {
        Some(index) => {
            state.update_record("activecampaign", "contacts", index, fields);
            let contact = record(
                state.dataset("activecampaign", "contacts"),
                "contacts",
                index,
            );
            HttpResponse::Ok().json(json!({"fieldValues": [], "contact": contact}))
        }
        None => {
            let index = state.create_record("activecampaign", "contacts", fields);
            let contact = record(
                state.dataset("activecampaign", "contacts"),
                "contacts",
                index,
            );
            HttpResponse::Created().json(json!({"fieldValues": [], "contact": contact}))
        }
    }
}

fn record(dataset: &Dataset, data_type: &str, index: u64) -> Value {
    let id = (index + 1).to_string();
    let created = time(dataset.created_ms(index));
    let updated = time(dataset.updated_ms(index));
    let links = json!({"self": format!("/api/3/{data_type}/{id}")});
    match data_type {
        "contacts" => {
            let mut contact = json!({"id": id, "email": "", "firstName": "", "lastName": "",
                "phone": "", "orgid": "0"});
            let fields = dataset.fields(index, || {
                json!({"email": format!("contact{index}@example.test"), "firstName": "Contact",
                    "lastName": index.to_string(), "phone": "", "orgid": "0"})
            });
            if let Some(contact) = contact.as_object_mut() {
                contact.extend(fields);
                contact.insert("cdate".into(), json!(created));
                contact.insert("udate".into(), json!(updated));
                contact.insert("deleted".into(), json!("0"));
                contact.insert("links".into(), links);
            }
            contact
        }
        "deals" => json!({"id": id, "title": format!("Deal {index}"), "value": "10000",
            "currency": "usd", "stage": "1", "group": "1", "status": "0", "owner": "1",
            "contact": ((index % 50) + 1).to_string(), "cdate": created, "mdate": updated,
            "links": links}),
        "contact_field_values" => json!({"id": id, "contact": ((index / 3) + 1).to_string(),
            "field": ((index % 3) + 1).to_string(), "value": format!("value {index}"),
            "cdate": created, "udate": updated, "links": links}),
        "users" => json!({"id": id, "username": format!("user{index}"), "firstName": "User",
            "lastName": index.to_string(), "email": format!("user{index}@emulated.test"), "links": links}),
        "tasks" => json!({"id": id, "title": format!("Task {index}"),
            "reltype": if index.is_multiple_of(2) { "Deal" } else { "Subscriber" }, "relid": "1",
            "duedate": updated, "cdate": created, "udate": updated, "links": links}),
        _ => json!({"id": id, "name": format!("{data_type} {index}"), "cdate": created,
            "udate": updated, "links": links}),
    }
}

/// activecampaign in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "activecampaign",
    base_path: || "/activecampaign/api/3".to_owned(),
    serve: |state, call| {
        answer(
            state, call.req, call.rest, call.query, call.body, call.fault,
        )
    },
    rate_limited_body: || error_body(StatusCode::TOO_MANY_REQUESTS),
    error_body,
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_read_each_date_form_the_account_way() {
        let z = parse_time("2024-01-02T08:00:00Z").unwrap();
        assert_eq!(parse_time("2024-01-02T03:00:00-05:00"), Some(z));
        assert_eq!(parse_time("2024-01-02 03:00:00"), Some(z));
        assert_eq!(parse_time("2024-01-02T03:00:00"), Some(z));
        assert_eq!(parse_time("2024-01-02"), Some(z - 3 * 3_600_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(time(z), "2024-01-02T03:00:00-05:00");
    }
}
