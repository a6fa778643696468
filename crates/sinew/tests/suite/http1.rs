//! HTTP/1.1 semantics at the proxy's edge, black-box over raw sockets:
//! request-smuggling shapes refused, HTTP/1.0 clients served, and the
//! proxy's own answers when an upstream cannot be reached or is too slow.

use std::time::{Duration, Instant};

use sinew_testkit::{free_port, pattern_bytes, raw_exchange, AddrOnly, Backend, BlackHole, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test]
async fn request_smuggling_shapes_are_refused_with_400_and_never_forwarded() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .spawn()
        .await;
    let shapes: [&[u8]; 7] = [
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: be\r\nX-Folded: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: be\r\nHost: other\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    for raw in shapes {
        let response = raw_exchange(proxy.outbound(), raw)
            .await
            .unwrap_or_else(|e| panic!("no answer to {:?}: {e}", String::from_utf8_lossy(raw)));
        assert_eq!(
            response.status,
            400,
            "{:?} -> {response:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(backend.requests(), 0, "nothing reached the backend");
}

#[tokio::test]
async fn an_http10_client_gets_a_chunked_upstream_response_decoded_and_close_delimited() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .spawn()
        .await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    stream
        .write_all(b"GET /chunked/50000 HTTP/1.0\r\nHost: be\r\n\r\n")
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the proxy closes the connection after the body")
        .expect("read");
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head")
        + 4;
    let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        !head.contains("transfer-encoding"),
        "no chunked framing for HTTP/1.0: {head}"
    );
    assert_eq!(&raw[end..], &pattern_bytes(50_000)[..], "the decoded body");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_answered_503_connect_failed() {
    // A free port with nothing listening: connections are refused.
    let closed = AddrOnly(free_port());
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&closed])
        .spawn()
        .await;
    let response = proxy.get("be", "/").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("x-sinew-error"), Some("connect-failed"));
    let metrics = proxy.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sinew_upstream_connect_errors_total{")
                && l.contains(&closed.0.to_string())
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_connect_that_hangs_is_cut_at_the_connect_timeout_with_503() {
    let hole = BlackHole::spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&hole], "connect_timeout: 300ms")
        .spawn()
        .await;
    let started = Instant::now();
    let response = proxy.get("be", "/").await;
    let took = started.elapsed();
    assert_eq!(
        response.status,
        503,
        "{:?}",
        response.header("x-sinew-error")
    );
    assert_eq!(response.header("x-sinew-error"), Some("connect-timeout"));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}

#[tokio::test]
async fn an_upstream_slower_than_the_timeout_is_answered_504() {
    let backend = Backend::http()
        .name("be")
        .delay("/slow", Duration::from_secs(5))
        .spawn()
        .await;
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&backend], "timeout: 300ms")
        .spawn()
        .await;
    let started = Instant::now();
    let response = proxy.get("be", "/slow").await;
    let took = started.elapsed();
    assert_eq!(response.status, 504);
    assert_eq!(response.header("x-sinew-error"), Some("upstream-timeout"));
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // The connection stays usable for the next request.
    assert_eq!(proxy.get("be", "/").await.status, 200);
}

#[tokio::test]
async fn a_kept_alive_connection_idle_past_idle_timeout_is_closed() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&backend])
        .proxy_spec("idle_timeout: 300ms")
        .spawn()
        .await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("send");
    let started = Instant::now();
    let mut raw = Vec::new();
    // The response arrives, then the proxy closes the idle connection.
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut raw))
        .await
        .expect("closed by the proxy within the idle timeout (plus margin)")
        .expect("read");
    let took = started.elapsed();
    assert!(
        String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"),
        "{raw:?}"
    );
    assert!(
        took >= Duration::from_millis(250),
        "not before the idle timeout: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "closed after {took:?}");
}
