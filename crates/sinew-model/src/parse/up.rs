//! `sinew up -f FILE`: the first document says what to run, the others are
//! Sinew resources.
//!
//! ```yaml
//! services:
//!   - name: api
//!     command: ["./api", "--listen", "127.0.0.1:{port}"]
//!     replicas: 2
//!     env: {LOG: debug}
//!   - name: web
//!     command: "python3 -m http.server $PORT"
//!     port: 8080
//! entry: web
//! ---
//! kind: Route
//! …
//! ```

use std::collections::HashSet;

use super::check::name as label;
use super::node::{Node, Value};
use super::reader::{index, string, uint, Cx, D};
use super::resource;
use crate::{Command, Error, ErrorKind, Errors, UpFile, UpService};

/// Most replicas of one service.
const MAX_REPLICAS: u32 = 16;

/// Parses the text of a `sinew up` file named `source_name`.
///
/// # Errors
/// Every problem, each with its file, line, column and field.
pub fn parse_up_str(source_name: &str, text: &str) -> Result<UpFile, Errors> {
    let (docs, syntax) = super::node::parse_documents(text);
    let mut cx = Cx::new(source_name);
    let mut docs = docs.into_iter().filter(|d| !d.is_null());
    let mut file = None;
    match docs.next() {
        Some(first) => file = up_spec(&mut cx, &first),
        None if syntax.is_none() => cx.errors.push(Error::new(
            ErrorKind::MissingField,
            source_name,
            1,
            1,
            "services",
            "the file is empty: its first document lists the services to run (`services: [{name, command}]`)",
        )),
        None => {}
    }
    let mut resources = Vec::new();
    for doc in docs {
        match &doc.value {
            Value::Seq(items) => resources.extend(
                items
                    .iter()
                    .filter_map(|item| resource::resource(&mut cx, item, "")),
            ),
            _ => resources.extend(resource::resource(&mut cx, &doc, "")),
        }
    }
    if let Some(e) = syntax {
        cx.errors.push(Error::new(
            ErrorKind::Syntax,
            source_name,
            e.line,
            e.col,
            "",
            format!("invalid YAML/JSON: {}", e.message),
        ));
    }
    match file {
        Some(mut file) if cx.errors.is_empty() => {
            file.resources = resources;
            Ok(file)
        }
        _ => {
            let mut errors = cx.errors;
            errors.sort_by_key(|e| (e.line, e.column));
            Err(Errors(errors))
        }
    }
}

/// Reads `path` and parses it with [`parse_up_str`].
///
/// # Errors
/// An [`ErrorKind::Io`] error when the file cannot be read, else those of [`parse_up_str`].
pub fn parse_up_file(path: impl AsRef<std::path::Path>) -> Result<UpFile, Errors> {
    let path = path.as_ref();
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            &name,
            0,
            0,
            "",
            format!("cannot read file: {e}"),
        )
    })?;
    parse_up_str(&name, &text)
}

fn up_spec(cx: &mut Cx<'_>, node: &Node) -> D<UpFile> {
    let mut m = cx.map(node, "")?;
    let services = m.req(cx, "services", |cx, n, p| {
        let list = cx.list(n, p, service)?;
        if list.is_empty() {
            return cx.invalid(n, p, "list at least one service to run");
        }
        let mut seen = HashSet::new();
        for (i, s) in list.iter().enumerate() {
            if !seen.insert(s.name.clone()) {
                let item = match &n.value {
                    Value::Seq(items) => &items[i],
                    _ => n,
                };
                return cx.invalid(
                    item,
                    &format!("{}.name", index(p, i)),
                    format!("`{}` is listed twice", s.name),
                );
            }
        }
        Some(list)
    });
    let entry = m.opt(cx, "entry", label);
    let entry_node = m.node_of("entry");
    let entry_path = m.path_of("entry");
    m.finish(cx);
    let (services, entry) = (services?, entry?);
    if let Some(e) = &entry {
        if !services.iter().any(|s| &s.name == e) {
            return cx.invalid(
                entry_node,
                &entry_path,
                format!("`{e}` is not one of the services"),
            );
        }
    }
    Some(UpFile {
        services,
        entry,
        resources: Vec::new(),
    })
}

