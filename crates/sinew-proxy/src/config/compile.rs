//! Compiles a validated `ProxyConfig` into the [`Runtime`] the request path
//! reads: clusters per (service, subset) with their balancers and pools, the
//! route table, and every metric handle resolved up front.

use super::cluster::{Cluster, Endpoint, HashPolicy, UpstreamTls};
use crate::balance::{Algorithm, Balancer};
use crate::endpoint::Pools;
use crate::gateway::JwtPolicy;
use crate::health::{self, HealthStates};
use crate::ratelimit::{Limiter, RateLimits};
use crate::resilience::{CircuitBreaker, OutlierConfig, RetryPolicy};
use crate::route::{Action, ClusterId, RouteTable};
use crate::server::Direction;
use crate::telemetry::{DirectResponseMetrics, Metrics, RequestLabels, RequestMetrics, TcpMetrics};
use crate::tls::TlsState;
use sinew_model::{
    BalancerAlgorithm, HashKey, HealthCheck, MtlsMode, Protocol, ProxyConfig, Service,
};
use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasherDefault, Hasher},
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

/// Connect timeout for the inbound application when its Service is unknown.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A config the model accepted but the proxy cannot run.
#[derive(Debug)]
pub struct CompileError(String);

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

/// The inbound side: the local application.
#[derive(Debug)]
pub(crate) struct Inbound {
    /// The AuthorizationPolicies targeting this proxy's service; `None`: none.
    pub(crate) authz: Option<InboundAuthz>,
    pub(crate) cluster: Cluster,
    pub(crate) metrics: Arc<RequestMetrics>,
    pub(crate) tcp: Arc<TcpMetrics>,
}

/// Inbound authorization: the policies and a refusal counter per deciding policy.
#[derive(Debug)]
pub(crate) struct InboundAuthz {
    pub(crate) authorizer: crate::authz::Authorizer,
    /// `sinew_authz_denied_total` by deciding policy (`default-deny` included).
    pub(crate) denied: Vec<(Box<str>, Arc<crate::telemetry::Counter>)>,
}

impl InboundAuthz {
    pub(crate) fn count_denial(&self, policy: &str) {
        if let Some((_, c)) = self.denied.iter().find(|(p, _)| &**p == policy) {
            c.inc();
        }
    }
}

/// An outbound opaque-TCP listener's destination.
#[derive(Debug)]
pub struct TcpTarget {
    /// Index into the runtime's clusters.
    pub cluster: usize,
    /// Byte counters.
    pub metrics: Arc<TcpMetrics>,
}

/// Hashes a pointer-sized key with one multiply: the keys are addresses.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(29);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_usize(n as usize);
    }
}

type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

/// A compiled, immutable configuration version.
#[derive(Debug)]
pub struct Runtime {
    /// Increases by one with every applied config.
    pub version: u64,
    /// The validated config it was compiled from.
    pub config: Arc<ProxyConfig>,
    pub(crate) routes: RouteTable,
    pub(crate) clusters: Vec<Cluster>,
    /// Request metrics by (route name's address, cluster).
    request_metrics: AddrMap<(usize, u32), Arc<RequestMetrics>>,
    direct_metrics: AddrMap<usize, Arc<DirectResponseMetrics>>,
    fallback_metrics: Arc<RequestMetrics>,
    fallback_direct: Arc<DirectResponseMetrics>,
    pub(crate) inbound: Option<Inbound>,
    pub(crate) tcp: Vec<TcpTarget>,
    /// What the active health checker probes under this config.
    pub(crate) health_targets: Vec<health::Target>,
    /// The Mesh's mTLS mode (strict when no Mesh is defined).
    pub(crate) mtls: MtlsMode,
    /// Gateway mode: the Routes' JWT checks by route name's address, and
    /// the request series of the ingress listener (direction `ingress`).
    ingress: Option<IngressRoutes>,
}

/// What a gateway's ingress listener adds to routing.
#[derive(Debug)]
struct IngressRoutes {
    jwt: AddrMap<usize, Arc<JwtPolicy>>,
    metrics: AddrMap<(usize, u32), Arc<RequestMetrics>>,
}

fn key(name: &Arc<str>) -> usize {
    Arc::as_ptr(name).cast::<u8>() as usize
}

