//! `Service`: a logical service — its endpoints, subsets, balancing and resilience settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Location, Metadata, RateLimit, Retries};
use crate::Duration;

/// A logical service: how to reach and balance it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Service {
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// The service's settings.
    pub spec: ServiceSpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `Service.spec`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ServiceSpec {
    /// Wire protocol. Default `http`.
    pub protocol: Protocol,
    /// Static endpoints; dynamic ones come from the registry.
    pub endpoints: Vec<Endpoint>,
    /// Named groups of endpoints selected by labels.
    pub subsets: Vec<Subset>,
    /// Load-balancing algorithm. Default `{algorithm: least-request}`.
    pub balancer: Balancer,
    /// Overall request timeout; absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Timeout for establishing a connection. Default 1s.
    pub connect_timeout: Duration,
    /// A pooled (kept-alive) connection to an endpoint is closed after this long
    /// unused. Default 30s.
    pub upstream_idle_timeout: Duration,
    /// Retry policy; absent = no retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Limits on concurrency toward this service. Absent = defaults of [`CircuitBreaker`].
    pub circuit_breaker: CircuitBreaker,
    /// Passive health: ejecting endpoints that keep failing; absent = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Active health checks; absent = off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Local rate limit on this sidecar's outbound requests to the service
    /// (every route and subset together; `http` services only); absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

/// `http` (HTTP/1.1, HTTP/2, gRPC) or `tcp` (opaque bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1, HTTP/2 and gRPC.
    #[default]
    Http,
    /// Opaque TCP.
    Tcp,
}

/// One static endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    /// IP and port.
    pub address: SocketAddr,
    /// Labels used by subsets.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Relative weight, at least 1. Default 1.
    pub weight: u32,
    /// The SPIFFE ID a meshed endpoint (another sidecar's inbound listener)
    /// must prove with its certificate; present, connections to it use mTLS
    /// (unless the Mesh's `mtls` is `disabled`). Absent for workloads outside
    /// the mesh, which are reached in plaintext. The control plane fills it
    /// in for the sidecars that register.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

/// A named group of endpoints: those whose labels include all of `labels`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Subset {
    /// DNS-1123 label, unique within the service.
    pub name: String,
    /// Labels an endpoint must carry to belong to the subset.
    pub labels: BTreeMap<String, String>,
}

impl Subset {
    /// Whether an endpoint with `labels` belongs to this subset.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// `balancer`: algorithm, the hash key for consistent hashing, and the panic threshold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Balancer {
    /// Algorithm. Default `least-request`.
    pub algorithm: BalancerAlgorithm,
    /// Hash key; required for `ring-hash` and `maglev`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashKey>,
    /// When fewer than this percentage of a pool's endpoints are usable (healthy
    /// and not ejected), balance over all of them, ignoring health ("panic mode"),
    /// rather than overload the few or fail everything. 0..=100; 0 disables
    /// panic mode. Default 50.
    pub panic_threshold_percent: u32,
}

impl Default for Balancer {
    fn default() -> Self {
        Self {
            algorithm: BalancerAlgorithm::default(),
            hash: None,
            panic_threshold_percent: 50,
        }
    }
}

/// Load-balancing algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BalancerAlgorithm {
    /// Each endpoint in turn.
    RoundRobin,
    /// Uniformly random.
    Random,
    /// In turn, proportionally to weights.
    WeightedRoundRobin,
    /// Power of two choices on in-flight requests.
    #[default]
    LeastRequest,
    /// Power of two choices on latency EWMA times in-flight requests.
    PeakEwma,
    /// Consistent hashing on a ring (needs `hash`).
    RingHash,
    /// Maglev consistent hashing (needs `hash`).
    Maglev,
}

impl BalancerAlgorithm {
    /// Whether the algorithm needs a hash key.
    pub fn needs_hash(self) -> bool {
        matches!(self, Self::RingHash | Self::Maglev)
    }
}

/// What consistent hashing hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    /// A request header's value (`{header: NAME}`, lowercased).
    Header(String),
    /// A cookie's value (`{cookie: NAME}`).
    Cookie(String),
    /// A query parameter's value (`{query: NAME}`).
    Query(String),
    /// The client's IP address (`{source_ip: true}`).
    SourceIp,
}

