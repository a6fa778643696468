//! Tests of the compiled route table: host lookup, rule order, implicit routes and compiled actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use sinew_model as m;

use super::*;

fn service(name: &str, namespace: &str, protocol: m::Protocol) -> m::Service {
    m::Service {
        metadata: m::Metadata {
            namespace: namespace.to_owned(),
            ..m::Metadata::named(name)
        },
        spec: m::ServiceSpec {
            protocol,
            endpoints: Vec::new(),
            subsets: Vec::new(),
            balancer: m::Balancer::default(),
            timeout: None,
            connect_timeout: m::Duration::from_secs(1),
            retries: None,
            circuit_breaker: m::CircuitBreaker::default(),
            outlier_detection: None,
            health_check: None,
        },
        location: m::Location::default(),
    }
}

fn http_service(name: &str) -> m::Service {
    service(name, m::DEFAULT_NAMESPACE, m::Protocol::Http)
}

fn route(name: &str, hosts: &[&str], rules: Vec<m::RouteRule>) -> m::Route {
    m::Route {
        metadata: m::Metadata::named(name),
        spec: m::RouteSpec {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            rules,
        },
        location: m::Location::default(),
    }
}

fn to(backends: &[(&str, Option<&str>, u32)]) -> m::RouteAction {
    m::RouteAction::Backends(
        backends
            .iter()
            .map(|(service, subset, weight)| m::Backend {
                service: (*service).to_owned(),
                subset: subset.map(str::to_owned),
                weight: *weight,
            })
            .collect(),
    )
}

fn rule(matches: Vec<m::RouteMatch>, action: m::RouteAction) -> m::RouteRule {
    m::RouteRule {
        matches,
        action,
        timeout: None,
        rewrite: None,
        headers: m::HeaderPolicy::default(),
        fault: None,
        mirror: None,
        retries: None,
    }
}

fn path_prefix(prefix: &str) -> m::RouteMatch {
    m::RouteMatch {
        path: Some(m::PathMatch::Prefix(prefix.to_owned())),
        ..m::RouteMatch::default()
    }
}

/// Builds a table; clusters are numbered in order of first request, by "service/subset".
fn build(services: &[m::Service], routes: &[m::Route]) -> (RouteTable, Vec<String>) {
    let mut clusters: Vec<String> = Vec::new();
    let mut cluster = |service: &str, subset: Option<&str>| {
        let key = format!("{service}/{}", subset.unwrap_or(""));
        let id = clusters.iter().position(|c| *c == key).unwrap_or_else(|| {
            clusters.push(key);
            clusters.len() - 1
        });
        ClusterId(u32::try_from(id).expect("few clusters"))
    };
    let table = RouteTable::from_resources(services, routes, &mut cluster);
    (table, clusters)
}

const NO_HEADERS: &[(&str, &str)] = &[];

fn get(path: &str) -> RequestView<'_> {
    RequestView {
        method: "GET",
        path,
        query: None,
        headers: &NO_HEADERS,
    }
}

fn forward(rule: &Rule) -> &Forward {
    match &rule.action {
        Action::Forward(f) => f,
        Action::Direct(d) => panic!("expected a forward, got {d:?}"),
    }
}

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<RouteTable>();
    check::<Arc<RouteTable>>();
}

#[test]
fn first_matching_rule_wins() {
    let r = route(
        "reviews",
        &["reviews"],
        vec![
            rule(
                vec![path_prefix("/api/v2")],
                to(&[("reviews", Some("v2"), 1)]),
            ),
            rule(vec![path_prefix("/api")], to(&[("reviews", Some("v1"), 1)])),
            rule(vec![path_prefix("/api/v3")], to(&[("never", None, 1)])),
            rule(vec![], to(&[("reviews", None, 1)])),
        ],
    );
    let (table, clusters) = build(&[http_service("reviews")], &[r]);
    let vhost = table.virtual_host("reviews").expect("vhost");
    let pick = |path: &str| {
        let rule = vhost.route(&get(path)).expect("a rule matches");
        (rule.index, forward(rule).pick_backend().cluster)
    };
    assert_eq!(pick("/api/v2/x"), (0, ClusterId(0)));
    assert_eq!(
        pick("/api/v3"),
        (1, ClusterId(1)),
        "an earlier rule shadows a later one"
    );
    assert_eq!(pick("/api"), (1, ClusterId(1)));
    assert_eq!(
        pick("/apix"),
        (3, ClusterId(3)),
        "prefix ends on a segment boundary"
    );
    assert_eq!(pick("/"), (3, ClusterId(3)));
    assert_eq!(clusters, ["reviews/v2", "reviews/v1", "never/", "reviews/"]);
    let rule = vhost.route(&get("/")).expect("catch-all rule");
    assert_eq!(&*rule.route_name, "reviews");
    let backend = forward(rule).pick_backend();
    assert_eq!(
        (&*backend.service, backend.subset.as_deref()),
        ("reviews", None)
    );
}

