//! The downstream HTTP/1 connection loop: read a head, decide, forward or
//! answer locally, record telemetry, repeat while the connection is kept alive.

use super::exchange::{self, Buffers, Exchanged, Request};
use super::head::{self, Framing};
use super::idle::Stall;
use super::write::{self, Edits, Forwarded, RequestRewrite};
use crate::access::Record;
use crate::dispatch::{self, Decision};
use crate::error::{ErrorKind, ProxyError};
use crate::fault::{Injected, FAULT_HEADER};
use crate::listen::Peer;
use crate::route::RequestView;
use crate::server::{Direction, Shared};
use crate::telemetry::{AccessFlags, TraceContext};
use crate::tls::Conn;
use bytes::{Buf, BytesMut};
use std::{pin::Pin, sync::Arc, time::Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Sleep;

/// Headers of a parsed request, as the matchers see them.
struct Fields<'a, 'b>(&'a [httparse::Header<'b>]);

/// A request the proxy answers itself, once its head is parsed.
#[derive(Debug, Clone, Copy)]
struct Refused {
    /// The head's length: skipping it keeps the connection in step.
    len: usize,
    /// A `HEAD` request: the answer has no body.
    is_head: bool,
}

impl crate::route::HeaderSource for Fields<'_, '_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// Serves one downstream HTTP/1 connection until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, direction: Direction, down: Conn, peer: Peer) {
    let header_timeout = shared
        .runtime()
        .config
        .proxy
        .spec
        .request_header_timeout
        .into();
    let mut conn = Connection {
        shared,
        direction,
        peer,
        down,
        header_timeout,
        head_deadline: None,
        rbuf: BytesMut::with_capacity(8 * 1024),
        ubuf: BytesMut::with_capacity(8 * 1024),
        out: Vec::with_capacity(8 * 1024),
    };
    conn.run().await;
}

struct Connection {
    shared: Arc<Shared>,
    direction: Direction,
    peer: Peer,
    down: Conn,
    /// How long a head may take from its first byte (`request_header_timeout`).
    header_timeout: std::time::Duration,
    /// When the head being read must be complete; armed by its first byte.
    head_deadline: Option<tokio::time::Instant>,
    rbuf: BytesMut,
    ubuf: BytesMut,
    out: Vec<u8>,
}

/// What to do with the connection after a request.
enum Next {
    KeepAlive,
    Close,
}

