//! The decision phase shared by every HTTP codec: find the route rule (or
//! the inbound application), take a token from the rule's and the service's
//! rate limits, choose the backend by weight and the endpoint by the
//! cluster's balancer, and resolve the metric handles and timeout.
//! No lock, no allocation.

use crate::balance::EndpointLoad;
use crate::config::{Cluster, Endpoint, Runtime};
use crate::error::{ErrorKind, ProxyError};
use crate::listen::Peer;
use crate::resilience::{Permit, RetryBudget, RetryPolicy};
use crate::route::{Action, Backend, Forward, RequestView};
use crate::server::Direction;
use crate::telemetry::{DirectResponseMetrics, RequestMetrics};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::time::{Duration, Instant};

/// Where a request goes.
#[derive(Debug)]
pub(crate) struct Target<'r> {
    pub(crate) cluster: &'r Cluster,
    pub(crate) endpoint: &'r Endpoint,
    pub(crate) index: usize,
    /// The request's hash key (hash balancers; reused to pick retries).
    pub(crate) hash: Option<u64>,
    /// The route rule's forwarding settings (none inbound).
    pub(crate) forward: Option<&'r Forward>,
    route: &'r str,
    pub(crate) metrics: &'r RequestMetrics,
    pub(crate) timeout: Option<Duration>,
    /// The rule's fault injection, if any.
    pub(crate) fault: Option<&'r sinew_model::Fault>,
    /// The retry policy and budget in force: the rule's, else the service's.
    pub(crate) retry: Option<(&'r RetryPolicy, Option<&'r RetryBudget>)>,
    /// Holds one of the service's circuit-breaker request slots until the
    /// request ends (HTTP/2 moves it into the response body).
    permit: Option<Permit>,
}

impl Target<'_> {
    /// The circuit-breaker slot, for a response that outlives the target
    /// (an HTTP/2 body streams after the handler returns).
    pub(crate) fn take_permit(&mut self) -> Option<Permit> {
        self.permit.take()
    }

    /// The chosen endpoint's load tracker.
    pub(crate) fn load(&self) -> &EndpointLoad {
        self.cluster.balancer.load(self.index)
    }

    /// The route's name, for logs.
    pub(crate) fn route_name(&self) -> &str {
        self.route
    }
}

/// A response the proxy gives itself.
#[derive(Debug)]
pub(crate) struct Direct<'r> {
    pub(crate) status: StatusCode,
    pub(crate) headers: &'r [(HeaderName, HeaderValue)],
    pub(crate) body: &'r Bytes,
    pub(crate) metrics: &'r DirectResponseMetrics,
}

