//! Load balancing, black-box: every algorithm spreads (or sticks) requests over real endpoints as specified.

use std::collections::BTreeSet;

use sinew_testkit::{Backend, Load, Proxy, Request};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

async fn three_backends() -> Vec<Backend> {
    let mut backends = Vec::new();
    for name in ["e1", "e2", "e3"] {
        backends.push(Backend::http().name(name).spawn().await);
    }
    backends
}

async fn proxy_over(backends: &[Backend], balancer: &str) -> Proxy {
    let endpoints: Vec<&Backend> = backends.iter().collect();
    Proxy::builder(SINEW)
        .service_with("be", &endpoints, &format!("balancer: {balancer}"))
        .spawn()
        .await
}

#[tokio::test]
async fn round_robin_spreads_evenly_across_three_endpoints() {
    let backends = three_backends().await;
    let proxy = proxy_over(&backends, "{algorithm: round-robin}").await;

    let report = Load::new(proxy.outbound(), "be", "/")
        .requests(300)
        .run()
        .await;
    assert_eq!(report.failed, 0, "{report:?}");
    let counts: Vec<u64> = ["e1", "e2", "e3"]
        .iter()
        .map(|b| report.from_backend(b))
        .collect();
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(
        matches!((min, max), (Some(lo), Some(hi)) if hi - lo <= 3),
        "round robin over 300 sequential requests: {counts:?}"
    );
}

#[tokio::test]
async fn every_non_hashing_algorithm_reaches_all_endpoints() {
    let backends = three_backends().await;
    for algorithm in [
        "random",
        "least-request",
        "peak-ewma",
        "weighted-round-robin",
    ] {
        let proxy = proxy_over(&backends, &format!("{{algorithm: {algorithm}}}")).await;
        let report = Load::new(proxy.outbound(), "be", "/")
            .concurrency(4)
            .requests(300)
            .run()
            .await;
        assert_eq!(report.failed, 0, "{algorithm}: {report:?}");
        for name in ["e1", "e2", "e3"] {
            assert!(
                report.from_backend(name) > 0,
                "{algorithm} never picked {name}: {report:?}"
            );
        }
    }
}

/// Sends 5 requests for each of 30 keys (as built by `request`) and returns
/// the set of backends each key reached.
async fn backends_per_key(
    proxy: &Proxy,
    request: impl Fn(&str) -> Request,
) -> Vec<BTreeSet<String>> {
    let mut per_key = Vec::new();
    for key in 0..30 {
        let mut seen = BTreeSet::new();
        for _ in 0..5 {
            let resp = proxy.send(request(&format!("user-{key}")).host("be")).await;
            assert_eq!(resp.status, 200);
            seen.insert(resp.backend().unwrap_or("-").to_owned());
        }
        per_key.push(seen);
    }
    per_key
}

fn assert_sticky_and_spread(per_key: &[BTreeSet<String>], what: &str) {
    for (key, seen) in per_key.iter().enumerate() {
        assert_eq!(seen.len(), 1, "{what}: user-{key} reached {seen:?}");
    }
    let used: BTreeSet<&String> = per_key.iter().flatten().collect();
    assert!(used.len() >= 2, "{what}: 30 keys all hashed onto {used:?}");
}

#[tokio::test]
async fn ring_hash_on_a_header_sticks_each_key_to_one_endpoint() {
    let backends = three_backends().await;
    let proxy = proxy_over(&backends, "{algorithm: ring-hash, hash: {header: x-user}}").await;
    let per_key = backends_per_key(&proxy, |key| Request::get("/").header("x-user", key)).await;
    assert_sticky_and_spread(&per_key, "ring-hash");
}

#[tokio::test]
async fn maglev_on_a_query_parameter_sticks_each_key_to_one_endpoint() {
    let backends = three_backends().await;
    let proxy = proxy_over(&backends, "{algorithm: maglev, hash: {query: user}}").await;
    let per_key =
        backends_per_key(&proxy, |key| Request::get(&format!("/cart?user={key}&n=1"))).await;
    assert_sticky_and_spread(&per_key, "maglev");
}

#[tokio::test]
async fn weighted_endpoints_receive_traffic_in_proportion() {
    let light = Backend::http().name("light").weight(1).spawn().await;
    let medium = Backend::http().name("medium").weight(2).spawn().await;
    let heavy = Backend::http().name("heavy").weight(3).spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&light, &medium, &heavy],
            "balancer: {algorithm: weighted-round-robin}",
        )
        .spawn()
        .await;

    let report = Load::new(proxy.outbound(), "be", "/")
        .concurrency(4)
        .requests(1200)
        .run()
        .await;
    assert_eq!(report.failed, 0, "{report:?}");
    for (name, want) in [
        ("light", 1.0 / 6.0),
        ("medium", 2.0 / 6.0),
        ("heavy", 3.0 / 6.0),
    ] {
        let share = report.share(name);
        assert!(
            (share - want).abs() <= 0.03,
            "{name}: share {share:.3}, want {want:.3}: {report:?}"
        );
    }
}
