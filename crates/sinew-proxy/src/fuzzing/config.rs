//! Fuzz target `config_parser`: arbitrary bytes as a config file, through every stage a proxy config goes.

use std::sync::Arc;

use sinew_model::{parse_str, ProxyConfig, Snapshot};

use crate::config::{compile, Registries};
use crate::endpoint::Pools;
use crate::health::HealthStates;
use crate::ratelimit::RateLimits;
use crate::route::{ClusterId, RouteTable};
use crate::telemetry::Metrics;

const SOURCE: &str = "fuzz.yaml";

/// Parses `data` as YAML or JSON; when it parses, builds the snapshot, its
/// route table and the proxy config, and compiles that as the proxy would.
/// Errors are fine (each must render); a panic is a bug.
pub fn config_parser(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let resources = match parse_str(SOURCE, text) {
        Ok(resources) => resources,
        Err(errors) => {
            assert!(!errors.to_string().is_empty());
            return;
        }
    };
    if let Ok(snapshot) = Snapshot::build(resources.clone(), 1) {
        let mut next = 0;
        let mut cluster = |_: &str, _: Option<&str>| {
            next += 1;
            ClusterId(next)
        };
        let _ = RouteTable::build(&snapshot, &mut cluster);
    }
    let Ok(config) = ProxyConfig::from_resources(SOURCE, resources, 1) else {
        return;
    };
    let pools = Pools::new(1);
    let health = HealthStates::default();
    let metrics = Metrics::new();
    let rate_limits = RateLimits::default();
    let kept = crate::config::KeptStates::default();
    let tls = Arc::default();
    let jwks = crate::gateway::jwks::JwksRegistry::default();
    let registries = Registries {
        pools: &pools,
        health: &health,
        metrics: &metrics,
        rate_limits: &rate_limits,
        kept: &kept,
        tls: &tls,
        jwks: &jwks,
    };
    let _ = compile(Arc::new(config), 1, registries);
}
