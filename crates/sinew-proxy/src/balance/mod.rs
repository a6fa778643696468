//! Balancers: pick one endpoint of a backend for each request.
//!
//! A [`Balancer`] is built once per config version from the endpoints'
//! weights (and, for the hash balancers, their addresses) and is then shared
//! by every worker. Its shape is immutable; the only mutable state is atomic
//! (a round-robin cursor, per-endpoint [`EndpointLoad`]). [`Balancer::pick`]
//! takes no lock, does not allocate, and is O(1) (O(log n) for the ring).
//!
//! | [`Algorithm`] | how it picks |
//! |---|---|
//! | `RoundRobin` | next endpoint in index order; **ignores weights** |
//! | `Random` | weighted random (alias table, O(1)) |
//! | `WeightedRoundRobin` | nginx's smooth WRR, as a precomputed cycle |
//! | `LeastRequest` | power of two choices on in-flight ÷ weight |
//! | `PeakEwma` | power of two choices on latency × (in-flight + 1) ÷ weight |
//! | `RingHash` | Ketama ring over the request hash |
//! | `Maglev` | Maglev table over the request hash |
//!
//! The two-choice balancers draw both candidates with probability
//! proportional to weight (distinct when there are two or more), compare
//! their costs divided by their weights and keep the first on a tie. So under
//! load heavy endpoints carry proportionally more requests; with nothing in
//! flight, least-request ties and traffic follows the weights, while
//! peak-EWMA's cost (latency × (in-flight + 1)) is never zero and equally
//! fast idle endpoints go to the heavier one until it has requests in flight.
//!
//! [`Balancer::pick_where`] skips endpoints a predicate rejects (ejected,
//! unhealthy, already tried by this request). Each algorithm first tries its
//! own cheap path a bounded number of times, then falls back to an O(n) pass
//! over the endpoints (weighted reservoir sampling; weighted rendezvous
//! hashing for the hash balancers, so the fallback stays consistent per key).
//! It returns `None` only when no endpoint is eligible.
//!
//! # Load statistics across config versions
//!
//! Each endpoint's [`EndpointLoad`] lives behind an [`Arc`]: the engine keeps
//! [`InFlightOwned`] guards across `.await` points in spawned tasks, and can
//! hand an endpoint's statistics to the next version's balancer with
//! [`Balancer::with_loads`] so in-flight counts and latency estimates
//! survive a config change.

mod hash;
mod load;
mod maglev;
mod ring;
mod rotation;
mod sample;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

pub use hash::hash_bytes;
pub use load::{EndpointLoad, InFlight, InFlightOwned, DEFAULT_DECAY, DEFAULT_RTT};

use maglev::Maglev;
use ring::Ring;
use rotation::Rotation;
use sample::{reservoir, Entropy, Sampler, ThreadRng};

/// A load-balancing algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// Endpoints in turn, in index order; weights are ignored.
    RoundRobin,
    /// Uniformly random, weighted.
    Random,
    /// nginx's smooth weighted round-robin.
    WeightedRoundRobin,
    /// Power of two choices on requests in flight per unit of weight.
    LeastRequest,
    /// Power of two choices on peak-EWMA latency × load per unit of weight.
    PeakEwma,
    /// Consistent hashing on a Ketama ring.
    RingHash,
    /// Consistent hashing on a Maglev table.
    Maglev,
}

impl Algorithm {
    /// Every algorithm, in declaration order.
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::Random,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastRequest,
        Algorithm::PeakEwma,
        Algorithm::RingHash,
        Algorithm::Maglev,
    ];

    /// The name used in config (`round-robin`, `peak-ewma`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round-robin",
            Algorithm::Random => "random",
            Algorithm::WeightedRoundRobin => "weighted-round-robin",
            Algorithm::LeastRequest => "least-request",
            Algorithm::PeakEwma => "peak-ewma",
            Algorithm::RingHash => "ring-hash",
            Algorithm::Maglev => "maglev",
        }
    }

    /// The algorithm with config name `name`, if any.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Whether the algorithm uses the request hash given to `pick`.
    #[must_use]
    pub fn uses_hash(self) -> bool {
        matches!(self, Algorithm::RingHash | Algorithm::Maglev)
    }
}

/// How a balancer picks, with its precomputed tables.
#[derive(Debug)]
enum Strategy {
    Rotation(Rotation),
    Sampler(Sampler),
    Ring(Ring),
    Maglev(Maglev),
}

/// Cheap weighted draws tried before an O(n) fallback in `pick_where`.
const WEIGHTED_DRAWS: usize = 2;
/// Cheap uniform draws tried after the weighted ones.
const UNIFORM_DRAWS: usize = 6;

