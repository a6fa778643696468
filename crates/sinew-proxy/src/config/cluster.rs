//! A cluster: the endpoints of one service (or one subset of it), the
//! balancer over them and the per-service connection settings.

use crate::balance::{hash_bytes, Balancer};
use crate::endpoint::EndpointPool;
use crate::health::EndpointHealth;
use crate::resilience::{
    pick_excluding, CircuitBreaker, Failure, OutlierDetector, RetryBudget, RetryPolicy,
};
use crate::route::{cookie, query_param, RequestView};
use crate::telemetry::{ServiceMetrics, UpstreamMetrics};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How stale the usable-endpoint count behind the panic threshold may be.
const USABLE_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// What a hash balancer hashes.
#[derive(Debug, Clone)]
pub enum HashPolicy {
    /// A request header's value.
    Header(http::HeaderName),
    /// A cookie's value.
    Cookie(String),
    /// A query parameter's raw value.
    Query(String),
    /// The client's IP address.
    SourceIp,
}

impl HashPolicy {
    /// The request's hash key; `None` when the request lacks it (the
    /// balancer then picks at random).
    pub fn key(&self, req: &RequestView<'_>, peer: SocketAddr) -> Option<u64> {
        match self {
            HashPolicy::Header(name) => req.headers.header(name.as_str()).map(hash_bytes),
            HashPolicy::Cookie(name) => req
                .headers
                .header("cookie")
                .and_then(|c| cookie(c, name))
                .map(hash_bytes),
            HashPolicy::Query(name) => req
                .query
                .and_then(|q| query_param(q, name))
                .map(|v| hash_bytes(v.as_bytes())),
            HashPolicy::SourceIp => Some(match peer.ip() {
                std::net::IpAddr::V4(ip) => hash_bytes(&ip.octets()),
                std::net::IpAddr::V6(ip) => hash_bytes(&ip.octets()),
            }),
        }
    }
}

/// One upstream endpoint of a cluster.
#[derive(Debug)]
pub struct Endpoint {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its connection pool, shared with every config that keeps it.
    pub pool: Arc<EndpointPool>,
    /// Its connection counters.
    pub telemetry: Arc<UpstreamMetrics>,
    /// Its active health, when the service has a health check (shared by
    /// every config that keeps the endpoint).
    pub health: Option<Arc<EndpointHealth>>,
    /// mTLS to this endpoint: present when it is a meshed sidecar (it has an
    /// identity) and the Mesh's `mtls` is not `disabled`.
    pub tls: Option<UpstreamTls>,
}

/// How to reach a meshed endpoint: the SPIFFE ID it must prove, and the
/// proxy's own (renewed) certificate to prove ours.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The endpoint's SPIFFE ID.
    pub identity: Arc<str>,
    /// This proxy's TLS material, current at connect time.
    pub state: Arc<crate::tls::TlsState>,
}

impl UpstreamTls {
    /// Upgrades `tcp` to mTLS with the endpoint, which must prove
    /// `identity`; fails when this proxy has no certificate yet.
    pub(crate) async fn connect(
        &self,
        tcp: tokio::net::TcpStream,
        alpn: crate::tls::Alpn,
    ) -> std::io::Result<crate::tls::Conn> {
        let material = self
            .state
            .current()
            .ok_or_else(|| std::io::Error::other("no workload certificate yet for mTLS"))?;
        material.connect(tcp, &self.identity, alpn).await
    }
}

impl Endpoint {
    /// Whether the balancer may send to it.
    pub fn is_usable(&self) -> bool {
        self.health.as_ref().is_none_or(|h| h.is_healthy())
    }
}

/// The endpoints of a service or subset and how to balance over them.
#[derive(Debug)]
pub struct Cluster {
    /// The service's name.
    pub service: Arc<str>,
    /// The subset's name, when the cluster is a subset.
    pub subset: Option<Arc<str>>,
    /// `service` or `service/subset`: the `backend` metric label.
    pub label: Arc<str>,
    /// The endpoints, in balancer order.
    pub endpoints: Vec<Endpoint>,
    /// Picks among `endpoints`.
    pub balancer: Balancer,
    /// What hash balancers hash on.
    pub hash: Option<HashPolicy>,
    /// Deadline for opening a connection.
    pub connect_timeout: Duration,
    /// The service's request timeout (a route's timeout overrides it).
    pub timeout: Option<Duration>,
    /// The service's retry policy.
    pub retry: Option<RetryPolicy>,
    /// Bounds retries to a share of recent requests.
    pub retry_budget: Option<Arc<RetryBudget>>,
    /// Below this share of usable endpoints, balance over all of them.
    pub panic_threshold_percent: u32,
    /// Whether any endpoint has an active health check.
    pub health_checked: bool,
    /// Limits on the service's requests in flight (shared by its subsets).
    pub breaker: Arc<CircuitBreaker>,
    /// The service's rate limit on outbound requests (shared by its subsets).
    pub rate_limit: Option<crate::ratelimit::Limiter>,
    /// Passive outlier detection over `endpoints`, when configured.
    pub outlier: Option<OutlierDetector>,
    /// The usable-endpoint count for the panic threshold, refreshed at most
    /// every [`USABLE_REFRESH`]: `count << 32 | milliseconds since `born``.
    pub(crate) usable_cache: AtomicU64,
    /// When the cluster was built (the cache's time origin).
    pub(crate) born: Instant,
    /// Per-service resilience counters.
    pub telemetry: Arc<ServiceMetrics>,
}

