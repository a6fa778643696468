//! The store behind the control plane: a revisioned key-value space with
//! transactions, watches and leases — etcd's model, which the embedded redb
//! store implements too, so everything above it runs unchanged on either.
//!
//! Invariants every backend keeps:
//! - every successful write transaction takes the next revision; revisions
//!   only grow, across restarts;
//! - `watch(prefix, from)` yields every change under `prefix` with revision
//!   `>= from`, in revision order, each transaction's changes in one batch;
//!   if `from` is older than the backend keeps, it yields [`StoreError::Compacted`]
//!   and the caller lists again;
//! - a key put with a lease is deleted (a watched delete) when the lease
//!   expires or is revoked.

pub mod embedded;
pub mod etcd;

use std::{fmt, time::Duration};

use tokio::sync::mpsc;

/// A store revision: the count of write transactions ever committed.
pub type Revision = u64;

/// A lease id; keys put with it die with it.
pub type LeaseId = i64;

/// One key and its value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key (UTF-8, `/`-separated).
    pub key: String,
    /// The value bytes.
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key (as it exists now).
    pub create_revision: Revision,
    /// Revision of the transaction that last wrote the key.
    pub mod_revision: Revision,
    /// The lease the key is attached to, 0 for none.
    pub lease: LeaseId,
}

/// A write inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Put `value` at `key`, attached to `lease` (0 = none).
    Put {
        /// Key.
        key: String,
        /// Value.
        value: Vec<u8>,
        /// Lease, 0 = none.
        lease: LeaseId,
    },
    /// Delete `key` (no-op if absent).
    Delete {
        /// Key.
        key: String,
    },
}

impl Op {
    /// A put without a lease.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }
}

/// A guard of a transaction: all must hold for its ops to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key's mod revision equals this; 0 means the key is absent.
    ModRevision(String, Revision),
    /// The key exists with exactly this value.
    Value(String, Vec<u8>),
}

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every compare held (and so the ops ran).
    pub succeeded: bool,
    /// The store revision after the transaction: the new revision when ops
    /// ran and wrote something, else the current one.
    pub revision: Revision,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Revision of the transaction that made the change.
    pub revision: Revision,
    /// The key changed.
    pub key: String,
    /// The new value; `None` when the key was deleted (or its lease expired).
    pub value: Option<Vec<u8>>,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend cannot be reached (network, every etcd endpoint down).
    Unavailable(String),
    /// The backend refused the write: disk full, read-only, quota.
    Rejected(String),
    /// A watch asked for history the backend no longer keeps.
    Compacted {
        /// The oldest revision still available.
        oldest: Revision,
    },
    /// The lease does not exist (expired or revoked).
    LeaseNotFound(LeaseId),
    /// Anything else: corrupt data, a protocol error.
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable(e) => write!(f, "store unavailable: {e}"),
            Self::Rejected(e) => write!(f, "store refused the write: {e}"),
            Self::Compacted { oldest } => {
                write!(f, "watch history compacted; oldest revision is {oldest}")
            }
            Self::LeaseNotFound(id) => write!(f, "lease {id:x} not found (expired or revoked)"),
            Self::Internal(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for StoreError {}

/// A stream of watch batches; each batch is one transaction's changes under
/// the watched prefix. Ends (yields `None`) when the store is closed; yields
/// an error once and ends when the watch broke (the caller lists and watches again).
pub type Watch = mpsc::Receiver<Result<Vec<Event>, StoreError>>;

/// The store: etcd's data model. All methods are cancel-safe.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Every key under `prefix` (in key order) and the revision they were read at.
    async fn range(&self, prefix: &str) -> Result<(Revision, Vec<KeyValue>), StoreError>;

    /// One key.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError>;

    /// Runs `ops` atomically if every compare holds.
    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError>;

    /// Changes under `prefix` from revision `from` on (see the module invariants).
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError>;

    /// A new lease that expires `ttl` after its last keep-alive.
    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Restarts the lease's TTL. [`StoreError::LeaseNotFound`] once it expired.
    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends the lease now, deleting its keys.
    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// A short name for logs and `/v1/health`: `embedded:DIR` or `etcd:URL,…`.
    fn describe(&self) -> String;
}

/// The end of the key range that holds every key starting with `prefix`
/// (etcd's `range_end`): `prefix` with its last byte incremented.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
