//! The view: what proxies are sent, derived from the store — every resource
//! as a JSON document, Services with their registered endpoints merged in —
//! rebuilt from the store's watch and published as an immutable [`View`].
//!
//! One builder per replica reads the store; every proxy stream of the replica
//! diffs the views it is given against what it last sent. Versions are store
//! revisions, so two replicas give the same content the same version.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use serde_json::Value;
use sinew_model::{Kind, DEFAULT_NAMESPACE};
use tokio::sync::watch;

use crate::{
    keys,
    registry::{self, Registration},
    store::{Event, KeyValue, Revision, Store, StoreError},
};

/// A pushed document's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct DocKey {
    pub(crate) kind: Kind,
    pub(crate) namespace: String,
    pub(crate) name: String,
}

/// Which proxies a document is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every proxy (Services, Routes, the Mesh).
    All,
    /// Proxies of this (namespace, service): policies and subscriptions.
    Service(String, String),
}

/// One document as pushed.
#[derive(Debug)]
pub(crate) struct Doc {
    pub(crate) json: Bytes,
    pub(crate) hash: u64,
    pub(crate) audience: Audience,
}

impl Audience {
    pub(crate) fn includes(&self, namespace: &str, service: &str) -> bool {
        match self {
            Audience::All => true,
            Audience::Service(ns, s) => ns == namespace && s == service,
        }
    }
}

/// Everything proxies may be sent, at one store revision.
#[derive(Debug, Default)]
pub(crate) struct View {
    /// The revision this content was read at (the version proxies ACK).
    pub(crate) version: Revision,
    /// The version of the view this one was built from.
    pub(crate) previous: Revision,
    pub(crate) docs: BTreeMap<Arc<DocKey>, Arc<Doc>>,
    /// Keys added, changed or removed since `previous`.
    pub(crate) changed: Vec<Arc<DocKey>>,
}

/// The builder's working state.
#[derive(Debug, Default)]
struct State {
    /// Stored documents, as stored (canonical JSON).
    resources: BTreeMap<DocKey, Bytes>,
    registry: BTreeMap<(String, String), BTreeMap<String, Registration>>,
    docs: BTreeMap<Arc<DocKey>, Arc<Doc>>,
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a store key means to the view.
enum Touch {
    Resource(DocKey),
    Registration(String, String, String),
    Other,
}

fn classify(key: &str) -> Touch {
    if let Some(rest) = key.strip_prefix(keys::RESOURCES) {
        if let Some(p) = keys::parts(rest, 3) {
            if let Some(kind) = Kind::from_name(p[0]) {
                return Touch::Resource(DocKey {
                    kind,
                    namespace: p[1].to_owned(),
                    name: p[2].to_owned(),
                });
            }
        }
    } else if let Some(rest) = key.strip_prefix(keys::REGISTRY) {
        if let Some(p) = keys::parts(rest, 3) {
            return Touch::Registration(p[0].to_owned(), p[1].to_owned(), p[2].to_owned());
        }
    }
    Touch::Other
}

impl State {
    /// Records one change; returns the document it affects.
    fn change(&mut self, key: &str, value: Option<&[u8]>) -> Option<DocKey> {
        match classify(key) {
            Touch::Resource(k) => {
                if k.kind == Kind::Proxy {
                    return None; // a proxy's bootstrap is its own file's business
                }
                match value {
                    Some(v) => {
                        self.resources.insert(k.clone(), Bytes::copy_from_slice(v));
                    }
                    None => {
                        self.resources.remove(&k);
                    }
                }
                Some(k)
            }
            Touch::Registration(ns, service, id) => {
                let entry = self
                    .registry
                    .entry((ns.clone(), service.clone()))
                    .or_default();
                match value.map(serde_json::from_slice::<Registration>) {
                    Some(Ok(r)) => {
                        entry.insert(id, r);
                    }
                    Some(Err(error)) => {
                        tracing::error!(%error, key, "unreadable registration; ignored");
                        entry.remove(&id);
                    }
                    None => {
                        entry.remove(&id);
                    }
                }
                if entry.is_empty() {
                    self.registry.remove(&(ns.clone(), service.clone()));
                }
                Some(DocKey {
                    kind: Kind::Service,
                    namespace: ns,
                    name: service,
                })
            }
            Touch::Other => None,
        }
    }

    /// Rebuilds the document `k`; its shared key when it changed.
    fn rebuild(&mut self, k: &DocKey) -> Option<Arc<DocKey>> {
        let doc = self.render(k);
        let before = self
            .docs
            .get_key_value(k)
            .map(|(key, d)| (key.clone(), d.hash));
        match (doc, before) {
            (Some(doc), Some((key, hash))) => (doc.hash != hash).then(|| {
                self.docs.insert(key.clone(), Arc::new(doc));
                key
            }),
            (Some(doc), None) => {
                let key = Arc::new(k.clone());
                self.docs.insert(key.clone(), Arc::new(doc));
                Some(key)
            }
            (None, Some((key, _))) => {
                self.docs.remove(k);
                Some(key)
            }
            (None, None) => None,
        }
    }

