//! Per-endpoint load: requests in flight and a peak-EWMA of latency, in atomics.
//!
//! The estimate follows Finagle's and Linkerd's peak-EWMA. It is a quantity
//! that decays continuously toward zero with time constant `decay` (default
//! 10 s) and is pushed up by samples:
//!
//! - a sample above the current estimate replaces it (the *peak*: a slow
//!   endpoint is penalised at once);
//! - a sample at or below it is blended in with weight `1 - exp(-Δt / decay)`,
//!   where `Δt` is the time since the previous sample.
//!
//! Decaying toward zero between samples means an endpoint that was avoided
//! for being slow becomes attractive again after a few time constants, gets
//! probed, and either proves itself or is penalised again. An endpoint with no
//! sample yet starts at `default_rtt` (1 ms): pessimistic enough that a new
//! endpoint does not take a flood at once, small enough to be tried soon.
//!
//! Time comes from one process-wide monotonic base ([`Instant`]) read as `u64`
//! nanoseconds. The estimate is stored as an *anchored logarithm*:
//! `anchor = log2(estimate at t) + t · rate` with `rate = 1 / (decay · ln 2)`,
//! which stays constant while the estimate decays. Two endpoints with the
//! same decay therefore compare without reading the clock or calling `exp`:
//! the common `now · rate` term cancels. Concurrent updates race benignly:
//! each is a single atomic store or compare-exchange, and a lost update only
//! costs precision.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Default time constant of the latency estimate's decay.
pub const DEFAULT_DECAY: Duration = Duration::from_secs(10);
/// Latency assumed for an endpoint that has no sample yet.
pub const DEFAULT_RTT: Duration = Duration::from_millis(1);

/// Nanoseconds since a process-wide monotonic base.
pub(crate) fn now_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    duration_ns(BASE.get_or_init(Instant::now).elapsed())
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Load statistics of one endpoint, shared by every request sent to it.
///
/// Aligned to a cache line so that endpoints updated by different cores do
/// not contend. Held behind [`Arc`] so it can outlive one balancer: carry it
/// into the next config version with [`Balancer::with_loads`] and owned
/// guards ([`InFlightOwned`]) stay valid across `.await` points.
///
/// [`Balancer::with_loads`]: super::Balancer::with_loads
#[derive(Debug)]
#[repr(align(64))]
pub struct EndpointLoad {
    in_flight: AtomicU64,
    /// `log2(estimate in ns at t) + t · rate`, as `f64` bits; see the module
    /// docs.
    anchor: AtomicU64,
    /// When the last sample was recorded, from [`now_ns`].
    updated_ns: AtomicU64,
    /// Decay in log2 units per nanosecond: `1 / (decay · ln 2)`.
    rate: f64,
}

impl Default for EndpointLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointLoad {
    /// Fresh statistics with [`DEFAULT_DECAY`] and [`DEFAULT_RTT`].
    #[must_use]
    pub fn new() -> Self {
        Self::with_peak_ewma(DEFAULT_DECAY, DEFAULT_RTT)
    }

    /// Fresh statistics with the given decay time constant and initial RTT.
    /// A zero `decay` is treated as one nanosecond (estimate = last sample).
    #[must_use]
    pub fn with_peak_ewma(decay: Duration, default_rtt: Duration) -> Self {
        Self::created_at(decay, default_rtt, now_ns())
    }

    /// Fresh statistics as of clock time `now`: endpoints created together
    /// start with exactly equal estimates.
    pub(crate) fn created_at(decay: Duration, default_rtt: Duration, now: u64) -> Self {
        let rate = 1.0 / (duration_ns(decay).max(1) as f64 * std::f64::consts::LN_2);
        let estimate = (duration_ns(default_rtt) as f64).max(1.0);
        EndpointLoad {
            in_flight: AtomicU64::new(0),
            anchor: AtomicU64::new((estimate.log2() + now as f64 * rate).to_bits()),
            updated_ns: AtomicU64::new(now),
            rate,
        }
    }

