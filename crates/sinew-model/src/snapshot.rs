//! `Snapshot`: an immutable, cross-checked, versioned set of resources with a content digest.

use std::collections::BTreeMap;

use crate::{
    AuthorizationPolicy, Error, ErrorKind, Errors, Kind, Location, Mesh, Metadata, ObjectKey,
    Protocol, Proxy, Resource, Route, RouteAction, Service, Subscription, API_VERSION,
    DEFAULT_NAMESPACE,
};

/// A validated set of resources, frozen. Build a new one to change anything.
///
/// ```
/// use sinew_model::{parse_str, Snapshot};
/// let text = "kind: Service\nmetadata: {name: web}\nspec: {endpoints: [{address: 127.0.0.1:8080}]}\n";
/// let snap = Snapshot::build(parse_str("web.yaml", text).unwrap(), 7).unwrap();
/// assert_eq!(snap.version(), 7);
/// assert!(snap.service("web").is_some());
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    version: u64,
    digest: String,
    services: BTreeMap<ObjectKey, Service>,
    routes: BTreeMap<ObjectKey, Route>,
    proxies: BTreeMap<ObjectKey, Proxy>,
    meshes: BTreeMap<ObjectKey, Mesh>,
    policies: BTreeMap<ObjectKey, AuthorizationPolicy>,
    subscriptions: BTreeMap<ObjectKey, Subscription>,
    /// Host (exact or `*.suffix`) → the Route claiming it.
    hosts: BTreeMap<String, ObjectKey>,
}

impl Snapshot {
    /// Checks `resources` against each other and freezes them as `version`.
    ///
    /// Refused: two resources with one kind+namespace+name; two Routes claiming
    /// one host; a Route backend or mirror naming an unknown service or subset
    /// (failover subsets included),
    /// or a `tcp` service; a Route whose host is a `tcp` service; more than one Mesh.
    ///
    /// # Errors
    /// Every conflict, each at `FILE:LINE:COL` of the field that makes it
    /// (`metadata.name` for duplicates, the host entry or backend field for Routes).
    pub fn build(resources: Vec<Resource>, version: u64) -> Result<Snapshot, Errors> {
        let mut s = Snapshot {
            version,
            ..Snapshot::default()
        };
        let mut errors = Vec::new();
        for r in resources {
            let (key, kind, location) = (r.metadata().key(), r.kind(), r.location().clone());
            let first = match r {
                Resource::Service(x) => insert(&mut s.services, key.clone(), x, |x| &x.location),
                Resource::Route(x) => insert(&mut s.routes, key.clone(), x, |x| &x.location),
                Resource::Proxy(x) => insert(&mut s.proxies, key.clone(), x, |x| &x.location),
                Resource::Mesh(x) => insert(&mut s.meshes, key.clone(), x, |x| &x.location),
                Resource::AuthorizationPolicy(x) => {
                    insert(&mut s.policies, key.clone(), x, |x| &x.location)
                }
                Resource::Subscription(x) => {
                    insert(&mut s.subscriptions, key.clone(), x, |x| &x.location)
                }
            };
            if let Some(first) = first {
                let msg = format!(
                    "duplicate {kind} `{key}`; first defined at {}",
                    first.place("metadata.name")
                );
                errors.push(at(
                    ErrorKind::DuplicateResource,
                    &location,
                    "metadata.name",
                    msg,
                ));
            }
        }
        if s.meshes.len() > 1 {
            let mut meshes = s.meshes.values();
            if let Some(first) = meshes.next() {
                for m in meshes {
                    let msg = format!(
                        "only one Mesh is allowed; another is defined at {}",
                        first.location.place("metadata.name")
                    );
                    errors.push(at(ErrorKind::Conflict, &m.location, "metadata.name", msg));
                }
            }
        }
        s.check_routes(&mut errors);
        if !errors.is_empty() {
            sort(&mut errors);
            return Err(Errors(errors));
        }
        let canonical = serde_json::to_vec(&Documents(&s)).unwrap_or_default();
        s.digest = crate::digest::fnv1a_hex(&canonical);
        Ok(s)
    }

