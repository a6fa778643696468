//! `Broker`: a real `sinew broker` (the event broker alone) on a free
//! loopback port, its data in a temp dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::port::free_port;
use crate::process::Process;
use crate::tempdir::TempDir;

/// How long [`Broker::spawn`] waits for the broker to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `sinew broker`; killed on drop, its data removed.
#[derive(Debug)]
pub struct Broker {
    process: Process,
    bin: PathBuf,
    addr: SocketAddr,
    admin: SocketAddr,
    args: Vec<String>,
    dir: PathBuf,
    /// The temp dir `dir` is, when the caller gave none.
    _temp: Option<TempDir>,
}

impl Broker {
    /// Starts `bin broker` with `extra` arguments (e.g. `--partitions 2`)
    /// and waits until it serves.
    pub async fn spawn(bin: impl Into<PathBuf>, extra: &[&str]) -> Broker {
        let temp = TempDir::new("sinew-broker");
        let dir = temp.path().to_path_buf();
        Broker::start(bin.into(), dir, Some(temp), extra).await
    }

    /// As [`Broker::spawn`], with its data in `dir` (e.g. on a small file
    /// system, to fill it).
    pub async fn spawn_in(bin: impl Into<PathBuf>, dir: PathBuf, extra: &[&str]) -> Broker {
        Broker::start(bin.into(), dir, None, extra).await
    }

    async fn start(bin: PathBuf, dir: PathBuf, temp: Option<TempDir>, extra: &[&str]) -> Broker {
        let (addr, admin) = (free_port(), free_port());
        let mut args = vec![
            "broker".to_owned(),
            "--admin-listen".to_owned(),
            admin.to_string(),
            "--data-dir".to_owned(),
            dir.display().to_string(),
            "--listen".to_owned(),
            addr.to_string(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let process = spawn(&bin, &args);
        let mut broker = Broker {
            process,
            bin,
            addr,
            admin,
            args,
            dir,
            _temp: temp,
        };
        broker.wait_serving().await;
        broker
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Its admin listener (`/live`, `/ready`, `/metrics`).
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Its data directory (`events/`, `broker.token`, `broker.pem`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The token file.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("broker.token")
    }

    /// The certificate clients trust.
    pub fn cert_file(&self) -> PathBuf {
        self.dir.join("broker.pem")
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGKILLs it and waits for it to be gone, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait_exit(Duration::from_secs(5)).await;
    }

    /// Starts it again with the same arguments (same port, same data).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.process = spawn(&self.bin, &self.args);
        self.wait_serving().await;
    }

    async fn wait_serving(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit() {
                panic!("sinew broker exited ({status}):\n{}", self.stderr());
            }
            if self.stderr().contains("sinew broker: gRPC on")
                && tokio::net::TcpStream::connect(self.addr).await.is_ok()
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "sinew broker not serving within {START_TIMEOUT:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn spawn(bin: &Path, args: &[String]) -> Process {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("SINEW_LOG", "info");
    Process::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}
