//! One try of an HTTP/1 request on one endpoint: take a pooled connection
//! (replacing one the upstream closed meanwhile) or connect within the
//! service's limits, send the request from the buffer, and read the
//! response head; plus what a try tells the retry policy and outlier
//! detection.

use super::body::{self, BodyError, Progress, READ_CHUNK};
use super::exchange::{body_error, Request};
use super::head;
use super::idle::{self, Stall};
use crate::config::Endpoint;
use crate::endpoint::connect;
use crate::error::{ErrorKind, ProxyError};
use crate::resilience::{Failure, Outcome, Permit};
use crate::tls::Conn;
use bytes::BytesMut;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A failed attempt: the error to answer with and the outcome the retry
/// policy judges (`None` when the client, not the upstream, failed: never
/// retried, and no verdict on the endpoint).
pub(super) struct Attempt {
    pub(super) error: ProxyError,
    pub(super) outcome: Option<Outcome>,
}

/// One attempt on `endpoint`: send the request (from `out`, then the rest of
/// the body) and read the response head into `ubuf`. A pooled connection the
/// upstream closed meanwhile is replaced once, transparently.
#[allow(clippy::too_many_arguments)]
pub(super) async fn attempt(
    endpoint: &Endpoint,
    req: &Request<'_>,
    worker: usize,
    started: Instant,
    down: &mut Conn,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    out: &[u8],
    request_body: &mut Progress,
    stall: &mut Stall<'_>,
    waiting_since: Option<Instant>,
) -> Result<(Conn, Option<Permit>), Attempt> {
    let mut fresh_only = false;
    loop {
        let (mut up, permit, reused) = acquire(endpoint, req, worker, fresh_only, started)
            .await
            .map_err(|error| Attempt {
                outcome: Some(Outcome::ConnectFailed),
                error,
            })?;
        let sent = Sent { out, waiting_since };
        match send(&mut up, down, rbuf, ubuf, sent, req, request_body, stall).await {
            Ok(()) => return Ok((up, permit)),
            Err(Send::Stale) if reused && !fresh_only => {
                ubuf.clear();
                fresh_only = true;
            }
            Err(Send::Stale) => {
                return Err(Attempt {
                    error: ProxyError::new(ErrorKind::UpstreamReset),
                    outcome: Some(Outcome::Reset { request_sent: true }),
                })
            }
            Err(Send::Failed(error)) => {
                let outcome = match error.kind() {
                    ErrorKind::Timeout => Outcome::Timeout { request_sent: true },
                    _ => Outcome::Reset { request_sent: true },
                };
                return Err(Attempt {
                    error,
                    outcome: Some(outcome),
                });
            }
            Err(Send::Client(error)) => {
                // Not the upstream's fault: never retried.
                return Err(Attempt {
                    error,
                    outcome: None,
                });
            }
        }
    }
}

/// What one try tells passive outlier detection; `status` is the final
/// response's, when the try got one.
pub(super) fn failure_of(
    result: &Result<(Conn, Option<Permit>), Attempt>,
    status: Option<u16>,
) -> Option<Failure> {
    match result {
        Ok(_) => match status {
            Some(502..=504) => Some(Failure::Gateway),
            Some(500..=599) => Some(Failure::Server),
            _ => None,
        },
        Err(Attempt {
            outcome: Some(Outcome::ConnectFailed),
            ..
        }) => Some(Failure::Connect),
        // A client-side failure says nothing about the endpoint.
        Err(Attempt { outcome: None, .. }) => None,
        Err(_) => Some(Failure::Gateway),
    }
}

/// The `Retry-After` of the response head in `ubuf`, when it has one.
pub(super) fn retry_after_of(ubuf: &[u8]) -> Option<std::time::Duration> {
    let mut headers = head::header_buf();
    let resp = head::parse_response(ubuf, &mut headers, false).ok()??;
    let value = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))?
        .value;
    crate::resilience::retry_after(value, std::time::SystemTime::now())
}

/// The status of the response head in `ubuf` (final responses only).
pub(super) fn response_status(ubuf: &[u8]) -> Option<u16> {
    let mut headers = head::header_buf();
    match head::parse_response(ubuf, &mut headers, false) {
        Ok(Some(resp)) if resp.status >= 200 => Some(resp.status),
        _ => None,
    }
}

async fn acquire(
    endpoint: &Endpoint,
    req: &Request<'_>,
    worker: usize,
    fresh_only: bool,
    now: Instant,
) -> Result<(Conn, Option<Permit>, bool), ProxyError> {
    if !fresh_only && !req.upgrade {
        if let Some((stream, permit)) =
            endpoint
                .pool
                .checkout(worker, endpoint.tls.as_ref().map(|t| &t.identity), now)
        {
            return Ok((stream, permit, true));
        }
    }
    let cluster = req.target.cluster;
    let overloaded = || {
        cluster.telemetry.circuit_breaker_rejections.inc();
        ProxyError::new(ErrorKind::Overloaded)
    };
    // A new connection takes one of the service's `max_connections` slots
    // for its whole life; waiting for it counts against `max_pending`.
    let connection_slot = cluster.breaker.try_connection().ok_or_else(overloaded)?;
    let _pending = cluster.breaker.try_pending().ok_or_else(overloaded)?;
    match connect(endpoint, crate::tls::Alpn::Http1, cluster.connect_timeout).await {
        Ok(stream) => {
            endpoint.telemetry.connects.inc();
            Ok((stream, Some(connection_slot), false))
        }
        Err(e) => {
            endpoint.telemetry.connect_errors.inc();
            Err(e)
        }
    }
}

