//! The platforms' emulation (the `listbackup-emulators` crate) as a process, for the jobs benchmarks (run by
//! a person, never by the tests), and the plain HTTP client that drains it for comparison.
//!
//!   platform_emulator serve [--port 0] [--workers 1] [--latency-ms 0] [--platform stripe]…
//!   platform_emulator plan --platform ID [--data-type NAME] [--records N]
//!   platform_emulator platforms
//!   platform_emulator drain --platform ID --url API_URL --credentials JSON [--data-type NAME] [--clock-ticks 100]
//!   platform_emulator drain --url API_URL --key KEY [--data-type customers]      (Stripe, as before)
//!
//! `serve` starts the crate's server ([`PlatformApi::serve`]): every platform the crate emulates under its
//! prefix, exactly as the black-box tests see it (Stripe's customers are about 1 KB of JSON each, shaped like
//! API version 2024-06-20's), plus the emulation's own `/_emulator/stats`, `/_emulator/accept` and
//! `/_emulator/seed` through which a script accepts credentials and sizes data sets. It prints
//! `{"port": P, "apiUrls": {"<platform>": "<base URL for LISTBACKUP_PLATFORM_<ID>_API_URL>"}}` for each
//! `--platform` (default `stripe`) once it listens, then answers until SIGTERM or SIGINT. With
//! `--latency-ms` every platform answer is sent that long after its request arrived (a timer: a waiting
//! answer holds no thread).
//!
//! For the OAuth-only platforms it benchmarks ([`OAUTH_PLATFORMS`]: QuickBooks), `serve` also runs a minimal
//! authorization server on a port of its own, so that a benchmark connects them the way a user does, through
//! the service's `POST /connections/oauth/start` and `GET /connections/oauth/callback` (RFC 6749 §4.1 with
//! PKCE, RFC 7636): `GET /<platform>/authorize` consents at once and redirects to `redirect_uri` with a
//! code, the `state` and (QuickBooks) the `realmId`; `POST /<platform>/token` checks the client (HTTP Basic
//! for Intuit), the code, its `redirect_uri` and the PKCE S256 verifier, and answers with [`OAUTH_ACCESS`]
//! (which `plan` lists as the connection's `accessToken`, so the script makes the emulation accept it) and a
//! refresh token; the refresh grant answers the same access token. The first line then also holds
//! `"oauth": {"<platform>": {"authUrl", "tokenUrl", "clientId", "clientSecret"}}` for the service's
//! `LISTBACKUP_PLATFORM_<ID>_{AUTH_URL,TOKEN_URL,CLIENT_ID,CLIENT_SECRET}`.
//!
//! `plan` prints what a benchmark of one platform needs, from ListBackup's catalog:
//! `{"platform", "dataType", "credentials", "records"}`: the data type (default: the platform's first that
//! can be backed up and is listed on its own, not per parent record nor as one object or one page) and credentials of the right shape for
//! every field of the platform's API-key connection form, each of the shape the form requires (a shop
//! domain, a key prefix, a data-centre suffix). For an OAuth-only platform of [`OAUTH_PLATFORMS`] it adds
//! `"oauth": true` and lists what the OAuth flow will yield (the access token the authorization server
//! issues and the settings it names, such as QuickBooks' `realmId`); any other platform without API-key
//! connections fails.
//!
//! `platforms` prints the ids of the catalog's platforms whose records this emulation lists, as a JSON array:
//! each API-key platform the crate emulates whose `plan` data type, seeded with 3 records, is drained whole by
//! the plain client below (so a platform whose module lands later is picked up without a change here).
//!
//! `drain` is the baseline of `bench/backup-throughput`: a plain reqwest client on one keep-alive
//! connection that lists the data type as the catalog describes it (the same endpoints, page size, fixed
//! query and pagination mechanism the connector follows, and its authentication), parses every body into
//! JSON values (what any client has to do to find the records and the next cursor), counts the records and
//! prints one JSON summary with its own CPU time. It stores nothing, checks nothing, and pages offsets without
//! the connector's overlap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use listbackup_commands::platform_client::{apply_auth, fill_template};
use listbackup_domain::platform::{
    find, AuthType, CredentialFieldType, FieldShape, HttpMethod, Listing, OffsetParam, Pagination,
    Platform, UrlParam, CATALOG, OAUTH_ACCESS_TOKEN,
};
use listbackup_emulators::{PlatformApi, ServeOptions};
use serde_json::{json, Value};

