//! Which endpoints a backend's traffic goes to: failover between priority levels and panic mode.

use super::Balancer;

/// Where [`Balancer::choose`] sends a backend's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolChoice {
    /// Balance over the usable (healthy, not ejected) endpoints of level `i`.
    Usable(usize),
    /// Panic mode: balance over all endpoints of level `i`, ignoring health.
    Panic(usize),
    /// No endpoint to send to: answer with the rule's `fallback` (else 503).
    Nothing,
}

impl Balancer {
    /// Whether a pool of `total` endpoints of which `usable` are healthy and not
    /// ejected is below the panic threshold. Never with `total == 0`, never
    /// when the threshold is 0.
    pub fn panics(&self, usable: usize, total: usize) -> bool {
        // usable / total < threshold / 100, in integers.
        let threshold = u128::from(self.panic_threshold_percent.min(100));
        total > 0 && (usable as u128) * 100 < (total as u128) * threshold
    }

    /// Picks the pool for a backend whose priority levels (its `subset`, then
    /// each `failover` subset; a single level for a whole service) have
    /// `(usable, total)` endpoints each:
    ///
    /// 1. the first level with a usable endpoint that is not below the panic
    ///    threshold, over its usable endpoints;
    /// 2. else, when panic mode is on (threshold above 0), all endpoints of the
    ///    first level that has any;
    /// 3. else nothing.
    pub fn choose(&self, levels: &[(usize, usize)]) -> PoolChoice {
        let healthy_enough =
            |&(usable, total): &(usize, usize)| usable > 0 && !self.panics(usable, total);
        if let Some(i) = levels.iter().position(healthy_enough) {
            return PoolChoice::Usable(i);
        }
        if self.panic_threshold_percent > 0 {
            if let Some(i) = levels.iter().position(|&(_, total)| total > 0) {
                return PoolChoice::Panic(i);
            }
        }
        PoolChoice::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(threshold: u32) -> Balancer {
        Balancer {
            panic_threshold_percent: threshold,
            ..Balancer::default()
        }
    }

    #[test]
    fn panic_is_below_the_threshold_share() {
        let b = Balancer::default();
        assert!(!b.panics(5, 10) && b.panics(4, 10));
        assert!(b.panics(0, 3) && !b.panics(2, 3));
        assert!(!b.panics(0, 0));
        assert!(!with(0).panics(0, 10));
        assert!(with(100).panics(9, 10) && !with(100).panics(10, 10));
    }

    #[test]
    fn the_first_healthy_enough_level_wins_else_panic_on_the_first_populated() {
        let b = Balancer::default();
        assert_eq!(b.choose(&[(3, 3)]), PoolChoice::Usable(0));
        assert_eq!(b.choose(&[(1, 10)]), PoolChoice::Panic(0));
        assert_eq!(b.choose(&[(0, 3)]), PoolChoice::Panic(0));
        assert_eq!(b.choose(&[(1, 3), (3, 3)]), PoolChoice::Usable(1));
        assert_eq!(b.choose(&[(2, 3), (3, 3)]), PoolChoice::Usable(0));
        assert_eq!(b.choose(&[(0, 0), (0, 2), (1, 4)]), PoolChoice::Panic(1));
        assert_eq!(b.choose(&[(0, 0), (0, 0)]), PoolChoice::Nothing);
        assert_eq!(b.choose(&[]), PoolChoice::Nothing);
        assert_eq!(with(0).choose(&[(0, 3), (1, 9)]), PoolChoice::Usable(1));
        assert_eq!(with(0).choose(&[(0, 3)]), PoolChoice::Nothing);
    }
}
