//! Mailchimp Marketing API 3.0, as its reference describes it (https://mailchimp.com/developer/marketing/api/,
//! with https://mailchimp.com/developer/marketing/docs/fundamentals/,
//! https://mailchimp.com/developer/marketing/docs/methods-parameters/ and
//! https://mailchimp.com/developer/marketing/docs/errors/). Served under `/mailchimp/3.0`.
//!
//! - Authentication: HTTP Basic, any user name, the API key as password. No key: 401 "API Key Missing";
//!   a key not accepted: 401 "API Key Invalid". The API root (`GET /`) names the account, `GET /ping` says
//!   the key works.
//! - Collections: `GET /lists`, `/campaigns`, `/reports`, `/templates`, `/automations`, `/landing-pages`,
//!   `/ecommerce/stores`, and per audience `GET /lists/{list_id}/members`, `/segments`, `/merge-fields`,
//!   `/interest-categories` (an unknown or deleted audience: 404 "Resource Not Found"). `count` defaults to
//!   10 and may not exceed 1000 (a 400 "Invalid Resource" beyond, as the reference gives it as the
//!   maximum), `offset` defaults to 0; unknown parameters are ignored, as are `fields`/`exclude_fields`.
//!   The answer: the records under the collection's name, `total_items`, `_links` (members: also
//!   `list_id`). Records come in creation order.
//! - Members filter on `since_last_changed` / `before_last_changed` ("changed after / before the set
//!   timeframe": strictly, at the second, since `last_changed` is written to the second) and `status`.
//!   Member ids are the MD5-like hash of the lower-case e-mail address, so the same member has the same id in
//!   every audience it belongs to.
//! - Errors: RFC 7807 problem details as `application/problem+json`: `{"type", "title", "status",
//!   "detail", "instance"}`. A 429 says "You have exceeded the limit of 10 simultaneous connections."
//!
//! Data sets: `audiences`, `campaigns`, `campaign_reports`, `templates`, `automations`, `landing_pages`,
//! `ecommerce_stores`; the per-audience ones are named `<data type>/<list_id>`, e.g.
//! `audience_members/a1b2c3d4e5` (the list id as [`crate::PlatformApi::id_of`] gives it for `audiences`).

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{param, Dataset, PagingFault, Query, State};

/// Where an error body's `type` points.
const ERROR_DOCS: &str = "https://mailchimp.com/developer/marketing/docs/errors/";

/// The collections at the root: (path segment, data set, records field).
const ROOT_COLLECTIONS: &[(&str, &str, &str)] = &[
    ("lists", "audiences", "lists"),
    ("campaigns", "campaigns", "campaigns"),
    ("reports", "campaign_reports", "reports"),
    ("templates", "templates", "templates"),
    ("automations", "automations", "automations"),
    ("landing-pages", "landing_pages", "landing_pages"),
];

/// The collections of one audience: (path segment, data set prefix, records field).
const AUDIENCE_COLLECTIONS: &[(&str, &str, &str)] = &[
    ("members", "audience_members", "members"),
    ("segments", "segments", "segments"),
    ("merge-fields", "merge_fields", "merge_fields"),
    ("interest-categories", "interest_categories", "categories"),
];

/// An RFC 7807 problem, as Mailchimp answers every error.
pub(crate) fn problem(status: StatusCode, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/problem+json; charset=utf-8")
        .body(problem_body(status, title, detail).to_string())
}

fn problem_body(status: StatusCode, title: &str, detail: &str) -> Value {
    json!({"type": ERROR_DOCS, "title": title, "status": status.as_u16(), "detail": detail,
           "instance": "2a7f5c1e-9b3d-4e8a-b6f0-0c4d2e1a9f37"})
}

/// The error body of a status injected by the fault controls (`fail_next`, `rate_limit_next`).
pub(crate) fn error_body(status: StatusCode) -> Value {
    match status.as_u16() {
        429 => problem_body(
            status,
            "Too Many Requests",
            "You have exceeded the limit of 10 simultaneous connections.",
        ),
        401 => problem_body(
            status,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        ),
        404 => problem_body(
            status,
            "Resource Not Found",
            "The requested resource could not be found.",
        ),
        s if s >= 500 => problem_body(
            status,
            "Internal Server Error",
            "An unexpected internal error has occurred. Please contact Support for more information.",
        ),
        _ => problem_body(
            status,
            status.canonical_reason().unwrap_or("Error"),
            "The request could not be processed.",
        ),
    }
}

