//! HTTP hardening, black-box over raw sockets (docs/security.md, "HTTP
//! hardening"): every refused request shape gets its status and never
//! reaches the backend; slow heads, slow prefaces and idle connections are
//! cut off; HTTP/2 limits hold against hand-written frames; hop-by-hop
//! fields stay on their hop; `x-forwarded-*` follows the documented policy.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sinew_testkit::{raw_exchange, AddrOnly, Backend, HttpClient, Proxy, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// A proxy whose outbound listener routes `Host: be` to `backend`.
async fn proxy_for(backend: &Backend, spec: &str) -> Proxy {
    let mut builder = Proxy::builder(SINEW).service("be", &[backend]);
    if !spec.is_empty() {
        builder = builder.proxy_spec(spec);
    }
    builder.spawn().await
}

/// Sends `raw` and checks the proxy answers `status` without forwarding
/// anything, then that a well-formed request on a new connection does reach
/// the backend (so "nothing forwarded" is not a dead backend's doing).
async fn assert_refused(raw: &[u8], status: u16) {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let shown = String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned();
    let response = raw_exchange(proxy.outbound(), raw)
        .await
        .unwrap_or_else(|e| panic!("no answer to {shown:?}: {e}"));
    assert_eq!(response.status, status, "{shown:?} -> {response:?}");
    assert!(
        response.header("x-sinew-error").is_some(),
        "answered by the proxy: {response:?}"
    );
    assert_eq!(backend.requests(), 0, "{shown:?} reached the backend");
    let ok = raw_exchange(proxy.outbound(), b"GET /ok HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("a well-formed request");
    assert_eq!(ok.status, 200);
    assert_eq!(backend.requests(), 1);
}

/// One test per refused shape: `refused!(name, status, bytes)`.
macro_rules! refused {
    ($($name:ident: $status:literal, $raw:expr;)+) => {$(
        #[tokio::test]
        async fn $name() {
            assert_refused(&$raw[..], $status).await;
        }
    )+};
}

// Request smuggling: framing the proxy and the next hop could read differently.
refused! {
    content_length_with_transfer_encoding: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    transfer_encoding_before_content_length: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n";
    duplicate_content_length_differing: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!";
    content_length_list_in_one_field: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 5, 5\r\n\r\nhello";
    content_length_with_sign: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: +5\r\n\r\nhello";
    content_length_negative: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: -1\r\n\r\n";
    content_length_with_inner_space: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 1 5\r\n\r\nhello";
    content_length_in_hex: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 0x5\r\n\r\nhello";
    content_length_overflowing: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    chunk_size_not_hex: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\nz\r\nhello\r\n0\r\n\r\n";
    chunk_size_empty: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n";
    chunk_size_with_sign: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n";
    chunk_size_overflowing: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n";
    chunk_size_line_with_bare_lf: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n";
    chunk_extension_with_bare_lf: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n5;a=\"x\ny\"\r\nhello\r\n0\r\n\r\n";
    chunk_data_longer_than_its_size: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello!\r\n0\r\n\r\n";
    chunked_trailer_with_obs_fold: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nx: a\r\n b\r\n\r\n";
    obs_fold_in_a_header: 400,
        b"GET / HTTP/1.1\r\nHost: be\r\nX-Folded: a\r\n b\r\n\r\n";
    obs_fold_continuing_transfer_encoding: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n";
    unknown_transfer_encoding: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: gzip\r\n\r\nhello";
    transfer_encoding_chunked_then_identity: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n";
    transfer_encoding_chunked_twice: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    transfer_encoding_lookalike: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n";
    transfer_encoding_with_space_before_colon: 400,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n";
    transfer_encoding_coding_before_chunked: 501,
        b"POST / HTTP/1.1\r\nHost: be\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    transfer_encoding_on_http10: 400,
        b"POST / HTTP/1.0\r\nHost: be\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    duplicate_host: 400,
        b"GET / HTTP/1.1\r\nHost: be\r\nHost: other\r\n\r\n";
    missing_host_on_http11: 400,
        b"GET / HTTP/1.1\r\n\r\n";
}

// Request-line and field oddities.
refused! {
    absolute_form_with_userinfo: 400,
        b"GET http://user:pass@be/ HTTP/1.1\r\nHost: be\r\n\r\n";
    invalid_method_token: 400,
        b"G(T / HTTP/1.1\r\nHost: be\r\n\r\n";
    bare_lf_line_ends: 400,
        b"GET / HTTP/1.1\nHost: be\n\n";
    bare_lf_in_one_field_line: 400,
        b"GET / HTTP/1.1\r\nHost: be\nX-Smuggle: 1\r\n\r\n";
    bare_cr_in_a_field: 400,
        b"GET / HTTP/1.1\r\nHost: be\r\nX-A: 1\rX-B: 2\r\n\r\n";
    nul_byte_in_the_target: 400,
        b"GET /a\0b HTTP/1.1\r\nHost: be\r\n\r\n";
    nul_byte_in_a_field_value: 400,
        b"GET / HTTP/1.1\r\nHost: be\r\nX-A: a\0b\r\n\r\n";
    encoded_nul_in_the_path: 400,
        b"GET /a%00b HTTP/1.1\r\nHost: be\r\n\r\n";
    encoded_slash_in_the_path: 400,
        b"GET /a%2fb HTTP/1.1\r\nHost: be\r\n\r\n";
    fragment_in_the_target: 400,
        b"GET /admin#x HTTP/1.1\r\nHost: be\r\n\r\n";
    asterisk_target_without_options: 400,
        b"GET * HTTP/1.1\r\nHost: be\r\n\r\n";
    unknown_http_version: 400,
        b"GET / HTTP/1.2\r\nHost: be\r\n\r\n";
    doubled_spaces_in_the_request_line: 400,
        b"GET  / HTTP/1.1\r\nHost: be\r\n\r\n";
    connect_is_not_proxied: 405,
        b"CONNECT be:80 HTTP/1.1\r\nHost: be:80\r\n\r\n";
    connect_in_origin_form_is_not_proxied: 405,
        b"CONNECT /x HTTP/1.1\r\nHost: be\r\n\r\n";
    overlong_uri: 414,
        format!("GET /{} HTTP/1.1\r\nHost: be\r\n\r\n", "a".repeat(9000)).as_bytes();
    overlong_request_line_never_ending: 414,
        format!("GET /{}", "a".repeat(9000)).as_bytes();
    too_many_header_fields: 431,
        format!("GET / HTTP/1.1\r\nHost: be\r\n{}\r\n", "X-N: v\r\n".repeat(100)).as_bytes();
    head_over_64_kib: 431,
        // Exactly the limit, never finished: every byte sent is read.
        format!("GET / HTTP/1.1\r\nHost: be\r\nX-Big: {}", "a".repeat(65536 - 33)).as_bytes();
}

/// A raw HTTP/1 backend: records each request head it reads (body framed by
/// `Content-Length` or chunked, consumed) and answers every request with
/// `response`, keeping the connection alive.
struct RawBackend {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawBackend {
    async fn spawn(response: &'static [u8]) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_raw(stream, response, recorded.clone()));
            }
        });
        RawBackend { addr, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }

    fn upstream(&self) -> AddrOnly {
        AddrOnly(self.addr)
    }
}

