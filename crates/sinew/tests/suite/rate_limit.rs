//! Local rate limiting, black-box: a Service's limit admits its rate plus
//! its burst and answers the rest 429 with `Retry-After` without reaching
//! the backend, on HTTP/1.1 and HTTP/2 and with the bucket shared by the
//! workers; a Route rule's limit applies to that rule only; a reload keeps
//! an unchanged limit's bucket.
//!
//! Counts, not latencies: the bucket admits by the clock, so however slowly
//! a loaded machine runs the client, what passes is bounded by
//! `burst + rate × elapsed`, and with the load far above the rate it is
//! close to it.

use std::time::{Duration, Instant};

use sinew_testkit::{
    assert_eventually, resource, Backend, HttpClient, Load, LoadReport, Proxy, Response,
};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
const RATE: u32 = 50;
const LOAD_FOR: Duration = Duration::from_secs(3);

/// A proxy with two workers and Service `be` over `backend`, limited to
/// [`RATE`] requests per second with a burst of [`RATE`].
async fn limited_proxy(backend: &Backend) -> Proxy {
    Proxy::builder(SINEW)
        .workers(2)
        .service_with(
            "be",
            &[backend],
            &format!("rate_limit: {{requests_per_second: {RATE}}}"),
        )
        .spawn()
        .await
}

/// Asserts a 429 is the proxy's rate-limit answer.
fn assert_rate_limited(response: &Response) {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.header("x-sinew-error"), Some("rate-limited"));
    // Integer rates refill a token within a second: the wait rounds up to 1.
    assert_eq!(response.header("retry-after"), Some("1"));
    assert_eq!(response.backend(), None, "answered by the proxy");
}

/// Sends requests for `host` on one connection until one is refused (at
/// most 500); returns it with the number of requests sent.
async fn until_refused(client: &mut HttpClient, host: &str) -> (Response, u64) {
    for sent in 1..=500 {
        let response = client.get(host, "/").await.expect("a response");
        if response.status == 429 {
            return (response, sent);
        }
    }
    panic!("500 back-to-back requests to {host} were never rate limited");
}

/// The value of the metric line starting with `series` (0 when absent).
fn metric(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// Checks a load report against the limit over `elapsed`: only 200s and
/// 429s, the 200s within ±10 % of `burst + rate × elapsed`, and every
/// other request refused.
fn check_admitted(report: &LoadReport, elapsed: Duration) -> (u64, u64) {
    let admitted = report.by_status.get(&200).copied().unwrap_or(0);
    let refused = report.by_status.get(&429).copied().unwrap_or(0);
    assert_eq!(
        admitted + refused,
        report.total(),
        "nothing but 200 and 429: {report:?}"
    );
    let expected = f64::from(RATE) + f64::from(RATE) * elapsed.as_secs_f64();
    let admitted_f = admitted as f64;
    assert!(
        (admitted_f - expected).abs() <= expected * 0.10,
        "admitted {admitted} in {elapsed:?}, expected {expected:.0} ± 10 %: {report:?}"
    );
    assert!(
        refused > admitted,
        "the load ran well above the limit: {report:?}"
    );
    (admitted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_limit_admits_rate_plus_burst_and_refuses_the_rest_with_429() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = limited_proxy(&backend).await;

    let started = Instant::now();
    let report = Load::new(proxy.outbound(), "be", "/")
        .concurrency(4)
        .duration(LOAD_FOR)
        .run()
        .await;
    let elapsed = started.elapsed();
    eprintln!("HTTP/1.1 load over {elapsed:?}: {report:?}");
    let (admitted, refused) = check_admitted(&report, elapsed);
    assert_eq!(
        backend.requests() as u64,
        admitted,
        "refused requests never reach the backend"
    );
    assert_eq!(report.from_backend("be"), admitted);

    let mut client = HttpClient::http1(proxy.outbound()).await.expect("connect");
    let (response, sent) = until_refused(&mut client, "be").await;
    assert_rate_limited(&response);
    let refused = refused + 1;
    assert_eq!(
        backend.requests() as u64,
        admitted + sent - 1,
        "only admitted requests reached the backend"
    );

    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "sinew_rate_limited_total{scope=\"service\",name=\"be\"}"
        ),
        refused,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "sinew_proxy_errors_total{kind=\"rate_limited\"}"),
        refused
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_limit_holds_over_http2() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = limited_proxy(&backend).await;

    let started = Instant::now();
    let report = Load::new(proxy.outbound(), "be", "/")
        .h2()
        .concurrency(4)
        .duration(LOAD_FOR)
        .run()
        .await;
    let elapsed = started.elapsed();
    eprintln!("HTTP/2 load over {elapsed:?}: {report:?}");
    let (admitted, _) = check_admitted(&report, elapsed);
    assert_eq!(backend.requests() as u64, admitted);

    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    let (response, _) = until_refused(&mut client, "be").await;
    assert_rate_limited(&response);
}

