//! Configuration (DESIGN §7): environment variables, optionally completed by a TOML file of the same keys.
//! The environment wins over the file, so one file can serve several deployments.

use std::collections::BTreeMap;
use std::path::Path;

use listbackup_api::auth::{AuthConfig, MIN_HS256_SECRET_BYTES};
use listbackup_api::hardening::{parse_cors_origins, MAX_HEADER_BYTES_LIMIT};
use listbackup_api::rate_limit::{Rate, RateLimitSettings, TrustedProxies};
use listbackup_api::HttpSettings;
use listbackup_commands::oauth::OauthSettings;
use listbackup_commands::platform_client::PlatformEndpoints;
use listbackup_workers::backup::{DeliverySettings, DispatchSettings};
use listbackup_workers::connectors::{RateLimit, RateLimits};
use listbackup_workers::storage::DEFAULT_GZIP_LEVEL;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// The file is not a TOML table of strings, numbers and booleans. `message` is the parser's message alone:
    /// its full error quotes the offending line, which may hold a secret.
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    /// The file could not be read (missing, not readable); `source` says why.
    #[error("config file {path} cannot be read")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Every setting of the service. Secrets stay in here and are never logged: this type has no Debug.
#[derive(Clone)]
pub struct Config {
    pub database_url: String,
    /// `LISTBACKUP_MIGRATION_DATABASE_URL`: the database's owner, who applies the migrations (and rebuilds the
    /// read models), after which the role of `DATABASE_URL` is granted only what the service needs (see
    /// [`crate::migrate::grant_service_role`]). Unset: `DATABASE_URL` does both, one role for everything.
    pub migration_database_url: Option<String>,
    pub nats_url: Option<String>,
    pub nats_prefix: String,
    pub bind: String,
    pub public_url: String,
    pub storage_url: Option<String>,
    /// Base64 of 32 bytes; `None` is accepted only by commands that never touch credentials.
    pub master_key: Option<String>,
    /// Retired master keys still accepted for decryption (comma separated in the variable).
    pub previous_master_keys: Vec<String>,
    pub auth: AuthConfig,
    pub platforms: PlatformEndpoints,
    /// Outbound requests per second per connection (`LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT`: `25`, `25/s` or
    /// `unlimited`); the platforms' documented limits by default.
    pub rate_limits: RateLimits,
    /// OAuth client registrations, endpoint overrides, allowed return origins, refresher interval.
    pub oauth: OauthSettings,
    /// Size of each database pool (the event store's and the read side's).
    pub db_pool_size: usize,
    /// How long a request waits for a free database connection before answering 503
    /// (`LISTBACKUP_DB_POOL_TIMEOUT_SECS`, default 10).
    pub db_pool_timeout: std::time::Duration,
    /// Ack wait and max deliveries of the backup workers' consumer (`LISTBACKUP_WORKER_ACK_WAIT_SECS`,
    /// `LISTBACKUP_WORKER_MAX_DELIVER`).
    pub worker_deliveries: DeliverySettings,
    /// Backups a worker process runs at once, and backups of one connection at once
    /// (`LISTBACKUP_WORKER_CONCURRENCY`, `LISTBACKUP_WORKER_CONNECTION_CONCURRENCY`).
    pub worker_dispatch: DispatchSettings,
    /// Whether `listbackup serve` runs a backup worker (`LISTBACKUP_SERVE_BACKUP_WORKER`, default true), for
    /// deployments (and tests) whose backups run in separate `listbackup worker` processes.
    pub serve_backup_worker: bool,
    /// Demo mode (`LISTBACKUP_DEMO`, `true` or `false`, default `false`; `scripts/serve` turns it on for
    /// local runs): `serve` runs the platforms' emulations on loopback, `GET /platforms` shows each API-key
    /// platform's demo credentials, and connections created with exactly those reach the emulation, never a
    /// real platform (see [`crate::demo`]).
    pub demo: bool,
    /// gzip level of stored data files, 1 (fastest) to 9 (smallest) (`LISTBACKUP_BACKUP_GZIP_LEVEL`, default 6).
    pub backup_gzip_level: u32,
    /// The Ed25519 key audit exports are signed with (`LISTBACKUP_AUDIT_SIGNING_KEY`, base64 of its 32-byte
    /// secret). Unset: exports are refused with a clear error, never signed with a key made up on the spot
    /// (a signature by a key nobody keeps proves nothing); every other audit route works without it.
    pub audit_signer: Option<listbackup_projections::audit::export::AuditSigner>,
    /// The scheduler's clock: the system's, or one a test sets by hand (not configurable from outside).
    pub scheduler_clock: listbackup_workers::scheduler::Clock,
    /// The longest the scheduler waits between two passes (60 s: it looks at each minute boundary anyway;
    /// tests driving a hand-set clock shorten it).
    pub scheduler_poll_interval: std::time::Duration,
    /// The wait between two retention sweeps (`LISTBACKUP_RETENTION_SWEEP_SECS`, default 30): a backup past
    /// its source's policy expires within a minute of the backup that put it there. The sweep reads the time
    /// from `scheduler_clock`.
    pub retention_sweep_interval: std::time::Duration,
    /// Backups the background verifier reads back per hour in each process (`LISTBACKUP_VERIFY_PER_HOUR`,
    /// default 2; 0: off).
    pub verify_per_hour: u32,
    /// `LISTBACKUP_ENV=production`: the settings a real deployment must have are enforced at start-up.
    pub production: bool,
    /// `LISTBACKUP_STORAGE_ENCRYPTION` (`on`, the default, or `off`): `off` writes new backup files in
    /// plaintext, for measuring what encryption costs (`bench/backup-throughput --encryption both`) and
    /// nothing else; refused with `LISTBACKUP_ENV=production`.
    pub storage_encryption: bool,
    /// HTTP caps and timeouts, security headers, CORS origins and request rate limits (issue 14).
    pub http: listbackup_api::HttpSettings,
    /// How long a stopping process (SIGTERM) lets in-flight requests and running backups finish before it
    /// hands the unfinished backups back for redelivery (`LISTBACKUP_SHUTDOWN_GRACE_SECS`, default 25: the
    /// drain and the exit then fit in the 30 s orchestrators wait before SIGKILL; 0 hands them back at once).
    pub shutdown_grace: std::time::Duration,
    /// Where `GET /metrics` is served (`LISTBACKUP_METRICS_BIND`, `IP:port`, e.g. `127.0.0.1:9464`): a
    /// listener of its own, without authentication, for a private address only (see [`crate::metrics`]).
    /// Unset (the default): no metrics.
    pub metrics_bind: Option<String>,
    /// Webhook and e-mail notifications (issue 14 §5): which targets are allowed, retries, timeout, SMTP.
    pub notifications: listbackup_workers::notifications::NotificationSettings,
}

