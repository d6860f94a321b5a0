//! Zendesk Support API v2 and the Help Center API, as documented at
//! https://developer.zendesk.com/api-reference/ (ticketing: tickets, ticket comments, users, organizations,
//! groups, ticket fields, macros, views, triggers, automations, satisfaction ratings; help center:
//! articles), https://developer.zendesk.com/api-reference/introduction/pagination/,
//! https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/ and
//! https://developer.zendesk.com/api-reference/introduction/rate-limits/.
//!
//! What is emulated, and how the documentation was read:
//! - HTTP Basic `{email}/token:{api_token}` (the `/token` suffix is what says the password is an API token),
//!   or an OAuth `Bearer` token; otherwise 401 `{"error":"Couldn't authenticate you"}`.
//! - `GET /users/me.json`: the authenticated user (`{"user":{…}}`).
//! - Cursor pagination: `page[size]` 1–100 → `{"<resource>":[…],"meta":{"has_more":…,"after_cursor":…,
//!   "before_cursor":…},"links":{"next":…,"prev":…}}`, the next page at `page[after]=<after_cursor>`.
//!   `links.next` is sent on the last page too, as the docs' examples show: `has_more` is what says whether
//!   to follow it. A `page[size]` over 100 or a tampered cursor is a 400
//!   `{"error":"InvalidPaginationParameter","description":…}`. Without `page[size]` a list answers with
//!   offset pagination (`page`, `per_page`, `next_page`, `count`).
//! - Cursor-based incremental exports of tickets and users: `start_time` (Unix seconds; required without a
//!   `cursor`, and refused within the last minute) or `cursor`, `per_page` ≤ 1000, `exclude_deleted` →
//!   `{"<resource>":[…],"after_url":…,"after_cursor":…,"before_url":…,"before_cursor":…,"end_of_stream":…}`
//!   in order of change (tickets: `generated_timestamp`, users: `updated_at`), `after_url` present on the
//!   last page too.
//! - Per ticket: `/tickets/{id}/comments.json` (comment `i` belongs to ticket `i mod <tickets>`, and does not
//!   say so); an unknown ticket is a 404 `{"error":"RecordNotFound","description":"Not found"}`.
//! - Errors `{"error":…,"description":…}` (403: `{"error":{"title":…,"message":…}}`).
//! - Creating a ticket (Tickets API, "Create Ticket"): `POST /tickets.json` `{"ticket": {"subject",
//!   "comment": {"body"}, "priority", "type", "tags", "requester_id", "status", …}}` → 201 `{"ticket": {…}}`,
//!   the comment's body becoming the ticket's `description`, the status `new` unless one is given (`closed`
//!   cannot be set that way: a 422). No comment body is a 422 `{"error":"RecordInvalid","description":
//!   "Record validation errors","details":{"base":[{"description":"Description: cannot be blank",
//!   "error":"BlankValue"}]}}`; a body without `ticket` a 400 `{"error":"ParameterMissing","description":
//!   "Parameter ticket is required"}`. `DELETE /tickets/{id}.json` deletes (204).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{bearer, header, param, Dataset, PagingFault, Query, State};

/// Lists with cursor pagination: (path after `/api/v2/`, data set, the answer's key).
const LISTS: &[(&str, &str, &str)] = &[
    ("organizations.json", "organizations", "organizations"),
    ("groups.json", "groups", "groups"),
    ("ticket_fields.json", "ticket_fields", "ticket_fields"),
    ("macros.json", "macros", "macros"),
    ("views.json", "views", "views"),
    ("triggers.json", "triggers", "triggers"),
    ("automations.json", "automations", "automations"),
    (
        "satisfaction_ratings.json",
        "satisfaction_ratings",
        "satisfaction_ratings",
    ),
    (
        "help_center/articles.json",
        "help_center_articles",
        "articles",
    ),
    ("tickets.json", "tickets", "tickets"),
    ("users.json", "users", "users"),
];

