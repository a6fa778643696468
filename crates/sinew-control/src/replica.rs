//! One control-plane replica: its identity and lease, the tokens, the view
//! its streams read, and leader election for the singleton jobs.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::sync::watch;

use crate::{
    keys,
    status::StatusWriter,
    store::{Compare, LeaseId, Op, Store, StoreError},
    view::View,
};

/// The replica lease's TTL: registrations and health reports of a replica
/// that dies leave the store this long after its last keep-alive.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often leadership is checked (and the leader's jobs run).
const LEADER_TICK: Duration = Duration::from_millis(500);

/// The credentials the control plane accepts.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    pub(crate) admin: String,
    pub(crate) join: String,
}

pub(crate) fn bearer(header: &str) -> Option<&str> {
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
}

/// Compares without an early exit, so timing does not reveal a prefix.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Tokens {
    /// May call the REST API (`Authorization` header value).
    pub(crate) fn admin_may(&self, header: &str) -> bool {
        bearer(header).is_some_and(|t| same(t, &self.admin))
    }

    /// May open a proxy stream or take locks.
    pub(crate) fn proxy_may(&self, header: &str) -> bool {
        bearer(header).is_some_and(|t| same(t, &self.join) || same(t, &self.admin))
    }
}

/// A replica's shared state.
#[derive(Debug)]
pub(crate) struct Replica {
    pub(crate) id: String,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tokens: Tokens,
    pub(crate) view: watch::Receiver<Arc<View>>,
    /// The replica's current lease (changes when a lost lease is replaced).
    pub(crate) lease: watch::Receiver<LeaseId>,
    pub(crate) status: StatusWriter,
    pub(crate) grace: Duration,
    /// The CA as last read, with the store revision it was read at.
    ca: std::sync::Mutex<(u64, Arc<crate::ca::Ca>)>,
    pub(crate) leader: AtomicBool,
    sessions: AtomicU64,
    /// The event store, once open (`--events`).
    pub(crate) broker: std::sync::OnceLock<sinew_events::EventStore>,
    /// The golden-metric reports of the proxies connected here.
    pub(crate) stats: crate::stats::Stats,
}

impl Replica {
    pub(crate) fn new(
        id: String,
        store: Arc<dyn Store>,
        tokens: Tokens,
        view: watch::Receiver<Arc<View>>,
        lease: watch::Receiver<LeaseId>,
        grace: Duration,
        ca: (u64, crate::ca::Ca),
    ) -> Replica {
        Replica {
            id,
            status: StatusWriter::start(store.clone()),
            store,
            tokens,
            view,
            lease,
            grace,
            ca: std::sync::Mutex::new((ca.0, Arc::new(ca.1))),
            leader: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
            broker: std::sync::OnceLock::new(),
            stats: crate::stats::Stats::default(),
        }
    }

    /// How many proxy sessions this replica has started.
    pub(crate) fn sessions_started(&self) -> u64 {
        self.sessions.load(Ordering::Relaxed)
    }

    pub(crate) fn next_session(&self) -> String {
        let n = self.sessions.fetch_add(1, Ordering::Relaxed);
        format!("{}#{n}", self.id)
    }

    /// The Mesh's trust domain and certificate lifetime (defaults without a Mesh).
    pub(crate) fn mesh_identity(&self) -> (String, Duration) {
        let defaults = sinew_model::MeshSpec::default();
        let view = self.view.borrow().clone();
        let mesh = view
            .docs
            .iter()
            .find(|(k, _)| k.kind == sinew_model::Kind::Mesh)
            .and_then(|(_, d)| serde_json::from_slice::<serde_json::Value>(&d.json).ok());
        let domain = mesh
            .as_ref()
            .and_then(|m| m.pointer("/spec/trust_domain")?.as_str().map(str::to_owned))
            .unwrap_or(defaults.trust_domain);
        let ttl = mesh
            .as_ref()
            .and_then(|m| {
                m.pointer("/spec/cert_ttl")?
                    .as_str()?
                    .parse::<sinew_model::Duration>()
                    .ok()
            })
            .map_or(defaults.cert_ttl.into(), Duration::from);
        (domain, ttl)
    }