/// The smallest `LISTBACKUP_DB_POOL_SIZE`: five log readers may each hold a pooled connection while they lead
/// (its session holds their advisory lock), and requests and the projector need three more.
pub const MIN_DB_POOL_SIZE: usize = 8;

/// Keys read from the file and the environment.
const KEYS: &[&str] = &[
    "DATABASE_URL",
    "LISTBACKUP_MIGRATION_DATABASE_URL",
    "NATS_URL",
    "LISTBACKUP_NATS_PREFIX",
    "LISTBACKUP_BIND",
    "LISTBACKUP_PUBLIC_URL",
    "LISTBACKUP_STORAGE_URL",
    "LISTBACKUP_MASTER_KEY",
    "LISTBACKUP_MASTER_KEYS_PREVIOUS",
    "LISTBACKUP_JWT_SECRET",
    "LISTBACKUP_JWT_JWKS_URL",
    "LISTBACKUP_JWT_ISSUER",
    "LISTBACKUP_JWT_AUDIENCE",
    "LISTBACKUP_JWT_ACCOUNT_CLAIM",
    "LISTBACKUP_JWT_ROLES_CLAIM",
    "LISTBACKUP_DB_POOL_SIZE",
    "LISTBACKUP_DB_POOL_TIMEOUT_SECS",
    "LISTBACKUP_ALLOWED_RETURN_ORIGINS",
    "LISTBACKUP_OAUTH_REFRESH_INTERVAL_SECS",
    "LISTBACKUP_WORKER_ACK_WAIT_SECS",
    "LISTBACKUP_WORKER_MAX_DELIVER",
    "LISTBACKUP_WORKER_CONCURRENCY",
    "LISTBACKUP_WORKER_CONNECTION_CONCURRENCY",
    "LISTBACKUP_SERVE_BACKUP_WORKER",
    "LISTBACKUP_DEMO",
    "LISTBACKUP_BACKUP_GZIP_LEVEL",
    "LISTBACKUP_STORAGE_ENCRYPTION",
    "LISTBACKUP_AUDIT_SIGNING_KEY",
    "LISTBACKUP_RETENTION_SWEEP_SECS",
    "LISTBACKUP_VERIFY_PER_HOUR",
    "LISTBACKUP_ENV",
    "LISTBACKUP_CORS_ORIGINS",
    "LISTBACKUP_HTTP_MAX_HEADER_BYTES",
    "LISTBACKUP_HTTP_BODY_TIMEOUT_SECS",
    "LISTBACKUP_RATE_LIMIT_IP",
    "LISTBACKUP_RATE_LIMIT_ACCOUNT",
    "LISTBACKUP_RATE_LIMIT_AUTH_FAILURES",
    "LISTBACKUP_RATE_LIMIT_PLATFORM_CALLS",
    "LISTBACKUP_TRUSTED_PROXIES",
    "LISTBACKUP_SHUTDOWN_GRACE_SECS",
    "LISTBACKUP_METRICS_BIND",
    "LISTBACKUP_WEBHOOK_ALLOW_HTTP",
    "LISTBACKUP_WEBHOOK_RETRY_BASE_MS",
    "LISTBACKUP_WEBHOOK_RETRY_MAX_MS",
    "LISTBACKUP_WEBHOOK_RETRY_FOR_SECS",
    "LISTBACKUP_WEBHOOK_TIMEOUT_SECS",
    "LISTBACKUP_SMTP_URL",
    "LISTBACKUP_SMTP_FROM",
];

