//! Lock-free weighted choice among a rule's backends: a precomputed smooth weighted sequence and an atomic cursor.
//!
//! The sequence is nginx's smooth weighted round-robin, unrolled once at
//! build time: weights 5/1/1 give `a a b a c a a`, never long runs of one
//! backend. Over any whole turn of the sequence the split is exact; picking
//! costs one relaxed `fetch_add`.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Longest sequence kept; larger weight totals are scaled down to this.
const MAX_SEQUENCE: u64 = 10_000;

/// Picks indices in proportion to fixed weights.
#[derive(Debug)]
pub(crate) struct WeightedSequence {
    /// Indices into the weighted items, one turn of the smooth order.
    order: Box<[u32]>,
    cursor: AtomicUsize,
}

impl WeightedSequence {
    /// A sequence over `weights`. Zero weights are never picked, unless all
    /// are zero, in which case every item gets an equal share.
    pub(crate) fn new(weights: &[u32]) -> Self {
        let mut weights: Vec<u64> = weights.iter().map(|&w| u64::from(w)).collect();
        if weights.iter().all(|&w| w == 0) {
            weights.iter_mut().for_each(|w| *w = 1);
        }
        let divisor = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
        weights.iter_mut().for_each(|w| *w /= divisor);
        let mut total: u64 = weights.iter().sum();
        if total > MAX_SEQUENCE {
            for w in &mut weights {
                if *w > 0 {
                    *w = (*w * MAX_SEQUENCE / total).max(1);
                }
            }
            total = weights.iter().sum();
        }
        let mut current = vec![0i128; weights.len()];
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            let mut best = 0;
            for (i, &w) in weights.iter().enumerate() {
                current[i] += i128::from(w);
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= i128::from(total);
            order.push(u32::try_from(best).unwrap_or(0));
        }
        if order.is_empty() {
            order.push(0);
        }
        Self {
            order: order.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The next index in the sequence.
    #[inline]
    pub(crate) fn next(&self) -> usize {
        let slot = if self.order.len() == 1 {
            0
        } else {
            self.cursor.fetch_add(1, Ordering::Relaxed) % self.order.len()
        };
        self.order[slot] as usize
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(weights: &[u32], picks: usize) -> Vec<usize> {
        let seq = WeightedSequence::new(weights);
        let mut counts = vec![0; weights.len()];
        for _ in 0..picks {
            counts[seq.next()] += 1;
        }
        counts
    }

    #[test]
    fn ninety_ten_split_is_exact() {
        assert_eq!(counts(&[90, 10], 2_000), vec![1_800, 200]);
    }

    #[test]
    fn uneven_weights_are_exact_over_whole_turns() {
        assert_eq!(counts(&[5, 1, 1], 700), vec![500, 100, 100]);
        assert_eq!(counts(&[1, 0, 3], 400), vec![100, 0, 300]);
        assert_eq!(counts(&[7], 10), vec![10]);
    }

    #[test]
    fn order_is_smooth() {
        let seq = WeightedSequence::new(&[5, 1, 1]);
        let order: Vec<usize> = (0..7).map(|_| seq.next()).collect();
        assert_eq!(order, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn all_zero_weights_share_equally() {
        assert_eq!(counts(&[0, 0], 10), vec![5, 5]);
    }

    #[test]
    fn huge_totals_are_scaled_but_keep_proportions() {
        let c = counts(&[u32::MAX, u32::MAX / 3, 1], 10_000);
        assert!(c[2] >= 1, "a positive weight is never dropped");
        let ratio = c[0] as f64 / c[1] as f64;
        assert!((ratio - 3.0).abs() < 0.01, "ratio {ratio}");
    }

    #[test]
    fn shared_between_threads() {
        let seq = std::sync::Arc::new(WeightedSequence::new(&[3, 1]));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let seq = seq.clone();
                std::thread::spawn(move || {
                    let mut c = [0usize; 2];
                    for _ in 0..1_000 {
                        c[seq.next()] += 1;
                    }
                    c
                })
            })
            .collect();
        let mut total = [0usize; 2];
        for h in handles {
            let c = h.join().expect("picker thread");
            total[0] += c[0];
            total[1] += c[1];
        }
        assert_eq!(total, [3_000, 1_000], "4,000 picks are 1,000 whole turns");
    }
}
