//! Opening an upstream connection within the connect timeout: TCP, then
//! mTLS when the endpoint is a meshed sidecar.

use crate::config::Endpoint;
use crate::error::{ErrorKind, ProxyError};
use crate::tls::{Alpn, Conn};
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects to `endpoint`, failing with `ConnectTimeout` when the TCP
/// connect and TLS handshake take longer than `timeout`.
pub(crate) async fn connect(
    endpoint: &Endpoint,
    alpn: Alpn,
    timeout: Duration,
) -> Result<Conn, ProxyError> {
    match tokio::time::timeout(timeout, open(endpoint, alpn)).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::new(ErrorKind::ConnectTimeout)),
    }
}

async fn open(endpoint: &Endpoint, alpn: Alpn) -> Result<Conn, ProxyError> {
    let stream = TcpStream::connect(endpoint.addr)
        .await
        .map_err(|e| ProxyError::io(ErrorKind::ConnectFailed, e))?;
    // Small request/response messages must not wait for Nagle.
    stream
        .set_nodelay(true)
        .map_err(|e| ProxyError::io(ErrorKind::ConnectFailed, e))?;
    let Some(tls) = &endpoint.tls else {
        return Ok(Conn::Plain(stream));
    };
    // Without a certificate yet there was no handshake to count as failed.
    let handshake = tls.state.current().is_some();
    tls.connect(stream, alpn).await.map_err(|e| {
        if handshake {
            endpoint.telemetry.tls_errors.inc();
        }
        ProxyError::io(ErrorKind::ConnectFailed, e)
    })
}
