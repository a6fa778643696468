//! The store contract (`sinew_control::store`), checked against both
//! backends: the embedded redb store in a temp dir, and a real etcd process
//! (skipped with `SKIPPED: etcd not installed` when there is none).
//!
//! Each scenario below is one `async fn(&mut Backend)`; `conformance!` turns
//! it into a test per backend (`range_by_prefix::embedded`, `…::etcd`).
//! etcd-only behaviour (member failover, quota, a dying server) follows.

use std::time::Duration;

use sinew_control::store::{
    embedded::EmbeddedStore, etcd::EtcdStore, Compare, Event, KeyValue, Op, Revision, Store,
    StoreError, TxnOutcome, Watch,
};
use sinew_testkit::{free_port, require_external, Etcd, TempDir};

/// Bound on waiting for one watch batch.
const WATCH_WAIT: Duration = Duration::from_secs(5);

/// A store under test and what keeps it alive.
struct Backend {
    /// `None` only while the embedded store reopens.
    store: Option<Box<dyn Store>>,
    kind: Kind,
}

enum Kind {
    Embedded(TempDir),
    Etcd(Box<Etcd>),
}

impl Backend {
    fn embedded() -> Backend {
        let dir = TempDir::new("store");
        let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
        Backend {
            store: Some(Box::new(store)),
            kind: Kind::Embedded(dir),
        }
    }

    async fn etcd() -> Option<Backend> {
        let etcd = Etcd::start().await?;
        let store = EtcdStore::connect(&[etcd.url()])
            .await
            .expect("connect to etcd");
        Some(Backend {
            store: Some(Box::new(store)),
            kind: Kind::Etcd(Box::new(etcd)),
        })
    }

    fn store(&self) -> &dyn Store {
        self.store.as_deref().expect("the store is open")
    }

    /// Makes history up to now unavailable the backend's way: etcd compacts;
    /// the embedded store keeps history in memory only, so it reopens.
    async fn forget_history(&mut self) {
        match &self.kind {
            Kind::Etcd(etcd) => {
                let (now, _) = self.store().range("").await.expect("range");
                etcd.compact(now).await;
            }
            Kind::Embedded(dir) => {
                // redb locks its file: the old store closes first.
                self.store = None;
                let store = EmbeddedStore::open(dir.path()).expect("reopen the embedded store");
                self.store = Some(Box::new(store));
            }
        }
    }
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn embedded() {
                super::$scenario(&mut super::Backend::embedded()).await;
            }

            #[tokio::test]
            async fn etcd() {
                let Some(mut backend) = super::Backend::etcd().await else { return };
                super::$scenario(&mut backend).await;
            }
        }
    )*};
}

conformance!(
    range_by_prefix,
    txn_compares,
    revisions,
    watch_sees_every_later_change_in_order,
    watch_from_forgotten_history_is_compacted,
    leased_key_dies_without_keep_alive,
    leased_key_survives_with_keep_alives,
    revoke_deletes_the_leases_keys,
);

async fn put(store: &dyn Store, key: &str, value: &str) -> Revision {
    let outcome = store
        .txn(vec![], vec![Op::put(key, value)])
        .await
        .expect("put");
    assert!(outcome.succeeded);
    outcome.revision
}

async fn value(store: &dyn Store, key: &str) -> Option<String> {
    let kv = store.get(key).await.expect("get")?;
    Some(String::from_utf8(kv.value).expect("UTF-8 value"))
}

fn keys(items: &[KeyValue]) -> Vec<&str> {
    items.iter().map(|kv| kv.key.as_str()).collect()
}

async fn next_batch(watch: &mut Watch) -> Vec<Event> {
    tokio::time::timeout(WATCH_WAIT, watch.recv())
        .await
        .expect("a watch batch in time")
        .expect("the watch is open")
        .expect("the watch has no error")
}

fn event(revision: Revision, key: &str, value: Option<&str>) -> Event {
    Event {
        revision,
        key: key.to_owned(),
        value: value.map(|v| v.as_bytes().to_vec()),
    }
}

async fn range_by_prefix(backend: &mut Backend) {
    let store = backend.store();
    put(store, "a/2", "two").await;
    put(store, "a/1", "one").await;
    put(store, "ab/3", "not under a/").await;
    let last = put(store, "b/1", "other").await;

    let (revision, items) = store.range("a/").await.expect("range a/");
    assert_eq!(keys(&items), ["a/1", "a/2"], "key order, prefix only");
    assert_eq!(items[0].value, b"one");
    assert_eq!(revision, last, "read at the latest revision");
    let (_, all) = store.range("").await.expect("range everything");
    assert_eq!(keys(&all), ["a/1", "a/2", "ab/3", "b/1"]);
    let (_, none) = store.range("c/").await.expect("range c/");
    assert!(none.is_empty());

    assert_eq!(value(store, "a/1").await.as_deref(), Some("one"));
    assert_eq!(value(store, "a/").await, None, "a prefix is not a key");
    assert_eq!(value(store, "missing").await, None);
}

