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
//!   Member ids are the MD5 hash of the lower-case e-mail address, so the same member has the same id in
//!   every audience it belongs to.
//! - Errors: RFC 7807 problem details as `application/problem+json`: `{"type", "title", "status",
//!   "detail", "instance"}`. A 429 says "You have exceeded the limit of 10 simultaneous connections."
//! - Members' writes (https://mailchimp.com/developer/marketing/api/list-members/): a member is addressed
//!   as `/lists/{list_id}/members/{subscriber_hash}`, the MD5 of the lower-case e-mail address (the
//!   address itself is taken too). `GET` answers it. `PUT` "Add or update list member" upserts: a new
//!   address needs `email_address` (hashing to the path's hash) and `status_if_new`, and is added with
//!   `status` if given, else `status_if_new`; a member present is updated (`status_if_new` ignored); an
//!   archived member is added back the same way as a new one. `PATCH` "Update list member" updates a
//!   member present (404 otherwise). Both answer 200 with the member and take `email_type`, `status`,
//!   `merge_fields` (merged by key), `interests`, `language`, `vip`, `location`, `marketing_permissions`,
//!   `ip_signup`, `timestamp_signup`, `ip_opt`, `timestamp_opt`; other fields are ignored; a field of the
//!   wrong type (`null` included) is a 400 "Invalid Resource" with an `errors` array
//!   (`[{"field", "message"}]`); `skip_merge_validation` is taken and ignored (no merge field is required
//!   here). Subscribing (`subscribed`, `pending`) a member who is `unsubscribed` or `cleaned`, or was when
//!   archived, is a 400 "Member In Compliance State". `DELETE` archives a member (204): it leaves the
//!   listing, which shows it again only when asked `status=archived`. `POST
//!   …/members/{hash}/actions/delete-permanent` deletes it permanently (204): it is listed no more and an
//!   upsert of its address is a 400 "Forgotten Email Not Subscribed". An unknown audience is a 404, an
//!   unknown member (`PATCH`, `DELETE`, `delete-permanent`) a 404 "Resource Not Found"; other methods 405.
//! - Member tags (https://mailchimp.com/developer/marketing/api/list-member-tags/): a member lists its tags
//!   as `tags: [{id, name}]` with `tags_count`. `POST /lists/{list_id}/members/{hash}/tags` "Add or remove
//!   member tags" takes `{"tags": [{"name", "status": "active" | "inactive"}], "is_syncing"?}` (`tags`,
//!   `name` and `status` required, else a 400 "Invalid Resource" with `errors`): an active tag the member
//!   lacks is added, created in the audience first when it has no tag of that name (a tag is a static
//!   segment: it shows in `/lists/{list_id}/segments` with `type: static`, its id the segment's); an
//!   inactive tag is removed from the member (a name it does not have is ignored, never created); tags
//!   not named stay; 204 without a body. `GET …/members/{hash}/tags` "List member tags" answers `{tags:
//!   [{id, name, date_added}], total_items}`. Names match exactly. An unknown audience or member (or a
//!   forgotten one) is a 404; an archived member keeps its tags and takes tag changes, as `GET` answers
//!   it. `is_syncing` (automations) is taken and has nothing to hold back here.
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

/// A member's id, its subscriber hash: the hex MD5 of the lower-case e-mail address, the same for one
/// address wherever it is.
fn member_id(email: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(email.trim().to_lowercase().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
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
    body: &[u8],
    fault: Option<PagingFault>,
) -> HttpResponse {
    if let Err(denied) = authenticate(req, state) {
        return denied;
    }
    let Some(path) = rest.strip_prefix("/3.0") else {
        return not_found();
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (method, ["lists", list_id, "members", hash]) => {
            return member_call(state, &method, list_id, hash, body);
        }
        (Method::POST, ["lists", list_id, "members", hash, "actions", "delete-permanent"]) => {
            return forget(state, list_id, hash);
        }
        (Method::POST, ["lists", list_id, "members", hash, "tags"]) => {
            return tag_member(state, list_id, hash, body);
        }
        (Method::GET, ["lists", list_id, "members", hash, "tags"]) => {
            return member_tags(state, list_id, hash);
        }
        _ => {}
    }
    if req.method() != Method::GET {
        return problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "The requested method and resource are not compatible. See the Allow header for this resource's available methods.",
        );
    }
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
            let Some(set) = audience_set(state, prefix, list_id) else {
                return not_found();
            };
            collection(
                state,
                &set.name,
                field,
                Some(list_id),
                set.share,
                query,
                fault,
            )
        }
        _ => not_found(),
    }
}