impl Config {
    /// Reads the environment, after the TOML file at `file` (or `LISTBACKUP_CONFIG`) when there is one.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut values = BTreeMap::new();
        let file = file
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("LISTBACKUP_CONFIG").map(Into::into));
        if let Some(path) = file {
            values.extend(read_toml(&path)?);
        }
        for (key, value) in std::env::vars() {
            let known = KEYS.contains(&key.as_str()) || key.starts_with("LISTBACKUP_PLATFORM_");
            if known {
                values.insert(key, value);
            }
        }
        values.retain(|_, v| !v.trim().is_empty());
        Self::from_values(&values)
    }

    /// The database's owner: `LISTBACKUP_MIGRATION_DATABASE_URL`, or `DATABASE_URL` without it. Migrations
    /// and read-model rebuilds (which create tables) connect with it.
    pub fn owner_database_url(&self) -> &str {
        self.migration_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }

    /// Builds the configuration from key/value pairs named like the environment variables.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let get = |key: &str| values.get(key).cloned();
        let bind = get("LISTBACKUP_BIND").unwrap_or_else(|| "127.0.0.1:8080".into());
        let auth = AuthConfig {
            hs256_secret: get("LISTBACKUP_JWT_SECRET"),
            jwks_url: get("LISTBACKUP_JWT_JWKS_URL"),
            issuer: get("LISTBACKUP_JWT_ISSUER"),
            audience: get("LISTBACKUP_JWT_AUDIENCE"),
            account_claim: get("LISTBACKUP_JWT_ACCOUNT_CLAIM")
                .unwrap_or_else(|| "account_id".into()),
            roles_claim: get("LISTBACKUP_JWT_ROLES_CLAIM").unwrap_or_else(|| "roles".into()),
        };
        let db_pool_size = match get("LISTBACKUP_DB_POOL_SIZE") {
            None => 32,
            Some(raw) => raw
                .parse()
                .ok()
                .filter(|n| (MIN_DB_POOL_SIZE..=1000).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    key: "LISTBACKUP_DB_POOL_SIZE",
                    message: format!(
                        "must be a number from {MIN_DB_POOL_SIZE} to 1000 (each of the log readers that \
                         leads holds one connection: the relay, the sagas, the record indexer, the \
                         notification dispatcher and sender; requests need the rest)"
                    ),
                })?,
        };
        let db_pool_timeout = std::time::Duration::from_secs(number(
            values,
            "LISTBACKUP_DB_POOL_TIMEOUT_SECS",
            10,
            1..=300,
        )?);
        let defaults = DeliverySettings::default();
        let worker_deliveries = DeliverySettings {
            ack_wait: std::time::Duration::from_secs(number(
                values,
                "LISTBACKUP_WORKER_ACK_WAIT_SECS",
                defaults.ack_wait.as_secs(),
                1..=3600,
            )?),
            max_deliver: number(
                values,
                "LISTBACKUP_WORKER_MAX_DELIVER",
                defaults.max_deliver as u64,
                1..=100,
            )? as i64,
        };
        let dispatch = DispatchSettings::default();
        let worker_dispatch = DispatchSettings {
            concurrency: number(
                values,
                "LISTBACKUP_WORKER_CONCURRENCY",
                dispatch.concurrency as u64,
                1..=1024,
            )? as usize,
            per_connection: number(
                values,
                "LISTBACKUP_WORKER_CONNECTION_CONCURRENCY",
                dispatch.per_connection as u64,
                1..=64,
            )? as usize,
        };
        let backup_gzip_level = number(
            values,
            "LISTBACKUP_BACKUP_GZIP_LEVEL",
            u64::from(DEFAULT_GZIP_LEVEL),
            1..=9,
        )? as u32;
        let retention_sweep_interval = std::time::Duration::from_secs(number(
            values,
            "LISTBACKUP_RETENTION_SWEEP_SECS",
            30,
            1..=3600,
        )?);
        let verify_per_hour = number(values, "LISTBACKUP_VERIFY_PER_HOUR", 2, 0..=36_000)? as u32;
        let serve_backup_worker = match get("LISTBACKUP_SERVE_BACKUP_WORKER").as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_SERVE_BACKUP_WORKER",
                    message: "must be true or false".into(),
                })
            }
        };
        let storage_encryption = match get("LISTBACKUP_STORAGE_ENCRYPTION").as_deref() {
            None | Some("on") => true,
            Some("off") => false,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_STORAGE_ENCRYPTION",
                    message: "must be on or off".into(),
                })
            }
        };
        let demo = match get("LISTBACKUP_DEMO").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_DEMO",
                    message: "must be true or false".into(),
                })
            }
        };
        let audit_signer = get("LISTBACKUP_AUDIT_SIGNING_KEY")
            .map(|key| {
                listbackup_projections::audit::export::AuditSigner::from_base64(&key).map_err(
                    |message| ConfigError::Invalid {
                        key: "LISTBACKUP_AUDIT_SIGNING_KEY",
                        message: format!("{message} (`listbackup audit generate-key` makes one)"),
                    },
                )
            })
            .transpose()?;
        let public_url = get("LISTBACKUP_PUBLIC_URL").unwrap_or_else(|| format!("http://{bind}"));
        let oauth = OauthSettings::from_lookup(&public_url, |key| get(key)).map_err(|message| {
            ConfigError::Invalid {
                key: "LISTBACKUP_ALLOWED_RETURN_ORIGINS / LISTBACKUP_OAUTH_*",
                message,
            }
        })?;
        if let Some(secret) = &auth.hs256_secret {
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_JWT_SECRET",
                    message: format!(
                        "is {} bytes; HS256 needs at least {MIN_HS256_SECRET_BYTES} (RFC 7518 §3.2): generate one \
                         with `head -c 32 /dev/urandom | base64`",
                        secret.len()
                    ),
                });
            }
        }
        let production = match get("LISTBACKUP_ENV").as_deref().map(str::trim) {
            None | Some("development") => false,
            Some("production") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_ENV",
                    message: "must be development or production".into(),
                })
            }
        };
        if production {
            if get("LISTBACKUP_MASTER_KEY").is_none() {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_MASTER_KEY",
                    message: "is required with LISTBACKUP_ENV=production".into(),
                });
            }
            if demo {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_DEMO",
                    message: "demo mode is refused with LISTBACKUP_ENV=production".into(),
                });
            }
            if !storage_encryption {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_STORAGE_ENCRYPTION",
                    message: "off (plaintext backups, for benchmarks) is refused with \
                              LISTBACKUP_ENV=production"
                        .into(),
                });
            }
            if !public_url.starts_with("https://") {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_PUBLIC_URL",
                    message: "must be an https:// URL with LISTBACKUP_ENV=production".into(),
                });
            }
        }
        let shutdown_grace = std::time::Duration::from_secs(number(
            values,
            "LISTBACKUP_SHUTDOWN_GRACE_SECS",
            listbackup_workers::backup::DEFAULT_SHUTDOWN_GRACE.as_secs(),
            0..=3600,
        )?);
        let metrics_bind = get("LISTBACKUP_METRICS_BIND")
            .map(|bind| {
                bind.trim()
                    .parse::<std::net::SocketAddr>()
                    .map(|_| bind.trim().to_owned())
                    .map_err(|_| ConfigError::Invalid {
                        key: "LISTBACKUP_METRICS_BIND",
                        message: format!(
                            "{bind:?} is not an IP:port address (e.g. 127.0.0.1:9464, or 0.0.0.0:9464 on a private \
                             network)"
                        ),
                    })
            })
            .transpose()?;
        let mut http = http_settings(values, &public_url)?;
        http.shutdown_timeout = shutdown_grace;
        let notifications = notification_settings(values, production)?;
        Ok(Self {
            database_url: get("DATABASE_URL").ok_or(ConfigError::Missing("DATABASE_URL"))?,
            migration_database_url: get("LISTBACKUP_MIGRATION_DATABASE_URL"),
            nats_url: get("NATS_URL"),
            nats_prefix: get("LISTBACKUP_NATS_PREFIX").unwrap_or_else(|| "listbackup".into()),
            public_url,
            bind,
            storage_url: get("LISTBACKUP_STORAGE_URL"),
            master_key: get("LISTBACKUP_MASTER_KEY"),
            previous_master_keys: get("LISTBACKUP_MASTER_KEYS_PREVIOUS")
                .map(|v| {
                    v.split(',')
                        .map(|k| k.trim().to_owned())
                        .filter(|k| !k.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            auth,
            platforms: PlatformEndpoints::from_lookup(|key| get(key)),
            rate_limits: rate_limits(&get)?,
            oauth,
            db_pool_size,
            db_pool_timeout,
            worker_deliveries,
            worker_dispatch,
            serve_backup_worker,
            demo,
            backup_gzip_level,
            audit_signer,
            scheduler_clock: Default::default(),
            scheduler_poll_interval: std::time::Duration::from_secs(60),
            retention_sweep_interval,
            verify_per_hour,
            production,
            storage_encryption,
            http,
            shutdown_grace,
            metrics_bind,
            notifications,
        })
    }
}

/// Webhook and e-mail notification settings (issue 14 §5).
fn notification_settings(
    values: &BTreeMap<String, String>,
    production: bool,
) -> Result<listbackup_workers::notifications::NotificationSettings, ConfigError> {
    use listbackup_workers::notifications::email::SmtpSettings;
    use listbackup_workers::notifications::NotificationSettings;
    let defaults = NotificationSettings::default();
    let allow_private = match values
        .get("LISTBACKUP_WEBHOOK_ALLOW_HTTP")
        .map(|v| v.trim())
    {
        None | Some("false") => false,
        Some("true") if production => return Err(ConfigError::Invalid {
            key: "LISTBACKUP_WEBHOOK_ALLOW_HTTP",
            message:
                "plain-HTTP and private-network webhooks are refused with LISTBACKUP_ENV=production"
                    .into(),
        }),
        Some("true") => true,
        Some(_) => {
            return Err(ConfigError::Invalid {
                key: "LISTBACKUP_WEBHOOK_ALLOW_HTTP",
                message: "must be true or false".into(),
            })
        }
    };
    let smtp = match (
        values.get("LISTBACKUP_SMTP_URL"),
        values.get("LISTBACKUP_SMTP_FROM"),
    ) {
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Missing(
                "LISTBACKUP_SMTP_FROM (with LISTBACKUP_SMTP_URL)",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing(
                "LISTBACKUP_SMTP_URL (with LISTBACKUP_SMTP_FROM)",
            ))
        }
        (Some(url), Some(from)) => Some(SmtpSettings::parse(url.trim(), from.trim()).map_err(
            |message| ConfigError::Invalid {
                key: "LISTBACKUP_SMTP_URL / LISTBACKUP_SMTP_FROM",
                message,
            },
        )?),
    };
    Ok(NotificationSettings {
        allow_private,
        retry_base: std::time::Duration::from_millis(number(
            values,
            "LISTBACKUP_WEBHOOK_RETRY_BASE_MS",
            defaults.retry_base.as_millis() as u64,
            100..=3_600_000,
        )?),
        retry_max_delay: std::time::Duration::from_millis(number(
            values,
            "LISTBACKUP_WEBHOOK_RETRY_MAX_MS",
            defaults.retry_max_delay.as_millis() as u64,
            100..=86_400_000,
        )?),
        retry_for: std::time::Duration::from_secs(number(
            values,
            "LISTBACKUP_WEBHOOK_RETRY_FOR_SECS",
            defaults.retry_for.as_secs(),
            1..=7 * 86_400,
        )?),
        timeout: std::time::Duration::from_secs(number(
            values,
            "LISTBACKUP_WEBHOOK_TIMEOUT_SECS",
            defaults.timeout.as_secs(),
            1..=60,
        )?),
        smtp,
    })
}

