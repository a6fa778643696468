//! Errors: every kind, with exact line, column and field path; all of a file's errors at once.

use super::{data, parse_err, parse_ok};
use crate::{parse_file, parse_str, ErrorKind};

/// The single error of `text`, as (kind, line, column, field).
fn one(text: &str) -> (ErrorKind, u32, u32, String) {
    let errors = parse_err(text);
    assert_eq!(
        errors.len(),
        1,
        "expected one error, got:\n{}",
        crate::Errors(errors.clone())
    );
    let e = &errors[0];
    (e.kind, e.line, e.column, e.field.clone())
}

fn svc(spec: &str) -> String {
    format!("kind: Service\nmetadata: {{name: a}}\nspec:\n{spec}")
}

fn route(rules: &str) -> String {
    format!("kind: Route\nmetadata: {{name: r}}\nspec:\n  hosts: [a]\n  rules:\n{rules}")
}

#[test]
fn every_error_of_a_file_is_reported_in_order() {
    let errors = parse_err(&data("invalid.yaml"));
    let got: Vec<(u32, &str, ErrorKind)> = errors
        .iter()
        .map(|e| (e.line, e.field.as_str(), e.kind))
        .collect();
    use ErrorKind::*;
    let want: Vec<(u32, &str, ErrorKind)> = vec![
        (4, "metadata.name", InvalidValue),
        (6, "spec.protocl", UnknownField),
        (8, "spec.endpoints[0].address", InvalidValue),
        (8, "spec.endpoints[0].weight", InvalidValue),
        (9, "spec.balancer.hash", MissingField),
        (10, "spec.timeout", InvalidValue),
        (11, "spec.retries.attempts", InvalidType),
        (11, "spec.retries.on[0]", InvalidValue),
        (12, "spec.health_check", InvalidValue),
        (17, "spec.hosts[0]", InvalidValue),
        (19, "spec.rules[0].match[0].path", InvalidValue),
        (19, "spec.rules[0].match[0].headers.x.regex", InvalidValue),
        (20, "spec.rules[0].backends", InvalidValue),
        (21, "spec.rules[1].backends", InvalidValue),
        (22, "spec.rules[1].direct_response.status", InvalidValue),
        (23, "spec.rules[2]", MissingField),
        (25, "kind", InvalidValue),
        (30, "spec.workers", InvalidValue),
        (30, "spec.listen.inbound", InvalidValue),
        (30, "spec.access_log.path", MissingField),
        (33, "metadata.name", DuplicateField),
        (34, "spec.topic", InvalidValue),
        (34, "spec.deliver.path", InvalidValue),
        (34, "spec.start.time", InvalidValue),
    ];
    assert_eq!(got, want);
    assert!(errors.iter().all(|e| e.file == "t.yaml" && e.column > 0));
}

#[test]
fn display_is_file_line_column_field_message() {
    let errors = parse_str("svc.yaml", &svc("  timeout: 5\n")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "svc.yaml:4:12: spec.timeout: duration needs a unit (e.g. 5s)"
    );
}

#[test]
fn unknown_field_names_the_expected_ones() {
    let errors = parse_err(&svc("  timeuot: 5s\n"));
    assert_eq!(errors[0].kind, ErrorKind::UnknownField);
    assert_eq!((errors[0].line, errors[0].column), (4, 3));
    assert!(
        errors[0].message.contains("`timeout`"),
        "{}",
        errors[0].message
    );
    assert_eq!(
        one("kind: Mesh\nmetadata: {name: m, nme: x}\n"),
        (ErrorKind::UnknownField, 2, 21, "metadata.nme".into())
    );
    assert_eq!(
        one("kind: Mesh\nmetadata: {name: m}\nextra: 1\n"),
        (ErrorKind::UnknownField, 3, 1, "extra".into())
    );
}