/// Where one audience's records of a collection live.
struct AudienceSet {
    /// The data set's name.
    name: String,
    /// `(k, n)`: the audience holds the records `i` of a shared data set with `i mod n = k` (or written to
    /// it, [`LIST_FIELD`]); `None`: the data set is the audience's own.
    share: Option<(u64, u64)>,
}

/// The data set holding audience `list_id`'s records of `prefix` (`audience_members`): its own
/// (`audience_members/<list_id>`, what tests seed), or else one seeded for every audience at once
/// (`audience_members`, as demo mode seeds every data type), which audience `k` shares as Shopify's
/// children are shared. `None`: no such audience.
fn audience_set(state: &mut State, prefix: &str, list_id: &str) -> Option<AudienceSet> {
    let audiences = state.dataset("mailchimp", "audiences");
    let index = (0..audiences.count)
        .find(|i| audiences.visible(*i) && record_id("audiences", *i) == list_id)?;
    let count = audiences.count;
    let own = format!("{prefix}/{list_id}");
    let shared = !state
        .datasets
        .contains_key(&("mailchimp".to_owned(), own.clone()))
        && state
            .datasets
            .contains_key(&("mailchimp".to_owned(), prefix.to_owned()));
    Some(if shared {
        AudienceSet {
            name: prefix.to_owned(),
            share: Some((index, count.max(1))),
        }
    } else {
        AudienceSet {
            name: own,
            share: None,
        }
    })
}

/// Written on a member added to a shared data set: the audience it belongs to (internal, never shown).
const LIST_FIELD: &str = "_list_id";
/// Written on an archived member: its status before (internal).
const BEFORE_ARCHIVE: &str = "_status_before_archive";
/// Written on a member deleted permanently (internal).
const FORGOTTEN: &str = "_forgotten";
/// Written on a tagged member: its tags, `[{id, name, date_added}]` in the order added (internal; the
/// member shows `tags: [{id, name}]` and `tags_count`).
const TAGS: &str = "_tags";

/// Whether record `index` of a data set belongs to the audience of `share`.
fn in_share(dataset: &Dataset, index: u64, share: Option<(u64, u64)>, list_id: &str) -> bool {
    let Some((k, n)) = share else {
        return true;
    };
    match dataset
        .written
        .get(&index)
        .and_then(|w| w.fields.get(LIST_FIELD))
    {
        Some(owner) => owner.as_str() == Some(list_id),
        None => index % n == k,
    }
}

/// Member `index`'s fields as written over the generated ones (internal ones included).
fn member_fields(dataset: &Dataset, index: u64) -> serde_json::Map<String, Value> {
    dataset.fields(index, || {
        json!({"email_address": email(index), "status": member_status(index), "email_type": "html",
               "merge_fields": {"FNAME": "Member", "LNAME": index.to_string()}, "language": "en",
               "vip": false, "location": {"latitude": 0, "longitude": 0}, "ip_signup": "",
               "ip_opt": "198.51.100.7"})
    })
}

/// A member's status as the listing shows it.
fn status_of(dataset: &Dataset, index: u64) -> String {
    member_fields(dataset, index)
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("subscribed")
        .to_owned()
}

/// The statuses a write may set (`archived` is `DELETE`'s).
const STATUSES: &[&str] = &[
    "subscribed",
    "unsubscribed",
    "cleaned",
    "pending",
    "transactional",
];

/// What a member's write may hold, and the JSON type of each.
const MEMBER_FIELDS: &[(&str, &str)] = &[
    ("email_address", "string"),
    ("status_if_new", "string"),
    ("status", "string"),
    ("email_type", "string"),
    ("merge_fields", "object"),
    ("interests", "object"),
    ("language", "string"),
    ("vip", "boolean"),
    ("location", "object"),
    ("marketing_permissions", "array"),
    ("ip_signup", "string"),
    ("timestamp_signup", "string"),
    ("ip_opt", "string"),
    ("timestamp_opt", "string"),
];

/// A 400 "Invalid Resource" naming the fields that failed, as Mailchimp's `errors` array does.
fn invalid_fields(errors: Vec<(String, String)>) -> HttpResponse {
    let mut body = problem_body(
        StatusCode::BAD_REQUEST,
        "Invalid Resource",
        "The resource submitted could not be validated. For field-specific details, see the 'errors' array.",
    );
    body["errors"] = errors
        .into_iter()
        .map(|(field, message)| json!({"field": field, "message": message}))
        .collect();
    HttpResponse::BadRequest()
        .content_type("application/problem+json; charset=utf-8")
        .body(body.to_string())
}

