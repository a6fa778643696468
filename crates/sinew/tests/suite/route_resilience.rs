//! Route-level resilience, black-box: subset failover when the primary
//! subset has no healthy endpoint, the rule's fallback answer when a backend
//! has no endpoint at all, and a rule's retries overriding the service's.

use std::time::Duration;

use sinew_testkit::{assert_eventually, free_port, resource, AddrOnly, Backend, Proxy, Upstream};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test]
async fn a_backend_fails_over_to_the_next_subset_when_its_own_is_unhealthy() {
    let v1 = AddrOnly(free_port());
    let v2 = Backend::http()
        .name("v2")
        .label("version", "v2")
        .spawn()
        .await;
    let spec = "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
health_check: {tcp: {}, interval: 100ms, timeout: 100ms, unhealthy_threshold: 1, healthy_threshold: 1}";
    let route = resource(
        "Route",
        "reviews",
        "hosts: [reviews]\nrules:\n  - backends: [{service: be, subset: v1, failover: [v2]}]\n",
    );
    // Two kinds of endpoints: the Service is written out by hand.
    let service = resource(
        "Service",
        "be",
        &format!(
            "endpoints:\n  - {{address: {}, labels: {{version: v1}}}}\n  - {{address: {}, labels: {{version: v2}}}}\n{spec}\n",
            v1.addr(),
            v2.addr()
        ),
    );
    let proxy = Proxy::builder(SINEW)
        .route_yaml(&service)
        .route_yaml(&route)
        .spawn()
        .await;
    assert_eventually!(
        proxy.get("reviews", "/").await.text() == "v2",
        Duration::from_secs(5),
        "v1 is unhealthy, so traffic fails over to v2"
    );
    for _ in 0..10 {
        assert_eq!(proxy.get("reviews", "/").await.text(), "v2");
    }
}

#[tokio::test]
async fn a_rule_fallback_answers_when_its_backend_has_no_endpoint() {
    let other = Backend::http().name("other").spawn().await;
    let route = resource(
        "Route",
        "shop",
        "hosts: [shop]\nrules:\n  - backends: [{service: empty}]\n    fallback: {status: 503, body: \"shop is resting\\n\", headers: {retry-after: \"5\"}}\n",
    );
    let proxy = Proxy::builder(SINEW)
        .service("other", &[&other])
        .service_with("empty", &[] as &[&Backend], "")
        .route_yaml(&route)
        .spawn()
        .await;
    let response = proxy.get("shop", "/").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.text(), "shop is resting\n");
    assert_eq!(response.header("retry-after"), Some("5"));
    assert_eq!(
        response.header("x-sinew-error"),
        None,
        "the configured answer, not an error"
    );
}

#[tokio::test]
async fn a_rule_retries_override_the_service_without_retries() {
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let good = Backend::http().name("good").spawn().await;
    let route = resource(
        "Route",
        "shop",
        "hosts: [shop]\nrules:\n  - backends: [{service: be}]\n    retries: {attempts: 1, on: [gateway-error]}\n",
    );
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&bad, &good], "balancer: {algorithm: round-robin}")
        .route_yaml(&route)
        .spawn()
        .await;
    for _ in 0..20 {
        let response = proxy.get("shop", "/").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "good");
    }
    assert!(
        bad.requests() >= 5,
        "the bad endpoint was tried: {}",
        bad.requests()
    );
}
