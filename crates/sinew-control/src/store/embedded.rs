//! The embedded store: redb on local disk for durability (every write
//! transaction is fsynced before it returns), with the whole key space
//! mirrored in memory for reads, watches and leases.
//!
//! One process owns the directory (redb takes a file lock). Leases are kept
//! in memory with their TTLs persisted: after a restart every lease gets its
//! full TTL again, as etcd does after a leader change.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::mpsc;

use super::{
    Compare, Event, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch,
};

const KV: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const LEASES: TableDefinition<'_, i64, u64> = TableDefinition::new("leases");
const REVISION: &str = "revision";
const NEXT_LEASE: &str = "next_lease";

/// Watch batches kept for watchers that start from an older revision…
const HISTORY: usize = 16_384;
/// …and at most this many bytes of them.
const HISTORY_BYTES: usize = 16 << 20;
/// Batches queued for a watcher before it is cut off as too slow.
const WATCH_QUEUE: usize = 4_096;
/// How often leases are checked for expiry.
const LEASE_TICK: Duration = Duration::from_millis(50);

/// The embedded store in a directory (`sinew control --store embedded:DIR`).
#[derive(Debug, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// The database, held for the whole of a write: compare, commit to
    /// disk, publish. `None` after a failed write: redb refuses everything
    /// after an I/O error (a full disk, say) until it is reopened, so the
    /// next write reopens it rather than the store staying down until the
    /// process restarts.
    writer: Mutex<Option<redb::Database>>,
    mem: RwLock<Mem>,
}

#[derive(Debug, Default)]
struct Mem {
    revision: Revision,
    next_lease: u64,
    kv: BTreeMap<String, KeyValue>,
    history: VecDeque<(Revision, Vec<Event>)>,
    history_bytes: usize,
    watchers: Vec<Watcher>,
    leases: HashMap<LeaseId, LeaseState>,
}

#[derive(Debug)]
struct Watcher {
    prefix: String,
    tx: mpsc::Sender<Result<Vec<Event>, StoreError>>,
}

#[derive(Debug)]
struct LeaseState {
    ttl: Duration,
    deadline: Instant,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    let text = e.to_string();
    // Disk full and read-only media are the operator's to fix: say so plainly.
    if text.contains("No space left") || text.contains("Read-only file system") {
        StoreError::Rejected(text)
    } else {
        StoreError::Internal(text)
    }
}

/// The stored form of a value: create revision, mod revision, lease, bytes.
fn encode(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    out.extend_from_slice(&kv.value);
    out
}

fn decode(key: &str, raw: &[u8]) -> Result<KeyValue, StoreError> {
    if raw.len() < 24 {
        return Err(StoreError::Internal(format!("corrupt record at `{key}`")));
    }
    let word = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        b
    };
    Ok(KeyValue {
        key: key.to_owned(),
        create_revision: u64::from_le_bytes(word(0)),
        mod_revision: u64::from_le_bytes(word(1)),
        lease: i64::from_le_bytes(word(2)),
        value: raw[24..].to_vec(),
    })
}

