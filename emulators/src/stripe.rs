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
use std::fmt::Write as _;

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::http::header::HeaderName;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
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
    let mut ending_before = None;
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
            "ending_before" => ending_before = Some(value.clone()),
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
    if starting_after.is_some() && ending_before.is_some() {
        return invalid(
            "ending_before",
            "You may only specify one of these parameters: ending_before, starting_after.".into(),
        );
    }
    let all = data_type != "subscriptions" || param(query, "status") == Some("all");
    // Records in [lo, hi) match the `created` filter (creation times grow with the index).
    let lo = dataset.first_created_at_or_after(created_from.saturating_mul(1000));
    let hi = if created_to == i64::MAX {
        dataset.count
    } else {
        dataset.first_created_at_or_after((created_to + 1).saturating_mul(1000))
    };
    // A list with a paging fault answers its first page whatever the cursor.
    let cursor = |id: Option<String>, param: &str| -> Result<Option<u64>, HttpResponse> {
        let Some(id) = id.filter(|_| fault.is_none()) else {
            return Ok(None);
        };
        match index_of(data_type, &id).filter(|i| *i < dataset.count && dataset.visible(*i)) {
            Some(index) => Ok(Some(index)),
            None => {
                let object = data_type.trim_end_matches('s').replace('_', " ");
                Err(HttpResponse::BadRequest().json(json!({"error": {
                    "type": "invalid_request_error", "code": "resource_missing", "param": param,
                    "message": format!("No such {object}: '{id}'")}})))
            }
        }
    };
    let (starting_after, ending_before) = match (
        cursor(starting_after, "starting_after"),
        cursor(ending_before, "ending_before"),
    ) {
        (Ok(after), Ok(before)) => (after, before),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let listed = |i: &u64| dataset.visible(*i) && visible(data_type, *i, all);
    // Newest first: a page is a run of indices going down.
    let (page, has_more) = match ending_before {
        // The `limit` records just newer than the cursor, still listed newest first; `has_more` says whether
        // newer ones remain.
        Some(before) => {
            let mut newer = (lo.max(before + 1)..hi.max(lo)).filter(listed);
            let mut page: Vec<u64> = newer.by_ref().take(limit as usize).collect();
            let has_more = newer.next().is_some();
            page.reverse();
            (page, has_more)
        }
        None => {
            let below = starting_after.map_or(hi, |after| after.min(hi));
            let mut older = (lo..below.max(lo)).rev().filter(listed);
            let page: Vec<u64> = older.by_ref().take(limit as usize).collect();
            (page, older.next().is_some())
        }
    };
    let mut body = String::with_capacity(96 + page.len() * 1100);
    body.push_str(r#"{"object":"list","data":["#);
    for (n, index) in page.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        let created = dataset.created_ms(*index).div_euclid(1000);
        match dataset.written.get(index) {
            None => write_record(&mut body, data_type, *index, created),
            Some(written) => {
                let _ = write!(
                    body,
                    "{}",
                    written_record(data_type, *index, created, written)
                );
            }
        }
    }
    let _ = write!(body, r#"],"has_more":{has_more},"url":"/v1/{data_type}"}}"#);
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}

// ---------------------------------------------------------------------------------------------------------
// Ids: the prefix of the object's kind and base62 characters, as Stripe's look (`cus_NffrFeUfNV2Hib`,
// `ch_3MmlLrLkdIwHu7ix0snN0B15`), that decode back to the record's index.

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// The index is spread over 10 base62 digits with an affine map modulo 62^10 (a bijection: the multiplier
/// is odd and not a multiple of 31), then check digits follow, so ids look random and still decode.
const ID_MODULUS: u128 = 839_299_365_868_340_224; // 62^10
const ID_MULTIPLIER: u128 = 0x5DEE_CE66_D1CE_4E5B % ID_MODULUS;
const ID_OFFSET: u128 = 0x2545_F491_4F6C_DD1D % ID_MODULUS;

/// Characters after the prefix: 14 for customers and products (`cus_NffrFeUfNV2Hib`), 24 for the rest.
fn id_len(prefix: &str) -> usize {
    match prefix {
        "cus" | "prod" => 14,
        _ => 24,
    }
}

/// The id prefix of a data type's objects (`obj` for one this emulation does not know).
fn prefix_of(data_type: &str) -> &'static str {
    PREFIXES
        .iter()
        .find(|(t, _)| *t == data_type)
        .map_or("obj", |(_, p)| p)
}