async fn serve_raw(mut stream: TcpStream, response: &[u8], heads: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !read_some(&mut stream, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let lower = head.to_ascii_lowercase();
        if lower.contains("transfer-encoding: chunked") {
            while find(&buf, b"0\r\n\r\n").is_none() {
                if !read_some(&mut stream, &mut buf).await {
                    return;
                }
            }
            let body_end = find(&buf, b"0\r\n\r\n").map_or(0, |i| i + 5);
            buf.drain(..body_end);
        } else if let Some(len) = field(&lower, "content-length").and_then(|v| v.parse().ok()) {
            while buf.len() < len {
                if !read_some(&mut stream, &mut buf).await {
                    return;
                }
            }
            buf.drain(..len);
        }
        heads.lock().expect("heads").push(head);
        if stream.write_all(response).await.is_err() {
            return;
        }
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.reserve(16 * 1024);
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The values of field `name` (lower case) in a lower-cased head, in order.
fn fields<'h>(head: &'h str, name: &str) -> Vec<&'h str> {
    head.split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .collect()
}

fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    fields(head, name).into_iter().next()
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

#[tokio::test]
async fn a_head_at_the_limits_is_served() {
    // The raw backend: the kit's echoes every field back, past 100.
    let raw_be = RawBackend::spawn(OK).await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    // 98 fields, an 8 KiB target, a 60 KiB head.
    let raw = format!(
        "GET /{} HTTP/1.1\r\nHost: be\r\n{}X-Big: {}\r\n\r\n",
        "a".repeat(8000),
        "X-N: v\r\n".repeat(96),
        "b".repeat(50_000)
    );
    let response = raw_exchange(proxy.outbound(), raw.as_bytes())
        .await
        .expect("answer");
    assert_eq!(response.status, 200, "{response:?}");
    let heads = raw_be.heads();
    assert_eq!(heads.len(), 1);
    assert_eq!(fields(&heads[0].to_ascii_lowercase(), "x-n").len(), 96);
}

