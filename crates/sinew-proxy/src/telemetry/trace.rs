//! W3C Trace Context: strict `traceparent` parsing and allocation-free formatting.
//!
//! The proxy continues an incoming trace with a new span ([`TraceContext::child`])
//! or starts one ([`TraceContext::new_root`]), and sends version `00` upstream.
//! `tracestate` is forwarded untouched by the engine: it is opaque vendor
//! data, and the proxy adds no entry of its own.

use std::fmt;

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name (forwarded as is).
pub const TRACESTATE: &str = "tracestate";

/// Length of a version-00 `traceparent` value.
pub const TRACEPARENT_LEN: usize = 55;

/// The `sampled` bit of the trace flags.
const FLAG_SAMPLED: u8 = 0x01;

/// One position in a distributed trace: trace id, the current span (parent)
/// id and the trace flags.
///
/// ```
/// use sinew_proxy::telemetry::TraceContext;
///
/// let header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let parent = TraceContext::from_header(header).expect("valid traceparent");
/// let child = parent.child();
/// assert_eq!(child.trace_id(), parent.trace_id());
/// assert_ne!(child.span_id(), parent.span_id());
///
/// let mut buf = [0u8; 55];
/// let value = child.write_header(&mut buf);
/// assert!(value.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
/// assert!(value.ends_with("-01"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// Parses a `traceparent` value strictly, per W3C Trace Context level 1.
    ///
    /// Returns `None` (the caller starts a new trace) for: version `ff` or
    /// non-hex version; version `00` whose length is not exactly 55; a higher
    /// version shorter than 55 or not followed by `-` after the flags; any
    /// uppercase or non-hex digit; a missing `-`; an all-zero trace or parent
    /// id. For a higher version only the version-00 prefix is read, and only
    /// the sampled flag is kept.
    pub fn from_header(value: &[u8]) -> Option<TraceContext> {
        if value.len() < TRACEPARENT_LEN {
            return None;
        }
        let version = hex_u8(&value[0..2])?;
        match version {
            0xff => return None,
            0x00 if value.len() != TRACEPARENT_LEN => return None,
            _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = hex_u128(&value[3..35])?;
        let span_id = hex_u64(&value[36..52])?;
        let flags = hex_u8(&value[53..55])?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            // Flags other than `sampled` are undefined in version 00, and
            // must be sent as zero.
            flags: flags & FLAG_SAMPLED,
        })
    }

    /// A new trace with random, non-zero ids and the sampled flag set.
    pub fn new_root() -> TraceContext {
        TraceContext {
            trace_id: fastrand::u128(1..),
            span_id: fastrand::u64(1..),
            flags: FLAG_SAMPLED,
        }
    }

    /// A new span in the same trace, with the same flags.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            span_id: fastrand::u64(1..),
            ..*self
        }
    }

    /// The 128-bit trace id.
    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    /// The 64-bit id of this span (the `parent-id` sent downstream of it).
    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    /// Whether the caller recorded (sampled) this trace.
    pub fn is_sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }

    /// The trace id as 32 lowercase hex digits, for logs.
    pub fn trace_id_hex(&self) -> Hex<32> {
        let mut out = [0u8; 32];
        write_hex(&mut out, self.trace_id);
        Hex(out)
    }

    /// The span id as 16 lowercase hex digits, for logs.
    pub fn span_id_hex(&self) -> Hex<16> {
        let mut out = [0u8; 16];
        write_hex(&mut out, u128::from(self.span_id));
        Hex(out)
    }

    /// Formats the version-00 `traceparent` value into `buf` and returns it.
    pub fn write_header<'b>(&self, buf: &'b mut [u8; TRACEPARENT_LEN]) -> &'b str {
        buf[0..3].copy_from_slice(b"00-");
        write_hex(&mut buf[3..35], self.trace_id);
        buf[35] = b'-';
        write_hex(&mut buf[36..52], u128::from(self.span_id));
        buf[52] = b'-';
        write_hex(&mut buf[53..55], u128::from(self.flags));
        ascii(buf)
    }

    /// The `traceparent` value as an `http` header value.
    pub fn header_value(&self) -> http::HeaderValue {
        let mut buf = [0u8; TRACEPARENT_LEN];
        http::HeaderValue::from_str(self.write_header(&mut buf))
            .expect("lowercase hex and dashes are valid header bytes")
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; TRACEPARENT_LEN];
        f.write_str(self.write_header(&mut buf))
    }
}

