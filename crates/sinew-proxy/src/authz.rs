//! Authorization of inbound requests by `AuthorizationPolicy` (topic
//! policies are decided by the broker: `sinew_model::access`).
//!
//! For the service a sidecar fronts: a request matching any `deny` policy is
//! refused; otherwise, when at least one `allow` policy targets the service,
//! only requests matching one of them pass (default deny); with no allow
//! policy everything not denied passes. A policy matches when any of its
//! rules does; a rule when every condition it states holds (an empty list
//! states none); a list when any of its entries matches.
//!
//! Conditions read the *normalized* path (the same one routing sees), so
//! `//admin`, `/./admin`, `/x/../admin` and `/%61dmin` are all `/admin` here.
//! Identity conditions (`from.identities`, `from.namespaces`) match only an
//! authenticated peer (a SPIFFE ID from mutual TLS): `*` means "any
//! authenticated caller", never "anyone".

use std::sync::Arc;

use sinew_model::access::spiffe_namespace;
use sinew_model::{AuthorizationPolicy, AuthzAction, AuthzRule, AuthzTarget};

use crate::route::{RequestView, StringMatcher};

/// Why a request was refused, for the 403, metrics and the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed; by this allow policy (`namespace/name`), or `None` with no allow policy.
    Allow(Option<Arc<str>>),
    /// Refused by this deny policy.
    Deny(Arc<str>),
    /// Refused: allow policies exist and none matched.
    NoAllowMatched,
}

impl Verdict {
    /// Whether the request may go on.
    pub fn allowed(&self) -> bool {
        matches!(self, Verdict::Allow(_))
    }

    /// The deciding policy's name, or `default-deny`.
    pub fn policy(&self) -> &str {
        match self {
            Verdict::Allow(Some(p)) | Verdict::Deny(p) => p,
            Verdict::Allow(None) => "",
            Verdict::NoAllowMatched => "default-deny",
        }
    }
}

/// An identity condition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdMatch {
    /// `*`: any authenticated identity.
    Any,
    /// `spiffe://td/ns/shop/*`: this prefix.
    Prefix(Box<str>),
    /// Exactly this identity.
    Exact(Box<str>),
}

impl IdMatch {
    fn new(s: &str) -> IdMatch {
        if s == "*" {
            IdMatch::Any
        } else if let Some(prefix) = s.strip_suffix('*') {
            IdMatch::Prefix(prefix.into())
        } else {
            IdMatch::Exact(s.into())
        }
    }

    fn matches(&self, id: &str) -> bool {
        match self {
            IdMatch::Any => true,
            IdMatch::Prefix(p) => id.starts_with(&**p),
            IdMatch::Exact(e) => id == &**e,
        }
    }
}

/// A path condition on the normalized path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathMatch {
    /// No `*`: this path exactly.
    Exact(Box<str>),
    /// `/a/*`: `/a` itself and everything under it (segment boundary).
    Prefix(Box<str>),
    /// Any other `*`: `*` matches within one segment, `**` across segments.
    Glob(Box<[GlobPart]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum GlobPart {
    Literal(Box<str>),
    Segment,
    Any,
}

impl PathMatch {
    fn new(s: &str) -> PathMatch {
        if !s.contains('*') {
            return PathMatch::Exact(s.into());
        }
        if let Some(prefix) = s.strip_suffix("/*") {
            if !prefix.contains('*') {
                return PathMatch::Prefix(prefix.into());
            }
        }
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('*') {
            if i > 0 {
                parts.push(GlobPart::Literal(rest[..i].into()));
            }
            if rest[i..].starts_with("**") {
                parts.push(GlobPart::Any);
                rest = &rest[i + 2..];
            } else {
                parts.push(GlobPart::Segment);
                rest = &rest[i + 1..];
            }
        }
        if !rest.is_empty() {
            parts.push(GlobPart::Literal(rest.into()));
        }
        PathMatch::Glob(parts.into())
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(e) => path == &**e,
            PathMatch::Prefix(p) => {
                path == &**p
                    || (path.starts_with(&**p) && path.as_bytes().get(p.len()) == Some(&b'/'))
            }
            PathMatch::Glob(parts) => glob(parts, path),
        }
    }
}

fn glob(parts: &[GlobPart], path: &str) -> bool {
    match parts.split_first() {
        None => path.is_empty(),
        Some((GlobPart::Literal(l), rest)) => {
            path.strip_prefix(&**l).is_some_and(|p| glob(rest, p))
        }
        Some((GlobPart::Segment, rest)) => {
            let end = path.find('/').unwrap_or(path.len());
            (0..=end).any(|i| glob(rest, &path[i..]))
        }
        Some((GlobPart::Any, rest)) => (0..=path.len())
            .filter(|i| path.is_char_boundary(*i))
            .any(|i| glob(rest, &path[i..])),
    }
}

