//! Active health checks against real loopback servers: TCP, HTTP/1.1 and
//! gRPC probes, timeouts, and the checker's thresholds and reloads.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use sinew_model::{Duration as ModelDuration, HealthCheck, HealthProbe, StatusRange};
use sinew_proxy::health::{probe, EndpointHealth, HealthChecker, ProbeError, Target};
use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU16, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Polls `cond` every 5 ms until it holds, failing the test after 5 s.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "not true within 5s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn check(probe: HealthProbe, interval_ms: u64, unhealthy: u32, healthy: u32) -> HealthCheck {
    HealthCheck {
        probe,
        interval: ModelDuration(Duration::from_millis(interval_ms)),
        timeout: ModelDuration(Duration::from_millis(500)),
        unhealthy_threshold: unhealthy,
        healthy_threshold: healthy,
        initial: Default::default(),
    }
}

fn http_probe(path: &str) -> HealthProbe {
    HealthProbe::Http {
        path: path.to_owned(),
        expected_statuses: Vec::new(),
    }
}

fn grpc_probe(service: Option<&str>) -> HealthProbe {
    HealthProbe::Grpc {
        service: service.map(str::to_owned),
    }
}

/// An address nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A hand-written HTTP/1.1 server answering `/always-ok` with 200 and any
/// other path with the current `status`; it keeps the last request head.
struct HttpBackend {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    last_head: Arc<Mutex<String>>,
    requests: Arc<AtomicU64>,
}

impl HttpBackend {
    async fn spawn(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Self {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU16::new(status)),
            last_head: Arc::default(),
            requests: Arc::default(),
        };
        let (status, last_head, requests) = (
            backend.status.clone(),
            backend.last_head.clone(),
            backend.requests.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (status, last_head, requests) =
                    (status.clone(), last_head.clone(), requests.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        let mut byte = [0u8];
                        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let code = if head.starts_with("GET /always-ok ") {
                        200
                    } else {
                        status.load(Ordering::SeqCst)
                    };
                    *last_head.lock().unwrap() = head;
                    requests.fetch_add(1, Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 {code} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        backend
    }
}

/// A server that counts connections and answers each with `answer` once the
/// client has sent something, then closes it — or, with `hang`, holds it open.
async fn raw_server(answer: &'static [u8], hang: bool) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                // Read first, so closing does not reset the connection.
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(answer).await;
                if hang {
                    // Keep the connection open, unanswered, until the client leaves.
                    while stream.read(&mut request).await.is_ok_and(|n| n > 0) {}
                }
            });
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn tcp_probe_passes_on_a_listening_port_and_fails_on_a_closed_one() {
    let (addr, accepted) = raw_server(b"", false).await;
    let tcp = check(HealthProbe::Tcp {}, 1000, 1, 1);
    probe("db", addr, None, &tcp).await.unwrap();
    eventually("connection accepted", || {
        accepted.load(Ordering::SeqCst) == 1
    })
    .await;

    let err = probe("db", closed_port().await, None, &tcp)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Connect(_)), "{err:?}");
}

#[tokio::test]
async fn http_probe_sends_host_and_user_agent_and_checks_the_status() {
    let backend = HttpBackend::spawn(200).await;
    let ok = check(http_probe("/healthz"), 1000, 1, 1);
    probe("orders", backend.addr, None, &ok).await.unwrap();
    let head = backend.last_head.lock().unwrap().clone();
    assert!(head.starts_with("GET /healthz HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\nhost: orders\r\n"), "{head}");
    assert!(
        head.contains("\r\nuser-agent: sinew-health-check\r\n"),
        "{head}"
    );

    // The default expected statuses are 200..=399.
    backend.status.store(302, Ordering::SeqCst);
    probe("orders", backend.addr, None, &ok).await.unwrap();
    backend.status.store(503, Ordering::SeqCst);
    let err = probe("orders", backend.addr, None, &ok).await.unwrap_err();
    assert!(matches!(err, ProbeError::Status(503)), "{err:?}");

    // Listed statuses replace the default.
    let expect_503 = check(
        HealthProbe::Http {
            path: "/healthz".into(),
            expected_statuses: vec![StatusRange {
                first: 500,
                last: 503,
            }],
        },
        1000,
        1,
        1,
    );
    probe("orders", backend.addr, None, &expect_503)
        .await
        .unwrap();
    backend.status.store(200, Ordering::SeqCst);
    let err = probe("orders", backend.addr, None, &expect_503)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::Status(200)), "{err:?}");
}

