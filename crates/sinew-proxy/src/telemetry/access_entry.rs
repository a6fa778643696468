//! One access log record and its JSON-lines encoding.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use super::json;
use super::labels::{Direction, ProxyErrorKind};
use super::trace::TraceContext;

/// Notable things that happened to a request, as a small bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AccessFlags(u8);

impl AccessFlags {
    /// No flags.
    pub const NONE: AccessFlags = AccessFlags(0);
    /// The route answered with its `direct_response`.
    pub const DIRECT_RESPONSE: AccessFlags = AccessFlags(1);
    /// At least one retry was sent.
    pub const RETRIED: AccessFlags = AccessFlags(1 << 1);
    /// A fault-injection delay was applied.
    pub const FAULT_DELAY: AccessFlags = AccessFlags(1 << 2);
    /// A fault-injection abort produced the response.
    pub const FAULT_ABORT: AccessFlags = AccessFlags(1 << 3);
    /// The request was mirrored to a shadow service.
    pub const MIRRORED: AccessFlags = AccessFlags(1 << 4);
    /// The upstream connection was upgraded (WebSocket, CONNECT).
    pub const UPGRADED: AccessFlags = AccessFlags(1 << 5);

    const NAMES: [(AccessFlags, &'static str); 6] = [
        (AccessFlags::DIRECT_RESPONSE, "direct_response"),
        (AccessFlags::RETRIED, "retried"),
        (AccessFlags::FAULT_DELAY, "fault_delay"),
        (AccessFlags::FAULT_ABORT, "fault_abort"),
        (AccessFlags::MIRRORED, "mirrored"),
        (AccessFlags::UPGRADED, "upgraded"),
    ];

    /// Both sets of flags.
    pub const fn union(self, other: AccessFlags) -> AccessFlags {
        AccessFlags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: AccessFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for AccessFlags {
    type Output = AccessFlags;
    fn bitor(self, rhs: AccessFlags) -> AccessFlags {
        self.union(rhs)
    }
}

/// What the access log records about one request. Built by the engine when
/// the response completes; borrowed, so building it allocates nothing.
#[derive(Clone, Copy, Debug)]
pub struct AccessEntry<'a> {
    /// When the request was received.
    pub timestamp: SystemTime,
    /// Listener the request came through.
    pub direction: Direction,
    /// Request method.
    pub method: &'a str,
    /// Request authority (`Host`).
    pub authority: &'a str,
    /// Request path and query, as received.
    pub path: &'a str,
    /// Response status sent downstream.
    pub status: u16,
    /// Time from request received to response complete.
    pub duration: Duration,
    /// Request body bytes received, when known.
    pub bytes_in: Option<u64>,
    /// Response body bytes sent, when known.
    pub bytes_out: Option<u64>,
    /// Endpoint the request was forwarded to, if any.
    pub upstream: Option<SocketAddr>,
    /// Destination service (empty if none was chosen).
    pub service: &'a str,
    /// Matched Route resource (empty if none).
    pub route: &'a str,
    /// Trace context sent upstream (its span id is the proxy's span).
    pub trace: Option<TraceContext>,
    /// Downstream peer address.
    pub remote: Option<SocketAddr>,
    /// The downstream peer's SPIFFE ID, when it connected with mTLS.
    pub peer_identity: Option<&'a str>,
    /// `User-Agent` request header.
    pub user_agent: Option<&'a str>,
    /// Why the proxy failed the request, if it did.
    pub error: Option<ProxyErrorKind>,
    /// The AuthorizationPolicy that refused the request (403): its
    /// `NAMESPACE/NAME`, or `default-deny`.
    pub policy: Option<&'a str>,
    /// Notable events.
    pub flags: AccessFlags,
}

impl AccessEntry<'_> {
    /// Appends the entry as one JSON object followed by `\n`. Absent optional
    /// values are written as `null`, so every line has the same keys.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":");
        json::push_timestamp(out, self.timestamp);
        key(out, "direction");
        json::push_str(out, self.direction.as_str());
        key(out, "method");
        json::push_str(out, self.method);
        key(out, "authority");
        json::push_str(out, self.authority);
        key(out, "path");
        json::push_str(out, self.path);
        key(out, "status");
        json::push_u64(out, u64::from(self.status));
        key(out, "duration_us");
        json::push_u64(
            out,
            u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX),
        );
        key(out, "bytes_in");
        opt_u64(out, self.bytes_in);
        key(out, "bytes_out");
        opt_u64(out, self.bytes_out);
        key(out, "upstream");
        opt_addr(out, self.upstream);
        key(out, "service");
        json::push_str(out, self.service);
        key(out, "route");
        json::push_str(out, self.route);
        key(out, "trace_id");
        match &self.trace {
            Some(t) => json::push_str(out, t.trace_id_hex().as_str()),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "span_id");
        match &self.trace {
            Some(t) => json::push_str(out, t.span_id_hex().as_str()),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "remote");
        opt_addr(out, self.remote);
        key(out, "peer_identity");
        match self.peer_identity {
            Some(id) => json::push_str(out, id),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "user_agent");
        match self.user_agent {
            Some(ua) => json::push_str(out, ua),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "error");
        match self.error {
            Some(kind) => json::push_str(out, kind.as_str()),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "policy");
        match self.policy {
            Some(p) => json::push_str(out, p),
            None => out.extend_from_slice(b"null"),
        }
        key(out, "flags");
        out.push(b'[');
        let set = AccessFlags::NAMES
            .iter()
            .filter(|(f, _)| self.flags.contains(*f));
        for (i, (_, name)) in set.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::push_str(out, name);
        }
        out.extend_from_slice(b"]}\n");
    }
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn opt_u64(out: &mut Vec<u8>, value: Option<u64>) {
    match value {
        Some(v) => json::push_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

fn opt_addr(out: &mut Vec<u8>, addr: Option<SocketAddr>) {
    use std::io::Write;
    match addr {
        Some(addr) => {
            // Socket addresses contain no characters that need escaping;
            // writing to a Vec cannot fail.
            let _ = write!(out, "\"{addr}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use serde_json::Value;

    use super::*;

    fn sample<'a>() -> AccessEntry<'a> {
        AccessEntry {
            timestamp: UNIX_EPOCH + Duration::from_millis(1_709_251_199_123),
            direction: Direction::Outbound,
            method: "GET",
            authority: "reviews",
            path: "/api/\"quoted\"?q=\\x\n",
            status: 503,
            duration: Duration::from_micros(1_250),
            bytes_in: Some(0),
            bytes_out: None,
            upstream: "127.0.0.1:9081".parse().ok(),
            service: "reviews",
            route: "reviews",
            trace: TraceContext::from_header(
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            remote: "[::1]:51000".parse().ok(),
            peer_identity: Some("spiffe://sinew.local/ns/shop/svc/web"),
            user_agent: Some("curl/8.5 \u{1}"),
            error: Some(ProxyErrorKind::UpstreamTimeout),
            policy: None,
            flags: AccessFlags::RETRIED | AccessFlags::MIRRORED,
        }
    }

    #[test]
    fn entry_is_one_json_line_with_every_field() {
        let mut out = Vec::new();
        sample().write_json(&mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(v["timestamp"], "2024-02-29T23:59:59.123Z");
        assert_eq!(v["direction"], "outbound");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["authority"], "reviews");
        assert_eq!(v["path"], "/api/\"quoted\"?q=\\x\n");
        assert_eq!(v["status"], 503);
        assert_eq!(v["duration_us"], 1250);
        assert_eq!(v["bytes_in"], 0);
        assert_eq!(v["bytes_out"], Value::Null);
        assert_eq!(v["upstream"], "127.0.0.1:9081");
        assert_eq!(v["service"], "reviews");
        assert_eq!(v["route"], "reviews");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["span_id"], "00f067aa0ba902b7");
        assert_eq!(v["remote"], "[::1]:51000");
        assert_eq!(v["peer_identity"], "spiffe://sinew.local/ns/shop/svc/web");
        assert_eq!(v["user_agent"], "curl/8.5 \u{1}");
        assert_eq!(v["error"], "upstream_timeout");
        assert_eq!(v["flags"], serde_json::json!(["retried", "mirrored"]));
        assert_eq!(v.as_object().map(|o| o.len()), Some(20));
    }

    #[test]
    fn absent_values_are_null() {
        let entry = AccessEntry {
            upstream: None,
            trace: None,
            remote: None,
            peer_identity: None,
            user_agent: None,
            error: None,
            policy: None,
            flags: AccessFlags::NONE,
            ..sample()
        };
        let mut out = Vec::new();
        entry.write_json(&mut out);
        let v: Value = serde_json::from_slice(&out).expect("valid JSON");
        for k in [
            "upstream",
            "trace_id",
            "span_id",
            "remote",
            "user_agent",
            "error",
        ] {
            assert_eq!(v[k], Value::Null, "{k}");
        }
        assert_eq!(v["flags"], serde_json::json!([]));
    }
}
