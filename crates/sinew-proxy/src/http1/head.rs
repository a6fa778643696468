//! HTTP/1.1 message heads: parsing with RFC 9112 framing checks, and the
//! single-pass rewrite the proxy writes to the other side.
//!
//! Heads are parsed in place with `httparse` (no allocation); the parsed view
//! borrows the connection's read buffer. Framing is decided here, once:
//! `Content-Length` with `Transfer-Encoding`, differing duplicate lengths, a
//! `Transfer-Encoding` other than `chunked`, bare LF line ends, or obs-fold
//! are refused as request-smuggling shapes (docs/security.md lists them all).

use crate::error::{ErrorKind, ProxyError};

/// Most header fields accepted in one head.
pub(crate) const MAX_HEADERS: usize = 100;

/// Room for a head's fields. Left uninitialized: `httparse` writes only the
/// fields it finds, so a head costs no 3 KiB memset.
pub(crate) type HeaderBuf<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// A fresh [`HeaderBuf`].
pub(crate) const fn header_buf<'b>() -> HeaderBuf<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}
/// Largest head accepted, in bytes.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest request-target accepted, in bytes (longer: 414).
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;

/// Where the head at the start of `buf` ends (just past its blank line), or
/// `None` while it is incomplete. `from` is how much of `buf` an earlier call
/// already scanned. A bare LF (one not preceded by CR) is refused: parsers
/// disagree on it, which is what request smuggling feeds on.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Result<Option<usize>, ProxyError> {
    let from = from.saturating_sub(3);
    for lf in memchr::memchr_iter(b'\n', &buf[from..]).map(|i| from + i) {
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Err(bad(ErrorKind::BadRequest));
        }
        if lf >= 3 && &buf[lf - 3..=lf] == b"\r\n\r\n" {
            return Ok(Some(lf + 1));
        }
    }
    Ok(None)
}

/// Where the blank line ending a head starts in `buf`, if it is there.
/// The searcher is built once: `memmem::find` would build one per call,
/// and this runs for every response head read.
pub(crate) fn blank_line(buf: &[u8]) -> Option<usize> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\r\n\r\n"));
    FINDER.find(buf)
}

/// Refuses an incomplete head that can no longer become acceptable: a
/// request line past the target limit (414) or a head past the size limit (431).
pub(crate) fn check_incomplete(buf: &[u8]) -> Result<(), ProxyError> {
    // Room for the method, two spaces and the version around the target.
    const MAX_REQUEST_LINE: usize = MAX_TARGET_BYTES + 64;
    if buf.len() > MAX_REQUEST_LINE && memchr::memchr(b'\n', &buf[..MAX_REQUEST_LINE]).is_none() {
        return Err(bad(ErrorKind::UriTooLong));
    }
    if buf.len() >= MAX_HEAD_BYTES {
        return Err(bad(ErrorKind::HeadTooLarge));
    }
    Ok(())
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    UntilClose,
}

/// Connection-level facts read from `Connection` and friends.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ConnectionInfo {
    /// `Connection: close` (or HTTP/1.0 without keep-alive).
    pub(crate) close: bool,
    /// A `close` token was sent: it wins over any `keep-alive`.
    pub(crate) close_asked: bool,
    /// `Connection: upgrade` was present.
    pub(crate) upgrade: bool,
    /// `Connection` names headers other than the well-known tokens; those
    /// headers are hop-by-hop and must be dropped.
    pub(crate) extra_tokens: bool,
}

/// A parsed request head, borrowing the read buffer.
#[derive(Debug)]
pub(crate) struct RequestHead<'b> {
    pub(crate) method: &'b str,
    /// The request-target as received.
    pub(crate) target: &'b str,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub(crate) minor: u8,
    pub(crate) headers: &'b [httparse::Header<'b>],
    /// Length of the head in the buffer, including the final CRLF.
    pub(crate) len: usize,
    /// The authority: from an absolute-form target, else the `Host` header.
    pub(crate) authority: Option<&'b str>,
    /// The target's path (origin-form), before normalization.
    pub(crate) path: &'b str,
    pub(crate) query: Option<&'b str>,
    pub(crate) absolute_form: bool,
    pub(crate) framing: Framing,
    pub(crate) conn: ConnectionInfo,
    /// The `Upgrade` header's value when `Connection: upgrade` asked for one.
    pub(crate) upgrade: Option<&'b [u8]>,
    pub(crate) expect_continue: bool,
}