impl Connection {
    async fn run(&mut self) {
        // One drain subscription and one idle timer per connection, not per
        // request: the timer is re-armed only when it fires early.
        let mut draining = self.shared.drain_signal();
        let drained = draining.changed();
        tokio::pin!(drained);
        // How long a kept-alive connection may sit idle between requests.
        let idle_timeout: std::time::Duration =
            self.shared.runtime().config.proxy.spec.idle_timeout.into();
        let idle = tokio::time::sleep(idle_timeout);
        tokio::pin!(idle);
        let mut last_active = Instant::now();
        loop {
            let between_requests = self.rbuf.is_empty();
            let read = tokio::select! {
                biased;
                r = self.read_head() => r,
                _ = &mut drained, if between_requests => return,
                _ = &mut idle, if between_requests => {
                    let deadline = last_active + idle_timeout;
                    if Instant::now() >= deadline {
                        return;
                    }
                    idle.as_mut().reset(deadline.into());
                    continue;
                }
            };
            match read {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    self.shared.metrics.proxy_error(e.metric_kind()).inc();
                    let _ = self.reply_error(&e, true, false).await;
                    return;
                }
            }
            // The idle clock restarts at each request (one clock read per request).
            let started = Instant::now();
            last_active = started;
            let next = self.handle(started, idle.as_mut()).await;
            // A request that stalled a while may have left the timer set
            // past the idle deadline that starts now.
            let idle_deadline = tokio::time::Instant::from_std(started + idle_timeout);
            if idle.deadline() > idle_deadline {
                idle.as_mut().reset(idle_deadline);
            }
            match next {
                Next::KeepAlive if !self.shared.is_draining() => {}
                _ => return,
            }
        }
    }

    /// Reads until `rbuf` holds a complete head. `Ok(false)`: the client
    /// closed between requests. The head must be whole within the header
    /// timeout of its first byte, however slowly it trickles in (slowloris).
    async fn read_head(&mut self) -> Result<bool, ProxyError> {
        let mut scanned = 0;
        loop {
            // Empty lines before a request line are ignored (RFC 9112 §2.2):
            // dropped here, so a head's length is where the next one starts.
            while self.rbuf.starts_with(b"\r\n") {
                self.rbuf.advance(2);
                scanned = 0;
            }
            if !self.rbuf.is_empty() {
                if head::find_head_end(&self.rbuf, scanned)?.is_some() {
                    self.head_deadline = None;
                    return Ok(true);
                }
                scanned = self.rbuf.len();
                head::check_incomplete(&self.rbuf)?;
                let timeout = self.header_timeout;
                self.head_deadline
                    .get_or_insert_with(|| tokio::time::Instant::now() + timeout);
            }
            self.rbuf.reserve(4 * 1024);
            let read = self.down.read_buf(&mut self.rbuf);
            let read = match self.head_deadline {
                Some(at) => tokio::time::timeout_at(at, read)
                    .await
                    .map_err(|_| ProxyError::new(ErrorKind::HeadTimeout))?,
                None => read.await,
            };
            match read {
                Ok(0) if self.rbuf.is_empty() => return Ok(false),
                Ok(0) => return Err(ProxyError::new(ErrorKind::BadRequest)),
                Ok(_) => {}
                Err(_) => return Ok(false),
            }
        }
    }

    /// Serves one request whose head is in `rbuf`, received at `started`;
    /// `timer` is the connection's, lent for the request's stall bound.
    async fn handle(&mut self, started: Instant, timer: Pin<&mut Sleep>) -> Next {
        let runtime = self.shared.runtime();
        let worker = crate::endpoint::current_worker();
        let log = self.shared.access_log.as_ref();

        // Parse, decide and write the upstream head while the head borrows `rbuf`.
        let mut headers = head::header_buf();
        let head = match head::parse_request(&self.rbuf, &mut headers) {
            Ok(Some(head)) => head,
            Ok(None) => {
                return self
                    .fail(ProxyError::new(ErrorKind::BadRequest), true, None)
                    .await
            }
            Err(e) => return self.fail(e, true, None).await,
        };
        let head_len = head.len;
        let has_body = head.framing != Framing::Empty;
        let is_head = head.method == "HEAD";
        let refused = Some(Refused {
            len: head_len,
            is_head,
        });
        if head.method == "CONNECT" {
            // Tunnels are not proxied, whatever the target's form.
            return self
                .fail(ProxyError::new(ErrorKind::NotSupported), true, refused)
                .await;
        }
        let mut record = log.map(|_| {
            Record::new(
                self.direction,
                &self.peer,
                head.method,
                head.authority,
                head.target,
                head.header_value("user-agent"),
            )
        });
        let path = if head.target == "*" {
            std::borrow::Cow::Borrowed("*")
        } else {
            match crate::route::normalize_path(head.path) {
                Ok(p) => p,
                Err(_) => {
                    return self
                        .fail(ProxyError::new(ErrorKind::BadPath), true, refused)
                        .await
                }
            }
        };
        let fields = Fields(head.headers);
        let view = RequestView {
            method: head.method,
            path: &path,
            query: head.query,
            headers: &fields,
        };
        let decision =
            dispatch::decide(&runtime, self.direction, head.authority, &view, &self.peer);
        let target = match decision {
            Ok(Decision::Forward(target)) => target,
            Ok(Decision::Direct(direct)) => {
                self.out.clear();
                write::local_response(
                    &mut self.out,
                    direct.status,
                    None,
                    direct.headers,
                    direct.body,
                    has_body || head.conn.close,
                    is_head,
                );
                direct.metrics.record(direct.status.as_u16());
                if let (Some(log), Some(record)) = (log, record.as_mut()) {
                    record.flags = AccessFlags::DIRECT_RESPONSE;
                    let bytes = Some(direct.body.len() as u64);
                    record.log(log, direct.status.as_u16(), started.elapsed(), bytes);
                }
                let close = has_body || head.conn.close;
                self.rbuf.advance(head_len);
                if self.down.write_all(&self.out).await.is_err() || close {
                    return Next::Close;
                }
                return Next::KeepAlive;
            }
            Err(e) => {
                // Refused before forwarding (no route, authorization, rate
                // limit, breaker): logged like any other answer.
                if let (Some(log), Some(record)) = (log, record.as_mut()) {
                    record.failed(&e);
                    record.log(log, e.status(), started.elapsed(), None);
                }
                return self.fail(e, has_body || head.conn.close, refused).await;
            }
        };
        if let Some(fault) = target.fault {
            let injected = Injected::roll(fault);
            if let Some(delay) = injected.delay {
                tokio::time::sleep(delay).await;
                if let Some(record) = record.as_mut() {
                    record.flags = record.flags | AccessFlags::FAULT_DELAY;
                }
            }
            if let Some(status) = injected.abort {
                let close = has_body || head.conn.close;
                self.out.clear();
                let marker = [(
                    http::HeaderName::from_static(FAULT_HEADER),
                    http::HeaderValue::from_static("abort"),
                )];
                write::local_response(
                    &mut self.out,
                    status,
                    None,
                    &marker,
                    b"fault injected\n",
                    close,
                    is_head,
                );
                target.metrics.record(status.as_u16(), started.elapsed());
                if let (Some(log), Some(record)) = (log, record.as_mut()) {
                    record.flags = record.flags | AccessFlags::FAULT_ABORT;
                    record.log(log, status.as_u16(), started.elapsed(), None);
                }
                self.rbuf.advance(head_len);
                if self.down.write_all(&self.out).await.is_err() || close {
                    return Next::Close;
                }
                return Next::KeepAlive;
            }
        }
        let trace = head
            .header_value("traceparent")
            .and_then(TraceContext::from_header)
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let mut traceparent = [0u8; 55];
        let traceparent = trace.write_header(&mut traceparent);
        let forward = target.forward;
        let rewritten = match forward.and_then(|f| f.rewrite.as_ref()) {
            Some(rewrite) => rewrite.apply(&path),
            None => std::borrow::Cow::Borrowed(&*path),
        };
        self.out.clear();
        write::request(
            &mut self.out,
            &head,
            &RequestRewrite {
                path: &rewritten,
                edits: forward.map_or_else(Edits::default, |f| Edits {
                    set: &f.request_headers.set,
                    remove: &f.request_headers.remove,
                }),
                traceparent: traceparent.as_bytes(),
                forwarded: matches!(self.direction, Direction::Inbound | Direction::Ingress).then(
                    || Forwarded {
                        peer: self.peer.addr.ip(),
                        proto: crate::listen::scheme(&self.peer),
                        client_id: self.peer.identity.as_deref(),
                    },
                ),
                default_host: &target.cluster.service,
            },
        );
        let request = Request {
            framing: head.framing,
            is_head,
            idempotent: matches!(
                head.method,
                "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
            ),
            client_http10: head.minor == 0,
            close: head.conn.close,
            shared: &self.shared,
            upgrade: head.upgrade.is_some(),
            expect_continue: head.expect_continue,
            response_edits: forward.map_or_else(Edits::default, |f| Edits {
                set: &f.response_headers.set,
                remove: &f.response_headers.remove,
            }),
            target,
        };
        if let Some(record) = record.as_mut() {
            record.trace = Some(trace);
            record.upstream = Some(request.target.endpoint.addr);
            record.service = request.target.cluster.service.to_string();
            record.route = request.target.route_name().to_owned();
        }
        drop(rewritten);
        drop(path);
        self.rbuf.advance(head_len);

        let load = request.target.load().start();
        let io = Buffers {
            down: &mut self.down,
            rbuf: &mut self.rbuf,
            ubuf: &mut self.ubuf,
            out: &mut self.out,
            stall: Stall {
                timer,
                idle: runtime.config.proxy.spec.stream_idle_timeout.into(),
            },
        };
        let result = exchange::run(io, &request, worker, started).await;
        let elapsed = started.elapsed();
        match result {
            Ok(Exchanged {
                status,
                upgraded_at,
                keep_alive,
                upstream_bytes,
            }) => {
                let elapsed = upgraded_at.map_or(elapsed, |at| at.duration_since(started));
                if request.target.cluster.balancer.uses_latency() {
                    load.finish(elapsed);
                }
                request.target.metrics.record(status, elapsed);
                if let (Some(log), Some(record)) = (log, record.as_mut()) {
                    if upgraded_at.is_some() {
                        record.flags = AccessFlags::UPGRADED;
                    }
                    record.log(log, status, elapsed, Some(upstream_bytes));
                }
                if keep_alive {
                    Next::KeepAlive
                } else {
                    Next::Close
                }
            }
            Err(failed) => {
                drop(load);
                let status = failed.error.status();
                request.target.metrics.record(status, elapsed);
                self.shared
                    .metrics
                    .proxy_error(failed.error.metric_kind())
                    .inc();
                if let (Some(log), Some(record)) = (log, record.as_mut()) {
                    record.error = Some(failed.error.metric_kind());
                    record.log(log, status, elapsed, None);
                }
                if failed.response_started {
                    return Next::Close;
                }
                tracing::debug!(error = %failed.error, upstream = %request.target.endpoint.addr, "request failed");
                let close = failed.request_unread || request.close;
                self.out.clear();
                write::local_response(
                    &mut self.out,
                    http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY),
                    Some(failed.error.reason()),
                    &[],
                    failed.error.reason().as_bytes(),
                    close,
                    request.is_head,
                );
                if self.down.write_all(&self.out).await.is_err() || close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
        }
    }

    /// Answers a request the proxy refuses before forwarding it. `head` is
    /// the refused request's, when it was parsed; without it the connection
    /// closes (where the next request would start is unknown).
    async fn fail(&mut self, error: ProxyError, close: bool, head: Option<Refused>) -> Next {
        self.shared.metrics.proxy_error(error.metric_kind()).inc();
        let close = close || head.is_none();
        let is_head = head.is_some_and(|h| h.is_head);
        if self.reply_error(&error, close, is_head).await.is_err() || close {
            return Next::Close;
        }
        // An unframed request ends with its head.
        if let Some(head) = head {
            self.rbuf.advance(head.len);
        }
        Next::KeepAlive
    }

    async fn reply_error(
        &mut self,
        error: &ProxyError,
        close: bool,
        is_head: bool,
    ) -> std::io::Result<()> {
        self.out.clear();
        let status =
            http::StatusCode::from_u16(error.status()).unwrap_or(http::StatusCode::BAD_REQUEST);
        let retry_after = error.retry_after_header();
        write::local_response(
            &mut self.out,
            status,
            Some(error.reason()),
            retry_after.as_slice(),
            error.reason().as_bytes(),
            close,
            is_head,
        );
        self.down.write_all(&self.out).await
    }
}
