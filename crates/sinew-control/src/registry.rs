//! The registry: endpoints of services, from proxies' streams (the sidecar's
//! own inbound address) and from external workloads registered over REST with
//! a TTL heartbeat or an HTTP/TCP check run by the leader (as Consul does).

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use serde::{Deserialize, Serialize};

/// Where a registration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A connected sidecar registered its service's instance.
    Proxy,
    /// Registered over the REST API.
    External,
}

/// One registered endpoint, as stored at `registry/{ns}/{service}/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    /// `ip:port` other sidecars connect to.
    pub address: SocketAddr,
    /// Labels (subsets select on them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Relative weight, at least 1.
    #[serde(default = "one")]
    pub weight: u32,
    /// Who registered it.
    pub source: Source,
    /// External workloads: how liveness is judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// The last verdict: TTL heartbeats and checks set it; proxies are healthy while connected.
    pub healthy: bool,
    /// Last TTL heartbeat (wall clock, ms since the epoch).
    #[serde(default)]
    pub heartbeat_ms: u64,
    /// Proxy registrations: when the stream ended (absent while connected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_ms: Option<u64>,
    /// Proxy registrations: the stream session that wrote it (replica id and
    /// a counter), so a session ending never overwrites a newer one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Proxy registrations: the proxy (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// Proxy registrations: the SPIFFE ID its certificate names, which
    /// other sidecars require of it over mTLS. External workloads have none
    /// and are reached in plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
}

fn one() -> u32 {
    1
}

/// An external workload's liveness check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// Deregistered when no heartbeat arrives for `ttl_ms`.
    Ttl {
        /// The TTL.
        ttl_ms: u64,
    },
    /// `GET url` every interval: 2xx/3xx healthy.
    Http {
        /// The URL (`http://host:port/path`).
        url: String,
        /// Between checks.
        interval_ms: u64,
        /// Per check.
        timeout_ms: u64,
    },
    /// A TCP connect every interval.
    Tcp {
        /// `host:port`.
        address: String,
        /// Between checks.
        interval_ms: u64,
        /// Per check.
        timeout_ms: u64,
    },
}

impl Check {
    /// The interval of a probing check.
    pub fn interval(&self) -> Option<Duration> {
        match self {
            Check::Ttl { .. } => None,
            Check::Http { interval_ms, .. } | Check::Tcp { interval_ms, .. } => {
                Some(Duration::from_millis(*interval_ms))
            }
        }
    }
}

/// Whether the registration should be pushed to proxies. A proxy whose
/// stream ended stays routable through the grace period: a restarting
/// sidecar or a partition from the control plane is not a dead endpoint.
pub(crate) fn routable(r: &Registration) -> bool {
    r.healthy
}