#[test]
fn missing_fields() {
    assert_eq!(
        one("metadata: {name: m}\n"),
        (ErrorKind::MissingField, 1, 1, "kind".into())
    );
    assert_eq!(
        one("kind: Service\nmetadata: {name: a}\n"),
        (ErrorKind::MissingField, 1, 1, "spec".into())
    );
    assert_eq!(
        one("kind: Mesh\nmetadata: {}\n"),
        (ErrorKind::MissingField, 2, 11, "metadata.name".into())
    );
    assert_eq!(
        one(&svc("  endpoints:\n    - {weight: 2}\n")),
        (
            ErrorKind::MissingField,
            5,
            7,
            "spec.endpoints[0].address".into()
        )
    );
    assert_eq!(
        one("kind: Proxy\nmetadata: {name: p}\nspec: {app: 127.0.0.1:1}\n"),
        (ErrorKind::MissingField, 3, 7, "spec.service".into())
    );
}

#[test]
fn wrong_types() {
    assert_eq!(
        one(&svc("  endpoints: {address: 1.2.3.4:5}\n")),
        (ErrorKind::InvalidType, 4, 14, "spec.endpoints".into())
    );
    assert_eq!(
        one(&svc("  subsets: [v1]\n")),
        (ErrorKind::InvalidType, 4, 13, "spec.subsets[0]".into())
    );
    assert_eq!(
        one(&svc("  circuit_breaker: {max_requests: lots}\n")),
        (
            ErrorKind::InvalidType,
            4,
            35,
            "spec.circuit_breaker.max_requests".into()
        )
    );
    assert_eq!(
        one(&svc("  circuit_breaker: {max_requests: -1}\n")),
        (
            ErrorKind::InvalidType,
            4,
            35,
            "spec.circuit_breaker.max_requests".into()
        )
    );
    assert_eq!(
        one("kind: Mesh\nmetadata: {name: m, labels: [a]}\n"),
        (ErrorKind::InvalidType, 2, 29, "metadata.labels".into())
    );
    assert_eq!(one("- 1\n"), (ErrorKind::InvalidType, 1, 3, "".into()));
    assert_eq!(
        one(&svc("  circuit_breaker: {max_requests: 99999999999}\n")),
        (
            ErrorKind::InvalidValue,
            4,
            35,
            "spec.circuit_breaker.max_requests".into()
        )
    );
}

#[test]
fn bad_enum_values() {
    let errors = parse_err(&svc("  balancer: {algorithm: fastest}\n"));
    assert_eq!(
        (errors[0].kind, errors[0].line, errors[0].field.as_str()),
        (ErrorKind::InvalidValue, 4, "spec.balancer.algorithm")
    );
    assert!(errors[0].message.contains("`peak-ewma`"));
    assert_eq!(
        one(&svc("  protocol: udp\n")),
        (ErrorKind::InvalidValue, 4, 13, "spec.protocol".into())
    );
    assert_eq!(
        one("kind: Mesh\nmetadata: {name: m}\nspec: {mtls: maybe}\n"),
        (ErrorKind::InvalidValue, 3, 14, "spec.mtls".into())
    );
    assert_eq!(
        one("apiVersion: v2\nkind: Mesh\nmetadata: {name: m}\n"),
        (ErrorKind::InvalidValue, 1, 13, "apiVersion".into())
    );
}

#[test]
fn bad_durations_and_addresses() {
    assert_eq!(
        one(&svc("  timeout: 5\n")),
        (ErrorKind::InvalidValue, 4, 12, "spec.timeout".into())
    );
    assert_eq!(
        one(&svc("  timeout: 5d\n")),
        (ErrorKind::InvalidValue, 4, 12, "spec.timeout".into())
    );
    assert_eq!(
        one(&svc("  connect_timeout: 0s\n")),
        (
            ErrorKind::InvalidValue,
            4,
            20,
            "spec.connect_timeout".into()
        )
    );
    assert_eq!(
        one(&svc("  endpoints: [{address: 10.0.0.1}]\n")),
        (
            ErrorKind::InvalidValue,
            4,
            25,
            "spec.endpoints[0].address".into()
        )
    );
    assert_eq!(
        one(&svc("  retries: {backoff: {base: 1s, max: 10ms}}\n")),
        (
            ErrorKind::InvalidValue,
            4,
            22,
            "spec.retries.backoff".into()
        )
    );
}

