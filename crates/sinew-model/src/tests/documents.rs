//! Whole documents: the design's examples, multi-document YAML, JSON, defaults, round trips.

use super::{data, parse_ok};
use crate::*;

#[test]
fn design_examples_parse() {
    let all = parse_ok(&data("design-example.yaml"));
    let kinds: Vec<Kind> = all.iter().map(Resource::kind).collect();
    assert_eq!(
        kinds,
        [
            Kind::Service,
            Kind::Route,
            Kind::AuthorizationPolicy,
            Kind::Subscription,
            Kind::Mesh,
            Kind::Proxy
        ]
    );
    let Resource::Route(route) = &all[1] else {
        panic!("not a route")
    };
    assert_eq!(route.location.line, 19);
    assert_eq!(route.metadata.namespace, "default");
    let rule = &route.spec.rules[0];
    assert_eq!(rule.matches[0].path, Some(PathMatch::Prefix("/api".into())));
    assert_eq!(
        rule.matches[0].headers["x-canary"],
        ValueMatch::Exact("1".into())
    );
    assert_eq!(rule.matches[0].query["debug"], ValueMatch::Present(true));
    assert_eq!(
        rule.fault
            .as_ref()
            .and_then(|f| f.abort.as_ref())
            .map(|a| a.status),
        Some(503)
    );
    assert!(
        matches!(&route.spec.rules[1].action, RouteAction::DirectResponse(d) if d.status == 403)
    );
    let Resource::Service(svc) = &all[0] else {
        panic!("not a service")
    };
    assert_eq!(svc.spec.balancer.algorithm, BalancerAlgorithm::PeakEwma);
    assert_eq!(svc.spec.retries.as_ref().map(|r| r.attempts), Some(2));
    assert_eq!(svc.spec.timeout, Some(Duration::from_secs(5)));
}

#[test]
fn defaults_are_filled_in() {
    let all = parse_ok(
        "kind: Service\nmetadata: {name: a}\nspec: {}\n---\nkind: Proxy\nmetadata: {name: p}\nspec: {service: a}\n---\nkind: Mesh\nmetadata: {name: default}\n",
    );
    let [Resource::Service(s), Resource::Proxy(p), Resource::Mesh(m)] = &all[..] else {
        panic!("unexpected kinds: {all:?}")
    };
    assert_eq!(s.spec.protocol, Protocol::Http);
    assert_eq!(s.spec.balancer.algorithm, BalancerAlgorithm::LeastRequest);
    assert_eq!(s.spec.connect_timeout, Duration::from_secs(1));
    assert_eq!(s.spec.circuit_breaker, CircuitBreaker::default());
    assert_eq!(p.spec.listen, Listen::default());
    assert_eq!(p.spec.listen.outbound.to_string(), "127.0.0.1:4140");
    assert_eq!(p.spec.workers, 1);
    assert_eq!(p.spec.drain_timeout, Duration::from_secs(10));
    assert_eq!(p.spec.control, None);
    assert_eq!(m.spec, MeshSpec::default());
    assert_eq!(m.spec.trust_domain, "sinew.local");
}

#[test]
fn multi_document_yaml_keeps_lines() {
    let text = "kind: Mesh\nmetadata: {name: default}\n---\n# comment\n\n---\nkind: Service\nmetadata: {name: b}\nspec: {}\n";
    let all = parse_ok(text);
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].location().line, 1);
    assert_eq!(all[1].location().line, 7);
    assert_eq!(all[1].location().file, "t.yaml");
}