async fn txn_compares(backend: &mut Backend) {
    let store = backend.store();
    let absent = |k: &str| Compare::ModRevision(k.to_owned(), 0);
    let is = |k: &str, v: &str| Compare::Value(k.to_owned(), v.as_bytes().to_vec());

    // Create-if-absent, twice: only the first holds.
    let created = store
        .txn(vec![absent("k")], vec![Op::put("k", "v1")])
        .await
        .expect("txn");
    assert!(created.succeeded);
    let again = store
        .txn(vec![absent("k")], vec![Op::put("k", "v2")])
        .await
        .expect("txn");
    assert_eq!(
        again,
        TxnOutcome {
            succeeded: false,
            revision: created.revision
        },
        "a failed txn writes nothing and reports the current revision"
    );
    assert_eq!(value(store, "k").await.as_deref(), Some("v1"));

    // Mod revision: the current one holds, a stale one does not.
    let current = store.get("k").await.expect("get").expect("k exists");
    let stale = Compare::ModRevision("k".into(), current.mod_revision - 1);
    let fresh = Compare::ModRevision("k".into(), current.mod_revision);
    assert!(
        !store
            .txn(vec![stale], vec![Op::put("k", "x")])
            .await
            .expect("txn")
            .succeeded
    );
    let updated = store
        .txn(vec![fresh.clone()], vec![Op::put("k", "v2")])
        .await
        .expect("txn");
    assert!(updated.succeeded);
    assert!(
        !store
            .txn(vec![fresh], vec![Op::put("k", "x")])
            .await
            .expect("txn")
            .succeeded,
        "the old mod revision no longer holds after a write"
    );

    // Value: equal holds, different does not, absent key never does.
    assert!(
        !store
            .txn(vec![is("k", "v1")], vec![Op::put("k", "x")])
            .await
            .expect("txn")
            .succeeded
    );
    assert!(
        !store
            .txn(vec![is("nope", "")], vec![Op::put("nope", "x")])
            .await
            .expect("txn")
            .succeeded
    );
    assert_eq!(value(store, "nope").await, None);
    let swapped = store
        .txn(vec![is("k", "v2")], vec![Op::put("k", "v3")])
        .await
        .expect("txn");
    assert!(swapped.succeeded);

    // Every compare must hold; ops are all or nothing.
    let mixed = store
        .txn(
            vec![is("k", "v3"), absent("k")],
            vec![Op::put("k", "x"), Op::put("other", "x")],
        )
        .await
        .expect("txn");
    assert!(!mixed.succeeded);
    assert_eq!(value(store, "other").await, None);
    let both = store
        .txn(
            vec![is("k", "v3"), absent("other")],
            vec![Op::delete("k"), Op::put("other", "y")],
        )
        .await
        .expect("txn");
    assert!(both.succeeded);
    assert_eq!(value(store, "k").await, None);
    assert_eq!(value(store, "other").await.as_deref(), Some("y"));

    // A key written twice in one txn ends with the last write.
    let twice = store
        .txn(
            vec![],
            vec![Op::put("dup", "first"), Op::put("dup", "last")],
        )
        .await
        .expect("txn");
    assert!(twice.succeeded);
    assert_eq!(value(store, "dup").await.as_deref(), Some("last"));
}

async fn revisions(backend: &mut Backend) {
    let store = backend.store();
    let (start, _) = store.range("").await.expect("range");
    let r1 = put(store, "k", "1").await;
    assert_eq!(r1, start + 1, "a write takes the next revision");
    let r2 = put(store, "k", "2").await;
    assert_eq!(r2, r1 + 1);

    let kv = store.get("k").await.expect("get").expect("k");
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));
    assert_eq!(kv.lease, 0);

    // Several ops: one revision for all of them.
    let multi = store
        .txn(
            vec![],
            vec![Op::put("m/1", "a"), Op::put("m/2", "b"), Op::delete("k")],
        )
        .await
        .expect("txn");
    assert_eq!(multi.revision, r2 + 1);
    let (read_at, items) = store.range("m/").await.expect("range");
    assert_eq!(read_at, multi.revision);
    assert!(items.iter().all(|kv| kv.mod_revision == multi.revision));

    // Re-created after a delete: a new create revision.
    let r4 = put(store, "k", "again").await;
    let kv = store.get("k").await.expect("get").expect("k");
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));

    // Nothing written (a delete of nothing, no ops): no new revision.
    let noop = store
        .txn(vec![], vec![Op::delete("never")])
        .await
        .expect("txn");
    assert_eq!(
        noop,
        TxnOutcome {
            succeeded: true,
            revision: r4
        }
    );
    let empty = store.txn(vec![], vec![]).await.expect("txn");
    assert_eq!(empty.revision, r4);
}