/// A 64-bit mix of the index (splitmix64's finalizer): the source of every per-record variation.
fn mix(index: u64, salt: u64) -> u64 {
    let mut z = index
        .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn push_base62(out: &mut String, mut value: u128, digits: usize) {
    let mut buf = [0u8; 24];
    for slot in buf[..digits].iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.push_str(std::str::from_utf8(&buf[..digits]).expect("base62 is ASCII"));
}

/// `prefix_` + 10 base62 characters carrying the index + check characters up to [`id_len`].
fn write_id(out: &mut String, prefix: &str, index: u64) {
    out.push_str(prefix);
    out.push('_');
    let spread = (index as u128 * ID_MULTIPLIER + ID_OFFSET) % ID_MODULUS;
    push_base62(out, spread, 10);
    let mut check = id_len(prefix) - 10;
    let mut salt = 7;
    while check > 0 {
        let digits = check.min(7);
        push_base62(
            out,
            (mix(index, salt) % 62u64.pow(digits as u32)) as u128,
            digits,
        );
        check -= digits;
        salt += 1;
    }
}

/// The id of record `index` of a data type.
pub(crate) fn record_id(data_type: &str, index: u64) -> String {
    let mut id = String::with_capacity(32);
    write_id(&mut id, prefix_of(data_type), index);
    id
}

/// The index an id of this data type carries, if it is one of this emulation's.
pub(crate) fn index_of(data_type: &str, id: &str) -> Option<u64> {
    let prefix = prefix_of(data_type);
    let body = id.strip_prefix(prefix)?.strip_prefix('_')?;
    if body.len() != id_len(prefix) || !body.is_ascii() {
        return None;
    }
    let mut spread: u128 = 0;
    for byte in body[..10].bytes() {
        let digit = BASE62.iter().position(|b| *b == byte)? as u128;
        spread = spread * 62 + digit;
    }
    let inverse = modular_inverse(ID_MULTIPLIER, ID_MODULUS);
    let index = ((spread + ID_MODULUS - ID_OFFSET) % ID_MODULUS * inverse) % ID_MODULUS;
    let index = u64::try_from(index).ok()?;
    (record_id(data_type, index) == id).then_some(index)
}

/// `a⁻¹ mod m` (extended Euclid; `a` and `m` coprime, both below 2^63 so no product overflows `i128`).
fn modular_inverse(a: u128, m: u128) -> u128 {
    let (mut old_r, mut r) = (a as i128, m as i128);
    let (mut old_s, mut s) = (1i128, 0i128);
    while r != 0 {
        let q = old_r / r;
        (old_r, r) = (r, old_r - q * r);
        (old_s, s) = (s, old_s - q * s);
    }
    old_s.rem_euclid(m as i128) as u128
}

// ---------------------------------------------------------------------------------------------------------
// Records

/// Record `index` of a data type, created at `created` (Unix seconds), as a JSON value.
// Reached as `crate::stripe_record` by modules written against the single-file crate.
#[allow(dead_code)]
pub(crate) fn record(data_type: &str, index: u64, created: i64) -> Value {
    let mut text = String::with_capacity(1100);
    write_record(&mut text, data_type, index, created);
    serde_json::from_str(&text).expect("the emulation writes valid JSON")
}

/// Writes record `index` of a data type as compact JSON, as Stripe (API version 2024-06-20) serializes it.
/// Customers are written straight to text (the benchmarks list millions of them); the rest go through a
/// JSON value.
pub(crate) fn write_record(out: &mut String, data_type: &str, index: u64, created: i64) {
    if data_type == "customers" {
        write_customer(out, index, created);
        return;
    }
    let id = record_id(data_type, index);
    let customer = record_id("customers", index / 3);
    let amount = 1000 + (index % 97) * 25;
    let mut record = json!({
        "id": id,
        "object": data_type.trim_end_matches('s'),
        "created": created,
        "livemode": false,
        "metadata": {"listbackup_index": index.to_string()},
    });
    let extra = match data_type {
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
            "invoice": record_id("invoices", index), "status": "issued"}),
        // <https://docs.stripe.com/api/products/object>
        "products" => json!({
            "object": "product", "active": index % 11 != 10, "default_price": null,
            "description": format!("Plan {index}: everything a team of {} needs", 2 + index % 20),
            "images": [], "marketing_features": [], "name": format!("Plan {index}"),
            "package_dimensions": null, "shippable": null, "statement_descriptor": null,
            "tax_code": null, "unit_label": if index.is_multiple_of(2) { json!("seat") } else { Value::Null },
            "updated": created, "url": null,
        }),
        // <https://docs.stripe.com/api/prices/object>: two prices per product (`products` record index / 2),
        // a monthly recurring one and a one-off one.
        "prices" => {
            let recurring = index.is_multiple_of(2);
            json!({
                "object": "price", "active": true, "billing_scheme": "per_unit", "currency": "usd",
                "custom_unit_amount": null,
                "lookup_key": if index.is_multiple_of(4) { json!(format!("plan_{}_monthly", index / 2)) } else { Value::Null },
                "nickname": if recurring { json!("Monthly") } else { json!("One-off") },
                "product": record_id("products", index / 2),
                "recurring": if recurring {
                    json!({"aggregate_usage": null, "interval": "month", "interval_count": 1,
                           "meter": null, "trial_period_days": null, "usage_type": "licensed"})
                } else { Value::Null },
                "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
                "type": if recurring { "recurring" } else { "one_time" },
                "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
            })
        }
        // <https://docs.stripe.com/api/coupons/object>: percent-off ones and amount-off ones.
        "coupons" => {
            let percent = index.is_multiple_of(2);
            json!({
                "object": "coupon",
                "amount_off": if percent { Value::Null } else { json!(500 + (index % 10) * 100) },
                "currency": if percent { Value::Null } else { json!("usd") },
                "duration": if index.is_multiple_of(3) { "repeating" } else { "once" },
                "duration_in_months": if index.is_multiple_of(3) { json!(3) } else { Value::Null },
                "max_redemptions": null,
                "name": format!("Offer {index}"),
                "percent_off": if percent { json!(5.0 + (index % 8) as f64 * 5.0) } else { Value::Null },
                "redeem_by": null, "times_redeemed": index % 7, "valid": true,
            })
        }
        _ => {
            json!({"amount": amount, "currency": "usd", "status": "succeeded", "customer": customer,
            "description": format!("{data_type} {index}")})
        }
    };
    if let (Value::Object(record), Value::Object(extra)) = (&mut record, extra) {
        record.extend(extra);
    }
    let _ = write!(out, "{record}");
}

