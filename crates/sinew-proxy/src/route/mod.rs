//! Routing: normalize the request path, find the virtual host, pick the first matching rule.
//!
//! ```text
//! request-target ─ split_target ─ normalize_path ──────────────┐
//! :authority / Host ─ RouteTable::virtual_host ─ VirtualHost::route(RequestView) ─ Rule
//!                                                   Rule.action: Forward ─ pick_backend ─ Backend.cluster
//!                                                              | Direct  ─ DirectResponse
//! ```
//!
//! Everything here is built once per config snapshot and then only read: the
//! request path takes no lock and, in the common case, allocates nothing.

mod compile;
mod matcher;
mod normalize;
mod request;
mod rule;
mod table;
#[cfg(test)]
mod tests;
mod weighted;

pub use compile::ClusterFn;
pub use matcher::{
    HeaderMatcher, MatchEntry, PathMatcher, QueryMatcher, RuleMatcher, StringMatcher,
};
pub use normalize::{normalize_path, split_target, PathError};
pub use request::{cookie, normalize_host, percent_decode, query_param, HeaderSource, RequestView};
pub use rule::{
    Action, Backend, ClusterId, DirectResponse, Forward, HeaderOps, Mirror, PrefixRewrite, Rule,
};
pub use table::{RouteTable, VirtualHost};