fn usage(message: &str) -> ! {
    eprintln!("platform_emulator: {message}");
    eprintln!(
        "usage: platform_emulator serve [--port 0] [--workers 1] [--latency-ms 0] [--platform stripe]...\n       \
         platform_emulator plan --platform ID [--data-type NAME] [--records N]\n       \
         platform_emulator platforms\n       \
         platform_emulator drain --platform ID --url API_URL --credentials JSON [--data-type NAME] [--clock-ticks 100]\n       \
         platform_emulator drain --url API_URL --key KEY [--data-type customers]"
    );
    std::process::exit(2);
}

/// `--flag value` pairs; a flag given twice keeps every value.
struct Flags(Vec<(String, String)>);

impl Flags {
    fn parse(args: impl Iterator<Item = String>) -> Self {
        let mut args = args.peekable();
        let mut flags = Vec::new();
        while let Some(flag) = args.next() {
            if !flag.starts_with("--") {
                usage(&format!("unexpected argument {flag}"));
            }
            let value = args
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            flags.push((flag, value));
        }
        Self(flags)
    }

    fn take_all(&mut self, name: &str) -> Vec<String> {
        let (taken, kept) = std::mem::take(&mut self.0)
            .into_iter()
            .partition(|(flag, _)| flag == name);
        self.0 = kept;
        taken.into_iter().map(|(_, value)| value).collect()
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.take_all(name).pop()
    }

    fn number<T: std::str::FromStr>(&mut self, name: &str, default: T) -> T {
        self.take(name).map_or(default, |v| {
            v.parse()
                .unwrap_or_else(|_| usage(&format!("{name} takes a number, not {v}")))
        })
    }

