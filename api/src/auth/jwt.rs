//! Bearer JWT verification (DESIGN §4, §7).
//!
//! Which algorithms are accepted is decided by the configuration alone, never by the token's header:
//! HS256 only when `LISTBACKUP_JWT_SECRET` is set (and only ever with that secret), RS256/ES256 only when
//! `LISTBACKUP_JWT_JWKS_URL` is set (and only with the JWKS key named by the token's `kid`, of the matching key
//! type). Keys a token carries itself (`jwk`, `jku`, `x5u`, `x5c` headers) are never looked at.

use listbackup_domain::ErrorChain;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::{Error as JwtError, ErrorKind as JwtErrorKind};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::principal::{Principal, Role};
use crate::error::ApiError;

/// Default name of the claim holding the account id.
pub const DEFAULT_ACCOUNT_CLAIM: &str = "account_id";
/// Default name of the claim holding the roles.
pub const DEFAULT_ROLES_CLAIM: &str = "roles";

/// The shortest HS256 secret accepted, in bytes (RFC 7518 §3.2: at least the size of the SHA-256 output).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 15;
/// Tokens longer than this are refused before any parsing (real ones are a few hundred bytes to a few KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Timeout of one JWKS fetch, connection included.
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);
/// At most one JWKS fetch per this interval, however many tokens name unknown `kid`s: a flood of bogus
/// tokens must not turn into a flood of requests to the identity provider.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// Cached keys are refetched (on use) after this long, so that keys the identity provider withdrew stop
/// verifying. While the provider is unreachable, the stale keys keep verifying.
const JWKS_MAX_AGE: Duration = Duration::from_secs(10 * 60);
/// A JWKS is a few KiB; refuse to buffer anything much larger.
const JWKS_MAX_BYTES: usize = 256 * 1024;

/// How callers are authenticated.
#[derive(Clone)]
pub struct AuthConfig {
    /// `LISTBACKUP_JWT_SECRET`: enables HS256.
    pub hs256_secret: Option<String>,
    /// `LISTBACKUP_JWT_JWKS_URL`: enables RS256/ES256 with the identity provider's keys.
    pub jwks_url: Option<String>,
    /// `LISTBACKUP_JWT_ISSUER`: when set, `iss` is required and must equal it.
    pub issuer: Option<String>,
    /// `LISTBACKUP_JWT_AUDIENCE`: when set, `aud` is required and must contain it.
    pub audience: Option<String>,
    /// `LISTBACKUP_JWT_ACCOUNT_CLAIM`, default `account_id`.
    pub account_claim: String,
    /// `LISTBACKUP_JWT_ROLES_CLAIM`, default `roles`.
    pub roles_claim: String,
}

impl std::fmt::Debug for AuthConfig {
    /// Never prints the HS256 secret: configuration gets logged when things go wrong.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("account_claim", &self.account_claim)
            .field("roles_claim", &self.roles_claim)
            .finish()
    }
}

impl Default for AuthConfig {
    /// Nothing configured (so [`Authenticator::new`] refuses it), default claim names.
    fn default() -> Self {
        Self {
            hs256_secret: None,
            jwks_url: None,
            issuer: None,
            audience: None,
            account_claim: DEFAULT_ACCOUNT_CLAIM.to_string(),
            roles_claim: DEFAULT_ROLES_CLAIM.to_string(),
        }
    }
}