    fn render(&self, k: &DocKey) -> Option<Doc> {
        let registered = (k.kind == Kind::Service)
            .then(|| self.registry.get(&(k.namespace.clone(), k.name.clone())))
            .flatten()
            .filter(|r| r.values().any(registry::routable));
        let stored = self.resources.get(k);
        // The common case: a stored document pushed as stored.
        if let (Some(bytes), None) = (stored, registered) {
            if matches!(k.kind, Kind::Service | Kind::Route | Kind::Mesh) {
                return Some(Doc {
                    hash: fnv(bytes),
                    json: bytes.clone(),
                    audience: Audience::All,
                });
            }
        }
        let mut value = match (stored, registered) {
            (Some(bytes), _) => match serde_json::from_slice::<Value>(bytes) {
                Ok(v) => v,
                Err(error) => {
                    tracing::error!(%error, key = ?k, "unreadable resource in the store; ignored");
                    return None;
                }
            },
            // A registered service nobody described gets the defaults.
            (None, Some(_)) => serde_json::json!({
                "apiVersion": sinew_model::API_VERSION,
                "kind": "Service",
                "metadata": {"name": k.name, "namespace": k.namespace},
                "spec": {},
            }),
            (None, None) => return None,
        };
        if let Some(registered) = registered {
            merge_endpoints(&mut value, registered);
        }
        let audience = audience(k, &value);
        let json = serde_json::to_vec(&value).ok()?;
        Some(Doc {
            hash: fnv(&json),
            json: Bytes::from(json),
            audience,
        })
    }
}

fn merge_endpoints(service: &mut Value, registered: &BTreeMap<String, Registration>) {
    let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let endpoints = spec
        .entry("endpoints")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = endpoints.as_array_mut() else {
        return;
    };
    let mut seen: BTreeSet<String> = list
        .iter()
        .filter_map(|e| e.get("address").and_then(Value::as_str).map(str::to_owned))
        .collect();
    for r in registered.values().filter(|r| registry::routable(r)) {
        let address = r.address.to_string();
        if !seen.insert(address.clone()) {
            continue;
        }
        let mut e = serde_json::json!({"address": address, "weight": r.weight.max(1)});
        if !r.labels.is_empty() {
            e["labels"] = serde_json::to_value(&r.labels).unwrap_or_default();
        }
        if let Some(identity) = &r.identity {
            e["identity"] = Value::String(identity.clone());
        }
        list.push(e);
    }
}

fn audience(k: &DocKey, value: &Value) -> Audience {
    // A topic's policies matter to every sidecar that may publish or subscribe.
    if k.kind == Kind::AuthorizationPolicy && value.pointer("/spec/topic").is_some() {
        return Audience::All;
    }
    let field = match k.kind {
        Kind::AuthorizationPolicy => "target",
        Kind::Subscription => "service",
        _ => return Audience::All,
    };
    let target = value
        .pointer(&format!("/spec/{field}"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Audience::Service(k.namespace.clone(), target.to_owned())
}

/// Keeps the view current: lists the store, then follows its watch; lists
/// again whenever the watch breaks. Runs until `tx` has no receivers.
pub(crate) async fn build(store: Arc<dyn Store>, tx: watch::Sender<Arc<View>>) {
    let mut state = State::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        if tx.is_closed() {
            return;
        }
        let (revision, kvs) = match store.range(keys::ROOT).await {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(%error, "cannot read the store; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        relist(&mut state, &tx, revision, &kvs);
        let mut watch = match store.watch(keys::ROOT, revision + 1).await {
            Ok(w) => w,
            Err(error) => {
                tracing::warn!(%error, "cannot watch the store; listing again");
                continue;
            }
        };
        loop {
            let Some(first) = watch.recv().await else {
                break;
            };
            let mut batches = vec![first];
            while let Ok(more) = watch.try_recv() {
                batches.push(more);
            }
            let mut touched = BTreeSet::new();
            let mut last = 0;
            let mut broken = false;
            for batch in batches {
                match batch {
                    Ok(events) => {
                        for Event {
                            revision,
                            key,
                            value,
                        } in events
                        {
                            last = last.max(revision);
                            if let Some(k) = state.change(&key, value.as_deref()) {
                                touched.insert(k);
                            }
                        }
                    }
                    Err(StoreError::Compacted { .. }) | Err(_) => broken = true,
                }
            }
            publish(&mut state, &tx, last, touched);
            if broken {
                tracing::info!("store watch ended; listing again");
                break;
            }
        }
    }
}

fn relist(state: &mut State, tx: &watch::Sender<Arc<View>>, revision: Revision, kvs: &[KeyValue]) {
    let mut fresh = State::default();
    let mut touched: BTreeSet<DocKey> = state.docs.keys().map(|k| (**k).clone()).collect();
    for kv in kvs {
        if let Some(k) = fresh.change(&kv.key, Some(&kv.value)) {
            touched.insert(k);
        }
    }
    fresh.docs = std::mem::take(&mut state.docs);
    *state = fresh;
    publish(state, tx, revision, touched);
}

fn publish(
    state: &mut State,
    tx: &watch::Sender<Arc<View>>,
    revision: Revision,
    touched: BTreeSet<DocKey>,
) {
    let changed: Vec<Arc<DocKey>> = touched.iter().filter_map(|k| state.rebuild(k)).collect();
    let previous = tx.borrow().version;
    if changed.is_empty() && previous != 0 {
        return;
    }
    let view = View {
        version: revision.max(previous + 1),
        previous,
        docs: state.docs.clone(),
        changed,
    };
    tx.send_replace(Arc::new(view));
}

/// The default namespace, for callers that accept an absent one.
pub(crate) fn namespace_or_default(ns: Option<&str>) -> &str {
    ns.filter(|s| !s.is_empty()).unwrap_or(DEFAULT_NAMESPACE)
}
