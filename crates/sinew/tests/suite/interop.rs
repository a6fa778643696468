//! Interoperability with independent HTTP implementations: nginx as upstream (HTTP/1.1 and h2c), curl and h2load as clients.

use std::collections::BTreeSet;
use std::path::PathBuf;

use bytes::Bytes;
use http::Version;
use sinew_testkit::{
    digest, free_port, pattern_bytes, require_external, Backend, Curl, H2load, HttpClient, Load,
    Nginx, Proxy, Request, Response, TempDir,
};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
const FOUR_MIB: usize = 4 * 1024 * 1024;
const ONE_MIB: usize = 1024 * 1024;

/// Locations shared by the nginx upstreams below. `/post` keeps each request
/// body in a file (`client_body_in_file_only on`) and names it in
/// `X-Body-File`, so a test can compare what reached nginx byte for byte; it
/// reads the body by proxying to `sink`, a plain HTTP/1.1 server of the same nginx.
fn nginx_locations(sink: std::net::SocketAddr) -> String {
    format!(
        "location = /hello {{ return 200 \"hello from nginx $request_uri\\n\"; }}\n\
         location = /conn {{ add_header X-Conn $connection always; \
           add_header X-Conn-Requests $connection_requests always; return 200 \"ok\\n\"; }}\n\
         location = /proto {{ return 200 \"$server_protocol $request_method $request_uri\\n\"; }}\n\
         location = /post {{ client_body_in_file_only on; client_body_temp_path bodies; \
           proxy_pass http://{sink}; add_header X-Body-File $request_body_file always; \
           add_header X-Request-Length $request_length always; }}\n"
    )
}

/// The text nginx serves as `/text.txt` (compressible, so gzip shrinks it).
fn text_file() -> String {
    (0..20_000)
        .map(|i| format!("line {i} of the text\n"))
        .collect()
}

async fn nginx(bin: PathBuf, http2: bool) -> Nginx {
    nginx_with(bin, http2, "").await
}

/// An nginx upstream with extra `http { }` directives (e.g. `keepalive_requests 50;`).
async fn nginx_with(bin: PathBuf, http2: bool, http: &str) -> Nginx {
    let sink = free_port();
    let builder = Nginx::builder(bin);
    let builder = if http2 { builder.http2() } else { builder };
    builder
        .http_directives("client_max_body_size 16m;")
        .http_directives(http)
        .http_directives(&format!(
            "server {{ listen {sink}; location / {{ return 200 \"stored\\n\"; }} }}"
        ))
        .server_directives(&nginx_locations(sink))
        .server_directives("gzip on; gzip_min_length 0; gzip_types *;")
        .file("big.bin", pattern_bytes(FOUR_MIB).to_vec())
        .file("text.txt", text_file())
        .spawn()
        .await
}

fn assert_ok(resp: &Response, what: &str, proxy: &Proxy) {
    assert_eq!(
        resp.status,
        200,
        "{what}: {:?} {}\n--- proxy stderr ---\n{}",
        resp.headers,
        resp.text(),
        proxy.stderr_tail()
    );
}

/// Checks that nginx stored exactly `payload` for the request answered by `resp`.
fn assert_nginx_stored(resp: &Response, payload: &[u8], what: &str) {
    let file = resp
        .header("x-body-file")
        .unwrap_or_else(|| panic!("{what}: no X-Body-File in {:?}", resp.headers));
    let stored = std::fs::read(file).unwrap_or_else(|e| panic!("{what}: read {file}: {e}"));
    assert_eq!(stored.len(), payload.len(), "{what}: stored body length");
    assert_eq!(
        digest(&stored),
        digest(payload),
        "{what}: stored body digest"
    );
}