/// The outcome of the decision phase.
#[derive(Debug)]
pub(crate) enum Decision<'r> {
    Forward(Target<'r>),
    Direct(Direct<'r>),
}

/// Decides where a request goes.
pub(crate) fn decide<'r>(
    runtime: &'r Runtime,
    direction: Direction,
    authority: Option<&str>,
    req: &RequestView<'_>,
    peer: &Peer,
) -> Result<Decision<'r>, ProxyError> {
    if direction == Direction::Inbound {
        let inbound = runtime
            .inbound
            .as_ref()
            .ok_or(ProxyError::new(ErrorKind::NoRoute))?;
        if let Some(authz) = &inbound.authz {
            // The peer's SPIFFE ID comes with mutual TLS; a plaintext
            // connection (permissive or disabled mode) has none, and
            // identity conditions match nothing.
            let verdict = authz.authorizer.check(req, peer.identity.as_deref());
            if !verdict.allowed() {
                authz.count_denial(verdict.policy());
                return Err(ProxyError::caused_by(
                    ErrorKind::Forbidden,
                    crate::error::Denied(verdict.policy().into()),
                ));
            }
        }
        let cluster = &inbound.cluster;
        let index = cluster
            .pick(req, peer.addr)
            .ok_or(ProxyError::new(ErrorKind::NoEndpoint))?;
        return Ok(Decision::Forward(Target {
            permit: Some(admit(cluster)?),
            cluster,
            endpoint: &cluster.endpoints[index],
            index,
            hash: None,
            retry: cluster
                .retry
                .as_ref()
                .map(|p| (p, cluster.retry_budget.as_deref())),
            forward: None,
            route: "inbound",
            metrics: &inbound.metrics,
            timeout: cluster.timeout,
            fault: None,
        }));
    }
    let authority = authority.ok_or(ProxyError::new(ErrorKind::NoRoute))?;
    let rule = runtime
        .routes
        .route(authority, req)
        .ok_or(ProxyError::new(ErrorKind::NoRoute))?;
    match &rule.action {
        Action::Direct(direct) => Ok(Decision::Direct(Direct {
            status: direct.status,
            headers: &direct.headers,
            body: &direct.body,
            metrics: runtime.direct_metrics(&rule.route_name),
        })),
        Action::Forward(forward) => {
            if direction == Direction::Ingress {
                // A gateway checks the end-user token the Route asks for
                // before spending any rate-limit token on the request.
                if let Some(jwt) = runtime.jwt_policy(&rule.route_name) {
                    jwt.check(req.headers)?;
                }
            }
            if let Some(limit) = &rule.rate_limit {
                limit.check(Instant::now())?;
            }
            let backend = forward.pick_backend();
            if let Some(limit) = &runtime.clusters[backend.cluster.0 as usize].rate_limit {
                if let Err(refused) = limit.check(Instant::now()) {
                    // Not forwarded after all: the rule's token is not spent.
                    if let Some(rule_limit) = &rule.rate_limit {
                        rule_limit.give_back();
                    }
                    return Err(refused);
                }
            }
            let Some(cluster) = choose_level(runtime, backend) else {
                // Nothing usable at any failover level: the rule's fallback, if any.
                return match &rule.fallback {
                    Some(fallback) => Ok(Decision::Direct(Direct {
                        status: fallback.status,
                        headers: &fallback.headers,
                        body: &fallback.body,
                        metrics: runtime.direct_metrics(&rule.route_name),
                    })),
                    None => Err(ProxyError::new(ErrorKind::NoEndpoint)),
                };
            };
            let hash = cluster.hash_key(req, peer.addr);
            let index = cluster
                .pick_hashed(hash)
                .ok_or(ProxyError::new(ErrorKind::NoEndpoint))?;
            let retry = match &rule.retry {
                Some((policy, budget)) => Some((policy, Some(&**budget))),
                None => cluster
                    .retry
                    .as_ref()
                    .map(|p| (p, cluster.retry_budget.as_deref())),
            };
            Ok(Decision::Forward(Target {
                permit: Some(admit(cluster)?),
                cluster,
                endpoint: &cluster.endpoints[index],
                index,
                hash,
                retry,
                forward: Some(forward),
                route: &rule.route_name,
                metrics: runtime.request_metrics(direction, &rule.route_name, backend.cluster),
                timeout: rule.timeout.or(cluster.timeout),
                fault: rule.fault.as_ref(),
            }))
        }
    }
}

/// The cluster to send to: the backend's own, or the first failover level
/// with a usable endpoint; below the panic threshold at every level, the
/// first level that has endpoints at all. `None` when no level has any.
fn choose_level<'r>(runtime: &'r Runtime, backend: &Backend) -> Option<&'r Cluster> {
    let primary = &runtime.clusters[backend.cluster.0 as usize];
    if backend.failover.is_empty() {
        return (!primary.endpoints.is_empty()).then_some(primary);
    }
    let levels = std::iter::once(primary).chain(
        backend
            .failover
            .iter()
            .map(|id| &runtime.clusters[id.0 as usize]),
    );
    let mut first_with_endpoints = None;
    for cluster in levels {
        let total = cluster.endpoints.len();
        if total == 0 {
            continue;
        }
        first_with_endpoints.get_or_insert(cluster);
        if !crate::resilience::in_panic(
            cluster.recent_usable_count(),
            total,
            cluster.panic_threshold_percent,
        ) {
            return Some(cluster);
        }
    }
    first_with_endpoints.filter(|c| c.panic_threshold_percent > 0)
}

/// Takes a request slot of the cluster's circuit breaker; over the limit the
/// request is refused at once (503), never queued.
fn admit(cluster: &Cluster) -> Result<Permit, ProxyError> {
    cluster.breaker.try_request().ok_or_else(|| {
        cluster.telemetry.circuit_breaker_rejections.inc();
        ProxyError::new(ErrorKind::Overloaded)
    })
}
