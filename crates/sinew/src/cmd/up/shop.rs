//! The demo shop: which instances run, what they call, and the ports of each
//! instance and its sidecar.

use std::io;
use std::net::SocketAddr;

use super::ports::{allocate, PortSource};

/// The sockets of one instance and its sidecar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ports {
    /// The demo app's own listener (reached only through the sidecar's inbound).
    pub(crate) app: SocketAddr,
    /// Sidecar outbound: the app calls other services here.
    pub(crate) outbound: SocketAddr,
    /// Sidecar inbound: the mesh reaches this instance here.
    pub(crate) inbound: SocketAddr,
    /// Sidecar API: `/ready`, `/metrics`, `/config`.
    pub(crate) api: SocketAddr,
}

/// One instance of a demo service, with its sidecar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    /// Unique name, used for the sidecar's Proxy resource, its config file and logs.
    pub(crate) name: String,
    /// The service it belongs to.
    pub(crate) service: &'static str,
    /// Its version label.
    pub(crate) version: &'static str,
    /// Share of `GET /` answered 503 on purpose.
    pub(crate) fail_ratio: f64,
    /// Services it calls on each request.
    pub(crate) calls: &'static [&'static str],
    /// Its sockets.
    pub(crate) ports: Ports,
}

/// The sockets of the gateway: where traffic from outside enters the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GatewayPorts {
    /// Its ingress listener (plaintext HTTP on loopback for the demo).
    pub(crate) ingress: SocketAddr,
    /// Its (unused) outbound listener.
    pub(crate) outbound: SocketAddr,
    /// Its (unused) inbound listener.
    pub(crate) inbound: SocketAddr,
    /// Its API.
    pub(crate) api: SocketAddr,
}

/// Every instance of the demo shop, and the gateway in front of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shop {
    /// In start order: leaves first, so callers find their downstreams up.
    pub(crate) instances: Vec<Instance>,
    /// The gateway's sockets.
    pub(crate) gateway: GatewayPorts,
}

/// The gateway's Proxy name (its config file and logs too).
pub(crate) const GATEWAY: &str = "gateway";

/// The service the demo traffic enters by.
pub(crate) const ENTRY: &str = "web";

/// The service that publishes an `order.created` event per call.
pub(crate) const PUBLISHER: &str = "orders";

/// The service whose sidecar delivers the order events to its app.
pub(crate) const SUBSCRIBER: &str = "shipping";

/// (name, service, version, fail ratio, calls), leaves first.
const LAYOUT: [(&str, &str, &str, f64, &[&str]); 7] = [
    ("inventory-1", "inventory", "v1", 0.0, &[]),
    ("inventory-2", "inventory", "v1", 0.2, &[]),
    ("catalog-v1", "catalog", "v1", 0.0, &["inventory"]),
    ("catalog-v2", "catalog", "v2", 0.0, &["inventory"]),
    ("shipping-1", "shipping", "v1", 0.0, &[]),
    ("orders-1", "orders", "v1", 0.0, &[]),
    ("web-1", "web", "v1", 0.0, &["catalog", "orders"]),
];

/// Ports the instances use (four each), before the control plane's two.
pub(crate) const INSTANCE_PORTS: u16 = LAYOUT.len() as u16 * 4;

impl Shop {
    /// The demo shop with ports from `source`.
    pub(crate) fn demo(source: PortSource) -> io::Result<Shop> {
        let addrs = allocate(source, LAYOUT.len() * 4)?;
        // After the instances' ports and the control plane's two.
        let gateway = allocate(
            match source {
                PortSource::Base(base) => PortSource::Base(base.saturating_add(INSTANCE_PORTS + 2)),
                PortSource::Free => PortSource::Free,
            },
            4,
        )?;
        let instances = LAYOUT
            .iter()
            .zip(addrs.chunks_exact(4))
            .map(
                |(&(name, service, version, fail_ratio, calls), p)| Instance {
                    name: name.to_owned(),
                    service,
                    version,
                    fail_ratio,
                    calls,
                    ports: Ports {
                        app: p[0],
                        outbound: p[1],
                        inbound: p[2],
                        api: p[3],
                    },
                },
            )
            .collect();
        Ok(Shop {
            instances,
            gateway: GatewayPorts {
                ingress: gateway[0],
                outbound: gateway[1],
                inbound: gateway[2],
                api: gateway[3],
            },
        })
    }

    /// The instances of `service`.
    pub(crate) fn instances_of<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.service == service)
    }

    /// The service names, each once, in start order.
    pub(crate) fn services(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for i in &self.instances {
            if !names.contains(&i.service) {
                names.push(i.service);
            }
        }
        names
    }

    /// The first instance of the entry service.
    pub(crate) fn entry(&self) -> Option<&Instance> {
        self.instances_of(ENTRY).next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_shop_has_the_expected_shape() {
        let shop = Shop::demo(PortSource::Base(30000)).expect("ports");
        assert_eq!(
            shop.services(),
            ["inventory", "catalog", "shipping", "orders", "web"]
        );
        let versions: Vec<&str> = shop.instances_of("catalog").map(|i| i.version).collect();
        assert_eq!(versions, ["v1", "v2"]);
        let flaky = shop
            .instances_of("inventory")
            .filter(|i| i.fail_ratio > 0.0)
            .count();
        assert_eq!(flaky, 1);
        let web = shop.entry().expect("web");
        assert_eq!(web.calls, ["catalog", "orders"]);
        // Every socket is distinct.
        let mut all: Vec<SocketAddr> = shop
            .instances
            .iter()
            .flat_map(|i| [i.ports.app, i.ports.outbound, i.ports.inbound, i.ports.api])
            .collect();
        let g = shop.gateway;
        all.extend([g.ingress, g.outbound, g.inbound, g.api]);
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 32);
        assert_eq!(
            g.ingress.port(),
            30030,
            "after the control plane's two ports"
        );
    }
}