/// The body of a member's write, its fields checked against [`MEMBER_FIELDS`] (others dropped).
fn member_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, HttpResponse> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "JSON Parse Exception",
            "We encountered an unspecified JSON parsing error.",
        ));
    };
    let mut errors = Vec::new();
    let mut kept = serde_json::Map::new();
    for (name, value) in fields {
        let Some((_, kind)) = MEMBER_FIELDS.iter().find(|(f, _)| *f == name) else {
            continue;
        };
        let found = match &value {
            Value::Null => "NULL",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if found != *kind {
            errors.push((
                name,
                format!("Schema describes {kind}, {found} found instead"),
            ));
            continue;
        }
        if (name == "status" || name == "status_if_new")
            && !STATUSES.contains(&value.as_str().unwrap_or_default())
        {
            errors.push((
                name,
                "Schema describes enum, but the value is not one of subscribed, unsubscribed, cleaned, pending, transactional".into(),
            ));
            continue;
        }
        if name == "email_type" && !["html", "text"].contains(&value.as_str().unwrap_or_default()) {
            errors.push((name, "Value must be one of: html, text".into()));
            continue;
        }
        kept.insert(name, value);
    }
    if errors.is_empty() {
        Ok(kept)
    } else {
        Err(invalid_fields(errors))
    }
}

/// The subscriber hash a path names: the hash itself, or an e-mail address hashed.
fn hash_of(segment: &str) -> String {
    let segment = segment.replace("%40", "@");
    if segment.contains('@') {
        member_id(&segment)
    } else {
        segment.to_ascii_lowercase()
    }
}

/// The member of the audience whose subscriber hash is `hash`, archived and forgotten ones included.
fn find_member(dataset: &Dataset, set: &AudienceSet, list_id: &str, hash: &str) -> Option<u64> {
    (0..dataset.count)
        .filter(|i| in_share(dataset, *i, set.share, list_id))
        .find(|i| {
            member_fields(dataset, *i)
                .get("email_address")
                .and_then(Value::as_str)
                .is_some_and(|email| member_id(email) == hash)
        })
}

/// Whether a write may take a member from `from` to `to`: nobody unsubscribed or cleaned is subscribed
/// again through the API.
fn compliance(from: &str, to: Option<&str>, email: &str) -> Result<(), HttpResponse> {
    let subscribing = matches!(to, Some("subscribed" | "pending"));
    if subscribing && matches!(from, "unsubscribed" | "cleaned") {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Member In Compliance State",
            &format!(
                "{email} is already a list member in compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed."
            ),
        ));
    }
    Ok(())
}

