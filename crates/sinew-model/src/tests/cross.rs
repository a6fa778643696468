//! Errors across resources: each at the offending field's own line and column, naming the other place.

use super::parse_ok;
use crate::{parse_str, Error, ErrorKind, Errors, ProxyConfig, Snapshot};

/// `t.yaml`: an http Service `a` with subset `v1`, and a tcp Service `db`
/// whose `protocol` value is at 9:13. Ten lines, ending with `---`.
const SERVICES: &str = "\
kind: Service
metadata: {name: a}
spec:
  subsets: [{name: v1, labels: {v: '1'}}]
---
kind: Service
metadata: {name: db}
spec:
  protocol: tcp
---
";

fn build_err(text: &str) -> Errors {
    match Snapshot::build(parse_ok(text), 1) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e,
    }
}

/// (kind, file, line, column, field) of an error.
fn place(e: &Error) -> (ErrorKind, &str, u32, u32, &str) {
    (e.kind, &e.file, e.line, e.column, &e.field)
}

#[test]
fn duplicate_name_points_at_both_names() {
    let text = "kind: Service\nmetadata: {name: a}\nspec: {}\n---\nkind: Service\nmetadata:\n  name: a\nspec: {}\n---\nkind: Service\nmetadata: {name: a, namespace: other}\nspec: {}\n";
    let errors = build_err(text);
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.as_slice()[0];
    let want = (
        ErrorKind::DuplicateResource,
        "t.yaml",
        7,
        9,
        "metadata.name",
    );
    assert_eq!(place(e), want);
    assert!(e.message.ends_with("first defined at t.yaml:2:18"), "{e}");
}

#[test]
fn second_mesh_points_at_both_names() {
    let errors =
        build_err("kind: Mesh\nmetadata: {name: m1}\n---\nkind: Mesh\nmetadata: {name: m2}\n");
    let e = &errors.as_slice()[0];
    assert_eq!(
        place(e),
        (ErrorKind::Conflict, "t.yaml", 5, 18, "metadata.name")
    );
    assert!(e.message.ends_with("defined at t.yaml:2:18"), "{e}");
}

#[test]
fn host_conflict_is_reported_at_the_later_claim_and_names_both() {
    // Whatever the Routes' names (and so their order in the snapshot), the
    // error sits at the claim that comes later in the file.
    for (first, second) in [("r1", "r2"), ("z", "a")] {
        let text = format!(
            "{SERVICES}kind: Route\nmetadata: {{name: {first}}}\nspec:\n  hosts: [a]\n  rules: [{{backends: [{{service: a}}]}}]\n---\nkind: Route\nmetadata: {{name: {second}}}\nspec:\n  hosts: [b, a]\n  rules: [{{backends: [{{service: a}}]}}]\n"
        );
        let errors = build_err(&text);
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.as_slice()[0];
        assert_eq!(
            place(e),
            (ErrorKind::Conflict, "t.yaml", 20, 14, "spec.hosts[1]")
        );
        let both =
            format!("`default/{first}` at t.yaml:14:11 and `default/{second}` at t.yaml:20:14");
        assert!(e.message.contains(&both), "{e}");
    }
}

#[test]
fn host_conflict_across_files_names_each_file() {
    let route = |name: &str| {
        format!("kind: Route\nmetadata: {{name: {name}}}\nspec:\n  rules: [{{backends: [{{service: a}}]}}]\n  hosts:\n    - shop\n")
    };
    let mut all = parse_ok(SERVICES);
    all.extend(parse_str("two.yaml", &route("second")).unwrap_or_else(|e| panic!("{e}")));
    all.extend(
        parse_str("one.yaml", &format!("\n\n{}", route("first"))).unwrap_or_else(|e| panic!("{e}")),
    );
    let errors = Snapshot::build(all, 1).unwrap_err();
    let e = &errors.as_slice()[0];
    assert_eq!(
        place(e),
        (ErrorKind::Conflict, "two.yaml", 6, 7, "spec.hosts[0]")
    );
    assert!(
        e.message
            .contains("at one.yaml:8:7 and `default/second` at two.yaml:6:7"),
        "{e}"
    );
}

#[test]
fn route_host_naming_a_tcp_service_points_at_the_host_entry() {
    let text = format!("{SERVICES}kind: Route\nmetadata: {{name: r}}\nspec:\n  hosts: [a, db]\n  rules: [{{direct_response: {{status: 404}}}}]\n");
    let errors = build_err(&text);
    let e = &errors.as_slice()[0];
    assert_eq!(
        place(e),
        (ErrorKind::Conflict, "t.yaml", 14, 14, "spec.hosts[1]")
    );
    assert!(e.message.contains("(t.yaml:9:13)"), "{e}");
}

