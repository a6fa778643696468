//! The gRPC API between Sinew proxies and the control plane, generated from
//! `proto/sinew/v1/control.proto` at build time.

/// `sinew.v1`: the control stream, registration and locks.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod v1 {
    tonic::include_proto!("sinew.v1");
}

pub use v1::*;

pub mod coalesce;

/// Metadata key carrying the bearer token on every call.
pub const AUTHORIZATION: &str = "authorization";

/// The payload bytes of `events` (data, key, id, attributes): what a
/// publish batch is capped by.
pub fn payload_bytes(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| {
            e.data.len()
                + e.key.len()
                + e.id.len()
                + e.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum()
}
