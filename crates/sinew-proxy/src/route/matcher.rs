//! Compiled request matchers: values, paths, methods, headers and query parameters, and how they combine.
//!
//! A rule's match list is an OR of [`MatchEntry`]s; the conditions inside one
//! entry are ANDed; an empty list matches every request. Matching never
//! allocates unless a query value holds percent-escapes that must be decoded
//! before comparison. Regexes are compiled once, when the table is built.

use std::borrow::Cow;

use sinew_model::{PathMatch, Pattern, RouteMatch, ValueMatch};

use super::request::{percent_decode, query_param, RequestView};

/// How a header or query-parameter value is compared.
#[derive(Debug, Clone)]
pub enum StringMatcher {
    /// Equal to these bytes.
    Exact(Box<[u8]>),
    /// Starts with these bytes.
    Prefix(Box<[u8]>),
    /// The whole value matches (anchored); values that are not UTF-8 never match.
    Regex(Pattern),
    /// `true`: present with any value; `false`: absent.
    Present(bool),
}

impl StringMatcher {
    /// Whether `value` (`None` = absent) satisfies the matcher.
    ///
    /// ```
    /// use sinew_proxy::route::StringMatcher;
    /// let m = StringMatcher::Prefix(b"v1"[..].into());
    /// assert!(m.matches(Some(b"v1.2")));
    /// assert!(!m.matches(None));
    /// assert!(StringMatcher::Present(false).matches(None));
    /// ```
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        match (self, value) {
            (Self::Present(want), v) => *want == v.is_some(),
            (_, None) => false,
            (Self::Exact(e), Some(v)) => **e == *v,
            (Self::Prefix(p), Some(v)) => v.starts_with(p),
            (Self::Regex(r), Some(v)) => std::str::from_utf8(v).is_ok_and(|s| r.is_match(s)),
        }
    }
}

impl std::fmt::Display for StringMatcher {
    /// The condition as a user wrote it: `"v1"`, `prefix "v1"`, `regex "…"`, `present`, `absent`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(v) => write!(f, "{:?}", String::from_utf8_lossy(v)),
            Self::Prefix(v) => write!(f, "prefix {:?}", String::from_utf8_lossy(v)),
            Self::Regex(r) => write!(f, "regex {:?}", r.as_str()),
            Self::Present(true) => f.write_str("present"),
            Self::Present(false) => f.write_str("absent"),
        }
    }
}

impl From<&ValueMatch> for StringMatcher {
    fn from(m: &ValueMatch) -> Self {
        match m {
            ValueMatch::Exact(s) => Self::Exact(s.as_bytes().into()),
            ValueMatch::Prefix(s) => Self::Prefix(s.as_bytes().into()),
            ValueMatch::Regex(p) => Self::Regex(p.clone()),
            ValueMatch::Present(b) => Self::Present(*b),
        }
    }
}

/// How the normalized path is compared.
///
/// `Prefix` matches on a segment boundary, as `sinew_model::PathMatch`
/// documents it to users: `/api` matches `/api` and `/api/x` but not `/apix`;
/// a prefix ending in `/` (`/api/`, `/`) is a plain string prefix.
#[derive(Debug, Clone)]
pub enum PathMatcher {
    /// The whole path equals this.
    Exact(Box<str>),
    /// The path starts with this.
    Prefix(Box<str>),
    /// The whole path matches this regex.
    Regex(Pattern),
}

impl PathMatcher {
    /// Whether the normalized `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(e) => **e == *path,
            Self::Prefix(p) => prefix_matches(p, path),
            Self::Regex(r) => r.is_match(path),
        }
    }

    /// The prefix a [`PrefixRewrite`](super::PrefixRewrite) replaces when this
    /// matcher selected the request: the prefix itself, the whole path for
    /// `Exact`, and `/` for `Regex`.
    pub fn rewrite_prefix(&self) -> &str {
        match self {
            Self::Exact(p) | Self::Prefix(p) => p,
            Self::Regex(_) => "/",
        }
    }
}

impl std::fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(p) => write!(f, "exact {p:?}"),
            Self::Prefix(p) => write!(f, "prefix {p:?}"),
            Self::Regex(r) => write!(f, "regex {:?}", r.as_str()),
        }
    }
}

impl From<&PathMatch> for PathMatcher {
    fn from(m: &PathMatch) -> Self {
        match m {
            PathMatch::Exact(p) => Self::Exact(p.as_str().into()),
            PathMatch::Prefix(p) => Self::Prefix(p.as_str().into()),
            PathMatch::Regex(r) => Self::Regex(r.clone()),
        }
    }
}

/// Whether `path` starts with `prefix` on a segment boundary (see [`PathMatcher`]).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with('/')
            || path.len() == prefix.len()
            || path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

/// A header condition: `name` (lower case) compared with `value`.
#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-case header name.
    pub name: Box<str>,
    /// The condition on the header's first value.
    pub value: StringMatcher,
}