/// Makes the store readable by its owner only: it holds the mesh CA's
/// private key and the admin and join tokens. The directory becomes 0700
/// and the database file 0600, created so if new (before redb opens it)
/// and tightened if an older version left it open.
fn owner_only(dir: &Path, file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600))
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, and starts its lease
    /// reaper on the current tokio runtime.
    ///
    /// # Errors
    /// The directory cannot be created, the database is locked by another
    /// process, or it is corrupt.
    pub fn open(dir: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Rejected(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join("store.redb");
        owner_only(&dir, &path).map_err(|e| {
            StoreError::Rejected(format!("cannot restrict {}: {e}", path.display()))
        })?;
        let db = redb::Database::create(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let mut mem = Mem::default();
        {
            let w = db.begin_write().map_err(internal)?;
            {
                w.open_table(KV).map_err(internal)?;
                w.open_table(META).map_err(internal)?;
                w.open_table(LEASES).map_err(internal)?;
            }
            w.commit().map_err(internal)?;
            let r = db.begin_read().map_err(internal)?;
            let meta = r.open_table(META).map_err(internal)?;
            mem.revision = meta
                .get(REVISION)
                .map_err(internal)?
                .map_or(0, |v| v.value());
            mem.next_lease = meta
                .get(NEXT_LEASE)
                .map_err(internal)?
                .map_or(1, |v| v.value());
            let kv = r.open_table(KV).map_err(internal)?;
            for entry in kv.iter().map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
                let record = decode(k.value(), v.value())?;
                mem.kv.insert(record.key.clone(), record);
            }
            let leases = r.open_table(LEASES).map_err(internal)?;
            let now = Instant::now();
            for entry in leases.iter().map_err(internal)? {
                let (id, ttl) = entry.map_err(internal)?;
                let ttl = Duration::from_millis(ttl.value());
                mem.leases.insert(
                    id.value(),
                    LeaseState {
                        ttl,
                        deadline: now + ttl,
                    },
                );
            }
        }
        let store = EmbeddedStore {
            inner: Arc::new(Inner {
                dir,
                writer: Mutex::new(Some(db)),
                mem: RwLock::new(mem),
            }),
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(reap_leases(Arc::downgrade(&store.inner)));
        }
        Ok(store)
    }

    fn mem(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.inner.mem.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// The whole write path; runs on a blocking thread.
    fn txn(&self, compares: &[Compare], ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (revision, holds) = {
            let mem = self.mem.read().unwrap_or_else(|p| p.into_inner());
            let holds = compares.iter().all(|c| match c {
                Compare::ModRevision(k, r) => mem.kv.get(k).map_or(0, |kv| kv.mod_revision) == *r,
                Compare::Value(k, v) => mem.kv.get(k).is_some_and(|kv| &kv.value == v),
            });
            for op in &ops {
                if let Op::Put { lease, .. } = op {
                    if *lease != 0 && !mem.leases.contains_key(lease) {
                        return Err(StoreError::LeaseNotFound(*lease));
                    }
                }
            }
            (mem.revision, holds)
        };
        if !holds || ops.is_empty() {
            return Ok(TxnOutcome {
                succeeded: holds,
                revision,
            });
        }
        let next = revision + 1;
        let mut records: Vec<(String, Option<KeyValue>)> = Vec::with_capacity(ops.len());
        {
            let mem = self.mem.read().unwrap_or_else(|p| p.into_inner());
            for op in ops {
                match op {
                    Op::Put { key, value, lease } => {
                        let pending = records.iter().rev().find(|(k, _)| *k == key);
                        let existing = match pending {
                            Some((_, r)) => r.as_ref().map(|r| r.create_revision),
                            None => mem.kv.get(&key).map(|kv| kv.create_revision),
                        };
                        let record = KeyValue {
                            key: key.clone(),
                            value,
                            create_revision: existing.unwrap_or(next),
                            mod_revision: next,
                            lease,
                        };
                        records.push((key, Some(record)));
                    }
                    Op::Delete { key } => {
                        let pending = records.iter().rev().find(|(k, _)| *k == key);
                        let exists = match pending {
                            Some((_, r)) => r.is_some(),
                            None => mem.kv.contains_key(&key),
                        };
                        if exists {
                            records.push((key, None));
                        }
                    }
                }
            }
        }
        if records.is_empty() {
            return Ok(TxnOutcome {
                succeeded: true,
                revision,
            });
        }
        self.write(&mut writer, |w| {
            let mut kv = w.open_table(KV).map_err(internal)?;
            for (key, record) in &records {
                match record {
                    Some(r) => {
                        kv.insert(key.as_str(), encode(r).as_slice())
                            .map_err(internal)?;
                    }
                    None => {
                        kv.remove(key.as_str()).map_err(internal)?;
                    }
                }
            }
            let mut meta = w.open_table(META).map_err(internal)?;
            meta.insert(REVISION, next).map_err(internal)?;
            Ok(())
        })?;

        let events: Vec<Event> = records
            .iter()
            .map(|(key, r)| Event {
                revision: next,
                key: key.clone(),
                value: r.as_ref().map(|r| r.value.clone()),
            })
            .collect();
        let mut mem = self.mem.write().unwrap_or_else(|p| p.into_inner());
        mem.revision = next;
        for (key, record) in records {
            match record {
                Some(r) => mem.kv.insert(key, r),
                None => mem.kv.remove(&key),
            };
        }
        mem.publish(next, events);
        Ok(TxnOutcome {
            succeeded: true,
            revision: next,
        })
    }

    fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let id = {
            let mem = self.mem.read().unwrap_or_else(|p| p.into_inner());
            mem.next_lease
        };
        let lease = LeaseId::try_from(id).map_err(internal)?;
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.write(&mut writer, |w| {
            let mut leases = w.open_table(LEASES).map_err(internal)?;
            leases.insert(lease, ttl_ms).map_err(internal)?;
            let mut meta = w.open_table(META).map_err(internal)?;
            meta.insert(NEXT_LEASE, id + 1).map_err(internal)?;
            Ok(())
        })?;
        let mut mem = self.mem.write().unwrap_or_else(|p| p.into_inner());
        mem.next_lease = id + 1;
        mem.leases.insert(
            lease,
            LeaseState {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Ok(lease)
    }

    /// Deletes the leases and every key attached to them, in one transaction.
    fn end_leases(&self, ids: &[LeaseId]) -> Result<(), StoreError> {
        // The leases end first, so that once their keys' deletes are watched
        // a keep-alive fails (no holder renews a lease whose keys are gone)
        // and no put attaches a new key to them. The writer lock waits out a
        // txn that checked one of these leases before.
        let ended: Vec<(LeaseId, LeaseState)> = {
            let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut mem = self.mem.write().unwrap_or_else(|p| p.into_inner());
            ids.iter()
                .filter_map(|id| mem.leases.remove(id).map(|l| (*id, l)))
                .collect()
        };
        let result = self.delete_lease_records(ids);
        if result.is_err() {
            // Back in memory, already expired, for the reaper to retry.
            let mut mem = self.mem.write().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            for (id, mut lease) in ended {
                lease.deadline = now;
                mem.leases.insert(id, lease);
            }
        }
        result
    }

    /// The keys attached to `ids`, then the leases themselves, from disk.
    fn delete_lease_records(&self, ids: &[LeaseId]) -> Result<(), StoreError> {
        let keys: Vec<String> = {
            let mem = self.mem.read().unwrap_or_else(|p| p.into_inner());
            mem.kv
                .values()
                .filter(|kv| kv.lease != 0 && ids.contains(&kv.lease))
                .map(|kv| kv.key.clone())
                .collect()
        };
        if !keys.is_empty() {
            self.txn(&[], keys.into_iter().map(Op::delete).collect())?;
        }
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.write(&mut writer, |w| {
            let mut leases = w.open_table(LEASES).map_err(internal)?;
            for id in ids {
                leases.remove(*id).map_err(internal)?;
            }
            Ok(())
        })
    }

    /// Runs `body` in a write transaction and commits it, on the database
    /// in `slot` (reopened first if a previous write failed). On failure the
    /// database is dropped, to be reopened by the next write.
    fn write<T>(
        &self,
        slot: &mut Option<redb::Database>,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if slot.is_none() {
            let path = self.dir.join("store.redb");
            let db = redb::Database::create(&path).map_err(|e| {
                StoreError::Unavailable(format!("cannot reopen {}: {e}", path.display()))
            })?;
            tracing::info!(path = %path.display(), "store database reopened after a failed write");
            *slot = Some(db);
        }
        let Some(db) = slot.as_ref() else {
            return Err(StoreError::Unavailable(
                "the store database is closed".into(),
            ));
        };
        let result = db.begin_write().map_err(internal).and_then(|w| {
            let value = body(&w)?;
            w.commit().map_err(internal)?;
            Ok(value)
        });
        if let Err(error) = &result {
            tracing::warn!(%error, "a store write failed; the database is reopened for the next one");
            *slot = None;
        }
        result
    }
}

impl Mem {
    fn publish(&mut self, revision: Revision, events: Vec<Event>) {
        self.watchers.retain(|w| {
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.key.starts_with(&w.prefix))
                .cloned()
                .collect();
            if mine.is_empty() {
                return !w.tx.is_closed();
            }
            match w.tx.try_send(Ok(mine)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // Too slow: tell it to list again, then stop feeding it.
                    let tx = w.tx.clone();
                    let oldest = revision;
                    tokio::spawn(async move {
                        let _ = tx.send(Err(StoreError::Compacted { oldest })).await;
                    });
                    false
                }
            }
        });
        self.history_bytes += batch_bytes(&events);
        self.history.push_back((revision, events));
        while self.history.len() > HISTORY || self.history_bytes > HISTORY_BYTES {
            match self.history.pop_front() {
                Some((_, old)) => self.history_bytes -= batch_bytes(&old),
                None => break,
            }
        }
    }
}

