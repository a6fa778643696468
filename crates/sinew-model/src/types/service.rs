//! `Service`: a logical service — its endpoints, subsets, balancing and resilience settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::{Location, Metadata, Retries};
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

/// `balancer`: algorithm and, for consistent hashing, the hash key.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Balancer {
    /// Algorithm. Default `least-request`.
    pub algorithm: BalancerAlgorithm,
    /// Hash key; required for `ring-hash` and `maglev`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashKey>,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CircuitBreaker {
    /// Open connections, all endpoints together. Default 1024.
    pub max_connections: u32,
    /// Requests waiting for a connection. Default 256.
    pub max_pending: u32,
    /// Requests in flight. Default 1024.
    pub max_requests: u32,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_pending: 256,
            max_requests: 1024,
        }
    }
}

/// Passive health checking: eject an endpoint after consecutive errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct OutlierDetection {
    /// Consecutive 5xx/connect failures before ejection, at least 1. Default 5.
    pub consecutive_errors: u32,
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
}

/// The kind of active probe.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthProbe {
    /// `GET path`; healthy on a listed status (any 2xx when the list is empty).
    Http {
        /// Request path, starting with `/`.
        path: String,
        /// Healthy statuses; empty = any 2xx.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        expected_statuses: Vec<u16>,
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
