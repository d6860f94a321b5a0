//! HighLevel (GoHighLevel) API v2 at `services.leadconnectorhq.com`, as documented at
//! https://highlevel.stoplight.io/docs/integrations/ from the OpenAPI documents of
//! https://github.com/GoHighLevel/highlevel-api-docs (`apps/contacts.json`, `opportunities.json`,
//! `calendars.json`, `conversations.json`, `users.json`, `locations.json`, `forms.json`, `surveys.json`,
//! `invoices.json`, `products.json`, `workflows.json`, `campaigns.json`; `common/common-schemas.json` for
//! the error bodies; `docs/oauth/Authorization.md` for the rate limits).
//!
//! What is emulated, and how the documentation was read:
//! - `Authorization: Bearer <token>` (a private integration token or an OAuth access token) and the
//!   mandatory `Version: 2021-07-28` header; a bad token is a 401 `{"statusCode":401,"message":"Invalid
//!   JWT"}`, no version a 400. Every endpoint names its sub-account (location); a missing one is a 422
//!   `{"statusCode":422,"message":["locationId should not be empty"],"error":"Unprocessable Entity"}`.
//! - `GET /locations/{locationId}` → `{"location":{…}}`.
//! - Contacts (`GET /contacts/?locationId=`) and opportunities (`GET /opportunities/search?location_id=`):
//!   `limit` ≤ 100 (default 20), oldest first, the next page after `startAfterId` + `startAfter` (the last
//!   record's id and creation time in epoch ms), both given in `meta` with `nextPageUrl` while a page comes
//!   back full (`null` after a short one). Opportunities take `status` (`open`, `won`, `lost`, `abandoned`,
//!   `all`); without it, all.
//! - Whole lists: pipelines, calendars, users, tags, custom fields (`model` = `contact` by default,
//!   `opportunity` or `all`), workflows, campaigns.
//! - Calendar events (`GET /calendars/events`): `locationId`, `startTime`, `endTime` (epoch ms) and one of
//!   `calendarId`, `userId`, `groupId`; events of calendar `i mod <calendars>`; an unknown calendar is a 404.
//! - Conversations (`GET /conversations/search`): `limit` ≤ 100 (default 20), sorted by `lastMessageDate`
//!   (`sort` `desc` by default, or `asc`), `startAfterDate` = "the sort value of the last document"; the
//!   answer `{"conversations":[…],"total":…}` hands no cursor back.
//! - Messages (`GET /conversations/{id}/messages`): newest first, `limit` (default 20, at most 100), the
//!   next page after `lastMessageId`; `{"lastMessageId":…,"nextPage":…,"messages":[…]}` as the schema
//!   `GetMessagesByConversationResponseDto` documents it; message `i` belongs to conversation
//!   `i mod <conversations>`, an unknown conversation is a 404.
//! - Forms and surveys: `skip`, `limit` ≤ 50 (default 10), `total`. Form submissions: `page` (from 1),
//!   `limit` ≤ 100, `meta.nextPage`, and by default only those since the same day of last month
//!   (`startAt`, `YYYY-MM-DD`). Invoices: `altId` + `altType=location`, `limit` and `offset` required,
//!   `{"invoices":[…],"total":…}`, ids in `_id`. Products: `limit`, `offset`,
//!   `{"products":[…],"total":[{"total":…}]}`, ids in `_id`.
//! - The burst limit's headers (`X-RateLimit-Max: 100`, `X-RateLimit-Remaining`,
//!   `X-RateLimit-Interval-Milliseconds: 10000`) from the requests of the last 10 seconds; not enforced (the
//!   documentation gives no `Retry-After` to emulate).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{Months, NaiveDate, Utc};
use serde_json::{json, Value};

use crate::{bearer, header, iso_ms, param, Dataset, PagingFault, Query, State};

/// The API version every request must name.
const VERSION: &str = "2021-07-28";

