//! `Route`: which requests for some hosts go where, as ordered first-match-wins rules.

use std::collections::BTreeMap;

use super::{Location, Metadata, Percent, RateLimit, Retries, ValueMatch};
use crate::{Duration, Pattern};

/// How requests for some hosts are matched and split.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Route {
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// Hosts and rules.
    pub spec: RouteSpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `Route.spec`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteSpec {
    /// Lowercase host names (no port); a leading `*.` matches any subdomain. At least one.
    pub hosts: Vec<String>,
    /// Ordered rules; the first whose match succeeds wins. At least one.
    pub rules: Vec<RouteRule>,
    /// Requests entering through a gateway's ingress listener must carry a
    /// valid JWT (`Authorization: Bearer …`); absent = no token needed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtRule>,
}

/// `Route.spec.jwt`: how a gateway validates end-user tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JwtRule {
    /// Accepted `iss` values; empty = any issuer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one must be present); empty = any audience.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Where the signing keys (a JWKS) come from.
    pub jwks: JwksSource,
    /// Clock skew allowed on `exp`, `nbf` and `iat`. Default 60s.
    pub leeway: Duration,
}

/// A JSON Web Key Set's location.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JwksSource {
    /// A file, read when the config is (re)loaded.
    File(std::path::PathBuf),
    /// An `http://` or `https://` URL, fetched at start and every `refresh`.
    Url {
        /// The URL.
        url: String,
        /// Between fetches. Default 5m.
        refresh: Duration,
    },
}

/// One rule: a match, an action and per-rule policies.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteRule {
    /// Alternatives (OR); empty = every request matches.
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<RouteMatch>,
    /// Where matched requests go: `backends` or `direct_response`.
    #[serde(flatten)]
    pub action: RouteAction,
    /// Overall timeout, overriding the service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Path rewrite before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Header edits on the request and response.
    #[serde(skip_serializing_if = "HeaderPolicy::is_empty")]
    pub headers: HeaderPolicy,
    /// Injected delays and aborts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Copy of traffic sent (and its response ignored) to another service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Mirror>,
    /// Retry policy, overriding the service's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    /// Answer given by the proxy when the picked backend (and its failover
    /// subsets) has no usable endpoint left; absent = the usual 503.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<DirectResponse>,
    /// Local rate limit on the requests this rule matches (all its backends
    /// together), checked before the services' own limits; absent = none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

impl RouteRule {
    /// Whether the rule matches every request (no `match`).
    pub fn matches_all(&self) -> bool {
        self.matches.is_empty()
    }
}

/// One match alternative: all of its present fields must hold (AND).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct RouteMatch {
    /// Path condition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// Method, uppercase (`GET`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Header conditions, by lowercase header name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueMatch>,
    /// Query parameter conditions, by name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, ValueMatch>,
}

/// Path condition; exactly one form.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PathMatch {
    /// The path equals this (starts with `/`).
    Exact(String),
    /// The path starts with this, on a segment boundary when it ends without `/`
    /// (`/api` matches `/api` and `/api/x`, not `/apix`).
    Prefix(String),
    /// The whole path matches this regex.
    Regex(Pattern),
}

impl PathMatch {
    /// Whether `path` (already normalized) satisfies this condition.
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(e) => path == e,
            Self::Prefix(p) => {
                path.starts_with(p.as_str())
                    && (p.ends_with('/')
                        || path.len() == p.len()
                        || path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            Self::Regex(r) => r.is_match(path),
        }
    }
}

/// What a rule does with matched requests.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteAction {
    /// Forward to these weighted backends (at least one; weights sum above 0).
    Backends(Vec<Backend>),
    /// Answer from the proxy itself.
    DirectResponse(DirectResponse),
}

/// A weighted destination: a service, optionally one of its subsets.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Backend {
    /// Service name, in the Route's namespace.
    pub service: String,
    /// Subset of that service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Relative weight (0 allowed, the rule's sum must be above 0). Default 1.
    pub weight: u32,
    /// Subsets of the same service tried in order when `subset` has no usable
    /// (healthy, not ejected) endpoint, like Envoy priority levels; needs `subset`,
    /// never repeats it nor itself. Empty = no failover.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<String>,
}

impl Backend {
    /// The subsets to try in priority order: `subset` then each `failover` entry.
    /// Empty when the backend is the whole service.
    pub fn priorities(&self) -> impl Iterator<Item = &str> + '_ {
        self.subset.iter().chain(&self.failover).map(String::as_str)
    }
}

/// A response produced by the proxy.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectResponse {
    /// Status, 100..=599.
    pub status: u16,
    /// Body; absent = empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Response headers, by lowercase name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

/// Path rewrite: the part matched by the rule's path prefix is replaced by `prefix`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Rewrite {
    /// Replacement prefix, starting with `/`.
    pub prefix: String,
}

/// Header edits on both directions.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct HeaderPolicy {
    /// Edits of the request sent upstream.
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request: HeaderOps,
    /// Edits of the response sent downstream.
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response: HeaderOps,
}

impl HeaderPolicy {
    /// Whether neither direction has an edit.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// Header edits in one direction: removals first, then sets (replacing).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct HeaderOps {
    /// Headers set, by lowercase name.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Lowercase names of headers removed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.remove.is_empty()
    }
}

/// Fault injection; at least one of delay and abort.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fault {
    /// Delay some requests before forwarding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// Answer some requests with an error status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// Injected delay.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultDelay {
    /// How long.
    pub fixed: Duration,
    /// Share of requests delayed, 0..=100. Default 100.
    pub percent: Percent,
}

/// Injected abort.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultAbort {
    /// Status returned, 100..=599.
    pub status: u16,
    /// Share of requests aborted, 0..=100. Default 100.
    pub percent: Percent,
}

/// Traffic mirroring.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mirror {
    /// Service receiving the copies (same namespace).
    pub service: String,
    /// Share of requests mirrored, 0..=100. Default 100.
    pub percent: Percent,
}
