//! `listbackup worker` child processes beside a [`BackupApp`]: the real binary, on the service's database,
//! NATS prefix, master key, storage and platform emulation, killed when the test ends. Also a whole
//! `listbackup serve` as a child process ([`WorkerProcess::serve`]), for what only a process of its own
//! shows (its own metrics, its exit).

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::backup::BackupApp;

impl WorkerProcess {
    /// Starts `listbackup worker` with the service's settings and `extra` variables (which win).
    pub fn start(backup: &BackupApp, extra: &[(&str, String)]) -> Self {
        let config = &backup.app.config;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
        command
            .arg("worker")
            .env_clear()
            .env("DATABASE_URL", &config.database_url)
            .env("NATS_URL", super::nats_url())
            .env("LISTBACKUP_NATS_PREFIX", &config.nats_prefix)
            .env(
                "LISTBACKUP_MASTER_KEY",
                config.master_key.as_deref().unwrap(),
            )
            .env(
                "LISTBACKUP_STORAGE_URL",
                config.storage_url.as_deref().unwrap(),
            )
            .env(
                "LISTBACKUP_PLATFORM_STRIPE_API_URL",
                backup.api.api_url("stripe"),
            )
            .env("LISTBACKUP_DB_POOL_SIZE", "8")
            .env("RUST_LOG", "info");
        for (key, value) in extra {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start listbackup worker");
        let logs = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().unwrap(), logs.clone());
        capture(child.stderr.take().unwrap(), logs.clone());
        WorkerProcess { child, logs }
    }
}

impl WorkerProcess {
    /// Starts `listbackup serve` with exactly these variables.
    pub fn serve(env: &[(String, String)]) -> Self {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_listbackup"));
        command.arg("serve").env_clear().env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start listbackup serve");
        let logs = Arc::new(Mutex::new(Vec::new()));
        capture(child.stdout.take().unwrap(), logs.clone());
        capture(child.stderr.take().unwrap(), logs.clone());
        WorkerProcess { child, logs }
    }
}

/// A free port on the loopback interface (bound, then released) for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `listbackup worker` (or `serve`) child process; its output is printed if the test fails.
pub struct WorkerProcess {
    child: tokio::process::Child,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl WorkerProcess {
    /// SIGKILL: no shutdown code runs, nothing is acknowledged or cleaned up.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        let status = self.child.wait().await.unwrap();
        assert!(!status.success(), "the worker was killed: {status}");
    }

    /// SIGSTOP or SIGCONT: the process freezes (no in-progress acks, no reports) or carries on as if nothing
    /// happened, as a worker paused by a long GC-like stall or cut off by a partition does.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let sent = tokio::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .await
            .unwrap();
        assert!(sent.success(), "kill {signal} {pid}");
    }

    /// SIGTERM, and waits for a clean exit: with a shutdown grace of 0 the backup it was running is handed
    /// back for redelivery at once.
    pub async fn terminate(&mut self) {
        self.signal("-TERM").await;
        self.exits_cleanly(Duration::from_secs(15)).await;
    }

    /// Waits for the process to end, failing the test unless it exits with success within `timeout`.
    pub async fn exits_cleanly(&mut self, timeout: Duration) {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the worker did not stop within {timeout:?}"))
            .unwrap();
        assert!(status.success(), "a clean exit: {status}");
    }

    /// Whether the process has ended (without waiting).
    pub fn has_exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Whether a line of its output so far contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- listbackup worker output ---");
            for line in self.logs.lock().unwrap().iter() {
                eprintln!("{line}");
            }
        }
    }
}

fn capture(
    stream: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}