fn batch_bytes(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| e.key.len() + e.value.as_ref().map_or(0, Vec::len) + 48)
        .sum()
}

async fn reap_leases(inner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(LEASE_TICK);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let expired: Vec<LeaseId> = {
            let mem = inner.mem.read().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            mem.leases
                .iter()
                .filter(|(_, l)| l.deadline <= now)
                .map(|(id, _)| *id)
                .collect()
        };
        if expired.is_empty() {
            continue;
        }
        let result = tokio::task::spawn_blocking(move || inner.end_leases(&expired)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "cannot expire leases; retrying"),
            Err(error) => tracing::warn!(%error, "lease reaper failed"),
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(e.to_string()))?
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn range(&self, prefix: &str) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        let mem = self.mem();
        let items = mem
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        Ok((mem.revision, items))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        Ok(self.mem().kv.get(key).cloned())
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let inner = self.inner.clone();
        blocking(move || inner.txn(&compares, ops)).await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let mut mem = self.inner.mem.write().unwrap_or_else(|p| p.into_inner());
        if from <= mem.revision {
            let oldest = mem.history.front().map_or(mem.revision + 1, |(r, _)| *r);
            if from < oldest {
                return Err(StoreError::Compacted { oldest });
            }
            for (rev, events) in &mem.history {
                if *rev < from {
                    continue;
                }
                let mine: Vec<Event> = events
                    .iter()
                    .filter(|e| e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                if !mine.is_empty() && tx.try_send(Ok(mine)).is_err() {
                    return Err(StoreError::Compacted {
                        oldest: mem.revision,
                    });
                }
            }
        }
        mem.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            tx,
        });
        Ok(rx)
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let inner = self.inner.clone();
        blocking(move || inner.grant(ttl)).await
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut mem = self.inner.mem.write().unwrap_or_else(|p| p.into_inner());
        match mem.leases.get_mut(&lease) {
            Some(l) => {
                l.deadline = Instant::now() + l.ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        blocking(move || inner.end_leases(&[lease])).await
    }

    fn describe(&self) -> String {
        format!("embedded:{}", self.inner.dir.display())
    }
}