/// Answers a request under `/zendesk` (`rest` is the path after it).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    base: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let Some(path) = rest.strip_prefix("/api/v2/") else {
        return not_found();
    };
    // Without credentials, "me" is the anonymous user (Users API, "Show Self": an unauthenticated request
    // gets `id: null`), not an error: a connection test must not take it for success.
    if path == "users/me.json" && header(req, "Authorization").is_none() {
        return HttpResponse::Ok().json(json!({"user": {"id": null, "url": null,
            "name": "Anonymous user", "email": "invalid@example.com", "role": "end-user",
            "active": true}}));
    }
    let email = match authenticate(req, state) {
        Some(email) => email,
        None => {
            return HttpResponse::Unauthorized().json(json!({"error": "Couldn't authenticate you"}))
        }
    };
    if path == "users/me.json" {
        return HttpResponse::Ok().json(json!({"user": {"id": 35436, "name": "Emulated Agent",
            "email": email, "role": "admin", "active": true}}));
    }
    if path == "tickets.json" && req.method() == actix_web::http::Method::POST {
        return create_ticket(state, body);
    }
    if let Some(id) = path
        .strip_prefix("tickets/")
        .and_then(|p| p.strip_suffix(".json"))
        .filter(|_| req.method() == actix_web::http::Method::DELETE)
    {
        let tickets = state.dataset("zendesk", "tickets");
        return match id
            .parse::<u64>()
            .ok()
            .and_then(|id| id.checked_sub(1))
            .filter(|i| tickets.exists(*i))
        {
            Some(index) => {
                tickets.hidden.insert(index);
                HttpResponse::NoContent().finish()
            }
            None => not_found(),
        };
    }
    if req.method() != actix_web::http::Method::GET {
        return not_found();
    }
    let api = format!("{base}/api/v2");
    if let Some((_, data_type, key)) = LISTS.iter().find(|(p, _, _)| *p == path) {
        let dataset = state.dataset("zendesk", data_type);
        return list(
            dataset,
            data_type,
            key,
            None,
            query,
            &format!("{api}/{path}"),
            fault,
        );
    }
    if let Some(resource) = path
        .strip_prefix("incremental/")
        .and_then(|p| p.strip_suffix("/cursor.json"))
        .filter(|r| ["tickets", "users"].contains(r))
    {
        let dataset = state.dataset("zendesk", resource);
        return export(dataset, resource, query, &format!("{api}/{path}"));
    }
    if let Some(ticket) = path
        .strip_prefix("tickets/")
        .and_then(|p| p.strip_suffix("/comments.json"))
    {
        let tickets = state.dataset("zendesk", "tickets");
        let count = tickets.count;
        let index = ticket.parse::<u64>().ok().and_then(|id| id.checked_sub(1));
        let Some(index) = index.filter(|i| *i < count && tickets.visible(*i)) else {
            return not_found();
        };
        let comments = state.dataset("zendesk", "ticket_comments");
        let parent = Parent { index, count };
        let url = format!("{api}/{path}");
        return list(
            comments,
            "ticket_comments",
            "comments",
            Some(parent),
            query,
            &url,
            fault,
        );
    }
    not_found()
}

/// The e-mail of accepted credentials: Basic `{email}/token:{token}`, or a Bearer token (an OAuth client's).
/// An API token given in a credential set works with that set's `email` only (an API token acts as the
/// agent whose e-mail goes with it).
fn authenticate(req: &HttpRequest, state: &State) -> Option<String> {
    let accepted = state.accepted.get("zendesk").cloned().unwrap_or_default();
    if let Some(token) = bearer(req) {
        return accepted
            .contains(token)
            .then(|| "oauth@example.test".to_owned());
    }
    let (user, token) = crate::request::basic(req)?;
    let email = user.strip_suffix("/token")?;
    let sets = state.sets_holding("zendesk", &token);
    let owner = sets.is_empty() || sets.iter().any(|set| set["email"].as_str() == Some(email));
    (!email.is_empty() && accepted.contains(&token) && owner).then(|| email.to_owned())
}

fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": "RecordNotFound", "description": "Not found"}))
}

fn invalid(error: &str, description: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": error, "description": description}))
}

/// The 429 body.
pub(crate) fn rate_limited_body() -> Value {
    json!({"error": "APIRateLimitExceeded",
        "description": "Number of allowed API requests per minute exceeded"})
}

