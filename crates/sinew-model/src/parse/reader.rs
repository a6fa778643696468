//! The decoding context: reads typed values out of nodes, recording each error with its field path.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use super::node::{Node, Value};
use crate::{Duration, Error, ErrorKind};

/// Result of decoding one value: `None` means an error was recorded in the [`Cx`].
pub(crate) type D<T> = Option<T>;

/// A decoder of one value at a field path.
pub(crate) trait Decoder<T>: FnOnce(&mut Cx<'_>, &Node, &str) -> D<T> {}
impl<T, F: FnOnce(&mut Cx<'_>, &Node, &str) -> D<T>> Decoder<T> for F {}

/// Collects errors for one source file.
#[derive(Debug)]
pub(crate) struct Cx<'f> {
    pub(crate) file: &'f str,
    pub(crate) errors: Vec<Error>,
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// "`a`, `b`, `c`".
pub(crate) fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<'f> Cx<'f> {
    pub(crate) fn new(file: &'f str) -> Self {
        Self {
            file,
            errors: Vec::new(),
        }
    }

    /// Records an error at `node`.
    pub(crate) fn err(&mut self, kind: ErrorKind, node: &Node, path: &str, msg: impl Into<String>) {
        self.errors
            .push(Error::new(kind, self.file, node.line, node.col, path, msg));
    }

    /// Records an invalid value at `node`; returns `None` for chaining.
    pub(crate) fn invalid<T>(&mut self, node: &Node, path: &str, msg: impl Into<String>) -> D<T> {
        self.err(ErrorKind::InvalidValue, node, path, msg);
        None
    }

    fn wrong_type<T>(&mut self, node: &Node, path: &str, expected: &str) -> D<T> {
        let msg = format!("expected {expected}, found {}", node.describe());
        self.err(ErrorKind::InvalidType, node, path, msg);
        None
    }

    /// Opens a map for field-by-field reading.
    pub(crate) fn map<'n>(&mut self, node: &'n Node, path: &str) -> D<MapReader<'n>> {
        let Value::Map(entries) = &node.value else {
            return self.wrong_type(node, path, "a map");
        };
        let mut reader = MapReader {
            node,
            path: path.to_owned(),
            entries: Vec::with_capacity(entries.len()),
            known: Vec::new(),
        };
        for (k, v) in entries {
            let Some(name) = self.key(k, path) else {
                continue;
            };
            if reader.entries.iter().any(|e| e.name == name) {
                let msg = format!("duplicate field `{name}`");
                self.err(ErrorKind::DuplicateField, k, &join(path, name), msg);
                continue;
            }
            reader.entries.push(Entry {
                name,
                key: k,
                value: v,
                used: false,
            });
        }
        Some(reader)
    }

    fn key<'n>(&mut self, k: &'n Node, path: &str) -> D<&'n str> {
        match &k.value {
            Value::Scalar { text, .. } => Some(text),
            _ => self.wrong_type(k, path, "a field name"),
        }
    }

    /// Decodes every item of a list (a null is an empty list).
    pub(crate) fn list<T>(
        &mut self,
        node: &Node,
        path: &str,
        mut item: impl FnMut(&mut Cx<'_>, &Node, &str) -> D<T>,
    ) -> D<Vec<T>> {
        if node.is_null() {
            return Some(Vec::new());
        }
        let Value::Seq(items) = &node.value else {
            return self.wrong_type(node, path, "a list");
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, n) in items.iter().enumerate() {
            match item(self, n, &index(path, i)) {
                Some(v) => out.push(v),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Decodes a map with user-chosen keys (`{NAME: VALUE}`); `key` checks each name.
    pub(crate) fn named_map<T>(
        &mut self,
        node: &Node,
        path: &str,
        mut key: impl FnMut(&mut Cx<'_>, &Node, &str, &str) -> D<String>,
        mut value: impl FnMut(&mut Cx<'_>, &Node, &str) -> D<T>,
    ) -> D<BTreeMap<String, T>> {
        if node.is_null() {
            return Some(BTreeMap::new());
        }
        let mut m = self.map(node, path)?;
        let mut out = BTreeMap::new();
        let mut ok = true;
        for e in &mut m.entries {
            e.used = true;
            let p = join(path, e.name);
            let k = key(self, e.key, &p, e.name);
            let v = value(self, e.value, &p);
            match (k, v) {
                (Some(k), Some(v)) => {
                    if out.insert(k.clone(), v).is_some() {
                        let msg = format!("`{k}` is given twice (names are case-insensitive)");
                        self.err(ErrorKind::DuplicateField, e.key, &p, msg);
                        ok = false;
                    }
                }
                _ => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// A `{string: string}` map (labels).
    pub(crate) fn string_map(&mut self, node: &Node, path: &str) -> D<BTreeMap<String, String>> {
        self.named_map(node, path, |_, _, _, k| Some(k.to_owned()), string)
    }
}

/// Any scalar as text (numbers and booleans are taken as written).
pub(crate) fn string(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    match &node.value {
        Value::Scalar { text, .. } if !node.is_null() => Some(text.clone()),
        _ => cx.wrong_type(node, path, "a string"),
    }
}

/// A non-empty string.
pub(crate) fn nonempty(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<String> {
    let s = string(cx, node, path)?;
    if s.is_empty() {
        return cx.invalid(node, path, "must not be empty");
    }
    Some(s)
}

fn plain(node: &Node) -> Option<&str> {
    match &node.value {
        Value::Scalar { text, plain: true } => Some(text),
        _ => None,
    }
}

/// An unsigned integer within `T`'s range.
pub(crate) fn uint<T: TryFrom<u64>>(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<T> {
    let Some(n) = plain(node).and_then(|t| t.parse::<u64>().ok()) else {
        return cx.wrong_type(node, path, "a whole number");
    };
    match T::try_from(n) {
        Ok(v) => Some(v),
        Err(_) => cx.invalid(node, path, format!("{n} is too large")),
    }
}

/// A finite number.
pub(crate) fn float(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<f64> {
    match plain(node).and_then(|t| t.parse::<f64>().ok()) {
        Some(v) if v.is_finite() => Some(v),
        _ => cx.wrong_type(node, path, "a number"),
    }
}

/// `true` or `false`.
pub(crate) fn boolean(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<bool> {
    match plain(node) {
        Some("true" | "True" | "TRUE") => Some(true),
        Some("false" | "False" | "FALSE") => Some(false),
        _ => cx.wrong_type(node, path, "`true` or `false`"),
    }
}

/// A duration with a unit (`250ms`).
pub(crate) fn duration(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<Duration> {
    let text = string(cx, node, path)?;
    match text.parse::<Duration>() {
        Ok(d) => Some(d),
        Err(e) => cx.invalid(node, path, e.to_string()),
    }
}

/// `IP:PORT`.
pub(crate) fn socket_addr(cx: &mut Cx<'_>, node: &Node, path: &str) -> D<SocketAddr> {
    let text = string(cx, node, path)?;
    match text.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => cx.invalid(
            node,
            path,
            format!(
                "`{text}` is not an address; expected IP:PORT like 127.0.0.1:8080 or [::1]:8080"
            ),
        ),
    }
}

/// One of a fixed set of words, mapped to values.
pub(crate) fn one_of<T: Copy>(
    cx: &mut Cx<'_>,
    node: &Node,
    path: &str,
    choices: &[(&str, T)],
) -> D<T> {
    let text = string(cx, node, path)?;
    if let Some((_, v)) = choices.iter().find(|(name, _)| *name == text) {
        return Some(*v);
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    cx.invalid(
        node,
        path,
        format!(
            "unknown value `{text}`, expected one of {}",
            quoted_list(&names)
        ),
    )
}

struct Entry<'n> {
    name: &'n str,
    key: &'n Node,
    value: &'n Node,
    used: bool,
}

/// Reads the fields of one map; [`MapReader::finish`] reports the fields nobody asked for.
pub(crate) struct MapReader<'n> {
    node: &'n Node,
    path: String,
    entries: Vec<Entry<'n>>,
    known: Vec<&'static str>,
}

impl std::fmt::Debug for MapReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapReader")
            .field("path", &self.path)
            .finish()
    }
}

impl<'n> MapReader<'n> {
    /// The field path of `key` in this map.
    pub(crate) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// The value of `key` (a null counts as absent), marking the field as known.
    pub(crate) fn get(&mut self, key: &'static str) -> Option<&'n Node> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        let e = self.entries.iter_mut().find(|e| e.name == key)?;
        e.used = true;
        (!e.value.is_null()).then_some(e.value)
    }

    /// Whether `key` is present with a non-null value (does not mark it known).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.name == key && !e.value.is_null())
    }

    /// A required field.
    pub(crate) fn req<T>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &'static str,
        f: impl Decoder<T>,
    ) -> D<T> {
        let path = self.path_of(key);
        match self.get(key) {
            Some(n) => f(cx, n, &path),
            None => {
                let msg = format!("missing required field `{key}`");
                cx.err(ErrorKind::MissingField, self.node, &path, msg);
                None
            }
        }
    }

    /// An optional field: `Some(None)` when absent.
    pub(crate) fn opt<T>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &'static str,
        f: impl Decoder<T>,
    ) -> D<Option<T>> {
        let path = self.path_of(key);
        match self.get(key) {
            Some(n) => f(cx, n, &path).map(Some),
            None => Some(None),
        }
    }

    /// An optional field with a default.
    pub(crate) fn or<T>(
        &mut self,
        cx: &mut Cx<'_>,
        key: &'static str,
        default: T,
        f: impl Decoder<T>,
    ) -> D<T> {
        self.opt(cx, key, f).map(|v| v.unwrap_or(default))
    }

    /// Reports every field that was not asked for.
    pub(crate) fn finish(self, cx: &mut Cx<'_>) {
        for e in self.entries.iter().filter(|e| !e.used) {
            let msg = format!(
                "unknown field `{}`, expected one of {}",
                e.name,
                quoted_list(&self.known)
            );
            cx.err(
                ErrorKind::UnknownField,
                e.key,
                &join(&self.path, e.name),
                msg,
            );
        }
    }
}

impl<'n> MapReader<'n> {
    /// The value node of `key` if present, else the map itself (for placing errors).
    pub(crate) fn node_of(&self, key: &str) -> &'n Node {
        self.entries
            .iter()
            .find(|e| e.name == key)
            .map_or(self.node, |e| e.value)
    }
}
