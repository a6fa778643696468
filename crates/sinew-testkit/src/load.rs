//! `Load`: a bounded HTTP load generator that reports ok/failed counts and responses per backend.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{HttpClient, HttpVersion, Request};

/// The longest any load runs, whatever its bounds, so tests stay bounded.
const HARD_CAP: Duration = Duration::from_secs(120);
/// How many error descriptions a report keeps.
const KEPT_ERRORS: usize = 10;

/// What a load run observed.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Transport errors plus non-2xx responses.
    pub failed: u64,
    /// Responses grouped by their `x-backend` header (`-` when absent).
    pub by_backend: BTreeMap<String, u64>,
    /// Responses grouped by status code.
    pub by_status: BTreeMap<u16, u64>,
    /// The first few failures, described.
    pub errors: Vec<String>,
}

impl LoadReport {
    /// All requests attempted.
    pub fn total(&self) -> u64 {
        self.ok + self.failed
    }

    /// The fraction (0..=1) of responses that came from `backend`.
    pub fn share(&self, backend: &str) -> f64 {
        let responses: u64 = self.by_backend.values().sum();
        if responses == 0 {
            return 0.0;
        }
        self.by_backend.get(backend).copied().unwrap_or(0) as f64 / responses as f64
    }

    /// Responses from `backend`.
    pub fn from_backend(&self, backend: &str) -> u64 {
        self.by_backend.get(backend).copied().unwrap_or(0)
    }

    fn record_error(&mut self, error: String) {
        self.failed += 1;
        if self.errors.len() < KEPT_ERRORS {
            self.errors.push(error);
        }
    }
}

/// A load definition: `concurrency` keep-alive connections sending `GET path`
/// with `Host: host` to `addr`, until `requests` are sent or `duration` passes.
#[derive(Debug, Clone)]
pub struct Load {
    addr: SocketAddr,
    host: String,
    path: String,
    version: HttpVersion,
    headers: Vec<(String, String)>,
    concurrency: usize,
    requests: Option<u64>,
    duration: Option<Duration>,
}

impl Load {
    /// Load against `addr` with `Host: host` and `GET path`; 1 connection, no bound yet.
    pub fn new(addr: SocketAddr, host: &str, path: &str) -> Self {
        Self {
            addr,
            host: host.to_owned(),
            path: path.to_owned(),
            version: HttpVersion::Http1,
            headers: Vec::new(),
            concurrency: 1,
            requests: None,
            duration: None,
        }
    }

    /// Number of concurrent connections (each sends one request at a time).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Stop after this many requests in total.
    pub fn requests(mut self, requests: u64) -> Self {
        self.requests = Some(requests);
        self
    }

    /// Stop after this much time.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// Use h2c prior knowledge instead of HTTP/1.1.
    pub fn h2(mut self) -> Self {
        self.version = HttpVersion::H2;
        self
    }

    /// Add a header to every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs to its bound (or the kit's 120 s cap) and reports.
    pub async fn run(self) -> LoadReport {
        self.spawn().join().await
    }

    /// Starts the load in the background; [`LoadHandle::finish`] stops it early.
    pub fn spawn(self) -> LoadHandle {
        let (stop, stopped) = watch::channel(false);
        let sent = Arc::new(AtomicU64::new(0));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let deadline = Instant::now() + self.duration.unwrap_or(HARD_CAP).min(HARD_CAP);
        let load = Arc::new(self);
        let workers = (0..load.concurrency)
            .map(|_| {
                let worker = Worker {
                    load: Arc::clone(&load),
                    sent: Arc::clone(&sent),
                    report: Arc::clone(&report),
                    stopped: stopped.clone(),
                    deadline,
                };
                tokio::spawn(worker.run())
            })
            .collect();
        LoadHandle {
            stop,
            sent,
            report,
            workers,
        }
    }
}

/// A load running in the background.
#[derive(Debug)]
pub struct LoadHandle {
    stop: watch::Sender<bool>,
    sent: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
    workers: Vec<JoinHandle<()>>,
}

impl LoadHandle {
    /// Requests started so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Stops sending (in-flight requests finish) and reports.
    pub async fn finish(self) -> LoadReport {
        self.stop.send_replace(true);
        self.join().await
    }

    /// Waits for the load to reach its own bound and reports.
    pub async fn join(self) -> LoadReport {
        for worker in self.workers {
            if let Err(e) = worker.await {
                panic!("load worker panicked: {e}");
            }
        }
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        report.clone()
    }
}

struct Worker {
    load: Arc<Load>,
    sent: Arc<AtomicU64>,
    report: Arc<Mutex<LoadReport>>,
    stopped: watch::Receiver<bool>,
    deadline: Instant,
}

impl Worker {
    async fn run(self) {
        let mut client: Option<HttpClient> = None;
        loop {
            if *self.stopped.borrow() || Instant::now() >= self.deadline {
                return;
            }
            let n = self.sent.fetch_add(1, Ordering::SeqCst);
            if self.load.requests.is_some_and(|limit| n >= limit) {
                return;
            }
            let outcome = self.one(&mut client).await;
            let mut report = self.report.lock().unwrap_or_else(|e| e.into_inner());
            match outcome {
                Ok((status, backend)) => {
                    *report.by_status.entry(status).or_default() += 1;
                    *report.by_backend.entry(backend).or_default() += 1;
                    if (200..300).contains(&status) {
                        report.ok += 1;
                    } else {
                        report.record_error(format!("status {status}"));
                    }
                }
                Err(error) => {
                    client = None;
                    report.record_error(error);
                }
            }
        }
    }

    async fn one(&self, client: &mut Option<HttpClient>) -> Result<(u16, String), String> {
        if client.is_none() {
            let fresh = HttpClient::connect(self.load.addr, self.load.version)
                .await
                .map_err(|e| e.to_string())?;
            *client = Some(fresh);
        }
        let Some(conn) = client.as_mut() else {
            return Err("no connection".to_owned());
        };
        let mut req = Request::get(&self.load.path).host(&self.load.host);
        for (name, value) in &self.load.headers {
            req = req.header(name, value);
        }
        let resp = conn.send(req).await.map_err(|e| e.to_string())?;
        let backend = resp.backend().unwrap_or("-").to_owned();
        Ok((resp.status.as_u16(), backend))
    }
}