#[tokio::test]
async fn a_route_rule_limit_applies_to_its_rule_only() {
    let backend = Backend::http().name("be").spawn().await;
    let route = resource(
        "Route",
        "shop",
        "
        hosts: [shop]
        rules:
          - match: [{path: {prefix: /limited}}]
            backends: [{service: be}]
            rate_limit: {requests_per_second: 5, burst: 5}
          - backends: [{service: be}]
        ",
    );
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .route_yaml(&route)
        .spawn()
        .await;

    let mut client = HttpClient::http1(proxy.outbound()).await.expect("connect");
    let started = Instant::now();
    let (mut admitted, mut refused) = (0u64, 0u64);
    for _ in 0..40 {
        let limited = client.get("shop", "/limited").await.expect("a response");
        if limited.status == 429 {
            assert_rate_limited(&limited);
            refused += 1;
        } else {
            assert_eq!(limited.status, 200);
            admitted += 1;
        }
        let other = client.get("shop", "/other").await.expect("a response");
        assert_eq!(other.status, 200, "the other rule is not limited");
    }
    let elapsed = started.elapsed();
    // The burst at once, then 5 per second.
    let most = 5 + (5.0 * elapsed.as_secs_f64()).ceil() as u64;
    assert!(
        (5..=most).contains(&admitted),
        "admitted {admitted} of 40 in {elapsed:?} (at most {most})"
    );
    assert_eq!(backend.requests_to("/limited") as u64, admitted);
    assert_eq!(backend.requests_to("/other"), 40);

    let metrics = proxy.metrics().await;
    assert_eq!(
        metric(
            &metrics,
            "sinew_rate_limited_total{scope=\"route\",name=\"shop.rules[0]\"}"
        ),
        refused,
        "{metrics}"
    );
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_limit_and_resets_a_changed_one() {
    let backend = Backend::http().name("be").spawn().await;
    let service = |burst: u32| {
        resource(
            "Service",
            "be",
            &format!(
                "endpoints: [{{address: \"{}\"}}]\nrate_limit: {{requests_per_second: 1, burst: {burst}}}\n",
                backend.addr()
            ),
        )
    };
    let route = |path: &str| {
        resource(
            "Route",
            "shop",
            &format!("hosts: [shop]\nrules:\n  - match: [{{path: {{prefix: {path}}}}}]\n    backends: [{{service: be}}]\n"),
        )
    };
    let mut proxy = Proxy::builder(SINEW)
        .route_yaml(&format!("{}{}", service(10), route("/")))
        .spawn()
        .await;
    let mut client = HttpClient::http1(proxy.outbound()).await.expect("connect");
    let (_, sent) = until_refused(&mut client, "be").await;
    assert!(sent >= 11, "the burst of 10 passed first ({sent} sent)");

    // Another Route, the same limit: the spent bucket is kept.
    let version = proxy.config_version().await;
    proxy.rewrite_routes(&format!("{}{}", service(10), route("/shop")));
    assert_eventually!(
        proxy.config_version().await > version,
        Duration::from_secs(5),
        "the reload is applied"
    );
    let (_, sent) = until_refused(&mut client, "be").await;
    // A new bucket would admit 10 at once; the kept one only what refilled
    // at 1 per second since it was emptied.
    assert!(
        sent - 1 < 10,
        "still spent after the reload: {} admitted",
        sent - 1
    );

    // A changed limit starts a new, full bucket.
    let version = proxy.config_version().await;
    proxy.rewrite_routes(&format!("{}{}", service(20), route("/shop")));
    assert_eventually!(
        proxy.config_version().await > version,
        Duration::from_secs(5),
        "the reload is applied"
    );
    let (_, sent) = until_refused(&mut client, "be").await;
    assert!(sent > 20, "a new bucket of 20: {} admitted", sent - 1);
}