    fn done(self) {
        if let Some((flag, _)) = self.0.first() {
            usage(&format!("unknown argument {flag}"));
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args
        .next()
        .unwrap_or_else(|| usage("serve, plan or drain?"));
    let mut flags = Flags::parse(args);
    let code = match mode.as_str() {
        "serve" => {
            let options = ServeOptions {
                port: flags.number("--port", 0),
                workers: flags.number("--workers", 1),
            };
            let latency = Duration::from_millis(flags.number("--latency-ms", 0));
            let mut platforms = flags.take_all("--platform");
            if platforms.is_empty() {
                platforms.push("stripe".to_owned());
            }
            flags.done();
            serve(options, latency, &platforms)
        }
        "plan" => {
            let platform = flags
                .take("--platform")
                .unwrap_or_else(|| usage("--platform is required"));
            let data_type = flags.take("--data-type");
            let records: u64 = flags.number("--records", 1000);
            flags.done();
            match plan(&platform, data_type.as_deref(), records) {
                Ok(plan) => {
                    println!("{plan}");
                    0
                }
                Err(err) => {
                    eprintln!("platform_emulator plan: {err}");
                    1
                }
            }
        }
        "platforms" => {
            flags.done();
            listed_platforms()
        }
        "drain" => {
            let url = flags
                .take("--url")
                .unwrap_or_else(|| usage("--url is required"));
            let key = flags.take("--key");
            let platform = flags
                .take("--platform")
                .unwrap_or_else(|| "stripe".to_owned());
            let credentials = match (flags.take("--credentials"), key) {
                (Some(json), None) => serde_json::from_str::<BTreeMap<String, String>>(&json)
                    .unwrap_or_else(|e| {
                        usage(&format!("--credentials is a JSON object of strings: {e}"))
                    }),
                (None, Some(key)) if platform == "stripe" => {
                    BTreeMap::from([("secretKey".to_owned(), key)])
                }
                _ => usage("give --credentials JSON (or, for Stripe, --key KEY)"),
            };
            let data_type = flags.take("--data-type");
            let clock_ticks: u64 = flags.number("--clock-ticks", 100);
            flags.done();
            drain(
                &platform,
                url.trim_end_matches('/'),
                &credentials,
                data_type.as_deref(),
                clock_ticks,
            )
        }
        "-h" | "--help" => usage("help"),
        other => usage(&format!("unknown mode {other}")),
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------------------
// serve

fn serve(options: ServeOptions, latency: Duration, platforms: &[String]) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    runtime.block_on(async move {
        let api = match PlatformApi::serve(options).await {
            Ok(api) => api,
            Err(err) => {
                eprintln!(
                    "platform_emulator: cannot listen on port {}: {err}",
                    options.port
                );
                return 1;
            }
        };
        api.set_latency(latency);
        // The bench compares work, not pacing: Shopify's bucket (2 requests a second) would make its run
        // the platform's rate limit's figure, and the plain client does not wait out a 429.
        api.lift_rate_limits();
        let oauth: serde_json::Map<String, Value> = match start_authorization_server() {
            Ok(base) => platforms
                .iter()
                .filter(|p| OAUTH_PLATFORMS.contains(&p.as_str()))
                .map(|p| {
                    (
                        p.clone(),
                        json!({
                            "authUrl": format!("{base}/{p}/authorize"),
                            "tokenUrl": format!("{base}/{p}/token"),
                            "clientId": OAUTH_CLIENT_ID,
                            "clientSecret": OAUTH_CLIENT_SECRET,
                        }),
                    )
                })
                .collect(),
            Err(err) => {
                eprintln!("platform_emulator: cannot start the authorization server: {err}");
                return 1;
            }
        };
        let port = api
            .base_url
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        // `api_url` panics (and the process exits) for a platform the crate does not emulate.
        let urls: serde_json::Map<String, Value> = platforms
            .iter()
            .map(|p| (p.clone(), json!(api.api_url(p))))
            .collect();
        println!(
            "{}",
            json!({"port": port.parse::<u16>().unwrap_or(0), "apiUrls": urls, "oauth": oauth})
        );
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("listening for SIGTERM");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        drop(api);
        0
    })
}

// ---------------------------------------------------------------------------------------------------------
// plan

/// The data type a benchmark of `platform` lists: `requested`, or the first that can be backed up and is
/// listed on its own.
fn data_type_of<'a>(
    platform: &'a Platform,
    requested: Option<&str>,
) -> Result<(&'a str, Listing), String> {
    let listed = |name: &str| {
        platform
            .data_type(name)
            .and_then(|t| t.listing.map(|l| (t.name, l)))
    };
    match requested {
        Some(name) => listed(name).ok_or_else(|| {
            format!(
                "{} has no data type {name} that can be backed up",
                platform.id
            )
        }),
        None => platform
            .data_types
            .iter()
            .find_map(|t| {
                // A list of its own, of any size: not per parent record, not one object or one page
                // (Shopify's shop, QuickBooks' company info).
                t.listing
                    .filter(|l| {
                        l.per_parent.is_none()
                            && !l.single_object
                            && !matches!(l.pagination, Pagination::Single)
                    })
                    .map(|l| (t.name, l))
            })
            .ok_or_else(|| format!("{} has no data type that can be backed up", platform.id)),
    }
}

fn plan(platform_id: &str, data_type: Option<&str>, records: u64) -> Result<Value, String> {
    let platform = find(platform_id).ok_or_else(|| format!("no platform {platform_id}"))?;
    if !platform.supports(AuthType::ApiKey) {
        if !OAUTH_PLATFORMS.contains(&platform_id) {
            return Err(format!(
                "{platform_id} has no API-key connections, and the benchmarks' authorization server does not serve it"
            ));
        }
        let (data_type, _) = data_type_of(platform, data_type)?;
        // What the OAuth flow yields: the access token issued, and the settings named in the callback.
        let mut credentials = serde_json::Map::new();
        credentials.insert(OAUTH_ACCESS_TOKEN.to_owned(), json!(OAUTH_ACCESS));
        for param in platform.url_params {
            if let UrlParam::FromOauth { name } = param {
                credentials.insert((*name).to_owned(), json!(oauth_setting(platform_id, name)?));
            }
        }
        return Ok(json!({
            "platform": platform_id,
            "dataType": data_type,
            "credentials": credentials,
            "records": records,
            "oauth": true,
        }));
    }
    let (data_type, _) = data_type_of(platform, data_type)?;
    // Fields whose text ends in a value the API URL is built from (Mailchimp's data centre after the `-`).
    let suffixed: Vec<&str> = platform
        .url_params
        .iter()
        .filter_map(|p| match p {
            UrlParam::SuffixOf { field, .. } => Some(*field),
            UrlParam::FromOauth { .. } => None,
        })
        .collect();
    let credentials: serde_json::Map<String, Value> = platform
        .credential_fields
        .iter()
        .map(|field| {
            let value = match (field.field_type, field.shape) {
                (CredentialFieldType::Email, _) => "bench@example.com".to_owned(),
                // An account on the platform's first documented API domain (the form refuses any other
                // host); the run's API URL override, not this value, says where requests go.
                (CredentialFieldType::Url, FieldShape::AccountUrl(domains)) => {
                    format!("https://bench.{}", domains.first().copied().unwrap_or(""))
                }
                (CredentialFieldType::Url, _) => "https://bench.example.com".to_owned(),
                (CredentialFieldType::String, _) if platform_id == "stripe" && field.secret => {
                    format!("sk_test_bench_{records}")
                }
                // The form refuses any other shape at create (issue 11 §2).
                (CredentialFieldType::String, FieldShape::ShopDomain) => {
                    "bench.myshopify.com".to_owned()
                }
                (CredentialFieldType::String, FieldShape::Prefixed(prefixes)) => format!(
                    "{}bench_{records}_{}",
                    prefixes.first().copied().unwrap_or(""),
                    field.name
                ),
                (CredentialFieldType::String, _) if field.secret => {
                    format!("bench_{records}_{}", field.name)
                }
                (CredentialFieldType::String, _) => format!("bench-{}", field.name.to_lowercase()),
            };
            let value = if suffixed.contains(&field.name) {
                format!("{value}-bench1")
            } else {
                value
            };
            (field.name.to_owned(), json!(value))
        })
        .collect();
    Ok(json!({
        "platform": platform_id,
        "dataType": data_type,
        "credentials": credentials,
        "records": records,
    }))
}

// ---------------------------------------------------------------------------------------------------------
// platforms

fn listed_platforms() -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    runtime.block_on(async {
        let api = PlatformApi::start().await;
        let mut listed = Vec::new();
        // `api_url` panics for a platform the crate does not emulate: that is the answer, not a failure.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let emulated: Vec<(&Platform, String)> = CATALOG
            .iter()
            .filter_map(|p| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| api.api_url(p.id)))
                    .ok()
                    .map(|url| (p, url))
            })
            .collect();
        std::panic::set_hook(hook);
        for (platform, url) in emulated {
            let Ok(plan) = plan(platform.id, None, 3) else {
                continue;
            };
            let data_type = plan["dataType"].as_str().unwrap_or_default();
            let credentials: BTreeMap<String, String> =
                serde_json::from_value(plan["credentials"].clone()).unwrap_or_default();
            api.accept_credentials(platform.id, plan["credentials"].clone());
            api.seed(platform.id, data_type, 3);
            let Ok((_, listing)) = data_type_of(platform, Some(data_type)) else {
                continue;
            };
            match drain_listing(platform, &listing, &url, &credentials).await {
                Ok(summary) if summary["records"] == 3 => listed.push(platform.id),
                Ok(summary) => eprintln!("platform_emulator: {} lists {summary}", platform.id),
                Err(err) => eprintln!("platform_emulator: {} does not list: {err}", platform.id),
            }
        }
        println!("{}", json!(listed));
        0
    })
}