/// Picks endpoints of one backend; see the [module docs](self).
///
/// Endpoint `i` is the `i`-th weight given to the constructor. `Send + Sync`;
/// share it behind an `Arc`.
pub struct Balancer {
    algorithm: Algorithm,
    weights: Box<[u32]>,
    /// Hash of each endpoint's key, for the hash balancers' fallback.
    key_hashes: Box<[u64]>,
    loads: Box<[Arc<EndpointLoad>]>,
    strategy: Strategy,
}

impl fmt::Debug for Balancer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Balancer")
            .field("algorithm", &self.algorithm)
            .field("weights", &self.weights)
            .finish_non_exhaustive()
    }
}

impl Balancer {
    /// A balancer over `weights.len()` endpoints, endpoint `i` having weight
    /// `weights[i]` (a weight of 0 counts as 1). The hash balancers identify
    /// endpoints by index; prefer [`with_keys`](Self::with_keys) for them.
    ///
    /// ```
    /// use sinew_proxy::balance::{Algorithm, Balancer};
    /// let balancer = Balancer::new(Algorithm::WeightedRoundRobin, &[5, 1, 1]);
    /// let picks: Vec<_> = (0..7).filter_map(|_| balancer.pick(None)).collect();
    /// assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    /// ```
    #[must_use]
    pub fn new(algorithm: Algorithm, weights: &[u32]) -> Balancer {
        Balancer::with_loads(algorithm, weights, &[], &[])
    }

    /// Like [`new`](Self::new), identifying endpoint `i` by `keys[i]` (its
    /// address): the hash balancers then map keys to the same endpoint across
    /// config versions, whatever its index. Endpoints without a key fall back
    /// to their index; extra keys are ignored.
    #[must_use]
    pub fn with_keys(algorithm: Algorithm, weights: &[u32], keys: &[&[u8]]) -> Balancer {
        Balancer::with_loads(algorithm, weights, keys, &[])
    }

    /// Like [`with_keys`](Self::with_keys), reusing `loads[i]` as endpoint
    /// `i`'s statistics (carry them over from the previous config version).
    /// Endpoints without one get fresh statistics; extra ones are ignored.
    #[must_use]
    pub fn with_loads(
        algorithm: Algorithm,
        weights: &[u32],
        keys: &[&[u8]],
        loads: &[Arc<EndpointLoad>],
    ) -> Balancer {
        let weights: Box<[u32]> = weights.iter().map(|&w| w.max(1)).collect();
        let key_hashes: Box<[u64]> = (0..weights.len())
            .map(|i| match keys.get(i) {
                Some(key) => hash_bytes(key),
                None => hash_bytes(&(i as u64).to_le_bytes()),
            })
            .collect();
        let now = load::now_ns();
        let fresh = || Arc::new(EndpointLoad::created_at(DEFAULT_DECAY, DEFAULT_RTT, now));
        let loads = (0..weights.len())
            .map(|i| loads.get(i).map_or_else(fresh, Arc::clone))
            .collect();
        let strategy = match algorithm {
            Algorithm::RoundRobin => Strategy::Rotation(Rotation::round_robin(weights.len())),
            Algorithm::WeightedRoundRobin => Strategy::Rotation(Rotation::smooth(&weights)),
            Algorithm::Random | Algorithm::LeastRequest | Algorithm::PeakEwma => {
                Strategy::Sampler(Sampler::new(&weights))
            }
            Algorithm::RingHash => Strategy::Ring(Ring::new(&weights, &key_hashes)),
            Algorithm::Maglev => Strategy::Maglev(Maglev::new(&weights, &key_hashes)),
        };
        Balancer {
            algorithm,
            weights,
            key_hashes,
            loads,
            strategy,
        }
    }

    /// Whether picks read latency estimates (peak-EWMA): only then is a
    /// finished request's latency worth recording.
    pub fn uses_latency(&self) -> bool {
        self.algorithm() == Algorithm::PeakEwma
    }

    /// The algorithm this balancer runs.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Number of endpoints.
    #[must_use]
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// Whether there are no endpoints (then every pick is `None`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Endpoint `index`'s weight (at least 1).
    ///
    /// # Panics
    /// If `index >= self.len()`.
    #[must_use]
    pub fn weight(&self, index: usize) -> u32 {
        self.weights[index]
    }

    /// Picks an endpoint; `None` iff there are none. `hash` (from
    /// [`hash_bytes`]) steers `RingHash` and `Maglev`; without it they pick
    /// at random, by weight. Other algorithms ignore it.
    #[inline]
    #[must_use]
    pub fn pick(&self, hash: Option<u64>) -> Option<usize> {
        self.pick_inner(hash, &mut ThreadRng, |_| true)
    }

