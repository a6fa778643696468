//! `sinew up` end to end: the demo mesh gets ready, web answers with catalog's
//! and inventory's answers through the sidecars, and Ctrl-C stops everything.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sinew_testkit::{HttpClient, Process};

/// Waits until `up` printed the ready banner, returning its stdout.
async fn banner(up: &mut Process) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = up.stdout();
        if out.contains("the demo mesh is ready") && out.contains("Ctrl-C") {
            return out;
        }
        if let Some(status) = up.try_exit() {
            panic!(
                "sinew up exited ({status}) before it was ready\nstdout:\n{out}\nstderr:\n{}",
                up.stderr()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no ready banner within 60 s\nstdout:\n{out}\nstderr:\n{}",
            up.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The address in the banner's `web:   http://ADDR/` line.
fn web_addr(banner: &str) -> SocketAddr {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("web:"))
        .unwrap_or_else(|| panic!("no web line in:\n{banner}"));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|e| panic!("bad address in {url:?}: {e}"))
}

/// The work directory named in the banner's `logs:` line (its parent).
fn control_addr(banner: &str) -> SocketAddr {
    let line = banner
        .lines()
        .find(|l| l.contains("control plane: http://"))
        .unwrap_or_else(|| panic!("no control plane line in:\n{banner}"));
    let rest = &line[line.find("http://").expect("url") + 7..];
    rest[..rest.find('/').expect("path")]
        .parse()
        .expect("control plane address")
}

fn work_dir(banner: &str) -> PathBuf {
    let line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("logs:"))
        .unwrap_or_else(|| panic!("no logs line in:\n{banner}"));
    let logs = PathBuf::from(line.trim_start().trim_start_matches("logs:").trim());
    logs.parent().map(PathBuf::from).unwrap_or(logs)
}

/// `/proc/PID/stat` after the command name: state, ppid, … (`None` if the process is gone).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// Live children of `parent`: (pid, start time).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let f = stat_fields(pid)?;
            // f[0] state, f[1] ppid, f[19] start time.
            (f.get(1)? == &parent.to_string())
                .then(|| (pid, f.get(19).cloned().unwrap_or_default()))
        })
        .collect()
}

/// Whether the process `pid` that started at `start` still exists (pids can be reused).
fn still_running(pid: u32, start: &str) -> bool {
    stat_fields(pid).is_some_and(|f| f.get(19).map(String::as_str) == Some(start) && f[0] != "Z")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_the_demo_shop_and_stops_cleanly_on_ctrl_c() {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"));
    cmd.arg("up");
    let mut up = Process::spawn(cmd).expect("spawn sinew up");
    let banner = banner(&mut up).await;
    let web = web_addr(&banner);
    let work = work_dir(&banner);
    assert!(
        work.is_dir(),
        "work dir {} exists while running",
        work.display()
    );

    // One inventory instance fails 20% of requests; a few tries find a clean answer.
    let mut last = None;
    for _ in 0..20 {
        let mut client = HttpClient::http1(web)
            .await
            .expect("connect to web's sidecar");
        let response = client.get("web", "/").await.expect("web answers");
        let ok = response.status == 200;
        last = Some(response);
        if ok {
            break;
        }
    }
    let response = last.expect("at least one try");
    let body = response.text();
    assert_eq!(response.status, 200, "web answered {body}");
    let json = response.json();
    assert_eq!(json["service"], "web");
    let catalog = &json["calls"][0]["answer"];
    assert_eq!(catalog["service"], "catalog", "{body}");
    assert!(
        catalog["version"] == "v1" || catalog["version"] == "v2",
        "{body}"
    );
    assert_eq!(
        catalog["calls"][0]["answer"]["service"], "inventory",
        "{body}"
    );

    // Events: on each visit web calls orders, which publishes an
    // order.created event (stored by the broker), and shipping's sidecar
    // delivers them to its app.
    let orders = json["calls"]
        .as_array()
        .and_then(|calls| calls.iter().find(|c| c["service"] == "orders"))
        .unwrap_or_else(|| panic!("web calls orders: {body}"));
    assert_eq!(orders["answer"]["published"], true, "{body}");
    let shipping_metrics = banner
        .lines()
        .find(|l| l.trim_start().starts_with("shipping-1"))
        .and_then(|l| l.split_whitespace().find(|w| w.ends_with("/metrics")))
        .unwrap_or_else(|| panic!("no shipping-1 metrics URL in:\n{banner}"))
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse::<SocketAddr>()
        .expect("shipping-1's api address");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut client = HttpClient::http1(shipping_metrics)
            .await
            .expect("connect to shipping-1's api");
        let metrics = client.get("api", "/metrics").await.expect("metrics").text();
        let delivered = metrics.lines().any(|l| {
            l.starts_with(
                "sinew_events_total{subscription=\"shipping-orders\",outcome=\"delivered\"}",
            ) && !l.ends_with(" 0")
        });
        if delivered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no order event delivered by shipping's sidecar:\n{metrics}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // What the banner tells a user to curl: the gateway by its address.
    let mut client = HttpClient::http1(web)
        .await
        .expect("connect to the gateway");
    let req = sinew_testkit::Request::get("/").host(&web.to_string());
    let response = client.send(req).await.expect("the gateway answers");
    assert!(
        response.status == 200 || response.status == 503,
        "the shop Route matches the gateway's own address: {} {}",
        response.status,
        response.text()
    );
    assert_ne!(response.header("x-sinew-error"), Some("no-route"));

    // The sidecars and the gateway run on the control plane: all eight connected, each having
    // applied the version it was sent, and registered in the catalog.
    let api = control_addr(&banner);
    let token = std::fs::read_to_string(work.join("control/admin.token")).expect("admin token");
    let get = |path: &'static str| {
        let token = token.trim().to_owned();
        async move {
            let mut c = HttpClient::http1(api).await.expect("control plane answers");
            let req = sinew_testkit::Request::get(path)
                .host("control")
                .header("authorization", &format!("Bearer {token}"));
            c.send(req).await.expect("control plane request").json()
        }
    };
    let proxies = get("/v1/proxies").await;
    let items = proxies["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 8, "{proxies}");
    for p in &items {
        assert_eq!(p["connected"], true, "{p}");
        assert!(p["applied_version"].as_u64() > Some(0), "{p}");
        assert_eq!(p["applied_version"], p["desired_version"], "{p}");
    }
    let catalog = get("/v1/catalog/services/default/catalog").await;
    let registered: Vec<&str> = catalog["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["source"] == "proxy")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(registered, ["catalog-v1", "catalog-v2"], "{catalog}");

    let children = children_of(up.pid());
    assert_eq!(
        children.len(),
        15,
        "7 demo apps, 7 sidecars and the gateway: {children:?}"
    );

    up.signal("INT").expect("send SIGINT");
    let status = up.wait_exit(Duration::from_secs(10)).await;
    let status = status
        .unwrap_or_else(|| panic!("still running 10 s after SIGINT\nstderr:\n{}", up.stderr()));
    assert!(status.success(), "exit {status}\nstderr:\n{}", up.stderr());
    let left: Vec<_> = children
        .iter()
        .filter(|(pid, start)| still_running(*pid, start))
        .collect();
    assert!(left.is_empty(), "children left running: {left:?}");
    assert!(!work.exists(), "work dir {} removed", work.display());
    assert!(up.stdout().contains("sinew up: stopped"));
}
