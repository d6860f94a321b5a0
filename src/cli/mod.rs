//! The user CLI: `listbackup connections|sources|jobs …`, a client of the REST API with a bearer token
//! (`LISTBACKUP_URL`, `LISTBACKUP_TOKEN`, or `--url` and `--token`). Lists follow `nextCursor` over every
//! page; `--output json` prints the API's JSON for scripts; failures print `error: <title>: <detail>` on
//! stderr and exit with a status per kind ([`ExitStatus`], README "Command line").

pub mod client;
pub mod download;
pub mod error;
pub mod output;
pub mod watch;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use client::{ApiClient, MAX_PAGE_SIZE};
pub use error::{CliError, ExitStatus};
use output::{bytes, count, field, print_json, print_json_line, print_table, Column, Output};
use watch::{outcome_text, FollowPolicy, Outcome};

/// Where the API is, who is asking, and how to print. Accepted after any client subcommand.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// The API's base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, env = "LISTBACKUP_URL", global = true)]
    pub url: Option<String>,
    /// A bearer token (`listbackup token` mints one for development).
    #[arg(long, env = "LISTBACKUP_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// `text` for people, `json` for scripts (lists: one array of every item; `--watch`: one JSON event a
    /// line).
    #[arg(long, value_enum, default_value_t = Output::Text, global = true)]
    pub output: Output,
}

/// How much of a list to fetch.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many items, newest first (default: every page).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Items per request (the API's `?limit=`, 1–200).
    #[arg(long, default_value_t = MAX_PAGE_SIZE,
          value_parser = clap::value_parser!(u32).range(1..=MAX_PAGE_SIZE as i64))]
    pub page_size: u32,
}

