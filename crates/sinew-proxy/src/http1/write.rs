//! Writes the rewritten head the proxy sends on: one pass over the received
//! fields, dropping hop-by-hop ones (and repeated `Content-Length`s),
//! applying the route's header edits and adding the trace context, the
//! inbound `x-forwarded-*` fields and framing headers. One buffer, no
//! allocation beyond its growth.

use super::head::{is_hop_by_hop, named_by_connection, Framing, RequestHead, ResponseHead};
use http::{HeaderName, HeaderValue};
use std::net::IpAddr;

/// Header edits of a route rule (or none).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Edits<'a> {
    pub(crate) set: &'a [(HeaderName, HeaderValue)],
    pub(crate) remove: &'a [HeaderName],
}

impl Edits<'_> {
    fn drops(&self, name: &str) -> bool {
        (!self.remove.is_empty()
            && self
                .remove
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n.as_str())))
            || (!self.set.is_empty()
                && self
                    .set
                    .iter()
                    .any(|(n, _)| name.eq_ignore_ascii_case(n.as_str())))
    }

    fn write_set(&self, out: &mut Vec<u8>) {
        for (name, value) in self.set {
            field(out, name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

#[inline]
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What to write for the upstream request.
#[derive(Debug)]
pub(crate) struct RequestRewrite<'a> {
    /// The (normalized, possibly rewritten) path.
    pub(crate) path: &'a str,
    pub(crate) edits: Edits<'a>,
    /// The `traceparent` value to send.
    pub(crate) traceparent: &'a [u8],
    /// On the inbound listener: the `x-forwarded-*` facts to add.
    pub(crate) forwarded: Option<Forwarded<'a>>,
    /// The `Host` to send when the request has none (an HTTP/1.0 client):
    /// the upstream is spoken to in HTTP/1.1, where `Host` is required.
    pub(crate) default_host: &'a str,
}

/// What the inbound listener tells the application about the hop it accepted
/// (docs/security.md): the peer address is appended to `x-forwarded-for`
/// and `x-forwarded-proto` is replaced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Forwarded<'a> {
    /// The address of the connection's peer.
    pub(crate) peer: IpAddr,
    /// The scheme of the connection the proxy accepted.
    pub(crate) proto: &'static str,
    /// The peer's SPIFFE ID (mTLS), sent as `x-sinew-client-id`; any
    /// received value is dropped either way, so it cannot be forged.
    pub(crate) client_id: Option<&'a str>,
}

const XFF: &str = "x-forwarded-for";
const XFP: &str = "x-forwarded-proto";
use crate::listen::CLIENT_ID_HEADER;

/// Writes the upstream request head for `head` into `out`.
pub(crate) fn request(out: &mut Vec<u8>, head: &RequestHead<'_>, rw: &RequestRewrite<'_>) {
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    if head.target == "*" {
        out.push(b'*');
    } else {
        out.extend_from_slice(rw.path.as_bytes());
        if let Some(q) = head.query {
            out.push(b'?');
            out.extend_from_slice(q.as_bytes());
        }
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if head.absolute_form {
        if let Some(authority) = head.authority {
            field(out, b"host", authority.as_bytes());
        }
    } else if head.authority.is_none() && !rw.default_host.is_empty() {
        field(out, b"host", rw.default_host.as_bytes());
    }
    let hop = |name: &str| head.conn.extra_tokens && named_by_connection(head.headers, name);
    let mut length_written = false;
    let mut te_trailers = false;
    for h in head.headers {
        let name = h.name;
        if name.eq_ignore_ascii_case("te") {
            te_trailers |= h.value.split(|b| *b == b',').any(|t| {
                let t = t.split(|b| *b == b';').next().unwrap_or(t);
                t.trim_ascii().eq_ignore_ascii_case(b"trailers")
            });
        }
        let is_length = name.eq_ignore_ascii_case("content-length");
        if is_hop_by_hop(name)
            || (head.absolute_form && name.eq_ignore_ascii_case("host"))
            || name.eq_ignore_ascii_case("traceparent")
            || (is_length && length_written)
            || (rw.forwarded.is_some()
                && (name.eq_ignore_ascii_case(XFF)
                    || name.eq_ignore_ascii_case(XFP)
                    || name.eq_ignore_ascii_case(CLIENT_ID_HEADER)))
            || rw.edits.drops(name)
            || hop(name)
        {
            continue;
        }
        length_written |= is_length;
        field(out, name.as_bytes(), h.value);
    }
    rw.edits.write_set(out);
    field(out, b"traceparent", rw.traceparent);
    if te_trailers && !rw.edits.drops("te") {
        // The one `TE` value that crosses a hop: the client takes trailers.
        out.extend_from_slice(b"te: trailers\r\n");
    }
    if let Some(fwd) = rw.forwarded {
        if !rw.edits.drops(XFF) {
            out.extend_from_slice(b"x-forwarded-for: ");
            let received = head
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(XFF) && !hop(h.name));
            for h in received {
                if !h.value.trim_ascii().is_empty() {
                    out.extend_from_slice(h.value.trim_ascii());
                    out.extend_from_slice(b", ");
                }
            }
            out.extend_from_slice(fwd.peer.to_canonical().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !rw.edits.drops(XFP) {
            field(out, XFP.as_bytes(), fwd.proto.as_bytes());
        }
        if let Some(id) = fwd.client_id {
            field(out, CLIENT_ID_HEADER.as_bytes(), id.as_bytes());
        }
    }
    if head.framing == Framing::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(upgrade) = head.upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        field(out, b"upgrade", upgrade);
    }
    out.extend_from_slice(b"\r\n");
}

/// How the downstream side of a response is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Downstream {
    /// Pass the upstream framing through.
    PassThrough,
    /// The client speaks HTTP/1.0: chunked bodies are decoded and the
    /// connection closes after the body.
    Http10,
}

/// Writes the downstream response head for `head` into `out`. `close` asks
/// the client to close the connection after this response.
pub(crate) fn response(
    out: &mut Vec<u8>,
    head: &ResponseHead<'_>,
    edits: Edits<'_>,
    mode: Downstream,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let mut code = itoa::Buffer::new();
    out.extend_from_slice(code.format(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    let decode_chunked = mode == Downstream::Http10 && head.framing == Framing::Chunked;
    // A body framed by `Transfer-Encoding` (chunked or until close) loses
    // any `Content-Length` (RFC 9112 §6.3); a repeated one is sent once.
    let mut length_dropped = matches!(head.framing, Framing::Chunked | Framing::UntilClose);
    let mut upgrade = None;
    let mut codings_sent = false;
    for h in head.headers {
        let name = h.name;
        if head.status == 101 && name.eq_ignore_ascii_case("upgrade") {
            upgrade = Some(h.value);
            continue;
        }
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // A body framed by its codings leaves as it came, so they go
            // with it (`gzip, chunked` is not just `chunked`); decoded for
            // an HTTP/1.0 client, or absent (HEAD, 204, 304), it has none.
            if !decode_chunked && matches!(head.framing, Framing::Chunked | Framing::UntilClose) {
                field(out, name.as_bytes(), h.value);
                codings_sent = true;
            }
            continue;
        }
        if name.eq_ignore_ascii_case("content-length") {
            if length_dropped {
                continue;
            }
            length_dropped = true;
        }
        if is_hop_by_hop(name)
            || edits.drops(name)
            || (decode_chunked && name.eq_ignore_ascii_case("trailer"))
            || (head.conn.extra_tokens && named_by_connection(head.headers, name))
        {
            continue;
        }
        field(out, name.as_bytes(), h.value);
    }
    edits.write_set(out);
    if head.framing == Framing::Chunked && !decode_chunked && !codings_sent {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if let Some(upgrade) = upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
        field(out, b"upgrade", upgrade);
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if mode == Downstream::Http10 {
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes a complete proxy-generated response (errors, direct responses).
/// The answer to a `HEAD` request (`head_request`) carries the body's
/// `content-length` but not the body.
pub(crate) fn local_response(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    error: Option<&str>,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
    close: bool,
    head_request: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(reason) = error {
        field(out, b"x-sinew-error", reason.as_bytes());
    }
    let mut has_type = false;
    for (name, value) in headers {
        has_type |= name == http::header::CONTENT_TYPE;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !has_type && !body.is_empty() {
        out.extend_from_slice(b"content-type: text/plain\r\n");
    }
    let mut len = itoa::Buffer::new();
    field(out, b"content-length", len.format(body.len()).as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_request {
        out.extend_from_slice(body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::head::{self, parse_request, parse_response};

    #[test]
    fn request_drops_hop_by_hop_and_applies_edits() {
        let raw = b"GET http://be/a%61 HTTP/1.1\r\nHost: ignored\r\nConnection: keep-alive, x-secret\r\nKeep-Alive: 5\r\nX-Secret: s\r\nX-Drop: 1\r\nX-Keep: 2\r\ntraceparent: old\r\n\r\n";
        let mut headers = head::header_buf();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        let set = [(
            HeaderName::from_static("x-set"),
            HeaderValue::from_static("v"),
        )];
        let remove = [HeaderName::from_static("x-drop")];
        let mut out = Vec::new();
        let rw = RequestRewrite {
            path: "/aa",
            edits: Edits {
                set: &set,
                remove: &remove,
            },
            traceparent: b"00-tid-sid-01",
            forwarded: None,
            default_host: "svc",
        };
        request(&mut out, &head, &rw);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /aa HTTP/1.1\r\nhost: be\r\nX-Keep: 2\r\nx-set: v\r\ntraceparent: 00-tid-sid-01\r\n\r\n"
        );
    }

    fn rewrite(raw: &[u8], forwarded: Option<Forwarded<'_>>) -> String {
        let mut headers = head::header_buf();
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        let mut out = Vec::new();
        let rw = RequestRewrite {
            path: head.path,
            edits: Edits::default(),
            traceparent: b"tp",
            forwarded,
            default_host: "svc",
        };
        request(&mut out, &head, &rw);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn request_framing_fields_survive_connection_and_repeat_once() {
        let raw = b"POST /a HTTP/1.1\r\nHost: be\r\nConnection: content-length, host, te\r\nContent-Length: 2\r\nContent-Length: 2\r\nTE: trailers\r\n\r\n";
        assert_eq!(
            rewrite(raw, None),
            "POST /a HTTP/1.1\r\nHost: be\r\nContent-Length: 2\r\ntraceparent: tp\r\nte: trailers\r\n\r\n"
        );
        let raw = b"GET /a HTTP/1.1\r\nHost: be\r\nTE: gzip\r\n\r\n";
        assert!(!rewrite(raw, None).contains("te:"));
    }

    #[test]
    fn inbound_requests_get_x_forwarded_fields() {
        let fwd = Some(Forwarded {
            peer: "::ffff:10.0.0.7".parse().unwrap(),
            proto: "http",
            client_id: None,
        });
        let raw = b"GET /a HTTP/1.1\r\nHost: be\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nForwarded: for=3.3.3.3\r\n\r\n";
        assert_eq!(
            rewrite(raw, fwd),
            "GET /a HTTP/1.1\r\nHost: be\r\nForwarded: for=3.3.3.3\r\ntraceparent: tp\r\nx-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.7\r\nx-forwarded-proto: http\r\n\r\n"
        );
        // With mTLS the client's SPIFFE ID is sent, and a forged one dropped.
        let mtls = Some(Forwarded {
            peer: "10.0.0.7".parse().unwrap(),
            proto: "https",
            client_id: Some("spiffe://sinew.local/ns/shop/svc/web"),
        });
        let forged = b"GET /a HTTP/1.1\r\nHost: be\r\nX-Sinew-Client-Id: spiffe://sinew.local/ns/x/svc/admin\r\n\r\n";
        assert_eq!(
            rewrite(forged, mtls),
            "GET /a HTTP/1.1\r\nHost: be\r\ntraceparent: tp\r\nx-forwarded-for: 10.0.0.7\r\nx-forwarded-proto: https\r\nx-sinew-client-id: spiffe://sinew.local/ns/shop/svc/web\r\n\r\n"
        );
        assert!(
            !rewrite(forged, fwd).contains("admin"),
            "dropped without mTLS too"
        );
        // Outbound: the application's fields pass through untouched.
        assert!(rewrite(raw, None).contains("X-Forwarded-Proto: https\r\n"));
        // A caller cannot hide its hop by naming the field in `Connection`.
        let raw = b"GET /a HTTP/1.1\r\nHost: be\r\nConnection: x-forwarded-for\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        assert!(rewrite(raw, fwd).contains("x-forwarded-for: 10.0.0.7\r\n"));
    }

    #[test]
    fn response_drops_content_length_beside_transfer_encoding() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut headers = head::header_buf();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut out = Vec::new();
        response(
            &mut out,
            &head,
            Edits::default(),
            Downstream::PassThrough,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\nConnection: content-length, x-a\r\nX-A: 1\r\n\r\n";
        let mut headers = head::header_buf();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut out = Vec::new();
        response(
            &mut out,
            &head,
            Edits::default(),
            Downstream::PassThrough,
            false,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
        );
    }

    #[test]
    fn response_keeps_its_transfer_codings() {
        for (raw, codings) in [
            (
                &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"[..],
                "Transfer-Encoding: gzip, chunked\r\n",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n",
                "Transfer-Encoding: gzip\r\n",
            ),
        ] {
            let mut headers = head::header_buf();
            let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
            let mut out = Vec::new();
            response(
                &mut out,
                &head,
                Edits::default(),
                Downstream::PassThrough,
                true,
            );
            let out = String::from_utf8(out).unwrap();
            assert!(out.contains(codings), "{out}");
            let lower = out.to_ascii_lowercase();
            assert_eq!(lower.matches("transfer-encoding").count(), 1, "{out}");
        }
    }

    #[test]
    fn a_local_answer_to_head_has_its_length_but_no_body() {
        let mut out = Vec::new();
        local_response(
            &mut out,
            http::StatusCode::NOT_FOUND,
            Some("no-route"),
            &[],
            b"no-route",
            false,
            true,
        );
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("content-length: 8\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }

    #[test]
    fn response_for_http10_client_decodes_chunked() {
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x\r\nServer: s\r\n\r\n";
        let mut headers = head::header_buf();
        let head = parse_response(raw, &mut headers, false).unwrap().unwrap();
        let mut out = Vec::new();
        response(&mut out, &head, Edits::default(), Downstream::Http10, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: s\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn an_http10_request_without_host_gets_one_upstream() {
        let out = rewrite(b"GET /a HTTP/1.0\r\n\r\n", None);
        assert_eq!(
            out,
            "GET /a HTTP/1.1\r\nhost: svc\r\ntraceparent: tp\r\n\r\n"
        );
        // A request with a Host keeps its own.
        let out = rewrite(b"GET /a HTTP/1.0\r\nHost: mine\r\n\r\n", None);
        assert!(
            out.contains("Host: mine\r\n") && !out.contains("svc"),
            "{out}"
        );
    }
}