/// The id of record `index` of a data set (`audience_members/<list_id>` and the like included).
pub(crate) fn record_id(data_type: &str, index: u64) -> String {
    let kind = data_type.split('/').next().unwrap_or(data_type);
    match kind {
        "audiences" => format!("{:x}", 0x00a1_b2c3_d4e5_u64 + index),
        "interest_categories" => format!("{:x}", 0x001c_3b5a_7900_u64 + index),
        "campaigns" | "campaign_reports" => format!("{:x}", 0x00c0_ffee_0000_u64 + index),
        "automations" => format!("{:x}", 0x00a0_7000_0000_u64 + index),
        "landing_pages" => format!("{:x}", 0x001a_4d00_0000_u64 + index),
        "ecommerce_stores" => format!("store_{}", index + 1),
        "audience_members" => member_id(&email(index)),
        // Segments, templates and merge fields are numbered.
        _ => (index + 1).to_string(),
    }
}

fn email(index: u64) -> String {
    format!("member{index}@example.test")
}

/// A stand-in for the MD5 of the lower-case address Mailchimp uses: 32 hex digits, the same for one
/// address wherever it is.
fn member_id(email: &str) -> String {
    let mut high: u64 = 0xcbf2_9ce4_8422_2325;
    let mut low: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in email.to_ascii_lowercase().bytes() {
        high = (high ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        low = (low ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(17);
    }
    format!("{high:016x}{low:016x}")
}

/// The password of an HTTP Basic `Authorization` header (RFC 7617), the API key.
fn basic_password(req: &HttpRequest) -> Option<String> {
    crate::request::basic(req).map(|(_, password)| password)
}

/// Mailchimp's time format: to the second, with an explicit `+00:00`.
fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%S+00:00")
        .to_string()
}

/// Answers a request under `/mailchimp/3.0` (`rest` is the path after `/mailchimp`).
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    if let Err(denied) = authenticate(req, state) {
        return denied;
    }
    let Some(path) = rest.strip_prefix("/3.0") else {
        return not_found();
    };
    if req.method() != Method::GET {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "The requested method and resource are not compatible. See the Allow header for this resource's available methods.",
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        [""] => HttpResponse::Ok().json(json!({
            "account_id": "8d3a3db4d97663a9074efcc16", "login_id": "1234567",
            "account_name": "Emulated Newsletters", "email": "owner@emulated.test",
            "role": "owner", "pricing_plan_type": "monthly", "total_subscribers": 0,
            "_links": []})),
        ["ping"] => HttpResponse::Ok().json(json!({"health_status": "Everything's Chimpy!"})),
        ["ecommerce", "stores"] => collection(
            state,
            "ecommerce_stores",
            "stores",
            None,
            None,
            query,
            fault,
        ),
        [segment] => match ROOT_COLLECTIONS.iter().find(|(s, _, _)| s == segment) {
            Some((_, data_type, field)) => {
                collection(state, data_type, field, None, None, query, fault)
            }
            None => not_found(),
        },
        ["lists", list_id, segment] => {
            let Some((_, prefix, field)) =
                AUDIENCE_COLLECTIONS.iter().find(|(s, _, _)| s == segment)
            else {
                return not_found();
            };
            let audiences = state.dataset("mailchimp", "audiences");
            let exists = (0..audiences.count)
                .any(|i| audiences.visible(i) && record_id("audiences", i) == *list_id);
            if !exists {
                return not_found();
            }
            // An audience's own data set (`audience_members/<list_id>`, what tests seed), or else one seeded
            // for every audience at once (`audience_members`, as demo mode seeds every data type): audience
            // `k` then holds its records `i` with `i mod <audiences> = k`, as Shopify's children are shared.
            let own = format!("{prefix}/{list_id}");
            let shared = !state
                .datasets
                .contains_key(&("mailchimp".to_owned(), own.clone()))
                && state
                    .datasets
                    .contains_key(&("mailchimp".to_owned(), (*prefix).to_owned()));
            if shared {
                let audiences = state.dataset("mailchimp", "audiences").count;
                let index = (0..audiences)
                    .find(|i| record_id("audiences", *i) == *list_id)
                    .unwrap_or_default();
                let share = Some((index, audiences.max(1)));
                collection(state, prefix, field, Some(list_id), share, query, fault)
            } else {
                collection(state, &own, field, Some(list_id), None, query, fault)
            }
        }
        _ => not_found(),
    }
}

