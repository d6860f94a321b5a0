//! A local OAuth provider emulation for the nine OAuth platforms, for black-box tests: the authorization
//! endpoint (consents at once and redirects with a code), the token endpoint (authorization code with PKCE S256
//! verification, refresh grant with rotation, `invalid_grant`), and each platform's user-info endpoint.
//!
//! Each platform lives under its own prefix: `/<platform>/authorize`, `/<platform>/token`, `/<platform>/api/...`
//! (Shopify: `/shopify/<shop>/admin/oauth/{authorize,access_token}`, each shop its own server; Zendesk:
//! `/zendesk/<subdomain>/oauth/{authorizations/new,tokens}`, each account its own server). The expectations
//! are written by hand from the platforms' documentation (client authentication by HTTP Basic for Intuit only,
//! Shopify's token answer without `token_type` or refresh token, Stripe's `stripe_user_id`, HighLevel's
//! `locationId`, which platforms rotate refresh tokens), not derived from ListBackup's code.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const PLATFORMS: [&str; 10] = [
    "zendesk",
    "google",
    "hubspot",
    "gohighlevel",
    "dropbox",
    "box",
    "quickbooks",
    "shopify",
    "keap",
    "stripe",
];

pub const REALM_ID: &str = "9130354771251366";
pub const LOCATION_ID: &str = "ve9EPM428h8vShlRW1KT";
pub const STRIPE_ACCOUNT: &str = "acct_1EmuLATEDxyz";

/// What the authorization endpoint received.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub platform: String,
    /// The account's own authorization server: Shopify's shop, Zendesk's subdomain.
    pub shop: Option<String>,
    pub params: BTreeMap<String, String>,
}

/// What the token endpoint received (secrets left out).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub platform: String,
    pub grant_type: String,
    /// The client authenticated with `Authorization: Basic`.
    pub basic_auth: bool,
    /// The client sent `client_secret` in the body.
    pub secret_in_body: bool,
    /// Status answered.
    pub status: u16,
}

struct Code {
    platform: String,
    shop: Option<String>,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    /// The scopes the authorization asked for.
    scope: String,
}

struct State {
    clients: HashMap<String, (String, String)>,
    codes: HashMap<String, Code>,
    /// refresh token → (platform, still valid)
    refresh_tokens: HashMap<String, (String, bool)>,
    /// access token → platform
    access_tokens: HashMap<String, String>,
    authorize_requests: Vec<AuthorizeRequest>,
    token_requests: Vec<TokenRequest>,
    /// Seconds announced in `expires_in` of tokens issued for an authorization code (refreshed tokens: an hour).
    lifetime: u64,
    refresh_delay: Duration,
    token_endpoint_down: bool,
    deny_next: bool,
    counter: u64,
    /// platform → (data API base URL, its secret): the resource server behind this authorization server.
    data_upstreams: HashMap<String, (String, String)>,
}

pub struct OauthProvider {
    pub base_url: String,
    state: Arc<Mutex<State>>,
    handle: ServerHandle,
}

pub fn client_id(platform: &str) -> String {
    format!("client-{platform}")
}

pub fn client_secret(platform: &str) -> String {
    format!("secret-{platform}-s3cr3t")
}

