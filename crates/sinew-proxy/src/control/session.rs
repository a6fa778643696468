//! The session task: connect to a control plane, say `Hello`, apply each
//! `Update` (ACK or NACK it), report health changes; on any end or error,
//! back off and try the next address.

use super::documents::Documents;
use super::health::{self, Reported};
use super::{cache, identity, Bootstrap, Control, ControlOptions};
use crate::resilience::delay;
use crate::server::Shared;
use crate::tls::Material;
use sinew_model::Proxy;
use sinew_proto::{
    control_client::ControlClient, control_message, proxy_message, Ack, Ejection, EndpointHealth,
    Hello, Nack, ProxyMessage, Stats, StatsSeries, Update,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

/// How often the request counters go to the control plane (`sinew top`).
const STATS_EVERY: Duration = Duration::from_secs(2);
/// First reconnect delay ceiling; doubles per failed attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Largest reconnect delay ceiling.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a connect may take before the next address is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// HTTP/2 pings on an idle session, so a vanished control plane is noticed.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a session ended.
#[derive(Debug)]
enum End {
    /// The proxy is draining: stop for good.
    Drained,
    /// The control plane closed the stream.
    Closed,
    /// Connecting or the stream failed.
    Failed(String),
    /// The proxy joined with the token and now holds its certificate:
    /// reconnect at once, authenticated by the certificate (so the control
    /// plane and the broker know which workload calls).
    Reauthenticate,
}

/// Largest message accepted from the control plane.
const MAX_MESSAGE: usize = 64 << 20;

/// The session's state, kept across reconnects.
#[derive(Debug)]
pub(super) struct Session {
    shared: Arc<Shared>,
    proxy: Proxy,
    options: ControlOptions,
    control: Arc<Control>,
    /// The set as the control plane last sent it (even if refused): the base
    /// its next incremental update builds on.
    received: Documents,
    /// The set being served.
    applied: Documents,
    /// A version arriving in parts: the set so far (or the error that
    /// will NACK it), until its last part.
    staged: Option<Result<Documents, (u64, String)>>,
    /// The control plane refused the certificate last time: join with the
    /// token again (a changed trust domain, say).
    certificate_refused: bool,
}

impl Session {
    pub(super) fn new(
        shared: Arc<Shared>,
        bootstrap: Bootstrap,
        options: ControlOptions,
        control: Arc<Control>,
    ) -> Self {
        Self {
            shared,
            proxy: bootstrap.proxy,
            options,
            control,
            received: bootstrap.docs.clone(),
            applied: bootstrap.docs,
            staged: None,
            certificate_refused: false,
        }
    }

    /// Runs sessions, address after address, until the proxy drains.
    pub(super) async fn run(mut self) {
        let mut drain = self.shared.drain_signal();
        let mut rng = fastrand::Rng::new();
        let mut failures = 0u32;
        let mut next = 0usize;
        loop {
            let address = self.options.addresses[next % self.options.addresses.len()].clone();
            next = next.wrapping_add(1);
            let mut progressed = false;
            let end = tokio::select! {
                end = self.session(&address, &mut progressed) => end,
                _ = drain.wait_for(|d| *d) => End::Drained,
            };
            self.control.set_channel(None);
            match end {
                End::Drained => {
                    info!("control-plane session closed: draining");
                    return;
                }
                End::Closed => warn!(control = %address, "control plane closed the session"),
                End::Failed(error) => {
                    warn!(control = %address, %error, "control-plane session failed");
                }
                End::Reauthenticate => {
                    info!(control = %address, "reconnecting with the workload certificate");
                    failures = 0;
                    next = next.wrapping_sub(1); // the same address again
                    continue;
                }
            }
            // A session that got as far as an update starts the backoff over.
            failures = if progressed {
                1
            } else {
                failures.saturating_add(1)
            };
            let wait = delay(failures, BACKOFF_BASE, BACKOFF_MAX, &mut rng);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = drain.wait_for(|d| *d) => return,
            }
        }
    }

    /// One session with `address`; sets `progressed` once an update arrives.
    async fn session(&mut self, address: &str, progressed: &mut bool) -> End {
        self.join(address).await;
        let tls = match self.tls() {
            Ok(tls) => tls,
            Err(error) => return End::Failed(error),
        };
        let channel = match connect(address, tls).await {
            Ok(channel) => channel,
            Err(error) => return End::Failed(error),
        };
        let (tx, rx) = mpsc::channel::<ProxyMessage>(64);
        let hello = self.hello();
        let served = hello.applied_version;
        if tx
            .try_send(message(proxy_message::Message::Hello(hello)))
            .is_err()
        {
            return End::Failed("cannot queue Hello".into());
        }
        // Parts are small, but one document (a Service with thousands of
        // endpoints) may be large on its own.
        let mut client = ControlClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE);
        let mut inbound = match client
            .stream(self.control.authorized(ReceiverStream::new(rx)))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) => {
                if self
                    .control
                    .cert_auth
                    .load(std::sync::atomic::Ordering::Acquire)
                    && matches!(
                        status.code(),
                        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                    )
                {
                    self.certificate_refused = true;
                }
                return End::Failed(describe(&status));
            }
        };
        self.certificate_refused = false;
        self.control.set_channel(Some(channel.clone()));
        info!(control = %address, served_version = served, "connected to the control plane");

        self.staged = None; // a new session starts with a whole version
        let mut reported = Reported::default();
        // The certificate: asked for at once when there is none (or it is
        // due), then at two thirds of each lifetime.
        // One deadline for the whole session (a sleep made afresh in each
        // select would restart whenever another branch fires).
        let renew_in = self
            .control
            .identity()
            .map_or(Duration::ZERO, |i| i.renew_in());
        let renew = tokio::time::sleep(renew_in);
        tokio::pin!(renew);
        let mut sample = tokio::time::interval(health::SAMPLE);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stats = tokio::time::interval(STATS_EVERY);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                received = inbound.message() => match received {
                    Ok(Some(msg)) => {
                        let Some(control_message::Message::Update(update)) = msg.message else {
                            continue;
                        };
                        *progressed = true;
                        let Some(reply) = self.receive(&update) else {
                            continue; // more parts of this version follow
                        };
                        if tx.send(reply).await.is_err() {
                            return End::Failed("the stream closed while answering".into());
                        }
                    }
                    Ok(None) => return End::Closed,
                    Err(status) => return End::Failed(describe(&status)),
                },
                () = &mut renew => {
                    let next = match identity::request(channel.clone(), &self.control, &self.proxy).await {
                        Ok(issued) => {
                            let joined_by_token =
                                !self.control.cert_auth.load(std::sync::atomic::Ordering::Acquire);
                            match self.take_identity(issued) {
                                // A session that had to join by token moves to the certificate.
                                Some(_) if joined_by_token => return End::Reauthenticate,
                                Some(next) => next,
                                None => identity::RETRY,
                            }
                        }
                        Err(error) => {
                            warn!(%error, "cannot get a workload certificate; asking again shortly");
                            identity::RETRY
                        }
                    };
                    renew.as_mut().reset(tokio::time::Instant::now() + next);
                }
                _ = stats.tick() => {
                    let msg = message(proxy_message::Message::Stats(self.stats()));
                    if tx.send(msg).await.is_err() {
                        return End::Failed("the stream closed while reporting stats".into());
                    }
                }
                _ = sample.tick() => {
                    let changes = reported.changes(health::sample(&self.shared.runtime()));
                    if !changes.is_empty() {
                        let msg = message(proxy_message::Message::Health(EndpointHealth { endpoints: changes }));
                        if tx.send(msg).await.is_err() {
                            return End::Failed("the stream closed while reporting health".into());
                        }
                    }
                }
            }
        }
    }

    /// Joining: without a usable workload certificate, connect with the
    /// token just to get one, so the session itself (and every broker call
    /// on it) runs under the workload's identity. When that fails the
    /// session goes ahead on the token and asks again later.
    async fn join(&mut self, address: &str) {
        let usable = self
            .control
            .identity()
            .is_some_and(|i| i.not_after_ms > identity::now_ms() + 1_000);
        if usable && !self.certificate_refused {
            return;
        }
        let Ok(tls) = self.tls() else {
            return;
        };
        let Ok(channel) = connect(address, tls).await else {
            return;
        };
        match identity::request(channel, &self.control, &self.proxy).await {
            Ok(issued) => {
                self.take_identity(issued);
            }
            Err(error) => {
                warn!(%error, "cannot get a workload certificate; joining with the token")
            }
        }
    }

    /// Puts an issued certificate in force: for the listeners' mTLS (new
    /// connections) and the next connection to the control plane.
    /// Returns when to renew it, or `None` when it is unusable.
    fn take_identity(&mut self, issued: identity::Identity) -> Option<Duration> {
        match Material::from_pem(&issued.chain_pem, &issued.key_pem, &issued.bundle_pem) {
            Ok(material) => {
                info!(identity = %issued.id, not_after_ms = issued.not_after_ms, "workload certificate issued");
                // New connections use it from now on; open ones keep theirs.
                self.shared.tls().set(material);
                let next = issued.renew_in();
                self.control.set_identity(issued);
                self.certificate_refused = false;
                Some(next.max(identity::RETRY))
            }
            Err(error) => {
                warn!(%error, "the control plane issued an unusable certificate; asking again shortly");
                None
            }
        }
    }

    /// The TLS config of the next connection: the control plane must prove
    /// `/sinew/control` under the configured bundle (or the one that came
    /// with the workload certificate); the proxy authenticates with its
    /// certificate while it holds a valid one, else with the join token.
    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let identity = self
            .control
            .identity()
            .filter(|i| !self.certificate_refused && i.not_after_ms > identity::now_ms() + 1_000);
        let mut bundle = self.options.trust_bundle.clone().unwrap_or_default();
        if let Some(i) = &identity {
            bundle.push_str(&i.bundle_pem);
        }
        if bundle.trim().is_empty() {
            return Err(
                "no trust bundle for the control plane's TLS: give --control-ca FILE \
                 (the control plane writes ca.pem into its data directory)"
                    .into(),
            );
        }
        let client = identity
            .as_ref()
            .map(|i| (i.chain_pem.as_str(), i.key_pem.as_str()));
        let config =
            crate::tls::control_client_config(&bundle, client).map_err(|e| e.to_string())?;
        self.control
            .cert_auth
            .store(identity.is_some(), std::sync::atomic::Ordering::Release);
        Ok(config)
    }

    /// The request counters for the control plane's golden metrics.
    fn stats(&self) -> Stats {
        let totals = self.shared.metrics().request_totals();
        let now = std::time::Instant::now();
        let runtime = self.shared.runtime();
        let ejections = runtime
            .clusters()
            .iter()
            .flat_map(|cluster| {
                let outlier = cluster.outlier.as_ref();
                cluster
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter(move |(i, _)| outlier.is_some_and(|o| o.is_ejected(*i, now)))
                    .map(move |(_, e)| Ejection {
                        service: cluster.service.to_string(),
                        subset: cluster.subset.as_deref().unwrap_or_default().to_owned(),
                        address: e.addr.to_string(),
                    })
            })
            .collect();
        Stats {
            ejections,
            bounds_ms: crate::telemetry::names::LATENCY_BUCKETS
                .iter()
                .map(|b| b.as_secs_f64() * 1000.0)
                .collect(),
            series: totals
                .into_iter()
                .map(|(direction, service, by_class, buckets)| StatsSeries {
                    direction: direction.to_owned(),
                    service,
                    by_class: by_class.to_vec(),
                    buckets,
                })
                .chain(self.shared.metrics().publish_totals().into_iter().map(
                    |(topic, by_class)| StatsSeries {
                        direction: "publish".to_owned(),
                        service: topic,
                        by_class: by_class.to_vec(),
                        buckets: Vec::new(),
                    },
                ))
                .collect(),
        }
    }

    fn hello(&self) -> Hello {
        let meta = &self.proxy.metadata;
        Hello {
            proxy: meta.name.clone(),
            namespace: meta.namespace.clone(),
            service: self.proxy.spec.service.clone(),
            address: self.options.advertise.clone(),
            labels: meta
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            weight: 1,
            applied_version: self.shared.runtime().config.snapshot.version(),
            api: self.proxy.spec.listen.api.to_string(),
        }
    }

    /// Takes one part of a version; once the last part is in, applies the
    /// version and returns the verdict to send.
    fn receive(&mut self, update: &Update) -> Option<ProxyMessage> {
        let staged = match self.staged.take() {
            // A part of another version than the one being assembled starts afresh.
            Some(Ok(s)) if s.version() == update.version => Ok(s),
            Some(Err((v, e))) if v == update.version => Err(e),
            _ => Ok(self.received.clone()),
        };
        let merged = staged.and_then(|base| base.merge(update));
        if update.more {
            self.staged = Some(merged.map_err(|e| (update.version, e)));
            return None;
        }
        Some(self.apply(update.version, merged))
    }

    /// Applies a whole version and returns the verdict to send: the merged
    /// set becomes the base for the next update whatever happens; it is
    /// served (and cached) only if it checks out and compiles.
    fn apply(&mut self, version: u64, merged: Result<Documents, String>) -> ProxyMessage {
        let result = merged.and_then(|next| {
            self.received = next;
            if self.received == self.applied {
                return Ok(false);
            }
            let config = self.received.config(&self.proxy)?;
            self.shared.apply(config)?;
            Ok(true)
        });
        match result {
            Ok(changed) => {
                self.control.set_ready();
                if changed {
                    self.applied = self.received.clone();
                    if let Err(error) = cache::write(&self.options.cache, &self.applied) {
                        warn!(%error, cache = %self.options.cache.display(), "cannot write the config cache");
                    }
                    info!(
                        version,
                        documents = self.applied.len(),
                        "control-plane config applied"
                    );
                }
                message(proxy_message::Message::Ack(Ack { version }))
            }
            Err(error) => {
                warn!(version, %error, "control-plane update refused (NACK); the previous config keeps serving");
                message(proxy_message::Message::Nack(Nack { version, error }))
            }
        }
    }
}

