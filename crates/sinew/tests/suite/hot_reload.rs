//! Hot reload, black-box: config rewrites under load, refused bad files, SIGHUP.

use std::time::Duration;

use sinew_testkit::{assert_eventually, resource, Backend, Load, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
const RELOAD_WITHIN: Duration = Duration::from_secs(3);

fn route_to(service: &str) -> String {
    resource(
        "Route",
        "shop",
        &format!(
            r#"
            hosts: [shop]
            rules:
              - backends: [{{service: {service}}}]
            "#
        ),
    )
}

async fn two_backends_proxy(a: &Backend, b: &Backend) -> Proxy {
    Proxy::builder(SINEW)
        .service("svc-a", &[a])
        .service("svc-b", &[b])
        .route_yaml(&route_to("svc-a"))
        .spawn()
        .await
}

#[tokio::test]
async fn twenty_reloads_under_load_drop_no_request_and_take_effect() {
    let a = Backend::http().name("a").spawn().await;
    let b = Backend::http().name("b").spawn().await;
    let mut proxy = two_backends_proxy(&a, &b).await;
    let start_version = proxy.config_version().await;
    assert_eq!(proxy.get("shop", "/").await.text(), "a");

    let load = Load::new(proxy.outbound(), "shop", "/load")
        .concurrency(4)
        .duration(Duration::from_secs(60))
        .spawn();
    for i in 1..=20u64 {
        let target = if i % 2 == 1 { "svc-b" } else { "svc-a" };
        let want = if i % 2 == 1 { "b" } else { "a" };
        proxy.rewrite_routes(&route_to(target));
        assert_eventually!(
            proxy.config_version().await == start_version + i,
            RELOAD_WITHIN,
            "reload {i} applied (version {} → {}):\n{}",
            start_version + i - 1,
            proxy.config_version().await,
            proxy.stderr_tail()
        );
        assert_eq!(
            proxy.get("shop", "/check").await.text(),
            want,
            "after reload {i}"
        );
    }
    let sent_during_reloads = load.sent();
    let report = load.finish().await;

    assert_eq!(report.failed, 0, "{report:?}\n{}", proxy.stderr_tail());
    assert!(sent_during_reloads > 0 && report.ok > 0, "{report:?}");
    assert!(
        report.from_backend("a") > 0 && report.from_backend("b") > 0,
        "load saw both targets: {report:?}"
    );
}

#[tokio::test]
async fn a_bad_file_is_refused_and_the_old_config_keeps_serving() {
    let a = Backend::http().name("a").spawn().await;
    let b = Backend::http().name("b").spawn().await;
    let mut proxy = two_backends_proxy(&a, &b).await;
    let version = proxy.config_version().await;
    let good = proxy.rendered_config().to_owned();
    let stderr_before = proxy.stderr().len();

    // A Route pointing at a service that does not exist: parses, fails validation.
    let invalid = format!(
        "{good}{}",
        route_to("missing").replace("name: shop", "name: other")
    );
    proxy.write_config(&invalid);
    let file = proxy.config_path().display().to_string();
    assert_eventually!(
        proxy
            .stderr()
            .get(stderr_before..)
            .is_some_and(|s| s.contains(&file)),
        RELOAD_WITHIN,
        "the refusal is logged naming {file}:\n{}",
        proxy.stderr_tail()
    );
    assert_eq!(
        proxy.config_version().await,
        version,
        "bad config not applied"
    );
    assert_eq!(
        proxy.get("shop", "/").await.text(),
        "a",
        "old config serves"
    );
    assert!(proxy.process_mut().try_exit().is_none(), "still running");

    let stderr_before = proxy.stderr().len();
    proxy.write_config("kind: [this is not yaml\n  - : :\n");
    assert_eventually!(
        proxy
            .stderr()
            .get(stderr_before..)
            .is_some_and(|s| s.contains(&file)),
        RELOAD_WITHIN,
        "the syntax error is logged naming {file}:\n{}",
        proxy.stderr_tail()
    );
    assert_eq!(proxy.config_version().await, version);
    assert_eq!(proxy.get("shop", "/").await.text(), "a");

    proxy.rewrite_routes(&route_to("svc-b"));
    assert_eventually!(proxy.config_version().await == version + 1, RELOAD_WITHIN);
    assert_eq!(
        proxy.get("shop", "/").await.text(),
        "b",
        "a good file applies again"
    );
}

#[tokio::test]
async fn sighup_reloads_the_config_file() {
    let a = Backend::http().name("a").spawn().await;
    let b = Backend::http().name("b").spawn().await;
    let mut proxy = two_backends_proxy(&a, &b).await;
    let version = proxy.config_version().await;

    // A SIGHUP with nothing changed must not kill the process (the default action).
    proxy.process().sighup().expect("send SIGHUP");
    assert_eq!(proxy.get("shop", "/").await.text(), "a");
    assert!(proxy.process_mut().try_exit().is_none(), "survives SIGHUP");
    let unchanged = proxy.config_version().await;
    assert!(
        unchanged == version || unchanged == version + 1,
        "{version} → {unchanged}"
    );

    proxy.rewrite_routes(&route_to("svc-b"));
    proxy.process().sighup().expect("send SIGHUP");
    assert_eventually!(
        proxy.get("shop", "/").await.text() == "b",
        RELOAD_WITHIN,
        "SIGHUP applied the new route:\n{}",
        proxy.stderr_tail()
    );
    assert!(proxy.config_version().await > unchanged);
}