    fn check_routes(&mut self, errors: &mut Vec<Error>) {
        for (key, route) in &self.routes {
            let loc = &route.location;
            for (i, host) in route.spec.hosts.iter().enumerate() {
                let field = format!("spec.hosts[{i}]");
                if let Some(other) = self.hosts.get(host).and_then(|k| self.routes.get(k)) {
                    let j = other.spec.hosts.iter().position(|h| h == host);
                    let other_field = format!("spec.hosts[{}]", j.unwrap_or(0));
                    errors.push(host_conflict(host, (other, &other_field), (route, &field)));
                    continue;
                }
                if let Some(svc) = self.services.get(&ObjectKey::new(&key.namespace, host)) {
                    if svc.spec.protocol == Protocol::Tcp {
                        let msg = format!(
                            "`{host}` is a tcp Service ({}); Routes apply to http services only",
                            svc.location.place("spec.protocol")
                        );
                        errors.push(at(ErrorKind::Conflict, loc, &field, msg));
                    }
                }
                self.hosts.insert(host.clone(), key.clone());
            }
            for (i, rule) in route.spec.rules.iter().enumerate() {
                if let RouteAction::Backends(backends) = &rule.action {
                    for (j, b) in backends.iter().enumerate() {
                        let field = format!("spec.rules[{i}].backends[{j}]");
                        let subset = b.subset.iter().map(|s| (s, format!("{field}.subset")));
                        let failover = (b.failover.iter().enumerate())
                            .map(|(k, s)| (s, format!("{field}.failover[{k}]")));
                        let subsets: Vec<_> = subset.chain(failover).collect();
                        self.check_target(
                            errors,
                            loc,
                            &key.namespace,
                            &field,
                            &b.service,
                            &subsets,
                        );
                    }
                }
                if let Some(m) = &rule.mirror {
                    let field = format!("spec.rules[{i}].mirror");
                    self.check_target(errors, loc, &key.namespace, &field, &m.service, &[]);
                }
            }
        }
    }

    fn check_target(
        &self,
        errors: &mut Vec<Error>,
        loc: &Location,
        namespace: &str,
        field: &str,
        service: &str,
        subsets: &[(&String, String)],
    ) {
        let svc_field = format!("{field}.service");
        let Some(svc) = self.services.get(&ObjectKey::new(namespace, service)) else {
            let msg = format!("unknown service `{service}` in namespace `{namespace}`");
            errors.push(at(ErrorKind::UnknownReference, loc, &svc_field, msg));
            return;
        };
        if svc.spec.protocol == Protocol::Tcp {
            let msg = format!(
                "`{service}` is a tcp Service ({}); Routes apply to http services only",
                svc.location.place("spec.protocol")
            );
            errors.push(at(ErrorKind::UnknownReference, loc, &svc_field, msg));
        }
        for (subset, subset_field) in subsets {
            if !svc.spec.subsets.iter().any(|s| &s.name == *subset) {
                let known: Vec<&str> = svc.spec.subsets.iter().map(|s| s.name.as_str()).collect();
                let msg = format!(
                    "service `{service}` has no subset `{subset}` (it has: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
                errors.push(at(ErrorKind::UnknownReference, loc, subset_field, msg));
            }
        }
    }

    /// The version given to [`Snapshot::build`].
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Hex digest of the content (not the version): equal content, equal digest.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// All Services by (namespace, name).
    pub fn services(&self) -> &BTreeMap<ObjectKey, Service> {
        &self.services
    }

    /// The Service `name` in the default namespace.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.service_in(DEFAULT_NAMESPACE, name)
    }

    /// The Service `name` in `namespace`.
    pub fn service_in(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services.get(&ObjectKey::new(namespace, name))
    }

    /// All Routes by (namespace, name).
    pub fn routes(&self) -> &BTreeMap<ObjectKey, Route> {
        &self.routes
    }

    /// The Route `name` in `namespace`.
    pub fn route(&self, namespace: &str, name: &str) -> Option<&Route> {
        self.routes.get(&ObjectKey::new(namespace, name))
    }