fn service(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<UpService> {
    let mut m = cx.map(node, path)?;
    let name = m.req(cx, "name", label);
    let command = m.req(cx, "command", command);
    let port = m.opt(cx, "port", |cx, n, p| {
        let port: u16 = uint(cx, n, p)?;
        if port == 0 {
            return cx.invalid(n, p, "a port is 1-65535 (leave it out for a free one)");
        }
        Some(port)
    });
    let replicas = m.or(cx, "replicas", 1, |cx, n, p| {
        let r: u32 = uint(cx, n, p)?;
        if !(1..=MAX_REPLICAS).contains(&r) {
            return cx.invalid(n, p, format!("replicas is 1-{MAX_REPLICAS}"));
        }
        Some(r)
    });
    let env = m.or(cx, "env", Default::default(), |cx, n, p| {
        cx.named_map(
            n,
            p,
            |cx, key_node, kp, k| {
                let ok = !k.is_empty()
                    && !k.starts_with(|c: char| c.is_ascii_digit())
                    && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
                if ok {
                    Some(k.to_owned())
                } else {
                    cx.invalid(
                        key_node,
                        kp,
                        format!("`{k}` is not an environment variable name"),
                    )
                }
            },
            string,
        )
    });
    let version = m.or(cx, "version", "v1".to_owned(), label);
    let health_path = m.opt(cx, "health_path", |cx, n, p| {
        let s = string(cx, n, p)?;
        if !s.starts_with('/') {
            return cx.invalid(n, p, "a path starts with `/`");
        }
        Some(s)
    });
    let port_node = m.node_of("port");
    let port_path = m.path_of("port");
    m.finish(cx);
    let (port, replicas) = (port?, replicas?);
    if port.is_some() && replicas > 1 {
        return cx.invalid(
            port_node,
            &port_path,
            "a fixed port serves one replica: leave `port` out (each replica gets a free one as PORT) or set `replicas: 1`",
        );
    }
    Some(UpService {
        name: name?,
        command: command?,
        port,
        replicas,
        env: env?,
        version: version?,
        health_path: health_path?,
    })
}

fn command(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Command> {
    match &node.value {
        Value::Seq(_) => {
            let argv = cx.list(node, path, string)?;
            if argv.is_empty() || argv[0].is_empty() {
                return cx.invalid(node, path, "give the program and its arguments");
            }
            Some(Command::Argv(argv))
        }
        _ => {
            let line = string(cx, node, path)?;
            if line.trim().is_empty() {
                return cx.invalid(node, path, "give the command to run");
            }
            Some(Command::Shell(line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_resources() {
        let text = "services:\n  - name: api\n    command: [\"./api\", \"{port}\"]\n    replicas: 2\n    env: {LOG: debug}\n  - name: web\n    command: python3 -m http.server $PORT\n    port: 8080\nentry: web\n---\nkind: Route\nmetadata: {name: api}\nspec:\n  hosts: [api]\n  rules:\n    - backends: [{service: api}]\n";
        let file = parse_up_str("up.yaml", text).expect("valid");
        assert_eq!(file.services.len(), 2);
        let api = &file.services[0];
        assert_eq!(
            api.command,
            Command::Argv(vec!["./api".into(), "{port}".into()])
        );
        assert_eq!(
            (api.replicas, api.port, api.version.as_str()),
            (2, None, "v1")
        );
        assert_eq!(api.env.get("LOG").map(String::as_str), Some("debug"));
        assert_eq!(
            file.services[1].command,
            Command::Shell("python3 -m http.server $PORT".into())
        );
        assert_eq!(file.entry.as_deref(), Some("web"));
        assert_eq!(file.resources.len(), 1);
    }

    #[test]
    fn mistakes_name_file_line_and_field() {
        let err = |text: &str| parse_up_str("up.yaml", text).unwrap_err().to_string();
        assert_eq!(
            err("services:\n  - name: api\n    command: x\n    port: 80\n    replicas: 3\n"),
            "up.yaml:4:11: services[0].port: a fixed port serves one replica: leave `port` out (each replica gets a free one as PORT) or set `replicas: 1`"
        );
        assert!(err("services:\n  - name: Api\n    command: x\n")
            .starts_with("up.yaml:2:11: services[0].name:"));
        assert!(err("services:\n  - name: api\n").contains("services[0].command"));
        assert!(
            err("services:\n  - name: api\n    command: x\n    colour: red\n")
                .contains("services[0].colour")
        );
        assert!(
            err("services:\n  - {name: a, command: x}\n  - {name: a, command: y}\n")
                .contains("listed twice")
        );
        assert!(err("services:\n  - {name: a, command: x}\nentry: b\n")
            .contains("`b` is not one of the services"));
        assert!(err("services:\n  - {name: a, command: x, env: {1X: y}}\n")
            .contains("not an environment variable name"));
        assert!(err("").contains("the file is empty"));
    }
}