fn message(message: proxy_message::Message) -> ProxyMessage {
    ProxyMessage {
        message: Some(message),
    }
}

/// Opens the TLS connections tonic asks for.
#[derive(Debug, Clone)]
struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
}

type Connected = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = Connected;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Connected>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| std::io::Error::other("the control-plane address has no host"))?;
            let port = uri.port_u16().unwrap_or(80);
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = crate::tls::connect_control(config, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// Connects to the control plane at `address` over TLS.
async fn connect(address: &str, tls: Arc<rustls::ClientConfig>) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|e| e.to_string())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    // The connect timeout bounds the TCP connect; this bounds the HTTP/2 handshake too.
    let connector = TlsConnector { config: tls };
    match tokio::time::timeout(
        CONNECT_TIMEOUT * 2,
        endpoint.connect_with_connector(connector),
    )
    .await
    {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(format!("cannot connect: {}", error_chain(&e))),
        Err(_) => Err("cannot connect: timed out".into()),
    }
}

/// A status as one line: its code and message.
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// `e` and its sources, joined (tonic's transport error alone says only "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    let mut last = text.clone();
    while let Some(s) = source {
        let part = s.to_string();
        // Layers often repeat their source's message; say it once.
        if !last.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        last = part;
        source = s.source();
    }
    text
}