impl<'b> RequestHead<'b> {
    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header_value(&self, name: &str) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }
}

/// A parsed response head, borrowing the upstream read buffer.
#[derive(Debug)]
pub(crate) struct ResponseHead<'b> {
    pub(crate) status: u16,
    pub(crate) reason: &'b str,
    pub(crate) headers: &'b [httparse::Header<'b>],
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    pub(crate) conn: ConnectionInfo,
}

fn bad(kind: ErrorKind) -> ProxyError {
    ProxyError::new(kind)
}

/// Parses a request head. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_request<'b>(
    buf: &'b [u8],
    headers: &'b mut HeaderBuf<'b>,
) -> Result<Option<RequestHead<'b>>, ProxyError> {
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(bad(ErrorKind::HeadTooLarge))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(bad(ErrorKind::HeadTooLarge)),
        Err(_) => return Err(bad(ErrorKind::BadRequest)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(bad(ErrorKind::HeadTooLarge));
    }
    // httparse skips empty lines before the request line (RFC 9112 §2.2),
    // where `find_head_end` saw the blank line ending the head: the lines
    // after them were never checked for bare LFs.
    if matches!(buf.first(), Some(b'\r' | b'\n')) {
        let skip = leading_empty_lines(buf);
        if find_head_end(&buf[skip..len], 0)? != Some(len - skip) {
            return Err(bad(ErrorKind::BadRequest));
        }
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(bad(ErrorKind::BadRequest));
    };
    let headers: &'b [httparse::Header<'b>] = req.headers;

    let mut host: Option<&'b str> = None;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut conn = ConnectionInfo {
        close: minor == 0,
        ..ConnectionInfo::default()
    };
    let mut upgrade_value = None;
    let mut expect_continue = false;
    for h in headers {
        match h.name.len() {
            4 if h.name.eq_ignore_ascii_case("host") => {
                if host.is_some() {
                    return Err(bad(ErrorKind::BadRequest));
                }
                host = Some(std::str::from_utf8(h.value).map_err(|_| bad(ErrorKind::BadRequest))?);
            }
            14 if h.name.eq_ignore_ascii_case("content-length") => {
                let n = parse_length(h.value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad(ErrorKind::BadRequest));
                }
                length = Some(n);
            }
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                if te_seen || minor == 0 {
                    return Err(bad(ErrorKind::BadRequest));
                }
                te_seen = true;
                chunked = request_coding(h.value)?;
            }
            10 if h.name.eq_ignore_ascii_case("connection") => read_connection(h.value, &mut conn),
            7 if h.name.eq_ignore_ascii_case("upgrade") => upgrade_value = Some(h.value),
            6 if h.name.eq_ignore_ascii_case("expect") => {
                expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
            }
            _ => {}
        }
    }
    if te_seen && length.is_some() {
        return Err(bad(ErrorKind::BadRequest));
    }
    let framing = if chunked {
        Framing::Chunked
    } else {
        match length {
            Some(0) | None => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };

    if target.len() > MAX_TARGET_BYTES {
        return Err(bad(ErrorKind::UriTooLong));
    }
    // A fragment never belongs in a request-target, and `*` only with OPTIONS:
    // an upstream that cuts `/admin#x` to `/admin` would see another path
    // than the one routed and authorized.
    if target.contains('#') || (target == "*" && method != "OPTIONS") {
        return Err(bad(ErrorKind::BadRequest));
    }
    let (absolute_form, authority, path_and_query) = split_request_target(target)?;
    let authority = match authority {
        Some(a) => Some(a),
        None if minor == 1 && host.is_none() => return Err(bad(ErrorKind::BadRequest)),
        None => host,
    };
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    // An h2c upgrade would hand the connection to the upstream's HTTP/2,
    // past the proxy's per-request routing and authorization: never forwarded.
    let upgrade = upgrade_value.filter(|v| conn.upgrade && !is_h2c(v));
    Ok(Some(RequestHead {
        method,
        target,
        minor,
        headers,
        len,
        authority,
        path,
        query,
        absolute_form,
        framing,
        conn,
        upgrade,
        expect_continue,
    }))
}

