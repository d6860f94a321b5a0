//! A local stand-in for the "who am I" endpoints of the API-key platforms, for black-box tests.
//!
//! Each platform lives under its own prefix (`/stripe/v1/account`, `/zendesk/api/v2/users/me.json`, …) and
//! checks the authentication exactly as the real platform does, answering wrong or missing credentials with
//! that platform's real error status and body shape. The expectations are written out by hand from the
//! platforms' documentation, not derived from ListBackup's catalog, so a catalog mistake fails the tests.
//!
//! Include it with `#[path = "support/platform_emulator.rs"] mod platform_emulator;`.
#![allow(dead_code)] // each test file uses a different part of it

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    /// Accepted credential sets per platform id.
    accepted: HashMap<String, Vec<Value>>,
    /// How many of the next requests answer 429.
    rate_limited: usize,
    /// Requests received per path (rate-limited ones included).
    hits: HashMap<String, usize>,
}

pub struct PlatformEmulator {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

impl PlatformEmulator {
    /// Starts the emulator on a free loopback port, on the current Tokio runtime.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the platform emulator to a loopback port");
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://{addr}"),
            state,
            handle,
        }
    }

    /// Accept these credentials for this platform (e.g. "stripe", {"secretKey": "sk_test_..."}).
    /// Field names are the ones ListBackup's connection form uses.
    pub fn accept(&self, platform_id: &str, credentials: Value) {
        self.state
            .lock()
            .unwrap()
            .accepted
            .entry(platform_id.to_owned())
            .or_default()
            .push(credentials);
    }

    /// The next `n` requests (to any path) answer 429 with `Retry-After: 1`.
    pub fn rate_limit_next(&self, n: usize) {
        self.state.lock().unwrap().rate_limited = n;
    }

    /// How many requests this path (without query) received.
    pub fn hits(&self, path: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.hits.get(path).copied().unwrap_or(0)
    }

    /// The API base URL for `LISTBACKUP_PLATFORM_<ID>_API_URL`: the real base path under the platform's prefix.
    pub fn api_url(&self, platform_id: &str) -> String {
        let base_path = match platform_id {
            "stripe" => "/stripe/v1",
            "keap" => "/keap/crm/rest/v1",
            "hubspot" => "/hubspot",
            "shopify" => "/shopify/admin/api/2026-10",
            "gohighlevel" => "/gohighlevel",
            "mailchimp" => "/mailchimp/3.0",
            "activecampaign" => "/activecampaign/api/3",
            "zendesk" => "/zendesk/api/v2",
            other => panic!("the platform emulator does not emulate {other}"),
        };
        format!("{}{base_path}", self.base_url)
    }
}

impl Drop for PlatformEmulator {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits for completion.
        drop(self.handle.stop(false));
    }
}

fn json_response(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status).json(body)
}

async fn handle(req: HttpRequest, state: web::Data<Mutex<State>>) -> HttpResponse {
    let path = req.path().to_owned();
    let accepted = {
        let mut state = state.lock().unwrap();
        *state.hits.entry(path.clone()).or_default() += 1;
        if state.rate_limited > 0 {
            state.rate_limited -= 1;
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", "1"))
                .json(json!({"error": "Too many requests, please slow down"}));
        }
        state.accepted.clone()
    };
    let creds = |platform: &str| accepted.get(platform).cloned().unwrap_or_default();
    let get = req.method() == actix_web::http::Method::GET;
    match path.as_str() {
        "/stripe/v1/account" if get => stripe(&req, &creds("stripe")),
        "/keap/crm/rest/v1/account/profile" if get => keap(&req, &creds("keap")),
        "/hubspot/account-info/v3/details" if get => hubspot(&req, &creds("hubspot")),
        "/shopify/admin/api/2026-10/shop.json" if get => shopify(&req, &creds("shopify")),
        "/mailchimp/3.0/ping" | "/mailchimp/3.0/" if get => mailchimp(&req, &creds("mailchimp")),
        "/activecampaign/api/3/users/me" if get => activecampaign(&req, &creds("activecampaign")),
        "/zendesk/api/v2/users/me.json" if get => zendesk(&req, &creds("zendesk")),
        p if get && p.starts_with("/gohighlevel/locations/") => {
            let location = &p["/gohighlevel/locations/".len()..];
            gohighlevel(&req, location, &creds("gohighlevel"))
        }
        _ => json_response(
            StatusCode::NOT_FOUND,
            json!({"error": "not found", "path": path}),
        ),
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name)?.to_str().ok()
}

