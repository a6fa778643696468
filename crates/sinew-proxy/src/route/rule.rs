//! A compiled route rule and what it does with a matched request: forward (weighted backends, rewrite, header edits) or answer directly.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::matcher::{prefix_matches, RuleMatcher};
use super::request::RequestView;
use super::weighted::WeightedSequence;

/// Index of an upstream cluster in the proxy's cluster list (handed out by
/// the `cluster` callback of [`RouteTable::build`](super::RouteTable::build)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterId(pub u32);

/// One compiled rule of a virtual host.
#[derive(Debug)]
pub struct Rule {
    /// Name for metrics: the Route's name, or `service/NAME` for an implicit route.
    pub route_name: Arc<str>,
    /// Position of the rule in its Route (0-based).
    pub index: usize,
    /// What to do with a matched request.
    pub action: Action,
    /// Overall timeout overriding the service's; `None` = the service's.
    pub timeout: Option<Duration>,
    /// Retry policy overriding the service's; `None` = the service's.
    pub retries: Option<sinew_model::Retries>,
    /// `retries`, compiled, with its own budget (kept across reloads once
    /// the config is compiled).
    pub retry: Option<(
        crate::resilience::RetryPolicy,
        std::sync::Arc<crate::resilience::RetryBudget>,
    )>,
    /// The proxy's answer when no endpoint is left for the picked backend.
    pub fallback: Option<DirectResponse>,
    /// Injected delays and aborts.
    pub fault: Option<sinew_model::Fault>,
    /// Traffic mirroring.
    pub mirror: Option<Mirror>,
    /// The rule's rate limit on the requests it matches.
    pub rate_limit: Option<crate::ratelimit::Limiter>,
    pub(crate) matcher: RuleMatcher,
}

impl Rule {
    /// Whether this rule's match list accepts the request.
    pub fn matches(&self, req: &RequestView<'_>) -> bool {
        self.matcher.matches(req)
    }
}

/// What a rule does.
#[derive(Debug)]
pub enum Action {
    /// Forward upstream.
    Forward(Forward),
    /// Answer from the proxy itself.
    Direct(DirectResponse),
}

/// Forwarding: weighted backends plus request edits.
#[derive(Debug)]
pub struct Forward {
    /// Path rewrite applied before forwarding.
    pub rewrite: Option<PrefixRewrite>,
    /// Edits of the request sent upstream.
    pub request_headers: HeaderOps,
    /// Edits of the response sent downstream.
    pub response_headers: HeaderOps,
    backends: Box<[Backend]>,
    sequence: WeightedSequence,
}

impl Forward {
    /// Forwarding to `backends` (at least one) in proportion to their weights.
    pub(crate) fn new(backends: Vec<Backend>) -> Self {
        let weights: Vec<u32> = backends.iter().map(|b| b.weight).collect();
        Self {
            rewrite: None,
            request_headers: HeaderOps::default(),
            response_headers: HeaderOps::default(),
            sequence: WeightedSequence::new(&weights),
            backends: backends.into_boxed_slice(),
        }
    }

    /// The backend for the next request, in proportion to weights: exact
    /// over each turn of a smooth weighted sequence, lock-free.
    pub fn pick_backend(&self) -> &Backend {
        let i = self.sequence.next();
        // The sequence only holds indices of `backends`; fall back to the first.
        self.backends.get(i).unwrap_or(&self.backends[0])
    }

    /// All backends, in the order written.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
}

/// A weighted destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// The cluster serving it.
    pub cluster: ClusterId,
    /// The service's name.
    pub service: Arc<str>,
    /// The subset, if one was named.
    pub subset: Option<Arc<str>>,
    /// Relative weight.
    pub weight: u32,
    /// Clusters of the failover subsets, tried in order when the ones
    /// before have no usable endpoint.
    pub failover: Vec<ClusterId>,
}

/// Mirroring: a copy of some requests goes to another cluster; its response is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// The cluster receiving the copies.
    pub cluster: ClusterId,
    /// Its service's name.
    pub service: Arc<str>,
    /// Share of requests mirrored, 0..=100.
    pub percent: f64,
}

/// A response produced by the proxy.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: bytes::Bytes,
    /// Headers added to the response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// Header edits in one direction: removals first, then sets (replacing any value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Headers set, replacing existing values.
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed.
    pub remove: Vec<HeaderName>,
}

impl HeaderOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }

    /// Applies the edits to `headers`: removals, then sets.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// Replaces the path prefix a rule matched with another.
///
/// The replaced prefix is the longest of the rule's match entries' prefixes
/// that the path has (on a segment boundary): a `prefix` path condition
/// contributes its prefix, an `exact` one the whole path, and an entry
/// without a path condition (or with a regex) contributes `/`.
///
/// The slash at the junction is kept exactly once, and a trailing slash is
/// preserved: with prefix `/api` → `/v2`, `/api/x` becomes `/v2/x`, `/api`
/// becomes `/v2`; with `/api` → `/`, `/api/x` becomes `/x`; with `/` → `/v2`,
/// `/x` becomes `/v2/x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixRewrite {
    /// Candidate matched prefixes, longest first.
    prefixes: Box<[Box<str>]>,
    replacement: Box<str>,
}

