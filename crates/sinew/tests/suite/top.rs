//! Golden metrics, black-box: sidecars report their request counters to
//! the control plane, which serves rates, success and latency per service
//! and per edge (`GET /v1/stats`) and `sinew top` prints them.

use std::time::Duration;

use http::Method;
use sinew_testkit::{assert_eventually, resource, Backend, Control, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_rates_success_and_latency_per_service_and_edge() {
    let app = Backend::http()
        .name("catalog")
        .fail("/broken", 500)
        .spawn()
        .await;
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&resource("Service", "catalog", "endpoints: []\n"))
        .await;
    let _catalog = Proxy::builder(SINEW)
        .name("catalog-1")
        .own_service("catalog")
        .app(app.addr())
        .control_plane(&control)
        .spawn()
        .await;
    let web = Proxy::builder(SINEW)
        .name("web-1")
        .own_service("web")
        .control_plane(&control)
        .spawn()
        .await;
    // web → catalog once catalog's sidecar is registered (the probe that
    // gets through is catalog's first request), then 40 good, 10 failing.
    assert_eventually!(
        web.get("catalog", "/").await.status == 200,
        Duration::from_secs(10),
        "catalog is reachable through web's sidecar"
    );
    for i in 0..50 {
        let path = if i % 5 == 4 { "/broken" } else { "/" };
        web.get("catalog", path).await;
    }
    // Reports come every 2 s.
    let stats = || async {
        control
            .call(Method::GET, "/v1/stats?window=60s", None)
            .await
            .json()
    };
    let reported = |s: &serde_json::Value| {
        let catalog = s["services"].as_array().is_some_and(|a| {
            a.iter()
                .any(|s| s["service"] == "catalog" && s["requests"] == 51)
        });
        let edge = s["edges"].as_array().is_some_and(|a| {
            a.iter().any(|e| {
                e["from"] == "web"
                    && e["to"] == "catalog"
                    && e["by_class"]["5xx"].as_u64() >= Some(10)
            })
        });
        catalog && edge
    };
    assert_eventually!(
        reported(&stats().await),
        Duration::from_secs(10),
        "catalog's 51 requests and web's edge reported: {}",
        stats().await
    );
    let s = stats().await;
    let catalog = s["services"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["service"] == "catalog"))
        .cloned()
        .expect("catalog");
    assert_eq!(catalog["instances"], 1);
    assert_eq!(catalog["success_rate"], 0.8039, "{s}"); // 41 of 51
    assert_eq!(catalog["by_class"]["5xx"], 10);
    assert!(catalog["rps"].as_f64().is_some_and(|r| r > 0.0), "{s}");
    assert!(catalog["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{s}");
    let edge = s["edges"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|e| e["from"] == "web" && e["to"] == "catalog")
        })
        .cloned()
        .expect("the web → catalog edge");
    // The edge counts what web's sidecar answered its app: the 51 that
    // reached catalog, and any probe refused before catalog registered.
    assert!(edge["requests"].as_u64() >= Some(51), "{s}");
    assert_eq!(edge["by_class"]["2xx"], 41, "{s}");

    // A bad window is refused clearly.
    let r = control.call(Method::GET, "/v1/stats?window=1h", None).await;
    assert_eq!(r.status, 400, "{}", r.text());

    // The terminal table.
    let out = tokio::process::Command::new(SINEW)
        .args(["top", "--once", "--window", "60s"])
        .env("SINEW_SERVER", format!("http://{}", control.http()))
        .env("SINEW_TOKEN", control.token())
        .env_remove("SINEW_TOKEN_FILE")
        .output()
        .await
        .expect("run sinew top");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let catalog_line = text
        .lines()
        .find(|l| l.starts_with("default") && l.contains("catalog") && !l.contains("web"))
        .unwrap_or_else(|| panic!("a catalog row:\n{text}"));
    assert!(catalog_line.contains("80.4%"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("web") && l.contains("catalog")),
        "a web → catalog row:\n{text}"
    );

    // A second catalog instance that fails everything: web's outlier
    // detection ejects it, and the control plane says so.
    let broken = Backend::http().name("broken").fail("/", 503).spawn().await;
    control
        .apply(&resource(
            "Service",
            "catalog",
            "endpoints: []\nbalancer: {algorithm: round-robin}\noutlier_detection: {consecutive_errors: 2, interval: 10s, base_ejection: 60s, max_ejection_percent: 50}\n",
        ))
        .await;
    let broken_sidecar = Proxy::builder(SINEW)
        .name("catalog-2")
        .own_service("catalog")
        .app(broken.addr())
        .control_plane(&control)
        .spawn()
        .await;
    let registered = || async {
        control
            .proxies()
            .await
            .iter()
            .find(|p| p["name"] == "catalog-2")
            .and_then(|p| p["address"].as_str().map(str::to_owned))
            .filter(|a| !a.is_empty())
    };
    assert_eventually!(
        registered().await.is_some(),
        Duration::from_secs(5),
        "catalog-2 registers its address"
    );
    let ejected_address = registered().await.expect("registered");
    assert_eventually!(
        {
            for _ in 0..10 {
                web.get("catalog", "/").await;
            }
            stats().await["services"].as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["service"] == "catalog"
                        && s["ejections"][0]["address"] == ejected_address.as_str()
                        && s["ejections"][0]["by"][0] == "default/web-1"
                })
            })
        },
        Duration::from_secs(15),
        "catalog-2 ({ejected_address}) reported ejected by web-1: {}",
        stats().await
    );
    drop(broken_sidecar);
}
