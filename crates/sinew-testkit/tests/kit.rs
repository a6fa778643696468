//! The kit's own servers and clients talking to each other directly, without a proxy in between.

use std::time::Duration;

use bytes::Bytes;
use sinew_testkit::{
    assert_eventually, digest, pattern_bytes, raw_exchange, Backend, GrpcBackend, GrpcClient,
    HttpClient, Load, Process, Request, TcpEcho, WsClient, WsEcho,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn backend_answers_its_name_and_echoes_the_request() {
    let be = Backend::http()
        .name("v1")
        .response_header("x-extra", "1")
        .spawn()
        .await;
    let mut client = HttpClient::http1(be.addr()).await.expect("connect");
    let resp = client
        .send(Request::get("/a/b?q=1").host("svc").header("x-user", "ann"))
        .await
        .expect("request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "v1");
    assert_eq!(resp.backend(), Some("v1"));
    assert_eq!(resp.header("x-path"), Some("/a/b"));
    assert_eq!(resp.header("x-query"), Some("q=1"));
    assert_eq!(resp.header("x-method"), Some("GET"));
    assert_eq!(resp.header("x-req-host"), Some("svc"));
    assert_eq!(resp.header("x-req-x-user"), Some("ann"));
    assert_eq!(resp.header("x-extra"), Some("1"));

    let echo = client.get("svc", "/echo").await.expect("echo").json();
    assert_eq!(echo["backend"], "v1");
    assert_eq!(echo["headers"]["host"], "svc");

    client.get("svc", "/again").await.expect("keep-alive");
    assert_eq!(be.requests(), 3);
    assert_eq!(be.connections(), 1);
    assert_eq!(be.requests_to("/echo"), 1);
}

#[tokio::test]
async fn backend_fails_and_delays_per_path_and_speaks_h2c() {
    let be = Backend::http()
        .name("b")
        .fail("/bad", 503)
        .delay("/slow", Duration::from_millis(50))
        .spawn()
        .await;
    let mut h2 = HttpClient::h2(be.addr()).await.expect("h2 connect");
    let resp = h2.get("svc", "/bad").await.expect("request");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.version, http::Version::HTTP_2);
    assert_eq!(resp.header("x-version"), Some("HTTP/2.0"));
    assert_eq!(h2.get("svc", "/slow").await.expect("slow").status, 200);
}

#[tokio::test]
async fn large_bodies_round_trip_with_length_and_chunked() {
    let be = Backend::http().spawn().await;
    let mut client = HttpClient::http1(be.addr()).await.expect("connect");
    let payload = pattern_bytes(1 << 20);
    let chunked =
        Request::post("/echo-body-chunked", Bytes::new()).chunked_body(payload.clone(), 10_000);
    let resp = client
        .send(chunked.host("svc"))
        .await
        .expect("chunked upload");
    assert_eq!(
        resp.header("x-body-digest"),
        Some(digest(&payload).as_str())
    );
    assert!(resp.body == payload);
    let resp = client.get("svc", "/chunked/1000").await.expect("download");
    assert_eq!(resp.body, pattern_bytes(1000));
}

#[tokio::test]
async fn raw_exchange_reads_length_and_chunked_responses() {
    let be = Backend::http().name("raw").spawn().await;
    let resp = raw_exchange(be.addr(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("raw");
    assert_eq!((resp.status, resp.text().as_str()), (200, "raw"));
    assert_eq!(resp.header("X-Path"), Some("/x"));
    let resp = raw_exchange(be.addr(), b"GET /chunked/70000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("raw chunked");
    assert_eq!(resp.body, pattern_bytes(70_000).to_vec());
    let bad = raw_exchange(
        be.addr(),
        b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: zz\r\n\r\n",
    )
    .await
    .expect("raw 400");
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn grpc_client_reads_messages_and_trailers() {
    let grpc = GrpcBackend::spawn("g").await;
    let mut client = GrpcClient::connect(grpc.addr(), "echo")
        .await
        .expect("connect");
    let unary = client.unary("hi").await.expect("unary");
    assert_eq!(unary.texts(), ["hi"]);
    assert_eq!(unary.grpc_status(), Some(0));
    assert_eq!(
        unary.trailer(sinew_testkit::grpc::CUSTOM_TRAILER),
        Some("g")
    );
    let stream = client.server_stream(3).await.expect("stream");
    assert_eq!(stream.texts(), ["message-0", "message-1", "message-2"]);
    assert_eq!(stream.grpc_status(), Some(0));
    let bad = client
        .call(sinew_testkit::grpc::STREAM, &[Bytes::from_static(b"x")])
        .await
        .expect("bad");
    assert_eq!(bad.grpc_status(), Some(3));
    assert!(bad.trailer("grpc-message").is_some());
}

#[tokio::test]
async fn websocket_and_tcp_echo() {
    let ws = WsEcho::spawn().await;
    let mut client = WsClient::connect(ws.addr(), "chat", "/")
        .await
        .expect("ws connect");
    client.send_text("ping").await.expect("send");
    assert_eq!(client.recv_text().await.expect("recv"), "ping");
    client.close().await.expect("close");

    let echo = TcpEcho::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(echo.addr())
        .await
        .expect("connect");
    stream.write_all(b"hello").await.expect("write");
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"hello");
}

#[tokio::test]
async fn load_reports_counts_by_backend_and_status() {
    let be = Backend::http().name("one").fail("/bad", 500).spawn().await;
    let report = Load::new(be.addr(), "svc", "/")
        .concurrency(3)
        .requests(90)
        .run()
        .await;
    assert_eq!((report.ok, report.failed), (90, 0));
    assert_eq!(report.from_backend("one"), 90);
    assert!((report.share("one") - 1.0).abs() < f64::EPSILON);

    let report = Load::new(be.addr(), "svc", "/bad").requests(5).run().await;
    assert_eq!((report.ok, report.failed), (0, 5));
    assert_eq!(report.by_status.get(&500), Some(&5));

    let handle = Load::new(be.addr(), "svc", "/")
        .duration(Duration::from_secs(30))
        .spawn();
    assert_eventually!(handle.sent() >= 10);
    let report = handle.finish().await;
    assert!(report.ok >= 10 && report.failed == 0, "{report:?}");
}

#[tokio::test]
async fn process_captures_output_exit_status_and_signals() {
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c").arg("echo out; echo err >&2; exit 3");
    let mut done = Process::spawn(cmd).expect("spawn sh");
    let status = done
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(status.code(), Some(3));
    assert_eq!(done.stdout(), "out\n");
    assert_eq!(done.stderr(), "err\n");

    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("trap 'echo hup >&2' HUP; echo ready >&2; while true; do sleep 0.05; done");
    let mut looping = Process::spawn(cmd).expect("spawn sh");
    assert!(
        looping
            .wait_for_stderr("ready", Duration::from_secs(10))
            .await
    );
    assert!(looping.threads().is_some_and(|t| t >= 1));
    looping.sighup().expect("SIGHUP");
    assert!(
        looping
            .wait_for_stderr("hup", Duration::from_secs(10))
            .await
    );
    assert!(looping.try_exit().is_none());
    looping.kill().expect("SIGKILL");
    let status = looping
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("killed");
    assert!(!status.success());
}
