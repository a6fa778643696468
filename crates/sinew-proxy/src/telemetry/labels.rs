//! Typed label values: the closed sets (direction, status class, error kind) and request label sets.

use std::fmt;

/// Which listener a connection or request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From another sidecar (or a client) to the local app.
    Inbound,
    /// From the local app to a mesh service.
    Outbound,
    /// Opaque TCP proxying (a `protocol: tcp` service): no HTTP requests.
    Tcp,
    /// From outside the mesh into it, through a gateway's ingress listener.
    Ingress,
}

impl Direction {
    /// Every direction, in render order.
    pub const ALL: [Direction; 4] = [
        Direction::Inbound,
        Direction::Outbound,
        Direction::Tcp,
        Direction::Ingress,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Tcp => "tcp",
            Direction::Ingress => "ingress",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `status_class` label values, `1xx` to `5xx`.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Index into [`STATUS_CLASSES`] for an HTTP status; out-of-range codes clamp
/// to the nearest class (below 200 → `1xx`, 500 and above → `5xx`).
pub(crate) fn status_class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// Why the proxy failed a request itself (`sinew_proxy_errors_total{kind}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProxyErrorKind {
    /// The downstream request was malformed or smuggling-shaped.
    BadRequest,
    /// No route matched the request's host and path.
    NoRoute,
    /// The chosen backend had no eligible endpoint.
    NoEndpoint,
    /// Authorization policy denied the request.
    Forbidden,
    /// A gateway route's JWT check refused the request.
    Unauthorized,
    /// A circuit breaker limit refused the request.
    CircuitOpen,
    /// A local rate limit refused the request (429).
    RateLimited,
    /// Connecting to the upstream failed.
    UpstreamConnect,
    /// The upstream did not answer within the timeout.
    UpstreamTimeout,
    /// The upstream connection failed mid-request or sent a malformed response.
    UpstreamError,
    /// The downstream went away before the response was complete.
    DownstreamClosed,
    /// A bug or resource exhaustion inside the proxy.
    Internal,
}

impl ProxyErrorKind {
    /// Every kind, in render order.
    pub const ALL: [ProxyErrorKind; 12] = [
        ProxyErrorKind::BadRequest,
        ProxyErrorKind::NoRoute,
        ProxyErrorKind::NoEndpoint,
        ProxyErrorKind::Forbidden,
        ProxyErrorKind::Unauthorized,
        ProxyErrorKind::CircuitOpen,
        ProxyErrorKind::RateLimited,
        ProxyErrorKind::UpstreamConnect,
        ProxyErrorKind::UpstreamTimeout,
        ProxyErrorKind::UpstreamError,
        ProxyErrorKind::DownstreamClosed,
        ProxyErrorKind::Internal,
    ];

    /// The label value (also used in access log lines).
    pub const fn as_str(self) -> &'static str {
        match self {
            ProxyErrorKind::BadRequest => "bad_request",
            ProxyErrorKind::NoRoute => "no_route",
            ProxyErrorKind::NoEndpoint => "no_endpoint",
            ProxyErrorKind::Forbidden => "forbidden",
            ProxyErrorKind::Unauthorized => "unauthorized",
            ProxyErrorKind::CircuitOpen => "circuit_open",
            ProxyErrorKind::RateLimited => "rate_limited",
            ProxyErrorKind::UpstreamConnect => "upstream_connect",
            ProxyErrorKind::UpstreamTimeout => "upstream_timeout",
            ProxyErrorKind::UpstreamError => "upstream_error",
            ProxyErrorKind::DownstreamClosed => "downstream_closed",
            ProxyErrorKind::Internal => "internal",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ProxyErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of applying a config update (`sinew_config_reloads_total{result}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReloadResult {
    /// The new snapshot was validated and swapped in.
    Ok,
    /// The update was invalid; the previous snapshot stays in use.
    Rejected,
}

impl ReloadResult {
    /// Every result, in render order.
    pub const ALL: [ReloadResult; 2] = [ReloadResult::Ok, ReloadResult::Rejected];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Ok => "ok",
            ReloadResult::Rejected => "rejected",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// The label set of one request series: resolved once per (route rule,
/// backend) when a config snapshot is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestLabels<'a> {
    /// Listener the request came through.
    pub direction: Direction,
    /// Destination service (the backend's service).
    pub service: &'a str,
    /// Name of the matched Route resource (`service/NAME` for a service's implicit route, `inbound` inbound).
    pub route: &'a str,
    /// Backend within the route, e.g. `reviews` or `reviews/v2` with a subset.
    pub backend: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_clamp_out_of_range_codes() {
        let class = |s| STATUS_CLASSES[status_class_index(s)];
        assert_eq!(class(100), "1xx");
        assert_eq!(class(200), "2xx");
        assert_eq!(class(204), "2xx");
        assert_eq!(class(302), "3xx");
        assert_eq!(class(404), "4xx");
        assert_eq!(class(599), "5xx");
        assert_eq!(class(0), "1xx");
        assert_eq!(class(999), "5xx");
    }

    #[test]
    fn indices_match_all_order() {
        for (i, d) in Direction::ALL.iter().enumerate() {
            assert_eq!(d.index(), i);
        }
        for (i, k) in ProxyErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, r) in ReloadResult::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