const FIRST_NAMES: &[&str] = &[
    "Jenny", "Marcus", "Aiko", "Olusegun", "Priya", "Mateo", "Freya", "Dmitri", "Amara", "Lucas",
    "Sofia", "Kwame", "Ingrid", "Rafael", "Mei", "Theo",
];
const LAST_NAMES: &[&str] = &[
    "Rosen",
    "Okafor",
    "Tanaka",
    "Lindqvist",
    "Haddad",
    "Moreau",
    "Kowalski",
    "Nguyen",
    "Silva",
    "Fitzgerald",
    "Adeyemi",
    "Castellano",
    "Brennan",
    "Varga",
    "Ishikawa",
    "Delacroix",
];
const STREETS: &[&str] = &[
    "Main Street",
    "Oak Avenue",
    "Maple Drive",
    "Cedar Lane",
    "Elm Street",
    "Park Boulevard",
    "Lakeview Road",
    "Sunset Terrace",
];
/// City, state, postal code prefix.
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "IL", "627"),
    ("Austin", "TX", "787"),
    ("Portland", "OR", "972"),
    ("Madison", "WI", "537"),
    ("Raleigh", "NC", "276"),
    ("Boulder", "CO", "803"),
    ("Savannah", "GA", "314"),
    ("Burlington", "VT", "054"),
];
const TIERS: &[&str] = &["bronze", "silver", "gold", "platinum"];
const SIGNUPS: &[&str] = &["web", "mobile", "partner", "sales", "import"];
const LOCALES: &[&str] = &["en-US", "en-GB", "fr-FR", "de-DE", "es-ES", "ja-JP"];

fn pick<T: Copy>(items: &[T], index: u64, salt: u64) -> T {
    items[(mix(index, salt) % items.len() as u64) as usize]
}