#[tokio::test]
async fn equal_duplicate_content_lengths_are_forwarded_as_one() {
    let raw_be = RawBackend::spawn(OK).await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    let response = raw_exchange(
        proxy.outbound(),
        b"POST /x HTTP/1.1\r\nHost: be\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 200);
    let heads = raw_be.heads();
    let head = heads[0].to_ascii_lowercase();
    assert_eq!(fields(&head, "content-length"), ["5"], "{head}");
}

#[tokio::test]
async fn connection_cannot_strip_framing_or_host() {
    let raw_be = RawBackend::spawn(OK).await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    // Were `Content-Length` dropped, "hello" would read as a second request.
    let response = raw_exchange(
        proxy.outbound(),
        b"POST /x HTTP/1.1\r\nHost: be\r\nConnection: content-length, host\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 200);
    let heads = raw_be.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = heads[0].to_ascii_lowercase();
    assert_eq!(fields(&head, "content-length"), ["5"], "{head}");
    assert_eq!(fields(&head, "host"), ["be"], "{head}");
}

#[tokio::test]
async fn hop_by_hop_request_fields_stay_on_their_hop() {
    let raw_be = RawBackend::spawn(OK).await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    let response = raw_exchange(
        proxy.outbound(),
        b"GET /x HTTP/1.1\r\nHost: be\r\nConnection: keep-alive, x-secret, te\r\nKeep-Alive: timeout=5\r\n\
          Proxy-Connection: keep-alive\r\nTE: trailers, deflate;q=0.5\r\nUpgrade: websocket\r\n\
          X-Secret: s\r\nX-Kept: yes\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 200);
    let head = raw_be.heads()[0].to_ascii_lowercase();
    for gone in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "x-secret",
    ] {
        assert!(fields(&head, gone).is_empty(), "{gone} forwarded: {head}");
    }
    assert_eq!(fields(&head, "te"), ["trailers"], "{head}");
    assert_eq!(fields(&head, "x-kept"), ["yes"], "{head}");
}

#[tokio::test]
async fn hop_by_hop_response_fields_stay_on_their_hop() {
    let raw_be = RawBackend::spawn(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: x-hop\r\nX-Hop: 1\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\nTE: trailers\r\n\
          X-Kept: yes\r\n\r\nok",
    )
    .await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    let response = raw_exchange(proxy.outbound(), b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("answer");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    for gone in [
        "connection",
        "x-hop",
        "keep-alive",
        "proxy-connection",
        "upgrade",
        "te",
    ] {
        assert_eq!(response.header(gone), None, "{gone}: {response:?}");
    }
    assert_eq!(response.header("x-kept"), Some("yes"));
}

#[tokio::test]
async fn an_upstream_content_length_beside_chunked_is_dropped() {
    let raw_be = RawBackend::spawn(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    )
    .await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    let response = raw_exchange(proxy.outbound(), b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("answer");
    assert_eq!((response.status, response.text().as_str()), (200, "ok"));
    assert_eq!(response.header("content-length"), None, "{response:?}");
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
}

#[tokio::test]
async fn an_h2c_upgrade_is_not_forwarded() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let response = raw_exchange(
        proxy.outbound(),
        b"GET / HTTP/1.1\r\nHost: be\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(
        response.status, 200,
        "served as plain HTTP/1.1: {response:?}"
    );
    let seen = backend.last_request().expect("forwarded");
    for gone in ["upgrade", "connection", "http2-settings"] {
        assert!(
            seen.headers.get(gone).is_none(),
            "{gone}: {:?}",
            seen.headers
        );
    }
}

/// Reads until the peer closes (or resets), with the time it took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "still open after {limit:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test]
async fn a_head_sent_byte_by_byte_is_cut_off_at_the_header_timeout() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "request_header_timeout: 1s").await;
    let stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // One byte every 100 ms, for ever: each read makes progress, none ends the head.
    let trickle = tokio::spawn(async move {
        let head = b"GET / HTTP/1.1\r\nHost: be\r\nX-Slow: ".iter();
        for byte in head.chain(std::iter::repeat(&b'a')).take(300) {
            if wr.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let started = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let took = loop {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(n)) => got.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("the slow head was never cut off"),
        }
    };
    trickle.abort();
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    assert!(took >= Duration::from_millis(900), "cut after {took:?}");
    assert!(took < Duration::from_secs(4), "cut after {took:?}");
    assert_eq!(backend.requests(), 0);
    let metrics = proxy.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("sinew_proxy_errors_total{")
                && l.contains("bad_request")
                && !l.ends_with(" 0")),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_header_timeout_runs_from_the_first_byte_not_from_the_previous_request() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "request_header_timeout: 1s\nidle_timeout: 30s").await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    // An idle kept-alive connection is not a slow head.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: be\r\n\r\n")
        .await
        .expect("send");
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut got))
        .await
        .expect("answer")
        .expect("read");
    assert!(got[..n].starts_with(b"HTTP/1.1 200 "), "{:?}", &got[..n]);
}

