//! The user CLI (issue 11) as a user runs it: the real `listbackup` binary against the real service on port 0,
//! with `LISTBACKUP_URL` and `LISTBACKUP_TOKEN`. Lists over several pages, a followed backup that succeeds,
//! fails or partly succeeds (exit statuses 0, 11, 10), `--output json` shapes, downloads checked byte for byte
//! against the stored backup, and API problems mapped to exit statuses.

use crate::support;

use std::path::Path;
use std::time::Duration;

use listbackup_api::auth::Role;
use serde_json::{json, Value};
use sha2::Digest;
use support::backup::{stripe_source, BackupApp};
use support::TestApp;

/// What one run of the binary left.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }

    /// stdout as NDJSON.
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `listbackup <args>` with these environment variables (and no inherited LISTBACKUP_URL, TOKEN or
/// CONFIG), failing the test if it has not exited within two minutes.
async fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
    command
        .args(args)
        .env_remove("LISTBACKUP_URL")
        .env_remove("LISTBACKUP_TOKEN")
        .env_remove("LISTBACKUP_CONFIG")
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("listbackup {args:?} did not exit within 2 minutes"))
        .unwrap();
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `listbackup <args>` against the app with the token.
async fn cli(app: &TestApp, token: &str, args: &[&str]) -> Run {
    run_with_env(
        args,
        &[
            ("LISTBACKUP_URL", &app.address),
            ("LISTBACKUP_TOKEN", token),
        ],
    )
    .await
}

fn ids(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {items}"))
        .iter()
        .map(|i| i[field].as_str().unwrap().to_owned())
        .collect()
}

