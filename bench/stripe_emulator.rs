//! A standalone emulation of Stripe's list API for the jobs benchmarks (run by a person, never by the tests),
//! and the plain HTTP client that drains it for comparison.
//!
//!   stripe_emulator serve [--port 0] [--workers 1] [--latency-ms 0]
//!   stripe_emulator drain --url http://127.0.0.1:PORT/v1 --key sk_test_bench_1000000 [--data-type customers]
//!
//! `serve` prints `{"port": P}` on stdout once it listens, then answers until SIGTERM or SIGINT:
//!
//! - `GET /v1/customers`: Stripe's list shape `{"object":"list","data":[…],"has_more":…,"url":"/v1/customers"}`,
//!   newest first, `limit` 1–100 (default 10), `starting_after` / `ending_before` (ids), `created` and
//!   `created[gt|gte|lt|lte]` (unix seconds); an unknown parameter is a 400 `parameter_unknown`, a bad value a
//!   400 `parameter_invalid`, an unknown cursor id a 400 `resource_missing`, as Stripe answers them.
//! - `GET /v1/account`: what `POST /connections/{id}/test` calls.
//! - Authentication as Stripe's: `Authorization: Bearer <key>`, or Basic with the key as the user name; a
//!   missing or refused key is a 401 with Stripe's error body. Other paths are Stripe's 404.
//! - `--latency-ms`: every answer above is sent that many milliseconds after its request arrived, as a distant
//!   platform's would be. The delay is an async timer, so a waiting answer holds no thread: one worker
//!   thread keeps any number of requests waiting at once.
//! - `GET /_emulator/stats` (not Stripe's; no key, no delay): `{"requests": N, "inFlightPeak": M}`, the
//!   Stripe requests answered or under way so far and the most that were under way at once.
//!
//! The key names the data set, so one emulator serves every size a benchmark needs: `sk_test_bench_<N>` sees N
//! customers. Records are computed from their index when a page asks for them (nothing is stored, so the
//! emulator's memory does not depend on N): deterministic, about 1 KB of compact JSON each, shaped like a
//! Stripe customer of API version 2024-06-20, with ids that look like Stripe's (`cus_` + 14 base62 characters)
//! and decode back to their index. Record `i` was created `i` minutes after 2024-01-01T00:00:00Z.
//!
//! `drain` is the baseline of `bench/backup-throughput`: one sequential keep-alive connection pages through a
//! data set with `limit=100` and `starting_after`, parses every body into JSON values (what any client has to
//! do to find the records and the next cursor), counts the records, and prints one JSON summary.

// Handler steps return the error response itself as `Err`; an answer's size on the stack does not matter here.
#![allow(clippy::result_large_err)]

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