// ---------------------------------------------------------------------------------------------------------
// drain: the plain client

fn drain(
    platform_id: &str,
    url: &str,
    credentials: &BTreeMap<String, String>,
    data_type: Option<&str>,
    clock_ticks: u64,
) -> i32 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building the runtime");
    let result = runtime.block_on(async {
        let platform = find(platform_id).ok_or_else(|| format!("no platform {platform_id}"))?;
        let (data_type, listing) = data_type_of(platform, data_type)?;
        drain_listing(platform, &listing, url, credentials)
            .await
            .map(|summary| (data_type, summary))
    });
    match result {
        Ok((data_type, mut summary)) => {
            summary["dataType"] = json!(data_type);
            if let Some(ticks) = cpu_ticks() {
                let seconds = ticks as f64 / clock_ticks.max(1) as f64;
                summary["cpu_seconds"] = json!((seconds * 100.0).round() / 100.0);
            }
            println!("{summary}");
            0
        }
        Err(err) => {
            eprintln!("platform_emulator drain: {err}");
            1
        }
    }
}

/// User and system CPU of this process so far, in clock ticks (`/proc/self/stat` fields 14 and 15).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

/// The next request of a listing.
enum Next {
    /// The endpoint again, with these query parameters set (a cursor, an offset).
    Query(Vec<(String, String)>),
    /// This URL as given (a `Link` header, a next link in the body).
    Url(String),
    /// `POST <path>` with this JSON body (an RPC continuation).
    Post(String, Value),
}