/// Answers a request under `/gohighlevel` (`rest` is the path after it).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let accepted = state
        .accepted
        .get("gohighlevel")
        .cloned()
        .unwrap_or_default();
    // The gateway reads the mandatory `Version` header before the token.
    if header(req, "Version") != Some(VERSION) {
        return HttpResponse::BadRequest().json(
            json!({"statusCode": 400, "message": "version header was not found or is not supported"}),
        );
    }
    let Some(token) = bearer(req).filter(|token| accepted.contains(*token)) else {
        return HttpResponse::Unauthorized()
            .json(json!({"statusCode": 401, "message": "Invalid JWT"}));
    };
    // A private integration token belongs to one sub-account (location): another location's data is
    // refused with 403 (Private Integrations guide). A token accepted alone is bound to no location.
    let sets = state.sets_holding("gohighlevel", token);
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let location = match segments[..] {
        ["locations", id, ..] => Some(id.to_owned()),
        _ => param(query, "locationId").map(str::to_owned),
    };
    if let Some(location) = location {
        if !sets.is_empty()
            && !sets
                .iter()
                .any(|set| set["locationId"].as_str() == Some(location.as_str()))
        {
            return HttpResponse::Forbidden().json(json!({"statusCode": 403,
                "message": "The token does not have access to this location."}));
        }
    }
    let recent = state
        .arrivals
        .get("gohighlevel")
        .map(|arrivals| {
            let now = std::time::Instant::now();
            arrivals
                .iter()
                .filter(|at| now.duration_since(**at) < std::time::Duration::from_secs(10))
                .count()
        })
        .unwrap_or(0);
    let mut response = route(state, rest, query, fault);
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-max", "100".to_owned()),
        (
            "x-ratelimit-remaining",
            100usize.saturating_sub(recent).to_string(),
        ),
        ("x-ratelimit-interval-milliseconds", "10000".to_owned()),
        ("x-ratelimit-limit-daily", "200000".to_owned()),
    ] {
        headers.insert(
            actix_web::http::header::HeaderName::from_static(name),
            actix_web::http::header::HeaderValue::from_str(&value).unwrap(),
        );
    }
    response
}

fn route(state: &mut State, rest: &str, query: &Query, fault: Option<PagingFault>) -> HttpResponse {
    let segments: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let location = |name: &str| param(query, name).filter(|l| !l.is_empty());
    let missing = |name: &str| unprocessable(&format!("{name} should not be empty"));
    match segments[..] {
        ["locations", id] => HttpResponse::Ok().json(json!({"location": {"id": id,
            "name": "Emulated Location", "companyId": "comp-emu-1", "timezone": "America/New_York",
            "email": "owner@emulated-location.test"}})),
        ["locations", id, "tags"] => whole(state, "tags", "tags", id, |_| true),
        ["locations", id, "customFields"] => {
            let model = param(query, "model").unwrap_or("contact");
            if !["contact", "opportunity", "all"].contains(&model) {
                return unprocessable("model must be one of contact, opportunity, all");
            }
            whole(state, "custom_fields", "customFields", id, |i| {
                model == "all" || field_model(i) == model
            })
        }
        ["contacts"] => match location("locationId") {
            Some(location) => keyset(state, "contacts", location, query, |_| true, fault),
            None => missing("locationId"),
        },
        ["opportunities", "search"] => {
            let Some(location) = location("location_id") else {
                return missing("location_id");
            };
            let status = param(query, "status").unwrap_or("all");
            if !["open", "won", "lost", "abandoned", "all"].contains(&status) {
                return unprocessable("status must be one of open, won, lost, abandoned, all");
            }
            keyset(
                state,
                "opportunities",
                location,
                query,
                |i| status == "all" || opportunity_status(i) == status,
                fault,
            )
        }
        ["opportunities", "pipelines"] => simple(state, query, "pipelines", "pipelines"),
        ["calendars"] => simple(state, query, "calendars", "calendars"),
        ["calendars", "events"] => events(state, query),
        ["conversations", "search"] => conversations(state, query, fault),
        ["conversations", id, "messages"] => messages(state, id, query, fault),
        ["users"] => simple(state, query, "users", "users"),
        ["workflows"] => simple(state, query, "workflows", "workflows"),
        ["campaigns"] => simple(state, query, "campaigns", "campaigns"),
        ["forms"] => skip_list(state, query, "forms", "forms"),
        ["surveys"] => skip_list(state, query, "surveys", "surveys"),
        ["forms", "submissions"] => submissions(state, query),
        ["invoices"] => invoices(state, query),
        ["products"] => products(state, query),
        _ => HttpResponse::NotFound().json(json!({"statusCode": 404,
            "message": format!("Cannot GET {rest}"), "error": "Not Found"})),
    }
}

