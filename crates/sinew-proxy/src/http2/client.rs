//! The upstream side of HTTP/2: one multiplexed connection per endpoint and
//! worker, opened on first use and replaced when it closes; requests the
//! upstream provably never processed (refused by `GOAWAY` or
//! `REFUSED_STREAM`, RFC 9113 §8.7) are sent again on a fresh connection.

use crate::config::{Cluster, Endpoint};
use crate::endpoint::{connect, H2Body};
use crate::error::{ErrorKind, ProxyError};
use crate::tls::Alpn;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// A sender on the endpoint's HTTP/2 connection, connecting when there is
/// none (or when `fresh` asks for a new one).
async fn sender(
    cluster: &Cluster,
    endpoint: &Endpoint,
    worker: usize,
    fresh: bool,
) -> Result<SendRequest<H2Body>, ProxyError> {
    if !fresh {
        if let Some(tx) = endpoint.pool.h2(worker) {
            return Ok(tx);
        }
    }
    let overloaded = || {
        cluster.telemetry.circuit_breaker_rejections.inc();
        ProxyError::new(ErrorKind::Overloaded)
    };
    // A new connection takes one of the service's `max_connections` slots
    // for its whole life; waiting for it counts against `max_pending`.
    let connection_slot = cluster.breaker.try_connection().ok_or_else(overloaded)?;
    let _pending = cluster.breaker.try_pending().ok_or_else(overloaded)?;
    let stream = match connect(endpoint, Alpn::H2, cluster.connect_timeout).await {
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
        .map_err(|e| ProxyError::caused_by(ErrorKind::ConnectFailed, e))?;
    let addr = endpoint.addr;
    tokio::spawn(async move {
        let _slot = connection_slot;
        if let Err(error) = conn.await {
            tracing::debug!(%error, upstream = %addr, "HTTP/2 connection ended");
        }
    });
    endpoint.pool.set_h2(worker, tx.clone());
    Ok(tx)
}

/// What it takes to send a bodiless request again.
#[derive(Debug)]
pub(super) struct Replay {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl Replay {
    /// The request head of `req` (the body comes from elsewhere).
    pub(super) fn head_of(req: &Request<H2Body>) -> Replay {
        Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        }
    }

    /// The request again, with `body`.
    pub(super) fn with_body(&self, body: H2Body) -> Request<H2Body> {
        let mut req = self.request();
        *req.body_mut() = body;
        req
    }

    /// A replay of `req` when its body is empty (else the body is gone once sent).
    pub(super) fn of(req: &Request<H2Body>) -> Option<Replay> {
        http_body::Body::is_end_stream(req.body()).then(|| Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            headers: req.headers().clone(),
        })
    }

    fn request(&self) -> Request<H2Body> {
        let mut req = Request::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        *req.version_mut() = Version::HTTP_2;
        req
    }
}

/// A send that failed, with the request when it never reached the upstream.
#[derive(Debug)]
pub(super) struct Unsent {
    pub(super) error: ProxyError,
    /// The request, untouched, when no connection took it (e.g. connect failure).
    pub(super) request: Option<Box<Request<H2Body>>>,
}

/// Sends `req` to the endpoint, once more on a fresh connection when the
/// upstream refused it without processing it.
pub(super) async fn send(
    cluster: &Cluster,
    endpoint: &Endpoint,
    worker: usize,
    req: Request<H2Body>,
    replay: Option<Replay>,
) -> Result<Response<Incoming>, Unsent> {
    let mut req = req;
    let mut fresh = false;
    loop {
        let mut tx = match sender(cluster, endpoint, worker, fresh).await {
            Ok(tx) => tx,
            Err(error) => {
                return Err(Unsent {
                    error,
                    request: Some(Box::new(req)),
                })
            }
        };
        if tx.ready().await.is_err() {
            // The connection closed before this request was handed to it.
            if fresh {
                return Err(Unsent {
                    error: ProxyError::new(ErrorKind::UpstreamReset),
                    request: Some(Box::new(req)),
                });
            }
            fresh = true;
            continue;
        }
        match tx.try_send_request(req).await {
            Ok(resp) => return Ok(resp),
            Err(mut failed) => {
                let again = failed.take_message().or_else(|| {
                    never_processed(failed.error())
                        .then(|| replay.as_ref().map(Replay::request))
                        .flatten()
                });
                match again {
                    Some(next) if !fresh => {
                        tracing::debug!(upstream = %endpoint.addr, "HTTP/2 request refused unprocessed; sending it again");
                        fresh = true;
                        req = next;
                    }
                    again => {
                        return Err(Unsent {
                            error: ProxyError::caused_by(
                                ErrorKind::UpstreamReset,
                                failed.into_error(),
                            ),
                            request: again.map(Box::new),
                        })
                    }
                }
            }
        }
    }
}

/// Whether the upstream guarantees it never processed the stream: it was
/// above a `GOAWAY`'s last stream id, or reset with `REFUSED_STREAM`.
fn never_processed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            return (h2.is_go_away() && h2.is_remote())
                || h2.reason() == Some(h2::Reason::REFUSED_STREAM);
        }
        source = e.source();
    }
    false
}
