//! Local rate limiting: a token bucket per Service and per Route rule, shared
//! by every worker of the sidecar, lock-free.
//!
//! A bucket is one `AtomicU64` holding the *theoretical arrival time* of the
//! generic cell rate algorithm (GCRA, the token bucket written as one
//! timestamp): each admitted request pushes it one interval (`1 s / rate`)
//! further; a request is refused when that would put it more than `burst`
//! intervals ahead of now. Taking a token is one compare-and-swap loop with
//! no lock, no allocation and no background refill; a refused request
//! learns how long until a token is back, which becomes `Retry-After`.
//!
//! The request path, in `dispatch`:
//!
//! ```text
//! rule matched ─ rule.rate_limit.check(now)          empty → 429 rate-limited
//!   backend picked ─ cluster.rate_limit.check(now)   empty → 429, the rule's token given back
//!     endpoint picked …
//! ```
//!
//! Buckets survive reloads: [`RateLimits`] keeps them by what they limit and
//! at what rate, so a new config that keeps a limit keeps its bucket (and
//! what it has spent); a changed limit starts a new, full bucket.

use crate::config::Kept;
use crate::error::ProxyError;
use crate::telemetry::Counter;
use sinew_model::RateLimit;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A token bucket of `burst` tokens refilled at `requests_per_second`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use sinew_model::RateLimit;
/// use sinew_proxy::ratelimit::TokenBucket;
///
/// let start = Instant::now();
/// let bucket = TokenBucket::new(RateLimit { requests_per_second: 10, burst: 2 }, start);
/// assert!(bucket.try_take(start).is_ok());
/// assert!(bucket.try_take(start).is_ok());
/// // Empty: the next token comes in 100 ms.
/// assert_eq!(bucket.try_take(start), Err(Duration::from_millis(100)));
/// assert!(bucket.try_take(start + Duration::from_millis(100)).is_ok());
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    /// Nanoseconds per token.
    interval: u64,
    /// `burst × interval`: how far ahead of now the arrival time may run.
    capacity: u64,
    /// The time origin of `tat`.
    origin: Instant,
    /// Theoretical arrival time, in nanoseconds since `origin`: when the
    /// bucket will be full again. At or before now, it is full.
    tat: AtomicU64,
}

impl TokenBucket {
    /// A full bucket for `limit`, with `now` as its time origin.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        let interval = NANOS_PER_SEC / u64::from(limit.requests_per_second.max(1));
        Self {
            interval,
            capacity: interval.saturating_mul(u64::from(limit.burst.max(1))),
            origin: now,
            tat: AtomicU64::new(0),
        }
    }

    /// Takes a token at `now`; when the bucket is empty, takes nothing and
    /// returns how long until a token is available.
    pub fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let now = u64::try_from(now.saturating_duration_since(self.origin).as_nanos())
            .unwrap_or(u64::MAX);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let next = tat.max(now).saturating_add(self.interval);
            let ahead = next - now;
            if ahead > self.capacity {
                return Err(Duration::from_nanos(ahead - self.capacity));
            }
            match self
                .tat
                .compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(current) => tat = current,
            }
        }
    }

    /// Returns a token taken by [`try_take`](Self::try_take) for a request
    /// that another limit then refused.
    pub fn give_back(&self) {
        let _ = self
            .tat
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(self.interval))
            });
    }
}

/// A compiled limit: the bucket (shared with every config that keeps the
/// same limit) and the counter of the requests it refused.
#[derive(Debug, Clone)]
pub struct Limiter {
    limit: RateLimit,
    bucket: Arc<TokenBucket>,
    rejected: Arc<Counter>,
}

impl Limiter {
    /// A limiter with a new, full bucket and a counter of its own; a
    /// compiled config rebinds it with [`RateLimits::rebind`].
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            bucket: Arc::new(TokenBucket::new(limit, Instant::now())),
            rejected: Arc::default(),
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Requests refused so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.get()
    }

    /// Admits a request at `now`, or refuses it: a `rate-limited` error (429)
    /// whose `Retry-After` is the wait for the next token.
    pub(crate) fn check(&self, now: Instant) -> Result<(), ProxyError> {
        self.bucket.try_take(now).map_err(|wait| {
            self.rejected.inc();
            ProxyError::rate_limited(wait)
        })
    }

    /// [`check`](Self::check) at the current time, for examples and tests:
    /// `Err` carries the wait for the next token.
    pub fn check_now(&self) -> Result<(), Duration> {
        self.check(Instant::now())
            .map_err(|e| e.retry_after().unwrap_or_default())
    }

    /// Gives back the token of an admitted request that was refused later.
    pub(crate) fn give_back(&self) {
        self.bucket.give_back();
    }
}

