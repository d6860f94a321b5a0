//! Request rate limits (issue 14), by the GCRA of the `governor` crate: per client address (every request
//! but the health checks), per account (every authenticated request, keyed by the verified token's
//! account), on failed authentication per client address, and on calls that reach a platform (connection
//! and source tests) per account. Over a limit → 429 `RATE_LIMITED` with `Retry-After`.
//!
//! The client address is the TCP peer's, unless the peer is one of the configured trusted proxies
//! ([`TrustedProxies`]): then it is the right-most address of `X-Forwarded-For` that is not a trusted proxy.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpRequest};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::auth::Principal;
use crate::error::ApiError;

/// A rate: `count` requests at once, replenished evenly over `per` (so `count` per `per` sustained).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests allowed at once (the burst), and per `per` sustained.
    pub count: NonZeroU32,
    /// The period over which `count` requests are refilled.
    pub per: Duration,
}

impl Rate {
    /// `count` per `per`.
    pub fn new(count: u32, per: Duration) -> Self {
        Self {
            count: NonZeroU32::new(count.max(1)).expect("at least 1"),
            per,
        }
    }

    /// Parses `100/s`, `20/min`, `1000/h`, or `off` (no limit: `None`).
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        let raw = raw.trim();
        if raw.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let bad = || {
            format!("{raw:?} is not a rate: give N/s, N/min or N/h (N from 1 to 1000000), or off")
        };
        let (count, unit) = raw.split_once('/').ok_or_else(bad)?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(bad)?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "min" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Some(Self::new(count, per)))
    }

    fn quota(self) -> Quota {
        let interval = (self.per / self.count.get()).max(Duration::from_nanos(1));
        Quota::with_period(interval)
            .expect("a positive period")
            .allow_burst(self.count)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "h".to_owned(),
            other => format!("{other}s"),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The reverse proxies in front of the service (`LISTBACKUP_TRUSTED_PROXIES`): addresses or CIDR ranges
/// whose `X-Forwarded-For` is believed. None by default: the header is then ignored, since any client can
/// send it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses comma-separated addresses (`10.0.0.7`) and ranges (`10.0.0.0/8`, `fd00::/8`).
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let bad = || format!("{item:?} is not an IP address or CIDR range");
            let (address, prefix) = match item.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (item, None),
            };
            let address: IpAddr = address.parse().map_err(|_| bad())?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            };
            ranges.push((address, prefix));
        }
        Ok(Self(ranges))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|(range, prefix)| match (range, ip) {
            (IpAddr::V4(range), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*range) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(range), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*range) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most address of
    /// `X-Forwarded-For` that is not one (what the first untrusted hop reported; what a client wrote
    /// further left is not believed).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for hop in forwarded.iter().rev() {
            let Some(hop) = parse_hop(hop) else { break };
            client = hop;
            if !self.contains(hop) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`203.0.113.9:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
}

/// The configured limits; `None` switches one off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Whose `X-Forwarded-For` names the client (`LISTBACKUP_TRUSTED_PROXIES`, none by default).
    pub trusted_proxies: TrustedProxies,
    /// Requests per client address (`LISTBACKUP_RATE_LIMIT_IP`, default 200/s).
    pub per_ip: Option<Rate>,
    /// Requests per account (`LISTBACKUP_RATE_LIMIT_ACCOUNT`, default 100/s).
    pub per_account: Option<Rate>,
    /// Failed authentications per client address (`LISTBACKUP_RATE_LIMIT_AUTH_FAILURES`, default 60/min).
    pub auth_failures: Option<Rate>,
    /// Calls that reach a platform per account (`LISTBACKUP_RATE_LIMIT_PLATFORM_CALLS`, default 60/min).
    pub platform_calls: Option<Rate>,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            per_ip: Some(Rate::new(200, Duration::from_secs(1))),
            per_account: Some(Rate::new(100, Duration::from_secs(1))),
            auth_failures: Some(Rate::new(60, Duration::from_secs(60))),
            platform_calls: Some(Rate::new(60, Duration::from_secs(60))),
        }
    }
}

/// Every N checks of a limiter, the keys that are back to a full budget are forgotten.
const PRUNE_EVERY: u64 = 10_000;

/// One keyed limiter, pruned now and then so that its memory follows the active keys.
struct Keyed<K: Hash + Eq + Clone> {
    limiter: DefaultKeyedRateLimiter<K>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> Keyed<K> {
    fn new(rate: Rate) -> Self {
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(rate.quota()),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes one request from `key`'s budget, or tells how long until one is available.
    fn check(&self, key: &K) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The limiters' state, shared by every worker of the server.
pub struct RateLimiters {
    trusted_proxies: TrustedProxies,
    per_ip: Option<Keyed<IpAddr>>,
    per_account: Option<Keyed<String>>,
    auth_failures: Option<Keyed<IpAddr>>,
    platform_calls: Option<Keyed<String>>,
}

impl RateLimiters {
    /// Fresh limiters for `settings`.
    pub fn new(settings: &RateLimitSettings) -> Self {
        Self {
            trusted_proxies: settings.trusted_proxies.clone(),
            per_ip: settings.per_ip.map(Keyed::new),
            per_account: settings.per_account.map(Keyed::new),
            auth_failures: settings.auth_failures.map(Keyed::new),
            platform_calls: settings.platform_calls.map(Keyed::new),
        }
    }

    /// The client's address of a request from `peer` with `headers` (see [`TrustedProxies::client_ip`]).
    pub fn client_ip(
        &self,
        peer: Option<std::net::SocketAddr>,
        headers: &HeaderMap,
    ) -> Option<IpAddr> {
        peer.map(|peer| self.trusted_proxies.client_ip(peer.ip(), headers))
    }

    /// One request from `ip`.
    pub fn client_request(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.per_ip {
            Some(limiter) => limiter.check(&ip).map_err(|wait| {
                ApiError::rate_limited("too many requests from this address", wait)
            }),
            None => Ok(()),
        }
    }

    /// One authenticated request of `account`.
    pub fn account_request(&self, account: &str) -> Result<(), ApiError> {
        match &self.per_account {
            Some(limiter) => limiter
                .check(&account.to_owned())
                .map_err(|wait| ApiError::rate_limited("too many requests for this account", wait)),
            None => Ok(()),
        }
    }

    /// Records a failed authentication from `ip`; once the address's budget is spent, the 429 to answer
    /// instead of the 401. Only failing requests are refused: a request whose token verifies is never
    /// held back by someone else's bad tokens from the same address (a NAT, a test runner), and guessing
    /// a token gains nothing by waiting, since every guess past the budget is a 429 without an answer.
    pub fn authentication_failed(&self, ip: IpAddr) -> Option<ApiError> {
        let limiter = self.auth_failures.as_ref()?;
        let wait = limiter.check(&ip).err()?;
        Some(too_many_failures(wait))
    }

    /// One call that reaches a platform on behalf of `account`.
    pub fn platform_call(&self, account: &str) -> Result<(), ApiError> {
        match &self.platform_calls {
            Some(limiter) => limiter.check(&account.to_owned()).map_err(|wait| {
                ApiError::rate_limited("too many calls to platforms for this account", wait)
            }),
            None => Ok(()),
        }
    }
}

fn too_many_failures(wait: Duration) -> ApiError {
    ApiError::rate_limited("too many failed authentications from this address", wait)
}

/// The per-address limit, on every request but the health checks (a load balancer probes from one address).
pub async fn per_client_address(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let refused = match req.app_data::<web::Data<RateLimiters>>() {
        Some(limiters) if !req.path().starts_with("/health/") => limiters
            .client_ip(req.peer_addr(), req.headers())
            .and_then(|ip| limiters.client_request(ip).err()),
        _ => None,
    };
    match refused {
        Some(problem) => Ok(req.error_response(problem).map_into_boxed_body()),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

/// Charges a call that reaches a platform to the caller's account (connection and source tests).
pub fn platform_call(req: &HttpRequest, principal: &Principal) -> Result<(), ApiError> {
    match req.app_data::<web::Data<RateLimiters>>() {
        Some(limiters) => limiters.platform_call(&principal.account_id),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print() {
        assert_eq!(
            Rate::parse("100/s").unwrap(),
            Some(Rate::new(100, Duration::from_secs(1)))
        );
        assert_eq!(
            Rate::parse(" 20/min ").unwrap(),
            Some(Rate::new(20, Duration::from_secs(60)))
        );
        assert_eq!(Rate::parse("off").unwrap(), None);
        assert_eq!(Rate::new(5, Duration::from_secs(3600)).to_string(), "5/h");
        for bad in ["", "100", "0/s", "fast/s", "10/day", "-1/s"] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_refuses_the_request_past_its_burst_and_says_when() {
        let limiters = RateLimiters::new(&RateLimitSettings {
            per_account: Some(Rate::new(3, Duration::from_secs(60))),
            ..RateLimitSettings::default()
        });
        for _ in 0..3 {
            limiters.account_request("a").unwrap();
        }
        let refused = limiters.account_request("a").unwrap_err();
        assert_eq!(refused.code, crate::error::ErrorCode::RateLimited);
        assert!((1..=20).contains(&refused.retry_after.unwrap()));
        limiters.account_request("b").unwrap();
    }

    #[test]
    fn the_client_is_the_peer_unless_the_peer_is_a_trusted_proxy() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.7, fd00::/8").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            actix_web::http::header::HeaderName::from_static("x-forwarded-for"),
            "6.6.6.6, 203.0.113.9:4711, 10.1.2.3".parse().unwrap(),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Through two trusted hops: the first untrusted one from the right; what the client wrote is ignored.
        assert_eq!(
            proxies.client_ip(ip("10.9.9.9"), &headers),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client_ip(ip("192.0.2.7"), &headers),
            ip("203.0.113.9")
        );
        // From anyone else the header is not believed.
        assert_eq!(
            proxies.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        assert_eq!(
            proxies.client_ip(ip("192.0.2.8"), &headers),
            ip("192.0.2.8")
        );
        // A trusted proxy without the header is the client.
        assert_eq!(
            proxies.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert!(proxies.contains(ip("fd12::1")));
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
        for bad in ["10.0.0.0/33", "proxy", "10.0.0.0/x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn failed_authentications_past_the_budget_are_refused_per_address() {
        let limiters = RateLimiters::new(&RateLimitSettings {
            auth_failures: Some(Rate::new(2, Duration::from_secs(60))),
            ..RateLimitSettings::default()
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiters.authentication_failed(ip).is_none());
        assert!(limiters.authentication_failed(ip).is_none());
        assert!(limiters.authentication_failed(ip).is_some());
        assert!(limiters
            .authentication_failed("192.0.2.2".parse().unwrap())
            .is_none());
    }
}