#[tokio::test]
async fn a_connection_that_never_speaks_is_closed_at_the_idle_timeout() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "idle_timeout: 1s").await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    let (got, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

#[tokio::test]
async fn a_partial_http2_preface_is_cut_off_at_the_header_timeout() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "request_header_timeout: 1s").await;
    let mut stream = TcpStream::connect(proxy.outbound()).await.expect("connect");
    stream.write_all(b"PRI * HTTP/2.0\r\n").await.expect("send");
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
}

/// Raw HTTP/2 frames, enough to probe the server's limits.
mod h2raw {
    use super::*;

    pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    pub(crate) const HEADERS: u8 = 0x1;
    pub(crate) const RST_STREAM: u8 = 0x3;
    pub(crate) const SETTINGS: u8 = 0x4;
    pub(crate) const GOAWAY: u8 = 0x7;
    pub(crate) const CONTINUATION: u8 = 0x9;
    pub(crate) const END_STREAM: u8 = 0x1;
    pub(crate) const END_HEADERS: u8 = 0x4;
    pub(crate) const ACK: u8 = 0x1;
    pub(crate) const REFUSED_STREAM: u32 = 0x7;
    pub(crate) const CANCEL: u32 = 0x8;
    pub(crate) const ENHANCE_YOUR_CALM: u32 = 0xb;
    pub(crate) const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub(crate) const MAX_HEADER_LIST_SIZE: u16 = 0x6;

    #[derive(Debug)]
    pub(crate) struct Frame {
        pub(crate) kind: u8,
        pub(crate) flags: u8,
        pub(crate) stream: u32,
        pub(crate) payload: Vec<u8>,
    }

    impl Frame {
        /// The error code of a `RST_STREAM` or `GOAWAY`.
        pub(crate) fn error_code(&self) -> u32 {
            let at = if self.kind == GOAWAY { 4 } else { 0 };
            u32::from_be_bytes(self.payload[at..at + 4].try_into().expect("4 bytes"))
        }
    }