    /// The CA, re-read when another replica (or a rotation) changed it.
    pub(crate) async fn ca(&self) -> Result<Arc<crate::ca::Ca>, StoreError> {
        let revision = self
            .store
            .get(keys::CA)
            .await?
            .map_or(0, |kv| kv.mod_revision);
        {
            let cached = self.ca.lock().unwrap_or_else(|p| p.into_inner());
            if cached.0 == revision {
                return Ok(cached.1.clone());
            }
        }
        let Some((revision, ca)) = crate::ca::Ca::current(&*self.store).await? else {
            return Err(StoreError::Internal("the CA is gone from the store".into()));
        };
        let ca = Arc::new(ca);
        *self.ca.lock().unwrap_or_else(|p| p.into_inner()) = (revision, ca.clone());
        Ok(ca)
    }

    pub(crate) fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Relaxed)
    }
}

/// Grants the replica's lease and keeps it alive; replaces it if it is lost
/// (a long pause, the store unreachable past the TTL).
pub(crate) async fn keep_lease(
    store: Arc<dyn Store>,
    id: String,
    describe: String,
) -> Result<watch::Receiver<LeaseId>, StoreError> {
    let first = grant(&*store, &id, &describe).await?;
    let (tx, rx) = watch::channel(first);
    tokio::spawn(async move {
        let mut lease = first;
        loop {
            tokio::time::sleep(LEASE_TTL / 4).await;
            if tx.is_closed() {
                let _ = store.lease_revoke(lease).await;
                return;
            }
            match store.lease_keep_alive(lease).await {
                Ok(()) => {}
                Err(StoreError::LeaseNotFound(_)) => {
                    tracing::warn!("replica lease lost; taking a new one");
                    match grant(&*store, &id, &describe).await {
                        Ok(l) => {
                            lease = l;
                            tx.send_replace(l);
                        }
                        Err(error) => tracing::warn!(%error, "cannot take a new replica lease"),
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot renew the replica lease"),
            }
        }
    });
    Ok(rx)
}

async fn grant(store: &dyn Store, id: &str, describe: &str) -> Result<LeaseId, StoreError> {
    let lease = store.lease_grant(LEASE_TTL).await?;
    let put = Op::Put {
        key: format!("{}{id}", keys::REPLICAS),
        value: describe.as_bytes().to_vec(),
        lease,
    };
    store.txn(Vec::new(), vec![put]).await?;
    Ok(lease)
}

/// Campaigns for leadership; while leader, runs the singleton jobs (TTL
/// reaping, deregistration after the grace period, external checks).
pub(crate) async fn lead(replica: Arc<Replica>) {
    let mut jobs = crate::jobs::Jobs::default();
    let mut tick = tokio::time::interval(LEADER_TICK);
    loop {
        tick.tick().await;
        let lease = *replica.lease.borrow();
        let leader = match campaign(&*replica.store, &replica.id, lease).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "cannot check leadership");
                false
            }
        };
        let was = replica.leader.swap(leader, Ordering::Relaxed);
        if leader != was {
            tracing::info!(replica = %replica.id, leader, "leadership changed");
        }
        if leader {
            jobs.run(&replica).await;
        }
    }
}

async fn campaign(store: &dyn Store, id: &str, lease: LeaseId) -> Result<bool, StoreError> {
    if let Some(kv) = store.get(keys::LEADER).await? {
        return Ok(kv.value == id.as_bytes() && kv.lease == lease);
    }
    let put = Op::Put {
        key: keys::LEADER.to_owned(),
        value: id.as_bytes().to_vec(),
        lease,
    };
    let guard = vec![Compare::ModRevision(keys::LEADER.to_owned(), 0)];
    Ok(store.txn(guard, vec![put]).await?.succeeded)
}

/// A fresh random token (hex of 32 bytes from the OS).
pub(crate) fn random_token() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The token at `key`, created if absent (first replica wins).
pub(crate) async fn token(store: &dyn Store, key: &str) -> Result<String, StoreError> {
    loop {
        if let Some(kv) = store.get(key).await? {
            return String::from_utf8(kv.value).map_err(|e| StoreError::Internal(e.to_string()));
        }
        let fresh = random_token().map_err(|e| StoreError::Internal(e.to_string()))?;
        let guard = vec![Compare::ModRevision(key.to_owned(), 0)];
        store.txn(guard, vec![Op::put(key, fresh)]).await?;
    }
}
