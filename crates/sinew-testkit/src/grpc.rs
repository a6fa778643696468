//! gRPC by hand over hyper h2 (no protoc): an echo backend with unary and server-streaming methods, and a client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::body::ChannelBody;
use crate::client::{ClientError, HttpClient, Request};
use crate::upstream::Upstream;

/// The unary echo method: answers with the request's messages.
pub const UNARY: &str = "/sinew.test.Echo/Unary";
/// The server-streaming method: the request message is a decimal N; answers N messages `message-<i>`.
pub const STREAM: &str = "/sinew.test.Echo/Stream";
/// The custom trailer every response carries, valued with the backend's name.
pub const CUSTOM_TRAILER: &str = "x-echo-trailer";

/// Frames `messages` as gRPC length-prefixed messages (uncompressed).
pub fn grpc_encode(messages: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    for msg in messages {
        out.put_u8(0);
        out.put_u32(u32::try_from(msg.len()).expect("gRPC message under 4 GiB"));
        out.put_slice(msg);
    }
    out.freeze()
}

/// Splits a gRPC body into its messages.
pub fn grpc_decode(mut body: Bytes) -> Result<Vec<Bytes>, String> {
    let mut messages = Vec::new();
    while body.has_remaining() {
        if body.len() < 5 {
            return Err(format!(
                "truncated gRPC frame header ({} bytes)",
                body.len()
            ));
        }
        let compressed = body.get_u8();
        if compressed != 0 {
            return Err("compressed gRPC message not expected".to_owned());
        }
        let len = body.get_u32() as usize;
        if body.len() < len {
            return Err(format!(
                "gRPC message of {len} bytes truncated to {}",
                body.len()
            ));
        }
        messages.push(body.split_to(len));
    }
    Ok(messages)
}

/// A running gRPC echo server (h2c) exposing `UNARY` and `STREAM`.
#[derive(Debug)]
pub struct GrpcBackend {
    addr: SocketAddr,
    calls: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl GrpcBackend {
    /// Binds a free loopback port and starts serving; `name` is sent in the custom trailer.
    pub async fn spawn(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gRPC listener");
        let addr = listener.local_addr().expect("gRPC local address");
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let name: Arc<str> = Arc::from(name);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let name = Arc::clone(&name);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let name = Arc::clone(&name);
                        async move { Ok::<_, Infallible>(serve(&name, req).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    // A connection error only ends that connection.
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, calls, task }
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many calls it has received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Upstream for GrpcBackend {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn trailers(status: u32, message: &str, name: &str) -> HeaderMap {
    let mut map = HeaderMap::new();
    map.insert("grpc-status", HeaderValue::from(status));
    if !message.is_empty() {
        if let Ok(v) = HeaderValue::from_str(message) {
            map.insert("grpc-message", v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(name) {
        map.insert(CUSTOM_TRAILER, v);
    }
    map
}

async fn serve(name: &str, req: http::Request<Incoming>) -> http::Response<ChannelBody> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.map(|c| c.to_bytes());
    let (tx, body_out) = ChannelBody::channel(16);
    let mut resp = http::Response::new(body_out);
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    let name = name.to_owned();
    let (replies, status, message) = match body.map_err(|e| e.to_string()).and_then(grpc_decode) {
        Err(e) => (Vec::new(), 13, e),
        Ok(msgs) if path == UNARY => (msgs, 0, String::new()),
        Ok(msgs) if path == STREAM => {
            let n = msgs
                .first()
                .and_then(|m| std::str::from_utf8(m).ok())
                .and_then(|s| s.trim().parse::<usize>().ok());
            match n {
                Some(n) => {
                    let replies = (0..n)
                        .map(|i| Bytes::from(format!("message-{i}")))
                        .collect();
                    (replies, 0, String::new())
                }
                None => (Vec::new(), 3, "request must be a decimal count".to_owned()),
            }
        }
        Ok(_) => (Vec::new(), 12, format!("unknown method {path}")),
    };
    tokio::spawn(async move {
        for reply in replies {
            if tx.send(Frame::data(grpc_encode(&[reply]))).await.is_err() {
                return;
            }
        }
        // The client may be gone; nothing to do then.
        let _ = tx
            .send(Frame::trailers(trailers(status, &message, &name)))
            .await;
    });
    resp
}

/// The outcome of one gRPC call, trailers included.
#[derive(Debug, Clone)]
pub struct GrpcReply {
    /// The HTTP status (200 for any gRPC answer).
    pub http_status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The messages received, in order.
    pub messages: Vec<Bytes>,
    /// The trailers (for a trailers-only answer, the headers).
    pub trailers: HeaderMap,
}

impl GrpcReply {
    /// `grpc-status` from the trailers, if present and numeric.
    pub fn grpc_status(&self) -> Option<u32> {
        self.trailer("grpc-status").and_then(|s| s.parse().ok())
    }

    /// A trailer's value as text.
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The messages as UTF-8 strings (lossy).
    pub fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect()
    }
}

/// A gRPC client over one h2c connection.
#[derive(Debug)]
pub struct GrpcClient {
    http: HttpClient,
    authority: String,
}

impl GrpcClient {
    /// Connects (h2 prior knowledge) to `addr`; calls carry `:authority = authority`.
    pub async fn connect(addr: SocketAddr, authority: &str) -> Result<Self, ClientError> {
        Ok(Self {
            http: HttpClient::h2(addr).await?,
            authority: authority.to_owned(),
        })
    }

    /// Calls `method` (e.g. [`UNARY`]) with `messages`; reads messages and trailers.
    pub async fn call(&mut self, method: &str, messages: &[Bytes]) -> Result<GrpcReply, String> {
        let req = Request::new(Method::POST, method)
            .host(&self.authority)
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(grpc_encode(messages));
        let resp = self.http.send(req).await.map_err(|e| e.to_string())?;
        let messages = grpc_decode(resp.body.clone())?;
        let trailers = resp
            .trailers
            .clone()
            .unwrap_or_else(|| resp.headers.clone());
        Ok(GrpcReply {
            http_status: resp.status,
            headers: resp.headers,
            messages,
            trailers,
        })
    }

    /// The unary echo: one message in, the same message back.
    pub async fn unary(&mut self, message: &str) -> Result<GrpcReply, String> {
        self.call(UNARY, &[Bytes::from(message.to_owned())]).await
    }

    /// The server stream: asks for `n` messages.
    pub async fn server_stream(&mut self, n: usize) -> Result<GrpcReply, String> {
        self.call(STREAM, &[Bytes::from(n.to_string())]).await
    }
}
