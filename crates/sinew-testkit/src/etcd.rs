//! `Etcd`: a real single-member etcd on free loopback ports, with its data in a temp dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::client::{HttpClient, Request};
use crate::external::require_external;
use crate::port::free_port;
use crate::process::Process;
use crate::tempdir::TempDir;

/// How long [`EtcdBuilder::spawn`] waits for etcd to elect itself and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Describes an etcd to start; see [`Etcd::builder`].
///
/// It runs with a 25 ms heartbeat and a 250 ms election timeout, so it leads
/// within a moment of starting and grants leases as short as 1 s.
#[derive(Debug)]
pub struct EtcdBuilder {
    bin: PathBuf,
    quota_backend_bytes: Option<u64>,
}

impl EtcdBuilder {
    /// Caps its database (`--quota-backend-bytes`): past it, writes are refused
    /// with `mvcc: database space exceeded`.
    pub fn quota_backend_bytes(mut self, bytes: u64) -> Self {
        self.quota_backend_bytes = Some(bytes);
        self
    }

    /// Starts etcd and waits (bounded) until it answers `/health`; panics
    /// with its log if it does not.
    pub async fn spawn(self) -> Etcd {
        let dir = TempDir::new("etcd");
        let client = free_port();
        let peer = free_port();
        let client_url = format!("http://{client}");
        let peer_url = format!("http://{peer}");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--name=sinew-test")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=sinew-test={peer_url}"))
            .arg("--heartbeat-interval=25")
            .arg("--election-timeout=250")
            .arg("--logger=zap")
            .arg("--log-outputs=stderr");
        if let Some(bytes) = self.quota_backend_bytes {
            cmd.arg(format!("--quota-backend-bytes={bytes}"));
        }
        let process = Process::spawn(cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let mut etcd = Etcd {
            process,
            addr: client,
            _dir: dir,
        };
        etcd.wait_healthy().await;
        etcd
    }
}

/// A running etcd (see [`EtcdBuilder`]); killed on drop, its data removed.
#[derive(Debug)]
pub struct Etcd {
    process: Process,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Etcd {
    /// Starts an etcd with the defaults, or `None` (after printing
    /// `SKIPPED: etcd not installed`) when there is no `etcd` on `PATH`.
    ///
    /// ```no_run
    /// # async fn scenario() {
    /// let Some(etcd) = sinew_testkit::Etcd::start().await else { return };
    /// assert!(etcd.url().starts_with("http://127.0.0.1:"));
    /// # }
    /// ```
    pub async fn start() -> Option<Etcd> {
        let bin = require_external("etcd")?;
        Some(Etcd::builder(bin).spawn().await)
    }

    /// Starts describing an etcd run from the binary at `bin`
    /// (from [`crate::require_external`]`("etcd")`).
    pub fn builder(bin: impl Into<PathBuf>) -> EtcdBuilder {
        EtcdBuilder {
            bin: bin.into(),
            quota_backend_bytes: None,
        }
    }

    /// Its client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its client address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its log so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// Compacts its history up to `revision` (`/v3/kv/compaction`, physical:
    /// returns once the old revisions are gone); panics if etcd refuses.
    pub async fn compact(&self, revision: u64) {
        let body = format!(r#"{{"revision":"{revision}","physical":true}}"#);
        let response = self.post("/v3/kv/compaction", body).await;
        assert!(
            response.status.is_success(),
            "etcd refused to compact to {revision}: {}",
            response.text()
        );
    }

    /// Kills it now (SIGKILL), as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait_exit(Duration::from_secs(5)).await;
    }

    async fn post(&self, path: &str, body: String) -> crate::client::Response {
        let mut client = HttpClient::http1(self.addr)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to etcd at {}: {e}", self.addr));
        client
            .send(Request::post(path, body).header("content-type", "application/json"))
            .await
            .unwrap_or_else(|e| panic!("etcd at {} did not answer {path}: {e}", self.addr))
    }

    async fn wait_healthy(&mut self) {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.process.try_exit() {
                panic!("etcd exited ({status})\n--- log ---\n{}", self.stderr());
            }
            if let Ok(mut client) = HttpClient::http1(self.addr).await {
                if let Ok(response) = client.send(Request::get("/health")).await {
                    if response.status.is_success() && response.text().contains("true") {
                        return;
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "etcd not healthy at {} within {START_TIMEOUT:?}\n--- log ---\n{}",
                    self.addr,
                    self.stderr()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