impl OauthProvider {
    pub async fn start() -> Self {
        let clients = PLATFORMS
            .iter()
            .map(|p| (p.to_string(), (client_id(p), client_secret(p))))
            .collect();
        let state = Arc::new(Mutex::new(State {
            clients,
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            access_tokens: HashMap::new(),
            authorize_requests: Vec::new(),
            token_requests: Vec::new(),
            lifetime: 3600,
            refresh_delay: Duration::ZERO,
            token_endpoint_down: false,
            deny_next: false,
            counter: 0,
            data_upstreams: HashMap::new(),
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                // Uploads forwarded to the file platforms (a restore's, up to a few MiB).
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(handle))
        })
        .workers(2)
        .disable_signals()
        .bind(("127.0.0.1", 0))
        .expect("bind the OAuth provider emulation to a loopback port");
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

    /// Configuration keys pointing every OAuth platform at this emulation.
    pub fn configure(&self, values: &mut BTreeMap<String, String>) {
        for p in PLATFORMS {
            let id = p.to_ascii_uppercase();
            let (auth, token) = if p == "shopify" {
                (
                    format!("{}/shopify/{{shop}}/admin/oauth/authorize", self.base_url),
                    format!(
                        "{}/shopify/{{shop}}/admin/oauth/access_token",
                        self.base_url
                    ),
                )
            } else if p == "zendesk" {
                (
                    format!(
                        "{}/zendesk/{{subdomain}}/oauth/authorizations/new",
                        self.base_url
                    ),
                    format!("{}/zendesk/{{subdomain}}/oauth/tokens", self.base_url),
                )
            } else {
                (
                    format!("{}/{p}/authorize", self.base_url),
                    format!("{}/{p}/token", self.base_url),
                )
            };
            values.insert(format!("LISTBACKUP_PLATFORM_{id}_AUTH_URL"), auth);
            values.insert(format!("LISTBACKUP_PLATFORM_{id}_TOKEN_URL"), token);
            values.insert(
                format!("LISTBACKUP_PLATFORM_{id}_API_URL"),
                format!("{}/{p}/api", self.base_url),
            );
            values.insert(format!("LISTBACKUP_PLATFORM_{id}_CLIENT_ID"), client_id(p));
            values.insert(
                format!("LISTBACKUP_PLATFORM_{id}_CLIENT_SECRET"),
                client_secret(p),
            );
        }
    }

    /// `expires_in` of the tokens issued for authorization codes from now on (refreshed ones last an hour).
    pub fn set_lifetime(&self, seconds: u64) {
        self.state.lock().unwrap().lifetime = seconds;
    }

    /// The refresh grant waits this long before answering (to make concurrent refreshes overlap).
    pub fn set_refresh_delay(&self, delay: Duration) {
        self.state.lock().unwrap().refresh_delay = delay;
    }

    /// The token endpoint answers 503 to everything.
    pub fn set_token_endpoint_down(&self, down: bool) {
        self.state.lock().unwrap().token_endpoint_down = down;
    }

    /// The next authorization is refused by the customer (`error=access_denied`).
    pub fn deny_next(&self) {
        self.state.lock().unwrap().deny_next = true;
    }

    /// Data paths of `platform`'s API (anything but its user-info paths) are answered by the platform data
    /// emulation at `base`, which accepts `secret`: this provider checks the access token as the real resource
    /// server does (a token it issued, still valid), then forwards the request with `secret`.
    pub fn serve_data(&self, platform: &str, base: &str, secret: &str) {
        self.state
            .lock()
            .unwrap()
            .data_upstreams
            .insert(platform.to_owned(), (base.to_owned(), secret.to_owned()));
    }

    /// Every access token issued so far for `platform` stops working before its expiry (revoked, or the
    /// customer changed a password); refresh tokens stay valid.
    pub fn revoke_access_tokens(&self, platform: &str) {
        self.state
            .lock()
            .unwrap()
            .access_tokens
            .retain(|_, p| p != platform);
    }

    /// Every refresh token issued so far is revoked (the customer disconnected the app).
    pub fn revoke_refresh_tokens(&self) {
        for (_, valid) in self.state.lock().unwrap().refresh_tokens.values_mut() {
            *valid = false;
        }
    }

    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.state.lock().unwrap().authorize_requests.clone()
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.lock().unwrap().token_requests.clone()
    }

    /// Successful refresh grants answered for `platform`.
    pub fn refreshes(&self, platform: &str) -> usize {
        self.token_requests()
            .iter()
            .filter(|r| {
                r.platform == platform && r.grant_type == "refresh_token" && r.status == 200
            })
            .count()
    }

    /// Refresh grants refused with `invalid_grant`.
    pub fn refused_refreshes(&self, platform: &str) -> usize {
        self.token_requests()
            .iter()
            .filter(|r| {
                r.platform == platform && r.grant_type == "refresh_token" && r.status == 400
            })
            .count()
    }

