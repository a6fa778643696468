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
    let Some(material) = tls.state.current() else {
        return Err(ProxyError::caused_by(
            ErrorKind::ConnectFailed,
            "no workload certificate yet for mTLS",
        ));
    };
    material
        .connect(stream, &tls.identity, alpn)
        .await
        .map_err(|e| {
            endpoint.telemetry.tls_errors.inc();
            ProxyError::io(ErrorKind::ConnectFailed, e)
        })
}
