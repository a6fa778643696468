//! The upstream half of an HTTP/1 request: take a pooled connection (or
//! connect), send the rewritten head and the body, read the response head,
//! stream the response back, and return the connection to the pool when the
//! exchange left it clean. It all runs in the downstream connection's task:
//! no channel, no extra wake-up between the two sides.

use super::attempt::{attempt, failure_of, read_head, response_status, retry_after_of, Attempt};
use super::body::{self, BodyError, Progress, READ_CHUNK};
use super::head::{self, Framing};
use super::idle::{self, Stall};
use super::write::{self, Downstream, Edits};
use crate::dispatch::Target;
use crate::error::{ErrorKind, ProxyError};
use crate::resilience::{Outcome, Permit};
use crate::tls::Conn;
use bytes::{Buf, BytesMut};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The request facts the exchange needs once the request head is gone.
#[derive(Debug)]
pub(crate) struct Request<'r> {
    pub(crate) target: Target<'r>,
    pub(crate) framing: Framing,
    pub(crate) is_head: bool,
    pub(crate) idempotent: bool,
    pub(crate) client_http10: bool,
    /// The client asked to close after this exchange.
    pub(crate) close: bool,
    /// The proxy, asked whether it drains when the response is written.
    pub(crate) shared: &'r crate::server::Shared,
    pub(crate) upgrade: bool,
    pub(crate) expect_continue: bool,
    pub(crate) response_edits: Edits<'r>,
}

/// A finished exchange.
#[derive(Debug)]
pub(crate) struct Exchanged {
    pub(crate) status: u16,
    /// For an upgrade, when the 101 reached the client (the session that
    /// follows is not request latency).
    pub(crate) upgraded_at: Option<Instant>,
    /// Whether the downstream connection can carry another request.
    pub(crate) keep_alive: bool,
    pub(crate) upstream_bytes: u64,
}

/// A failed exchange, and whether the client has already seen part of a response.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: ProxyError,
    /// Response bytes already reached the client: the only honest answer left
    /// is closing the connection.
    pub(crate) response_started: bool,
    /// The request body was not fully read from the client.
    pub(crate) request_unread: bool,
}

fn failed(error: ProxyError, request: &Progress) -> Failed {
    Failed {
        error,
        response_started: false,
        request_unread: !request.is_done(),
    }
}

/// The buffers of the downstream connection, lent to the exchange.
#[derive(Debug)]
pub(crate) struct Buffers<'c> {
    pub(crate) down: &'c mut Conn,
    pub(crate) rbuf: &'c mut BytesMut,
    pub(crate) ubuf: &'c mut BytesMut,
    /// Holds the upstream request head on entry.
    pub(crate) out: &'c mut Vec<u8>,
    /// The bound on waiting without progress, on the connection's timer.
    pub(crate) stall: Stall<'c>,
}