    /// The Route for `host` (lowercase, without port): an exact claim first, then
    /// the longest matching `*.suffix` claim. `None`: no Route; the host names a Service.
    pub fn route_for_host(&self, host: &str) -> Option<&Route> {
        if let Some(k) = self.hosts.get(host) {
            return self.routes.get(k);
        }
        let mut rest = host;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if let Some(k) = self.hosts.get(&format!("*.{rest}")) {
                return self.routes.get(k);
            }
        }
        None
    }

    /// All Proxies by (namespace, name).
    pub fn proxies(&self) -> &BTreeMap<ObjectKey, Proxy> {
        &self.proxies
    }

    /// All Meshes (at most one) by (namespace, name).
    pub fn meshes(&self) -> &BTreeMap<ObjectKey, Mesh> {
        &self.meshes
    }

    /// The Mesh, if one is defined.
    pub fn mesh(&self) -> Option<&Mesh> {
        self.meshes.values().next()
    }

    /// All AuthorizationPolicies by (namespace, name).
    pub fn policies(&self) -> &BTreeMap<ObjectKey, AuthorizationPolicy> {
        &self.policies
    }

    /// All Subscriptions by (namespace, name).
    pub fn subscriptions(&self) -> &BTreeMap<ObjectKey, Subscription> {
        &self.subscriptions
    }

    /// Number of resources.
    pub fn len(&self) -> usize {
        self.services.len()
            + self.routes.len()
            + self.proxies.len()
            + self.meshes.len()
            + self.policies.len()
            + self.subscriptions.len()
    }

    /// Whether there is no resource.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One resource as a full document.
struct Document<'a, S> {
    kind: Kind,
    metadata: &'a Metadata,
    spec: &'a S,
}

impl<S: serde::Serialize> serde::Serialize for Document<'_, S> {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(4))?;
        m.serialize_entry("apiVersion", API_VERSION)?;
        m.serialize_entry("kind", self.kind.as_str())?;
        m.serialize_entry("metadata", self.metadata)?;
        m.serialize_entry("spec", self.spec)?;
        m.end()
    }
}

/// Every resource of a snapshot as documents, ordered by kind then (namespace, name).
struct Documents<'a>(&'a Snapshot);

impl serde::Serialize for Documents<'_> {
    fn serialize<Z: serde::Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        use serde::ser::SerializeSeq;
        let snap = self.0;
        let mut seq = s.serialize_seq(Some(snap.len()))?;
        macro_rules! all {
            ($map:ident, $kind:expr) => {
                for r in snap.$map.values() {
                    seq.serialize_element(&Document {
                        kind: $kind,
                        metadata: &r.metadata,
                        spec: &r.spec,
                    })?;
                }
            };
        }
        all!(meshes, Kind::Mesh);
        all!(services, Kind::Service);
        all!(routes, Kind::Route);
        all!(policies, Kind::AuthorizationPolicy);
        all!(subscriptions, Kind::Subscription);
        all!(proxies, Kind::Proxy);
        seq.end()
    }
}

/// `{version, digest, resources: [documents…]}` — what `/config` shows; the
/// `resources` list parses back with [`crate::parse_str`].
impl serde::Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("version", &self.version)?;
        m.serialize_entry("digest", &self.digest)?;
        m.serialize_entry("resources", &Documents(self))?;
        m.end()
    }
}

fn insert<T>(
    map: &mut BTreeMap<ObjectKey, T>,
    key: ObjectKey,
    value: T,
    location: fn(&T) -> &Location,
) -> Option<Location> {
    match map.get(&key) {
        Some(existing) => Some(location(existing).clone()),
        None => {
            map.insert(key, value);
            None
        }
    }
}

/// An error at `field` of the resource read from `loc`: that field's own line
/// and column when kept, else the resource's first line.
pub(crate) fn at(kind: ErrorKind, loc: &Location, field: &str, message: String) -> Error {
    let (line, column) = loc.position(field);
    Error::new(kind, &loc.file, line, column, field, message)
}

/// Orders errors by place: file, line, column (stable, so ties keep their order).
pub(crate) fn sort(errors: &mut [Error]) {
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
}

/// Two Routes claim `host`: the error sits at the later claim in source order
/// and names both claims' places.
fn host_conflict(host: &str, a: (&Route, &str), b: (&Route, &str)) -> Error {
    let (pa, pb) = (a.0.location.place(a.1), b.0.location.place(b.1));
    let ((first, first_at), (second, second_at)) = if pa <= pb {
        ((a, pa), (b, pb))
    } else {
        ((b, pb), (a, pa))
    };
    let msg = format!(
        "host `{host}` is claimed by two Routes: `{}` at {first_at} and `{}` at {second_at}",
        first.0.metadata.key(),
        second.0.metadata.key(),
    );
    at(ErrorKind::Conflict, &second.0.location, second.1, msg)
}
