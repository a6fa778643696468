//! Passive outlier detection: eject an endpoint after consecutive errors, for longer each time.
//!
//! The caller reports each finished try with [`OutlierDetector::report`]
//! (success or not) or, to tell errors apart,
//! [`OutlierDetector::report_failure`] with a [`Failure`]. Three runs are
//! counted per endpoint, each with its own threshold: all errors
//! (`consecutive_errors`), gateway errors (`consecutive_gateway_errors`:
//! 502/503/504, resets, connect failures) and connect failures
//! (`consecutive_connect_errors`); a success ends every run, an error ends
//! the runs it does not belong to. When any run reaches its threshold the
//! endpoint is ejected for
//! `base_ejection × times ejected`, capped at [`MAX_EJECTION`] (or at
//! `base_ejection` if that is longer). It returns by itself when that time
//! has passed. For each full `interval` an endpoint spends un-ejected, its
//! ejection count drops by one (as Envoy's does on each sweep), so an
//! endpoint that recovered starts again from the base time.
//!
//! **Max ejection percent:** an ejection that would leave more than
//! `max_ejection_percent` of the endpoints ejected (rounded down) is refused
//! and counted; as in Envoy, one endpoint may still be ejected when the
//! percent is above 0 and there are at least two endpoints (10 % of 3 would
//! otherwise round down to none). With a single endpoint only 100 % ejects
//! it. The panic threshold ([`super::pick_eligible`]) covers the rest.
//!
//! **Across configs:** what an endpoint has earned — ejected until when,
//! its error runs, its ejection count — is an [`EndpointOutlier`], which
//! detectors of several config versions may share
//! ([`OutlierDetector::sharing`]); the thresholds and the percent are the
//! detector's own.
//!
//! **Concurrency:** reads ([`is_ejected`](OutlierDetector::is_ejected),
//! [`ejected_count`](OutlierDetector::ejected_count)) and reports are
//! lock-free atomics (`ejected_until` in nanoseconds since the detectors'
//! common origin, and the error run per endpoint). Only an error that
//! reaches the threshold takes the detector's small `Mutex`, to check the
//! percent, and then the endpoint's, to update its ejection count
//! consistently with any other detector sharing it; successes never lock.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{duration_nanos, nanos_since};

/// Longest ejection (unless `base_ejection` is longer), as in Envoy.
pub const MAX_EJECTION: Duration = Duration::from_secs(300);

/// Outlier detection settings of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierConfig {
    /// Errors in a row that eject an endpoint (0 counts as 1).
    pub consecutive_errors: u32,
    /// Gateway errors in a row that eject an endpoint (`None` = not counted).
    pub consecutive_gateway_errors: Option<u32>,
    /// Connect failures in a row that eject an endpoint (`None` = not counted).
    pub consecutive_connect_errors: Option<u32>,
    /// First ejection time; the `n`-th is `n ×` this, capped.
    pub base_ejection: Duration,
    /// Most endpoints ejected at once, in percent (above 100 counts as 100).
    pub max_ejection_percent: u32,
    /// Time without ejection that takes one off an endpoint's ejection count.
    pub interval: Duration,
}

impl OutlierConfig {
    /// The settings of a service's `outlier_detection`.
    #[must_use]
    pub fn from_model(model: &sinew_model::OutlierDetection) -> OutlierConfig {
        OutlierConfig {
            consecutive_errors: model.consecutive_errors,
            consecutive_gateway_errors: model.consecutive_gateway_errors,
            consecutive_connect_errors: model.consecutive_connect_errors,
            base_ejection: model.base_ejection.as_std(),
            max_ejection_percent: model.max_ejection_percent,
            interval: model.interval.as_std(),
        }
    }
}

impl Default for OutlierConfig {
    fn default() -> Self {
        OutlierConfig::from_model(&sinew_model::OutlierDetection::default())
    }
}

/// What kind of error a failed try was; the caller classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A 5xx other than 502/503/504 (or any error not classified further).
    Server,
    /// 502, 503, 504, or a reset before the response started.
    Gateway,
    /// The connection could not be made (refused, timed out).
    Connect,
}

/// Run indices: all errors, gateway errors, connect failures.
const RUNS: usize = 3;

impl Failure {
    /// Which runs this failure extends (the others end).
    fn runs(self) -> [bool; RUNS] {
        match self {
            Failure::Server => [true, false, false],
            Failure::Gateway => [true, true, false],
            Failure::Connect => [true, true, true],
        }
    }
}

