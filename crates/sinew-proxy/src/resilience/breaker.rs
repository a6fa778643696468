//! Circuit breaker: fail-fast limits on connections, pending requests, requests in flight and retries.
//!
//! Each limit is one atomic counter. Acquiring is a compare-and-swap loop
//! that never passes the limit and never waits: over the limit the answer is
//! `None` at once (the caller answers 503) and the rejection is counted.
//! A [`Permit`] gives its slot back when dropped, so an early return or a
//! cancelled future cannot leak one. Permits hold an `Arc` to their counter
//! and may be moved into spawned tasks.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// One limit: how many are held, and how many were refused.
#[derive(Debug)]
struct Gauge {
    max: u32,
    current: AtomicU32,
    rejected: AtomicU64,
}

impl Gauge {
    fn new(max: u32) -> Arc<Gauge> {
        Arc::new(Gauge {
            max,
            current: AtomicU32::new(0),
            rejected: AtomicU64::new(0),
        })
    }

    fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let acquired = self
            .current
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            });
        match acquired {
            Ok(_) => Some(Permit {
                gauge: Arc::clone(self),
            }),
            Err(_) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// A held slot of one [`CircuitBreaker`] limit, released on drop.
#[must_use = "the slot is released as soon as the permit is dropped"]
pub struct Permit {
    gauge: Arc<Gauge>,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("max", &self.gauge.max)
            .finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gauge.current.fetch_sub(1, Ordering::Release);
    }
}

/// Concurrency limits toward one service; see the [module docs](self).
///
/// ```
/// use sinew_proxy::resilience::CircuitBreaker;
/// let breaker = CircuitBreaker::new(10, 10, 1, 3);
/// let first = breaker.try_request().expect("under the limit");
/// assert!(breaker.try_request().is_none(), "over the limit: answer 503");
/// drop(first);
/// assert!(breaker.try_request().is_some());
/// assert_eq!(breaker.rejected_requests(), 1);
/// ```
#[derive(Debug)]
pub struct CircuitBreaker {
    connections: Arc<Gauge>,
    pending: Arc<Gauge>,
    requests: Arc<Gauge>,
    retries: Arc<Gauge>,
}

impl CircuitBreaker {
    /// A breaker with these limits (a limit of 0 refuses everything).
    #[must_use]
    pub fn new(
        max_connections: u32,
        max_pending: u32,
        max_requests: u32,
        max_retries: u32,
    ) -> CircuitBreaker {
        CircuitBreaker {
            connections: Gauge::new(max_connections),
            pending: Gauge::new(max_pending),
            requests: Gauge::new(max_requests),
            retries: Gauge::new(max_retries),
        }
    }

    /// The breaker a service's `circuit_breaker` asks for.
    #[must_use]
    pub fn from_model(limits: &sinew_model::CircuitBreaker) -> CircuitBreaker {
        CircuitBreaker::new(
            limits.max_connections,
            limits.max_pending,
            limits.max_requests,
            limits.max_retries,
        )
    }

    /// A slot for one request in flight, or `None` at the limit.
    pub fn try_request(&self) -> Option<Permit> {
        self.requests.try_acquire()
    }

    /// A slot for one open upstream connection, or `None` at the limit.
    pub fn try_connection(&self) -> Option<Permit> {
        self.connections.try_acquire()
    }

    /// A slot for one request waiting for a connection, or `None` at the limit.
    pub fn try_pending(&self) -> Option<Permit> {
        self.pending.try_acquire()
    }

    /// A slot for one retry in flight, or `None` at the limit.
    pub fn try_retry(&self) -> Option<Permit> {
        self.retries.try_acquire()
    }

    /// Requests in flight now.
    #[must_use]
    pub fn requests(&self) -> u32 {
        self.requests.current.load(Ordering::Relaxed)
    }

    /// Connections held now.
    #[must_use]
    pub fn connections(&self) -> u32 {
        self.connections.current.load(Ordering::Relaxed)
    }

    /// Requests waiting for a connection now.
    #[must_use]
    pub fn pending(&self) -> u32 {
        self.pending.current.load(Ordering::Relaxed)
    }

    /// Retries in flight now.
    #[must_use]
    pub fn retries(&self) -> u32 {
        self.retries.current.load(Ordering::Relaxed)
    }

    /// Requests refused at the limit since the breaker was made.
    #[must_use]
    pub fn rejected_requests(&self) -> u64 {
        self.requests.rejected.load(Ordering::Relaxed)
    }

    /// Connections refused at the limit since the breaker was made.
    #[must_use]
    pub fn rejected_connections(&self) -> u64 {
        self.connections.rejected.load(Ordering::Relaxed)
    }

