//! `sinew top`: a live table of golden metrics per service and per edge
//! (`GET /v1/stats` of the control plane), redrawn every 2 seconds — like
//! Linkerd's `viz stat`/`top`.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

use super::client::{self, ServerArgs};
use super::get::print_out;

/// Live golden metrics per service and edge.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The window the rates and quantiles cover (a duration with unit, at most 10m).
    #[arg(long, default_value = "30s")]
    window: sinew_model::Duration,
    /// Print the table once and exit (for scripts), instead of redrawing.
    #[arg(long)]
    once: bool,
    /// Only this namespace (default: all).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let control = args.server.client()?;
    let window = Duration::from(args.window);
    let path = format!("/v1/stats?window={}ms", window.as_millis());
    client::block_on(async {
        loop {
            let reply = control.get(&path).await?;
            if reply.status.as_u16() != 200 {
                return Err(reply.unexpected());
            }
            let table = render(&reply.body, args.namespace.as_deref());
            if args.once {
                return print_out(&table);
            }
            // Clear the screen, home the cursor, draw.
            print_out(&format!(
                "\x1b[2J\x1b[H{}\nevery 2s from {} — Ctrl-C to quit\n",
                table,
                control.server()
            ))?;
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = tokio::signal::ctrl_c() => return Ok(()),
            }
        }
    })
}

/// `12.5`, or `-` when there is no figure.
fn number(v: &Value, scale: f64, places: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{:.*}", places, x * scale))
}

/// A rate as `90.0%`, or `-`.
fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "-".to_owned(), |x| format!("{:.1}%", x * 100.0))
}

/// The two tables as text.
fn render(stats: &Value, namespace: Option<&str>) -> String {
    let keep = |v: &&Value| namespace.is_none_or(|ns| v["namespace"] == ns);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "services (last {} s)",
        number(&stats["window_s"], 1.0, 0)
    );
    let mut rows = vec![[
        "NAMESPACE".to_owned(),
        "SERVICE".to_owned(),
        "INSTANCES".to_owned(),
        "RPS".to_owned(),
        "SUCCESS".to_owned(),
        "P50 ms".to_owned(),
        "P99 ms".to_owned(),
    ]];
    for s in stats["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(keep)
    {
        rows.push([
            s["namespace"].as_str().unwrap_or("").to_owned(),
            s["service"].as_str().unwrap_or("").to_owned(),
            s["instances"].to_string(),
            number(&s["rps"], 1.0, 1),
            percent(&s["success_rate"]),
            number(&s["p50_ms"], 1.0, 2),
            number(&s["p99_ms"], 1.0, 2),
        ]);
    }
    table(&mut out, &rows);
    let _ = writeln!(out, "\nedges");
    let mut rows = vec![[
        "NAMESPACE".to_owned(),
        "FROM".to_owned(),
        "TO".to_owned(),
        "RPS".to_owned(),
        "SUCCESS".to_owned(),
        "P50 ms".to_owned(),
        "P99 ms".to_owned(),
    ]];
    for e in stats["edges"].as_array().into_iter().flatten().filter(keep) {
        rows.push([
            e["namespace"].as_str().unwrap_or("").to_owned(),
            e["from"].as_str().unwrap_or("").to_owned(),
            e["to"].as_str().unwrap_or("").to_owned(),
            number(&e["rps"], 1.0, 1),
            percent(&e["success_rate"]),
            number(&e["p50_ms"], 1.0, 2),
            number(&e["p99_ms"], 1.0, 2),
        ]);
    }
    table(&mut out, &rows);
    out
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_services_and_edges() {
        let stats = serde_json::json!({
            "window_s": 30.0,
            "services": [{"namespace": "default", "service": "catalog", "instances": 2, "rps": 12.5, "success_rate": 0.9, "p50_ms": 1.0, "p99_ms": 25.0}],
            "edges": [{"namespace": "default", "from": "web", "to": "catalog", "rps": 12.5, "success_rate": null, "p50_ms": null, "p99_ms": null}],
        });
        let text = render(&stats, None);
        assert!(
            text.contains("default    catalog  2          12.5  90.0%    1.00    25.00"),
            "{text}"
        );
        assert!(text.contains("default    web   catalog  12.5  -"), "{text}");
        assert!(!render(&stats, Some("other")).contains("catalog"));
    }
}