async fn watch_sees_every_later_change_in_order(backend: &mut Backend) {
    let store = backend.store();
    let r1 = put(store, "w/a", "1").await;
    let r2 = put(store, "w/b", "2").await;
    put(store, "x/outside", "ignored").await;

    // From an older revision: history first, then live changes.
    let mut watch = store.watch("w/", r1).await.expect("watch");
    assert_eq!(next_batch(&mut watch).await, [event(r1, "w/a", Some("1"))]);
    assert_eq!(next_batch(&mut watch).await, [event(r2, "w/b", Some("2"))]);

    let txn = store
        .txn(
            vec![],
            vec![Op::put("w/c", "3"), Op::delete("w/a"), Op::put("x/y", "no")],
        )
        .await
        .expect("txn");
    assert_eq!(
        next_batch(&mut watch).await,
        [
            event(txn.revision, "w/c", Some("3")),
            event(txn.revision, "w/a", None)
        ],
        "one batch per txn, in op order, only keys under the prefix"
    );
    let r4 = put(store, "w/b", "22").await;
    assert_eq!(next_batch(&mut watch).await, [event(r4, "w/b", Some("22"))]);

    // From the next revision: only what comes after.
    let mut later = store.watch("w/", r4 + 1).await.expect("watch");
    let r5 = put(store, "w/d", "4").await;
    assert_eq!(next_batch(&mut later).await, [event(r5, "w/d", Some("4"))]);
    assert_eq!(next_batch(&mut watch).await, [event(r5, "w/d", Some("4"))]);
}

async fn watch_from_forgotten_history_is_compacted(backend: &mut Backend) {
    let first = put(backend.store(), "h/k", "1").await;
    put(backend.store(), "h/k", "2").await;
    let last = put(backend.store(), "h/k", "3").await;
    backend.forget_history().await;

    let store = backend.store();
    let oldest = match store.watch("h/", first).await {
        Err(StoreError::Compacted { oldest }) => oldest,
        other => panic!("expected Compacted, got {other:?}"),
    };
    // etcd keeps the compaction revision itself; the reopened embedded
    // store keeps nothing before its next revision.
    assert!(
        (last..=last + 1).contains(&oldest),
        "oldest {oldest}, last {last}"
    );

    // Watching from the oldest kept revision works, and sees what follows.
    let mut watch = store.watch("h/", oldest).await.expect("watch from oldest");
    let next = put(store, "h/k", "4").await;
    let mut seen = Vec::new();
    while seen.last().map(|e: &Event| e.revision) != Some(next) {
        seen.extend(next_batch(&mut watch).await);
    }
    assert!(seen.iter().all(|e| e.revision >= oldest));
}

async fn leased_key_dies_without_keep_alive(backend: &mut Backend) {
    let store = backend.store();
    let lease = store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    let put = store
        .txn(
            vec![],
            vec![Op::Put {
                key: "l/k".into(),
                value: b"v".to_vec(),
                lease,
            }],
        )
        .await
        .expect("leased put");
    assert_eq!(
        store.get("l/k").await.expect("get").expect("l/k").lease,
        lease
    );
    let mut watch = store.watch("l/", put.revision + 1).await.expect("watch");

    let deleted = next_batch(&mut watch).await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        (deleted[0].key.as_str(), deleted[0].value.as_ref()),
        ("l/k", None)
    );
    assert_eq!(value(store, "l/k").await, None);

    assert_eq!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
    let with_dead_lease = store
        .txn(
            vec![],
            vec![Op::Put {
                key: "l/k".into(),
                value: b"v".to_vec(),
                lease,
            }],
        )
        .await;
    assert_eq!(with_dead_lease, Err(StoreError::LeaseNotFound(lease)));
}

async fn leased_key_survives_with_keep_alives(backend: &mut Backend) {
    let store = backend.store();
    let lease = store
        .lease_grant(Duration::from_secs(1))
        .await
        .expect("grant");
    store
        .txn(
            vec![],
            vec![Op::Put {
                key: "l/k".into(),
                value: b"v".to_vec(),
                lease,
            }],
        )
        .await
        .expect("leased put");
    // Three TTLs' worth of time, refreshed every quarter TTL.
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        store.lease_keep_alive(lease).await.expect("keep alive");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(value(store, "l/k").await.as_deref(), Some("v"));
}

