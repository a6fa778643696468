//! What `sinew up` prints: where to look once the mesh is ready, a status
//! line every few seconds, and what failed when it never got ready.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::config::CATALOG_SPLIT;
use super::ready::NotReady;
use super::shop::Shop;
use super::traffic::Totals;

/// The first line of the ready banner.
pub(crate) const READY: &str = "sinew up: the demo mesh is ready";

/// The control plane: the dashboard, where its API is and how to point the
/// CLI at it. The dashboard URL carries the admin token in its fragment
/// (a browser never sends a fragment to the server). `sinew` is how to run
/// this binary from the user's shell (`./target/release/sinew` after
/// `cargo run`).
pub(crate) fn control(
    http: std::net::SocketAddr,
    token: &Path,
    sinew: &str,
    explain: &str,
) -> String {
    let secret = std::fs::read_to_string(token).unwrap_or_default();
    format!(
        "\n  dashboard:     http://{http}/dashboard#token={}\n  \
         control plane: http://{http}/openapi.json\n  \
         cli:   export SINEW_SERVER=http://{http} SINEW_TOKEN_FILE={}\n  \
         try:   {sinew} status;  {sinew} top;  {sinew} explain {explain}\n",
        secret.trim(),
        token.display(),
    )
}

/// Where to look: the web URL, a curl example, each sidecar's metrics and config, the logs.
pub(crate) fn ready(shop: &Shop, logs: &Path, control: &str, sinew: &str) -> String {
    let mut out = format!(
        "{READY} ({} instances, each with its sidecar)\n\n",
        shop.instances.len()
    );
    if let (Some(web), false) = (shop.entry(), shop.demo) {
        let _ = writeln!(
            out,
            "  {}:   http://{}/   (through the gateway, then mTLS to {}'s sidecar)\n  \
             apps:  each gets PORT, SINEW_OUTBOUND (call http://SERVICE/… through it, e.g. as\n         \
             http_proxy) and SINEW_API (publish events at $SINEW_API/v1/publish/TOPIC)",
            shop.entry, shop.gateway.ingress, web.name
        );
    }
    if let (Some(web), true) = (shop.entry(), shop.demo) {
        let _ = writeln!(
            out,
            "  web:   http://{}/   (through the gateway, then mTLS to {}'s sidecar)",
            shop.gateway.ingress, web.name
        );
        let split: Vec<String> = CATALOG_SPLIT
            .iter()
            .map(|(v, w)| format!("{w}% {v}"))
            .collect();
        let _ = writeln!(
            out,
            "  try:   curl -H 'Host: catalog' http://{}/   ({}'s outbound; catalog splits {})",
            web.ports.outbound,
            web.name,
            split.join(" / ")
        );
    }
    let width = shop
        .instances
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0)
        .max("sidecar".len());
    let _ = writeln!(out, "\n  {:width$}  {:34}  config", "sidecar", "metrics");
    for i in &shop.instances {
        let metrics = format!("http://{}/metrics", i.ports.api);
        let _ = writeln!(
            out,
            "  {:width$}  {metrics:34}  http://{}/config",
            i.name, i.ports.api
        );
    }
    let _ = writeln!(
        out,
        "  {:width$}  {:34}  http://{}/config",
        super::shop::GATEWAY,
        format!("http://{}/metrics", shop.gateway.api),
        shop.gateway.api
    );
    for flaky in shop.instances.iter().filter(|i| i.fail_ratio() > 0.0) {
        let _ = writeln!(
            out,
            "\n  note:  {} answers {:.0}% of its requests with 503 on purpose; the sidecars retry\n         those on the healthy instance (see sinew_retries_total in the metrics)",
            flaky.name,
            flaky.fail_ratio() * 100.0
        );
    }
    out.push_str(control);
    let _ = writeln!(out, "\n  logs:  {}", logs.display());
    if !shop.demo {
        out.push_str("\nA status line follows every few seconds; Ctrl-C stops everything.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "\n  events: on each visit web calls orders, which publishes an order.created event (topic\n         `orders`); shipping's sidecar delivers them to its app. Watch them with\n         `{sinew} events tail orders` (with the export above)."
    );
    out.push_str("\nDemo traffic: 4 requests/s to web. A status line follows every few seconds; Ctrl-C stops everything.\n");
    out
}

