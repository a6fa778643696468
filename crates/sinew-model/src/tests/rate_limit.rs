//! `rate_limit` on Services and Route rules: defaults, JSON form and exact-position errors.

use super::{parse_err, parse_ok};
use crate::*;

fn svc(spec: &str) -> String {
    format!("kind: Service\nmetadata: {{name: a}}\nspec:\n{spec}")
}

fn route(rules: &str) -> String {
    format!("kind: Route\nmetadata: {{name: r}}\nspec:\n  hosts: [a]\n  rules:\n{rules}")
}

/// Every error of `text` as (kind, line, column, field).
fn errs(text: &str) -> Vec<(ErrorKind, u32, u32, String)> {
    parse_err(text)
        .iter()
        .map(|e| (e.kind, e.line, e.column, e.field.clone()))
        .collect()
}

#[test]
fn burst_defaults_to_the_rate_and_absent_means_unlimited() {
    let limited = |text: &str| match parse_ok(text).pop() {
        Some(Resource::Service(s)) => s.spec.rate_limit,
        other => panic!("not a service: {other:?}"),
    };
    assert_eq!(limited(&svc("  protocol: http\n")), None);
    assert_eq!(
        limited(&svc("  rate_limit: {requests_per_second: 50}\n")),
        Some(RateLimit {
            requests_per_second: 50,
            burst: 50
        })
    );
    let both = limited(&svc(
        "  rate_limit: {requests_per_second: 1000000, burst: 1}\n",
    ))
    .expect("a limit");
    assert_eq!((both.requests_per_second, both.burst), (1_000_000, 1));
    assert_eq!(
        serde_json::to_value(both).unwrap(),
        serde_json::json!({"requests_per_second": 1_000_000, "burst": 1})
    );

    let rule = match parse_ok(&route(
        "    - backends: [{service: a}]\n      rate_limit: {requests_per_second: 5, burst: 10}\n",
    ))
    .pop()
    {
        Some(Resource::Route(r)) => r.spec.rules[0].clone(),
        other => panic!("not a route: {other:?}"),
    };
    assert_eq!(
        rule.rate_limit,
        Some(RateLimit {
            requests_per_second: 5,
            burst: 10
        })
    );
}

#[test]
fn service_rate_limit_errors_point_at_their_values() {
    use ErrorKind::*;
    type Case<'a> = (&'a str, (ErrorKind, u32, u32, &'a str));
    let cases: &[Case<'_>] = &[
        (
            "  rate_limit: {requests_per_second: 0}\n",
            (InvalidValue, 4, 37, "spec.rate_limit.requests_per_second"),
        ),
        (
            "  rate_limit: {requests_per_second: 1000001}\n",
            (InvalidValue, 4, 37, "spec.rate_limit.requests_per_second"),
        ),
        (
            "  rate_limit: {requests_per_second: 2.5}\n",
            (InvalidType, 4, 37, "spec.rate_limit.requests_per_second"),
        ),
        (
            "  rate_limit: {requests_per_second: 10, burst: 0}\n",
            (InvalidValue, 4, 48, "spec.rate_limit.burst"),
        ),
        (
            "  rate_limit: {burst: 10}\n",
            (MissingField, 4, 15, "spec.rate_limit.requests_per_second"),
        ),
        (
            "  rate_limit: {requests_per_second: 10, brust: 20}\n",
            (UnknownField, 4, 41, "spec.rate_limit.brust"),
        ),
        (
            "  rate_limit: 100/s\n",
            (InvalidType, 4, 15, "spec.rate_limit"),
        ),
        (
            "  protocol: tcp\n  rate_limit: {requests_per_second: 10}\n",
            (InvalidValue, 5, 15, "spec.rate_limit"),
        ),
    ];
    for (spec, (kind, line, col, field)) in cases {
        let got = errs(&svc(spec));
        assert_eq!(
            got,
            [(*kind, *line, *col, (*field).to_owned())],
            "for {spec}"
        );
    }
    let text = svc("  rate_limit: 100/s\n");
    let message = parse_err(&text)[0].to_string();
    assert!(
        message.contains("`{requests_per_second: 100, burst: 200}`"),
        "the error shows the expected form: {message}"
    );
}

#[test]
fn route_rate_limit_is_checked_and_only_for_forwarding_rules() {
    use ErrorKind::*;
    let zero = "    - backends: [{service: a}]\n      rate_limit: {requests_per_second: 0}\n";
    assert_eq!(
        errs(&route(zero)),
        [(
            InvalidValue,
            7,
            41,
            "spec.rules[0].rate_limit.requests_per_second".to_owned()
        )]
    );
    let direct =
        "    - direct_response: {status: 404}\n      rate_limit: {requests_per_second: 1}\n";
    assert_eq!(
        errs(&route(direct)),
        [(InvalidValue, 6, 7, "spec.rules[0].rate_limit".to_owned())]
    );
}