impl Runtime {
    pub(crate) fn request_metrics(
        &self,
        direction: Direction,
        route: &Arc<str>,
        cluster: ClusterId,
    ) -> &RequestMetrics {
        let series = match (&self.ingress, direction) {
            (Some(ingress), Direction::Ingress) => &ingress.metrics,
            _ => &self.request_metrics,
        };
        series
            .get(&(key(route), cluster.0))
            .unwrap_or(&self.fallback_metrics)
    }

    /// The JWT check of `route`, on a gateway's ingress listener.
    pub(crate) fn jwt_policy(&self, route: &Arc<str>) -> Option<&JwtPolicy> {
        self.ingress.as_ref()?.jwt.get(&key(route)).map(|p| &**p)
    }

    pub(crate) fn direct_metrics(&self, route: &Arc<str>) -> &DirectResponseMetrics {
        self.direct_metrics
            .get(&key(route))
            .unwrap_or(&self.fallback_direct)
    }

    /// The protocol of the proxy's own service (what its inbound listener speaks).
    pub fn own_protocol(&self) -> Protocol {
        let own = &self.config.proxy.spec.service;
        self.config
            .snapshot
            .service(own)
            .map_or(Protocol::Http, |s| s.spec.protocol)
    }

    /// Whether serving this config takes a workload certificate: mTLS is on
    /// and there is an inbound listener or a meshed endpoint.
    pub fn needs_certificate(&self) -> bool {
        self.mtls != MtlsMode::Disabled
            && (self.inbound.is_some()
                || self
                    .clusters
                    .iter()
                    .any(|c| c.endpoints.iter().any(|e| e.tls.is_some())))
    }

    /// The Mesh's mTLS mode in force.
    pub fn mtls(&self) -> MtlsMode {
        self.mtls
    }

    /// The clusters, for `/config` and debugging views.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }
}

/// The process-wide state every compiled config shares: connection pools,
/// endpoint health and metrics, all keyed so they survive reloads.
#[derive(Debug, Clone, Copy)]
pub struct Registries<'a> {
    /// Connection pools by address.
    pub pools: &'a Pools,
    /// Health states by (service, address).
    pub health: &'a HealthStates,
    /// The metrics registry.
    pub metrics: &'a Metrics,
    /// Rate-limit buckets by what they limit.
    pub rate_limits: &'a RateLimits,
    /// Endpoint loads, outlier states, breakers and retry budgets.
    pub kept: &'a super::KeptStates,
    /// The proxy's TLS material, referred to by meshed endpoints.
    pub tls: &'a Arc<TlsState>,
    /// JWKS URLs, by the Routes' `jwt` that name them.
    pub jwks: &'a crate::gateway::jwks::JwksRegistry,
}