/// A fixed-width lowercase hex rendering of an id, on the stack.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hex<const N: usize>([u8; N]);

impl<const N: usize> Hex<N> {
    /// The hex digits.
    pub fn as_str(&self) -> &str {
        ascii(&self.0)
    }
}

impl<const N: usize> fmt::Display for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Views bytes this module wrote (hex digits and dashes) as text.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("only ASCII hex digits and dashes are written")
}

/// Writes the low `out.len() * 4` bits of `value` as lowercase hex, big-endian.
fn write_hex(out: &mut [u8], mut value: u128) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Parses lowercase hex (uppercase is invalid in `traceparent`).
fn hex_u128(digits: &[u8]) -> Option<u128> {
    digits.iter().try_fold(0u128, |acc, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u128::from(nibble))
    })
}

fn hex_u64(digits: &[u8]) -> Option<u64> {
    hex_u128(digits).and_then(|v| u64::try_from(v).ok())
}

fn hex_u8(digits: &[u8]) -> Option<u8> {
    hex_u128(digits).and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(s: &str) -> Option<TraceContext> {
        TraceContext::from_header(s.as_bytes())
    }

    #[test]
    fn parses_and_formats_round_trip() {
        let ctx = parse(VALID).expect("valid");
        assert_eq!(ctx.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(ctx.span_id(), 0x00f067aa0ba902b7);
        assert!(ctx.is_sampled());
        assert_eq!(
            ctx.trace_id_hex().as_str(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(ctx.span_id_hex().as_str(), "00f067aa0ba902b7");
        let mut buf = [0u8; TRACEPARENT_LEN];
        assert_eq!(ctx.write_header(&mut buf), VALID);
        assert_eq!(ctx.to_string(), VALID);
        assert_eq!(ctx.header_value(), VALID);

        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
        assert!(!unsampled.expect("valid").is_sampled());
    }

    #[test]
    fn rejects_malformed_values() {
        let bad = [
            // version ff is forbidden
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // uppercase hex anywhere
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // wrong lengths
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
            "",
            // wrong separators, non-hex
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bg-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            // future version: too short, or flags not followed by a dash
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        ];
        for value in bad {
            assert_eq!(parse(value), None, "accepted {value:?}");
        }
    }

    #[test]
    fn future_versions_are_read_by_their_version_00_prefix() {
        let exact = parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert_eq!(exact.map(|c| c.span_id()), Some(0x00f067aa0ba902b7));
        let extended = parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-whatever");
        let extended = extended.expect("future version with extra fields");
        assert!(extended.is_sampled());
        // Re-sent as version 00 with unknown flags cleared.
        let mut buf = [0u8; TRACEPARENT_LEN];
        assert_eq!(extended.write_header(&mut buf), VALID);
    }

    #[test]
    fn unknown_flags_are_cleared() {
        let ctx = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").expect("valid");
        assert!(ctx.is_sampled());
        assert!(ctx.to_string().ends_with("-01"));
    }

    #[test]
    fn roots_and_children_have_valid_ids() {
        let root = TraceContext::new_root();
        assert!(root.is_sampled());
        assert_ne!(root.trace_id(), 0);
        assert_ne!(root.span_id(), 0);
        let child = root.child();
        assert_eq!(child.trace_id(), root.trace_id());
        assert_ne!(child.span_id(), 0);
        assert_eq!(child.is_sampled(), root.is_sampled());
        let mut buf = [0u8; TRACEPARENT_LEN];
        let text = child.write_header(&mut buf).to_owned();
        assert_eq!(parse(&text), Some(child));
    }
}
