//! Upstream endpoints: connecting with a deadline, and the per-worker
//! connection pools that keep HTTP/1 connections warm (and one multiplexed
//! HTTP/2 connection per endpoint) across requests and config reloads.

mod connect;
mod pool;
mod worker;

pub(crate) use connect::connect;
pub(crate) use pool::H2Body;
pub use pool::{EndpointPool, Pools};
pub use worker::{current_worker, set_current_worker};
