//! HubSpot's CRM API, as its API reference documents it: objects
//! <https://developers.hubspot.com/docs/api/crm/understanding-the-crm>, search <https://developers.hubspot.com/docs/api/crm/search>, owners
//! <https://developers.hubspot.com/docs/api/crm/owners>, pipelines
//! <https://developers.hubspot.com/docs/api/crm/pipelines>, authentication
//! <https://developers.hubspot.com/docs/api/private-apps>, errors
//! <https://developers.hubspot.com/docs/api/error-handling>.
//!
//! - `Authorization: Bearer <private app or OAuth token>`. `GET /crm/v3/objects/<type>` in id order,
//!   `limit` ≤ 100, `after`, `{"results":[…],"paging":{"next":{"after":…,"link":…}}}`;
//!   `POST /crm/v3/objects/<type>/search` as the CRM search guide documents it: at most five `filterGroups`
//!   (ORed) of at most six `filters` (ANDed), 18 in all; operators `EQ NEQ LT LTE GT GTE` on
//!   `lastmodifieddate` (contacts) or `hs_lastmodifieddate` (everything else), `createdate` and
//!   `hs_object_id`, values as strings (dates in epoch milliseconds); "Only one sorting rule can be applied to
//!   any search" (records tied on the sort come back in no particular order; no sort: oldest created
//!   first); `limit` ≤ 200; `after` an integer, and no paging past 10,000 results (a 400);
//!   `GET /crm/v3/owners`, `GET /crm/v3/pipelines/{deals,tickets}`.
//! - Writes of contacts, companies and deals as the objects guides document them
//!   (<https://developers.hubspot.com/docs/api/crm/contacts>, …/companies, …/deals): `POST
//!   /crm/v3/objects/<type>` with `{"properties": {…}}` creates (201, the record), `PATCH …/<id>` changes only
//!   the properties sent (200), an empty string clearing one, `DELETE …/<id>` archives (204). Values are
//!   strings (numbers and booleans are taken as their text); an unknown property is a 400
//!   `VALIDATION_ERROR` ("Property values were not valid", `PROPERTY_DOESNT_EXIST`), a read-only one too
//!   (`READ_ONLY_VALUE`), a contact e-mail address already in use a 409 `CONFLICT` ("Contact already exists.
//!   Existing ID: <id>"), an unknown id a 404 with HubSpot's error body.

use std::collections::HashSet;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::dataset::Dataset;
use crate::faults::PagingFault;
use crate::request::{bearer, iso_ms, param, Query};
use crate::server::State;

/// The HubSpot search API answers at most this many results of one query, however it is paged.
pub(crate) const SEARCH_WINDOW: u64 = 10_000;

pub(crate) const OBJECTS: &[&str] = &[
    "contacts",
    "companies",
    "deals",
    "tickets",
    "products",
    "line_items",
    "quotes",
    "notes",
    "calls",
    "emails",
    "meetings",
    "tasks",
];

pub(crate) fn modified_property(object: &str) -> &'static str {
    if object == "contacts" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

pub(crate) fn auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let error = |message: &str| {
        HttpResponse::Unauthorized().json(json!({"status": "error", "message": message,
            "correlationId": "0b4b8a46-3a4b-4a8e-9c8c-2b1f7a7e9d11", "category": "INVALID_AUTHENTICATION"}))
    };
    match bearer(req) {
        None => Err(error(
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can \
             find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        )),
        Some(token) if accepted.contains(token) => Ok(()),
        Some(_) => Err(error("Authentication credentials not found or invalid.")),
    }
}

pub(crate) fn invalid(message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"status": "error", "message": message,
        "correlationId": "5e3b1f0a-8c2d-4d6e-9f70-3a1b2c4d5e6f", "category": "VALIDATION_ERROR"}))
}

pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let not_found = || HttpResponse::NotFound().finish();
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let get = req.method() == Method::GET;
    match segments.as_slice() {
        ["crm", "v3", "objects", object] if get && OBJECTS.contains(object) => {
            let limit = match limit_param(query, 100) {
                Ok(limit) => limit,
                Err(denied) => return denied,
            };
            // `after` is the id the page starts at.
            let after = match param(query, "after").map(str::parse::<u64>) {
                None => None,
                Some(Ok(id)) => Some(id),
                Some(Err(_)) => return invalid("Invalid input JSON on line 1: after".into()),
            };
            let start = match fault {
                // Both faults answer the first page's records.
                Some(_) => 0,
                None => after.map_or(0, |id| id.saturating_sub(1)),
            };
            let dataset = state.dataset("hubspot", object);
            let mut indices = (start..dataset.count).filter(|i| dataset.visible(*i));
            let page: Vec<u64> = indices.by_ref().take(limit as usize).collect();
            let more = indices.next().is_some();
            let results: Vec<Value> = page.iter().map(|i| record(dataset, object, *i)).collect();
            let mut body = json!({"results": results});
            let next = match fault {
                // The continuation moves on, the records do not.
                Some(PagingFault::RepeatsRecords) => {
                    let from = after.unwrap_or(1);
                    (from + limit <= dataset.count).then(|| from + limit)
                }
                _ => page.last().filter(|_| more).map(|last| last + 2),
            };
            if let Some(after) = next {
                let after = after.to_string();
                body["paging"] = json!({"next": {"after": after,
                    "link": format!("{base}/crm/v3/objects/{object}?limit={limit}&after={after}")}});
            }
            HttpResponse::Ok().json(body)
        }
        ["crm", "v3", "objects", object, "search"]
            if req.method() == Method::POST && OBJECTS.contains(object) =>
        {
            search(state.dataset("hubspot", object), object, body)
        }
        ["crm", "v3", "objects", object]
            if req.method() == Method::POST && WRITABLE.iter().any(|(o, _)| o == object) =>
        {
            write(state, object, None, body)
        }
        ["crm", "v3", "objects", object, id]
            if (req.method() == Method::PATCH || req.method() == Method::DELETE)
                && WRITABLE.iter().any(|(o, _)| o == object) =>
        {
            let dataset = state.dataset("hubspot", object);
            let Some(index) = id
                .parse::<u64>()
                .ok()
                .and_then(|id| id.checked_sub(1))
                .filter(|i| dataset.exists(*i))
            else {
                return HttpResponse::NotFound().json(json!({"status": "error",
                    "message": "resource not found", "correlationId": "1f0c5d2e-7a4b-4c1d-9e8f-0a1b2c3d4e5f",
                    "category": "OBJECT_NOT_FOUND"}));
            };
            if req.method() == Method::DELETE {
                dataset.hidden.insert(index);
                return HttpResponse::NoContent().finish();
            }
            write(state, object, Some(index), body)
        }
        // The connection test's call: the account the token belongs to.
        ["account-info", "v3", "details"] if get => account_details(),
        ["crm", "v3", "owners"] if get => {
            let limit = match limit_param(query, 500) {
                Ok(limit) => limit,
                Err(denied) => return denied,
            };
            let start: u64 = param(query, "after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0);
            let dataset = state.dataset("hubspot", "owners");
            let end = (start + limit).min(dataset.count);
            let results: Vec<Value> = (start..end)
                .map(|i| {
                    let created = iso_ms(dataset.created_ms(i));
                    json!({"id": (i + 1).to_string(), "email": format!("owner{i}@example.test"),
                        "firstName": "Owner", "lastName": i.to_string(), "userId": 9_000_000 + i,
                        "createdAt": created, "updatedAt": iso_ms(dataset.updated_ms(i)), "archived": false,
                        "teams": []})
                })
                .collect();
            let mut page = json!({"results": results});
            if end < dataset.count {
                // The owners API's `after` is opaque; here it is an offset.
                page["paging"] = json!({"next": {"after": end.to_string(),
                    "link": format!("{base}/crm/v3/owners?after={end}")}});
            }
            HttpResponse::Ok().json(page)
        }
        ["crm", "v3", "pipelines", object @ ("deals" | "tickets")] if get => {
            let dataset = state.dataset("hubspot", "pipelines");
            let results: Vec<Value> = (0..dataset.count)
                .map(|i| {
                    let id = if i == 0 { "default".to_owned() } else { (1000 * i).to_string() };
                    json!({"id": id, "label": format!("{object} pipeline {i}"), "displayOrder": i,
                        "createdAt": iso_ms(dataset.created_ms(i)), "updatedAt": iso_ms(dataset.updated_ms(i)),
                        "archived": false,
                        "stages": [{"id": format!("{id}-1"), "label": "New", "displayOrder": 0,
                                    "metadata": {}, "archived": false}]})
                })
                .collect();
            HttpResponse::Ok().json(json!({"results": results}))
        }
        _ => not_found(),
    }
}

