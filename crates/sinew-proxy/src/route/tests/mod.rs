//! Tests of the compiled route table, with builders for model resources.

mod actions;
mod lookup;

use sinew_model as m;

use super::*;

fn service(name: &str, namespace: &str, protocol: m::Protocol) -> m::Service {
    m::Service {
        metadata: m::Metadata {
            namespace: namespace.to_owned(),
            ..m::Metadata::named(name)
        },
        spec: m::ServiceSpec {
            protocol,
            endpoints: Vec::new(),
            subsets: Vec::new(),
            balancer: m::Balancer::default(),
            timeout: None,
            connect_timeout: m::Duration::from_secs(1),
            upstream_idle_timeout: m::Duration::from_secs(30),
            retries: None,
            circuit_breaker: m::CircuitBreaker::default(),
            outlier_detection: None,
            health_check: None,
            rate_limit: None,
        },
        location: m::Location::default(),
    }
}

fn http_service(name: &str) -> m::Service {
    service(name, m::DEFAULT_NAMESPACE, m::Protocol::Http)
}

fn route(name: &str, hosts: &[&str], rules: Vec<m::RouteRule>) -> m::Route {
    m::Route {
        metadata: m::Metadata::named(name),
        spec: m::RouteSpec {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            rules,
            jwt: None,
        },
        location: m::Location::default(),
    }
}

fn to(backends: &[(&str, Option<&str>, u32)]) -> m::RouteAction {
    m::RouteAction::Backends(
        backends
            .iter()
            .map(|(service, subset, weight)| m::Backend {
                service: (*service).to_owned(),
                subset: subset.map(str::to_owned),
                weight: *weight,
                failover: Vec::new(),
            })
            .collect(),
    )
}

fn rule(matches: Vec<m::RouteMatch>, action: m::RouteAction) -> m::RouteRule {
    m::RouteRule {
        matches,
        action,
        timeout: None,
        rewrite: None,
        headers: m::HeaderPolicy::default(),
        fault: None,
        mirror: None,
        retries: None,
        fallback: None,
        rate_limit: None,
    }
}

fn path_prefix(prefix: &str) -> m::RouteMatch {
    m::RouteMatch {
        path: Some(m::PathMatch::Prefix(prefix.to_owned())),
        ..m::RouteMatch::default()
    }
}

/// Builds a table; clusters are numbered in order of first request, by "service/subset".
fn build(services: &[m::Service], routes: &[m::Route]) -> (RouteTable, Vec<String>) {
    let mut clusters: Vec<String> = Vec::new();
    let mut cluster = |service: &str, subset: Option<&str>| {
        let key = format!("{service}/{}", subset.unwrap_or(""));
        let id = clusters.iter().position(|c| *c == key).unwrap_or_else(|| {
            clusters.push(key);
            clusters.len() - 1
        });
        ClusterId(u32::try_from(id).expect("few clusters"))
    };
    let table = RouteTable::from_resources(services, routes, &mut cluster);
    (table, clusters)
}

const NO_HEADERS: &[(&str, &str)] = &[];

fn get(path: &str) -> RequestView<'_> {
    RequestView {
        method: "GET",
        path,
        query: None,
        headers: &NO_HEADERS,
    }
}

fn forward(rule: &Rule) -> &Forward {
    match &rule.action {
        Action::Forward(f) => f,
        Action::Direct(d) => panic!("expected a forward, got {d:?}"),
    }
}
