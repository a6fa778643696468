//! The resources the control plane sent, as JSON documents by key, and the
//! pure steps from an `Update` to the next document set ([`Documents::merge`])
//! and from a document set to a checked `ProxyConfig` ([`Documents::config`]).

use sinew_model::{parse_str, Proxy, ProxyConfig, Snapshot, DEFAULT_NAMESPACE};
use sinew_proto::{ResourceKey, Update};
use std::collections::BTreeMap;

/// A resource's identity: kind, namespace (never empty), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocKey {
    /// `Service`, `Route`, …
    pub kind: String,
    /// The namespace; an empty one on the wire is `default`.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl DocKey {
    /// A key from its parts; an empty namespace is the default one.
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        let namespace = if namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            namespace
        };
        Self {
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }

    fn from_wire(key: &ResourceKey) -> Self {
        Self::new(&key.kind, &key.namespace, &key.name)
    }
}

impl std::fmt::Display for DocKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A version of the proxy's resources: document text by key.
///
/// ```
/// use sinew_proto::{Document, ResourceKey, Update};
/// use sinew_proxy::control::Documents;
///
/// let web = r#"{"kind":"Service","metadata":{"name":"web"},"spec":{"endpoints":[{"address":"127.0.0.1:8080"}]}}"#;
/// let key = ResourceKey { kind: "Service".into(), namespace: "default".into(), name: "web".into() };
/// let update = Update {
///     version: 3,
///     full: true,
///     upserts: vec![Document { key: Some(key), json: web.into() }],
///     removals: vec![],
///     more: false,
/// };
/// let docs = Documents::default().merge(&update).unwrap();
/// assert_eq!((docs.version(), docs.len()), (3, 1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Documents {
    version: u64,
    docs: BTreeMap<DocKey, String>,
}

impl Documents {
    /// A set from its parts.
    pub fn from_parts(version: u64, docs: BTreeMap<DocKey, String>) -> Self {
        Self { version, docs }
    }

    /// The control plane's version of this set (its store revision); 0 = none.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// How many documents.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether there is no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }

    /// The documents in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&DocKey, &str)> {
        self.docs.iter().map(|(k, v)| (k, v.as_str()))
    }

    /// The set `update` makes of this one: a `full` update replaces it; an
    /// incremental one removes its removals, then writes its upserts (so a
    /// key in both stays). Removing an absent key is not an error.
    ///
    /// Only the envelope is checked here (every document has a key and is
    /// UTF-8); whether the documents are valid resources is
    /// [`Documents::config`]'s question. A set whose config is refused is
    /// still the base the control plane's next incremental update builds on.
    ///
    /// # Errors
    /// A document without a key, or whose text is not UTF-8.
    pub fn merge(&self, update: &Update) -> Result<Documents, String> {
        let mut docs = if update.full {
            BTreeMap::new()
        } else {
            self.docs.clone()
        };
        for key in &update.removals {
            docs.remove(&DocKey::from_wire(key));
        }
        for doc in &update.upserts {
            let key = doc
                .key
                .as_ref()
                .ok_or_else(|| format!("version {}: a document has no key", update.version))?;
            let key = DocKey::from_wire(key);
            let text = String::from_utf8(doc.json.to_vec())
                .map_err(|_| format!("version {}: {key} is not UTF-8", update.version))?;
            docs.insert(key, text);
        }
        Ok(Documents {
            version: update.version,
            docs,
        })
    }

    /// Parses every document and checks them as a whole: the config
    /// `proxy` serves with this set.
    ///
    /// # Errors
    /// Every problem found, one per line: a document that does not parse
    /// (named `control:KIND/NAMESPACE/NAME` with line, column and field), one
    /// whose content is not the resource its key names, and the snapshot's
    /// cross-resource conflicts.
    pub fn config(&self, proxy: &Proxy) -> Result<ProxyConfig, String> {
        let mut resources = Vec::with_capacity(self.docs.len());
        let mut errors: Vec<String> = Vec::new();
        for (key, text) in &self.docs {
            let source = format!("control:{}/{}/{}", key.kind, key.namespace, key.name);
            match parse_str(&source, text) {
                Ok(parsed) => {
                    let found: Vec<DocKey> = parsed
                        .iter()
                        .map(|r| {
                            let m = r.metadata();
                            DocKey::new(r.kind().as_str(), &m.namespace, &m.name)
                        })
                        .collect();
                    if found.as_slice() == std::slice::from_ref(key) {
                        resources.extend(parsed);
                    } else {
                        let found: Vec<String> = found.iter().map(ToString::to_string).collect();
                        errors.push(format!(
                            "{source}: the document holds [{}], not {key}",
                            found.join(", ")
                        ));
                    }
                }
                Err(e) => errors.extend(e.iter().map(ToString::to_string)),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        let snapshot = Snapshot::build(resources, self.version).map_err(|e| e.to_string())?;
        ProxyConfig::pushed(proxy.clone(), snapshot).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_proto::Document;

    fn proxy() -> Proxy {
        let text =
            "kind: Proxy\nmetadata: {name: web-1}\nspec: {service: web, control: 127.0.0.1:1}\n";
        match parse_str("proxy.yaml", text).map(|mut r| r.pop()) {
            Ok(Some(sinew_model::Resource::Proxy(p))) => p,
            other => panic!("not a proxy: {other:?}"),
        }
    }

    fn key(kind: &str, name: &str) -> ResourceKey {
        ResourceKey {
            kind: kind.into(),
            namespace: "default".into(),
            name: name.into(),
        }
    }

    fn service(name: &str, port: u16) -> Document {
        let json = format!(
            r#"{{"apiVersion":"sinew.dev/v1alpha1","kind":"Service","metadata":{{"name":"{name}","namespace":"default"}},"spec":{{"endpoints":[{{"address":"127.0.0.1:{port}"}}]}}}}"#
        );
        Document {
            key: Some(key("Service", name)),
            json: json.into_bytes().into(),
        }
    }

    fn route(name: &str, host: &str, backend: &str) -> Document {
        let json = format!(
            r#"{{"kind":"Route","metadata":{{"name":"{name}"}},"spec":{{"hosts":["{host}"],"rules":[{{"backends":[{{"service":"{backend}"}}]}}]}}}}"#
        );
        Document {
            key: Some(key("Route", name)),
            json: json.into_bytes().into(),
        }
    }

    fn update(
        version: u64,
        full: bool,
        upserts: Vec<Document>,
        removals: Vec<ResourceKey>,
    ) -> Update {
        Update {
            version,
            full,
            upserts,
            removals,
            more: false,
        }
    }

    fn endpoint_port(config: &ProxyConfig, name: &str) -> Option<u16> {
        let svc = config.snapshot.service(name)?;
        svc.spec.endpoints.first().map(|e| e.address.port())
    }

    #[test]
    fn a_full_update_becomes_the_snapshot_at_its_version() {
        let docs = Documents::default()
            .merge(&update(
                7,
                true,
                vec![service("a", 1), service("b", 2), route("r", "shop", "a")],
                vec![],
            ))
            .expect("merge");
        let config = docs.config(&proxy()).expect("config");
        assert_eq!(config.snapshot.version(), 7);
        assert_eq!(config.snapshot.len(), 3);
        assert_eq!(config.proxy.metadata.name, "web-1");
        assert!(config.snapshot.route_for_host("shop").is_some());
    }

    #[test]
    fn a_full_update_forgets_what_it_does_not_name() {
        let first = Documents::default()
            .merge(&update(
                1,
                true,
                vec![service("a", 1), service("b", 2)],
                vec![],
            ))
            .expect("merge");
        let second = first
            .merge(&update(2, true, vec![service("b", 3)], vec![]))
            .expect("merge");
        let config = second.config(&proxy()).expect("config");
        assert!(config.snapshot.service("a").is_none());
        assert_eq!(endpoint_port(&config, "b"), Some(3));
    }

    #[test]
    fn an_incremental_upsert_replaces_and_adds() {
        let base = Documents::default()
            .merge(&update(4, true, vec![service("a", 1)], vec![]))
            .expect("merge");
        let next = base
            .merge(&update(
                5,
                false,
                vec![service("a", 9), service("b", 2)],
                vec![],
            ))
            .expect("merge");
        let config = next.config(&proxy()).expect("config");
        assert_eq!(config.snapshot.version(), 5);
        assert_eq!(endpoint_port(&config, "a"), Some(9));
        assert_eq!(endpoint_port(&config, "b"), Some(2));
        // The base is untouched: merging is pure.
        assert_eq!((base.version(), base.len()), (4, 1));
    }

    #[test]
    fn a_removal_drops_the_resource_and_an_absent_one_is_ignored() {
        let base = Documents::default()
            .merge(&update(
                1,
                true,
                vec![service("a", 1), service("b", 2)],
                vec![],
            ))
            .expect("merge");
        let mut gone = key("Service", "a");
        gone.namespace = String::new(); // empty namespace on the wire = default
        let next = base
            .merge(&update(2, false, vec![], vec![gone, key("Route", "never")]))
            .expect("merge");
        let config = next.config(&proxy()).expect("config");
        assert!(config.snapshot.service("a").is_none());
        assert!(config.snapshot.service("b").is_some());
    }

    #[test]
    fn a_bad_document_is_refused_with_its_place() {
        let bad = Document {
            key: Some(key("Service", "a")),
            json: br#"{"kind":"Service","metadata":{"name":"a"},"spec":{"timeout":5}}"#
                .to_vec()
                .into(),
        };
        let docs = Documents::default()
            .merge(&update(3, true, vec![bad], vec![]))
            .expect("the envelope is fine");
        let error = docs.config(&proxy()).expect_err("refused");
        assert!(error.starts_with("control:Service/default/a:"), "{error}");
        assert!(
            error.contains("spec.timeout: duration needs a unit"),
            "{error}"
        );
    }

    #[test]
    fn cross_resource_conflicts_are_refused() {
        let docs = Documents::default()
            .merge(&update(
                3,
                true,
                vec![route("r", "shop", "missing")],
                vec![],
            ))
            .expect("merge");
        let error = docs.config(&proxy()).expect_err("refused");
        assert!(error.contains("unknown service `missing`"), "{error}");
    }

    #[test]
    fn a_document_must_be_the_resource_its_key_names() {
        let mut doc = service("a", 1);
        doc.key = Some(key("Service", "other"));
        let docs = Documents::default()
            .merge(&update(1, true, vec![doc], vec![]))
            .expect("merge");
        let error = docs.config(&proxy()).expect_err("refused");
        assert!(
            error.contains("holds [Service default/a], not Service default/other"),
            "{error}"
        );
    }

    #[test]
    fn an_envelope_without_key_or_utf8_is_refused() {
        let mut doc = service("a", 1);
        doc.key = None;
        let error = Documents::default()
            .merge(&update(1, true, vec![doc], vec![]))
            .expect_err("no key");
        assert_eq!(error, "version 1: a document has no key");
        let mut doc = service("a", 1);
        doc.json = vec![0xff, 0xfe].into();
        let error = Documents::default()
            .merge(&update(2, true, vec![doc], vec![]))
            .expect_err("not utf-8");
        assert_eq!(error, "version 2: Service default/a is not UTF-8");
    }
}