    /// Marks a request as sent; it counts as in flight until the guard is
    /// finished or dropped.
    #[must_use = "dropping the guard ends the request at once"]
    pub fn start(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Relaxed);
        InFlight { load: self }
    }

    /// Like [`start`](Self::start), with a guard that owns a reference to the
    /// statistics and can move into a spawned task.
    #[must_use = "dropping the guard ends the request at once"]
    pub fn start_owned(self: &Arc<Self>) -> InFlightOwned {
        self.in_flight.fetch_add(1, Relaxed);
        InFlightOwned {
            load: Arc::clone(self),
        }
    }

    /// Requests currently in flight.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Relaxed)
    }

    /// The latency estimate as of now.
    #[must_use]
    pub fn latency(&self) -> Duration {
        Duration::from_nanos(self.estimate_at(now_ns()) as u64)
    }

    /// Records one latency sample without touching the in-flight count.
    pub fn record(&self, rtt: Duration) {
        self.record_at(rtt, now_ns());
    }

    /// The estimate in nanoseconds at clock time `now`, decayed toward zero
    /// since the last sample.
    pub(crate) fn estimate_at(&self, now: u64) -> f64 {
        (self.anchor() - now as f64 * self.rate).exp2()
    }

    /// Peak-EWMA cost at clock time `now`: estimate × (in flight + 1).
    #[cfg(test)]
    pub(crate) fn cost_at(&self, now: u64) -> f64 {
        self.estimate_at(now) * (self.in_flight() as f64 + 1.0)
    }

    fn anchor(&self) -> f64 {
        f64::from_bits(self.anchor.load(Relaxed))
    }

    pub(crate) fn record_at(&self, rtt: Duration, now: u64) {
        let rtt = duration_ns(rtt) as f64;
        let previous = self.updated_ns.swap(now, Relaxed);
        // exp(-Δt / decay), written with the rate.
        let keep = (-(now.saturating_sub(previous) as f64) * self.rate).exp2();
        let shift = now as f64 * self.rate;
        let update = |bits: u64| {
            let current = (f64::from_bits(bits) - shift).exp2();
            let next = if rtt > current {
                rtt
            } else {
                current + rtt * (1.0 - keep)
            };
            // At least 1 ns keeps the logarithm finite.
            Some((next.max(1.0).log2() + shift).to_bits())
        };
        // The closure always returns Some, so this cannot fail.
        let _ = self.anchor.fetch_update(Relaxed, Relaxed, update);
    }

    fn end(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Whether `a` (weight `wa`) has a strictly lower peak-EWMA cost per unit of
/// weight than `b`: `estimate × (in flight + 1) / weight`.
///
/// With equal decay rates the clock term cancels (see the module docs): no
/// clock read, and at most one `log2`.
#[inline]
pub(crate) fn cheaper_peak_ewma(a: &EndpointLoad, wa: u32, b: &EndpointLoad, wb: u32) -> bool {
    // Load factors: the weight of the other side multiplies, as in a
    // cross-multiplied comparison of fractions.
    let fa = (a.in_flight() as f64 + 1.0) * f64::from(wb);
    let fb = (b.in_flight() as f64 + 1.0) * f64::from(wa);
    if a.rate == b.rate {
        let (la, lb) = (a.anchor(), b.anchor());
        if fa == fb {
            la < lb
        } else {
            la - lb < (fb / fa).log2()
        }
    } else {
        let now = now_ns();
        a.estimate_at(now) * fa < b.estimate_at(now) * fb
    }
}

/// A request in flight to an endpoint, borrowed from its [`EndpointLoad`].
#[derive(Debug)]
#[must_use = "dropping the guard ends the request at once"]
pub struct InFlight<'a> {
    load: &'a EndpointLoad,
}

impl InFlight<'_> {
    /// Ends the request and records its latency into the estimate.
    pub fn finish(self, latency: Duration) {
        self.load.record(latency);
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.load.end();
    }
}

/// A request in flight to an endpoint, holding its [`EndpointLoad`] alive;
/// `Send + 'static`, for guards that live across `.await` points.
#[derive(Debug)]
#[must_use = "dropping the guard ends the request at once"]
pub struct InFlightOwned {
    load: Arc<EndpointLoad>,
}

impl InFlightOwned {
    /// Ends the request and records its latency into the estimate.
    pub fn finish(self, latency: Duration) {
        self.load.record(latency);
    }

    /// The statistics this request counts against.
    #[must_use]
    pub fn load(&self) -> &Arc<EndpointLoad> {
        &self.load
    }
}