impl AuthConfig {
    /// Reads the `LISTBACKUP_JWT_*` environment variables; empty values count as unset.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let defaults = Self::default();
        Self {
            hs256_secret: var("LISTBACKUP_JWT_SECRET"),
            jwks_url: var("LISTBACKUP_JWT_JWKS_URL"),
            issuer: var("LISTBACKUP_JWT_ISSUER"),
            audience: var("LISTBACKUP_JWT_AUDIENCE"),
            account_claim: var("LISTBACKUP_JWT_ACCOUNT_CLAIM").unwrap_or(defaults.account_claim),
            roles_claim: var("LISTBACKUP_JWT_ROLES_CLAIM").unwrap_or(defaults.roles_claim),
        }
    }

    /// The checks shared by every algorithm: `exp` and `sub` always, `nbf` when present, `iss`/`aud` when
    /// configured.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            // Without this, a token that simply omits `iss` would pass.
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // jsonwebtoken refuses any token carrying `aud` unless an audience is set; identity providers
            // always put one in, so with no audience configured there is nothing to check.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// Verifies bearer tokens. Cheap to clone: the state (configuration, HMAC key, JWKS cache) is shared.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    config: AuthConfig,
    hs256_key: Option<DecodingKey>,
    jwks: Option<JwksCache>,
}

impl std::fmt::Debug for Authenticator {
    // Hand-written so that the secret never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("hs256", &self.inner.hs256_key.is_some())
            .field("jwks_url", &self.inner.config.jwks_url)
            .field("issuer", &self.inner.config.issuer)
            .field("audience", &self.inner.config.audience)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Fails when neither an HS256 secret nor a JWKS URL is configured, or when one of them is unusable.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        if config.account_claim.is_empty() || config.roles_claim.is_empty() {
            return Err("the JWT account and roles claim names must not be empty".into());
        }
        let hs256_key = match config.hs256_secret.as_deref() {
            None => None,
            Some("") => return Err("LISTBACKUP_JWT_SECRET is empty".into()),
            // RFC 7518 §3.2: an HS256 key must be at least as long as the hash's output, 32 bytes.
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                return Err(format!(
                    "LISTBACKUP_JWT_SECRET is {} bytes; HS256 needs at least {MIN_HS256_SECRET_BYTES} (RFC 7518 §3.2): \
                     generate one with `head -c 32 /dev/urandom | base64`",
                    secret.len()
                ))
            }
            Some(secret) => Some(DecodingKey::from_secret(secret.as_bytes())),
        };
        let jwks = config.jwks_url.as_deref().map(JwksCache::new).transpose()?;
        if hs256_key.is_none() && jwks.is_none() {
            return Err(
                "no token verification configured: set LISTBACKUP_JWT_SECRET and/or LISTBACKUP_JWT_JWKS_URL"
                    .into(),
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                hs256_key,
                jwks,
            }),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// Verifies a bearer token and returns the caller.
    ///
    /// Every refusal is a 401 with a short reason (never the token itself); the one exception is a 503 when
    /// the identity provider's keys are needed, cannot be fetched and no cached key verifies the token.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::unauthorized("the bearer token is malformed"));
        }
        // Parsing fails for `alg: none` and any other algorithm jsonwebtoken does not know.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::unauthorized("the bearer token is malformed or uses an unsupported algorithm")
        })?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: critical extensions we do not understand make the token invalid.
            return Err(ApiError::unauthorized(
                "the token uses unsupported critical header parameters",
            ));
        }
        let inner = &*self.inner;
        let claims = match (header.alg, &inner.hs256_key, &inner.jwks) {
            (Algorithm::HS256, Some(secret), _) => {
                decode(token, secret, &inner.config.validation(header.alg))?
            }
            (Algorithm::RS256 | Algorithm::ES256, _, Some(jwks)) => {
                let kid = header.kid.as_deref().ok_or_else(|| {
                    ApiError::unauthorized("the token names no signing key (`kid`)")
                })?;
                let key = jwks.key(kid, header.alg).await?;
                decode(token, &key, &inner.config.validation(header.alg))?
            }
            // Includes HS256 when only a JWKS is configured: that is the "RSA public key used as HMAC
            // secret" forgery, and the reason the algorithm is never taken from the token alone.
            _ => {
                return Err(ApiError::unauthorized(
                    "the token's algorithm is not accepted",
                ))
            }
        };
        principal_from_claims(&inner.config, &claims)
    }
}

