//! `ProxyBuilder`: describes a `sinew proxy` under test and renders its multi-document YAML config.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::port::free_port;
use crate::resource::indent;
use crate::upstream::Upstream;

use super::Proxy;

/// The loopback addresses a proxy under test listens on.
#[derive(Debug, Clone)]
pub struct ProxyPorts {
    /// `listen.outbound`.
    pub outbound: SocketAddr,
    /// `listen.inbound`.
    pub inbound: SocketAddr,
    /// `listen.api`.
    pub api: SocketAddr,
    /// `listen.tcp`: service name and address.
    pub tcp: Vec<(String, SocketAddr)>,
    /// `listen.ingress.address` (gateway mode), when set.
    pub ingress: Option<SocketAddr>,
}

impl ProxyPorts {
    /// Fresh free loopback addresses for outbound, inbound and api; no TCP listeners.
    pub fn allocate() -> Self {
        Self {
            outbound: free_port(),
            inbound: free_port(),
            api: free_port(),
            tcp: Vec::new(),
            ingress: None,
        }
    }
}

#[derive(Debug, Clone)]
struct EndpointDef {
    addr: SocketAddr,
    labels: Vec<(String, String)>,
    weight: Option<u32>,
}

#[derive(Debug, Clone)]
struct ServiceDef {
    name: String,
    protocol: &'static str,
    endpoints: Vec<EndpointDef>,
    extra: String,
}

/// Describes a proxy to start: its services (from kit servers), extra
/// resources as YAML, listeners and settings. See [`Proxy::builder`].
#[derive(Debug, Clone)]
pub struct ProxyBuilder {
    pub(super) bin: PathBuf,
    pub(super) env: Vec<(String, String)>,
    pub(super) ready_timeout: Duration,
    pub(super) ports: ProxyPorts,
    service_name: String,
    proxy_name: String,
    app: Option<SocketAddr>,
    services: Vec<ServiceDef>,
    resources: Vec<String>,
    workers: Option<u32>,
    access_log: Option<String>,
    api_listen: Option<String>,
    spec_extra: String,
    /// `listen.ingress.tls` as YAML (gateway mode with TLS).
    ingress_tls: Option<String>,
    /// The Mesh's `mtls`, written as a Mesh resource; `None` writes no Mesh
    /// (the default, strict, applies).
    mtls: Option<String>,
}

fn endpoints_of<U: Upstream>(upstreams: &[&U]) -> Vec<EndpointDef> {
    upstreams
        .iter()
        .map(|u| EndpointDef {
            addr: u.addr(),
            labels: u.labels(),
            weight: u.weight(),
        })
        .collect()
}

