//! `sinew get KIND [NAME]`: show resources stored in the control plane, as a
//! table, YAML or JSON; also the table and YAML output the other client
//! commands share.

use std::io::Write;

use serde_json::Value;
use sinew_model::Kind;

use super::client::{self, ServerArgs};

/// Show resources stored in the control plane.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The kind: service, route, proxy, mesh, authorizationpolicy, subscription
    /// (any case, singular or plural).
    kind: String,
    /// One resource's name; without it, every resource of the kind is listed.
    name: Option<String>,
    /// The namespace [default: `default` for NAME; every namespace for a list]
    #[arg(short = 'n', long, value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Output format [default: table for a list, yaml for NAME]
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    output: Option<Format>,
    #[command(flatten)]
    server: ServerArgs,
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Documents as YAML (several separated by `---`), ready for `sinew apply`.
    Yaml,
    /// Documents as JSON (a list is an array), ready for `sinew apply`.
    Json,
    /// One line per resource: NAMESPACE NAME and a summary of the kind.
    Table,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let kind = resolve_kind(&args.kind)?;
    let client = args.server.client()?;
    let kind_path = kind_path(kind);
    match &args.name {
        Some(name) => {
            let namespace = args.namespace.as_deref().unwrap_or("default");
            let path = format!(
                "/v1/resources/{kind_path}/{}/{}",
                client::segment(namespace),
                client::segment(name)
            );
            let reply = client::block_on(client.get(&path))?;
            match reply.status.as_u16() {
                200 => {}
                404 => return Err(reply.error()),
                _ => return Err(reply.unexpected()),
            }
            print_out(&render(
                kind,
                std::slice::from_ref(&reply.body),
                args.output.unwrap_or(Format::Yaml),
            ))
        }
        None => {
            let mut path = format!("/v1/resources/{kind_path}");
            if let Some(namespace) = &args.namespace {
                path.push_str(&format!("?namespace={}", client::segment(namespace)));
            }
            let reply = client::block_on(client.get(&path))?;
            if reply.status.as_u16() != 200 {
                return Err(reply.unexpected());
            }
            let items = match reply.body.get("items") {
                Some(Value::Array(items)) => items.as_slice(),
                _ => return Err("the control plane's answer has no `items` list".to_owned()),
            };
            let format = args.output.unwrap_or(Format::Table);
            if items.is_empty() && format == Format::Table {
                let plural = plural(kind);
                match &args.namespace {
                    Some(ns) => eprintln!("no {plural} in namespace {ns}"),
                    None => eprintln!("no {plural}"),
                }
                return Ok(());
            }
            let text = if format == Format::Json {
                json(&Value::Array(items.to_vec()))
            } else {
                render(kind, items, format)
            };
            print_out(&text)
        }
    }
}

/// `documents` in `format`; JSON of several is done by the caller (an array).
fn render(kind: Kind, documents: &[Value], format: Format) -> String {
    match format {
        Format::Yaml => documents.iter().map(to_yaml).collect(),
        Format::Json => documents.iter().map(json).collect(),
        Format::Table => table(kind, documents),
    }
}

/// The kind a user typed: any case, singular or plural.
pub(crate) fn resolve_kind(typed: &str) -> Result<Kind, String> {
    let lower = typed.to_ascii_lowercase();
    Kind::ALL
        .into_iter()
        .find(|kind| lower == kind.as_str().to_ascii_lowercase() || lower == plural(*kind))
        .ok_or_else(|| {
            let known: Vec<_> = Kind::ALL
                .iter()
                .map(|k| k.as_str().to_ascii_lowercase())
                .collect();
            format!("unknown kind `{typed}`; the kinds are {}", known.join(", "))
        })
}

/// The kind as the API's paths spell it.
pub(crate) fn kind_path(kind: Kind) -> String {
    kind.as_str().to_ascii_lowercase()
}

/// `services`, `proxies`, `meshes`, …
fn plural(kind: Kind) -> String {
    let singular = kind.as_str().to_ascii_lowercase();
    if let Some(stem) = singular.strip_suffix('y') {
        format!("{stem}ies")
    } else if singular.ends_with('h') || singular.ends_with('s') {
        format!("{singular}es")
    } else {
        format!("{singular}s")
    }
}

