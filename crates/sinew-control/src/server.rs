//! Starting a replica: open the store, make sure the tokens exist, take the
//! replica lease, build the view, and serve gRPC and REST.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    keys,
    push::ControlService,
    replica::{self, Replica, Tokens},
    store::{embedded::EmbeddedStore, etcd::EtcdStore, Store, StoreError},
    view::View,
};

/// Where the control plane keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// `embedded:DIR`.
    Embedded(PathBuf),
    /// `etcd:URL[,URL…]`.
    Etcd(Vec<String>),
}

impl std::str::FromStr for StoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(dir) = s.strip_prefix("embedded:") {
            if dir.is_empty() {
                return Err("`embedded:` needs a directory, e.g. embedded:./sinew-data".into());
            }
            return Ok(StoreSpec::Embedded(PathBuf::from(dir)));
        }
        if let Some(urls) = s.strip_prefix("etcd:") {
            let urls: Vec<String> = urls
                .split(',')
                .filter(|u| !u.is_empty())
                .map(|u| {
                    if u.contains("://") {
                        u.to_owned()
                    } else {
                        format!("http://{u}")
                    }
                })
                .collect();
            if urls.is_empty() {
                return Err(
                    "`etcd:` needs at least one URL, e.g. etcd:http://127.0.0.1:2379".into(),
                );
            }
            return Ok(StoreSpec::Etcd(urls));
        }
        Err(format!(
            "unknown store `{s}`: use embedded:DIR or etcd:URL[,URL…]"
        ))
    }
}

/// Where the control plane keeps events (`--events`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EventsSpec {
    /// `auto`: the embedded broker with the embedded store, none with etcd.
    #[default]
    Auto,
    /// `embedded`: the embedded broker, in the data directory's `events/`
    /// (embedded store only: one replica, one log).
    Embedded,
    /// `jetstream:URL`: streams on a NATS JetStream server, shared by every
    /// replica.
    JetStream(String),
    /// `broker:https://HOST:PORT`: a standalone broker (`sinew broker`),
    /// shared by every replica; its token and certificate come in
    /// [`Options::broker`].
    Broker(String),
    /// `none`: no Events API (it answers 503).
    None,
}

impl std::str::FromStr for EventsSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(EventsSpec::Auto),
            "embedded" => Ok(EventsSpec::Embedded),
            "none" => Ok(EventsSpec::None),
            _ if s.starts_with("broker:") => match s.strip_prefix("broker:") {
                Some(url) if url.starts_with("https://") => Ok(EventsSpec::Broker(url.to_owned())),
                _ => Err(
                    "`broker:` needs the broker's https URL, e.g. broker:https://127.0.0.1:7450"
                        .into(),
                ),
            },
            _ => match s.strip_prefix("jetstream:") {
                Some(url) if !url.is_empty() => Ok(EventsSpec::JetStream(url.to_owned())),
                Some(_) => Err(
                    "`jetstream:` needs the server's URL, e.g. jetstream:nats://127.0.0.1:4222"
                        .into(),
                ),
                None => Err(format!(
                    "unknown events backend `{s}`: use auto, embedded, jetstream:URL, broker:URL or none"
                )),
            },
        }
    }
}

/// Opens the event store `options.events` names, if any.
async fn open_events(
    options: &Options,
    data_dir: &std::path::Path,
) -> Result<Option<sinew_events::EventStore>, StartError> {
    let embedded = match (&options.events, &options.store) {
        (EventsSpec::None, _) | (EventsSpec::Auto, StoreSpec::Etcd(_)) => return Ok(None),
        (EventsSpec::Embedded, StoreSpec::Etcd(_)) => {
            // With etcd (several replicas) each would have its own log.
            return Err(StartError(
                "--events embedded needs the embedded store (one replica, one log): with etcd use --events jetstream:URL"
                    .into(),
            ));
        }
        (EventsSpec::JetStream(url), _) => {
            let mut config = sinew_events::jetstream::JetStreamConfig::new(url.clone());
            config.partitions = options.event_partitions;
            let js = sinew_events::jetstream::JetStream::connect(config)
                .await
                .map_err(|e| StartError(format!("cannot use JetStream at {url}: {e}")))?;
            return Ok(Some(sinew_events::EventStore::JetStream(js)));
        }
        (EventsSpec::Broker(url), _) => {
            let Some(credentials) = &options.broker else {
                return Err(StartError(
                    "--events broker:URL needs the broker's token and certificate (--broker-token-file, --broker-cert)"
                        .into(),
                ));
            };
            let remote =
                sinew_events::remote::RemoteBroker::connect(sinew_events::remote::RemoteConfig {
                    url: url.clone(),
                    token: credentials.token.clone(),
                    cert_pem: credentials.cert_pem.clone(),
                })
                .map_err(|e| StartError(format!("cannot use the broker at {url}: {e}")))?;
            return Ok(Some(sinew_events::EventStore::Remote(remote)));
        }
        (EventsSpec::Auto | EventsSpec::Embedded, StoreSpec::Embedded(_)) => {
            data_dir.join("events")
        }
    };
    let config = sinew_events::BrokerConfig {
        partitions: options.event_partitions,
        ..sinew_events::BrokerConfig::default()
    };
    let broker = sinew_events::Broker::open(&embedded, config)
        .await
        .map_err(|e| {
            StartError(format!(
                "cannot open the event broker in {}: {e}",
                embedded.display()
            ))
        })?;
    Ok(Some(sinew_events::EventStore::Embedded(broker)))
}

