//! Ketama-style consistent-hash ring with virtual nodes proportional to weight.
//!
//! Each endpoint places `VNODES_PER_WEIGHT` points per unit of weight (after
//! dividing the weights by their gcd) on a 64-bit ring; a key goes to the
//! owner of the first point at or after its hash. Points depend only on the
//! endpoint's key (its address), so removing an endpoint moves only the keys
//! its points held: about 1/n of them. The total is capped at [`MAX_POINTS`]
//! (scaled proportionally, each endpoint keeping at least one point).
//!
//! A lookup does not binary-search the whole ring: an index of the first
//! point in each of `2^bits` equal slices of the hash space (about four
//! points per slice) narrows the search to a few adjacent points, so a
//! lookup touches two or three cache lines whatever the ring's size.

use super::hash::{mix64, GOLDEN};

/// Points per unit of (gcd-reduced) weight.
pub(crate) const VNODES_PER_WEIGHT: u64 = 100;
/// Most points on one ring (unless there are more endpoints than that).
pub(crate) const MAX_POINTS: u64 = 64 * 1024;
/// Ring positions `lookup_where` inspects before giving up.
const WALK_LIMIT: usize = 64;

/// Aim for this many points per index slice.
const POINTS_PER_SLICE: usize = 4;

/// The sorted ring: `points[i]` is owned by endpoint `owners[i]`.
#[derive(Debug)]
pub(crate) struct Ring {
    points: Box<[u64]>,
    owners: Box<[u32]>,
    /// `slices[k]`: the first point whose top `bits` bits are at least `k`;
    /// `2^bits + 1` entries.
    slices: Box<[u32]>,
    bits: u32,
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
        let points: Box<[u64]> = ring.iter().map(|p| p.0).collect();
        let bits = (points.len() / POINTS_PER_SLICE).max(1).ilog2().min(24);
        let mut slices = Vec::with_capacity((1 << bits) + 1);
        let mut next = 0;
        for k in 0..=(1u64 << bits) {
            while next < points.len() && slice_of(points[next], bits) < k {
                next += 1;
            }
            slices.push(next as u32);
        }
        Ring {
            points,
            owners: ring.iter().map(|p| p.2).collect(),
            slices: slices.into_boxed_slice(),
            bits,
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
        let slice = slice_of(hash, self.bits) as usize;
        let (lo, hi) = (self.slices[slice] as usize, self.slices[slice + 1] as usize);
        // Points before `lo` lie in earlier slices (below `hash`), points from
        // `hi` on in later ones (above it).
        let start = (lo + self.points[lo..hi].partition_point(|&p| p < hash)) % len;
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

/// The index slice of `hash`: its top `bits` bits.
fn slice_of(hash: u64, bits: u32) -> u64 {
    hash.checked_shr(64 - bits).unwrap_or(0)
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
    fn indexed_lookup_agrees_with_binary_search() {
        for n in [1, 2, 3, 10, 100, 1000] {
            let ring = Ring::new(&vec![1; n], &keys(n));
            let mut rng = fastrand::Rng::with_seed(n as u64);
            for hash in (0..2_000)
                .map(|_| rng.u64(..))
                .chain([0, u64::MAX])
                .chain(ring.points.iter().copied())
            {
                let want =
                    ring.owners[ring.points.partition_point(|&p| p < hash) % ring.len()] as usize;
                assert_eq!(
                    ring.lookup_where(hash, |_| true),
                    Some(want),
                    "n {n} hash {hash:#x}"
                );
            }
        }
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