/// NAMESPACE NAME and the kind's summary columns, one row per document.
fn table(kind: Kind, documents: &[Value]) -> String {
    let mut header = vec!["NAMESPACE".to_owned(), "NAME".to_owned()];
    header.extend(summary_columns(kind).iter().map(|h| (*h).to_owned()));
    let mut rows = vec![header];
    for doc in documents {
        let metadata = doc.get("metadata");
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = text(metadata.and_then(|m| m.get("name")));
        let mut row = vec![namespace.to_owned(), name];
        row.extend(summary(kind, doc.get("spec").unwrap_or(&Value::Null)));
        rows.push(row);
    }
    format_table(&rows)
}

/// The columns after NAMESPACE NAME that say the most about a kind at a glance.
fn summary_columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Service => &["ENDPOINTS"],
        Kind::Route => &["HOSTS"],
        Kind::Proxy => &["SERVICE"],
        Kind::Mesh => &["TRUST-DOMAIN", "MTLS"],
        Kind::AuthorizationPolicy => &["TARGET", "ACTION"],
        Kind::Subscription => &["TOPIC", "SERVICE"],
    }
}

/// The cells of [`summary_columns`] for one document's `spec`.
fn summary(kind: Kind, spec: &Value) -> Vec<String> {
    match kind {
        Kind::Service => vec![count(spec.get("endpoints"))],
        Kind::Route => vec![list(spec.get("hosts"))],
        Kind::Proxy => vec![text(spec.get("service"))],
        Kind::Mesh => vec![text(spec.get("trust_domain")), text(spec.get("mtls"))],
        Kind::AuthorizationPolicy => vec![text(spec.get("target")), text(spec.get("action"))],
        Kind::Subscription => vec![text(spec.get("topic")), text(spec.get("service"))],
    }
}

fn count(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_array)
        .map_or(0, Vec::len)
        .to_string()
}

fn list(value: Option<&Value>) -> String {
    match value.and_then(Value::as_array) {
        Some(items) if !items.is_empty() => items
            .iter()
            .map(|v| text(Some(v)))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".to_owned(),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Left-aligned columns three spaces apart, no trailing spaces; the first row is the header.
pub(crate) fn format_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                let pad = widths[c] - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Pretty JSON with a final newline.
pub(crate) fn json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

/// One YAML document (`---` first, a final newline) that parses back to `value`.
pub(crate) fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    // Writing into a String cannot fail; an error here would be a bug in the emitter.
    if let Err(error) = emitter.dump(&yaml_node(value)) {
        return format!("# cannot write YAML: {error}\n");
    }
    out.push('\n');
    out
}

fn yaml_node(value: &Value) -> yaml_rust2::Yaml {
    use yaml_rust2::Yaml;
    match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            // u64 past i64 and floats: serde_json's text is valid YAML as it is
            // (floats keep their `.0`, so they stay floats).
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(yaml_node).collect()),
        Value::Object(map) => {
            let mut hash = yaml_rust2::yaml::Hash::new();
            for (k, v) in map {
                hash.insert(Yaml::String(k.clone()), yaml_node(v));
            }
            Yaml::Hash(hash)
        }
    }
}

/// Writes the command's output to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print_out(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(format!("cannot write to stdout: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: reviews, labels: {tier: "1", team: "yes"}}
spec:
  endpoints:
    - {address: 127.0.0.1:9081, labels: {version: v1}}
    - {address: "[::1]:9082", labels: {version: v2}, weight: 3}
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
  balancer: {algorithm: peak-ewma}
  connect_timeout: 500ms
  timeout: 5s
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {name: reviews, namespace: shop}
spec:
  hosts: [reviews, "*.shop.example"]
  rules:
    - match: [{headers: {x-canary: {exact: "1"}}, path: {regex: "^/a[0-9]+#?$"}}]
      backends: [{service: reviews, subset: v2}]
      headers: {response: {set: {x-served-by: "canary: yes", x-empty: ""}}}
      fault: {abort: {status: 503, percent: 12.5}}
    - match: [{path: {prefix: /internal}}]
      direct_response: {status: 403, body: "forbidden\n  really\n"}
    - backends:
        - {service: reviews, subset: v1, weight: 90}
        - {service: reviews, subset: v2, weight: 10}
