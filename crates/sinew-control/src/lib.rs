//! The Sinew control plane: a validated resource store (embedded redb or
//! etcd), the registry, streaming push to proxies, the REST API, and locks.
#![forbid(unsafe_code)]

pub mod store;
