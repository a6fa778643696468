//! Per-endpoint connection pools, one slot per worker thread so the request
//! path never contends for a lock, kept in a registry so pools (and their warm
//! connections) outlive config reloads that keep the endpoint.

use crate::resilience::Permit;
use crate::tls::Conn;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::client::conn::http2::SendRequest;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};

/// The body type sent on pooled HTTP/2 connections.
pub(crate) type H2Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// How long an idle HTTP/1 connection is kept unless the service says
/// otherwise (`upstream_idle_timeout`): below the keep-alive timeout of
/// common servers (nginx 75 s, hyper 90 s) so the upstream rarely closes a
/// connection the proxy is about to reuse.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Most idle HTTP/1 connections kept per endpoint and worker.
const MAX_IDLE_PER_WORKER: usize = 512;

struct Idle {
    stream: Conn,
    since: Instant,
    /// The service's connection slot this connection holds (`max_connections`).
    permit: Option<Permit>,
}

#[derive(Default)]
struct Slot {
    idle: Vec<Idle>,
    h2: Option<SendRequest<H2Body>>,
}

/// The pooled connections to one endpoint address.
pub struct EndpointPool {
    addr: SocketAddr,
    slots: Box<[Mutex<Slot>]>,
    /// Idle timeout in milliseconds, set by the config that uses the pool.
    idle_timeout_ms: AtomicU64,
}

impl std::fmt::Debug for EndpointPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPool")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EndpointPool {
    fn new(addr: SocketAddr, workers: usize) -> Self {
        Self {
            addr,
            slots: (0..workers.max(1)).map(|_| Mutex::default()).collect(),
            idle_timeout_ms: AtomicU64::new(DEFAULT_IDLE_TIMEOUT.as_millis() as u64),
        }
    }

    /// Sets how long idle connections are kept (the latest config wins when
    /// several services share an address).
    pub fn set_idle_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.idle_timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms.load(Ordering::Relaxed))
    }

    /// The endpoint's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn slot(&self, worker: usize) -> std::sync::MutexGuard<'_, Slot> {
        let slot = &self.slots[worker % self.slots.len()];
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the most recently used idle HTTP/1 connection that is still
    /// usable and secured as `tls` asks (plaintext, or mTLS to that
    /// identity: a config change of the Mesh's mode or of the endpoint's
    /// identity leaves no connection of the other kind in use).
    pub(crate) fn checkout(
        &self,
        worker: usize,
        tls: Option<&Arc<str>>,
        now: Instant,
    ) -> Option<(Conn, Option<Permit>)> {
        let timeout = self.idle_timeout();
        loop {
            let mut idle = self.slot(worker).idle.pop()?;
            if now.duration_since(idle.since) < timeout
                && idle.stream.upstream_identity() == tls
                && idle.stream.is_quiet()
            {
                return Some((idle.stream, idle.permit));
            }
        }
    }

    /// Returns a connection that finished a response cleanly, with the
    /// connection slot it holds.
    pub(crate) fn checkin(
        &self,
        worker: usize,
        stream: Conn,
        permit: Option<Permit>,
        now: Instant,
    ) {
        let mut slot = self.slot(worker);
        if slot.idle.len() < MAX_IDLE_PER_WORKER {
            slot.idle.push(Idle {
                stream,
                since: now,
                permit,
            });
        }
    }

    /// The worker's multiplexed HTTP/2 connection, if one is open and ready.
    pub(crate) fn h2(&self, worker: usize) -> Option<SendRequest<H2Body>> {
        let mut slot = self.slot(worker);
        match &slot.h2 {
            Some(tx) if !tx.is_closed() => Some(tx.clone()),
            Some(_) => {
                slot.h2 = None;
                None
            }
            None => None,
        }
    }

    /// Stores the worker's HTTP/2 connection.
    pub(crate) fn set_h2(&self, worker: usize, tx: SendRequest<H2Body>) {
        self.slot(worker).h2 = Some(tx);
    }

    /// Closes idle connections past their idle timeout.
    pub fn sweep(&self, now: Instant) {
        let timeout = self.idle_timeout();
        for slot in self.slots.iter() {
            let mut slot = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            slot.idle.retain_mut(|idle| {
                now.duration_since(idle.since) < timeout && idle.stream.is_quiet()
            });
        }
    }

    /// Number of idle HTTP/1 connections across workers.
    pub fn idle_count(&self) -> usize {
        self.slots
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .idle
                    .len()
            })
            .sum()
    }
}

/// The registry of endpoint pools, keyed by address, shared by every config
/// version: a reload that keeps an endpoint keeps its warm connections.
#[derive(Debug)]
pub struct Pools {
    workers: usize,
    pools: Mutex<HashMap<SocketAddr, Weak<EndpointPool>>>,
}

impl Pools {
    /// A registry for `workers` worker threads.
    pub fn new(workers: usize) -> Self {
        Self {
            workers,
            pools: Mutex::default(),
        }
    }

    /// The pool for `addr`, created when no live config uses it yet.
    pub fn get(&self, addr: SocketAddr) -> Arc<EndpointPool> {
        let mut pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(pool) = pools.get(&addr).and_then(Weak::upgrade) {
            return pool;
        }
        pools.retain(|_, weak| weak.strong_count() > 0);
        let pool = Arc::new(EndpointPool::new(addr, self.workers));
        pools.insert(addr, Arc::downgrade(&pool));
        pool
    }

    /// Every live pool (for sweeping).
    pub fn live(&self) -> Vec<Arc<EndpointPool>> {
        let pools = self
            .pools
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        pools.values().filter_map(Weak::upgrade).collect()
    }
}
