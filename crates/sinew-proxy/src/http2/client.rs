//! The upstream side of HTTP/2: one multiplexed connection per endpoint and
//! worker, opened on first use and replaced when it closes.

use crate::config::{Cluster, Endpoint};
use crate::endpoint::{connect, H2Body};
use crate::error::{ErrorKind, ProxyError};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// A sender on the endpoint's HTTP/2 connection, connecting when needed.
pub(crate) async fn sender(
    cluster: &Cluster,
    endpoint: &Endpoint,
    worker: usize,
) -> Result<SendRequest<H2Body>, ProxyError> {
    if let Some(tx) = endpoint.pool.h2(worker) {
        return Ok(tx);
    }
    let stream = match connect(endpoint.addr, cluster.connect_timeout).await {
        Ok(stream) => {
            endpoint.telemetry.connects.inc();
            stream
        }
        Err(e) => {
            endpoint.telemetry.connect_errors.inc();
            return Err(e);
        }
    };
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ProxyError::new(ErrorKind::ConnectFailed))?;
    let addr = endpoint.addr;
    tokio::spawn(async move {
        if let Err(error) = conn.await {
            tracing::debug!(%error, upstream = %addr, "HTTP/2 connection ended");
        }
    });
    endpoint.pool.set_h2(worker, tx.clone());
    Ok(tx)
}
