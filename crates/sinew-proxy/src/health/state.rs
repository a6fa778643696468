//! One endpoint's health: a flag the request path reads with one atomic load,
//! and the probe history that moves it (threshold hysteresis).

use sinew_model::{HealthCheck, InitialHealth};
use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, MutexGuard, PoisonError,
    },
    time::Instant,
};

/// How many consecutive probe results it takes to change an endpoint's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive failures that mark a healthy endpoint unhealthy (at least 1).
    pub unhealthy: u32,
    /// Consecutive successes that mark an unhealthy endpoint healthy (at least 1).
    pub healthy: u32,
}

impl From<&HealthCheck> for Thresholds {
    fn from(check: &HealthCheck) -> Self {
        Self {
            unhealthy: check.unhealthy_threshold,
            healthy: check.healthy_threshold,
        }
    }
}

/// A point-in-time copy of an endpoint's health, for `/endpoints` views and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Whether the endpoint currently receives traffic.
    pub healthy: bool,
    /// Probes passed in a row (0 after a failure).
    pub consecutive_successes: u32,
    /// Probes failed in a row (0 after a success).
    pub consecutive_failures: u32,
    /// When the last probe finished; `None` before the first.
    pub last_check: Option<Instant>,
    /// The error of the probe that last made the endpoint unhealthy (kept
    /// after it recovers, as history).
    pub last_error: Option<String>,
    /// Transitions from healthy to unhealthy.
    pub became_unhealthy: u64,
    /// Transitions from unhealthy to healthy.
    pub became_healthy: u64,
}

#[derive(Debug, Default)]
struct History {
    /// Whether the endpoint has ever been healthy: until it has, a single
    /// success is enough (an endpoint that starts unhealthy joins at its
    /// first pass).
    ever_healthy: bool,
    consecutive_successes: u32,
    consecutive_failures: u32,
    last_check: Option<Instant>,
    last_error: Option<String>,
    became_unhealthy: u64,
    became_healthy: u64,
}

/// The health of one endpoint address, shared (in an `Arc`) between its
/// checker task, the balancers that skip unhealthy endpoints and the API,
/// and kept across config reloads that keep the address.
///
/// ```
/// use sinew_proxy::health::{EndpointHealth, Thresholds};
///
/// let health = EndpointHealth::new(true);
/// let t = Thresholds { unhealthy: 2, healthy: 1 };
/// assert!(!health.record(false, t)); // one failure: still healthy
/// assert!(health.record(false, t)); // second failure: changed
/// assert!(!health.is_healthy());
/// ```
#[derive(Debug)]
pub struct EndpointHealth {
    healthy: AtomicBool,
    /// Written once per probe by the endpoint's checker; never on the request path.
    history: Mutex<History>,
}

impl Default for EndpointHealth {
    /// Healthy until probes say otherwise.
    fn default() -> Self {
        Self::new(true)
    }
}

impl EndpointHealth {
    /// An endpoint's health before any probe: `healthy` or not.
    pub fn new(healthy: bool) -> Self {
        Self {
            healthy: AtomicBool::new(healthy),
            history: Mutex::new(History {
                ever_healthy: healthy,
                ..History::default()
            }),
        }
    }

    /// An endpoint's health before any probe, as the check's `initial` says.
    pub fn initial(initial: InitialHealth) -> Self {
        Self::new(initial == InitialHealth::Healthy)
    }

    /// Whether the endpoint should receive traffic: one relaxed atomic load.
    #[inline]
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn history(&self) -> MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one probe result and returns whether it changed the state:
    /// a healthy endpoint turns unhealthy after `thresholds.unhealthy`
    /// failures in a row, an unhealthy one healthy after
    /// `thresholds.healthy` successes in a row — or after one if it has
    /// never been healthy (it started unhealthy).
    pub fn record(&self, success: bool, thresholds: Thresholds) -> bool {
        let mut history = self.history();
        history.last_check = Some(Instant::now());
        let healthy = self.healthy.load(Ordering::Relaxed);
        if success {
            history.consecutive_failures = 0;
            history.consecutive_successes = history.consecutive_successes.saturating_add(1);
            if !healthy
                && (!history.ever_healthy || history.consecutive_successes >= thresholds.healthy)
            {
                history.ever_healthy = true;
                history.became_healthy += 1;
                self.healthy.store(true, Ordering::Relaxed);
                return true;
            }
        } else {
            history.consecutive_successes = 0;
            history.consecutive_failures = history.consecutive_failures.saturating_add(1);
            if healthy && history.consecutive_failures >= thresholds.unhealthy.max(1) {
                history.became_unhealthy += 1;
                self.healthy.store(false, Ordering::Relaxed);
                return true;
            }
        }
        false
    }

