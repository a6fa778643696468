//! Google's Maglev consistent hashing: a prime-sized lookup table filled by
//! each endpoint's own permutation of the slots.
//!
//! The table size is the first prime of a short ladder (307, 1021, 4093,
//! 16381, 65537) at or above 100 × endpoints; past 65537 endpoints, the
//! first prime at or above their count. Keys keep their endpoint only while
//! the size stays the same, so the ladder is coarse (factor ~4): adding or
//! removing a few endpoints keeps the size, and only crossing a rung (the
//! endpoint count passing 3, 10, 40, 163 or 655) reshuffles every key, as
//! changing Envoy's `table_size` does. Each endpoint
//! derives `offset` and `skip` from its key (address) and claims slots
//! `offset, offset + skip, …` (mod size) in turns. Weights follow Envoy's
//! scheme: the heaviest endpoint takes a turn every round and one of weight
//! `w` a turn every `max / w` rounds, so slot shares follow the weights.
//! Removing an endpoint frees its slots and nudges few others: roughly 1/n of
//! the keys move.

use super::hash::{mix64, reduce, GOLDEN};

/// Table sizes (primes); the last is used from 656 endpoints up.
const SIZES: [u64; 5] = [307, 1021, 4093, 16_381, MAX_TABLE];
/// Largest table size from the ladder.
pub(crate) const MAX_TABLE: u64 = 65_537;
/// Slots per endpoint aimed for below the cap.
const SLOTS_PER_ENDPOINT: u64 = 100;
/// Rehashed probes `lookup_where` tries before giving up.
const PROBE_LIMIT: u64 = 16;

/// The lookup table: slot → endpoint index.
#[derive(Debug)]
pub(crate) struct Maglev {
    table: Box<[u32]>,
}

impl Maglev {
    /// Builds the table; `key_hashes[i]` identifies endpoint `i`.
    pub(crate) fn new(weights: &[u32], key_hashes: &[u64]) -> Maglev {
        let n = weights.len().min(key_hashes.len());
        if n == 0 {
            return Maglev {
                table: Box::default(),
            };
        }
        let size = table_size(n as u64);
        let max_weight = weights
            .iter()
            .map(|&w| u64::from(w))
            .max()
            .unwrap_or(1)
            .max(1);
        struct Builder {
            next: u64,
            skip: u64,
            weight: u64,
            credit: u64,
        }
        let mut builders: Vec<Builder> = key_hashes[..n]
            .iter()
            .zip(weights)
            .map(|(&key, &w)| Builder {
                next: key % size,
                skip: mix64(key ^ GOLDEN) % (size - 1) + 1,
                weight: u64::from(w).max(1),
                credit: 0,
            })
            .collect();
        const EMPTY: u32 = u32::MAX;
        let mut table = vec![EMPTY; size as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < size {
            for (i, b) in builders.iter_mut().enumerate() {
                if filled == size {
                    break;
                }
                if round * b.weight < b.credit {
                    continue;
                }
                b.credit += max_weight;
                // The permutation visits every slot (size is prime), so a
                // free one is found while the table is not full.
                while table[b.next as usize] != EMPTY {
                    b.next = (b.next + b.skip) % size;
                }
                table[b.next as usize] = i as u32;
                b.next = (b.next + b.skip) % size;
                filled += 1;
            }
            round += 1;
        }
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    /// The endpoint for `hash` if `eligible` accepts it; otherwise probes the
    /// slots of up to [`PROBE_LIMIT`] rehashes of `hash`.
    #[inline]
    pub(crate) fn lookup_where(
        &self,
        hash: u64,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        (0..PROBE_LIMIT)
            .map(|k| {
                let probe = if k == 0 {
                    hash
                } else {
                    mix64(hash.wrapping_add(k.wrapping_mul(GOLDEN)))
                };
                self.table[reduce(probe, self.table.len())] as usize
            })
            .find(|&i| eligible(i))
    }

    /// Slots per endpoint, for tests.
    #[cfg(test)]
    pub(crate) fn shares(&self, n: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for &i in self.table.iter() {
            counts[i as usize] += 1;
        }
        counts
    }
}

/// The table size for `n` endpoints.
fn table_size(n: u64) -> u64 {
    let target = n * SLOTS_PER_ENDPOINT;
    SIZES
        .into_iter()
        .find(|&size| size >= target)
        .unwrap_or_else(|| next_prime(n.max(MAX_TABLE)))
}

/// The smallest prime at or above `n`.
fn next_prime(n: u64) -> u64 {
    let is_prime = |p: u64| {
        p >= 2
            && (2..)
                .take_while(|d| d * d <= p)
                .all(|d| !p.is_multiple_of(d))
    };
    (n.max(2)..).find(|&p| is_prime(p)).unwrap_or(MAX_TABLE)
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
    fn primes() {
        assert_eq!(next_prime(300), 307);
        assert_eq!(next_prime(1000), 1009);
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(1), 2);
    }

    #[test]
    fn table_sizes() {
        for size in SIZES {
            assert_eq!(next_prime(size), size);
        }
        assert_eq!(table_size(1), 307);
        assert_eq!(table_size(3), 307);
        assert_eq!(table_size(4), 1021);
        assert_eq!(table_size(9), table_size(10));
        assert_eq!(table_size(1000), 65_537);
        assert_eq!(table_size(70_000), 70_001);
        assert_eq!(Maglev::new(&[1; 3], &keys(3)).table.len(), 307);
    }

    #[test]
    fn equal_weights_share_the_table_evenly() {
        let shares = Maglev::new(&[1; 10], &keys(10)).shares(10);
        assert_eq!(shares.iter().sum::<usize>(), 1021);
        assert!(
            shares.iter().all(|&s| (102..=103).contains(&s)),
            "{shares:?}"
        );
    }

    #[test]
    fn weights_bias_the_table() {
        let shares = Maglev::new(&[1, 2, 4], &keys(3)).shares(3);
        let total = shares.iter().sum::<usize>() as f64;
        for (share, want) in shares.iter().zip([1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0]) {
            assert!((*share as f64 / total - want).abs() < 0.01, "{shares:?}");
        }
    }

    #[test]
    fn probes_skip_ineligible() {
        let maglev = Maglev::new(&[1, 1, 1], &keys(3));
        let first = maglev.lookup_where(99, |_| true).expect("non-empty");
        let other = maglev
            .lookup_where(99, |i| i != first)
            .expect("others eligible");
        assert_ne!(first, other);
        assert_eq!(maglev.lookup_where(99, |_| false), None);
        assert_eq!(Maglev::new(&[], &[]).lookup_where(1, |_| true), None);
    }
}
