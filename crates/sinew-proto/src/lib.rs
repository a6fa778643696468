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

/// The largest message the Events API takes or sends, on every hop (sidecar
/// → control plane → standalone broker, and fetches back). An event may
/// carry up to 4 MiB of data (the sidecar's publish limit); a fetch returns
/// at least one whole record however large, and a dead-lettered copy adds
/// attributes. gRPC's default of 4 MiB would refuse such messages for good
/// (a publish answered 503 forever, a partition whose fetch never decodes).
pub const EVENTS_MAX_MESSAGE: usize = 16 << 20;

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