#[test]
fn backend_and_mirror_references_point_at_their_own_fields() {
    let text = format!(
        "{SERVICES}kind: Route\nmetadata: {{name: r}}\nspec:\n  hosts: [a]\n  rules:\n    - backends:\n        - service: nope\n        - {{service: a, subset: v9}}\n        - service: db\n      mirror: {{service: gone}}\n"
    );
    let errors = build_err(&text);
    let got: Vec<_> = errors.iter().map(place).collect();
    let r = ErrorKind::UnknownReference;
    assert_eq!(
        got,
        [
            (r, "t.yaml", 17, 20, "spec.rules[0].backends[0].service"),
            (r, "t.yaml", 18, 32, "spec.rules[0].backends[1].subset"),
            (r, "t.yaml", 19, 20, "spec.rules[0].backends[2].service"),
            (r, "t.yaml", 20, 25, "spec.rules[0].mirror.service"),
        ]
    );
    assert!(errors.as_slice()[1].message.contains("(it has: v1)"));
    assert!(errors.as_slice()[2].message.contains("(t.yaml:9:13)"));
    assert_eq!(
        errors.as_slice()[0].to_string(),
        "t.yaml:17:20: spec.rules[0].backends[0].service: unknown service `nope` in namespace `default`"
    );
}

#[test]
fn second_proxy_points_at_both_kinds() {
    let two = "kind: Proxy\nmetadata: {name: a}\nspec: {service: a}\n---\nkind: Proxy\nmetadata: {name: b}\nspec: {service: a, listen: {outbound: 127.0.0.1:9}}\n";
    let errors = ProxyConfig::parse("p.yaml", two, 1).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors}");
    let e = &errors.as_slice()[0];
    assert_eq!(place(e), (ErrorKind::Conflict, "p.yaml", 5, 7, "kind"));
    assert!(e.message.ends_with("the first is at p.yaml:1:7"), "{e}");
    let none = ProxyConfig::parse("p.yaml", SERVICES, 1).unwrap_err();
    assert_eq!(
        place(&none.as_slice()[0]),
        (ErrorKind::MissingField, "p.yaml", 0, 0, "")
    );
}

#[test]
fn tcp_listener_reference_points_at_its_service_field() {
    let proxy = |svc: &str, control: &str| {
        format!("kind: Proxy\nmetadata: {{name: p}}\nspec:\n  service: a\n{control}  listen:\n    tcp:\n      - address: 127.0.0.1:5432\n        service: {svc}\n---\n{SERVICES}")
    };
    let ok = ProxyConfig::parse("p.yaml", &proxy("db", ""), 1).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.proxy.spec.listen.tcp[0].service, "db");
    assert!(ok.snapshot.proxies().is_empty());
    for (svc, says) in [("nope", "unknown service `nope`"), ("a", "(p.yaml:10)")] {
        let errors = ProxyConfig::parse("p.yaml", &proxy(svc, ""), 1).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        let e = &errors.as_slice()[0];
        let want = (
            ErrorKind::UnknownReference,
            "p.yaml",
            8,
            18,
            "spec.listen.tcp[0].service",
        );
        assert_eq!(place(e), want);
        assert!(e.message.contains(says), "{e}");
    }
    let controlled = proxy("nope", "  control: 127.0.0.1:7701\n");
    assert!(ProxyConfig::parse("p.yaml", &controlled, 1).is_ok());
}

#[test]
fn resources_compare_equal_wherever_they_were_read() {
    let text = "kind: Route\nmetadata: {name: r}\nspec: {hosts: [a], rules: [{backends: [{service: a}]}]}\n";
    let here = parse_str("a.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    let there = parse_str("b.yaml", &format!("\n\n{text}")).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(here[0].location(), there[0].location());
    assert_eq!(here, there);
    let changed = parse_ok(&text.replace("hosts: [a]", "hosts: [b]"));
    assert_ne!(here, changed);
    let positions: Vec<&str> = here[0].location().fields.iter().map(|f| f.0).collect();
    assert_eq!(
        positions,
        [
            "kind",
            "metadata.name",
            "spec.hosts[0]",
            "spec.rules[0].backends[0].service"
        ]
    );
}
