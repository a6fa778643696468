//! Ketama-style consistent-hash ring with virtual nodes proportional to weight.
//!
//! Each endpoint places `VNODES_PER_WEIGHT` points per unit of weight (after
//! dividing the weights by their gcd) on a 64-bit ring; a key goes to the
//! owner of the first point at or after its hash. Points depend only on the
//! endpoint's key (its address), so removing an endpoint moves only the keys
//! its points held: about 1/n of them. The total is capped at [`MAX_POINTS`]
//! (scaled proportionally, each endpoint keeping at least one point).

use super::hash::{mix64, GOLDEN};

/// Points per unit of (gcd-reduced) weight.
pub(crate) const VNODES_PER_WEIGHT: u64 = 100;
/// Most points on one ring (unless there are more endpoints than that).
pub(crate) const MAX_POINTS: u64 = 64 * 1024;
/// Ring positions `lookup_where` inspects before giving up.
const WALK_LIMIT: usize = 64;

/// The sorted ring: `points[i]` is owned by endpoint `owners[i]`.
#[derive(Debug)]
pub(crate) struct Ring {
    points: Box<[u64]>,
    owners: Box<[u32]>,
}

impl Ring {
    /// Builds the ring; `key_hashes[i]` identifies endpoint `i`.
    pub(crate) fn new(weights: &[u32], key_hashes: &[u64]) -> Ring {
        let divisor = super::weights_gcd(weights);
        let units: u64 = weights.iter().map(|&w| u64::from(w) / divisor).sum();
        let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let budget = (units * VNODES_PER_WEIGHT).min(MAX_POINTS.max(weights.len() as u64));
        let mut ring: Vec<(u64, u64, u32)> = Vec::new();
        for (i, (&w, &key)) in weights.iter().zip(key_hashes).enumerate() {
            let count = ((u128::from(w) * u128::from(budget) + sum / 2) / sum.max(1)).max(1) as u64;
            for replica in 1..=count {
                ring.push((
                    mix64(key.wrapping_add(replica.wrapping_mul(GOLDEN))),
                    key,
                    i as u32,
                ));
            }
        }
        // Ties (astronomically rare) break on the endpoint's key, not its
        // index, so they resolve the same way in every config version.
        ring.sort_unstable();
        Ring {
            points: ring.iter().map(|p| p.0).collect(),
            owners: ring.iter().map(|p| p.2).collect(),
        }
    }

    /// The owner of the first point at or after `hash` that `eligible`
    /// accepts, walking at most [`WALK_LIMIT`] points.
    #[inline]
    pub(crate) fn lookup_where(
        &self,
        hash: u64,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let start = self.points.partition_point(|&p| p < hash) % len;
        (0..len.min(WALK_LIMIT))
            .map(|k| self.owners[(start + k) % len] as usize)
            .find(|&i| eligible(i))
    }

    /// Number of points on the ring.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::hash::hash_bytes;

    fn keys(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| hash_bytes(format!("10.0.0.{i}:80").as_bytes()))
            .collect()
    }

    #[test]
    fn points_are_proportional_to_weight() {
        assert_eq!(Ring::new(&[1, 1, 1], &keys(3)).len(), 300);
        assert_eq!(Ring::new(&[3, 3, 3], &keys(3)).len(), 300);
        assert_eq!(Ring::new(&[5, 1, 1], &keys(3)).len(), 700);
    }

    #[test]
    fn total_is_capped_but_every_endpoint_keeps_a_point() {
        let ring = Ring::new(&[1_000_000, 1], &keys(2));
        assert!(ring.len() as u64 <= MAX_POINTS + 1);
        assert!(ring.owners.contains(&1));
    }

    #[test]
    fn lookups_wrap_around_and_skip_ineligible() {
        let ring = Ring::new(&[1, 1], &keys(2));
        assert!(ring.lookup_where(u64::MAX, |_| true).is_some());
        let first = ring.lookup_where(12_345, |_| true).expect("non-empty");
        assert_eq!(ring.lookup_where(12_345, |i| i != first), Some(1 - first));
        assert_eq!(ring.lookup_where(12_345, |_| false), None);
    }
}