/// The token of `Authorization: Bearer <token>` (the scheme is case-insensitive, RFC 9110).
fn bearer(req: &HttpRequest) -> Option<&str> {
    let (scheme, token) = header(req, "Authorization")?.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// `(user, password)` of `Authorization: Basic …`.
fn basic(req: &HttpRequest) -> Option<(String, String)> {
    let (scheme, encoded) = header(req, "Authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn field<'a>(creds: &'a Value, name: &str) -> &'a str {
    creds.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// The accepted credential set whose fields satisfy `matches`.
fn find_creds(accepted: &[Value], matches: impl Fn(&Value) -> bool) -> Option<&Value> {
    accepted.iter().find(|c| matches(c))
}

/// Stripe: `Authorization: Bearer <secret key>` (Basic with the key as user name works too).
fn stripe(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let key = bearer(req)
        .map(str::to_owned)
        .or_else(|| basic(req).map(|(user, _)| user));
    let error = |message: String| {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": {"message": message, "type": "invalid_request_error"}}),
        )
    };
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        return error(
            "You did not provide an API key. You need to provide your API key in the Authorization \
             header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY')."
                .to_owned(),
        );
    };
    match find_creds(accepted, |c| field(c, "secretKey") == key) {
        Some(_) => json_response(
            StatusCode::OK,
            json!({
                "id": "acct_1Nv0FGQ9RKHgCVdK",
                "object": "account",
                "business_profile": {"name": "Acme Test", "url": "https://acme.test"},
                "charges_enabled": true,
                "country": "US",
                "default_currency": "usd",
                "email": "billing@acme.test",
                "payouts_enabled": true,
                "settings": {"dashboard": {"display_name": "Acme Test", "timezone": "Etc/UTC"}},
                "type": "standard"
            }),
        ),
        // Stripe shows the key's prefix and last four characters, nothing more.
        None => error(format!(
            "Invalid API Key provided: {}",
            mask_stripe_key(&key)
        )),
    }
}

fn mask_stripe_key(key: &str) -> String {
    let prefix_len = key.match_indices('_').nth(1).map_or(0, |(i, _)| i + 1);
    let tail: String = key
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}{}{tail}", &key[..prefix_len], "*".repeat(20))
}

/// Keap (behind Apigee): `X-Keap-API-Key: <personal access token | service account key>`.
fn keap(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let key = header(req, "X-Keap-API-Key").unwrap_or_default();
    if key.is_empty() {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"fault": {"faultstring": "Invalid Access Token",
                             "detail": {"errorcode": "keymanagement.service.invalid_access_token"}}}),
        );
    }
    match find_creds(accepted, |c| field(c, "apiKey") == key) {
        Some(_) => json_response(
            StatusCode::OK,
            json!({
                "name": "Acme Test",
                "email": "owner@acme.test",
                "phone": "555-0100",
                "website": "https://acme.test",
                "time_zone": "America/New_York",
                "currency_code": "USD",
                "language_tag": "en-US",
                "business_type": "Consulting",
                "address": {"line1": "1 Main St", "locality": "Springfield", "country_code": "USA"}
            }),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"fault": {"faultstring": "Invalid ApiKey",
                             "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}),
        ),
    }
}

/// HubSpot: `Authorization: Bearer <private app token>`.
fn hubspot(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let error = |message: &str| {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({
                "status": "error",
                "message": message,
                "correlationId": "0b4b8a46-3a4b-4a8e-9c8c-2b1f7a7e9d11",
                "category": "INVALID_AUTHENTICATION"
            }),
        )
    };
    let Some(token) = bearer(req) else {
        return error(
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and \
             you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        );
    };
    match find_creds(accepted, |c| field(c, "accessToken") == token) {
        Some(_) => json_response(
            StatusCode::OK,
            json!({
                "portalId": 62515,
                "accountType": "STANDARD",
                "timeZone": "US/Eastern",
                "companyCurrency": "USD",
                "additionalCurrencies": [],
                "utcOffset": "-05:00",
                "utcOffsetMilliseconds": -18_000_000,
                "uiDomain": "app.hubspot.com",
                "dataHostingLocation": "na1"
            }),
        ),
        None => error("Authentication credentials not found or invalid."),
    }
}

/// Shopify Admin API: `X-Shopify-Access-Token: <admin API access token>`.
fn shopify(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let token = header(req, "X-Shopify-Access-Token").unwrap_or_default();
    let found = (!token.is_empty())
        .then(|| find_creds(accepted, |c| field(c, "adminApiAccessToken") == token))
        .flatten();
    match found {
        Some(creds) => {
            let shop = field(creds, "shop");
            json_response(
                StatusCode::OK,
                json!({"shop": {
                    "id": 548_380_009,
                    "name": "Acme Test Store",
                    "email": "owner@acme.test",
                    "domain": shop,
                    "myshopify_domain": shop,
                    "currency": "USD",
                    "iana_timezone": "America/New_York",
                    "plan_name": "basic",
                    "created_at": "2020-01-01T00:00:00-05:00"
                }}),
            )
        }
        None => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        ),
    }
}