/// 2024-01-01T00:00:00Z, in unix seconds.
const EPOCH_SECONDS: u64 = 1_704_067_200;
/// Record `i` is created this many seconds after record `i - 1`.
const CREATED_STEP: u64 = 60;
/// The accepted keys: this prefix, then the number of records the key sees.
const KEY_PREFIX: &str = "sk_test_bench_";

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Ids spread the index over 10 base62 digits with an affine map modulo 62^10 (a bijection: the multiplier is
/// odd and not a multiple of 31), then 4 check digits, so they look random and still decode to their index.
const ID_MODULUS: u128 = 839_299_365_868_340_224; // 62^10
const ID_MULTIPLIER: u128 = 0x5DEE_CE66_D1CE_4E5B % ID_MODULUS;
const ID_OFFSET: u128 = 0x2545_F491_4F6C_DD1D % ID_MODULUS;

fn usage(message: &str) -> ! {
    eprintln!("stripe_emulator: {message}");
    eprintln!(
        "usage: stripe_emulator serve [--port 0] [--workers 1]\n       stripe_emulator drain --url URL --key KEY [--data-type customers]"
    );
    std::process::exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| usage("serve or drain?"));
    let mut flags = std::collections::HashMap::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        flags.insert(flag, value);
    }
    let take =
        |flags: &mut std::collections::HashMap<String, String>, name: &str| flags.remove(name);
    let code = match mode.as_str() {
        "serve" => {
            let port: u16 = take(&mut flags, "--port")
                .map(|p| p.parse().unwrap_or_else(|_| usage("bad --port")))
                .unwrap_or(0);
            let workers: usize = take(&mut flags, "--workers")
                .map(|w| w.parse().unwrap_or_else(|_| usage("bad --workers")))
                .unwrap_or(1);
            let latency_ms: u64 = take(&mut flags, "--latency-ms")
                .map(|l| l.parse().unwrap_or_else(|_| usage("bad --latency-ms")))
                .unwrap_or(0);
            if let Some(flag) = flags.keys().next() {
                usage(&format!("unknown argument {flag}"));
            }
            serve(port, workers.max(1), Duration::from_millis(latency_ms))
        }
        "drain" => {
            let url = take(&mut flags, "--url").unwrap_or_else(|| usage("--url is required"));
            let key = take(&mut flags, "--key").unwrap_or_else(|| usage("--key is required"));
            let data_type =
                take(&mut flags, "--data-type").unwrap_or_else(|| "customers".to_owned());
            if let Some(flag) = flags.keys().next() {
                usage(&format!("unknown argument {flag}"));
            }
            drain(url.trim_end_matches('/'), &key, &data_type)
        }
        "-h" | "--help" => usage("help"),
        other => usage(&format!("unknown mode {other}")),
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------------------
// The server

/// Stripe's answers carry a `Request-Id`; a counter is enough to make them distinct.
static REQUESTS: AtomicU64 = AtomicU64::new(0);
/// Stripe requests under way now (arrived, not answered yet), and the most there ever were.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static IN_FLIGHT_PEAK: AtomicU64 = AtomicU64::new(0);

/// Counts a request as under way until dropped (answered, or abandoned by its client mid-delay).
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        let now = IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1;
        IN_FLIGHT_PEAK.fetch_max(now, Ordering::Relaxed);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

fn serve(port: u16, workers: usize, latency: Duration) -> i32 {
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(latency))
                .route("/_emulator/stats", web::get().to(stats))
                .default_service(web::to(handle))
        })
        .workers(workers)
        .bind(("127.0.0.1", port));
        let server = match server {
            Ok(server) => server,
            Err(err) => {
                eprintln!("stripe_emulator: cannot listen on port {port}: {err}");
                return 1;
            }
        };
        let port = server.addrs()[0].port();
        println!("{}", json!({ "port": port }));
        match server.run().await {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("stripe_emulator: {err}");
                1
            }
        }
    })
}

async fn stats() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "requests": REQUESTS.load(Ordering::Relaxed),
        "inFlightPeak": IN_FLIGHT_PEAK.load(Ordering::Relaxed),
    }))
}

async fn handle(req: HttpRequest, latency: web::Data<Duration>) -> HttpResponse {
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let _in_flight = InFlight::enter();
    if !latency.is_zero() {
        // A timer on the worker's event loop: the thread serves other requests meanwhile.
        actix_web::rt::time::sleep(**latency).await;
    }
    let mut response = route(&req);
    if let Ok(value) = format!("req_bench{n:012}").parse() {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("request-id"),
            value,
        );
    }
    response
}

fn route(req: &HttpRequest) -> HttpResponse {
    let path = req.path();
    let records = match authenticate(req) {
        Ok(records) => records,
        Err(denied) => return denied,
    };
    if req.method() != actix_web::http::Method::GET {
        return not_found(req.method().as_str(), path);
    }
    match path.trim_end_matches('/') {
        "/v1/account" => HttpResponse::Ok().json(json!({
            "id": "acct_1BenchEmulation0", "object": "account", "type": "standard",
            "business_profile": {"name": "ListBackup benchmark", "url": null},
            "country": "US", "default_currency": "usd", "email": "bench@example.com",
            "charges_enabled": true, "payouts_enabled": true, "details_submitted": true,
        })),
        "/v1/customers" => list_customers(records, req.query_string()),
        _ => not_found("GET", path),
    }
}