async fn drain_listing(
    platform: &Platform,
    listing: &Listing,
    url: &str,
    credentials: &BTreeMap<String, String>,
) -> Result<Value, String> {
    if listing.per_parent.is_some() {
        return Err(
            "the plain client does not list per parent record: pick another --data-type".into(),
        );
    }
    // An OAuth-only platform: its access token, as the connector sends it.
    let auth = platform
        .api_key_auth
        .or(platform.oauth.as_ref().map(|o| o.api_auth))
        .ok_or("the platform has neither API-key nor OAuth authentication")?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| e.to_string())?;
    let fill =
        |template: &str| fill_template(platform, template, credentials).map_err(|e| e.to_string());
    let page_size = listing.page_size.size as usize;
    let (mut records, mut pages, mut bytes) = (0u64, 0u64, 0u64);
    let started = Instant::now();
    for endpoint in listing.endpoints {
        let endpoint_url = format!("{url}{}", fill(endpoint.path)?);
        let mut base_query: Vec<(String, String)> = listing
            .query
            .iter()
            .map(|(k, v)| Ok((k.to_string(), fill(v)?)))
            .collect::<Result<_, String>>()?;
        if let Some(param) = listing.page_size.param {
            base_query.push((param.to_owned(), page_size.to_string()));
        }
        // A query statement holds its first offset too (QuickBooks' `STARTPOSITION 1`).
        let mut next = Some(match listing.pagination {
            Pagination::Offset {
                offset: at @ OffsetParam::Statement { .. },
                ..
            } => offset_query(at, 0, page_size),
            _ => Next::Query(Vec::new()),
        });
        let mut offset = 0u64;
        while let Some(step) = next.take() {
            let request = match step {
                Next::Query(extra) => {
                    let mut query = base_query.clone();
                    for (k, v) in extra {
                        query.retain(|(name, _)| *name != k);
                        query.push((k, v));
                    }
                    match (endpoint.method, endpoint.body) {
                        (HttpMethod::Post, body) => http
                            .post(&endpoint_url)
                            .query(&query)
                            .header("content-type", "application/json")
                            .body(body.unwrap_or("{}").to_owned()),
                        (HttpMethod::Get, _) => http.get(&endpoint_url).query(&query),
                    }
                }
                Next::Url(next_url) => http.get(next_url),
                Next::Post(path, body) => http.post(format!("{url}{}", fill(&path)?)).json(&body),
            };
            let mut request = apply_auth(request, auth, credentials)
                .map_err(|e| format!("{e:?}"))?
                .header("accept", "application/json");
            for (name, value) in platform.api_headers {
                request = request.header(*name, *value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("page {}: {e}", pages + 1))?;
            let status = response.status();
            let link = response
                .headers()
                .get_all(reqwest::header::LINK)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(next_link);
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
            pages += 1;
            let page: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let data = match page.pointer(listing.records) {
                Some(Value::Array(data)) => data.as_slice(),
                None if listing.absent_is_empty => &[],
                _ => {
                    return Err(format!(
                        "an answer without records at `{}`",
                        listing.records
                    ))
                }
            };
            records += data.len() as u64;
            offset += data.len() as u64;
            let text = |pointer: &str| match page.pointer(pointer) {
                Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            let more = |pointer: &str| page.pointer(pointer).and_then(Value::as_bool) == Some(true);
            next = match listing.pagination {
                Pagination::Single => None,
                Pagination::AfterLastId { param, more: flag } => data
                    .last()
                    .and_then(|r| r.get(listing.id_field))
                    .and_then(|id| {
                        id.as_str()
                            .map(str::to_owned)
                            .or_else(|| Some(id.to_string()))
                    })
                    .filter(|_| more(flag))
                    .map(|id| Next::Query(vec![(param.to_owned(), id)])),
                Pagination::CursorParam { param, cursor } => {
                    text(cursor).map(|c| Next::Query(vec![(param.to_owned(), c)]))
                }
                // While the first value is there, every value goes back.
                Pagination::CursorParams { params } => params
                    .first()
                    .and_then(|(_, pointer)| text(pointer))
                    .map(|_| {
                        Next::Query(
                            params
                                .iter()
                                .filter_map(|(param, pointer)| {
                                    text(pointer).map(|v| (param.to_string(), v))
                                })
                                .collect(),
                        )
                    }),
                Pagination::LinkHeader => link.map(Next::Url),
                Pagination::NextUrl {
                    url: pointer,
                    more: flag,
                } => text(pointer)
                    .filter(|_| flag.is_none_or(more))
                    .map(Next::Url),
                Pagination::ContinueWithCursor {
                    path,
                    cursor,
                    more: flag,
                } => text(cursor)
                    .filter(|_| flag.is_none_or(more))
                    .map(|c| Next::Post(path.to_owned(), json!({ "cursor": c }))),
                Pagination::NextUrlUntil { url, end } => {
                    text(url).filter(|_| !more(end)).map(Next::Url)
                }
                // Keysets that end at a short page.
                Pagination::AfterLastIdUntilShortPage { param } => {
                    last_value(data, listing.id_field)
                        .filter(|_| page_size > 0 && data.len() >= page_size)
                        .map(|id| Next::Query(vec![(param.to_owned(), id)]))
                }
                Pagination::AfterLastValue { param, field } => last_value(data, field)
                    .filter(|_| page_size > 0 && data.len() >= page_size)
                    .map(|value| Next::Query(vec![(param.to_owned(), value)])),
                Pagination::Offset {
                    offset: at, total, ..
                } => {
                    let total = total.and_then(text).and_then(|t| t.parse::<u64>().ok());
                    let full = page_size > 0 && data.len() >= page_size;
                    // With a total, a page held below the size asked does not end the list.
                    let more = !data.is_empty() && total.map_or(full, |t| offset < t);
                    more.then(|| offset_query(at, offset, page_size))
                }
            };
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "platform": platform.id,
        "records": records,
        "pages": pages,
        "bytes": bytes,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "records_per_second": (records as f64 / seconds).round() as u64,
    }))
}

