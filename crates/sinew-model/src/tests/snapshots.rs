//! Snapshots: digests, host lookup, serialization, proxy configs (cross-resource errors are in `cross`).

use super::{data, parse_ok};
use crate::{parse_str, Errors, Kind, ProxyConfig, Resource, Snapshot};

fn build(text: &str) -> Result<Snapshot, Errors> {
    Snapshot::build(parse_ok(text), 1)
}

const SERVICES: &str = "kind: Service\nmetadata: {name: a}\nspec: {subsets: [{name: v1, labels: {v: '1'}}]}\n---\nkind: Service\nmetadata: {name: db}\nspec: {protocol: tcp}\n";

fn with_services(more: &str) -> String {
    format!("{SERVICES}---\n{more}")
}

#[test]
fn digest_follows_content_not_version_or_order() {
    let a = Snapshot::build(parse_ok(SERVICES), 1).unwrap();
    let mut reversed = parse_ok(SERVICES);
    reversed.reverse();
    let b = Snapshot::build(reversed, 2).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 16);
    assert_ne!((a.version(), b.version()), (1, 1));
    let c = build(&SERVICES.replace("protocol: tcp", "protocol: http")).unwrap();
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn accessors_and_host_lookup() {
    let text = with_services(
        "kind: Route\nmetadata: {name: r}\nspec: {hosts: [a, \"*.example.com\"], rules: [{backends: [{service: a}]}]}\n",
    );
    let snap = build(&text).unwrap();
    assert_eq!(snap.len(), 3);
    assert!(snap.service("a").is_some());
    assert!(snap.service_in("other", "a").is_none());
    assert_eq!(snap.services().len(), 2);
    let named = |h: &str| snap.route_for_host(h).map(|r| r.metadata.name.clone());
    assert_eq!(named("a"), Some("r".into()));
    assert_eq!(named("x.y.example.com"), Some("r".into()));
    assert_eq!(named("example.com"), None);
    assert_eq!(named("db"), None);
}

#[test]
fn serialized_snapshot_parses_back_to_the_same_digest() {
    let snap = ProxyConfig::load(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/static-proxy.yaml"),
        3,
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .snapshot;
    let json = serde_json::to_value(&snap).unwrap();
    assert_eq!(json["version"], 3);
    assert_eq!(json["digest"], snap.digest());
    let text = serde_json::to_string(&json["resources"]).unwrap();
    let again = Snapshot::build(
        parse_str("config.json", &text).unwrap_or_else(|e| panic!("{e}")),
        4,
    )
    .unwrap();
    assert_eq!(again.digest(), snap.digest());
    for (key, svc) in snap.services() {
        assert_eq!(again.services()[key].spec, svc.spec);
    }
    for (key, route) in snap.routes() {
        assert_eq!(again.routes()[key].spec, route.spec);
    }
}

#[test]
fn static_proxy_example_loads() {
    let all = parse_ok(&data("static-proxy.yaml"));
    assert_eq!(all.iter().filter(|r| r.kind() == Kind::Proxy).count(), 1);
    let cfg =
        ProxyConfig::from_resources("static-proxy.yaml", all, 9).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.snapshot.version(), 9);
    assert!(cfg.snapshot.route_for_host("reviews").is_some());
    assert!(matches!(
        cfg.snapshot
            .services()
            .values()
            .next()
            .map(|s| Resource::Service(s.clone())),
        Some(Resource::Service(_))
    ));
}
