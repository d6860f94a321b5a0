//! Shopify Admin REST API, as documented at https://shopify.dev/docs/api/admin-rest (resources: customer,
//! order, draftorder, product, customcollection, smartcollection, inventorylevel, location, pricerule,
//! discountcode, page, blog, article, shop), https://shopify.dev/docs/api/admin-rest/usage/pagination and
//! https://shopify.dev/docs/api/admin-rest/usage/rate-limits.
//!
//! What is emulated, and how the documentation was read:
//! - Paths `/admin/api/<version>/<resource>.json` for the supported stable versions (2026-01 to 2026-10); an
//!   older one "falls forward" to the oldest supported, as the versioning guide says, and every answer names
//!   the version used in `X-Shopify-API-Version`.
//! - `X-Shopify-Access-Token` only (a Bearer token is not Shopify's scheme): 401
//!   `{"errors":"[API] Invalid API key or access token (unrecognized login or wrong password)"}`.
//! - Lists `{"<resource>":[…]}` in id order, `limit` 1–250 (default 50). The next page is a `Link` header
//!   `<…?limit=…&page_info=…>; rel="next"` (with `rel="previous"` after the first page), present only when
//!   more records follow. `page_info` is opaque (a tampered one is a 400) and "can't be modified"; a request
//!   with `page_info` may carry only `limit` and `fields`, anything else is a 400
//!   `{"errors":{"<param>":"<param> cannot be passed when page_info is present. …"}}`: filters go on the
//!   first request, and the page_info carries them on.
//! - Filters: `updated_at_min`/`updated_at_max`, `created_at_min`, `since_id` on the lists that document
//!   them; orders list only open ones unless `status=any` (every fifth order is closed).
//! - Per parent: `/price_rules/{id}/discount_codes.json`, `/blogs/{id}/articles.json`,
//!   `/locations/{id}/inventory_levels.json` (child `i` belongs to parent `i mod <parents>`); an unknown
//!   parent is a 404 `{"errors":"Not Found"}`. `/locations.json` answers every location at once, and
//!   `/shop.json` the store itself.
//! - The leaky bucket of a standard plan: 40 requests leaking 2 per second, reported in
//!   `X-Shopify-Shop-Api-Call-Limit: <used>/40`; a request that finds it full is a 429 with
//!   `Retry-After: 2.0` and `{"errors":"Exceeded 2 calls per second for api client. …"}` and does not fill it.
//! - Writes of customers and products (resources customer and product): `POST /customers.json` and
//!   `POST /products.json` create (201, `{"customer": {…}}` / `{"product": {…}}`), `PUT
//!   /customers/{id}.json` and `PUT /products/{id}.json` change the fields sent (200), `DELETE` deletes (200
//!   `{}`). A body without its envelope is a 400 `{"errors":{"customer":"Required parameter missing or
//!   invalid"}}`; a customer e-mail address already in use a 422 `{"errors":{"email":["has already been
//!   taken"]}}`, a product without a title a 422 `{"errors":{"title":["can't be blank"]}}`, an unknown id a
//!   404. Fields Shopify sets itself (ids, dates, counts, totals) are ignored, as the API does.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::Engine;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::{json, Value};

use crate::{param, Dataset, PagingFault, Query, State};

/// Stable versions supported at the time of writing (each for 12 months); an older one falls forward to the
/// first.
const SUPPORTED_VERSIONS: &[&str] = &["2026-01", "2026-04", "2026-07", "2026-10"];
/// The API base path under the emulation's `/shopify` prefix.
pub(crate) const BASE_PATH: &str = "/shopify/admin/api/2026-10";

/// The standard plan's bucket.
const BUCKET_SIZE: f64 = 40.0;
const LEAK_PER_SECOND: f64 = 2.0;

