//! Every metric family the proxy exports: name, help text, type and labels, in one place.
//!
//! Families render in the order of [`ALL`]. Label values are always bounded:
//! services, routes, backends and endpoints come from config, never from a
//! request (no paths, no user agents, no client addresses).

use std::time::Duration;

/// The Prometheus type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonically increasing count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations counted into fixed buckets, with a sum and a count.
    Histogram,
}

impl MetricKind {
    /// The word used on the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// The definition of one metric family.
#[derive(Debug)]
pub struct MetricDef {
    /// Full metric name, `sinew_` prefixed.
    pub name: &'static str,
    /// One sentence for the `# HELP` line.
    pub help: &'static str,
    /// Prometheus type.
    pub kind: MetricKind,
    /// Label names, in the order they are rendered.
    pub labels: &'static [&'static str],
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        help,
        kind,
        labels,
    }
}

use MetricKind::{Counter, Gauge, Histogram};

/// HTTP requests handled, by outcome class.
pub const REQUESTS_TOTAL: MetricDef = def(
    "sinew_requests_total",
    Counter,
    &["direction", "service", "route", "backend", "status_class"],
    "HTTP requests completed by the proxy, by response status class.",
);
/// End-to-end request latency as seen by the proxy.
pub const REQUEST_DURATION_SECONDS: MetricDef = def(
    "sinew_request_duration_seconds",
    Histogram,
    &["direction", "service", "route", "backend"],
    "Time from request received until the response completed (HTTP/1.1), or until its headers arrived (HTTP/2; upgrades: until the 101), in seconds.",
);
/// Downstream connections currently open.
pub const OPEN_CONNECTIONS: MetricDef = def(
    "sinew_open_connections",
    Gauge,
    &["direction"],
    "Downstream connections currently open.",
);
/// Downstream connections accepted.
pub const CONNECTIONS_TOTAL: MetricDef = def(
    "sinew_connections_total",
    Counter,
    &["direction"],
    "Downstream connections accepted.",
);
/// Failed attempts to connect to an upstream endpoint.
pub const UPSTREAM_CONNECT_ERRORS_TOTAL: MetricDef = def(
    "sinew_upstream_connect_errors_total",
    Counter,
    &["service", "endpoint"],
    "Failed attempts to open a connection to an upstream endpoint.",
);
/// Connections opened to an upstream endpoint.
pub const UPSTREAM_CONNECTIONS_TOTAL: MetricDef = def(
    "sinew_upstream_connections_total",
    Counter,
    &["service", "endpoint"],
    "Connections successfully opened to an upstream endpoint.",
);
/// Failed mTLS handshakes with an upstream sidecar.
pub const UPSTREAM_TLS_ERRORS_TOTAL: MetricDef = def(
    "sinew_upstream_tls_errors_total",
    Counter,
    &["service", "endpoint"],
    "mTLS handshakes with an upstream sidecar that failed (untrusted certificate, wrong SPIFFE ID, no shared protocol).",
);
/// Inbound mTLS connections, by the client's SPIFFE ID.
pub const INBOUND_TLS_CONNECTIONS_TOTAL: MetricDef = def(
    "sinew_inbound_tls_connections_total",
    Counter,
    &["client_id"],
    "Inbound connections that completed mTLS, by the client's SPIFFE ID (bounded by the identities the CA issued).",
);
/// Inbound connections refused by the mTLS mode.
pub const INBOUND_TLS_REFUSED_TOTAL: MetricDef = def(
    "sinew_inbound_tls_refused_total",
    Counter,
    &["reason"],
    "Inbound connections refused or lost before mTLS was up: reason is plaintext (strict mTLS), handshake (failed or untrusted), client_closed (the client hung up during the handshake) or no_certificate (this proxy has none yet).",
);
/// Event deliveries to the app, by subscription and outcome.
pub const EVENTS_TOTAL: MetricDef = def(
    "sinew_events_total",
    Counter,
    &["subscription", "outcome"],
    "Events of a subscription this sidecar handled: outcome is delivered (the app took it), redelivered (an attempt failed and was retried) or dead_lettered.",
);
/// Events published through the sidecar, by topic and result.
pub const EVENTS_PUBLISHED_TOTAL: MetricDef = def(
    "sinew_events_published_total",
    Counter,
    &["topic", "result"],
    "Publish calls the app made through this sidecar: result is ok (stored, duplicates included), refused (4xx: malformed or not allowed) or failed (5xx: no broker, storage full).",
);
/// Consumer lag per subscription and partition.
pub const EVENTS_LAG: MetricDef = def(
    "sinew_events_lag",
    Gauge,
    &["subscription", "partition"],
    "Events of a partition this sidecar consumes that are stored and not yet done (delivered or dead-lettered), as of its last fetch.",
);
/// Requests answered by the proxy itself from a route's direct_response.
pub const DIRECT_RESPONSES_TOTAL: MetricDef = def(
    "sinew_direct_responses_total",
    Counter,
    &["route", "status_class"],
    "Requests answered by a route's direct_response, by status class.",
);
/// Requests the proxy failed itself, by reason.
pub const PROXY_ERRORS_TOTAL: MetricDef = def(
    "sinew_proxy_errors_total",
    Counter,
    &["kind"],
    "Requests that failed in the proxy, by reason.",
);
/// Bytes relayed by opaque TCP proxying.
pub const TCP_BYTES_TOTAL: MetricDef = def(
    "sinew_tcp_bytes_total",
    Counter,
    &["service", "direction"],
    "Bytes relayed for TCP services; direction is to_upstream or to_downstream.",
);
/// Retries sent to a service.
pub const RETRIES_TOTAL: MetricDef = def(
    "sinew_retries_total",
    Counter,
    &["service"],
    "Request retries sent to a service.",
);
/// Retries skipped because the service's retry budget was spent.
pub const RETRY_BUDGET_EXHAUSTED_TOTAL: MetricDef = def(
    "sinew_retry_budget_exhausted_total",
    Counter,
    &["service"],
    "Retries not sent because the service's retry budget was exhausted.",
);
/// Requests refused by a service's circuit breaker limits.
pub const CIRCUIT_BREAKER_REJECTIONS_TOTAL: MetricDef = def(
    "sinew_circuit_breaker_rejections_total",
    Counter,
    &["service"],
    "Requests refused because a circuit breaker limit of the service was reached.",
);
/// Requests refused by a local rate limit.
pub const RATE_LIMITED_TOTAL: MetricDef = def(
    "sinew_rate_limited_total",
    Counter,
    &["scope", "name"],
    "Requests refused with 429 by a local rate limit; scope is service or route, name the service or ROUTE.rules[INDEX].",
);
/// Inbound requests refused by an AuthorizationPolicy.
pub const AUTHZ_DENIED_TOTAL: MetricDef = def(
    "sinew_authz_denied_total",
    Counter,
    &["service", "policy"],
    "Inbound requests refused with 403 by authorization; policy is the deciding deny policy (NAMESPACE/NAME) or default-deny.",
);
/// Endpoints ejected by outlier detection.
pub const OUTLIER_EJECTIONS_TOTAL: MetricDef = def(
    "sinew_outlier_ejections_total",
    Counter,
    &["service"],
    "Endpoints ejected from load balancing by outlier detection.",
);
/// Endpoints currently eligible for load balancing.
pub const HEALTHY_ENDPOINTS: MetricDef = def(
    "sinew_healthy_endpoints",
    Gauge,
    &["service"],
    "Endpoints of the service currently eligible for load balancing.",
);
/// Version of the config snapshot in use.
pub const CONFIG_VERSION: MetricDef = def(
    "sinew_config_version",
    Gauge,
    &[],
    "Version of the config snapshot the proxy is serving.",
);
/// Config updates applied or rejected.
pub const CONFIG_RELOADS_TOTAL: MetricDef = def(
    "sinew_config_reloads_total",
    Counter,
    &["result"],
    "Config updates received, by result (ok or rejected).",
);
/// Access log lines dropped because the writer fell behind.
pub const ACCESS_LOG_DROPPED_TOTAL: MetricDef = def(
    "sinew_access_log_dropped_total",
    Counter,
    &[],
    "Access log lines dropped because the log writer fell behind.",
);
/// Process start time, for uptime.
pub const START_TIME_SECONDS: MetricDef = def(
    "sinew_start_time_seconds",
    Gauge,
    &[],
    "Start time of the proxy since the Unix epoch, in seconds.",
);
/// Constant 1, labelled with the build.
pub const BUILD_INFO: MetricDef = def(
    "sinew_build_info",
    Gauge,
    &["version"],
    "Always 1; labelled with the proxy's version.",
);

