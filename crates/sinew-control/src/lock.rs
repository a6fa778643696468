//! Distributed locks for apps, with fencing tokens.
//!
//! A lock is the key `locks/{name}` put on a store lease of the lock's TTL.
//! Its fencing token is the key's create revision: the store revision only
//! grows (across restarts too), so every new holder's token is larger than
//! every earlier holder's — a resource guarded by the token can refuse a
//! writer that lost its lease without knowing it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    keys,
    store::{Compare, Op, Store, StoreError},
};

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lease {
    /// The lock's name.
    pub name: String,
    /// Who holds it.
    pub owner: String,
    /// The fencing token.
    pub token: u64,
    /// The lease's TTL.
    pub ttl_ms: u64,
}

/// What is stored at `locks/{name}`.
#[derive(Debug, Serialize, Deserialize)]
struct Holder {
    owner: String,
    ttl_ms: u64,
}

/// Why a lock call failed.
#[derive(Debug)]
pub enum LockError {
    /// Another owner holds the lock.
    Held {
        /// The holder.
        owner: String,
    },
    /// The caller's lease is gone (expired, released, or another holder now).
    Lost,
    /// A malformed request.
    Invalid(String),
    /// The store failed.
    Store(StoreError),
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { owner } => write!(f, "the lock is held by `{owner}`"),
            LockError::Lost => f.write_str("the lease is no longer held (expired or released)"),
            LockError::Invalid(e) => f.write_str(e),
            LockError::Store(e) => e.fmt(f),
        }
    }
}

impl From<StoreError> for LockError {
    fn from(e: StoreError) -> Self {
        LockError::Store(e)
    }
}

const MIN_TTL: Duration = Duration::from_secs(1);
const MAX_TTL: Duration = Duration::from_secs(3600);

fn check(name: &str, owner: &str) -> Result<(), LockError> {
    if !keys::valid_segment(name) {
        return Err(LockError::Invalid(format!(
            "invalid lock name `{name}`: use letters, digits, `-`, `_`, `.` and `:`"
        )));
    }
    // Workloads' owners are stored with their identity before them (up to
    // 253 characters of their own, checked where they call).
    if owner.is_empty() || owner.len() > 1024 {
        return Err(LockError::Invalid(
            "`owner` must be 1 to 1024 characters".to_owned(),
        ));
    }
    Ok(())
}

fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// Takes `name` for `owner`. Taking a lock one already holds renews it and
/// returns the same token.
pub async fn acquire(
    store: &dyn Store,
    name: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Lease, LockError> {
    check(name, owner)?;
    if !(MIN_TTL..=MAX_TTL).contains(&ttl) {
        return Err(LockError::Invalid(
            "`ttl` must be between 1s and 1h".to_owned(),
        ));
    }
    let key = keys::lock(name);
    for _ in 0..8 {
        if let Some(kv) = store.get(&key).await? {
            let holder: Holder = serde_json::from_slice(&kv.value)
                .map_err(|e| LockError::Store(StoreError::Internal(e.to_string())))?;
            if holder.owner != owner {
                return Err(LockError::Held {
                    owner: holder.owner,
                });
            }
            return match store.lease_keep_alive(kv.lease).await {
                Ok(()) => Ok(Lease {
                    name: name.to_owned(),
                    owner: owner.to_owned(),
                    token: kv.create_revision,
                    ttl_ms: holder.ttl_ms,
                }),
                // Expired between the read and now: the key is going; take it again.
                Err(StoreError::LeaseNotFound(_)) => continue,
                Err(e) => Err(e.into()),
            };
        }
        let lease = store.lease_grant(ttl).await?;
        let holder = Holder {
            owner: owner.to_owned(),
            ttl_ms: ttl_ms(ttl),
        };
        let value = serde_json::to_vec(&holder).unwrap_or_default();
        let put = Op::Put {
            key: key.clone(),
            value,
            lease,
        };
        let outcome = store
            .txn(vec![Compare::ModRevision(key.clone(), 0)], vec![put])
            .await?;
        if outcome.succeeded {
            return Ok(Lease {
                name: name.to_owned(),
                owner: owner.to_owned(),
                token: outcome.revision,
                ttl_ms: holder.ttl_ms,
            });
        }
        let _ = store.lease_revoke(lease).await;
    }
    Err(LockError::Store(StoreError::Unavailable(
        "lock contention: too many concurrent takers".to_owned(),
    )))
}

/// Extends `owner`'s lease on `name`, which must carry `token`.
pub async fn renew(
    store: &dyn Store,
    name: &str,
    owner: &str,
    token: u64,
) -> Result<Lease, LockError> {
    check(name, owner)?;
    let key = keys::lock(name);
    let Some(kv) = store.get(&key).await? else {
        return Err(LockError::Lost);
    };
    let holder: Holder = serde_json::from_slice(&kv.value)
        .map_err(|e| LockError::Store(StoreError::Internal(e.to_string())))?;
    if holder.owner != owner || kv.create_revision != token {
        return Err(LockError::Lost);
    }
    match store.lease_keep_alive(kv.lease).await {
        Ok(()) => Ok(Lease {
            name: name.to_owned(),
            owner: owner.to_owned(),
            token,
            ttl_ms: holder.ttl_ms,
        }),
        Err(StoreError::LeaseNotFound(_)) => Err(LockError::Lost),
        Err(e) => Err(e.into()),
    }
}

/// Releases `owner`'s lease on `name` with `token`; `false` when it was not held.
pub async fn release(
    store: &dyn Store,
    name: &str,
    owner: &str,
    token: u64,
) -> Result<bool, LockError> {
    check(name, owner)?;
    let key = keys::lock(name);
    let Some(kv) = store.get(&key).await? else {
        return Ok(false);
    };
    let holder: Holder = serde_json::from_slice(&kv.value)
        .map_err(|e| LockError::Store(StoreError::Internal(e.to_string())))?;
    if holder.owner != owner || kv.create_revision != token {
        return Ok(false);
    }
    let outcome = store
        .txn(
            vec![Compare::ModRevision(key.clone(), kv.mod_revision)],
            vec![Op::delete(key)],
        )
        .await?;
    if outcome.succeeded && kv.lease != 0 {
        let _ = store.lease_revoke(kv.lease).await;
    }
    Ok(outcome.succeeded)
}
