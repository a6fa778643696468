//! Benchmarks of the routing hot path: path normalization and host + rule lookup.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use sinew_model as m;
use sinew_proxy::route::{normalize_path, ClusterId, RequestView, RouteTable};

fn bench_normalize(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize_path");
    for (name, path) in [
        ("clean_short", "/"),
        ("clean", "/api/v1/users/12345/orders"),
        ("clean_escaped", "/search/caf%C3%A9/%3Ainfo"),
        ("dirty_dots", "/api/./v1/../v1/users//12345/orders/"),
        ("dirty_escapes", "/%61pi/v1/%75sers/%2e%2e/users/12345"),
    ] {
        group.bench_function(name, |b| b.iter(|| normalize_path(black_box(path))));
    }
    group.finish();
}

/// 100 hosts, each a Route of 5 rules; the last rule matches everything.
fn table() -> RouteTable {
    let routes: Vec<m::Route> = (0..100)
        .map(|i| {
            let name = format!("svc-{i}");
            let rule = |matches: Vec<m::RouteMatch>, subset: &str| m::RouteRule {
                matches,
                action: m::RouteAction::Backends(vec![
                    m::Backend {
                        service: name.clone(),
                        subset: Some(subset.to_owned()),
                        weight: 90,
                        failover: Vec::new(),
                    },
                    m::Backend {
                        service: name.clone(),
                        subset: Some("canary".to_owned()),
                        weight: 10,
                        failover: Vec::new(),
                    },
                ]),
                timeout: None,
                rewrite: None,
                headers: m::HeaderPolicy::default(),
                fault: None,
                mirror: None,
                retries: None,
                fallback: None,
                rate_limit: None,
            };
            let path = |p: &str| m::RouteMatch {
                path: Some(m::PathMatch::Prefix(p.to_owned())),
                ..m::RouteMatch::default()
            };
            let header = m::RouteMatch {
                headers: BTreeMap::from([(
                    "x-canary".to_owned(),
                    m::ValueMatch::Exact("1".to_owned()),
                )]),
                ..m::RouteMatch::default()
            };
            let post = m::RouteMatch {
                path: Some(m::PathMatch::Prefix("/orders".to_owned())),
                method: Some("POST".to_owned()),
                ..m::RouteMatch::default()
            };
            m::Route {
                metadata: m::Metadata::named(&name),
                spec: m::RouteSpec {
                    hosts: vec![name.clone(), format!("{name}.example.com")],
                    rules: vec![
                        rule(vec![header], "canary"),
                        rule(vec![path("/admin")], "admin"),
                        rule(vec![post], "writer"),
                        rule(vec![path("/api/v2"), path("/v2")], "v2"),
                        rule(vec![], "v1"),
                    ],
                    jwt: None,
                },
                location: m::Location::default(),
            }
        })
        .collect();
    let mut next = 0;
    let mut cluster = |_: &str, _: Option<&str>| {
        next += 1;
        ClusterId(next)
    };
    RouteTable::from_resources(std::iter::empty(), &routes, &mut cluster)
}

fn bench_route(c: &mut Criterion) {
    let table = table();
    let headers = http::HeaderMap::new();
    let mut group = c.benchmark_group("route");
    for (name, authority, path) in [
        ("first_rule_miss_to_last", "svc-57", "/api/v1/users"),
        ("fourth_rule", "svc-57.example.com:8080", "/api/v2/users"),
        ("uppercase_host", "SVC-57", "/api/v1/users"),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let req = RequestView {
                    method: "GET",
                    path: black_box(path),
                    query: None,
                    headers: &headers,
                };
                let vhost = table.virtual_host(black_box(authority));
                vhost.and_then(|v| v.route(&req)).map(|r| r.index)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_normalize, bench_route);
criterion_main!(benches);