/// Runs one exchange. `io.out` holds the rewritten request head.
pub(crate) async fn run(
    io: Buffers<'_>,
    req: &Request<'_>,
    worker: usize,
    started: Instant,
) -> Result<Exchanged, Failed> {
    let Buffers {
        down,
        rbuf,
        ubuf,
        out,
        mut stall,
    } = io;
    let mut request_body = Progress::new(req.framing);
    let head_len = out.len();
    if !req.expect_continue {
        let n = request_body
            .take(rbuf, None)
            .map_err(|_| failed(ProxyError::new(ErrorKind::BadRequest), &request_body))?;
        out.extend_from_slice(&rbuf[..n]);
        rbuf.advance(n);
    }
    let deadline = req
        .target
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let cluster = req.target.cluster;
    let policy = req.target.retry.map(|(p, _)| p);
    let budget = req.target.retry.and_then(|(_, b)| b);
    if let Some(policy) = policy {
        // Keep the whole request in `out` (up to the cap) so it can be replayed.
        // Body bytes that came with the head count against the cap too.
        let already = (out.len() - head_len) as u64;
        if !req.expect_continue && !request_body.is_done() {
            let room = policy.max_body_bytes().saturating_sub(already);
            buffer_body(&mut request_body, down, rbuf, out, room, &mut stall)
                .await
                .map_err(|e| failed(e, &request_body))?;
        }
        if let Some(budget) = budget {
            budget.record_request(started);
        }
    }
    let body_len = (out.len() - head_len) as u64;
    let replayable = request_body.is_done()
        && !req.expect_continue
        && policy.is_some_and(|p| body_len <= p.max_body_bytes());

    // Send the request and read the response head, retrying on another
    // endpoint when the service's retry policy, the budget and the request
    // allow it.
    let mut index = req.target.index;
    let mut retry = 0u32;
    let mut _retry_slot_in_use: Option<Permit> = None;
    let (mut up, connection_slot) = loop {
        let endpoint = &cluster.endpoints[index];
        let per_try = policy.and_then(|p| p.per_try_timeout());
        let try_deadline = match (deadline, per_try) {
            (Some(d), Some(t)) => Some(d.min(tokio::time::Instant::now() + t)),
            (d, t) => d.or_else(|| t.map(|t| tokio::time::Instant::now() + t)),
        };
        let sent = attempt(
            endpoint,
            req,
            worker,
            started,
            down,
            rbuf,
            ubuf,
            out,
            &mut request_body,
            &mut stall,
            // A first try of a bodiless request has waited since it came in.
            (retry == 0 && req.framing == Framing::Empty).then_some(started),
        );
        let result = match try_deadline {
            Some(at) => tokio::time::timeout_at(at, sent).await.unwrap_or_else(|_| {
                Err(Attempt {
                    error: ProxyError::new(ErrorKind::Timeout),
                    outcome: Some(Outcome::Timeout { request_sent: true }),
                })
            }),
            None => sent.await,
        };
        // The final status, parsed once, only when a verdict needs it.
        let status = match &result {
            Ok(_) if cluster.outlier.is_some() || (policy.is_some() && replayable) => {
                response_status(ubuf)
            }
            _ => None,
        };
        if cluster.outlier.is_some() {
            cluster.observe(index, failure_of(&result, status));
        }
        let (outcome, error, up) = match result {
            Ok(up) => match policy {
                Some(p) if replayable => match status {
                    Some(status) if p.retryable(&Outcome::Status(status), req.idempotent) => {
                        (Outcome::Status(status), None, Some(up))
                    }
                    _ => break up,
                },
                _ => break up,
            },
            Err(Attempt {
                outcome: Some(outcome),
                error,
            }) => (outcome, Some(error), None),
            // The client failed: nothing to retry.
            Err(Attempt { error, .. }) => return Err(failed(error, &request_body)),
        };
        retry += 1;
        // A retryable answer may say when to come back (`Retry-After`).
        let asked_pause = match (&up, policy) {
            (Some(_), Some(p)) if p.honor_retry_after() => retry_after_of(ubuf),
            _ => None,
        };
        let may_retry = policy.is_some_and(|p| {
            p.allows_retry(retry)
                && p.retryable(&outcome, req.idempotent)
                && (replayable || !outcome.request_sent())
        }) && asked_pause
            .is_none_or(|asked| asked <= crate::resilience::RETRY_AFTER_CAP)
            && deadline.is_none_or(|d| {
                // Honouring `Retry-After` must fit in the request's time.
                tokio::time::Instant::now() + asked_pause.unwrap_or_default() < d
            })
            && budget.is_none_or(|b| {
                let allowed = b.try_retry(Instant::now());
                if !allowed {
                    cluster.telemetry.retry_budget_exhausted.inc();
                }
                allowed
            });
        // Concurrent retries of the service are bounded too (`max_retries`).
        let retry_slot = if may_retry {
            let slot = cluster.breaker.try_retry();
            if slot.is_none() {
                cluster.telemetry.circuit_breaker_rejections.inc();
            }
            slot
        } else {
            None
        };
        if retry_slot.is_none() {
            if let Some(up) = up {
                // The retryable answer stands: forward it.
                break up;
            }
            let error = error.unwrap_or_else(|| ProxyError::new(ErrorKind::UpstreamReset));
            return Err(failed(error, &request_body));
        }
        cluster.telemetry.retries.inc();
        // Held until the retry's attempt is over.
        _retry_slot_in_use = retry_slot;
        drop(up);
        ubuf.clear();
        index = cluster.pick_retry(req.target.hash, index).unwrap_or(index);
        if let Some(p) = policy {
            let backoff = p.backoff(retry, &mut fastrand::Rng::new());
            tokio::time::sleep(asked_pause.map_or(backoff, |asked| asked.max(backoff))).await;
        }
    };
    let endpoint = &cluster.endpoints[index];
    out.clear();

    // Forward the response head (and 1xx interim responses).
    loop {
        let mut headers = head::header_buf();
        let resp = match head::parse_response(ubuf, &mut headers, req.is_head) {
            Ok(Some(resp)) => resp,
            Ok(None) | Err(_) => {
                return Err(failed(
                    ProxyError::new(ErrorKind::UpstreamProtocol),
                    &request_body,
                ))
            }
        };
        let status = resp.status;
        if status < 200 && status != 101 {
            // Interim: pass through verbatim (an HTTP/1.0 client would take
            // it for the final answer: it gets none), then read the final head.
            let len = resp.len;
            if !req.client_http10 {
                stall
                    .within(None, down.write_all(&ubuf[..len]))
                    .await
                    .map_err(|e| {
                        failed(ProxyError::io(ErrorKind::DownstreamIo, e), &request_body)
                    })?;
            }
            ubuf.advance(len);
            if status == 100 && req.expect_continue && !request_body.is_done() {
                body::copy(&mut request_body, down, rbuf, &mut up, false, &mut stall)
                    .await
                    .map_err(|e| failed(body_error(e, true), &request_body))?;
            }
            read_head(&mut up, ubuf, &mut stall, None)
                .await
                .map_err(|e| failed(e, &request_body))?;
            continue;
        }
        if status == 101 && !req.upgrade {
            // A switch nobody asked for: the connection now speaks something
            // else, so it is neither answered from nor pooled.
            return Err(failed(
                ProxyError::new(ErrorKind::UpstreamProtocol),
                &request_body,
            ));
        }
        if status == 101 && req.upgrade {
            write::response(
                out,
                &resp,
                req.response_edits,
                Downstream::PassThrough,
                false,
            );
            let len = resp.len;
            ubuf.advance(len);
            return upgrade(down, &mut up, rbuf, ubuf, out, status).await;
        }
        let mode = if req.client_http10 {
            Downstream::Http10
        } else {
            Downstream::PassThrough
        };
        let decode = mode == Downstream::Http10 && resp.framing == Framing::Chunked;
        // Draining, this is the connection's last response, and says so.
        let keep_alive = !(req.close
            || req.shared.is_draining()
            || !request_body.is_done()
            || resp.framing == Framing::UntilClose
            || decode);
        write::response(out, &resp, req.response_edits, mode, !keep_alive);
        let upstream_reusable = !resp.conn.close && resp.framing != Framing::UntilClose;
        let framing = resp.framing;
        let len = resp.len;
        ubuf.advance(len);

        // The head and the body bytes already here leave in one write.
        let mut response_body = Progress::new(framing);
        let n = response_body
            .take(ubuf, decode.then_some(&mut *out))
            .map_err(|_| failed(ProxyError::new(ErrorKind::UpstreamProtocol), &request_body))?;
        if !decode {
            out.extend_from_slice(&ubuf[..n]);
        }
        ubuf.advance(n);
        let mut upstream_bytes = n as u64;
        stall
            .within(None, down.write_all(out))
            .await
            .map_err(|e| Failed {
                error: ProxyError::io(ErrorKind::DownstreamIo, e),
                response_started: true,
                request_unread: !request_body.is_done(),
            })?;
        if !response_body.is_done() {
            upstream_bytes +=
                body::copy(&mut response_body, &mut up, ubuf, down, decode, &mut stall)
                    .await
                    .map_err(|e| Failed {
                        error: body_error(e, false),
                        response_started: true,
                        request_unread: !request_body.is_done(),
                    })?;
        }
        if upstream_reusable && ubuf.is_empty() && request_body.is_done() {
            endpoint.pool.checkin(worker, up, connection_slot, started);
        }
        return Ok(Exchanged {
            status,
            upgraded_at: None,
            keep_alive,
            upstream_bytes,
        });
    }
}

