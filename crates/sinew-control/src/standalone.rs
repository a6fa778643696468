//! `sinew broker`: the embedded event broker alone, in its own process, for
//! a dedicated events node (its own disk) or for apps that use it directly.
//!
//! It serves the Events gRPC API the control plane serves to sidecars
//! (`sinew.v1.Events`, the same proto) plus `Topics`, `PartitionOf` and
//! `ResetCursor`, over TLS 1.3, to the bearer of its token:
//!
//! ```text
//! DIR/broker.token   the token (made on first start, mode 0600)
//! DIR/broker.pem     its self-signed certificate: what clients trust
//! DIR/broker.key     the certificate's key (mode 0600)
//! DIR/events/        the log
//! ```
//!
//! Beside it, a plain-HTTP admin listener (loopback unless allowed) serves
//! `/live`, `/ready` and `/metrics`: the log's appends, records and syncs,
//! and every topic's retained events, next offsets and dead-letter depth.
//!
//! The certificate is made once and kept, so clients pin it like the control
//! plane's `ca.pem`. There is no mesh here and no AuthorizationPolicy: the
//! token is the one credential, to keep like an admin token. A control plane
//! uses it as its event store with `--events broker:https://HOST:PORT`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use sinew_events::{Broker, BrokerConfig, EventStore};
use tokio::task::JoinHandle;

use crate::events::{Admission, EventsService};
use crate::http::{error, json, prometheus, Body};
use crate::server::{write_secret, StartError};

/// How to run a standalone broker.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Token, certificate and log (`events/`) directory.
    pub data_dir: PathBuf,
    /// Where the gRPC API listens.
    pub listen: SocketAddr,
    /// Partitions of each topic created from now on.
    pub partitions: u32,
    /// Further names the certificate is made for, besides `localhost`,
    /// `127.0.0.1`, `::1` and the listen address (first start only).
    pub hostnames: Vec<String>,
    /// Where `/live`, `/ready` and `/metrics` are served (plain HTTP).
    pub admin_listen: SocketAddr,
    /// Whether `admin_listen` may be other than loopback.
    pub admin_allow_non_loopback: bool,
}

/// A running standalone broker.
#[derive(Debug)]
pub struct StandaloneBroker {
    /// The address bound.
    pub addr: SocketAddr,
    /// Where the token is.
    pub token_file: PathBuf,
    /// The certificate clients trust.
    pub cert_file: PathBuf,
    /// The admin listener's address.
    pub admin_addr: SocketAddr,
    store: EventStore,
    server: JoinHandle<()>,
    admin: JoinHandle<()>,
}