fn decode(
    token: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<Map<String, Value>, ApiError> {
    match jsonwebtoken::decode::<Map<String, Value>>(token, key, validation) {
        // RFC 7519 §4.1.6: `iat`, when present, is a NumericDate; jsonwebtoken does not check it.
        Ok(data)
            if data
                .claims
                .get("iat")
                .is_some_and(|iat| !iat.is_null() && !is_numeric_date(iat)) =>
        {
            Err(ApiError::unauthorized(
                "the token's `iat` claim is malformed",
            ))
        }
        Ok(data) => Ok(data.claims),
        // jsonwebtoken reports a required claim it cannot read as a number or a string (`"exp": "soon"`,
        // `"exp": 1e20`) as missing. The signature has verified by then (it is checked before the claims):
        // read the claims once more with no claim checks, only to say which it is. Refused either way.
        Err(err) => match err.kind() {
            JwtErrorKind::MissingRequiredClaim(claim) if present(token, key, validation, claim) => {
                Err(ApiError::unauthorized(format!(
                    "the token's `{claim}` claim is malformed"
                )))
            }
            _ => Err(rejection(err)),
        },
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number of seconds since the epoch, here one a `u64` holds.
fn is_numeric_date(value: &Value) -> bool {
    value.as_u64().is_some()
        || value
            .as_f64()
            .is_some_and(|f| f.is_finite() && (0.0..1e12).contains(&f))
}

/// Whether the (signed) token holds `claim` with a value other than `null`.
fn present(token: &str, key: &DecodingKey, validation: &Validation, claim: &str) -> bool {
    let mut signature_only = validation.clone();
    signature_only.required_spec_claims.clear();
    signature_only.validate_exp = false;
    signature_only.validate_nbf = false;
    signature_only.validate_aud = false;
    signature_only.iss = None;
    signature_only.sub = None;
    jsonwebtoken::decode::<Map<String, Value>>(token, key, &signature_only)
        .is_ok_and(|data| data.claims.get(claim).is_some_and(|value| !value.is_null()))
}

/// A short, token-free reason for a failed verification.
fn rejection(err: JwtError) -> ApiError {
    let reason = match err.kind() {
        JwtErrorKind::ExpiredSignature => "the token has expired".to_string(),
        JwtErrorKind::ImmatureSignature => "the token is not valid yet".to_string(),
        JwtErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_string(),
        JwtErrorKind::InvalidAudience => "the token's audience is not accepted".to_string(),
        JwtErrorKind::InvalidSignature => "the token's signature is not valid".to_string(),
        JwtErrorKind::InvalidAlgorithm | JwtErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not accepted".to_string()
        }
        // The claim names come from our own validation settings, not from the token.
        JwtErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        JwtErrorKind::InvalidClaimFormat(claim) => {
            format!("the token's `{claim}` claim is malformed")
        }
        JwtErrorKind::InvalidRsaKey(_)
        | JwtErrorKind::InvalidEcdsaKey
        | JwtErrorKind::InvalidKeyFormat => {
            // A key from the JWKS that the crypto backend cannot use: our side (or the IdP's), worth a log.
            tracing::warn!(
                error = %ErrorChain(&err),
                "a configured JWT verification key is unusable"
            );
            "the token could not be verified".to_string()
        }
        _ => "the bearer token is malformed".to_string(),
    };
    ApiError::unauthorized(reason)
}

fn principal_from_claims(
    config: &AuthConfig,
    claims: &Map<String, Value>,
) -> Result<Principal, ApiError> {
    let non_empty_string = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                ApiError::unauthorized(format!(
                    "the token's `{name}` claim must be a non-empty string"
                ))
            })
    };
    let user_id = non_empty_string("sub")?;
    let account_id = non_empty_string(&config.account_claim)?;
    // Identifiers travel into rows, event metadata and logs: a NUL (which PostgreSQL text cannot hold) or a
    // line break in a signed token is the token's problem, not a server error. They are taken exactly as
    // signed, in their one form: `" acme"` would otherwise be a tenant of its own beside `acme`.
    listbackup_domain::values::AccountId::parse(&account_id).map_err(|reason| {
        ApiError::unauthorized(format!(
            "the token's `{}` claim is not a valid account id: {reason}",
            config.account_claim
        ))
    })?;
    check_user_id(&user_id).map_err(|reason| {
        ApiError::unauthorized(format!(
            "the token's `sub` claim is not a valid user id: {reason}"
        ))
    })?;

    let roles = match claims.get(&config.roles_claim) {
        // No roles: authenticated, but every `require_*` check will answer 403.
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            let mut roles = Vec::with_capacity(items.len());
            for item in items {
                let raw = item.as_str().ok_or_else(|| {
                    ApiError::unauthorized(format!(
                        "the token's `{}` claim must be an array of strings",
                        config.roles_claim
                    ))
                })?;
                // Roles this service does not know (other applications' roles, say) are ignored.
                if let Some(role) = Role::parse(raw) {
                    if !roles.contains(&role) {
                        roles.push(role);
                    }
                }
            }
            roles
        }
        Some(_) => {
            return Err(ApiError::unauthorized(format!(
                "the token's `{}` claim must be an array of strings",
                config.roles_claim
            )))
        }
    };

    Ok(Principal {
        account_id,
        user_id,
        roles,
    })
}

