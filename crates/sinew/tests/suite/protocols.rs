//! Protocols through the proxy, black-box: HTTP/1.1 keep-alive, h2c (and an
//! h2 `Host` that disagrees with `:authority`), gRPC with trailers,
//! WebSocket, TCP, inbound, large bodies.

use bytes::Bytes;
use sinew_testkit::{
    digest, pattern_bytes, Backend, GrpcBackend, GrpcClient, HttpClient, Proxy, Request, TcpEcho,
    WsClient, WsEcho,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
const EIGHT_MIB: usize = 8 * 1024 * 1024;

#[tokio::test]
async fn http1_keep_alive_reuses_connections_on_both_sides() {
    let be = Backend::http().name("v1").spawn().await;
    let proxy = Proxy::builder(SINEW).service("be", &[&be]).spawn().await;

    let mut client = HttpClient::http1(proxy.outbound()).await.expect("connect");
    for i in 0..10 {
        let resp = client
            .get("be", &format!("/n/{i}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "request {i} on the kept-alive connection: {e}\n{}",
                    proxy.stderr_tail()
                )
            });
        assert_eq!(resp.status, 200);
        assert_eq!(resp.text(), "v1");
    }
    assert_eq!(be.requests(), 10);
    assert!(
        be.connections() <= 2,
        "10 sequential requests opened {} upstream connections",
        be.connections()
    );
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let be = Backend::http().name("v1").spawn().await;
    let proxy = Proxy::builder(SINEW).service("be", &[&be]).spawn().await;

    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2 connect");
    for _ in 0..5 {
        let resp = client.get("be", "/h2").await.expect("h2 request");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.version, http::Version::HTTP_2);
        assert_eq!(resp.text(), "v1");
        assert_eq!(resp.header("x-path"), Some("/h2"));
    }
}

#[tokio::test]
async fn grpc_unary_and_server_streaming_keep_their_trailers() {
    let grpc = GrpcBackend::spawn("grpc-1").await;
    let proxy = Proxy::builder(SINEW)
        .service("echo", &[&grpc])
        .spawn()
        .await;
    let mut client = GrpcClient::connect(proxy.outbound(), "echo")
        .await
        .expect("gRPC connect");

    let unary = client.unary("hello").await.expect("unary call");
    assert_eq!(unary.http_status, 200);
    assert_eq!(unary.texts(), ["hello"]);
    assert_eq!(unary.grpc_status(), Some(0), "{:?}", unary.trailers);
    assert_eq!(unary.trailer("x-echo-trailer"), Some("grpc-1"));

    let stream = client.server_stream(50).await.expect("streaming call");
    assert_eq!(stream.messages.len(), 50);
    assert_eq!(
        stream.texts().first().map(String::as_str),
        Some("message-0")
    );
    assert_eq!(
        stream.texts().last().map(String::as_str),
        Some("message-49")
    );
    assert_eq!(stream.grpc_status(), Some(0));
    assert_eq!(stream.trailer("x-echo-trailer"), Some("grpc-1"));

    let unknown = client
        .call("/sinew.test.Echo/Missing", &[Bytes::from_static(b"x")])
        .await
        .expect("unknown method call");
    assert_eq!(unknown.grpc_status(), Some(12));
    assert_eq!(grpc.calls(), 3);
}

#[tokio::test]
async fn websocket_upgrade_through_the_outbound_listener_echoes() {
    let ws = WsEcho::spawn().await;
    let proxy = Proxy::builder(SINEW).service("chat", &[&ws]).spawn().await;

    let mut client = WsClient::connect(proxy.outbound(), "chat", "/room")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", proxy.stderr_tail()));
    for text in ["one", "two", &"x".repeat(70_000)] {
        client.send_text(text).await.expect("send");
        assert_eq!(client.recv_text().await.expect("echo"), text);
    }
    client.close().await.expect("close");
    assert_eq!(ws.upgrades(), 1);
}

#[tokio::test]
async fn tcp_listener_forwards_bytes_to_the_tcp_service() {
    let echo = TcpEcho::spawn().await;
    let proxy = Proxy::builder(SINEW)
        .tcp_service("echo", &[&echo])
        .spawn()
        .await;

    let mut stream = TcpStream::connect(proxy.tcp("echo"))
        .await
        .expect("connect");
    let payload = pattern_bytes(256 * 1024);
    let (mut rd, mut wr) = stream.split();
    let write = async {
        wr.write_all(&payload).await.expect("write");
        wr.shutdown().await.expect("half-close");
    };
    let read = async {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read echo");
        got
    };
    let ((), got) = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        tokio::join!(write, read)
    })
    .await
    .expect("echo within 20 s");
    assert_eq!(got.len(), payload.len());
    assert!(got == payload, "echoed bytes differ");
    assert_eq!(echo.connections(), 1);
}

#[tokio::test]
async fn inbound_listener_forwards_to_the_app() {
    let app = Backend::http().name("app").spawn().await;
    let proxy = Proxy::builder(SINEW).app(app.addr()).spawn().await;

    let mut client = HttpClient::http1(proxy.inbound()).await.expect("connect");
    let resp = client
        .get("frontend", "/orders?id=1")
        .await
        .expect("inbound request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "app");
    assert_eq!(resp.header("x-path"), Some("/orders"));
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn large_bodies_cross_intact_in_both_directions() {
    let be = Backend::http().name("big").spawn().await;
    let proxy = Proxy::builder(SINEW).service("be", &[&be]).spawn().await;
    let payload = pattern_bytes(EIGHT_MIB);
    let want_digest = digest(&payload);

    let uploads = [
        (
            "content-length",
            Request::post("/echo-body", payload.clone()),
        ),
        (
            "chunked",
            Request::post("/echo-body-chunked", Bytes::new())
                .chunked_body(payload.clone(), 100_000),
        ),
    ];
    for (how, req) in uploads {
        let resp = proxy.send(req.host("be")).await;
        assert_eq!(resp.status, 200, "{how} upload");
        assert_eq!(resp.header("x-body-len"), Some("8388608"), "{how} upload");
        assert_eq!(
            resp.header("x-body-digest"),
            Some(want_digest.as_str()),
            "{how} upload"
        );
        assert_eq!(resp.body.len(), EIGHT_MIB, "{how} echo");
        assert!(resp.body == payload, "{how} echo differs");
    }
    for path in ["/bytes/8388608", "/chunked/8388608"] {
        let resp = proxy.get("be", path).await;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.body.len(), EIGHT_MIB, "{path}");
        assert!(resp.body == payload, "{path} differs");
    }

    let mut h2 = HttpClient::h2(proxy.outbound()).await.expect("h2 connect");
    let resp = h2
        .send(Request::post("/echo-body", payload.clone()).host("be"))
        .await
        .expect("h2 upload");
    assert_eq!(resp.header("x-body-digest"), Some(want_digest.as_str()));
    assert!(resp.body == payload, "h2 echo differs");
}

#[tokio::test]
async fn an_h2_host_naming_another_authority_is_refused() {
    let be = Backend::http().name("be").spawn().await;
    let proxy = Proxy::builder(SINEW).service("be", &[&be]).spawn().await;
    let mut client = HttpClient::h2(proxy.outbound()).await.expect("h2");
    let same = Request::get("/").host("be").header("host", "be");
    assert_eq!(client.send(same).await.expect("answer").status, 200);
    let other = Request::get("/")
        .host("be")
        .header("host", "admin.internal");
    let response = client.send(other).await.expect("answer");
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(be.requests(), 1, "the mismatched request was not forwarded");
}
