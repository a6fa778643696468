//! Route table lookup: rule order, OR/AND matching, host names and wildcards, implicit service routes.

use std::collections::BTreeMap;
use std::sync::Arc;

use sinew_model as m;

use super::*;

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
