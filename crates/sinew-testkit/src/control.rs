//! `Control`: a real `sinew control` process on free loopback ports, with a
//! small REST client authenticated by its admin token.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::process::Command;

use crate::{free_port, HttpClient, Process, Request, Response, TempDir};

/// A running control-plane replica; killed on drop.
#[derive(Debug)]
pub struct Control {
    process: Process,
    bin: PathBuf,
    args: Vec<String>,
    dir: PathBuf,
    http: SocketAddr,
    grpc: SocketAddr,
    token: String,
    _temp: Option<TempDir>,
}

/// How to start a [`Control`].
#[derive(Debug)]
pub struct ControlBuilder {
    bin: PathBuf,
    store: Option<String>,
    dir: Option<PathBuf>,
    grace: String,
    replica: Option<String>,
    events: Option<String>,
    /// Further arguments, after the others.
    extra: Vec<String>,
}

impl Control {
    /// A builder for the `sinew` binary at `bin`.
    pub fn builder(bin: impl Into<PathBuf>) -> ControlBuilder {
        ControlBuilder {
            bin: bin.into(),
            store: None,
            dir: None,
            grace: "2s".to_owned(),
            replica: None,
            events: None,
            extra: Vec::new(),
        }
    }

    /// REST address.
    pub fn http(&self) -> SocketAddr {
        self.http
    }

    /// gRPC address (what `Proxy.spec.control` names).
    pub fn grpc(&self) -> SocketAddr {
        self.grpc
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The data directory (tokens; the embedded store unless etcd).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/ca.pem`: the roots the control plane's gRPC certificate chains
    /// to (what a proxy's `SINEW_CONTROL_CA` names).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `DIR/admin.token`.
    pub fn token_file(&self) -> PathBuf {
        self.dir.join("admin.token")
    }

    /// The process.
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Its stderr so far.
    pub fn stderr(&self) -> String {
        self.process.stderr()
    }

    /// SIGKILLs it and waits for it to be gone.
    pub async fn kill(&mut self) {
        let _ = self.process.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.process.try_exit().is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts it again with the same arguments (same ports, same store).
    pub async fn restart(&mut self) {
        self.kill().await;
        self.process = spawn(&self.bin, &self.args);
        wait_ready(&mut self.process, self.http, &self.dir).await;
    }

    /// Sends `method path` with the admin token and an optional body.
    pub async fn call(&self, method: Method, path: &str, body: Option<&str>) -> Response {
        let mut req = Request::new(method, path)
            .host(&self.http.to_string())
            .header("authorization", &format!("Bearer {}", self.token));
        if let Some(b) = body {
            req = req.body(b.to_owned());
        }
        let mut client = HttpClient::http1(self.http)
            .await
            .unwrap_or_else(|e| panic!("control plane at {} unreachable: {e}", self.http));
        client
            .send(req)
            .await
            .unwrap_or_else(|e| panic!("control plane request {path} failed: {e}"))
    }

    /// `POST /v1/apply` of `yaml`, which must succeed; returns the revision.
    pub async fn apply(&self, yaml: &str) -> u64 {
        let r = self.call(Method::POST, "/v1/apply", Some(yaml)).await;
        assert_eq!(r.status, StatusCode::OK, "apply failed: {}", r.text());
        r.json()["revision"].as_u64().unwrap_or_default()
    }

    /// `GET /v1/proxies` items.
    pub async fn proxies(&self) -> Vec<serde_json::Value> {
        let r = self.call(Method::GET, "/v1/proxies", None).await;
        r.json()["items"].as_array().cloned().unwrap_or_default()
    }
}

impl ControlBuilder {
    /// `--store` (default `embedded:` a temp dir).
    pub fn store(mut self, spec: &str) -> Self {
        self.store = Some(spec.to_owned());
        self
    }

    /// `--data-dir` (default a temp dir).
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// `--deregister-grace` (default 2s in tests).
    pub fn grace(mut self, grace: &str) -> Self {
        self.grace = grace.to_owned();
        self
    }

    /// `--replica`.
    pub fn replica(mut self, name: &str) -> Self {
        self.replica = Some(name.to_owned());
        self
    }

    /// `--events` (default: the binary's, `auto`), e.g. `jetstream:nats://…`.
    pub fn events(mut self, spec: &str) -> Self {
        self.events = Some(spec.to_owned());
        self
    }

    /// Events on the standalone `broker` (`--events broker:URL` with its
    /// token and certificate).
    pub fn on_broker(self, broker: &crate::Broker) -> Self {
        self.events(&format!("broker:{}", broker.url()))
            .arg("--broker-token-file")
            .arg(&broker.token_file().display().to_string())
            .arg("--broker-cert")
            .arg(&broker.cert_file().display().to_string())
    }

    /// Any further `sinew control` argument, e.g. `.arg("--events-partitions").arg("2")`.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra.push(arg.to_owned());
        self
    }

    /// Starts it and waits until its REST API answers.
    pub async fn spawn(self) -> Control {
        let (temp, dir) = match self.dir {
            Some(d) => (None, d),
            None => {
                let t = TempDir::new("sinew-control");
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let http = free_port();
        let grpc = free_port();
        let store = self
            .store
            .unwrap_or_else(|| format!("embedded:{}", dir.join("store").display()));
        let mut args = vec![
            "control".to_owned(),
            "--store".to_owned(),
            store,
            "--http-listen".to_owned(),
            http.to_string(),
            "--grpc-listen".to_owned(),
            grpc.to_string(),
            "--data-dir".to_owned(),
            dir.display().to_string(),
            "--deregister-grace".to_owned(),
            self.grace,
        ];
        if let Some(r) = self.replica {
            args.extend(["--replica".to_owned(), r]);
        }
        if let Some(events) = self.events {
            args.extend(["--events".to_owned(), events]);
        }
        args.extend(self.extra);
        let mut process = spawn(&self.bin, &args);
        wait_ready(&mut process, http, &dir).await;
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        Control {
            process,
            bin: self.bin,
            args,
            dir,
            http,
            grpc,
            token,
            _temp: temp,
        }
    }
}

fn spawn(bin: &Path, args: &[String]) -> Process {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("SINEW_LOG", "info");
    Process::spawn(cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()))
}

async fn wait_ready(process: &mut Process, http: SocketAddr, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = process.try_exit() {
            panic!("sinew control exited ({status}):\n{}", process.stderr());
        }
        if dir.join("admin.token").exists() {
            if let Ok(mut c) = HttpClient::http1(http).await {
                let req = Request::new(Method::GET, "/healthz").host(&http.to_string());
                if matches!(c.send(req).await, Ok(r) if r.status == StatusCode::OK) {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "sinew control not ready within 20s:\n{}",
            process.stderr()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
