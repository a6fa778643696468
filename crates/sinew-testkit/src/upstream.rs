//! `Upstream`: anything the kit can list as a Service endpoint (address, labels, weight).

use std::net::SocketAddr;

/// A server that can stand as an endpoint of a Service in a proxy's config.
pub trait Upstream {
    /// Where it listens.
    fn addr(&self) -> SocketAddr;

    /// Endpoint labels (e.g. `version: v1`) written next to the address.
    fn labels(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Endpoint weight, if one should be written.
    fn weight(&self) -> Option<u32> {
        None
    }
}