/// The buckets of every live config, by what they limit; only config
/// compilation takes the lock.
///
/// ```
/// use sinew_model::RateLimit;
/// use sinew_proxy::ratelimit::{Limiter, RateLimits};
/// use sinew_proxy::telemetry::Counter;
/// use std::sync::Arc;
///
/// let limits = RateLimits::default();
/// let rate = RateLimit { requests_per_second: 1, burst: 1 };
/// let counter = Arc::new(Counter::default());
/// let mut first = Limiter::new(rate);
/// limits.rebind(&mut first, "service/reviews", counter.clone());
/// assert!(first.check_now().is_ok());
/// // A reload with the same limit: same bucket, still empty.
/// let mut again = Limiter::new(rate);
/// limits.rebind(&mut again, "service/reviews", counter);
/// assert!(again.check_now().is_err());
/// assert_eq!(again.rejected(), 1);
/// ```
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: Kept<(String, RateLimit), TokenBucket>,
}

impl RateLimits {
    /// Gives `limiter` the bucket a live config already has for `key` at
    /// the same limit (else registers its own), and `rejected` as its counter.
    pub fn rebind(&self, limiter: &mut Limiter, key: &str, rejected: Arc<Counter>) {
        let own = limiter.bucket.clone();
        limiter.bucket = self
            .buckets
            .get_or_insert_with((key.to_owned(), limiter.limit), || own);
        limiter.rejected = rejected;
    }
}

/// `Retry-After` in whole seconds for a wait: rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests_per_second: u32, burst: u32) -> RateLimit {
        RateLimit {
            requests_per_second,
            burst,
        }
    }

    #[test]
    fn a_full_bucket_admits_burst_then_the_rate() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(limit(50, 20), t0);
        let admitted = (0..100).filter(|_| bucket.try_take(t0).is_ok()).count();
        assert_eq!(admitted, 20, "the burst, at once");
        // Over the next 3 s, one request every millisecond: 50 per second pass.
        let mut later = 0;
        for ms in 1..=3000 {
            if bucket.try_take(t0 + Duration::from_millis(ms)).is_ok() {
                later += 1;
            }
        }
        assert_eq!(later, 150);
    }

    #[test]
    fn a_refusal_says_when_the_next_token_comes() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(limit(2, 1), t0);
        assert!(bucket.try_take(t0).is_ok());
        let wait = bucket
            .try_take(t0 + Duration::from_millis(100))
            .unwrap_err();
        assert_eq!(wait, Duration::from_millis(400));
        assert_eq!(retry_after_secs(wait), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        // A refusal takes nothing: the token is there at 500 ms.
        assert!(bucket.try_take(t0 + Duration::from_millis(500)).is_ok());
    }

    #[test]
    fn an_idle_bucket_refills_to_burst_only() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(limit(1000, 5), t0);
        let later = t0 + Duration::from_secs(60);
        let admitted = (0..50).filter(|_| bucket.try_take(later).is_ok()).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn a_token_given_back_is_available_again() {
        let t0 = Instant::now();
        let bucket = TokenBucket::new(limit(1, 1), t0);
        assert!(bucket.try_take(t0).is_ok());
        assert!(bucket.try_take(t0).is_err());
        bucket.give_back();
        assert!(bucket.try_take(t0).is_ok());
    }

    #[test]
    fn threads_together_never_exceed_the_limit() {
        let t0 = Instant::now();
        let bucket = Arc::new(TokenBucket::new(limit(1, 1000), t0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let bucket = bucket.clone();
                std::thread::spawn(move || {
                    (0..1000).filter(|_| bucket.try_take(t0).is_ok()).count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap_or(0)).sum();
        assert_eq!(
            admitted, 1000,
            "exactly the burst, whatever the interleaving"
        );
    }

    #[test]
    fn a_reload_keeps_a_bucket_only_while_its_limit_is_unchanged() {
        let limits = RateLimits::default();
        let counter = Arc::new(Counter::default());
        let mut first = Limiter::new(limit(1, 1));
        limits.rebind(&mut first, "service/a", counter.clone());
        let mut same = Limiter::new(limit(1, 1));
        limits.rebind(&mut same, "service/a", counter.clone());
        assert!(Arc::ptr_eq(&first.bucket, &same.bucket));
        let mut changed = Limiter::new(limit(2, 1));
        limits.rebind(&mut changed, "service/a", counter.clone());
        assert!(!Arc::ptr_eq(&first.bucket, &changed.bucket));
        let mut other = Limiter::new(limit(1, 1));
        limits.rebind(&mut other, "service/b", counter);
        assert!(!Arc::ptr_eq(&first.bucket, &other.bucket));
        // Once no config holds it, a bucket is forgotten.
        drop((first, same));
        let mut fresh = Limiter::new(limit(1, 1));
        let before = Arc::as_ptr(&fresh.bucket);
        limits.rebind(&mut fresh, "service/a", Arc::default());
        assert_eq!(Arc::as_ptr(&fresh.bucket), before);
    }
}