/// How to run a replica.
#[derive(Debug, Clone)]
pub struct Options {
    /// The store.
    pub store: StoreSpec,
    /// gRPC address (proxies' streams, locks).
    pub grpc_listen: SocketAddr,
    /// REST API address.
    pub http_listen: SocketAddr,
    /// Where `admin.token` and `join.token` are written. Default: the
    /// embedded store's directory; required with etcd.
    pub data_dir: Option<PathBuf>,
    /// How long a proxy's endpoint stays registered after its stream ends.
    pub grace: Duration,
    /// This replica's name (default: `host-pid`).
    pub replica_id: Option<String>,
    /// The operator's CA; default: a root made on first start.
    pub ca: Option<crate::ca::UserCa>,
    /// Where events are kept.
    pub events: EventsSpec,
    /// Partitions of a topic created from now on (1..=1024; the usual 8).
    /// A topic keeps the count it was created with.
    pub event_partitions: u32,
    /// How to reach the standalone broker of `--events broker:URL`.
    pub broker: Option<BrokerCredentials>,
}

/// The standalone broker's token and certificate (`DIR/broker.token`,
/// `DIR/broker.pem` where it runs).
#[derive(Clone)]
pub struct BrokerCredentials {
    /// The token.
    pub token: String,
    /// The certificate to trust, PEM.
    pub cert_pem: String,
}

impl std::fmt::Debug for BrokerCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerCredentials")
            .field("token", &"…")
            .finish_non_exhaustive()
    }
}

/// A running replica.
#[derive(Debug)]
pub struct ControlPlane {
    /// The gRPC address bound.
    pub grpc_addr: SocketAddr,
    /// The REST address bound.
    pub http_addr: SocketAddr,
    /// Where the admin token was written.
    pub admin_token_file: PathBuf,
    replica: Arc<Replica>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _view: watch::Sender<Arc<View>>,
}

/// Why a replica could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError(e.to_string())
    }
}

pub(crate) fn write_secret(path: &std::path::Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == value) {
        // Kept, but never left readable by others (an older version, a copy).
        return std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    let tmp = path.with_extension("tmp");
    // A leftover temporary file would keep its mode: start afresh.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(value.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn default_replica_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "sinew".to_owned());
    format!("{host}-{}", std::process::id())
}

impl ControlPlane {
    /// Starts a replica on the current tokio runtime.
    ///
    /// # Errors
    /// The store cannot be opened, a listener cannot bind, or the token files
    /// cannot be written.
    pub async fn start(options: Options) -> Result<ControlPlane, StartError> {
        let (store, data_dir): (Arc<dyn Store>, PathBuf) = match &options.store {
            StoreSpec::Embedded(dir) => (
                Arc::new(EmbeddedStore::open(dir)?),
                options.data_dir.clone().unwrap_or_else(|| dir.clone()),
            ),
            StoreSpec::Etcd(urls) => {
                let dir = options.data_dir.clone().ok_or_else(|| {
                    StartError(
                        "--data-dir is required with an etcd store (the token files go there)"
                            .into(),
                    )
                })?;
                (Arc::new(EtcdStore::connect(urls).await?), dir)
            }
        };
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| StartError(format!("cannot create {}: {e}", data_dir.display())))?;
        let tokens = Tokens {
            admin: replica::token(&*store, keys::ADMIN_TOKEN).await?,
            join: replica::token(&*store, keys::JOIN_TOKEN).await?,
        };
        let admin_token_file = data_dir.join("admin.token");
        for (file, value) in [
            (&admin_token_file, &tokens.admin),
            (&data_dir.join("join.token"), &tokens.join),
        ] {
            write_secret(file, value)
                .map_err(|e| StartError(format!("cannot write {}: {e}", file.display())))?;
        }