/// Reads the rest of the request body into `out`, up to `cap` bytes of
/// body; past the cap the remainder streams as usual (and the request is
/// not replayable).
async fn buffer_body(
    progress: &mut Progress,
    down: &mut Conn,
    rbuf: &mut BytesMut,
    out: &mut Vec<u8>,
    cap: u64,
    stall: &mut Stall<'_>,
) -> Result<(), ProxyError> {
    let mut buffered = 0u64;
    while !progress.is_done() && buffered < cap {
        if rbuf.is_empty() {
            rbuf.reserve(READ_CHUNK);
            match stall.within(None, down.read_buf(rbuf)).await {
                Ok(0) => return Err(ProxyError::new(ErrorKind::DownstreamIo)),
                Ok(_) => {}
                Err(e) if idle::stalled(&e) => {
                    return Err(ProxyError::io(ErrorKind::BodyTimeout, e))
                }
                Err(e) => return Err(ProxyError::io(ErrorKind::DownstreamIo, e)),
            }
        }
        let room = usize::try_from(cap - buffered)
            .unwrap_or(usize::MAX)
            .min(rbuf.len());
        let n = progress
            .take(&rbuf[..room], None)
            .map_err(|_| ProxyError::new(ErrorKind::BadRequest))?;
        out.extend_from_slice(&rbuf[..n]);
        rbuf.advance(n);
        buffered += n as u64;
        if n == 0 {
            break;
        }
    }
    Ok(())
}

