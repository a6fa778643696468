//! The downstream side of HTTP/2: hyper serves the connection; each stream
//! is normalized, routed, balanced and sent on the endpoint's multiplexed
//! upstream connection, keeping HTTP/2 end to end (gRPC trailers included).

use super::activity::Activity;
use super::client;
use super::replay::Tape;
use crate::access::Record;
use crate::dispatch::{self, Decision};
use crate::endpoint::H2Body;
use crate::error::{ErrorKind, ProxyError};
use crate::fault::{Injected, FAULT_HEADER};
use crate::listen::Peer;
use crate::resilience::{Failure, Outcome};
use crate::route::RequestView;
use crate::server::{Direction, Shared};
use crate::telemetry::{AccessFlags, TraceContext};
use crate::tls::Conn;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{convert::Infallible, sync::Arc, time::Instant};

/// The HTTP/2 limits a client gets (docs/security.md, "HTTP hardening").
mod limits {
    /// `SETTINGS_MAX_CONCURRENT_STREAMS`: more open streams are refused
    /// (`REFUSED_STREAM`).
    pub(super) const CONCURRENT_STREAMS: u32 = 200;
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`, the HTTP/1 head limit: a larger
    /// header list is answered `431`.
    pub(super) const HEADER_LIST_BYTES: u32 = 64 * 1024;
    /// Streams the client may reset before the proxy accepted them (the
    /// "rapid reset" attack, CVE-2023-44487): past this, `GOAWAY`
    /// `ENHANCE_YOUR_CALM`.
    pub(super) const PENDING_ACCEPT_RESETS: usize = 20;
    /// Streams the proxy may reset for the client's protocol errors before
    /// it gives up on the connection (`GOAWAY`).
    pub(super) const LOCAL_ERROR_RESETS: usize = 1024;
}

/// Serves one downstream HTTP/2 connection until it closes, sits idle (no
/// stream in flight) for the proxy's `idle_timeout`, or the proxy drains.
pub(crate) async fn serve(shared: Arc<Shared>, direction: Direction, stream: Conn, peer: Peer) {
    let peer = Arc::new(peer);
    let mut drain = shared.drain_signal();
    let (idle_timeout, header_timeout) = {
        let runtime = shared.runtime();
        let spec = &runtime.config.proxy.spec;
        (spec.idle_timeout.into(), spec.request_header_timeout.into())
    };
    let activity = Arc::new(Activity::new());
    let svc_shared = shared.clone();
    let svc_activity = activity.clone();
    let svc_peer = peer.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = svc_shared.clone();
        let in_flight = svc_activity.start();
        let peer = svc_peer.clone();
        async move {
            let resp = handle(&shared, direction, &peer, req).await;
            // The stream is in flight until its response body is done.
            Ok::<_, Infallible>(resp.map(|body| {
                body.map_frame(move |frame| {
                    let _ = &in_flight;
                    frame
                })
                .boxed_unsync()
            }))
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits::CONCURRENT_STREAMS)
        .max_header_list_size(limits::HEADER_LIST_BYTES)
        .max_pending_accept_reset_streams(limits::PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(limits::LOCAL_ERROR_RESETS)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, peer = %peer.addr, "HTTP/2 connection ended");
            }
        }
        _ = drain.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = activity.idle_for(idle_timeout) => {
            // Nothing in flight: a client that never completes a request
            // (a header block trickled in, say) is cut off here.
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(header_timeout, conn).await;
        }
    }
}

fn local(
    status: StatusCode,
    reason: Option<&'static str>,
    headers: &[(HeaderName, HeaderValue)],
    body: Bytes,
) -> Response<H2Body> {
    let mut resp = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    if let Some(reason) = reason {
        resp.headers_mut()
            .insert("x-sinew-error", HeaderValue::from_static(reason));
    }
    for (name, value) in headers {
        resp.headers_mut().insert(name.clone(), value.clone());
    }
    resp
}

fn error_response(error: &ProxyError) -> Response<H2Body> {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY);
    let retry_after = error.retry_after_header();
    local(
        status,
        Some(error.reason()),
        retry_after.as_slice(),
        Bytes::from_static(error.reason().as_bytes()),
    )
}

async fn handle(
    shared: &Shared,
    direction: Direction,
    peer: &Peer,
    req: Request<Incoming>,
) -> Response<H2Body> {
    let Some(log) = shared.access_log.as_ref() else {
        return forward(shared, direction, peer, req, None).await;
    };
    let started = Instant::now();
    let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(HeaderValue::as_bytes);
    let mut record = Record::new(
        direction,
        peer,
        req.method().as_str(),
        authority,
        target,
        user_agent,
    );
    let resp = forward(shared, direction, peer, req, Some(&mut record)).await;
    record.log(log, resp.status().as_u16(), started.elapsed(), None);
    resp
}

/// Decides and forwards one stream; fills `record` for the access log.
async fn forward(
    shared: &Shared,
    direction: Direction,
    peer: &Peer,
    req: Request<Incoming>,
    mut record: Option<&mut Record>,
) -> Response<H2Body> {
    let started = Instant::now();
    let runtime = shared.runtime();
    let worker = crate::endpoint::current_worker();
    let (mut parts, body) = req.into_parts();
    let authority = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    // Routing and authorization use `:authority`; a `Host` naming another
    // would reach an upstream that reads it (RFC 9113 §8.3.1).
    if let (Some(pseudo), Some(host)) = (parts.uri.authority(), parts.headers.get(header::HOST)) {
        if !host
            .as_bytes()
            .eq_ignore_ascii_case(pseudo.as_str().as_bytes())
        {
            let e = ProxyError::new(ErrorKind::BadRequest);
            return refuse(shared, &e, record);
        }
    }
    let path = match crate::route::normalize_path(parts.uri.path()) {
        Ok(p) => p.into_owned(),
        Err(_) => {
            let e = ProxyError::new(ErrorKind::BadPath);
            return refuse(shared, &e, record);
        }
    };
    let query = parts.uri.query().map(str::to_owned);
    let decision = {
        let view = RequestView {
            method: parts.method.as_str(),
            path: &path,
            query: query.as_deref(),
            headers: &parts.headers,
        };
        dispatch::decide(&runtime, direction, authority.as_deref(), &view, peer)
    };
    let mut target = match decision {
        Ok(Decision::Forward(target)) => target,
        Ok(Decision::Direct(direct)) => {
            direct.metrics.record(direct.status.as_u16());
            if let Some(record) = record {
                record.flags = AccessFlags::DIRECT_RESPONSE;
            }
            return local(direct.status, None, direct.headers, direct.body.clone());
        }
        Err(e) => return refuse(shared, &e, record),
    };

    if let Some(fault) = target.fault {
        let injected = Injected::roll(fault);
        if let Some(delay) = injected.delay {
            tokio::time::sleep(delay).await;
            if let Some(record) = record.as_deref_mut() {
                record.flags = record.flags | AccessFlags::FAULT_DELAY;
            }
        }
        if let Some(status) = injected.abort {
            target.metrics.record(status.as_u16(), started.elapsed());
            if let Some(record) = record {
                record.flags = record.flags | AccessFlags::FAULT_ABORT;
            }
            let marker = [(
                HeaderName::from_static(FAULT_HEADER),
                HeaderValue::from_static("abort"),
            )];
            return local(
                status,
                None,
                &marker,
                Bytes::from_static(b"fault injected\n"),
            );
        }
    }

    // Rewrite the request for the upstream.
    let trace = parts
        .headers
        .get("traceparent")
        .and_then(|v| TraceContext::from_header(v.as_bytes()))
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    let mut tp = [0u8; 55];
    let path = match target.forward.and_then(|f| f.rewrite.as_ref()) {
        Some(rewrite) => rewrite.apply(&path).into_owned(),
        None => path,
    };
    let path_and_query = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let authority = authority.unwrap_or_else(|| target.cluster.service.to_string());
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return refuse(shared, &ProxyError::new(ErrorKind::BadRequest), record),
    };
    strip_connection_headers(&mut parts.headers);
    if matches!(direction, Direction::Inbound | Direction::Ingress) {
        add_forwarded(&mut parts.headers, peer);
    }
    if let Some(forward) = target.forward {
        apply(
            &mut parts.headers,
            &forward.request_headers.set,
            &forward.request_headers.remove,
        );
    }
    if let Ok(value) = HeaderValue::from_str(trace.write_header(&mut tp)) {
        parts.headers.insert("traceparent", value);
    }
    parts.version = http::Version::HTTP_2;
    let idempotent = crate::resilience::is_idempotent(parts.method.as_str());
    let policy = target.retry;
    // With a retry policy, the body is recorded (up to the cap) as it streams.
    let (mut tape, body) = match policy {
        Some((p, _)) => {
            let (tape, body) = Tape::tee(body.boxed_unsync(), p.max_body_bytes());
            (Some(tape), body)
        }
        None => (None, body.boxed_unsync()),
    };
    let upstream_req = Request::from_parts(parts, body);
    let head = policy.map(|_| client::Replay::head_of(&upstream_req));
    let replay = client::Replay::of(&upstream_req);

    if let Some(record) = record.as_deref_mut() {
        record.trace = Some(trace);
        record.upstream = Some(target.endpoint.addr);
        record.service = target.cluster.service.to_string();
        record.route = target.route_name().to_owned();
    }
    if let Some((_, Some(budget))) = policy {
        budget.record_request(started);
    }
    let load = target.cluster.balancer.load_arc(target.index).start_owned();
    let cluster = target.cluster;
    let deadline = target
        .timeout
        .map(|t| tokio::time::Instant::from_std(started + t));
    let mut index = target.index;
    let mut retry = 0u32;
    let mut _retry_slot_in_use: Option<crate::resilience::Permit> = None;
    let mut request = upstream_req;
    let mut replay = replay;
    let result = loop {
        let endpoint = &cluster.endpoints[index];
        let per_try = policy.and_then(|(p, _)| p.per_try_timeout());
        let try_deadline = match (deadline, per_try) {
            (Some(d), Some(t)) => Some(d.min(tokio::time::Instant::now() + t)),
            (d, t) => d.or_else(|| t.map(|t| tokio::time::Instant::now() + t)),
        };
        let sent = client::send(cluster, endpoint, worker, request, replay.take());
        let result = match try_deadline {
            Some(at) => tokio::time::timeout_at(at, sent).await.unwrap_or_else(|_| {
                Err(client::Unsent {
                    error: ProxyError::new(ErrorKind::Timeout),
                    request: None,
                })
            }),
            None => sent.await,
        };
        if cluster.outlier.is_some() {
            cluster.observe(index, failure_of(&result));
        }
        let (Some((p, budget)), Some(head)) = (policy, head.as_ref()) else {
            break result;
        };
        let Some(outcome) = outcome_of(&result) else {
            break result;
        };
        retry += 1;
        // A retryable answer may say when to come back (`Retry-After`).
        let asked_pause = match &result {
            Ok(resp) if p.honor_retry_after() => {
                resp.headers().get(header::RETRY_AFTER).and_then(|v| {
                    crate::resilience::retry_after(v.as_bytes(), std::time::SystemTime::now())
                })
            }
            _ => None,
        };
        let backoff = p.backoff(retry, &mut fastrand::Rng::new());
        let pause = asked_pause.map_or(backoff, |asked| asked.max(backoff));
        // The pause must fit in the request's time, or the retry would only
        // time out.
        let may_retry = p.allows_retry(retry)
            && p.retryable(&outcome, idempotent)
            && asked_pause.is_none_or(|asked| asked <= crate::resilience::RETRY_AFTER_CAP)
            && deadline.is_none_or(|d| tokio::time::Instant::now() + pause < d);
        if !may_retry {
            break result;
        }
        // The budget and the breaker's `max_retries` bound retries too;
        // refused, the answer in hand stands (as on HTTP/1).
        if budget.is_some_and(|b| {
            let allowed = b.try_retry(Instant::now());
            if !allowed {
                cluster.telemetry.retry_budget_exhausted.inc();
            }
            !allowed
        }) {
            break result;
        }
        let Some(slot) = cluster.breaker.try_retry() else {
            cluster.telemetry.circuit_breaker_rejections.inc();
            break result;
        };
        // Held until the retry's try is over.
        _retry_slot_in_use = Some(slot);
        // The request again: untouched if it never left, else replayed from the tape.
        let again = match result {
            Err(client::Unsent {
                request: Some(unsent),
                ..
            }) => *unsent,
            other => match tape.as_ref().and_then(Tape::replay) {
                Some(body) => {
                    // Recorded again, for the retry after this one.
                    let cap = p.max_body_bytes();
                    let (next_tape, body) = Tape::tee(body, cap);
                    tape = Some(next_tape);
                    head.with_body(body)
                }
                None => break other,
            },
        };
        cluster.telemetry.retries.inc();
        index = cluster.pick_retry(target.hash, index).unwrap_or(index);
        request = again;
        tokio::time::sleep(pause).await;
    };
    let result = result.map_err(|unsent| unsent.error);
    let elapsed = started.elapsed();
    match result {
        Ok(resp) => {
            if target.cluster.balancer.uses_latency() {
                load.load().record(elapsed);
            }
            target.metrics.record(resp.status().as_u16(), elapsed);
            // The stream counts against the breaker and the endpoint's load
            // until its body is done, not just until its head came back
            // (a gRPC stream may last hours).
            let held = (target.take_permit(), load);
            let (mut parts, body) = resp.into_parts();
            strip_connection_headers(&mut parts.headers);
            if let Some(forward) = target.forward {
                apply(
                    &mut parts.headers,
                    &forward.response_headers.set,
                    &forward.response_headers.remove,
                );
            }
            let body = body.map_frame(move |frame| {
                let _ = &held;
                frame
            });
            Response::from_parts(parts, body.boxed_unsync())
        }
        Err(e) => {
            drop(load);
            target.metrics.record(e.status(), elapsed);
            shared.metrics.proxy_error(e.metric_kind()).inc();
            if let Some(record) = record {
                record.error = Some(e.metric_kind());
            }
            tracing::debug!(error = %e, upstream = %target.endpoint.addr, "HTTP/2 request failed");
            error_response(&e)
        }
    }
}

/// What a try tells passive outlier detection.
fn failure_of(result: &Result<Response<Incoming>, client::Unsent>) -> Option<Failure> {
    match result {
        Ok(resp) => match resp.status().as_u16() {
            502..=504 => Some(Failure::Gateway),
            500..=599 => Some(Failure::Server),
            _ => None,
        },
        Err(unsent)
            if matches!(
                unsent.error.kind(),
                ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout
            ) =>
        {
            Some(Failure::Connect)
        }
        Err(_) => Some(Failure::Gateway),
    }
}

/// What a try came to, for the retry policy; `None` for a success.
fn outcome_of(result: &Result<Response<Incoming>, client::Unsent>) -> Option<Outcome> {
    match result {
        Ok(resp) => {
            let status = resp.status().as_u16();
            if status >= 400 {
                return Some(Outcome::Status(status));
            }
            // A gRPC error answered trailers-only carries its status in the head.
            let grpc = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())?;
            (grpc != 0).then_some(Outcome::GrpcStatus(grpc))
        }
        Err(unsent) => Some(match unsent.error.kind() {
            ErrorKind::ConnectFailed | ErrorKind::ConnectTimeout => Outcome::ConnectFailed,
            ErrorKind::Timeout => Outcome::Timeout { request_sent: true },
            _ => Outcome::Reset {
                request_sent: unsent.request.is_none(),
            },
        }),
    }
}

/// Counts and answers a request refused before forwarding.
fn refuse(shared: &Shared, error: &ProxyError, record: Option<&mut Record>) -> Response<H2Body> {
    shared.metrics.proxy_error(error.metric_kind()).inc();
    if let Some(record) = record {
        record.failed(error);
    }
    error_response(error)
}

fn apply(headers: &mut HeaderMap, set: &[(HeaderName, HeaderValue)], remove: &[HeaderName]) {
    for name in remove {
        headers.remove(name);
    }
    for (name, value) in set {
        headers.insert(name.clone(), value.clone());
    }
}

/// On the inbound listener: `peer` appended to `x-forwarded-for` (the
/// received fields merged into one), `x-forwarded-proto` replaced by the
/// scheme of the accepted connection (`https` for mTLS) and
/// `x-sinew-client-id` replaced by the peer's SPIFFE ID (removed when it has
/// none, so it cannot be forged), as for HTTP/1 (docs/security.md).
fn add_forwarded(headers: &mut HeaderMap, peer: &Peer) {
    let (ip, proto) = (peer.addr.ip(), crate::listen::scheme(peer));
    let client_id = HeaderName::from_static(crate::listen::CLIENT_ID_HEADER);
    headers.remove(&client_id);
    if let Some(id) = peer
        .identity
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        headers.insert(client_id, id);
    }
    let xff = HeaderName::from_static("x-forwarded-for");
    let mut list = Vec::new();
    for value in headers.get_all(&xff) {
        let value = value.as_bytes().trim_ascii();
        if !value.is_empty() {
            list.extend_from_slice(value);
            list.extend_from_slice(b", ");
        }
    }
    list.extend_from_slice(ip.to_canonical().to_string().as_bytes());
    if let Ok(value) = HeaderValue::from_bytes(&list) {
        headers.insert(xff, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(proto),
    );
}

/// Connection-specific fields are forbidden in HTTP/2 (RFC 9113 §8.2.2).
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
    if headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}