        let grpc = tokio::net::TcpListener::bind(options.grpc_listen)
            .await
            .map_err(|e| {
                StartError(format!(
                    "cannot listen on {} (grpc): {e}",
                    options.grpc_listen
                ))
            })?;
        let http = tokio::net::TcpListener::bind(options.http_listen)
            .await
            .map_err(|e| {
                StartError(format!(
                    "cannot listen on {} (http): {e}",
                    options.http_listen
                ))
            })?;
        let grpc_addr = grpc.local_addr().map_err(|e| StartError(e.to_string()))?;
        let http_addr = http.local_addr().map_err(|e| StartError(e.to_string()))?;

        let ca = crate::ca::Ca::load_or_create(&*store, options.ca.as_ref()).await?;
        let id = options
            .replica_id
            .clone()
            .unwrap_or_else(default_replica_id);
        let describe = serde_json::json!({"grpc": grpc_addr, "http": http_addr}).to_string();
        let lease = replica::keep_lease(store.clone(), id.clone(), describe).await?;
        let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
        let replica = Arc::new(Replica::new(
            id,
            store.clone(),
            tokens,
            view_rx,
            lease,
            options.grace,
            ca,
        ));
        let mut tasks = vec![tokio::spawn(crate::view::build(
            store.clone(),
            view_tx.clone(),
        ))];
        tasks.push(tokio::spawn(replica::lead(replica.clone())));
        let service =
            sinew_proto::control_server::ControlServer::new(ControlService::new(replica.clone()));
        let broker = open_events(&options, &data_dir).await?;
        if let Some(broker) = &broker {
            tracing::info!(backend = broker.backend(), "event store open");
            let _ = replica.broker.set(broker.clone());
            if let sinew_events::EventStore::JetStream(js) = broker {
                // Group members that stop heartbeating leave (the embedded
                // broker runs its own tick).
                let js = js.clone();
                tasks.push(tokio::spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(250));
                    loop {
                        tick.tick().await;
                        js.expire_members();
                    }
                }));
            }
        }
        let events =
            sinew_proto::events_server::EventsServer::new(crate::events::EventsService::new(
                crate::events::Admission::Mesh(replica.clone()),
                broker,
            ))
            .max_decoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE)
            .max_encoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE);
        let bundle_file = data_dir.join("ca.pem");
        let incoming = crate::grpc_tls::incoming(grpc, replica.clone(), bundle_file)
            .await
            .map_err(|e| StartError(format!("cannot serve gRPC over TLS: {e}")))?;
        // REST answers only once `ca.pem` is written (by `incoming`): a
        // healthy control plane is one proxies can bootstrap trust from.
        tasks.push(tokio::spawn(crate::rest::serve(http, replica.clone())));
        tasks.push(tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(5)))
                .http2_keepalive_timeout(Some(Duration::from_secs(5)))
                .add_service(service)
                .add_service(events)
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "grpc server failed");
            }
        }));
        tracing::info!(
            replica = %replica.id,
            store = %store.describe(),
            %grpc_addr,
            %http_addr,
            "sinew control serving"
        );
        Ok(ControlPlane {
            grpc_addr,
            http_addr,
            admin_token_file,
            replica,
            tasks,
            _view: view_tx,
        })
    }

    /// Applies resources as `POST /v1/apply` does (all or nothing).
    ///
    /// # Errors
    /// As the REST call: invalid resources with their places, or a store failure.
    pub async fn apply(
        &self,
        source: &str,
        text: &str,
    ) -> Result<(u64, Vec<crate::apply::Outcome>), crate::apply::ApplyError> {
        crate::apply::apply(&*self.replica.store, source, text).await
    }

    /// Where the join token (for proxies) was written.
    pub fn join_token_file(&self) -> PathBuf {
        self.admin_token_file.with_file_name("join.token")
    }

    /// This replica's name.
    pub fn replica_id(&self) -> &str {
        &self.replica.id
    }

    /// Stops serving (streams end; proxies reconnect elsewhere or keep their config).
    pub fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