/// The error body for a status a test asks for.
pub(crate) fn error_body(status: StatusCode) -> Value {
    match status {
        StatusCode::UNAUTHORIZED => json!({"error": "Couldn't authenticate you"}),
        StatusCode::FORBIDDEN => json!({"error": {"title": "Forbidden",
            "message": "You do not have access to this page. Please contact the account owner of this help desk for further help."}}),
        StatusCode::NOT_FOUND => json!({"error": "RecordNotFound", "description": "Not found"}),
        s if s.is_server_error() => json!({"error": "InternalError",
            "description": "Something went wrong. Please try again."}),
        s => json!({"error": s.canonical_reason().unwrap_or("Error"), "description": s.as_str()}),
    }
}

/// The ticket a comment belongs to.
struct Parent {
    index: u64,
    count: u64,
}

fn encode_cursor(index: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{index}"))
}

fn decode_cursor(text: &str) -> Option<u64> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("after:")?
        .parse()
        .ok()
}

/// A list in id order, by cursor (with `page[size]`) or by offset (without).
fn list(
    dataset: &Dataset,
    data_type: &str,
    key: &str,
    parent: Option<Parent>,
    query: &Query,
    url: &str,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let matches = |i: u64| {
        dataset.visible(i)
            && parent
                .as_ref()
                .is_none_or(|parent| i % parent.count == parent.index)
    };
    let Some(size) = param(query, "page[size]") else {
        return offset_list(dataset, data_type, key, matches, query, url);
    };
    let size = match size.parse::<u64>() {
        Ok(n) if (1..=100).contains(&n) => n,
        _ => {
            return invalid(
                "InvalidPaginationParameter",
                "page[size] must be a number between 1 and 100".into(),
            )
        }
    };
    let after = match param(query, "page[after]") {
        None => None,
        Some(cursor) => match decode_cursor(cursor) {
            Some(index) => Some(index),
            None => {
                return invalid(
                    "InvalidPaginationParameter",
                    "the page[after] cursor is invalid".into(),
                )
            }
        },
    };
    let after = after.filter(|_| fault != Some(PagingFault::IgnoresCursor));
    let start = after.map_or(0, |after| after + 1);
    let mut found = (start..dataset.count).filter(|i| matches(*i));
    let page: Vec<u64> = found.by_ref().take(size as usize).collect();
    let has_more = found.next().is_some();
    let records: Vec<Value> = page
        .iter()
        .map(|i| record(dataset, data_type, *i))
        .collect();
    let after_cursor = page.last().map(|last| encode_cursor(*last));
    let before_cursor = page
        .first()
        .map(|first| encode_cursor(first.saturating_sub(1)));
    let next = after_cursor
        .as_ref()
        .map(|c| format!("{url}?page%5Bafter%5D={c}&page%5Bsize%5D={size}"));
    let prev = before_cursor
        .as_ref()
        .map(|c| format!("{url}?page%5Bbefore%5D={c}&page%5Bsize%5D={size}"));
    HttpResponse::Ok().json(json!({
        key: records,
        "meta": {"has_more": has_more, "after_cursor": after_cursor, "before_cursor": before_cursor},
        "links": {"next": next, "prev": prev},
    }))
}

/// Offset pagination: `page` (1-based) and `per_page` (≤ 100, default 100).
fn offset_list(
    dataset: &Dataset,
    data_type: &str,
    key: &str,
    matches: impl Fn(u64) -> bool,
    query: &Query,
    url: &str,
) -> HttpResponse {
    let per_page = match param(query, "per_page").map(str::parse::<u64>) {
        None => 100,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => return invalid("InvalidPaginationParameter", "per_page is invalid".into()),
    };
    let page = match param(query, "page").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) if n >= 1 => n,
        _ => return invalid("InvalidPaginationParameter", "page is invalid".into()),
    };
    let all: Vec<u64> = (0..dataset.count).filter(|i| matches(*i)).collect();
    let records: Vec<Value> = all
        .iter()
        .skip(((page - 1) * per_page) as usize)
        .take(per_page as usize)
        .map(|i| record(dataset, data_type, *i))
        .collect();
    let next = (page * per_page < all.len() as u64)
        .then(|| format!("{url}?page={}&per_page={per_page}", page + 1));
    HttpResponse::Ok().json(
        json!({key: records, "next_page": next, "previous_page": null,
        "count": all.len()}),
    )
}