/// Compiles `config` as version `version`.
pub fn compile(
    config: Arc<ProxyConfig>,
    version: u64,
    reg: Registries<'_>,
) -> Result<Runtime, CompileError> {
    let metrics = reg.metrics;
    let mtls = config
        .snapshot
        .mesh()
        .map_or(MtlsMode::default(), |m| m.spec.mtls);
    let services: HashMap<&str, &Service> = config
        .snapshot
        .services()
        .values()
        .map(|s| (s.metadata.name.as_str(), s))
        .collect();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut interned: HashMap<(String, Option<String>), ClusterId> = HashMap::new();
    // One breaker per service: its subsets share the limits.
    let mut breakers: HashMap<String, Arc<CircuitBreaker>> = HashMap::new();
    // One rate limiter per service, likewise.
    let mut limiters: HashMap<String, Option<Limiter>> = HashMap::new();
    let mut cluster_of = |service: &str, subset: Option<&str>| -> ClusterId {
        let key = (service.to_owned(), subset.map(str::to_owned));
        if let Some(id) = interned.get(&key) {
            return *id;
        }
        let id = ClusterId(clusters.len() as u32);
        let model = services.get(service).copied();
        let breaker = breakers.entry(service.to_owned()).or_insert_with(|| {
            let limits = model.map(|s| s.spec.circuit_breaker).unwrap_or_default();
            reg.kept.breaker(service, limits)
        });
        let mut cluster = build_cluster(service, subset, model, breaker, mtls, reg);
        cluster.rate_limit = limiters
            .entry(service.to_owned())
            .or_insert_with(|| service_limiter(service, model, reg))
            .clone();
        clusters.push(cluster);
        interned.insert(key, id);
        id
    };
    let mut routes = RouteTable::from_resources(
        config.snapshot.services().values(),
        config.snapshot.routes().values(),
        &mut cluster_of,
    );
    bind_rule_state(&mut routes, reg);

    let mut tcp = Vec::new();
    for listener in &config.proxy.spec.listen.tcp {
        let id = cluster_of(&listener.service, None);
        tcp.push(TcpTarget {
            cluster: id.0 as usize,
            metrics: metrics.tcp(&listener.service),
        });
    }

    let mut request_metrics = AddrMap::default();
    let mut direct_metrics = AddrMap::default();
    let mut ingress = config
        .proxy
        .spec
        .listen
        .ingress
        .as_ref()
        .map(|_| IngressRoutes {
            jwt: AddrMap::default(),
            metrics: AddrMap::default(),
        });
    let jwt_rules: HashMap<&str, &sinew_model::JwtRule> = config
        .snapshot
        .routes()
        .values()
        .filter_map(|r| Some((r.metadata.name.as_str(), r.spec.jwt.as_ref()?)))
        .collect();
    let mut compiled_jwt: HashMap<&str, Arc<JwtPolicy>> = HashMap::new();
    for vhost in routes.virtual_hosts() {
        for rule in vhost.rules() {
            if let (Some(ingress), Some(jwt)) = (&mut ingress, jwt_rules.get(&*rule.route_name)) {
                let policy = match compiled_jwt.get(&*rule.route_name) {
                    Some(p) => p.clone(),
                    None => {
                        let p = JwtPolicy::compile(jwt, reg.jwks).map_err(|e| {
                            CompileError(format!("Route {}: jwt: {e}", rule.route_name))
                        })?;
                        let p = Arc::new(p);
                        compiled_jwt.insert(jwt_key(&jwt_rules, &rule.route_name), p.clone());
                        p
                    }
                };
                ingress.jwt.insert(key(&rule.route_name), policy);
            }
            match &rule.action {
                Action::Forward(forward) => {
                    for backend in forward.backends() {
                        let cluster = &clusters[backend.cluster.0 as usize];
                        let series = |direction| {
                            metrics.requests(&RequestLabels {
                                direction,
                                service: &cluster.service,
                                route: &rule.route_name,
                                backend: &cluster.label,
                            })
                        };
                        let at = (key(&rule.route_name), backend.cluster.0);
                        request_metrics
                            .entry(at)
                            .or_insert_with(|| series(Direction::Outbound));
                        if let Some(ingress) = &mut ingress {
                            ingress
                                .metrics
                                .entry(at)
                                .or_insert_with(|| series(Direction::Ingress));
                        }
                    }
                }
                Action::Direct(_) => {
                    direct_metrics
                        .entry(key(&rule.route_name))
                        .or_insert_with(|| metrics.direct_responses(&rule.route_name));
                }
            }
        }
    }

    let spec = &config.proxy.spec;
    let inbound = spec.app.map(|app| {
        let own = services.get(spec.service.as_str()).copied();
        // Kept apart from the outbound breaker of the same service.
        let breaker = reg.kept.breaker(
            &format!("inbound/{}", spec.service),
            sinew_model::CircuitBreaker::default(),
        );
        let mut cluster = build_cluster(&spec.service, None, None, &breaker, mtls, reg);
        cluster.endpoints = vec![endpoint(&spec.service, app, None, None, reg)];
        cluster.balancer = Balancer::new(Algorithm::RoundRobin, &[1]);
        cluster.connect_timeout =
            own.map_or(DEFAULT_CONNECT_TIMEOUT, |s| s.spec.connect_timeout.into());
        cluster.timeout = own.and_then(|s| s.spec.timeout.map(Into::into));
        let namespace = &config.proxy.metadata.namespace;
        let authz = crate::authz::Authorizer::for_service(
            config.snapshot.policies().values(),
            namespace,
            &spec.service,
        )
        .map(|authorizer| {
            let denied = authorizer
                .deny_policies()
                .chain(["default-deny"])
                .map(|p| (p.into(), metrics.authz_denied(&spec.service, p)))
                .collect();
            InboundAuthz { authorizer, denied }
        });
        Inbound {
            authz,
            metrics: metrics.requests(&RequestLabels {
                direction: Direction::Inbound,
                service: &spec.service,
                route: "inbound",
                backend: "app",
            }),
            tcp: metrics.tcp(&spec.service),
            cluster,
        }
    });

    let mut health_targets: Vec<health::Target> = Vec::new();
    for cluster in &clusters {
        let Some(check) = services
            .get(&*cluster.service)
            .and_then(|s| s.spec.health_check.as_ref())
        else {
            continue;
        };
        for e in &cluster.endpoints {
            let (Some(state), false) = (
                &e.health,
                health_targets
                    .iter()
                    .any(|t| t.addr == e.addr && t.service == cluster.service),
            ) else {
                continue;
            };
            health_targets.push(health::Target {
                service: cluster.service.clone(),
                addr: e.addr,
                tls: e.tls.clone(),
                check: check.clone(),
                state: state.clone(),
            });
        }
    }

    Ok(Runtime {
        health_targets,
        mtls,
        ingress,
        version,
        fallback_metrics: metrics.requests(&RequestLabels {
            direction: Direction::Outbound,
            service: "unknown",
            route: "unknown",
            backend: "unknown",
        }),
        fallback_direct: metrics.direct_responses("unknown"),
        config,
        routes,
        clusters,
        request_metrics,
        direct_metrics,
        inbound,
        tcp,
    })
}