    /// Pending requests refused at the limit since the breaker was made.
    #[must_use]
    pub fn rejected_pending(&self) -> u64 {
        self.pending.rejected.load(Ordering::Relaxed)
    }

    /// Retries refused at the limit since the breaker was made.
    #[must_use]
    pub fn rejected_retries(&self) -> u64 {
        self.retries.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_holds_and_releases() {
        let breaker = CircuitBreaker::new(2, 3, 4, 1);
        type Try = fn(&CircuitBreaker) -> Option<Permit>;
        type Count = fn(&CircuitBreaker) -> u32;
        type Rejected = fn(&CircuitBreaker) -> u64;
        let limits: [(u32, Try, Count, Rejected); 4] = [
            (
                2,
                CircuitBreaker::try_connection,
                CircuitBreaker::connections,
                CircuitBreaker::rejected_connections,
            ),
            (
                3,
                CircuitBreaker::try_pending,
                CircuitBreaker::pending,
                CircuitBreaker::rejected_pending,
            ),
            (
                4,
                CircuitBreaker::try_request,
                CircuitBreaker::requests,
                CircuitBreaker::rejected_requests,
            ),
            (
                1,
                CircuitBreaker::try_retry,
                CircuitBreaker::retries,
                CircuitBreaker::rejected_retries,
            ),
        ];
        for (max, acquire, count, rejected) in limits {
            let mut held: Vec<Permit> = (0..max)
                .map(|_| acquire(&breaker).expect("under limit"))
                .collect();
            assert_eq!(count(&breaker), max);
            assert!(acquire(&breaker).is_none());
            assert!(acquire(&breaker).is_none());
            assert_eq!(rejected(&breaker), 2);
            assert_eq!(count(&breaker), max, "a refusal holds nothing");
            held.pop();
            assert_eq!(count(&breaker), max - 1);
            held.push(acquire(&breaker).expect("released slot is reusable"));
            drop(held);
            assert_eq!(count(&breaker), 0);
        }
    }

    #[test]
    fn limits_are_independent() {
        let breaker = CircuitBreaker::new(1, 1, 1, 1);
        let _request = breaker.try_request().expect("request");
        assert!(breaker.try_request().is_none());
        assert!(breaker.try_connection().is_some());
        assert!(breaker.try_pending().is_some());
        assert!(breaker.try_retry().is_some());
    }

    #[test]
    fn zero_refuses_everything() {
        let breaker = CircuitBreaker::new(0, 0, 0, 0);
        assert!(breaker.try_request().is_none());
        assert!(breaker.try_retry().is_none());
        assert_eq!(breaker.rejected_requests(), 1);
    }

    #[test]
    fn from_model_uses_the_service_limits() {
        let breaker = CircuitBreaker::from_model(&sinew_model::CircuitBreaker {
            max_connections: 1,
            max_pending: 2,
            max_requests: 3,
            max_retries: 4,
        });
        let held: Vec<_> = std::iter::from_fn(|| breaker.try_request()).collect();
        assert_eq!(held.len(), 3);
        let held: Vec<_> = std::iter::from_fn(|| breaker.try_pending()).collect();
        assert_eq!(held.len(), 2);
        let held: Vec<_> = std::iter::from_fn(|| breaker.try_retry()).collect();
        assert_eq!(held.len(), 4);
        let held: Vec<_> = std::iter::from_fn(|| breaker.try_connection()).collect();
        assert_eq!(held.len(), 1);
    }

    #[test]
    fn never_over_the_limit_across_threads() {
        let breaker = Arc::new(CircuitBreaker::new(0, 0, 8, 0));
        let peak = Arc::new(AtomicU32::new(0));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (breaker, peak) = (Arc::clone(&breaker), Arc::clone(&peak));
                std::thread::spawn(move || {
                    let mut admitted = 0u32;
                    for _ in 0..10_000 {
                        if let Some(permit) = breaker.try_request() {
                            peak.fetch_max(breaker.requests(), Ordering::Relaxed);
                            admitted += 1;
                            drop(permit);
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u32 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        assert!(peak.load(Ordering::Relaxed) <= 8);
        assert_eq!(u64::from(admitted) + breaker.rejected_requests(), 40_000);
        assert_eq!(breaker.requests(), 0, "every permit came back");
    }

    #[test]
    fn permit_outlives_the_borrow() {
        fn check<T: Send + Sync + 'static>(_: &T) {}
        let breaker = CircuitBreaker::new(1, 1, 1, 1);
        let permit = breaker.try_request().expect("permit");
        check(&permit);
        drop(breaker);
        drop(permit);
    }
}
