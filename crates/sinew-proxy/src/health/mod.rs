//! Active health checks: each endpoint is probed (HTTP, TCP or gRPC) at its
//! service's interval, and its shared [`EndpointHealth`] flips after the
//! unhealthy/healthy thresholds of failures/successes in a row.
//!
//! ```text
//! HealthChecker::spawn(targets) ── one task per endpoint ──► probe ──► EndpointHealth::record
//!                                                                        │
//!                     balancers read EndpointHealth::is_healthy (one atomic load)
//! ```

mod checker;
mod grpc;
mod probe;
mod registry;
mod state;

pub use checker::{HealthChecker, HealthCheckerHandle, Target};
pub use probe::{probe, ProbeError, USER_AGENT};
pub use registry::HealthStates;
pub use state::{EndpointHealth, HealthSnapshot, Thresholds};
