//! The read-only view of a request that route matchers see, and allocation-free accessors for it.

use std::borrow::Cow;
use std::fmt;

/// Looks request headers up by name.
///
/// Implemented for [`http::HeaderMap`]; the proxy's own codec may implement it
/// over its parsed header slots to avoid building a map. `Sync`, so that a
/// [`RequestView`] is `Send` and may be held across an `.await`.
pub trait HeaderSource: Sync {
    /// The first value of header `name` (given in lower case; the lookup is
    /// case-insensitive), or `None` when the header is absent.
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }
}

/// A slice of `(name, value)` pairs (handy in tests and benches); names are
/// compared ASCII-case-insensitively.
impl HeaderSource for &[(&str, &str)] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

/// What the route matchers read from a request. Borrowed; building one costs nothing.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    /// The request method as sent (`GET`, `POST`, …); compared case-sensitively.
    pub method: &'a str,
    /// The path after [`normalize_path`](super::normalize_path).
    pub path: &'a str,
    /// The raw query string (after `?`), if any.
    pub query: Option<&'a str>,
    /// The request headers.
    pub headers: &'a dyn HeaderSource,
}

impl fmt::Debug for RequestView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestView")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("query", &self.query)
            .finish_non_exhaustive()
    }
}

/// The raw (still percent-encoded) value of the first query parameter named
/// `name`; a parameter without `=` has the value `""`.
///
/// Names are compared as sent, without decoding. Matchers decode the value
/// with [`percent_decode`] before comparing it.
///
/// ```
/// use sinew_proxy::route::query_param;
/// assert_eq!(query_param("a=1&debug&b=x%20y", "b"), Some("x%20y"));
/// assert_eq!(query_param("a=1&debug", "debug"), Some(""));
/// assert_eq!(query_param("a=1", "c"), None);
/// ```
pub fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Decodes `%XX` escapes; borrows when there are none. Invalid escapes are kept
/// as they are and `+` is not treated as a space (this is not form decoding).
///
/// ```
/// use sinew_proxy::route::percent_decode;
/// assert_eq!(&*percent_decode(b"a%20b"), b"a b");
/// assert_eq!(&*percent_decode(b"a%zz"), b"a%zz");
/// ```
pub fn percent_decode(raw: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr::memchr(b'%', raw) else {
        return Cow::Borrowed(raw);
    };
    let mut out = Vec::with_capacity(raw.len());
    out.extend_from_slice(&raw[..first]);
    let mut i = first;
    while i < raw.len() {
        let escaped = match raw.get(i + 1..i + 3) {
            Some(&[hi, lo]) if raw[i] == b'%' => hex(hi).zip(hex(lo)).map(|(h, l)| (h << 4) | l),
            _ => None,
        };
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(raw[i]);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The value of cookie `name` in a `Cookie` header value (`a=1; b=2`), as sent:
/// surrounding whitespace trimmed, quotes kept.
///
/// Only the header value given is searched; HTTP/2 clients may split cookies
/// over several `cookie` headers and [`HeaderSource`] yields the first one.
///
/// ```
/// use sinew_proxy::route::cookie;
/// assert_eq!(cookie(b"a=1; session=xyz", "session"), Some(&b"xyz"[..]));
/// assert_eq!(cookie(b"a=1", "b"), None);
/// ```
pub fn cookie<'h>(cookie_header: &'h [u8], name: &str) -> Option<&'h [u8]> {
    cookie_header.split(|&c| c == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = memchr::memchr(b'=', pair)?;
        (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// The host part of an authority, for virtual-host lookup: lower-cased, port
/// and userinfo removed, one trailing dot removed. An IPv6 literal keeps its
/// brackets. Borrows unless upper-case letters had to be lowered.
///
/// ```
/// use sinew_proxy::route::normalize_host;
/// assert_eq!(normalize_host("Reviews.Default:8080"), "reviews.default");
/// assert_eq!(normalize_host("[::1]:80"), "[::1]");
/// assert_eq!(normalize_host("example.com."), "example.com");
/// ```
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    let mut host = match memchr::memrchr(b'@', authority.as_bytes()) {
        Some(at) => &authority[at + 1..],
        None => authority,
    };
    if host.starts_with('[') {
        if let Some(end) = memchr::memchr(b']', host.as_bytes()) {
            host = &host[..=end];
        }
    } else if let Some(colon) = memchr::memrchr(b':', host.as_bytes()) {
        if host[colon + 1..].bytes().all(|c| c.is_ascii_digit()) {
            host = &host[..colon];
        }
    }
    if let Some(stripped) = host.strip_suffix('.') {
        host = stripped;
    }
    if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_view_is_send() {
        fn check<T: Send + Sync>() {}
        check::<RequestView<'static>>();
    }

    #[test]
    fn header_map_lookup_is_case_insensitive_and_first_value() {
        let mut map = http::HeaderMap::new();
        map.append("X-Canary", http::HeaderValue::from_static("1"));
        map.append("x-canary", http::HeaderValue::from_static("2"));
        assert_eq!(map.header("x-canary"), Some(&b"1"[..]));
        assert_eq!(map.header("X-CANARY"), Some(&b"1"[..]));
        assert_eq!(map.header("x-other"), None);
        let pairs: &[(&str, &str)] = &[("X-A", "a")];
        let pairs: &dyn HeaderSource = &pairs;
        assert_eq!(pairs.header("x-a"), Some(&b"a"[..]));
    }

    #[test]
    fn query_params() {
        let q = "a=1&b=&c&a=2&d=x=y&&e=%41";
        assert_eq!(query_param(q, "a"), Some("1"));
        assert_eq!(query_param(q, "b"), Some(""));
        assert_eq!(query_param(q, "c"), Some(""));
        assert_eq!(query_param(q, "d"), Some("x=y"));
        assert_eq!(query_param(q, "e"), Some("%41"));
        assert_eq!(query_param(q, "z"), None);
        assert_eq!(
            query_param(q, ""),
            Some(""),
            "the empty pair between && has an empty name"
        );
        assert_eq!(query_param("", "a"), None);
    }

    #[test]
    fn percent_decoding() {
        assert!(matches!(percent_decode(b"plain"), Cow::Borrowed(_)));
        assert_eq!(&*percent_decode(b"%41%62c"), b"Abc");
        assert_eq!(&*percent_decode(b"a+b"), b"a+b");
        assert_eq!(&*percent_decode(b"%"), b"%");
        assert_eq!(&*percent_decode(b"%4"), b"%4");
        assert_eq!(&*percent_decode(b"%%41"), b"%A");
        assert_eq!(&*percent_decode(b"%C3%A9"), "é".as_bytes());
    }

    #[test]
    fn cookies() {
        let h = b"a=1;  session = xyz ;quoted=\"v\"; empty=; flag";
        assert_eq!(cookie(h, "a"), Some(&b"1"[..]));
        assert_eq!(cookie(h, "session"), Some(&b"xyz"[..]));
        assert_eq!(cookie(h, "quoted"), Some(&b"\"v\""[..]));
        assert_eq!(cookie(h, "empty"), Some(&b""[..]));
        assert_eq!(cookie(h, "flag"), None);
        assert_eq!(cookie(h, "sess"), None);
    }

    #[test]
    fn hosts() {
        let cases = [
            ("reviews", "reviews"),
            ("reviews:9080", "reviews"),
            ("Reviews.Default", "reviews.default"),
            ("REVIEWS:80", "reviews"),
            ("example.com.", "example.com"),
            ("example.com.:443", "example.com"),
            ("[::1]", "[::1]"),
            ("[::1]:8080", "[::1]"),
            ("[FE80::1]:1", "[fe80::1]"),
            ("user@host:1", "host"),
            ("127.0.0.1:4140", "127.0.0.1"),
            ("host:", "host"),
        ];
        for (authority, want) in cases {
            assert_eq!(normalize_host(authority), want, "{authority}");
        }
        assert!(matches!(normalize_host("a.b:80"), Cow::Borrowed(_)));
        assert!(matches!(normalize_host("A.b"), Cow::Owned(_)));
    }
}