/// One status line: the last interval (`every`), the totals, the catalog version split, restarts.
pub(crate) fn status(prev: &Totals, now: &Totals, every: Duration, restarts: u64) -> String {
    let ok = now.ok.saturating_sub(prev.ok);
    let failed = now.failed.saturating_sub(prev.failed);
    let mut line = format!(
        "status: last {}s {ok} ok, {failed} failed | total {} ok, {} failed | catalog",
        every.as_secs(),
        now.ok,
        now.failed
    );
    let answered: u64 = now.versions.values().sum();
    if answered == 0 {
        line.push_str(" -");
    }
    for (version, count) in &now.versions {
        let percent = (count * 100 + answered / 2) / answered.max(1);
        let _ = write!(line, " {version} {percent}%");
    }
    let _ = write!(
        line,
        " | events {} published | restarts {restarts}",
        now.events.saturating_sub(prev.events)
    );
    line
}

/// Why the mesh did not get ready: each sidecar that failed, and the tail of its log.
pub(crate) fn not_ready(failed: &[NotReady], log_tails: &[String]) -> String {
    let mut out = format!("sinew up: {} sidecar(s) not ready in time:\n", failed.len());
    for (f, tail) in failed
        .iter()
        .zip(log_tails.iter().map(Some).chain(std::iter::repeat(None)))
    {
        let _ = writeln!(out, "  {} (api {}): {}", f.name, f.api, f.last);
        if let Some(tail) = tail.filter(|t| !t.trim().is_empty()) {
            for line in tail.lines() {
                let _ = writeln!(out, "      | {line}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::ports::PortSource;
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn ready_banner_points_at_web_metrics_and_config() {
        let shop = Shop::demo(PortSource::Base(32000)).expect("ports");
        let api: std::net::SocketAddr = "127.0.0.1:32100".parse().expect("addr");
        let control = control(
            api,
            Path::new("dir/admin.token"),
            "sinew",
            "--from web http://catalog/",
        );
        let text = ready(&shop, Path::new("logs-dir"), &control, "sinew");
        assert!(text.contains("`sinew events tail orders`"), "{text}");
        assert!(text.starts_with(READY));
        assert!(text.contains("control plane: http://127.0.0.1:32100/openapi.json"));
        assert!(text.contains(
            "export SINEW_SERVER=http://127.0.0.1:32100 SINEW_TOKEN_FILE=dir/admin.token"
        ));
        assert!(text.contains("sinew status;  sinew top;  sinew explain --from web"));
        assert!(text.contains("dashboard:     http://127.0.0.1:32100/dashboard#token="));
        let web = shop.entry().expect("web");
        assert!(text.contains(&format!("  web:   http://{}/", shop.gateway.ingress)));
        assert!(text.contains(&format!(
            "curl -H 'Host: catalog' http://{}/",
            web.ports.outbound
        )));
        for i in &shop.instances {
            assert!(
                text.contains(&format!("http://{}/metrics", i.ports.api)),
                "{}",
                i.name
            );
            assert!(
                text.contains(&format!("http://{}/config", i.ports.api)),
                "{}",
                i.name
            );
        }
        assert!(text.contains("logs-dir"));
    }

    #[test]
    fn status_shows_interval_totals_and_split() {
        let prev = Totals {
            ok: 10,
            failed: 1,
            versions: BTreeMap::new(),
            events: 9,
        };
        let now = Totals {
            ok: 28,
            failed: 2,
            versions: BTreeMap::from([("v1".to_owned(), 48), ("v2".to_owned(), 6)]),
            events: 27,
        };
        let every = Duration::from_secs(5);
        assert_eq!(
            status(&prev, &now, every, 1),
            "status: last 5s 18 ok, 1 failed | total 28 ok, 2 failed | catalog v1 89% v2 11% | events 18 published | restarts 1"
        );
        assert!(status(&Totals::default(), &Totals::default(), every, 0).contains("catalog - |"));
    }

    #[test]
    fn not_ready_names_each_failure_with_its_log() {
        let failed = [NotReady {
            name: "web-1".into(),
            api: "127.0.0.1:9".parse().expect("addr"),
            last: "status 503".into(),
        }];
        let text = not_ready(&failed, &["error: bad config".to_owned()]);
        assert!(text.contains("web-1 (api 127.0.0.1:9): status 503"));
        assert!(text.contains("| error: bad config"));
    }
}
