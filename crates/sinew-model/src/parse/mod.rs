//! Parsing: text → marked node tree → typed, validated resources, collecting every error.

mod check;
mod common;
mod node;
mod other;
mod positions;
mod proxy;
mod reader;
mod resource;
mod route;
mod service;
mod up;

pub use up::{parse_up_file, parse_up_str};

use std::path::Path;

use node::Value;
use reader::Cx;

use crate::{Error, ErrorKind, Errors, Resource};

/// Parses every resource in `text`: multi-document YAML (`---`), a JSON object,
/// or a JSON array of objects. Each resource is checked on its own (names,
/// ranges, regexes, "exactly one of" rules…); checks across resources happen in
/// [`crate::Snapshot::build`].
///
/// # Errors
/// Every problem found, each with `source_name`, line, column and field path.
///
/// ```
/// let text = "kind: Service\nmetadata: {name: web}\nspec: {timeout: 5}\n";
/// let errors = sinew_model::parse_str("web.yaml", text).unwrap_err();
/// assert_eq!(errors.to_string(), "web.yaml:3:17: spec.timeout: duration needs a unit (e.g. 5s)");
/// ```
pub fn parse_str(source_name: &str, text: &str) -> Result<Vec<Resource>, Errors> {
    let (docs, syntax) = node::parse_documents(text);
    let mut cx = Cx::new(source_name);
    let mut out = Vec::new();
    for doc in docs.iter().filter(|d| !d.is_null()) {
        match &doc.value {
            Value::Seq(items) => {
                out.extend(
                    items
                        .iter()
                        .filter_map(|item| resource::resource(&mut cx, item, "")),
                );
            }
            _ => out.extend(resource::resource(&mut cx, doc, "")),
        }
    }
    if let Some(e) = syntax {
        let msg = format!("invalid YAML/JSON: {}", e.message);
        cx.errors.push(Error::new(
            ErrorKind::Syntax,
            source_name,
            e.line,
            e.col,
            "",
            msg,
        ));
    }
    if cx.errors.is_empty() {
        return Ok(out);
    }
    let mut errors = cx.errors;
    errors.sort_by_key(|e| (e.line, e.column));
    Err(Errors(errors))
}

/// Reads `path` and parses it with [`parse_str`], naming errors after the path.
///
/// # Errors
/// An [`ErrorKind::Io`] error when the file cannot be read, else those of [`parse_str`].
pub fn parse_file(path: impl AsRef<Path>) -> Result<Vec<Resource>, Errors> {
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
    parse_str(&name, &text)
}