    pub(crate) fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = u32::try_from(payload.len()).expect("frame length");
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The next frame; `None` when the peer closed.
    pub(crate) async fn read_frame(stream: &mut TcpStream) -> io::Result<Option<Frame>> {
        let mut head = [0u8; 9];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        stream.read_exact(&mut payload).await?;
        Ok(Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        }))
    }

    /// The next frame matching `want` within `limit`, skipping the others;
    /// `None` when the connection closed first.
    pub(crate) async fn wait_for(
        stream: &mut TcpStream,
        limit: Duration,
        mut want: impl FnMut(&Frame) -> bool,
    ) -> Option<Frame> {
        tokio::time::timeout(limit, async {
            while let Some(f) = read_frame(stream).await.expect("read frame") {
                if want(&f) {
                    return Some(f);
                }
            }
            None
        })
        .await
        .expect("the awaited frame in time")
    }

    fn int(out: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
        let max = (1usize << prefix_bits) - 1;
        if value < max {
            out.push(first | value as u8);
            return;
        }
        out.push(first | max as u8);
        value -= max;
        while value >= 128 {
            out.push((value % 128) as u8 | 0x80);
            value /= 128;
        }
        out.push(value as u8);
    }

    fn string(out: &mut Vec<u8>, s: &[u8]) {
        int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }

    /// An HPACK block for `method path` at `be`, fields as literals.
    pub(crate) fn request_block(method: &str, path: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![if method == "POST" { 0x83 } else { 0x82 }, 0x86];
        int(&mut out, 0, 4, 4); // :path, literal without indexing
        string(&mut out, path.as_bytes());
        int(&mut out, 0, 4, 1); // :authority
        string(&mut out, b"be");
        for (name, value) in extra {
            out.push(0);
            string(&mut out, name.as_bytes());
            string(&mut out, value);
        }
        out
    }

    /// The `:status` at the start of a response header block.
    pub(crate) fn status_of(block: &[u8]) -> Option<u16> {
        let first = *block.first()?;
        let indexed = [200, 204, 206, 304, 400, 404, 500];
        if (0x88..=0x8e).contains(&first) {
            return Some(indexed[usize::from(first - 0x88)]);
        }
        // A literal whose name is a static `:status` entry (8-14).
        let name_index = if first & 0xc0 == 0x40 {
            first & 0x3f
        } else {
            first & 0x0f
        };
        if !(8..=14).contains(&name_index) {
            return None;
        }
        let len = usize::from(block[1] & 0x7f);
        let value = &block[2..2 + len];
        let digits = if block[1] & 0x80 == 0 {
            value.iter().map(|d| d - b'0').collect()
        } else {
            huffman_digits(value)
        };
        Some(digits.iter().fold(0u16, |n, d| n * 10 + u16::from(*d)))
    }

    /// Decodes Huffman-coded decimal digits (RFC 7541 Appendix B).
    fn huffman_digits(bytes: &[u8]) -> Vec<u8> {
        let bits: Vec<u8> = bytes
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
            .collect();
        let take = |at: usize, n: usize| bits[at..at + n].iter().fold(0u8, |v, b| v << 1 | b);
        let (mut at, mut out) = (0, Vec::new());
        while at + 5 <= bits.len() {
            let five = take(at, 5);
            if five <= 2 {
                out.push(five);
                at += 5;
            } else if at + 6 <= bits.len() && (0x19..=0x1f).contains(&take(at, 6)) {
                out.push(3 + take(at, 6) - 0x19);
                at += 6;
            } else {
                break;
            }
        }
        out
    }

    /// Connects with prior knowledge, exchanges SETTINGS and returns the server's.
    pub(crate) async fn connect(addr: SocketAddr) -> (TcpStream, HashMap<u16, u32>) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        stream.write_all(&hello).await.expect("preface");
        let settings = wait_for(&mut stream, Duration::from_secs(5), |f| {
            f.kind == SETTINGS && f.flags & ACK == 0
        })
        .await
        .expect("server SETTINGS");
        stream
            .write_all(&frame(SETTINGS, ACK, 0, &[]))
            .await
            .expect("ack");
        let values = settings
            .payload
            .chunks_exact(6)
            .map(|c| {
                let id = u16::from_be_bytes([c[0], c[1]]);
                (id, u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
            })
            .collect();
        (stream, values)
    }
}