fn not_found() -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "Resource Not Found",
        "The requested resource could not be found.",
    )
}

fn invalid(detail: &str) -> HttpResponse {
    problem(
        StatusCode::BAD_REQUEST,
        "Invalid Resource",
        &format!("The resource submitted could not be validated. {detail}"),
    )
}

fn authenticate(req: &HttpRequest, state: &State) -> Result<(), HttpResponse> {
    let key = basic_password(req);
    match key.filter(|key| !key.is_empty()) {
        None => Err(problem(
            StatusCode::UNAUTHORIZED,
            "API Key Missing",
            "Your request did not include an API key.",
        )),
        Some(key)
            if state
                .accepted
                .get("mailchimp")
                .is_some_and(|keys| keys.contains(&key)) =>
        {
            Ok(())
        }
        Some(_) => Err(problem(
            StatusCode::UNAUTHORIZED,
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        )),
    }
}

/// One page of a collection by `count` and `offset`, with `total_items`.
fn collection(
    state: &mut State,
    data_type: &str,
    field: &str,
    list_id: Option<&str>,
    // `(k, n)`: only the records `i` with `i mod n = k` (one audience's share of a shared data set).
    share: Option<(u64, u64)>,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let count = match param(query, "count").map(str::parse::<u64>) {
        None => 10,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => return invalid("count: Must be between 1 and 1000."),
    };
    let offset = match param(query, "offset").map(str::parse::<u64>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return invalid("offset: Must be a number."),
    };
    let offset = if fault == Some(PagingFault::IgnoresCursor) {
        0
    } else {
        offset
    };
    let members = data_type.split('/').next() == Some("audience_members");
    let bound = |name: &str| -> Result<Option<i64>, HttpResponse> {
        match param(query, name).filter(|_| members) {
            None => Ok(None),
            Some(text) => DateTime::parse_from_rfc3339(text)
                .ok()
                .map(|t| Some(t.timestamp_millis()))
                .ok_or_else(|| invalid(&format!("{name}: Must be an ISO 8601 date."))),
        }
    };
    let (since, before) = match (bound("since_last_changed"), bound("before_last_changed")) {
        (Ok(s), Ok(b)) => (s, b),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let status = param(query, "status").filter(|_| members);
    let dataset = state.dataset("mailchimp", data_type);
    // `last_changed` is written to the second; the filters compare what is written.
    let changed = |i: u64| dataset.updated_ms(i).div_euclid(1000) * 1000;
    let matching: Vec<u64> = (0..dataset.count)
        .filter(|i| dataset.visible(*i))
        .filter(|i| share.is_none_or(|(k, n)| i % n == k))
        .filter(|i| since.is_none_or(|s| changed(*i) > s))
        .filter(|i| before.is_none_or(|b| changed(*i) < b))
        .filter(|i| status.is_none_or(|s| s == member_status(*i)))
        .collect();
    let records: Vec<Value> = matching
        .iter()
        .skip(offset as usize)
        .take(count as usize)
        .map(|i| record(dataset, data_type, list_id, *i))
        .collect();
    let mut body = json!({field: records, "total_items": matching.len(), "_links": []});
    if let Some(list_id) = list_id {
        body["list_id"] = json!(list_id);
    }
    HttpResponse::Ok().json(body)
}

fn member_status(index: u64) -> &'static str {
    match index % 20 {
        7 => "unsubscribed",
        13 => "cleaned",
        _ => "subscribed",
    }
}

