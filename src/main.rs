//! `listbackup`: the command-line entry point. Each subcommand is a thin shell over the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use listbackup::{service, telemetry, Config};
use listbackup_api::auth::{mint_hs256_token, Role};
use listbackup_projections::audit::export::{
    parse_public_key, verify_export, AuditSigner, ExportStream,
};
use listbackup_projections::audit::verify::verify_chains;
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "listbackup",
    version,
    about = "ListBackup: backups of your SaaS platforms' data"
)]
struct Cli {
    /// A TOML file with the same keys as the environment variables (the environment wins).
    #[arg(long, global = true, env = "LISTBACKUP_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs everything in one process: migrations, API, projector, relay, sagas, backup worker.
    Serve,
    /// Runs the API with the projector, relay and sagas, but no backup worker (`listbackup worker` runs them).
    Api,
    /// Runs backups only: the backup worker and the token refresher, no HTTP API. On SIGTERM the running
    /// backups may finish within LISTBACKUP_SHUTDOWN_GRACE_SECS; those still running then are handed back for
    /// another worker to run at once.
    Worker,
    /// Applies the database migrations and exits.
    Migrate,
    /// Mints a bearer token signed with LISTBACKUP_JWT_SECRET (HS256).
    Token {
        #[arg(long)]
        account: String,
        #[arg(long)]
        user: String,
        /// owner, manager, viewer or auditor; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
    /// Read-model maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// The event log as evidence: signed exports and their offline check.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Tamper checks of the hash-chained log, and the signing key of exports.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Master key rotation: moves every stored credential and every account's data key onto the current
    /// LISTBACKUP_MASTER_KEY (the old key listed in LISTBACKUP_MASTER_KEYS_PREVIOUS); afterwards the old key
    /// can be retired. Safe to interrupt and run again.
    RotateKeys,
    /// The user CLI (`connections`, `sources`, `jobs`): a client of the REST API.
    #[command(flatten)]
    Client(listbackup::cli::ClientCommand),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Writes an account's event log to stdout as NDJSON, in log order, ending with a summary signed with
    /// LISTBACKUP_AUDIT_SIGNING_KEY (refused when it is not set). Memory stays flat however long the log.
    Export {
        #[arg(long)]
        account: String,
        /// RFC 3339: events recorded at or after it.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339: events recorded before it.
        #[arg(long)]
        to: Option<String>,
    },
    /// Checks an export with nothing but the signer's public key (no database); names the first line that
    /// does not verify. Exit status 0 when it verifies, 1 when it does not.
    VerifyExport {
        file: PathBuf,
        /// Base64 (or hex) of the Ed25519 public key, as GET /.well-known/listbackup-audit-key shows it.
        #[arg(long)]
        public_key: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recomputes every stream's hash chain and reports the modified, removed, inserted or reordered
    /// events. Exit status 0 when the log verifies, 1 when it does not.
    Verify {
        /// Only this account's streams (default: the whole log).
        #[arg(long)]
        account: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints a new Ed25519 key for LISTBACKUP_AUDIT_SIGNING_KEY, and its public half.
    GenerateKey,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuilds every read model from the event log, atomically.
    Rebuild,
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // A client prints results, not the service's JSON logs, on stdout.
    if let Command::Client(command) = cli.command {
        std::process::exit(listbackup::cli::run(command).await);
    }
    telemetry::init();
    if let Err(err) = run(cli).await {
        eprintln!("listbackup: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref());
    match cli.command {
        Command::Serve | Command::Api => {
            let mut config = config?;
            if matches!(cli.command, Command::Api) {
                // The emulations live in the serving process: a separate `listbackup worker` could not
                // reach them, so demo backups need `serve`'s own worker.
                anyhow::ensure!(
                    !config.demo,
                    "LISTBACKUP_DEMO=true needs `listbackup serve` (its backup worker reaches the demo's \
                     emulations; `listbackup worker` processes cannot)"
                );
                config.serve_backup_worker = false;
            }
            let listener = TcpListener::bind(&config.bind)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
            let mut running = service::start(&config, listener).await?;
            tokio::select! {
                result = running.wait() => result?,
                _ = shutdown_signal() => {
                    tracing::info!(
                        grace_secs = config.shutdown_grace.as_secs(),
                        "shutting down: finishing in-flight requests and running backups within the grace"
                    );
                    running.stop().await;
                    tracing::info!("stopped");
                }
            }
        }
        Command::Worker => {
            let config = config?;
            let worker = listbackup::worker::start(&config).await?;
            shutdown_signal().await;
            tracing::info!(
                grace_secs = config.shutdown_grace.as_secs(),
                "shutting down: running backups may finish within the grace, the others are handed back"
            );
            worker.stop().await;
            tracing::info!("stopped");
        }
        Command::Migrate => {
            let applied = listbackup::migrate::prepare(&config?).await?;
            println!("{} migration(s) applied", applied.len());
        }
        Command::Token {
            account,
            user,
            roles,
            ttl,
        } => {
            let auth = match config {
                Ok(config) => config.auth,
                // Minting needs no database: fall back to the JWT variables alone.
                Err(_) => listbackup_api::auth::AuthConfig::from_env(),
            };
            let roles = roles
                .iter()
                .map(|r| Role::parse(r).ok_or_else(|| anyhow::anyhow!("unknown role {r:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let token = mint_hs256_token(&auth, &account, &user, &roles, Duration::from_secs(ttl))
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("{token}");
        }
        Command::Projections {
            command: ProjectionsCommand::Rebuild,
        } => {
            let config = config?;
            listbackup::migrate::prepare(&config).await?;
            // The rebuild creates the new read-model tables, so it runs as the database's owner; the service's
            // role is granted its privileges on them afterwards.
            let mut as_owner = config.clone();
            as_owner.database_url = config.owner_database_url().to_owned();
            let applied = service::projector(&as_owner)?.rebuild().await?;
            listbackup::migrate::prepare(&config).await?;
            println!("read models rebuilt from {applied} event(s)");
        }
        Command::RotateKeys => {
            let config = config?;
            listbackup::migrate::prepare(&config).await?;
            let keys = service::master_keys(&config)?;
            let pool = service::read_pool(&config)?;
            let credentials =
                listbackup_commands::vault::CredentialVault::new(pool.clone(), keys.clone())
                    .rotate()
                    .await?;
            let data_keys =
                listbackup_commands::data_keys::DataKeys::new(pool.clone(), keys.clone())
                    .rewrap()
                    .await?;
            let webhook_secrets =
                listbackup_commands::webhooks::WebhookSecrets::new(pool, keys.clone())
                    .rotate()
                    .await?;
            println!(
                "{credentials} credential(s) re-encrypted, {data_keys} data key(s) re-wrapped and \
                 {webhook_secrets} webhook secret(s) re-encrypted under master key {}",
                keys.current_key_id()
            );
        }
        Command::Events { command } => events(command, config).await?,
        Command::Audit { command } => audit(command, config).await?,
        Command::Client(_) => unreachable!("client commands run before the service's setup"),
    }
    Ok(())
}

fn parse_time(name: &str, raw: Option<String>) -> anyhow::Result<Option<DateTime<Utc>>> {
    raw.map(|raw| {
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                anyhow::anyhow!("--{name} must be an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")
            })
    })
    .transpose()
}

async fn events(
    command: EventsCommand,
    config: Result<Config, listbackup::config::ConfigError>,
) -> anyhow::Result<()> {
    match command {
        EventsCommand::Export { account, from, to } => {
            let (from, to) = (parse_time("from", from)?, parse_time("to", to)?);
            let config = config?;
            let signer = config.audit_signer.clone().ok_or_else(|| {
                anyhow::anyhow!(
                    "LISTBACKUP_AUDIT_SIGNING_KEY is not set: exports are signed, and there is no key to sign \
                     with (`listbackup audit generate-key` makes one)"
                )
            })?;
            let pool = service::read_pool(&config)?;
            let mut export = ExportStream::start(pool, signer, &account, from, to).await?;
            // A CLI writing to a pipe: blocking writes are what backpressure should be here.
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = export.next_chunk().await? {
                out.write_all(&chunk)?;
            }
            out.flush()?;
        }
        EventsCommand::VerifyExport { file, public_key } => {
            let key =
                parse_public_key(&public_key).map_err(|e| anyhow::anyhow!("--public-key {e}"))?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?,
            );
            match verify_export(reader, &key) {
                Ok(verified) => {
                    let s = verified.summary;
                    println!(
                        "verified: {} event(s) of account {}, positions {} to {}, export hash {}",
                        s.count,
                        s.account_id,
                        s.first_position.map_or("-".into(), |p| p.to_string()),
                        s.last_position.map_or("-".into(), |p| p.to_string()),
                        s.export_hash
                    );
                }
                Err(failure) => {
                    println!("{}: {failure}", file.display());
                    std::process::exit(1);
                }
            }
        }
    }
    Ok(())
}

async fn audit(
    command: AuditCommand,
    config: Result<Config, listbackup::config::ConfigError>,
) -> anyhow::Result<()> {
    match command {
        AuditCommand::GenerateKey => {
            let signer = AuditSigner::generate();
            println!("LISTBACKUP_AUDIT_SIGNING_KEY={}", signer.secret_base64());
            println!(
                "# public key (GET /.well-known/listbackup-audit-key): {}",
                signer.public_key_base64()
            );
        }
        AuditCommand::Verify { account, json } => {
            let config = config?;
            let pool = service::read_pool(&config)?;
            let mut client = pool.get().await?;
            let report = verify_chains(&mut client, account.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} stream(s), {} event(s): {}",
                    report.streams,
                    report.events,
                    if report.ok {
                        "every hash chain verifies".to_owned()
                    } else {
                        format!("{} finding(s)", report.findings_total)
                    }
                );
                for f in &report.findings {
                    println!(
                        "{:?}: {} {} event {} (position {}, id {}): {}",
                        f.kind,
                        f.aggregate_type,
                        f.aggregate_id,
                        f.sequence,
                        f.position,
                        f.event_id,
                        f.detail
                    );
                }
            }
            if !report.ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (what orchestrators send before killing a process).
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
