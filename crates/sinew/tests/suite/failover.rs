//! Failover under load with real processes: three backend processes behind
//! the proxy, one SIGKILLed mid-load. Retries (to another endpoint) and
//! active health checks keep every client request succeeding, the dead
//! endpoint stops getting attempts within a second, and once restarted it
//! gets traffic back after its health checks pass.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sinew_testkit::{assert_eventually, free_port, Load, Process, Proxy, Upstream};
use tokio::process::Command;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// A backend instance: the built-in demo app in its own process.
struct App {
    addr: SocketAddr,
    process: Process,
}

impl App {
    fn spawn(addr: SocketAddr) -> App {
        let mut cmd = Command::new(SINEW);
        cmd.args(["demo-app", "--name", "be", "--listen", &addr.to_string()]);
        App {
            addr,
            process: Process::spawn(cmd).expect("spawn demo-app"),
        }
    }

    async fn ready(&self) {
        assert_eventually!(
            tokio::net::TcpStream::connect(self.addr).await.is_ok(),
            Duration::from_secs(10),
            "demo-app on {} never listened",
            self.addr
        );
    }
}

impl Upstream for App {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The value of the metric line starting with `prefix` and naming `endpoint`.
fn counter(metrics: &str, prefix: &str, endpoint: SocketAddr) -> u64 {
    let endpoint = format!("endpoint=\"{endpoint}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(&endpoint))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backend_costs_no_request_and_rejoins_after_its_health_checks() {
    let mut apps: Vec<App> = (0..3).map(|_| App::spawn(free_port())).collect();
    for app in &apps {
        app.ready().await;
    }
    let spec = "\
retries: {attempts: 2, on: [connect-failure, reset, gateway-error], per_try_timeout: 1s}
health_check: {http: {path: /healthz}, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1, healthy_threshold: 2}";
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&apps[0], &apps[1], &apps[2]], spec)
        .spawn()
        .await;
    let dead = apps[2].addr;

    let load = Load::new(proxy.outbound(), "be", "/")
        .concurrency(16)
        .duration(Duration::from_secs(6))
        .spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    apps[2].process.kill().expect("SIGKILL one backend");
    let killed_at = Instant::now();

    // Within a second the proxy stops trying the dead endpoint.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts_after_1s = counter(
        &proxy.metrics().await,
        "sinew_upstream_connect_errors_total",
        dead,
    );
    // The endpoints view shows why: the dead endpoint failed its health check.
    let view = proxy.api_get("/endpoints").await.json();
    let dead_view = view["clusters"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["endpoints"].as_array().into_iter().flatten())
        .find(|e| e["address"] == dead.to_string())
        .cloned()
        .unwrap_or_default();
    assert_eq!(dead_view["health"]["healthy"], false, "{view}");
    assert_eq!(dead_view["usable"], false, "{view}");
    let report = load.join().await;
    let attempts_at_end = counter(
        &proxy.metrics().await,
        "sinew_upstream_connect_errors_total",
        dead,
    );
    let run = killed_at.elapsed();

    eprintln!(
        "failover: {} ok, {} failed over 6 s ({:.0}/s); attempts on the dead endpoint: {attempts_after_1s} within 1 s of the kill, {attempts_at_end} at the end",
        report.ok,
        report.failed,
        report.ok as f64 / 6.0
    );
    assert_eq!(
        report.failed,
        0,
        "no client request failed: {report:?}\n{}",
        proxy.stderr_tail()
    );
    let rate = report.ok as f64 / 6.0;
    assert!(
        rate >= 2_000.0,
        "steady load of at least 2,000 GET/s, got {rate:.0}/s"
    );
    assert_eq!(
        attempts_after_1s, attempts_at_end,
        "no attempt on the dead endpoint later than 1 s after the kill (run {run:?})"
    );

    // Restarted on the same address, it gets traffic back once healthy.
    apps[2] = App::spawn(dead);
    apps[2].ready().await;
    let connections_before = counter(
        &proxy.metrics().await,
        "sinew_upstream_connections_total",
        dead,
    );
    let load = Load::new(proxy.outbound(), "be", "/")
        .concurrency(8)
        .duration(Duration::from_secs(3))
        .spawn();
    assert_eventually!(
        counter(
            &proxy.metrics().await,
            "sinew_upstream_connections_total",
            dead
        ) > connections_before,
        Duration::from_secs(5),
        "the restarted endpoint gets traffic again"
    );
    let report = load.join().await;
    assert_eq!(report.failed, 0, "{report:?}");
    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains("sinew_healthy_endpoints{service=\"be\"} 3"),
        "all three healthy again: {}",
        metrics
            .lines()
            .filter(|l| l.contains("healthy_endpoints"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
