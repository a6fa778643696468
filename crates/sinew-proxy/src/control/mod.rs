//! Control-plane mode: a proxy whose `Proxy.spec.control` is set gets its
//! resources by push from `sinew control` instead of from its file.
//!
//! ```text
//! start     cache file parses? ── yes: serve it at once (ready)
//!                               └─ no:  empty snapshot (not ready until the first update applies)
//! session   connect (addresses in turn) → Hello → Update…
//!   update  Documents::merge → Documents::config → Shared::apply → cache::write → Ack
//!           any error on the way → Nack{error}; the running config keeps serving
//! end       stream closed or failed → backoff (100 ms doubling to 5 s, full jitter) → next address
//! ```
//!
//! Every call carries `authorization: Bearer TOKEN`. The session also reports
//! the proxy's active health-check verdicts (`health.rs`) and lends its
//! connection to the sidecar API's lock calls ([`Control::acquire_lock`] …).
//!
//! **Invariant:** a bad update never replaces the running config: it is
//! checked as a whole, then compiled, before the atomic swap.

mod addresses;
mod cache;
mod coalesce;
mod documents;
mod health;
mod identity;
mod session;

pub use addresses::parse_addresses;
pub use documents::{DocKey, Documents};
pub use identity::Identity;

use crate::server::Shared;
use sinew_model::{Proxy, ProxyConfig, Snapshot};
use sinew_proto::control_client::ControlClient;
use sinew_proto::events_client::EventsClient;
use sinew_proto::{
    AcquireLockRequest, LockLease, ReleaseLockReply, ReleaseLockRequest, RenewLockRequest,
};
use sinew_proto::{
    Assignment, CommitRequest, CursorReply, CursorRequest, FetchReply, FetchRequest,
    HeartbeatRequest, OffsetsReply, OffsetsRequest, PublishReply, PublishRequest,
};
use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};
use tonic::{metadata::MetadataValue, transport::Channel, Request, Status};

/// How long a lock call may take before the sidecar API gives up on it.
const LOCK_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How a proxy reaches and authenticates to its control plane.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Control-plane URIs (`http://host:port`), tried in turn.
    pub addresses: Vec<String>,
    /// The bearer token sent on every call until the proxy holds a
    /// workload certificate; `None` sends none.
    pub token: Option<String>,
    /// PEM roots the control plane's certificate must chain to (its
    /// `ca.pem`); the bundle that comes with the workload certificate is
    /// trusted too, so a proxy follows a root rotation.
    pub trust_bundle: Option<String>,
    /// Where the last applied resources are kept across restarts.
    pub cache: PathBuf,
    /// The `host:port` other sidecars reach this one at (sent in `Hello`);
    /// empty registers no endpoint.
    pub advertise: String,
}

impl ControlOptions {
    /// Options for `proxy` with its `spec.control` addresses, the default
    /// cache path beside `config_file` and the default advertised address.
    ///
    /// # Errors
    /// `spec.control` is absent or names no usable address.
    pub fn for_proxy(proxy: &Proxy, config_file: &Path) -> Result<Self, String> {
        let control = proxy
            .spec
            .control
            .as_deref()
            .ok_or("spec.control is not set")?;
        Ok(Self {
            addresses: parse_addresses(control)?,
            token: None,
            trust_bundle: None,
            cache: default_cache_path(proxy, config_file),
            advertise: default_advertise(proxy),
        })
    }
}

/// `<dir of the config file>/.<proxy name>.sinew-cache.json`.
pub fn default_cache_path(proxy: &Proxy, config_file: &Path) -> PathBuf {
    let dir = config_file.parent().unwrap_or_else(|| Path::new(""));
    dir.join(format!(".{}.sinew-cache.json", proxy.metadata.name))
}

/// The inbound listen address with an unspecified IP replaced by
/// `127.0.0.1`; empty when the proxy has no `spec.app` (no inbound listener,
/// nothing to register).
pub fn default_advertise(proxy: &Proxy) -> String {
    if proxy.spec.app.is_none() {
        return String::new();
    }
    let mut addr = proxy.spec.listen.inbound;
    if addr.ip().is_unspecified() {
        addr.set_ip(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    }
    addr.to_string()
}

/// The config a control-mode proxy starts with.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    proxy: Proxy,
    docs: Documents,
    config: ProxyConfig,
    cached: bool,
}