/// Why sending a request and reading its response head failed.
enum Send {
    /// The connection was closed or reset before any response byte: safe to
    /// replay on a fresh connection.
    Stale,
    /// The upstream failed.
    Failed(ProxyError),
    /// The client failed while its body was being forwarded.
    Client(ProxyError),
}

/// The request as it leaves: its bytes so far, and since when it has been
/// waiting, when that is known without reading the clock.
struct Sent<'a> {
    out: &'a [u8],
    waiting_since: Option<Instant>,
}

#[allow(clippy::too_many_arguments)]
async fn send(
    up: &mut Conn,
    down: &mut Conn,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    sent: Sent<'_>,
    req: &Request<'_>,
    request_body: &mut Progress,
    stall: &mut Stall<'_>,
) -> Result<(), Send> {
    match stall.within(None, up.write_all(sent.out)).await {
        Ok(()) => {}
        Err(e) if idle::stalled(&e) => {
            return Err(Send::Failed(ProxyError::io(ErrorKind::Timeout, e)))
        }
        Err(_) => return Err(Send::Stale),
    }
    let mut replayable = true;
    if req.expect_continue && !request_body.is_done() {
        // The client waits for `100 Continue` before its body. An upstream
        // that ignores `Expect` waits for the body instead: after a short
        // wait with no answer the proxy says 100 itself and sends the body,
        // as curl does (RFC 9110 §10.1.1).
        // Well inside the stall bound, which must not end the wait first.
        let wait = EXPECT_WAIT.min(stall.idle / 2);
        match tokio::time::timeout(wait, read_head(up, ubuf, stall, None)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => return Err(Send::Failed(e)),
            Err(_) => {
                replayable = false;
                stall
                    .within(None, down.write_all(CONTINUE))
                    .await
                    .map_err(|e| Send::Client(ProxyError::io(ErrorKind::DownstreamIo, e)))?;
                send_body(up, down, rbuf, request_body, stall).await?;
            }
        }
    } else if !request_body.is_done() {
        replayable = false;
        send_body(up, down, rbuf, request_body, stall).await?;
    }
    // A request sent whole waits for its answer from when it came in (no
    // clock read); one whose body streamed, from now.
    let since = sent.waiting_since.filter(|_| replayable);
    match read_head(up, ubuf, stall, since).await {
        Ok(()) => Ok(()),
        Err(e)
            if replayable
                && ubuf.is_empty()
                && req.idempotent
                && e.kind() == ErrorKind::UpstreamReset =>
        {
            Err(Send::Stale)
        }
        Err(e) => Err(Send::Failed(e)),
    }
}

/// How long a request with `Expect: 100-continue` waits for the upstream's
/// answer before its body is sent anyway.
const EXPECT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The interim response the proxy gives in the upstream's place.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Streams the rest of the request body from the client to the upstream.
async fn send_body(
    up: &mut Conn,
    down: &mut Conn,
    rbuf: &mut BytesMut,
    request_body: &mut Progress,
    stall: &mut Stall<'_>,
) -> Result<(), Send> {
    body::copy(request_body, down, rbuf, up, false, stall)
        .await
        .map(drop)
        .map_err(|e| match e {
            e @ BodyError::Sink(_) => Send::Failed(body_error(e, true)),
            other => Send::Client(body_error(other, true)),
        })
}

/// Reads from the upstream until `ubuf` holds a complete response head,
/// each read within the stall bound of `since` (`None`: of when it starts
/// waiting), else `Timeout`. Cancel-safe.
pub(super) async fn read_head(
    up: &mut Conn,
    ubuf: &mut BytesMut,
    stall: &mut Stall<'_>,
    mut since: Option<Instant>,
) -> Result<(), ProxyError> {
    loop {
        if head::blank_line(ubuf).is_some() {
            return Ok(());
        }
        if ubuf.len() >= head::MAX_HEAD_BYTES {
            return Err(ProxyError::new(ErrorKind::UpstreamProtocol));
        }
        ubuf.reserve(READ_CHUNK);
        match stall.within(since, up.read_buf(ubuf)).await {
            Ok(0) => return Err(ProxyError::new(ErrorKind::UpstreamReset)),
            // Progress: a further wait is timed from its own start.
            Ok(_) => since = None,
            Err(e) if idle::stalled(&e) => return Err(ProxyError::io(ErrorKind::Timeout, e)),
            Err(e) => return Err(ProxyError::io(ErrorKind::UpstreamReset, e)),
        }
    }
}