/// `GET`, `PUT`, `PATCH` or `DELETE` of `/lists/{list_id}/members/{hash}` (see the module).
fn member_call(
    state: &mut State,
    method: &Method,
    list_id: &str,
    hash: &str,
    body: &[u8],
) -> HttpResponse {
    let Some(set) = audience_set(state, "audience_members", list_id) else {
        return not_found();
    };
    let hash = hash_of(hash);
    let dataset = state.dataset("mailchimp", &set.name);
    let found = find_member(dataset, &set, list_id, &hash);
    let fields = found.map(|i| member_fields(dataset, i));
    let forgotten = fields.as_ref().is_some_and(|f| f.contains_key(FORGOTTEN));
    let archived = !forgotten
        && fields
            .as_ref()
            .is_some_and(|f| f.get("status").and_then(Value::as_str) == Some("archived"));
    let present = found.filter(|_| !forgotten && !archived);
    match *method {
        Method::GET => match found.filter(|_| !forgotten) {
            Some(index) => {
                HttpResponse::Ok().json(record(dataset, &set.name, Some(list_id), index))
            }
            None => not_found(),
        },
        Method::DELETE => {
            let Some(index) = present else {
                return not_found();
            };
            let before = status_of(dataset, index);
            dataset.hidden.insert(index);
            let mut archive = serde_json::Map::new();
            archive.insert("status".into(), json!("archived"));
            archive.insert(BEFORE_ARCHIVE.into(), json!(before));
            state.update_record("mailchimp", &set.name, index, archive);
            HttpResponse::NoContent().finish()
        }
        Method::PATCH => {
            let Some(index) = present else {
                return not_found();
            };
            let fields = match member_body(body) {
                Ok(fields) => fields,
                Err(refused) => return refused,
            };
            update_member(state, &set, list_id, index, fields, false)
        }
        Method::PUT => {
            let mut fields = match member_body(body) {
                Ok(fields) => fields,
                Err(refused) => return refused,
            };
            let email = fields
                .get("email_address")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if forgotten {
                let email = email.unwrap_or_default();
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Forgotten Email Not Subscribed",
                    &format!(
                        "{email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back on the list."
                    ),
                );
            }
            if let Some(index) = present {
                fields.remove("status_if_new");
                return update_member(state, &set, list_id, index, fields, false);
            }
            // New to the audience, or archived: added with `status`, else `status_if_new`.
            let mut errors = Vec::new();
            match &email {
                None => errors.push((
                    "email_address".to_owned(),
                    "This value should not be blank.".to_owned(),
                )),
                Some(email) if member_id(email) != hash => errors.push((
                    "email_address".to_owned(),
                    "The email address does not match the subscriber hash of the request's path."
                        .to_owned(),
                )),
                Some(_) => {}
            }
            let status_if_new = fields.remove("status_if_new");
            if !fields.contains_key("status") {
                match status_if_new {
                    Some(status) => {
                        fields.insert("status".into(), status);
                    }
                    None => errors.push((
                        "status_if_new".to_owned(),
                        "This value should not be blank.".to_owned(),
                    )),
                }
            }
            if !errors.is_empty() {
                return invalid_fields(errors);
            }
            match found {
                Some(index) => update_member(state, &set, list_id, index, fields, true),
                None => {
                    if set.share.is_some() {
                        fields.insert(LIST_FIELD.into(), json!(list_id));
                    }
                    let index = state.create_record("mailchimp", &set.name, fields);
                    let dataset = state.dataset("mailchimp", &set.name);
                    HttpResponse::Ok().json(record(dataset, &set.name, Some(list_id), index))
                }
            }
        }
        _ => problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "Method Not Allowed",
            "The requested method and resource are not compatible. See the Allow header for this resource's available methods.",
        ),
    }
}

/// Writes `fields` over member `index` (present, or archived and `unarchive`): `merge_fields` merged by key;
/// refused if it would subscribe someone in a compliance state. 200 with the member.
fn update_member(
    state: &mut State,
    set: &AudienceSet,
    list_id: &str,
    index: u64,
    mut fields: serde_json::Map<String, Value>,
    unarchive: bool,
) -> HttpResponse {
    let dataset = state.dataset("mailchimp", &set.name);
    let now = member_fields(dataset, index);
    let from = if unarchive {
        now.get(BEFORE_ARCHIVE).and_then(Value::as_str)
    } else {
        now.get("status").and_then(Value::as_str)
    }
    .unwrap_or("subscribed");
    let email = now
        .get("email_address")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Err(refused) = compliance(from, fields.get("status").and_then(Value::as_str), email) {
        return refused;
    }
    if let (Some(Value::Object(old)), Some(Value::Object(new))) =
        (now.get("merge_fields"), fields.get("merge_fields"))
    {
        let mut merged = old.clone();
        merged.extend(new.clone());
        fields.insert("merge_fields".into(), Value::Object(merged));
    }
    if unarchive {
        dataset.hidden.remove(&index);
        fields.insert(BEFORE_ARCHIVE.into(), Value::Null);
    }
    state.update_record("mailchimp", &set.name, index, fields);
    let dataset = state.dataset("mailchimp", &set.name);
    HttpResponse::Ok().json(record(dataset, &set.name, Some(list_id), index))
}

/// The member of `/lists/{list_id}/members/{hash}/…` that the tags endpoints act on: present or archived
/// (as `GET` of the member answers it), not forgotten. `Err`: 404 for an unknown audience or member.
fn tagged_member(
    state: &mut State,
    list_id: &str,
    hash: &str,
) -> Result<(AudienceSet, u64), HttpResponse> {
    let set = audience_set(state, "audience_members", list_id).ok_or_else(not_found)?;
    let hash = hash_of(hash);
    let dataset = state.dataset("mailchimp", &set.name);
    let index = find_member(dataset, &set, list_id, &hash)
        .filter(|i| !member_fields(dataset, *i).contains_key(FORGOTTEN))
        .ok_or_else(not_found)?;
    Ok((set, index))
}

/// A member's tags as written (`[{id, name, date_added}]`).
fn tags_of(dataset: &Dataset, index: u64) -> Vec<Value> {
    match member_fields(dataset, index).get(TAGS) {
        Some(Value::Array(tags)) => tags.clone(),
        _ => Vec::new(),
    }
}