impl Drop for InFlightOwned {
    fn drop(&mut self) {
        self.load.end();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn at(ns: u64, decay: Duration, rtt: Duration) -> EndpointLoad {
        EndpointLoad::created_at(decay, rtt, ns)
    }

    #[test]
    fn guards_count_in_flight() {
        let load = Arc::new(EndpointLoad::new());
        let a = load.start();
        let b = load.start_owned();
        assert_eq!(load.in_flight(), 2);
        a.finish(Duration::from_millis(3));
        assert_eq!(load.in_flight(), 1);
        drop(b);
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn owned_guard_moves_to_another_thread() {
        let load = Arc::new(EndpointLoad::new());
        let guard = load.start_owned();
        std::thread::spawn(move || guard.finish(Duration::from_millis(1)))
            .join()
            .expect("thread ran");
        assert_eq!(load.in_flight(), 0);
    }

    #[test]
    fn starts_at_default_rtt() {
        let load = at(0, DEFAULT_DECAY, Duration::from_millis(7));
        assert!((load.estimate_at(0) - 7.0 * MS as f64).abs() < 1e-3);
    }

    #[test]
    fn a_peak_replaces_the_estimate() {
        let load = at(0, DEFAULT_DECAY, Duration::from_millis(1));
        load.record_at(Duration::from_millis(50), 1);
        assert!((load.estimate_at(1) - 50.0 * MS as f64).abs() < 1.0);
    }

    #[test]
    fn lower_samples_pull_the_estimate_down_with_time() {
        let decay = Duration::from_secs(10);
        let load = at(0, decay, Duration::from_millis(100));
        // One decay constant later, a 10 ms sample: 100·e⁻¹ + 10·(1 − e⁻¹).
        let tau = 10_000 * MS;
        load.record_at(Duration::from_millis(10), tau);
        let e = (-1.0f64).exp();
        let want = 100.0 * e + 10.0 * (1.0 - e);
        let got = load.estimate_at(tau) / MS as f64;
        assert!((got - want).abs() < 1e-6, "got {got}, want {want}");
        // Many samples close together converge on the sample value.
        let mut now = tau;
        for _ in 0..2_000 {
            now += 100 * MS;
            load.record_at(Duration::from_millis(10), now);
        }
        let settled = load.estimate_at(now) / MS as f64;
        assert!((settled - 10.0).abs() < 0.5, "settled at {settled}");
    }

    #[test]
    fn an_idle_estimate_decays_toward_zero() {
        let load = at(0, Duration::from_secs(1), Duration::from_millis(100));
        let later = load.estimate_at(3_000 * MS);
        assert!(later < 100.0 * MS as f64 * 0.06, "{later}");
    }

    #[test]
    fn clock_free_comparison_matches_the_costs() {
        let decay = Duration::from_secs(1);
        let a = at(0, decay, Duration::from_millis(4));
        let b = at(0, decay, Duration::from_millis(1));
        b.record_at(Duration::from_millis(3), 500 * MS);
        let _busy: Vec<_> = (0..2).map(|_| b.start()).collect();
        for (wa, wb) in [(1, 1), (1, 3), (5, 1), (2, 2)] {
            let now = 700 * MS;
            let want = a.cost_at(now) / f64::from(wa) < b.cost_at(now) / f64::from(wb);
            assert_eq!(cheaper_peak_ewma(&a, wa, &b, wb), want, "weights {wa} {wb}");
            assert_eq!(
                cheaper_peak_ewma(&b, wb, &a, wa),
                !want,
                "weights {wb} {wa}"
            );
        }
        // Different decay rates take the clock path and agree too.
        let c = EndpointLoad::with_peak_ewma(Duration::from_secs(3), Duration::from_millis(2));
        let d = EndpointLoad::with_peak_ewma(decay, Duration::from_millis(9));
        assert!(cheaper_peak_ewma(&c, 1, &d, 1));
        assert!(!cheaper_peak_ewma(&d, 1, &c, 1));
    }

    #[test]
    fn cost_grows_with_in_flight() {
        let load = at(0, DEFAULT_DECAY, Duration::from_millis(2));
        let idle = load.cost_at(0);
        let _a = load.start();
        let _b = load.start();
        assert!((load.cost_at(0) - idle * 3.0).abs() < 1e-3);
    }
}
