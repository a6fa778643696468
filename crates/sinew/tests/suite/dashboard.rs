//! The dashboard in a real browser: `sinew up` runs the demo shop, headless
//! Chromium (Debian's `chromium`) opens the dashboard URL the banner prints,
//! and the rendered page shows the demo services with live numbers; the
//! catalog page and the events page render too. Screenshots are saved (in
//! the test's target directory, or `SINEW_SCREENSHOTS=DIR`);
//! `docs/dashboard*.png` are such.
//!
//! `SKIPPED: chromium not installed` when there is no browser, unless
//! `SINEW_REQUIRE_EXTERNAL=1` (CI installs it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use sinew_testkit::{require_external, Process};

/// Waits for the ready banner; returns stdout.
async fn banner(up: &mut Process) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = up.stdout();
        if out.contains("the demo mesh is ready") && out.contains("dashboard:") {
            return out;
        }
        if let Some(status) = up.try_exit() {
            panic!("sinew up exited ({status})\n{out}\n{}", up.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "no banner in 60 s\n{out}\n{}",
            up.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs headless Chromium on `url` with `args`; returns stdout.
async fn chromium(bin: &PathBuf, url: &str, args: &[&str]) -> String {
    let profile = sinew_testkit::TempDir::new("chromium");
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--hide-scrollbars",
                &format!("--user-data-dir={}", profile.path().display()),
                // Lets the page's fetches answer and render before the dump.
                "--virtual-time-budget=6000",
            ])
            .args(args)
            .arg(url)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("chromium finished within 90 s")
    .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The visible text of the page's `<main>`.
fn text_of(dom: &str) -> String {
    let main = dom
        .find("<main>")
        .map_or(dom, |i| &dom[i..dom.find("<script").unwrap_or(dom.len())]);
    let mut text = String::with_capacity(main.len());
    let mut in_tag = false;
    for c in main.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_of_sinew_up_shows_the_demo_services_with_live_numbers() {
    let Some(browser) = require_external("chromium") else {
        return;
    };
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_sinew"));
    cmd.arg("up");
    let mut up = Process::spawn(cmd).expect("spawn sinew up");
    let banner = banner(&mut up).await;
    let url = banner
        .lines()
        .find_map(|l| l.trim().strip_prefix("dashboard:"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no dashboard line in:\n{banner}"))
        .to_owned();
    assert!(url.contains("/dashboard#token="), "{url}");

    // Demo traffic flows; sidecars report every 2 s. Retry the page until
    // the numbers are in, and the event edge (orders publishes a few times
    // a second; the edge needs a report with a publish), a slow first start
    // of the browser included.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let dom = chromium(&browser, &url, &["--dump-dom"]).await;
        let text = text_of(&dom);
        let numbers = text.contains("/s ·") && text.contains('%');
        let services = ["web", "catalog", "inventory"]
            .iter()
            .all(|s| text.contains(s));
        // The events: orders publishes to `orders`, shipping's sidecar delivers.
        let event_edge = text.contains("⇢ orders ·");
        if numbers && services && event_edge {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard never showed the services with numbers (numbers {numbers}, services {services}) and the event edge orders ⇢ shipping ({event_edge}); last text:\n{text}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    eprintln!("dashboard text: {text}");
    // Live edges in the topology (requests/s · success · p99) and the
    // services table (rates, success, availability).
    assert!(text.contains("Topology"), "{text}");
    assert!(text.contains("availability 10 min"), "{text}");
    assert!(!text.contains("token is missing"), "{text}");

    // The service page and the events page, addressed by the fragment.
    let catalog = text_of(
        &chromium(
            &browser,
            &format!("{url}&service=default/catalog"),
            &["--dump-dom"],
        )
        .await,
    );
    for part in [
        "Endpoints",
        "Ejections",
        "Callers",
        "Routes",
        "Authorization policies",
        "Sidecars",
        "catalog-v1",
        "catalog-v2",
    ] {
        assert!(
            catalog.contains(part),
            "the catalog page shows {part}: {catalog}"
        );
    }
    let events = text_of(&chromium(&browser, &format!("{url}&page=events"), &["--dump-dom"]).await);
    assert!(
        events.contains("shipping-orders") && events.contains("orders"),
        "{events}"
    );

    // Screenshots: SINEW_SCREENSHOTS=DIR keeps them there (docs/ holds a set).
    let dir = std::env::var_os("SINEW_SCREENSHOTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")), PathBuf::from);
    for (name, fragment) in [
        ("dashboard.png", ""),
        ("dashboard-service.png", "&service=default/catalog"),
        ("dashboard-events.png", "&page=events"),
    ] {
        let shot = dir.join(name);
        chromium(
            &browser,
            &format!("{url}{fragment}"),
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1280,900",
            ],
        )
        .await;
        let png = std::fs::read(&shot).expect("the screenshot was written");
        assert!(png.starts_with(b"\x89PNG"), "a PNG at {}", shot.display());
        eprintln!("screenshot: {} ({} bytes)", shot.display(), png.len());
    }

    let _ = up.signal("INT");
    let _ = up.wait_exit(Duration::from_secs(15)).await;
}