/// The objects the emulation writes, and the properties a user may set on each (the guides' default
/// properties; anything HubSpot sets itself, `hs_object_id`, `createdate` and the modification dates, is
/// read-only).
const WRITABLE: &[(&str, &[&str])] = &[
    (
        "contacts",
        &[
            "email",
            "firstname",
            "lastname",
            "phone",
            "mobilephone",
            "company",
            "website",
            "jobtitle",
            "address",
            "city",
            "state",
            "zip",
            "country",
            "lifecyclestage",
        ],
    ),
    (
        "companies",
        &[
            "name",
            "domain",
            "phone",
            "website",
            "industry",
            "description",
            "address",
            "city",
            "state",
            "zip",
            "country",
        ],
    ),
    (
        "deals",
        &[
            "dealname",
            "amount",
            "dealstage",
            "pipeline",
            "closedate",
            "dealtype",
            "description",
        ],
    ),
];

/// A create (`index` `None`) or an update of one record of `object` (see the module).
fn write(state: &mut State, object: &str, index: Option<u64>, body: &[u8]) -> HttpResponse {
    let writable = WRITABLE
        .iter()
        .find(|(o, _)| *o == object)
        .map_or(&[][..], |(_, p)| *p);
    let properties = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut body)) => match body.remove("properties") {
            Some(Value::Object(properties)) => properties,
            _ => return invalid("Invalid input JSON: properties is required".into()),
        },
        _ => return invalid("Invalid input JSON on line 1".into()),
    };
    let mut fields = serde_json::Map::new();
    for (name, value) in properties {
        let error = if writable.contains(&name.as_str()) {
            None
        } else if ["hs_object_id", "createdate", modified_property(object)].contains(&name.as_str())
        {
            Some((
                "READ_ONLY_VALUE",
                format!("{name} is a read only property; its value cannot be set."),
            ))
        } else {
            Some((
                "PROPERTY_DOESNT_EXIST",
                format!("Property \"{name}\" does not exist"),
            ))
        };
        if let Some((code, message)) = error {
            let detail =
                json!([{"isValid": false, "message": message, "error": code, "name": name}]);
            return invalid(format!("Property values were not valid: {detail}"));
        }
        let value = match value {
            Value::String(text) if text.is_empty() => Value::Null,
            Value::String(text) => Value::String(text),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            Value::Null => Value::Null,
            _ => {
                return invalid(format!(
                    "Property values were not valid: {name} must be a string"
                ))
            }
        };
        fields.insert(name, value);
    }
    if object == "contacts" {
        if let Some(Value::String(email)) = fields.get("email") {
            let dataset = state.dataset("hubspot", object);
            let taken = (0..dataset.count).find(|i| {
                Some(*i) != index
                    && dataset.exists(*i)
                    && record(dataset, object, *i)["properties"]["email"]
                        .as_str()
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
            if let Some(existing) = taken {
                return HttpResponse::Conflict().json(json!({"status": "error",
                    "message": format!("Contact already exists. Existing ID: {}", existing + 1),
                    "correlationId": "3d2c1b0a-9f8e-4d7c-6b5a-4f3e2d1c0b9a", "category": "CONFLICT"}));
            }
        }
    }
    let (status, index) = match index {
        Some(index) => {
            state.update_record("hubspot", object, index, fields);
            (actix_web::http::StatusCode::OK, index)
        }
        None => {
            if fields.values().all(Value::is_null) {
                return invalid("Property values were not valid: no properties to set".into());
            }
            let index = state.create_record("hubspot", object, fields);
            (actix_web::http::StatusCode::CREATED, index)
        }
    };
    HttpResponse::build(status).json(record(state.dataset("hubspot", object), object, index))
}

pub(crate) fn limit_param(query: &Query, max: u64) -> Result<u64, HttpResponse> {
    match param(query, "limit").map(str::parse::<u64>) {
        None => Ok(10),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        _ => Err(invalid(format!("limit must be between 1 and {max}"))),
    }
}

pub(crate) fn record(dataset: &Dataset, object: &str, index: u64) -> Value {
    let id = (index + 1).to_string();
    let created = iso_ms(dataset.created_ms(index));
    let updated = iso_ms(dataset.updated_ms(index));
    let mut properties = json!({
        "createdate": created,
        "hs_object_id": id,
        modified_property(object): updated,
    });
    let extra = match object {
        "contacts" => {
            json!({"email": format!("contact{index}@example.test"), "firstname": "Contact",
            "lastname": index.to_string()})
        }
        "companies" => {
            json!({"name": format!("Company {index}"), "domain": format!("company{index}.example")})
        }
        "deals" => {
            json!({"dealname": format!("Deal {index}"), "amount": (index % 100 * 10).to_string(),
            "dealstage": "appointmentscheduled", "pipeline": "default"})
        }
        "tickets" => json!({"subject": format!("Ticket {index}"), "hs_pipeline": "0",
            "hs_pipeline_stage": "1"}),
        _ => json!({"hs_timestamp": created, "hs_body_preview": format!("{object} {index}")}),
    };
    if let Value::Object(properties) = &mut properties {
        properties.extend(dataset.fields(index, || extra));
    }
    json!({"id": id, "properties": properties, "createdAt": created, "updatedAt": updated, "archived": false})
}

/// One search filter the emulation evaluates: a property compared with a number.
pub(crate) struct SearchFilter {
    property: SearchProperty,
    operator: String,
    value: i64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum SearchProperty {
    /// `lastmodifieddate` / `hs_lastmodifieddate`, epoch milliseconds.
    Modified,
    /// `createdate`, epoch milliseconds.
    Created,
    /// `hs_object_id`.
    Id,
}

impl SearchProperty {
    fn parse(name: &str, object: &str) -> Option<Self> {
        match name {
            "hs_object_id" => Some(SearchProperty::Id),
            "createdate" => Some(SearchProperty::Created),
            name if name == modified_property(object) => Some(SearchProperty::Modified),
            _ => None,
        }
    }

    fn of(&self, dataset: &Dataset, index: u64) -> i64 {
        match self {
            SearchProperty::Modified => dataset.updated_ms(index),
            SearchProperty::Created => dataset.created_ms(index),
            SearchProperty::Id => index as i64 + 1,
        }
    }
}

impl SearchFilter {
    fn matches(&self, dataset: &Dataset, index: u64) -> bool {
        let actual = self.property.of(dataset, index);
        match self.operator.as_str() {
            "EQ" => actual == self.value,
            "NEQ" => actual != self.value,
            "LT" => actual < self.value,
            "LTE" => actual <= self.value,
            "GT" => actual > self.value,
            _ => actual >= self.value,
        }
    }
}

/// Records tied on the sort property come back in an order of HubSpot's choosing: here, a fixed shuffle of
/// the ids, so that a client cannot rely on ties arriving by id.
pub(crate) fn tie_order(index: u64) -> u64 {
    index.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

pub(crate) fn search(dataset: &Dataset, object: &str, body: &[u8]) -> HttpResponse {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid input JSON on line 1".into());
    };
    // Filters: at most five groups (ORed) of at most six filters (ANDed), 18 in all.
    let groups = match &request["filterGroups"] {
        Value::Null => vec![],
        Value::Array(groups) => groups.clone(),
        _ => return invalid("filterGroups must be a list".into()),
    };
    if groups.len() > 5 {
        return invalid("Too many filter groups: at most 5 are allowed".into());
    }
    let mut parsed: Vec<Vec<SearchFilter>> = Vec::new();
    let mut total_filters = 0;
    for group in &groups {
        let Some(filters) = group["filters"].as_array() else {
            return invalid("A filter group needs a list of filters".into());
        };
        if filters.len() > 6 {
            return invalid("Too many filters in a group: at most 6 are allowed".into());
        }
        total_filters += filters.len();
        let mut conditions = Vec::new();
        for filter in filters {
            let name = filter["propertyName"].as_str().unwrap_or_default();
            let Some(property) = SearchProperty::parse(name, object) else {
                return invalid(format!(
                    "This emulation filters {object} on {}, createdate or hs_object_id, not `{name}`",
                    modified_property(object)
                ));
            };
            let operator = match filter["operator"].as_str() {
                Some(op @ ("EQ" | "NEQ" | "LT" | "LTE" | "GT" | "GTE")) => op.to_owned(),
                Some(
                    op @ ("BETWEEN" | "IN" | "NOT_IN" | "HAS_PROPERTY" | "NOT_HAS_PROPERTY"
                    | "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN"),
                ) => {
                    return invalid(format!(
                        "This emulation does not implement the {op} operator"
                    ))
                }
                other => {
                    return invalid(format!(
                        "Unknown filter operator {}",
                        other.unwrap_or("(none)")
                    ))
                }
            };
            // Values are strings; dates in epoch milliseconds.
            let Some(value) = filter["value"].as_str().and_then(|v| v.parse::<i64>().ok()) else {
                return invalid(format!(
                    "The value of a filter on {name} must be a string of digits (epoch milliseconds \
                     for dates), not {}",
                    filter["value"]
                ));
            };
            conditions.push(SearchFilter {
                property,
                operator,
                value,
            });
        }
        parsed.push(conditions);
    }
    if total_filters > 18 {
        return invalid("Too many filters: at most 18 are allowed".into());
    }
    // "Only one sorting rule can be applied to any search."
    let sorts = match &request["sorts"] {
        Value::Null => vec![],
        Value::Array(sorts) => sorts.clone(),
        _ => return invalid("sorts must be a list".into()),
    };
    if sorts.len() > 1 {
        return invalid("Only one sorting rule can be applied to any search".into());
    }
    let (sort, descending) = match sorts.first() {
        // Without a sort: by creation, oldest first.
        None => (SearchProperty::Created, false),
        Some(sort) => {
            let name = sort["propertyName"].as_str().unwrap_or_default();
            let Some(property) = SearchProperty::parse(name, object) else {
                return invalid(format!("This emulation cannot sort {object} by `{name}`"));
            };
            let descending = match sort["direction"].as_str() {
                None | Some("ASCENDING") => false,
                Some("DESCENDING") => true,
                Some(other) => return invalid(format!("Unknown sort direction {other}")),
            };
            (property, descending)
        }
    };
    let limit = match &request["limit"] {
        Value::Null => 10,
        value => match value.as_u64() {
            Some(n) if (1..=200).contains(&n) => n,
            _ => return invalid("limit must be between 1 and 200".into()),
        },
    };
    // `after` must be an integer (as a string, as HubSpot sends it back).
    let after = match &request["after"] {
        Value::Null => 0,
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => n,
            Err(_) => return invalid(format!("after must be an integer, not {s:?}")),
        },
        Value::Number(n) => match n.as_u64() {
            Some(n) => n,
            None => return invalid("after must be an integer".into()),
        },
        _ => return invalid("after must be an integer".into()),
    };
    if after >= SEARCH_WINDOW {
        return invalid(format!(
            "Cannot page through more than {SEARCH_WINDOW} results of a search"
        ));
    }
    let mut matches: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .filter(|i| {
            parsed.is_empty()
                || parsed
                    .iter()
                    .any(|group| group.iter().all(|filter| filter.matches(dataset, *i)))
        })
        .collect();
    matches.sort_by_key(|i| (sort.of(dataset, *i), tie_order(*i)));
    if descending {
        matches.reverse();
    }
    let total = matches.len() as u64;
    let results: Vec<Value> = matches
        .iter()
        .skip(after as usize)
        .take(limit as usize)
        .map(|i| record(dataset, object, *i))
        .collect();
    let mut page = json!({"total": total, "results": results});
    if after + limit < total {
        page["paging"] = json!({"next": {"after": (after + limit).to_string()}});
    }
    HttpResponse::Ok().json(page)
}

/// `GET /account-info/v3/details`
/// (<https://developers.hubspot.com/docs/api-reference/legacy/account/account-information/get-account-details>):
/// the portal (account) the token belongs to.
pub(crate) fn account_details() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "portalId": 62515,
        "accountType": "STANDARD",
        "timeZone": "US/Eastern",
        "companyCurrency": "USD",
        "additionalCurrencies": [],
        "utcOffset": "-05:00",
        "utcOffsetMilliseconds": -18_000_000,
        "uiDomain": "app.hubspot.com",
        "dataHostingLocation": "na1"
    }))
}

/// HubSpot in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "hubspot",
    base_path: || "/hubspot".to_owned(),
    serve: |state, call| match auth(call.req, call.accepted) {
        Err(denied) => denied,
        Ok(()) => answer(
            state, call.req, call.rest, call.query, call.body, call.base, call.fault,
        ),
    },
    rate_limited_body: || {
        json!({"status": "error", "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT", "correlationId": "7c1f5b0e-2f0a-4c4a-9d0c-1f3f7e0b2a11",
            "policyName": "SECONDLY"})
    },
    error_body: |status| {
        json!({"status": "error", "message": status.canonical_reason().unwrap_or("Error"),
            "correlationId": "2b9d1c77-0f7e-4b0e-8a54-5d6c0c1e9f20",
            "category": if status.is_server_error() { "INTERNAL_ERROR" } else { "VALIDATION_ERROR" }})
    },
    record_id: |data_type, index| {
        if data_type == "pipelines" {
            if index == 0 {
                "default".to_owned()
            } else {
                (1000 * index).to_string()
            }
        } else {
            (index + 1).to_string()
        }
    },
    newest_first: false,
    listed: |_, _| true,
};