impl StandaloneBroker {
    /// Opens the log, makes the token and certificate on first start, and
    /// serves.
    ///
    /// # Errors
    /// When the directory, the log, the certificate or the address cannot
    /// be used.
    pub async fn start(options: BrokerOptions) -> Result<Self, StartError> {
        let dir = &options.data_dir;
        if !options.admin_allow_non_loopback
            && !options.admin_listen.ip().to_canonical().is_loopback()
        {
            return Err(StartError(format!(
                "the admin listener {} is not loopback: pass --admin-allow-non-loopback to serve /metrics beyond this machine",
                options.admin_listen
            )));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| StartError(format!("cannot create {}: {e}", dir.display())))?;
        let token_file = dir.join("broker.token");
        let token = match std::fs::read_to_string(&token_file) {
            Ok(token) if !token.trim().is_empty() => token.trim().to_owned(),
            _ => {
                let fresh = crate::replica::random_token()
                    .map_err(|e| StartError(format!("cannot make a token: {e}")))?;
                write_secret(&token_file, &fresh).map_err(|e| {
                    StartError(format!("cannot write {}: {e}", token_file.display()))
                })?;
                fresh
            }
        };
        let (cert_file, cert, key) = certificate(dir, &options)?;

        let config = BrokerConfig {
            partitions: options.partitions,
            ..BrokerConfig::default()
        };
        let log = dir.join("events");
        let broker = Broker::open(&log, config).await.map_err(|e| {
            StartError(format!(
                "cannot open the event broker in {}: {e}",
                log.display()
            ))
        })?;
        let store = EventStore::Embedded(Arc::clone(&broker));
        let admin_listener = tokio::net::TcpListener::bind(options.admin_listen)
            .await
            .map_err(|e| {
                StartError(format!(
                    "cannot listen on {} (admin): {e}",
                    options.admin_listen
                ))
            })?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", options.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let incoming = crate::grpc_tls::incoming_fixed(listener, &cert, &key).map_err(|e| {
            StartError(format!(
                "cannot serve TLS with {}: {e}",
                cert_file.display()
            ))
        })?;
        let service = sinew_proto::events_server::EventsServer::new(EventsService::new(
            Admission::Token(token),
            Some(store.clone()),
        ))
        .max_decoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE)
        .max_encoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE);
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .http2_keepalive_interval(Some(Duration::from_secs(5)))
                .http2_keepalive_timeout(Some(Duration::from_secs(5)))
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "grpc server failed");
            }
        });
        let admin = tokio::spawn(crate::http::serve(admin_listener, move |req| {
            admin(Arc::clone(&broker), req)
        }));
        tracing::info!(%addr, %admin_addr, data_dir = %dir.display(), partitions = options.partitions, "broker serving");
        Ok(Self {
            addr,
            token_file,
            cert_file,
            admin_addr,
            store,
            server,
            admin,
        })
    }

    /// Stops serving and closes the log (every acknowledged event is
    /// already durable: closing loses nothing).
    pub async fn stop(self) {
        self.server.abort();
        self.admin.abort();
        if let Err(error) = self.store.close().await {
            tracing::warn!(%error, "closing the event log");
        }
    }
}

/// The admin listener: `/live` and `/ready` (the log is open whenever this
/// serves) and `/metrics`.
async fn admin(broker: Arc<Broker>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() != Method::GET {
        return Ok(error(StatusCode::METHOD_NOT_ALLOWED, "only GET"));
    }
    Ok(match req.uri().path() {
        "/live" | "/ready" => json(StatusCode::OK, &serde_json::json!({ "status": "ok" })),
        "/metrics" => metrics(broker).await,
        _ => error(
            StatusCode::NOT_FOUND,
            "the admin listener serves /live, /ready and /metrics",
        ),
    })
}

/// The log's counters and the topics' gauges, as the control plane's.
async fn metrics(broker: Arc<Broker>) -> Response<Body> {
    let mut out = String::new();
    let store = EventStore::Embedded(broker);
    if let Err(e) = crate::rest::topic_metrics(&store, &mut out).await {
        return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
    }
    prometheus(out)
}

/// The broker's certificate and key (PEM), made on first start and kept.
fn certificate(
    dir: &Path,
    options: &BrokerOptions,
) -> Result<(PathBuf, String, String), StartError> {
    let cert_file = dir.join("broker.pem");
    let key_file = dir.join("broker.key");
    if let (Ok(cert), Ok(key)) = (
        std::fs::read_to_string(&cert_file),
        std::fs::read_to_string(&key_file),
    ) {
        return Ok((cert_file, cert, key));
    }
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = options.listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    names.extend(options.hostnames.iter().cloned());
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| StartError(format!("cannot make the broker's certificate: {e}")))?;
    let (cert, key) = (made.cert.pem(), made.signing_key.serialize_pem());
    // The key first: a certificate on disk always has its key.
    write_secret(&key_file, &key)
        .map_err(|e| StartError(format!("cannot write {}: {e}", key_file.display())))?;
    std::fs::write(&cert_file, &cert)
        .map_err(|e| StartError(format!("cannot write {}: {e}", cert_file.display())))?;
    Ok((cert_file, cert, key))
}
