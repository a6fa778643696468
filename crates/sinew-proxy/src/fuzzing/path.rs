//! Fuzz target `path_normalizer`: what `normalize_path` accepts comes out canonical.

use std::borrow::Cow;

use crate::route::{normalize_path, split_target};

/// Normalizes the path of `data` (a request-target); when it is accepted,
/// checks the output is the canonical spelling authorization and routing
/// match on: absolute, no empty, `.` or `..` segments, only well-formed
/// upper-case escapes of characters that must stay escaped (never `/`, `\`,
/// NUL or an unreserved one), idempotent, and borrowed when unchanged.
pub fn path_normalizer(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    let (path, _query) = split_target(raw);
    let Ok(normal) = normalize_path(path) else {
        return;
    };
    let shown = || format!("{path:?} → {normal:?}");
    assert!(normal.starts_with('/'), "{}", shown());
    assert!(!normal.contains("//"), "{}", shown());
    assert!(
        normal.split('/').all(|s| s != "." && s != ".."),
        "{}",
        shown()
    );
    assert!(
        normal.bytes().all(|b| b.is_ascii_graphic() && b != b'\\'),
        "{}",
        shown()
    );
    let bytes = normal.as_bytes();
    for (i, _) in normal.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).unwrap_or_default();
        let value = std::str::from_utf8(hex)
            .ok()
            .filter(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            })
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        let Some(value) = value else {
            panic!("malformed escape at {i}: {}", shown());
        };
        assert!(
            !(value.is_ascii_alphanumeric()
                || matches!(value, b'-' | b'.' | b'_' | b'~' | b'/' | b'\\' | 0)),
            "escape at {i}: {}",
            shown()
        );
    }
    let again = normalize_path(&normal).unwrap_or_else(|e| panic!("{e}: {}", shown()));
    assert_eq!(again, normal, "not idempotent: {}", shown());
    assert!(matches!(again, Cow::Borrowed(_)), "{}", shown());
    if matches!(normal, Cow::Borrowed(_)) {
        assert_eq!(normal, path);
    }
}
