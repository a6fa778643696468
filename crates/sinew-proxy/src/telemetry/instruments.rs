//! The scalar instruments: `Counter` (monotonic) and `Gauge` (up and down), each one relaxed atomic.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count. Recording is one relaxed atomic add.
///
/// ```
/// use sinew_proxy::telemetry::Counter;
/// let c = Counter::default();
/// c.inc();
/// c.add(2);
/// assert_eq!(c.get(), 3);
/// ```
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down. Recording is one relaxed atomic operation.
///
/// ```
/// use sinew_proxy::telemetry::Gauge;
/// let g = Gauge::default();
/// g.inc();
/// g.inc();
/// g.dec();
/// assert_eq!(g.get(), 1);
/// g.set(7);
/// assert_eq!(g.get(), 7);
/// ```
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Subtracts one.
    #[inline]
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Replaces the value.
    #[inline]
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