/// The key under which a Route's compiled JWT policy is shared by its rules.
fn jwt_key<'c>(rules: &HashMap<&'c str, &sinew_model::JwtRule>, route: &str) -> &'c str {
    rules.get_key_value(route).map_or("", |(name, _)| *name)
}

/// The rate limiter of `service`'s outbound requests, if it has a limit;
/// its bucket survives reloads that keep the limit.
fn service_limiter(name: &str, service: Option<&Service>, reg: Registries<'_>) -> Option<Limiter> {
    let mut limiter = Limiter::new(service?.spec.rate_limit?);
    let counter = reg.metrics.rate_limited("service", name);
    reg.rate_limits
        .rebind(&mut limiter, &format!("service/{name}"), counter);
    Some(limiter)
}

/// Gives each rate-limited rule the bucket an earlier config left for it
/// (same hosts, route, rule index and limit) and its metric counter.
/// Gives each rule the rate-limit bucket and retry budget a live config
/// already has for it (by host, route and rule index).
fn bind_rule_state(routes: &mut RouteTable, reg: Registries<'_>) {
    for vhost in routes.hosts.iter_mut() {
        let host = vhost
            .names
            .first()
            .map(|n| n.to_string())
            .unwrap_or_default();
        for rule in vhost.rules.iter_mut() {
            if rule.rate_limit.is_none() && rule.retry.is_none() {
                continue;
            }
            let name = format!("{}.rules[{}]", rule.route_name, rule.index);
            let key = format!("route/{host}/{name}");
            if let Some(limiter) = rule.rate_limit.as_mut() {
                let counter = reg.metrics.rate_limited("route", &name);
                reg.rate_limits.rebind(limiter, &key, counter);
            }
            if let (Some((_, budget)), Some(model)) = (rule.retry.as_mut(), &rule.retries) {
                *budget = reg.kept.budget(&Arc::from(key), &model.budget);
            }
        }
    }
}

fn endpoint(
    service: &str,
    addr: std::net::SocketAddr,
    check: Option<&HealthCheck>,
    tls: Option<UpstreamTls>,
    reg: Registries<'_>,
) -> Endpoint {
    Endpoint {
        addr,
        pool: reg.pools.get(addr),
        telemetry: reg.metrics.upstream(service, &addr.to_string()),
        health: check.map(|c| reg.health.get(service, addr, c.initial)),
        tls,
    }
}

