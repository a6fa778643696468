//! Where everything lives in the store. One prefix per concern, so a replica
//! can list and watch exactly what it needs.

use sinew_model::Kind;

/// Everything Sinew keeps, under one prefix (so an etcd can be shared).
pub(crate) const ROOT: &str = "/sinew/";
/// `resources/{Kind}/{namespace}/{name}` → the document as JSON.
pub(crate) const RESOURCES: &str = "/sinew/resources/";
/// Bumped by every resource write: applies and deletes compare it, so two
/// concurrent writers cannot each validate against a state the other changes.
pub(crate) const RESOURCES_GUARD: &str = "/sinew/meta/resources-guard";
/// `registry/{namespace}/{service}/{id}` → a [`crate::registry::Registration`].
pub(crate) const REGISTRY: &str = "/sinew/registry/";
/// `health/{namespace}/{service}/{address}/{reporter}` → `1` healthy, `0` not.
pub(crate) const HEALTH: &str = "/sinew/health/";
/// `proxies/{namespace}/{name}` → a [`crate::status::ProxyStatus`].
pub(crate) const PROXIES: &str = "/sinew/proxies/";
/// `replicas/{id}` → the replica's addresses, on its lease.
pub(crate) const REPLICAS: &str = "/sinew/replicas/";
/// `locks/{name}` → a lock holder, on the holder's lease.
pub(crate) const LOCKS: &str = "/sinew/locks/";
/// The elected replica's id, on its lease.
pub(crate) const LEADER: &str = "/sinew/leader";
/// The certificate authority's signer (certificate, key, trust bundle).
pub(crate) const CA: &str = "/sinew/ca/signer";
/// The admin token (REST API).
pub(crate) const ADMIN_TOKEN: &str = "/sinew/tokens/admin";
/// The join token (proxies' gRPC streams).
pub(crate) const JOIN_TOKEN: &str = "/sinew/tokens/join";

pub(crate) fn resource(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{RESOURCES}{}/{namespace}/{name}", kind.as_str())
}

pub(crate) fn resource_kind(kind: Kind) -> String {
    format!("{RESOURCES}{}/", kind.as_str())
}

pub(crate) fn registration(namespace: &str, service: &str, id: &str) -> String {
    format!("{REGISTRY}{namespace}/{service}/{id}")
}

pub(crate) fn health(namespace: &str, service: &str, address: &str, reporter: &str) -> String {
    format!("{HEALTH}{namespace}/{service}/{address}/{reporter}")
}

pub(crate) fn proxy(namespace: &str, name: &str) -> String {
    format!("{PROXIES}{namespace}/{name}")
}

pub(crate) fn lock(name: &str) -> String {
    format!("{LOCKS}{name}")
}

/// Splits `rest` (a key with its prefix removed) into `n` `/`-separated parts.
pub(crate) fn parts(rest: &str, n: usize) -> Option<Vec<&str>> {
    let parts: Vec<&str> = rest.splitn(n, '/').collect();
    (parts.len() == n && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// A name usable as one key segment: DNS-label-like, plus `.`, `_` and `:`.
pub(crate) fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// Milliseconds since the Unix epoch (wall clock: compared across replicas).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