fn unprocessable(message: &str) -> HttpResponse {
    HttpResponse::UnprocessableEntity()
        .json(json!({"statusCode": 422, "message": [message], "error": "Unprocessable Entity"}))
}

fn not_found(message: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"statusCode": 404, "message": message}))
}

/// The 429 body.
pub(crate) fn rate_limited_body() -> Value {
    json!({"statusCode": 429, "message": "Too many requests"})
}

/// The error body for a status a test asks for.
pub(crate) fn error_body(status: StatusCode) -> Value {
    let message = match status {
        StatusCode::UNAUTHORIZED => "Invalid JWT",
        StatusCode::FORBIDDEN => "The token is not authorized for this scope.",
        s => s.canonical_reason().unwrap_or("Error"),
    };
    json!({"statusCode": status.as_u16(), "message": message})
}

/// A record's id: 20 characters like HighLevel's, growing with the index.
fn id(data_type: &str, index: u64) -> String {
    let prefix: String = data_type
        .chars()
        .filter(char::is_ascii_alphabetic)
        .take(4)
        .collect();
    format!("{prefix:x<4}{index:016}")
}

/// The index behind an id of this data type.
fn index_of(data_type: &str, id: &str) -> Option<u64> {
    let index: u64 = id.get(4..)?.parse().ok()?;
    (self::id(data_type, index) == id).then_some(index)
}

fn limit(query: &Query, default: u64, max: u64) -> Result<u64, HttpResponse> {
    match param(query, "limit").map(str::parse::<u64>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        _ => Err(unprocessable(&format!(
            "limit must not be greater than {max}"
        ))),
    }
}

/// A whole list of a location's data set.
fn whole(
    state: &mut State,
    data_type: &str,
    key: &str,
    location: &str,
    keep: impl Fn(u64) -> bool,
) -> HttpResponse {
    let dataset = state.dataset("gohighlevel", data_type);
    let records: Vec<Value> = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && keep(*i))
        .map(|i| record(dataset, data_type, i, location))
        .collect();
    HttpResponse::Ok().json(json!({ key: records }))
}

/// A whole list named by `locationId` in the query.
fn simple(state: &mut State, query: &Query, data_type: &str, key: &str) -> HttpResponse {
    match param(query, "locationId").filter(|l| !l.is_empty()) {
        Some(location) => whole(state, data_type, key, location, |_| true),
        None => unprocessable("locationId should not be empty"),
    }
}

/// Custom fields alternate between contacts' and opportunities'.
fn field_model(index: u64) -> &'static str {
    if index.is_multiple_of(2) {
        "contact"
    } else {
        "opportunity"
    }
}

fn opportunity_status(index: u64) -> &'static str {
    ["open", "won", "lost", "abandoned"][index as usize % 4]
}

/// Contacts and opportunities: oldest first by (creation time, id), after `startAfter` + `startAfterId`.
fn keyset(
    state: &mut State,
    data_type: &str,
    location: &str,
    query: &Query,
    keep: impl Fn(u64) -> bool,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let limit = match limit(query, 20, 100) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let dataset = state.dataset("gohighlevel", data_type);
    let after = match (param(query, "startAfterId"), param(query, "startAfter")) {
        (None, None) => None,
        (Some(id), Some(at)) => match (index_of(data_type, id), at.parse::<i64>()) {
            (Some(index), Ok(at)) => Some((at, index)),
            _ => return unprocessable("startAfterId and startAfter must name a record"),
        },
        _ => return unprocessable("startAfterId and startAfter go together"),
    };
    let after = after.filter(|_| fault != Some(PagingFault::IgnoresCursor));
    let matching: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && keep(*i))
        .filter(|i| after.is_none_or(|after| (dataset.created_ms(*i), *i) > after))
        .collect();
    let page: Vec<u64> = matching.iter().take(limit as usize).copied().collect();
    let total = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && keep(*i))
        .count();
    let records: Vec<Value> = page
        .iter()
        .map(|i| record(dataset, data_type, *i, location))
        .collect();
    // A full page names where the next one starts, whether or not anything follows.
    let next = (page.len() as u64 == limit)
        .then(|| page.last().copied())
        .flatten()
        .map(|last| (id(data_type, last), dataset.created_ms(last)));
    let meta = match &next {
        Some((start_after_id, start_after)) => json!({"total": total,
            "nextPageUrl": format!("https://services.leadconnectorhq.com/{data_type}/?locationId={location}&startAfter={start_after}&startAfterId={start_after_id}"),
            "startAfterId": start_after_id, "startAfter": start_after,
            "currentPage": 1, "nextPage": 2, "prevPage": null}),
        None => {
            json!({"total": total, "nextPageUrl": null, "startAfterId": null, "startAfter": null,
            "currentPage": 1, "nextPage": null, "prevPage": null})
        }
    };
    HttpResponse::Ok().json(json!({ data_type: records, "meta": meta }))
}