async fn revoke_deletes_the_leases_keys(backend: &mut Backend) {
    let store = backend.store();
    let lease = store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    let other = store
        .lease_grant(Duration::from_secs(60))
        .await
        .expect("grant");
    let leased = |key: &str, lease| Op::Put {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
    };
    let put = store
        .txn(
            vec![],
            vec![
                leased("r/1", lease),
                leased("r/2", lease),
                leased("r/3", other),
            ],
        )
        .await
        .expect("leased puts");
    let mut watch = store.watch("r/", put.revision + 1).await.expect("watch");

    store.lease_revoke(lease).await.expect("revoke");
    let (_, left) = store.range("r/").await.expect("range");
    assert_eq!(
        keys(&left),
        ["r/3"],
        "revoke returns once the keys are gone"
    );
    let mut deleted = next_batch(&mut watch).await;
    deleted.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        deleted
            .iter()
            .map(|e| (e.key.as_str(), e.value.is_none()))
            .collect::<Vec<_>>(),
        [("r/1", true), ("r/2", true)]
    );
    assert_eq!(
        store.lease_keep_alive(lease).await,
        Err(StoreError::LeaseNotFound(lease))
    );
    store
        .lease_revoke(lease)
        .await
        .expect("revoking a gone lease is done already");
    store
        .lease_keep_alive(other)
        .await
        .expect("the other lease lives");
}

// ---- etcd only ----

/// A URL where nothing listens.
fn dead_url() -> String {
    format!("http://{}", free_port())
}

#[tokio::test]
async fn etcd_a_dead_first_member_is_skipped() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    for urls in [vec![dead_url(), etcd.url()], vec![etcd.url(), dead_url()]] {
        let store = EtcdStore::connect(&urls)
            .await
            .expect("connect past the dead member");
        let revision = put(&store, "k", "v").await;
        assert_eq!(value(&store, "k").await.as_deref(), Some("v"));
        let mut watch = store.watch("k", revision).await.expect("watch");
        assert_eq!(
            next_batch(&mut watch).await,
            [event(revision, "k", Some("v"))]
        );
        let lease = store
            .lease_grant(Duration::from_secs(5))
            .await
            .expect("grant");
        store.lease_keep_alive(lease).await.expect("keep alive");
        assert!(store.describe().starts_with("etcd:http://"));
    }
}

#[tokio::test]
async fn etcd_no_member_answering_is_unavailable() {
    let error = EtcdStore::connect(&[dead_url(), dead_url()])
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = EtcdStore::connect(&["https://127.0.0.1:2379".to_owned()])
        .await
        .expect_err("https is not spoken");
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn etcd_watch_ends_with_one_error_when_etcd_dies() {
    let Some(mut etcd) = Etcd::start().await else {
        return;
    };
    let store = EtcdStore::connect(&[etcd.url()]).await.expect("connect");
    let revision = put(&store, "k", "v").await;
    let mut watch = store.watch("", revision + 1).await.expect("watch");
    etcd.kill().await;

    let end = tokio::time::timeout(WATCH_WAIT, watch.recv())
        .await
        .expect("the watch notices in time");
    assert!(
        matches!(end, Some(Err(StoreError::Unavailable(_)))),
        "{end:?}"
    );
    assert!(watch.recv().await.is_none(), "one error, then the end");
    assert!(matches!(
        store.get("k").await,
        Err(StoreError::Unavailable(_))
    ));
}

#[tokio::test]
async fn etcd_a_full_database_rejects_writes() {
    let Some(bin) = require_external("etcd") else {
        return;
    };
    let etcd = Etcd::builder(bin)
        .quota_backend_bytes(256 * 1024)
        .spawn()
        .await;
    let store = EtcdStore::connect(&[etcd.url()]).await.expect("connect");
    let big = vec![b'x'; 64 * 1024];
    let mut rejected = None;
    for i in 0..64 {
        match store
            .txn(vec![], vec![Op::put(format!("big/{i}"), big.clone())])
            .await
        {
            Ok(_) => {}
            Err(error) => {
                rejected = Some(error);
                break;
            }
        }
    }
    assert!(
        matches!(rejected, Some(StoreError::Rejected(_))),
        "{rejected:?}"
    );
    store.range("big/").await.expect("reads still work");
    let small = store.txn(vec![], vec![Op::put("small", "x")]).await;
    assert!(
        matches!(small, Err(StoreError::Rejected(_))),
        "every later write is refused too: {small:?}"
    );
}

/// The embedded store holds the CA's private key and the tokens: only its
/// owner may read it, a new one or one an older version left open.
#[tokio::test]
async fn the_embedded_store_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    let dir = TempDir::new("store-mode");
    let data = dir.path().join("data");
    drop(EmbeddedStore::open(&data).expect("open"));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("store.redb")), 0o600);
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(
        data.join("store.redb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let store = EmbeddedStore::open(&data).expect("reopen");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("store.redb")), 0o600);
    store.range("").await.expect("the store still reads");
}