#[tokio::test]
async fn http_probe_reads_past_interim_responses_and_fails_on_garbage_early_close_and_unsafe_paths()
{
    let ok = check(http_probe("/healthz"), 1000, 1, 1);
    let (garbage, _) = raw_server(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", false).await;
    let err = probe("svc", garbage, None, &ok).await.unwrap_err();
    assert!(matches!(err, ProbeError::Malformed(_)), "{err:?}");

    let (closes, _) = raw_server(b"HTTP/1.1 200 OK\r\n", false).await;
    let err = probe("svc", closes, None, &ok).await.unwrap_err();
    assert!(matches!(err, ProbeError::Closed), "{err:?}");

    // An interim response is skipped; the final status counts.
    let (early_hints, _) = raw_server(
        b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        false,
    )
    .await;
    probe("svc", early_hints, None, &ok).await.unwrap();

    let backend = HttpBackend::spawn(200).await;
    let smuggle = check(http_probe("/a\r\nx-injected:1"), 1000, 1, 1);
    let err = probe("svc", backend.addr, None, &smuggle)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::InvalidRequest), "{err:?}");
    assert_eq!(backend.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_server_that_never_answers_fails_the_probe_at_the_timeout() {
    let (addr, accepted) = raw_server(b"", true).await;
    for probe_kind in [http_probe("/healthz"), grpc_probe(None)] {
        let mut hanging = check(probe_kind, 1000, 1, 1);
        hanging.timeout = ModelDuration(Duration::from_millis(100));
        let started = Instant::now();
        let err = probe("svc", addr, None, &hanging).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout), "{err:?}");
        assert!(started.elapsed() >= Duration::from_millis(100));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn checker_applies_thresholds_both_ways() {
    let backend = HttpBackend::spawn(200).await;
    let state = Arc::new(EndpointHealth::default());
    let _checker = HealthChecker::spawn(vec![Target {
        service: "orders".into(),
        addr: backend.addr,
        tls: None,
        check: check(http_probe("/healthz"), 20, 3, 2),
        state: state.clone(),
    }]);
    eventually("a probe passed", || {
        state.snapshot().consecutive_successes >= 1
    })
    .await;
    assert!(state.is_healthy());

    backend.status.store(503, Ordering::SeqCst);
    eventually("unhealthy", || !state.is_healthy()).await;
    let s = state.snapshot();
    assert!(s.consecutive_failures >= 3, "{s:?}");
    assert_eq!((s.became_unhealthy, s.became_healthy), (1, 0));
    assert_eq!(s.last_error.as_deref(), Some("unexpected status 503"));

    backend.status.store(200, Ordering::SeqCst);
    eventually("healthy again", || state.is_healthy()).await;
    let s = state.snapshot();
    assert!(s.consecutive_successes >= 2, "{s:?}");
    assert_eq!((s.became_unhealthy, s.became_healthy), (1, 1));
}

#[tokio::test]
async fn replace_restarts_changed_checks_on_the_same_state_and_stop_ends_them() {
    let backend = HttpBackend::spawn(503).await;
    let state = Arc::new(EndpointHealth::default());
    let target = |path: &str| Target {
        service: "orders".into(),
        addr: backend.addr,
        tls: None,
        check: check(http_probe(path), 20, 1, 1),
        state: state.clone(),
    };
    let mut checker = HealthChecker::spawn(vec![target("/healthz")]);
    assert_eq!(checker.len(), 1);
    eventually("unhealthy", || !state.is_healthy()).await;

    // A reload that changes the path: the same state turns healthy.
    checker.replace(vec![target("/always-ok")]);
    assert_eq!(checker.len(), 1);
    eventually("healthy on the new path", || state.is_healthy()).await;

    // A reload that removes the endpoint stops its probes.
    checker.replace(Vec::new());
    assert!(checker.is_empty());
    let before = backend.requests.load(Ordering::SeqCst);
    // Absence cannot be awaited: give the stopped check ten intervals.
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A probe in flight at the stop may still land.
    assert!(backend.requests.load(Ordering::SeqCst) <= before + 1);

    checker.replace(vec![target("/always-ok")]);
    checker.stop();
    assert!(checker.is_empty());
}

/// A gRPC health server over h2c answering `Check` with `status`
/// (`grpc_status` ≠ 0: a trailers-only error); it keeps the last request body.
struct GrpcBackend {
    addr: SocketAddr,
    status: Arc<AtomicU8>,
    grpc_status: Arc<AtomicU8>,
    last_request: Arc<Mutex<(String, Bytes)>>,
}

impl GrpcBackend {
    async fn spawn(status: u8) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = Self {
            addr: listener.local_addr().unwrap(),
            status: Arc::new(AtomicU8::new(status)),
            grpc_status: Arc::new(AtomicU8::new(0)),
            last_request: Arc::default(),
        };
        let (status, grpc_status, last) = (
            backend.status.clone(),
            backend.grpc_status.clone(),
            backend.last_request.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (status, grpc_status, last) =
                    (status.clone(), grpc_status.clone(), last.clone());
                tokio::spawn(serve_grpc(stream, status, grpc_status, last));
            }
        });
        backend
    }
}

