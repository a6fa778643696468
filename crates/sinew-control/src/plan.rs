//! What each proxy is sent: the diff between the view it was last sent and
//! the current one (for its audience), cut into parts of at most
//! [`PART_BYTES`] as the stream drains.

use std::sync::Arc;

use sinew_proto::{Document, ResourceKey, Update};

use crate::view::{Doc, DocKey, View};

/// What one proxy has been sent: the view it was last diffed against (its
/// documents are that view's, filtered by audience). Streams share views,
/// so this costs one pointer per stream, not one entry per document.
#[derive(Debug, Default)]
pub(crate) struct Sent {
    view: Option<Arc<View>>,
}

fn key_of(k: &DocKey) -> ResourceKey {
    ResourceKey {
        kind: k.kind.as_str().to_owned(),
        namespace: k.namespace.clone(),
        name: k.name.clone(),
    }
}

/// Largest part of an update, in document bytes: tonic keeps each stream's
/// send buffer at the size of the largest message it sent, so parts bound
/// the memory a stream holds whatever the size of the mesh.
const PART_BYTES: usize = 64 << 10;

/// What a proxy is to be sent for one version: references into the view,
/// turned into messages one part at a time as the stream drains, so a
/// thousand streams catching up on a large mesh hold pointers, not copies.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) version: u64,
    full: bool,
    upserts: Vec<(Arc<DocKey>, Arc<Doc>)>,
    removals: Vec<Arc<DocKey>>,
}

impl Plan {
    /// The parts: at most [`PART_BYTES`] of documents each (a larger document
    /// goes alone); only the first is `full` and carries the removals; all
    /// but the last have `more` set.
    pub(crate) fn parts(self) -> impl Iterator<Item = Update> {
        let Plan {
            version,
            full,
            upserts,
            removals,
        } = self;
        let mut removals = Some(removals);
        let mut upserts = upserts.into_iter().peekable();
        let mut first = true;
        std::iter::from_fn(move || {
            if !first && upserts.peek().is_none() {
                return None;
            }
            let mut part = Update {
                version,
                full: full && first,
                upserts: Vec::new(),
                removals: removals
                    .take()
                    .unwrap_or_default()
                    .iter()
                    .map(|k| key_of(k))
                    .collect(),
                more: false,
            };
            first = false;
            let mut bytes = 0;
            while let Some((k, d)) = upserts.peek() {
                if bytes > 0 && bytes + d.json.len() > PART_BYTES {
                    break;
                }
                bytes += d.json.len();
                part.upserts.push(Document {
                    key: Some(key_of(k)),
                    json: d.json.clone(),
                });
                upserts.next();
            }
            part.more = upserts.peek().is_some();
            Some(part)
        })
    }
}