#[test]
fn match_entries_are_ored_and_fields_anded() {
    let canary = m::RouteMatch {
        path: Some(m::PathMatch::Prefix("/api".into())),
        method: Some("GET".into()),
        headers: BTreeMap::from([("x-canary".to_owned(), m::ValueMatch::Exact("1".into()))]),
        query: BTreeMap::from([("debug".to_owned(), m::ValueMatch::Present(true))]),
    };
    let admin = m::RouteMatch {
        path: Some(m::PathMatch::Exact("/admin".into())),
        ..m::RouteMatch::default()
    };
    let r = route(
        "svc",
        &["svc"],
        vec![
            rule(vec![canary, admin], to(&[("svc", Some("canary"), 1)])),
            rule(vec![], to(&[("svc", None, 1)])),
        ],
    );
    let (table, _) = build(&[], &[r]);
    let vhost = table.virtual_host("svc").expect("vhost");
    let headers: &[(&str, &str)] = &[("x-canary", "1")];
    let req = |method, path, query| RequestView {
        method,
        path,
        query,
        headers: &headers,
    };
    let index = |r: RequestView<'_>| vhost.route(&r).map(|rule| rule.index);
    assert_eq!(
        index(req("GET", "/api/a", Some("debug=1"))),
        Some(0),
        "first entry, all fields"
    );
    assert_eq!(
        index(req("POST", "/admin", None)),
        Some(0),
        "second entry alone"
    );
    assert_eq!(
        index(req("POST", "/api/a", Some("debug=1"))),
        Some(1),
        "method fails"
    );
    assert_eq!(index(req("GET", "/api/a", None)), Some(1), "query fails");
    assert_eq!(index(get("/api/a")), Some(1), "header fails");
}

#[test]
fn hosts_are_case_and_port_insensitive_and_wildcards_nest() {
    let r =
        |name: &str, hosts: &[&str]| route(name, hosts, vec![rule(vec![], to(&[(name, None, 1)]))]);
    let routes = [
        r("exact", &["api.example.com", "Other.Example.com"]),
        r("wide", &["*.example.com"]),
        r("narrow", &["*.eu.example.com"]),
        r("rest", &["*"]),
    ];
    let (table, _) = build(&[], &routes);
    let name = |authority: &str| {
        table
            .route(authority, &get("/"))
            .map(|rule| rule.route_name.to_string())
    };
    assert_eq!(name("api.example.com").as_deref(), Some("exact"));
    assert_eq!(name("API.Example.COM:8443").as_deref(), Some("exact"));
    assert_eq!(name("api.example.com.").as_deref(), Some("exact"));
    assert_eq!(name("other.example.com").as_deref(), Some("exact"));
    assert_eq!(name("web.example.com").as_deref(), Some("wide"));
    assert_eq!(name("a.b.example.com").as_deref(), Some("wide"));
    assert_eq!(name("fr.eu.example.com:80").as_deref(), Some("narrow"));
    assert_eq!(name("eu.example.com").as_deref(), Some("wide"));
    assert_eq!(
        name("example.com").as_deref(),
        Some("rest"),
        "*.x does not match x"
    );
    assert_eq!(name("elsewhere").as_deref(), Some("rest"));
    assert_eq!(table.virtual_hosts().len(), 4);

    let (no_default, _) = build(&[], &routes[..3]);
    assert!(no_default.virtual_host("example.com").is_none());
    assert!(no_default.virtual_host("unknown:80").is_none());
}

#[test]
fn unclaimed_http_services_get_implicit_routes() {
    let services = [
        http_service("reviews"),
        http_service("ratings"),
        service("db", m::DEFAULT_NAMESPACE, m::Protocol::Tcp),
        service("ratings", "shop", m::Protocol::Http),
    ];
    let claimed = route(
        "reviews-route",
        &["reviews"],
        vec![rule(vec![], to(&[("reviews", Some("v1"), 1)]))],
    );
    let (table, clusters) = build(&services, &[claimed]);
    let name = |authority: &str| {
        table
            .route(authority, &get("/x"))
            .map(|r| r.route_name.to_string())
    };

    assert_eq!(
        name("reviews").as_deref(),
        Some("reviews-route"),
        "the Route claims it"
    );
    assert_eq!(name("reviews.default").as_deref(), Some("service/reviews"));
    assert_eq!(name("ratings:9080").as_deref(), Some("service/ratings"));
    assert_eq!(name("ratings.default").as_deref(), Some("service/ratings"));
    assert_eq!(name("ratings.shop").as_deref(), Some("service/ratings"));
    assert_eq!(name("db"), None, "tcp services are not routed");
    assert_eq!(name("db.default"), None);

    let rule = table
        .route("Ratings", &get("/anything"))
        .expect("implicit rule");
    let backend = forward(rule).pick_backend();
    assert_eq!(
        (&*backend.service, backend.subset.as_deref()),
        ("ratings", None)
    );
    assert_eq!(clusters[backend.cluster.0 as usize], "ratings/");
    assert_eq!(rule.index, 0);
    assert!(rule.timeout.is_none());
    assert!(forward(rule).rewrite.is_none());
}

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
