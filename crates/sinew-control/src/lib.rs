//! The Sinew control plane: a validated resource store (embedded redb or
//! etcd), the registry, streaming push to proxies, the REST API, and locks.
//!
//! Data flows one way: REST apply → validate against everything stored →
//! one store transaction → the store's watch → every replica's [`view`]
//! builder → each proxy stream diffs the new view against what it sent →
//! the proxy applies and ACKs or NACKs → its status is written back.
#![forbid(unsafe_code)]

pub mod apply;
mod ca;
mod caller;
mod events;
mod grpc_tls;
mod http;
mod jobs;
mod keys;
pub mod lock;
mod plan;
mod push;
pub mod registry;
mod replica;
mod rest;
mod server;
mod standalone;
mod stats;
pub mod status;
pub mod store;
mod view;

pub use ca::UserCa;
pub use server::{BrokerCredentials, ControlPlane, EventsSpec, Options, StartError, StoreSpec};
pub use standalone::{BrokerOptions, StandaloneBroker};