/// HighLevel API v2: `Authorization: Bearer <private integration token>` plus a mandatory `Version` header.
fn gohighlevel(req: &HttpRequest, location_id: &str, accepted: &[Value]) -> HttpResponse {
    if header(req, "Version").is_none_or(str::is_empty) {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"statusCode": 400, "message": "Version header was not found", "error": "Bad Request"}),
        );
    }
    let token = bearer(req).unwrap_or_default();
    let Some(creds) = (!token.is_empty())
        .then(|| find_creds(accepted, |c| field(c, "privateIntegrationToken") == token))
        .flatten()
    else {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"statusCode": 401, "message": "Invalid JWT"}),
        );
    };
    if field(creds, "locationId") != location_id {
        return json_response(
            StatusCode::FORBIDDEN,
            json!({"statusCode": 403, "message": "The token does not have access to this location."}),
        );
    }
    json_response(
        StatusCode::OK,
        json!({"location": {
            "id": location_id,
            "companyId": "5DP4iH6HLkQsiKESj6rh",
            "name": "Acme Test Location",
            "email": "owner@acme.test",
            "timezone": "America/New_York",
            "country": "US"
        }}),
    )
}

/// Mailchimp Marketing API: HTTP Basic, any user name, the API key as password.
fn mailchimp(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let problem = |title: &str, detail: &str| {
        HttpResponse::Unauthorized()
            .content_type("application/problem+json; charset=utf-8")
            .body(
                json!({
                    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
                    "title": title,
                    "status": 401,
                    "detail": detail,
                    "instance": "6c4d9a3e-6f0e-4b6f-9a55-1d8e1f0b1e2a"
                })
                .to_string(),
            )
    };
    let Some((_, key)) = basic(req).filter(|(_, key)| !key.is_empty()) else {
        return problem(
            "API Key Missing",
            "Your request did not include an API key.",
        );
    };
    match find_creds(accepted, |c| field(c, "apiKey") == key) {
        // The API root names the account; `/ping` only says the key works.
        Some(_) if req.path().ends_with("/ping") => json_response(
            StatusCode::OK,
            json!({"health_status": "Everything's Chimpy!"}),
        ),
        Some(_) => json_response(
            StatusCode::OK,
            json!({"account_id": "8d3a3db4d97663a9074efcc16", "login_id": "1234567",
                   "account_name": "Acme Newsletters", "email": "owner@acme.test"}),
        ),
        None => problem(
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        ),
    }
}

/// ActiveCampaign API v3: `Api-Token: <key>`.
fn activecampaign(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    let token = header(req, "Api-Token").unwrap_or_default();
    let found = (!token.is_empty())
        .then(|| find_creds(accepted, |c| field(c, "apiKey") == token))
        .flatten();
    match found {
        Some(_) => json_response(
            StatusCode::OK,
            json!({"user": {
                "id": "1",
                "username": "admin",
                "firstName": "Ada",
                "lastName": "Admin",
                "email": "admin@acme.test",
                "phone": "",
                "signature": null,
                "links": {"lists": "https://acme.api-us1.com/api/3/users/1/lists"}
            }}),
        ),
        // ActiveCampaign answers a wrong or missing token with 403.
        None => json_response(StatusCode::FORBIDDEN, json!({"message": "Forbidden"})),
    }
}

/// Zendesk: HTTP Basic `<email>/token:<api token>`. Without any credentials `users/me` answers 200 with
/// the anonymous user, as the real one does; wrong credentials get 401.
fn zendesk(req: &HttpRequest, accepted: &[Value]) -> HttpResponse {
    if header(req, "Authorization").is_none() {
        return json_response(
            StatusCode::OK,
            json!({"user": {"id": null, "url": null, "name": "Anonymous user",
                            "email": "invalid@example.com", "role": "end-user", "active": true}}),
        );
    }
    let found = basic(req).and_then(|(user, password)| {
        let email = user.strip_suffix("/token")?.to_owned();
        find_creds(accepted, |c| {
            field(c, "email") == email && field(c, "apiToken") == password
        })
    });
    match found {
        Some(creds) => json_response(
            StatusCode::OK,
            json!({"user": {
                "id": 35_436,
                "url": format!("https://{}.zendesk.com/api/v2/users/35436.json", field(creds, "subdomain")),
                "name": "Agent Smith",
                "email": field(creds, "email"),
                "role": "admin",
                "active": true,
                "time_zone": "Eastern Time (US & Canada)"
            }}),
        ),
        None => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"error": "Couldn't authenticate you"}),
        ),
    }
}
