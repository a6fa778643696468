//! The etcd store (`--store etcd:URL[,URL…]`): etcd v3 through its HTTP/JSON
//! gateway (`/v3/kv/…`, `/v3/watch`, `/v3/lease/…`), so no protobuf toolchain
//! is needed.
//!
//! - `gateway` posts JSON to the first member that answers, moving on when
//!   one cannot be reached (a write moves on only if it surely never left);
//! - `wire` holds the JSON shapes and the mapping of etcd's errors;
//! - `watch` turns a watch stream into per-revision batches.
//!
//! etcd's revisions start at 1 (its empty store), not 0; only their order
//! matters to callers.

mod gateway;
mod watch;
mod wire;

use std::{sync::Arc, time::Duration};

use serde_json::json;

use self::{
    gateway::{Gateway, Replay},
    wire::{b64, prefix_range, txn_request, LeaseResponse, RangeResponse, StreamLine, TxnResponse},
};
use super::{Compare, KeyValue, LeaseId, Op, Revision, Store, StoreError, TxnOutcome, Watch};

/// A client of an etcd cluster; cheap to clone.
#[derive(Debug, Clone)]
pub struct EtcdStore {
    gateway: Arc<Gateway>,
}

impl EtcdStore {
    /// A store on the etcd members at `urls` (`http://HOST:PORT`), checked
    /// by one read at the first member that answers.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when a URL is malformed or no member answers.
    pub async fn connect(urls: &[String]) -> Result<EtcdStore, StoreError> {
        let store = EtcdStore {
            gateway: Arc::new(Gateway::new(urls)?),
        };
        store.get("\0").await?;
        Ok(store)
    }
}

/// Whole seconds for etcd, rounded up, at least 1.
fn ttl_seconds(ttl: Duration) -> u64 {
    let whole = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    whole.max(1)
}

/// The lease a txn's puts name, for [`StoreError::LeaseNotFound`].
fn lease_of(ops: &[Op]) -> LeaseId {
    ops.iter()
        .find_map(|op| match op {
            Op::Put { lease, .. } if *lease != 0 => Some(*lease),
            _ => None,
        })
        .unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn range(&self, prefix: &str) -> Result<(Revision, Vec<KeyValue>), StoreError> {
        let reply: RangeResponse = self
            .gateway
            .call("/v3/kv/range", &prefix_range(prefix), Replay::Safe, 0)
            .await?;
        let items = reply
            .kvs
            .into_iter()
            .map(wire::WireKv::into_key_value)
            .collect::<Result<_, _>>()?;
        Ok((reply.header.revision, items))
    }

    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let request = json!({ "key": b64(key.as_bytes()) });
        let reply: RangeResponse = self
            .gateway
            .call("/v3/kv/range", &request, Replay::Safe, 0)
            .await?;
        reply
            .kvs
            .into_iter()
            .next()
            .map(wire::WireKv::into_key_value)
            .transpose()
    }

    async fn txn(&self, compares: Vec<Compare>, ops: Vec<Op>) -> Result<TxnOutcome, StoreError> {
        let request = txn_request(&compares, &ops);
        let reply: TxnResponse = self
            .gateway
            .call("/v3/kv/txn", &request, Replay::OnlyUnsent, lease_of(&ops))
            .await?;
        Ok(TxnOutcome {
            succeeded: reply.succeeded,
            revision: reply.header.revision,
        })
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        watch::open(&self.gateway, prefix, from).await
    }

    async fn lease_grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let request = json!({ "TTL": ttl_seconds(ttl).to_string(), "ID": "0" });
        let reply: LeaseResponse = self
            .gateway
            .call("/v3/lease/grant", &request, Replay::OnlyUnsent, 0)
            .await?;
        if !reply.error.is_empty() {
            return Err(StoreError::Internal(format!(
                "etcd refused a lease: {}",
                reply.error
            )));
        }
        Ok(reply.id)
    }

    async fn lease_keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        // A stream endpoint: one request in, one reply line out.
        let request = json!({ "ID": lease.to_string() });
        let reply: StreamLine<LeaseResponse> = self
            .gateway
            .call("/v3/lease/keepalive", &request, Replay::Safe, lease)
            .await?;
        if let Some(error) = reply.error {
            return Err(error.into_store_error(lease));
        }
        // etcd answers an unknown (expired, revoked) lease with a TTL of 0.
        match reply.result {
            Some(result) if result.ttl > 0 => Ok(()),
            _ => Err(StoreError::LeaseNotFound(lease)),
        }
    }

    async fn lease_revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let request = json!({ "ID": lease.to_string() });
        let revoked: Result<serde_json::Value, _> = self
            .gateway
            .call("/v3/lease/revoke", &request, Replay::Safe, lease)
            .await;
        match revoked {
            // Already gone (expired, or revoked before): its keys are gone too.
            Ok(_) | Err(StoreError::LeaseNotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn describe(&self) -> String {
        format!("etcd:{}", self.gateway.urls().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(300)), 1);
        assert_eq!(ttl_seconds(Duration::from_secs(2)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }
}
