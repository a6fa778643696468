//! Fuzz targets `http1_head` and `http1_response` (see `crate::fuzzing`): the HTTP/1 codec's crate-private parts.
//!
//! Each function drives the crate-private head parser, writer and chunked
//! scanner the way the connection code does and panics when a property
//! fails. The code under test refusing its input is never a failure.

use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderName, HeaderValue};

use super::chunked::{ChunkError, Chunked};
use super::head::{self, Framing, RequestHead, MAX_HEADERS, MAX_HEAD_BYTES};
use super::write::{self, Downstream, Edits, Forwarded, RequestRewrite};
use crate::error::ErrorKind;
use crate::route::normalize_path;

/// A request as the downstream side receives it: `data[0]` holds option
/// bits and a split point, the rest is the bytes read.
///
/// Checks that resumed head-end scans agree with fresh ones; that an accepted
/// head's framing follows from its fields (one `Transfer-Encoding: chunked`
/// and no `Content-Length`, or equal lengths); that the head the proxy writes
/// upstream parses back with the same method, normalized path, query,
/// authority, framing and upgrade; and that a chunked body scans the same in
/// one read as in two.
pub fn request_head(data: &[u8]) {
    let Some((&options, buf)) = data.split_first() else {
        return;
    };
    let cut = split_point(options, buf.len());

    let whole = head::find_head_end(buf, 0).map_err(|e| e.kind());
    if let Ok(None) = head::find_head_end(&buf[..cut], 0) {
        let resumed = head::find_head_end(buf, cut).map_err(|e| e.kind());
        assert_eq!(resumed, whole, "a scan resumed at {cut} disagrees");
    }
    let end = match whole {
        Ok(Some(end)) => end,
        Ok(None) => {
            let _ = head::check_incomplete(buf);
            return;
        }
        Err(_) => return,
    };

    let mut headers = head::header_buf();
    let Ok(Some(head)) = head::parse_request(buf, &mut headers) else {
        return;
    };
    assert!(head.len >= end && head.len <= buf.len());
    assert!(buf[..head.len].ends_with(b"\r\n\r\n"));
    check_request_framing(&head);
    if !head.absolute_form {
        let mut target = head.path.to_owned();
        if let Some(query) = head.query {
            target.push('?');
            target.push_str(query);
        }
        assert_eq!(target, head.target);
        assert_eq!(head.authority.map(str::as_bytes), head.header_value("host"));
    }

    if head.framing == Framing::Chunked {
        check_chunked(&buf[head.len..], options);
    }

    // Forward it as the proxy does: normalized path, the route's edits,
    // trace context, x-forwarded-* on inbound.
    let path = if head.target == "*" {
        "*".into()
    } else {
        match normalize_path(head.path) {
            Ok(path) => path,
            Err(_) => return,
        }
    };
    let set = [(
        HeaderName::from_static("x-sinew-fuzz"),
        HeaderValue::from_static("1"),
    )];
    let remove = [HeaderName::from_static("x-remove")];
    let edits = if options & 1 == 1 {
        Edits {
            set: &set,
            remove: &remove,
        }
    } else {
        Edits::default()
    };
    let forwarded = (options & 2 == 2).then_some(Forwarded {
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proto: "http",
        client_id: (options & 4 == 4).then_some("spiffe://sinew.local/ns/default/svc/a"),
    });
    let rewrite = RequestRewrite {
        path: &path,
        edits,
        traceparent: b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        forwarded,
        default_host: "svc",
    };
    let mut out = Vec::new();
    write::request(&mut out, &head, &rewrite);
    check_request_round_trip(&head, &path, &out);
}