/// One compiled rule.
#[derive(Debug, Clone)]
struct Rule {
    identities: Box<[IdMatch]>,
    namespaces: Box<[Box<str>]>,
    methods: Box<[Box<str>]>,
    paths: Box<[PathMatch]>,
    headers: Box<[(Box<str>, StringMatcher)]>,
}

impl Rule {
    fn new(r: &AuthzRule) -> Rule {
        Rule {
            identities: r.from.identities.iter().map(|s| IdMatch::new(s)).collect(),
            namespaces: r
                .from
                .namespaces
                .iter()
                .map(|s| s.as_str().into())
                .collect(),
            methods: r.to.methods.iter().map(|s| s.as_str().into()).collect(),
            paths: r.to.paths.iter().map(|s| PathMatch::new(s)).collect(),
            headers: r
                .when
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase().into(), StringMatcher::from(v)))
                .collect(),
        }
    }

    /// Whether `peer` satisfies the rule's `from`.
    fn caller_matches(&self, peer: Option<&str>) -> bool {
        if !self.identities.is_empty()
            && !peer.is_some_and(|id| self.identities.iter().any(|m| m.matches(id)))
        {
            return false;
        }
        if !self.namespaces.is_empty() {
            let ns = peer.and_then(spiffe_namespace);
            if !ns.is_some_and(|ns| self.namespaces.iter().any(|n| &**n == ns)) {
                return false;
            }
        }
        true
    }

    fn matches(&self, req: &RequestView<'_>, peer: Option<&str>) -> bool {
        if !self.caller_matches(peer) {
            return false;
        }
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(req.method))
        {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| p.matches(req.path)) {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, m)| m.matches(req.headers.header(name)))
    }
}

#[derive(Debug, Clone)]
struct Policy {
    name: Arc<str>,
    rules: Box<[Rule]>,
}

impl Policy {
    fn matches(&self, req: &RequestView<'_>, peer: Option<&str>) -> bool {
        self.rules.iter().any(|r| r.matches(req, peer))
    }
}

/// The policies of one service, compiled.
#[derive(Debug, Clone, Default)]
pub struct Authorizer {
    deny: Box<[Policy]>,
    allow: Box<[Policy]>,
}

