//! `Proxy`: a running `sinew proxy` process under test, with its config file, ports and clients.

mod builder;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::process::Command;

pub use builder::{ProxyBuilder, ProxyPorts};

use crate::client::{ClientError, HttpClient, Request, Response};
use crate::process::Process;
use crate::tempdir::TempDir;

/// How much of stderr a failure message shows.
const STDERR_TAIL: usize = 6000;

/// A running `sinew proxy --config FILE`; killed on drop.
///
/// Helpers that panic (like [`Proxy::get`]) put the proxy's stderr in the message.
#[derive(Debug)]
pub struct Proxy {
    process: Process,
    spec: ProxyBuilder,
    config_path: PathBuf,
    config: String,
    dir: TempDir,
}

impl Proxy {
    /// Starts describing a proxy run from the `sinew` binary at `bin`
    /// (in integration tests: `env!("CARGO_BIN_EXE_sinew")`).
    pub fn builder(bin: impl Into<PathBuf>) -> ProxyBuilder {
        ProxyBuilder::new(bin)
    }

    fn start(spec: ProxyBuilder, text: &str) -> Self {
        let dir = TempDir::new("proxy");
        let config_path = dir.join("sinew.yaml");
        std::fs::write(&config_path, text).expect("write proxy config");
        let process = Self::spawn_process(&spec, &config_path);
        Self {
            process,
            spec,
            config_path,
            config: text.to_owned(),
            dir,
        }
    }

    fn spawn_process(spec: &ProxyBuilder, config_path: &Path) -> Process {
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("proxy").arg("--config").arg(config_path);
        for (key, value) in &spec.env {
            cmd.env(key, value);
        }
        Process::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", spec.bin.display()))
    }

    /// SIGKILLs the process and starts it again on the same config file and
    /// directory (so a control-mode proxy finds its cache); waits for `/ready`.
    pub async fn restart(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait_exit(Duration::from_secs(5)).await;
        self.process = Self::spawn_process(&self.spec, &self.config_path);
        if !self.wait_ready(self.ready_timeout()).await {
            panic!("proxy not ready after restart:\n{}", self.stderr_tail());
        }
    }

    /// All its listen addresses.
    pub fn ports(&self) -> &ProxyPorts {
        &self.spec.ports
    }

    /// `listen.outbound`.
    pub fn outbound(&self) -> SocketAddr {
        self.spec.ports.outbound
    }

    /// `listen.inbound`.
    pub fn inbound(&self) -> SocketAddr {
        self.spec.ports.inbound
    }

    /// `listen.api`.
    pub fn api(&self) -> SocketAddr {
        self.spec.ports.api
    }

    /// The gateway's `listen.ingress` address.
    pub fn ingress(&self) -> SocketAddr {
        self.spec
            .ports
            .ingress
            .expect("no ingress listener (ProxyBuilder::ingress)")
    }

    /// The `listen.tcp` address allocated for TCP service `service`.
    pub fn tcp(&self, service: &str) -> SocketAddr {
        self.spec
            .ports
            .tcp
            .iter()
            .find(|(name, _)| name == service)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no tcp listener for service {service}"))
    }

    /// The config file's path.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The config text last written.
    pub fn rendered_config(&self) -> &str {
        &self.config
    }

    /// The temporary directory holding the config (for access logs and the like).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process wrapper.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// The process wrapper, mutably (to wait or kill).
    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// The last few KiB of its stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        let err = self.process.stderr();
        let start = err.len().saturating_sub(STDERR_TAIL);
        let start = (start..err.len())
            .find(|i| err.is_char_boundary(*i))
            .unwrap_or(err.len());
        err[start..].to_owned()
    }

    /// Waits up to `timeout` for its exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.process.wait_exit(timeout).await
    }

    pub(crate) fn ready_timeout(&self) -> Duration {
        self.spec.ready_timeout
    }

    /// Polls `GET /ready` until it answers 200 (true) or `timeout` passes or
    /// the process exits (false).
    pub async fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.process.try_exit().is_some() {
                return false;
            }
            if let Ok(resp) = self.try_api(Method::GET, "/ready").await {
                if resp.status == StatusCode::OK {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends `req` over a fresh HTTP/1.1 connection to the outbound listener.
    pub async fn try_send(&self, req: Request) -> Result<Response, ClientError> {
        HttpClient::http1(self.outbound()).await?.send(req).await
    }

    /// Sends `req` to the outbound listener; panics (with stderr) on a transport error.
    pub async fn send(&self, req: Request) -> Response {
        match self.try_send(req).await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "request through proxy failed: {e}\n--- stderr ---\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// `GET path` with `Host: host` through the outbound listener.
    pub async fn get(&self, host: &str, path: &str) -> Response {
        self.send(Request::get(path).host(host)).await
    }

    /// A request to the api listener, without panicking.
    pub async fn try_api(&self, method: Method, path: &str) -> Result<Response, ClientError> {
        let req = Request::new(method, path).host("localhost");
        HttpClient::http1(self.api()).await?.send(req).await
    }

    /// `GET path` on the api listener; panics (with stderr) on a transport error.
    pub async fn api_get(&self, path: &str) -> Response {
        self.api_call(Method::GET, path).await
    }

    /// `POST path` on the api listener; panics (with stderr) on a transport error.
    pub async fn api_post(&self, path: &str) -> Response {
        self.api_call(Method::POST, path).await
    }

    async fn api_call(&self, method: Method, path: &str) -> Response {
        match self.try_api(method.clone(), path).await {
            Ok(resp) => resp,
            Err(e) => panic!(
                "{method} {path} on api failed: {e}\n--- stderr ---\n{}",
                self.stderr_tail()
            ),
        }
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> String {
        self.api_get("/metrics").await.text()
    }

    /// `version` from `GET /config`.
    pub async fn config_version(&self) -> u64 {
        let resp = self.api_get("/config").await;
        resp.json()["version"]
            .as_u64()
            .unwrap_or_else(|| panic!("/config has no numeric version: {}", resp.text()))
    }

    /// Re-renders the config with `resources` in place of the route YAML and
    /// writes it (atomically: temp file + rename); the proxy should reload it.
    pub fn rewrite_routes(&mut self, resources: &str) {
        self.spec = self.spec.clone().set_route_yaml(resources);
        let text = self.spec.render();
        self.write_config(&text);
    }

    /// Replaces the config file with `text` atomically (temp file + rename).
    pub fn write_config(&mut self, text: &str) {
        let tmp = self.dir.join("sinew.yaml.tmp");
        std::fs::write(&tmp, text).expect("write new proxy config");
        std::fs::rename(&tmp, &self.config_path).expect("replace proxy config");
        text.clone_into(&mut self.config);
    }
}