/// The HTTP settings: header cap, body read timeout, CORS origins, HSTS (when the public URL is https)
/// and the request rate limits.
fn http_settings(
    values: &BTreeMap<String, String>,
    public_url: &str,
) -> Result<HttpSettings, ConfigError> {
    let defaults = HttpSettings::default();
    let max_header_bytes = number(
        values,
        "LISTBACKUP_HTTP_MAX_HEADER_BYTES",
        defaults.max_header_bytes as u64,
        1024..=MAX_HEADER_BYTES_LIMIT as u64,
    )? as usize;
    let body_timeout = std::time::Duration::from_secs(number(
        values,
        "LISTBACKUP_HTTP_BODY_TIMEOUT_SECS",
        defaults.body_timeout.as_secs(),
        1..=600,
    )?);
    let cors_origins = match values.get("LISTBACKUP_CORS_ORIGINS") {
        None => Vec::new(),
        Some(raw) => parse_cors_origins(raw).map_err(|message| ConfigError::Invalid {
            key: "LISTBACKUP_CORS_ORIGINS",
            message,
        })?,
    };
    let rate = |key: &'static str, default: Option<Rate>| match values.get(key) {
        None => Ok(default),
        Some(raw) => Rate::parse(raw).map_err(|message| ConfigError::Invalid { key, message }),
    };
    let limits = RateLimitSettings::default();
    let trusted_proxies = match values.get("LISTBACKUP_TRUSTED_PROXIES") {
        None => TrustedProxies::default(),
        Some(raw) => TrustedProxies::parse(raw).map_err(|message| ConfigError::Invalid {
            key: "LISTBACKUP_TRUSTED_PROXIES",
            message,
        })?,
    };
    let rate_limits = RateLimitSettings {
        trusted_proxies,
        per_ip: rate("LISTBACKUP_RATE_LIMIT_IP", limits.per_ip)?,
        per_account: rate("LISTBACKUP_RATE_LIMIT_ACCOUNT", limits.per_account)?,
        auth_failures: rate("LISTBACKUP_RATE_LIMIT_AUTH_FAILURES", limits.auth_failures)?,
        platform_calls: rate(
            "LISTBACKUP_RATE_LIMIT_PLATFORM_CALLS",
            limits.platform_calls,
        )?,
    };
    Ok(HttpSettings {
        max_header_bytes,
        body_timeout,
        cors_origins,
        hsts: public_url.starts_with("https://"),
        rate_limits,
        shutdown_timeout: defaults.shutdown_timeout,
    })
}