    /// Whether an access token is one this emulation issued and still honours.
    pub fn is_valid_access_token(&self, token: &str) -> bool {
        self.state.lock().unwrap().access_tokens.contains_key(token)
    }
}

impl Drop for OauthProvider {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"error": error, "error_description": description}))
}

fn query(req: &HttpRequest) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// Which platform and account host (Shopify's shop, Zendesk's subdomain) a path is for, and what is left of
/// it.
fn route(path: &str) -> Option<(String, Option<String>, String)> {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let platform = parts.next()?.to_owned();
    let rest = format!("/{}", parts.next().unwrap_or(""));
    if matches!(platform.as_str(), "shopify" | "zendesk") && !rest.starts_with("/api/") {
        let mut parts = rest.trim_start_matches('/').splitn(2, '/');
        let host = parts.next()?.to_owned();
        let rest = match (platform.as_str(), parts.next()?) {
            ("shopify", "admin/oauth/authorize") | ("zendesk", "oauth/authorizations/new") => {
                "/authorize"
            }
            ("shopify", "admin/oauth/access_token") | ("zendesk", "oauth/tokens") => "/token",
            _ => return None,
        };
        return Some((platform, Some(host), rest.to_owned()));
    }
    Some((platform, None, rest))
}

async fn handle(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<Mutex<State>>,
) -> HttpResponse {
    let Some((platform, shop, rest)) = route(req.path()) else {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint");
    };
    if !PLATFORMS.contains(&platform.as_str()) {
        return oauth_error(StatusCode::NOT_FOUND, "not_found", "no such platform");
    }
    match rest.as_str() {
        "/authorize" if req.method() == actix_web::http::Method::GET => {
            authorize(&req, &platform, shop, &state)
        }
        "/token" if req.method() == actix_web::http::Method::POST => {
            token(&req, &body, &platform, shop, &state).await
        }
        api if api.starts_with("/api/") => {
            let upstream = state.lock().unwrap().data_upstreams.get(&platform).cloned();
            let answer = user_info(&req, &platform, &api[4..], &state);
            match upstream {
                // A valid token on a path that is not user info: the data API's answer.
                Some((base, secret)) if answer.status() == StatusCode::NOT_FOUND => {
                    forward(&req, &platform, &body, &base, &api[4..], &secret).await
                }
                _ => answer,
            }
        }
        _ => oauth_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// Sends a data request on to the data emulation with its own secret (in the platform's header: Shopify's
/// `X-Shopify-Access-Token`, a Bearer token elsewhere), and its answer back: the method, the body and the
/// headers a platform reads (`Content-Type`, `Accept`, HighLevel's `Version`, Dropbox's `Dropbox-API-Arg`), and
/// the answer's status, body and the headers a client reads, with next-page links pointing at this provider (a
/// redirect's `Location` is passed on, not followed).
async fn forward(
    req: &HttpRequest,
    platform: &str,
    body: &web::Bytes,
    base: &str,
    path: &str,
    secret: &str,
) -> HttpResponse {
    let query = req.query_string();
    // Box's upload host (`https://upload.box.com/api/2.0`, configured as `…/box/api/upload`) is served by
    // the emulation beside its API (`/box/upload/api/2.0` next to `/box/2.0`).
    let (base, path) = match (platform, path.strip_prefix("/upload/")) {
        ("box", Some(rest)) => (
            base.trim_end_matches("/2.0").to_owned(),
            format!("/upload/api/2.0/{rest}"),
        ),
        _ => (base.to_owned(), path.to_owned()),
    };
    let (base, path) = (base.as_str(), path.as_str());
    let url = if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    };
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes()).unwrap();
    let mut request = no_redirects().request(method, url).body(body.to_vec());
    request = if platform == "shopify" {
        request.header("X-Shopify-Access-Token", secret)
    } else {
        request.bearer_auth(secret)
    };
    // QuickBooks answers XML unless asked for JSON; HighLevel wants its version; Dropbox reads its argument.
    for name in [
        "content-type",
        "accept",
        "version",
        "dropbox-api-arg",
        "x-upload-content-type",
        "x-upload-content-length",
    ] {
        if let Some(value) = req.headers().get(name) {
            request = request.header(name, value.as_bytes());
        }
    }
    // The data emulation's answer lost on its way (a fault asked for): so is this one.
    let Ok(answer) = request.send().await else {
        return lost();
    };
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let mut response = HttpResponse::build(status);
    let own_base = {
        let connection = req.connection_info();
        format!(
            "{}://{}/{platform}/api",
            connection.scheme(),
            connection.host()
        )
    };
    for name in [
        "content-type",
        "retry-after",
        "link",
        "location",
        "dropbox-api-result",
        "www-authenticate",
    ] {
        if let Some(value) = answer.headers().get(name) {
            let value = value.to_str().unwrap_or_default();
            // Next-page links name the data emulation: they are rewritten to come back here.
            // So do the session URIs of Drive's resumable uploads (`Location` on the API's own host).
            let value = if name == "link" || name == "location" {
                value.replace(base, &own_base)
            } else {
                value.to_owned()
            };
            response.insert_header((name, value));
        }
    }
    match answer.bytes().await {
        Ok(body) => response.body(body),
        Err(_) => lost(),
    }
}