/// The resources listed at the top level, and whether each filters on `updated_at_min`.
const LISTS: &[(&str, bool)] = &[
    ("customers", true),
    ("orders", true),
    ("draft_orders", true),
    ("products", true),
    ("custom_collections", true),
    ("smart_collections", true),
    ("price_rules", true),
    ("pages", true),
    ("blogs", false),
];

/// Resources listed per parent: (parent resource, child resource, the child's field naming its parent).
const CHILDREN: &[(&str, &str, &str)] = &[
    ("price_rules", "discount_codes", "price_rule_id"),
    ("blogs", "articles", "blog_id"),
    ("locations", "inventory_levels", "location_id"),
];

/// Answers a request under `/shopify` (`rest` is the path after it).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let accepted = state.accepted.get("shopify").cloned().unwrap_or_default();
    let used = if state.unmetered {
        Some(1)
    } else {
        bucket_level(state)
    };
    let token = req
        .headers()
        .get("X-Shopify-Access-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if token.is_empty() || !accepted.contains(token) {
        return reply(StatusCode::UNAUTHORIZED, used).json(json!({"errors":
            "[API] Invalid API key or access token (unrecognized login or wrong password)"}));
    }
    if used.is_none() {
        return HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", "2.0"))
            .insert_header(("X-Shopify-Shop-Api-Call-Limit", "40/40"))
            .json(rate_limited_body());
    }
    let Some((version, resource)) = rest
        .strip_prefix("/admin/api/")
        .and_then(|r| r.split_once('/'))
    else {
        return not_found(used);
    };
    let version = if SUPPORTED_VERSIONS.contains(&version) {
        version
    } else {
        SUPPORTED_VERSIONS[0]
    };
    let Some(resource) = resource.strip_suffix(".json") else {
        return not_found(used);
    };
    let method = req.method().as_str();
    let mut response = match resource.split('/').collect::<Vec<_>>()[..] {
        [resource @ ("customers" | "products")] if method == "POST" => {
            write(state, resource, None, body, used)
        }
        [resource @ ("customers" | "products"), id] if method == "PUT" || method == "DELETE" => {
            let dataset = state.dataset("shopify", resource);
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| id.checked_sub(1))
                .filter(|i| dataset.exists(*i))
            {
                None => not_found(used),
                Some(index) if method == "DELETE" => {
                    dataset.hidden.insert(index);
                    reply(StatusCode::OK, used).json(json!({}))
                }
                Some(index) => write(state, resource, Some(index), body, used),
            }
        }
        _ if method != "GET" => not_found(used),
        ["shop"] => reply(StatusCode::OK, used).json(json!({"shop": shop()})),
        ["locations"] => {
            let dataset = state.dataset("shopify", "locations");
            let all: Vec<Value> = (0..dataset.count)
                .filter(|i| dataset.visible(*i))
                .map(|i| record(dataset, "locations", i, None))
                .collect();
            reply(StatusCode::OK, used).json(json!({"locations": all}))
        }
        [list] => match LISTS.iter().find(|(name, _)| *name == list) {
            Some((name, filters_updated)) => {
                let page = Page {
                    resource: name,
                    parent: None,
                    filters_updated: *filters_updated,
                };
                page.answer(state, query, base, version, used, fault)
            }
            None => not_found(used),
        },
        [parent, parent_id, child] => {
            let Some((_, child, field)) = CHILDREN
                .iter()
                .find(|(p, c, _)| *p == parent && *c == child)
            else {
                return not_found(used);
            };
            let parents = state.dataset("shopify", parent);
            let index = parent_id
                .parse::<u64>()
                .ok()
                .and_then(|id| id.checked_sub(1));
            match index.filter(|i| *i < parents.count && parents.visible(*i)) {
                Some(index) => {
                    let page = Page {
                        resource: child,
                        parent: Some(Parent {
                            resource: parent,
                            field,
                            index,
                            count: parents.count,
                        }),
                        filters_updated: *child != "discount_codes",
                    };
                    page.answer(state, query, base, version, used, fault)
                }
                None => not_found(used),
            }
        }
        _ => not_found(used),
    };
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-shopify-api-version"),
        actix_web::http::header::HeaderValue::from_static(version_static(version)),
    );
    response
}