fn record(dataset: &Dataset, data_type: &str, list_id: Option<&str>, index: u64) -> Value {
    let id = record_id(data_type, index);
    let created = time(dataset.created_ms(index));
    let changed = time(dataset.updated_ms(index));
    let links =
        json!([{"rel": "self", "href": "https://us21.api.mailchimp.com/3.0/", "method": "GET"}]);
    let kind = data_type.split('/').next().unwrap_or(data_type);
    let mut record = match kind {
        "audiences" => json!({"id": id, "web_id": 100 + index, "name": format!("Audience {index}"),
            "contact": {"company": "Emulated", "address1": "1 Main St", "city": "Springfield",
                        "state": "IL", "zip": "12345", "country": "US"},
            "permission_reminder": "You signed up on our website.", "date_created": created,
            "list_rating": 3, "email_type_option": false, "visibility": "pub",
            "stats": {"member_count": 0, "unsubscribe_count": 0, "last_sub_date": changed}}),
        "audience_members" => {
            let email = email(index);
            json!({"id": id, "email_address": email, "unique_email_id": format!("u{:09x}", index),
                "contact_id": format!("c{id}"), "full_name": format!("Member {index}"),
                "web_id": 5000 + index, "email_type": "html", "status": member_status(index),
                "merge_fields": {"FNAME": "Member", "LNAME": index.to_string()},
                "stats": {"avg_open_rate": 0.5, "avg_click_rate": 0.1}, "ip_signup": "",
                "timestamp_signup": created, "ip_opt": "198.51.100.7", "timestamp_opt": created,
                "member_rating": 2, "last_changed": changed, "language": "en", "vip": false,
                "email_client": "", "location": {"latitude": 0, "longitude": 0}, "source": "API - Generic",
                "tags_count": 0, "tags": []})
        }
        "segments" => {
            json!({"id": index + 1, "name": format!("Segment {index}"), "member_count": 0,
            "type": if index.is_multiple_of(2) { "saved" } else { "static" }, "created_at": created,
            "updated_at": changed})
        }
        "merge_fields" => json!({"merge_id": index + 1, "tag": format!("MMERGE{}", index + 1),
            "name": format!("Field {index}"), "type": "text", "required": false, "default_value": "",
            "public": true, "display_order": index + 1, "options": {"size": 25}}),
        "interest_categories" => json!({"id": id, "title": format!("Interests {index}"),
            "display_order": index, "type": "checkboxes"}),
        "campaigns" => json!({"id": id, "web_id": 9000 + index, "type": "regular",
            "create_time": created, "status": "sent", "emails_sent": 120, "send_time": changed,
            "content_type": "template", "recipients": {"list_id": "a1b2c3d4e5", "recipient_count": 120},
            "settings": {"subject_line": format!("Newsletter {index}"), "title": format!("Campaign {index}"),
                         "from_name": "Emulated", "reply_to": "news@emulated.test"},
            "tracking": {"opens": true, "html_clicks": true},
            "report_summary": {"opens": 60, "unique_opens": 50, "open_rate": 0.42, "clicks": 9}}),
        "campaign_reports" => json!({"id": id, "campaign_title": format!("Campaign {index}"),
            "type": "regular", "list_id": "a1b2c3d4e5", "emails_sent": 120, "send_time": created,
            "opens": {"opens_total": 60, "unique_opens": 50, "open_rate": 0.42},
            "clicks": {"clicks_total": 9, "unique_clicks": 7, "click_rate": 0.06},
            "bounces": {"hard_bounces": 1, "soft_bounces": 2}, "unsubscribed": 1}),
        "templates" => json!({"id": index + 1, "type": "user", "name": format!("Template {index}"),
            "drag_and_drop": true, "responsive": true, "active": true, "date_created": created,
            "date_edited": changed}),
        "automations" => json!({"id": id, "create_time": created, "start_time": changed,
            "status": "sending", "emails_sent": 42,
            "recipients": {"list_id": "a1b2c3d4e5"}, "settings": {"title": format!("Automation {index}")}}),
        "landing_pages" => json!({"id": id, "name": format!("Landing page {index}"),
            "title": format!("Welcome {index}"), "status": "published", "created_at": created,
            "updated_at": changed, "url": format!("https://mailchi.mp/emulated/{index}")}),
        "ecommerce_stores" => json!({"id": id, "list_id": "a1b2c3d4e5",
            "name": format!("Store {index}"), "platform": "Shopify", "domain": format!("store{index}.example.test"),
            "currency_code": "USD", "created_at": created, "updated_at": changed}),
        _ => json!({"id": id}),
    };
    if let Some(list_id) = list_id {
        record["list_id"] = json!(list_id);
    }
    record["_links"] = links;
    record
}

/// mailchimp in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "mailchimp",
    base_path: || "/mailchimp/3.0".to_owned(),
    serve: |state, call| answer(state, call.req, call.rest, call.query, call.fault),
    rate_limited_body: || error_body(StatusCode::TOO_MANY_REQUESTS),
    error_body,
    record_id,
    newest_first: false,
    listed: |_, _| true,
};
