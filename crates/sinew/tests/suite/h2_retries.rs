//! Retries over HTTP/2, black-box: an h2 request answered 503 is retried on
//! a healthy sibling, and a unary gRPC call answered `UNAVAILABLE`
//! (trailers-only) is replayed, body included, on the sibling; an answer
//! whose retry the budget refuses reaches the client as the upstream gave it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sinew_testkit::{Backend, GrpcBackend, GrpcClient, HttpClient, Proxy, Upstream};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// An h2c server answering every call with a trailers-only gRPC UNAVAILABLE.
struct Unavailable {
    addr: SocketAddr,
    calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Unavailable {
    async fn spawn() -> Unavailable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counted = calls.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
                            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            async {
                                let mut resp = Response::new(Empty::<Bytes>::new());
                                let headers = resp.headers_mut();
                                headers.insert(
                                    "content-type",
                                    "application/grpc".parse().expect("value"),
                                );
                                headers.insert("grpc-status", "14".parse().expect("value"));
                                headers
                                    .insert("grpc-message", "overloaded".parse().expect("value"));
                                Ok::<_, Infallible>(resp)
                            }
                        });
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Unavailable { addr, calls }
    }

    fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Upstream for Unavailable {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

#[tokio::test]
async fn an_h2_request_answered_503_is_retried_on_a_sibling() {
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let good = Backend::http().name("good").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&bad, &good],
            "balancer: {algorithm: round-robin}\nretries: {attempts: 1, on: [gateway-error]}",
        )
        .spawn()
        .await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    for _ in 0..10 {
        let response = client.get("be", "/").await.expect("answer");
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), "good");
    }
    assert!(
        bad.requests() >= 3,
        "the 503 endpoint was tried: {}",
        bad.requests()
    );
}

#[tokio::test]
async fn a_unary_grpc_call_answered_unavailable_is_replayed_on_a_sibling() {
    let unavailable = Unavailable::spawn().await;
    let good = GrpcBackend::spawn("good").await;
    // The service is written by hand: two kinds of endpoints.
    let service = sinew_testkit::resource(
        "Service",
        "echo",
        &format!(
            "endpoints: [{{address: {}}}, {{address: {}}}]\nbalancer: {{algorithm: round-robin}}\nretries: {{attempts: 1, on: [unavailable], retry_non_idempotent: true}}\n",
            unavailable.addr(),
            good.addr()
        ),
    );
    let proxy = Proxy::builder(SINEW).route_yaml(&service).spawn().await;
    let mut client = GrpcClient::connect(proxy.outbound(), "echo")
        .await
        .expect("grpc connect");
    for i in 0..6 {
        let reply = client.unary(&format!("ping {i}")).await.expect("reply");
        assert_eq!(reply.grpc_status(), Some(0), "{reply:?}");
        assert_eq!(reply.messages.len(), 1, "{reply:?}");
        assert!(
            String::from_utf8_lossy(&reply.messages[0]).contains(&format!("ping {i}")),
            "the replayed request carried its body: {reply:?}"
        );
    }
    assert!(
        unavailable.calls() >= 2,
        "the UNAVAILABLE endpoint was tried: {}",
        unavailable.calls()
    );
}

#[tokio::test]
async fn an_h2_retry_waits_for_retry_after() {
    let busy = Backend::http()
        .name("busy")
        .fail("/", 503)
        .response_header("retry-after", "1")
        .spawn()
        .await;
    let good = Backend::http().name("good").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&busy, &good],
            "balancer: {algorithm: round-robin}\nretries: {attempts: 1, on: [gateway-error]}",
        )
        .spawn()
        .await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    let mut slowest = std::time::Duration::ZERO;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let response = client.get("be", "/").await.expect("answer");
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.text(), "good");
    }
    assert!(
        slowest >= std::time::Duration::from_millis(950),
        "waited for Retry-After: {slowest:?}"
    );
}

#[tokio::test]
async fn bodies_past_the_replay_cap_stream_intact_with_retries_on() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&backend],
            "retries: {attempts: 2, on: [gateway-error, reset], max_body_bytes: 65536}",
        )
        .spawn()
        .await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    for size in [1_000usize, 65_536, 4 * 1024 * 1024] {
        let body = sinew_testkit::pattern_bytes(size);
        let response = client
            .send(
                sinew_testkit::Request::post("/echo-body", body.clone())
                    .host("be")
                    .header("content-type", "application/octet-stream"),
            )
            .await
            .expect("answer");
        assert_eq!(response.status, 200, "{size} bytes");
        assert_eq!(
            response.header("x-body-digest"),
            Some(sinew_testkit::digest(&body).as_str()),
            "{size} bytes reached the backend intact"
        );
        assert_eq!(response.body.len(), size, "and came back intact");
    }
}

#[tokio::test]
async fn an_h2_answer_whose_retry_the_budget_refuses_reaches_the_client_as_it_was() {
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let other = Backend::http().name("other").fail("/", 503).spawn().await;
    // A budget of nothing: no retry may be made.
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&bad, &other],
            "retries: {attempts: 2, on: [gateway-error], budget: {ratio: 0.0, min_per_second: 0}}",
        )
        .spawn()
        .await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    let response = client.get("be", "/").await.expect("answer");
    assert_eq!(response.status, 503, "{response:?}");
    assert_eq!(
        response.header("x-sinew-error"),
        None,
        "the upstream's own 503, not one the proxy made: {response:?}"
    );
    assert_eq!(bad.requests() + other.requests(), 1, "no retry was made");
}
