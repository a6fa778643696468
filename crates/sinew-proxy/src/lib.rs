//! The Sinew data plane.
//!
//! A request's path through this crate, one module per phase:
//!
//! ```text
//! listen    accept; mTLS by mode (tls); HTTP/2 by ALPN or preface → http2, else http1;
//!           tcp listeners splice bytes
//!   http1 | http2   codec: parse the head, frame the body
//!     route         normalize the path; virtual host; first matching rule
//!     dispatch      rate limits → weighted backend → cluster → balance (endpoint); metric handles
//!       endpoint    pooled connection (HTTP/1 keep-alive, HTTP/2 multiplexed)
//!       telemetry   metrics, trace context, access log
//! ```
//!
//! `config` compiles a `sinew_model::ProxyConfig` into the immutable
//! [`config::Runtime`] the request path reads; [`server::Server`] runs the
//! workers and swaps runtimes on reload; `api` serves the loopback API;
//! `control` feeds the runtime from a control plane instead of a file.

mod access;
pub mod api;
pub mod authz;
pub mod balance;
pub mod config;
pub mod control;
mod dispatch;
pub mod endpoint;
pub mod error;
pub mod events;
pub mod explain;
mod fault;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod health;
mod http1;
mod http2;
mod listen;
pub mod ratelimit;
pub mod reload;
pub mod resilience;
pub mod route;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use server::{Server, Shared};