/// A user id (`sub`) as signed: at most 256 characters, no control characters, no whitespace around it.
fn check_user_id(user_id: &str) -> Result<(), &'static str> {
    if user_id.len() > 256 || user_id.chars().any(char::is_control) {
        return Err("a user id is at most 256 characters without control characters");
    }
    if user_id.trim() != user_id {
        return Err("a user id has no leading or trailing whitespace");
    }
    Ok(())
}

/// Mints an HS256 token for `listbackup token --account A --user U --role owner`: `sub`, the account and
/// roles claims (configured names), `iat`, `exp = now + ttl`, and `iss`/`aud` when configured.
pub fn mint_hs256_token(
    config: &AuthConfig,
    account: &str,
    user: &str,
    roles: &[Role],
    ttl: Duration,
) -> Result<String, String> {
    let secret = match config.hs256_secret.as_deref() {
        Some(secret) if !secret.is_empty() => secret,
        _ => return Err("LISTBACKUP_JWT_SECRET is not configured".into()),
    };
    if secret.len() < MIN_HS256_SECRET_BYTES {
        return Err(format!(
            "LISTBACKUP_JWT_SECRET is shorter than {MIN_HS256_SECRET_BYTES} bytes (RFC 7518 §3.2)"
        ));
    }
    if account.trim().is_empty() {
        return Err("the account must not be empty".into());
    }
    if user.trim().is_empty() {
        return Err("the user must not be empty".into());
    }
    // What `authenticate` would refuse is not minted.
    listbackup_domain::values::AccountId::parse(account)
        .map_err(|reason| format!("the account is not a valid account id: {reason}"))?;
    check_user_id(user).map_err(|reason| format!("the user is not a valid user id: {reason}"))?;
    if ttl.is_zero() {
        return Err("the token lifetime must be positive".into());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the system clock is before 1970".to_string())?
        .as_secs();
    // Round a sub-second ttl up rather than minting an already expired token.
    let ttl_secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);

    let mut claims = Map::new();
    claims.insert("sub".into(), user.into());
    claims.insert(config.account_claim.clone(), account.into());
    claims.insert(
        config.roles_claim.clone(),
        roles
            .iter()
            .map(|role| Value::from(role.as_str()))
            .collect(),
    );
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), now.saturating_add(ttl_secs).into());
    if let Some(issuer) = &config.issuer {
        claims.insert("iss".into(), issuer.as_str().into());
    }
    if let Some(audience) = &config.audience {
        claims.insert("aud".into(), audience.as_str().into());
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|err| format!("cannot sign the token: {err}"))
}

