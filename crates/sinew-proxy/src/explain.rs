//! `GET /explain` on the api listener (what `sinew explain` asks): how this
//! sidecar would route one request, computed on its live config and
//! endpoint state, step by step as the data plane decides.
//!
//! ```text
//! request ─ normalize path ─ virtual host (exact, *.suffix, *) ─ rules in order:
//!   each that does not match says its first failing condition; the first that does wins
//! ─ action: direct answer, or weighted backends (each with its share)
//! ─ per backend: the callee's AuthorizationPolicies for this sidecar's identity
//!   (the verdict the callee's sidecar would give), and the cluster's endpoints
//!   (health, ejection, in flight, usable) with the one its balancer picks now
//! ```
//!
//! The balancer's pick is a real pick: it advances a round robin by one
//! turn, as one request would.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{json, Value};

use sinew_model::AuthorizationPolicy;

use crate::authz::Authorizer;
use crate::config::Runtime;
use crate::route::{normalize_path, Action, RequestView};

/// One request to explain.
#[derive(Debug)]
pub struct Question<'a> {
    /// Method, e.g. `GET`.
    pub method: &'a str,
    /// Host (and port) the app would send: the `Host` header / `:authority`.
    pub authority: &'a str,
    /// Path as sent (normalized here as the data plane does).
    pub path: &'a str,
    /// Query string without `?`.
    pub query: Option<&'a str>,
    /// Request headers (names lower case).
    pub headers: &'a http::HeaderMap,
}

/// Explains `q` on `runtime`, as this sidecar (SPIFFE ID `identity`, when it
/// has a certificate) would route it outbound. The callees' authorization
/// is judged by `policies` when given (what the control plane stores: a
/// sidecar in control mode holds only its own service's policies), else by
/// the config's.
pub fn explain(
    runtime: &Runtime,
    q: &Question<'_>,
    identity: Option<&str>,
    policies: Option<&[AuthorizationPolicy]>,
) -> Value {
    let mut out = json!({
        "proxy": runtime.config.proxy.metadata.name,
        "config_version": runtime.version,
        "identity": identity,
        "request": {
            "method": q.method, "authority": q.authority, "path": q.path, "query": q.query,
            "headers": q.headers.iter()
                .map(|(k, v)| json!([k.as_str(), String::from_utf8_lossy(v.as_bytes())]))
                .collect::<Vec<_>>(),
        },
    });
    let path = match normalize_path(q.path) {
        Ok(path) => path,
        Err(e) => {
            out["verdict"] = json!(format!("400: the path is refused before routing ({e})"));
            return out;
        }
    };
    out["request"]["normalized_path"] = json!(&*path);
    let view = RequestView {
        method: q.method,
        path: &path,
        query: q.query,
        headers: q.headers,
    };
    let Some(host) = runtime.routes.virtual_host(q.authority) else {
        out["verdict"] = json!(format!(
            "404: no Route or Service answers host {:?} (x-sinew-error: no_route)",
            q.authority
        ));
        return out;
    };
    out["virtual_host"] = json!(host.names.iter().map(|n| &**n).collect::<Vec<_>>());
    let mut rules = Vec::new();
    let mut chosen = None;
    for rule in host.rules() {
        let entries = rule.matcher.entries();
        let why_not: Vec<String> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.mismatch(&view).map(|why| {
                    if entries.len() > 1 {
                        format!("match {i}: {why}")
                    } else {
                        why
                    }
                })
            })
            .collect();
        let matched = rule.matches(&view);
        rules.push(json!({
            "route": &*rule.route_name,
            "rule": rule.index,
            "matched": matched,
            "why_not": if matched { Vec::new() } else { why_not },
        }));
        if matched {
            chosen = Some(rule);
            break;
        }
    }
    let skipped = host.rules().len() - rules.len();
    out["rules"] = json!(rules);
    if skipped > 0 {
        out["rules_not_reached"] = json!(skipped);
    }
    let Some(rule) = chosen else {
        out["verdict"] = json!("404: no rule of the host matches (x-sinew-error: no_route)");
        return out;
    };
    let forward = match &rule.action {
        Action::Direct(direct) => {
            out["verdict"] = json!(format!(
                "{}: answered by the proxy (direct response of {} rule {})",
                direct.status.as_u16(),
                rule.route_name,
                rule.index
            ));
            return out;
        }
        Action::Forward(forward) => forward,
    };
    let total: u64 = forward.backends().iter().map(|b| u64::from(b.weight)).sum();
    let (policies, policies_from): (Vec<&AuthorizationPolicy>, _) = match policies {
        Some(given) => (given.iter().collect(), "request"),
        None => (
            runtime.config.snapshot.policies().values().collect(),
            "config",
        ),
    };
    out["policies_from"] = json!(policies_from);
    let namespace = &runtime.config.proxy.metadata.namespace;
    let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let mut backends = Vec::new();
    for backend in forward.backends() {
        let cluster = &runtime.clusters()[backend.cluster.0 as usize];
        let share = if total == 0 {
            0.0
        } else {
            (f64::from(backend.weight) * 1000.0 / total as f64).round() / 10.0
        };
        let authorization = match Authorizer::for_service(
            policies.iter().copied(),
            namespace,
            &backend.service,
        ) {
            None => {
                json!({"allowed": true, "policy": null, "why": "no AuthorizationPolicy targets the service"})
            }
            Some(authorizer) => {
                let verdict = authorizer.check(&view, identity);
                json!({
                    "allowed": verdict.allowed(),
                    "policy": verdict.policy(),
                    "why": if verdict.allowed() && verdict.policy().is_empty() {
                        "allowed: no deny policy matches, and no allow policy is required".to_owned()
                    } else if verdict.allowed() {
                        format!("allowed by {}", verdict.policy())
                    } else {
                        format!("403 from {}'s sidecar: {}", backend.service, verdict.policy())
                    },
                })
            }
        };
        let pick = cluster
            .pick_hashed(cluster.hash_key(&view, peer))
            .and_then(|i| cluster.endpoints.get(i))
            .map(|e| e.addr.to_string());
        let mut endpoints = cluster.describe();
        endpoints["picks"] = json!(pick);
        backends.push(json!({
            "service": &*backend.service,
            "subset": backend.subset.as_deref(),
            "weight": backend.weight,
            "share_percent": share,
            "authorization": authorization,
            "cluster": endpoints,
        }));
    }
    out["backends"] = json!(backends);
    out["timeout_ms"] = json!(rule
        .timeout
        .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)));
    out["retries"] = json!(rule.retries.as_ref().map(|r| r.attempts));
    out["fault"] = json!(rule.fault.is_some());
    out["rate_limited_rule"] = json!(rule.rate_limit.is_some());
    out
}
