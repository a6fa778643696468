//! Compiles `sinew_model` Routes and Services into a [`RouteTable`], including the implicit route of each unclaimed HTTP service.

use std::sync::Arc;

use http::{HeaderName, HeaderValue, StatusCode};
use sinew_model::{Protocol, Route, RouteAction, RouteRule, Service, Snapshot, DEFAULT_NAMESPACE};

use super::matcher::{MatchEntry, RuleMatcher};
use super::rule::{
    Action, Backend, ClusterId, DirectResponse, Forward, HeaderOps, Mirror, PrefixRewrite, Rule,
};
use super::table::{RouteTable, VirtualHost};

/// Hands out the cluster for a (service, subset) pair.
pub type ClusterFn<'c> = dyn FnMut(&str, Option<&str>) -> ClusterId + 'c;

impl RouteTable {
    /// Compiles the Routes and Services of `snapshot` into a table; see
    /// [`from_resources`](Self::from_resources) for the rules.
    pub fn build(snapshot: &Snapshot, cluster: &mut ClusterFn<'_>) -> RouteTable {
        Self::from_resources(
            snapshot.services().values(),
            snapshot.routes().values(),
            cluster,
        )
    }

    /// Compiles routes and services given one by one; [`build`](Self::build)
    /// reads them from a snapshot.
    ///
    /// Each Route becomes one virtual host for its hosts. Each `http` Service
    /// gets an implicit virtual host for its `NAME` and `NAME.NAMESPACE`,
    /// for whichever of these names no Route claims, with a single rule
    /// forwarding everything to the whole service (metrics name
    /// `service/NAME`). `tcp` services are not routed. When services of the
    /// same name live in several namespaces, the bare `NAME` goes to the one
    /// in the default namespace, else to the first given.
    ///
    /// `cluster` is called once per backend and mirror, with the service name
    /// and subset, and returns the cluster that serves it.
    ///
    /// The model has validated its input; anything still unusable (a header
    /// name that is not a valid HTTP token, say) is skipped with a warning
    /// rather than failing the whole table.
    pub fn from_resources<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        routes: impl IntoIterator<Item = &'a Route>,
        cluster: &mut ClusterFn<'_>,
    ) -> RouteTable {
        let mut table = TableBuilder::default();
        for route in routes {
            let names: Vec<Arc<str>> = route
                .spec
                .hosts
                .iter()
                .map(|h| Arc::from(h.to_ascii_lowercase()))
                .collect();
            let route_name: Arc<str> = Arc::from(route.metadata.name.as_str());
            let rules = route
                .spec
                .rules
                .iter()
                .enumerate()
                .map(|(index, rule)| compile_rule(&route_name, index, rule, cluster))
                .collect();
            table.add(names, rules);
        }

        let mut services: Vec<&Service> = services
            .into_iter()
            .filter(|s| s.spec.protocol == Protocol::Http)
            .collect();
        // Stable: the default namespace first, otherwise the order given.
        services.sort_by_key(|s| s.metadata.namespace != DEFAULT_NAMESPACE);
        for service in services {
            let name = service.metadata.name.as_str();
            let qualified = format!("{name}.{}", service.metadata.namespace);
            let names: Vec<Arc<str>> = [name, qualified.as_str()]
                .into_iter()
                .filter(|host| !table.claims(host))
                .map(Arc::from)
                .collect();
            if names.is_empty() {
                continue;
            }
            let rule = implicit_rule(name, cluster);
            table.add(names, vec![rule]);
        }
        table.finish()
    }
}

/// Accumulates virtual hosts and their host-name indexes.
#[derive(Default)]
struct TableBuilder {
    table: RouteTable,
    hosts: Vec<VirtualHost>,
}

impl TableBuilder {
    fn claims(&self, host: &str) -> bool {
        self.table.exact.contains_key(host)
    }

    /// Adds a virtual host; names already claimed stay with their first owner.
    fn add(&mut self, names: Vec<Arc<str>>, rules: Vec<Rule>) {
        let index = self.hosts.len();
        for name in &names {
            let slot = if &**name == "*" {
                if self.table.catch_all.is_none() {
                    self.table.catch_all = Some(index);
                }
                continue;
            } else if let Some(suffix) = name.strip_prefix("*.") {
                self.table.wildcard.entry(suffix.into())
            } else {
                self.table.exact.entry((**name).into())
            };
            slot.or_insert(index);
        }
        self.hosts.push(VirtualHost {
            names: names.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
        });
    }

