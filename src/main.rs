//! `listbackup`: the command-line entry point. Each subcommand is a thin shell over the library.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use listbackup::{service, telemetry, Config};
use listbackup_api::auth::{mint_hs256_token, Role};

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
    /// Runs backups only: the backup worker and the token refresher, no HTTP API. On SIGTERM a backup in
    /// flight is left unacknowledged, so another worker runs it again after the ack wait.
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
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Rebuilds every read model from the event log, atomically.
    Rebuild,
}

#[tokio::main]
async fn main() {
    telemetry::init();
    if let Err(err) = run(Cli::parse()).await {
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
                config.serve_backup_worker = false;
            }
            let listener = TcpListener::bind(&config.bind)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.bind))?;
            let mut running = service::start(&config, listener).await?;
            tokio::select! {
                result = running.wait() => result?,
                _ = shutdown_signal() => {
                    tracing::info!("shutting down: finishing in-flight requests");
                    running.stop().await;
                }
            }
        }
        Command::Worker => {
            let worker = listbackup::worker::start(&config?).await?;
            shutdown_signal().await;
            tracing::info!("shutting down: in-flight backups are left for redelivery");
            worker.stop().await;
        }
        Command::Migrate => {
            let applied = listbackup::migrate::run(&config?.database_url).await?;
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
            listbackup::migrate::run(&config.database_url).await?;
            let applied = service::projector(&config)?.rebuild().await?;
            println!("read models rebuilt from {applied} event(s)");
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