/// The fields of a customer and of a product a create or an update sets (the resources' properties that are
/// not Shopify's own); others in a body are ignored.
const WRITABLE: &[(&str, &str, &[&str])] = &[
    (
        "customers",
        "customer",
        &[
            "first_name",
            "last_name",
            "email",
            "phone",
            "note",
            "tags",
            "tax_exempt",
            "verified_email",
            "addresses",
            "accepts_marketing",
        ],
    ),
    (
        "products",
        "product",
        &[
            "title",
            "body_html",
            "vendor",
            "product_type",
            "handle",
            "tags",
            "status",
            "template_suffix",
            "published_scope",
        ],
    ),
];

/// A customer or a product created (`index` `None`) or changed (see the module).
fn write(
    state: &mut State,
    resource: &str,
    index: Option<u64>,
    body: &[u8],
    used: Option<u32>,
) -> HttpResponse {
    let Some((_, envelope, writable)) = WRITABLE.iter().find(|(r, _, _)| *r == resource) else {
        return not_found(used);
    };
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut body)) => match body.remove(*envelope) {
            Some(Value::Object(fields)) => fields,
            _ => {
                return bad_request(
                    used,
                    envelope,
                    "Required parameter missing or invalid".into(),
                )
            }
        },
        _ => {
            return bad_request(
                used,
                envelope,
                "Required parameter missing or invalid".into(),
            )
        }
    };
    let fields: serde_json::Map<String, Value> = fields
        .into_iter()
        .filter(|(name, _)| writable.contains(&name.as_str()))
        .collect();
    let unprocessable = |field: &str, message: &str| {
        reply(StatusCode::UNPROCESSABLE_ENTITY, used).json(json!({"errors": {field: [message]}}))
    };
    let dataset = state.dataset("shopify", resource);
    let current = |i: u64| record(dataset, resource, i, None);
    match resource {
        "customers" => {
            if let Some(Value::String(email)) = fields.get("email") {
                let taken = (0..dataset.count).any(|i| {
                    Some(i) != index
                        && dataset.exists(i)
                        && current(i)["email"]
                            .as_str()
                            .is_some_and(|e| e.eq_ignore_ascii_case(email))
                });
                if taken {
                    return unprocessable("email", "has already been taken");
                }
            }
        }
        _ => {
            let title = match (fields.get("title"), index) {
                (Some(title), _) => title.as_str().unwrap_or_default().to_owned(),
                (None, None) => String::new(),
                (None, Some(_)) => "unchanged".to_owned(),
            };
            if title.trim().is_empty() {
                return unprocessable("title", "can't be blank");
            }
            if let Some(Value::String(handle)) = fields.get("handle") {
                let taken = (0..dataset.count).any(|i| {
                    Some(i) != index && dataset.exists(i) && current(i)["handle"] == handle.as_str()
                });
                if taken {
                    return unprocessable("handle", "has already been taken");
                }
            }
        }
    }
    let (status, index) = match index {
        Some(index) => {
            state.update_record("shopify", resource, index, fields);
            (StatusCode::OK, index)
        }
        None => (
            StatusCode::CREATED,
            state.create_record("shopify", resource, fields),
        ),
    };
    let written = record(state.dataset("shopify", resource), resource, index, None);
    reply(status, used).json(json!({ *envelope: written }))
}

fn version_static(version: &str) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .find(|v| **v == version)
        .copied()
        .unwrap_or(SUPPORTED_VERSIONS[0])
}

