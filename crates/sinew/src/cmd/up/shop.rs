//! What `sinew up` runs: the demo shop (which instances, what they call) or
//! the user's services from `-f FILE`, and the ports of each instance and
//! its sidecar.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};

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

/// One instance of a service, with its sidecar.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    /// Unique name, used for the sidecar's Proxy resource, its config file and logs.
    pub(crate) name: String,
    /// The service it belongs to.
    pub(crate) service: String,
    /// Its version label.
    pub(crate) version: String,
    /// What runs beside the sidecar.
    pub(crate) app: App,
    /// Its sockets.
    pub(crate) ports: Ports,
}

/// The application of an instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum App {
    /// `sinew demo-app`.
    Demo {
        /// Share of `GET /` answered 503 on purpose.
        fail_ratio: f64,
        /// Services it calls on each request.
        calls: Vec<String>,
    },
    /// The user's command (`sinew up -f`).
    User {
        /// What to run.
        command: sinew_model::Command,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Where the user's service declares its health check, if anywhere.
        health_path: Option<String>,
    },
}

impl Instance {
    /// The demo app's share of failures (0 for a user's app).
    pub(crate) fn fail_ratio(&self) -> f64 {
        match &self.app {
            App::Demo { fail_ratio, .. } => *fail_ratio,
            App::User { .. } => 0.0,
        }
    }
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

/// Every instance, and the gateway in front of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shop {
    /// In start order: leaves first, so callers find their downstreams up.
    pub(crate) instances: Vec<Instance>,
    /// The gateway's sockets.
    pub(crate) gateway: GatewayPorts,
    /// The service the gateway sends traffic for `localhost` to.
    pub(crate) entry: String,
    /// The built-in demo shop (with its traffic, Route and Subscription).
    pub(crate) demo: bool,
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
        let instances = LAYOUT
            .iter()
            .zip(addrs.chunks_exact(4))
            .map(
                |(&(name, service, version, fail_ratio, calls), p)| Instance {
                    name: name.to_owned(),
                    service: service.to_owned(),
                    version: version.to_owned(),
                    app: App::Demo {
                        fail_ratio,
                        calls: calls.iter().map(|c| (*c).to_owned()).collect(),
                    },
                    ports: ports(p),
                },
            )
            .collect();
        Ok(Shop {
            instances,
            gateway: gateway_ports(source, INSTANCE_PORTS)?,
            entry: ENTRY.to_owned(),
            demo: true,
        })
    }

    /// The user's services of `file` (`sinew up -f`), with ports from
    /// `source`: four per replica (a fixed `port` replaces the app's).
    pub(crate) fn user(file: &sinew_model::UpFile, source: PortSource) -> io::Result<Shop> {
        let count: usize = file.services.iter().map(|s| s.replicas as usize).sum();
        let addrs = allocate(source, count * 4)?;
        let mut chunks = addrs.chunks_exact(4);
        let mut instances = Vec::with_capacity(count);
        for service in &file.services {
            for replica in 1..=service.replicas {
                let Some(p) = chunks.next() else {
                    return Err(io::Error::other("not enough ports"));
                };
                let mut ports = ports(p);
                if let Some(port) = service.port {
                    ports.app = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
                }
                instances.push(Instance {
                    name: format!("{}-{replica}", service.name),
                    service: service.name.clone(),
                    version: service.version.clone(),
                    app: App::User {
                        command: service.command.clone(),
                        env: service.env.clone(),
                        health_path: service.health_path.clone(),
                    },
                    ports,
                });
            }
        }
        let instance_ports = u16::try_from(count * 4).unwrap_or(u16::MAX);
        Ok(Shop {
            instances,
            gateway: gateway_ports(source, instance_ports)?,
            entry: file
                .entry
                .clone()
                .unwrap_or_else(|| file.services[0].name.clone()),
            demo: false,
        })
    }

    /// Ports the instances use, before the control plane's two.
    pub(crate) fn instance_ports(&self) -> u16 {
        u16::try_from(self.instances.len() * 4).unwrap_or(u16::MAX)
    }

    /// The instances of `service`.
    pub(crate) fn instances_of<'a>(
        &'a self,
        service: &'a str,
    ) -> impl Iterator<Item = &'a Instance> + 'a {
        self.instances.iter().filter(move |i| i.service == service)
    }

    /// The service names, each once, in start order.
    pub(crate) fn services(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for i in &self.instances {
            if !names.contains(&i.service.as_str()) {
                names.push(&i.service);
            }
        }
        names
    }

    /// The first instance of the entry service.
    pub(crate) fn entry(&self) -> Option<&Instance> {
        self.instances_of(&self.entry).next()
    }
}

fn ports(p: &[SocketAddr]) -> Ports {
    Ports {
        app: p[0],
        outbound: p[1],
        inbound: p[2],
        api: p[3],
    }
}

/// The gateway's four ports: after the instances' and the control plane's two.
fn gateway_ports(source: PortSource, instance_ports: u16) -> io::Result<GatewayPorts> {
    let g = allocate(
        match source {
            PortSource::Base(base) => {
                PortSource::Base(base.saturating_add(instance_ports.saturating_add(2)))
            }
            PortSource::Free => PortSource::Free,
        },
        4,
    )?;
    Ok(GatewayPorts {
        ingress: g[0],
        outbound: g[1],
        inbound: g[2],
        api: g[3],
    })
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
        let versions: Vec<&str> = shop
            .instances_of("catalog")
            .map(|i| i.version.as_str())
            .collect();
        assert_eq!(versions, ["v1", "v2"]);
        let flaky = shop
            .instances_of("inventory")
            .filter(|i| i.fail_ratio() > 0.0)
            .count();
        assert_eq!(flaky, 1);
        let web = shop.entry().expect("web");
        assert!(
            matches!(&web.app, App::Demo { calls, .. } if calls == &["catalog", "orders"]),
            "{:?}",
            web.app
        );
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
