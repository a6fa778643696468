//! Proxy status: what `sinew status` shows — each proxy's service, address,
//! connection, the version it was sent, the version it applied, and its last
//! NACK. Written by the replica holding the proxy's stream; writes are
//! coalesced so a thousand ACKs cost one store transaction.

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    keys,
    store::{Op, Store},
};

/// One proxy's status, stored at `proxies/{namespace}/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProxyStatus {
    /// Proxy name.
    pub name: String,
    /// Its api listener (`host:port`, loopback by default): where
    /// `sinew explain` asks it; empty when unknown.
    #[serde(default)]
    pub api: String,
    /// Proxy namespace.
    pub namespace: String,
    /// The service it fronts.
    pub service: String,
    /// The endpoint it registered (empty: none).
    pub address: String,
    /// Whether its stream is open now.
    pub connected: bool,
    /// The replica holding (or last holding) its stream.
    pub replica: String,
    /// The stream session (replica id and counter).
    pub session: String,
    /// The last version sent to it.
    pub desired_version: u64,
    /// The last version it ACKed.
    pub applied_version: u64,
    /// Its last NACK, kept until a later version is ACKed.
    pub last_nack: Option<Nack>,
    /// Wall clock of the last message from it (ms since the epoch).
    pub last_seen_ms: u64,
    /// How its stream authenticated: `certificate` (its workload
    /// certificate, over TLS) or `token` (the join or admin token).
    #[serde(default)]
    pub authenticated: String,
}

/// A refused version and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The version refused.
    pub version: u64,
    /// The proxy's error text.
    pub error: String,
}

/// How often coalesced status writes are flushed.
const FLUSH: Duration = Duration::from_millis(50);
/// Ops per transaction (etcd's default `--max-txn-ops` is 128).
const CHUNK: usize = 100;

/// Queues status writes; the latest write of each proxy wins.
#[derive(Debug, Clone)]
pub(crate) struct StatusWriter {
    tx: mpsc::UnboundedSender<ProxyStatus>,
}

impl StatusWriter {
    pub(crate) fn start(store: Arc<dyn Store>) -> StatusWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(flush_loop(store, rx));
        StatusWriter { tx }
    }

    pub(crate) fn write(&self, status: ProxyStatus) {
        let _ = self.tx.send(status);
    }
}

async fn flush_loop(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<ProxyStatus>) {
    let mut pending: HashMap<String, ProxyStatus> = HashMap::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(s) => {
                    pending.insert(keys::proxy(&s.namespace, &s.name), s);
                }
                None => return,
            }
        }
        tokio::time::sleep(FLUSH).await;
        while let Ok(s) = rx.try_recv() {
            pending.insert(keys::proxy(&s.namespace, &s.name), s);
        }
        // Another replica may hold a newer session of the same proxy (it
        // reconnected there before this replica saw the old stream end):
        // the status with the later last message wins.
        let current: HashMap<String, ProxyStatus> = match store.range(keys::PROXIES).await {
            Ok((_, kvs)) => kvs
                .into_iter()
                .filter_map(|kv| Some((kv.key, serde_json::from_slice(&kv.value).ok()?)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read proxy status; retrying");
                continue;
            }
        };
        let batch: Vec<(String, ProxyStatus)> = pending
            .drain()
            .filter(|(k, s)| {
                current.get(k).is_none_or(|c: &ProxyStatus| {
                    c.session == s.session || c.last_seen_ms <= s.last_seen_ms
                })
            })
            .collect();
        for chunk in batch.chunks(CHUNK) {
            let ops = chunk
                .iter()
                .filter_map(|(k, s)| Some(Op::put(k.clone(), serde_json::to_vec(s).ok()?)))
                .collect();
            if let Err(error) = store.txn(Vec::new(), ops).await {
                tracing::warn!(%error, "cannot record proxy status; retrying");
                pending.extend(chunk.iter().cloned());
            }
        }
    }
}