/// The bucket after this request (already in `arrivals`): `Some(used)` if it fits, `None` if the bucket was
/// full (the request does not count then). Recomputed from the arrivals of the last 30 seconds: a full
/// bucket drains in 20.
fn bucket_level(state: &State) -> Option<u32> {
    let arrivals = state
        .arrivals
        .get("shopify")
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let Some(now) = arrivals.last().copied() else {
        return Some(1);
    };
    let window = std::time::Duration::from_secs(30);
    let mut level = 0.0f64;
    let mut last: Option<std::time::Instant> = None;
    let mut fits = true;
    for at in arrivals
        .iter()
        .filter(|at| now.duration_since(**at) <= window)
    {
        if let Some(last) = last {
            level = (level - at.duration_since(last).as_secs_f64() * LEAK_PER_SECOND).max(0.0);
        }
        last = Some(*at);
        fits = level + 1.0 <= BUCKET_SIZE;
        if fits {
            level += 1.0;
        }
    }
    fits.then(|| level.ceil() as u32)
}

fn reply(status: StatusCode, used: Option<u32>) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.insert_header((
        "X-Shopify-Shop-Api-Call-Limit",
        format!("{}/{}", used.unwrap_or(40), BUCKET_SIZE as u32),
    ));
    builder
}

fn not_found(used: Option<u32>) -> HttpResponse {
    reply(StatusCode::NOT_FOUND, used).json(json!({"errors": "Not Found"}))
}

fn bad_request(used: Option<u32>, param: &str, message: String) -> HttpResponse {
    reply(StatusCode::BAD_REQUEST, used).json(json!({"errors": {param: message}}))
}

/// The 429 body of an exceeded bucket.
pub(crate) fn rate_limited_body() -> Value {
    json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."})
}

/// The error body for a status a test asks for.
pub(crate) fn error_body(status: StatusCode) -> Value {
    match status {
        StatusCode::UNAUTHORIZED => json!({"errors":
            "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        StatusCode::FORBIDDEN => json!({"errors":
            "[API] This action requires merchant approval for read_orders scope."}),
        StatusCode::NOT_FOUND => json!({"errors": "Not Found"}),
        s if s.is_server_error() => json!({"errors": "Internal Server Error"}),
        s => json!({"errors": s.canonical_reason().unwrap_or("Error")}),
    }
}

fn shop() -> Value {
    json!({"id": 548380009, "name": "Emulated Store", "email": "owner@emulated-store.test",
        "domain": "emulated-store.myshopify.com", "myshopify_domain": "emulated-store.myshopify.com",
        "plan_name": "basic", "currency": "USD", "iana_timezone": "America/New_York",
        "created_at": time(crate::EPOCH_MS), "updated_at": time(crate::EPOCH_MS)})
}

/// Shopify's times: ISO 8601 in the shop's time zone (here New York in winter, UTC−05:00).
fn time(ms: i64) -> String {
    let offset = FixedOffset::west_opt(5 * 3600).unwrap();
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .with_timezone(&offset)
        .format("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}

/// A record's id: its index plus one (ids are unique per resource).
fn id(index: u64) -> u64 {
    index + 1
}

struct Parent<'a> {
    resource: &'a str,
    field: &'a str,
    index: u64,
    count: u64,
}

/// One list request.
struct Page<'a> {
    resource: &'a str,
    parent: Option<Parent<'a>>,
    filters_updated: bool,
}

/// What a page_info carries: where the previous page ended, and the first request's filters.
#[derive(Debug, Clone, PartialEq)]
struct Position {
    after: Option<u64>,
    updated_min: Option<i64>,
    updated_max: Option<i64>,
    created_min: Option<i64>,
    status: Option<String>,
}

impl Position {
    fn encode(&self) -> String {
        let value = json!({"last_id": self.after.map(id), "updated_at_min": self.updated_min,
            "updated_at_max": self.updated_max, "created_at_min": self.created_min,
            "status": self.status, "direction": "next"});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let value: Value = serde_json::from_slice(&bytes).ok()?;
        Some(Self {
            after: value["last_id"].as_u64().and_then(|id| id.checked_sub(1)),
            updated_min: value["updated_at_min"].as_i64(),
            updated_max: value["updated_at_max"].as_i64(),
            created_min: value["created_at_min"].as_i64(),
            status: value["status"].as_str().map(str::to_owned),
        })
    }
}