    /// Like [`pick`](Self::pick), never returning an endpoint `eligible`
    /// rejects; `None` iff it rejects them all.
    #[inline]
    pub fn pick_where(&self, hash: Option<u64>, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        self.pick_inner(hash, &mut ThreadRng, eligible)
    }

    /// [`pick`](Self::pick) drawing randomness from `rng` (for reproducible
    /// tests and benchmarks).
    #[must_use]
    pub fn pick_with_rng(&self, hash: Option<u64>, rng: &mut fastrand::Rng) -> Option<usize> {
        self.pick_inner(hash, rng, |_| true)
    }

    /// [`pick_where`](Self::pick_where) drawing randomness from `rng`.
    pub fn pick_where_with_rng(
        &self,
        hash: Option<u64>,
        rng: &mut fastrand::Rng,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        self.pick_inner(hash, rng, eligible)
    }

    /// Endpoint `index`'s load statistics.
    ///
    /// # Panics
    /// If `index >= self.len()`.
    #[must_use]
    pub fn load(&self, index: usize) -> &EndpointLoad {
        &self.loads[index]
    }

    /// Endpoint `index`'s load statistics as a shared handle, for
    /// [`EndpointLoad::start_owned`] and [`with_loads`](Self::with_loads).
    ///
    /// # Panics
    /// If `index >= self.len()`.
    #[must_use]
    pub fn load_arc(&self, index: usize) -> &Arc<EndpointLoad> {
        &self.loads[index]
    }

    #[inline]
    fn pick_inner(
        &self,
        hash: Option<u64>,
        rng: &mut impl Entropy,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if self.weights.is_empty() {
            return None;
        }
        match &self.strategy {
            Strategy::Rotation(rotation) => rotation
                .next_where(&eligible)
                .or_else(|| reservoir(&self.weights, rng, &eligible)),
            Strategy::Sampler(sampler) => {
                let first = self.draw_where(sampler, rng, &eligible)?;
                if self.algorithm == Algorithm::Random {
                    return Some(first);
                }
                let Some(second) = self.draw_where(sampler, rng, |i| i != first && eligible(i))
                else {
                    return Some(first);
                };
                Some(if self.cheaper(second, first) {
                    second
                } else {
                    first
                })
            }
            Strategy::Ring(ring) => {
                let hash = hash.unwrap_or_else(|| rng.next_u64());
                ring.lookup_where(hash, &eligible)
                    .or_else(|| self.rendezvous(hash, &eligible))
            }
            Strategy::Maglev(maglev) => {
                let hash = hash.unwrap_or_else(|| rng.next_u64());
                maglev
                    .lookup_where(hash, &eligible)
                    .or_else(|| self.rendezvous(hash, &eligible))
            }
        }
    }

    /// A weighted draw that `eligible` accepts: a few cheap weighted draws,
    /// then a few uniform ones (which reach light endpoints when a heavy one
    /// is excluded), then an exact O(n) pass.
    #[inline]
    fn draw_where(
        &self,
        sampler: &Sampler,
        rng: &mut impl Entropy,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        for _ in 0..WEIGHTED_DRAWS {
            let i = sampler.draw(rng);
            if eligible(i) {
                return Some(i);
            }
        }
        for _ in 0..UNIFORM_DRAWS {
            let i = rng.below(self.weights.len());
            if eligible(i) {
                return Some(i);
            }
        }
        reservoir(&self.weights, rng, eligible)
    }

    /// Whether endpoint `a` costs strictly less than `b` per unit of weight.
    #[inline]
    fn cheaper(&self, a: usize, b: usize) -> bool {
        let (wa, wb) = (self.weights[a], self.weights[b]);
        let (la, lb) = (&self.loads[a], &self.loads[b]);
        if self.algorithm == Algorithm::PeakEwma {
            load::cheaper_peak_ewma(la, wa, lb, wb)
        } else {
            u128::from(la.in_flight()) * u128::from(wb)
                < u128::from(lb.in_flight()) * u128::from(wa)
        }
    }

    fn rendezvous(&self, hash: u64, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        hash::rendezvous(hash, &self.key_hashes, &self.weights, eligible)
    }
}

/// The gcd of all weights (at least 1).
fn weights_gcd(weights: &[u32]) -> u64 {
    let gcd = |mut a: u64, mut b: u64| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    weights.iter().fold(0, |g, &w| gcd(g, u64::from(w))).max(1)
}
