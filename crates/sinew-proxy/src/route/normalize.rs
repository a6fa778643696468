//! Request-path normalization: the one canonical spelling that routing and authorization match on.
//!
//! [`normalize_path`] follows RFC 3986 §6.2.2 (syntax-based normalization) plus
//! the merging of repeated slashes, and rejects the spellings that different
//! servers disagree on. Because authorization matches on its output, anything
//! ambiguous is an error (the proxy answers `400`) rather than a guess:
//!
//! | input                         | result                                   |
//! |-------------------------------|------------------------------------------|
//! | `%61` (unreserved escape)     | decoded: `a`                             |
//! | `%3a` (other escape)          | kept, hex upper-cased: `%3A`             |
//! | `//`                          | merged: `/`                              |
//! | `.` / `..` (also `%2e`)       | resolved, never above the root           |
//! | `%00`, `%2F`, `%5C`           | [`PathError::NulByte`], [`PathError::EncodedSeparator`] |
//! | `%G1`, `%4`                   | [`PathError::MalformedEscape`]           |
//! | raw control char or space     | [`PathError::ControlChar`]               |
//! | raw `\`                       | [`PathError::Backslash`]                 |
//! | raw non-ASCII                 | [`PathError::NonAscii`]                  |
//! | not starting with `/`         | [`PathError::NotAbsolute`]               |
//!
//! A trailing slash is preserved (`/a/` stays `/a/`; `/a/.` becomes `/a/`).

use std::borrow::Cow;
use std::fmt;

/// Why a request path was rejected; the proxy answers `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// The path is empty or does not start with `/`.
    NotAbsolute,
    /// The path contains `%00`.
    NulByte,
    /// The path contains an encoded slash or backslash (`%2F`, `%5C`), whose
    /// meaning differs between servers.
    EncodedSeparator,
    /// A `%` is not followed by two hexadecimal digits.
    MalformedEscape,
    /// The path contains a raw control character (`0x00`–`0x1F`, `0x7F`) or space.
    ControlChar,
    /// The path contains a raw backslash.
    Backslash,
    /// The path contains a raw byte outside ASCII.
    NonAscii,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "request path does not start with '/'",
            PathError::NulByte => "request path contains an encoded NUL byte",
            PathError::EncodedSeparator => "request path contains an encoded slash or backslash",
            PathError::MalformedEscape => "request path contains a malformed percent-escape",
            PathError::ControlChar => "request path contains a control character or space",
            PathError::Backslash => "request path contains a backslash",
            PathError::NonAscii => "request path contains a non-ASCII byte",
        })
    }
}

impl std::error::Error for PathError {}

/// Byte classes for the single scan.
const PLAIN: u8 = 0;
const SLASH: u8 = 1;
const PERCENT: u8 = 2;
const CONTROL: u8 = 3;
const BACKSLASH: u8 = 4;
const NON_ASCII: u8 = 5;

static CLASS: [u8; 256] = {
    let mut table = [PLAIN; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = match i as u8 {
            b'/' => SLASH,
            b'%' => PERCENT,
            b'\\' => BACKSLASH,
            0x00..=0x20 | 0x7f => CONTROL,
            0x80..=0xff => NON_ASCII,
            _ => PLAIN,
        };
        i += 1;
    }
    table
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Normalizes an origin-form request path (no query string).
///
/// Returns [`Cow::Borrowed`] — without allocating — when the path is already
/// canonical, which is the common case. See the module documentation for the
/// rules.
///
/// ```
/// use sinew_proxy::route::normalize_path;
/// assert_eq!(normalize_path("/api/v1").unwrap(), "/api/v1");
/// assert_eq!(normalize_path("//a/./b/../%63").unwrap(), "/a/c");
/// assert!(normalize_path("/admin%2F..").is_err());
/// ```
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut clean = true;
    let mut seg_start = 1;
    let mut i = 1;
    while i < b.len() {
        match CLASS[usize::from(b[i])] {
            PLAIN => i += 1,
            SLASH => {
                if clean && is_dot_or_empty(&b[seg_start..i]) {
                    clean = false;
                }
                i += 1;
                seg_start = i;
            }
            PERCENT => {
                let value = decode_escape(b, i)?;
                if is_unreserved(value)
                    || b[i + 1].is_ascii_lowercase()
                    || b[i + 2].is_ascii_lowercase()
                {
                    clean = false;
                }
                i += 3;
            }
            class => return Err(class_error(class)),
        }
    }
    if clean && matches!(&b[seg_start..], b"." | b"..") {
        clean = false;
    }
    if clean {
        Ok(Cow::Borrowed(raw))
    } else {
        normalize_slow(b).map(Cow::Owned)
    }
}

