//! `HttpClient`: a hyper client over one connection (HTTP/1.1 or h2 prior knowledge) with raw request targets.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::body::ChannelBody;

type ClientBody = Either<Full<Bytes>, ChannelBody>;

/// How long one request may take before [`ClientError::Timeout`].
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Which protocol a [`HttpClient`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    /// HTTP/1.1 with keep-alive.
    Http1,
    /// HTTP/2 over cleartext with prior knowledge (h2c).
    H2,
}

/// Why a request did not produce a response.
#[derive(Debug)]
pub enum ClientError {
    /// The TCP connection could not be opened.
    Connect(std::io::Error),
    /// The HTTP handshake failed.
    Handshake(hyper::Error),
    /// The request failed on the wire (reset, closed, protocol error).
    Request(hyper::Error),
    /// The request could not be built (bad target or header).
    Invalid(http::Error),
    /// No response within the kit's request timeout.
    Timeout,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::Request(e) => write!(f, "request failed: {e}"),
            Self::Invalid(e) => write!(f, "invalid request: {e}"),
            Self::Timeout => write!(f, "no response within {REQUEST_TIMEOUT:?}"),
        }
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug)]
enum RequestBody {
    Empty,
    Full(Bytes),
    Chunked(Bytes, usize),
}

/// A request to send with [`HttpClient::send`].
#[derive(Debug)]
pub struct Request {
    method: Method,
    target: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    body: RequestBody,
}

impl Request {
    /// A request with `method` and the raw request-target `target`
    /// (origin-form `/p?q` or absolute-form `http://host/p`).
    pub fn new(method: Method, target: &str) -> Self {
        Self {
            method,
            target: target.to_owned(),
            host: None,
            headers: Vec::new(),
            body: RequestBody::Empty,
        }
    }

    /// A `GET` for `target`.
    pub fn get(target: &str) -> Self {
        Self::new(Method::GET, target)
    }

    /// A `POST` for `target` with `body` (sent with a content-length).
    pub fn post(target: &str, body: impl Into<Bytes>) -> Self {
        Self::new(Method::POST, target).body(body)
    }

    /// The `Host` (HTTP/1.1) or `:authority` (h2) to send.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// A body sent with a content-length.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = RequestBody::Full(body.into());
        self
    }

    /// A body streamed in `chunk`-byte frames without a length (chunked on HTTP/1.1).
    pub fn chunked_body(mut self, body: impl Into<Bytes>, chunk: usize) -> Self {
        self.body = RequestBody::Chunked(body.into(), chunk);
        self
    }
}

/// A fully read response.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: StatusCode,
    /// HTTP version of the response.
    pub version: Version,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Bytes,
    /// Trailers, when the response carried any.
    pub trailers: Option<HeaderMap>,
}

impl Response {
    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `x-backend` header set by a kit [`crate::Backend`].
    pub fn backend(&self) -> Option<&str> {
        self.header("x-backend")
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.text()))
    }
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<ClientBody>),
    H2(http2::SendRequest<ClientBody>),
}

/// One client connection; requests on it reuse the connection (keep-alive / h2 streams).
#[derive(Debug)]
pub struct HttpClient {
    addr: SocketAddr,
    sender: Sender,
}

impl HttpClient {
    /// Opens a connection to `addr` speaking `version`.
    pub async fn connect(addr: SocketAddr, version: HttpVersion) -> Result<Self, ClientError> {
        let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(ClientError::Connect)?;
        // Best effort: latency only.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        let sender = match version {
            HttpVersion::Http1 => {
                let (sender, conn) = http1::handshake(io).await.map_err(ClientError::Handshake)?;
                tokio::spawn(conn);
                Sender::Http1(sender)
            }
            HttpVersion::H2 => {
                let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(ClientError::Handshake)?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        };
        Ok(Self { addr, sender })
    }

    /// Opens an HTTP/1.1 connection to `addr`.
    pub async fn http1(addr: SocketAddr) -> Result<Self, ClientError> {
        Self::connect(addr, HttpVersion::Http1).await
    }

    /// Opens an h2c (prior knowledge) connection to `addr`.
    pub async fn h2(addr: SocketAddr) -> Result<Self, ClientError> {
        Self::connect(addr, HttpVersion::H2).await
    }

    /// Sends `GET path` with `Host: host` and reads the whole response.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Response, ClientError> {
        self.send(Request::get(path).host(host)).await
    }

    /// Sends `req` and reads the whole response, trailers included.
    pub async fn send(&mut self, req: Request) -> Result<Response, ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.send_inner(req))
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    async fn send_inner(&mut self, req: Request) -> Result<Response, ClientError> {
        let is_h2 = matches!(self.sender, Sender::H2(_));
        let host = req.host.clone().unwrap_or_else(|| self.addr.to_string());
        let uri = if is_h2 && req.target.starts_with('/') {
            format!("http://{host}{}", req.target)
        } else {
            req.target.clone()
        };
        let mut builder = http::Request::builder().method(req.method).uri(uri);
        if !is_h2 {
            // hyper's connection-level client never adds Host itself.
            let from_target = req
                .target
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.authority().map(|a| a.as_str().to_owned()));
            let host_header = req.host.clone().or(from_target).unwrap_or(host);
            builder = builder.header(http::header::HOST, host_header);
        }
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ClientError::Invalid(e.into()))?;
            let value = HeaderValue::from_str(value).map_err(|e| ClientError::Invalid(e.into()))?;
            builder = builder.header(name, value);
        }
        let body = match req.body {
            RequestBody::Empty => Either::Left(Full::new(Bytes::new())),
            RequestBody::Full(b) => Either::Left(Full::new(b)),
            RequestBody::Chunked(b, chunk) => Either::Right(ChannelBody::chunked(b, chunk, None)),
        };
        let request = builder.body(body).map_err(ClientError::Invalid)?;
        let response = match &mut self.sender {
            Sender::Http1(s) => {
                s.ready().await.map_err(ClientError::Request)?;
                s.send_request(request).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(ClientError::Request)?;
                s.send_request(request).await
            }
        }
        .map_err(ClientError::Request)?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(ClientError::Request)?;
        let trailers = collected.trailers().cloned();
        Ok(Response {
            status: parts.status,
            version: parts.version,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
        })
    }
}