/// The number of records the request's key sees, or Stripe's 401.
fn authenticate(req: &HttpRequest) -> Result<u64, HttpResponse> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let key = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim().to_owned(),
        Some((scheme, encoded)) if scheme.eq_ignore_ascii_case("basic") => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .unwrap_or_default();
            decoded
                .split_once(':')
                .map_or(decoded.clone(), |(user, _)| user.to_owned())
        }
        _ => String::new(),
    };
    let error = |message: String| {
        HttpResponse::Unauthorized()
            .json(json!({"error": {"message": message, "type": "invalid_request_error"}}))
    };
    if key.is_empty() {
        return Err(error(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_owned(),
        ));
    }
    match key.strip_prefix(KEY_PREFIX).map(str::parse::<u64>) {
        Some(Ok(records)) => Ok(records),
        _ => {
            // Stripe shows the key's kind and mode (`sk_test_`) and its last four characters only.
            let tail: String = key
                .chars()
                .skip(key.chars().count().saturating_sub(4))
                .collect();
            let prefix = key
                .match_indices('_')
                .nth(1)
                .map_or("", |(i, _)| &key[..=i]);
            Err(error(format!(
                "Invalid API Key provided: {prefix}{}{tail}",
                "*".repeat(20)
            )))
        }
    }
}

fn not_found(method: &str, path: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({"error": {"type": "invalid_request_error",
        "message": format!("Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.")}}))
}

fn invalid(param: &str, code: &str, message: String) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({"error": {"type": "invalid_request_error",
        "code": code, "param": param, "message": message}}))
}

fn created(index: u64) -> u64 {
    EPOCH_SECONDS + index * CREATED_STEP
}

/// The first index created at or after `seconds` (creation times grow with the index).
fn first_created_at_or_after(seconds: i64) -> u64 {
    let since_epoch = seconds - EPOCH_SECONDS as i64;
    if since_epoch <= 0 {
        0
    } else {
        (since_epoch as u64).div_ceil(CREATED_STEP)
    }
}

