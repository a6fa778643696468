//! Endpoint choice under ejections and health: the panic threshold, and retries that avoid the endpoint just tried.
//!
//! Normally only eligible endpoints (not ejected, not unhealthy) are picked.
//! When fewer than `panic_threshold_percent` of the endpoints are healthy,
//! the cluster is in **panic**: excluding the unhealthy would pile all
//! traffic on the few left (or fail every request), so eligibility is ignored
//! and the balancer picks among all endpoints, as Envoy does. A threshold of
//! 0 disables panic.

use crate::balance::Balancer;

/// Whether `healthy` of `total` endpoints is below `panic_threshold_percent`
/// (`healthy × 100 < threshold × total`). Never with no endpoints or a 0
/// threshold.
///
/// ```
/// use sinew_proxy::resilience::in_panic;
/// assert!(in_panic(1, 4, 50));
/// assert!(!in_panic(2, 4, 50));
/// assert!(!in_panic(0, 4, 0));
/// ```
#[must_use]
pub fn in_panic(healthy: usize, total: usize, panic_threshold_percent: u32) -> bool {
    (healthy as u128) * 100 < u128::from(panic_threshold_percent) * total as u128
}

/// Picks an endpoint `eligible` accepts, or any endpoint in panic (see the
/// [module docs](self)); `healthy_count` is how many endpoints `eligible`
/// accepts. `None` only when the balancer has no endpoints: should
/// `eligible` reject every endpoint while `healthy_count` says otherwise (a
/// stale count), the pick also falls back to all endpoints.
///
/// ```
/// use sinew_proxy::balance::{Algorithm, Balancer};
/// use sinew_proxy::resilience::pick_eligible;
/// let balancer = Balancer::new(Algorithm::RoundRobin, &[1, 1, 1, 1]);
/// // Three of four healthy, threshold 50 %: only the healthy are picked.
/// assert!((0..8).all(|_| pick_eligible(&balancer, None, |i| i != 2, 50, 3) != Some(2)));
/// ```
pub fn pick_eligible(
    balancer: &Balancer,
    hash: Option<u64>,
    eligible: impl Fn(usize) -> bool,
    panic_threshold_percent: u32,
    healthy_count: usize,
) -> Option<usize> {
    pick_excluding(
        balancer,
        hash,
        eligible,
        None,
        panic_threshold_percent,
        healthy_count,
    )
}

/// Like [`pick_eligible`], avoiding `previous` (the endpoint a retry's last
/// try went to) when any other endpoint qualifies: first an eligible
/// endpoint other than `previous`, then any eligible one (`previous`
/// included). In panic: any endpoint other than `previous`, then `previous`.
pub fn pick_excluding(
    balancer: &Balancer,
    hash: Option<u64>,
    eligible: impl Fn(usize) -> bool,
    previous: Option<usize>,
    panic_threshold_percent: u32,
    healthy_count: usize,
) -> Option<usize> {
    let other = |i: usize| Some(i) != previous;
    let any = || {
        balancer
            .pick_where(hash, other)
            .or_else(|| balancer.pick(hash))
    };
    if in_panic(healthy_count, balancer.len(), panic_threshold_percent) {
        return any();
    }
    balancer
        .pick_where(hash, |i| other(i) && eligible(i))
        .or_else(|| balancer.pick_where(hash, &eligible))
        .or_else(any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Algorithm;

    fn counts(mut pick: impl FnMut() -> Option<usize>, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..4000 {
            counts[pick().expect("an endpoint")] += 1;
        }
        counts
    }

    #[test]
    fn panic_boundary() {
        assert!(!in_panic(5, 10, 50));
        assert!(in_panic(4, 10, 50));
        assert!(in_panic(0, 10, 1));
        assert!(!in_panic(10, 10, 100));
        assert!(in_panic(9, 10, 100));
        assert!(!in_panic(0, 0, 50), "no endpoints: nothing to panic over");
        assert!(!in_panic(0, usize::MAX, 0));
    }

    #[test]
    fn above_the_threshold_only_eligible_endpoints() {
        for algorithm in Algorithm::ALL {
            let balancer = Balancer::new(algorithm, &[1, 1, 1, 1]);
            let eligible = |i: usize| i != 1 && i != 3;
            let seen = counts(|| pick_eligible(&balancer, None, eligible, 50, 2), 4);
            assert_eq!((seen[1], seen[3]), (0, 0), "{algorithm:?}: {seen:?}");
            assert!(seen[0] > 0 && seen[2] > 0, "{algorithm:?}: {seen:?}");
        }
    }

    #[test]
    fn below_the_threshold_traffic_goes_to_all() {
        for algorithm in Algorithm::ALL {
            let balancer = Balancer::new(algorithm, &[1, 1, 1, 1]);
            let eligible = |i: usize| i == 0;
            let seen = counts(|| pick_eligible(&balancer, None, eligible, 50, 1), 4);
            assert!(seen.iter().all(|&c| c > 500), "{algorithm:?}: {seen:?}");
        }
    }

    #[test]
    fn all_ejected_still_flows() {
        let balancer = Balancer::new(Algorithm::LeastRequest, &[1, 1, 1]);
        let seen = counts(|| pick_eligible(&balancer, None, |_| false, 50, 0), 3);
        assert!(seen.iter().all(|&c| c > 0), "{seen:?}");
        // Even with panic disabled, nothing eligible is not a failure.
        assert!(pick_eligible(&balancer, None, |_| false, 0, 0).is_some());
    }

    #[test]
    fn empty_balancer_gives_none() {
        let balancer = Balancer::new(Algorithm::RoundRobin, &[]);
        assert_eq!(pick_eligible(&balancer, None, |_| true, 50, 0), None);
        assert_eq!(
            pick_excluding(&balancer, None, |_| true, Some(0), 50, 0),
            None
        );
    }

    #[test]
    fn retry_avoids_the_previous_endpoint() {
        for algorithm in Algorithm::ALL {
            let balancer = Balancer::new(algorithm, &[1, 1, 1]);
            for hash in [None, Some(42)] {
                for previous in 0..3 {
                    let seen = counts(
                        || pick_excluding(&balancer, hash, |_| true, Some(previous), 50, 3),
                        3,
                    );
                    assert_eq!(seen[previous], 0, "{algorithm:?} {hash:?}: {seen:?}");
                }
            }
        }
    }

    #[test]
    fn retry_excludes_previous_among_eligible_and_falls_back_to_it() {
        let balancer = Balancer::new(Algorithm::Random, &[1, 1, 1, 1]);
        let eligible = |i: usize| i <= 1;
        let seen = counts(
            || pick_excluding(&balancer, None, eligible, Some(0), 50, 2),
            4,
        );
        assert_eq!(seen, [0, 4000, 0, 0]);
        // Only the previous endpoint is eligible (and no panic): reuse it.
        let only = |i: usize| i == 0;
        let seen = counts(|| pick_excluding(&balancer, None, only, Some(0), 25, 1), 4);
        assert_eq!(seen, [4000, 0, 0, 0]);
    }

    #[test]
    fn in_panic_a_retry_still_avoids_previous() {
        let balancer = Balancer::new(Algorithm::RoundRobin, &[1, 1]);
        let seen = counts(
            || pick_excluding(&balancer, None, |_| false, Some(1), 50, 0),
            2,
        );
        assert_eq!(seen, [4000, 0]);
        let single = Balancer::new(Algorithm::RoundRobin, &[1]);
        assert_eq!(
            pick_excluding(&single, None, |_| false, Some(0), 50, 0),
            Some(0)
        );
    }
}
