//! Telemetry: the metrics registry and its Prometheus rendering, W3C trace context, and the JSON access log.
//!
//! - [`Metrics`] holds every series. The request path never looks a series
//!   up: handles ([`RequestMetrics`], [`UpstreamMetrics`], ...) are resolved
//!   by label set when a config snapshot is built and stored in it. The same
//!   labels always give the same handle, so counters survive reloads.
//!   Metric names and help texts live in [`names`].
//! - [`TraceContext`] parses and writes `traceparent`. The proxy forwards
//!   `tracestate` untouched: it is opaque vendor data and we add no entry.
//! - [`AccessLog`] writes one JSON object per request on a background
//!   thread; when the writer falls behind, lines are dropped and counted
//!   (`sinew_access_log_dropped_total`) instead of blocking a request.

mod access_entry;
mod access_log;
mod exposition;
mod family;
mod histogram;
mod instruments;
mod json;
mod labels;
mod metrics;
pub mod names;
mod render;
mod trace;

pub use access_entry::{AccessEntry, AccessFlags};
pub use access_log::{AccessLog, AccessLogTarget};
pub use histogram::Histogram;
pub use instruments::{Counter, Gauge};
pub use labels::{Direction, ProxyErrorKind, ReloadResult, RequestLabels};
pub use metrics::{
    ConnectionGuard, ConnectionMetrics, DirectResponseMetrics, Metrics, RequestMetrics,
    ServiceMetrics, TcpMetrics, UpstreamMetrics,
};
pub use render::CONTENT_TYPE;
pub use trace::{Hex, TraceContext, TRACEPARENT, TRACEPARENT_LEN, TRACESTATE};
