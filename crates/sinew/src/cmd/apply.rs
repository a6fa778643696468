//! `sinew apply -f FILE`: validate a file locally, then apply all of its
//! resources to the control plane at once (all or nothing).

use std::io::Read;
use std::path::PathBuf;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use serde_json::Value;
use sinew_model::{Error, ErrorKind, Errors};

use super::client::{self, ServerArgs};
use super::get::print_out;

/// Apply resources from a file to the control plane.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The file (multi-document YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    server: ServerArgs,
}

/// The header naming the source in the server's errors.
const SOURCE_HEADER: &str = "x-sinew-source";
/// How standard input is named in errors.
const STDIN_NAME: &str = "<stdin>";

pub(crate) fn run(args: Args) -> Result<(), String> {
    let (name, text) = read_source(&args.file)?;
    match sinew_model::parse_str(&name, &text) {
        Ok(resources) if resources.is_empty() => {
            return Err(format!("{name} holds no resources; nothing was applied"))
        }
        Ok(_) => {}
        Err(errors) => {
            eprintln!("{errors}");
            return Err(format!(
                "{name} is invalid ({} error(s)); nothing was applied",
                errors.len()
            ));
        }
    }
    let client = args.server.client()?;
    let source = HeaderValue::from_bytes(name.as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("file"));
    let headers = [(HeaderName::from_static(SOURCE_HEADER), source)];
    let reply = client::block_on(client.post("/v1/apply", &headers, Bytes::from(text)))?;
    match reply.status.as_u16() {
        200 => print_out(&applied(&reply.body)?),
        422 => {
            let errors = server_errors(&name, &reply.body);
            if errors.is_empty() {
                return Err(format!(
                    "the control plane refused {name}: {}",
                    reply.error()
                ));
            }
            eprintln!("{errors}");
            Err(format!(
                "the control plane refused {name} ({} error(s)); nothing was applied",
                errors.len()
            ))
        }
        _ => Err(reply.unexpected()),
    }
}

/// The file's name for messages and its text; `-` is standard input.
fn read_source(file: &PathBuf) -> Result<(String, String), String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok((STDIN_NAME.to_owned(), text));
    }
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {name}: {e}"))?;
    Ok((name, text))
}

/// `service/default/reviews created` per resource, then `applied revision N`.
fn applied(body: &Value) -> Result<String, String> {
    let results = body
        .get("results")
        .and_then(Value::as_array)
        .ok_or("the control plane's answer has no `results` list")?;
    let mut out = String::new();
    for result in results {
        let field = |name: &str| result.get(name).and_then(Value::as_str).unwrap_or("?");
        out.push_str(&format!(
            "{}/{}/{} {}\n",
            field("kind").to_ascii_lowercase(),
            field("namespace"),
            field("name"),
            field("action"),
        ));
    }
    match body.get("revision").and_then(Value::as_u64) {
        Some(revision) => out.push_str(&format!("applied revision {revision}\n")),
        None => out.push_str("applied\n"),
    }
    Ok(out)
}

/// The `errors` of a `422`, printable as `FILE:LINE:COL: FIELD: MESSAGE`.
/// (The wire does not carry an error's kind; only the position and text are used.)
fn server_errors(name: &str, body: &Value) -> Errors {
    let Some(items) = body.get("errors").and_then(Value::as_array) else {
        return Errors::default();
    };
    let errors = items.iter().map(|item| {
        let text = |key: &str| item.get(key).and_then(Value::as_str).unwrap_or("");
        let number = |key: &str| {
            item.get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0)
        };
        let file = match text("file") {
            "" => name,
            file => file,
        };
        Error::new(
            ErrorKind::InvalidValue,
            file,
            number("line"),
            number("column"),
            text("field"),
            text("message"),
        )
    });
    Errors(errors.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn file_is_required_and_dash_means_stdin() {
        assert!(Cli::try_parse_from(["apply"]).is_err());
        let cli = Cli::try_parse_from(["apply", "-f", "-", "--server", "cp:1"]).unwrap();
        assert_eq!(cli.args.file, PathBuf::from("-"));
        let cli = Cli::try_parse_from(["apply", "--file", "a.yaml", "--token-file", "t"]).unwrap();
        assert_eq!(cli.args.file, PathBuf::from("a.yaml"));
    }

    #[test]
    fn results_print_one_line_each_then_the_revision() {
        let body = serde_json::json!({"revision": 7, "results": [
            {"kind": "Service", "namespace": "default", "name": "reviews", "action": "created"},
            {"kind": "Route", "namespace": "shop", "name": "reviews", "action": "unchanged"},
        ]});
        assert_eq!(
            applied(&body).unwrap(),
            "service/default/reviews created\nroute/shop/reviews unchanged\napplied revision 7\n"
        );
    }

    #[test]
    fn server_errors_print_as_file_line_col_field_message() {
        let body = serde_json::json!({"error": "2 invalid resources", "errors": [
            {"file": "r.yaml", "line": 9, "column": 18, "field": "spec.rules[0].backends[0].service",
             "message": "no service `ratings` in namespace default"},
            {"file": "", "line": 0, "column": 0, "field": "", "message": "conflict"},
        ]});
        assert_eq!(
            server_errors("r.yaml", &body).to_string(),
            "r.yaml:9:18: spec.rules[0].backends[0].service: no service `ratings` in namespace default\n\
             r.yaml: conflict"
        );
        assert!(server_errors("r.yaml", &serde_json::json!({"error": "x"})).is_empty());
    }
}