/// Length of the CRLF-terminated empty lines at the start of `buf`.
fn leading_empty_lines(buf: &[u8]) -> usize {
    let mut at = 0;
    while buf[at..].starts_with(b"\r\n") {
        at += 2;
    }
    at
}

/// Splits a request-target into (absolute-form?, authority, path-and-query).
fn split_request_target(target: &str) -> Result<(bool, Option<&str>, &str), ProxyError> {
    if target.starts_with('/') || target == "*" {
        return Ok((false, None, target));
    }
    // By bytes: the target may hold UTF-8, and byte 7 need not be a char boundary.
    let rest = if target.len() > 7 && target.as_bytes()[..7].eq_ignore_ascii_case(b"http://") {
        &target[7..]
    } else {
        // authority-form (CONNECT) and other schemes: the proxy is not a forward proxy.
        return Err(bad(ErrorKind::NotSupported));
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, pq) = rest.split_at(end);
    if authority.is_empty() || authority.contains('@') {
        return Err(bad(ErrorKind::BadRequest));
    }
    let pq = if pq.is_empty() { "/" } else { pq };
    if pq.starts_with('?') {
        // "http://host?q": an empty path with a query; rare enough to refuse.
        return Err(bad(ErrorKind::BadRequest));
    }
    Ok((true, Some(authority), pq))
}

/// Parses a response head. `Ok(None)` means more bytes are needed.
pub(crate) fn parse_response<'b>(
    buf: &'b [u8],
    headers: &'b mut HeaderBuf<'b>,
    request_method_is_head: bool,
) -> Result<Option<ResponseHead<'b>>, ProxyError> {
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, headers)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => {
            return Err(bad(ErrorKind::UpstreamProtocol))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(bad(ErrorKind::UpstreamProtocol)),
    };
    // Codes below 100 (`020`) are invalid (RFC 9110 §15) and would be
    // written on as fewer than three digits.
    let (Some(status @ 100..), Some(minor)) = (resp.code, resp.version) else {
        return Err(bad(ErrorKind::UpstreamProtocol));
    };
    let reason = resp.reason.unwrap_or("");
    let headers: &'b [httparse::Header<'b>] = resp.headers;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te_seen = false;
    let mut conn = ConnectionInfo {
        close: minor == 0,
        ..ConnectionInfo::default()
    };
    for h in headers {
        match h.name.len() {
            14 if h.name.eq_ignore_ascii_case("content-length") => {
                let n = parse_length(h.value).map_err(|_| bad(ErrorKind::UpstreamProtocol))?;
                if length.is_some_and(|l| l != n) {
                    return Err(bad(ErrorKind::UpstreamProtocol));
                }
                length = Some(n);
            }
            17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                te_seen = true;
                chunked = last_coding_is_chunked(h.value);
            }
            10 if h.name.eq_ignore_ascii_case("connection") => read_connection(h.value, &mut conn),
            _ => {}
        }
    }
    let framing = if request_method_is_head || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if te_seen {
        // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a
        // non-chunked coding is read until close.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    if te_seen && length.is_some() {
        // Never reuse a connection whose framing was ambiguous.
        conn.close = true;
    }
    Ok(Some(ResponseHead {
        status,
        reason,
        headers,
        len,
        framing,
        conn,
    }))
}

fn parse_length(value: &[u8]) -> Result<u64, ProxyError> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad(ErrorKind::BadRequest));
    }
    Ok(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// A request's `Transfer-Encoding`: only `chunked` alone is accepted. A
/// final coding other than `chunked`, or `chunked` twice, leaves the length
/// unknowable (400); other codings before `chunked` (`gzip, chunked`) are
/// not implemented (501).
fn request_coding(value: &[u8]) -> Result<bool, ProxyError> {
    let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    let mut codings = value
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match codings.next_back() {
        Some(last) if is_chunked(last) => {}
        _ => return Err(bad(ErrorKind::BadRequest)),
    }
    let mut earlier = codings.peekable();
    if earlier.peek().is_none() {
        Ok(true)
    } else if earlier.any(is_chunked) {
        Err(bad(ErrorKind::BadRequest))
    } else {
        Err(bad(ErrorKind::NotImplemented))
    }
}

fn is_h2c(upgrade: &[u8]) -> bool {
    upgrade
        .split(|b| *b == b',')
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(b"h2c"))
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|b| *b == b',').next().unwrap_or(value);
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