/// An answer whose body breaks before its first byte: the connection closes, as the data emulation's did.
fn lost() -> HttpResponse {
    HttpResponse::Ok().streaming(futures::stream::once(async {
        Err::<web::Bytes, _>(std::io::Error::other(
            "the data emulation's answer was lost",
        ))
    }))
}

fn authorize(
    req: &HttpRequest,
    platform: &str,
    shop: Option<String>,
    state: &Mutex<State>,
) -> HttpResponse {
    let params = query(req);
    let mut st = state.lock().unwrap();
    st.authorize_requests.push(AuthorizeRequest {
        platform: platform.to_owned(),
        shop: shop.clone(),
        params: params.clone(),
    });
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let (expected_client, _) = st.clients[platform].clone();
    // Invalid requests are shown to the user, never redirected (RFC 6749 §4.1.2.1).
    if get("response_type") != "code" || get("client_id") != expected_client {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "bad client or response_type",
        );
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() < 43 {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "PKCE S256 required",
        );
    }
    let redirect_uri = get("redirect_uri");
    if redirect_uri.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "redirect_uri required",
        );
    }
    let mut location = url::Url::parse(&redirect_uri).unwrap();
    if std::mem::take(&mut st.deny_next) {
        location
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied access")
            .append_pair("state", &get("state"));
    } else {
        st.counter += 1;
        let code = format!("code-{platform}-{}-{}", st.counter, rand::random::<u64>());
        st.codes.insert(
            code.clone(),
            Code {
                platform: platform.to_owned(),
                shop: shop.clone(),
                client_id: get("client_id"),
                redirect_uri: redirect_uri.clone(),
                challenge: get("code_challenge"),
                scope: get("scope"),
            },
        );
        let mut pairs = location.query_pairs_mut();
        pairs
            .append_pair("code", &code)
            .append_pair("state", &get("state"));
        match platform {
            "quickbooks" => {
                pairs.append_pair("realmId", REALM_ID);
            }
            "shopify" => {
                // Signed like Shopify does: HMAC-SHA256(client secret) over the sorted other parameters.
                let shop = shop.clone().unwrap_or_default();
                let state = get("state");
                let mut signed = [
                    ("code", code.as_str()),
                    ("host", "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZW11"),
                    ("shop", shop.as_str()),
                    ("state", state.as_str()),
                    ("timestamp", "1700000000"),
                ];
                signed.sort();
                let message = signed
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("&");
                let secret = client_secret("shopify");
                let mac = hmac_sha256_hex(secret.as_bytes(), message.as_bytes());
                pairs
                    .append_pair("shop", &shop)
                    .append_pair("host", "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvZW11")
                    .append_pair("timestamp", "1700000000")
                    .append_pair("hmac", &mac);
            }
            "google" => {
                pairs.append_pair("scope", &get("scope"));
            }
            _ => {}
        }
    }
    HttpResponse::Found()
        .insert_header(("Location", location.to_string()))
        .finish()
}

