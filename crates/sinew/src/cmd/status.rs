//! `sinew status`: every proxy the control plane knows, whether it is
//! connected, and which config version it applied, wants, or refused.

use serde_json::Value;

use super::client::{self, ServerArgs};
use super::get::{format_table, json, print_out};

/// Show every proxy, its connection and its config versions.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Output format.
    #[arg(
        short = 'o',
        long,
        value_enum,
        value_name = "FORMAT",
        default_value = "table"
    )]
    output: Format,
    #[command(flatten)]
    server: ServerArgs,
}

/// How `status` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One line per proxy; long NACK errors in full under the table.
    Table,
    /// The proxies as a JSON array, as the API gives them.
    Json,
}

/// A LAST-NACK cell longer than this is cut, and the error printed in full below.
const NACK_WIDTH: usize = 40;

pub(crate) fn run(args: Args) -> Result<(), String> {
    let client = args.server.client()?;
    let reply = client::block_on(client.get("/v1/proxies"))?;
    if reply.status.as_u16() != 200 {
        return Err(reply.unexpected());
    }
    let Some(Value::Array(items)) = reply.body.get("items") else {
        return Err("the control plane's answer has no `items` list".to_owned());
    };
    match args.output {
        Format::Json => print_out(&json(&Value::Array(items.clone()))),
        Format::Table if items.is_empty() => {
            eprintln!(
                "no proxies are known to the control plane at {}",
                client.server()
            );
            Ok(())
        }
        Format::Table => print_out(&table(items)),
    }
}

/// NAME NAMESPACE SERVICE ADDRESS CONNECTED APPLIED DESIRED LAST-NACK.
fn table(proxies: &[Value]) -> String {
    let header = [
        "NAME",
        "NAMESPACE",
        "SERVICE",
        "ADDRESS",
        "CONNECTED",
        "APPLIED",
        "DESIRED",
        "LAST-NACK",
    ];
    let mut rows = vec![header.map(str::to_owned).to_vec()];
    let mut notes = Vec::new();
    for proxy in proxies {
        let text = |key: &str| match proxy.get(key) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "-".to_owned(),
        };
        let connected = match proxy.get("connected").and_then(Value::as_bool) {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let nack = match proxy.get("last_nack") {
            Some(nack @ Value::Object(_)) => {
                let version = nack.get("version").map_or("?".to_owned(), Value::to_string);
                let error = nack.get("error").and_then(Value::as_str).unwrap_or("");
                let cell = format!("v{version}: {error}");
                if cell.chars().count() > NACK_WIDTH {
                    notes.push(format!(
                        "{}/{} refused version {version}: {error}",
                        text("namespace"),
                        text("name")
                    ));
                    let cut: String = cell.chars().take(NACK_WIDTH - 1).collect();
                    format!("{cut}…")
                } else {
                    cell
                }
            }
            _ => "-".to_owned(),
        };
        rows.push(vec![
            text("name"),
            text("namespace"),
            text("service"),
            text("address"),
            connected.to_owned(),
            text("applied_version"),
            text("desired_version"),
            nack,
        ]);
    }
    let mut out = format_table(&rows);
    if !notes.is_empty() {
        out.push('\n');
        for note in notes {
            out.push_str(&note);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_row_per_proxy_and_long_nacks_below() {
        let long = "spec.rules[0].backends[0].service: no service `ratings` in namespace default";
        let proxies = serde_json::json!([
            {"name": "web-1", "namespace": "default", "service": "web", "address": "127.0.0.1:4143",
             "connected": true, "applied_version": 4, "desired_version": 4, "last_nack": null,
             "replica": "a", "last_seen_ms": 10},
            {"name": "cat-1", "namespace": "shop", "service": "catalog", "address": "127.0.0.1:5143",
             "connected": false, "applied_version": 3, "desired_version": 5,
             "last_nack": {"version": 5, "error": long}},
            {"name": "inv-1", "namespace": "shop", "service": "inventory", "address": "",
             "connected": true, "applied_version": 5, "desired_version": 5,
             "last_nack": {"version": 2, "error": "bad"}},
        ]);
        let out = table(proxies.as_array().unwrap());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAME    NAMESPACE   SERVICE     ADDRESS          CONNECTED   APPLIED   DESIRED   LAST-NACK"
        );
        assert_eq!(
            lines[1],
            "web-1   default     web         127.0.0.1:4143   yes         4         4         -"
        );
        assert!(
            lines[2].starts_with("cat-1   shop        catalog     127.0.0.1:5143   no          3         5         v5: spec.rules"),
            "{out}"
        );
        assert!(lines[2].ends_with('…'), "{out}");
        assert_eq!(
            lines[3],
            "inv-1   shop        inventory   -                yes         5         5         v2: bad"
        );
        assert_eq!(lines[4], "");
        assert_eq!(lines[5], format!("shop/cat-1 refused version 5: {long}"));
        assert_eq!(lines.len(), 6);
    }
}