fn read_connection(value: &[u8], conn: &mut ConnectionInfo) {
    for token in value.split(|b| *b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            conn.close = true;
            conn.close_asked = true;
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            conn.close = conn.close_asked;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            conn.upgrade = true;
        } else if !token.is_empty() {
            conn.extra_tokens = true;
        }
    }
}

/// Whether a header is hop-by-hop (RFC 9110 §7.6.1) and so never forwarded
/// as is. `Upgrade` and `Transfer-Encoding` are re-added by the writer when
/// they apply.
pub(crate) fn is_hop_by_hop(name: &str) -> bool {
    match name.len() {
        2 => name.eq_ignore_ascii_case("te"),
        7 => name.eq_ignore_ascii_case("upgrade"),
        10 => name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive"),
        16 => name.eq_ignore_ascii_case("proxy-connection"),
        17 => name.eq_ignore_ascii_case("transfer-encoding"),
        _ => false,
    }
}

/// Whether `name` is listed in any `Connection` header of `headers`, and so
/// dropped as hop-by-hop. `Content-Length` and `Host` never are: dropping
/// them while the body is framed by them would desynchronize the next hop.
pub(crate) fn named_by_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("host") {
        return false;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| h.value.split(|b| *b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &str) -> Result<Option<(Framing, Option<String>, String)>, ErrorKind> {
        let mut headers = header_buf();
        match parse_request(raw.as_bytes(), &mut headers) {
            Ok(Some(h)) => Ok(Some((
                h.framing,
                h.authority.map(str::to_owned),
                h.path.to_owned(),
            ))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.kind()),
        }
    }

    #[test]
    fn parses_origin_and_absolute_form() {
        let r = req("GET /a?b=1 HTTP/1.1\r\nHost: be\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r, (Framing::Empty, Some("be".into()), "/a".into()));
        let r = req("GET http://reviews:80/x HTTP/1.1\r\nHost: other\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.1.as_deref(), Some("reviews:80"));
        assert_eq!(r.2, "/x");
        let r = req("GET http://reviews HTTP/1.1\r\nHost: reviews\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(r.2, "/");
        assert_eq!(req("GET /a HTTP/1.1\r\nHost: be\r\n"), Ok(None));
    }

    #[test]
    fn rejects_smuggling_shapes() {
        let cases = [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "GET / HTTP/1.1\r\n\r\n",
            "GET /\r\nHost: a\r\n\r\n",
        ];
        for raw in cases {
            assert_eq!(req(raw), Err(ErrorKind::BadRequest), "{raw:?}");
        }
        assert_eq!(
            req("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"),
            Err(ErrorKind::NotSupported)
        );
    }

    #[test]
    fn framing() {
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(r.unwrap().unwrap().0, Framing::Length(3));
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t3 \r\n\r\n");
        assert_eq!(
            r.unwrap().unwrap().0,
            Framing::Length(3),
            "OWS around the value"
        );
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n");
        assert_eq!(r.unwrap().unwrap().0, Framing::Chunked);
        let r = req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r, Err(ErrorKind::NotImplemented));
    }

    #[test]
    fn request_targets() {
        let long = format!(
            "GET /{} HTTP/1.1\r\nHost: a\r\n\r\n",
            "a".repeat(MAX_TARGET_BYTES)
        );
        assert_eq!(req(&long), Err(ErrorKind::UriTooLong));
        for raw in [
            "GET /admin#x HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
        ] {
            assert_eq!(req(raw), Err(ErrorKind::BadRequest), "{raw:?}");
        }
        assert!(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .is_some());
    }

    #[test]
    fn empty_lines_before_the_request_line() {
        let r = req("\r\n\r\nGET /a HTTP/1.1\r\nHost: be\r\n\r\n");
        assert_eq!(r.unwrap().unwrap().2, "/a");
        // Found by fuzz/http1_head: `find_head_end` stops at the empty
        // lines, so the bare LFs after them must be caught here.
        for raw in [
            "\r\n\r\nGET /a HTTP/1.1\r\nHost: be\r\n\n",
            "\r\n\r\nGET /a HTTP/1.1\nHost: be\r\n\r\n",
            "\r\n\nGET /a HTTP/1.1\r\nHost: be\r\n\r\n",
            "\nGET /a HTTP/1.1\r\nHost: be\r\n\r\n",
        ] {
            assert_eq!(req(raw), Err(ErrorKind::BadRequest), "{raw:?}");
        }
    }

    #[test]
    fn non_ascii_targets_are_refused_not_a_panic() {
        // Found by fuzz/http1_head: byte 7 inside a two-byte character.
        assert_eq!(
            req("GET http:/\u{443}x/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            Err(ErrorKind::NotSupported)
        );
        assert_eq!(
            req("GET http://\u{443}x/a HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .1
                .as_deref(),
            Some("\u{443}x")
        );
    }

    #[test]
    fn head_end_and_incomplete_heads() {
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(find_head_end(raw, 0).unwrap(), Some(raw.len() - 4));
        // Resumed scans find an end split across reads.
        assert_eq!(find_head_end(raw, 26).unwrap(), Some(raw.len() - 4));
        assert_eq!(find_head_end(&raw[..20], 0).unwrap(), None);
        for bare in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\n",
        ] {
            assert_eq!(
                find_head_end(bare, 0).unwrap_err().kind(),
                ErrorKind::BadRequest
            );
        }
        let line = format!("GET /{}", "a".repeat(MAX_TARGET_BYTES + 64));
        assert_eq!(
            check_incomplete(line.as_bytes()).unwrap_err().kind(),
            ErrorKind::UriTooLong
        );
        let headers = format!("GET / HTTP/1.1\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(
            check_incomplete(headers.as_bytes()).unwrap_err().kind(),
            ErrorKind::HeadTooLarge
        );
        assert!(check_incomplete(b"GET / HTTP/1.1\r\nHost").is_ok());
    }

    #[test]
    fn h2c_upgrades_are_not_forwarded() {
        let mut headers = header_buf();
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
        assert!(parse_request(raw, &mut headers)
            .unwrap()
            .unwrap()
            .upgrade
            .is_none());
        let mut headers = header_buf();
        let raw = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        let head = parse_request(raw, &mut headers).unwrap().unwrap();
        assert_eq!(head.upgrade, Some(&b"websocket"[..]));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut raw = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
        for i in 0..MAX_HEADERS {
            raw.push_str(&format!("x-{i}: v\r\n"));
        }
        raw.push_str("\r\n");
        assert_eq!(req(&raw), Err(ErrorKind::HeadTooLarge));
    }

    #[test]
    fn response_framing() {
        let mut headers = header_buf();
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        let r = parse_response(raw, &mut headers, false).unwrap().unwrap();
        assert_eq!(
            (r.status, r.framing, r.conn.close),
            (200, Framing::Length(12), false)
        );
        let mut headers = header_buf();
        let r = parse_response(raw, &mut headers, true).unwrap().unwrap();
        assert_eq!(r.framing, Framing::Empty);
        let mut headers = header_buf();
        let raw = b"HTTP/1.0 200 OK\r\n\r\n";
        let r = parse_response(raw, &mut headers, false).unwrap().unwrap();
        assert_eq!((r.framing, r.conn.close), (Framing::UntilClose, true));
    }

    #[test]
    fn close_wins_over_keep_alive_in_any_order() {
        for raw in [
            &b"HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        ] {
            let mut headers = header_buf();
            let r = parse_response(raw, &mut headers, false).unwrap().unwrap();
            assert!(r.conn.close, "{}", String::from_utf8_lossy(raw));
        }
        let mut headers = header_buf();
        let raw = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n";
        let r = parse_response(raw, &mut headers, false).unwrap().unwrap();
        assert!(!r.conn.close, "HTTP/1.0 keep-alive persists");
    }

    #[test]
    fn status_codes_below_100_are_refused() {
        // Found by fuzz/http1_response: `020` was written on as `20`.
        for raw in [&b"HTTP/1.1 020 OK\r\n\r\n"[..], b"HTTP/1.1 000 X\r\n\r\n"] {
            let mut headers = header_buf();
            let err = parse_response(raw, &mut headers, false).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::UpstreamProtocol);
        }
        let mut headers = header_buf();
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert!(parse_response(raw, &mut headers, false).unwrap().is_some());
    }
}
