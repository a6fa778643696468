//! The compiled route table: virtual hosts found by authority (exact names, then `*.suffix` wildcards), each an ordered rule list.

use std::collections::HashMap;
use std::sync::Arc;

use super::request::{normalize_host, RequestView};
use super::rule::Rule;

/// The immutable routing table of one config snapshot.
///
/// Built by [`RouteTable::build`] (or [`RouteTable::from_resources`]);
/// shared between workers behind an `Arc` and replaced whole on a config change.
#[derive(Debug, Default)]
pub struct RouteTable {
    pub(crate) hosts: Box<[VirtualHost]>,
    /// Exact lower-case host name → index into `hosts`.
    pub(crate) exact: HashMap<Box<str>, usize>,
    /// Wildcard `*.SUFFIX`, keyed by `SUFFIX` → index into `hosts`.
    pub(crate) wildcard: HashMap<Box<str>, usize>,
    /// Host `*`, if a Route claims it.
    pub(crate) catch_all: Option<usize>,
}

impl RouteTable {
    /// The virtual host for a request's authority (`Host` header or
    /// `:authority`): port, trailing dot and case are ignored. An exact name
    /// wins over a wildcard, and a longer wildcard suffix over a shorter one
    /// (`*.a.example.com` before `*.example.com`); `*.example.com` does not
    /// match `example.com` itself. A Route host `*` catches the rest.
    pub fn virtual_host(&self, authority: &str) -> Option<&VirtualHost> {
        let host = normalize_host(authority);
        let host: &str = &host;
        if let Some(&i) = self.exact.get(host) {
            return self.hosts.get(i);
        }
        if !self.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = memchr::memchr(b'.', rest.as_bytes()) {
                // Skip the empty label before a leading dot: `*.x` needs a non-empty subdomain.
                if dot > 0 {
                    if let Some(&i) = self.wildcard.get(&rest[dot + 1..]) {
                        return self.hosts.get(i);
                    }
                }
                rest = &rest[dot + 1..];
            }
        }
        self.catch_all.and_then(|i| self.hosts.get(i))
    }

    /// Shorthand for [`virtual_host`](Self::virtual_host) then [`VirtualHost::route`].
    pub fn route(&self, authority: &str, req: &RequestView<'_>) -> Option<&Rule> {
        self.virtual_host(authority)?.route(req)
    }

    /// Every virtual host, in build order.
    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.hosts
    }
}

/// One virtual host: the hosts it answers for and its ordered rules.
#[derive(Debug)]
pub struct VirtualHost {
    /// The host names (and `*.suffix` patterns) it answers for.
    pub names: Box<[Arc<str>]>,
    pub(crate) rules: Box<[Rule]>,
}

impl VirtualHost {
    /// The first rule whose match list accepts the request.
    pub fn route(&self, req: &RequestView<'_>) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.matches(req))
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}