/// One endpoint's outlier state, which the detectors of successive config
/// versions share (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct EndpointOutlier {
    /// Ejected while the clock is below this (ns since `origin`; 0 = never).
    ejected_until: AtomicU64,
    /// Errors in a row of each kind since the last success or ejection.
    runs: [AtomicU32; RUNS],
    /// Changed only under this lock.
    record: Mutex<Record>,
}

impl EndpointOutlier {
    fn reset(&self, run: usize) {
        if self.runs[run].load(Ordering::Relaxed) != 0 {
            self.runs[run].store(0, Ordering::Relaxed);
        }
    }
}

/// The part of an endpoint's state changed only under its lock.
#[derive(Debug, Clone, Copy, Default)]
struct Record {
    /// Ejections counted toward the next ejection's length.
    times_ejected: u32,
    /// When the last ejection ended (ns since `origin`).
    released_at: u64,
}

/// Outlier detection over the endpoints of one cluster; see the
/// [module docs](self). Endpoint indices are those of the cluster's
/// balancer; out-of-range indices are ignored (never ejected).
///
/// ```
/// use std::time::{Duration, Instant};
/// use sinew_proxy::resilience::{OutlierConfig, OutlierDetector};
/// let config = OutlierConfig { consecutive_errors: 2, ..OutlierConfig::default() };
/// let detector = OutlierDetector::new(4, config);
/// let now = Instant::now();
/// detector.report(1, false, now);
/// detector.report(1, false, now);
/// assert!(detector.is_ejected(1, now));
/// assert!(!detector.is_ejected(1, now + Duration::from_secs(31)));
/// ```
#[derive(Debug)]
pub struct OutlierDetector {
    origin: Instant,
    /// Threshold of each run (`u32::MAX` = not counted).
    thresholds: [u32; RUNS],
    base_ns: u64,
    max_ns: u64,
    interval_ns: u64,
    max_ejected: usize,
    slots: Box<[Arc<EndpointOutlier>]>,
    /// Held while an ejection is checked against the percent; shared by
    /// the detectors sharing these endpoints.
    eject: Arc<Mutex<()>>,
    ejections: AtomicU64,
    refused: AtomicU64,
}

impl OutlierDetector {
    /// A detector for `n_endpoints` endpoints, none ejected.
    #[must_use]
    pub fn new(n_endpoints: usize, config: OutlierConfig) -> OutlierDetector {
        let slots = (0..n_endpoints).map(|_| Arc::default()).collect();
        OutlierDetector::sharing(Instant::now(), slots, Arc::default(), config)
    }

    /// A detector over endpoint states other detectors may share, in
    /// balancer order. Every detector sharing a state must be given the
    /// same `origin`, the time base of its ejections, and the same `lock`,
    /// under which an ejection is checked against the percent (so two
    /// detectors cannot both eject up to it).
    #[must_use]
    pub fn sharing(
        origin: Instant,
        slots: Vec<Arc<EndpointOutlier>>,
        lock: Arc<Mutex<()>>,
        config: OutlierConfig,
    ) -> OutlierDetector {
        let n_endpoints = slots.len();
        let percent = config.max_ejection_percent.min(100) as usize;
        let mut max_ejected = n_endpoints * percent / 100;
        if percent > 0 && n_endpoints >= 2 {
            max_ejected = max_ejected.max(1);
        }
        let base_ns = duration_nanos(config.base_ejection);
        OutlierDetector {
            origin,
            thresholds: [
                config.consecutive_errors.max(1),
                config
                    .consecutive_gateway_errors
                    .map_or(u32::MAX, |n| n.max(1)),
                config
                    .consecutive_connect_errors
                    .map_or(u32::MAX, |n| n.max(1)),
            ],
            base_ns,
            max_ns: duration_nanos(MAX_EJECTION).max(base_ns),
            interval_ns: duration_nanos(config.interval).max(1),
            max_ejected,
            slots: slots.into_boxed_slice(),
            eject: lock,
            ejections: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Records the result of a try on endpoint `index` at `now`; a failure
    /// counts as [`Failure::Server`]. Reports on an ejected endpoint (late
    /// answers to earlier requests) are ignored.
    pub fn report(&self, index: usize, success: bool, now: Instant) {
        if success {
            self.record(index, [false; RUNS], now);
        } else {
            self.report_failure(index, Failure::Server, now);
        }
    }

    /// Records a failed try of kind `failure` on endpoint `index` at `now`.
    pub fn report_failure(&self, index: usize, failure: Failure, now: Instant) {
        self.record(index, failure.runs(), now);
    }

    /// Extends the runs marked in `extend`, ends the others, and ejects when
    /// a run reaches its threshold. Lock-free unless it does.
    fn record(&self, index: usize, extend: [bool; RUNS], now: Instant) {
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        let now = nanos_since(self.origin, now);
        if slot.ejected_until.load(Ordering::Acquire) > now {
            return;
        }
        let mut due = false;
        for (run, &extend) in extend.iter().enumerate() {
            if !extend {
                slot.reset(run);
                continue;
            }
            let before = slot.runs[run]
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    Some(n.saturating_add(1))
                })
                .unwrap_or(u32::MAX);
            due |= before.saturating_add(1) >= self.thresholds[run];
        }
        if due {
            self.try_eject(index, now);
        }
    }