impl ProxyBuilder {
    pub(super) fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(15),
            ports: ProxyPorts::allocate(),
            service_name: "test".to_owned(),
            proxy_name: "test-proxy".to_owned(),
            app: None,
            services: Vec::new(),
            resources: Vec::new(),
            workers: None,
            access_log: None,
            api_listen: None,
            spec_extra: String::new(),
            ingress_tls: None,
            // Static-mode tests of everything but mTLS run plaintext; the
            // mTLS tests choose a mode and give certificate files.
            mtls: Some("disabled".to_owned()),
        }
    }

    /// An HTTP Service `name` whose endpoints are `upstreams` (with their labels and weights).
    pub fn service<U: Upstream>(self, name: &str, upstreams: &[&U]) -> Self {
        self.service_with(name, upstreams, "")
    }

    /// Like [`Self::service`], with extra YAML lines placed under `spec`
    /// (e.g. `"balancer: {algorithm: ring-hash, hash: {header: x-user}}"`).
    pub fn service_with<U: Upstream>(mut self, name: &str, upstreams: &[&U], spec: &str) -> Self {
        self.services.push(ServiceDef {
            name: name.to_owned(),
            protocol: "http",
            endpoints: endpoints_of(upstreams),
            extra: spec.to_owned(),
        });
        self
    }

    /// A TCP Service `name` over `upstreams`, plus a `listen.tcp` listener for
    /// it on a free port (see [`Proxy::tcp`]).
    pub fn tcp_service<U: Upstream>(mut self, name: &str, upstreams: &[&U]) -> Self {
        self.services.push(ServiceDef {
            name: name.to_owned(),
            protocol: "tcp",
            endpoints: endpoints_of(upstreams),
            extra: String::new(),
        });
        self.ports.tcp.push((name.to_owned(), free_port()));
        self
    }

    /// A `listen.tcp` listener for service `name` on a free port, without
    /// defining the Service (a control-mode proxy gets it by push).
    pub fn tcp_listener(mut self, name: &str) -> Self {
        self.ports.tcp.push((name.to_owned(), free_port()));
        self
    }

    /// Extra resources (Routes, Services, …) as YAML, one or more documents.
    pub fn route_yaml(mut self, yaml: &str) -> Self {
        self.resources.push(yaml.to_owned());
        self
    }

    /// Replaces every resource added with [`Self::route_yaml`].
    pub fn set_route_yaml(mut self, yaml: &str) -> Self {
        self.resources = vec![yaml.to_owned()];
        self
    }

    /// `spec.service`: the proxy's own service name (default `test`).
    pub fn own_service(mut self, name: &str) -> Self {
        self.service_name = name.to_owned();
        self
    }

    /// `spec.app`: where the inbound listener forwards.
    pub fn app(mut self, addr: SocketAddr) -> Self {
        self.app = Some(addr);
        self
    }

    /// `spec.workers`.
    pub fn workers(mut self, workers: u32) -> Self {
        self.workers = Some(workers);
        self
    }

    /// `spec.access_log: {path, format: json}`; `path` may be `stdout` or a file.
    pub fn access_log(mut self, path: &str) -> Self {
        self.access_log = Some(path.to_owned());
        self
    }

    /// Writes `listen.api` verbatim instead of the allocated loopback address.
    pub fn api_listen(mut self, address: &str) -> Self {
        self.api_listen = Some(address.to_owned());
        self
    }

    /// The Proxy's `metadata.name` (default `test-proxy`).
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.proxy_name);
        self
    }

    /// Gateway mode: a `listen.ingress` listener on a free port, plaintext
    /// or with `tls` (the YAML of `listen.ingress.tls`, e.g.
    /// `{certificates: [{hosts: [a.test], cert: …, key: …}]}`).
    pub fn ingress(mut self, tls: Option<&str>) -> Self {
        self.ports.ingress = Some(free_port());
        self.ingress_tls = tls.map(str::to_owned);
        self
    }

    /// The Mesh's `mtls` mode (`strict`, `permissive`, `disabled`; default
    /// `disabled` for these static-mode tests).
    pub fn mtls(mut self, mode: &str) -> Self {
        self.mtls = Some(mode.to_owned());
        self
    }

    /// Writes no Mesh resource: the mesh default (strict mTLS) applies.
    pub fn no_mesh(mut self) -> Self {
        self.mtls = None;
        self
    }

    /// `spec.tls`: the certificate files for mTLS.
    pub fn tls(self, files: &crate::TlsFiles) -> Self {
        self.proxy_spec(&files.spec_yaml())
    }

    /// Control mode on `control`: `spec.control` its gRPC address, the
    /// token in `SINEW_TOKEN` and its trust bundle in `SINEW_CONTROL_CA`.
    pub fn control_plane(self, control: &crate::Control) -> Self {
        let ca = control.ca_file().display().to_string();
        self.proxy_spec(&format!("control: \"{}\"", control.grpc()))
            .env("SINEW_TOKEN", control.token())
            .env("SINEW_CONTROL_CA", &ca)
    }

    /// Extra YAML lines placed under the Proxy's `spec`.
    pub fn proxy_spec(mut self, yaml: &str) -> Self {
        self.spec_extra.push_str(yaml);
        self.spec_extra.push('\n');
        self
    }

    /// An environment variable for the process (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// How long [`Self::spawn`] waits for `/ready` (default 15 s).
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// The addresses this proxy will listen on.
    pub fn ports(&self) -> &ProxyPorts {
        &self.ports
    }

    /// The full config file this builder describes.
    pub fn render(&self) -> String {
        let p = &self.ports;
        let mut out = String::new();
        let api = self.api_listen.clone().unwrap_or_else(|| p.api.to_string());
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "apiVersion: sinew.dev/v1alpha1\nkind: Proxy\nmetadata:\n  name: {}\nspec:\n  service: {}\n",
            self.proxy_name, self.service_name
        );
        if let Some(app) = self.app {
            let _ = writeln!(out, "  app: \"{app}\"");
        }
        let _ = write!(
            out,
            "  listen:\n    outbound: \"{}\"\n    inbound: \"{}\"\n    api: \"{api}\"\n",
            p.outbound, p.inbound
        );
        if !p.tcp.is_empty() {
            out.push_str("    tcp:\n");
            for (service, addr) in &p.tcp {
                let _ = writeln!(out, "      - {{service: {service}, address: \"{addr}\"}}");
            }
        }
        if let Some(addr) = p.ingress {
            let _ = write!(out, "    ingress:\n      address: \"{addr}\"\n");
            if let Some(tls) = &self.ingress_tls {
                let _ = writeln!(out, "      tls: {tls}");
            }
        }
        if let Some(workers) = self.workers {
            let _ = writeln!(out, "  workers: {workers}");
        }
        if let Some(path) = &self.access_log {
            let _ = writeln!(out, "  access_log: {{path: \"{path}\", format: json}}");
        }
        out.push_str(&indent(&self.spec_extra, 2));
        for svc in &self.services {
            let _ = write!(
                out,
                "---\napiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata:\n  name: {}\nspec:\n  protocol: {}\n  endpoints:\n",
                svc.name, svc.protocol
            );
            for ep in &svc.endpoints {
                let _ = writeln!(out, "    - address: \"{}\"", ep.addr);
                if !ep.labels.is_empty() {
                    let labels: Vec<String> =
                        ep.labels.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    let _ = writeln!(out, "      labels: {{{}}}", labels.join(", "));
                }
                if let Some(weight) = ep.weight {
                    let _ = writeln!(out, "      weight: {weight}");
                }
            }
            out.push_str(&indent(&svc.extra, 2));
        }
        // A control-mode proxy gets the Mesh by push, with the other resources.
        let control_mode = self.spec_extra.contains("control:");
        if let Some(mode) = self.mtls.as_ref().filter(|_| !control_mode) {
            let _ = write!(
                out,
                "---\napiVersion: sinew.dev/v1alpha1\nkind: Mesh\nmetadata:\n  name: mesh\nspec:\n  mtls: {mode}\n"
            );
        }
        for res in &self.resources {
            let trimmed = res.trim_start_matches('\n');
            if !trimmed.starts_with("---") {
                out.push_str("---\n");
            }
            out.push_str(trimmed);
            if !trimmed.ends_with('\n') {
                out.push('\n');
            }
        }
        out
    }

    /// Starts the process and waits (bounded) for `GET /ready` to answer 200;
    /// panics with the proxy's stderr and config if it does not.
    pub async fn spawn(self) -> Proxy {
        let mut proxy = self.launch();
        if !proxy.wait_ready(proxy.ready_timeout()).await {
            let status = proxy.process_mut().try_exit();
            panic!(
                "proxy not ready (exit: {status:?})\n--- config ---\n{}\n--- stderr ---\n{}",
                proxy.rendered_config(),
                proxy.stderr_tail()
            );
        }
        proxy
    }

    /// Writes the config and starts the process without waiting for readiness.
    pub fn launch(self) -> Proxy {
        let text = self.render();
        Proxy::start(self, &text)
    }

    /// Writes `text` verbatim as the config and starts the process (for bad configs).
    pub fn launch_raw(self, text: &str) -> Proxy {
        Proxy::start(self, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(SocketAddr);
    impl Upstream for Fixed {
        fn addr(&self) -> SocketAddr {
            self.0
        }
        fn labels(&self) -> Vec<(String, String)> {
            vec![("version".to_owned(), "v1".to_owned())]
        }
        fn weight(&self) -> Option<u32> {
            Some(3)
        }
    }

    #[test]
    fn renders_proxy_services_and_routes_as_documents() {
        let be = Fixed(SocketAddr::from(([127, 0, 0, 1], 9000)));
        let b = ProxyBuilder::new("sinew")
            .service_with("be", &[&be], "balancer: {algorithm: round-robin}")
            .route_yaml("kind: Route\nmetadata: {name: r}\n")
            .workers(2);
        let text = b.render();
        // Proxy, Service, the Mesh (mtls: disabled by default), the Route.
        assert_eq!(text.matches("\n---\n").count(), 3, "{text}");
        assert!(text.contains("kind: Mesh\nmetadata:\n  name: mesh\nspec:\n  mtls: disabled\n"));
        assert!(text.contains("kind: Proxy\n"));
        assert!(text.contains("  workers: 2\n"));
        assert!(text.contains(
            "    - address: \"127.0.0.1:9000\"\n      labels: {version: v1}\n      weight: 3\n"
        ));
        assert!(text.contains("  balancer: {algorithm: round-robin}\n"));
        assert!(text.ends_with("---\nkind: Route\nmetadata: {name: r}\n"));
        assert!(text.contains(&format!("    api: \"{}\"\n", b.ports().api)));
    }
}