use h2raw::*;

#[tokio::test]
async fn http2_settings_advertise_the_stream_and_header_list_limits() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let (_stream, settings) = h2raw::connect(proxy.outbound()).await;
    assert_eq!(settings.get(&MAX_CONCURRENT_STREAMS), Some(&200));
    assert_eq!(settings.get(&MAX_HEADER_LIST_SIZE), Some(&65536));
}

#[tokio::test]
async fn http2_streams_past_the_concurrency_limit_are_refused() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let (mut stream, _) = h2raw::connect(proxy.outbound()).await;
    // 201 requests whose bodies never end: each stays open.
    let block = request_block("POST", "/hold", &[]);
    let mut burst = Vec::new();
    for i in 0..201u32 {
        burst.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &block));
    }
    stream.write_all(&burst).await.expect("send");
    let reset = wait_for(&mut stream, Duration::from_secs(10), |f| {
        f.kind == RST_STREAM || f.kind == GOAWAY
    })
    .await
    .expect("a reset");
    assert_eq!(
        (reset.kind, reset.stream, reset.error_code()),
        (RST_STREAM, 401, REFUSED_STREAM),
        "only the 201st stream is refused"
    );
}

#[tokio::test]
async fn an_http2_header_list_past_64_kib_is_answered_431_and_not_forwarded() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let (mut stream, _) = h2raw::connect(proxy.outbound()).await;
    let pad = vec![b'p'; 1024];
    let names: Vec<String> = (0..64).map(|i| format!("x-pad-{i:02}")).collect();
    let extra: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &pad[..])).collect();
    let block = request_block("GET", "/big", &extra);
    // In frames of at most 16 KiB: HEADERS, then CONTINUATIONs.
    let mut frames = Vec::new();
    let parts: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, part) in parts.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let last = i + 1 == parts.len();
        let flags = if i == 0 { END_STREAM } else { 0 } | if last { END_HEADERS } else { 0 };
        frames.extend(frame(kind, flags, 1, part));
    }
    stream.write_all(&frames).await.expect("send");
    let answer = wait_for(&mut stream, Duration::from_secs(5), |f| {
        f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM) || f.kind == GOAWAY
    })
    .await
    .expect("an answer on stream 1");
    assert_eq!(answer.kind, HEADERS, "{answer:?}");
    assert_eq!(status_of(&answer.payload), Some(431), "{answer:?}");
    // The same connection still serves a small request.
    let small = request_block("GET", "/ok", &[]);
    stream
        .write_all(&frame(HEADERS, END_STREAM | END_HEADERS, 3, &small))
        .await
        .expect("send");
    let ok = wait_for(&mut stream, Duration::from_secs(5), |f| {
        f.stream == 3 && f.kind == HEADERS
    })
    .await
    .expect("an answer on stream 3");
    assert_eq!(status_of(&ok.payload), Some(200));
    assert_eq!(backend.requests_to("/big"), 0);
    assert_eq!(backend.requests_to("/ok"), 1);
}

#[tokio::test]
async fn an_http2_rapid_reset_flood_gets_goaway_enhance_your_calm() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let (mut stream, _) = h2raw::connect(proxy.outbound()).await;
    let block = request_block("GET", "/", &[]);
    let mut flood = Vec::new();
    for i in 0..200u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &block));
        flood.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    stream.write_all(&flood).await.expect("send");
    let goaway = wait_for(&mut stream, Duration::from_secs(10), |f| f.kind == GOAWAY)
        .await
        .expect("GOAWAY before the close");
    assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM, "{goaway:?}");
}

