//! The "who am I" endpoints of the API-key platforms that have no data module in this crate yet, so that
//! `POST /connections/{id}/test` can be tested against each of them. A platform's data module serves its
//! identity call itself ([`crate::stripe`], [`crate::hubspot`], [`crate::keap`]); when one lands for a
//! platform below, its name leaves the identity arms of `api_url` and of the router (`lib.rs`), and its function here goes.
//!
//! Each checks the authentication exactly as the platform documents it and answers wrong or missing
//! credentials with that platform's status and error body:
//!
//! - **Shopify** Admin REST API 2024-10, `GET /admin/api/2024-10/shop.json` with `X-Shopify-Access-Token`
//!   (<https://shopify.dev/docs/api/admin-rest/2024-10/resources/shop>,
//!   <https://shopify.dev/docs/api/usage/authentication>): 401 `{"errors": "[API] Invalid API key or access
//!   token (unrecognized login or wrong password)"}`.
//! - **HighLevel** API v2, `GET /locations/{locationId}` with `Authorization: Bearer <private integration
//!   token>` and the mandatory `Version` header
//!   (<https://highlevel.stoplight.io/docs/integrations/d777490312af4-get-location>,
//!   <https://highlevel.stoplight.io/docs/integrations/af0d8d7f7ab37-private-integrations>): 400 without
//!   `Version`, 401 for a bad token, 403 for a location the token cannot see.
//! - **Mailchimp** Marketing API 3.0, `GET /3.0/` (the API root names the account) and `GET /3.0/ping`, HTTP
//!   Basic with any user name and the API key as password
//!   (<https://mailchimp.com/developer/marketing/api/root/>,
//!   <https://mailchimp.com/developer/marketing/docs/fundamentals/#api-structure>): errors are RFC 7807
//!   problem documents (<https://mailchimp.com/developer/marketing/docs/errors/>).
//! - **ActiveCampaign** API v3, `GET /api/3/users/me` with `Api-Token`
//!   (<https://developers.activecampaign.com/reference/authentication>,
//!   <https://developers.activecampaign.com/reference/retrieve-logged-in-user>): 403 for a wrong or missing
//!   token.
//! - **Zendesk** Support API v2, `GET /api/v2/users/me.json` with HTTP Basic `{email}/token:{api token}`
//!   (<https://developer.zendesk.com/api-reference/introduction/security-and-auth/>,
//!   <https://developer.zendesk.com/api-reference/ticketing/users/users/#show-self>): without credentials it
//!   answers 200 with the anonymous user; wrong credentials get 401 `{"error": "Couldn't authenticate you"}`.
//!
//! What is accepted: the credential sets given to [`crate::PlatformApi::accept_credentials`] (where a set
//! carries more than the secret, that is checked too: Zendesk's email, HighLevel's location), and the
//! secrets given to [`crate::PlatformApi::accept`] (the secret alone).

use std::collections::HashSet;

use actix_web::http::{Method, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use crate::request::{basic, bearer, header};

/// The base path under the platform's prefix, as `LISTBACKUP_PLATFORM_<ID>_API_URL` ends.
pub(crate) fn base_path(platform: &str) -> &'static str {
    match platform {
        "shopify" => "/shopify/admin/api/2024-10",
        "gohighlevel" => "/gohighlevel",
        "mailchimp" => "/mailchimp/3.0",
        "activecampaign" => "/activecampaign/api/3",
        "zendesk" => "/zendesk/api/v2",
        other => panic!("no identity endpoint is emulated for {other}"),
    }
}

/// The credential sets a request may match: each set given with `accept_credentials`, then each secret given
/// with `accept` alone (in no set) as a set holding only `secret_field`.
fn accepted_sets(sets: &[Value], secrets: &HashSet<String>, secret_field: &str) -> Vec<Value> {
    let in_a_set = |secret: &str| {
        sets.iter()
            .filter_map(Value::as_object)
            .any(|set| set.values().any(|value| value.as_str() == Some(secret)))
    };
    let mut all = sets.to_vec();
    all.extend(
        secrets
            .iter()
            .filter(|secret| !in_a_set(secret))
            .map(|secret| json!({ secret_field: secret })),
    );
    all
}

/// A field of a credential set; `None` if the set does not have it.
fn field<'a>(set: &'a Value, name: &str) -> Option<&'a str> {
    set.get(name).and_then(Value::as_str)
}

/// Answers a request to one of [`PLATFORMS`]; `rest` is the path after the platform prefix.
pub(crate) fn answer(
    platform: &str,
    req: &HttpRequest,
    rest: &str,
    secrets: &HashSet<String>,
    sets: &[Value],
) -> HttpResponse {
    let get = req.method() == Method::GET;
    match (platform, rest) {
        ("shopify", "/admin/api/2024-10/shop.json") if get => shopify(req, secrets, sets),
        ("mailchimp", "/3.0/" | "/3.0/ping") if get => mailchimp(req, rest, secrets, sets),
        ("activecampaign", "/api/3/users/me") if get => activecampaign(req, secrets, sets),
        ("zendesk", "/api/v2/users/me.json") if get => zendesk(req, secrets, sets),
        ("gohighlevel", location) if get && location.starts_with("/locations/") => {
            gohighlevel(req, &location["/locations/".len()..], secrets, sets)
        }
        _ => HttpResponse::NotFound().json(json!({"error": "not found", "path": req.path()})),
    }
}