async fn api_json(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get(path, token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A temporary directory removed when the test ends.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("listbackup-cli-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test]
async fn lists_gather_every_page_or_stop_at_the_limit() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    for n in 0..3 {
        app.create_stripe_connection(&token, &format!("Stripe {n}"), "sk_test_1")
            .await;
    }
    let mut sources = Vec::new();
    for n in 0..3 {
        sources
            .push(stripe_source(&app, &token, &format!("Source {n}"), &["customers"], false).await);
    }
    // No backup worker runs here (no storage): the jobs stay queued.
    for source in &sources {
        let run = cli(&app, &token, &["sources", "sync", source]).await;
        assert_eq!(run.code, 0, "{run}");
        assert!(run.stdout.contains("queued"), "{run}");
    }

    // Six connections (three of them the sources'), two a page: every page, in the API's order.
    let expected = ids(
        &api_json(&app, &token, "/connections?limit=200").await["connections"],
        "connectionId",
    );
    assert_eq!(expected.len(), 6);
    let run = cli(
        &app,
        &token,
        &[
            "connections",
            "list",
            "--page-size",
            "2",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(ids(&run.json(), "connectionId"), expected);
    let run = cli(
        &app,
        &token,
        &[
            "connections",
            "list",
            "--page-size",
            "2",
            "--limit",
            "3",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(ids(&run.json(), "connectionId"), expected[..3]);
    // The API's items as they are, not a CLI's rendering of them.
    let first = &api_json(&app, &token, &format!("/connections/{}", expected[0])).await;
    assert_eq!(&run.json()[0], first);

    // Text: a heading and one row per connection.
    let run = cli(&app, &token, &["connections", "list", "--page-size", "4"]).await;
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{run}");
    assert!(lines[0].starts_with("CONNECTION ID"), "{run}");
    for (line, id) in lines[1..].iter().zip(&expected) {
        assert!(
            line.starts_with(id.as_str()) && line.contains("stripe"),
            "{run}"
        );
    }

    let run = cli(
        &app,
        &token,
        &["sources", "list", "--page-size", "1", "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let mut listed = ids(&run.json(), "sourceId");
    listed.reverse();
    assert_eq!(listed, sources, "newest first");

    let run = cli(
        &app,
        &token,
        &[
            "jobs",
            "list",
            "--status",
            "queued",
            "--page-size",
            "2",
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let jobs = run.json();
    assert_eq!(
        ids(&jobs, "jobId"),
        ids(
            &api_json(&app, &token, "/jobs?status=queued").await["jobs"],
            "jobId"
        )
    );
    assert_eq!(jobs.as_array().unwrap().len(), 3);
    let run = cli(
        &app,
        &token,
        &["jobs", "list", "--source", &sources[1], "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(ids(&run.json(), "sourceId"), [sources[1].clone()]);

    // Another account's lists are empty: `[]` for scripts, a sentence for people.
    let other = app.owner("globex");
    let run = cli(&app, &other, &["jobs", "list", "--output", "json"]).await;
    assert_eq!((run.code, run.json()), (0, json!([])), "{run}");
    let run = cli(&app, &other, &["sources", "list"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "no sources\n"),
        "{run}"
    );
    app.stop().await;
}

#[tokio::test]
async fn problems_are_printed_and_mapped_to_exit_statuses() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    let source = stripe_source(&app, &token, "Stripe", &["customers"], false).await;

    // Where and as whom are required, and said so.
    let run = run_with_env(&["jobs", "list"], &[("LISTBACKUP_TOKEN", &token)]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .starts_with("error: no API URL: set LISTBACKUP_URL"),
        "{run}"
    );
    let run = run_with_env(&["jobs", "list"], &[("LISTBACKUP_URL", &app.address)]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .starts_with("error: no token: set LISTBACKUP_TOKEN"),
        "{run}"
    );
    // Flags win over the environment.
    let run = run_with_env(
        &[
            "jobs",
            "list",
            "--url",
            &app.address,
            "--token",
            &token,
            "--output",
            "json",
        ],
        &[
            ("LISTBACKUP_URL", "http://127.0.0.1:9"),
            ("LISTBACKUP_TOKEN", "stale"),
        ],
    )
    .await;
    assert_eq!((run.code, run.json()), (0, json!([])), "{run}");

    // 404 → 3, with the problem's title and detail.
    let missing = uuid::Uuid::now_v7().to_string();
    let run = cli(&app, &token, &["jobs", "get", &missing]).await;
    assert_eq!(run.code, 3, "{run}");
    assert!(
        run.stderr.starts_with("error: Not found: job not found\n"),
        "{run}"
    );
    assert!(run.stderr.contains("(request id "), "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    // A dot segment would name another path: refused before any request.
    let run = cli(&app, &token, &["jobs", "get", ".."]).await;
    assert_eq!(run.code, 2, "{run}");

    // 400 → 2, with each invalid field.
    let run = cli(&app, &token, &["jobs", "list", "--status", "done"]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(
        run.stderr
            .starts_with("error: The request is not valid: status: "),
        "{run}"
    );
    assert!(run.stderr.contains("\n  status: must be one of"), "{run}");
    // A usage error of the command line itself is 2 as well (clap's).
    let run = cli(&app, &token, &["jobs", "list", "--limit", "0"]).await;
    assert_eq!(run.code, 2, "{run}");

    // 409 → 4: the source already has a queued job.
    let run = cli(
        &app,
        &token,
        &["sources", "sync", &source, "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let job = run.json();
    let job_id = job["jobId"].as_str().unwrap().to_owned();
    assert_eq!(
        job,
        api_json(&app, &token, &format!("/jobs/{job_id}")).await
    );
    let run = cli(&app, &token, &["sources", "sync", &source]).await;
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr
            .starts_with("error: Conflict with the current state: "),
        "{run}"
    );
    // 5xx → 1: this service has no backup storage configured (503).
    let dir = TempDir::new();
    let run = cli(
        &app,
        &token,
        &["jobs", "download", &job_id, "-o", dir.0.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .starts_with("error: Service unavailable: backup storage is not configured"),
        "{run}"
    );

    // 403 → 5 (a viewer may not sync), 401 → 5 (a token the service did not sign).
    let viewer = app.token("acme", &[Role::Viewer]);
    let run = cli(&app, &viewer, &["sources", "sync", &source]).await;
    assert_eq!(run.code, 5, "{run}");
    assert!(run.stderr.starts_with("error: Not allowed"), "{run}");
    let run = cli(&app, "not-a-token", &["sources", "list"]).await;
    assert_eq!(run.code, 5, "{run}");
    assert!(
        run.stderr.starts_with("error: Authentication is required"),
        "{run}"
    );

    // Nothing listening → 1, naming what failed.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let run = run_with_env(
        &["connections", "list"],
        &[("LISTBACKUP_URL", &closed), ("LISTBACKUP_TOKEN", &token)],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.starts_with("error: GET /connections failed: "),
        "{run}"
    );

    // A cancelled job, followed, ends at once with 12.
    let run = cli(&app, &token, &["jobs", "cancel", &job_id]).await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.stdout, format!("job {job_id} cancelled\n"));
    let run = cli(&app, &token, &["jobs", "watch", &job_id]).await;
    assert_eq!(run.code, 12, "{run}");
    assert_eq!(run.stdout, format!("job {job_id} cancelled\n"));
    let run = cli(
        &app,
        &token,
        &["jobs", "watch", &job_id, "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 12, "{run}");
    let events = run.lines();
    assert_eq!(events.len(), 1, "{run}");
    assert_eq!(events[0]["event"], "end");
    assert_eq!(events[0]["data"]["status"], "cancelled");
    app.stop().await;
}

#[tokio::test]
async fn a_followed_backup_succeeds_and_its_files_download_verified() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.accept("stripe", "sk_test_1");
    backup.api.seed("stripe", "customers", 250);
    backup.api.seed("stripe", "invoices", 30);
    let token = app.owner("acme");
    let source = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;

    // No terminal: plain progress lines on stderr, the outcome on stdout, exit 0.
    let run = cli(app, &token, &["sources", "sync", &source, "--watch"]).await;
    assert_eq!(run.code, 0, "{run}");
    let outcome = run.stdout.trim_end();
    let job_id = outcome
        .strip_prefix("job ")
        .and_then(|rest| rest.split_once(' '))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("{run}"));
    assert!(outcome.contains(" succeeded: 280 records, "), "{run}");
    assert!(outcome.ends_with("2 of 2 data types backed up"), "{run}");
    assert!(
        run.stderr.starts_with(&format!("job {job_id} queued\n")),
        "{run}"
    );
    let job = api_json(app, &token, &format!("/jobs/{job_id}")).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["sourceId"], source.as_str());

    // `--output json` is the API's JSON.
    let run = cli(app, &token, &["jobs", "get", &job_id, "--output", "json"]).await;
    assert_eq!((run.code, run.json()), (0, job.clone()), "{run}");
    let listed = api_json(app, &token, &format!("/jobs/{job_id}/files")).await["files"].clone();
    let run = cli(app, &token, &["jobs", "files", &job_id, "--output", "json"]).await;
    assert_eq!((run.code, run.json()), (0, listed.clone()), "{run}");
    let run = cli(app, &token, &["jobs", "files", &job_id]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("NAME"), "{run}");
    assert!(
        run.stdout.contains("customers.ndjson.gz  customers  250"),
        "{run}"
    );

    // Every file, byte for byte what the backup stored, its sha256 the manifest's.
    let stored = backup
        .storage
        .join(format!("accounts/acme/sources/{source}/jobs/{job_id}"));
    let dir = TempDir::new();
    let target = dir.join("all");
    let target_arg = target.to_str().unwrap();
    let run = cli(
        app,
        &token,
        &["jobs", "download", &job_id, "-o", target_arg],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let names = ids(&listed, "name");
    assert_eq!(
        names,
        ["customers.ndjson.gz", "invoices.ndjson.gz", "manifest.json"]
    );
    assert_eq!(file_names(&target), names, "no part file is left behind");
    for file in listed.as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        let downloaded = std::fs::read(target.join(name)).unwrap();
        assert_eq!(
            downloaded,
            support::backup::stored_plaintext(&stored.join(name)),
            "{name}"
        );
        assert_eq!(
            sha256_hex(&downloaded),
            file["sha256"].as_str().unwrap(),
            "{name}"
        );
        assert!(run.stdout.contains(&format!(
            "sha256 {} verified",
            file["sha256"].as_str().unwrap()
        )));
    }
    assert_eq!(
        sha256_hex(&std::fs::read(target.join("manifest.json")).unwrap()),
        job["manifestSha256"].as_str().unwrap()
    );

    // Files that exist are kept unless --force.
    std::fs::write(target.join("invoices.ndjson.gz"), b"mine").unwrap();
    let run = cli(
        app,
        &token,
        &["jobs", "download", &job_id, "-o", target_arg],
    )
    .await;
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr.contains("exists (use --force to overwrite it)"),
        "{run}"
    );
    assert_eq!(
        std::fs::read(target.join("invoices.ndjson.gz")).unwrap(),
        b"mine"
    );
    let run = cli(
        app,
        &token,
        &["jobs", "download", &job_id, "-o", target_arg, "--force"],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        std::fs::read(target.join("invoices.ndjson.gz")).unwrap(),
        support::backup::stored_plaintext(&stored.join("invoices.ndjson.gz"))
    );

    // One file by name; JSON says what was written.
    let one = dir.join("one");
    let run = cli(
        app,
        &token,
        &[
            "jobs",
            "download",
            &job_id,
            "customers.ndjson.gz",
            "-o",
            one.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    let written = run.json();
    assert_eq!(written.as_array().unwrap().len(), 1, "{run}");
    assert_eq!(written[0]["name"], "customers.ndjson.gz");
    assert_eq!(written[0]["sha256"], listed[0]["sha256"]);
    assert_eq!(written[0]["bytes"], listed[0]["bytes"]);
    assert_eq!(file_names(&one), ["customers.ndjson.gz"]);
    let run = cli(
        app,
        &token,
        &[
            "jobs",
            "download",
            &job_id,
            "orders.ndjson.gz",
            "-o",
            one.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 3, "{run}");

    // A stored file altered since its manifest was written: refused, and not kept. Stored encrypted (issue
    // 13 §2), a byte added to its ciphertext makes it fail to authenticate, so the service refuses to serve
    // it (a problem, exit status 1) before the CLI's own sha256 check would refuse it (exit status 6).
    let mut altered = std::fs::read(stored.join("invoices.ndjson.gz")).unwrap();
    altered.push(0);
    std::fs::write(stored.join("invoices.ndjson.gz"), altered).unwrap();
    let bad = dir.join("bad");
    let run = cli(
        app,
        &token,
        &[
            "jobs",
            "download",
            &job_id,
            "invoices.ndjson.gz",
            "-o",
            bad.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains("the stored file invoices.ndjson.gz cannot be read back"),
        "{run}"
    );
    assert_eq!(file_names(&bad), Vec::<String>::new());

    // The next backup followed as JSON events, one a line, ending with the succeeded job. The source is
    // free once its previous job's SyncFinished is recorded (a saga): until then the sync is a 409 (4).
    backup.api.append("stripe", "customers", 5);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = cli(
            app,
            &token,
            &["sources", "sync", &source, "--watch", "--output", "json"],
        )
        .await;
        if run.code != 4 || tokio::time::Instant::now() > deadline {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run.code, 0, "{run}");
    let events = run.lines();
    assert_eq!(events[0]["event"], "queued", "{run}");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "end", "{run}");
    assert_eq!(last["data"]["status"], "succeeded", "{run}");
    assert_eq!(last["data"]["progress"]["records"], 285, "{run}");
    assert_eq!(last["data"]["jobId"], events[0]["data"]["jobId"]);
    for event in &events[1..events.len() - 1] {
        assert!(
            ["job", "progress"].contains(&event["event"].as_str().unwrap()),
            "{run}"
        );
    }
    backup.stop().await;
}

#[tokio::test]
async fn a_followed_backup_that_fails_or_partly_fails_exits_non_zero() {
    let backup = BackupApp::spawn().await;
    let app = &backup.app;
    backup.api.seed("stripe", "customers", 20);
    backup.api.seed("stripe", "invoices", 5);
    let token = app.owner("acme");
    let source = stripe_source(app, &token, "Stripe", &["customers", "invoices"], false).await;

    // The key is not accepted: the platform answers 401 and the job fails.
    let run = cli(app, &token, &["sources", "sync", &source, "--watch"]).await;
    assert_eq!(run.code, 11, "{run}");
    assert!(run.stdout.contains(" failed: UNAUTHORIZED: "), "{run}");
    assert!(!run.stdout.contains("sk_test_1"), "{run}");
    let failed_id = run.stdout["job ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    // A failed job kept no files: there is nothing to download (4).
    let dir = TempDir::new();
    let run = cli(
        app,
        &token,
        &[
            "jobs",
            "download",
            &failed_id,
            "-o",
            dir.0.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(run.code, 4, "{run}");
    assert!(
        run.stderr.contains(&format!(
            "job {failed_id} has no stored files: it is failed,"
        )),
        "{run}"
    );

    // Accepted now, but invoices answer 404: customers are backed up, the job is partial.
    backup.api.accept("stripe", "sk_test_1");
    backup.api.fail_path("/stripe/v1/invoices", 404);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let run = loop {
        let run = cli(app, &token, &["sources", "sync", &source, "--watch"]).await;
        if run.code != 4 || tokio::time::Instant::now() > deadline {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run.code, 10, "{run}");
    assert!(run.stdout.contains(" partial: 20 records, "), "{run}");
    assert!(run.stdout.contains("1 of 2 data types backed up"), "{run}");
    assert!(
        run.stdout.contains("\n  invoices failed: PLATFORM_ERROR: "),
        "{run}"
    );
    let job_id = run.stdout["job ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .to_owned();

    // A partial job's files are the data types it backed up, and the manifest.
    let dir = TempDir::new();
    assert_eq!(file_names(&dir.0), Vec::<String>::new());
    let run = cli(
        app,
        &token,
        &[
            "jobs",
            "download",
            &job_id,
            "-o",
            dir.0.to_str().unwrap(),
            "--output",
            "json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        ids(&run.json(), "name"),
        ["customers.ndjson.gz", "manifest.json"]
    );
    assert_eq!(file_names(&dir.0), ["customers.ndjson.gz", "manifest.json"]);
    backup.stop().await;
}

#[tokio::test]
async fn accounts_erase_takes_the_account_id_as_its_confirmation() {
    let app = TestApp::spawn().await;
    let token = app.owner("acme");
    app.create_stripe_connection(&token, "Stripe", "sk_test_1")
        .await;
    // Another account's id is no confirmation: the API's 400 names the field (exit status 2).
    let run = cli(&app, &token, &["accounts", "erase", "globex"]).await;
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("confirm"), "{run}");
    let run = cli(&app, &token, &["accounts", "erase", "acme"]).await;
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("account acme erased at "), "{run}");
    assert!(run.stdout.contains("by user:test-user"), "{run}");
    let credentials: i64 = app
        .db
        .connect()
        .await
        .query_one(
            "SELECT count(*) FROM credential_vault WHERE account_id = 'acme'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(credentials, 0);
    app.stop().await;
}