"#;

    fn documents() -> Vec<Value> {
        sinew_model::parse_str("example.yaml", EXAMPLE)
            .unwrap()
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect()
    }

    #[test]
    fn yaml_output_parses_back_to_the_same_resources() {
        let original = sinew_model::parse_str("example.yaml", EXAMPLE).unwrap();
        let docs = documents();
        let yaml = render(Kind::Service, &docs, Format::Yaml);
        assert!(yaml.starts_with("---\n"), "{yaml}");
        let back = sinew_model::parse_str("out.yaml", &yaml)
            .unwrap_or_else(|e| panic!("{e}\n--- output was:\n{yaml}"));
        assert_eq!(back, original);
        // And as JSON, which `apply` reads too.
        let json = json(&Value::Array(docs));
        assert_eq!(sinew_model::parse_str("out.json", &json).unwrap(), original);
    }

    #[test]
    fn yaml_keeps_scalars_that_look_like_other_types_as_strings() {
        let value = serde_json::json!({
            "a": "1", "b": "true", "c": "null", "d": "", "e": "x: y", "f": "- z",
            "g": "line\nline", "h": 3, "i": 0.5, "j": 2.0, "k": null, "l": false,
            "m": [], "n": {}, "o": "0x1F", "p": "~", "q": " padded ", "r": "#c",
            "s": [{"t": 1, "u": [1, "2"]}], "v": "1e3", "w": "no"
        });
        let yaml = to_yaml(&value);
        let docs = yaml_rust2::YamlLoader::load_from_str(&yaml).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(back_to_json(&docs[0]), value, "{yaml}");
    }

    fn back_to_json(yaml: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match yaml {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => Value::from(r.parse::<f64>().unwrap()),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Array(items) => Value::Array(items.iter().map(back_to_json).collect()),
            Yaml::Hash(hash) => Value::Object(
                hash.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_owned(), back_to_json(v)))
                    .collect(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn tables_show_a_summary_per_kind() {
        let docs = documents();
        assert_eq!(
            table(Kind::Service, &docs[..1]),
            "NAMESPACE   NAME      ENDPOINTS\n\
             default     reviews   2\n"
        );
        assert_eq!(
            table(Kind::Route, &docs[1..]),
            "NAMESPACE   NAME      HOSTS\n\
             shop        reviews   reviews,*.shop.example\n"
        );
        let policy = serde_json::json!({"kind": "AuthorizationPolicy", "metadata": {"name": "p"},
            "spec": {"target": "reviews"}});
        assert_eq!(
            table(Kind::AuthorizationPolicy, &[policy]),
            "NAMESPACE   NAME   TARGET    ACTION\n\
             default     p      reviews   -\n"
        );
    }

    #[test]
    fn format_table_pads_all_but_the_last_column() {
        let rows = vec![
            vec!["A".to_owned(), "BB".to_owned(), "C".to_owned()],
            vec!["long".to_owned(), "".to_owned(), "".to_owned()],
        ];
        assert_eq!(format_table(&rows), "A      BB   C\nlong\n");
    }

    #[test]
    fn kinds_are_any_case_singular_or_plural() {
        assert_eq!(resolve_kind("Service").unwrap(), Kind::Service);
        assert_eq!(resolve_kind("services").unwrap(), Kind::Service);
        assert_eq!(resolve_kind("PROXIES").unwrap(), Kind::Proxy);
        assert_eq!(resolve_kind("meshes").unwrap(), Kind::Mesh);
        assert_eq!(
            resolve_kind("authorizationpolicies").unwrap(),
            Kind::AuthorizationPolicy
        );
        assert_eq!(resolve_kind("subscription").unwrap(), Kind::Subscription);
        let e = resolve_kind("pods").unwrap_err();
        assert_eq!(
            e,
            "unknown kind `pods`; the kinds are service, route, proxy, mesh, \
             authorizationpolicy, subscription"
        );
    }
}