#[test]
fn json_object_array_and_documents() {
    let one = r#"{"apiVersion": "sinew.dev/v1alpha1", "kind": "Service", "metadata": {"name": "a"},
                  "spec": {"endpoints": [{"address": "10.0.0.1:80", "weight": 3}]}}"#;
    let all = parse_ok(one);
    let Resource::Service(s) = &all[0] else {
        panic!("not a service")
    };
    assert_eq!(s.spec.endpoints[0].weight, 3);

    let array = r#"[{"kind":"Service","metadata":{"name":"a"},"spec":{}},
{"kind":"Service","metadata":{"name":"b"},"spec":{"timeout":"2s"}}]"#;
    let all = parse_ok(array);
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].location().line, 2);

    let docs = "{\"kind\":\"Mesh\",\"metadata\":{\"name\":\"default\"}}\n---\n{\"kind\":\"Mesh\",\"metadata\":{\"name\":\"other\"}}\n";
    assert_eq!(parse_ok(docs).len(), 2);

    let tabs = "{\n\t\"kind\": \"Mesh\",\n\t\"metadata\": {\"name\": \"default\"}\n}\n";
    assert_eq!(parse_ok(tabs).len(), 1);
}

#[test]
fn empty_input_is_no_resources() {
    assert!(parse_ok("").is_empty());
    assert!(parse_ok("# nothing\n---\n").is_empty());
}

#[test]
fn serialized_resources_parse_back_equal() {
    let original = parse_ok(&data("static-proxy.yaml"));
    let json = serde_json::to_string_pretty(&original).unwrap();
    let again = parse_str("again.json", &json).unwrap_or_else(|e| panic!("{e}\n{json}"));
    assert_eq!(again.len(), original.len());
    for (a, b) in original.iter().zip(&again) {
        assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap()
        );
        assert_eq!(a.metadata(), b.metadata());
    }
}

#[test]
fn durations_serialize_as_strings() {
    let all = parse_ok(
        "kind: Service\nmetadata: {name: a}\nspec: {timeout: 90s, connect_timeout: 250ms}\n",
    );
    let v = serde_json::to_value(&all[0]).unwrap();
    assert_eq!(v["spec"]["timeout"], "1m30s");
    assert_eq!(v["spec"]["connect_timeout"], "250ms");
    assert_eq!(v["apiVersion"], API_VERSION);
    assert_eq!(v["kind"], "Service");
}

#[test]
fn header_names_are_lowercased_and_methods_kept() {
    let all = parse_ok(&data("static-proxy.yaml"));
    let route = all.iter().find_map(|r| match r {
        Resource::Route(r) => Some(r),
        _ => None,
    });
    let route = route.expect("a route");
    assert!(route.spec.rules[0].matches[0]
        .headers
        .contains_key("x-canary"));
    assert_eq!(
        route.spec.rules[1].matches[1].method.as_deref(),
        Some("DELETE")
    );
    let PathMatch::Regex(p) = route.spec.rules[0].matches[0].path.as_ref().expect("path") else {
        panic!("not a regex")
    };
    assert!(p.is_match("/api/v2/reviews"));
}

#[test]
fn matcher_helpers_follow_their_documented_rules() {
    let prefix = PathMatch::Prefix("/api".into());
    assert!(prefix.matches("/api") && prefix.matches("/api/x"));
    assert!(!prefix.matches("/apix"));
    assert!(PathMatch::Prefix("/".into()).matches("/anything"));
    assert!(PathMatch::Exact("/a".into()).matches("/a"));
    assert!(!PathMatch::Exact("/a".into()).matches("/a/"));
    assert!(ValueMatch::Present(false).matches(None));
    assert!(!ValueMatch::Present(true).matches(None));
    assert!(ValueMatch::Prefix("ab".into()).matches(Some("abc")));
    assert!(!ValueMatch::Exact("1".into()).matches(None));
    let subset = Subset {
        name: "v1".into(),
        labels: [("version".to_owned(), "v1".to_owned())].into(),
    };
    let labels = [
        ("version".to_owned(), "v1".to_owned()),
        ("zone".to_owned(), "a".to_owned()),
    ]
    .into();
    assert!(subset.selects(&labels));
    assert!(!subset.selects(&Default::default()));
}