#[tokio::test]
async fn an_http2_continuation_flood_gets_goaway_enhance_your_calm() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "").await;
    let (mut stream, _) = h2raw::connect(proxy.outbound()).await;
    // A field whose value is announced long, then fed one byte per frame.
    let mut block = request_block("GET", "/", &[]);
    block.extend_from_slice(&[0x00, 0x01, b'x', 0x7f, 0x81, 0x07]); // value of 1000 bytes
    let mut flood = frame(HEADERS, END_STREAM, 1, &block);
    for _ in 0..50 {
        flood.extend(frame(CONTINUATION, 0, 1, b"a"));
    }
    stream.write_all(&flood).await.expect("send");
    let goaway = wait_for(&mut stream, Duration::from_secs(10), |f| f.kind == GOAWAY)
        .await
        .expect("GOAWAY before the close");
    assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM, "{goaway:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn an_http2_header_block_never_finished_is_cut_off_when_idle() {
    let backend = Backend::http().name("be").spawn().await;
    let proxy = proxy_for(&backend, "idle_timeout: 1s\nrequest_header_timeout: 1s").await;
    let (mut stream, _) = h2raw::connect(proxy.outbound()).await;
    let block = request_block("GET", "/", &[]);
    stream
        .write_all(&frame(HEADERS, END_STREAM, 1, &block))
        .await
        .expect("send");
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(took >= Duration::from_millis(900), "closed after {took:?}");
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    assert_eq!(backend.requests(), 0);
}

#[tokio::test]
async fn an_http2_stream_in_flight_keeps_its_connection_past_the_idle_timeout() {
    let backend = Backend::http()
        .name("be")
        .delay("/slow", Duration::from_millis(2500))
        .spawn()
        .await;
    let proxy = proxy_for(&backend, "idle_timeout: 1s").await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("connect");
    let response = client.get("be", "/slow").await.expect("the slow answer");
    assert_eq!(response.status, 200);
}

/// A proxy whose inbound listener delivers to `app`.
async fn inbound_proxy(app: SocketAddr) -> Proxy {
    Proxy::builder(SINEW).app(app).spawn().await
}

#[tokio::test]
async fn inbound_http1_appends_the_peer_to_x_forwarded_for_and_sets_the_proto() {
    let app = RawBackend::spawn(OK).await;
    let proxy = inbound_proxy(app.addr).await;
    let response = raw_exchange(
        proxy.inbound(),
        b"GET /x HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 203.0.113.9\r\n\
          X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\nForwarded: for=192.0.2.1\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 200);
    let head = app.heads()[0].to_ascii_lowercase();
    assert_eq!(
        fields(&head, "x-forwarded-for"),
        ["203.0.113.9, 198.51.100.1, 127.0.0.1"],
        "{head}"
    );
    assert_eq!(fields(&head, "x-forwarded-proto"), ["http"], "{head}");
    assert_eq!(fields(&head, "forwarded"), ["for=192.0.2.1"], "{head}");
}

#[tokio::test]
async fn inbound_http2_appends_the_peer_to_x_forwarded_for_and_sets_the_proto() {
    let app = Backend::http().name("app").spawn().await;
    let proxy = inbound_proxy(app.addr()).await;
    let mut client = HttpClient::h2(proxy.inbound()).await.expect("connect");
    let response = client
        .send(
            Request::get("/x")
                .host("app")
                .header("x-forwarded-for", "203.0.113.9")
                .header("x-forwarded-proto", "https"),
        )
        .await
        .expect("answer");
    assert_eq!(response.status, 200);
    let seen = app.last_request().expect("forwarded");
    let get = |name: &str| {
        seen.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(get("x-forwarded-proto"), ["http"]);
}

#[tokio::test]
async fn outbound_passes_the_apps_x_forwarded_fields_through() {
    let raw_be = RawBackend::spawn(OK).await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&raw_be.upstream()])
        .spawn()
        .await;
    let response = raw_exchange(
        proxy.outbound(),
        b"GET /x HTTP/1.1\r\nHost: be\r\nX-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n",
    )
    .await
    .expect("answer");
    assert_eq!(response.status, 200);
    let head = raw_be.heads()[0].to_ascii_lowercase();
    assert_eq!(fields(&head, "x-forwarded-for"), ["203.0.113.9"], "{head}");
    assert_eq!(fields(&head, "x-forwarded-proto"), ["https"], "{head}");
}
