//! The compiled route table: virtual hosts found by authority (exact names, then `*.suffix` wildcards), each an ordered rule list.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
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
    pub(crate) exact: HostMap,
    /// Wildcard `*.SUFFIX`, keyed by `SUFFIX` → index into `hosts`.
    pub(crate) wildcard: HostMap,
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

/// Host name → virtual host index, with a fast non-keyed hash.
///
/// Hash flooding does not apply: the keys come from config, and a lookup's
/// cost is bounded by how those keys are laid out, whatever the request's host.
pub(crate) type HostMap = HashMap<Box<str>, usize, BuildHasherDefault<HostHasher>>;

/// A word-at-a-time multiplicative hash (the Fx hash of rustc) for short host names.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct HostHasher(u64);

impl HostHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl Hasher for HostHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 59));
    }

    #[inline]
    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // The product's high bits are the well-mixed ones; the table indexes by the low bits.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn similar_host_names_spread_over_buckets() {
        let hasher = BuildHasherDefault::<HostHasher>::default();
        for shape in ["svc-{}.example.com", "s{}", "reviews-{}.default"] {
            let mut buckets = std::collections::HashSet::new();
            for i in 0..1_000 {
                let host: Box<str> = shape.replace("{}", &i.to_string()).into();
                buckets.insert(hasher.hash_one(&host) & 1023);
            }
            // 1,000 random keys would fill about 640 of 1,024 buckets.
            assert!(
                buckets.len() > 550,
                "{shape}: only {} of 1024 buckets used",
                buckets.len()
            );
        }
    }
}