#[tokio::test]
async fn nginx_http1_get_static_file_and_keep_alive() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    let nginx = nginx(bin, false).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;

    let resp = proxy.get("be", "/hello?a=1").await;
    assert_ok(&resp, "plain GET", &proxy);
    assert_eq!(resp.version, Version::HTTP_11);
    assert_eq!(resp.text(), "hello from nginx /hello?a=1\n");
    assert_eq!(resp.header("content-length"), Some("28"));
    assert!(resp
        .header("server")
        .is_some_and(|s| s.starts_with("nginx")));

    let resp = proxy.get("be", "/big.bin").await;
    assert_ok(&resp, "4 MiB static file", &proxy);
    assert_eq!(resp.header("content-length"), Some("4194304"));
    assert_eq!(resp.body.len(), FOUR_MIB);
    assert_eq!(digest(&resp.body), digest(&pattern_bytes(FOUR_MIB)));
}

#[tokio::test]
async fn nginx_http1_gzip_chunked_response_is_relayed_intact() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    let nginx = nginx(bin, false).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;
    let gzip_get = || Request::get("/text.txt").header("accept-encoding", "gzip");

    let mut direct = HttpClient::http1(nginx.addr())
        .await
        .expect("connect nginx");
    let want = direct
        .send(gzip_get().host("be"))
        .await
        .expect("direct gzip GET");
    assert_eq!(want.header("transfer-encoding"), Some("chunked"));
    assert_eq!(want.header("content-encoding"), Some("gzip"));

    let resp = proxy.send(gzip_get().host("be")).await;
    assert_ok(&resp, "gzip GET", &proxy);
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_eq!(resp.header("content-length"), None, "{:?}", resp.headers);
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert!(resp.body.starts_with(&[0x1f, 0x8b]), "not a gzip stream");
    assert!(
        resp.body.len() < text_file().len() / 2,
        "body not compressed"
    );
    assert_eq!(resp.body.len(), want.body.len());
    assert!(resp.body == want.body, "gzip body differs from nginx's own");
}

#[tokio::test]
async fn nginx_http1_receives_post_bodies() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    let nginx = nginx(bin, false).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;
    let payload = pattern_bytes(2 * ONE_MIB + 17);

    let uploads = [
        ("content-length", Request::post("/post", payload.clone())),
        (
            "chunked",
            Request::post("/post", Bytes::new()).chunked_body(payload.clone(), 65_536),
        ),
    ];
    for (how, req) in uploads {
        let resp = proxy.send(req.host("be")).await;
        assert_ok(&resp, how, &proxy);
        assert_eq!(resp.text(), "stored\n", "{how}");
        let request_length: usize = resp
            .header("x-request-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        assert!(request_length > payload.len(), "{how}: {request_length}");
        assert_nginx_stored(&resp, &payload, how);
    }
}

#[tokio::test]
async fn nginx_http1_upstream_connections_are_kept_alive() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    let nginx = nginx(bin, false).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;

    let mut connections = BTreeSet::new();
    let mut most_requests = 0u64;
    let mut record = |resp: &Response| {
        assert_ok(resp, "GET /conn", &proxy);
        let conn = resp.header("x-conn").expect("X-Conn").to_owned();
        let n: u64 = resp
            .header("x-conn-requests")
            .and_then(|v| v.parse().ok())
            .expect("X-Conn-Requests");
        connections.insert(conn);
        most_requests = most_requests.max(n);
    };
    let mut client = HttpClient::http1(proxy.outbound()).await.expect("connect");
    for _ in 0..10 {
        let resp = client.get("be", "/conn").await.expect("kept-alive request");
        record(&resp);
    }
    for _ in 0..10 {
        let resp = proxy.get("be", "/conn").await;
        record(&resp);
    }
    assert!(
        connections.len() <= 2,
        "20 sequential requests used nginx connections {connections:?}"
    );
    assert!(
        most_requests >= 10,
        "most requests on one nginx connection: {most_requests}"
    );
}

