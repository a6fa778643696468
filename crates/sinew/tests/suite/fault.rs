//! Fault injection, black-box: a route rule delays and aborts a share of its
//! requests before forwarding, over HTTP/1.1 and HTTP/2.

use std::time::{Duration, Instant};

use sinew_testkit::{resource, Backend, HttpClient, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

fn faulty_route(fault: &str) -> String {
    resource(
        "Route",
        "shop",
        &format!(
            "hosts: [shop]\nrules:\n  - match: [{{path: {{prefix: /chaos}}}}]\n    backends: [{{service: be}}]\n    fault: {fault}\n  - backends: [{{service: be}}]\n"
        ),
    )
}

#[tokio::test]
async fn abort_answers_from_the_proxy_and_never_reaches_the_backend() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .route_yaml(&faulty_route("{abort: {status: 503, percent: 100}}"))
        .spawn()
        .await;
    for _ in 0..5 {
        let response = proxy.get("shop", "/chaos").await;
        assert_eq!(response.status, 503);
        assert_eq!(response.header("x-sinew-fault"), Some("abort"));
    }
    let mut h2 = HttpClient::h2(proxy.outbound()).await.expect("h2");
    let response = h2.get("shop", "/chaos").await.expect("h2 get");
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-sinew-fault"), Some("abort"));
    assert_eq!(backend.requests(), 0, "aborted requests are not forwarded");
    assert_eq!(
        proxy.get("shop", "/calm").await.status,
        200,
        "other rules are untouched"
    );
}

#[tokio::test]
async fn delay_holds_the_request_before_forwarding() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .route_yaml(&faulty_route("{delay: {fixed: 300ms, percent: 100}}"))
        .spawn()
        .await;
    let started = Instant::now();
    let response = proxy.get("shop", "/chaos").await;
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(backend.requests(), 1);
}

#[tokio::test]
async fn percent_applies_to_a_share_of_requests() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .route_yaml(&faulty_route("{abort: {status: 418, percent: 50}}"))
        .spawn()
        .await;
    let mut aborted = 0;
    for _ in 0..400 {
        if proxy.get("shop", "/chaos").await.status == 418 {
            aborted += 1;
        }
    }
    // Binomial(400, 0.5): ±5 standard deviations is ±50.
    assert!((150..=250).contains(&aborted), "{aborted} of 400 aborted");
    assert_eq!(backend.requests(), 400 - aborted);
}