fn shopify(req: &HttpRequest, secrets: &HashSet<String>, sets: &[Value]) -> HttpResponse {
    let token = header(req, "X-Shopify-Access-Token").unwrap_or_default();
    let accepted = accepted_sets(sets, secrets, "adminApiAccessToken");
    let found = (!token.is_empty())
        .then(|| {
            accepted
                .iter()
                .find(|c| field(c, "adminApiAccessToken") == Some(token))
        })
        .flatten();
    let Some(set) = found else {
        return HttpResponse::Unauthorized().json(
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        );
    };
    let shop = field(set, "shop").unwrap_or("acme-test.myshopify.com");
    HttpResponse::Ok().json(json!({"shop": {
        "id": 548_380_009,
        "name": "Acme Test Store",
        "email": "owner@acme.test",
        "domain": shop,
        "myshopify_domain": shop,
        "currency": "USD",
        "iana_timezone": "America/New_York",
        "plan_name": "basic",
        "created_at": "2020-01-01T00:00:00-05:00"
    }}))
}

fn gohighlevel(
    req: &HttpRequest,
    location_id: &str,
    secrets: &HashSet<String>,
    sets: &[Value],
) -> HttpResponse {
    if header(req, "Version").is_none_or(str::is_empty) {
        return HttpResponse::BadRequest().json(
            json!({"statusCode": 400, "message": "Version header was not found", "error": "Bad Request"}),
        );
    }
    let token = bearer(req).unwrap_or_default();
    let accepted = accepted_sets(sets, secrets, "privateIntegrationToken");
    let Some(set) = (!token.is_empty())
        .then(|| {
            accepted
                .iter()
                .find(|c| field(c, "privateIntegrationToken") == Some(token))
        })
        .flatten()
    else {
        return HttpResponse::Unauthorized()
            .json(json!({"statusCode": 401, "message": "Invalid JWT"}));
    };
    if field(set, "locationId").is_some_and(|own| own != location_id) {
        return HttpResponse::Forbidden().json(
            json!({"statusCode": 403, "message": "The token does not have access to this location."}),
        );
    }
    HttpResponse::Ok().json(json!({"location": {
        "id": location_id,
        "companyId": "5DP4iH6HLkQsiKESj6rh",
        "name": "Acme Test Location",
        "email": "owner@acme.test",
        "timezone": "America/New_York",
        "country": "US"
    }}))
}

fn mailchimp(
    req: &HttpRequest,
    rest: &str,
    secrets: &HashSet<String>,
    sets: &[Value],
) -> HttpResponse {
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
    let accepted = accepted_sets(sets, secrets, "apiKey");
    if !accepted
        .iter()
        .any(|c| field(c, "apiKey") == Some(key.as_str()))
    {
        return problem(
            "API Key Invalid",
            "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
        );
    }
    // The API root names the account; `/ping` only says the key works.
    if rest.ends_with("/ping") {
        return HttpResponse::Ok().json(json!({"health_status": "Everything's Chimpy!"}));
    }
    HttpResponse::Ok().json(
        json!({"account_id": "8d3a3db4d97663a9074efcc16", "login_id": "1234567",
        "account_name": "Acme Newsletters", "email": "owner@acme.test"}),
    )
}

fn activecampaign(req: &HttpRequest, secrets: &HashSet<String>, sets: &[Value]) -> HttpResponse {
    let token = header(req, "Api-Token").unwrap_or_default();
    let accepted = accepted_sets(sets, secrets, "apiKey");
    let found = (!token.is_empty())
        .then(|| accepted.iter().find(|c| field(c, "apiKey") == Some(token)))
        .flatten();
    match found {
        Some(_) => HttpResponse::Ok().json(json!({"user": {
            "id": "1",
            "username": "admin",
            "firstName": "Ada",
            "lastName": "Admin",
            "email": "admin@acme.test",
            "phone": "",
            "signature": null,
            "links": {"lists": "https://acme.api-us1.com/api/3/users/1/lists"}
        }})),
        // ActiveCampaign answers a wrong or missing token with 403.
        None => HttpResponse::build(StatusCode::FORBIDDEN).json(json!({"message": "Forbidden"})),
    }
}

fn zendesk(req: &HttpRequest, secrets: &HashSet<String>, sets: &[Value]) -> HttpResponse {
    if header(req, "Authorization").is_none() {
        return HttpResponse::Ok().json(json!({"user": {"id": null, "url": null,
            "name": "Anonymous user", "email": "invalid@example.com", "role": "end-user", "active": true}}));
    }
    let accepted = accepted_sets(sets, secrets, "apiToken");
    let found = basic(req).and_then(|(user, password)| {
        let email = user.strip_suffix("/token")?.to_owned();
        accepted
            .iter()
            .find(|c| {
                field(c, "apiToken") == Some(password.as_str())
                    && field(c, "email").is_none_or(|own| own == email)
            })
            .map(|set| (set.clone(), email))
    });
    match found {
        Some((set, email)) => HttpResponse::Ok().json(json!({"user": {
            "id": 35_436,
            "url": format!("https://{}.zendesk.com/api/v2/users/35436.json",
                field(&set, "subdomain").unwrap_or("acme")),
            "name": "Agent Smith",
            "email": email,
            "role": "admin",
            "active": true,
            "time_zone": "Eastern Time (US & Canada)"
        }})),
        None => HttpResponse::Unauthorized().json(json!({"error": "Couldn't authenticate you"})),
    }
}