fn basic_credentials(req: &HttpRequest) -> Option<(String, String)> {
    let value = req.headers().get("Authorization")?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(user), unescape(password)))
}

async fn token(
    req: &HttpRequest,
    body: &[u8],
    platform: &str,
    shop: Option<String>,
    state: &Mutex<State>,
) -> HttpResponse {
    let form: BTreeMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let grant_type = form.get("grant_type").cloned().unwrap_or_default();
    let basic = basic_credentials(req);
    let basic_auth = basic.is_some();
    let record = |status: u16| TokenRequest {
        platform: platform.to_owned(),
        grant_type: grant_type.clone(),
        basic_auth,
        secret_in_body: form.contains_key("client_secret"),
        status,
    };
    if grant_type == "refresh_token" {
        let delay = state.lock().unwrap().refresh_delay;
        tokio::time::sleep(delay).await;
    }
    let mut st = state.lock().unwrap();
    let (response, status) = token_answer(&mut st, platform, shop, &form, basic);
    st.token_requests.push(record(status.as_u16()));
    HttpResponse::build(status).json(response)
}

fn token_answer(
    st: &mut State,
    platform: &str,
    shop: Option<String>,
    form: &BTreeMap<String, String>,
    basic: Option<(String, String)>,
) -> (Value, StatusCode) {
    let error = |status: StatusCode, error: &str, description: &str| {
        (
            json!({"error": error, "error_description": description}),
            status,
        )
    };
    if st.token_endpoint_down {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "down for maintenance",
        );
    }
    // Client authentication: Intuit takes HTTP Basic only; the others take the body parameters.
    let (client_id, client_secret) = st.clients[platform].clone();
    let body_creds = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    let authenticated = if platform == "quickbooks" {
        body_creds.1.is_none() && basic == Some((client_id.clone(), client_secret.clone()))
    } else {
        basic.is_none() && body_creds == (Some(client_id.clone()), Some(client_secret.clone()))
    };
    if !authenticated {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let grant_type = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    match grant_type {
        "authorization_code" => {
            let Some(code) = form.get("code").and_then(|c| st.codes.remove(c)) else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "unknown or used code",
                );
            };
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(Sha256::digest(verifier.as_bytes()));
            if code.platform != platform
                || code.shop != shop
                || code.client_id != client_id
                || form.get("redirect_uri") != Some(&code.redirect_uri)
            {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "code issued for another request",
                );
            }
            if verifier.is_empty() || challenge != code.challenge {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    "PKCE verification failed",
                );
            }
            let lifetime = st.lifetime;
            let mut answer = issue(st, platform, true, lifetime);
            if platform == "shopify" {
                // Shopify's access token answer names the scopes granted: the ones asked for.
                answer["scope"] = Value::String(code.scope.clone());
            }
            (answer, StatusCode::OK)
        }
        "refresh_token" => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            match st.refresh_tokens.get(&presented) {
                Some((p, true)) if p == platform => {}
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "refresh token is invalid or revoked",
                    )
                }
            }
            // Keap, Box, HighLevel and Intuit rotate: the old refresh token dies with its use.
            let rotates = matches!(platform, "keap" | "box" | "gohighlevel" | "quickbooks");
            if rotates {
                st.refresh_tokens
                    .insert(presented.clone(), (platform.to_owned(), false));
            }
            let mut answer = issue(st, platform, rotates, 3600);
            if !rotates && platform == "hubspot" {
                // HubSpot sends the same refresh token back.
                answer["refresh_token"] = Value::String(presented);
            }
            (answer, StatusCode::OK)
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "unsupported grant_type",
        ),
    }
}