    /// Stores the error that made the endpoint unhealthy (written on
    /// transitions only, so probes do not allocate).
    pub fn set_last_error(&self, error: Option<String>) {
        self.history().last_error = error;
    }

    /// The error that last made the endpoint unhealthy.
    pub fn last_error(&self) -> Option<String> {
        self.history().last_error.clone()
    }

    /// A copy of the endpoint's state and counters.
    pub fn snapshot(&self) -> HealthSnapshot {
        let history = self.history();
        HealthSnapshot {
            healthy: self.is_healthy(),
            consecutive_successes: history.consecutive_successes,
            consecutive_failures: history.consecutive_failures,
            last_check: history.last_check,
            last_error: history.last_error.clone(),
            became_unhealthy: history.became_unhealthy,
            became_healthy: history.became_healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds {
        unhealthy: 3,
        healthy: 2,
    };

    #[test]
    fn starts_as_told() {
        assert!(EndpointHealth::default().is_healthy());
        assert!(EndpointHealth::new(true).is_healthy());
        assert!(!EndpointHealth::new(false).is_healthy());
        assert_eq!(EndpointHealth::default().snapshot().last_check, None);
    }

    #[test]
    fn unhealthy_after_threshold_failures_in_a_row() {
        let h = EndpointHealth::new(true);
        assert!(!h.record(false, T));
        assert!(!h.record(false, T));
        assert!(h.is_healthy());
        assert!(h.record(false, T));
        assert!(!h.is_healthy());
        // Further failures change nothing.
        assert!(!h.record(false, T));
        let s = h.snapshot();
        assert_eq!(s.consecutive_failures, 4);
        assert_eq!(s.became_unhealthy, 1);
        assert_eq!(s.became_healthy, 0);
        assert!(s.last_check.is_some());
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let h = EndpointHealth::new(true);
        for _ in 0..5 {
            assert!(!h.record(false, T));
            assert!(!h.record(false, T));
            assert!(!h.record(true, T));
        }
        assert!(h.is_healthy());
        assert_eq!(h.snapshot().consecutive_successes, 1);
    }

    #[test]
    fn starting_unhealthy_one_pass_is_enough() {
        let h = EndpointHealth::initial(InitialHealth::Unhealthy);
        assert!(!h.is_healthy());
        assert!(!h.record(false, T));
        assert!(h.record(true, T));
        assert!(h.is_healthy());
        assert!(EndpointHealth::initial(InitialHealth::Healthy).is_healthy());
    }

    #[test]
    fn healthy_again_after_threshold_successes_in_a_row() {
        let h = EndpointHealth::new(true);
        assert!(!h.record(true, T));
        for _ in 0..3 {
            h.record(false, T);
        }
        assert!(!h.is_healthy());
        assert!(!h.record(true, T));
        assert!(!h.record(false, T)); // resets the success count
        assert!(!h.record(true, T));
        assert!(!h.is_healthy());
        assert!(h.record(true, T));
        assert!(h.is_healthy());
        assert!(!h.record(true, T));
        let s = h.snapshot();
        assert_eq!(s.became_healthy, 1);
        assert_eq!(s.became_unhealthy, 1);
        assert_eq!(s.consecutive_successes, 3);
    }

    #[test]
    fn full_cycle_counts_both_transitions() {
        let h = EndpointHealth::new(true);
        let one = Thresholds {
            unhealthy: 1,
            healthy: 1,
        };
        assert!(h.record(false, one));
        assert!(h.record(true, one));
        assert!(h.record(false, one));
        let s = h.snapshot();
        assert_eq!((s.became_unhealthy, s.became_healthy), (2, 1));
        assert!(!s.healthy);
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let h = EndpointHealth::new(true);
        let zero = Thresholds {
            unhealthy: 0,
            healthy: 0,
        };
        assert!(!h.record(true, zero));
        assert!(h.record(false, zero));
        assert!(h.record(true, zero));
    }

    #[test]
    fn last_error_is_kept_until_replaced() {
        let h = EndpointHealth::new(true);
        assert_eq!(h.last_error(), None);
        h.set_last_error(Some("connection refused".into()));
        assert!(!h.record(true, T));
        assert_eq!(h.last_error().as_deref(), Some("connection refused"));
        assert_eq!(
            h.snapshot().last_error.as_deref(),
            Some("connection refused")
        );
    }
}
