//! Cost of one `Balancer::pick` per algorithm at 3, 100 and 1000 endpoints.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use sinew_proxy::balance::{hash_bytes, Algorithm, Balancer};

const SIZES: [usize; 3] = [3, 100, 1000];

fn balancer(algorithm: Algorithm, n: usize) -> Balancer {
    let weights: Vec<u32> = (0..n).map(|i| 1 + (i % 3) as u32).collect();
    let addresses: Vec<String> = (0..n)
        .map(|i| format!("10.0.{}.{}:8080", i / 256, i % 256))
        .collect();
    let keys: Vec<&[u8]> = addresses.iter().map(String::as_bytes).collect();
    Balancer::with_keys(algorithm, &weights, &keys)
}

fn pick(c: &mut Criterion) {
    for algorithm in Algorithm::ALL {
        let mut group = c.benchmark_group(format!("pick/{}", algorithm.name()));
        for n in SIZES {
            let balancer = balancer(algorithm, n);
            if algorithm == Algorithm::LeastRequest || algorithm == Algorithm::PeakEwma {
                // Some load so that comparisons are not all ties.
                for i in (0..n).step_by(2) {
                    balancer
                        .load(i)
                        .start()
                        .finish(std::time::Duration::from_micros(200 + i as u64));
                }
            }
            let mut key = 0u64;
            group.bench_with_input(BenchmarkId::from_parameter(n), &balancer, |b, balancer| {
                b.iter(|| {
                    key = key.wrapping_add(1);
                    let hash = algorithm
                        .uses_hash()
                        .then(|| hash_bytes(&key.to_le_bytes()));
                    black_box(balancer.pick(black_box(hash)))
                });
            });
        }
        group.finish();
    }
}

fn pick_where(c: &mut Criterion) {
    // A retry after one failed attempt: every endpoint but the first pick.
    let mut group = c.benchmark_group("pick_where/retry");
    for algorithm in Algorithm::ALL {
        let balancer = balancer(algorithm, 100);
        let hash = Some(hash_bytes(b"user-42"));
        let tried = balancer.pick(hash).unwrap_or(0);
        group.bench_function(algorithm.name(), |b| {
            b.iter(|| black_box(balancer.pick_where(black_box(hash), |i| i != tried)));
        });
    }
    group.finish();
}

criterion_group!(benches, pick, pick_where);
criterion_main!(benches);
