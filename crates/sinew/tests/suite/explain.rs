//! `sinew explain`, black-box: a real sidecar explains how it routes a
//! request — a header-matched rule (and why the earlier rule did not
//! match), a weighted split, a request the callee's AuthorizationPolicy
//! denies for this caller's identity, and an ejected endpoint — through the
//! CLI, found by service through the control plane (`--from`) or by its api
//! address (`--api`).

use std::time::Duration;

use sinew_testkit::{assert_eventually, resource, Backend, Control, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// Runs `sinew ARGS` (against `control` when given); returns stdout, or
/// panics with stderr.
async fn sinew(control: Option<&Control>, args: &[&str]) -> String {
    let mut cmd = tokio::process::Command::new(SINEW);
    cmd.args(args).env_remove("SINEW_TOKEN_FILE");
    if let Some(control) = control {
        cmd.env("SINEW_SERVER", format!("http://{}", control.http()))
            .env("SINEW_TOKEN", control.token());
    }
    let output = cmd.output().await.expect("run sinew");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "sinew {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn explain_json(control: Option<&Control>, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["explain", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&sinew(control, &all).await).expect("explain --json prints JSON")
}

const CATALOG_ROUTE: &str = "hosts: [catalog]
rules:
  - match: [{headers: {x-canary: {exact: \"1\"}}}]
    backends: [{service: catalog, subset: v2}]
  - backends:
      - {service: catalog, subset: v1, weight: 90}
      - {service: catalog, subset: v2, weight: 10}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_matched_rule_the_split_and_the_callees_authorization() {
    let v1 = Backend::http().name("v1").spawn().await;
    let v2 = Backend::http().name("v2").spawn().await;
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&format!(
            "{}{}{}",
            resource(
                "Service",
                "catalog",
                &format!(
                    "endpoints:\n  - {{address: \"{}\", labels: {{version: v1}}}}\n  - {{address: \"{}\", labels: {{version: v2}}}}\nsubsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n",
                    v1.addr(),
                    v2.addr()
                ),
            ),
            resource("Route", "catalog", CATALOG_ROUTE),
            resource(
                "AuthorizationPolicy",
                "catalog-readers",
                "target: catalog\naction: allow\nrules:\n  - from: {identities: [\"spiffe://sinew.local/ns/default/svc/ads\"]}\n",
            ),
        ))
        .await;
    let web = Proxy::builder(SINEW)
        .name("web-1")
        .own_service("web")
        .control_plane(&control)
        .spawn()
        .await;
    // The sidecar told the control plane where its api is.
    assert_eventually!(
        control
            .proxies()
            .await
            .iter()
            .any(|p| p["name"] == "web-1" && p["api"] == web.api().to_string()),
        Duration::from_secs(5),
        "web-1's api address in /v1/proxies: {:?}",
        control.proxies().await
    );
    // Its certificate is issued (explain reports the identity it calls with).
    assert_eventually!(
        explain_json(Some(&control), &["--from", "web", "http://catalog/items"]).await["identity"]
            == "spiffe://sinew.local/ns/default/svc/web",
        Duration::from_secs(10),
        "web-1 holds its certificate"
    );

    // No header: rule 0 is skipped and says why; rule 1 splits 90/10.
    let a = explain_json(
        Some(&control),
        &["--from", "web", "http://catalog/items?id=3"],
    )
    .await;
    let rules = a["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), 2, "{a}");
    assert_eq!(rules[0]["matched"], false);
    assert_eq!(
        rules[0]["why_not"][0], "header x-canary is absent, wants \"1\"",
        "{a}"
    );
    assert_eq!(rules[1]["matched"], true);
    let backends = a["backends"].as_array().expect("backends");
    let split: Vec<(String, f64)> = backends
        .iter()
        .map(|b| {
            (
                b["subset"].as_str().unwrap_or_default().to_owned(),
                b["share_percent"].as_f64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(split, [("v1".to_owned(), 90.0), ("v2".to_owned(), 10.0)]);
    // The callee allows only ads: web is denied by default-deny.
    assert_eq!(backends[0]["authorization"]["allowed"], false, "{a}");
    assert_eq!(backends[0]["authorization"]["policy"], "default-deny");
    // Each backend's endpoints, and the balancer's pick.
    assert_eq!(
        backends[0]["cluster"]["picks"],
        v1.addr().to_string(),
        "{a}"
    );

    // The header picks rule 0: v2 alone.
    let a = explain_json(
        Some(&control),
        &["--from", "web", "http://catalog/items", "-H", "x-canary: 1"],
    )
    .await;
    assert_eq!(a["rules"].as_array().map(Vec::len), Some(1), "{a}");
    assert_eq!(a["rules"][0]["matched"], true);
    assert_eq!(a["rules_not_reached"], 1);
    assert_eq!(a["backends"][0]["subset"], "v2");
    assert_eq!(a["backends"][0]["share_percent"], 100.0);

    // Allowing web changes the verdict at once.
    control
        .apply(&resource(
            "AuthorizationPolicy",
            "catalog-readers",
            "target: catalog\naction: allow\nrules:\n  - from: {identities: [\"spiffe://sinew.local/ns/default/svc/web\"]}\n",
        ))
        .await;
    assert_eventually!(
        explain_json(Some(&control), &["--from", "web", "http://catalog/"]).await["backends"][0]
            ["authorization"]["policy"]
            == "default/catalog-readers",
        Duration::from_secs(5),
        "the new policy reaches web-1"
    );

    // The text form says the same for a person.
    let text = sinew(
        Some(&control),
        &["explain", "--from", "web", "http://catalog/items"],
    )
    .await;
    assert!(
        text.contains("✗ catalog rule 0: header x-canary is absent"),
        "{text}"
    );
    assert!(text.contains("✓ catalog rule 1: matches"), "{text}");
    assert!(
        text.contains("backend catalog subset v1: weight 90 (90% of requests)"),
        "{text}"
    );
    assert!(
        text.contains("allowed by default/catalog-readers"),
        "{text}"
    );
    assert!(text.contains("the balancer picks this one now"), "{text}");

    // A service nobody runs: a clear error.
    let out = tokio::process::Command::new(SINEW)
        .args(["explain", "--from", "nobody", "http://catalog/"])
        .env("SINEW_SERVER", format!("http://{}", control.http()))
        .env("SINEW_TOKEN", control.token())
        .env_remove("SINEW_TOKEN_FILE")
        .output()
        .await
        .expect("run sinew");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no proxy of service `nobody`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_an_ejected_endpoint_and_picks_around_it() {
    let good = Backend::http().name("good").spawn().await;
    let bad = Backend::http().name("bad").fail("/", 503).spawn().await;
    let spec = "balancer: {algorithm: round-robin}\noutlier_detection: {consecutive_errors: 2, interval: 10s, base_ejection: 60s, max_ejection_percent: 50}";
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&good, &bad], spec)
        .spawn()
        .await;
    let api = proxy.api().to_string();
    // Before: both usable.
    let a = explain_json(None, &["--api", &api, "http://be/"]).await;
    let endpoints = a["backends"][0]["cluster"]["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(endpoints.len(), 2, "{a}");
    assert!(endpoints.iter().all(|e| e["ejected"] == false), "{a}");
    // Traffic finds the bad one failing: it is ejected.
    for _ in 0..10 {
        proxy.get("be", "/").await;
    }
    let a = explain_json(None, &["--api", &api, "http://be/"]).await;
    let cluster = &a["backends"][0]["cluster"];
    let ejected: Vec<&str> = cluster["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["ejected"] == true)
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert_eq!(ejected, [bad.addr().to_string()], "{a}");
    assert_eq!(cluster["usable"], 1);
    // The balancer goes around it, every time.
    for _ in 0..4 {
        let a = explain_json(None, &["--api", &api, "http://be/"]).await;
        assert_eq!(
            a["backends"][0]["cluster"]["picks"],
            good.addr().to_string(),
            "{a}"
        );
    }
    let text = sinew(None, &["explain", "--api", &api, "http://be/"]).await;
    assert!(
        text.contains(&format!("{}  ejected (outlier detection)", bad.addr())),
        "{text}"
    );
    // An unknown host: no route, said plainly.
    let a = explain_json(None, &["--api", &api, "http://nowhere/"]).await;
    assert!(
        a["verdict"]
            .as_str()
            .is_some_and(|v| v.starts_with("404: no Route or Service answers host")),
        "{a}"
    );
}
