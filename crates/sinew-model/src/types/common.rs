//! Pieces several kinds share: retries, backoff, rate limits, header/query value matchers, percents.

use crate::{Duration, Pattern};

/// A percentage, 0 to 100 inclusive (fractions allowed, e.g. `0.5`).
pub type Percent = f64;

/// When and how often a failed request is tried again.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Retries {
    /// Retries after the first try (0 disables retrying). Default 1.
    pub attempts: u32,
    /// Failures that may be retried. Default `[connect-failure, refused-stream, gateway-error]`.
    pub on: Vec<RetryOn>,
    /// Statuses retried when `on` holds `retriable-status-codes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    /// Timeout of each try; absent = only the overall timeout applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Exponential backoff with full jitter between tries. Default `{base: 25ms, max: 250ms}`.
    pub backoff: Backoff,
    /// Limit on retries as a share of requests. Default `{ratio: 0.2, min_per_second: 10}`.
    pub budget: RetryBudget,
    /// Whether a request whose method is not idempotent (`POST`, `PATCH`, …) may be
    /// retried after it was sent. A connect failure (request never sent) is always
    /// retryable, whatever the method. Default false.
    pub retry_non_idempotent: bool,
    /// Largest request body buffered for replay, in bytes, at most
    /// [`Retries::MAX_BODY_BYTES_LIMIT`]; a request with a larger body is not
    /// retried once sent. Default 64 KiB.
    pub max_body_bytes: u32,
    /// Whether a `Retry-After` on a retriable response sets the wait before the
    /// retry (still within the budget and the overall timeout). Default true.
    pub honor_retry_after: bool,
}

impl Retries {
    /// Default [`Retries::max_body_bytes`]: 64 KiB.
    pub const DEFAULT_MAX_BODY_BYTES: u32 = 64 * 1024;
    /// Largest accepted [`Retries::max_body_bytes`]: 16 MiB.
    pub const MAX_BODY_BYTES_LIMIT: u32 = 16 * 1024 * 1024;
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: 1,
            on: vec![
                RetryOn::ConnectFailure,
                RetryOn::RefusedStream,
                RetryOn::GatewayError,
            ],
            retriable_status_codes: Vec::new(),
            per_try_timeout: None,
            backoff: Backoff::RETRY_DEFAULT,
            budget: RetryBudget::default(),
            retry_non_idempotent: false,
            max_body_bytes: Self::DEFAULT_MAX_BODY_BYTES,
            honor_retry_after: true,
        }
    }
}

/// A failure class that may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// The connection to the endpoint could not be made.
    ConnectFailure,
    /// HTTP/2 REFUSED_STREAM: the request was never processed.
    RefusedStream,
    /// The connection was reset before a response started.
    Reset,
    /// 502, 503 or 504.
    GatewayError,
    /// Any 5xx status.
    #[serde(rename = "5xx")]
    ServerError,
    /// A status listed in `retriable_status_codes`.
    RetriableStatusCodes,
    /// gRPC status 1, CANCELLED (from `grpc-status` in headers or trailers).
    Cancelled,
    /// gRPC status 4, DEADLINE_EXCEEDED.
    DeadlineExceeded,
    /// gRPC status 8, RESOURCE_EXHAUSTED.
    ResourceExhausted,
    /// gRPC status 14, UNAVAILABLE.
    Unavailable,
}

impl RetryOn {
    /// The `grpc-status` code this condition matches, for the gRPC conditions.
    pub fn grpc_status(self) -> Option<u32> {
        match self {
            Self::Cancelled => Some(1),
            Self::DeadlineExceeded => Some(4),
            Self::ResourceExhausted => Some(8),
            Self::Unavailable => Some(14),
            Self::ConnectFailure
            | Self::RefusedStream
            | Self::Reset
            | Self::GatewayError
            | Self::ServerError
            | Self::RetriableStatusCodes => None,
        }
    }
}

/// Exponential backoff bounds: try `n` waits a random time in `[0, min(max, base * 2^n)]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Backoff {
    /// First backoff ceiling.
    pub base: Duration,
    /// Largest backoff ceiling; not below `base`.
    pub max: Duration,
}

impl Backoff {
    /// Default backoff of request retries.
    pub const RETRY_DEFAULT: Self = Self {
        base: Duration::from_millis(25),
        max: Duration::from_millis(250),
    };
    /// Default backoff of event redelivery.
    pub const DELIVERY_DEFAULT: Self = Self {
        base: Duration::from_millis(100),
        max: Duration::from_secs(30),
    };
}

/// A retry budget: retries may add at most `ratio` of requests, plus `min_per_second`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RetryBudget {
    /// Share of requests that may be retries, 0.0 to 1.0. Default 0.2.
    pub ratio: f64,
    /// Retries per second always allowed. Default 10.
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
        }
    }
}

/// A local rate limit: a token bucket refilled at `requests_per_second`,
/// holding at most `burst` tokens; each request takes one, and a request
/// finding the bucket empty is refused (429) instead of forwarded.
///
/// The bucket belongs to the sidecar, shared by all its workers: a sidecar
/// forwards at most `burst + requests_per_second × t` requests in any `t`
/// seconds. It is local, not global: N sidecars calling the same service
/// allow N times the rate between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RateLimit {
    /// Sustained rate, 1..=[`RateLimit::MAX_PER_SECOND`].
    pub requests_per_second: u32,
    /// Requests allowed at once after a quiet period (the bucket's size),
    /// at least 1. Default `requests_per_second`.
    pub burst: u32,
}

impl RateLimit {
    /// Largest accepted `requests_per_second` (and `burst`): one million.
    pub const MAX_PER_SECOND: u32 = 1_000_000;
}

/// How a header or query parameter value is matched. Exactly one form per matcher.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueMatch {
    /// Equal to this value.
    Exact(String),
    /// Starts with this value.
    Prefix(String),
    /// The whole value matches this regex.
    Regex(Pattern),
    /// `true`: the header/parameter is present (any value); `false`: it is absent.
    Present(bool),
}

impl ValueMatch {
    /// Whether `value` (`None` = header/parameter absent) satisfies this matcher.
    pub fn matches(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Self::Present(want), v) => *want == v.is_some(),
            (_, None) => false,
            (Self::Exact(e), Some(v)) => e == v,
            (Self::Prefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Self::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}
