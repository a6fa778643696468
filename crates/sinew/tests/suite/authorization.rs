//! AuthorizationPolicy on the inbound listener, black-box: deny first, then
//! allow, default deny once an allow policy exists; decisions on the
//! normalized path, so bypass spellings of a denied path are denied too; a
//! refused request never reaches the application.

use http::StatusCode;
use sinew_testkit::{Backend, HttpClient, Proxy, Request};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

const POLICIES: &str = r#"
---
apiVersion: sinew.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: no-admin}
spec:
  target: reviews
  action: deny
  rules:
    - to: {paths: ["/admin/*"]}
---
apiVersion: sinew.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: readers}
spec:
  target: reviews
  action: allow
  rules:
    - to: {methods: [GET], paths: ["/reviews/*", "/api/*/status"]}
    - to: {methods: [GET, POST], paths: ["/admin/*"]}
---
apiVersion: sinew.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: mesh-only}
spec:
  target: reviews
  action: allow
  rules:
    - from: {identities: ["*"]}
      to: {paths: ["/internal/*"]}
"#;

async fn inbound(proxy: &Proxy, method: &str, target: &str) -> (StatusCode, Option<String>) {
    let mut c = HttpClient::http1(proxy.inbound())
        .await
        .expect("inbound listener");
    let req = Request::new(method.parse().expect("method"), target).host("reviews");
    let r = c.send(req).await.expect("an answer");
    (r.status, r.header("x-sinew-error").map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_then_allow_then_default_deny_on_the_normalized_path() {
    let app = Backend::http().name("reviews-app").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .own_service("reviews")
        .app(app.addr())
        .route_yaml(POLICIES)
        .spawn()
        .await;

    // Allowed by `readers`.
    assert_eq!(inbound(&proxy, "GET", "/reviews/1").await.0, StatusCode::OK);
    assert_eq!(
        inbound(&proxy, "GET", "/api/v2/status").await.0,
        StatusCode::OK
    );
    let seen = app.requests();
    assert_eq!(seen, 2);

    // Default deny: allow policies exist and none matches.
    for (method, target) in [
        ("POST", "/reviews/1"),
        ("GET", "/other"),
        ("GET", "/api/v2/x/status"),
        // `*` in `from.identities` means an authenticated peer; plaintext has none.
        ("GET", "/internal/x"),
    ] {
        assert_eq!(
            inbound(&proxy, method, target).await,
            (StatusCode::FORBIDDEN, Some("forbidden".to_owned())),
            "{method} {target}"
        );
    }

    // Deny wins over an allow rule that matches, in every spelling.
    for target in [
        "/admin/x",
        "//admin/x",
        "/./admin/x",
        "/a/../admin/x",
        "/reviews/../admin/x",
        "/%61dmin/x",
        "/%2e/admin/x",
        "/admin//x",
        "/ADMIN/../admin/x",
    ] {
        let (status, reason) = inbound(&proxy, "GET", target).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {target}");
        assert_eq!(reason.as_deref(), Some("forbidden"), "GET {target}");
    }
    // Spellings that cannot be normalized unambiguously are refused before any policy.
    for target in ["/%2fadmin/x", "/admin%2Fx", "/admin/%00"] {
        assert_eq!(
            inbound(&proxy, "GET", target).await.0,
            StatusCode::BAD_REQUEST,
            "{target}"
        );
    }
    assert_eq!(
        app.requests(),
        seen,
        "no refused request reached the application"
    );

    let metrics = proxy.metrics().await;
    assert!(
        metrics.contains(
            "sinew_authz_denied_total{service=\"reviews\",policy=\"default/no-admin\"} 9\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("sinew_authz_denied_total{service=\"reviews\",policy=\"default-deny\"} 4\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sinew_proxy_errors_total{kind=\"forbidden\"} 13\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_policies_everything_passes_and_outbound_is_not_authorized_here() {
    let app = Backend::http().name("reviews-app").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .own_service("reviews")
        .app(app.addr())
        .service("reviews", &[&app])
        .spawn()
        .await;
    assert_eq!(inbound(&proxy, "GET", "/admin/x").await.0, StatusCode::OK);
    // Outbound calls are the callee's sidecar's to authorize.
    let r = proxy.send(Request::get("/admin/x").host("reviews")).await;
    assert_eq!(r.status, StatusCode::OK);
}
