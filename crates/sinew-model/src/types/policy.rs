//! `AuthorizationPolicy`: who may call a service (inbound), or publish to or
//! subscribe to a topic; deny first, then allow.

use std::collections::BTreeMap;

use super::{Location, Metadata, ValueMatch};

/// Who may call a service. Deny policies are checked first; if any allow policy
/// targets a service, requests matching none of them are denied.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuthorizationPolicy {
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// Target, action and rules.
    pub spec: AuthorizationPolicySpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `AuthorizationPolicy.spec`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuthorizationPolicySpec {
    /// What the policy protects: `target` (a service) or `topic`.
    #[serde(flatten)]
    pub target: AuthzTarget,
    /// What happens to a request matching any rule.
    pub action: AuthzAction,
    /// Rules (OR); at least one.
    pub rules: Vec<AuthzRule>,
}

/// What an AuthorizationPolicy protects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AuthzTarget {
    /// `target: <service>`: calls to the service's sidecars (same namespace).
    #[serde(rename = "target")]
    Service(String),
    /// `topic: <topic>`: who may publish to or subscribe to the topic (same
    /// namespace); rules use `from` and `to.operations` only.
    #[serde(rename = "topic")]
    Topic(String),
}

impl AuthzTarget {
    /// The service, for a service policy.
    pub fn service(&self) -> Option<&str> {
        match self {
            AuthzTarget::Service(s) => Some(s),
            AuthzTarget::Topic(_) => None,
        }
    }

    /// The topic, for a topic policy.
    pub fn topic(&self) -> Option<&str> {
        match self {
            AuthzTarget::Topic(t) => Some(t),
            AuthzTarget::Service(_) => None,
        }
    }
}

/// What may be done with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicOperation {
    /// Publishing events to it.
    Publish,
    /// Receiving its events (a Subscription delivering to the service).
    Subscribe,
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthzAction {
    /// Matching requests are allowed.
    Allow,
    /// Matching requests are refused with 403.
    Deny,
}

/// One rule: all of its present parts must hold (AND); an empty part holds always.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct AuthzRule {
    /// Who calls.
    pub from: AuthzFrom,
    /// What is called.
    pub to: AuthzTo,
    /// Further conditions on the request.
    #[serde(skip_serializing_if = "AuthzWhen::is_empty")]
    pub when: AuthzWhen,
}

/// Caller conditions; each list is OR, empty = any.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuthzFrom {
    /// SPIFFE IDs (`spiffe://…`); a trailing `*` matches any suffix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    /// Caller namespaces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
}

/// Request conditions; each list is OR, empty = any.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct AuthzTo {
    /// Uppercase methods.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Paths (starting with `/`); a trailing `*` matches any suffix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Topic policies: the operations (`publish`, `subscribe`); empty = both.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<TopicOperation>,
}

/// Extra conditions.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct AuthzWhen {
    /// Header conditions, by lowercase name (AND).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueMatch>,
}

impl AuthzWhen {
    /// Whether there is no condition.
    pub fn is_empty(&self) -> bool {
        self.headers.is_empty()
    }
}
