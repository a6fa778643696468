//! `ProxyConfig`: what `sinew proxy --config FILE` loads — one Proxy plus, in static mode, its resources.

use std::path::Path;

use crate::snapshot::{at, sort};
use crate::{parse_file, parse_str, Error, ErrorKind, Errors, Protocol, Proxy, Resource, Snapshot};

/// A proxy's bootstrap and the snapshot of the other resources in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// The file's single Proxy resource.
    pub proxy: Proxy,
    /// Every other resource of the file, cross-checked.
    pub snapshot: Snapshot,
}

impl ProxyConfig {
    /// Reads and checks a proxy config file.
    ///
    /// # Errors
    /// Parse errors, snapshot conflicts, a count of Proxies other than one, and
    /// (in static mode) `listen.tcp` entries naming unknown or non-tcp services;
    /// each at `FILE:LINE:COL` of the offending field.
    pub fn load(path: impl AsRef<Path>, version: u64) -> Result<ProxyConfig, Errors> {
        let path = path.as_ref();
        let resources = parse_file(path)?;
        Self::from_resources(&path.display().to_string(), resources, version)
    }

    /// Like [`ProxyConfig::load`] on text already read; `source_name` names it in errors.
    ///
    /// # Errors
    /// As [`ProxyConfig::load`].
    pub fn parse(source_name: &str, text: &str, version: u64) -> Result<ProxyConfig, Errors> {
        Self::from_resources(source_name, parse_str(source_name, text)?, version)
    }

    /// Splits parsed resources into the single Proxy and a snapshot of the rest.
    ///
    /// # Errors
    /// As [`ProxyConfig::load`], without parse errors.
    pub fn from_resources(
        source_name: &str,
        resources: Vec<Resource>,
        version: u64,
    ) -> Result<ProxyConfig, Errors> {
        let mut proxies = Vec::new();
        let mut rest = Vec::with_capacity(resources.len());
        for r in resources {
            match r {
                Resource::Proxy(p) => proxies.push(p),
                other => rest.push(other),
            }
        }
        let mut errors = Vec::new();
        for extra in proxies.iter().skip(1) {
            let msg = format!(
                "a proxy config holds exactly one Proxy; the first is at {}",
                proxies[0].location.place("kind")
            );
            errors.push(at(ErrorKind::Conflict, &extra.location, "kind", msg));
        }
        let snapshot = match Snapshot::build(rest, version) {
            Ok(s) => Some(s),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        let Some(proxy) = proxies.into_iter().next() else {
            let msg = "no Proxy resource; a proxy config holds exactly one";
            errors.insert(
                0,
                Error::new(ErrorKind::MissingField, source_name, 0, 0, "", msg),
            );
            return Err(Errors(errors));
        };
        if let Some(snapshot) = &snapshot {
            check_tcp_listeners(&proxy, snapshot, &mut errors);
        }
        match snapshot {
            Some(snapshot) if errors.is_empty() => Ok(ProxyConfig { proxy, snapshot }),
            _ => {
                sort(&mut errors);
                Err(Errors(errors))
            }
        }
    }
}

impl ProxyConfig {
    /// A proxy's bootstrap with a snapshot pushed by the control plane,
    /// checked as a static file is: every `listen.tcp` entry must name a
    /// `protocol: tcp` Service of the snapshot (a proxy refuses a version it
    /// cannot serve its listeners with).
    ///
    /// # Errors
    /// Each `listen.tcp` entry that does not, at its place in the bootstrap file.
    pub fn pushed(proxy: Proxy, snapshot: Snapshot) -> Result<ProxyConfig, Errors> {
        let mut errors = Vec::new();
        tcp_listeners(&proxy, &snapshot, &mut errors);
        if errors.is_empty() {
            Ok(ProxyConfig { proxy, snapshot })
        } else {
            Err(Errors(errors))
        }
    }
}

/// In static mode every `listen.tcp` entry must name a `protocol: tcp` Service of the file.
fn check_tcp_listeners(proxy: &Proxy, snapshot: &Snapshot, errors: &mut Vec<Error>) {
    if proxy.spec.control.is_none() {
        tcp_listeners(proxy, snapshot, errors);
    }
}

fn tcp_listeners(proxy: &Proxy, snapshot: &Snapshot, errors: &mut Vec<Error>) {
    let ns = &proxy.metadata.namespace;
    for (i, t) in proxy.spec.listen.tcp.iter().enumerate() {
        let field = format!("spec.listen.tcp[{i}].service");
        match snapshot.service_in(ns, &t.service) {
            None => {
                let msg = format!("unknown service `{}` in namespace `{ns}`", t.service);
                errors.push(at(
                    ErrorKind::UnknownReference,
                    &proxy.location,
                    &field,
                    msg,
                ));
            }
            Some(s) if s.spec.protocol != Protocol::Tcp => {
                let msg = format!(
                    "service `{}` ({}) is not `protocol: tcp`; tcp listeners forward opaque TCP only",
                    t.service,
                    s.location.place("spec.protocol")
                );
                errors.push(at(
                    ErrorKind::UnknownReference,
                    &proxy.location,
                    &field,
                    msg,
                ));
            }
            Some(_) => {}
        }
    }
}
