//! State that outlives the config versions using it.
//!
//! A reload compiles a whole new config, but what the proxy has learned
//! about an upstream — its health, its outlier ejections, its requests in
//! flight and latency estimate, the requests in flight against its breaker,
//! its retry budget's window, its rate-limit tokens — belongs to the
//! upstream, not to a config version. Each such piece
//! is looked up in a [`Kept`] by what it is about, and by the settings a
//! change of which must start it afresh. While any live config holds the
//! value, the next config asking for the same key gets the same value, so an
//! endpoint added elsewhere in the mesh does not wipe what the proxy knows
//! of this one. Entries are weak: a key that no config holds any more goes
//! with its last config.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Instant;

use crate::balance::EndpointLoad;
use crate::resilience::{
    CircuitBreaker, EndpointOutlier, OutlierConfig, OutlierDetector, RetryBudget,
};

/// Values by key while a live config holds them; see the [module docs](self).
pub struct Kept<K, V> {
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Weak<V>>,
    /// Inserts since dead entries were last swept out.
    inserts: usize,
}

impl<K: Eq + Hash, V> Kept<K, V> {
    /// The value a live config holds for `key`; else `make()`'s, kept from now on.
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> Arc<V>) -> Arc<V> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = entries.map.get(&key).and_then(Weak::upgrade) {
            return value;
        }
        // Sweeping once the inserts since the last sweep reach half the map
        // keeps a config of n new keys at O(n), not O(n²).
        entries.inserts += 1;
        if entries.inserts > entries.map.len() / 2 {
            entries.map.retain(|_, weak| weak.strong_count() > 0);
            entries.inserts = 0;
        }
        let value = make();
        entries.map.insert(key, Arc::downgrade(&value));
        value
    }

    /// Keys with a value some config still holds.
    #[cfg(test)]
    fn live(&self) -> usize {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .map
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Kept {
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                inserts: 0,
            }),
        }
    }
}

impl<K, V> fmt::Debug for Kept<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Kept")
            .field("entries", &entries.map.len())
            .finish()
    }
}

/// The balancing and resilience state each compiled config takes over from
/// the one before. A cluster is a service or one of its subsets, named by
/// its label (`service` or `service/subset`); each keeps its own.
///
/// - Each endpoint's load (requests in flight, latency estimate) and outlier
///   state, by (cluster, address), whatever else changes: an ejected
///   endpoint stays ejected for its full time, and its error runs and
///   ejection count carry on. Thresholds come from the new config; the
///   detectors of one cluster share one lock for the max ejection percent.
/// - A service's circuit breaker, while its limits stay the same: requests
///   in flight under the old config still count against the new one.
/// - A cluster's retry budget, while its ratio and floor stay the same.
#[derive(Debug)]
pub struct KeptStates {
    loads: Kept<(Arc<str>, SocketAddr), EndpointLoad>,
    outliers: Kept<(Arc<str>, SocketAddr), EndpointOutlier>,
    /// By cluster label: held while an ejection is checked against the percent.
    ejections: Kept<Arc<str>, Mutex<()>>,
    /// The time base of every outlier state here.
    origin: Instant,
    breakers: Kept<(Arc<str>, sinew_model::CircuitBreaker), CircuitBreaker>,
    /// By cluster label, ratio (as bits) and floor.
    budgets: Kept<(Arc<str>, u64, u32), RetryBudget>,
}

impl Default for KeptStates {
    fn default() -> Self {
        KeptStates {
            loads: Kept::default(),
            outliers: Kept::default(),
            ejections: Kept::default(),
            origin: Instant::now(),
            breakers: Kept::default(),
            budgets: Kept::default(),
        }
    }
}