/// The client subcommands, flattened into `listbackup`'s own.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// The account's platform connections (through the REST API).
    Connections {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: ConnectionsCommand,
    },
    /// The account's sources, and backups of them on demand (through the REST API).
    Sources {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: SourcesCommand,
    },
    /// Backup jobs: follow, list their files, download them, cancel, retry (through the REST API).
    Jobs {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The token's account as a whole: its erasure (through the REST API).
    Accounts {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        command: AccountsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Erases the account for good (owner role): its backups' data key and its connections' credentials
    /// are destroyed, `AccountErased` is recorded; backups then cannot be downloaded. ACCOUNT must be the
    /// token's account id, typed out as the confirmation.
    Erase {
        /// The account's id (the confirmation: it must be the token's account).
        account: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// Lists connections, newest first.
    List {
        /// Only this platform's (`stripe`, `hubspot`…).
        #[arg(long)]
        platform: Option<String>,
        /// `active` or `expired`.
        #[arg(long)]
        status: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Shows one connection.
    Get {
        /// The connection's id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SourcesCommand {
    /// Lists sources, newest first.
    List {
        /// `active` or `paused`.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        platform: Option<String>,
        /// Only the sources of this connection.
        #[arg(long)]
        connection: Option<String>,
        /// Only the members of this source group.
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Shows one source.
    Get {
        /// The source's id.
        id: String,
    },
    /// Queues a backup of the source now; with `--watch`, follows it to its end and exits with its outcome.
    Sync {
        /// The source's id.
        id: String,
        /// Follow the job: a progress bar on a terminal, plain lines otherwise, JSON events with
        /// `--output json`; the exit status tells the outcome.
        #[arg(long)]
        watch: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Lists jobs, newest first.
    List {
        /// `queued`, `running`, `succeeded`, `partial`, `failed` or `cancelled`.
        #[arg(long)]
        status: Option<String>,
        /// Only this source's jobs.
        #[arg(long)]
        source: Option<String>,
        /// Only the jobs of this source group's syncs.
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Shows one job.
    Get {
        /// The job's id.
        id: String,
    },
    /// Follows a job to its end; the exit status tells the outcome.
    Watch {
        /// The job's id.
        id: String,
    },
    /// Lists a job's stored files (succeeded and partial jobs keep theirs) with their sha256.
    Files {
        /// The job's id.
        id: String,
    },
    /// Downloads a job's files, or the one named, into a directory, each checked against its sha256.
    Download {
        /// The job's id.
        id: String,
        /// One file (`customers.ndjson.gz`, `manifest.json`); default: all of them.
        name: Option<String>,
        /// The directory to write to (created if missing).
        #[arg(short = 'o', long = "dir", value_name = "DIR")]
        dir: PathBuf,
        /// Overwrite files that exist in the directory.
        #[arg(long)]
        force: bool,
    },
    /// Cancels a queued or running job.
    Cancel {
        /// The job's id.
        id: String,
    },
    /// Runs a failed, partial or cancelled job again as a new job.
    Retry {
        /// The id of the job to run again.
        id: String,
        /// Follow the new job to its end (see `sources sync --watch`).
        #[arg(long)]
        watch: bool,
    },
}

/// Runs a client command and returns its exit status (errors are printed on stderr).
pub async fn run(command: ClientCommand) -> i32 {
    match execute(command).await {
        Ok(status) => status.code(),
        Err(err) => {
            eprintln!("{}", error::Report(&err));
            err.exit_status().code()
        }
    }
}

async fn execute(command: ClientCommand) -> Result<ExitStatus, CliError> {
    match command {
        ClientCommand::Connections { api, command } => {
            let (client, output) = connect(&api)?;
            connections(&client, output, command).await
        }
        ClientCommand::Sources { api, command } => {
            let (client, output) = connect(&api)?;
            sources(&client, output, command).await
        }
        ClientCommand::Jobs { api, command } => {
            let (client, output) = connect(&api)?;
            jobs(&client, output, command).await
        }
        ClientCommand::Accounts { api, command } => {
            let (client, output) = connect(&api)?;
            match command {
                AccountsCommand::Erase { account } => {
                    let erased = client
                        .post_json(&["account", "erase"], &json!({ "confirm": account }))
                        .await?;
                    match output {
                        Output::Json => print_json(&erased),
                        Output::Text => println!(
                            "account {} erased at {} by {}: its backups can no longer be decrypted",
                            field(&erased, "/accountId"),
                            field(&erased, "/erasedAt"),
                            field(&erased, "/erasedBy")
                        ),
                    }
                    Ok(ExitStatus::Success)
                }
            }
        }
    }
}

/// The API client of the flags or the environment; a clear usage error when either is missing.
fn connect(api: &ApiArgs) -> Result<(ApiClient, Output), CliError> {
    let present = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let url = present(&api.url).ok_or_else(|| {
        CliError::Usage(
            "no API URL: set LISTBACKUP_URL or pass --url (e.g. http://127.0.0.1:8080)".into(),
        )
    })?;
    let token = present(&api.token).ok_or_else(|| {
        CliError::Usage(
            "no token: set LISTBACKUP_TOKEN or pass --token (`listbackup token` mints one)".into(),
        )
    })?;
    Ok((ApiClient::new(&url, &token)?, api.output))
}

/// The query parameters of the filters given.
fn filters<const N: usize>(
    pairs: [(&'static str, Option<String>); N],
) -> Vec<(&'static str, String)> {
    pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
}

/// Fetches a whole list and prints it: a JSON array of the items, or a table.
async fn list(
    client: &ApiClient,
    output: Output,
    path: &str,
    filters: &[(&str, String)],
    args: &ListArgs,
    columns: &[Column],
) -> Result<ExitStatus, CliError> {
    let limit = args.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
    let listing = client
        .list(&[path], path, filters, limit, args.page_size)
        .await?;
    match output {
        Output::Json => print_json(&Value::Array(listing.items)),
        Output::Text => print_table(&listing.items, columns, &format!("no {path}")),
    }
    Ok(ExitStatus::Success)
}

/// Prints one resource: its JSON, or its fields one a line.
fn show(output: Output, value: &Value) {
    match output {
        Output::Json => print_json(value),
        Output::Text => {
            let Some(fields) = value.as_object() else {
                return print_json(value);
            };
            let width = fields.keys().map(String::len).max().unwrap_or(0);
            for (name, value) in fields {
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".into(),
                    other => other.to_string(),
                };
                println!("{name:<width$}  {text}");
            }
        }
    }
}

async fn connections(
    client: &ApiClient,
    output: Output,
    command: ConnectionsCommand,
) -> Result<ExitStatus, CliError> {
    match command {
        ConnectionsCommand::List {
            platform,
            status,
            list: args,
        } => {
            let filters = filters([("platformId", platform), ("status", status)]);
            let columns = [
                Column {
                    heading: "CONNECTION ID",
                    cell: |c| field(c, "/connectionId"),
                },
                Column {
                    heading: "PLATFORM",
                    cell: |c| field(c, "/platformId"),
                },
                Column {
                    heading: "AUTH",
                    cell: |c| field(c, "/authType"),
                },
                Column {
                    heading: "STATUS",
                    cell: |c| field(c, "/status"),
                },
                Column {
                    heading: "NAME",
                    cell: |c| field(c, "/name"),
                },
            ];
            list(client, output, "connections", &filters, &args, &columns).await
        }
        ConnectionsCommand::Get { id } => {
            show(output, &client.get_json(&["connections", &id], &[]).await?);
            Ok(ExitStatus::Success)
        }
    }
}

async fn sources(
    client: &ApiClient,
    output: Output,
    command: SourcesCommand,
) -> Result<ExitStatus, CliError> {
    match command {
        SourcesCommand::List {
            status,
            platform,
            connection,
            group,
            list: args,
        } => {
            let filters = filters([
                ("status", status),
                ("platformId", platform),
                ("connectionId", connection),
                ("groupId", group),
            ]);
            let columns = [
                Column {
                    heading: "SOURCE ID",
                    cell: |s| field(s, "/sourceId"),
                },
                Column {
                    heading: "PLATFORM",
                    cell: |s| field(s, "/platformId"),
                },
                Column {
                    heading: "STATUS",
                    cell: |s| field(s, "/status"),
                },
                Column {
                    heading: "NEXT SYNC",
                    cell: |s| field(s, "/nextSyncAt"),
                },
                Column {
                    heading: "LAST JOB",
                    cell: |s| field(s, "/lastJob/status"),
                },
                Column {
                    heading: "NAME",
                    cell: |s| field(s, "/name"),
                },
            ];
            list(client, output, "sources", &filters, &args, &columns).await
        }
        SourcesCommand::Get { id } => {
            show(output, &client.get_json(&["sources", &id], &[]).await?);
            Ok(ExitStatus::Success)
        }
        SourcesCommand::Sync { id, watch } => {
            let queued = client.post_empty(&["sources", &id, "sync"]).await?;
            queued_job(client, output, queued, watch).await
        }
    }
}

/// After a 202 that queued a job: prints it, and follows it when asked.
async fn queued_job(
    client: &ApiClient,
    output: Output,
    (job, location): (Value, Option<reqwest::Url>),
    watch: bool,
) -> Result<ExitStatus, CliError> {
    let job_id = job_id_of(&job, location.as_ref())?;
    if !watch {
        match output {
            Output::Json => print_json(&job),
            Output::Text => println!(
                "job {job_id} {} (source {})",
                field(&job, "/status"),
                field(&job, "/sourceId")
            ),
        }
        return Ok(ExitStatus::Success);
    }
    match output {
        Output::Json => print_json_line(&json!({"event": "queued", "data": job})),
        Output::Text => eprintln!("job {job_id} queued"),
    }
    follow(client, output, &job_id).await
}

/// The queued job's id: the last segment of `Location: /jobs/{id}`, or the body's `jobId`.
fn job_id_of(job: &Value, location: Option<&reqwest::Url>) -> Result<String, CliError> {
    let from_location = location.and_then(|url| {
        let segments: Vec<&str> = url.path_segments()?.collect();
        match segments.as_slice() {
            [.., "jobs", id] if !id.is_empty() => Some((*id).to_owned()),
            _ => None,
        }
    });
    from_location
        .or_else(|| job["jobId"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            CliError::Unexpected(
                "the API queued a job but named it neither in Location nor in jobId".into(),
            )
        })
}

/// Follows a job to its end, prints its outcome, and returns the outcome's exit status.
async fn follow(client: &ApiClient, output: Output, job_id: &str) -> Result<ExitStatus, CliError> {
    let job = watch::follow(client, job_id, output, &FollowPolicy::default()).await?;
    if output == Output::Text {
        println!("{}", outcome_text(&job));
    }
    Ok(Outcome::of(&job).map_or(ExitStatus::Failure, Outcome::exit_status))
}

async fn jobs(
    client: &ApiClient,
    output: Output,
    command: JobsCommand,
) -> Result<ExitStatus, CliError> {
    match command {
        JobsCommand::List {
            status,
            source,
            group,
            list: args,
        } => {
            let filters = filters([("status", status), ("sourceId", source), ("groupId", group)]);
            let columns = [
                Column {
                    heading: "JOB ID",
                    cell: |j| field(j, "/jobId"),
                },
                Column {
                    heading: "SOURCE ID",
                    cell: |j| field(j, "/sourceId"),
                },
                Column {
                    heading: "PLATFORM",
                    cell: |j| field(j, "/platformId"),
                },
                Column {
                    heading: "STATUS",
                    cell: |j| field(j, "/status"),
                },
                Column {
                    heading: "TRIGGER",
                    cell: |j| field(j, "/trigger"),
                },
                Column {
                    heading: "RECORDS",
                    cell: |j| count(j, "/progress/records"),
                },
                Column {
                    heading: "BYTES",
                    cell: |j| bytes(j, "/progress/bytes"),
                },
                Column {
                    heading: "QUEUED AT",
                    cell: |j| field(j, "/queuedAt"),
                },
            ];
            list(client, output, "jobs", &filters, &args, &columns).await
        }
        JobsCommand::Get { id } => {
            let job = client.get_json(&["jobs", &id], &[]).await?;
            match output {
                Output::Json => print_json(&job),
                Output::Text => {
                    println!("{}", outcome_text(&job));
                    let types = job["dataTypes"].as_array().cloned().unwrap_or_default();
                    print_table(&types, &data_type_columns(), "no data types");
                }
            }
            Ok(ExitStatus::Success)
        }
        JobsCommand::Watch { id } => follow(client, output, &id).await,
        JobsCommand::Files { id } => {
            let listing = client.get_json(&["jobs", &id, "files"], &[]).await?;
            let files = listing["files"].as_array().cloned().ok_or_else(|| {
                CliError::Unexpected(format!(
                    "GET /jobs/{id}/files answered without a files array"
                ))
            })?;
            match output {
                Output::Json => print_json(&Value::Array(files)),
                Output::Text => {
                    let columns = [
                        Column {
                            heading: "NAME",
                            cell: |f| field(f, "/name"),
                        },
                        Column {
                            heading: "DATA TYPE",
                            cell: |f| field(f, "/dataType"),
                        },
                        Column {
                            heading: "RECORDS",
                            cell: |f| count(f, "/records"),
                        },
                        Column {
                            heading: "BYTES",
                            cell: |f| bytes(f, "/bytes"),
                        },
                        Column {
                            heading: "SHA256",
                            cell: |f| field(f, "/sha256"),
                        },
                    ];
                    print_table(&files, &columns, "no stored files");
                }
            }
            Ok(ExitStatus::Success)
        }
        JobsCommand::Download {
            id,
            name,
            dir,
            force,
        } => {
            let downloaded = download::download(client, &id, name.as_deref(), &dir, force).await?;
            match output {
                Output::Json => print_json(&serde_json::to_value(&downloaded).unwrap_or_default()),
                Output::Text => {
                    for file in &downloaded {
                        println!(
                            "{}  {}  sha256 {} verified",
                            file.path.display(),
                            indicatif::HumanBytes(file.bytes),
                            file.sha256
                        );
                    }
                }
            }
            Ok(ExitStatus::Success)
        }
        JobsCommand::Cancel { id } => {
            let (job, _) = client.post_empty(&["jobs", &id, "cancel"]).await?;
            match output {
                Output::Json => print_json(&job),
                // A running job is cancelled by its worker, within a progress interval.
                Output::Text if job["status"] == "cancelled" => println!("job {id} cancelled"),
                Output::Text => println!(
                    "job {id}: cancellation requested (still {}; `listbackup jobs watch {id}` follows it)",
                    field(&job, "/status")
                ),
            }
            Ok(ExitStatus::Success)
        }
        JobsCommand::Retry { id, watch } => {
            let queued = client.post_empty(&["jobs", &id, "retry"]).await?;
            queued_job(client, output, queued, watch).await
        }
    }
}

fn data_type_columns() -> [Column; 5] {
    [
        Column {
            heading: "DATA TYPE",
            cell: |t| field(t, "/name"),
        },
        Column {
            heading: "STATUS",
            cell: |t| field(t, "/status"),
        },
        Column {
            heading: "RECORDS",
            cell: |t| count(t, "/records"),
        },
        Column {
            heading: "BYTES",
            cell: |t| bytes(t, "/bytes"),
        },
        Column {
            heading: "ERROR",
            cell: |t| match t.get("error") {
                Some(e) if !e.is_null() => {
                    format!("{}: {}", field(e, "/code"), field(e, "/message"))
                }
                _ => "-".into(),
            },
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_comes_from_location_or_the_body() {
        let base = reqwest::Url::parse("http://h/api/sources/s/sync").unwrap();
        let location = base.join("/api/jobs/0190-abc").unwrap();
        let body = json!({"jobId": "from-body"});
        assert_eq!(job_id_of(&body, Some(&location)).unwrap(), "0190-abc");
        assert_eq!(job_id_of(&body, None).unwrap(), "from-body");
        let elsewhere = base.join("/somewhere/else").unwrap();
        assert_eq!(job_id_of(&body, Some(&elsewhere)).unwrap(), "from-body");
        assert!(job_id_of(&json!({}), None).is_err());
    }
}