impl Cluster {
    /// The request's hash key for hash balancers.
    pub fn hash_key(&self, req: &RequestView<'_>, peer: SocketAddr) -> Option<u64> {
        self.hash.as_ref().and_then(|h| h.key(req, peer))
    }

    /// Picks an endpoint for `req`.
    pub fn pick(&self, req: &RequestView<'_>, peer: SocketAddr) -> Option<usize> {
        self.pick_hashed(self.hash_key(req, peer))
    }

    /// Picks an endpoint for a request with hash key `hash`, skipping
    /// unhealthy endpoints unless too few are left (panic threshold).
    pub fn pick_hashed(&self, hash: Option<u64>) -> Option<usize> {
        if !self.filters_endpoints() {
            return self.balancer.pick(hash);
        }
        self.pick_retry_from(hash, None)
    }

    /// The usable count, counted afresh (O(n)) at most every
    /// [`USABLE_REFRESH`]: the panic threshold needs a recent share, not an
    /// exact one, and a pick must not walk a large cluster.
    fn cached_usable_count(&self, now: Instant, usable: &impl Fn(usize) -> bool) -> usize {
        let ms = u64::try_from(now.saturating_duration_since(self.born).as_millis())
            .unwrap_or(u64::MAX)
            & 0xffff_ffff;
        let cached = self.usable_cache.load(Ordering::Relaxed);
        let (count, stamp) = (cached >> 32, cached & 0xffff_ffff);
        if cached != u64::MAX
            && ms.wrapping_sub(stamp) & 0xffff_ffff < USABLE_REFRESH.as_millis() as u64
        {
            return count as usize;
        }
        let count = (0..self.endpoints.len()).filter(|i| usable(*i)).count();
        self.usable_cache
            .store((count as u64) << 32 | ms, Ordering::Relaxed);
        count
    }

    /// The usable count as the panic threshold sees it (at most
    /// [`USABLE_REFRESH`] old).
    pub(crate) fn recent_usable_count(&self) -> usize {
        if !self.filters_endpoints() {
            return self.endpoints.len();
        }
        let now = Instant::now();
        let usable = |i: usize| {
            self.endpoints[i].is_usable()
                && self.outlier.as_ref().is_none_or(|o| !o.is_ejected(i, now))
        };
        self.cached_usable_count(now, &usable)
    }

    /// Endpoints the balancer may pick now (healthy and not ejected).
    pub fn usable_count(&self) -> usize {
        let now = Instant::now();
        (0..self.endpoints.len())
            .filter(|i| {
                self.endpoints[*i].is_usable()
                    && self.outlier.as_ref().is_none_or(|o| !o.is_ejected(*i, now))
            })
            .count()
    }

    /// The endpoints' state as JSON, for the api's `/endpoints` view.
    pub fn describe(&self) -> serde_json::Value {
        let now = Instant::now();
        let endpoints: Vec<serde_json::Value> = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let health = e.health.as_ref().map(|h| {
                    let snap = h.snapshot();
                    serde_json::json!({
                        "healthy": snap.healthy,
                        "consecutive_failures": snap.consecutive_failures,
                        "last_error": snap.last_error,
                    })
                });
                serde_json::json!({
                    "address": e.addr.to_string(),
                    "weight": self.balancer.weight(i),
                    "health": health,
                    "ejected": self.outlier.as_ref().is_some_and(|o| o.is_ejected(i, now)),
                    "in_flight": self.balancer.load(i).in_flight(),
                    "usable": e.is_usable() && self.outlier.as_ref().is_none_or(|o| !o.is_ejected(i, now)),
                })
            })
            .collect();
        serde_json::json!({
            "service": &*self.service,
            "subset": self.subset.as_deref(),
            "balancer": self.balancer.algorithm().name(),
            "usable": self.usable_count(),
            "endpoints": endpoints,
        })
    }

    /// Whether some endpoints may be skipped (health checks, ejections).
    fn filters_endpoints(&self) -> bool {
        self.health_checked || self.outlier.is_some()
    }

    /// Feeds passive outlier detection with one try's result on endpoint
    /// `index`: `None` for success, else what failed.
    pub fn observe(&self, index: usize, failure: Option<Failure>) {
        if let Some(outlier) = &self.outlier {
            let now = Instant::now();
            let was = outlier.is_ejected(index, now);
            match failure {
                None => outlier.report(index, true, now),
                Some(failure) => outlier.report_failure(index, failure, now),
            }
            if !was && outlier.is_ejected(index, now) {
                self.telemetry.outlier_ejections.inc();
                tracing::warn!(service = %self.service, endpoint = %self.endpoints[index].addr, "endpoint ejected");
            }
        }
    }

    /// Picks an endpoint for a retry, other than `previous` when another is usable.
    pub fn pick_retry(&self, hash: Option<u64>, previous: usize) -> Option<usize> {
        self.pick_retry_from(hash, Some(previous))
    }

    fn pick_retry_from(&self, hash: Option<u64>, previous: Option<usize>) -> Option<usize> {
        // One clock read, only when some endpoints may be skipped.
        let now = self.filters_endpoints().then(Instant::now);
        let usable = |i: usize| {
            self.endpoints.get(i).is_some_and(Endpoint::is_usable)
                && match (&self.outlier, now) {
                    (Some(outlier), Some(now)) => !outlier.is_ejected(i, now),
                    _ => true,
                }
        };
        let usable_count = match now {
            Some(now) => self.cached_usable_count(now, &usable),
            None => self.endpoints.len(),
        };
        pick_excluding(
            &self.balancer,
            hash,
            usable,
            previous,
            self.panic_threshold_percent,
            usable_count,
        )
    }
}
