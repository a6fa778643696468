//! Catalog queries and external registrations: `/v1/catalog/…`, `/v1/registry/…`.

use std::collections::BTreeMap;

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{duration_ms, store_error};
use crate::{
    http::{error, json, Body},
    keys,
    registry::{Check, Registration, Source},
    replica::Replica,
    store::{Compare, Op, StoreError},
};

/// One endpoint as the catalog shows it.
struct Shown<'a> {
    id: &'a str,
    address: &'a str,
    labels: &'a BTreeMap<String, String>,
    weight: u32,
    source: &'a str,
    healthy: bool,
    /// The SPIFFE ID of a registered sidecar (or a static meshed endpoint).
    identity: Option<&'a str>,
}

fn endpoint_json(e: &Shown<'_>, reports: Option<&(u32, u32)>) -> Value {
    let mut v = json!({"id": e.id, "address": e.address, "labels": e.labels, "weight": e.weight, "source": e.source, "healthy": e.healthy});
    if let Some(identity) = e.identity {
        v["identity"] = json!(identity);
    }
    if let Some((up, down)) = reports {
        v["reports"] = json!({"healthy": up, "unhealthy": down});
    }
    v
}

/// Every endpoint of every service: static ones from Service resources,
/// registered ones, with the sidecars' health reports folded in.
async fn endpoints(r: &Replica) -> Result<BTreeMap<(String, String), Vec<Value>>, StoreError> {
    let (_, services) = r
        .store
        .range(&keys::resource_kind(sinew_model::Kind::Service))
        .await?;
    let (_, registry) = r.store.range(keys::REGISTRY).await?;
    let (_, health) = r.store.range(keys::HEALTH).await?;
    // (ns, svc, address) -> (healthy reports, unhealthy reports)
    let mut reports: BTreeMap<(String, String, String), (u32, u32)> = BTreeMap::new();
    for kv in &health {
        let rest = kv.key.strip_prefix(keys::HEALTH).unwrap_or_default();
        if let Some(p) = keys::parts(rest, 4) {
            let e = reports
                .entry((p[0].to_owned(), p[1].to_owned(), p[2].to_owned()))
                .or_default();
            if kv.value == b"1" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    let judged = |ns: &str, svc: &str, addr: &str, own: bool| {
        let rep = reports.get(&(ns.to_owned(), svc.to_owned(), addr.to_owned()));
        // Unhealthy when every sidecar that probes it says so.
        let healthy = own && rep.is_none_or(|(up, down)| *up > 0 || *down == 0);
        (healthy, rep)
    };
    let mut out: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for kv in &services {
        let Ok(doc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let list = out.entry((ns.to_owned(), name.to_owned())).or_default();
        for e in doc
            .pointer("/spec/endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = e.get("address").and_then(Value::as_str).unwrap_or_default();
            let labels: BTreeMap<String, String> = e
                .get("labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let weight = e.get("weight").and_then(Value::as_u64).unwrap_or(1);
            let (healthy, rep) = judged(ns, name, address, true);
            let shown = Shown {
                id: address,
                address,
                labels: &labels,
                weight: u32::try_from(weight).unwrap_or(1),
                source: "static",
                healthy,
                identity: e.get("identity").and_then(Value::as_str),
            };
            list.push(endpoint_json(&shown, rep));
        }
    }
    for kv in &registry {
        let rest = kv.key.strip_prefix(keys::REGISTRY).unwrap_or_default();
        let (Some(p), Ok(reg)) = (
            keys::parts(rest, 3),
            serde_json::from_slice::<Registration>(&kv.value),
        ) else {
            continue;
        };
        let address = reg.address.to_string();
        let (healthy, rep) = judged(p[0], p[1], &address, crate::registry::routable(&reg));
        let source = match reg.source {
            Source::Proxy => "proxy",
            Source::External => "external",
        };
        out.entry((p[0].to_owned(), p[1].to_owned()))
            .or_default()
            .push(endpoint_json(
                &Shown {
                    id: p[2],
                    address: &address,
                    labels: &reg.labels,
                    weight: reg.weight,
                    source,
                    healthy,
                    identity: reg.identity.as_deref(),
                },
                rep,
            ));
    }
    Ok(out)
}

pub(super) async fn catalog(r: &Replica) -> Response<Body> {
    match endpoints(r).await {
        Ok(all) => {
            let items: Vec<Value> = all
                .iter()
                .map(|((ns, name), eps)| {
                    let healthy = eps.iter().filter(|e| e["healthy"] == Value::Bool(true)).count();
                    json!({"namespace": ns, "name": name, "endpoints": eps.len(), "healthy": healthy})
                })
                .collect();
            json(StatusCode::OK, &json!({"items": items}))
        }
        Err(e) => store_error(&e),
    }
}

pub(super) async fn catalog_service(
    r: &Replica,
    ns: &str,
    name: &str,
    label: Option<&String>,
) -> Response<Body> {
    let filter = match label.map(|l| l.split_once('=')) {
        None => None,
        Some(Some((k, v))) => Some((k.to_owned(), v.to_owned())),
        Some(None) => return error(StatusCode::BAD_REQUEST, "`label` must be `key=value`"),
    };
    match endpoints(r).await {
        Ok(mut all) => match all.remove(&(ns.to_owned(), name.to_owned())) {
            Some(eps) => {
                let eps: Vec<Value> = eps
                    .into_iter()
                    .filter(|e| {
                        filter.as_ref().is_none_or(|(k, v)| {
                            e.pointer(&format!("/labels/{k}")).and_then(Value::as_str) == Some(v)
                        })
                    })
                    .collect();
                json(
                    StatusCode::OK,
                    &json!({"namespace": ns, "name": name, "endpoints": eps}),
                )
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!("no service {ns}/{name} in the catalog"),
            ),
        },
        Err(e) => store_error(&e),
    }
}

/// `PUT /v1/registry/…` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    address: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    check: Option<CheckBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    ttl: Option<String>,
    http: Option<String>,
    tcp: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
}

fn parse_check(c: CheckBody) -> Result<Check, String> {
    let interval = duration_ms("interval", c.interval.as_ref(), 10_000)?;
    let timeout = duration_ms("timeout", c.timeout.as_ref(), 2_000)?;
    match (c.ttl, c.http, c.tcp) {
        (Some(ttl), None, None) => Ok(Check::Ttl {
            ttl_ms: duration_ms("ttl", Some(&ttl), 0)?.max(1),
        }),
        (None, Some(url), None) => Ok(Check::Http {
            url,
            interval_ms: interval.max(100),
            timeout_ms: timeout.max(10),
        }),
        (None, None, Some(address)) => Ok(Check::Tcp {
            address,
            interval_ms: interval.max(100),
            timeout_ms: timeout.max(10),
        }),
        _ => Err("`check` needs exactly one of `ttl`, `http`, `tcp`".to_owned()),
    }
}

pub(super) async fn register(
    r: &Replica,
    ns: &str,
    svc: &str,
    id: &str,
    body: &[u8],
) -> Response<Body> {
    for (what, v) in [("namespace", ns), ("service", svc), ("id", id)] {
        if !keys::valid_segment(v) {
            return error(StatusCode::BAD_REQUEST, format!("invalid {what} `{v}`"));
        }
    }
    let b: RegisterBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad registration: {e}")),
    };
    let Ok(address) = b.address.parse() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`address` must be ip:port, not `{}`", b.address),
        );
    };
    let check = match b.check.map(parse_check).transpose() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A probed workload is unhealthy until its first check passes.
    let healthy = !matches!(check, Some(Check::Http { .. } | Check::Tcp { .. }));
    let reg = Registration {
        address,
        labels: b.labels,
        weight: b.weight.unwrap_or(1).max(1),
        source: Source::External,
        check,
        healthy,
        heartbeat_ms: keys::now_ms(),
        disconnected_ms: None,
        session: None,
        proxy: None,
        // Outside the mesh: reached in plaintext.
        identity: None,
    };
    let value = serde_json::to_vec(&reg).unwrap_or_default();
    match r
        .store
        .txn(
            Vec::new(),
            vec![Op::put(keys::registration(ns, svc, id), value)],
        )
        .await
    {
        Ok(o) => json(
            StatusCode::OK,
            &json!({"revision": o.revision, "registration": reg}),
        ),
        Err(e) => store_error(&e),
    }
}

