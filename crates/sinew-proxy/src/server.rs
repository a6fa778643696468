//! The running proxy: worker threads (one single-threaded runtime each, with
//! their own `SO_REUSEPORT` listeners and connection pools), the shared
//! state they read (the current config, swapped atomically), reload and
//! graceful drain.

use crate::config::{compile, Registries, Runtime};
use crate::endpoint::Pools;
use crate::health::{HealthChecker, HealthStates};
use crate::listen::{self, Serve};
use crate::ratelimit::RateLimits;
use crate::telemetry::{AccessLog, AccessLogTarget, Metrics, ReloadResult};
use crate::tls::TlsState;
use arc_swap::ArcSwap;
use sinew_model::{Protocol, ProxyConfig};
use std::{
    io,
    net::SocketAddr,
    sync::{mpsc, Arc},
    thread,
    time::Duration,
};
use tokio::sync::watch;

/// Which listener a request arrived on.
pub type Direction = crate::telemetry::Direction;

/// State shared by every worker.
#[derive(Debug)]
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    pub(crate) pools: Pools,
    health: HealthStates,
    rate_limits: RateLimits,
    kept: crate::config::KeptStates,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) access_log: Option<AccessLog>,
    /// The workload certificate for mTLS, swapped on renewal.
    pub(crate) tls: Arc<TlsState>,
    /// Gateway mode: the ingress listener's TLS (its certificate files are
    /// read again on every reload).
    ingress_tls: arc_swap::ArcSwapOption<rustls::ServerConfig>,
    /// JWKS URLs the Routes' `jwt` checks fetch keys from.
    jwks: crate::gateway::jwks::JwksRegistry,
    /// `drain`'s value, for the request path.
    draining: std::sync::atomic::AtomicBool,
    drain: watch::Sender<bool>,
    /// The applied config version, for tasks that follow reloads.
    applied: watch::Sender<u64>,
}

impl Shared {
    /// The config in force now.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    fn registries(&self) -> Registries<'_> {
        Registries {
            pools: &self.pools,
            health: &self.health,
            metrics: &self.metrics,
            rate_limits: &self.rate_limits,
            kept: &self.kept,
            tls: &self.tls,
            jwks: &self.jwks,
        }
    }

    /// The ingress listener's TLS config, when it terminates TLS.
    pub(crate) fn ingress_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.ingress_tls.load_full()
    }

    /// The proxy's TLS material (its workload certificate), if it has one.
    pub fn tls(&self) -> &Arc<TlsState> {
        &self.tls
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A receiver that changes when draining starts.
    pub fn drain_signal(&self) -> watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// Whether the proxy is draining: one relaxed load (asked per request).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts draining: listeners stop accepting, idle connections close,
    /// in-flight requests finish.
    pub fn start_drain(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.drain.send_replace(true);
    }

    /// Open downstream connections on every listener.
    pub fn open_connections(&self) -> i64 {
        crate::telemetry::Direction::ALL
            .iter()
            .map(|d| self.metrics.connections(*d).open_now())
            .sum()
    }

    /// Compiles `config` and swaps it in, unless it changes what only a
    /// restart can (listeners, workers). Returns the new version.
    pub fn apply(&self, config: ProxyConfig) -> Result<u64, String> {
        let current = self.runtime();
        let (old, new) = (&current.config.proxy.spec, &config.proxy.spec);
        if old.listen != new.listen
            || old.workers != new.workers
            || old.service != new.service
            || old.app != new.app
        {
            self.metrics
                .config_reloaded(ReloadResult::Rejected, current.version);
            return Err(
                "changing the Proxy's listen addresses, workers, service or app needs a restart"
                    .into(),
            );
        }
        // The version is the snapshot's: the file reloader numbers them
        // one past the running one, the control plane by store revision.
        let version = config.snapshot.version();
        // Static certificate files are read again: a renewed certificate
        // takes effect on reload.
        let files = static_tls(&config)
            .map_err(|e| e.to_string())
            .and_then(|tls| Ok((tls, ingress_tls(&config)?)));
        match files {
            Ok((material, ingress)) => {
                if let Some(material) = material {
                    self.tls.set(material);
                }
                self.ingress_tls.store(ingress);
            }
            Err(e) => {
                self.metrics
                    .config_reloaded(ReloadResult::Rejected, current.version);
                return Err(e);
            }
        }
        match compile(Arc::new(config), version, self.registries()) {
            Ok(runtime) => {
                self.runtime.store(Arc::new(runtime));
                self.applied.send_replace(version);
                self.metrics.config_reloaded(ReloadResult::Ok, version);
                Ok(version)
            }
            Err(e) => {
                self.metrics
                    .config_reloaded(ReloadResult::Rejected, current.version);
                Err(e.to_string())
            }
        }
    }
}