/// The body of "Add or remove member tags": `tags` (required) an array of `{name, status}`, both required,
/// `status` `active` or `inactive`; `is_syncing` an optional boolean. The tags as `(name, active)`.
fn tags_body(body: &[u8]) -> Result<Vec<(String, bool)>, HttpResponse> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "JSON Parse Exception",
            "We encountered an unspecified JSON parsing error.",
        ));
    };
    let mut errors = Vec::new();
    if fields.get("is_syncing").is_some_and(|v| !v.is_boolean()) {
        errors.push((
            "is_syncing".to_owned(),
            "Schema describes boolean, another type found instead".to_owned(),
        ));
    }
    let mut tags = Vec::new();
    match fields.get("tags") {
        Some(Value::Array(elements)) => {
            for (at, element) in elements.iter().enumerate() {
                let name = element.get("name").and_then(Value::as_str);
                let status = element.get("status").and_then(Value::as_str);
                match (name.filter(|n| !n.trim().is_empty()), status) {
                    (Some(name), Some("active")) => tags.push((name.to_owned(), true)),
                    (Some(name), Some("inactive")) => tags.push((name.to_owned(), false)),
                    (None, _) => errors.push((
                        format!("tags.{at}.name"),
                        "This value should not be blank.".to_owned(),
                    )),
                    (Some(_), _) => errors.push((
                        format!("tags.{at}.status"),
                        "Schema describes enum, but the value is not one of active, inactive"
                            .to_owned(),
                    )),
                }
            }
        }
        Some(_) => errors.push((
            "tags".to_owned(),
            "Schema describes array, another type found instead".to_owned(),
        )),
        None => errors.push((
            "tags".to_owned(),
            "This value should not be blank.".to_owned(),
        )),
    }
    if errors.is_empty() {
        Ok(tags)
    } else {
        Err(invalid_fields(errors))
    }
}

/// A segment's fields as written over the generated ones (internal ones included).
fn segment_fields(dataset: &Dataset, index: u64) -> serde_json::Map<String, Value> {
    dataset.fields(index, || {
        json!({"name": format!("Segment {index}"),
               "type": if index.is_multiple_of(2) { "saved" } else { "static" }})
    })
}

/// The id of audience `list_id`'s tag `name`, created as a static segment of the audience when it has none
/// (a tag is a static segment in Mailchimp: its id is the segment's).
fn tag_id(state: &mut State, list_id: &str, name: &str) -> u64 {
    let set = audience_set(state, "segments", list_id).expect("the member's audience exists");
    let dataset = state.dataset("mailchimp", &set.name);
    let existing = (0..dataset.count)
        .filter(|i| dataset.visible(*i) && in_share(dataset, *i, set.share, list_id))
        .find(|i| {
            let fields = segment_fields(dataset, *i);
            fields.get("type").and_then(Value::as_str) == Some("static")
                && fields.get("name").and_then(Value::as_str) == Some(name)
        });
    let index = existing.unwrap_or_else(|| {
        let mut fields = serde_json::Map::new();
        fields.insert("name".into(), json!(name));
        fields.insert("type".into(), json!("static"));
        if set.share.is_some() {
            fields.insert(LIST_FIELD.into(), json!(list_id));
        }
        state.create_record("mailchimp", &set.name, fields)
    });
    index + 1
}

/// `POST /lists/{list_id}/members/{hash}/tags` "Add or remove member tags": each `active` tag the member
/// lacks is added (created in the audience first if it has no tag of that name), each `inactive` one it has
/// is removed, others are left; 204 without a body.
fn tag_member(state: &mut State, list_id: &str, hash: &str, body: &[u8]) -> HttpResponse {
    let (set, index) = match tagged_member(state, list_id, hash) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let asked = match tags_body(body) {
        Ok(asked) => asked,
        Err(refused) => return refused,
    };
    let mut tags = tags_of(state.dataset("mailchimp", &set.name), index);
    let has = |tags: &[Value], name: &str| {
        tags.iter()
            .position(|t| t.get("name").and_then(Value::as_str) == Some(name))
    };
    for (name, active) in asked {
        match (has(&tags, &name), active) {
            (None, true) => {
                let id = tag_id(state, list_id, &name);
                tags.push(json!({"id": id, "name": name, "date_added": time(state.clock_ms + 1)}));
            }
            (Some(at), false) => {
                tags.remove(at);
            }
            _ => {}
        }
    }
    let mut fields = serde_json::Map::new();
    fields.insert(TAGS.into(), Value::Array(tags));
    state.update_record("mailchimp", &set.name, index, fields);
    HttpResponse::NoContent().finish()
}

