//! Decoding one document into a [`Resource`]: the envelope, then the spec of its kind.

use super::common::metadata;
use super::node::Node;
use super::other::{mesh_spec, policy_spec, subscription_spec};
use super::positions::kept_positions;
use super::proxy::proxy_spec;
use super::reader::{quoted_list, string, Cx, D};
use super::route::route_spec;
use super::service::service_spec;
use crate::{
    AuthorizationPolicy, ErrorKind, Kind, Location, Mesh, MeshSpec, Proxy, Resource, Route,
    Service, Subscription, API_VERSION,
};

/// One resource document (`apiVersion`, `kind`, `metadata`, `spec`).
pub(crate) fn resource(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Resource> {
    let mut m = cx.map(node, path)?;
    let api = m.opt(cx, "apiVersion", |cx, n, p| {
        let v = string(cx, n, p)?;
        if v != API_VERSION {
            return cx.invalid(
                n,
                p,
                format!("unsupported apiVersion `{v}`, expected `{API_VERSION}`"),
            );
        }
        Some(v)
    });
    let kind = m.req(cx, "kind", |cx, n, p| {
        let v = string(cx, n, p)?;
        match Kind::from_name(&v) {
            Some(k) => Some(k),
            None => {
                let names = Kind::ALL.map(Kind::as_str);
                cx.invalid(
                    n,
                    p,
                    format!(
                        "unknown kind `{v}`, expected one of {}",
                        quoted_list(&names)
                    ),
                )
            }
        }
    });
    let metadata = m.req(cx, "metadata", metadata);
    let spec_node = m.get("spec");
    let spec_path = m.path_of("spec");
    m.finish(cx);
    let kind = kind?;
    let location = Location {
        file: cx.file.to_owned(),
        line: node.line,
        fields: kept_positions(node, kind),
    };
    let Some(spec_node) = spec_node else {
        if kind == Kind::Mesh {
            return Some(Resource::Mesh(Mesh {
                metadata: metadata?,
                spec: MeshSpec::default(),
                location,
            }));
        }
        cx.err(
            ErrorKind::MissingField,
            node,
            &spec_path,
            "missing required field `spec`",
        );
        return None;
    };
    let (n, p) = (spec_node, spec_path.as_str());
    let resource = match kind {
        Kind::Service => {
            let spec = service_spec(cx, n, p);
            Resource::Service(Service {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
        Kind::Route => {
            let spec = route_spec(cx, n, p);
            Resource::Route(Route {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
        Kind::Proxy => {
            let spec = proxy_spec(cx, n, p);
            Resource::Proxy(Proxy {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
        Kind::Mesh => {
            let spec = mesh_spec(cx, n, p);
            Resource::Mesh(Mesh {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
        Kind::AuthorizationPolicy => {
            let spec = policy_spec(cx, n, p);
            Resource::AuthorizationPolicy(AuthorizationPolicy {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
        Kind::Subscription => {
            let spec = subscription_spec(cx, n, p);
            Resource::Subscription(Subscription {
                metadata: metadata?,
                spec: spec?,
                location,
            })
        }
    };
    api?;
    Some(resource)
}
