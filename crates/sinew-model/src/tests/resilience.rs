//! Resilience fields (issue 3): defaults, parsing, helpers and exact-position errors.

use super::{data, parse_err, parse_ok};
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

fn one_service(text: &str) -> ServiceSpec {
    match parse_ok(text).pop() {
        Some(Resource::Service(s)) => s.spec,
        other => panic!("not a service: {other:?}"),
    }
}

#[test]
fn defaults_of_the_resilience_fields() {
    let spec = one_service(&svc(
        "  retries: {}\n  outlier_detection: {}\n  health_check: {http: {path: /h}}\n",
    ));
    assert_eq!(spec.upstream_idle_timeout, Duration::from_secs(30));
    assert_eq!(spec.balancer.panic_threshold_percent, 50);
    assert_eq!(spec.circuit_breaker.max_retries, 256);
    let r = spec.retries.expect("retries");
    assert_eq!(r, Retries::default());
    assert!(!r.retry_non_idempotent);
    assert_eq!(r.max_body_bytes, 64 * 1024);
    assert!(r.honor_retry_after);
    let od = spec.outlier_detection.expect("outlier detection");
    assert_eq!(od, OutlierDetection::default());
    assert_eq!(
        (od.consecutive_gateway_errors, od.consecutive_connect_errors),
        (None, None)
    );
    let hc = spec.health_check.expect("health check");
    assert_eq!(hc.initial, InitialHealth::Healthy);
    assert!(hc.probe.expects_status(200) && hc.probe.expects_status(399));
    assert!(!hc.probe.expects_status(199) && !hc.probe.expects_status(400));
    let all = parse_ok("kind: Proxy\nmetadata: {name: p}\nspec: {service: a}\n");
    let Resource::Proxy(p) = &all[0] else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.idle_timeout, Duration::from_secs(60));
}

#[test]
fn every_new_field_is_read() {
    let all = parse_ok(&data("static-proxy.yaml"));
    let find = |name: &str| {
        all.iter().find_map(|r| match r {
            Resource::Service(s) if s.metadata.name == name => Some(&s.spec),
            _ => None,
        })
    };
    let reviews = find("reviews").expect("reviews");
    assert_eq!(reviews.upstream_idle_timeout, Duration::from_secs(20));
    assert_eq!(reviews.balancer.panic_threshold_percent, 30);
    assert_eq!(reviews.circuit_breaker.max_retries, 16);
    let shadow = find("reviews-shadow").expect("reviews-shadow");
    let r = shadow.retries.as_ref().expect("retries");
    assert_eq!(
        r.on,
        [
            RetryOn::Unavailable,
            RetryOn::Cancelled,
            RetryOn::DeadlineExceeded,
            RetryOn::ResourceExhausted
        ]
    );
    assert!(r.retry_non_idempotent && !r.honor_retry_after);
    assert_eq!(r.max_body_bytes, 1024);
    let od = shadow.outlier_detection.expect("outlier detection");
    assert_eq!(od.consecutive_gateway_errors, Some(2));
    assert_eq!(od.consecutive_connect_errors, Some(1));
    let hc = shadow.health_check.as_ref().expect("health check");
    assert_eq!(hc.initial, InitialHealth::Unhealthy);
    let HealthProbe::Http {
        expected_statuses, ..
    } = &hc.probe
    else {
        panic!("not http")
    };
    let want = [
        StatusRange {
            first: 200,
            last: 200,
        },
        StatusRange {
            first: 300,
            last: 399,
        },
    ];
    assert_eq!(expected_statuses[..], want);
    assert!(hc.probe.expects_status(200) && hc.probe.expects_status(302));
    assert!(!hc.probe.expects_status(204));
    let json = serde_json::to_value(hc).unwrap();
    assert_eq!(
        json["http"]["expected_statuses"],
        serde_json::json!([200, "300-399"])
    );
    assert_eq!(json["initial"], "unhealthy");

    let rule = all
        .iter()
        .find_map(|r| match r {
            Resource::Route(r) => r.spec.rules.last(),
            _ => None,
        })
        .expect("a route");
    let RouteAction::Backends(b) = &rule.action else {
        panic!("not backends")
    };
    assert_eq!(b[0].failover, ["v2"]);
    assert_eq!(b[0].priorities().collect::<Vec<_>>(), ["v1", "v2"]);
    assert_eq!(b[1].priorities().collect::<Vec<_>>(), ["v2"]);
    let fallback = rule.fallback.as_ref().expect("fallback");
    assert_eq!(fallback.status, 503);
    assert_eq!(fallback.headers["retry-after"], "5");
    let Some(Resource::Proxy(p)) = all.first() else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.idle_timeout, Duration::from_secs(90));
}