/// Every family, in render order.
pub const ALL: &[&MetricDef] = &[
    &REQUESTS_TOTAL,
    &REQUEST_DURATION_SECONDS,
    &DIRECT_RESPONSES_TOTAL,
    &PROXY_ERRORS_TOTAL,
    &OPEN_CONNECTIONS,
    &CONNECTIONS_TOTAL,
    &UPSTREAM_CONNECT_ERRORS_TOTAL,
    &UPSTREAM_CONNECTIONS_TOTAL,
    &UPSTREAM_TLS_ERRORS_TOTAL,
    &INBOUND_TLS_CONNECTIONS_TOTAL,
    &INBOUND_TLS_REFUSED_TOTAL,
    &EVENTS_TOTAL,
    &EVENTS_PUBLISHED_TOTAL,
    &EVENTS_LAG,
    &TCP_BYTES_TOTAL,
    &RETRIES_TOTAL,
    &RETRY_BUDGET_EXHAUSTED_TOTAL,
    &CIRCUIT_BREAKER_REJECTIONS_TOTAL,
    &RATE_LIMITED_TOTAL,
    &AUTHZ_DENIED_TOTAL,
    &OUTLIER_EJECTIONS_TOTAL,
    &HEALTHY_ENDPOINTS,
    &CONFIG_VERSION,
    &CONFIG_RELOADS_TOTAL,
    &ACCESS_LOG_DROPPED_TOTAL,
    &START_TIME_SECONDS,
    &BUILD_INFO,
];

/// Upper bounds of the latency histogram buckets (inclusive, Prometheus `le`),
/// 100 µs to 30 s on a 1-2-5 scale; larger values land in `+Inf`.
pub const LATENCY_BUCKETS: [Duration; 18] = [
    Duration::from_micros(100),
    Duration::from_micros(200),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(20),
    Duration::from_secs(30),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prefixed_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "duplicate {}", def.name);
            assert!(def.name.starts_with("sinew_"), "{}", def.name);
            let valid = |s: &str| s.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
            assert!(valid(def.name), "{}", def.name);
            assert!(def.labels.iter().all(|l| valid(l)), "{}", def.name);
            assert_eq!(
                def.name.ends_with("_total"),
                def.kind == MetricKind::Counter,
                "{}",
                def.name
            );
            assert!(!def.help.contains(['\n', '\\']), "{}", def.name);
        }
    }

    #[test]
    fn latency_buckets_are_strictly_increasing() {
        assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LATENCY_BUCKETS[0], Duration::from_micros(100));
        assert_eq!(LATENCY_BUCKETS[17], Duration::from_secs(30));
    }
}
