//! `Proxy`: a sidecar's (or gateway's) bootstrap — identity, listeners and control plane.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::{Location, Metadata};
use crate::Duration;

/// A sidecar's bootstrap.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Proxy {
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// The proxy's settings.
    pub spec: ProxySpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `Proxy.spec`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProxySpec {
    /// The service this proxy fronts: its identity and the service it registers.
    pub service: String,
    /// Where inbound traffic is delivered; absent for gateways.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<SocketAddr>,
    /// Listening addresses.
    pub listen: Listen,
    /// Control-plane address; absent = static mode (resources come from the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Worker threads, at least 1. Default 1.
    pub workers: u16,
    /// Access log; absent = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_log: Option<AccessLog>,
    /// Time given to in-flight requests on shutdown. Default 10s.
    pub drain_timeout: Duration,
    /// A downstream (client-side) connection with no request in flight is closed
    /// after this long, on every listener. Default 60s.
    pub idle_timeout: Duration,
    /// An HTTP/1 request head must arrive whole within this long of its
    /// first byte (and an HTTP/2 preface within this long), else 408 and the
    /// connection is closed: the slowloris bound. Default 10s.
    pub request_header_timeout: Duration,
    /// An HTTP/1 request in flight whose bytes stop moving for this long —
    /// the client's body, the upstream's response head or body, or a client
    /// not reading its response — is ended: `408` when the client's body
    /// stalled, `504` when the upstream did, and the connection is closed.
    /// Progress restarts the clock. Default 300s.
    pub stream_idle_timeout: Duration,
    /// Static mode: the workload certificate and trust bundle for mTLS
    /// between sidecars. Absent in control mode (the control plane issues
    /// the certificate) and for plaintext meshes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ProxyTls>,
}

/// `tls`: certificate files for mTLS without a control plane. Re-read on
/// every config reload, so a renewed certificate takes effect without a
/// restart (established connections keep theirs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProxyTls {
    /// PEM: this proxy's certificate (whose URI SAN is its SPIFFE ID), then
    /// any intermediates.
    pub cert: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// PEM: the root certificates peers' certificates must chain to.
    pub trust_bundle: PathBuf,
}

/// `listen`: the proxy's sockets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listen {
    /// Outbound HTTP (app → mesh). Default 127.0.0.1:4140.
    pub outbound: SocketAddr,
    /// Inbound (mesh → app). Default 0.0.0.0:4143.
    pub inbound: SocketAddr,
    /// Sidecar API and admin. Default 127.0.0.1:4191. Must be a loopback
    /// address unless [`Listen::api_allow_non_loopback`] is set.
    pub api: SocketAddr,
    /// `api_allow_non_loopback: true` explicitly allows a non-loopback `api`
    /// address (the API is loopback-only by default). Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub api_allow_non_loopback: bool,
    /// Outbound opaque-TCP listeners, one per `protocol: tcp` service.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpListen>,
    /// Gateway mode: the listener where traffic from outside the mesh
    /// enters, routed by Route resources (with their `jwt` checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressListen>,
}

/// `listen.ingress`: a gateway's public listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngressListen {
    /// Where to listen (any address: it faces clients outside the mesh).
    pub address: SocketAddr,
    /// TLS termination; absent = plaintext HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
}

/// `listen.ingress.tls`: certificates chosen by the client's SNI.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngressTls {
    /// At least one; the first also answers clients that send no (or an
    /// unknown) server name.
    pub certificates: Vec<IngressCertificate>,
}

/// One certificate of an ingress listener.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IngressCertificate {
    /// Server names it is chosen for: exact lowercase names, or `*.suffix`.
    pub hosts: Vec<String>,
    /// PEM: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM: its private key.
    pub key: PathBuf,
}

impl Listen {
    /// Default outbound address.
    pub const OUTBOUND: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 4140);
    /// Default inbound address.
    pub const INBOUND: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4143);
    /// Default API address.
    pub const API: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 4191);
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            outbound: Self::OUTBOUND,
            inbound: Self::INBOUND,
            api: Self::API,
            api_allow_non_loopback: false,
            tcp: Vec::new(),
            ingress: None,
        }
    }
}

/// An outbound TCP listener forwarding to a `protocol: tcp` service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TcpListen {
    /// The tcp service connections are forwarded to.
    pub service: String,
    /// Local address to accept on.
    pub address: SocketAddr,
}

/// Access log settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AccessLog {
    /// `stdout` or a file path.
    pub path: AccessLogPath,
    /// Line format. Default `json`.
    pub format: AccessLogFormat,
}

/// Where access log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogPath {
    /// Standard output (`stdout`).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
}

impl serde::Serialize for AccessLogPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Stdout => s.serialize_str("stdout"),
            Self::File(p) => s.collect_str(&p.display()),
        }
    }
}

/// Access log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// One JSON object per line.
    #[default]
    Json,
}