#[test]
fn helpers_follow_their_documented_rules() {
    assert_eq!(RetryOn::Unavailable.grpc_status(), Some(14));
    assert_eq!(RetryOn::Cancelled.grpc_status(), Some(1));
    assert_eq!(RetryOn::DeadlineExceeded.grpc_status(), Some(4));
    assert_eq!(RetryOn::ResourceExhausted.grpc_status(), Some(8));
    assert_eq!(RetryOn::GatewayError.grpc_status(), None);
    let whole = Backend {
        service: "a".into(),
        subset: None,
        weight: 1,
        failover: Vec::new(),
    };
    assert_eq!(whole.priorities().count(), 0);
    assert!(!HealthProbe::Tcp {}.expects_status(200));
}

#[test]
fn service_field_errors_point_at_their_values() {
    use ErrorKind::*;
    type Case<'a> = (&'a str, (ErrorKind, u32, u32, &'a str));
    let cases: &[Case<'_>] = &[
        (
            "  retries: {on: [unavailable, grpc-unknown]}\n",
            (InvalidValue, 4, 31, "spec.retries.on[1]"),
        ),
        (
            "  retries: {max_body_bytes: 16777217}\n",
            (InvalidValue, 4, 29, "spec.retries.max_body_bytes"),
        ),
        (
            "  retries: {max_body_bytes: 64KiB}\n",
            (InvalidType, 4, 29, "spec.retries.max_body_bytes"),
        ),
        (
            "  retries: {retry_non_idempotent: yes}\n",
            (InvalidType, 4, 35, "spec.retries.retry_non_idempotent"),
        ),
        (
            "  retries: {honor_retry_after: 1}\n",
            (InvalidType, 4, 32, "spec.retries.honor_retry_after"),
        ),
        (
            "  upstream_idle_timeout: 30\n",
            (InvalidValue, 4, 26, "spec.upstream_idle_timeout"),
        ),
        (
            "  balancer: {panic_threshold_percent: 101}\n",
            (InvalidValue, 4, 39, "spec.balancer.panic_threshold_percent"),
        ),
        (
            "  circuit_breaker: {max_retries: x}\n",
            (InvalidType, 4, 34, "spec.circuit_breaker.max_retries"),
        ),
        (
            "  outlier_detection: {consecutive_gateway_errors: 0}\n",
            (
                InvalidValue,
                4,
                51,
                "spec.outlier_detection.consecutive_gateway_errors",
            ),
        ),
        (
            "  outlier_detection: {consecutive_connect_errors: 0}\n",
            (
                InvalidValue,
                4,
                51,
                "spec.outlier_detection.consecutive_connect_errors",
            ),
        ),
        (
            "  health_check: {tcp: {}, initial: sick}\n",
            (InvalidValue, 4, 36, "spec.health_check.initial"),
        ),
        (
            "  health_check: {tcp: {}, interval: 1s, timeout: 2s}\n",
            (InvalidValue, 4, 50, "spec.health_check.timeout"),
        ),
        (
            "  health_check: {tcp: {}, inital: healthy}\n",
            (UnknownField, 4, 27, "spec.health_check.inital"),
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
}

#[test]
fn expected_status_ranges_are_checked_item_by_item() {
    let text = svc(
        "  health_check:\n    http:\n      path: /h\n      expected_statuses:\n        - 200\n        - 200-299\n        - \"300-399\"\n        - 299-200\n        - abc\n        - 600\n",
    );
    let got = errs(&text);
    let f = |i: usize| format!("spec.health_check.http.expected_statuses[{i}]");
    let bad = ErrorKind::InvalidValue;
    assert_eq!(
        got,
        [
            (bad, 11, 11, f(3)),
            (bad, 12, 11, f(4)),
            (bad, 13, 11, f(5))
        ]
    );
}

#[test]
fn proxy_idle_timeout_is_checked() {
    let got = errs("kind: Proxy\nmetadata: {name: p}\nspec: {service: a, idle_timeout: 0s}\n");
    assert_eq!(
        got,
        [(
            ErrorKind::InvalidValue,
            3,
            34,
            "spec.idle_timeout".to_owned()
        )]
    );
}

#[test]
fn proxy_request_header_timeout_defaults_and_is_checked() {
    let all = parse_ok("kind: Proxy\nmetadata: {name: p}\nspec: {service: a}\n");
    let Resource::Proxy(p) = &all[0] else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.request_header_timeout, Duration::from_secs(10));
    let all = parse_ok(
        "kind: Proxy\nmetadata: {name: p}\nspec: {service: a, request_header_timeout: 2s}\n",
    );
    let Resource::Proxy(p) = &all[0] else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.request_header_timeout, Duration::from_secs(2));
    let got =
        errs("kind: Proxy\nmetadata: {name: p}\nspec: {service: a, request_header_timeout: 0s}\n");
    assert_eq!(
        got,
        [(
            ErrorKind::InvalidValue,
            3,
            44,
            "spec.request_header_timeout".to_owned()
        )]
    );
}

#[test]
fn proxy_stream_idle_timeout_defaults_and_is_checked() {
    let all = parse_ok("kind: Proxy\nmetadata: {name: p}\nspec: {service: a}\n");
    let Resource::Proxy(p) = &all[0] else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.stream_idle_timeout, Duration::from_secs(300));
    let all =
        parse_ok("kind: Proxy\nmetadata: {name: p}\nspec: {service: a, stream_idle_timeout: 5s}\n");
    let Resource::Proxy(p) = &all[0] else {
        panic!("not a proxy")
    };
    assert_eq!(p.spec.stream_idle_timeout, Duration::from_secs(5));
    let got =
        errs("kind: Proxy\nmetadata: {name: p}\nspec: {service: a, stream_idle_timeout: 1}\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].3, "spec.stream_idle_timeout");
}

#[test]
fn fallback_is_a_checked_direct_response_for_forwarding_rules() {
    use ErrorKind::*;
    let direct = "    - direct_response: {status: 404}\n      fallback: {status: 503}\n";
    assert_eq!(
        errs(&route(direct)),
        [(InvalidValue, 6, 7, "spec.rules[0].fallback".to_owned())]
    );
    let status = "    - backends: [{service: a}]\n      fallback: {status: 99}\n";
    assert_eq!(
        errs(&route(status)),
        [(
            InvalidValue,
            7,
            26,
            "spec.rules[0].fallback.status".to_owned()
        )]
    );
    let unknown = "    - backends: [{service: a}]\n      fallback: {status: 503, bdy: x}\n";
    assert_eq!(
        errs(&route(unknown)),
        [(UnknownField, 7, 31, "spec.rules[0].fallback.bdy".to_owned())]
    );
    let missing = "    - backends: [{service: a}]\n      fallback: {body: x}\n";
    assert_eq!(
        errs(&route(missing)),
        [(
            MissingField,
            7,
            17,
            "spec.rules[0].fallback.status".to_owned()
        )]
    );
}

#[test]
fn failover_needs_a_subset_and_distinct_names() {
    use ErrorKind::*;
    let no_subset = "    - backends: [{service: a, failover: [v2]}]\n";
    assert_eq!(
        errs(&route(no_subset)),
        [(
            InvalidValue,
            6,
            41,
            "spec.rules[0].backends[0].failover".to_owned()
        )]
    );
    let repeats = "    - backends: [{service: a, subset: v1, failover: [v2, v1, v2]}]\n";
    let f = |k: usize| format!("spec.rules[0].backends[0].failover[{k}]");
    assert_eq!(
        errs(&route(repeats)),
        [(InvalidValue, 6, 58, f(1)), (InvalidValue, 6, 62, f(2))]
    );
    let bad_name = "    - backends: [{service: a, subset: v1, failover: [V2]}]\n";
    assert_eq!(errs(&route(bad_name)), [(InvalidValue, 6, 54, f(0))]);
}

#[test]
fn failover_subsets_must_exist_in_the_snapshot() {
    let text = "\
kind: Service
metadata: {name: a}
spec:
  subsets: [{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: '2'}}]
---
kind: Route
metadata: {name: r}
spec:
  hosts: [a]
  rules:
    - backends:
        - service: a
          subset: v1
          failover:
            - v2
            - v3
";
    let errors = Snapshot::build(parse_ok(text), 1).unwrap_err();
    let got: Vec<_> = errors
        .iter()
        .map(|e| (e.kind, e.line, e.column, e.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [(
            ErrorKind::UnknownReference,
            16,
            15,
            "spec.rules[0].backends[0].failover[1]"
        )]
    );
    assert_eq!(
        errors.as_slice()[0].to_string(),
        "t.yaml:16:15: spec.rules[0].backends[0].failover[1]: service `a` has no subset `v3` (it has: v1, v2)"
    );
    let without_v3 = text.replace("            - v3\n", "");
    assert!(Snapshot::build(parse_ok(&without_v3), 1).is_ok());
}
