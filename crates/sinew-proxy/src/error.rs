//! Proxy errors: who failed (downstream, upstream, the proxy itself) and whether a retry is safe.
//!
//! The retry and response layers ask these questions ([`ProxyError::side`],
//! [`ProxyError::is_retryable`], [`ProxyError::status`]); nothing ever inspects
//! an error's message text.

use std::{fmt, io};

/// Which party an error is attributed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something invalid or went away.
    Downstream,
    /// The upstream endpoint failed, refused or misbehaved.
    Upstream,
    /// The proxy itself (configuration, resource limits).
    Internal,
}

/// What went wrong, precisely enough to choose a response and a retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request could not be parsed or is forbidden by RFC 9112 (smuggling shapes).
    BadRequest,
    /// The request head exceeds the size or header-count limit.
    HeadTooLarge,
    /// The request head did not arrive within the header timeout (slowloris).
    HeadTimeout,
    /// The request body stopped coming for the stream idle timeout.
    BodyTimeout,
    /// The request-target is longer than the proxy accepts.
    UriTooLong,
    /// A transfer coding the proxy does not implement (anything but `chunked`).
    NotImplemented,
    /// The path failed normalization (`%00`, encoded `/`, malformed escapes).
    BadPath,
    /// No route or virtual host matches: the proxy is never an open proxy.
    NoRoute,
    /// The chosen backend has no endpoint to send to.
    NoEndpoint,
    /// Connecting to the upstream failed; the request was never sent.
    ConnectFailed,
    /// Connecting to the upstream took longer than the connect timeout.
    ConnectTimeout,
    /// The upstream did not answer within the request timeout.
    Timeout,
    /// The upstream closed or reset the connection before a complete response.
    UpstreamReset,
    /// The upstream sent a response the proxy cannot parse.
    UpstreamProtocol,
    /// The client went away or sent a malformed body mid-request.
    DownstreamIo,
    /// A method or feature the proxy refuses (e.g. `CONNECT`).
    NotSupported,
    /// The service's circuit breaker is open: too many requests in flight.
    Overloaded,
    /// A local rate limit (the service's or the route rule's) refused the request.
    RateLimited,
    /// An AuthorizationPolicy refused the (inbound) request.
    Forbidden,
    /// A gateway route needs a valid JWT and the request has none (401).
    Unauthorized,
}

/// An error on the request path.
#[derive(Debug)]
pub struct ProxyError {
    kind: ErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// How long the client should wait before trying again (`Retry-After`).
    retry_after: Option<std::time::Duration>,
}

