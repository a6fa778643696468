//! Behaviour of every algorithm through the public `Balancer` API.

use super::*;
use std::time::Duration;

fn seeded() -> fastrand::Rng {
    fastrand::Rng::with_seed(0x5eed)
}

fn shares(
    balancer: &Balancer,
    picks: usize,
    mut pick: impl FnMut(&Balancer) -> Option<usize>,
) -> Vec<f64> {
    let mut counts = vec![0usize; balancer.len()];
    for _ in 0..picks {
        counts[pick(balancer).expect("non-empty")] += 1;
    }
    counts.iter().map(|&c| c as f64 / picks as f64).collect()
}

fn assert_proportional(weights: &[u32], observed: &[f64], tolerance: f64) {
    let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
    for (i, (&w, &got)) in weights.iter().zip(observed).enumerate() {
        let want = f64::from(w) / total;
        assert!(
            (got - want).abs() <= tolerance,
            "endpoint {i}: want {want:.3}, got {got:.3} ({observed:?})"
        );
    }
}

fn addresses(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("10.1.{}.{}:8080", i / 256, i % 256).into_bytes())
        .collect()
}

fn keyed(algorithm: Algorithm, weights: &[u32], addresses: &[Vec<u8>]) -> Balancer {
    let keys: Vec<&[u8]> = addresses.iter().map(Vec::as_slice).collect();
    Balancer::with_keys(algorithm, weights, &keys)
}

#[test]
fn balancer_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Balancer>();
    check::<Arc<EndpointLoad>>();
    check::<InFlightOwned>();
}

#[test]
fn algorithm_names_round_trip() {
    for algorithm in Algorithm::ALL {
        assert_eq!(Algorithm::from_name(algorithm.name()), Some(algorithm));
    }
    assert_eq!(Algorithm::from_name("fastest"), None);
}

#[test]
fn empty_balancer_picks_nothing() {
    for algorithm in Algorithm::ALL {
        let balancer = Balancer::new(algorithm, &[]);
        assert!(balancer.is_empty());
        assert_eq!(balancer.pick(None), None, "{algorithm:?}");
        assert_eq!(balancer.pick(Some(42)), None, "{algorithm:?}");
        assert_eq!(
            balancer.pick_where(Some(42), |_| true),
            None,
            "{algorithm:?}"
        );
    }
}

#[test]
fn single_endpoint_is_always_picked() {
    for algorithm in Algorithm::ALL {
        let balancer = Balancer::new(algorithm, &[3]);
        for hash in [None, Some(0), Some(u64::MAX)] {
            assert_eq!(balancer.pick(hash), Some(0), "{algorithm:?}");
        }
    }
}

#[test]
fn round_robin_is_exactly_even_and_ignores_weights() {
    let balancer = Balancer::new(Algorithm::RoundRobin, &[5, 1, 1]);
    let observed = shares(&balancer, 300, |b| b.pick(None));
    assert_eq!(observed, [1.0 / 3.0; 3]);
}

#[test]
fn random_follows_weights() {
    let weights = [1, 2, 3, 4];
    let balancer = Balancer::new(Algorithm::Random, &weights);
    let mut rng = seeded();
    let observed = shares(&balancer, 100_000, |b| b.pick_with_rng(None, &mut rng));
    assert_proportional(&weights, &observed, 0.01);
}