/// Splits a request-target into its path and query (`/a?b=c` → `("/a", Some("b=c"))`).
///
/// A fragment (`#…`, which clients must not send) is left in place and will be
/// matched as part of the path or query.
///
/// ```
/// use sinew_proxy::route::split_target;
/// assert_eq!(split_target("/a?b=c"), ("/a", Some("b=c")));
/// assert_eq!(split_target("/a"), ("/a", None));
/// ```
pub fn split_target(target: &str) -> (&str, Option<&str>) {
    match memchr::memchr(b'?', target.as_bytes()) {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    }
}

/// The rewriting pass, taken only when the scan found something to change.
fn normalize_slow(b: &[u8]) -> Result<String, PathError> {
    // Invariant: `out` ends with '/' before each segment is appended.
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    out.push(b'/');
    let mut i = 1;
    loop {
        let seg_out = out.len();
        while i < b.len() && b[i] != b'/' {
            match CLASS[usize::from(b[i])] {
                PLAIN => {
                    out.push(b[i]);
                    i += 1;
                }
                PERCENT => {
                    let value = decode_escape(b, i)?;
                    if is_unreserved(value) {
                        out.push(value);
                    } else {
                        out.extend_from_slice(&[
                            b'%',
                            HEX_UPPER[usize::from(value >> 4)],
                            HEX_UPPER[usize::from(value & 0x0f)],
                        ]);
                    }
                    i += 3;
                }
                class => return Err(class_error(class)),
            }
        }
        let last = i >= b.len();
        match &out[seg_out..] {
            b"" => {}
            b"." => out.truncate(seg_out),
            b".." => {
                out.truncate(seg_out);
                pop_segment(&mut out);
            }
            _ if !last => out.push(b'/'),
            _ => {}
        }
        if last {
            break;
        }
        i += 1;
    }
    // Only ASCII is ever pushed; the conversion cannot fail.
    String::from_utf8(out).map_err(|_| PathError::NonAscii)
}

/// Removes the last segment of `out` (which ends with '/'), never the root.
fn pop_segment(out: &mut Vec<u8>) {
    if out.len() <= 1 {
        return;
    }
    let before = &out[..out.len() - 1];
    let keep = memchr::memrchr(b'/', before).map_or(1, |p| p + 1);
    out.truncate(keep);
}

