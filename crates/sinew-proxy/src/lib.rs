//! The Sinew data plane.
//!
//! A request's path through this crate, one module per phase:
//!
//! ```text
//! listen (accept, protocol detection)
//!   └─ http1 | http2 | tcp  (codec)
//!        └─ route    (normalize path, match host and rule)
//!             └─ balance  (pick an endpoint of the chosen backend)
//!                  └─ endpoint (pooled upstream connection)
//!                       └─ telemetry (metrics, trace context, access log)
//! ```
//!
//! `config` compiles a `sinew_model::Snapshot` into the immutable runtime
//! tables the request path reads; `api` serves the sidecar's loopback API.

pub mod balance;
pub mod route;
pub mod telemetry;
