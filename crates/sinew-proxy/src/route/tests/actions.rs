//! Compiled actions: weighted split, rewrite, header edits, timeout, mirror, direct responses, and a parsed snapshot.

use std::collections::BTreeMap;

use sinew_model as m;

use super::*;

#[test]
fn weighted_backends_split_exactly() {
    let r = route(
        "reviews",
        &["reviews"],
        vec![rule(
            vec![],
            to(&[("reviews", Some("v1"), 90), ("reviews", Some("v2"), 10)]),
        )],
    );
    let (table, clusters) = build(&[http_service("reviews")], &[r]);
    let rule = table.route("reviews", &get("/")).expect("rule");
    let mut v2 = 0;
    for _ in 0..2_000 {
        if forward(rule).pick_backend().subset.as_deref() == Some("v2") {
            v2 += 1;
        }
    }
    assert!((140..=260).contains(&v2), "10 % ± 3 % of 2,000, got {v2}");
    assert_eq!(v2, 200);
    assert_eq!(
        clusters,
        ["reviews/v1", "reviews/v2", "reviews/"],
        "reviews.default stays implicit"
    );
}

#[test]
fn rewrite_headers_timeout_and_mirror_are_compiled() {
    let mut r = rule(
        vec![path_prefix("/api"), path_prefix("/v1/api")],
        to(&[("svc", None, 1)]),
    );
    r.rewrite = Some(m::Rewrite { prefix: "/".into() });
    r.timeout = Some(m::Duration::from_millis(1500));
    r.mirror = Some(m::Mirror {
        service: "shadow".into(),
        percent: 10.0,
    });
    r.headers.request = m::HeaderOps {
        set: BTreeMap::from([("x-route".to_owned(), "api".to_owned())]),
        remove: vec!["x-debug".into()],
    };
    r.headers
        .response
        .set
        .insert("x-served-by".into(), "sinew".into());
    let mut all = rule(vec![], to(&[("svc", None, 1)]));
    all.rewrite = Some(m::Rewrite {
        prefix: "/app".into(),
    });
    let (table, clusters) = build(&[], &[route("svc", &["svc"], vec![r, all])]);

    let rule = table.route("svc", &get("/v1/api/users")).expect("rule 0");
    let f = forward(rule);
    let rewrite = f.rewrite.as_ref().expect("rewrite");
    assert_eq!(rewrite.apply("/v1/api/users"), "/users");
    assert_eq!(rewrite.apply("/api/users"), "/users");
    assert_eq!(rewrite.apply("/api"), "/");
    assert_eq!(rule.timeout, Some(std::time::Duration::from_millis(1500)));
    let mirror = rule.mirror.as_ref().expect("mirror");
    assert_eq!((&*mirror.service, mirror.percent), ("shadow", 10.0));
    assert_eq!(clusters[mirror.cluster.0 as usize], "shadow/");

    let mut headers = http::HeaderMap::new();
    headers.insert("x-debug", http::HeaderValue::from_static("1"));
    f.request_headers.apply(&mut headers);
    assert!(headers.get("x-debug").is_none());
    assert_eq!(
        headers.get("x-route").map(|v| v.as_bytes()),
        Some(&b"api"[..])
    );
    assert_eq!(f.response_headers.set.len(), 1);
    assert!(f.response_headers.remove.is_empty());

    let rule = table.route("svc", &get("/web/x")).expect("rule 1");
    let rewrite = forward(rule).rewrite.as_ref().expect("rewrite");
    assert_eq!(
        rewrite.apply("/web/x"),
        "/app/web/x",
        "no path match: the prefix is /"
    );
}

#[test]
fn direct_responses_are_compiled() {
    let direct = m::RouteAction::DirectResponse(m::DirectResponse {
        status: 403,
        body: Some("forbidden".into()),
        headers: BTreeMap::from([("content-type".to_owned(), "text/plain".to_owned())]),
    });
    let r = route(
        "svc",
        &["svc"],
        vec![
            rule(vec![path_prefix("/internal")], direct),
            rule(vec![], to(&[("svc", None, 1)])),
        ],
    );
    let (table, _) = build(&[], &[r]);
    let rule = table.route("svc", &get("/internal/x")).expect("rule");
    let Action::Direct(d) = &rule.action else {
        panic!("expected a direct response");
    };
    assert_eq!(d.status, http::StatusCode::FORBIDDEN);
    assert_eq!(&d.body[..], b"forbidden");
    assert_eq!(d.headers.len(), 1);
    assert_eq!(d.headers[0].0, http::header::CONTENT_TYPE);
    assert!(matches!(
        table.route("svc", &get("/internals")).map(|r| &r.action),
        Some(Action::Forward(_))
    ));
}

#[test]
fn builds_from_a_parsed_snapshot() {
    let yaml = r#"
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  protocol: http
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: ratings}
spec: {protocol: http}
---
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: db}
spec: {protocol: tcp}
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews]
  rules:
    - match: [{path: {prefix: /api}, method: GET, headers: {x-canary: {exact: "1"}}, query: {debug: {present: true}}}]
      backends: [{service: reviews, subset: v2}]
      timeout: 1s
    - match: [{path: {prefix: /internal}}]
      direct_response: {status: 403, body: "forbidden"}
    - backends: [{service: reviews, subset: v1, weight: 90}, {service: reviews, subset: v2, weight: 10}]
      rewrite: {prefix: /}
"#;
    let resources = m::parse_str("mesh.yaml", yaml).expect("example parses");
    let snapshot = m::Snapshot::build(resources, 1).expect("example is valid");
    let mut calls = Vec::new();
    let table = RouteTable::build(&snapshot, &mut |service, subset| {
        calls.push(format!("{service}/{}", subset.unwrap_or("")));
        ClusterId(u32::try_from(calls.len()).expect("few clusters"))
    });

    let headers: &[(&str, &str)] = &[("X-Canary", "1")];
    let canary = RequestView {
        method: "GET",
        path: "/api/reviews",
        query: Some("debug"),
        headers: &headers,
    };
    let rule = table.route("reviews:9080", &canary).expect("canary rule");
    assert_eq!((&*rule.route_name, rule.index), ("reviews", 0));
    assert_eq!(rule.timeout, Some(std::time::Duration::from_secs(1)));
    assert_eq!(forward(rule).pick_backend().subset.as_deref(), Some("v2"));

    let rule = table
        .route("reviews", &get("/internal/x"))
        .expect("direct rule");
    assert!(matches!(&rule.action, Action::Direct(d) if d.status == http::StatusCode::FORBIDDEN));

    let rule = table
        .route("reviews", &get("/api/reviews"))
        .expect("split rule");
    assert_eq!(rule.index, 2);
    assert_eq!(
        forward(rule)
            .rewrite
            .as_ref()
            .map(|r| r.apply("/api/x"))
            .as_deref(),
        Some("/api/x")
    );

    let rule = table
        .route("ratings.default", &get("/"))
        .expect("implicit route");
    assert_eq!(&*rule.route_name, "service/ratings");
    assert!(table.virtual_host("db").is_none());
    assert!(calls.contains(&"ratings/".to_owned()));
}
