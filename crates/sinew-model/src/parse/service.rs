//! Decoding and checking `Service.spec`.

use super::check::{
    exactly_one, header_name, name, percent_u32, positive, positive_duration, status_range,
    url_path,
};
use super::common::{rate_limit, retries};
use super::node::Node;
use super::reader::{boolean, nonempty, one_of, socket_addr, string, Cx, D};
use crate::{
    Balancer, BalancerAlgorithm, CircuitBreaker, Duration, Endpoint, HashKey, HealthCheck,
    HealthProbe, InitialHealth, OutlierDetection, Protocol, ServiceSpec, Subset,
};

const ALGORITHMS: &[(&str, BalancerAlgorithm)] = &[
    ("round-robin", BalancerAlgorithm::RoundRobin),
    ("random", BalancerAlgorithm::Random),
    (
        "weighted-round-robin",
        BalancerAlgorithm::WeightedRoundRobin,
    ),
    ("least-request", BalancerAlgorithm::LeastRequest),
    ("peak-ewma", BalancerAlgorithm::PeakEwma),
    ("ring-hash", BalancerAlgorithm::RingHash),
    ("maglev", BalancerAlgorithm::Maglev),
];

/// `Service.spec`.
pub(crate) fn service_spec(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<ServiceSpec> {
    let mut m = cx.map(node, path)?;
    let protocol = m.or(cx, "protocol", Protocol::Http, |cx, n, p| {
        one_of(
            cx,
            n,
            p,
            &[("http", Protocol::Http), ("tcp", Protocol::Tcp)],
        )
    });
    let endpoints = m.or(cx, "endpoints", Vec::new(), |cx, n, p| {
        cx.list(n, p, endpoint)
    });
    let subsets = m.or(cx, "subsets", Vec::new(), |cx, n, p| cx.list(n, p, subset));
    let balancer = m.or(cx, "balancer", Balancer::default(), balancer);
    let timeout = m.opt(cx, "timeout", positive_duration);
    let connect_timeout = m.or(
        cx,
        "connect_timeout",
        Duration::from_secs(1),
        positive_duration,
    );
    let upstream_idle_timeout = m.or(
        cx,
        "upstream_idle_timeout",
        Duration::from_secs(30),
        positive_duration,
    );
    let retries = m.opt(cx, "retries", retries);
    let circuit_breaker = m.or(
        cx,
        "circuit_breaker",
        CircuitBreaker::default(),
        circuit_breaker,
    );
    let outlier_detection = m.opt(cx, "outlier_detection", outlier_detection);
    let health_check = m.opt(cx, "health_check", health_check);
    let rate_limit = m.opt(cx, "rate_limit", rate_limit);
    let (rl_node, rl_path) = (m.node_of("rate_limit"), m.path_of("rate_limit"));
    let (ep_node, ep_path) = (m.node_of("endpoints"), m.path_of("endpoints"));
    let (ss_node, ss_path) = (m.node_of("subsets"), m.path_of("subsets"));
    m.finish(cx);

    let (endpoints, subsets) = (endpoints?, subsets?);
    let mut ok = true;
    for (i, e) in endpoints.iter().enumerate() {
        if endpoints[..i].iter().any(|o| o.address == e.address) {
            let msg = format!("endpoint {} is listed twice (endpoints[{i}])", e.address);
            cx.invalid::<()>(ep_node, &ep_path, msg);
            ok = false;
        }
    }
    for (i, s) in subsets.iter().enumerate() {
        if subsets[..i].iter().any(|o| o.name == s.name) {
            cx.invalid::<()>(
                ss_node,
                &ss_path,
                format!("subset `{}` is defined twice (subsets[{i}])", s.name),
            );
            ok = false;
        }
    }
    let (protocol, rate_limit) = (protocol?, rate_limit?);
    if protocol == Protocol::Tcp && rate_limit.is_some() {
        let msg = "only applies to `http` services: a `tcp` service's bytes are not requests";
        cx.invalid::<()>(rl_node, &rl_path, msg);
        ok = false;
    }
    let spec = ServiceSpec {
        protocol,
        endpoints,
        subsets,
        balancer: balancer?,
        timeout: timeout?,
        connect_timeout: connect_timeout?,
        upstream_idle_timeout: upstream_idle_timeout?,
        retries: retries?,
        circuit_breaker: circuit_breaker?,
        outlier_detection: outlier_detection?,
        health_check: health_check?,
        rate_limit,
    };
    ok.then_some(spec)
}

fn endpoint(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Endpoint> {
    let mut m = cx.map(node, path)?;
    let address = m.req(cx, "address", socket_addr);
    let labels = m.or(cx, "labels", Default::default(), |cx, n, p| {
        cx.string_map(n, p)
    });
    let weight = m.or(cx, "weight", 1, positive);
    let identity = m.opt(cx, "identity", super::check::spiffe_id);
    m.finish(cx);
    Some(Endpoint {
        address: address?,
        labels: labels?,
        weight: weight?,
        identity: identity?,
    })
}

fn subset(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Subset> {
    let mut m = cx.map(node, path)?;
    let n = m.req(cx, "name", name);
    let labels = m.req(cx, "labels", |cx, n, p| cx.string_map(n, p));
    m.finish(cx);
    Some(Subset {
        name: n?,
        labels: labels?,
    })
}

fn balancer(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Balancer> {
    let mut m = cx.map(node, path)?;
    let algorithm = m.or(cx, "algorithm", BalancerAlgorithm::default(), |cx, n, p| {
        one_of(cx, n, p, ALGORITHMS)
    });
    let hash = m.opt(cx, "hash", hash_key);
    let panic_threshold_percent = m.or(
        cx,
        "panic_threshold_percent",
        Balancer::default().panic_threshold_percent,
        percent_u32,
    );
    let hash_path = m.path_of("hash");
    m.finish(cx);
    let (algorithm, hash, panic_threshold_percent) = (algorithm?, hash?, panic_threshold_percent?);
    if algorithm.needs_hash() && hash.is_none() {
        let msg = "`ring-hash` and `maglev` need a `hash` key: {header: NAME}, {cookie: NAME}, {query: NAME} or {source_ip: true}";
        cx.err(crate::ErrorKind::MissingField, node, &hash_path, msg);
        return None;
    }
    if !algorithm.needs_hash() && hash.is_some() {
        return cx.invalid(
            node,
            &hash_path,
            "`hash` is only used by `ring-hash` and `maglev`",
        );
    }
    Some(Balancer {
        algorithm,
        hash,
        panic_threshold_percent,
    })
}

fn hash_key(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<HashKey> {
    let mut m = cx.map(node, path)?;
    let header = m.opt(cx, "header", header_name);
    let cookie = m.opt(cx, "cookie", nonempty);
    let query = m.opt(cx, "query", nonempty);
    let source_ip = m.opt(cx, "source_ip", |cx, n, p| {
        if boolean(cx, n, p)? {
            Some(())
        } else {
            cx.invalid(
                n,
                p,
                "must be `true` (remove the key to hash on something else)",
            )
        }
    });
    m.finish(cx);
    let options = vec![
        header?.map(HashKey::Header),
        cookie?.map(HashKey::Cookie),
        query?.map(HashKey::Query),
        source_ip?.map(|()| HashKey::SourceIp),
    ];
    exactly_one(
        cx,
        node,
        path,
        &["header", "cookie", "query", "source_ip"],
        options,
    )
}

fn circuit_breaker(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<CircuitBreaker> {
    let d = CircuitBreaker::default();
    let mut m = cx.map(node, path)?;
    let max_connections = m.or(cx, "max_connections", d.max_connections, positive);
    let max_pending = m.or(cx, "max_pending", d.max_pending, super::reader::uint);
    let max_requests = m.or(cx, "max_requests", d.max_requests, positive);
    let max_retries = m.or(cx, "max_retries", d.max_retries, super::reader::uint);
    m.finish(cx);
    Some(CircuitBreaker {
        max_connections: max_connections?,
        max_pending: max_pending?,
        max_requests: max_requests?,
        max_retries: max_retries?,
    })
}

fn outlier_detection(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<OutlierDetection> {
    let d = OutlierDetection::default();
    let mut m = cx.map(node, path)?;
    let consecutive_errors = m.or(cx, "consecutive_errors", d.consecutive_errors, positive);
    let consecutive_gateway_errors = m.opt(cx, "consecutive_gateway_errors", positive);
    let consecutive_connect_errors = m.opt(cx, "consecutive_connect_errors", positive);
    let interval = m.or(cx, "interval", d.interval, positive_duration);
    let base_ejection = m.or(cx, "base_ejection", d.base_ejection, positive_duration);
    let max_ejection_percent = m.or(
        cx,
        "max_ejection_percent",
        d.max_ejection_percent,
        percent_u32,
    );
    m.finish(cx);
    Some(OutlierDetection {
        consecutive_errors: consecutive_errors?,
        consecutive_gateway_errors: consecutive_gateway_errors?,
        consecutive_connect_errors: consecutive_connect_errors?,
        interval: interval?,
        base_ejection: base_ejection?,
        max_ejection_percent: max_ejection_percent?,
    })
}

fn health_check(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<HealthCheck> {
    let mut m = cx.map(node, path)?;
    let http = m.opt(cx, "http", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let path = m.req(cx, "path", url_path);
        let expected = m.or(cx, "expected_statuses", Vec::new(), |cx, n, p| {
            cx.list(n, p, status_range)
        });
        m.finish(cx);
        Some(HealthProbe::Http {
            path: path?,
            expected_statuses: expected?,
        })
    });
    let tcp = m.opt(cx, "tcp", |cx, n, p| {
        cx.map(n, p)?.finish(cx);
        Some(HealthProbe::Tcp {})
    });
    let grpc = m.opt(cx, "grpc", |cx, n, p| {
        let mut m = cx.map(n, p)?;
        let service = m.opt(cx, "service", string);
        m.finish(cx);
        Some(HealthProbe::Grpc { service: service? })
    });
    // `tcp: {}` and `grpc: {}` are empty maps, which are not null, so presence is seen.
    let interval = m.or(cx, "interval", Duration::from_secs(5), positive_duration);
    let timeout = m.or(cx, "timeout", Duration::from_secs(1), positive_duration);
    let unhealthy_threshold = m.or(cx, "unhealthy_threshold", 3, positive);
    let healthy_threshold = m.or(cx, "healthy_threshold", 2, positive);
    let initial = m.or(cx, "initial", InitialHealth::Healthy, |cx, n, p| {
        one_of(
            cx,
            n,
            p,
            &[
                ("healthy", InitialHealth::Healthy),
                ("unhealthy", InitialHealth::Unhealthy),
            ],
        )
    });
    let (timeout_node, timeout_path) = (m.node_of("timeout"), m.path_of("timeout"));
    m.finish(cx);
    let probe = exactly_one(
        cx,
        node,
        path,
        &["http", "tcp", "grpc"],
        vec![http?, tcp?, grpc?],
    );
    let (interval, timeout) = (interval?, timeout?);
    if timeout > interval {
        return cx.invalid(
            timeout_node,
            &timeout_path,
            format!("probe timeout ({timeout}) is longer than the interval ({interval})"),
        );
    }
    Some(HealthCheck {
        probe: probe?,
        interval,
        timeout,
        unhealthy_threshold: unhealthy_threshold?,
        healthy_threshold: healthy_threshold?,
        initial: initial?,
    })
}