impl Authorizer {
    /// The policies among `policies` that target `service` in `namespace`;
    /// `None` when there are none (everything passes, at no cost).
    pub fn for_service<'p>(
        policies: impl IntoIterator<Item = &'p AuthorizationPolicy>,
        namespace: &str,
        service: &str,
    ) -> Option<Authorizer> {
        Self::for_target(policies, namespace, |t| t.service() == Some(service))
    }

    fn for_target<'p>(
        policies: impl IntoIterator<Item = &'p AuthorizationPolicy>,
        namespace: &str,
        targets: impl Fn(&AuthzTarget) -> bool,
    ) -> Option<Authorizer> {
        let (mut deny, mut allow) = (Vec::new(), Vec::new());
        for p in policies {
            if p.metadata.namespace != namespace || !targets(&p.spec.target) {
                continue;
            }
            let compiled = Policy {
                name: format!("{}/{}", p.metadata.namespace, p.metadata.name).into(),
                rules: p.spec.rules.iter().map(Rule::new).collect(),
            };
            match p.spec.action {
                AuthzAction::Deny => deny.push(compiled),
                AuthzAction::Allow => allow.push(compiled),
            }
        }
        (!deny.is_empty() || !allow.is_empty()).then(|| Authorizer {
            deny: deny.into(),
            allow: allow.into(),
        })
    }

    /// The deny policies' names (`namespace/name`).
    pub fn deny_policies(&self) -> impl Iterator<Item = &str> {
        self.deny.iter().map(|p| &*p.name)
    }

    /// Decides `req` from `peer` (its SPIFFE ID when authenticated).
    pub fn check(&self, req: &RequestView<'_>, peer: Option<&str>) -> Verdict {
        if let Some(p) = self.deny.iter().find(|p| p.matches(req, peer)) {
            return Verdict::Deny(p.name.clone());
        }
        if self.allow.is_empty() {
            return Verdict::Allow(None);
        }
        match self.allow.iter().find(|p| p.matches(req, peer)) {
            Some(p) => Verdict::Allow(Some(p.name.clone())),
            None => Verdict::NoAllowMatched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::normalize_path;

    fn policies(yaml: &str) -> Vec<AuthorizationPolicy> {
        sinew_model::parse_str("p.yaml", yaml)
            .expect("policies parse")
            .into_iter()
            .filter_map(|r| match r {
                sinew_model::Resource::AuthorizationPolicy(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    struct Headers(Vec<(&'static str, &'static str)>);
    impl crate::route::HeaderSource for Headers {
        fn header(&self, name: &str) -> Option<&[u8]> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_bytes())
        }
    }

    fn check(a: &Authorizer, method: &str, raw_path: &str, peer: Option<&str>) -> Verdict {
        let path = normalize_path(raw_path).expect("normalizable");
        let headers = Headers(vec![("x-debug", "1")]);
        let req = RequestView {
            method,
            path: &path,
            query: None,
            headers: &headers,
        };
        a.check(&req, peer)
    }

    const SHOP: &str = "spiffe://sinew.local/ns/shop/svc/web";
    const OTHER: &str = "spiffe://sinew.local/ns/other/svc/batch";

    const MATRIX: &str = r#"
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  target: reviews
  action: deny
  rules:
    - to: {paths: ["/admin/*"]}
---
kind: AuthorizationPolicy
metadata: {name: readers, namespace: shop}
spec:
  target: reviews
  action: allow
  rules:
    - from: {identities: ["spiffe://sinew.local/ns/shop/*"]}
      to: {methods: [GET], paths: ["/reviews/*", "/api/*/status"]}
    - from: {namespaces: [other]}
      to: {methods: [GET], paths: ["/health"]}
      when: {headers: {x-debug: {exact: "1"}}}
---
kind: AuthorizationPolicy
metadata: {name: elsewhere, namespace: shop}
spec: {target: ratings, action: deny, rules: [{}]}
"#;

    #[test]
    fn deny_first_then_allow_then_default_deny() {
        let all = policies(MATRIX);
        let a = Authorizer::for_service(&all, "shop", "reviews").expect("policies target reviews");
        assert_eq!(
            check(&a, "GET", "/reviews/1", Some(SHOP)).policy(),
            "shop/readers"
        );
        assert!(check(&a, "GET", "/reviews/1", Some(SHOP)).allowed());
        // Not a matching method, identity, or path: default deny.
        assert_eq!(
            check(&a, "POST", "/reviews/1", Some(SHOP)),
            Verdict::NoAllowMatched
        );
        assert_eq!(
            check(&a, "GET", "/reviews/1", Some(OTHER)),
            Verdict::NoAllowMatched
        );
        assert_eq!(
            check(&a, "GET", "/reviews/1", None),
            Verdict::NoAllowMatched,
            "no identity, no match"
        );
        assert!(
            check(&a, "GET", "/health", Some(OTHER)).allowed(),
            "namespace + header rule"
        );
        assert!(
            check(&a, "GET", "/api/v2/status", Some(SHOP)).allowed(),
            "glob within a segment"
        );
        assert!(
            !check(&a, "GET", "/api/v2/x/status", Some(SHOP)).allowed(),
            "`*` stays in its segment"
        );
        // Deny wins over allow.
        assert_eq!(
            check(&a, "GET", "/admin/users", Some(SHOP)),
            Verdict::Deny("shop/no-admin".into())
        );
        // A policy for another service does not apply.
        assert!(Authorizer::for_service(&all, "shop", "web").is_none());
    }

    #[test]
    fn bypass_spellings_of_a_denied_path_are_denied() {
        let a = Authorizer::for_service(&policies(MATRIX), "shop", "reviews").expect("policies");
        for spelling in [
            "/admin/x",
            "//admin/x",
            "/./admin/x",
            "/a/../admin/x",
            "/reviews/../admin/x",
            "/%61dmin/x",
            "/%2e/admin/x",
            "/admin//x",
            "/admin",
        ] {
            assert_eq!(
                check(&a, "GET", spelling, Some(SHOP)),
                Verdict::Deny("shop/no-admin".into()),
                "{spelling}"
            );
        }
    }

    #[test]
    fn star_identity_means_authenticated() {
        let p = policies(
            "kind: AuthorizationPolicy\nmetadata: {name: any}\nspec: {target: s, action: allow, rules: [{from: {identities: ['*']}}]}\n",
        );
        let a = Authorizer::for_service(&p, "default", "s").expect("policy");
        assert!(check(&a, "GET", "/", Some(OTHER)).allowed());
        assert!(!check(&a, "GET", "/", None).allowed());
    }

    #[test]
    fn path_patterns() {
        assert!(PathMatch::new("/a/*").matches("/a"));
        assert!(PathMatch::new("/a/*").matches("/a/b/c"));
        assert!(!PathMatch::new("/a/*").matches("/ab"));
        assert!(PathMatch::new("/a/**/z").matches("/a/b/c/z"));
        assert!(PathMatch::new("*.json").matches("x.json"));
        assert!(!PathMatch::new("/x").matches("/x/"));
        assert_eq!(spiffe_namespace(SHOP), Some("shop"));
        assert_eq!(spiffe_namespace("spiffe://td/svc/x"), None);
    }
}