fn parse_time(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

impl Page<'_> {
    fn answer(
        &self,
        state: &mut State,
        query: &Query,
        base: &str,
        version: &str,
        used: Option<u32>,
        fault: Option<PagingFault>,
    ) -> HttpResponse {
        let limit = match param(query, "limit").map(str::parse::<u64>) {
            None => 50,
            Some(Ok(n)) if (1..=250).contains(&n) => n,
            _ => {
                return bad_request(
                    used,
                    "limit",
                    "limit must be a number between 1 and 250".into(),
                )
            }
        };
        let position = match param(query, "page_info") {
            Some(page_info) => {
                // "A request that includes the page_info parameter can't include any other parameters
                // except for limit and fields."
                if let Some((other, _)) = query
                    .iter()
                    .find(|(k, _)| !["page_info", "limit", "fields"].contains(&k.as_str()))
                {
                    return bad_request(
                        used,
                        other,
                        format!(
                            "{other} cannot be passed when page_info is present. See \
                             https://shopify.dev/api/usage/pagination-rest for more information."
                        ),
                    );
                }
                match Position::decode(page_info) {
                    Some(position) if fault != Some(PagingFault::IgnoresCursor) => position,
                    Some(_) => Position::first(),
                    None => return bad_request(used, "page_info", "Invalid value.".into()),
                }
            }
            None => {
                let mut position = Position::first();
                for (name, value) in query {
                    let time = || parse_time(value).ok_or(());
                    let parsed = match name.as_str() {
                        "updated_at_min" if self.filters_updated => {
                            time().map(|t| position.updated_min = Some(t))
                        }
                        "updated_at_max" if self.filters_updated => {
                            time().map(|t| position.updated_max = Some(t))
                        }
                        "created_at_min" if self.resource != "blogs" => {
                            time().map(|t| position.created_min = Some(t))
                        }
                        "since_id" => value
                            .parse::<u64>()
                            .map(|id| position.after = id.checked_sub(1).or(position.after))
                            .map_err(|_| ()),
                        "status" if self.resource == "orders" => match value.as_str() {
                            "open" | "closed" | "cancelled" | "any" => {
                                position.status = Some(value.clone());
                                Ok(())
                            }
                            _ => Err(()),
                        },
                        // Unknown parameters are ignored, as Shopify does.
                        _ => Ok(()),
                    };
                    if parsed.is_err() {
                        return bad_request(used, name, format!("{name} is invalid"));
                    }
                }
                position
            }
        };
        let resource = self.resource;
        let dataset = state.dataset("shopify", resource);
        let matches = |i: u64| {
            dataset.visible(i)
                && self
                    .parent
                    .as_ref()
                    .is_none_or(|parent| i % parent.count == parent.index)
                && position
                    .updated_min
                    .is_none_or(|t| dataset.updated_ms(i) >= t)
                && position
                    .updated_max
                    .is_none_or(|t| dataset.updated_ms(i) <= t)
                && position
                    .created_min
                    .is_none_or(|t| dataset.created_ms(i) >= t)
                && match (resource, position.status.as_deref()) {
                    ("orders", Some("any")) => true,
                    ("orders", Some("closed")) => order_closed(i),
                    ("orders", Some("cancelled")) => false,
                    ("orders", _) => !order_closed(i),
                    _ => true,
                }
        };
        let start = position.after.map_or(0, |after| after + 1);
        let mut found = (start..dataset.count).filter(|i| matches(*i));
        let page: Vec<u64> = found.by_ref().take(limit as usize).collect();
        let more = found.next().is_some();
        let records: Vec<Value> = page
            .iter()
            .map(|i| {
                let parent = self.parent.as_ref().map(|p| (p.field, id(p.index)));
                record(dataset, resource, *i, parent)
            })
            .collect();
        let path = match &self.parent {
            Some(parent) => format!("{}/{}/{resource}.json", parent.resource, id(parent.index)),
            None => format!("{resource}.json"),
        };
        let link = |position: &Position| {
            format!(
                "{base}/admin/api/{version}/{path}?limit={limit}&page_info={}",
                position.encode()
            )
        };
        let mut links = Vec::new();
        if position.after.is_some() {
            let previous = Position {
                after: None,
                ..position.clone()
            };
            links.push(format!("<{}>; rel=\"previous\"", link(&previous)));
        }
        if more {
            let next = Position {
                after: page.last().copied(),
                ..position.clone()
            };
            links.push(format!("<{}>; rel=\"next\"", link(&next)));
        }
        let mut response = reply(StatusCode::OK, used);
        if !links.is_empty() {
            response.insert_header(("Link", links.join(", ")));
        }
        response.json(json!({ resource: records }))
    }
}