/// A query-parameter condition. The first parameter named `name` is
/// percent-decoded before comparison (`+` stays `+`).
#[derive(Debug, Clone)]
pub struct QueryMatcher {
    /// Parameter name, compared as sent.
    pub name: Box<str>,
    /// The condition on the decoded value.
    pub value: StringMatcher,
}

/// One entry of a rule's match list: every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct MatchEntry {
    /// Path condition; `None` = any path.
    pub path: Option<PathMatcher>,
    /// Required method (case-sensitive); `None` = any method.
    pub method: Option<Box<str>>,
    /// Header conditions.
    pub headers: Box<[HeaderMatcher]>,
    /// Query-parameter conditions.
    pub query: Box<[QueryMatcher]>,
}

impl MatchEntry {
    /// Whether the request satisfies every condition of this entry.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        if let Some(path) = &self.path {
            if !path.matches(req.path) {
                return false;
            }
        }
        if self.method.as_deref().is_some_and(|m| m != req.method) {
            return false;
        }
        if !self
            .headers
            .iter()
            .all(|h| h.value.matches(req.headers.header(&h.name)))
        {
            return false;
        }
        self.query.iter().all(|q| {
            let raw = req.query.and_then(|query| query_param(query, &q.name));
            let decoded: Option<Cow<'_, [u8]>> = raw.map(|v| percent_decode(v.as_bytes()));
            q.value.matches(decoded.as_deref())
        })
    }

    /// The first condition `req` fails, said for a person (`sinew explain`);
    /// `None` when the entry matches.
    pub fn mismatch(&self, req: &RequestView<'_>) -> Option<String> {
        let shown = |v: Option<&[u8]>| {
            v.map_or_else(
                || "absent".to_owned(),
                |v| format!("{:?}", String::from_utf8_lossy(v)),
            )
        };
        if let Some(path) = &self.path {
            if !path.matches(req.path) {
                return Some(format!("path {:?} is not {path}", req.path));
            }
        }
        if let Some(method) = self.method.as_deref() {
            if method != req.method {
                return Some(format!("method {} is not {method}", req.method));
            }
        }
        for h in self.headers.iter() {
            let value = req.headers.header(&h.name);
            if !h.value.matches(value) {
                return Some(format!(
                    "header {} is {}, wants {}",
                    h.name,
                    shown(value),
                    h.value
                ));
            }
        }
        for q in self.query.iter() {
            let raw = req.query.and_then(|query| query_param(query, &q.name));
            let decoded: Option<Cow<'_, [u8]>> = raw.map(|v| percent_decode(v.as_bytes()));
            if !q.value.matches(decoded.as_deref()) {
                return Some(format!(
                    "query parameter {} is {}, wants {}",
                    q.name,
                    shown(decoded.as_deref()),
                    q.value
                ));
            }
        }
        None
    }

    /// The prefix this entry contributes to a rewrite (`/` without a path condition).
    pub fn rewrite_prefix(&self) -> &str {
        self.path.as_ref().map_or("/", PathMatcher::rewrite_prefix)
    }
}

impl From<&RouteMatch> for MatchEntry {
    fn from(m: &RouteMatch) -> Self {
        Self {
            path: m.path.as_ref().map(PathMatcher::from),
            method: m.method.as_deref().map(Box::from),
            headers: m
                .headers
                .iter()
                .map(|(name, value)| HeaderMatcher {
                    name: name.to_ascii_lowercase().into(),
                    value: value.into(),
                })
                .collect(),
            query: m
                .query
                .iter()
                .map(|(name, value)| QueryMatcher {
                    name: name.as_str().into(),
                    value: value.into(),
                })
                .collect(),
        }
    }
}

/// A rule's whole match list (OR of entries; empty matches everything).
#[derive(Debug, Clone, Default)]
pub struct RuleMatcher {
    entries: Box<[MatchEntry]>,
}

impl RuleMatcher {
    /// A matcher over `entries`; no entries matches every request.
    pub fn new(entries: Vec<MatchEntry>) -> Self {
        Self {
            entries: entries.into_boxed_slice(),
        }
    }

    /// Whether any entry matches (always true without entries).
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.entries.is_empty() || self.entries.iter().any(|e| e.matches(req))
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[MatchEntry] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> Pattern {
        Pattern::new(s).expect("test regex compiles")
    }