/// When a record last changed, in the export's terms: tickets by `generated_timestamp` (seconds), users by
/// `updated_at` (compared in seconds too).
fn changed_s(dataset: &Dataset, index: u64) -> i64 {
    dataset.updated_ms(index).div_euclid(1000)
}

/// A cursor-based incremental export: records changed at or after `start_time`, oldest change first (ties
/// by id), `per_page` at a time; the cursor is the last record's (change second, index).
fn export(dataset: &Dataset, resource: &str, query: &Query, url: &str) -> HttpResponse {
    let per_page = match param(query, "per_page").map(str::parse::<u64>) {
        None => 1000,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        _ => return invalid("InvalidValue", "per_page must be between 1 and 1000".into()),
    };
    // (change second, index) the export continues after; `None`: from `start_time`.
    let (from_s, after): (i64, Option<(i64, u64)>) =
        match (param(query, "cursor"), param(query, "start_time")) {
            (Some(cursor), _) => match decode_export_cursor(cursor) {
                Some(position) => (i64::MIN, Some(position)),
                None => return invalid("InvalidValue", "Invalid cursor".into()),
            },
            (None, Some(start)) => match start.parse::<i64>() {
                Ok(start) if start >= 0 => {
                    if start > Utc::now().timestamp() - 60 {
                        return invalid(
                            "InvalidValue",
                            "Too recent start_time. Use a start_time older than 1 minute".into(),
                        );
                    }
                    (start, None)
                }
                _ => {
                    return invalid(
                        "InvalidValue",
                        "start_time must be a Unix epoch time".into(),
                    )
                }
            },
            (None, None) => {
                return invalid("InvalidValue", "start_time or cursor is required".into())
            }
        };
    let mut changed: Vec<(i64, u64)> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .map(|i| (changed_s(dataset, i), i))
        .filter(|(s, _)| *s >= from_s)
        .filter(|position| after.is_none_or(|after| *position > after))
        .collect();
    changed.sort_unstable();
    let page: Vec<(i64, u64)> = changed.iter().take(per_page as usize).copied().collect();
    let end_of_stream = changed.len() <= per_page as usize;
    let records: Vec<Value> = page
        .iter()
        .map(|(_, i)| record(dataset, resource, *i))
        .collect();
    // The cursor after this page, or where the export stands when the page is empty.
    let last = page
        .last()
        .copied()
        .or(after)
        .unwrap_or((from_s.max(0), u64::MAX));
    let after_cursor = encode_export_cursor(last);
    let extra = match param(query, "per_page") {
        Some(per_page) => format!("&per_page={per_page}"),
        None => String::new(),
    };
    let before = page
        .first()
        .map(|(s, i)| encode_export_cursor((*s, i.wrapping_sub(1))));
    HttpResponse::Ok().json(json!({
        resource: records,
        "after_url": format!("{url}?cursor={after_cursor}{extra}"),
        "after_cursor": after_cursor,
        "before_url": before.as_ref().map(|c| format!("{url}?cursor={c}{extra}")),
        "before_cursor": before,
        "end_of_stream": end_of_stream,
    }))
}

fn encode_export_cursor((second, index): (i64, u64)) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{second}|{index}"))
}

fn decode_export_cursor(text: &str) -> Option<(i64, u64)> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (second, index) = text.split_once('|')?;
    Some((second.parse().ok()?, index.parse().ok()?))
}

