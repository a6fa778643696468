//! Outbound routing, black-box: hosts, absolute-form, match rules, actions, splits, subsets and path normalization.

use sinew_testkit::{raw_exchange, resource, Backend, Load, Proxy, Request};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test]
async fn host_header_selects_the_service_of_that_name() {
    let a = Backend::http().name("a").spawn().await;
    let b = Backend::http().name("b").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("svc-a", &[&a])
        .service("svc-b", &[&b])
        .spawn()
        .await;

    assert_eq!(proxy.get("svc-a", "/").await.text(), "a");
    assert_eq!(proxy.get("svc-b", "/x").await.text(), "b");
    let with_port = proxy.get("svc-b:4140", "/").await;
    assert_eq!(with_port.backend(), Some("b"), "port in Host is ignored");
    assert_eq!(b.last_request().map(|r| r.path), Some("/".to_owned()));
}

#[tokio::test]
async fn absolute_form_request_target_routes_like_http_proxy() {
    let a = Backend::http().name("a").spawn().await;
    let b = Backend::http().name("b").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("svc-a", &[&a])
        .service("svc-b", &[&b])
        .spawn()
        .await;

    let resp = proxy.send(Request::get("http://svc-b/items?id=7")).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "b");
    assert_eq!(resp.header("x-path"), Some("/items"));
    assert_eq!(resp.header("x-query"), Some("id=7"));
    assert_eq!(a.requests(), 0);
}