/// A started proxy.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    workers: Vec<thread::JoinHandle<()>>,
}

impl Server {
    /// Compiles `config`, binds every listener on every worker and starts
    /// serving. Fails (before serving anything) on a bind or config error.
    pub fn start(config: ProxyConfig) -> Result<Server, io::Error> {
        let spec = config.proxy.spec.clone();
        let workers = usize::from(spec.workers.max(1));
        let metrics = Arc::new(Metrics::new());
        let pools = Pools::new(workers);
        let access_log = match &spec.access_log {
            Some(log) => {
                let target = match &log.path {
                    sinew_model::AccessLogPath::Stdout => AccessLogTarget::Stdout,
                    sinew_model::AccessLogPath::File(path) => AccessLogTarget::File(path.clone()),
                };
                Some(AccessLog::open_with(
                    target,
                    AccessLog::DEFAULT_CAPACITY,
                    metrics.access_log_dropped(),
                )?)
            }
            None => None,
        };
        let health = HealthStates::default();
        let rate_limits = RateLimits::default();
        let kept = crate::config::KeptStates::default();
        let tls = Arc::new(TlsState::default());
        if let Some(material) = static_tls(&config)? {
            tls.set(material);
        }
        let ingress_tls =
            ingress_tls(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let jwks = crate::gateway::jwks::JwksRegistry::default();
        let version = config.snapshot.version();
        let runtime = compile(
            Arc::new(config),
            version,
            Registries {
                pools: &pools,
                health: &health,
                metrics: &metrics,
                rate_limits: &rate_limits,
                kept: &kept,
                tls: &tls,
                jwks: &jwks,
            },
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if spec.control.is_none() && tls.current().is_none() && runtime.needs_certificate() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the Mesh's mtls is {} but this proxy has no certificate: give it \
                     `tls` files (cert, key, trust_bundle), run it under a control plane \
                     (`control`), or set `mtls: disabled` in the Mesh",
                    if runtime.mtls() == sinew_model::MtlsMode::Strict {
                        "strict (the default)"
                    } else {
                        "permissive"
                    }
                ),
            ));
        }
        metrics.config_reloaded(ReloadResult::Ok, version);
        let own_protocol = runtime.own_protocol();
        let (drain, _) = watch::channel(false);
        let (applied, _) = watch::channel(version);
        let shared = Arc::new(Shared {
            runtime: ArcSwap::from_pointee(runtime),
            pools,
            health,
            rate_limits,
            kept,
            metrics,
            access_log,
            tls,
            ingress_tls: arc_swap::ArcSwapOption::new(ingress_tls),
            jwks,
            drain,
            draining: std::sync::atomic::AtomicBool::new(false),
            applied,
        });
        {
            let shared = shared.clone();
            thread::Builder::new()
                .name("sinew-health".into())
                .spawn(move || run_health_checks(&shared))?;
        }

        let mut listeners: Vec<(SocketAddr, Serve)> =
            vec![(spec.listen.outbound, Serve::Http(Direction::Outbound))];
        if spec.app.is_some() {
            let inbound = match own_protocol {
                Protocol::Tcp => Serve::TcpInbound,
                Protocol::Http => Serve::Http(Direction::Inbound),
            };
            listeners.push((spec.listen.inbound, inbound));
        }
        if let Some(ingress) = &spec.listen.ingress {
            listeners.push((ingress.address, Serve::Ingress));
        }
        for (index, tcp) in spec.listen.tcp.iter().enumerate() {
            listeners.push((tcp.address, Serve::Tcp(index)));
        }

        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let mut handles = Vec::with_capacity(workers);
        for index in 0..workers {
            let shared = shared.clone();
            let listeners = listeners.clone();
            let ready = ready_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("sinew-worker-{index}"))
                .spawn(move || worker(index, shared, listeners, ready))?;
            handles.push(handle);
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    shared.start_drain();
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("a worker thread died while starting")),
            }
        }
        Ok(Server {
            shared,
            workers: handles,
        })
    }

    /// The shared state (config, metrics, drain).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Drains and waits for in-flight requests to finish, at most `timeout`.
    pub fn shutdown(self, timeout: Duration) {
        self.shared.start_drain();
        let deadline = std::time::Instant::now() + timeout;
        while self.shared.open_connections() > 0 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        if self.shared.open_connections() == 0 {
            for handle in self.workers {
                let _ = handle.join();
            }
        }
    }
}