#[test]
fn route_rules_are_checked() {
    let weights = "    - backends: [{service: a, weight: 0}, {service: b, weight: 0}]\n";
    assert_eq!(
        one(&route(weights)),
        (
            ErrorKind::InvalidValue,
            6,
            17,
            "spec.rules[0].backends".into()
        )
    );
    let both = "    - backends: [{service: a}]\n      direct_response: {status: 200}\n";
    assert_eq!(
        one(&route(both)),
        (ErrorKind::InvalidValue, 6, 7, "spec.rules[0]".into())
    );
    let regex = "    - match: [{path: {regex: \"[\"}}]\n      backends: [{service: a}]\n";
    assert_eq!(
        one(&route(regex)),
        (
            ErrorKind::InvalidValue,
            6,
            30,
            "spec.rules[0].match[0].path.regex".into()
        )
    );
    let pct = "    - backends: [{service: a}]\n      fault: {abort: {status: 503, percent: 101}}\n";
    assert_eq!(
        one(&route(pct)),
        (
            ErrorKind::InvalidValue,
            7,
            45,
            "spec.rules[0].fault.abort.percent".into()
        )
    );
    let status = "    - direct_response: {status: 99}\n";
    assert_eq!(
        one(&route(status)),
        (
            ErrorKind::InvalidValue,
            6,
            33,
            "spec.rules[0].direct_response.status".into()
        )
    );
    let mirror = "    - direct_response: {status: 404}\n      mirror: {service: a}\n";
    assert_eq!(
        one(&route(mirror)),
        (ErrorKind::InvalidValue, 6, 7, "spec.rules[0].mirror".into())
    );
    let method = "    - match: [{method: get}]\n      backends: [{service: a}]\n";
    assert_eq!(
        one(&route(method)),
        (
            ErrorKind::InvalidValue,
            6,
            24,
            "spec.rules[0].match[0].method".into()
        )
    );
    let no_rules = "kind: Route\nmetadata: {name: r}\nspec: {hosts: [a], rules: []}\n";
    assert_eq!(
        one(no_rules),
        (ErrorKind::InvalidValue, 3, 27, "spec.rules".into())
    );
    let host = "kind: Route\nmetadata: {name: r}\nspec: {hosts: [\"a:80\"], rules: [{backends: [{service: a}]}]}\n";
    assert_eq!(
        one(host),
        (ErrorKind::InvalidValue, 3, 16, "spec.hosts[0]".into())
    );
}

#[test]
fn hash_only_with_hashing_balancers() {
    assert_eq!(
        one(&svc("  balancer: {algorithm: random, hash: {header: x}}\n")),
        (ErrorKind::InvalidValue, 4, 13, "spec.balancer.hash".into())
    );
    assert_eq!(
        one(&svc(
            "  balancer: {algorithm: maglev, hash: {header: x, cookie: y}}\n"
        )),
        (ErrorKind::InvalidValue, 4, 39, "spec.balancer.hash".into())
    );
    assert_eq!(
        one(&svc(
            "  balancer: {algorithm: maglev, hash: {source_ip: false}}\n"
        )),
        (
            ErrorKind::InvalidValue,
            4,
            51,
            "spec.balancer.hash.source_ip".into()
        )
    );
}

#[test]
fn duplicates_inside_one_resource() {
    assert_eq!(
        one(&svc("  timeout: 1s\n  timeout: 2s\n")),
        (ErrorKind::DuplicateField, 5, 3, "spec.timeout".into())
    );
    let subsets = "  subsets: [{name: v1, labels: {v: a}}, {name: v1, labels: {v: b}}]\n";
    assert_eq!(
        one(&svc(subsets)),
        (ErrorKind::InvalidValue, 4, 12, "spec.subsets".into())
    );
    let tcp = "kind: Proxy\nmetadata: {name: p}\nspec:\n  service: p\n  listen:\n    tcp:\n      - {service: db, address: 127.0.0.1:4191}\n";
    assert_eq!(
        one(tcp),
        (
            ErrorKind::InvalidValue,
            7,
            7,
            "spec.listen.tcp[0].address".into()
        )
    );
}

