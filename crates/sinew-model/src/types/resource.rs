//! `Resource`: any one of the kinds, as parsed from a document.

use std::fmt;

use super::{
    AuthorizationPolicy, Location, Mesh, Metadata, Proxy, Route, Service, Subscription, API_VERSION,
};

/// One parsed resource of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A `Service`.
    Service(Service),
    /// A `Route`.
    Route(Route),
    /// A `Proxy`.
    Proxy(Proxy),
    /// A `Mesh`.
    Mesh(Mesh),
    /// An `AuthorizationPolicy`.
    AuthorizationPolicy(AuthorizationPolicy),
    /// A `Subscription`.
    Subscription(Subscription),
}

/// The kinds of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Kind {
    /// `Service`.
    Service,
    /// `Route`.
    Route,
    /// `Proxy`.
    Proxy,
    /// `Mesh`.
    Mesh,
    /// `AuthorizationPolicy`.
    AuthorizationPolicy,
    /// `Subscription`.
    Subscription,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Service,
        Kind::Route,
        Kind::Proxy,
        Kind::Mesh,
        Kind::AuthorizationPolicy,
        Kind::Subscription,
    ];

    /// The `kind:` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::Route => "Route",
            Kind::Proxy => "Proxy",
            Kind::Mesh => "Mesh",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::Subscription => "Subscription",
        }
    }

    /// The kind named `s` (exact spelling).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Resource {
    /// The resource's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Resource::Service(_) => Kind::Service,
            Resource::Route(_) => Kind::Route,
            Resource::Proxy(_) => Kind::Proxy,
            Resource::Mesh(_) => Kind::Mesh,
            Resource::AuthorizationPolicy(_) => Kind::AuthorizationPolicy,
            Resource::Subscription(_) => Kind::Subscription,
        }
    }

    /// The resource's metadata.
    pub fn metadata(&self) -> &Metadata {
        match self {
            Resource::Service(r) => &r.metadata,
            Resource::Route(r) => &r.metadata,
            Resource::Proxy(r) => &r.metadata,
            Resource::Mesh(r) => &r.metadata,
            Resource::AuthorizationPolicy(r) => &r.metadata,
            Resource::Subscription(r) => &r.metadata,
        }
    }

    /// Where the resource was read from.
    pub fn location(&self) -> &Location {
        match self {
            Resource::Service(r) => &r.location,
            Resource::Route(r) => &r.location,
            Resource::Proxy(r) => &r.location,
            Resource::Mesh(r) => &r.location,
            Resource::AuthorizationPolicy(r) => &r.location,
            Resource::Subscription(r) => &r.location,
        }
    }
}

/// Each kind compares by content only (`metadata` and `spec`): where a resource
/// was read from (its [`Location`]) does not make it different.
macro_rules! eq_by_content {
    ($($kind:ident),*) => {$(
        impl PartialEq for $kind {
            fn eq(&self, other: &Self) -> bool {
                // Destructured so that a new field cannot be silently left out.
                let $kind { metadata, spec, location: _ } = self;
                *metadata == other.metadata && *spec == other.spec
            }
        }
    )*};
}

eq_by_content!(
    Service,
    Route,
    Proxy,
    Mesh,
    AuthorizationPolicy,
    Subscription
);

/// Serializes as a full document: `apiVersion`, `kind`, `metadata`, `spec`.
impl serde::Serialize for Resource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("apiVersion", API_VERSION)?;
        m.serialize_entry("kind", self.kind().as_str())?;
        m.serialize_entry("metadata", self.metadata())?;
        match self {
            Resource::Service(r) => m.serialize_entry("spec", &r.spec)?,
            Resource::Route(r) => m.serialize_entry("spec", &r.spec)?,
            Resource::Proxy(r) => m.serialize_entry("spec", &r.spec)?,
            Resource::Mesh(r) => m.serialize_entry("spec", &r.spec)?,
            Resource::AuthorizationPolicy(r) => m.serialize_entry("spec", &r.spec)?,
            Resource::Subscription(r) => m.serialize_entry("spec", &r.spec)?,
        }
        m.end()
    }
}
