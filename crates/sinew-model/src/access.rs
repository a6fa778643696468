//! Who may publish to or subscribe to a topic: the AuthorizationPolicies
//! with `topic`, decided for a caller's SPIFFE ID. The event broker enforces
//! this where the caller's certificate is known; sidecars' HTTP authorization
//! (for services) lives in the data plane.
//!
//! Same order as for services: a matching `deny` policy refuses; otherwise,
//! once an `allow` policy governs the topic, only a matching one admits
//! (default deny); with none, everything not denied passes. Identity
//! conditions need an authenticated caller: `*` means "any authenticated
//! workload", never "anyone".

use crate::{AuthorizationPolicy, AuthzAction, AuthzRule, TopicOperation};

/// The outcome, with the deciding policy (`NAMESPACE/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicVerdict {
    /// Allowed; by this allow policy, or `None` when no allow policy governs the topic.
    Allowed(Option<String>),
    /// Refused by this deny policy, or `default-deny`.
    Denied(String),
}

impl TopicVerdict {
    /// Whether the operation may go on.
    pub fn allowed(&self) -> bool {
        matches!(self, TopicVerdict::Allowed(_))
    }

    /// The deciding policy (`NAMESPACE/NAME` or `default-deny`); `None` when
    /// no allow policy governs the topic.
    pub fn policy(&self) -> Option<&str> {
        match self {
            TopicVerdict::Allowed(p) => p.as_deref(),
            TopicVerdict::Denied(p) => Some(p),
        }
    }
}

/// Whether `id` matches an identity pattern: `*` (any), `prefix*`, or exact.
pub fn identity_matches(pattern: &str, id: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => id.starts_with(prefix),
        None => id == pattern,
    }
}

/// The namespace of `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`.
pub fn spiffe_namespace(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("spiffe://")?;
    let (_, path) = rest.split_once('/')?;
    let mut parts = path.split('/');
    (parts.next()? == "ns").then_some(())?;
    parts.next()
}

fn rule_matches(rule: &AuthzRule, op: TopicOperation, caller: Option<&str>) -> bool {
    let from = &rule.from;
    if !from.identities.is_empty()
        && !caller.is_some_and(|id| from.identities.iter().any(|p| identity_matches(p, id)))
    {
        return false;
    }
    if !from.namespaces.is_empty() {
        let ns = caller.and_then(spiffe_namespace);
        if !ns.is_some_and(|ns| from.namespaces.iter().any(|n| n == ns)) {
            return false;
        }
    }
    rule.to.operations.is_empty() || rule.to.operations.contains(&op)
}

/// Decides whether `caller` (its SPIFFE ID, `None` when unauthenticated)
/// may do `op` on `topic` in `namespace`, under `policies`.
pub fn topic_access<'p>(
    policies: impl IntoIterator<Item = &'p AuthorizationPolicy>,
    namespace: &str,
    topic: &str,
    op: TopicOperation,
    caller: Option<&str>,
) -> TopicVerdict {
    let governing: Vec<&AuthorizationPolicy> = policies
        .into_iter()
        .filter(|p| p.metadata.namespace == namespace && p.spec.target.topic() == Some(topic))
        .collect();
    let name = |p: &AuthorizationPolicy| format!("{}/{}", p.metadata.namespace, p.metadata.name);
    let matches =
        |p: &&&AuthorizationPolicy| p.spec.rules.iter().any(|r| rule_matches(r, op, caller));
    let of = |action| governing.iter().filter(move |p| p.spec.action == action);
    if let Some(p) = of(AuthzAction::Deny).find(matches) {
        return TopicVerdict::Denied(name(p));
    }
    if of(AuthzAction::Allow).next().is_none() {
        return TopicVerdict::Allowed(None);
    }
    match of(AuthzAction::Allow).find(matches) {
        Some(p) => TopicVerdict::Allowed(Some(name(p))),
        None => TopicVerdict::Denied("default-deny".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Resource;

    fn policies(yaml: &str) -> Vec<AuthorizationPolicy> {
        crate::parse_str("p.yaml", yaml)
            .expect("policies parse")
            .into_iter()
            .filter_map(|r| match r {
                Resource::AuthorizationPolicy(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn topic_policies_decide_publish_and_subscribe_by_identity() {
        let all = policies(
            r#"
kind: AuthorizationPolicy
metadata: {name: writers, namespace: shop}
spec:
  topic: orders
  action: allow
  rules:
    - from: {identities: ["spiffe://sinew.local/ns/shop/svc/checkout"]}
      to: {operations: [publish]}
    - from: {namespaces: [shop]}
      to: {operations: [subscribe]}
---
kind: AuthorizationPolicy
metadata: {name: no-legacy, namespace: shop}
spec:
  topic: orders
  action: deny
  rules: [{from: {identities: ["spiffe://sinew.local/ns/shop/svc/legacy"]}}]
---
kind: AuthorizationPolicy
metadata: {name: orders-service, namespace: shop}
spec: {target: orders, action: deny, rules: [{}]}
"#,
        );
        let check = |op, caller: Option<&str>| topic_access(&all, "shop", "orders", op, caller);
        use TopicOperation::{Publish, Subscribe};
        let checkout = Some("spiffe://sinew.local/ns/shop/svc/checkout");
        let billing = Some("spiffe://sinew.local/ns/shop/svc/billing");
        assert_eq!(
            check(Publish, checkout),
            TopicVerdict::Allowed(Some("shop/writers".into()))
        );
        assert!(check(Subscribe, billing).allowed());
        assert_eq!(
            check(Publish, billing),
            TopicVerdict::Denied("default-deny".into())
        );
        assert!(!check(Subscribe, Some("spiffe://sinew.local/ns/other/svc/x")).allowed());
        assert_eq!(
            check(Subscribe, Some("spiffe://sinew.local/ns/shop/svc/legacy")),
            TopicVerdict::Denied("shop/no-legacy".into()),
            "deny first"
        );
        assert!(!check(Subscribe, None).allowed(), "unauthenticated");
        // The service policy named like the topic does not govern it; an
        // ungoverned topic is open.
        assert!(topic_access(&all, "shop", "payments", Publish, None).allowed());
        assert!(topic_access(&all, "other", "orders", Publish, None).allowed());
    }

    #[test]
    fn identity_patterns_and_namespaces() {
        assert!(identity_matches("*", "spiffe://a/ns/b/svc/c"));
        assert!(identity_matches(
            "spiffe://a/ns/b/*",
            "spiffe://a/ns/b/svc/c"
        ));
        assert!(!identity_matches(
            "spiffe://a/ns/b/svc/c",
            "spiffe://a/ns/b/svc/cd"
        ));
        assert_eq!(spiffe_namespace("spiffe://a/ns/b/svc/c"), Some("b"));
        assert_eq!(spiffe_namespace("spiffe://a/sinew/control"), None);
    }
}
