//! The metrics registry and the per-series handles the request path records into.
//!
//! Handles are resolved by label set when a config snapshot is built
//! (get-or-create, under a mutex) and stored in the snapshot's tables, so
//! recording a request is a few relaxed atomic adds: no lookup, no lock, no
//! allocation. Because the registry outlives snapshots and returns the same
//! handle for the same labels, counters survive config reloads.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::family::Family;
use super::histogram::Histogram;
use super::instruments::{Counter, Gauge};
use super::labels::{
    status_class_index, Direction, ProxyErrorKind, ReloadResult, RequestLabels, STATUS_CLASSES,
};

/// Counters and latency of one request series
/// (`sinew_requests_total` and `sinew_request_duration_seconds`).
#[derive(Debug, Default)]
pub struct RequestMetrics {
    pub(super) status: [Counter; STATUS_CLASSES.len()],
    pub(super) latency: Histogram,
}

impl RequestMetrics {
    /// Records one completed request: three relaxed atomic adds.
    #[inline]
    pub fn record(&self, status: u16, latency: Duration) {
        self.status[status_class_index(status)].inc();
        self.latency.observe(latency);
    }

    /// Requests recorded with a status in `status`'s class.
    pub fn count_for_class(&self, status: u16) -> u64 {
        self.status[status_class_index(status)].get()
    }

    /// The latency histogram.
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }
}

/// Downstream connection metrics of one direction
/// (`sinew_open_connections` and `sinew_connections_total`).
#[derive(Debug, Default)]
pub struct ConnectionMetrics {
    pub(super) open: Gauge,
    pub(super) total: Counter,
}

impl ConnectionMetrics {
    /// Counts an accepted connection; it stays open in the gauge until the
    /// returned guard is dropped.
    pub fn open(self: &Arc<Self>) -> ConnectionGuard {
        self.total.inc();
        self.open.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// Connections currently open.
    pub fn open_now(&self) -> i64 {
        self.open.get()
    }

    /// Connections accepted so far.
    pub fn total(&self) -> u64 {
        self.total.get()
    }
}

/// Keeps one connection counted in `sinew_open_connections` while alive.
#[derive(Debug)]
#[must_use = "the connection is counted as closed when the guard is dropped"]
pub struct ConnectionGuard {
    metrics: Arc<ConnectionMetrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.open.dec();
    }
}

/// Connection attempts to one upstream endpoint.
#[derive(Debug, Default)]
pub struct UpstreamMetrics {
    /// `sinew_upstream_connections_total`.
    pub connects: Counter,
    /// `sinew_upstream_connect_errors_total`.
    pub connect_errors: Counter,
    /// `sinew_upstream_tls_errors_total`.
    pub tls_errors: Counter,
}

/// Direct responses of one route, by status class (`sinew_direct_responses_total`).
#[derive(Debug, Default)]
pub struct DirectResponseMetrics {
    pub(super) status: [Counter; STATUS_CLASSES.len()],
}

impl DirectResponseMetrics {
    /// Records one direct response.
    #[inline]
    pub fn record(&self, status: u16) {
        self.status[status_class_index(status)].inc();
    }

    /// Responses recorded with a status in `status`'s class.
    pub fn count_for_class(&self, status: u16) -> u64 {
        self.status[status_class_index(status)].get()
    }
}

/// Bytes relayed for one TCP service (`sinew_tcp_bytes_total`).
#[derive(Debug, Default)]
pub struct TcpMetrics {
    /// Bytes read from the downstream and written upstream.
    pub to_upstream: Counter,
    /// Bytes read from the upstream and written downstream.
    pub to_downstream: Counter,
}

/// Per-service resilience and health metrics.
#[derive(Debug, Default)]
pub struct ServiceMetrics {
    /// `sinew_retries_total`.
    pub retries: Counter,
    /// `sinew_retry_budget_exhausted_total`.
    pub retry_budget_exhausted: Counter,
    /// `sinew_circuit_breaker_rejections_total`.
    pub circuit_breaker_rejections: Counter,
    /// `sinew_outlier_ejections_total`.
    pub outlier_ejections: Counter,
    /// `sinew_healthy_endpoints`.
    pub healthy_endpoints: Gauge,
}