/// The error a failed body transfer answers with; `request` says which
/// body (the client's, or the upstream's response).
pub(super) fn body_error(e: BodyError, request: bool) -> ProxyError {
    match (e, request) {
        (BodyError::Framing, true) => ProxyError::new(ErrorKind::BadRequest),
        (BodyError::Framing, false) => ProxyError::new(ErrorKind::UpstreamProtocol),
        // The client's body stopped coming: 408.
        (BodyError::Source(e), true) if idle::stalled(&e) => {
            ProxyError::io(ErrorKind::BodyTimeout, e)
        }
        (BodyError::Source(e), true) | (BodyError::Sink(e), false) => {
            ProxyError::io(ErrorKind::DownstreamIo, e)
        }
        // The upstream stopped reading the body or sending its own: 504.
        (BodyError::Source(e), false) | (BodyError::Sink(e), true) if idle::stalled(&e) => {
            ProxyError::io(ErrorKind::Timeout, e)
        }
        (BodyError::Source(e), false) | (BodyError::Sink(e), true) => {
            ProxyError::io(ErrorKind::UpstreamReset, e)
        }
    }
}

/// After `101 Switching Protocols`: flush what each side already sent, then
/// splice the two connections until either closes.
async fn upgrade(
    down: &mut Conn,
    up: &mut Conn,
    rbuf: &mut BytesMut,
    ubuf: &mut BytesMut,
    out: &mut Vec<u8>,
    status: u16,
) -> Result<Exchanged, Failed> {
    let started = Failed {
        error: ProxyError::new(ErrorKind::DownstreamIo),
        response_started: true,
        request_unread: false,
    };
    out.extend_from_slice(ubuf);
    ubuf.clear();
    if down.write_all(out).await.is_err() {
        return Err(started);
    }
    let upgraded_at = Instant::now();
    if !rbuf.is_empty() {
        if up.write_all(rbuf).await.is_err() {
            return Err(started);
        }
        rbuf.clear();
    }
    let upstream_bytes = match tokio::io::copy_bidirectional(down, up).await {
        Ok((_, from_up)) => from_up,
        Err(_) => 0,
    };
    Ok(Exchanged {
        status,
        upgraded_at: Some(upgraded_at),
        keep_alive: false,
        upstream_bytes,
    })
}