impl KeptStates {
    /// The loads of cluster `label`'s endpoints at `addrs`, in balancer order.
    pub fn loads(
        &self,
        label: &Arc<str>,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> Vec<Arc<EndpointLoad>> {
        addrs
            .into_iter()
            .map(|addr| {
                self.loads
                    .get_or_insert_with((label.clone(), addr), Arc::default)
            })
            .collect()
    }

    /// `service`'s breaker with `limits`.
    pub fn breaker(
        &self,
        service: &str,
        limits: sinew_model::CircuitBreaker,
    ) -> Arc<CircuitBreaker> {
        self.breakers
            .get_or_insert_with((Arc::from(service), limits), || {
                Arc::new(CircuitBreaker::from_model(&limits))
            })
    }

    /// The retry budget of the cluster labelled `label`.
    pub fn budget(&self, label: &Arc<str>, model: &sinew_model::RetryBudget) -> Arc<RetryBudget> {
        let key = (label.clone(), model.ratio.to_bits(), model.min_per_second);
        self.budgets
            .get_or_insert_with(key, || Arc::new(RetryBudget::from_model(model)))
    }

    /// Outlier detection over cluster `label`'s endpoints at `addrs`, in
    /// balancer order.
    pub fn outlier_detector(
        &self,
        label: &Arc<str>,
        addrs: impl IntoIterator<Item = SocketAddr>,
        config: OutlierConfig,
    ) -> OutlierDetector {
        let states = addrs
            .into_iter()
            .map(|addr| {
                self.outliers
                    .get_or_insert_with((label.clone(), addr), Arc::default)
            })
            .collect();
        let lock = self
            .ejections
            .get_or_insert_with(label.clone(), Arc::default);
        OutlierDetector::sharing(self.origin, states, lock, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_value_lives_while_a_holder_does() {
        let kept: Kept<u32, String> = Kept::default();
        let first = kept.get_or_insert_with(1, || Arc::new("one".to_owned()));
        let again = kept.get_or_insert_with(1, || Arc::new("other".to_owned()));
        assert!(Arc::ptr_eq(&first, &again));
        drop((first, again));
        let fresh = kept.get_or_insert_with(1, || Arc::new("new".to_owned()));
        assert_eq!(*fresh, "new", "no holder left: made afresh");
    }

    #[test]
    fn dead_entries_are_swept() {
        let kept: Kept<u32, u32> = Kept::default();
        let held: Vec<_> = (0..10)
            .map(|i| kept.get_or_insert_with(i, || Arc::new(i)))
            .collect();
        for i in 100..1100 {
            drop(kept.get_or_insert_with(i, || Arc::new(i)));
        }
        let entries = kept.entries.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(entries.map.len() < 100, "{} entries", entries.map.len());
        drop(entries);
        assert_eq!(kept.live(), held.len());
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn an_ejection_outlives_a_config_that_adds_an_endpoint() {
        let states = KeptStates::default();
        let config = OutlierConfig {
            consecutive_errors: 2,
            max_ejection_percent: 100,
            ..OutlierConfig::default()
        };
        let now = Instant::now();
        let a: Arc<str> = Arc::from("a");
        let old = states.outlier_detector(&a, [addr(1), addr(2)], config);
        old.report(1, false, now);
        old.report(1, false, now);
        assert!(old.is_ejected(1, now));
        old.report(0, false, now);

        // The endpoint set changes: addr(2) moves to index 2.
        let new = states.outlier_detector(&a, [addr(1), addr(3), addr(2)], config);
        assert!(new.is_ejected(2, now), "still ejected");
        assert!(!new.is_ejected(1, now), "the new endpoint starts clean");
        assert_eq!(new.times_ejected(2, now), 1);
        new.report(0, false, now);
        assert!(new.is_ejected(0, now), "the error run carried on");
        let later = now + config.base_ejection;
        assert!(!new.is_ejected(2, later), "returns after its time");
        let other = states.outlier_detector(&Arc::from("a/v1"), [addr(2)], config);
        assert!(!other.is_ejected(0, now), "another cluster's endpoint");
    }

    #[test]
    fn the_percent_holds_across_the_detectors_of_one_cluster() {
        let states = KeptStates::default();
        let config = OutlierConfig {
            consecutive_errors: 1,
            max_ejection_percent: 50,
            ..OutlierConfig::default()
        };
        let now = Instant::now();
        let a: Arc<str> = Arc::from("a");
        let old = states.outlier_detector(&a, [addr(1), addr(2)], config);
        let new = states.outlier_detector(&a, [addr(1), addr(2), addr(3)], config);
        old.report(0, false, now);
        assert!(new.is_ejected(0, now));
        new.report(1, false, now);
        assert!(!new.is_ejected(1, now), "one of three is the most at 50 %");
        assert_eq!(new.refused_ejections(), 1);
    }

    #[test]
    fn loads_carry_over_by_cluster_and_address() {
        let states = KeptStates::default();
        let a: Arc<str> = Arc::from("a");
        let old = states.loads(&a, [addr(1), addr(2)]);
        let _in_flight = old[1].start_owned();
        let new = states.loads(&a, [addr(2), addr(3)]);
        assert_eq!(new[0].in_flight(), 1, "the old config's request counts");
        assert_eq!(new[1].in_flight(), 0);
        let subset = states.loads(&Arc::from("a/v1"), [addr(2)]);
        assert_eq!(subset[0].in_flight(), 0, "each cluster has its own");
    }

    #[test]
    fn breakers_and_budgets_carry_over_while_their_settings_hold() {
        let states = KeptStates::default();
        let limits = sinew_model::CircuitBreaker {
            max_requests: 1,
            ..sinew_model::CircuitBreaker::default()
        };
        let old = states.breaker("a", limits);
        let held = old.try_request();
        assert!(held.is_some());
        let new = states.breaker("a", limits);
        assert!(
            new.try_request().is_none(),
            "the old config's request counts"
        );
        let raised = states.breaker(
            "a",
            sinew_model::CircuitBreaker {
                max_requests: 2,
                ..limits
            },
        );
        assert!(raised.try_request().is_some(), "new limits start afresh");

        let label: Arc<str> = Arc::from("a");
        let model = sinew_model::RetryBudget {
            ratio: 0.0,
            min_per_second: 0,
        };
        let budget = states.budget(&label, &model);
        let now = Instant::now();
        budget.record_request(now);
        assert!(Arc::ptr_eq(&budget, &states.budget(&label, &model)));
        let changed = sinew_model::RetryBudget {
            ratio: 0.5,
            ..model
        };
        let fresh = states.budget(&label, &changed);
        assert_eq!(fresh.requests_in_window(now + Duration::from_millis(1)), 0);
    }
}