/// The proxy's metrics registry. Create one per process, share it as
/// `Arc<Metrics>`, and resolve handles from it when building config.
///
/// ```
/// use std::time::Duration;
/// use sinew_proxy::telemetry::{Direction, Metrics, RequestLabels};
///
/// let metrics = Metrics::new();
/// let labels = RequestLabels {
///     direction: Direction::Outbound,
///     service: "reviews",
///     route: "reviews",
///     backend: "reviews/v1",
/// };
/// let handle = metrics.requests(&labels); // at config-build time
/// handle.record(200, Duration::from_micros(420)); // per request
///
/// let mut text = String::new();
/// metrics.render(&mut text);
/// assert!(text.contains("status_class=\"2xx\"} 1\n"));
/// ```
#[derive(Debug)]
pub struct Metrics {
    pub(super) requests: Family<RequestMetrics>,
    pub(super) connections: [Arc<ConnectionMetrics>; Direction::ALL.len()],
    pub(super) upstreams: Family<UpstreamMetrics>,
    pub(super) direct_responses: Family<DirectResponseMetrics>,
    pub(super) proxy_errors: [Counter; ProxyErrorKind::ALL.len()],
    pub(super) tcp: Family<TcpMetrics>,
    pub(super) services: Family<ServiceMetrics>,
    pub(super) rate_limited: Family<Counter>,
    pub(super) authz_denied: Family<Counter>,
    pub(super) inbound_tls: Family<Counter>,
    pub(super) inbound_tls_refused: Family<Counter>,
    pub(super) events: Family<Counter>,
    pub(super) events_published: Family<Counter>,
    pub(super) events_lag: Family<Gauge>,
    pub(super) config_version: Gauge,
    pub(super) config_reloads: [Counter; ReloadResult::ALL.len()],
    pub(super) access_log_dropped: Arc<Counter>,
    pub(super) start_time: Duration,
    pub(super) version: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry stamped with the current time as start time.
    pub fn new() -> Self {
        Metrics::with_start_time(SystemTime::now())
    }

    /// An empty registry with an explicit start time (for reproducible output).
    pub fn with_start_time(start: SystemTime) -> Self {
        Metrics {
            requests: Family::default(),
            connections: Default::default(),
            upstreams: Family::default(),
            direct_responses: Family::default(),
            proxy_errors: Default::default(),
            tcp: Family::default(),
            services: Family::default(),
            rate_limited: Family::default(),
            authz_denied: Family::default(),
            inbound_tls: Family::default(),
            inbound_tls_refused: Family::default(),
            events: Family::default(),
            events_published: Family::default(),
            events_lag: Family::default(),
            config_version: Gauge::default(),
            config_reloads: Default::default(),
            access_log_dropped: Arc::default(),
            start_time: start.duration_since(UNIX_EPOCH).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION"),
        }
    }

    /// The request series for `labels`; the same labels always give the same handle.
    pub fn requests(&self, labels: &RequestLabels<'_>) -> Arc<RequestMetrics> {
        self.requests.get_or_create(&[
            labels.direction.as_str(),
            labels.service,
            labels.route,
            labels.backend,
        ])
    }

