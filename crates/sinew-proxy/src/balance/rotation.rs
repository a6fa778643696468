//! Round-robin and smooth weighted round-robin: a precomputed cycle walked by
//! one atomic cursor.
//!
//! Smooth WRR is nginx's algorithm: each turn every endpoint gains its weight,
//! the richest is picked and pays the total. Running it live needs a lock, so
//! the cycle it produces (which repeats every `Σ weights / gcd` turns) is
//! computed once when the balancer is built and walked with `fetch_add`.
//! Cycles longer than [`MAX_CYCLE`] are approximated by scaling the weights
//! down proportionally (each stays at least 1).
//!
//! Building costs O(cycle × endpoints); with the cap that is at most
//! 16 Ki × n steps, paid once per config version.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Longest precomputed smooth-WRR cycle (grows to the endpoint count if that
/// is larger, so each endpoint keeps at least one turn).
pub(crate) const MAX_CYCLE: u64 = 16 * 1024;

/// How many cycle positions `pick_where` inspects before falling back.
const SCAN_LIMIT: usize = 32;

/// A cycle of endpoint indices and a shared cursor into it.
#[derive(Debug)]
pub(crate) struct Rotation {
    cursor: AtomicUsize,
    /// Endpoint per turn; empty for plain round-robin (turn `t` is `t % len`).
    cycle: Box<[u32]>,
    len: usize,
}

impl Rotation {
    /// Plain round-robin over `len` endpoints; weights are ignored.
    pub(crate) fn round_robin(len: usize) -> Rotation {
        Rotation {
            cursor: AtomicUsize::new(0),
            cycle: Box::default(),
            len,
        }
    }

    /// nginx's smooth weighted round-robin over `weights` (each at least 1).
    pub(crate) fn smooth(weights: &[u32]) -> Rotation {
        let len = weights.len();
        Rotation {
            cursor: AtomicUsize::new(0),
            cycle: smooth_cycle(weights).into_boxed_slice(),
            len,
        }
    }

    /// The precomputed cycle (empty for plain round-robin).
    #[cfg(test)]
    pub(crate) fn cycle(&self) -> &[u32] {
        &self.cycle
    }

    /// The next endpoint in turn that `eligible` accepts, or `None` if the
    /// scan gave up (plain round-robin scans every endpoint; smooth WRR scans
    /// [`SCAN_LIMIT`] turns and leaves the rest to the caller's fallback).
    #[inline]
    pub(crate) fn next_where(&self, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let turn = self.cursor.fetch_add(1, Relaxed);
        if self.cycle.is_empty() {
            let start = turn % self.len;
            return (0..self.len)
                .map(|k| (start + k) % self.len)
                .find(|&i| eligible(i));
        }
        let start = turn % self.cycle.len();
        (0..self.cycle.len().min(SCAN_LIMIT))
            .map(|k| self.cycle[(start + k) % self.cycle.len()] as usize)
            .find(|&i| eligible(i))
    }
}

/// One full cycle of smooth WRR.
fn smooth_cycle(weights: &[u32]) -> Vec<u32> {
    let weights = cycle_weights(weights);
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut cycle = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += w;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        cycle.push(best as u32);
    }
    cycle
}

/// Weights reduced by their gcd and, if their sum still exceeds the cap,
/// scaled down proportionally (rounding, never below 1).
fn cycle_weights(weights: &[u32]) -> Vec<i64> {
    let divisor = super::weights_gcd(weights);
    let reduced: Vec<u64> = weights.iter().map(|&w| u64::from(w) / divisor).collect();
    let sum: u64 = reduced.iter().sum();
    let cap = MAX_CYCLE.max(weights.len() as u64);
    let scaled = |w: u64| {
        if sum <= cap {
            w
        } else {
            ((u128::from(w) * u128::from(cap) + u128::from(sum) / 2) / u128::from(sum)).max(1)
                as u64
        }
    };
    reduced.into_iter().map(|w| scaled(w) as i64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(rotation: &Rotation, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| rotation.next_where(|_| true).expect("all eligible"))
            .collect()
    }

    #[test]
    fn round_robin_cycles_in_order() {
        let rr = Rotation::round_robin(3);
        assert_eq!(take(&rr, 7), [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn smooth_sequence_for_5_1_1_is_nginx_s() {
        let wrr = Rotation::smooth(&[5, 1, 1]);
        // a a b a c a a, then again.
        assert_eq!(wrr.cycle(), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(take(&wrr, 14), [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn cycle_is_reduced_by_the_gcd() {
        assert_eq!(
            Rotation::smooth(&[10, 20, 30]).cycle(),
            Rotation::smooth(&[1, 2, 3]).cycle()
        );
        assert_eq!(Rotation::smooth(&[4, 4]).cycle(), [0, 1]);
    }

    #[test]
    fn long_cycles_are_capped_and_stay_proportional() {
        let wrr = Rotation::smooth(&[1_000_000, 333_333, 1]);
        let cycle = wrr.cycle();
        assert!(cycle.len() as u64 <= MAX_CYCLE + 3, "{}", cycle.len());
        let count = |e: u32| cycle.iter().filter(|&&i| i == e).count() as f64;
        let ratio = count(0) / count(1);
        assert!((ratio - 3.0).abs() < 0.01, "{ratio}");
        assert_eq!(count(2), 1.0);
    }

    #[test]
    fn every_endpoint_keeps_a_turn_when_there_are_more_than_the_cap() {
        let n = MAX_CYCLE as usize + 5;
        let mut weights = vec![1u32; n];
        weights[0] = 1_000;
        let scaled = cycle_weights(&weights);
        assert!(scaled.iter().all(|&w| w >= 1));
        assert!(scaled[0] > 900, "{}", scaled[0]);
        assert!(scaled.iter().sum::<i64>() as usize <= 2 * n);
    }

    #[test]
    fn scans_skip_ineligible_endpoints() {
        let rr = Rotation::round_robin(4);
        let picks: Vec<_> = (0..6).map(|_| rr.next_where(|i| i % 2 == 1)).collect();
        assert!(picks.iter().all(|p| matches!(p, Some(1 | 3))), "{picks:?}");
        assert_eq!(rr.next_where(|_| false), None);
        let wrr = Rotation::smooth(&[5, 1, 1]);
        assert_eq!(wrr.next_where(|i| i == 2), Some(2));
        assert_eq!(wrr.next_where(|_| false), None);
    }
}
