//! Hand-rolled JSON output helpers for log lines: string escaping and RFC 3339 UTC timestamps.

use std::time::{SystemTime, UNIX_EPOCH};

/// Appends `value` as a quoted JSON string (RFC 8259 escaping).
pub(crate) fn push_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                push_control(out, b);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// `\u00XX` for a control character without a short escape.
fn push_control(out: &mut Vec<u8>, b: u8) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(DIGITS[usize::from(b >> 4)]);
    out.push(DIGITS[usize::from(b & 0xf)]);
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `time` as a quoted RFC 3339 UTC timestamp with milliseconds,
/// e.g. `"2024-02-29T23:59:59.123Z"`. Times before 1970 print as the epoch.
pub(crate) fn push_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let fields = [
        (month, 2, b'-'),
        (day, 2, b'T'),
        (rem / 3600, 2, b':'),
        (rem % 3600 / 60, 2, b':'),
        (rem % 60, 2, b'.'),
        (u64::from(since.subsec_millis()), 3, b'Z'),
    ];
    out.push(b'"');
    push_padded(out, year, 4);
    out.push(b'-');
    for (value, width, after) in fields {
        push_padded(out, value, width);
        out.push(after);
    }
    out.push(b'"');
}

fn push_padded(out: &mut Vec<u8>, value: u64, width: usize) {
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(value).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

/// (year, month, day) of a day count since 1970-01-01, proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).expect("escaping keeps UTF-8")
    }

    fn timestamp(millis: u64) -> String {
        let mut out = Vec::new();
        push_timestamp(&mut out, UNIX_EPOCH + Duration::from_millis(millis));
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn strings_escape_and_parse_back() {
        let nasty = "a\"b\\c\nd\re\tf\u{8}\u{c}\u{0}\u{1f}\u{7f}é✓😀</script>";
        let json = escaped(nasty);
        assert_eq!(
            serde_json::from_str::<String>(&json).ok().as_deref(),
            Some(nasty)
        );
        assert_eq!(escaped("plain"), "\"plain\"");
        assert_eq!(escaped("\u{1}"), "\"\\u0001\"");
        assert_eq!(escaped("q\""), "\"q\\\"\"");
    }

    #[test]
    fn timestamps_are_rfc3339_utc_millis() {
        assert_eq!(timestamp(0), "\"1970-01-01T00:00:00.000Z\"");
        // 2024-02-29T23:59:59.123Z (leap day)
        assert_eq!(timestamp(1_709_251_199_123), "\"2024-02-29T23:59:59.123Z\"");
        // 2000-03-01T00:00:00.007Z (century leap year boundary)
        assert_eq!(timestamp(951_868_800_007), "\"2000-03-01T00:00:00.007Z\"");
        // 1999-12-31T23:59:59.999Z
        assert_eq!(timestamp(946_684_799_999), "\"1999-12-31T23:59:59.999Z\"");
        // 2100-02-28 is followed by March 1st (2100 is not a leap year).
        assert_eq!(timestamp(4_107_542_400_000), "\"2100-03-01T00:00:00.000Z\"");
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        let mut out = Vec::new();
        push_timestamp(&mut out, before_epoch);
        assert_eq!(out, b"\"1970-01-01T00:00:00.000Z\"");
    }

    #[test]
    fn integers_print_in_decimal() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        assert_eq!(out, b"0 18446744073709551615");
    }
}