    /// Requests so far summed per (direction, service) over routes and
    /// backends, HTTP directions only: `(direction, service, by status
    /// class, latency per bucket)`, in label order. What a proxy reports to
    /// the control plane for golden metrics.
    pub fn request_totals(&self) -> Vec<(&'static str, String, [u64; 5], Vec<u64>)> {
        let mut out: Vec<(&'static str, String, [u64; 5], Vec<u64>)> = Vec::new();
        for (labels, series) in self.requests.lock().iter() {
            let direction = match labels.first().map(|d| &**d) {
                Some("inbound") => "inbound",
                Some("outbound") => "outbound",
                Some("ingress") => "ingress",
                _ => continue,
            };
            let service = labels.get(1).map_or("", |s| &**s);
            let mut by_class = [0u64; 5];
            for (slot, counter) in by_class.iter_mut().zip(&series.status) {
                *slot = counter.get();
            }
            let cumulative = series.latency.cumulative();
            let mut buckets: Vec<u64> = Vec::with_capacity(cumulative.len());
            let mut before = 0;
            for c in cumulative {
                buckets.push(c.wrapping_sub(before));
                before = c;
            }
            match out
                .iter_mut()
                .find(|(d, s, _, _)| *d == direction && s == service)
            {
                Some((_, _, classes, latency)) => {
                    for (a, b) in classes.iter_mut().zip(by_class) {
                        *a += b;
                    }
                    for (a, b) in latency.iter_mut().zip(buckets) {
                        *a += b;
                    }
                }
                None => out.push((direction, service.to_owned(), by_class, buckets)),
            }
        }
        out
    }

    /// Publish calls so far per topic, as request classes: `ok` as 2xx,
    /// `refused` as 4xx, `failed` as 5xx. Reported beside
    /// [`Metrics::request_totals`] (direction `publish`, the topic as service).
    pub fn publish_totals(&self) -> Vec<(String, [u64; 5])> {
        let mut out: Vec<(String, [u64; 5])> = Vec::new();
        for (labels, counter) in self.events_published.lock().iter() {
            let (Some(topic), Some(result)) = (labels.first(), labels.get(1)) else {
                continue;
            };
            let class = match &**result {
                "ok" => 1,
                "refused" => 3,
                _ => 4,
            };
            match out.iter_mut().find(|(t, _)| **t == **topic) {
                Some((_, classes)) => classes[class] += counter.get(),
                None => {
                    let mut classes = [0u64; 5];
                    classes[class] = counter.get();
                    out.push((topic.to_string(), classes));
                }
            }
        }
        out
    }

    /// The downstream connection metrics of `direction`.
    pub fn connections(&self, direction: Direction) -> &Arc<ConnectionMetrics> {
        &self.connections[direction.index()]
    }

    /// Connection metrics of one upstream endpoint (e.g. `10.0.0.7:8080`).
    pub fn upstream(&self, service: &str, endpoint: &str) -> Arc<UpstreamMetrics> {
        self.upstreams.get_or_create(&[service, endpoint])
    }

    /// Direct response counters of `route`.
    pub fn direct_responses(&self, route: &str) -> Arc<DirectResponseMetrics> {
        self.direct_responses.get_or_create(&[route])
    }

    /// The counter of proxy-side failures of `kind`.
    #[inline]
    pub fn proxy_error(&self, kind: ProxyErrorKind) -> &Counter {
        &self.proxy_errors[kind.index()]
    }

    /// Byte counters of a TCP service.
    pub fn tcp(&self, service: &str) -> Arc<TcpMetrics> {
        self.tcp.get_or_create(&[service])
    }

    /// Resilience and health metrics of `service`.
    pub fn service(&self, service: &str) -> Arc<ServiceMetrics> {
        self.services.get_or_create(&[service])
    }

    /// The counter of requests refused by a rate limit of `scope` (`service`
    /// or `route`) named `name`.
    pub fn rate_limited(&self, scope: &str, name: &str) -> Arc<Counter> {
        self.rate_limited.get_or_create(&[scope, name])
    }

    /// The counter of inbound requests to `service` refused by `policy`
    /// (`NAMESPACE/NAME`, or `default-deny`).
    pub fn authz_denied(&self, service: &str, policy: &str) -> Arc<Counter> {
        self.authz_denied.get_or_create(&[service, policy])
    }

    /// The counter of inbound mTLS connections from `client_id`.
    pub fn inbound_tls(&self, client_id: &str) -> Arc<Counter> {
        self.inbound_tls.get_or_create(&[client_id])
    }

    /// The counter of inbound connections refused for `reason`
    /// (`plaintext`, `handshake`, `no_certificate`).
    pub fn inbound_tls_refused(&self, reason: &str) -> Arc<Counter> {
        self.inbound_tls_refused.get_or_create(&[reason])
    }

    /// The counter of events with `outcome` (`delivered`, `redelivered`,
    /// `dead_lettered`) of `subscription`.
    pub fn events(&self, outcome: &str, subscription: &str) -> Arc<Counter> {
        self.events.get_or_create(&[subscription, outcome])
    }

    /// The counter of publish calls to `topic` with `result` (`ok`,
    /// `refused`, `failed`).
    pub fn events_published(&self, topic: &str, result: &str) -> Arc<Counter> {
        self.events_published.get_or_create(&[topic, result])
    }

    /// The consumer lag of `subscription` on `partition`: events stored and
    /// not yet done (delivered or dead-lettered) by this sidecar.
    pub fn events_lag(&self, subscription: &str, partition: &str) -> Arc<Gauge> {
        self.events_lag.get_or_create(&[subscription, partition])
    }

    /// Records that a config update was applied (`version` is now served) or rejected.
    pub fn config_reloaded(&self, result: ReloadResult, version: u64) {
        self.config_reloads[result.index()].inc();
        if result == ReloadResult::Ok {
            self.config_version
                .set(i64::try_from(version).unwrap_or(i64::MAX));
        }
    }

    /// Config updates counted with `result`.
    pub fn config_reloads(&self, result: ReloadResult) -> u64 {
        self.config_reloads[result.index()].get()
    }

    /// The counter of dropped access log lines, to hand to an access log.
    pub fn access_log_dropped(&self) -> Arc<Counter> {
        Arc::clone(&self.access_log_dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(backend: &str) -> RequestLabels<'_> {
        RequestLabels {
            direction: Direction::Outbound,
            service: "reviews",
            route: "reviews",
            backend,
        }
    }

    #[test]
    fn request_counters_survive_a_reload() {
        let metrics = Metrics::new();
        // First snapshot resolves its handles and serves traffic.
        let first = metrics.requests(&labels("reviews/v1"));
        first.record(200, Duration::from_millis(1));
        first.record(503, Duration::from_millis(2));
        drop(first);
        // Second snapshot resolves the same labels: same series, counts kept.
        let second = metrics.requests(&labels("reviews/v1"));
        assert_eq!(second.count_for_class(200), 1);
        assert_eq!(second.count_for_class(500), 1);
        second.record(201, Duration::from_millis(1));
        assert_eq!(second.count_for_class(299), 2);
        assert_eq!(second.latency().count(), 3);
        // Different labels are a different series.
        let other = metrics.requests(&labels("reviews/v2"));
        assert_eq!(other.latency().count(), 0);
    }

    #[test]
    fn connection_guard_tracks_open_connections() {
        let metrics = Metrics::new();
        let inbound = metrics.connections(Direction::Inbound);
        let a = inbound.open();
        let b = inbound.open();
        assert_eq!(inbound.open_now(), 2);
        drop(a);
        assert_eq!(inbound.open_now(), 1);
        drop(b);
        assert_eq!(inbound.open_now(), 0);
        assert_eq!(inbound.total(), 2);
        assert_eq!(metrics.connections(Direction::Outbound).total(), 0);
    }

    #[test]
    fn rejected_reload_keeps_the_served_version() {
        let metrics = Metrics::new();
        metrics.config_reloaded(ReloadResult::Ok, 7);
        metrics.config_reloaded(ReloadResult::Rejected, 8);
        assert_eq!(metrics.config_version.get(), 7);
        assert_eq!(metrics.config_reloads(ReloadResult::Ok), 1);
        assert_eq!(metrics.config_reloads(ReloadResult::Rejected), 1);
    }

    #[test]
    fn concurrent_recording_loses_nothing() {
        let metrics = Arc::new(Metrics::new());
        let handle = metrics.requests(&labels("reviews/v1"));
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let handle = &handle;
                s.spawn(move || {
                    for i in 0..1_000u64 {
                        let status = if i % 10 == 0 { 500 } else { 200 };
                        handle.record(status, Duration::from_micros(t * 100 + i % 7));
                    }
                });
            }
        });
        assert_eq!(handle.count_for_class(200), 3_600);
        assert_eq!(handle.count_for_class(500), 400);
        assert_eq!(handle.latency().count(), 4_000);
        let expected_us: u64 = (0..4u64)
            .flat_map(|t| (0..1_000u64).map(move |i| t * 100 + i % 7))
            .sum();
        assert_eq!(handle.latency().sum(), Duration::from_micros(expected_us));
    }

    #[test]
    fn registry_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Metrics>();
        assert_send_sync::<RequestMetrics>();
        assert_send_sync::<ConnectionGuard>();
    }
}