#[test]
fn weighted_round_robin_is_smooth() {
    let balancer = Balancer::new(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    let picks: Vec<_> = (0..14)
        .map(|_| balancer.pick(None).expect("non-empty"))
        .collect();
    assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
}

#[test]
fn idle_least_request_follows_weights() {
    let weights = [1, 3];
    let balancer = Balancer::new(Algorithm::LeastRequest, &weights);
    let mut rng = seeded();
    let observed = shares(&balancer, 40_000, |b| b.pick_with_rng(None, &mut rng));
    // Nothing in flight: every comparison ties and the first candidate,
    // drawn by weight, wins.
    assert_proportional(&weights, &observed, 0.02);
}

#[test]
fn idle_peak_ewma_spreads_equal_endpoints_and_prefers_heavy_ones() {
    let balancer = Balancer::new(Algorithm::PeakEwma, &[1; 4]);
    let mut rng = seeded();
    let observed = shares(&balancer, 40_000, |b| b.pick_with_rng(None, &mut rng));
    assert_proportional(&[1; 4], &observed, 0.02);
    // Equal latency, nothing in flight: cost ÷ weight favours the heavier.
    let balancer = Balancer::new(Algorithm::PeakEwma, &[1, 3]);
    for _ in 0..100 {
        assert_eq!(balancer.pick_with_rng(None, &mut rng), Some(1));
    }
}

#[test]
fn least_request_avoids_the_busiest() {
    let balancer = Balancer::new(Algorithm::LeastRequest, &[1; 10]);
    let _busy: Vec<_> = (0..5).map(|_| balancer.load(3).start()).collect();
    let _one = balancer.load(7).start();
    let mut rng = seeded();
    let observed = shares(&balancer, 10_000, |b| b.pick_with_rng(None, &mut rng));
    assert_eq!(observed[3], 0.0);
    assert!(observed[7] < 0.05, "{observed:?}");
}

#[test]
fn least_request_divides_load_by_weight() {
    let balancer = Balancer::new(Algorithm::LeastRequest, &[1, 3]);
    let _a = balancer.load(0).start();
    let _b: Vec<_> = (0..2).map(|_| balancer.load(1).start()).collect();
    // 1/1 in flight against 2/3: the heavier endpoint is cheaper.
    let mut rng = seeded();
    for _ in 0..100 {
        assert_eq!(balancer.pick_with_rng(None, &mut rng), Some(1));
    }
}

#[test]
fn peak_ewma_steers_away_from_a_slow_endpoint() {
    let balancer = Balancer::new(Algorithm::PeakEwma, &[1; 5]);
    balancer.load(2).start().finish(Duration::from_millis(200));
    for i in [0, 1, 3, 4] {
        balancer.load(i).start().finish(Duration::from_micros(300));
    }
    let mut rng = seeded();
    let observed = shares(&balancer, 10_000, |b| b.pick_with_rng(None, &mut rng));
    assert_eq!(observed[2], 0.0, "{observed:?}");
    // The others still share the traffic (P2C: even the costliest of them
    // wins whenever it is drawn against the slow one).
    for i in [0, 1, 3, 4] {
        assert!(observed[i] > 0.05, "{observed:?}");
    }
}

#[test]
fn peak_ewma_weighs_in_flight_requests() {
    let balancer = Balancer::new(Algorithm::PeakEwma, &[1, 1]);
    let _busy: Vec<_> = (0..3).map(|_| balancer.load(0).start()).collect();
    let mut rng = seeded();
    for _ in 0..100 {
        assert_eq!(balancer.pick_with_rng(None, &mut rng), Some(1));
    }
}

#[test]
fn loads_carry_over_to_the_next_version() {
    let old = Balancer::new(Algorithm::LeastRequest, &[1, 1]);
    let guard = old.load_arc(1).start_owned();
    let loads = [Arc::clone(old.load_arc(1))];
    let next = Balancer::with_loads(Algorithm::LeastRequest, &[1, 1], &[], &loads);
    assert_eq!(next.load(0).in_flight(), 1);
    assert_eq!(next.load(1).in_flight(), 0);
    drop(guard);
    assert_eq!(next.load(0).in_flight(), 0);
}

#[test]
fn hash_balancers_are_sticky() {
    for algorithm in [Algorithm::RingHash, Algorithm::Maglev] {
        let balancer = keyed(algorithm, &[1; 10], &addresses(10));
        let rebuilt = keyed(algorithm, &[1; 10], &addresses(10));
        for user in 0..1_000 {
            let hash = hash_bytes(format!("user-{user}").as_bytes());
            let first = balancer.pick(Some(hash));
            assert_eq!(balancer.pick(Some(hash)), first, "{algorithm:?}");
            assert_eq!(rebuilt.pick(Some(hash)), first, "{algorithm:?}");
        }
    }
}

#[test]
fn removing_one_of_ten_endpoints_moves_few_keys() {
    for algorithm in [Algorithm::RingHash, Algorithm::Maglev] {
        let all = addresses(10);
        let mut fewer = all.clone();
        let removed = fewer.remove(4);
        let before = keyed(algorithm, &[1; 10], &all);
        let after = keyed(algorithm, &[1; 9], &fewer);
        let mut moved = 0;
        for user in 0..10_000 {
            let hash = hash_bytes(format!("user-{user}").as_bytes());
            let old = &all[before.pick(Some(hash)).expect("non-empty")];
            let new = &fewer[after.pick(Some(hash)).expect("non-empty")];
            if old != new {
                moved += 1;
                assert!(
                    *old == removed || algorithm == Algorithm::Maglev,
                    "ring moved a surviving key"
                );
            }
        }
        // Keys of the removed endpoint (~10 %) must move; few others may.
        assert!((800..2_000).contains(&moved), "{algorithm:?} moved {moved}");
    }
}

#[test]
fn weights_bias_hash_balancers() {
    for (algorithm, tolerance) in [(Algorithm::RingHash, 0.04), (Algorithm::Maglev, 0.01)] {
        let weights = [1, 2, 3, 4];
        let balancer = keyed(algorithm, &weights, &addresses(4));
        let mut user = 0u64;
        let observed = shares(&balancer, 100_000, |b| {
            user += 1;
            b.pick(Some(hash_bytes(&user.to_le_bytes())))
        });
        assert_proportional(&weights, &observed, tolerance);
    }
}

#[test]
fn hash_balancers_without_a_hash_pick_randomly_by_weight() {
    for algorithm in [Algorithm::RingHash, Algorithm::Maglev] {
        let weights = [1, 3];
        let balancer = keyed(algorithm, &weights, &addresses(2));
        let mut rng = seeded();
        let observed = shares(&balancer, 20_000, |b| b.pick_with_rng(None, &mut rng));
        assert_proportional(&weights, &observed, 0.05);
    }
}

#[test]
fn pick_where_never_returns_an_ineligible_endpoint() {
    let mut masks = seeded();
    let mut rng = seeded();
    for algorithm in Algorithm::ALL {
        for n in [1, 2, 3, 10, 100] {
            let weights: Vec<u32> = (0..n).map(|i| 1 + (i as u32 % 4) * 10).collect();
            let balancer = keyed(algorithm, &weights, &addresses(n));
            for _ in 0..200 {
                // Eligible sets from empty to full, often a single endpoint.
                let density = masks.u32(0..=100);
                let mask: Vec<bool> = (0..n).map(|_| masks.u32(0..100) < density).collect();
                let hash = masks.bool().then(|| masks.u64(..));
                let picked = balancer.pick_where_with_rng(hash, &mut rng, |i| mask[i]);
                match picked {
                    Some(i) => assert!(mask[i], "{algorithm:?} picked ineligible {i}"),
                    None => assert!(
                        mask.iter().all(|&m| !m),
                        "{algorithm:?} gave up with {mask:?}"
                    ),
                }
            }
        }
    }
}

#[test]
fn pick_where_retries_on_another_endpoint() {
    for algorithm in Algorithm::ALL {
        let balancer = keyed(algorithm, &[1, 1, 1], &addresses(3));
        let hash = Some(hash_bytes(b"session-7"));
        let first = balancer.pick(hash).expect("non-empty");
        let retry = balancer
            .pick_where(hash, |i| i != first)
            .expect("others eligible");
        assert_ne!(retry, first, "{algorithm:?}");
    }
}

#[test]
fn hash_balancers_stay_consistent_with_most_endpoints_ejected() {
    for algorithm in [Algorithm::RingHash, Algorithm::Maglev] {
        let balancer = keyed(algorithm, &[1; 100], &addresses(100));
        let eligible = |i: usize| i.is_multiple_of(25);
        for user in 0..500 {
            let hash = Some(hash_bytes(format!("user-{user}").as_bytes()));
            let first = balancer.pick_where(hash, eligible).expect("some eligible");
            assert!(eligible(first));
            assert_eq!(
                balancer.pick_where(hash, eligible),
                Some(first),
                "{algorithm:?}"
            );
        }
    }
}