fn events(state: &mut State, query: &Query) -> HttpResponse {
    let Some(location) = param(query, "locationId").filter(|l| !l.is_empty()) else {
        return unprocessable("locationId should not be empty");
    };
    let times = (
        param(query, "startTime").map(str::parse::<i64>),
        param(query, "endTime").map(str::parse::<i64>),
    );
    let (Some(Ok(start)), Some(Ok(end))) = times else {
        return unprocessable("startTime and endTime must be epoch milliseconds");
    };
    let Some(calendar) = param(query, "calendarId") else {
        return unprocessable("Either of calendarId, userId or groupId is required");
    };
    let calendars = state.dataset("gohighlevel", "calendars");
    let count = calendars.count;
    let Some(calendar) =
        index_of("calendars", calendar).filter(|i| *i < count && calendars.visible(*i))
    else {
        return not_found("Calendar not found");
    };
    let location = location.to_owned();
    let dataset = state.dataset("gohighlevel", "appointments");
    let records: Vec<Value> = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && i % count == calendar)
        .filter(|i| (start..=end).contains(&dataset.created_ms(*i)))
        .map(|i| {
            let mut event = record(dataset, "appointments", i, &location);
            event["calendarId"] = json!(id("calendars", calendar));
            event
        })
        .collect();
    HttpResponse::Ok().json(json!({ "events": records }))
}

fn conversations(state: &mut State, query: &Query, fault: Option<PagingFault>) -> HttpResponse {
    let Some(location) = param(query, "locationId").filter(|l| !l.is_empty()) else {
        return unprocessable("locationId should not be empty");
    };
    let location = location.to_owned();
    let limit = match limit(query, 20, 100) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let ascending = match param(query, "sort") {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => return unprocessable("sort must be one of asc, desc"),
    };
    if !matches!(param(query, "sortBy"), None | Some("last_message_date")) {
        return unprocessable("this emulation sorts by last_message_date only");
    }
    let after = match param(query, "startAfterDate").map(str::parse::<i64>) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(_)) => {
            return unprocessable("startAfterDate must be the sort value of a document")
        }
    };
    let after = after.filter(|_| fault != Some(PagingFault::IgnoresCursor));
    let dataset = state.dataset("gohighlevel", "conversations");
    let mut all: Vec<(i64, u64)> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .map(|i| (dataset.updated_ms(i), i))
        .collect();
    all.sort_unstable();
    if !ascending {
        all.reverse();
    }
    let total = all.len();
    let records: Vec<Value> = all
        .iter()
        .filter(|(at, _)| match after {
            None => true,
            Some(after) if ascending => *at > after,
            Some(after) => *at < after,
        })
        .take(limit as usize)
        .map(|(_, i)| record(dataset, "conversations", *i, &location))
        .collect();
    HttpResponse::Ok().json(json!({"conversations": records, "total": total}))
}

fn messages(
    state: &mut State,
    conversation: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let conversations = state.dataset("gohighlevel", "conversations");
    let count = conversations.count;
    let Some(conversation) =
        index_of("conversations", conversation).filter(|i| *i < count && conversations.visible(*i))
    else {
        return not_found("Conversation not found");
    };
    let limit = match limit(query, 20, 100) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let dataset = state.dataset("gohighlevel", "messages");
    // Newest first.
    let all: Vec<u64> = (0..dataset.count)
        .rev()
        .filter(|i| dataset.visible(*i) && i % count == conversation)
        .collect();
    let start = match param(query, "lastMessageId") {
        None => 0,
        Some(_) if fault == Some(PagingFault::IgnoresCursor) => 0,
        Some(last) => match index_of("messages", last)
            .and_then(|last| all.iter().position(|i| *i == last))
        {
            Some(position) => position + 1,
            None => return unprocessable("lastMessageId must name a message of the conversation"),
        },
    };
    let page: Vec<u64> = all
        .iter()
        .skip(start)
        .take(limit as usize)
        .copied()
        .collect();
    let next_page = start + page.len() < all.len();
    let records: Vec<Value> = page
        .iter()
        .map(|i| {
            let mut message = record(dataset, "messages", *i, "");
            message["conversationId"] = json!(id("conversations", conversation));
            message
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "lastMessageId": page.last().map(|i| id("messages", *i)),
        "nextPage": next_page,
        "messages": records,
    }))
}