impl PrefixRewrite {
    /// A rewrite of whichever of `prefixes` matched into `replacement`.
    pub fn new<I, S>(prefixes: I, replacement: &str) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Box<str>>,
    {
        let mut prefixes: Vec<Box<str>> = prefixes.into_iter().map(Into::into).collect();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        prefixes.dedup();
        Self {
            prefixes: prefixes.into_boxed_slice(),
            replacement: replacement.into(),
        }
    }

    /// The rewritten path; borrowed when no prefix applies or nothing changes.
    ///
    /// ```
    /// use sinew_proxy::route::PrefixRewrite;
    /// let r = PrefixRewrite::new(["/api"], "/v2");
    /// assert_eq!(r.apply("/api/users"), "/v2/users");
    /// assert_eq!(r.apply("/other"), "/other");
    /// ```
    pub fn apply<'p>(&self, path: &'p str) -> Cow<'p, str> {
        let Some(prefix) = self.prefixes.iter().find(|p| prefix_matches(p, path)) else {
            return Cow::Borrowed(path);
        };
        // The rest of the path, starting with the slash at the junction (or empty).
        let rest = if prefix.ends_with('/') {
            &path[prefix.len() - 1..]
        } else {
            &path[prefix.len()..]
        };
        let mut out = String::with_capacity(self.replacement.len() + rest.len() + 1);
        if rest.is_empty() {
            out.push_str(&self.replacement);
        } else {
            out.push_str(self.replacement.trim_end_matches('/'));
            out.push_str(rest);
        }
        if !out.starts_with('/') {
            out.insert(0, '/');
        }
        if out == path {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rewrites() {
        let cases = [
            (&["/api"][..], "/v2", "/api/x", "/v2/x"),
            (&["/api"], "/v2", "/api", "/v2"),
            (&["/api"], "/v2", "/api/", "/v2/"),
            (&["/api"], "/v2/", "/api/x", "/v2/x"),
            (&["/api"], "/", "/api/x", "/x"),
            (&["/api"], "/", "/api", "/"),
            (&["/api/"], "/", "/api/x/y", "/x/y"),
            (&["/api/"], "/v1/", "/api/x", "/v1/x"),
            (&["/"], "/v2", "/x", "/v2/x"),
            (&["/"], "/v2", "/", "/v2/"),
            (&["/"], "/", "/x", "/x"),
            (&["/api/users"], "/u", "/api/users", "/u"),
            (&["/api"], "/v2", "/apix", "/apix"),
            (&["/api"], "/v2", "/other", "/other"),
            (&["/", "/api", "/api/v1"], "/new", "/api/v1/x", "/new/x"),
            (&["/", "/api", "/api/v1"], "/new", "/api/v2", "/new/v2"),
            (&["/", "/api", "/api/v1"], "/new", "/web", "/new/web"),
        ];
        for (prefixes, to, path, want) in cases {
            let rewrite = PrefixRewrite::new(prefixes.iter().copied(), to);
            assert_eq!(rewrite.apply(path), want, "{prefixes:?} -> {to} on {path}");
        }
        let same = PrefixRewrite::new(["/a"], "/a");
        assert!(matches!(same.apply("/a/b"), Cow::Borrowed("/a/b")));
    }

    #[test]
    fn header_ops_remove_then_set() {
        let ops = HeaderOps {
            set: vec![(
                HeaderName::from_static("x-env"),
                HeaderValue::from_static("prod"),
            )],
            remove: vec![
                HeaderName::from_static("x-debug"),
                HeaderName::from_static("x-env"),
            ],
        };
        let mut headers = HeaderMap::new();
        headers.append("x-debug", HeaderValue::from_static("1"));
        headers.append("x-env", HeaderValue::from_static("dev"));
        headers.append("x-env", HeaderValue::from_static("test"));
        headers.append("x-keep", HeaderValue::from_static("k"));
        ops.apply(&mut headers);
        assert!(headers.get("x-debug").is_none());
        let env: Vec<_> = headers.get_all("x-env").iter().collect();
        assert_eq!(env, vec![&HeaderValue::from_static("prod")]);
        assert_eq!(headers.get("x-keep"), Some(&HeaderValue::from_static("k")));
        assert!(!ops.is_empty());
        assert!(HeaderOps::default().is_empty());
    }

    fn backend(cluster: u32, weight: u32) -> Backend {
        Backend {
            cluster: ClusterId(cluster),
            service: "svc".into(),
            subset: None,
            weight,
            failover: Vec::new(),
        }
    }

    #[test]
    fn pick_backend_follows_weights() {
        let forward = Forward::new(vec![backend(0, 90), backend(1, 10)]);
        let mut counts = [0usize; 2];
        for _ in 0..2_000 {
            counts[forward.pick_backend().cluster.0 as usize] += 1;
        }
        // Within ±3 % of a 90/10 split (in fact exact).
        assert!((1_740..=1_860).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts, [1_800, 200]);
        assert_eq!(forward.backends().len(), 2);
    }

    #[test]
    fn single_backend_is_always_picked() {
        let forward = Forward::new(vec![backend(7, 1)]);
        assert!((0..10).all(|_| forward.pick_backend().cluster == ClusterId(7)));
    }
}
