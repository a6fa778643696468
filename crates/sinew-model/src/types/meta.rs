//! The envelope every resource shares: metadata and identity key.

use std::collections::BTreeMap;

/// The only `apiVersion` this crate accepts.
pub const API_VERSION: &str = "sinew.dev/v1alpha1";

/// The namespace used when `metadata.namespace` is absent.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `metadata`: a resource's name, namespace and labels.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Metadata {
    /// DNS-1123 label, unique per kind and namespace.
    pub name: String,
    /// DNS-1123 label; `default` when absent.
    pub namespace: String,
    /// Free-form labels.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Metadata {
    /// Metadata with `name` in the default namespace and no labels.
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: DEFAULT_NAMESPACE.to_owned(),
            labels: BTreeMap::new(),
        }
    }

    /// The (namespace, name) key of this resource.
    pub fn key(&self) -> ObjectKey {
        ObjectKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// Identity of a resource within its kind: namespace, then name (ordered that way).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ObjectKey {
    /// A key from borrowed parts.
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}