impl Bootstrap {
    /// The cached resources at `cache` if the file exists and its set
    /// checks out; otherwise an empty snapshot. A cache that does not is
    /// logged and ignored.
    pub fn load(proxy: Proxy, cache: &Path) -> Bootstrap {
        let found = match cache::read(cache) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, cache = %cache.display(), "ignoring an unreadable cache");
                None
            }
        };
        if let Some(docs) = found {
            match docs.config(&proxy) {
                Ok(config) => {
                    tracing::info!(version = docs.version(), documents = docs.len(), cache = %cache.display(), "serving the cached config until a control plane answers");
                    return Bootstrap {
                        proxy,
                        docs,
                        config,
                        cached: true,
                    };
                }
                Err(error) => {
                    tracing::warn!(%error, cache = %cache.display(), "ignoring a cache that no longer checks out");
                }
            }
        }
        Bootstrap::empty(proxy)
    }

    /// No resources yet: the proxy is not ready until the first update.
    pub fn empty(proxy: Proxy) -> Bootstrap {
        let config = ProxyConfig {
            proxy: proxy.clone(),
            snapshot: Snapshot::default(),
        };
        Bootstrap {
            proxy,
            docs: Documents::default(),
            config,
            cached: false,
        }
    }

    /// What `Server::start` serves first.
    pub fn config(&self) -> ProxyConfig {
        self.config.clone()
    }

    /// Whether the config came from the cache (and the proxy is ready at once).
    pub fn is_cached(&self) -> bool {
        self.cached
    }

    /// The control-plane version of the starting resources; 0 = none.
    pub fn version(&self) -> u64 {
        self.docs.version()
    }
}

/// A running control-plane session, as the rest of the proxy sees it.
#[derive(Debug)]
pub struct Control {
    /// A config from the control plane (or its cache) is being served.
    ready: AtomicBool,
    /// The workload certificate, once issued (replaced on each renewal).
    identity: arc_swap::ArcSwapOption<Identity>,
    /// The current session's connection; `None` between sessions.
    channel: Mutex<Option<Channel>>,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// Whether the current session authenticated with the workload
    /// certificate (then no token is sent).
    cert_auth: AtomicBool,
    /// Concurrent publishes per topic, sent together.
    coalescer: coalesce::Coalescer,
}

impl Control {
    /// Starts the session task on the current tokio runtime: it runs,
    /// reconnecting as needed, until `shared` drains.
    ///
    /// # Errors
    /// No address, or a token that cannot be sent as a header value.
    ///
    /// # Panics
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(
        shared: Arc<Shared>,
        bootstrap: Bootstrap,
        options: ControlOptions,
    ) -> Result<Arc<Control>, String> {
        if options.addresses.is_empty() {
            return Err("no control-plane address".into());
        }
        let authorization = match &options.token {
            Some(token) => Some(
                MetadataValue::try_from(format!("Bearer {}", token.trim()))
                    .map_err(|_| "the token is not a valid header value".to_owned())?,
            ),
            None => None,
        };
        let control = Arc::new(Control {
            ready: AtomicBool::new(bootstrap.cached),
            identity: arc_swap::ArcSwapOption::empty(),
            channel: Mutex::new(None),
            authorization,
            cert_auth: AtomicBool::new(false),
            coalescer: coalesce::Coalescer::default(),
        });
        let session = session::Session::new(shared, bootstrap, options, control.clone());
        tokio::spawn(session.run());
        Ok(control)
    }

    /// Whether the proxy serves a config from the control plane (or from
    /// its cache). Until then `/ready` answers 503.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether a session is established now.
    pub fn is_connected(&self) -> bool {
        self.channel().is_some()
    }

    /// The current workload certificate, if one was issued.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        self.identity.load_full()
    }

    fn set_identity(&self, identity: Identity) {
        self.identity.store(Some(Arc::new(identity)));
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    fn channel(&self) -> Option<Channel> {
        self.channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_channel(&self, channel: Option<Channel>) {
        *self.channel.lock().unwrap_or_else(PoisonError::into_inner) = channel;
    }

    /// `message` as a request carrying the bearer token, unless the
    /// session authenticated with the workload certificate.
    fn authorized<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if self.cert_auth.load(Ordering::Acquire) {
            return request;
        }
        if let Some(value) = &self.authorization {
            request
                .metadata_mut()
                .insert(sinew_proto::AUTHORIZATION, value.clone());
        }
        request
    }

    /// A client on the current session's connection.
    fn client(&self) -> Result<ControlClient<Channel>, Status> {
        self.channel()
            .map(ControlClient::new)
            .ok_or_else(|| Status::unavailable("not connected to a control plane"))
    }

    /// `AcquireLock` on the current session's connection.
    ///
    /// # Errors
    /// The control plane's status; `UNAVAILABLE` when not connected,
    /// `DEADLINE_EXCEEDED` after 5 s without an answer.
    pub async fn acquire_lock(&self, request: AcquireLockRequest) -> Result<LockLease, Status> {
        let mut client = self.client()?;
        bounded(client.acquire_lock(self.authorized(request))).await
    }

    /// `RenewLock` on the current session's connection.
    ///
    /// # Errors
    /// As [`Control::acquire_lock`].
    pub async fn renew_lock(&self, request: RenewLockRequest) -> Result<LockLease, Status> {
        let mut client = self.client()?;
        bounded(client.renew_lock(self.authorized(request))).await
    }

    /// `ReleaseLock` on the current session's connection.
    ///
    /// # Errors
    /// As [`Control::acquire_lock`].
    pub async fn release_lock(
        &self,
        request: ReleaseLockRequest,
    ) -> Result<ReleaseLockReply, Status> {
        let mut client = self.client()?;
        bounded(client.release_lock(self.authorized(request))).await
    }
}