// ---------------------------------------------------------------------------------------------------------
// JWKS

/// The identity provider's signing keys, fetched on first use and cached.
struct JwksCache {
    url: String,
    client: reqwest::Client,
    /// The last successfully fetched key set. A std lock: it is only held to clone an `Arc`.
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Serialises fetches (one in flight at a time) and remembers when the last one happened.
    gate: tokio::sync::Mutex<FetchGate>,
}

#[derive(Default)]
struct FetchGate {
    last_attempt: Option<Instant>,
    last_failed: bool,
}

struct KeySet {
    fetched_at: Instant,
    /// By `kid`; a `kid` may (rarely) name keys of several types.
    keys: HashMap<String, Vec<VerificationKey>>,
}

struct VerificationKey {
    alg: Algorithm,
    key: Arc<DecodingKey>,
}

impl KeySet {
    fn find(&self, kid: &str, alg: Algorithm) -> Option<Arc<DecodingKey>> {
        self.keys
            .get(kid)?
            .iter()
            .find(|candidate| candidate.alg == alg)
            .map(|candidate| Arc::clone(&candidate.key))
    }

    fn is_fresh(&self) -> bool {
        self.fetched_at.elapsed() < JWKS_MAX_AGE
    }
}

impl JwksCache {
    fn new(url: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(url)
            .map_err(|err| format!("LISTBACKUP_JWT_JWKS_URL is not a URL: {err}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" => {
                let loopback = match parsed.host() {
                    Some(url::Host::Domain(domain)) => domain == "localhost",
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    None => false,
                };
                if !loopback {
                    // Allowed for development setups (a Keycloak container, say), but the keys decide who
                    // may call the API, so say so.
                    tracing::warn!(%url, "LISTBACKUP_JWT_JWKS_URL is plain http: the signing keys can be tampered with in transit");
                }
            }
            other => {
                return Err(format!(
                    "LISTBACKUP_JWT_JWKS_URL must be http(s), not {other}"
                ))
            }
        }
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .connect_timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|err| format!("cannot build the JWKS HTTP client: {err}"))?;
        Ok(Self {
            url: url.to_string(),
            client,
            keys: RwLock::new(None),
            gate: tokio::sync::Mutex::new(FetchGate::default()),
        })
    }

    fn current(&self) -> Option<Arc<KeySet>> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key to verify a token signed with `alg` by the key `kid`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<Arc<DecodingKey>, ApiError> {
        let cached = self.current();
        if let Some(key) = cached
            .as_ref()
            .filter(|set| set.is_fresh())
            .and_then(|set| set.find(kid, alg))
        {
            return Ok(key);
        }
        // Nothing cached yet, the cache is stale, or the kid is unknown (the provider may have rotated keys).
        match self
            .refresh(cached.as_ref().map(|set| set.fetched_at))
            .await
        {
            Ok(set) => set
                .find(kid, alg)
                .ok_or_else(|| ApiError::unauthorized("the token's signing key is not known")),
            Err(unavailable) => match cached.and_then(|set| set.find(kid, alg)) {
                // The provider is unreachable but we still hold the key: keep serving.
                Some(key) => Ok(key),
                None => Err(unavailable),
            },
        }
    }