#[tokio::test]
async fn nginx_h2c_upstream_answers_h2_clients() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    let nginx = nginx(bin, true).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2 connect");

    for i in 0..3 {
        let resp = client
            .get("be", &format!("/proto?i={i}"))
            .await
            .expect("h2 GET");
        assert_ok(&resp, "h2 GET", &proxy);
        assert_eq!(resp.version, Version::HTTP_2);
        assert_eq!(resp.text(), format!("HTTP/2.0 GET /proto?i={i}\n"));
    }
    let resp = client.get("be", "/big.bin").await.expect("h2 4 MiB GET");
    assert_ok(&resp, "h2 4 MiB GET", &proxy);
    assert_eq!(digest(&resp.body), digest(&pattern_bytes(FOUR_MIB)));

    let payload = pattern_bytes(ONE_MIB + 3);
    let resp = client
        .send(Request::post("/post", payload.clone()).host("be"))
        .await
        .expect("h2 POST");
    assert_ok(&resp, "h2 POST", &proxy);
    assert_nginx_stored(&resp, &payload, "h2 POST");
}

#[tokio::test]
async fn curl_via_http_proxy_reaches_known_hosts_only() {
    let Some(curl) = require_external("curl") else {
        return;
    };
    let be = Backend::http().name("be-1").spawn().await;
    let proxy = Proxy::builder(SINEW).service("be", &[&be]).spawn().await;
    let via = format!("http://{}", proxy.outbound());

    let resp = Curl::new(&curl)
        .arg("-x")
        .arg(&via)
        .run("http://be/orders/7?x=1")
        .await;
    assert!(resp.exit.success(), "curl: {}", resp.stderr);
    assert_eq!(resp.status, 200, "{}", proxy.stderr_tail());
    assert_eq!(resp.text(), "be-1");
    assert_eq!(resp.header("x-path"), Some("/orders/7"));
    assert_eq!(resp.header("x-query"), Some("x=1"));
    assert_eq!(resp.header("x-req-host"), Some("be"));
    assert_eq!(be.requests(), 1);

    let resp = Curl::new(&curl)
        .arg("-x")
        .arg(&via)
        .run("http://unknown-host/")
        .await;
    assert!(resp.exit.success(), "curl: {}", resp.stderr);
    assert_eq!(resp.status, 404);
    assert_eq!(
        resp.header("x-sinew-error"),
        Some("no-route"),
        "{:?}",
        resp.headers
    );
    assert_eq!(be.requests(), 1, "the unknown host reached a backend");
}

#[tokio::test]
async fn curl_h2_prior_knowledge_reaches_an_h2c_upstream() {
    let (Some(curl), Some(nginx_bin)) = (require_external("curl"), require_external("nginx"))
    else {
        return;
    };
    let nginx = nginx(nginx_bin, true).await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;

    let resp = Curl::new(&curl)
        .arg("--http2-prior-knowledge")
        .arg("-H")
        .arg("Host: be")
        .run(&format!("http://{}/proto?via=curl", proxy.outbound()))
        .await;
    assert!(resp.exit.success(), "curl: {}", resp.stderr);
    assert_eq!(resp.status, 200, "{}", proxy.stderr_tail());
    assert_eq!(resp.http_version, "2");
    assert_eq!(resp.text(), "HTTP/2.0 GET /proto?via=curl\n");
}