impl ProxyError {
    /// An error of `kind` without an underlying cause.
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            source: None,
            retry_after: None,
        }
    }

    /// A request refused by a rate limit; a token is back after `wait`.
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(ErrorKind::RateLimited)
        }
    }

    /// An error of `kind` caused by an I/O error.
    pub fn io(kind: ErrorKind, source: io::Error) -> Self {
        Self::caused_by(kind, source)
    }

    /// An error of `kind` caused by `source` (kept for logs, never matched on).
    pub fn caused_by(
        kind: ErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
            retry_after: None,
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// How long the client should wait before trying again, when known.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// The field the error response carries besides `x-sinew-error`: the
    /// `Retry-After` of a rate limit (whole seconds, rounded up, at least 1),
    /// or the `WWW-Authenticate` challenge of a missing or invalid JWT.
    pub(crate) fn retry_after_header(&self) -> Option<(http::HeaderName, http::HeaderValue)> {
        if self.kind == ErrorKind::Unauthorized {
            return Some((
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"sinew\", error=\"invalid_token\""),
            ));
        }
        let secs = crate::ratelimit::retry_after_secs(self.retry_after?);
        Some((http::header::RETRY_AFTER, http::HeaderValue::from(secs)))
    }

    /// Who failed.
    pub fn side(&self) -> Side {
        match self.kind {
            ErrorKind::BadRequest
            | ErrorKind::HeadTooLarge
            | ErrorKind::HeadTimeout
            | ErrorKind::BodyTimeout
            | ErrorKind::UriTooLong
            | ErrorKind::NotImplemented
            | ErrorKind::BadPath
            | ErrorKind::DownstreamIo
            | ErrorKind::NotSupported => Side::Downstream,
            ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::Timeout
            | ErrorKind::UpstreamReset
            | ErrorKind::UpstreamProtocol => Side::Upstream,
            ErrorKind::NoRoute
            | ErrorKind::NoEndpoint
            | ErrorKind::Overloaded
            | ErrorKind::RateLimited => Side::Internal,
            ErrorKind::Forbidden | ErrorKind::Unauthorized => Side::Downstream,
        }
    }

    /// Whether the request certainly never reached the upstream application,
    /// so it may be sent again whatever its method.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout
        )
    }

    /// The status of the response the proxy answers with.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadRequest | ErrorKind::BadPath => 400,
            ErrorKind::HeadTooLarge => 431,
            ErrorKind::HeadTimeout | ErrorKind::BodyTimeout => 408,
            ErrorKind::UriTooLong => 414,
            ErrorKind::NotImplemented => 501,
            ErrorKind::RateLimited => 429,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unauthorized => 401,
            ErrorKind::NoRoute => 404,
            ErrorKind::NotSupported => 405,
            ErrorKind::NoEndpoint
            | ErrorKind::ConnectFailed
            | ErrorKind::ConnectTimeout
            | ErrorKind::Overloaded => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => 502,
            ErrorKind::DownstreamIo => 400,
        }
    }

    /// The `sinew_proxy_errors_total` label this error counts under.
    pub fn metric_kind(&self) -> crate::telemetry::ProxyErrorKind {
        use crate::telemetry::ProxyErrorKind as K;
        match self.kind {
            ErrorKind::BadRequest
            | ErrorKind::HeadTooLarge
            | ErrorKind::HeadTimeout
            | ErrorKind::BodyTimeout
            | ErrorKind::UriTooLong
            | ErrorKind::NotImplemented
            | ErrorKind::BadPath
            | ErrorKind::NotSupported => K::BadRequest,
            ErrorKind::NoRoute => K::NoRoute,
            ErrorKind::NoEndpoint => K::NoEndpoint,
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout => K::UpstreamConnect,
            ErrorKind::Timeout => K::UpstreamTimeout,
            ErrorKind::UpstreamReset | ErrorKind::UpstreamProtocol => K::UpstreamError,
            ErrorKind::DownstreamIo => K::DownstreamClosed,
            ErrorKind::Overloaded => K::CircuitOpen,
            ErrorKind::RateLimited => K::RateLimited,
            ErrorKind::Forbidden => K::Forbidden,
            ErrorKind::Unauthorized => K::Unauthorized,
        }
    }

    /// The short machine-readable reason sent in `x-sinew-error` and used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadRequest => "bad-request",
            ErrorKind::HeadTooLarge => "head-too-large",
            ErrorKind::HeadTimeout => "head-timeout",
            ErrorKind::BodyTimeout => "body-timeout",
            ErrorKind::UriTooLong => "uri-too-long",
            ErrorKind::NotImplemented => "not-implemented",
            ErrorKind::BadPath => "bad-path",
            ErrorKind::NoRoute => "no-route",
            ErrorKind::NoEndpoint => "no-endpoint",
            ErrorKind::ConnectFailed => "connect-failed",
            ErrorKind::ConnectTimeout => "connect-timeout",
            ErrorKind::Timeout => "upstream-timeout",
            ErrorKind::UpstreamReset => "upstream-reset",
            ErrorKind::UpstreamProtocol => "upstream-protocol",
            ErrorKind::DownstreamIo => "downstream-io",
            ErrorKind::NotSupported => "not-supported",
            ErrorKind::Overloaded => "circuit-open",
            ErrorKind::RateLimited => "rate-limited",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Unauthorized => "unauthorized",
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// Why authorization refused a request: the deciding policy
/// (`NAMESPACE/NAME`, or `default-deny`), for the 403's access log line.
#[derive(Debug)]
pub struct Denied(pub Box<str>);

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "denied by {}", self.0)
    }
}

impl std::error::Error for Denied {}

impl ProxyError {
    /// The deciding policy of an authorization refusal.
    pub fn denied_by(&self) -> Option<&str> {
        let source = self.source.as_deref()?;
        source.downcast_ref::<Denied>().map(|d| &*d.0)
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}
