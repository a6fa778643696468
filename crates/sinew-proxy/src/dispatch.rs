//! The decision phase shared by every HTTP codec: find the route rule (or
//! the inbound application), choose the backend by weight and the endpoint
//! by the cluster's balancer, and resolve the metric handles and timeout.
//! No lock, no allocation.

use crate::balance::EndpointLoad;
use crate::config::{Cluster, Endpoint, Runtime};
use crate::error::{ErrorKind, ProxyError};
use crate::resilience::Permit;
use crate::route::{Action, Forward, RequestView};
use crate::server::Direction;
use crate::telemetry::{DirectResponseMetrics, RequestMetrics};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use std::{net::SocketAddr, time::Duration};

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
    /// Holds one of the service's circuit-breaker request slots until the
    /// request ends.
    _permit: Permit,
}

impl Target<'_> {
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
    peer: SocketAddr,
) -> Result<Decision<'r>, ProxyError> {
    if direction == Direction::Inbound {
        let inbound = runtime
            .inbound
            .as_ref()
            .ok_or(ProxyError::new(ErrorKind::NoRoute))?;
        let cluster = &inbound.cluster;
        let index = cluster
            .pick(req, peer)
            .ok_or(ProxyError::new(ErrorKind::NoEndpoint))?;
        return Ok(Decision::Forward(Target {
            _permit: admit(cluster)?,
            cluster,
            endpoint: &cluster.endpoints[index],
            index,
            hash: None,
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
            let backend = forward.pick_backend();
            let cluster = &runtime.clusters[backend.cluster.0 as usize];
            let hash = cluster.hash_key(req, peer);
            let index = cluster
                .pick_hashed(hash)
                .ok_or(ProxyError::new(ErrorKind::NoEndpoint))?;
            Ok(Decision::Forward(Target {
                _permit: admit(cluster)?,
                cluster,
                endpoint: &cluster.endpoints[index],
                index,
                hash,
                forward: Some(forward),
                route: &rule.route_name,
                metrics: runtime.request_metrics(&rule.route_name, backend.cluster),
                timeout: rule.timeout.or(cluster.timeout),
                fault: rule.fault.as_ref(),
            }))
        }
    }
}

/// Takes a request slot of the cluster's circuit breaker; over the limit the
/// request is refused at once (503), never queued.
fn admit(cluster: &Cluster) -> Result<Permit, ProxyError> {
    cluster.breaker.try_request().ok_or_else(|| {
        cluster.telemetry.circuit_breaker_rejections.inc();
        ProxyError::new(ErrorKind::Overloaded)
    })
}
