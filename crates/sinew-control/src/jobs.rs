//! The leader's singleton jobs over the registry: expire TTL registrations,
//! deregister proxies gone past the grace period, and run external workloads'
//! HTTP/TCP checks.

use std::{collections::HashMap, time::Duration};

use tokio::time::Instant;

use crate::{
    keys,
    registry::{Check, Registration, Source},
    replica::Replica,
    store::{Compare, KeyValue, Op},
};

/// Checks running at once.
const PARALLEL_CHECKS: usize = 64;

/// The jobs' memory between ticks: when each check last ran.
#[derive(Debug, Default)]
pub(crate) struct Jobs {
    last_probe: HashMap<String, Instant>,
}

impl Jobs {
    pub(crate) async fn run(&mut self, replica: &Replica) {
        let kvs = match replica.store.range(keys::REGISTRY).await {
            Ok((_, kvs)) => kvs,
            Err(error) => {
                tracing::warn!(%error, "cannot read the registry");
                return;
            }
        };
        let now_ms = keys::now_ms();
        let grace_ms = u64::try_from(replica.grace.as_millis()).unwrap_or(u64::MAX);
        let mut probes = Vec::new();
        for kv in kvs {
            let Ok(r) = serde_json::from_slice::<Registration>(&kv.value) else {
                continue;
            };
            let expired = match (&r.source, &r.check) {
                (Source::Proxy, _) => r
                    .disconnected_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) > grace_ms),
                (Source::External, Some(Check::Ttl { ttl_ms })) => {
                    now_ms.saturating_sub(r.heartbeat_ms) > *ttl_ms
                }
                (Source::External, _) => false,
            };
            if expired {
                tracing::info!(key = %kv.key, "deregistering");
                let guard = vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)];
                if let Err(error) = replica
                    .store
                    .txn(guard, vec![Op::delete(kv.key.clone())])
                    .await
                {
                    tracing::warn!(%error, "cannot deregister");
                }
                self.last_probe.remove(&kv.key);
                continue;
            }
            if let Some(interval) = r.check.as_ref().and_then(Check::interval) {
                let due = self
                    .last_probe
                    .get(&kv.key)
                    .is_none_or(|t| t.elapsed() >= interval);
                if due && probes.len() < PARALLEL_CHECKS {
                    self.last_probe.insert(kv.key.clone(), Instant::now());
                    probes.push((kv, r));
                }
            }
        }
        let results =
            futures_util::future::join_all(probes.into_iter().map(|(kv, r)| async move {
                let healthy = match &r.check {
                    Some(check) => probe(check).await,
                    None => r.healthy,
                };
                (kv, r, healthy)
            }))
            .await;
        for (kv, mut r, healthy) in results {
            if r.healthy != healthy {
                tracing::info!(key = %kv.key, healthy, "external check changed");
                r.healthy = healthy;
                write(replica, &kv, &r).await;
            }
        }
    }
}

async fn write(replica: &Replica, kv: &KeyValue, r: &Registration) {
    let Ok(value) = serde_json::to_vec(r) else {
        return;
    };
    let guard = vec![Compare::ModRevision(kv.key.clone(), kv.mod_revision)];
    let put = Op::Put {
        key: kv.key.clone(),
        value,
        lease: kv.lease,
    };
    if let Err(error) = replica.store.txn(guard, vec![put]).await {
        tracing::warn!(%error, "cannot record a check result");
    }
}

/// Runs one check: HTTP 2xx/3xx or a TCP connect within the timeout.
pub(crate) async fn probe(check: &Check) -> bool {
    match check {
        Check::Ttl { .. } => true,
        Check::Tcp {
            address,
            timeout_ms,
            ..
        } => {
            let connect = tokio::net::TcpStream::connect(address.as_str());
            matches!(
                tokio::time::timeout(Duration::from_millis(*timeout_ms), connect).await,
                Ok(Ok(_))
            )
        }
        Check::Http {
            url, timeout_ms, ..
        } => {
            let get = crate::http::get_status(url);
            matches!(
                tokio::time::timeout(Duration::from_millis(*timeout_ms), get).await,
                Ok(Ok(s)) if (200..400).contains(&s)
            )
        }
    }
}
