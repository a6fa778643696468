//! Retry policy: which outcomes of a try may be retried, compiled from a service's or route's `retries`.
//!
//! The rules, in order:
//!
//! - **Never sent** — a connect failure ([`Outcome::ConnectFailed`], or a
//!   [`Outcome::Timeout`] / [`Outcome::Reset`] with `request_sent: false`)
//!   and HTTP/2 `REFUSED_STREAM` (RFC 9113 §8.7: the stream was not
//!   processed) are retryable whatever the method, when their condition
//!   (`connect-failure`, `refused-stream`) is on.
//! - **Sent** — any other outcome is retried only for idempotent methods
//!   ([`is_idempotent`]), unless the policy opts in to non-idempotent
//!   retries. gRPC calls are all `POST`: retrying gRPC statuses needs that
//!   opt-in (or a caller that knows the call is idempotent and says so).
//! - `gateway-error` is 502/503/504 and a timeout after sending (the proxy
//!   answers it with 504); `5xx` is 500–599 and that timeout too;
//!   `retriable-status-codes` the listed statuses; `reset` a reset before the
//!   response started.
//!
//! Conditions are a bit set and listed statuses a 640-bit map, so
//! [`RetryPolicy::retryable`] is a few branches, no search, no allocation.

use std::time::Duration;

use sinew_model::{Retries, RetryOn};

use super::backoff;

/// What one try of a request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// No connection to the endpoint could be made; nothing was sent.
    ConnectFailed,
    /// HTTP/2 `REFUSED_STREAM`: the endpoint did not process the request.
    RefusedStream,
    /// The connection or stream was reset before a response started.
    Reset {
        /// Whether any of the request had been written.
        request_sent: bool,
    },
    /// The try timed out (per-try timeout, or connect timeout when
    /// `request_sent` is false).
    Timeout {
        /// Whether any of the request had been written.
        request_sent: bool,
    },
    /// A response with this HTTP status.
    Status(u16),
    /// A gRPC response with this `grpc-status` (0 = OK).
    GrpcStatus(u32),
}

impl Outcome {
    /// Whether the upstream may have seen (part of) the request.
    pub fn request_sent(&self) -> bool {
        !matches!(
            self,
            Outcome::ConnectFailed
                | Outcome::RefusedStream
                | Outcome::Reset {
                    request_sent: false
                }
                | Outcome::Timeout {
                    request_sent: false
                }
        )
    }
}

/// Retry conditions as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Conditions(u32);

impl Conditions {
    const CONNECT_FAILURE: u32 = 1 << 0;
    const REFUSED_STREAM: u32 = 1 << 1;
    const RESET: u32 = 1 << 2;
    const GATEWAY_ERROR: u32 = 1 << 3;
    const SERVER_ERROR: u32 = 1 << 4;
    const STATUS_CODES: u32 = 1 << 5;
    /// Bit `GRPC_BASE + code` stands for gRPC status `code` (0..=16).
    const GRPC_BASE: u32 = 8;

    fn from_model(on: &[RetryOn]) -> Conditions {
        Conditions(on.iter().fold(0, |bits, &condition| {
            bits | match condition {
                RetryOn::ConnectFailure => Self::CONNECT_FAILURE,
                RetryOn::RefusedStream => Self::REFUSED_STREAM,
                RetryOn::Reset => Self::RESET,
                RetryOn::GatewayError => Self::GATEWAY_ERROR,
                RetryOn::ServerError => Self::SERVER_ERROR,
                RetryOn::RetriableStatusCodes => Self::STATUS_CODES,
                RetryOn::Cancelled
                | RetryOn::DeadlineExceeded
                | RetryOn::ResourceExhausted
                | RetryOn::Unavailable => condition
                    .grpc_status()
                    .and_then(Self::grpc_bit)
                    .unwrap_or(0),
            }
        }))
    }

    /// The bit of gRPC status `code`, for the codes 0..=16 gRPC defines.
    fn grpc_bit(code: u32) -> Option<u32> {
        (code <= 16).then(|| 1 << (Self::GRPC_BASE + code))
    }

    fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }
}

/// Statuses below this fit the listed-status bit map.
const STATUS_LIMIT: usize = 640;

/// A compiled retry policy; see the [module docs](self). Immutable: build it
/// with the runtime config and share it.
///
/// ```
/// use sinew_proxy::resilience::{is_idempotent, Outcome, RetryPolicy};
/// let policy = RetryPolicy::from_model(&sinew_model::Retries::default());
/// assert!(policy.retryable(&Outcome::ConnectFailed, is_idempotent("POST")));
/// assert!(policy.retryable(&Outcome::Status(503), is_idempotent("GET")));
/// assert!(!policy.retryable(&Outcome::Status(503), is_idempotent("POST")));
/// assert!(!policy.retryable(&Outcome::Status(500), is_idempotent("GET")));
/// ```
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    attempts: u32,
    conditions: Conditions,
    statuses: [u64; STATUS_LIMIT / 64],
    per_try_timeout: Option<Duration>,
    backoff_base: Duration,
    backoff_max: Duration,
    retry_non_idempotent: bool,
    max_body_bytes: u64,
    honor_retry_after: bool,
}

