//! Snapshots: cross-resource checks, digests, host lookup, proxy configs.

use super::{data, parse_ok};
use crate::{parse_str, ErrorKind, Errors, Kind, ProxyConfig, Resource, Snapshot};

fn build(text: &str) -> Result<Snapshot, Errors> {
    Snapshot::build(parse_ok(text), 1)
}

const SERVICES: &str = "kind: Service\nmetadata: {name: a}\nspec: {subsets: [{name: v1, labels: {v: '1'}}]}\n---\nkind: Service\nmetadata: {name: db}\nspec: {protocol: tcp}\n";

fn with_services(more: &str) -> String {
    format!("{SERVICES}---\n{more}")
}

#[test]
fn two_routes_claiming_one_host_name_both_locations() {
    let text = with_services(
        "kind: Route\nmetadata: {name: r1}\nspec: {hosts: [a], rules: [{backends: [{service: a}]}]}\n---\nkind: Route\nmetadata: {name: r2}\nspec: {hosts: [b, a], rules: [{backends: [{service: a}]}]}\n",
    );
    let errors = build(&text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.as_slice()[0];
    assert_eq!(
        (e.kind, e.line, e.field.as_str()),
        (ErrorKind::Conflict, 13, "spec.hosts[1]")
    );
    assert!(
        e.message.contains("(t.yaml:9)") && e.message.contains("(t.yaml:13)"),
        "{}",
        e.message
    );
}

#[test]
fn unknown_backend_service_or_subset_and_tcp_backends_are_refused() {
    let text = with_services(
        "kind: Route\nmetadata: {name: r}\nspec:\n  hosts: [a]\n  rules:\n    - backends: [{service: nope}, {service: a, subset: v9}, {service: db}]\n      mirror: {service: gone}\n",
    );
    let errors = build(&text).unwrap_err();
    let got: Vec<(ErrorKind, u32, &str)> = errors
        .iter()
        .map(|e| (e.kind, e.line, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                ErrorKind::UnknownReference,
                9,
                "spec.rules[0].backends[0].service"
            ),
            (
                ErrorKind::UnknownReference,
                9,
                "spec.rules[0].backends[1].subset"
            ),
            (
                ErrorKind::UnknownReference,
                9,
                "spec.rules[0].backends[2].service"
            ),
            (
                ErrorKind::UnknownReference,
                9,
                "spec.rules[0].mirror.service"
            ),
        ]
    );
}

#[test]
fn routes_may_not_claim_a_tcp_service_host() {
    let text = with_services("kind: Route\nmetadata: {name: r}\nspec: {hosts: [db], rules: [{direct_response: {status: 404}}]}\n");
    let errors = build(&text).unwrap_err();
    assert_eq!(errors.as_slice()[0].field, "spec.hosts[0]");
    assert_eq!(errors.as_slice()[0].kind, ErrorKind::Conflict);
}

#[test]
fn duplicate_names_per_kind_and_namespace() {
    let text = "kind: Service\nmetadata: {name: a}\nspec: {}\n---\nkind: Service\nmetadata: {name: a}\nspec: {}\n---\nkind: Service\nmetadata: {name: a, namespace: other}\nspec: {}\n---\nkind: Mesh\nmetadata: {name: a}\n";
    let errors = build(text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.as_slice()[0];
    assert_eq!(
        (e.kind, e.line, e.field.as_str()),
        (ErrorKind::DuplicateResource, 5, "metadata.name")
    );
    assert!(e.message.contains("t.yaml:1"), "{}", e.message);
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
fn proxy_config_needs_exactly_one_proxy() {
    let none = ProxyConfig::parse("p.yaml", SERVICES, 1).unwrap_err();
    assert_eq!(
        (none.as_slice()[0].kind, none.as_slice()[0].file.as_str()),
        (ErrorKind::MissingField, "p.yaml")
    );
    let two = "kind: Proxy\nmetadata: {name: a}\nspec: {service: a}\n---\nkind: Proxy\nmetadata: {name: b}\nspec: {service: a, listen: {outbound: 127.0.0.1:9}}\n";
    let errors = ProxyConfig::parse("p.yaml", two, 1).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors.as_slice()[0].kind, errors.as_slice()[0].line),
        (ErrorKind::Conflict, 5)
    );
}

#[test]
fn proxy_config_checks_tcp_listeners_in_static_mode() {
    let proxy = |svc: &str, control: &str| {
        format!("kind: Proxy\nmetadata: {{name: p}}\nspec: {{service: a, {control} listen: {{tcp: [{{service: {svc}, address: 127.0.0.1:5432}}]}}}}\n---\n{SERVICES}")
    };
    let ok = ProxyConfig::parse("p.yaml", &proxy("db", ""), 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.proxy.spec.listen.tcp[0].service, "db");
    assert_eq!(ok.snapshot.services().len(), 2);
    assert!(ok.snapshot.proxies().is_empty());
    for svc in ["a", "nope"] {
        let errors = ProxyConfig::parse("p.yaml", &proxy(svc, ""), 1).unwrap_err();
        let e = &errors.as_slice()[0];
        assert_eq!(
            (e.kind, e.line, e.field.as_str()),
            (ErrorKind::UnknownReference, 1, "spec.listen.tcp[0].service")
        );
    }
    assert!(ProxyConfig::parse("p.yaml", &proxy("nope", "control: 127.0.0.1:7701,"), 1).is_ok());
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
