//! Stripe's list API, as its API reference documents it: <https://docs.stripe.com/api> (authentication:
//! <https://docs.stripe.com/api/authentication>; pagination: <https://docs.stripe.com/api/pagination>; errors:
//! <https://docs.stripe.com/api/errors>; each list endpoint, e.g. <https://docs.stripe.com/api/customers/list>).
//!
//! - `Authorization: Bearer sk_…` (or Basic with the key as user). Lists are newest first by `created` (a
//!   record made visible late with [`crate::PlatformApi::reveal`] takes its place by `created`), `limit` 1–100
//!   (default 10), `starting_after`/`ending_before`, `created[gt|gte|lt|lte]`; the body is
//!   `{"object":"list","data":[…],"has_more":…,"url":…}`; an unknown parameter is a 400 `parameter_unknown`;
//!   subscriptions hide cancelled ones unless `status=all`.

use std::collections::HashSet;

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use serde_json::{json, Value};

use crate::dataset::Dataset;
use crate::faults::PagingFault;
use crate::request::{bearer, header, param, Query};
use crate::server::State;

/// Data types and their id prefixes.
pub(crate) const PREFIXES: &[(&str, &str)] = &[
    ("customers", "cus"),
    ("charges", "ch"),
    ("invoices", "in"),
    ("subscriptions", "sub"),
    ("products", "prod"),
    ("prices", "price"),
    ("payment_intents", "pi"),
    ("refunds", "re"),
    ("disputes", "dp"),
    ("payouts", "po"),
    ("balance_transactions", "txn"),
    ("events", "evt"),
    ("coupons", "co"),
    ("credit_notes", "cn"),
];

pub(crate) fn auth(req: &HttpRequest, accepted: &HashSet<String>) -> Result<(), HttpResponse> {
    let key = bearer(req).map(str::to_owned).or_else(|| {
        let (scheme, encoded) = header(req, "Authorization")?.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        Some(
            text.split_once(':')
                .map_or(text.clone(), |(user, _)| user.to_owned()),
        )
    });
    let error = |message: String| {
        HttpResponse::Unauthorized()
            .json(json!({"error": {"message": message, "type": "invalid_request_error"}}))
    };
    match key.filter(|k| !k.is_empty()) {
        None => Err(error(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_owned(),
        )),
        Some(key) if accepted.contains(&key) => Ok(()),
        Some(key) => {
            let tail: String = key.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
            let prefix = key.match_indices('_').nth(1).map_or("", |(i, _)| &key[..=i]);
            Err(error(format!(
                "Invalid API Key provided: {prefix}{}{tail}",
                "*".repeat(20)
            )))
        }
    }
}

pub(crate) fn not_found(rest: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {"type": "invalid_request_error",
        "message": format!("Unrecognized request URL (GET: {rest}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")}}))
}

pub(crate) fn invalid(param: &str, message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": {"type": "invalid_request_error",
        "code": "parameter_invalid", "param": param, "message": message}}))
}

/// Subscriptions: every tenth one is cancelled, and the list hides those unless `status=all`.
pub(crate) fn visible(data_type: &str, index: u64, all: bool) -> bool {
    data_type != "subscriptions" || all || index % 10 != 9
}

pub(crate) fn list(
    dataset: &Dataset,
    data_type: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let allowed_extra: &[&str] = match data_type {
        "subscriptions" => &["status", "customer", "price"],
        "customers" => &["email"],
        "charges" | "payment_intents" | "invoices" => &["customer"],
        "events" => &["type", "types[]"],
        "products" | "prices" => &["active"],
        _ => &[],
    };
    let mut limit = 10u64;
    let mut created_from = i64::MIN; // seconds, inclusive
    let mut created_to = i64::MAX; // seconds, inclusive
    let mut starting_after = None;
    for (name, value) in query {
        let seconds = || {
            value
                .parse::<i64>()
                .map_err(|_| invalid(name, format!("Invalid integer: {value}")))
        };
        match name.as_str() {
            "limit" => match value.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    return invalid(
                        "limit",
                        "This value must be less than or equal to 100.".into(),
                    )
                }
            },
            "starting_after" => starting_after = Some(value.clone()),
            "created" => match seconds() {
                Ok(s) => (created_from, created_to) = (s, s),
                Err(e) => return e,
            },
            "created[gt]" | "created[gte]" | "created[lt]" | "created[lte]" => {
                let s = match seconds() {
                    Ok(s) => s,
                    Err(e) => return e,
                };
                match name.as_str() {
                    "created[gt]" => created_from = created_from.max(s + 1),
                    "created[gte]" => created_from = created_from.max(s),
                    "created[lt]" => created_to = created_to.min(s - 1),
                    _ => created_to = created_to.min(s),
                }
            }
            other if allowed_extra.contains(&other) => {}
            other => {
                return HttpResponse::BadRequest().json(json!({"error": {
                    "type": "invalid_request_error", "code": "parameter_unknown", "param": other,
                    "message": format!("Received unknown parameter: {other}")}}))
            }
        }
    }
    let all = data_type != "subscriptions" || param(query, "status") == Some("all");
    // Records in [lo, hi) match the `created` filter (creation times grow with the index).
    let lo = dataset.first_created_at_or_after(created_from.saturating_mul(1000));
    let hi = if created_to == i64::MAX {
        dataset.count
    } else {
        dataset.first_created_at_or_after((created_to + 1).saturating_mul(1000))
    };
    let mut below = hi; // newest first: the page starts below this index
                        // A list with a paging fault answers its first page whatever the cursor.
    let starting_after = starting_after.filter(|_| fault.is_none());
    if let Some(id) = starting_after {
        match index_of(data_type, &id).filter(|i| *i < dataset.count && dataset.visible(*i)) {
            Some(index) => below = below.min(index),
            None => {
                let object = data_type.trim_end_matches('s').replace('_', " ");
                return HttpResponse::BadRequest().json(json!({"error": {
                    "type": "invalid_request_error", "code": "resource_missing", "param": "starting_after",
                    "message": format!("No such {object}: '{id}'")}}));
            }
        }
    }
    let mut indices = (lo..below.max(lo))
        .rev()
        .filter(|i| dataset.visible(*i) && visible(data_type, *i, all));
    let page: Vec<u64> = indices.by_ref().take(limit as usize).collect();
    let has_more = indices.next().is_some();
    let data: Vec<Value> = page
        .iter()
        .map(|i| record(data_type, *i, dataset.created_ms(*i) / 1000))
        .collect();
    HttpResponse::Ok().json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "url": format!("/v1/{data_type}"),
    }))
}