/// The platforms' rate limits, overridden per platform; a value that is not a rate is refused rather than
/// ignored (a typo would otherwise silently leave the default in force).
fn rate_limits(get: &impl Fn(&str) -> Option<String>) -> Result<RateLimits, ConfigError> {
    for platform in listbackup_domain::platform::CATALOG {
        let key = format!(
            "LISTBACKUP_PLATFORM_{}_RATE_LIMIT",
            platform.id.to_ascii_uppercase()
        );
        if let Some(value) = get(&key) {
            if RateLimit::parse(&value).is_none() {
                return Err(ConfigError::Invalid {
                    key: "LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT",
                    message: format!(
                        "{key} = {value:?} is not a rate: give requests per second (25 or 25/s) or unlimited"
                    ),
                });
            }
        }
    }
    Ok(RateLimits::from_lookup(get))
}

/// The whole number `key` holds, within `range`, or `default` when it is unset.
fn number(
    values: &BTreeMap<String, String>,
    key: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    match values.get(key) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                key,
                message: format!(
                    "must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
            }),
    }
}

fn read_toml(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Unreadable {
        path: path.display().to_string(),
        source,
    })?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
    table
        .into_iter()
        .map(|(key, value)| match value {
            toml::Value::String(s) => Ok((key, s)),
            toml::Value::Integer(i) => Ok((key, i.to_string())),
            toml::Value::Boolean(b) => Ok((key, b.to_string())),
            _ => Err(err(format!("{key} must be a string, number or boolean"))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_config_file_keeps_the_io_error_as_its_source() {
        let path =
            std::env::temp_dir().join(format!("listbackup-no-such-{}.toml", std::process::id()));
        let err = read_toml(&path).unwrap_err();
        let source = std::error::Error::source(&err).expect("the i/o error is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an i/o error");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        let reason = io.to_string();
        // What `listbackup` prints (anyhow's `{:#}`) still names the file and the reason.
        let shown = format!("{:#}", anyhow::Error::new(err));
        assert!(shown.contains(&path.display().to_string()), "{shown}");
        assert!(shown.ends_with(&reason), "{shown}");
    }

    #[test]
    fn database_url_is_required_and_defaults_apply() {
        let mut values = BTreeMap::new();
        assert!(matches!(
            Config::from_values(&values),
            Err(ConfigError::Missing("DATABASE_URL"))
        ));
        values.insert("DATABASE_URL".to_owned(), "postgres://x".to_owned());
        let config = Config::from_values(&values).unwrap();
        assert_eq!(config.bind, "127.0.0.1:8080");
        assert_eq!(config.nats_prefix, "listbackup");
        assert_eq!(config.auth.account_claim, "account_id");
    }

    #[test]
    fn demo_mode_is_off_unless_asked_for() {
        let mut values = BTreeMap::from([("DATABASE_URL".to_owned(), "postgres://x".to_owned())]);
        assert!(!Config::from_values(&values).unwrap().demo);
        values.insert("LISTBACKUP_DEMO".into(), "true".into());
        assert!(Config::from_values(&values).unwrap().demo);
        values.insert("LISTBACKUP_DEMO".into(), "false".into());
        assert!(!Config::from_values(&values).unwrap().demo);
        values.insert("LISTBACKUP_DEMO".into(), "yes".into());
        assert!(
            Config::from_values(&values).is_err_and(|e| e.to_string().contains("LISTBACKUP_DEMO"))
        );
    }

    #[test]
    fn worker_delivery_settings_default_and_are_checked() {
        let mut values = BTreeMap::from([("DATABASE_URL".to_owned(), "postgres://x".to_owned())]);
        let config = Config::from_values(&values).unwrap();
        assert_eq!(config.worker_deliveries, DeliverySettings::default());
        assert!(config.serve_backup_worker);
        values.insert("LISTBACKUP_WORKER_ACK_WAIT_SECS".into(), "3".into());
        values.insert("LISTBACKUP_WORKER_MAX_DELIVER".into(), "2".into());
        values.insert("LISTBACKUP_SERVE_BACKUP_WORKER".into(), "false".into());
        let config = Config::from_values(&values).unwrap();
        assert_eq!(
            config.worker_deliveries,
            DeliverySettings {
                ack_wait: std::time::Duration::from_secs(3),
                max_deliver: 2
            }
        );
        assert!(!config.serve_backup_worker);
        assert_eq!(config.backup_gzip_level, 6);
        values.insert("LISTBACKUP_BACKUP_GZIP_LEVEL".into(), "1".into());
        assert_eq!(Config::from_values(&values).unwrap().backup_gzip_level, 1);
        for (key, bad) in [
            ("LISTBACKUP_BACKUP_GZIP_LEVEL", "0"),
            ("LISTBACKUP_BACKUP_GZIP_LEVEL", "10"),
            ("LISTBACKUP_WORKER_ACK_WAIT_SECS", "0"),
            ("LISTBACKUP_WORKER_ACK_WAIT_SECS", "soon"),
            ("LISTBACKUP_WORKER_MAX_DELIVER", "0"),
            ("LISTBACKUP_WORKER_MAX_DELIVER", "-1"),
            ("LISTBACKUP_SERVE_BACKUP_WORKER", "maybe"),
        ] {
            let mut values = values.clone();
            values.insert(key.into(), bad.into());
            assert!(Config::from_values(&values).is_err(), "{key}={bad}");
        }
    }

    #[test]
    fn rate_limits_default_to_the_platforms_and_a_bad_one_is_refused() {
        let mut values = BTreeMap::from([("DATABASE_URL".to_owned(), "postgres://x".to_owned())]);
        let config = Config::from_values(&values).unwrap();
        assert_eq!(
            config.rate_limits.for_platform("stripe"),
            RateLimit::per_second(25.0)
        );
        values.insert(
            "LISTBACKUP_PLATFORM_STRIPE_RATE_LIMIT".into(),
            "unlimited".into(),
        );
        values.insert("LISTBACKUP_PLATFORM_KEAP_RATE_LIMIT".into(), "5/s".into());
        let config = Config::from_values(&values).unwrap();
        assert_eq!(
            config.rate_limits.for_platform("stripe"),
            RateLimit::unlimited()
        );
        assert_eq!(
            config.rate_limits.for_platform("keap"),
            RateLimit::per_second(5.0)
        );
        values.insert(
            "LISTBACKUP_PLATFORM_HUBSPOT_RATE_LIMIT".into(),
            "fast".into(),
        );
        let err = Config::from_values(&values).err().unwrap().to_string();
        assert!(
            err.contains("LISTBACKUP_PLATFORM_HUBSPOT_RATE_LIMIT"),
            "{err}"
        );
    }

    fn base() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("DATABASE_URL".to_owned(), "postgres://x".to_owned()),
            (
                "LISTBACKUP_JWT_SECRET".to_owned(),
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
        ])
    }

    fn refusal(values: &BTreeMap<String, String>) -> String {
        match Config::from_values(values) {
            Ok(_) => panic!("accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn an_hs256_secret_shorter_than_32_bytes_is_refused() {
        let mut values = base();
        Config::from_values(&values).unwrap();
        for short in ["a", "0123456789abcdef0123456789abcde"] {
            values.insert("LISTBACKUP_JWT_SECRET".into(), short.into());
            let err = refusal(&values);
            assert!(err.starts_with("LISTBACKUP_JWT_SECRET: "), "{err}");
            assert!(err.contains("at least 32"), "{err}");
            if short.len() > 1 {
                assert!(!err.contains(short), "the secret is not echoed: {err}");
            }
        }
    }

    #[test]
    fn production_refuses_what_a_real_deployment_must_not_have() {
        let mut values = base();
        values.insert("LISTBACKUP_ENV".into(), "production".into());
        values.insert("LISTBACKUP_MASTER_KEY".into(), "a2V5".into());
        values.insert(
            "LISTBACKUP_PUBLIC_URL".into(),
            "https://api.example.com".into(),
        );
        let config = Config::from_values(&values).unwrap();
        assert!(config.production);
        assert!(config.http.hsts);

        let mut no_key = values.clone();
        no_key.remove("LISTBACKUP_MASTER_KEY");
        assert!(refusal(&no_key).starts_with("LISTBACKUP_MASTER_KEY: "));

        let mut demo = values.clone();
        demo.insert("LISTBACKUP_DEMO".into(), "true".into());
        assert!(refusal(&demo).starts_with("LISTBACKUP_DEMO: "));
        let mut plaintext = values.clone();
        plaintext.insert("LISTBACKUP_STORAGE_ENCRYPTION".into(), "off".into());
        assert!(refusal(&plaintext).starts_with("LISTBACKUP_STORAGE_ENCRYPTION: "));
        demo.insert("LISTBACKUP_DEMO".into(), "false".into());
        Config::from_values(&demo).unwrap();

        let mut plain = values.clone();
        plain.insert(
            "LISTBACKUP_PUBLIC_URL".into(),
            "http://api.example.com".into(),
        );
        assert!(refusal(&plain).starts_with("LISTBACKUP_PUBLIC_URL: "));
        plain.remove("LISTBACKUP_PUBLIC_URL");
        assert!(refusal(&plain).starts_with("LISTBACKUP_PUBLIC_URL: "));

        let mut typo = values.clone();
        typo.insert("LISTBACKUP_ENV".into(), "prod".into());
        assert!(refusal(&typo).starts_with("LISTBACKUP_ENV: "));

        // Outside production, all of that is allowed (a developer's machine).
        let mut development = base();
        development.insert("LISTBACKUP_DEMO".into(), "true".into());
        let config = Config::from_values(&development).unwrap();
        assert!(!config.production);
        assert!(!config.http.hsts);
    }

    #[test]
    fn http_settings_default_and_are_checked() {
        let mut values = base();
        let config = Config::from_values(&values).unwrap();
        assert_eq!(config.http.max_header_bytes, 32 * 1024);
        assert_eq!(config.http.body_timeout.as_secs(), 15);
        assert!(config.http.cors_origins.is_empty());
        assert_eq!(config.http.rate_limits, RateLimitSettings::default());
        assert_eq!(config.shutdown_grace.as_secs(), 25);
        assert_eq!(config.metrics_bind, None);
        assert_eq!(config.http.shutdown_timeout.as_secs(), 25);
        values.insert(
            "LISTBACKUP_CORS_ORIGINS".into(),
            "https://app.example.com,http://localhost:3000".into(),
        );
        values.insert("LISTBACKUP_RATE_LIMIT_ACCOUNT".into(), "5/min".into());
        values.insert("LISTBACKUP_RATE_LIMIT_IP".into(), "off".into());
        let config = Config::from_values(&values).unwrap();
        assert_eq!(
            config.http.cors_origins,
            vec!["https://app.example.com", "http://localhost:3000"]
        );
        assert_eq!(
            config.http.rate_limits.per_account,
            Some(Rate::new(5, std::time::Duration::from_secs(60)))
        );
        assert_eq!(config.http.rate_limits.per_ip, None);
        for (key, bad) in [
            ("LISTBACKUP_CORS_ORIGINS", "*"),
            ("LISTBACKUP_RATE_LIMIT_ACCOUNT", "lots"),
            ("LISTBACKUP_RATE_LIMIT_AUTH_FAILURES", "0/s"),
            ("LISTBACKUP_RATE_LIMIT_PLATFORM_CALLS", "3/day"),
            ("LISTBACKUP_HTTP_MAX_HEADER_BYTES", "200000"),
            ("LISTBACKUP_HTTP_BODY_TIMEOUT_SECS", "0"),
            ("LISTBACKUP_TRUSTED_PROXIES", "10.0.0.0/99"),
            ("LISTBACKUP_SHUTDOWN_GRACE_SECS", "soon"),
            ("LISTBACKUP_SHUTDOWN_GRACE_SECS", "3601"),
            ("LISTBACKUP_METRICS_BIND", "metrics.internal"),
        ] {
            let mut values = values.clone();
            values.insert(key.into(), bad.into());
            let err = refusal(&values);
            assert!(err.starts_with(&format!("{key}: ")), "{key}={bad}: {err}");
        }
    }

    #[test]
    fn a_bad_pool_size_is_refused() {
        let values = BTreeMap::from([
            ("DATABASE_URL".to_owned(), "postgres://x".to_owned()),
            ("LISTBACKUP_DB_POOL_SIZE".to_owned(), "lots".to_owned()),
        ]);
        assert!(Config::from_values(&values).is_err());
        // Too small for the log readers that hold a connection while they lead.
        let mut small = values.clone();
        small.insert("LISTBACKUP_DB_POOL_SIZE".to_owned(), "3".to_owned());
        assert!(Config::from_values(&small).is_err());
        small.insert(
            "LISTBACKUP_DB_POOL_SIZE".to_owned(),
            MIN_DB_POOL_SIZE.to_string(),
        );
        assert!(Config::from_values(&small).is_ok());
    }

    /// A setting parsed but missing from `KEYS` would be silently ignored when it comes from the environment
    /// or the file: every `get("…")` of this file names a key of `KEYS` (or a platform's, read by prefix).
    #[test]
    fn every_setting_read_is_a_known_key() {
        let source = include_str!("config.rs");
        let mut read = 0;
        for piece in source.split("get(\"").skip(1) {
            let Some(key) = piece.split('"').next() else {
                continue;
            };
            if key.starts_with("LISTBACKUP_PLATFORM_")
                || !key.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            {
                continue;
            }
            read += 1;
            assert!(KEYS.contains(&key), "{key} is read but not in KEYS");
        }
        assert!(read > 20, "the scan found {read} settings");
    }
}