/// A token response in the platform's shape; `with_refresh` issues a new refresh token.
fn issue(st: &mut State, platform: &str, with_refresh: bool, lifetime: u64) -> Value {
    st.counter += 1;
    let n = st.counter;
    let access = format!("at-{platform}-{n}-{}", rand::random::<u32>());
    st.access_tokens.insert(access.clone(), platform.to_owned());
    if platform == "shopify" {
        // Offline tokens: no expiry, no refresh token, no token_type.
        return json!({"access_token": access});
    }
    let mut answer =
        json!({"access_token": access, "token_type": "Bearer", "expires_in": lifetime});
    if with_refresh {
        let refresh = format!("rt-{platform}-{n}-{}", rand::random::<u32>());
        st.refresh_tokens
            .insert(refresh.clone(), (platform.to_owned(), true));
        answer["refresh_token"] = Value::String(refresh);
    }
    match platform {
        "stripe" => {
            answer["token_type"] = json!("bearer");
            answer["stripe_user_id"] = json!(STRIPE_ACCOUNT);
            answer["livemode"] = json!(false);
            answer["scope"] = json!("read_only");
        }
        "gohighlevel" => {
            answer["locationId"] = json!(LOCATION_ID);
            answer["companyId"] = json!("comp-emu-1");
            answer["userType"] = json!("Location");
        }
        "dropbox" => {
            answer["account_id"] = json!("dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc");
        }
        "google" => {
            answer["id_token"] = json!("eyJhbGciOi.not-a-real.id-token");
        }
        "zendesk" => {
            // Zendesk's grant-type token answer: a lower-case `bearer`, the scope granted, and how long the
            // refresh token lasts.
            answer["token_type"] = json!("bearer");
            answer["scope"] = json!("read");
            answer["refresh_token_expires_in"] = json!(2_592_000);
        }
        _ => {}
    }
    answer
}