    /// Whether a run of `slot` has reached its threshold.
    fn due(&self, slot: &EndpointOutlier) -> bool {
        slot.runs
            .iter()
            .zip(self.thresholds)
            .any(|(run, threshold)| run.load(Ordering::Relaxed) >= threshold)
    }

    /// Ejects `index` if it is still due and the percent allows it.
    fn try_eject(&self, index: usize, now: u64) {
        let _percent = self.eject.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &self.slots[index];
        let mut record = slot.record.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.ejected_until.load(Ordering::Acquire) > now || !self.due(slot) {
            return; // another thread ejected it, or a success broke the run
        }
        if self.count_ejected(now) >= self.max_ejected {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let times = self.decayed(*record, now).saturating_add(1);
        let until = now
            .saturating_add(
                self.base_ns
                    .saturating_mul(u64::from(times))
                    .min(self.max_ns),
            )
            .max(1);
        *record = Record {
            times_ejected: times,
            released_at: until,
        };
        (0..RUNS).for_each(|run| slot.reset(run));
        slot.ejected_until.store(until, Ordering::Release);
        self.ejections.fetch_add(1, Ordering::Relaxed);
    }

    /// `record`'s ejection count at `now`, less one per full interval spent
    /// un-ejected since its last ejection ended.
    fn decayed(&self, record: Record, now: u64) -> u32 {
        let healthy_intervals = now.saturating_sub(record.released_at) / self.interval_ns;
        let decay = u32::try_from(healthy_intervals).unwrap_or(u32::MAX);
        record.times_ejected.saturating_sub(decay)
    }

    fn count_ejected(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.ejected_until.load(Ordering::Acquire) > now)
            .count()
    }

    /// Whether endpoint `index` is ejected at `now`. Lock-free.
    #[must_use]
    pub fn is_ejected(&self, index: usize, now: Instant) -> bool {
        let now = nanos_since(self.origin, now);
        self.slots
            .get(index)
            .is_some_and(|slot| slot.ejected_until.load(Ordering::Acquire) > now)
    }

    /// Endpoints ejected at `now`. Lock-free, O(n).
    #[must_use]
    pub fn ejected_count(&self, now: Instant) -> usize {
        self.count_ejected(nanos_since(self.origin, now))
    }

    /// Endpoints not ejected at `now` (for the panic threshold).
    #[must_use]
    pub fn healthy_count(&self, now: Instant) -> usize {
        self.slots.len() - self.ejected_count(now)
    }

    /// Endpoint `index`'s ejection count at `now`, after decay (0 if out of
    /// range). Takes the lock; for metrics and tests, not the request path.
    #[must_use]
    pub fn times_ejected(&self, index: usize, now: Instant) -> u32 {
        let now = nanos_since(self.origin, now);
        self.slots.get(index).map_or(0, |slot| {
            let record = *slot.record.lock().unwrap_or_else(PoisonError::into_inner);
            self.decayed(record, now)
        })
    }

    /// Returns endpoint `index` at `now` and forgets its error run (e.g.
    /// when an active health check passes). Its ejection count is kept and
    /// starts decaying from `now`.
    pub fn clear(&self, index: usize, now: Instant) {
        let now = nanos_since(self.origin, now);
        if let Some(slot) = self.slots.get(index) {
            let mut record = slot.record.lock().unwrap_or_else(PoisonError::into_inner);
            record.released_at = record.released_at.min(now);
            (0..RUNS).for_each(|run| slot.reset(run));
            slot.ejected_until.store(0, Ordering::Release);
        }
    }

    /// Number of endpoints watched.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no endpoints.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Ejections since the detector was made (a metric counter).
    #[must_use]
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Ejections refused by the max ejection percent (a metric counter).
    #[must_use]
    pub fn refused_ejections(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