/// Forms and surveys: `skip`/`limit` ≤ 50 with the `total`.
fn skip_list(state: &mut State, query: &Query, data_type: &str, key: &str) -> HttpResponse {
    let Some(location) = param(query, "locationId").filter(|l| !l.is_empty()) else {
        return unprocessable("locationId should not be empty");
    };
    let location = location.to_owned();
    let limit = match limit(query, 10, 50) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let Ok(skip) = param(query, "skip").map_or(Ok(0), str::parse::<u64>) else {
        return unprocessable("skip must be a number");
    };
    let dataset = state.dataset("gohighlevel", data_type);
    let visible: Vec<u64> = (0..dataset.count).filter(|i| dataset.visible(*i)).collect();
    let records: Vec<Value> = visible
        .iter()
        .skip(skip as usize)
        .take(limit as usize)
        .map(|i| record(dataset, data_type, *i, &location))
        .collect();
    HttpResponse::Ok().json(json!({ key: records, "total": visible.len() }))
}

fn submissions(state: &mut State, query: &Query) -> HttpResponse {
    let Some(location) = param(query, "locationId").filter(|l| !l.is_empty()) else {
        return unprocessable("locationId should not be empty");
    };
    let location = location.to_owned();
    let limit = match limit(query, 20, 100) {
        Ok(limit) => limit,
        Err(response) => return response,
    };
    let page = match param(query, "page").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        _ => return unprocessable("page must be a positive number"),
    };
    // "By default it will be same date of last month", of the real date (HighLevel's clock).
    let start = match param(query, "startAt") {
        Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(date) => date,
            Err(_) => return unprocessable("startAt must be YYYY-MM-DD"),
        },
        None => {
            let today = Utc::now().date_naive();
            today.checked_sub_months(Months::new(1)).unwrap_or(today)
        }
    };
    let start_ms = start
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let dataset = state.dataset("gohighlevel", "form_submissions");
    let matching: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && dataset.created_ms(*i) >= start_ms)
        .collect();
    let records: Vec<Value> = matching
        .iter()
        .skip(((page - 1) * limit) as usize)
        .take(limit as usize)
        .map(|i| record(dataset, "form_submissions", *i, &location))
        .collect();
    let more = page * limit < matching.len() as u64;
    HttpResponse::Ok().json(
        json!({"submissions": records, "meta": {"total": matching.len(),
        "currentPage": page, "nextPage": if more { json!(page + 1) } else { Value::Null },
        "prevPage": if page > 1 { json!(page - 1) } else { Value::Null }}}),
    )
}

/// `limit` and `offset` as numbers (`required` says which must be present).
fn limit_offset(query: &Query, required: bool) -> Result<(u64, u64), HttpResponse> {
    let number = |name: &str| match param(query, name).map(str::parse::<u64>) {
        None if required => Err(unprocessable(&format!("{name} should not be empty"))),
        None => Ok(None),
        Some(Ok(n)) => Ok(Some(n)),
        Some(Err(_)) => Err(unprocessable(&format!("{name} must be a number"))),
    };
    let limit = number("limit")?.unwrap_or(0);
    let offset = number("offset")?.unwrap_or(0);
    Ok((limit, offset))
}

fn invoices(state: &mut State, query: &Query) -> HttpResponse {
    let Some(location) = param(query, "altId").filter(|l| !l.is_empty()) else {
        return unprocessable("altId should not be empty");
    };
    if param(query, "altType") != Some("location") {
        return unprocessable("altType must be one of the following values: location");
    }
    let location = location.to_owned();
    let (limit, offset) = match limit_offset(query, true) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let dataset = state.dataset("gohighlevel", "invoices");
    let visible: Vec<u64> = (0..dataset.count).filter(|i| dataset.visible(*i)).collect();
    let records: Vec<Value> = visible
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|i| record(dataset, "invoices", *i, &location))
        .collect();
    HttpResponse::Ok().json(json!({"invoices": records, "total": visible.len()}))
}