pub(super) async fn heartbeat(r: &Replica, ns: &str, svc: &str, id: &str) -> Response<Body> {
    let key = keys::registration(ns, svc, id);
    for _ in 0..5 {
        let kv = match r.store.get(&key).await {
            Ok(Some(kv)) => kv,
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("{ns}/{svc}/{id} is not registered (expired or never registered)"),
                )
            }
            Err(e) => return store_error(&e),
        };
        let Ok(mut reg) = serde_json::from_slice::<Registration>(&kv.value) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "unreadable registration");
        };
        reg.heartbeat_ms = keys::now_ms();
        reg.healthy = true;
        let value = serde_json::to_vec(&reg).unwrap_or_default();
        let guard = vec![Compare::ModRevision(key.clone(), kv.mod_revision)];
        match r.store.txn(guard, vec![Op::put(key.clone(), value)]).await {
            Ok(o) if o.succeeded => return json(StatusCode::OK, &json!({"revision": o.revision})),
            Ok(_) => continue,
            Err(e) => return store_error(&e),
        }
    }
    error(
        StatusCode::CONFLICT,
        "the registration kept changing; try again",
    )
}

pub(super) async fn deregister(r: &Replica, ns: &str, svc: &str, id: &str) -> Response<Body> {
    match r
        .store
        .txn(
            Vec::new(),
            vec![Op::delete(keys::registration(ns, svc, id))],
        )
        .await
    {
        Ok(o) => json(StatusCode::OK, &json!({"revision": o.revision})),
        Err(e) => store_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn checks_parse_with_units() {
        let c = parse_check(CheckBody {
            ttl: None,
            http: Some("http://127.0.0.1:1/h".into()),
            tcp: None,
            interval: Some("2s".into()),
            timeout: Some("500ms".into()),
        })
        .expect("valid");
        assert_eq!(c.interval(), Some(Duration::from_secs(2)));
        let bad = parse_check(CheckBody {
            ttl: Some("5".into()),
            http: None,
            tcp: None,
            interval: None,
            timeout: None,
        });
        assert!(bad.is_err());
        let two = parse_check(CheckBody {
            ttl: Some("5s".into()),
            http: None,
            tcp: Some("127.0.0.1:1".into()),
            interval: None,
            timeout: None,
        });
        assert!(two.is_err());
    }
}
