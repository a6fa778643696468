//! Applying and deleting resources: validated against everything stored,
//! all of a file or nothing, with optimistic concurrency so two writers
//! never both validate against a state the other is changing.

use std::collections::BTreeMap;

use serde::Serialize;
use sinew_model::{parse_str, Errors, Kind, Resource, Snapshot};

use crate::{
    keys,
    store::{Compare, KeyValue, Op, Revision, Store, StoreError},
};

/// What an apply did to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    /// Kind.
    pub kind: &'static str,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
}

/// Why an apply or delete was refused.
#[derive(Debug)]
pub enum ApplyError {
    /// Invalid resources: every error, each at file:line:column: field.
    Invalid(Errors),
    /// The request itself is wrong (empty, unknown kind).
    BadRequest(String),
    /// Not there (delete).
    NotFound(String),
    /// Other resources depend on it (delete).
    Conflict(String),
    /// The store failed or refused the write.
    Store(StoreError),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Invalid(errors) => write!(f, "invalid resources:\n{errors}"),
            ApplyError::BadRequest(m) | ApplyError::NotFound(m) | ApplyError::Conflict(m) => {
                f.write_str(m)
            }
            ApplyError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ApplyError {}

impl From<StoreError> for ApplyError {
    fn from(e: StoreError) -> Self {
        ApplyError::Store(e)
    }
}

/// Attempts before giving up on a store that keeps changing under us.
const ATTEMPTS: usize = 8;

/// The stored resources, each parsed under the name `Kind/namespace/name`
/// (so a conflict with a stored resource names it).
pub(crate) async fn stored(
    store: &dyn Store,
) -> Result<(Revision, Vec<KeyValue>, Vec<Resource>), StoreError> {
    let guard = store.get(keys::RESOURCES_GUARD).await?;
    let (_, kvs) = store.range(keys::RESOURCES).await?;
    let mut resources = Vec::with_capacity(kvs.len());
    for kv in &kvs {
        let name = kv.key.strip_prefix(keys::RESOURCES).unwrap_or(&kv.key);
        let text =
            std::str::from_utf8(&kv.value).map_err(|e| StoreError::Internal(e.to_string()))?;
        match parse_str(name, text) {
            Ok(mut r) => resources.append(&mut r),
            Err(errors) => {
                return Err(StoreError::Internal(format!(
                    "stored resource {name} no longer parses: {errors}"
                )))
            }
        }
    }
    Ok((guard.map_or(0, |g| g.mod_revision), kvs, resources))
}

fn key_of(r: &Resource) -> String {
    let m = r.metadata();
    keys::resource(r.kind(), &m.namespace, &m.name)
}

/// Applies every resource of `text` (named `source` in errors), or none.
pub async fn apply(
    store: &dyn Store,
    source: &str,
    text: &str,
) -> Result<(Revision, Vec<Outcome>), ApplyError> {
    let incoming = parse_str(source, text).map_err(ApplyError::Invalid)?;
    if incoming.is_empty() {
        return Err(ApplyError::BadRequest(format!(
            "{source} holds no resources"
        )));
    }
    for _ in 0..ATTEMPTS {
        let (guard, kvs, current) = stored(store).await?;
        let by_key: BTreeMap<&str, &KeyValue> =
            kvs.iter().map(|kv| (kv.key.as_str(), kv)).collect();
        let replaced: std::collections::BTreeSet<String> = incoming.iter().map(key_of).collect();
        let mut merged: Vec<Resource> = current
            .into_iter()
            .filter(|r| !replaced.contains(&key_of(r)))
            .collect();
        merged.extend(incoming.iter().cloned());
        if let Err(errors) = Snapshot::build(merged, 0) {
            return Err(ApplyError::Invalid(errors));
        }
        let mut outcomes = Vec::with_capacity(incoming.len());
        let mut ops = Vec::new();
        for r in &incoming {
            let key = key_of(r);
            let json = serde_json::to_vec(r).map_err(|e| StoreError::Internal(e.to_string()))?;
            let action = match by_key.get(key.as_str()) {
                Some(kv) if kv.value == json => "unchanged",
                Some(_) => "configured",
                None => "created",
            };
            if action != "unchanged" {
                ops.push(Op::put(key, json));
            }
            let m = r.metadata();
            outcomes.push(Outcome {
                kind: r.kind().as_str(),
                namespace: m.namespace.clone(),
                name: m.name.clone(),
                action,
            });
        }
        if ops.is_empty() {
            let (revision, _) = store.range(keys::RESOURCES_GUARD).await?;
            return Ok((revision, outcomes));
        }
        ops.push(Op::put(keys::RESOURCES_GUARD, Vec::new()));
        let compare = vec![Compare::ModRevision(
            keys::RESOURCES_GUARD.to_owned(),
            guard,
        )];
        let outcome = store.txn(compare, ops).await?;
        if outcome.succeeded {
            return Ok((outcome.revision, outcomes));
        }
    }
    Err(ApplyError::Store(StoreError::Unavailable(
        "resources kept changing during the apply; try again".to_owned(),
    )))
}

/// Deletes one resource, unless others refer to it.
pub async fn delete(
    store: &dyn Store,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Revision, ApplyError> {
    let key = keys::resource(kind, namespace, name);
    for _ in 0..ATTEMPTS {
        let (guard, kvs, current) = stored(store).await?;
        let Some(existing) = kvs.iter().find(|kv| kv.key == key) else {
            return Err(ApplyError::NotFound(format!(
                "{kind} {namespace}/{name} does not exist"
            )));
        };
        let rest: Vec<Resource> = current.into_iter().filter(|r| key_of(r) != key).collect();
        if let Err(errors) = Snapshot::build(rest, 0) {
            let why: Vec<String> = errors
                .iter()
                .map(|e| format!("{} {}: {}", e.file, e.field, e.message))
                .collect();
            return Err(ApplyError::Conflict(format!(
                "cannot delete {kind} {namespace}/{name}: {}",
                why.join("; ")
            )));
        }
        let compare = vec![
            Compare::ModRevision(keys::RESOURCES_GUARD.to_owned(), guard),
            Compare::ModRevision(key.clone(), existing.mod_revision),
        ];
        let ops = vec![
            Op::delete(key.clone()),
            Op::put(keys::RESOURCES_GUARD, Vec::new()),
        ];
        let outcome = store.txn(compare, ops).await?;
        if outcome.succeeded {
            return Ok(outcome.revision);
        }
    }
    Err(ApplyError::Store(StoreError::Unavailable(
        "resources kept changing during the delete; try again".to_owned(),
    )))
}

/// The kind named in a URL or on the command line: any case, singular or plural.
pub fn kind_from_path(s: &str) -> Option<Kind> {
    let lower = s.to_ascii_lowercase();
    Kind::ALL.into_iter().find(|k| {
        let name = k.as_str().to_ascii_lowercase();
        let plural = if let Some(stem) = name.strip_suffix('y') {
            format!("{stem}ies")
        } else if name.ends_with('h') || name.ends_with('s') {
            format!("{name}es")
        } else {
            format!("{name}s")
        };
        lower == name || lower == plural
    })
}