async fn serve_grpc(
    stream: TcpStream,
    status: Arc<AtomicU8>,
    grpc_status: Arc<AtomicU8>,
    last: Arc<Mutex<(String, Bytes)>>,
) {
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let (status, grpc_status, last) = (status.clone(), grpc_status.clone(), last.clone());
        async move {
            let path = request.uri().path().to_owned();
            let body = request.into_body().collect().await.unwrap().to_bytes();
            *last.lock().unwrap() = (path, body);
            let code = grpc_status.load(Ordering::SeqCst);
            let builder = http::Response::builder()
                .status(200)
                .header("content-type", "application/grpc");
            let response = if code != 0 {
                builder.header("grpc-status", code.to_string()).body(
                    Full::new(Bytes::new())
                        .with_trailers(async { None })
                        .boxed(),
                )
            } else {
                let message = Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status.load(Ordering::SeqCst)]);
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                builder.body(
                    Full::new(message)
                        .with_trailers(async { Some(Ok(trailers)) })
                        .boxed(),
                )
            };
            Ok::<_, Infallible>(response.unwrap())
        }
    });
    let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await;
}

#[tokio::test]
async fn grpc_probe_reads_the_serving_status() {
    let backend = GrpcBackend::spawn(1).await;
    let whole_server = check(grpc_probe(None), 1000, 1, 1);
    probe("payments", backend.addr, None, &whole_server)
        .await
        .unwrap();
    let (path, body) = backend.last_request.lock().unwrap().clone();
    assert_eq!(path, "/grpc.health.v1.Health/Check");
    assert_eq!(&body[..], &[0, 0, 0, 0, 0]);

    let named = check(grpc_probe(Some("pay.v1")), 1000, 1, 1);
    probe("payments", backend.addr, None, &named).await.unwrap();
    let (_, body) = backend.last_request.lock().unwrap().clone();
    assert_eq!(&body[..], b"\0\0\0\0\x08\x0a\x06pay.v1");

    backend.status.store(2, Ordering::SeqCst);
    let err = probe("payments", backend.addr, None, &named)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::NotServing(2)), "{err:?}");

    // UNIMPLEMENTED: the server has no health service.
    backend.grpc_status.store(12, Ordering::SeqCst);
    let err = probe("payments", backend.addr, None, &named)
        .await
        .unwrap_err();
    assert!(matches!(err, ProbeError::GrpcStatus(12)), "{err:?}");
}

#[tokio::test]
async fn checker_marks_a_not_serving_grpc_endpoint_unhealthy_and_back() {
    let backend = GrpcBackend::spawn(1).await;
    let state = Arc::new(EndpointHealth::default());
    let _checker = HealthChecker::spawn(vec![Target {
        service: "payments".into(),
        addr: backend.addr,
        tls: None,
        check: check(grpc_probe(None), 20, 2, 2),
        state: state.clone(),
    }]);
    eventually("a probe passed", || {
        state.snapshot().consecutive_successes >= 1
    })
    .await;
    backend.status.store(2, Ordering::SeqCst);
    eventually("unhealthy", || !state.is_healthy()).await;
    backend.status.store(1, Ordering::SeqCst);
    eventually("healthy again", || state.is_healthy()).await;
    assert_eq!(state.snapshot().became_healthy, 1);
}