fn user_info(req: &HttpRequest, platform: &str, path: &str, state: &Mutex<State>) -> HttpResponse {
    let token = if platform == "shopify" {
        req.headers()
            .get("X-Shopify-Access-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    } else {
        req.headers()
            .get("Authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
    };
    let valid = token.is_some_and(|t| {
        state
            .lock()
            .unwrap()
            .access_tokens
            .get(&t)
            .map(String::as_str)
            == Some(platform)
    });
    if !valid {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_token"}));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let post = req.method() == actix_web::http::Method::POST;
    let body = match (platform, path) {
        ("google", "/oauth2/v3/userinfo") => {
            json!({"sub": "109876543210987654321", "email": "owner@example.com", "email_verified": true})
        }
        ("dropbox", "/2/users/get_current_account") if post => json!({
            "account_id": "dbid:AAH4f99T0taONIb-OurWxbNQ6ywGRopQngc",
            "email": "owner@dropbox.example",
            "name": {"display_name": "Owner Dropbox"}
        }),
        ("box", "/users/me") => {
            json!({"id": "11446498", "login": "owner@box.example", "name": "Owner Box"})
        }
        ("quickbooks", p) if p == format!("/companyinfo/{REALM_ID}") => {
            if header("Accept") != "application/json" {
                return HttpResponse::Ok()
                    .content_type("application/xml")
                    .body("<IntuitResponse/>");
            }
            json!({"CompanyInfo": {"CompanyName": "Emulated Books Inc", "Id": "1"}})
        }
        ("zendesk", "/users/me.json") => json!({"user": {"id": 35436, "name": "Owner Zendesk",
            "email": "owner@zendesk.example", "role": "admin", "active": true}}),
        ("shopify", "/shop.json") => json!({"shop": {"id": 548380009, "name": "Emulated Store",
            "myshopify_domain": "emulated-store.myshopify.com"}}),
        ("stripe", "/account") => json!({"id": STRIPE_ACCOUNT, "email": "owner@stripe.example",
            "settings": {"dashboard": {"display_name": "Emulated Payments"}}}),
        ("hubspot", "/account-info/v3/details") => {
            json!({"portalId": 62515, "uiDomain": "app.hubspot.com", "timeZone": "US/Eastern"})
        }
        ("keap", "/account/profile") => {
            json!({"name": "Emulated Keap App", "email": "owner@keap.example"})
        }
        ("keap", "/oauth/connect/userinfo") => json!({"global_user_id": 424242, "sub": "424242",
            "email": "owner@keap.example", "given_name": "Owner"}),
        ("gohighlevel", p) if p == format!("/locations/{LOCATION_ID}") => {
            if header("Version") != "2021-07-28" {
                return HttpResponse::BadRequest()
                    .json(json!({"message": "Version header required"}));
            }
            json!({"location": {"id": LOCATION_ID, "name": "Emulated Location"}})
        }
        _ => return HttpResponse::NotFound().json(json!({"error": "not found", "path": path})),
    };
    HttpResponse::Ok().json(body)
}

/// The public URL the test service believes it has: the redirect URI is `<PUBLIC_URL>/connections/oauth/callback`.
pub const PUBLIC_URL: &str = "http://listbackup.test";
/// The one origin a `returnUrl` may point to in the tests.
pub const RETURN_ORIGIN: &str = "https://app.listbackup.test";

/// The service, with every OAuth platform pointed at `provider`; `customize` may add keys.
pub async fn spawn_app(
    provider: &OauthProvider,
    customize: impl FnOnce(&mut BTreeMap<String, String>),
) -> super::TestApp {
    super::TestApp::spawn_with(|values| {
        configure_service(provider, values);
        customize(values);
    })
    .await
}

/// The service's configuration for OAuth against `provider`: every platform pointed at it, the public URL
/// and the allowed return origins.
pub fn configure_service(provider: &OauthProvider, values: &mut BTreeMap<String, String>) {
    provider.configure(values);
    values.insert("LISTBACKUP_PUBLIC_URL".into(), PUBLIC_URL.into());
    values.insert(
        "LISTBACKUP_ALLOWED_RETURN_ORIGINS".into(),
        format!("{RETURN_ORIGIN}, http://localhost:3000"),
    );
}

/// A client that shows redirects instead of following them.
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The browser's trip to the platform: opens the authorization URL and returns where the platform redirects
/// to (on the service's public URL).
pub async fn consent(authorization_url: &str) -> url::Url {
    let response = no_redirects().get(authorization_url).send().await.unwrap();
    assert_eq!(response.status(), 302, "the platform redirects back");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let url = url::Url::parse(&location).unwrap();
    assert!(
        location.starts_with(&format!("{PUBLIC_URL}/connections/oauth/callback?")),
        "{location}"
    );
    url
}

/// Delivers the platform's redirect to the service (whose real address is not the public URL).
pub async fn deliver(app: &super::TestApp, redirect: &url::Url) -> reqwest::Response {
    let path = format!("{}?{}", redirect.path(), redirect.query().unwrap_or(""));
    no_redirects().get(app.url(&path)).send().await.unwrap()
}

/// `POST /connections/oauth/start` with `body`; asserts 200 and returns the answer.
pub async fn start(app: &super::TestApp, token: &str, body: Value) -> Value {
    let response = app.post("/connections/oauth/start", token, &body).await;
    let status = response.status();
    let json: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{json}");
    json
}

/// The whole flow for `platform` (Shopify needs `shop` in `extra`); returns the callback's answer.
pub async fn connect(
    app: &super::TestApp,
    token: &str,
    platform: &str,
    extra: Value,
) -> reqwest::Response {
    let mut body = json!({"platformId": platform});
    if let Value::Object(extra) = extra {
        body.as_object_mut().unwrap().extend(extra);
    }
    let started = start(app, token, body).await;
    let redirect = consent(started["authorizationUrl"].as_str().unwrap()).await;
    deliver(app, &redirect).await
}

/// The whole flow without a returnUrl: asserts 201 and returns the connection.
pub async fn connect_ok(app: &super::TestApp, token: &str, platform: &str, extra: Value) -> Value {
    let response = connect(app, token, platform, extra).await;
    let status = response.status();
    let json: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{platform}: {json}");
    json
}

/// HMAC-SHA256 (RFC 2104), hex.
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&inner_pad)
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&outer_pad)
        .chain_update(inner)
        .finalize();
    outer.iter().map(|b| format!("{b:02x}")).collect()
}