/// Decodes the escape starting at `b[at] == b'%'`, rejecting the forbidden values.
fn decode_escape(b: &[u8], at: usize) -> Result<u8, PathError> {
    let (Some(&hi), Some(&lo)) = (b.get(at + 1), b.get(at + 2)) else {
        return Err(PathError::MalformedEscape);
    };
    let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
        return Err(PathError::MalformedEscape);
    };
    match (hi << 4) | lo {
        0 => Err(PathError::NulByte),
        b'/' | b'\\' => Err(PathError::EncodedSeparator),
        value => Ok(value),
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 unreserved characters, which must be decoded to compare paths.
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

fn is_dot_or_empty(segment: &[u8]) -> bool {
    matches!(segment, b"" | b"." | b"..")
}

fn class_error(class: u8) -> PathError {
    match class {
        CONTROL => PathError::ControlChar,
        BACKSLASH => PathError::Backslash,
        _ => PathError::NonAscii,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in [
            "/",
            "/a",
            "/a/",
            "/api/v1/users",
            "/a/.../b",
            "/a/.b/..c/",
            "/%3A",
            "/%C3%A9",
            "/%25",
            "/a;b=c,d",
            "/a-b_c~d.e",
            "/a%20b",
        ] {
            let got = normalize_path(path).unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(matches!(got, Cow::Borrowed(_)), "{path} should borrow");
            assert_eq!(got, path);
        }
    }

    #[test]
    fn rewrites_to_canonical_form() {
        let cases = [
            // bypass spellings of /admin
            ("/admin/../admin", "/admin"),
            ("//admin", "/admin"),
            ("///admin//", "/admin/"),
            ("/%61dmin", "/admin"),
            ("/%41DMIN", "/ADMIN"),
            ("/./admin", "/admin"),
            ("/a/%2e%2e/admin", "/admin"),
            ("/a/%2E%2e/admin", "/admin"),
            ("/a/.%2e/admin", "/admin"),
            ("/a/%2e/admin", "/a/admin"),
            ("/../admin", "/admin"),
            ("/../../../admin", "/admin"),
            ("/a/b/../../../admin", "/admin"),
            // dot segments and trailing slashes
            ("/.", "/"),
            ("/..", "/"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/b/../", "/a/"),
            ("/a/./", "/a/"),
            ("//", "/"),
            ("/a//b", "/a/b"),
            // escapes
            ("/%3a", "/%3A"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%7e%5f%2d", "/~_-"),
            ("/%30%39", "/09"),
            ("/%25%32%66", "/%252f"),
            ("/a%0ab", "/a%0Ab"),
        ];
        for (raw, want) in cases {
            let got = normalize_path(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got, want, "normalizing {raw}");
            assert!(
                matches!(got, Cow::Owned(_)),
                "{raw} changed, so it is owned"
            );
            // Normalization is idempotent.
            assert_eq!(
                normalize_path(&got).as_deref(),
                Ok(want),
                "re-normalizing {raw}"
            );
        }
    }

    #[test]
    fn rejects_ambiguous_and_invalid_paths() {
        let cases = [
            ("", PathError::NotAbsolute),
            ("admin", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
            ("http://x/a", PathError::NotAbsolute),
            ("/%00", PathError::NulByte),
            ("/a%00b", PathError::NulByte),
            ("/admin%2F..", PathError::EncodedSeparator),
            ("/admin%2f..", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a%5cb", PathError::EncodedSeparator),
            ("/%G1", PathError::MalformedEscape),
            ("/%1G", PathError::MalformedEscape),
            ("/%4", PathError::MalformedEscape),
            ("/%", PathError::MalformedEscape),
            ("/%%41", PathError::MalformedEscape),
            ("/a\0b", PathError::ControlChar),
            ("/a\nb", PathError::ControlChar),
            ("/a\rb", PathError::ControlChar),
            ("/a\tb", PathError::ControlChar),
            ("/a b", PathError::ControlChar),
            ("/a\x7fb", PathError::ControlChar),
            ("/a\\..\\admin", PathError::Backslash),
            ("/\\admin", PathError::Backslash),
            ("/caf\u{e9}", PathError::NonAscii),
            ("/\u{ff0f}admin", PathError::NonAscii),
            // errors are found after a rewrite was already needed, too
            ("//a/%00", PathError::NulByte),
            ("/%61/%2F", PathError::EncodedSeparator),
            ("/./a\\b", PathError::Backslash),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), Err(want), "normalizing {raw:?}");
        }
    }

    #[test]
    fn splits_query_from_path() {
        assert_eq!(split_target("/"), ("/", None));
        assert_eq!(split_target("/a?"), ("/a", Some("")));
        assert_eq!(split_target("/a?x=1&y=2"), ("/a", Some("x=1&y=2")));
        assert_eq!(split_target("/a?x=?"), ("/a", Some("x=?")));
    }
}