pub(crate) fn index_of(data_type: &str, id: &str) -> Option<u64> {
    let prefix = PREFIXES.iter().find(|(t, _)| *t == data_type)?.1;
    id.strip_prefix(prefix)?.strip_prefix("_LB")?.parse().ok()
}

pub(crate) fn record(data_type: &str, index: u64, created: i64) -> Value {
    let id = crate::record_id("stripe", data_type, index);
    let customer = format!("cus_LB{:010}", index / 3);
    let amount = 1000 + (index % 97) * 25;
    let mut record = json!({
        "id": id,
        "object": data_type.trim_end_matches('s'),
        "created": created,
        "livemode": false,
        "metadata": {"listbackup_index": index.to_string()},
    });
    let extra = match data_type {
        "customers" => json!({
            "object": "customer",
            "email": format!("customer{index}@example.test"),
            "name": format!("Customer {index}"),
            "description": "Created by the ListBackup platform API emulation",
            "balance": 0, "currency": "usd", "delinquent": false,
            "address": {"line1": format!("{index} Main St"), "city": "Springfield", "country": "US",
                        "postal_code": "12345", "state": "IL", "line2": null},
            "invoice_settings": {"default_payment_method": null, "footer": null},
            "preferred_locales": ["en"], "tax_exempt": "none",
        }),
        "subscriptions" => json!({
            "object": "subscription", "customer": customer,
            "status": if visible(data_type, index, false) { "active" } else { "canceled" },
            "items": {"object": "list", "data": [], "has_more": false},
            "current_period_start": created, "current_period_end": created + 2_592_000,
        }),
        "balance_transactions" => json!({
            "object": "balance_transaction", "amount": amount, "fee": 59, "net": amount - 59,
            "currency": "usd", "type": "charge", "status": "available", "available_on": created + 172_800,
        }),
        "events" => json!({
            "object": "event", "api_version": "2024-06-20", "type": "customer.updated",
            "data": {"object": {"id": customer, "object": "customer"}},
            "pending_webhooks": 0, "request": {"id": null, "idempotency_key": null},
        }),
        "payment_intents" => {
            json!({"object": "payment_intent", "amount": amount, "currency": "usd",
            "status": "succeeded", "customer": customer})
        }
        "credit_notes" => json!({"object": "credit_note", "amount": amount, "currency": "usd",
            "invoice": format!("in_LB{:010}", index), "status": "issued"}),
        _ => {
            json!({"amount": amount, "currency": "usd", "status": "succeeded", "customer": customer,
            "description": format!("{data_type} {index}")})
        }
    };
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    record
}

/// Answers an authenticated request; `rest` is the path after `/stripe`.
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    fault: Option<PagingFault>,
) -> HttpResponse {
    let Some(data_type) = rest.strip_prefix("/v1/").filter(|t| !t.contains('/')) else {
        return not_found(rest);
    };
    if req.method() != Method::GET {
        return not_found(rest);
    }
    if data_type == "account" {
        return account();
    }
    if !PREFIXES.iter().any(|(t, _)| *t == data_type) {
        return not_found(rest);
    }
    list(state.dataset("stripe", data_type), data_type, query, fault)
}

/// `GET /v1/account`, the connection test's call (<https://docs.stripe.com/api/accounts/retrieve>): the
/// account of the key, a standard account of API version 2024-06-20.
pub(crate) fn account() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "id": "acct_1Nv0FGQ9RKHgCVdK",
        "object": "account",
        "business_profile": {"name": "Acme Test", "url": "https://acme.test"},
        "charges_enabled": true,
        "country": "US",
        "default_currency": "usd",
        "details_submitted": true,
        "email": "billing@acme.test",
        "payouts_enabled": true,
        "settings": {"dashboard": {"display_name": "Acme Test", "timezone": "Etc/UTC"}},
        "type": "standard"
    }))
}