#[test]
fn syntax_errors_have_positions_and_earlier_documents_still_count() {
    let text = "kind: Mesh\nmetadata: {name: m, bad: 1}\n---\nkind: [Service\n";
    let errors = parse_err(text);
    assert_eq!(errors.len(), 2, "{}", crate::Errors(errors.clone()));
    assert_eq!(
        (errors[0].kind, errors[0].line),
        (ErrorKind::UnknownField, 2)
    );
    assert_eq!(errors[1].kind, ErrorKind::Syntax);
    assert!(errors[1].line >= 4);
}

#[test]
fn unreadable_file_is_an_io_error() {
    let errors = parse_file("no/such/file.yaml").unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors.as_slice()[0].kind, ErrorKind::Io);
    assert_eq!(errors.as_slice()[0].file, "no/such/file.yaml");
}

#[test]
fn other_kinds_are_checked() {
    let policy = "kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {target: a, action: allow, rules: [{from: {identities: [web]}}]}\n";
    assert_eq!(
        one(policy),
        (
            ErrorKind::InvalidValue,
            3,
            63,
            "spec.rules[0].from.identities[0]".into()
        )
    );
    let sub = "kind: Subscription\nmetadata: {name: s}\nspec: {topic: o, service: a, deliver: {path: /e}, dead_letter: o}\n";
    assert_eq!(
        one(sub),
        (ErrorKind::InvalidValue, 3, 64, "spec.dead_letter".into())
    );
    // A topic whose default dead-letter topic could not exist.
    let long = format!(
        "kind: Subscription\nmetadata: {{name: s}}\nspec: {{topic: {}, service: a, deliver: {{path: /e}}}}\n",
        "t".repeat(247)
    );
    assert_eq!(
        one(&long),
        (ErrorKind::InvalidValue, 3, 15, "spec.topic".into())
    );
    let named = long.replace("deliver:", "dead_letter: dlq, deliver:");
    let _ = parse_ok(&named);
    let start = "kind: Subscription\nmetadata: {name: s}\nspec: {topic: o, service: a, deliver: {path: /e}, start: {offset: 5, time: \"2024-01-01T00:00:00Z\"}}\n";
    assert_eq!(
        one(start),
        (ErrorKind::InvalidValue, 3, 58, "spec.start".into())
    );
    let retries = "  retries: {on: [retriable-status-codes]}\n";
    assert_eq!(
        one(&svc(retries)),
        (ErrorKind::InvalidValue, 4, 17, "spec.retries.on".into())
    );
}

#[test]
fn topic_policies_take_from_and_operations_only() {
    let ok = "kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {topic: orders, action: allow, rules: [{from: {identities: ['spiffe://sinew.local/ns/default/svc/web']}, to: {operations: [publish]}}]}\n";
    let parsed = parse_ok(ok);
    let crate::Resource::AuthorizationPolicy(p) = &parsed[0] else {
        panic!("a policy");
    };
    assert_eq!(p.spec.target, crate::AuthzTarget::Topic("orders".into()));
    assert_eq!(
        p.spec.rules[0].to.operations,
        [crate::TopicOperation::Publish]
    );
    let head = "kind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {";
    let cases = [
        (
            "topic: orders, action: deny, rules: [{to: {methods: [GET]}}]}",
            "spec.rules[0].to.methods",
        ),
        (
            "topic: orders, action: deny, rules: [{when: {headers: {x: {exact: y}}}}]}",
            "spec.rules[0].when",
        ),
        (
            "target: web, action: deny, rules: [{to: {operations: [publish]}}]}",
            "spec.rules[0].to.operations",
        ),
        (
            "target: web, topic: orders, action: deny, rules: [{}]}",
            "spec.topic",
        ),
        ("action: deny, rules: [{}]}", "spec"),
        (
            "topic: orders, action: deny, rules: [{to: {operations: [read]}}]}",
            "spec.rules[0].to.operations[0]",
        ),
    ];
    for (spec, field) in cases {
        let errors = parse_err(&format!("{head}{spec}\n"));
        assert_eq!(errors.len(), 1, "{spec}: {errors:?}");
        assert_eq!(errors[0].field, field, "{spec}");
    }
}
