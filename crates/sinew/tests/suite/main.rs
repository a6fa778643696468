//! The `sinew` binary's black-box tests, one module per capability, built as one
//! test binary (one link instead of one per file: faster builds, a smaller target
//! directory). Run one module with `cargo test -p sinew --test suite -- MODULE::`.

mod api;
mod authorization;
mod balancing;
mod code_layout;
mod config_errors;
mod control_cli;
mod control_identity;
mod control_plane;
mod dashboard;
mod events;
mod events_broker;
mod events_consumer;
mod events_durability;
mod events_publish;
mod explain;
mod failover;
mod fault;
mod gateway;
mod h2_retries;
mod hardening;
mod hot_reload;
mod http1;
mod http1_stalls;
mod interop;
mod mtls;
mod overload;
mod protocols;
mod rate_limit;
mod retries;
mod route_resilience;
mod routing;
mod telemetry;
mod timeouts;
mod top;
mod up_file;
mod up_smoke;
mod workers;
