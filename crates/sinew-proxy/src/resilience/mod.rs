//! Resilience building blocks: backoff, retry budget and policy, circuit breaker, outlier detection, panic-aware picking.
//!
//! Everything here is pure and thread-safe: no I/O, no async, no lock on the
//! hot path, no allocation after construction. Time is always passed in (an
//! [`Instant`] or a [`SystemTime`](std::time::SystemTime)), so behaviour is
//! deterministic under test. The request path wires them together:
//!
//! ```text
//! breaker.try_request()           over the limit → 503 at once
//!   pick_excluding(…)             outlier ejections + panic threshold (+ previous endpoint on a retry)
//!     breaker.try_connection()    when a new connection is needed
//!     forward → Outcome
//!   outlier.report(index, ok)
//!   policy.retryable(outcome, is_idempotent(method))
//!     && budget.try_retry(now) && breaker.try_retry()
//!     → wait backoff::delay(…) (or Retry-After, if honoured and within limits) → try again
//! ```

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod eligible;
pub mod outlier;
pub mod policy;

use std::time::Instant;

pub use backoff::{ceiling, delay, retry_after, RETRY_AFTER_CAP};
pub use breaker::{CircuitBreaker, Permit};
pub use budget::{RetryBudget, WINDOW_SECS};
pub use eligible::{in_panic, pick_eligible, pick_excluding};
pub use outlier::{EndpointOutlier, Failure, OutlierConfig, OutlierDetector, MAX_EJECTION};
pub use policy::{is_idempotent, Outcome, RetryPolicy};

/// Nanoseconds from `origin` to `now` (0 if `now` is earlier), saturating.
fn nanos_since(origin: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

/// `d` in nanoseconds, saturating.
fn duration_nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
