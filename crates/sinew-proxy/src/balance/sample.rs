//! Weighted random sampling of endpoints: Vose's alias table (O(1) per draw)
//! and the randomness sources the balancers draw from.

/// Where a balancer's randomness comes from: the thread-local generator on the
/// request path, a seeded [`fastrand::Rng`] in tests and benchmarks.
pub(crate) trait Entropy {
    /// A uniform integer in `0..n`; `n` must be at least 1.
    fn below(&mut self, n: usize) -> usize;
    /// A uniform 64-bit integer.
    fn next_u64(&mut self) -> u64;
}

/// `fastrand`'s thread-local generator: no lock, no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThreadRng;

impl Entropy for ThreadRng {
    fn below(&mut self, n: usize) -> usize {
        fastrand::usize(..n)
    }
    fn next_u64(&mut self) -> u64 {
        fastrand::u64(..)
    }
}

impl Entropy for fastrand::Rng {
    fn below(&mut self, n: usize) -> usize {
        self.usize(..n)
    }
    fn next_u64(&mut self) -> u64 {
        self.u64(..)
    }
}

/// Draws endpoint indices with probability proportional to their weights.
///
/// Equal weights skip the table entirely. Otherwise each slot `i` keeps
/// itself with probability `keep[i] / 2^32` and otherwise yields `alias[i]`.
#[derive(Debug)]
pub(crate) struct Sampler {
    len: usize,
    /// `(keep threshold, alias)` per slot; empty when all weights are equal.
    table: Box<[(u64, u32)]>,
}

/// A threshold that always keeps the slot (draws are below `2^32`).
const ALWAYS: u64 = 1 << 32;

impl Sampler {
    /// Builds the alias table for `weights` (each at least 1).
    pub(crate) fn new(weights: &[u32]) -> Sampler {
        let len = weights.len();
        let uniform = weights.windows(2).all(|w| w[0] == w[1]);
        if uniform {
            return Sampler {
                len,
                table: Box::default(),
            };
        }
        // Scaled so that the mean slot mass is `total`: slot i holds
        // weight_i * len, and a slot is full when it holds exactly `total`.
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let mut mass: Vec<u128> = weights
            .iter()
            .map(|&w| u128::from(w) * len as u128)
            .collect();
        let mut table = vec![(ALWAYS, 0u32); len];
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..len).partition(|&i| mass[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            table[s] = (((mass[s] << 32) / total) as u64, l as u32);
            mass[l] -= total - mass[s];
            if mass[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Whatever remains is full up to rounding: it always keeps itself.
        Sampler {
            len,
            table: table.into_boxed_slice(),
        }
    }

    /// One weighted draw; `len` must be at least 1.
    #[inline]
    pub(crate) fn draw(&self, rng: &mut impl Entropy) -> usize {
        if self.table.is_empty() {
            return rng.below(self.len);
        }
        let bits = rng.next_u64();
        let slot = super::hash::reduce(bits, self.len);
        let (keep, alias) = self.table[slot];
        if (bits & 0xffff_ffff) < keep {
            slot
        } else {
            alias as usize
        }
    }
}

/// One weighted draw among the endpoints `eligible` accepts, in one pass
/// (weighted reservoir sampling). O(n): the fallback when cheap draws keep
/// landing on ineligible endpoints.
pub(crate) fn reservoir(
    weights: &[u32],
    rng: &mut impl Entropy,
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut chosen = None;
    let mut seen: u64 = 0;
    for (i, &w) in weights.iter().enumerate() {
        if !eligible(i) {
            continue;
        }
        seen += u64::from(w);
        // Keep i with probability w / seen: exact for any prefix.
        if (rng.next_u64() % seen) < u64::from(w) {
            chosen = Some(i);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frequencies(
        weights: &[u32],
        draws: usize,
        pick: impl Fn(&mut fastrand::Rng) -> usize,
    ) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = vec![0usize; weights.len()];
        for _ in 0..draws {
            counts[pick(&mut rng)] += 1;
        }
        counts.iter().map(|&c| c as f64 / draws as f64).collect()
    }

    fn assert_proportional(weights: &[u32], observed: &[f64], tolerance: f64) {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        for (i, (&w, &got)) in weights.iter().zip(observed).enumerate() {
            let want = f64::from(w) / total;
            assert!(
                (got - want).abs() <= tolerance,
                "endpoint {i}: want {want:.4}, got {got:.4}"
            );
        }
    }

    #[test]
    fn alias_table_matches_weights() {
        for weights in [
            &[5u32, 1, 1][..],
            &[1, 2, 3, 4],
            &[100, 1],
            &[7],
            &[3, 3, 3],
            &[1, 1, 1, 97],
        ] {
            let sampler = Sampler::new(weights);
            let seen = frequencies(weights, 100_000, |rng| sampler.draw(rng));
            assert_proportional(weights, &seen, 0.01);
        }
    }

    #[test]
    fn alias_table_handles_extreme_weights() {
        let weights = [u32::MAX, 1, u32::MAX];
        let sampler = Sampler::new(&weights);
        let seen = frequencies(&weights, 20_000, |rng| sampler.draw(rng));
        assert_proportional(&weights, &seen, 0.02);
    }

    #[test]
    fn reservoir_is_weighted_over_eligible_only() {
        let weights = [5u32, 1, 1, 3];
        let seen = frequencies(&weights, 100_000, |rng| {
            reservoir(&weights, rng, |i| i != 0).expect("endpoints 1..4 are eligible")
        });
        assert_eq!(seen[0], 0.0);
        assert_proportional(&[0, 1, 1, 3], &seen, 0.01);
        let mut rng = fastrand::Rng::with_seed(1);
        assert_eq!(reservoir(&weights, &mut rng, |_| false), None);
    }
}