impl Control {
    /// The event broker's client on the current session's connection.
    fn events(&self) -> Result<EventsClient<Channel>, Status> {
        self.channel()
            .map(|c| {
                EventsClient::new(c)
                    .max_decoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE)
                    .max_encoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE)
            })
            .ok_or_else(|| Status::unavailable("not connected to a control plane"))
    }

    /// `Publish` on the current session's connection: answers once the
    /// broker holds every event durably.
    ///
    /// # Errors
    /// The broker's status (`RESOURCE_EXHAUSTED` when its storage is full);
    /// `UNAVAILABLE` when not connected; `DEADLINE_EXCEEDED` after 5 s.
    pub async fn publish(&self, request: PublishRequest) -> Result<PublishReply, Status> {
        let mut client = self.events()?;
        bounded(client.publish(self.authorized(request))).await
    }

    /// `Heartbeat` (join or renew a consumer group).
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn heartbeat(&self, request: HeartbeatRequest) -> Result<Assignment, Status> {
        let mut client = self.events()?;
        bounded(client.heartbeat(self.authorized(request))).await
    }

    /// `Leave` a consumer group.
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn leave(&self, request: HeartbeatRequest) -> Result<(), Status> {
        let mut client = self.events()?;
        bounded(client.leave(self.authorized(request)))
            .await
            .map(drop)
    }

    /// `Fetch`, waiting up to the request's `wait_ms` (plus the usual bound).
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn fetch(&self, request: FetchRequest) -> Result<FetchReply, Status> {
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        let mut client = self.events()?;
        let call = client.fetch(self.authorized(request));
        match tokio::time::timeout(wait + LOCK_CALL_TIMEOUT, call).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded(
                "the broker did not answer in time",
            )),
        }
    }

    /// `Committed`: a group's cursor on a partition.
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn committed(&self, request: CursorRequest) -> Result<CursorReply, Status> {
        let mut client = self.events()?;
        bounded(client.committed(self.authorized(request))).await
    }

    /// `Commit`: moves a group's cursor durably.
    ///
    /// # Errors
    /// As [`Control::publish`]; `FAILED_PRECONDITION` when this member no
    /// longer owns the partition.
    pub async fn commit(&self, request: CommitRequest) -> Result<(), Status> {
        let mut client = self.events()?;
        bounded(client.commit(self.authorized(request)))
            .await
            .map(drop)
    }

    /// `Offsets` of a partition (and the first at or after a time).
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn offsets(&self, request: OffsetsRequest) -> Result<OffsetsReply, Status> {
        let mut client = self.events()?;
        bounded(client.offsets(self.authorized(request))).await
    }
}

async fn bounded<T>(
    call: impl std::future::Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Status> {
    match tokio::time::timeout(LOCK_CALL_TIMEOUT, call).await {
        Ok(result) => result.map(tonic::Response::into_inner),
        Err(_) => Err(Status::deadline_exceeded(
            "the control plane did not answer within 5s",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(text: &str) -> Proxy {
        match sinew_model::parse_str("p.yaml", text).map(|mut r| r.pop()) {
            Ok(Some(sinew_model::Resource::Proxy(p))) => p,
            other => panic!("not a proxy: {other:?}"),
        }
    }

    #[test]
    fn the_advertised_address_defaults_to_a_reachable_inbound_one() {
        let sidecar = proxy(
            "kind: Proxy\nmetadata: {name: web-1}\nspec: {service: web, app: 127.0.0.1:8080, control: cp:7701}\n",
        );
        assert_eq!(default_advertise(&sidecar), "127.0.0.1:4143");
        let pinned = proxy(
            "kind: Proxy\nmetadata: {name: web-1}\nspec: {service: web, app: 127.0.0.1:8080, control: cp:7701, listen: {inbound: 10.0.0.5:9000}}\n",
        );
        assert_eq!(default_advertise(&pinned), "10.0.0.5:9000");
        let gateway =
            proxy("kind: Proxy\nmetadata: {name: gw}\nspec: {service: gw, control: cp:7701}\n");
        assert_eq!(default_advertise(&gateway), "");
    }

    #[test]
    fn options_come_from_the_proxy_and_its_file() {
        let p = proxy(
            "kind: Proxy\nmetadata: {name: web-1}\nspec: {service: web, control: 'cp-1:7701,http://cp-2:7701'}\n",
        );
        let options = ControlOptions::for_proxy(&p, Path::new("conf/web.yaml")).expect("options");
        assert_eq!(options.addresses, ["http://cp-1:7701", "http://cp-2:7701"]);
        assert_eq!(options.cache, Path::new("conf/.web-1.sinew-cache.json"));
        assert_eq!(
            default_cache_path(&p, Path::new("web.yaml")),
            Path::new(".web-1.sinew-cache.json")
        );
        let static_proxy = proxy("kind: Proxy\nmetadata: {name: s}\nspec: {service: s}\n");
        assert!(ControlOptions::for_proxy(&static_proxy, Path::new("s.yaml")).is_err());
    }
}
