//! A minimal HTTP/1.1 client — one request per connection — for the demo
//! app's downstream calls and events, the demo traffic and the readiness
//! checks.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HOST;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response's status and whole body.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// HTTP status code.
    pub(crate) status: u16,
    /// The body, fully read.
    pub(crate) body: Bytes,
}

/// Why a GET got no response.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// The TCP connection could not be made.
    Connect(std::io::Error),
    /// The request could not be built (bad host or path).
    Request(hyper::http::Error),
    /// The HTTP exchange failed.
    Http(hyper::Error),
    /// No full response within the timeout.
    Timeout,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect failed: {e}"),
            Self::Request(e) => write!(f, "bad request: {e}"),
            Self::Http(e) => write!(f, "HTTP error: {e}"),
            Self::Timeout => f.write_str("timed out"),
        }
    }
}

impl std::error::Error for ClientError {}

/// `GET path` with `Host: host` on a new connection to `addr`, bounded by `timeout`.
pub(crate) async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let request = Request::get(path)
        .header(HOST, host)
        .body(Full::new(Bytes::new()))
        .map_err(ClientError::Request)?;
    tokio::time::timeout(timeout, exchange(addr, request))
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

/// `POST path` with `headers` and `body` on a new connection to `addr`.
pub(crate) async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let mut request = Request::post(path).header(HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, value.as_str());
    }
    let request = request
        .body(Full::new(body))
        .map_err(ClientError::Request)?;
    tokio::time::timeout(timeout, exchange(addr, request))
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

async fn exchange(addr: SocketAddr, request: Request<Full<Bytes>>) -> Result<Reply, ClientError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(ClientError::Connect)?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(ClientError::Http)?;
    let driver = tokio::spawn(conn);
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Reply { status, body })
    }
    .await
    .map_err(ClientError::Http);
    driver.abort();
    result
}