/// One customer as Stripe (API version 2024-06-20) serializes it, compact, about 1 KB: the shape of
/// <https://docs.stripe.com/api/customers/object> with an address, shipping, a default card and payment
/// method, metadata, and a discount on one in five.
fn write_customer(out: &mut String, index: u64, created: i64) {
    let first = pick(FIRST_NAMES, index, 1);
    let last = pick(LAST_NAMES, index, 2);
    let street = pick(STREETS, index, 3);
    let (city, state, zip) = pick(CITIES, index, 4);
    let number = 10 + mix(index, 5) % 9_990;
    let unit = 1 + mix(index, 6) % 400;
    let phone = 2_000_000 + mix(index, 8) % 7_999_999;
    let zip_tail = mix(index, 9) % 100;
    let has_discount = mix(index, 10).is_multiple_of(5);
    let delinquent = mix(index, 11).is_multiple_of(23);
    let balance = if mix(index, 12).is_multiple_of(7) {
        -((mix(index, 13) % 50_000) as i64)
    } else {
        0
    };
    let id = record_id("customers", index);
    let mut card = String::with_capacity(32);
    write_id(&mut card, "card", index ^ 0x5555);
    let mut method = String::with_capacity(32);
    write_id(&mut method, "pm", index ^ 0xAAAA);
    let year = DateTime::<Utc>::from_timestamp(created, 0).map_or(2024, |t| t.year());
    let address = |out: &mut String| {
        let _ = write!(
            out,
            r#"{{"city":"{city}","country":"US","line1":"{number} {street}","line2":"Unit {unit}","postal_code":"{zip}{zip_tail:02}","state":"{state}"}}"#
        );
    };
    let _ = write!(out, r#"{{"id":"{id}","object":"customer","address":"#);
    address(out);
    let _ = write!(
        out,
        r#","balance":{balance},"created":{created},"currency":"usd","default_source":"{card}","delinquent":{delinquent},"description":"Customer since {year} ({first} {last}, account {index})","#,
    );
    if has_discount {
        let mut discount = String::with_capacity(32);
        write_id(&mut discount, "di", index);
        let _ = write!(
            out,
            r#""discount":{{"id":"{discount}","object":"discount","coupon":{{"id":"WELCOME20","object":"coupon","duration":"once","percent_off":20.0,"valid":true}},"customer":"{id}","start":{created}}},"#,
        );
    } else {
        out.push_str(r#""discount":null,"#);
    }
    let _ = write!(
        out,
        r#""email":"{lower_first}.{lower_last}.{index}@example.com","invoice_prefix":"{prefix:08X}","invoice_settings":{{"custom_fields":null,"default_payment_method":"{method}","footer":null,"rendering_options":null}},"livemode":false,"metadata":{{"account_tier":"{tier}","crm_id":"CRM-{index:08}","signup_source":"{signup}"}},"name":"{first} {last}","next_invoice_sequence":{sequence},"phone":"+1555{phone:07}","preferred_locales":["{locale}"],"shipping":{{"address":"#,
        lower_first = first.to_ascii_lowercase(),
        lower_last = last.to_ascii_lowercase(),
        prefix = mix(index, 14) as u32,
        tier = pick(TIERS, index, 15),
        signup = pick(SIGNUPS, index, 16),
        sequence = 1 + mix(index, 17) % 60,
        locale = pick(LOCALES, index, 18),
    );
    address(out);
    let _ = write!(
        out,
        r#","name":"{first} {last}","phone":"+1555{phone:07}"}},"tax_exempt":"none","test_clock":null}}"#
    );
}

/// Answers an authenticated request; `rest` is the path after `/stripe`.
pub(crate) fn answer(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    fault: Option<PagingFault>,
) -> HttpResponse {
    with_request_id(route(state, req, rest, query, body, fault))
}

/// A record as the API's writes left it: a created one is its id, creation time and the fields written; a
/// generated one written to has those fields over its own.
fn written_record(
    data_type: &str,
    index: u64,
    created: i64,
    written: &crate::dataset::Written,
) -> Value {
    let mut record = if written.created {
        json!({"id": record_id(data_type, index), "object": data_type.trim_end_matches('s'),
               "created": created, "livemode": false, "metadata": {}})
    } else {
        let mut text = String::new();
        write_record(&mut text, data_type, index, created);
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    if let Value::Object(record) = &mut record {
        if written.created {
            if let Value::Object(defaults) = defaults(data_type) {
                record.extend(defaults);
            }
        }
        for (field, value) in &written.fields {
            record.insert(field.clone(), value.clone());
        }
        if written.created && data_type == "prices" {
            // Derived as Stripe derives them: the type from the recurrence, the decimal from the amount, and
            // a recurrence's unset fields as nulls and defaults.
            let recurring = record.get("recurring").cloned().unwrap_or(Value::Null);
            if let Value::Object(given) = recurring {
                let mut full = json!({"aggregate_usage": null, "interval": null, "interval_count": 1,
                                      "meter": null, "trial_period_days": null, "usage_type": "licensed"});
                if let Value::Object(full) = &mut full {
                    full.extend(given);
                }
                record.insert("recurring".into(), full);
                record.insert("type".into(), json!("recurring"));
            }
            if let Some(amount) = record.get("unit_amount").and_then(Value::as_i64) {
                record.insert("unit_amount_decimal".into(), json!(amount.to_string()));
            }
        }
    }
    record
}

/// The fields a created object has before the create's parameters are applied, as the object's reference
/// documents their defaults (every field present, `null` when unset).
fn defaults(data_type: &str) -> Value {
    match data_type {
        "products" => {
            json!({"active": true, "default_price": null, "description": null, "images": [],
            "marketing_features": [], "name": null, "package_dimensions": null, "shippable": null,
            "statement_descriptor": null, "tax_code": null, "unit_label": null, "url": null})
        }
        "prices" => json!({"active": true, "billing_scheme": "per_unit", "currency": null,
            "custom_unit_amount": null, "lookup_key": null, "nickname": null, "product": null,
            "recurring": null, "tax_behavior": "unspecified", "tiers_mode": null,
            "transform_quantity": null, "type": "one_time", "unit_amount": null, "unit_amount_decimal": null}),
        "coupons" => json!({"amount_off": null, "currency": null, "duration": "once",
            "duration_in_months": null, "max_redemptions": null, "name": null, "percent_off": null,
            "redeem_by": null, "times_redeemed": 0, "valid": true}),
        _ => json!({}),
    }
}

fn route(
    state: &mut State,
    req: &HttpRequest,
    rest: &str,
    query: &Query,
    body: &[u8],
    fault: Option<PagingFault>,
) -> HttpResponse {
    if req.method() != Method::GET {
        return writes::answer(state, req, rest, body);
    }
    let Some(data_type) = rest.strip_prefix("/v1/").filter(|t| !t.contains('/')) else {
        return not_found(rest);
    };
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

/// The header Stripe puts on every answer (<https://docs.stripe.com/api/request_ids>): a distinct id per
/// request.
pub(crate) fn with_request_id(mut response: HttpResponse) -> HttpResponse {
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    if let Ok(value) = format!("req_emu{n:012}").parse() {
        response
            .headers_mut()
            .insert(HeaderName::from_static("request-id"), value);
    }
    response
}

/// Stripe in the emulation's registry (`crate::EMULATIONS`).
pub(crate) const EMULATION: crate::Emulation = crate::Emulation {
    id: "stripe",
    base_path: || "/stripe/v1".to_owned(),
    serve: |state, call| match auth(call.req, call.accepted) {
        Err(denied) => denied,
        Ok(()) => answer(
            state, call.req, call.rest, call.query, call.body, call.fault,
        ),
    },
    rate_limited_body: || {
        json!({"error": {"code": "rate_limit", "type": "invalid_request_error",
            "message": "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."}})
    },
    error_body: |status| {
        let kind = if status.is_server_error() {
            "api_error"
        } else {
            "invalid_request_error"
        };
        json!({"error": {"type": kind, "message": status.canonical_reason().unwrap_or("Error")}})
    },
    record_id,
    // Newest first; a few records of some lists are only listed when asked for (`visible`).
    newest_first: true,
    listed: |data_type, index| visible(data_type, index, true),
};

/// Stripe's writes, as its API reference documents them, of customers (create
/// <https://docs.stripe.com/api/customers/create>, update <https://docs.stripe.com/api/customers/update>, delete
/// <https://docs.stripe.com/api/customers/delete>), products (create, update, delete:
/// <https://docs.stripe.com/api/products>), prices (create and update, <https://docs.stripe.com/api/prices>:
/// a price is never deleted, and its update takes only `active`, `lookup_key`, `metadata`, `nickname`,
/// `tax_behavior`; an amount, currency, product or recurrence sent to it is an unknown parameter) and coupons
/// (create, update of `name` and `metadata` only, delete: <https://docs.stripe.com/api/coupons>).
/// `POST /v1/<type>` creates, `POST /v1/<type>/{id}` updates (only the fields sent change, an empty value
/// unsets one); form-encoded bodies with nested fields in brackets; an unknown parameter is a 400
/// `parameter_unknown`, a missing required one a 400 `parameter_missing`, a price naming a product that does
/// not exist a 400 `resource_missing`, a malformed email a 400 `email_invalid`, an unknown id a 404
/// `resource_missing`; `Idempotency-Key` (<https://docs.stripe.com/api/idempotent_requests>) answers a
/// repeated key with the first answer.
mod writes {
    use super::*;
    use crate::dataset::Written;

    /// What the API accepts for one data type.
    struct Writable {
        data_type: &'static str,
        /// What a message calls one (`No such product: …`).
        object: &'static str,
        create: &'static [&'static str],
        /// Parameters a create cannot go without.
        required: &'static [&'static str],
        update: &'static [&'static str],
        deletable: bool,
    }

    const CUSTOMER_PARAMS: &[&str] = &[
        "name",
        "email",
        "description",
        "phone",
        "address",
        "shipping",
        "metadata",
        "preferred_locales",
        "tax_exempt",
        "balance",
        "invoice_prefix",
    ];
    const PRODUCT_PARAMS: &[&str] = &[
        "name",
        "active",
        "description",
        "metadata",
        "images",
        "marketing_features",
        "package_dimensions",
        "shippable",
        "statement_descriptor",
        "tax_code",
        "unit_label",
        "url",
    ];

    const WRITABLE: &[Writable] = &[
        Writable {
            data_type: "customers",
            object: "customer",
            create: CUSTOMER_PARAMS,
            required: &[],
            update: CUSTOMER_PARAMS,
            deletable: true,
        },
        Writable {
            data_type: "products",
            object: "product",
            create: PRODUCT_PARAMS,
            required: &["name"],
            update: PRODUCT_PARAMS,
            deletable: true,
        },
        Writable {
            data_type: "prices",
            object: "price",
            create: &[
                "currency",
                "product",
                "unit_amount",
                "unit_amount_decimal",
                "active",
                "nickname",
                "lookup_key",
                "metadata",
                "recurring",
                "tax_behavior",
                "billing_scheme",
                "tiers",
                "tiers_mode",
                "transform_quantity",
                "custom_unit_amount",
            ],
            required: &["currency"],
            update: &[
                "active",
                "lookup_key",
                "metadata",
                "nickname",
                "tax_behavior",
            ],
            deletable: false,
        },
        Writable {
            data_type: "coupons",
            object: "coupon",
            create: &[
                "amount_off",
                "currency",
                "duration",
                "duration_in_months",
                "max_redemptions",
                "metadata",
                "name",
                "percent_off",
                "redeem_by",
                "applies_to",
            ],
            required: &[],
            update: &["name", "metadata"],
            deletable: true,
        },
    ];

    fn error(status: u16, code: &str, param: Option<&str>, message: String) -> (u16, Value) {
        let mut error = json!({"type": "invalid_request_error", "code": code, "message": message});
        if let Some(param) = param {
            error["param"] = json!(param);
        }
        (status, json!({ "error": error }))
    }

    pub(super) fn answer(
        state: &mut State,
        req: &HttpRequest,
        rest: &str,
        body: &[u8],
    ) -> HttpResponse {
        let key = header(req, "Idempotency-Key").map(|k| format!("{} {k}", req.method()));
        if let Some((status, body)) = key.as_ref().and_then(|k| state.idempotent.get(k)) {
            return respond(*status, body.clone());
        }
        let (status, answer) = write(state, req, rest, body);
        if let Some(key) = key {
            state.idempotent.insert(key, (status, answer.clone()));
        }
        respond(status, answer)
    }

    fn respond(status: u16, body: Value) -> HttpResponse {
        HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .json(body)
    }

    /// The index of a visible record `id` of `data_type`.
    fn existing(state: &mut State, data_type: &str, id: &str) -> Option<u64> {
        let dataset = state.dataset("stripe", data_type);
        index_of(data_type, id).filter(|i| *i < dataset.count && dataset.visible(*i))
    }

    fn write(state: &mut State, req: &HttpRequest, rest: &str, body: &[u8]) -> (u16, Value) {
        let missing = || {
            error(
                404,
                "resource_missing",
                Some("id"),
                format!("Unrecognized request URL ({}: {rest})", req.method()),
            )
        };
        let Some(path) = rest.strip_prefix("/v1/") else {
            return missing();
        };
        let (data_type, id) = match path.split_once('/') {
            Some((data_type, id)) if !id.is_empty() && !id.contains('/') => (data_type, Some(id)),
            Some(_) => return missing(),
            None => (path, None),
        };
        let Some(writable) = WRITABLE.iter().find(|w| w.data_type == data_type) else {
            return missing();
        };
        let index = match id {
            None => None,
            Some(id) => match existing(state, data_type, id) {
                Some(index) => Some(index),
                None => {
                    return error(
                        404,
                        "resource_missing",
                        Some("id"),
                        format!("No such {}: '{id}'", writable.object),
                    )
                }
            },
        };
        match (req.method().as_str(), index) {
            ("DELETE", Some(index)) if writable.deletable => {
                state.dataset("stripe", data_type).hidden.insert(index);
                let id = record_id(data_type, index);
                (
                    200,
                    json!({"id": id, "object": writable.object, "deleted": true}),
                )
            }
            ("POST", index) => {
                let accepted = if index.is_some() {
                    writable.update
                } else {
                    writable.create
                };
                let fields = match form(body, accepted) {
                    Ok(fields) => fields,
                    Err(answer) => return answer,
                };
                if index.is_none() {
                    if let Some(absent) = writable
                        .required
                        .iter()
                        .find(|p| fields.get(**p).is_none_or(Value::is_null))
                    {
                        return error(
                            400,
                            "parameter_missing",
                            Some(absent),
                            format!("Missing required param: {absent}."),
                        );
                    }
                }
                if let Some(Value::String(product)) = fields.get("product") {
                    if existing(state, "products", product).is_none() {
                        return error(
                            400,
                            "resource_missing",
                            Some("product"),
                            format!("No such product: '{product}'"),
                        );
                    }
                }
                let index = match index {
                    Some(index) => index,
                    None => {
                        state.append("stripe", data_type, 1);
                        let dataset = state.dataset("stripe", data_type);
                        let index = dataset.count - 1;
                        dataset.written.insert(
                            index,
                            Written {
                                created: true,
                                fields: Default::default(),
                            },
                        );
                        index
                    }
                };
                let dataset = state.dataset("stripe", data_type);
                let written = dataset.written.entry(index).or_default();
                for (field, value) in fields {
                    written.fields.insert(field, value);
                }
                let written = written.clone();
                let created = dataset.created_ms(index).div_euclid(1000);
                (200, written_record(data_type, index, created, &written))
            }
            _ => missing(),
        }
    }

    /// The form's fields as the object holds them: nested brackets as objects, indexed ones as lists,
    /// integers, numbers and booleans typed by their parameter's name, an empty value as `null` (unset).
    /// A parameter outside `accepted` is Stripe's 400 `parameter_unknown`.
    fn form(
        body: &[u8],
        accepted: &[&str],
    ) -> Result<serde_json::Map<String, Value>, (u16, Value)> {
        let parsed: serde_json::Map<String, Value> = serde_qs::Config::new(5, false)
            .deserialize_bytes(body)
            .map_err(|e| {
                error(
                    400,
                    "parameter_invalid",
                    None,
                    format!("Invalid request body: {e}"),
                )
            })?;
        let mut fields = serde_json::Map::new();
        for (name, value) in parsed {
            if !accepted.contains(&name.as_str()) {
                return Err(error(
                    400,
                    "parameter_unknown",
                    Some(&name),
                    format!("Received unknown parameter: {name}"),
                ));
            }
            let value = typed(&name, value)?;
            if name == "email" {
                if let Value::String(email) = &value {
                    if !email.contains('@') {
                        return Err(error(
                            400,
                            "email_invalid",
                            Some("email"),
                            format!("Invalid email address: {email}"),
                        ));
                    }
                }
            }
            fields.insert(name, value);
        }
        Ok(fields)
    }

    /// Parameters Stripe reads as integers, numbers and booleans (a form carries only text).
    const INTEGERS: &[&str] = &[
        "balance",
        "unit_amount",
        "interval_count",
        "trial_period_days",
        "amount_off",
        "duration_in_months",
        "max_redemptions",
        "redeem_by",
    ];
    const NUMBERS: &[&str] = &["percent_off"];
    const BOOLEANS: &[&str] = &["active", "shippable"];

    /// `value` of parameter `name`: objects keyed 0, 1, … become lists; empty strings become `null`;
    /// integers, numbers and booleans are parsed (Stripe's 400 `parameter_invalid_integer` and the like).
    fn typed(name: &str, value: Value) -> Result<Value, (u16, Value)> {
        let invalid = |code: &str, kind: &str, text: &str| {
            error(400, code, Some(name), format!("Invalid {kind}: {text}"))
        };
        Ok(match value {
            Value::String(text) if text.is_empty() => Value::Null,
            // Metadata values are text whatever their keys.
            Value::Object(map) if name == "metadata" => Value::Object(
                map.into_iter()
                    .map(|(k, v)| match v {
                        Value::String(text) if text.is_empty() => (k, Value::Null),
                        v => (k, v),
                    })
                    .collect(),
            ),
            Value::String(text) if INTEGERS.contains(&name) => match text.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(invalid("parameter_invalid_integer", "integer", &text)),
            },
            Value::String(text) if NUMBERS.contains(&name) => match text.parse::<f64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(invalid("parameter_invalid_float", "decimal", &text)),
            },
            Value::String(text) if BOOLEANS.contains(&name) => match text.as_str() {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return Err(invalid("parameter_invalid_boolean", "boolean", &text)),
            },
            Value::Object(map) => {
                let indexed = !map.is_empty() && map.keys().all(|k| k.parse::<usize>().is_ok());
                if indexed {
                    let mut items = Vec::with_capacity(map.len());
                    for (k, v) in map {
                        items.push((k.parse::<usize>().unwrap_or(0), typed(name, v)?));
                    }
                    items.sort_by_key(|(i, _)| *i);
                    Value::Array(items.into_iter().map(|(_, v)| v).collect())
                } else {
                    let mut object = serde_json::Map::new();
                    for (k, v) in map {
                        let v = typed(&k, v)?;
                        object.insert(k, v);
                    }
                    Value::Object(object)
                }
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_decode_to_their_index() {
        for data_type in ["customers", "charges", "subscriptions", "products"] {
            for index in [0, 1, 2, 99, 12_345, 999_999, 10_000_000] {
                let id = record_id(data_type, index);
                assert_eq!(index_of(data_type, &id), Some(index), "{id}");
                assert_ne!(index_of("invoices", &id), Some(index), "{id}");
            }
        }
        assert_eq!(record_id("customers", 7).len(), 18);
        assert_eq!(record_id("charges", 7).len(), 27);
        assert_eq!(index_of("customers", "cus_NffrFeUfNV2Hib"), None);
    }

    fn page(dataset: &Dataset, query: &[(&str, &str)]) -> (Vec<u64>, bool) {
        use actix_web::body::MessageBody;
        let query: Query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let response = list(dataset, "customers", &query, None);
        assert_eq!(response.status(), 200);
        let body = response.into_body().try_into_bytes().unwrap();
        let page: Value = serde_json::from_slice(&body).unwrap();
        let ids = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| index_of("customers", r["id"].as_str().unwrap()).unwrap())
            .collect();
        (ids, page["has_more"] == true)
    }

    #[test]
    fn lists_page_newest_first_and_back_by_id() {
        let dataset = Dataset {
            segments: vec![(0, crate::dataset::EPOCH_MS)],
            count: 25,
            ..Dataset::default()
        };
        let (first, more) = page(&dataset, &[("limit", "10")]);
        assert_eq!(first, (15..25).rev().collect::<Vec<_>>());
        assert!(more);
        let after = record_id("customers", 15);
        let (second, more) = page(&dataset, &[("limit", "10"), ("starting_after", &after)]);
        assert_eq!(second, (5..15).rev().collect::<Vec<_>>());
        assert!(more);
        let (last, more) = page(
            &dataset,
            &[
                ("limit", "10"),
                ("starting_after", &record_id("customers", 5)),
            ],
        );
        assert_eq!(last, (0..5).rev().collect::<Vec<_>>());
        assert!(!more);
        // `ending_before` goes back: the records just newer than the cursor, still newest first.
        let before = record_id("customers", 14);
        let (back, more) = page(&dataset, &[("limit", "10"), ("ending_before", &before)]);
        assert_eq!(back, first);
        assert!(!more, "nothing is newer than the first page");
        let (near, more) = page(&dataset, &[("limit", "3"), ("ending_before", &before)]);
        assert_eq!(near, vec![17, 16, 15]);
        assert!(more);
    }

    #[test]
    fn a_customer_is_about_one_kilobyte_of_json() {
        let mut total = 0;
        for index in 0..1000 {
            let mut text = String::new();
            write_customer(&mut text, index, 1_704_067_200 + index as i64);
            let value: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(value["object"], "customer");
            assert_eq!(value["id"], record_id("customers", index));
            total += text.len();
        }
        let average = total / 1000;
        assert!((900..1200).contains(&average), "{average} bytes");
    }
}