/// Reads the certificate files of a gateway's ingress listener.
fn ingress_tls(config: &ProxyConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    let ingress = config.proxy.spec.listen.ingress.as_ref();
    ingress
        .and_then(|i| i.tls.as_ref())
        .map(crate::gateway::sni::server_config)
        .transpose()
}

/// Reads the certificate files of a static-mode proxy (`spec.tls`).
fn static_tls(config: &ProxyConfig) -> io::Result<Option<crate::tls::Material>> {
    let Some(files) = &config.proxy.spec.tls else {
        return Ok(None);
    };
    let read = |path: &std::path::Path, what: &str| {
        std::fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read tls.{what} {}: {e}", path.display()),
            )
        })
    };
    let cert = read(&files.cert, "cert")?;
    let key = read(&files.key, "key")?;
    let bundle = read(&files.trust_bundle, "trust_bundle")?;
    crate::tls::Material::from_pem(&cert, &key, &bundle)
        .map(Some)
        .map_err(|e| io::Error::new(e.kind(), format!("tls: {e}")))
}

/// Runs the active health checks of the config in force, following reloads,
/// until the proxy drains. Its own thread keeps probes off the workers.
fn run_health_checks(shared: &Shared) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        tracing::error!("cannot start the health-check runtime; endpoints count as healthy");
        return;
    };
    rt.block_on(async {
        let mut applied = shared.applied.subscribe();
        let mut drain = shared.drain_signal();
        let mut checks = HealthChecker::spawn(shared.runtime().health_targets.clone());
        shared.jwks.start_fetching();
        let mut gauges = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = gauges.tick() => {
                    // `sinew_healthy_endpoints{service}`: usable endpoints of each whole service.
                    for cluster in shared.runtime().clusters().iter().filter(|c| c.subset.is_none()) {
                        cluster.telemetry.healthy_endpoints.set(cluster.usable_count() as i64);
                    }
                }
                changed = applied.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    checks.replace(shared.runtime().health_targets.clone());
                    shared.jwks.start_fetching();
                }
                _ = drain.changed() => return,
            }
        }
    });
}

fn worker(
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<(SocketAddr, Serve)>,
    ready: mpsc::Sender<io::Result<()>>,
) {
    crate::endpoint::set_current_worker(index);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        let mut bound = Vec::with_capacity(listeners.len());
        for (addr, serve) in listeners {
            match listen::bind(addr) {
                Ok(listener) => bound.push((listener, serve)),
                Err(e) => {
                    let _ = ready.send(Err(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {addr}: {e}"),
                    )));
                    return;
                }
            }
        }
        let _ = ready.send(Ok(()));
        let mut tasks = Vec::with_capacity(bound.len());
        for (listener, serve) in bound {
            tasks.push(tokio::spawn(listen::accept_loop(
                listener,
                shared.clone(),
                serve,
            )));
        }
        // Sweep idle upstream connections until the listeners stop.
        let sweeper = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    let now = std::time::Instant::now();
                    for pool in shared.pools.live() {
                        pool.sweep(now);
                    }
                }
            })
        };
        for task in tasks {
            let _ = task.await;
        }
        // Draining: keep serving open connections until they finish.
        while shared.open_connections() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sweeper.abort();
    });
}
