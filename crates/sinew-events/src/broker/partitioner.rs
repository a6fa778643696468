//! Which partition an event goes to: a stable hash of its key (or, without
//! a key, of its id).
//!
//! The hash is Kafka's default partitioner: 32-bit MurmurHash2 (seed
//! `0x9747b28c`) of the bytes, its sign bit cleared, modulo the partition
//! count. So a key lands on the partition number Kafka's producer would
//! pick for the same partition count, and the function is pinned by
//! Kafka's own test vectors. It never changes for an existing topic:
//! another hash would move keys between partitions and break per-key order
//! across an upgrade.
//!
//! (64-bit FNV-1a, used elsewhere in Sinew for digests, mixes too little for
//! this: its low bits depend only on the low bits of each byte and its high
//! bits barely on the last byte, so `key-0` … `key-9` share a partition.)

/// MurmurHash2's multiplier.
const M: u32 = 0x5bd1_e995;
/// Kafka's seed.
const SEED: u32 = 0x9747_b28c;

/// 32-bit MurmurHash2 of `data` as Kafka computes it (`Utils.murmur2`).
pub(crate) fn murmur2(data: &[u8]) -> u32 {
    // Kafka mixes in the length as a Java int: its low 32 bits.
    let mut h = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (i, byte) in tail.iter().enumerate() {
            h ^= u32::from(*byte) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition (of `partitions`, at least 1) for an event with `key` (the
/// partition key; `None` or empty for none) and ce-id `id`.
pub(crate) fn partition_for(key: Option<&[u8]>, id: &str, partitions: u32) -> u32 {
    let bytes = match key {
        Some(key) if !key.is_empty() => key,
        _ => id.as_bytes(),
    };
    (murmur2(bytes) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2, as Java ints.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                expected as u32,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn partitions_are_pinned() {
        let got: Vec<u32> = ["key-1", "key-9", "orders/42", "a"]
            .iter()
            .map(|key| partition_for(Some(key.as_bytes()), "id", 8))
            .collect();
        assert_eq!(got, [0, 5, 3, 4]);
        // No key, or an empty one: the id decides.
        assert_eq!(partition_for(None, "id", 8), 7);
        assert_eq!(partition_for(Some(b""), "id", 8), 7);
        assert_eq!(partition_for(Some(b"anything"), "", 1), 0);
    }

    #[test]
    fn keys_spread_over_partitions() {
        let mut counts = [0u32; 8];
        for i in 0..8000 {
            counts[partition_for(Some(format!("key-{i}").as_bytes()), "", 8) as usize] += 1;
        }
        for (partition, count) in counts.iter().enumerate() {
            assert!(
                (800..1200).contains(count),
                "partition {partition} got {count} of 8000: {counts:?}"
            );
        }
    }
}