#[tokio::test]
async fn curl_expect_100_continue_upload_of_one_mib() {
    let (Some(curl), Some(nginx_bin)) = (require_external("curl"), require_external("nginx"))
    else {
        return;
    };
    let nginx = nginx(nginx_bin, false).await;
    let be = Backend::http().name("kit").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("be", &[&nginx])
        .service("kit", &[&be])
        .spawn()
        .await;
    let dir = TempDir::new("interop-upload");
    let upload = dir.join("upload.bin");
    let payload = pattern_bytes(ONE_MIB);
    std::fs::write(&upload, &payload).expect("write upload file");
    let data = format!("@{}", upload.display());
    let post = || {
        Curl::new(&curl)
            .arg("-x")
            .arg(format!("http://{}", proxy.outbound()))
            .arg("-H")
            .arg("Expect: 100-continue")
            .arg("-H")
            .arg("Content-Type: application/octet-stream")
            .arg("--expect100-timeout")
            .arg("15")
            .arg("--data-binary")
            .arg(&data)
    };

    let resp = post().run("http://be/post").await;
    assert!(resp.exit.success(), "curl: {}", resp.stderr);
    assert_eq!(resp.status, 200, "{}", proxy.stderr_tail());
    assert_eq!(resp.interim, [100], "curl saw no 100 Continue");
    let stored = resp.header("x-body-file").expect("X-Body-File");
    let stored = std::fs::read(stored).expect("read nginx's stored body");
    assert_eq!(digest(&stored), digest(&payload));

    let resp = post().run("http://kit/echo-body").await;
    assert!(resp.exit.success(), "curl: {}", resp.stderr);
    assert_eq!(resp.status, 200, "{}", proxy.stderr_tail());
    assert_eq!(resp.interim, [100], "curl saw no 100 Continue");
    assert_eq!(resp.header("x-body-len"), Some("1048576"));
    assert_eq!(
        resp.header("x-body-digest"),
        Some(digest(&payload).as_str())
    );
}

#[tokio::test]
async fn h2load_through_the_proxy_to_nginx_h2c_all_succeed() {
    let (Some(h2load), Some(nginx_bin)) = (require_external("h2load"), require_external("nginx"))
    else {
        return;
    };
    // Connection rotation (nginx's GOAWAY after `keepalive_requests`, 1000
    // by default) is kept out of this test; the next one covers it.
    let nginx = nginx_with(nginx_bin, true, "keepalive_requests 100000;").await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;

    let report = H2load::new(h2load)
        .args(["-n", "2000", "-c", "4", "-m", "10", "-H", ":authority: be"])
        .run(&format!("http://{}/hello", proxy.outbound()))
        .await;
    assert_eq!(
        (
            report.succeeded,
            report.failed,
            report.errored,
            report.timeout
        ),
        (2000, 0, 0, 0),
        "{}\n--- proxy stderr ---\n{}",
        report.output,
        proxy.stderr_tail()
    );
    assert_eq!(report.status_2xx, 2000, "{}", report.output);
    assert_eq!(report.exit_code, Some(0), "{}", report.output);
}

#[tokio::test]
async fn nginx_http1_connection_close_after_keepalive_requests_loses_no_request() {
    let Some(bin) = require_external("nginx") else {
        return;
    };
    // nginx answers every 50th request on a connection with `Connection: close`.
    let nginx = nginx_with(bin, false, "keepalive_requests 50;").await;
    let proxy = Proxy::builder(SINEW).service("be", &[&nginx]).spawn().await;

    let report = Load::new(proxy.outbound(), "be", "/hello")
        .concurrency(4)
        .requests(1000)
        .run()
        .await;
    assert_eq!(
        (report.ok, report.failed),
        (1000, 0),
        "{report:?}\n--- proxy stderr ---\n{}",
        proxy.stderr_tail()
    );
}

#[tokio::test]
async fn nginx_h2c_goaway_after_keepalive_requests_loses_no_request() {
    let (Some(h2load), Some(nginx_bin)) = (require_external("h2load"), require_external("nginx"))
    else {
        return;
    };
    // nginx sends GOAWAY after 100 streams on a connection; streams the proxy
    // opened above its last-stream-id were never processed (RFC 9113 §8.7)
    // and are safe to retry, which the Service allows.
    let nginx = nginx_with(nginx_bin, true, "keepalive_requests 100;").await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&nginx],
            "retries: {attempts: 2, on: [refused-stream, reset]}",
        )
        .spawn()
        .await;

    let report = H2load::new(h2load)
        .args(["-n", "2000", "-c", "4", "-m", "10", "-H", ":authority: be"])
        .run(&format!("http://{}/hello", proxy.outbound()))
        .await;
    assert_eq!(
        (
            report.succeeded,
            report.failed,
            report.errored,
            report.timeout
        ),
        (2000, 0, 0, 0),
        "{}\n--- proxy metrics ---\n{}",
        report.output,
        proxy
            .metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("sinew_proxy_errors_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
