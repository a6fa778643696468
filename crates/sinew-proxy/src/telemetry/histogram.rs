//! A fixed-bucket latency histogram: one bucket add and one sum add per observation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::names::LATENCY_BUCKETS;

/// Bucket upper bounds in nanoseconds, derived from [`LATENCY_BUCKETS`].
const BOUNDS_NS: [u64; LATENCY_BUCKETS.len()] = {
    let mut out = [0u64; LATENCY_BUCKETS.len()];
    let mut i = 0;
    while i < out.len() {
        // Every bound is at most 30 s, so the nanosecond count fits in u64.
        out[i] = LATENCY_BUCKETS[i].as_nanos() as u64;
        i += 1;
    }
    out
};

/// Number of buckets including `+Inf`.
const BUCKETS: usize = LATENCY_BUCKETS.len() + 1;

/// A latency histogram over [`LATENCY_BUCKETS`] plus `+Inf`.
///
/// Buckets are stored non-cumulatively (one atomic add per observation) and
/// made cumulative when rendered; the count is the sum of the buckets. The
/// sum is kept in nanoseconds (wraps after ~584 years of summed latency).
///
/// ```
/// use std::time::Duration;
/// use sinew_proxy::telemetry::Histogram;
/// let h = Histogram::default();
/// h.observe(Duration::from_micros(150));
/// assert_eq!(h.count(), 1);
/// assert_eq!(h.sum(), Duration::from_micros(150));
/// ```
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    #[inline]
    pub fn observe(&self, value: Duration) {
        let ns = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_index(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Sum of all observations.
    pub fn sum(&self) -> Duration {
        Duration::from_nanos(self.sum_ns.load(Ordering::Relaxed))
    }

    /// Cumulative counts: element `i` counts observations `<= LATENCY_BUCKETS[i]`;
    /// the last element (`+Inf`) equals the total count.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut out = [0u64; BUCKETS];
        let mut running = 0u64;
        for (slot, bucket) in out.iter_mut().zip(&self.buckets) {
            running = running.wrapping_add(bucket.load(Ordering::Relaxed));
            *slot = running;
        }
        out
    }
}

/// Index of the first bucket whose (inclusive) bound is `>= ns`; `BUCKETS - 1` is `+Inf`.
#[inline]
fn bucket_index(ns: u64) -> usize {
    BOUNDS_NS.partition_point(|&bound| bound < ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placed(value: Duration) -> usize {
        let h = Histogram::default();
        h.observe(value);
        let cum = h.cumulative();
        cum.iter().position(|&c| c == 1).unwrap_or(usize::MAX)
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_covers_them() {
        assert_eq!(placed(Duration::ZERO), 0);
        assert_eq!(placed(Duration::from_micros(99)), 0);
        // Bounds are inclusive (`le`).
        assert_eq!(placed(Duration::from_micros(100)), 0);
        assert_eq!(placed(Duration::from_nanos(100_001)), 1);
        assert_eq!(placed(Duration::from_micros(200)), 1);
        assert_eq!(placed(Duration::from_micros(201)), 2);
        assert_eq!(placed(Duration::from_millis(1)), 3);
        assert_eq!(placed(Duration::from_millis(7)), 6);
        assert_eq!(placed(Duration::from_secs(1)), 12);
        assert_eq!(placed(Duration::from_secs(30)), 17);
        assert_eq!(placed(Duration::from_secs(31)), 18);
        assert_eq!(placed(Duration::MAX), 18);
    }

    #[test]
    fn cumulative_counts_sum_and_count_agree() {
        let h = Histogram::default();
        for us in [50, 150, 150, 3_000, 40_000_000] {
            h.observe(Duration::from_micros(us));
        }
        let cum = h.cumulative();
        assert_eq!(cum[0], 1); // <= 100us
        assert_eq!(cum[1], 3); // <= 200us
        assert_eq!(cum[4], 3); // <= 2ms
        assert_eq!(cum[5], 4); // <= 5ms
        assert_eq!(cum[17], 4); // <= 30s
        assert_eq!(cum[18], 5); // +Inf
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), Duration::from_micros(40_003_350));
        assert!(cum.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn every_bound_maps_to_its_own_bucket() {
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            assert_eq!(placed(*bound), i);
            assert_eq!(placed(*bound + Duration::from_nanos(1)), i + 1);
        }
    }
}