#[tokio::test]
async fn unknown_host_gets_a_proxy_generated_404_and_reaches_no_backend() {
    let a = Backend::http().name("a").spawn().await;
    let proxy = Proxy::builder(SINEW).service("svc-a", &[&a]).spawn().await;

    let by_host = proxy.get("nowhere", "/").await;
    assert_eq!(by_host.status, 404);
    assert!(
        by_host.header("x-sinew-error").is_some(),
        "{:?}",
        by_host.headers
    );

    let absolute = proxy
        .send(Request::get("http://nowhere.example/secret").host("nowhere.example"))
        .await;
    assert_eq!(absolute.status, 404);
    assert!(absolute.header("x-sinew-error").is_some());

    // Absolute-form naming an unknown host while Host names a known one: the
    // request-target wins (RFC 9112 §3.2.2), so it must not be forwarded.
    let smuggle = raw_exchange(
        proxy.outbound(),
        b"GET http://nowhere.example/secret HTTP/1.1\r\nHost: svc-a\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("raw response");
    assert_eq!(smuggle.status, 404, "{}", smuggle.text());
    assert_eq!(a.requests(), 0, "unknown hosts never reach a backend");
}

fn match_rules() -> String {
    resource(
        "Route",
        "shop",
        r#"
        hosts: [shop]
        rules:
          - match: [{headers: {x-canary: {exact: "1"}}}]
            backends: [{service: canary}]
          - match: [{query: {debug: {present: true}}}]
            backends: [{service: debug}]
          - match: [{method: POST}]
            backends: [{service: writes}]
          - match: [{path: {exact: /exact}}]
            backends: [{service: exact}]
          - match: [{path: {regex: "^/items/[0-9]+$"}}]
            backends: [{service: items}]
          - match: [{path: {prefix: /api}}]
            backends: [{service: api}]
          - backends: [{service: main}]
        "#,
    )
}

#[tokio::test]
async fn match_rules_select_by_header_query_method_and_path_in_order() {
    let names = ["canary", "debug", "writes", "exact", "items", "api", "main"];
    let mut backends = Vec::new();
    for name in names {
        backends.push(Backend::http().name(name).spawn().await);
    }
    let mut builder = Proxy::builder(SINEW);
    for backend in &backends {
        builder = builder.service(backend.name(), &[backend]);
    }
    let proxy = builder.route_yaml(&match_rules()).spawn().await;

    let cases: Vec<(Request, &str)> = vec![
        (Request::get("/api/x").header("x-canary", "1"), "canary"),
        (Request::get("/api/x").header("x-canary", "2"), "api"),
        (Request::get("/exact?debug"), "debug"),
        (Request::get("/exact?debug=1&x=2"), "debug"),
        (Request::post("/exact", "body"), "writes"),
        (Request::get("/exact"), "exact"),
        (Request::get("/exact/more"), "main"),
        (Request::get("/items/42"), "items"),
        (Request::get("/items/4x2"), "main"),
        (Request::get("/api"), "api"),
        (Request::get("/api/v1/users"), "api"),
        (Request::get("/apix"), "main"),
        (Request::get("/"), "main"),
    ];
    for (req, want) in cases {
        let described = format!("{req:?}");
        let resp = proxy.send(req.host("shop")).await;
        assert_eq!(resp.status, 200, "{described}");
        assert_eq!(resp.backend(), Some(want), "{described}");
    }
}

#[tokio::test]
async fn direct_response_is_answered_by_the_proxy() {
    let web = Backend::http().name("web").spawn().await;
    let route = resource(
        "Route",
        "web",
        r#"
        hosts: [web]
        rules:
          - match: [{path: {prefix: /internal}}]
            direct_response: {status: 403, body: "forbidden"}
          - backends: [{service: web}]
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .route_yaml(&route)
        .spawn()
        .await;

    let denied = proxy.get("web", "/internal/keys").await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.text(), "forbidden");
    assert_eq!(proxy.get("web", "/public").await.text(), "web");
    assert_eq!(web.requests_to("/internal/keys"), 0);
    assert_eq!(web.requests(), 1);
}

#[tokio::test]
async fn prefix_rewrite_replaces_the_matched_prefix() {
    let web = Backend::http().name("web").spawn().await;
    let route = resource(
        "Route",
        "web",
        r#"
        hosts: [web]
        rules:
          - match: [{path: {prefix: /api/v1}}]
            backends: [{service: web}]
            rewrite: {prefix: /v2}
          - match: [{path: {prefix: /strip}}]
            backends: [{service: web}]
            rewrite: {prefix: /}
          - backends: [{service: web}]
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .route_yaml(&route)
        .spawn()
        .await;

    let resp = proxy.get("web", "/api/v1/users?page=2").await;
    assert_eq!(resp.header("x-path"), Some("/v2/users"));
    assert_eq!(resp.header("x-query"), Some("page=2"));
    let resp = proxy.get("web", "/strip/a/b").await;
    assert_eq!(resp.header("x-path"), Some("/a/b"));
    let resp = proxy.get("web", "/other").await;
    assert_eq!(resp.header("x-path"), Some("/other"));
}

#[tokio::test]
async fn request_and_response_headers_are_set_and_removed() {
    let web = Backend::http()
        .name("web")
        .response_header("x-internal", "leak")
        .response_header("x-server", "backend")
        .spawn()
        .await;
    let route = resource(
        "Route",
        "web",
        r#"
        hosts: [web]
        rules:
          - backends: [{service: web}]
            headers:
              request: {set: {x-added: "yes", x-replaced: "new"}, remove: [x-secret]}
              response: {set: {x-server: "sinew"}, remove: [x-internal]}
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .route_yaml(&route)
        .spawn()
        .await;

    let resp = proxy
        .send(
            Request::get("/")
                .host("web")
                .header("x-secret", "token")
                .header("x-replaced", "old")
                .header("x-kept", "k"),
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-req-x-added"), Some("yes"));
    assert_eq!(resp.header("x-req-x-replaced"), Some("new"));
    assert_eq!(resp.header("x-req-x-kept"), Some("k"));
    assert_eq!(
        resp.header("x-req-x-secret"),
        None,
        "request header removed"
    );
    assert_eq!(resp.header("x-internal"), None, "response header removed");
    let servers: Vec<_> = resp.headers.get_all("x-server").iter().collect();
    assert_eq!(servers, ["sinew"], "response header replaced");
}

#[tokio::test]
async fn weighted_split_90_10_holds_within_3_percent_over_2000_requests() {
    let stable = Backend::http().name("stable").spawn().await;
    let canary = Backend::http().name("canary").spawn().await;
    let route = resource(
        "Route",
        "shop",
        r#"
        hosts: [shop]
        rules:
          - backends: [{service: stable, weight: 90}, {service: canary, weight: 10}]
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service("stable", &[&stable])
        .service("canary", &[&canary])
        .route_yaml(&route)
        .spawn()
        .await;

    let report = Load::new(proxy.outbound(), "shop", "/")
        .concurrency(8)
        .requests(2000)
        .run()
        .await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.ok, 2000);
    let share = report.share("stable");
    assert!(
        (0.87..=0.93).contains(&share),
        "stable share {share}: {report:?}"
    );
    let share = report.share("canary");
    assert!(
        (0.07..=0.13).contains(&share),
        "canary share {share}: {report:?}"
    );
}

#[tokio::test]
async fn subsets_select_endpoints_by_labels() {
    let v1 = Backend::http()
        .name("v1")
        .label("version", "v1")
        .spawn()
        .await;
    let v2 = Backend::http()
        .name("v2")
        .label("version", "v2")
        .spawn()
        .await;
    let route = resource(
        "Route",
        "reviews",
        r#"
        hosts: [reviews]
        rules:
          - match: [{headers: {x-version: {exact: v2}}}]
            backends: [{service: reviews, subset: v2}]
          - backends: [{service: reviews, subset: v1}]
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "reviews",
            &[&v1, &v2],
            "subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]",
        )
        .route_yaml(&route)
        .spawn()
        .await;

    for _ in 0..20 {
        assert_eq!(proxy.get("reviews", "/").await.text(), "v1");
        let resp = proxy
            .send(Request::get("/").host("reviews").header("x-version", "v2"))
            .await;
        assert_eq!(resp.text(), "v2");
    }
    assert_eq!((v1.requests(), v2.requests()), (20, 20));
}

#[tokio::test]
async fn path_normalization_defeats_bypass_spellings_and_rejects_ambiguous_ones() {
    let web = Backend::http().name("web").spawn().await;
    let route = resource(
        "Route",
        "web",
        r#"
        hosts: [web]
        rules:
          - match: [{path: {prefix: /admin}}]
            direct_response: {status: 403, body: "admin is closed"}
          - backends: [{service: web}]
        "#,
    );
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .route_yaml(&route)
        .spawn()
        .await;

    let exchange = |target: &str| {
        let request =
            format!("GET {target} HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n").into_bytes();
        let addr = proxy.outbound();
        async move { raw_exchange(addr, &request).await.expect("raw response") }
    };
    let bypasses = [
        "/admin",
        "//admin",
        "/./admin",
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/%61dmin/users",
        "/x/..//admin/",
    ];
    for target in bypasses {
        let resp = exchange(target).await;
        assert_eq!(resp.status, 403, "{target} must hit the /admin rule");
        assert_eq!(resp.text(), "admin is closed", "{target}");
    }
    for target in ["/admin%00.png", "/public%2F..%2Fadmin", "/files/a%2fb"] {
        let resp = exchange(target).await;
        assert_eq!(
            resp.status, 400,
            "{target} is ambiguous and must be refused"
        );
    }
    assert_eq!(web.requests(), 0, "no spelling reached the backend");
    assert_eq!(exchange("/public/./page").await.status, 200);
    assert_eq!(web.requests(), 1);
}