impl serde::Serialize for HashKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Self::Header(n) => m.serialize_entry("header", n)?,
            Self::Cookie(n) => m.serialize_entry("cookie", n)?,
            Self::Query(n) => m.serialize_entry("query", n)?,
            Self::SourceIp => m.serialize_entry("source_ip", &true)?,
        }
        m.end()
    }
}

/// Concurrency limits toward a service; requests beyond them fail fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct CircuitBreaker {
    /// Open connections, all endpoints together. Default 1024.
    pub max_connections: u32,
    /// Requests waiting for a connection. Default 256.
    pub max_pending: u32,
    /// Requests in flight. Default 1024.
    pub max_requests: u32,
    /// Retries in flight (a retry beyond it is not made; the failure is
    /// returned). 0 forbids retries. Default 256.
    pub max_retries: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending: 256,
            max_requests: 1024,
            max_retries: 256,
        }
    }
}

/// Passive health checking: eject an endpoint after consecutive errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutlierDetection {
    /// Consecutive errors (any 5xx, a connect failure, a reset before the
    /// response) before ejection, at least 1. Default 5.
    pub consecutive_errors: u32,
    /// Consecutive gateway errors (502, 503, 504, connect failure, reset) before
    /// ejection, counted on their own; absent = not counted separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive connect failures (refused, timed out) before ejection, counted
    /// on their own; absent = not counted separately.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_connect_errors: Option<u32>,
    /// How often ejections are reconsidered. Default 10s.
    pub interval: Duration,
    /// First ejection time; doubles with each repeated ejection. Default 30s.
    pub base_ejection: Duration,
    /// Most endpoints (percent) ejected at once, 0..=100. Default 50.
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_errors: 5,
            consecutive_gateway_errors: None,
            consecutive_connect_errors: None,
            interval: Duration::from_secs(10),
            base_ejection: Duration::from_secs(30),
            max_ejection_percent: 50,
        }
    }
}

/// Active health checking of each endpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HealthCheck {
    /// The probe (`http`, `tcp` or `grpc`; exactly one).
    #[serde(flatten)]
    pub probe: HealthProbe,
    /// Time between probes. Default 5s.
    pub interval: Duration,
    /// Probe timeout. Default 1s.
    pub timeout: Duration,
    /// Failed probes before an endpoint is marked unhealthy. Default 3.
    pub unhealthy_threshold: u32,
    /// Passed probes before it is healthy again. Default 2.
    pub healthy_threshold: u32,
    /// Health of an endpoint before its first probe completes. Default `healthy`.
    pub initial: InitialHealth,
}

/// An endpoint's health before its first probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InitialHealth {
    /// Receives traffic at once (Linkerd's choice); a failing endpoint is marked
    /// unhealthy after `unhealthy_threshold` failed probes.
    #[default]
    Healthy,
    /// Receives no traffic until one probe passes (Envoy's choice).
    Unhealthy,
}

/// The kind of active probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthProbe {
    /// `GET path`; healthy on an expected status (200..=399 when the list is empty).
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Healthy statuses and ranges; empty = 200..=399.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        expected_statuses: Vec<StatusRange>,
    },
    /// A TCP connect succeeds.
    Tcp {},
    /// gRPC health checking protocol.
    Grpc {
        /// Service name sent in the check; absent = the server as a whole.
        #[serde(skip_serializing_if = "Option::is_none")]
        service: Option<String>,
    },
}

impl HealthProbe {
    /// Whether an HTTP probe counts `status` as healthy (`false` for other probes).
    pub fn expects_status(&self, status: u16) -> bool {
        match self {
            Self::Http {
                expected_statuses, ..
            } if expected_statuses.is_empty() => (200..=399).contains(&status),
            Self::Http {
                expected_statuses, ..
            } => expected_statuses.iter().any(|r| r.contains(status)),
            Self::Tcp {} | Self::Grpc { .. } => false,
        }
    }
}

/// An inclusive range of HTTP statuses, written `200` (one status) or `"200-299"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusRange {
    /// First status, 100..=599.
    pub first: u16,
    /// Last status, `first..=599`.
    pub last: u16,
}

impl StatusRange {
    /// Whether `status` is in the range.
    pub fn contains(self, status: u16) -> bool {
        (self.first..=self.last).contains(&status)
    }
}

/// A single status as a number, a range as `"FIRST-LAST"` (how it is written).
impl serde::Serialize for StatusRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            s.serialize_u16(self.first)
        } else {
            s.collect_str(&format_args!("{}-{}", self.first, self.last))
        }
    }
}
