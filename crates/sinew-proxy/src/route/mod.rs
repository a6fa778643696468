//! Routing: normalize the request path, find the virtual host, pick the first matching rule.
//!
//! ```text
//! request-target ─ split_target ─ normalize_path ─┐
//! :authority / Host ─ normalize_host ─ RouteTable::virtual_host ─ VirtualHost::route ─ Rule
//! ```
//!
//! Everything here is built once per config snapshot and then only read: the
//! request path takes no lock and, in the common case, allocates nothing.

mod normalize;
mod request;

pub use normalize::{normalize_path, split_target, PathError};
pub use request::{cookie, normalize_host, percent_decode, query_param, HeaderSource, RequestView};
