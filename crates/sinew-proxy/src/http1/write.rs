//! Writes the rewritten head the proxy sends on: one pass over the received
//! fields, dropping hop-by-hop ones, applying the route's header edits and
//! adding the trace context and framing headers. One buffer, no allocation
//! beyond its growth.

use super::head::{is_hop_by_hop, named_by_connection, Framing, RequestHead, ResponseHead};
use http::{HeaderName, HeaderValue};

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
}

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
    }
    for h in head.headers {
        let name = h.name;
        if is_hop_by_hop(name)
            || (head.absolute_form && name.eq_ignore_ascii_case("host"))
            || name.eq_ignore_ascii_case("traceparent")
            || rw.edits.drops(name)
            || (head.conn.extra_tokens && named_by_connection(head.headers, name))
        {
            continue;
        }
        field(out, name.as_bytes(), h.value);
    }
    rw.edits.write_set(out);
    field(out, b"traceparent", rw.traceparent);
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
    let mut upgrade = None;
    for h in head.headers {
        let name = h.name;
        if head.status == 101 && name.eq_ignore_ascii_case("upgrade") {
            upgrade = Some(h.value);
            continue;
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
    if head.framing == Framing::Chunked && !decode_chunked {
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
pub(crate) fn local_response(
    out: &mut Vec<u8>,
    status: http::StatusCode,
    error: Option<&str>,
    headers: &[(HeaderName, HeaderValue)],
    body: &[u8],
    close: bool,
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
    out.extend_from_slice(body);
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
        };
        request(&mut out, &head, &rw);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /aa HTTP/1.1\r\nhost: be\r\nX-Keep: 2\r\nx-set: v\r\ntraceparent: 00-tid-sid-01\r\n\r\n"
        );
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
}
