//! Value checks shared by all kinds: names, hosts, header names, statuses, percents, paths.

use super::node::{Node, Value};
use super::reader::{string, uint, Cx, D};
use crate::{Duration, Pattern};

/// Whether `s` is a DNS-1123 label: 1..=63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub(crate) fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a lowercase DNS name: dot-separated DNS-1123 labels, at most 253 characters.
pub(crate) fn is_dns_name(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// An RFC 7230 token (header names, methods).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

/// A resource or subset name: a DNS-1123 label.
pub(crate) fn name(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if !is_dns_label(&s) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a valid name: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"),
        );
    }
    Some(s)
}

/// A Route host: a lowercase DNS name, optionally prefixed by `*.`.
pub(crate) fn host(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    let bare = s.strip_prefix("*.").unwrap_or(&s);
    if !is_dns_name(bare) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a valid host: use a lowercase DNS name without port, optionally starting with `*.`"),
        );
    }
    Some(s)
}

/// A lowercase DNS name (trust domain).
pub(crate) fn dns_name(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if !is_dns_name(&s) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a valid lowercase DNS name"),
        );
    }
    Some(s)
}

/// A SPIFFE ID (`spiffe://<trust-domain>/<path>`): a lowercase DNS trust
/// domain and a non-empty path of non-empty segments.
pub(crate) fn spiffe_id(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    let valid = s.strip_prefix("spiffe://").is_some_and(|rest| {
        rest.split_once('/').is_some_and(|(domain, p)| {
            is_dns_name(domain)
                && p.split('/').all(|seg| {
                    !seg.is_empty()
                        && seg != "."
                        && seg != ".."
                        && seg
                            .bytes()
                            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
                })
        })
    });
    if !valid {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a SPIFFE ID like spiffe://sinew.local/ns/default/svc/web"),
        );
    }
    Some(s)
}

/// A header name, returned lowercased.
pub(crate) fn header_name(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    header_key(cx, node, path, &s)
}

/// A header name given as a map key, returned lowercased.
pub(crate) fn header_key(cx: &mut Cx<'_>, node: &Node, path: &str, key: &str) -> D<String> {
    if !is_token(key) {
        return cx.invalid(node, path, format!("`{key}` is not a valid header name"));
    }
    Some(key.to_ascii_lowercase())
}

/// Any non-empty map key, as is.
pub(crate) fn any_key(cx: &mut Cx<'_>, node: &Node, path: &str, key: &str) -> D<String> {
    if key.is_empty() {
        return cx.invalid(node, path, "name must not be empty");
    }
    Some(key.to_owned())
}

/// An uppercase HTTP method.
pub(crate) fn method(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if !is_token(&s) || s.bytes().any(|c| c.is_ascii_lowercase()) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a method; use uppercase like GET"),
        );
    }
    Some(s)
}

/// An HTTP status, 100..=599.
pub(crate) fn status(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<u16> {
    let n: u16 = uint(cx, node, path)?;
    if !(100..=599).contains(&n) {
        return cx.invalid(node, path, format!("status {n} is outside 100..=599"));
    }
    Some(n)
}

/// A status (`200`) or an inclusive range of statuses written `"200-299"`.
pub(crate) fn status_range(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<crate::StatusRange> {
    if matches!(&node.value, Value::Scalar { text, plain: true } if text.bytes().all(|c| c.is_ascii_digit()))
    {
        let s = status(cx, node, path)?;
        return Some(crate::StatusRange { first: s, last: s });
    }
    let text = string(cx, node, path)?;
    let parsed = text
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?)));
    let Some((first, last)) = parsed else {
        return cx.invalid(
            node,
            path,
            format!("`{text}` is not a status or range; write 200 or \"200-299\""),
        );
    };
    if !(100..=599).contains(&first) || !(100..=599).contains(&last) || first > last {
        return cx.invalid(
            node,
            path,
            format!("range `{text}` must go from a lower to a higher status within 100..=599"),
        );
    }
    Some(crate::StatusRange { first, last })
}

/// A percentage, 0..=100 (fractions allowed).
pub(crate) fn percent(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<f64> {
    let v = super::reader::float(cx, node, path)?;
    if !(0.0..=100.0).contains(&v) {
        return cx.invalid(node, path, format!("percent {v} is outside 0..=100"));
    }
    Some(v)
}

/// A whole number at least 1.
pub(crate) fn positive<T: TryFrom<u64> + PartialOrd + From<u8>>(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
) -> D<T> {
    let v: T = uint(cx, node, path)?;
    if v < T::from(1) {
        return cx.invalid(node, path, "must be at least 1");
    }
    Some(v)
}

/// A duration above zero.
pub(crate) fn positive_duration(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Duration> {
    let d = super::reader::duration(cx, node, path)?;
    if d.as_std().is_zero() {
        return cx.invalid(node, path, "must be greater than 0");
    }
    Some(d)
}

/// A URL path starting with `/`.
pub(crate) fn url_path(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if !s.starts_with('/') || s.contains(char::is_whitespace) {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a path; it must start with `/` and have no spaces"),
        );
    }
    Some(s)
}

/// A topic name: 1..=249 ([`crate::MAX_TOPIC_LEN`]) of `[a-z0-9._-]`.
pub(crate) fn topic(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    let ok = !s.is_empty()
        && s.len() <= crate::MAX_TOPIC_LEN
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c));
    if !ok {
        return cx.invalid(
            node,
            path,
            format!("`{s}` is not a valid topic: use 1-249 of a-z, 0-9, '.', '_' and '-'"),
        );
    }
    Some(s)
}

/// A regular expression that compiles.
pub(crate) fn pattern(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Pattern> {
    let s = string(cx, node, path)?;
    match Pattern::new(&s) {
        Ok(p) => Some(p),
        Err(e) => {
            let first = e.to_string();
            let last = first.lines().last().unwrap_or("invalid regex").trim();
            let msg = last.strip_prefix("error: ").unwrap_or(last).to_owned();
            cx.invalid(node, path, format!("invalid regex `{s}`: {msg}"))
        }
    }
}

/// The single present option among `options` (named `names`, in the same order).
pub(crate) fn exactly_one<T>(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    names: &[&str],
    options: Vec<Option<T>>,
) -> D<T> {
    let count = options.iter().filter(|o| o.is_some()).count();
    if count != 1 {
        let list = super::reader::quoted_list(names);
        let msg = if count == 0 {
            format!("needs exactly one of {list}")
        } else {
            format!("needs exactly one of {list}, found {count}")
        };
        let kind = if count == 0 {
            crate::ErrorKind::MissingField
        } else {
            crate::ErrorKind::InvalidValue
        };
        cx.err(kind, node, path, msg);
        return None;
    }
    options.into_iter().flatten().next()
}

/// A whole-number percentage, 0..=100.
pub(crate) fn percent_u32(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<u32> {
    let v: u32 = uint(cx, node, path)?;
    if v > 100 {
        return cx.invalid(node, path, format!("percent {v} is outside 0..=100"));
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns_label("reviews-v1"));
        assert!(!is_dns_label("Reviews"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(""));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_name("api.example.com"));
        assert!(!is_dns_name("api..com"));
        assert!(!is_dns_name("api.com:80"));
    }

    #[test]
    fn tokens() {
        assert!(is_token("x-canary"));
        assert!(!is_token("x canary"));
        assert!(!is_token(""));
    }
}