    fn finish(mut self) -> RouteTable {
        self.table.hosts = self.hosts.into_boxed_slice();
        self.table
    }
}

fn compile_rule(
    route_name: &Arc<str>,
    index: usize,
    rule: &RouteRule,
    cluster: &mut ClusterFn<'_>,
) -> Rule {
    let matcher = RuleMatcher::new(rule.matches.iter().map(MatchEntry::from).collect());
    let action = match &rule.action {
        RouteAction::Backends(backends) => {
            let backends = backends
                .iter()
                .map(|b| Backend {
                    cluster: cluster(&b.service, b.subset.as_deref()),
                    service: Arc::from(b.service.as_str()),
                    subset: b.subset.as_deref().map(Arc::from),
                    weight: b.weight,
                    failover: b
                        .failover
                        .iter()
                        .map(|subset| cluster(&b.service, Some(subset)))
                        .collect(),
                })
                .collect();
            let mut forward = Forward::new(backends);
            forward.rewrite = rule.rewrite.as_ref().map(|r| {
                let prefixes: Vec<&str> = if matcher.entries().is_empty() {
                    vec!["/"]
                } else {
                    matcher
                        .entries()
                        .iter()
                        .map(MatchEntry::rewrite_prefix)
                        .collect()
                };
                PrefixRewrite::new(prefixes, &r.prefix)
            });
            forward.request_headers = header_ops(&rule.headers.request);
            forward.response_headers = header_ops(&rule.headers.response);
            Action::Forward(forward)
        }
        RouteAction::DirectResponse(d) => Action::Direct(direct_response(route_name, d)),
    };
    Rule {
        route_name: route_name.clone(),
        index,
        action,
        timeout: rule.timeout.map(|t| t.as_std()),
        retries: rule.retries.clone(),
        retry: rule.retries.as_ref().map(|r| {
            (
                crate::resilience::RetryPolicy::from_model(r),
                Arc::new(crate::resilience::RetryBudget::from_model(&r.budget)),
            )
        }),
        fallback: rule
            .fallback
            .as_ref()
            .map(|d| direct_response(route_name, d)),
        fault: rule.fault.clone(),
        mirror: rule.mirror.as_ref().map(|m| Mirror {
            cluster: cluster(&m.service, None),
            service: Arc::from(m.service.as_str()),
            percent: m.percent,
        }),
        rate_limit: rule.rate_limit.map(crate::ratelimit::Limiter::new),
        matcher,
    }
}

fn direct_response(route_name: &Arc<str>, d: &sinew_model::DirectResponse) -> DirectResponse {
    DirectResponse {
        status: StatusCode::from_u16(d.status).unwrap_or_else(|_| {
            tracing::warn!(status = d.status, route = %route_name, "invalid direct_response status; answering 500");
            StatusCode::INTERNAL_SERVER_ERROR
        }),
        body: d.body.clone().map(bytes::Bytes::from).unwrap_or_default(),
        headers: header_pairs(&d.headers),
    }
}

/// The single rule of a service's implicit route: everything to the whole service.
fn implicit_rule(service: &str, cluster: &mut ClusterFn<'_>) -> Rule {
    let forward = Forward::new(vec![Backend {
        cluster: cluster(service, None),
        service: Arc::from(service),
        subset: None,
        weight: 1,
        failover: Vec::new(),
    }]);
    Rule {
        route_name: Arc::from(format!("service/{service}")),
        index: 0,
        action: Action::Forward(forward),
        timeout: None,
        retries: None,
        retry: None,
        fallback: None,
        fault: None,
        mirror: None,
        rate_limit: None,
        matcher: RuleMatcher::default(),
    }
}

fn header_ops(ops: &sinew_model::HeaderOps) -> HeaderOps {
    HeaderOps {
        set: header_pairs(&ops.set),
        remove: ops.remove.iter().filter_map(|n| header_name(n)).collect(),
    }
}

fn header_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Vec<(HeaderName, HeaderValue)> {
    pairs
        .into_iter()
        .filter_map(|(name, value)| {
            let value = HeaderValue::from_str(value)
                .inspect_err(
                    |_| tracing::warn!(header = %name, "invalid header value in route; skipped"),
                )
                .ok()?;
            Some((header_name(name)?, value))
        })
        .collect()
}

fn header_name(name: &str) -> Option<HeaderName> {
    HeaderName::from_bytes(name.as_bytes())
        .inspect_err(|_| tracing::warn!(header = %name, "invalid header name in route; skipped"))
        .ok()
}
