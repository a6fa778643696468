//! Opening an upstream TCP connection within the connect timeout.

use crate::error::{ErrorKind, ProxyError};
use std::{net::SocketAddr, time::Duration};
use tokio::net::TcpStream;

/// Connects to `addr`, failing with `ConnectTimeout` after `timeout`.
pub(crate) async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProxyError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(ProxyError::io(ErrorKind::ConnectFailed, e)),
        Err(_) => return Err(ProxyError::new(ErrorKind::ConnectTimeout)),
    };
    // Small request/response messages must not wait for Nagle.
    stream
        .set_nodelay(true)
        .map_err(|e| ProxyError::io(ErrorKind::ConnectFailed, e))?;
    Ok(stream)
}