fn list_customers(count: u64, query: &str) -> HttpResponse {
    let mut limit = 10u64;
    // Records in [lo, hi) pass the `created` filters.
    let (mut lo, mut hi) = (0u64, count);
    let mut starting_after = None;
    let mut ending_before = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let seconds = || {
            value.parse::<i64>().map_err(|_| {
                invalid(
                    &name,
                    "parameter_invalid",
                    format!("Invalid integer: {value}"),
                )
            })
        };
        match name.as_ref() {
            "limit" => match value.parse::<u64>() {
                Ok(n) if (1..=100).contains(&n) => limit = n,
                _ => {
                    return invalid(
                        "limit",
                        "parameter_invalid",
                        "This value must be less than or equal to 100.".into(),
                    )
                }
            },
            "starting_after" | "ending_before" => {
                let Some(index) = customer_index(&value).filter(|i| *i < count) else {
                    return invalid(
                        &name,
                        "resource_missing",
                        format!("No such customer: '{value}'"),
                    );
                };
                if name == "starting_after" {
                    starting_after = Some(index);
                } else {
                    ending_before = Some(index);
                }
            }
            "created" | "created[gt]" | "created[gte]" | "created[lt]" | "created[lte]" => {
                let s = match seconds() {
                    Ok(s) => s,
                    Err(denied) => return denied,
                };
                let at_or_after = |s: i64| first_created_at_or_after(s).min(count);
                match name.as_ref() {
                    "created" => (lo, hi) = (lo.max(at_or_after(s)), hi.min(at_or_after(s + 1))),
                    "created[gt]" => lo = lo.max(at_or_after(s + 1)),
                    "created[gte]" => lo = lo.max(at_or_after(s)),
                    "created[lt]" => hi = hi.min(at_or_after(s)),
                    _ => hi = hi.min(at_or_after(s + 1)),
                }
            }
            other => {
                return invalid(
                    other,
                    "parameter_unknown",
                    format!("Received unknown parameter: {other}"),
                )
            }
        }
    }
    if starting_after.is_some() && ending_before.is_some() {
        return invalid(
            "ending_before",
            "parameter_invalid",
            "You may only specify one of these parameters: ending_before, starting_after.".into(),
        );
    }
    // Newest first: a page is a run of indices going down.
    let (page, has_more) = match ending_before {
        // The `limit` records just newer than the cursor, still listed newest first.
        Some(before) => {
            let from = lo.max(before + 1);
            let to = hi.max(from).min(from + limit);
            ((from..to).rev().collect::<Vec<_>>(), to < hi)
        }
        None => {
            let below = starting_after.map_or(hi, |after| after.min(hi));
            let to = below.max(lo);
            let from = to.saturating_sub(limit).max(lo);
            ((from..to).rev().collect(), from > lo)
        }
    };
    let mut body = String::with_capacity(64 + page.len() * 1100);
    body.push_str(r#"{"object":"list","data":["#);
    for (i, index) in page.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        write_customer(&mut body, *index);
    }
    let _ = write!(body, r#"],"has_more":{has_more},"url":"/v1/customers"}}"#);
    HttpResponse::build(StatusCode::OK)
        .content_type("application/json")
        .body(body)
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

/// `prefix_` + 14 base62 characters: 10 carry the index, 4 check them.
fn write_id(out: &mut String, prefix: &str, index: u64) {
    out.push_str(prefix);
    out.push('_');
    let spread = (index as u128 * ID_MULTIPLIER + ID_OFFSET) % ID_MODULUS;
    push_base62(out, spread, 10);
    push_base62(out, (mix(index, 7) % 14_776_336) as u128, 4); // 62^4
}

fn customer_index(id: &str) -> Option<u64> {
    let body = id.strip_prefix("cus_")?;
    if body.len() != 14 || !body.is_ascii() {
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
    let mut check = String::with_capacity(20);
    write_id(&mut check, "cus", index);
    (check == id).then_some(index)
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

/// One customer as Stripe (API 2024-06-20) serializes it, compact, about 1 KB.
fn write_customer(out: &mut String, index: u64) {
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
    let created = created(index);
    let mut id = String::with_capacity(20);
    write_id(&mut id, "cus", index);
    let mut card = String::with_capacity(32);
    write_id(&mut card, "card", index ^ 0x5555);
    let mut method = String::with_capacity(32);
    write_id(&mut method, "pm", index ^ 0xAAAA);
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
        year = 2024 + index / 525_600,
    );
    if has_discount {
        let _ = write!(
            out,
            r#""discount":{{"id":"di_{id_tail}","object":"discount","coupon":{{"id":"WELCOME20","object":"coupon","duration":"once","percent_off":20.0,"valid":true}},"customer":"{id}","start":{created}}},"#,
            id_tail = &id[4..],
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

// ---------------------------------------------------------------------------------------------------------
// The plain client

fn drain(url: &str, key: &str, data_type: &str) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    runtime.block_on(async {
        match drain_pages(url, key, data_type).await {
            Ok(summary) => {
                println!("{summary}");
                0
            }
            Err(err) => {
                eprintln!("stripe_emulator drain: {err}");
                1
            }
        }
    })
}

async fn drain_pages(url: &str, key: &str, data_type: &str) -> Result<Value, String> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let endpoint = format!("{url}/{data_type}");
    let (mut records, mut pages, mut bytes) = (0u64, 0u64, 0u64);
    let mut starting_after: Option<String> = None;
    let started = Instant::now();
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(id) = &starting_after {
            query.push(("starting_after", id.clone()));
        }
        let response = http
            .get(&endpoint)
            .query(&query)
            .bearer_auth(key)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("page {}: {e}", pages + 1))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("page {}: {e}", pages + 1))?;
        if !status.is_success() {
            return Err(format!(
                "page {}: HTTP {status}: {}",
                pages + 1,
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        bytes += body.len() as u64;
        let page: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let data = page["data"]
            .as_array()
            .ok_or("an answer without a `data` list")?;
        pages += 1;
        records += data.len() as u64;
        let has_more = page["has_more"].as_bool().unwrap_or(false);
        match data.last().and_then(|r| r["id"].as_str()) {
            Some(id) if has_more => starting_after = Some(id.to_owned()),
            _ => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "records": records,
        "pages": pages,
        "bytes": bytes,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "records_per_second": (records as f64 / seconds).round() as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_decode_to_their_index() {
        for index in [0, 1, 2, 99, 12_345, 999_999, 10_000_000] {
            let mut id = String::new();
            write_id(&mut id, "cus", index);
            assert_eq!(id.len(), 18, "{id}");
            assert_eq!(customer_index(&id), Some(index), "{id}");
        }
        assert_eq!(customer_index("cus_NffrFeUfNV2Hib"), None);
    }

    #[test]
    fn a_customer_is_about_one_kilobyte_of_json() {
        let mut total = 0;
        for index in 0..1000 {
            let mut record = String::new();
            write_customer(&mut record, index);
            let value: Value = serde_json::from_str(&record).unwrap();
            assert_eq!(value["object"], "customer");
            total += record.len();
        }
        let average = total / 1000;
        assert!((900..1200).contains(&average), "{average} bytes");
    }
}
