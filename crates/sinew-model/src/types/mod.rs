//! The resource types users write, one file per kind, plus the shared envelope.

mod common;
mod location;
mod mesh;
mod meta;
mod policy;
mod pool;
mod proxy;
mod resource;
mod route;
mod service;
mod subscription;
mod up;

pub use common::{Backoff, Percent, RateLimit, Retries, RetryBudget, RetryOn, ValueMatch};
pub use location::{FieldPositions, Location, Place};
pub use mesh::{Mesh, MeshSpec, MtlsMode};
pub use meta::{Metadata, ObjectKey, API_VERSION, DEFAULT_NAMESPACE};
pub use policy::{
    AuthorizationPolicy, AuthorizationPolicySpec, AuthzAction, AuthzFrom, AuthzRule, AuthzTarget,
    AuthzTo, AuthzWhen, TopicOperation,
};
pub use pool::PoolChoice;
pub use proxy::{
    AccessLog, AccessLogFormat, AccessLogPath, IngressCertificate, IngressListen, IngressTls,
    Listen, Proxy, ProxySpec, ProxyTls, TcpListen,
};
pub use resource::{Kind, Resource};
pub use route::{
    Backend, DirectResponse, Fault, FaultAbort, FaultDelay, HeaderOps, HeaderPolicy, JwksSource,
    JwtRule, Mirror, PathMatch, Rewrite, Route, RouteAction, RouteMatch, RouteRule, RouteSpec,
};
pub use service::{
    Balancer, BalancerAlgorithm, CircuitBreaker, Endpoint, HashKey, HealthCheck, HealthProbe,
    InitialHealth, OutlierDetection, Protocol, Service, ServiceSpec, StatusRange, Subset,
};
pub use subscription::{
    Deliver, Ordering, StartPosition, Subscription, SubscriptionRetry, SubscriptionSpec,
    DLQ_SUFFIX, MAX_TOPIC_LEN,
};
pub use up::{Command, UpFile, UpService};
