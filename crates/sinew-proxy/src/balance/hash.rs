//! Stable, fast 64-bit hashing of request keys and endpoint identities.
//!
//! The hash is wyhash-style: 128-bit multiply-and-fold ("mum") over 16-byte
//! blocks, then a splitmix64 finalizer. It is written here rather than taken
//! from `std` because the output must be identical across processes, builds
//! and platforms: every sidecar of a mesh must send the same key to the same
//! endpoint, and `std`'s hashers promise neither stability nor portability.

const P0: u64 = 0xa076_1d64_78bd_642f;
const P1: u64 = 0xe703_7ed1_a0b4_28db;
const P2: u64 = 0x8ebc_6af0_9c88_c6e3;
const P3: u64 = 0x5899_65cc_7537_4cc3;

/// The golden-ratio increment of splitmix64; spaces derived hashes apart.
pub(crate) const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hashes `key` to a well-distributed 64-bit value.
///
/// Stable across processes, versions of this crate and platforms; use it for
/// header, cookie, query and source-address keys given to
/// [`Balancer::pick`](super::Balancer::pick) by the hash balancers.
///
/// ```
/// use sinew_proxy::balance::hash_bytes;
/// assert_eq!(hash_bytes(b"user-42"), hash_bytes(b"user-42"));
/// assert_ne!(hash_bytes(b"user-42"), hash_bytes(b"user-43"));
/// ```
#[must_use]
pub fn hash_bytes(key: &[u8]) -> u64 {
    hash_seeded(key, 0)
}

/// [`hash_bytes`] with a seed, for independent hash functions over one key.
pub(crate) fn hash_seeded(key: &[u8], seed: u64) -> u64 {
    let len = key.len() as u64;
    let mut state = seed ^ mum(seed ^ P0, len ^ P1);
    let mut blocks = key.chunks_exact(16);
    for block in &mut blocks {
        let (a, b) = block.split_at(8);
        state = mum(read_word(a) ^ P1, read_word(b) ^ state);
    }
    let tail = blocks.remainder();
    let (a, b) = tail.split_at(tail.len().min(8));
    state = mum(read_word(a) ^ P2, read_word(b) ^ state ^ P3);
    mix64(state ^ mum(len ^ P0, state ^ P1))
}

/// splitmix64's finalizer: a bijection of `u64` with full avalanche.
#[must_use]
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Maps a uniformly distributed `hash` onto `0..n` without a division
/// (Lemire's multiply-high reduction; it uses the hash's high bits).
#[must_use]
pub(crate) fn reduce(hash: u64, n: usize) -> usize {
    ((u128::from(hash) * n as u128) >> 64) as usize
}

/// Weighted rendezvous (highest-random-weight) choice among the endpoints
/// `eligible` accepts: consistent for a given `hash` and eligible set, and
/// removing an endpoint only moves the keys it held. O(n); the hash
/// balancers' fallback when their table keeps landing on ineligible endpoints.
pub(crate) fn rendezvous(
    hash: u64,
    key_hashes: &[u64],
    weights: &[u32],
    eligible: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, (&key, &weight)) in key_hashes.iter().zip(weights).enumerate() {
        if !eligible(i) {
            continue;
        }
        // u in (0, 1]; score = -w / ln(u) is the weighted HRW score.
        let u = ((mix64(hash ^ key) >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let score = -f64::from(weight) / u.ln();
        if best.is_none_or(|(top, _)| score > top) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// 128-bit multiply folded back to 64 bits.
fn mum(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Reads up to eight bytes little-endian, zero-padded.
fn read_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn output_is_pinned() {
        // Changing these values remaps every hash-balanced key in a mesh
        // where sidecars run different versions: do it only on purpose.
        let pinned = [
            hash_bytes(b""),
            hash_bytes(b"a"),
            hash_bytes(b"10.0.0.1:8080"),
            hash_bytes(&[7; 40]),
        ];
        assert_eq!(
            pinned,
            [
                0x3a65_e229_e89b_2152,
                0xdbe5_b5af_6bf6_a95b,
                0x4ed2_de7b_495b_a660,
                0xf1c8_9d5a_9413_c9a5
            ]
        );
        // splitmix64 seeded with 0: its first output is mix64(GOLDEN).
        assert_eq!(mix64(GOLDEN), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn length_and_trailing_zeros_matter() {
        let mut seen = HashSet::new();
        for len in 0..40 {
            assert!(seen.insert(hash_bytes(&vec![0u8; len])), "len {len}");
        }
    }

    #[test]
    fn distinct_short_keys_do_not_collide() {
        let mut seen = HashSet::new();
        for i in 0..100_000u32 {
            assert!(seen.insert(hash_bytes(format!("user-{i}").as_bytes())));
        }
    }

    #[test]
    fn one_bit_flips_about_half_the_output_bits() {
        let key = *b"192.168.100.200:443/tenant";
        let base = hash_bytes(&key);
        let mut flipped_total = 0u32;
        let mut trials = 0u32;
        for byte in 0..key.len() {
            for bit in 0..8 {
                let mut changed = key;
                changed[byte] ^= 1 << bit;
                let flipped = (hash_bytes(&changed) ^ base).count_ones();
                assert!(
                    (12..=52).contains(&flipped),
                    "byte {byte} bit {bit}: {flipped}"
                );
                flipped_total += flipped;
                trials += 1;
            }
        }
        let mean = f64::from(flipped_total) / f64::from(trials);
        assert!((29.0..35.0).contains(&mean), "mean flipped bits {mean}");
    }

    #[test]
    fn rendezvous_is_consistent_and_weighted() {
        let keys: Vec<u64> = (0..5u8).map(|i| hash_bytes(&[i])).collect();
        let weights = [1, 1, 1, 1, 4];
        let mut counts = [0u32; 5];
        for k in 0..40_000u64 {
            let h = mix64(k);
            let first = rendezvous(h, &keys, &weights, |_| true).expect("all eligible");
            counts[first] += 1;
            // Removing another endpoint never moves this key.
            let other = (first + 1) % 5;
            assert_eq!(rendezvous(h, &keys, &weights, |i| i != other), Some(first));
            assert_ne!(rendezvous(h, &keys, &weights, |i| i != first), Some(first));
        }
        for (i, &c) in counts.iter().enumerate() {
            let want = 40_000.0 * f64::from(weights[i]) / 8.0;
            assert!((f64::from(c) - want).abs() < want * 0.05, "{counts:?}");
        }
        assert_eq!(rendezvous(1, &keys, &weights, |_| false), None);
    }

    #[test]
    fn seeds_give_independent_hashes() {
        assert_ne!(hash_seeded(b"k", 1), hash_seeded(b"k", 2));
        assert_eq!(hash_seeded(b"k", 0), hash_bytes(b"k"));
    }

    #[test]
    fn reduce_stays_in_range_and_spreads() {
        let mut counts = [0u32; 7];
        for i in 0..70_000u64 {
            counts[reduce(mix64(i.wrapping_mul(GOLDEN)), 7)] += 1;
        }
        for c in counts {
            assert!((9_500..10_500).contains(&c), "{counts:?}");
        }
        assert_eq!(reduce(u64::MAX, 5), 4);
        assert_eq!(reduce(0, 5), 0);
    }
}
