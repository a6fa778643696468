//! Circuit breaking and passive outlier detection, black-box: a service's
//! excess requests are refused at once (no queue) with bounded memory, a
//! failing endpoint is ejected, and with every endpoint ejected the panic
//! threshold keeps traffic flowing.

use std::time::{Duration, Instant};

use sinew_testkit::{assert_eventually, resource, Backend, BlackHole, Load, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// VmRSS of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_past_max_requests_is_refused_at_once_with_bounded_memory() {
    // Every request holds its slot for 300 ms; max_requests is 20.
    let slow = Backend::http()
        .name("slow")
        .delay("/", Duration::from_millis(300))
        .spawn()
        .await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&slow],
            "circuit_breaker: {max_connections: 1024, max_pending: 256, max_requests: 20}",
        )
        .spawn()
        .await;
    let rss_before = rss_kib(proxy.process().pid());

    // 10× max_requests concurrency.
    let load = Load::new(proxy.outbound(), "be", "/")
        .concurrency(200)
        .duration(Duration::from_secs(3))
        .spawn();
    // While the breaker is full, a request is answered 503 within milliseconds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let refused = proxy.get("be", "/").await;
    let took = started.elapsed();
    let report = load.join().await;
    let rss_after = rss_kib(proxy.process().pid());

    eprintln!(
        "overload: {report:?}; a request during overload answered {} in {took:?}; RSS {rss_before} KiB -> {rss_after} KiB",
        refused.status
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("x-sinew-error"), Some("circuit-open"));
    assert!(
        took < Duration::from_millis(150),
        "refused at once, not queued: {took:?}"
    );
    let served = report.by_status.get(&200).copied().unwrap_or(0);
    let rejected = report.by_status.get(&503).copied().unwrap_or(0);
    assert!(
        served > 0 && rejected > served,
        "most of 10× the limit is refused: {report:?}"
    );
    // 3 s at 20 requests / 300 ms is at most ~200 served.
    assert!(served <= 260, "the limit holds: {served} served");
    assert!(
        rss_after < rss_before + 16 * 1024,
        "memory stays bounded: {rss_before} KiB -> {rss_after} KiB"
    );
    let metrics = proxy.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sinew_circuit_breaker_rejections_total")
                && l.contains("service=\"be\"")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_and_with_all_ejected_traffic_still_flows() {
    let good = Backend::http().name("good").spawn().await;
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let spec = "balancer: {algorithm: round-robin}\noutlier_detection: {consecutive_errors: 3, interval: 10s, base_ejection: 30s, max_ejection_percent: 100}";
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&good, &bad], spec)
        .spawn()
        .await;
    for _ in 0..20 {
        proxy.get("be", "/").await;
    }
    let bad_seen = bad.requests();
    for _ in 0..20 {
        assert_eq!(
            proxy.get("be", "/").await.text(),
            "good",
            "the bad endpoint is ejected"
        );
    }
    assert_eq!(
        bad.requests(),
        bad_seen,
        "nothing more reached the ejected endpoint"
    );
    assert!(
        bad_seen <= 4,
        "ejected after 3 consecutive errors, saw {bad_seen}"
    );

    // Panic threshold: one service, every endpoint failing and ejected.
    let only_bad = Backend::http()
        .name("only-bad")
        .fail("/", 503)
        .spawn()
        .await;
    let other_bad = Backend::http()
        .name("other-bad")
        .fail("/", 503)
        .spawn()
        .await;
    let proxy = Proxy::builder(SINEW)
        .service_with("all-bad", &[&only_bad, &other_bad], spec)
        .spawn()
        .await;
    for _ in 0..20 {
        proxy.get("all-bad", "/").await;
    }
    let before = only_bad.requests() + other_bad.requests();
    for _ in 0..10 {
        let response = proxy.get("all-bad", "/").await;
        assert_eq!(
            response.header("x-sinew-error"),
            None,
            "answered by an endpoint"
        );
    }
    assert_eq!(
        only_bad.requests() + other_bad.requests(),
        before + 10,
        "with every endpoint ejected, traffic still reaches them (panic threshold)"
    );
}

#[tokio::test]
async fn an_ejection_outlives_a_reload_that_changes_other_services() {
    let good = Backend::http().name("good").spawn().await;
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let spec = "balancer: {algorithm: round-robin}\noutlier_detection: {consecutive_errors: 3, interval: 10s, base_ejection: 30s, max_ejection_percent: 100}";
    let mut proxy = Proxy::builder(SINEW)
        .service_with("be", &[&good, &bad], spec)
        .spawn()
        .await;
    for _ in 0..10 {
        proxy.get("be", "/").await;
    }
    let bad_seen = bad.requests();
    assert_eq!(proxy.get("be", "/").await.text(), "good", "ejected");

    // A new config version in which `be` is unchanged: another service
    // appears, as when any endpoint in the mesh registers.
    let version = proxy.config_version().await;
    proxy.rewrite_routes(&resource(
        "Service",
        "other",
        "protocol: http\nendpoints: [{address: 127.0.0.1:9}]",
    ));
    assert_eventually!(
        proxy.config_version().await > version,
        Duration::from_secs(3),
        "reloaded:\n{}",
        proxy.stderr_tail()
    );
    for _ in 0..20 {
        assert_eq!(proxy.get("be", "/").await.text(), "good");
    }
    assert_eq!(
        bad.requests(),
        bad_seen,
        "the ejected endpoint stayed ejected across the reload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_waiting_for_a_connection_past_max_pending_are_refused() {
    let hole = BlackHole::spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&hole],
            "connect_timeout: 2s\ncircuit_breaker: {max_connections: 1024, max_pending: 2, max_requests: 1024}",
        )
        .spawn()
        .await;
    let outbound = proxy.outbound();
    let requests: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move {
                let mut client = sinew_testkit::HttpClient::http1(outbound)
                    .await
                    .expect("connect");
                let started = Instant::now();
                let response = client.get("be", "/").await.expect("answer");
                (
                    response.header("x-sinew-error").map(str::to_owned),
                    started.elapsed(),
                )
            })
        })
        .collect();
    let mut refused = 0;
    for request in requests {
        let (reason, took) = request.await.expect("join");
        if reason.as_deref() == Some("circuit-open") {
            refused += 1;
            assert!(
                took < Duration::from_millis(500),
                "refused at once: {took:?}"
            );
        } else {
            assert_eq!(reason.as_deref(), Some("connect-timeout"));
        }
    }
    assert_eq!(
        refused, 4,
        "2 wait for a connection, the other 4 are refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_past_max_connections_are_refused() {
    let slow = Backend::http()
        .name("slow")
        .delay("/", Duration::from_millis(300))
        .spawn()
        .await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&slow],
            "circuit_breaker: {max_connections: 5, max_pending: 256, max_requests: 1024}",
        )
        .spawn()
        .await;
    let report = Load::new(proxy.outbound(), "be", "/")
        .concurrency(20)
        .duration(Duration::from_secs(2))
        .run()
        .await;
    let served = report.by_status.get(&200).copied().unwrap_or(0);
    let refused = report.by_status.get(&503).copied().unwrap_or(0);
    eprintln!(
        "max_connections: {report:?}; backend connections {}",
        slow.connections()
    );
    // 5 connections × 2 s / 300 ms is at most ~35 responses.
    assert!(served > 0 && served <= 45, "{served} served");
    assert!(refused > served, "the excess is refused: {report:?}");
    assert!(
        slow.connections() <= 5,
        "never more than 5 upstream connections: {}",
        slow.connections()
    );
}
