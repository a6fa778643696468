//! A get-or-create map from label values to shared handles, so a reload reuses existing series.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Owned label values of one series, in the family's label order.
pub(crate) type LabelValues = Box<[Box<str>]>;

/// The handles of one metric family (or of several families sharing a label
/// set), keyed by label values.
///
/// Only config building and rendering take the lock; the request path holds
/// `Arc<V>` handles and never touches the map. Entries are never removed: a
/// series that a reload stops using keeps its last values, so counters never
/// go backwards if the series comes back. The label space is bounded by
/// config (services, routes, endpoints), never by requests.
#[derive(Debug)]
pub(crate) struct Family<V> {
    series: Mutex<BTreeMap<LabelValues, Arc<V>>>,
}

impl<V> Default for Family<V> {
    fn default() -> Self {
        Family {
            series: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<V: Default> Family<V> {
    /// The handle for `values`, created on first use.
    pub(crate) fn get_or_create(&self, values: &[&str]) -> Arc<V> {
        let key: LabelValues = values.iter().map(|v| Box::from(*v)).collect();
        Arc::clone(self.lock().entry(key).or_default())
    }
}

impl<V> Family<V> {
    /// The series in label order, locked for the duration of a render.
    pub(crate) fn lock(&self) -> MutexGuard<'_, BTreeMap<LabelValues, Arc<V>>> {
        // The map is always left consistent (single insert), so a panic
        // elsewhere while it was held cannot have corrupted it.
        self.series.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Counter;

    #[test]
    fn same_labels_give_the_same_handle() {
        let family = Family::<Counter>::default();
        let a = family.get_or_create(&["reviews", "10.0.0.1:80"]);
        a.add(5);
        let again = family.get_or_create(&["reviews", "10.0.0.1:80"]);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.get(), 5);
        let other = family.get_or_create(&["reviews", "10.0.0.2:80"]);
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(family.lock().len(), 2);
    }
}
