//! `Nats`: a real `nats-server` with JetStream on free loopback ports, its
//! store in a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::client::{HttpClient, Request};
use crate::external::require_external;
use crate::port::free_port;
use crate::process::Process;
use crate::tempdir::TempDir;

/// How long [`Nats::start`] waits for JetStream to answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// A running nats-server with JetStream (file storage); killed on drop,
/// its store removed.
#[derive(Debug)]
pub struct Nats {
    process: Process,
    bin: PathBuf,
    addr: SocketAddr,
    monitor: SocketAddr,
    dir: TempDir,
}

impl Nats {
    /// Starts a nats-server with JetStream, or `None` (after printing
    /// `SKIPPED: nats-server not installed`) when there is none on `PATH`.
    ///
    /// ```no_run
    /// # async fn scenario() {
    /// let Some(nats) = sinew_testkit::Nats::start().await else { return };
    /// assert!(nats.url().starts_with("nats://127.0.0.1:"));
    /// # }
    /// ```
    pub async fn start() -> Option<Nats> {
        Nats::start_with(None).await
    }

    /// As [`Nats::start`], with JetStream's file storage capped at
    /// `max_file_store` bytes when given: past it, publishes are refused
    /// with "insufficient resources", as on a full disk.
    pub async fn start_with(max_file_store: Option<u64>) -> Option<Nats> {
        let bin = require_external("nats-server")?;
        let (addr, monitor, dir) = (free_port(), free_port(), TempDir::new("nats"));
        let limit = max_file_store.map_or(String::new(), |n| format!(", max_file_store: {n}"));
        let config = format!(
            "listen: \"{addr}\"\nhttp: \"{monitor}\"\njetstream {{ store_dir: \"{}\"{limit} }}\n",
            dir.join("js").display()
        );
        std::fs::write(dir.join("nats.conf"), config).expect("write nats.conf");
        let mut nats = Nats {
            process: spawn(&bin, &dir),
            bin,
            addr,
            monitor,
            dir,
        };
        nats.wait_healthy().await;
        Some(nats)
    }

    /// Its client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Its log so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Kills it now (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait_exit(Duration::from_secs(5)).await;
    }

    /// Starts it again on the same ports and store, and waits until JetStream answers.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.process = spawn(&self.bin, &self.dir);
        self.wait_healthy().await;
    }

    async fn wait_healthy(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit() {
                panic!(
                    "nats-server exited ({status})\n--- log ---\n{}",
                    self.stderr()
                );
            }
            if let Ok(mut client) = HttpClient::http1(self.monitor).await {
                if let Ok(response) = client.send(Request::get("/healthz?js-enabled=true")).await {
                    if response.status.is_success() {
                        return;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "nats-server not healthy at {} within {START_TIMEOUT:?}\n--- log ---\n{}",
                    self.addr,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn spawn(bin: &PathBuf, dir: &TempDir) -> Process {
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(dir.join("nats.conf"));
    Process::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}