fn build_cluster(
    name: &str,
    subset: Option<&str>,
    service: Option<&Service>,
    breaker: &Arc<CircuitBreaker>,
    mtls: MtlsMode,
    reg: Registries<'_>,
) -> Cluster {
    let label: Arc<str> = match subset {
        Some(subset) => Arc::from(format!("{name}/{subset}")),
        None => Arc::from(name),
    };
    let Some(service) = service else {
        // The model validates references; an unknown service has no endpoints.
        return Cluster {
            service: Arc::from(name),
            subset: subset.map(Arc::from),
            label,
            endpoints: Vec::new(),
            balancer: Balancer::new(Algorithm::RoundRobin, &[]),
            hash: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: None,
            retry: None,
            retry_budget: None,
            panic_threshold_percent: 0,
            health_checked: false,
            breaker: breaker.clone(),
            rate_limit: None,
            outlier: None,
            usable_cache: AtomicU64::new(u64::MAX),
            born: Instant::now(),
            telemetry: reg.metrics.service(name),
        };
    };
    let selector = subset.and_then(|s| service.spec.subsets.iter().find(|x| x.name == s));
    let chosen: Vec<_> = service
        .spec
        .endpoints
        .iter()
        .filter(|e| selector.is_none_or(|sel| sel.selects(&e.labels)))
        .collect();
    let weights: Vec<u32> = chosen.iter().map(|e| e.weight.max(1)).collect();
    let keys: Vec<String> = chosen.iter().map(|e| e.address.to_string()).collect();
    let key_bytes: Vec<&[u8]> = keys.iter().map(|k| k.as_bytes()).collect();
    let spec = &service.spec;
    let retry_budget = spec
        .retries
        .as_ref()
        .map(|r| reg.kept.budget(&label, &r.budget));
    let addrs = || chosen.iter().map(|e| e.address);
    let balancer = Balancer::with_loads(
        algorithm(spec.balancer.algorithm),
        &weights,
        &key_bytes,
        &reg.kept.loads(&label, addrs()),
    );
    let outlier = spec.outlier_detection.as_ref().map(|o| {
        reg.kept
            .outlier_detector(&label, addrs(), OutlierConfig::from_model(o))
    });
    Cluster {
        service: Arc::from(name),
        subset: subset.map(Arc::from),
        label,
        endpoints: chosen
            .iter()
            .map(|e| {
                let tls = match (&e.identity, mtls) {
                    (Some(id), MtlsMode::Strict | MtlsMode::Permissive) => Some(UpstreamTls {
                        identity: Arc::from(id.as_str()),
                        state: reg.tls.clone(),
                    }),
                    _ => None,
                };
                let check = spec.health_check.as_ref();
                let endpoint = endpoint(name, e.address, check, tls, reg);
                endpoint
                    .pool
                    .set_idle_timeout(spec.upstream_idle_timeout.into());
                endpoint
            })
            .collect(),
        balancer,
        hash: spec.balancer.hash.as_ref().and_then(hash_policy),
        connect_timeout: spec.connect_timeout.into(),
        timeout: spec.timeout.map(Into::into),
        retry: spec.retries.as_ref().map(RetryPolicy::from_model),
        retry_budget,
        panic_threshold_percent: spec.balancer.panic_threshold_percent,
        health_checked: spec.health_check.is_some(),
        breaker: breaker.clone(),
        rate_limit: None,
        outlier,
        usable_cache: AtomicU64::new(u64::MAX),
        born: Instant::now(),
        telemetry: reg.metrics.service(name),
    }
}

fn algorithm(a: BalancerAlgorithm) -> Algorithm {
    match a {
        BalancerAlgorithm::RoundRobin => Algorithm::RoundRobin,
        BalancerAlgorithm::Random => Algorithm::Random,
        BalancerAlgorithm::WeightedRoundRobin => Algorithm::WeightedRoundRobin,
        BalancerAlgorithm::LeastRequest => Algorithm::LeastRequest,
        BalancerAlgorithm::PeakEwma => Algorithm::PeakEwma,
        BalancerAlgorithm::RingHash => Algorithm::RingHash,
        BalancerAlgorithm::Maglev => Algorithm::Maglev,
    }
}

fn hash_policy(key: &HashKey) -> Option<HashPolicy> {
    Some(match key {
        HashKey::Header(name) => {
            HashPolicy::Header(http::HeaderName::from_bytes(name.as_bytes()).ok()?)
        }
        HashKey::Cookie(name) => HashPolicy::Cookie(name.clone()),
        HashKey::Query(name) => HashPolicy::Query(name.clone()),
        HashKey::SourceIp => HashPolicy::SourceIp,
    })
}