impl RetryPolicy {
    /// The policy `retries` asks for.
    #[must_use]
    pub fn from_model(retries: &Retries) -> RetryPolicy {
        let mut statuses = [0u64; STATUS_LIMIT / 64];
        for &code in &retries.retriable_status_codes {
            let code = usize::from(code);
            if code < STATUS_LIMIT {
                statuses[code / 64] |= 1 << (code % 64);
            }
        }
        RetryPolicy {
            attempts: retries.attempts,
            conditions: Conditions::from_model(&retries.on),
            statuses,
            per_try_timeout: retries.per_try_timeout.map(sinew_model::Duration::as_std),
            backoff_base: retries.backoff.base.as_std(),
            backoff_max: retries.backoff.max.as_std(),
            retry_non_idempotent: retries.retry_non_idempotent,
            max_body_bytes: u64::from(retries.max_body_bytes),
            honor_retry_after: retries.honor_retry_after,
        }
    }

    /// Whether a try that came to `outcome` may be retried, for a request
    /// whose method is `idempotent` (see [`is_idempotent`]). Says nothing of
    /// attempts left, budget, body size or breaker: ask those separately.
    #[must_use]
    pub fn retryable(&self, outcome: &Outcome, idempotent: bool) -> bool {
        let c = self.conditions;
        let replay_ok = idempotent || self.retry_non_idempotent;
        match *outcome {
            Outcome::ConnectFailed
            | Outcome::Reset {
                request_sent: false,
            } => c.has(Conditions::CONNECT_FAILURE),
            Outcome::Timeout {
                request_sent: false,
            } => c.has(Conditions::CONNECT_FAILURE | Conditions::GATEWAY_ERROR),
            Outcome::RefusedStream => c.has(Conditions::REFUSED_STREAM),
            Outcome::Reset { request_sent: true } => replay_ok && c.has(Conditions::RESET),
            Outcome::Timeout { request_sent: true } => {
                replay_ok && c.has(Conditions::GATEWAY_ERROR | Conditions::SERVER_ERROR)
            }
            Outcome::Status(status) => replay_ok && self.status_retryable(status),
            Outcome::GrpcStatus(code) => {
                replay_ok && Conditions::grpc_bit(code).is_some_and(|bit| c.has(bit))
            }
        }
    }

    fn status_retryable(&self, status: u16) -> bool {
        let c = self.conditions;
        (c.has(Conditions::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (c.has(Conditions::SERVER_ERROR) && (500..=599).contains(&status))
            || (c.has(Conditions::STATUS_CODES) && self.listed(status))
    }

    fn listed(&self, status: u16) -> bool {
        let code = usize::from(status);
        code < STATUS_LIMIT && self.statuses[code / 64] & (1 << (code % 64)) != 0
    }

    /// Retries allowed after the first try (0 = none).
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Whether retry number `retry` (1-based) is within [`attempts`](Self::attempts).
    #[must_use]
    pub fn allows_retry(&self, retry: u32) -> bool {
        retry >= 1 && retry <= self.attempts
    }

    /// Timeout of each try, if any.
    #[must_use]
    pub fn per_try_timeout(&self) -> Option<Duration> {
        self.per_try_timeout
    }

    /// The jittered wait before retry `retry` (1-based); see [`delay`](super::delay).
    pub fn backoff(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        backoff::delay(retry, self.backoff_base, self.backoff_max, rng)
    }

    /// Whether requests with non-idempotent methods are retried after being sent.
    #[must_use]
    pub fn retry_non_idempotent(&self) -> bool {
        self.retry_non_idempotent
    }

    /// Largest request body buffered for replay; longer bodies are not retried.
    #[must_use]
    pub fn max_body_bytes(&self) -> u64 {
        self.max_body_bytes
    }

    /// Whether a response's `Retry-After` sets the wait (within the budget).
    #[must_use]
    pub fn honor_retry_after(&self) -> bool {
        self.honor_retry_after
    }
}

/// Whether `method` is idempotent (RFC 9110 §9.2.2): `GET`, `HEAD`,
/// `OPTIONS`, `TRACE`, `PUT`, `DELETE`. Methods are case-sensitive.
///
/// ```
/// use sinew_proxy::resilience::is_idempotent;
/// assert!(is_idempotent("PUT"));
/// assert!(!is_idempotent("POST"));
/// assert!(!is_idempotent("get"));
/// ```
#[must_use]
pub fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
    )
}

#[cfg(test)]
mod tests;