/// `GET /lists/{list_id}/members/{hash}/tags` "List member tags": `{tags: [{id, name, date_added}],
/// total_items}`, every tag on one page.
fn member_tags(state: &mut State, list_id: &str, hash: &str) -> HttpResponse {
    let (set, index) = match tagged_member(state, list_id, hash) {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let tags = tags_of(state.dataset("mailchimp", &set.name), index);
    HttpResponse::Ok().json(json!({"tags": tags, "total_items": tags.len(), "_links": []}))
}

/// `POST /lists/{list_id}/members/{hash}/actions/delete-permanent`: the member is forgotten (204).
fn forget(state: &mut State, list_id: &str, hash: &str) -> HttpResponse {
    let Some(set) = audience_set(state, "audience_members", list_id) else {
        return not_found();
    };
    let hash = hash_of(hash);
    let dataset = state.dataset("mailchimp", &set.name);
    let Some(index) = find_member(dataset, &set, list_id, &hash)
        .filter(|i| !member_fields(dataset, *i).contains_key(FORGOTTEN))
    else {
        return not_found();
    };
    dataset.hidden.insert(index);
    let mut forgotten = serde_json::Map::new();
    forgotten.insert(FORGOTTEN.into(), json!(true));
    state.update_record("mailchimp", &set.name, index, forgotten);
    HttpResponse::NoContent().finish()
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
    // Archived members are listed only when asked for; forgotten ones never.
    let listed = |i: u64| match status {
        Some("archived") => {
            let fields = member_fields(dataset, i);
            !fields.contains_key(FORGOTTEN)
                && fields.get("status").and_then(Value::as_str) == Some("archived")
        }
        _ => dataset.visible(i),
    };
    let matching: Vec<u64> = (0..dataset.count)
        .filter(|i| listed(*i))
        .filter(|i| in_share(dataset, *i, share, list_id.unwrap_or_default()))
        .filter(|i| since.is_none_or(|s| changed(*i) > s))
        .filter(|i| before.is_none_or(|b| changed(*i) < b))
        .filter(|i| status.is_none_or(|s| !members || s == status_of(dataset, *i)))
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
            // The fields written through the API over the generated ones; the id follows the address.
            let fields = member_fields(dataset, index);
            let email = fields
                .get("email_address")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let id = member_id(&email);
            let name = |tag: &str| {
                fields
                    .get("merge_fields")
                    .and_then(|m| m.get(tag))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let mut member = json!({"id": id, "email_address": email,
                "unique_email_id": format!("u{:09x}", index), "contact_id": format!("c{id}"),
                "full_name": format!("{} {}", name("FNAME"), name("LNAME")).trim().to_owned(),
                "web_id": 5000 + index, "email_type": "html", "status": "subscribed",
                "merge_fields": {}, "stats": {"avg_open_rate": 0.5, "avg_click_rate": 0.1},
                "ip_signup": "", "timestamp_signup": created, "ip_opt": "", "timestamp_opt": created,
                "member_rating": 2, "last_changed": changed, "language": "", "vip": false,
                "email_client": "", "location": {"latitude": 0, "longitude": 0},
                "source": "API - Generic", "tags_count": 0, "tags": []});
            let tags: Vec<Value> = match fields.get(TAGS) {
                Some(Value::Array(tags)) => tags
                    .iter()
                    .map(|t| json!({"id": t["id"], "name": t["name"]}))
                    .collect(),
                _ => Vec::new(),
            };
            for (field, value) in fields {
                if !field.starts_with('_') {
                    member[field] = value;
                }
            }
            member["tags_count"] = json!(tags.len());
            member["tags"] = Value::Array(tags);
            member
        }
        "segments" => {
            let fields = segment_fields(dataset, index);
            let mut segment = json!({"id": index + 1, "member_count": 0, "created_at": created,
                                     "updated_at": changed});
            for (field, value) in fields {
                if !field.starts_with('_') {
                    segment[field] = value;
                }
            }
            segment
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
    serve: |state, call| {
        answer(
            state, call.req, call.rest, call.query, call.body, call.fault,
        )
    },
    rate_limited_body: || error_body(StatusCode::TOO_MANY_REQUESTS),
    error_body,
    record_id,
    newest_first: false,
    listed: |_, _| true,
};