    fn req<'a>(
        method: &'a str,
        path: &'a str,
        query: Option<&'a str>,
        headers: &'a &'a [(&'a str, &'a str)],
    ) -> RequestView<'a> {
        RequestView {
            method,
            path,
            query,
            headers,
        }
    }

    #[test]
    fn string_matchers() {
        let exact = StringMatcher::from(&ValueMatch::Exact("1".into()));
        assert!(exact.matches(Some(b"1")));
        assert!(!exact.matches(Some(b"10")));
        assert!(!exact.matches(Some(b"")));
        assert!(!exact.matches(None));

        let prefix = StringMatcher::from(&ValueMatch::Prefix("Mozilla".into()));
        assert!(prefix.matches(Some(b"Mozilla/5.0")));
        assert!(!prefix.matches(Some(b"mozilla/5.0")));
        assert!(!prefix.matches(None));

        let regex = StringMatcher::from(&ValueMatch::Regex(pattern("v[0-9]+")));
        assert!(regex.matches(Some(b"v12")));
        assert!(
            !regex.matches(Some(b"v12x")),
            "regex is anchored at the end"
        );
        assert!(
            !regex.matches(Some(b"xv12")),
            "regex is anchored at the start"
        );
        assert!(!regex.matches(Some(b"v1\xff")), "non-UTF-8 never matches");
        assert!(!regex.matches(None));

        let present = StringMatcher::from(&ValueMatch::Present(true));
        assert!(present.matches(Some(b"")));
        assert!(!present.matches(None));
        let absent = StringMatcher::from(&ValueMatch::Present(false));
        assert!(absent.matches(None));
        assert!(!absent.matches(Some(b"x")));
    }

    #[test]
    fn path_matchers() {
        let exact = PathMatcher::Exact("/api".into());
        assert!(exact.matches("/api"));
        assert!(!exact.matches("/api/"));
        let prefix = PathMatcher::Prefix("/api".into());
        assert!(prefix.matches("/api"));
        assert!(prefix.matches("/api/x"));
        assert!(
            !prefix.matches("/apix"),
            "prefixes end on a segment boundary"
        );
        assert!(!prefix.matches("/ap"));
        let slash = PathMatcher::Prefix("/api/".into());
        assert!(slash.matches("/api/x"));
        assert!(!slash.matches("/api"));
        assert!(PathMatcher::Prefix("/".into()).matches("/anything"));
        let regex = PathMatcher::Regex(pattern("/users/[0-9]+"));
        assert!(regex.matches("/users/42"));
        assert!(!regex.matches("/users/42/x"));
        assert_eq!(prefix.rewrite_prefix(), "/api");
        assert_eq!(exact.rewrite_prefix(), "/api");
        assert_eq!(regex.rewrite_prefix(), "/");
    }

    #[test]
    fn entry_fields_are_anded() {
        let entry = MatchEntry {
            path: Some(PathMatcher::Prefix("/api".into())),
            method: Some("GET".into()),
            headers: vec![HeaderMatcher {
                name: "x-canary".into(),
                value: StringMatcher::Exact(b"1"[..].into()),
            }]
            .into(),
            query: vec![QueryMatcher {
                name: "debug".into(),
                value: StringMatcher::Present(true),
            }]
            .into(),
        };
        let h: &&[(&str, &str)] = &&[("X-Canary", "1")][..];
        assert!(entry.matches(&req("GET", "/api/x", Some("debug"), h)));
        assert!(entry.matches(&req("GET", "/api", Some("a=1&debug=0"), h)));
        assert!(
            !entry.matches(&req("POST", "/api/x", Some("debug"), h)),
            "method"
        );
        assert!(
            !entry.matches(&req("get", "/api/x", Some("debug"), h)),
            "methods are case-sensitive"
        );
        assert!(
            !entry.matches(&req("GET", "/web", Some("debug"), h)),
            "path"
        );
        assert!(!entry.matches(&req("GET", "/api/x", None, h)), "query");
        assert!(
            !entry.matches(&req("GET", "/api/x", Some("debug"), &&[][..])),
            "header"
        );
        assert!(
            !entry.matches(&req(
                "GET",
                "/api/x",
                Some("debug"),
                &&[("x-canary", "2")][..]
            )),
            "header value"
        );
    }

    #[test]
    fn query_values_are_decoded_before_comparison() {
        let entry = MatchEntry {
            query: vec![QueryMatcher {
                name: "user".into(),
                value: StringMatcher::Exact(b"a b/c"[..].into()),
            }]
            .into(),
            ..MatchEntry::default()
        };
        assert!(entry.matches(&req("GET", "/", Some("user=a%20b%2Fc"), &&[][..])));
        assert!(entry.matches(&req("GET", "/", Some("user=a b/c"), &&[][..])));
        assert!(!entry.matches(&req("GET", "/", Some("user=a+b/c"), &&[][..])));
    }

    #[test]
    fn entries_are_ored_and_empty_matches_all() {
        let any = RuleMatcher::default();
        assert!(any.matches(&req("DELETE", "/anything", None, &&[][..])));
        let empty_entry = RuleMatcher::new(vec![MatchEntry::default()]);
        assert!(empty_entry.matches(&req("GET", "/x", None, &&[][..])));

        let either = RuleMatcher::new(vec![
            MatchEntry {
                path: Some(PathMatcher::Exact("/a".into())),
                ..MatchEntry::default()
            },
            MatchEntry {
                method: Some("POST".into()),
                ..MatchEntry::default()
            },
        ]);
        assert!(either.matches(&req("GET", "/a", None, &&[][..])));
        assert!(either.matches(&req("POST", "/b", None, &&[][..])));
        assert!(!either.matches(&req("GET", "/b", None, &&[][..])));
        assert_eq!(either.entries().len(), 2);
    }
}