/// What brings this proxy from `sent` to `view`; `None` when nothing
/// changed for it.
pub(crate) fn diff(
    view: &Arc<View>,
    sent: &mut Sent,
    namespace: &str,
    service: &str,
) -> Option<Plan> {
    let mine = |v: &View, k: &DocKey| -> Option<u64> {
        v.docs
            .get(k)
            .filter(|d| d.audience.includes(namespace, service))
            .map(|d| d.hash)
    };
    let mut plan = Plan {
        version: view.version,
        full: false,
        upserts: Vec::new(),
        removals: Vec::new(),
    };
    let last = sent.view.replace(view.clone());
    let Some(last) = last else {
        plan.full = true;
        plan.upserts = view
            .docs
            .iter()
            .filter(|(_, d)| d.audience.includes(namespace, service))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect();
        return Some(plan);
    };
    let candidates: Vec<Arc<DocKey>> = if last.version == view.previous {
        view.changed.clone()
    } else {
        // Views were skipped (this stream was slow): compare everything.
        let mut all: std::collections::BTreeSet<Arc<DocKey>> = view.docs.keys().cloned().collect();
        all.extend(last.docs.keys().cloned());
        all.into_iter().collect()
    };
    for k in candidates {
        match (mine(&last, &k), mine(view, &k)) {
            (Some(a), Some(b)) if a == b => {}
            (_, Some(_)) => {
                if let Some(d) = view.docs.get(&k) {
                    plan.upserts.push((k, d.clone()));
                }
            }
            (Some(_), None) => plan.removals.push(k),
            (None, None) => {}
        }
    }
    (!plan.upserts.is_empty() || !plan.removals.is_empty()).then_some(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::view::Audience;
    use sinew_model::Kind;
    use std::collections::BTreeMap;

    fn key(kind: Kind, name: &str) -> Arc<DocKey> {
        Arc::new(DocKey {
            kind,
            namespace: "default".into(),
            name: name.into(),
        })
    }

    fn view(
        version: u64,
        previous: u64,
        docs: &[(Kind, &str, u64, Audience)],
        changed: &[&str],
    ) -> Arc<View> {
        let docs: BTreeMap<Arc<DocKey>, Arc<Doc>> = docs
            .iter()
            .map(|(kind, name, hash, audience)| {
                let doc = Doc {
                    json: bytes::Bytes::from(format!("{{\"n\":\"{name}\",\"h\":{hash}}}")),
                    hash: *hash,
                    audience: audience.clone(),
                };
                (key(*kind, name), Arc::new(doc))
            })
            .collect();
        let changed = changed
            .iter()
            .map(|n| {
                docs.keys()
                    .find(|k| k.name == *n)
                    .cloned()
                    .unwrap_or_else(|| key(Kind::Service, n))
            })
            .collect();
        Arc::new(View {
            version,
            previous,
            docs,
            changed,
        })
    }

    fn names(p: &Plan) -> (Vec<String>, Vec<String>) {
        let up = p.upserts.iter().map(|(k, _)| k.name.clone()).collect();
        let rm = p.removals.iter().map(|k| k.name.clone()).collect();
        (up, rm)
    }

    #[test]
    fn first_update_is_full_and_filtered_by_audience() {
        let mine = Audience::Service("default".into(), "web".into());
        let theirs = Audience::Service("default".into(), "db".into());
        let v = view(
            5,
            4,
            &[
                (Kind::Service, "a", 1, Audience::All),
                (Kind::AuthorizationPolicy, "p-web", 2, mine),
                (Kind::AuthorizationPolicy, "p-db", 3, theirs),
            ],
            &[],
        );
        let mut sent = Sent::default();
        let u = diff(&v, &mut sent, "default", "web").expect("full update");
        assert!(u.full);
        assert_eq!(u.version, 5);
        assert_eq!(names(&u).0, ["a", "p-web"]);
    }

    #[test]
    fn incremental_updates_carry_only_what_changed_for_this_proxy() {
        let mut sent = Sent::default();
        let v1 = view(
            1,
            0,
            &[
                (Kind::Service, "a", 1, Audience::All),
                (Kind::Service, "b", 1, Audience::All),
            ],
            &[],
        );
        diff(&v1, &mut sent, "default", "web");
        // a changed, b removed, c added.
        let v2 = view(
            2,
            1,
            &[
                (Kind::Service, "a", 9, Audience::All),
                (Kind::Service, "c", 1, Audience::All),
            ],
            &["a", "b", "c"],
        );
        let u = diff(&v2, &mut sent, "default", "web").expect("an update");
        assert!(!u.full);
        assert_eq!(
            names(&u),
            (vec!["a".to_owned(), "c".to_owned()], vec!["b".to_owned()])
        );
        // A change to a policy for another service: nothing for this proxy.
        let other = Audience::Service("default".into(), "db".into());
        let v3 = view(
            3,
            2,
            &[
                (Kind::Service, "a", 9, Audience::All),
                (Kind::Service, "c", 1, Audience::All),
                (Kind::AuthorizationPolicy, "p", 1, other),
            ],
            &["p"],
        );
        assert!(diff(&v3, &mut sent, "default", "web").is_none());
    }

    #[test]
    fn big_updates_go_in_bounded_parts() {
        let doc = |i: usize, size: usize| {
            let d = Doc {
                json: bytes::Bytes::from(vec![b'x'; size]),
                hash: i as u64,
                audience: Audience::All,
            };
            (key(Kind::Service, &format!("s{i}")), Arc::new(d))
        };
        let plan = Plan {
            version: 7,
            full: true,
            upserts: (0..100)
                .map(|i| doc(i, 3000))
                .chain([doc(100, 200_000)])
                .collect(),
            removals: vec![key(Kind::Route, "gone")],
        };
        let parts: Vec<Update> = plan.parts().collect();
        assert!(parts.len() >= 5, "{} parts", parts.len());
        assert!(parts[0].full && parts[1..].iter().all(|p| !p.full));
        assert_eq!(parts[0].removals.len(), 1);
        assert!(parts[1..].iter().all(|p| p.removals.is_empty()));
        assert!(parts[..parts.len() - 1].iter().all(|p| p.more));
        assert!(!parts[parts.len() - 1].more);
        assert!(parts.iter().all(|p| p.version == 7));
        let total: usize = parts.iter().map(|p| p.upserts.len()).sum();
        assert_eq!(total, 101);
        for p in &parts {
            let bytes: usize = p.upserts.iter().map(|d| d.json.len()).sum();
            assert!(
                bytes <= PART_BYTES || p.upserts.len() == 1,
                "part of {bytes} bytes"
            );
        }
        // A small update, or a removal only, is one message.
        let small = Plan {
            version: 8,
            full: false,
            upserts: vec![doc(0, 10)],
            removals: vec![],
        };
        assert_eq!(small.parts().count(), 1);
        let removal = Plan {
            version: 9,
            full: false,
            upserts: vec![],
            removals: vec![key(Kind::Route, "r")],
        };
        let parts: Vec<Update> = removal.parts().collect();
        assert_eq!(
            (parts.len(), parts[0].removals.len(), parts[0].more),
            (1, 1, false)
        );
        // An empty full update (an empty mesh) is still sent.
        let empty = Plan {
            version: 1,
            full: true,
            upserts: vec![],
            removals: vec![],
        };
        let parts: Vec<Update> = empty.parts().collect();
        assert_eq!((parts.len(), parts[0].full), (1, true));
    }

    #[test]
    fn a_skipped_view_is_caught_up_by_comparing_everything() {
        let mut sent = Sent::default();
        let v1 = view(
            1,
            0,
            &[
                (Kind::Service, "a", 1, Audience::All),
                (Kind::Service, "b", 1, Audience::All),
            ],
            &[],
        );
        diff(&v1, &mut sent, "default", "web");
        // v2 (a changed) was never seen; v3 (b removed) names only b.
        let v3 = view(3, 2, &[(Kind::Service, "a", 2, Audience::All)], &["b"]);
        let u = diff(&v3, &mut sent, "default", "web").expect("an update");
        assert_eq!(names(&u), (vec!["a".to_owned()], vec!["b".to_owned()]));
    }
}