fn products(state: &mut State, query: &Query) -> HttpResponse {
    let Some(location) = param(query, "locationId").filter(|l| !l.is_empty()) else {
        return unprocessable("locationId should not be empty");
    };
    let location = location.to_owned();
    let (limit, offset) = match limit_offset(query, false) {
        Ok(pair) => pair,
        Err(response) => return response,
    };
    let dataset = state.dataset("gohighlevel", "products");
    let visible: Vec<u64> = (0..dataset.count).filter(|i| dataset.visible(*i)).collect();
    // `limit` 0 (the default): no limit.
    let take = if limit == 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let records: Vec<Value> = visible
        .iter()
        .skip(offset as usize)
        .take(take)
        .map(|i| record(dataset, "products", *i, &location))
        .collect();
    HttpResponse::Ok().json(json!({"products": records, "total": [{"total": visible.len()}]}))
}

fn record(dataset: &Dataset, data_type: &str, index: u64, location: &str) -> Value {
    let id = self::id(data_type, index);
    let created_ms = dataset.created_ms(index);
    let updated_ms = dataset.updated_ms(index);
    let (created, updated) = (iso_ms(created_ms), iso_ms(updated_ms));
    match data_type {
        "contacts" => json!({"id": id, "locationId": location, "firstName": "Contact",
            "lastName": index.to_string(), "email": format!("contact{index}@example.test"),
            "phone": format!("+1555{:07}", index % 10_000_000), "tags": [], "customFields": [],
            "source": "emulation", "dateAdded": created, "dateUpdated": updated}),
        "opportunities" => {
            json!({"id": id, "locationId": location, "name": format!("Deal {index}"),
            "status": opportunity_status(index), "monetaryValue": 100 + index % 900,
            "pipelineId": "pipe0000000000000000", "contactId": self::id("contacts", index),
            "createdAt": created, "updatedAt": updated})
        }
        "conversations" => json!({"id": id, "locationId": location,
            "contactId": self::id("contacts", index), "lastMessageBody": format!("Message {index}"),
            "lastMessageType": "TYPE_SMS", "type": "TYPE_PHONE", "unreadCount": 0,
            "fullName": format!("Contact {index}"), "lastMessageDate": updated_ms,
            "dateAdded": created_ms, "dateUpdated": updated_ms}),
        "messages" => json!({"id": id, "type": 2, "messageType": "TYPE_SMS",
            "direction": if index.is_multiple_of(2) { "inbound" } else { "outbound" },
            "body": format!("Message {index}"), "status": "delivered", "contentType": "text/plain",
            "dateAdded": created}),
        "appointments" => {
            json!({"id": id, "locationId": location, "title": format!("Appointment {index}"),
            "appointmentStatus": "confirmed", "startTime": created,
            "endTime": iso_ms(created_ms + 30 * 60 * 1000), "dateAdded": created, "dateUpdated": updated})
        }
        "custom_fields" => {
            json!({"id": id, "locationId": location, "name": format!("Field {index}"),
            "fieldKey": format!("contact.field_{index}"), "dataType": "TEXT", "model": field_model(index)})
        }
        "form_submissions" => json!({"id": id, "contactId": self::id("contacts", index),
            "formId": "form0000000000000000", "name": format!("Contact {index}"),
            "email": format!("contact{index}@example.test"), "others": {}, "createdAt": created}),
        "invoices" | "products" => json!({"_id": id, "altId": location, "altType": "location",
            "locationId": location, "name": format!("{data_type} {index}"), "status": "draft",
            "createdAt": created, "updatedAt": updated}),
        _ => json!({"id": id, "locationId": location, "name": format!("{data_type} {index}"),
            "status": "published", "createdAt": created, "updatedAt": updated}),
    }
}

/// The id of record `index` of `data_type`, as the emulation shows it.
pub(crate) fn record_id(data_type: &str, index: u64) -> String {
    id(data_type, index)
}

/// gohighlevel in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "gohighlevel",
    base_path: || "/gohighlevel".to_owned(),
    serve: |state, call| answer(state, call.req, call.rest, call.query, call.fault),
    rate_limited_body,
    error_body,
    record_id,
    newest_first: false,
    listed: |_, _| true,
};