/// The top-level `field` of a page's last record, as query text.
fn last_value(data: &[Value], field: &str) -> Option<String> {
    data.last().and_then(|r| r.get(field)).map(|value| {
        value
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| value.to_string())
    })
}

/// The request for the page at `offset` (0-based) of an offset listing.
fn offset_query(at: OffsetParam, offset: u64, page_size: usize) -> Next {
    match at {
        OffsetParam::Param(param) => Next::Query(vec![(param.to_owned(), offset.to_string())]),
        OffsetParam::Statement { param, template } => Next::Query(vec![(
            param.to_owned(),
            template
                .replace("{start}", &(offset + 1).to_string())
                .replace("{max}", &page_size.to_string()),
        )]),
    }
}

/// The `rel="next"` target of a `Link` header value (RFC 8288), e.g. `<https://…?page_info=abc>; rel="next"`.
fn next_link(value: &str) -> Option<String> {
    value.split(',').find_map(|link| {
        let (target, params) = link.trim().split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        is_next.then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        })
    })
}

// ---------------------------------------------------------------------------------------------------------
// the authorization server of the OAuth-only platforms

/// The OAuth-only platforms the benchmarks connect through the service's OAuth flow.
pub const OAUTH_PLATFORMS: &[&str] = &["quickbooks"];
/// The client the service is configured with (`LISTBACKUP_PLATFORM_<ID>_CLIENT_ID` / `_CLIENT_SECRET`).
const OAUTH_CLIENT_ID: &str = "bench-client";
const OAUTH_CLIENT_SECRET: &str = "bench-client-secret";
/// The access token every grant answers (the script makes the emulation accept it before connecting).
const OAUTH_ACCESS: &str = "bench-oauth-access-token";
const OAUTH_REFRESH: &str = "bench-oauth-refresh-token";

/// A setting the platform names in its OAuth callback (QuickBooks' `realmId`: the emulation's one company).
fn oauth_setting(platform_id: &str, name: &str) -> Result<&'static str, String> {
    match (platform_id, name) {
        ("quickbooks", "realmId") => Ok(listbackup_emulators::quickbooks::REALM_ID),
        _ => Err(format!(
            "no bench value for {platform_id}'s OAuth setting {name}"
        )),
    }
}