/// A response as the upstream side receives it: `data[0]` holds option bits
/// (a HEAD request, an HTTP/1.0 client, closing), the rest is the bytes read.
///
/// Checks that the head the proxy writes downstream parses back with the
/// same status, reason and framing (chunked decoded for HTTP/1.0 clients).
pub fn response_head(data: &[u8]) {
    let Some((&options, buf)) = data.split_first() else {
        return;
    };
    let is_head = options & 1 == 1;
    let mode = if options & 2 == 2 {
        Downstream::Http10
    } else {
        Downstream::PassThrough
    };
    let close = options & 4 == 4;
    let mut headers = head::header_buf();
    let Ok(Some(resp)) = head::parse_response(buf, &mut headers, is_head) else {
        return;
    };
    assert!(resp.len <= buf.len());
    if resp.framing == Framing::Chunked {
        check_chunked(&buf[resp.len..], options);
    }

    let mut out = Vec::new();
    write::response(&mut out, &resp, Edits::default(), mode, close);
    let mut headers2 = head::header_buf();
    let back = match head::parse_response(&out, &mut headers2, is_head) {
        Ok(Some(back)) => back,
        // The proxy's own fields can push a head past the limits.
        Err(_) if over_limits(&out) => return,
        other => panic!(
            "the written response does not parse back ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(back.len, out.len());
    assert_eq!((back.status, back.reason), (resp.status, resp.reason));
    let decoded = mode == Downstream::Http10 && resp.framing == Framing::Chunked;
    let framing = if decoded {
        Framing::UntilClose
    } else {
        resp.framing
    };
    assert_eq!(back.framing, framing, "{:?}", String::from_utf8_lossy(&out));
    if back.status != 101 {
        assert_eq!(back.conn.close, close);
    }
}

/// A point in `0..=len` chosen by the fuzzer's option byte.
fn split_point(options: u8, len: usize) -> usize {
    len * usize::from(options >> 2) / 63
}

/// Whether a written head exceeds what the parser accepts (the proxy adds
/// fields, so a head near the limits can grow past them).
fn over_limits(out: &[u8]) -> bool {
    let lines = memchr::memchr_iter(b'\n', out).count();
    out.len() > MAX_HEAD_BYTES || lines > MAX_HEADERS
}

/// The framing a request head decided, re-derived from its fields.
fn check_request_framing(head: &RequestHead<'_>) {
    let fields = |name: &'static str| {
        head.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    let codings: Vec<&[u8]> = fields("transfer-encoding").collect();
    let lengths: Vec<u64> = fields("content-length")
        .map(|v| {
            assert!(!v.is_empty() && v.iter().all(u8::is_ascii_digit), "{v:?}");
            std::str::from_utf8(v).unwrap().parse().unwrap()
        })
        .collect();
    assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lengths:?}");
    match head.framing {
        Framing::Chunked => {
            assert_eq!(head.minor, 1);
            assert!(lengths.is_empty());
            let mut listed = codings
                .iter()
                .flat_map(|v| v.split(|b| *b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|c| !c.is_empty());
            assert!(listed
                .next()
                .is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            assert!(codings.len() == 1 && listed.next().is_none());
        }
        Framing::Length(n) => {
            assert!(codings.is_empty());
            assert!(n > 0 && lengths.first() == Some(&n));
        }
        Framing::Empty => {
            assert!(codings.is_empty());
            assert!(lengths.iter().all(|&n| n == 0));
        }
        Framing::UntilClose => panic!("a request read until close"),
    }
}

/// The head written upstream parses back to the same request.
fn check_request_round_trip(head: &RequestHead<'_>, path: &str, out: &[u8]) {
    assert_eq!(head::find_head_end(out, 0).ok(), Some(Some(out.len())));
    let mut headers = head::header_buf();
    let back = match head::parse_request(out, &mut headers) {
        Ok(Some(back)) => back,
        // HTTP/1.0 without Host: forwarded as HTTP/1.1 still without one
        // (fuzz/README.md, "Known gaps").
        Err(e) if e.kind() == ErrorKind::BadRequest && head.authority.is_none() => return,
        Err(_) if over_limits(out) => return,
        other => panic!(
            "the written request does not parse back ({other:?}): {:?}",
            String::from_utf8_lossy(out)
        ),
    };
    let shown = || String::from_utf8_lossy(out).into_owned();
    assert_eq!(back.len, out.len(), "{}", shown());
    assert_eq!(back.method, head.method, "{}", shown());
    assert_eq!(back.minor, 1, "{}", shown());
    assert_eq!(back.query, head.query, "{}", shown());
    if head.target == "*" {
        assert_eq!(back.target, "*", "{}", shown());
    } else {
        assert_eq!(back.path, path, "{}", shown());
        assert_eq!(normalize_path(back.path).as_deref(), Ok(path));
    }
    // A request without Host gets the default one (HTTP/1.1 requires it).
    let want = head.authority.or(Some("svc"));
    assert_eq!(back.authority, want, "{}", shown());
    assert_eq!(back.framing, head.framing, "{}", shown());
    assert_eq!(back.upgrade, head.upgrade, "{}", shown());
    assert!(!back.absolute_form);
    assert!(back.header_value("traceparent").is_some());
}

/// A chunked body scans the same in one piece as in two, with and without
/// decoding, and its decoded data re-encodes to a body that decodes alike.
fn check_chunked(body: &[u8], options: u8) {
    let whole = scan(body, body.len(), true);
    let cut = split_point(options, body.len());
    assert_eq!(scan(body, cut, true), whole, "split at {cut}");
    let undecoded = scan(body, body.len(), false).map(|(n, done, _)| (n, done));
    let counted = whole
        .as_ref()
        .map(|(n, done, _)| (*n, *done))
        .map_err(|e| *e);
    assert_eq!(undecoded, counted);
    if let Ok((n, done, data)) = whole {
        assert!(data.len() <= n);
        if done {
            assert!(body[..n].ends_with(b"\r\n"));
            let mut again = Vec::new();
            if !data.is_empty() {
                again.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                again.extend_from_slice(&data);
                again.extend_from_slice(b"\r\n");
            }
            again.extend_from_slice(b"0\r\n\r\n");
            assert_eq!(
                scan(&again, again.len(), true),
                Ok((again.len(), true, data))
            );
        } else {
            assert_eq!(n, body.len());
        }
    }
}

/// Scans `body` in two reads split at `cut`: (bytes of the body, done, decoded data).
fn scan(body: &[u8], cut: usize, decode: bool) -> Result<(usize, bool, Vec<u8>), ChunkError> {
    let mut chunked = Chunked::default();
    let mut data = Vec::new();
    let mut n = 0;
    for part in [&body[..cut], &body[cut..]] {
        if chunked.is_done() {
            break;
        }
        let taken = chunked.scan(part, decode.then_some(&mut data))?;
        assert!(chunked.is_done() || taken == part.len());
        n += taken;
    }
    Ok((n, chunked.is_done(), data))
}