    /// Fetches the key set again unless someone else just did, or the last attempt was less than
    /// [`JWKS_REFETCH_INTERVAL`] ago. `seen` is the `fetched_at` of the set the caller found lacking.
    async fn refresh(&self, seen: Option<Instant>) -> Result<Arc<KeySet>, ApiError> {
        let mut gate = self.gate.lock().await;

        // Another request refreshed while this one waited for the gate: use its result.
        let current = self.current();
        if let Some(set) = &current {
            if Some(set.fetched_at) != seen {
                return Ok(Arc::clone(set));
            }
        }

        if let Some(last) = gate.last_attempt {
            let since = last.elapsed();
            if since < JWKS_REFETCH_INTERVAL {
                return match current {
                    Some(set) if !gate.last_failed => Ok(set),
                    _ => Err(unavailable(Some(JWKS_REFETCH_INTERVAL - since))),
                };
            }
        }

        gate.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                gate.last_failed = false;
                let set = Arc::new(set);
                *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&set));
                Ok(set)
            }
            Err(err) => {
                gate.last_failed = true;
                tracing::warn!(url = %self.url, reason = %ErrorChain(&err),
                    "fetching the JWKS failed");
                Err(unavailable(Some(JWKS_REFETCH_INTERVAL)))
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, JwksError> {
        let mut response = self
            .client
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| JwksError::Request(err.without_url()))?;
        if !response.status().is_success() {
            return Err(JwksError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > JWKS_MAX_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| JwksError::Request(err.without_url()))?
        {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body)?;
        if keys.is_empty() {
            tracing::warn!(url = %self.url, "the JWKS holds no usable RS256/ES256 signing key");
        }
        Ok(KeySet {
            fetched_at: Instant::now(),
            keys,
        })
    }
}

/// Why the JWKS could not be had (logged with the JWKS URL beside it, so the HTTP client's error goes without
/// it).
#[derive(Debug, thiserror::Error)]
enum JwksError {
    #[error("the request failed")]
    Request(#[source] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("the JWKS is too large")]
    TooLarge,
    #[error("the JWKS is not valid JSON")]
    NotJson(#[source] serde_json::Error),
}

fn unavailable(retry_after: Option<Duration>) -> ApiError {
    let mut err =
        ApiError::unavailable("the identity provider's signing keys cannot be fetched right now");
    // Round up: "retry after 0 s" would invite an immediate retry into the same cooldown.
    err.retry_after = retry_after.map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    err
}

/// The usable signing keys of a JWKS document, by `kid`.
///
/// Keys are parsed one by one so that a single key of a type jsonwebtoken does not know does not make the
/// whole set unusable. Kept: RSA keys (RS256) and EC P-256 keys (ES256) that have a `kid`, are not marked
/// for encryption, and do not declare another algorithm. Symmetric (`oct`) keys are never taken from a JWKS.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Vec<VerificationKey>>, JwksError> {
    #[derive(serde::Deserialize)]
    struct RawJwks {
        keys: Vec<Value>,
    }
    let raw: RawJwks = serde_json::from_slice(body).map_err(JwksError::NotJson)?;

    let mut keys: HashMap<String, Vec<VerificationKey>> = HashMap::new();
    for value in raw.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(ref usage) if *usage != PublicKeyUse::Signature)
        {
            continue;
        }
        let alg = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Algorithm::RS256,
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                Algorithm::ES256
            }
            _ => continue,
        };
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
            Some(_) => false,
        };
        if !declared_ok {
            continue;
        }
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        keys.entry(kid).or_default().push(VerificationKey {
            alg,
            key: Arc::new(key),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_parsing_keeps_only_usable_signing_keys() {
        let body = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AQAB", "y": "AQAB"},
            {"kty": "EC", "kid": "p256", "crv": "P-256", "x": "AQAB", "y": "AQAB"},
            {"kty": "weird", "kid": "weird"}
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["p256", "rsa"]);
        assert_eq!(keys["rsa"][0].alg, Algorithm::RS256);
        assert_eq!(keys["p256"][0].alg, Algorithm::ES256);
    }

    #[test]
    fn issuer_and_audience_become_required_when_configured() {
        let config = AuthConfig {
            issuer: Some("https://idp".into()),
            audience: Some("listbackup".into()),
            ..AuthConfig::default()
        };
        let validation = config.validation(Algorithm::HS256);
        for claim in ["exp", "sub", "iss", "aud"] {
            assert!(validation.required_spec_claims.contains(claim), "{claim}");
        }
        let validation = AuthConfig::default().validation(Algorithm::HS256);
        assert!(!validation.validate_aud);
        assert!(!validation.required_spec_claims.contains("iss"));
    }
}
