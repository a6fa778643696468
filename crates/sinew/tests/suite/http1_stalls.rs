//! HTTP/1 requests in flight that stall or desynchronize, black-box over raw
//! sockets: a client body or an upstream that stops moving is cut off at
//! `stream_idle_timeout`; an upstream that ignores `Expect` still gets the
//! body; the proxy's own answers to `HEAD`, to a request after empty lines
//! and to an unasked `101` keep the connection in step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sinew_testkit::{AddrOnly, Backend, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// A proxy routing `Host: be` to `be`, with a 1 s stream idle timeout.
async fn proxy_to(be: SocketAddr) -> Proxy {
    Proxy::builder(SINEW)
        .service("be", &[&AddrOnly(be)])
        .proxy_spec("stream_idle_timeout: 1s")
        .spawn()
        .await
}

/// An upstream that answers each connection with `script`.
async fn upstream<F, Fut>(script: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(script(stream));
        }
    });
    addr
}

/// Reads from `stream` until `buf` contains `needle`.
async fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, needle: &[u8]) {
    while !buf.windows(needle.len()).any(|w| w == needle) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(
            n > 0,
            "closed before {:?}: {:?}",
            String::from_utf8_lossy(needle),
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Everything `stream` sends until it closes or `limit` passes, and when it closed.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Option<Duration>) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await
    .ok();
    (String::from_utf8_lossy(&buf).into_owned(), closed)
}

#[tokio::test]
async fn a_client_body_that_stops_gets_408_at_the_stream_idle_timeout() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_to(sinew_testkit::Upstream::addr(&backend)).await;
    let mut client = TcpStream::connect(proxy.outbound()).await.expect("connect");
    client
        .write_all(b"POST /echo HTTP/1.1\r\nHost: be\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let (answer, closed) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("x-sinew-error: body-timeout"), "{answer:?}");
    let closed = closed.expect("the connection is closed");
    assert!(closed >= Duration::from_millis(900), "{closed:?}");
}

#[tokio::test]
async fn an_upstream_that_never_answers_gets_504_at_the_stream_idle_timeout() {
    let silent = upstream(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let proxy = proxy_to(silent).await;
    let mut client = TcpStream::connect(proxy.outbound()).await.expect("connect");
    let started = Instant::now();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    read_until(&mut client, &mut buf, b"\r\n\r\n").await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 504"), "{answer:?}");
    assert!(
        answer.contains("x-sinew-error: upstream-timeout"),
        "{answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_upstream_that_stops_mid_body_is_cut_off_at_the_stream_idle_timeout() {
    let stalling = upstream(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    })
    .await;
    let proxy = proxy_to(stalling).await;
    let mut client = TcpStream::connect(proxy.outbound()).await.expect("connect");
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("write");
    let (answer, closed) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        answer.ends_with("0123456789"),
        "the bytes that came were passed on: {answer:?}"
    );
    let closed = closed.expect("the connection is closed, not left hanging");
    assert!(closed < Duration::from_secs(5), "{closed:?}");
}

#[tokio::test]
async fn an_upstream_that_ignores_expect_still_gets_the_body() {
    // Waits for the whole body without ever sending `100 Continue`.
    let ignoring = upstream(|mut s| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let Ok(n) = s.read(&mut chunk).await else {
                return;
            };
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(b"hello") {
                break;
            }
        }
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ngot hello")
            .await;
    })
    .await;
    let proxy = proxy_to(ignoring).await;
    let mut client = TcpStream::connect(proxy.outbound()).await.expect("connect");
    client
        .write_all(
            b"POST / HTTP/1.1\r\nHost: be\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let continued = tokio::time::timeout(
        Duration::from_secs(5),
        read_until(&mut client, &mut buf, b"HTTP/1.1 100 Continue\r\n\r\n"),
    )
    .await;
    assert!(
        continued.is_ok(),
        "no 100 Continue: {:?}",
        String::from_utf8_lossy(&buf)
    );
    client.write_all(b"hello").await.expect("write body");
    read_until(&mut client, &mut buf, b"got hello").await;
    assert!(String::from_utf8_lossy(&buf).contains("HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn the_proxys_answers_keep_the_connection_in_step() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_to(sinew_testkit::Upstream::addr(&backend)).await;
    // A HEAD the proxy refuses (404: no route), then empty lines before a
    // refused GET, then a GET that is forwarded: three answers, in order,
    // with nothing between them.
    let mut client = TcpStream::connect(proxy.outbound()).await.expect("connect");
    client
        .write_all(
            b"HEAD / HTTP/1.1\r\nHost: nowhere\r\n\r\n\
              \r\n\r\nGET / HTTP/1.1\r\nHost: nowhere\r\n\r\n\
              GET /last HTTP/1.1\r\nHost: be\r\nConnection: close\r\n\r\n",
        )
        .await
        .expect("write");
    let (answers, closed) = read_to_close(&mut client, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "closed after the last: {answers:?}");
    let starts: Vec<_> = answers.match_indices("HTTP/1.1 ").map(|(i, _)| i).collect();
    assert_eq!(starts.len(), 3, "{answers:?}");
    let head_answer = &answers[starts[0]..starts[1]];
    assert!(head_answer.starts_with("HTTP/1.1 404"), "{answers:?}");
    assert!(
        head_answer.ends_with("\r\n\r\n"),
        "a HEAD answer has no body: {answers:?}"
    );
    let get_answer = &answers[starts[1]..starts[2]];
    assert!(get_answer.starts_with("HTTP/1.1 404"), "{answers:?}");
    assert!(get_answer.ends_with("no-route"), "{answers:?}");
    assert!(
        answers[starts[2]..].starts_with("HTTP/1.1 200"),
        "{answers:?}"
    );
    assert_eq!(backend.requests(), 1);
}

#[tokio::test]
async fn an_unasked_switch_of_protocols_is_502() {
    let switching = upstream(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: other\r\n\r\n")
            .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
    })
    .await;
    let proxy = proxy_to(switching).await;
    let answer =
        sinew_testkit::raw_exchange(proxy.outbound(), b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
            .await
            .expect("an answer");
    assert_eq!(answer.status, 502, "{answer:?}");
}