/// A new ticket (see the module).
fn create_ticket(state: &mut State, body: &[u8]) -> HttpResponse {
    let mut ticket = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(mut body)) => match body.remove("ticket") {
            Some(Value::Object(ticket)) => ticket,
            _ => {
                return HttpResponse::BadRequest().json(json!({"error": "ParameterMissing",
                    "description": "Parameter ticket is required"}))
            }
        },
        _ => {
            return HttpResponse::BadRequest().json(json!({"error": "InvalidJSON",
                "description": "The request body is not valid JSON"}))
        }
    };
    let invalid = |field: &str, description: &str, error: &str| {
        HttpResponse::UnprocessableEntity().json(json!({"error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field: [{"description": description, "error": error}]}}))
    };
    let comment = ticket
        .remove("comment")
        .and_then(|c| c.get("body").and_then(Value::as_str).map(str::to_owned))
        .filter(|body| !body.trim().is_empty());
    let Some(description) = comment else {
        return invalid("base", "Description: cannot be blank", "BlankValue");
    };
    let status = match ticket.remove("status") {
        None | Some(Value::Null) => "new".to_owned(),
        Some(Value::String(status)) if status == "closed" => {
            return invalid(
                "status",
                "Status: closed is not valid for a new ticket",
                "InvalidValue",
            )
        }
        Some(Value::String(status)) if TICKET_STATUSES.contains(&status.as_str()) => status,
        Some(_) => return invalid("status", "Status: is not valid", "InvalidValue"),
    };
    let mut fields = serde_json::Map::new();
    for field in ["subject", "priority", "type", "tags", "requester_id"] {
        if let Some(value) = ticket.remove(field) {
            fields.insert(field.to_owned(), value);
        }
    }
    fields.insert("description".into(), json!(description));
    fields.insert("status".into(), json!(status));
    if !fields.contains_key("tags") {
        fields.insert("tags".into(), json!([]));
    }
    let index = state.create_record("zendesk", "tickets", fields);
    let ticket = record(state.dataset("zendesk", "tickets"), "tickets", index);
    HttpResponse::Created().json(json!({ "ticket": ticket }))
}

const TICKET_STATUSES: [&str; 5] = ["new", "open", "pending", "solved", "closed"];

fn record(dataset: &Dataset, data_type: &str, index: u64) -> Value {
    let id = index + 1;
    let created = iso_s(dataset.created_ms(index));
    let updated = iso_s(dataset.updated_ms(index));
    match data_type {
        "tickets" => {
            let mut ticket = json!({"id": id});
            let fields = dataset.fields(index, || {
                json!({"subject": format!("Ticket {index}"), "description": "Emulated ticket",
                    "status": TICKET_STATUSES[index as usize % 5], "priority": "normal",
                    "requester_id": 1000 + index % 50, "tags": []})
            });
            if let Some(ticket) = ticket.as_object_mut() {
                ticket.extend(fields);
                ticket.insert("created_at".into(), json!(created));
                ticket.insert("updated_at".into(), json!(updated));
                ticket.insert(
                    "generated_timestamp".into(),
                    json!(changed_s(dataset, index)),
                );
            }
            ticket
        }
        "ticket_comments" => json!({"id": id, "type": "Comment", "author_id": 1000 + index % 50,
            "body": format!("Comment {index}"), "html_body": format!("<p>Comment {index}</p>"),
            "plain_body": format!("Comment {index}"), "public": index % 4 != 3, "attachments": [],
            "created_at": created}),
        "users" => json!({"id": id, "name": format!("User {index}"),
            "email": format!("user{index}@example.test"), "role": "end-user", "active": true,
            "created_at": created, "updated_at": updated}),
        "help_center_articles" => json!({"id": id, "title": format!("Article {index}"),
            "body": "<p>Emulated</p>", "locale": "en-us", "section_id": 360000000 + index % 5,
            "draft": false, "created_at": created, "updated_at": updated}),
        "satisfaction_ratings" => json!({"id": id, "score": "good", "ticket_id": index + 1,
            "created_at": created, "updated_at": updated}),
        _ => {
            json!({"id": id, "title": format!("{data_type} {index}"), "name": format!("{data_type} {index}"),
            "active": true, "created_at": created, "updated_at": updated})
        }
    }
}

/// Zendesk's times: ISO 8601 in UTC, whole seconds.
fn iso_s(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp(ms.div_euclid(1000), 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// zendesk in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "zendesk",
    base_path: || "/zendesk/api/v2".to_owned(),
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