impl Position {
    fn first() -> Self {
        Self {
            after: None,
            updated_min: None,
            updated_max: None,
            created_min: None,
            status: None,
        }
    }
}

/// Every fifth order is closed: listed only with `status=any` (or `closed`).
fn order_closed(index: u64) -> bool {
    index % 5 == 4
}

fn record(dataset: &Dataset, resource: &str, index: u64, parent: Option<(&str, u64)>) -> Value {
    let created = time(dataset.created_ms(index));
    let updated = time(dataset.updated_ms(index));
    let mut record = match resource {
        "customers" => json!({"email": format!("customer{index}@example.test"),
            "first_name": "Customer", "last_name": index.to_string(), "orders_count": index % 7,
            "state": "enabled", "total_spent": format!("{}.00", index % 500), "verified_email": true,
            "tags": "", "currency": "USD", "addresses": []}),
        "orders" => json!({"name": format!("#{}", 1000 + index),
            "email": format!("customer{}@example.test", index / 3),
            "financial_status": "paid", "currency": "USD",
            "total_price": format!("{}.00", 10 + index % 90),
            "closed_at": if order_closed(index) { Value::String(updated.clone()) } else { Value::Null },
            "line_items": [{"id": 10_000 + index, "title": "Emulated product", "quantity": 1}]}),
        "inventory_levels" => json!({"inventory_item_id": id(index), "available": index % 40}),
        "locations" => {
            json!({"name": format!("Location {index}"), "address1": format!("{index} Main St"),
            "city": "Springfield", "country_code": "US", "active": true})
        }
        "discount_codes" => json!({"code": format!("SAVE{index}"), "usage_count": index % 3}),
        "articles" => json!({"title": format!("Article {index}"), "author": "Emulated Author",
            "body_html": "<p>Emulated</p>", "handle": format!("article-{index}")}),
        _ => {
            json!({"title": format!("{resource} {index}"), "handle": format!("{resource}-{index}")})
        }
    };
    // Customers and products as the API's writes left them.
    if matches!(resource, "customers" | "products") {
        record = Value::Object(dataset.fields(index, || record));
    }
    let object = record.as_object_mut().unwrap();
    if resource != "inventory_levels" {
        object.insert("id".into(), json!(id(index)));
        object.insert("created_at".into(), json!(created));
    }
    object.insert("updated_at".into(), json!(updated));
    if let Some((field, parent_id)) = parent {
        object.insert(field.into(), json!(parent_id));
    }
    record
}

/// shopify in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "shopify",
    base_path: || BASE_PATH.to_owned(),
    serve: |state, call| {
        answer(
            state, call.req, call.rest, call.query, call.body, call.base, call.fault,
        )
    },
    rate_limited_body,
    error_body,
    record_id: |_, index| (index + 1).to_string(),
    newest_first: false,
    listed: |_, _| true,
};
