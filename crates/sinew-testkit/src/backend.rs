//! `Backend`: an HTTP/1.1 + h2c test server that answers with its name and echoes what it received.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::ChannelBody;
use crate::upstream::Upstream;

type BackendBody = Either<Full<Bytes>, ChannelBody>;

/// One request as the backend saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Request method.
    pub method: Method,
    /// The request target's path, exactly as received.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// HTTP version on the backend's connection.
    pub version: Version,
    /// All request headers.
    pub headers: HeaderMap,
    /// Length of the request body.
    pub body_len: usize,
    /// Which accepted connection (0, 1, …) carried it.
    pub connection: u64,
}

#[derive(Debug, Default)]
struct Behaviour {
    name: String,
    fail: HashMap<String, StatusCode>,
    delay: HashMap<String, Duration>,
    response_headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Default)]
struct State {
    behaviour: Behaviour,
    connections: AtomicU64,
    requests: Mutex<Vec<RecordedRequest>>,
}

/// Configures a [`Backend`] before it starts.
#[derive(Debug, Default)]
pub struct BackendBuilder {
    behaviour: Behaviour,
    labels: Vec<(String, String)>,
    weight: Option<u32>,
}

impl BackendBuilder {
    /// The name it answers with (body and `x-backend`); defaults to `backend`.
    pub fn name(mut self, name: &str) -> Self {
        self.behaviour.name = name.to_owned();
        self
    }

    /// An endpoint label to write next to its address in a Service.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The endpoint weight to write next to its address in a Service.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = Some(weight);
        self
    }

    /// Answer requests for exactly `path` with `status`.
    pub fn fail(mut self, path: &str, status: u16) -> Self {
        let status = StatusCode::from_u16(status).expect("a valid status code");
        self.behaviour.fail.insert(path.to_owned(), status);
        self
    }

    /// Wait `delay` before answering requests for exactly `path`.
    pub fn delay(mut self, path: &str, delay: Duration) -> Self {
        self.behaviour.delay.insert(path.to_owned(), delay);
        self
    }

    /// Add a header to every response.
    pub fn response_header(mut self, name: &'static str, value: &'static str) -> Self {
        self.behaviour.response_headers.push((
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
        self
    }

    /// Binds a free loopback port and starts serving.
    pub async fn spawn(mut self) -> Backend {
        if self.behaviour.name.is_empty() {
            self.behaviour.name = "backend".to_owned();
        }
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind backend listener");
        let addr = listener.local_addr().expect("backend local address");
        let state = Arc::new(State {
            behaviour: self.behaviour,
            ..State::default()
        });
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(accept_loop(listener, Arc::clone(&state), stopped));
        Backend {
            addr,
            labels: self.labels,
            weight: self.weight,
            state,
            stop,
        }
    }
}

/// A running HTTP test server (HTTP/1.1 and h2c prior knowledge).
///
/// Every path answers `200` with the backend's name as body, plus echo headers:
/// `x-backend`, `x-path` (path as received), `x-query`, `x-method`,
/// `x-version`, `x-body-len`, `x-body-digest` and `x-req-<name>` for each
/// request header. Special paths: `/echo` (JSON echo), `/echo-body` (returns
/// the request body with a content-length), `/echo-body-chunked` (same,
/// chunked), `/bytes/N` (N bytes, content-length), `/chunked/N` (N bytes, chunked).
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    labels: Vec<(String, String)>,
    weight: Option<u32>,
    state: Arc<State>,
    stop: watch::Sender<bool>,
}

impl Backend {
    /// Starts configuring an HTTP backend.
    pub fn http() -> BackendBuilder {
        BackendBuilder::default()
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.state.behaviour.name
    }

    /// How many requests it has received (counted on arrival).
    pub fn requests(&self) -> usize {
        self.lock().len()
    }

    /// How many requests for exactly `path` it has received.
    pub fn requests_to(&self, path: &str) -> usize {
        self.lock().iter().filter(|r| r.path == path).count()
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Every request received so far, oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.lock().clone()
    }

    /// The most recent request, if any.
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.lock().last().cloned()
    }

    /// Stops accepting and closes every open connection abruptly.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RecordedRequest>> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Upstream for Backend {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn labels(&self) -> Vec<(String, String)> {
        self.labels.clone()
    }
    fn weight(&self) -> Option<u32> {
        self.weight
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, mut stopped: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let connection = state.connections.fetch_add(1, Ordering::SeqCst);
        let state = Arc::clone(&state);
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(handle(&state, connection, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        });
    }
}

async fn handle(
    state: &State,
    connection: u64,
    req: http::Request<Incoming>,
) -> http::Response<BackendBody> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    state
        .requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(RecordedRequest {
            method: parts.method.clone(),
            path: path.clone(),
            query: query.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            body_len: body.len(),
            connection,
        });
    let behaviour = &state.behaviour;
    if let Some(delay) = behaviour.delay.get(&path) {
        tokio::time::sleep(*delay).await;
    }
    let status = behaviour.fail.get(&path).copied().unwrap_or(StatusCode::OK);
    let (payload, chunked) = payload_for(behaviour, &parts, &path, &query, &body);
    let mut resp = if chunked {
        http::Response::new(Either::Right(ChannelBody::chunked(
            payload,
            64 * 1024,
            None,
        )))
    } else {
        http::Response::new(Either::Left(Full::new(payload)))
    };
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    let mut put = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    };
    put("x-backend", &behaviour.name);
    put("x-path", &path);
    put("x-query", query.as_deref().unwrap_or(""));
    put("x-method", parts.method.as_str());
    put("x-version", &format!("{:?}", parts.version));
    put("x-body-len", &body.len().to_string());
    put("x-body-digest", &digest(&body));
    for (name, value) in &parts.headers {
        if let Ok(v) = value.to_str() {
            put(&format!("x-req-{name}"), v);
        }
    }
    for (name, value) in &behaviour.response_headers {
        resp.headers_mut().append(name.clone(), value.clone());
    }
    resp
}

fn payload_for(
    behaviour: &Behaviour,
    parts: &http::request::Parts,
    path: &str,
    query: &Option<String>,
    body: &Bytes,
) -> (Bytes, bool) {
    if path == "/echo" {
        let headers: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), serde_json::Value::String(v))
            })
            .collect();
        let echo = serde_json::json!({
            "backend": behaviour.name,
            "method": parts.method.as_str(),
            "path": path,
            "query": query,
            "version": format!("{:?}", parts.version),
            "headers": headers,
            "body_len": body.len(),
        });
        return (Bytes::from(echo.to_string()), false);
    }
    if path == "/echo-body" {
        return (body.clone(), false);
    }
    if path == "/echo-body-chunked" {
        return (body.clone(), true);
    }
    for (prefix, chunked) in [("/bytes/", false), ("/chunked/", true)] {
        if let Some(n) = path.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
            return (pattern_bytes(n), chunked);
        }
    }
    (Bytes::from(behaviour.name.clone()), false)
}

/// `n` bytes of a fixed, position-dependent pattern (so reordering or loss shows);
/// what `/bytes/N` and `/chunked/N` answer.
pub fn pattern_bytes(n: usize) -> Bytes {
    (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into()
}

/// FNV-1a 64 of `data` in hex; the backend reports its request body's as `x-body-digest`.
pub fn digest(data: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in data {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