/// A code handed out and not yet exchanged: (platform, redirect_uri, PKCE challenge).
type Codes = Arc<Mutex<HashMap<String, (String, String, String)>>>;

/// Starts the authorization server on its own thread (an actix system of its own); returns its base URL.
fn start_authorization_server() -> std::io::Result<String> {
    use actix_web::{web, App, HttpServer};
    let (bound, port) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let codes: Codes = Arc::default();
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(codes.clone()))
                    .route("/{platform}/authorize", web::get().to(authorize))
                    .route("/{platform}/token", web::post().to(token))
            })
            .workers(1)
            .disable_signals()
            .bind(("127.0.0.1", 0));
            match server {
                Ok(server) => {
                    let _ = bound.send(Ok(server.addrs().first().map_or(0, |a| a.port())));
                    let _ = server.run().await;
                }
                Err(err) => {
                    let _ = bound.send(Err(err));
                }
            }
        })
    });
    let port = port
        .recv()
        .map_err(|_| std::io::Error::other("the authorization server's thread ended"))??;
    Ok(format!("http://127.0.0.1:{port}"))
}

fn oauth_error(status: u16, error: &str) -> actix_web::HttpResponse {
    actix_web::HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"error": error}))
}

/// RFC 6749 §4.1.1–4.1.2: consents at once and redirects back with a code.
async fn authorize(
    platform: actix_web::web::Path<String>,
    query: actix_web::web::Query<HashMap<String, String>>,
    codes: actix_web::web::Data<Codes>,
) -> actix_web::HttpResponse {
    let platform = platform.into_inner();
    let get = |k: &str| query.get(k).cloned().unwrap_or_default();
    if !OAUTH_PLATFORMS.contains(&platform.as_str()) {
        return oauth_error(404, "unknown_platform");
    }
    if get("client_id") != OAUTH_CLIENT_ID || get("response_type") != "code" {
        return oauth_error(400, "invalid_request");
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").is_empty() {
        return oauth_error(400, "invalid_request");
    }
    let Ok(mut location) = url::Url::parse(&get("redirect_uri")) else {
        return oauth_error(400, "invalid_request");
    };
    let code = format!("bench-code-{}", uuid::Uuid::new_v4().simple());
    codes.lock().unwrap().insert(
        code.clone(),
        (platform.clone(), get("redirect_uri"), get("code_challenge")),
    );
    {
        let mut pairs = location.query_pairs_mut();
        pairs
            .append_pair("code", &code)
            .append_pair("state", &get("state"));
        if platform == "quickbooks" {
            pairs.append_pair("realmId", listbackup_emulators::quickbooks::REALM_ID);
        }
    }
    actix_web::HttpResponse::Found()
        .insert_header(("location", location.as_str()))
        .finish()
}

/// RFC 6749 §4.1.3 and §6, with the PKCE check of RFC 7636 §4.6; Intuit authenticates clients with HTTP
/// Basic only.
async fn token(
    platform: actix_web::web::Path<String>,
    req: actix_web::HttpRequest,
    form: actix_web::web::Form<HashMap<String, String>>,
    codes: actix_web::web::Data<Codes>,
) -> actix_web::HttpResponse {
    use base64::Engine;
    use sha2::Digest;
    let platform = platform.into_inner();
    let expected_basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{OAUTH_CLIENT_ID}:{OAUTH_CLIENT_SECRET}"))
    );
    let basic = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if basic != Some(expected_basic.as_str()) || form.contains_key("client_secret") {
        return oauth_error(401, "invalid_client");
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some((issued_for, redirect_uri, challenge)) =
                codes.lock().unwrap().remove(&get("code"))
            else {
                return oauth_error(400, "invalid_grant");
            };
            let verified = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(get("code_verifier").as_bytes()));
            if issued_for != platform
                || redirect_uri != get("redirect_uri")
                || verified != challenge
            {
                return oauth_error(400, "invalid_grant");
            }
        }
        "refresh_token" if get("refresh_token") == OAUTH_REFRESH => {}
        "refresh_token" => return oauth_error(400, "invalid_grant"),
        _ => return oauth_error(400, "unsupported_grant_type"),
    }
    actix_web::HttpResponse::Ok().json(json!({
        "access_token": OAUTH_ACCESS,
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": OAUTH_REFRESH,
        "x_refresh_token_expires_in": 8_726_400,
    }))
}
