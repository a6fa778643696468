//! A YAML/JSON document tree that remembers the line and column of every key and value.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One value with its position (1-based line and column).
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) line: u32,
    pub(crate) col: u32,
}

/// The shape of a node.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    /// A scalar; `plain` is false for quoted and block scalars (always strings).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    /// Entries in source order; keys are nodes so their positions are kept.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// Whether this is a YAML null (`~`, `null`, or nothing at all).
    pub(crate) fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true }
            if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    /// A short description of the node's shape for "expected X, found Y" messages.
    pub(crate) fn describe(&self) -> String {
        match &self.value {
            _ if self.is_null() => "nothing (null)".to_owned(),
            Value::Scalar { text, plain: true } => format!("`{text}`"),
            Value::Scalar { text, plain: false } => format!("the string {text:?}"),
            Value::Seq(_) => "a list".to_owned(),
            Value::Map(_) => "a map".to_owned(),
        }
    }
}

/// A syntax error with its position.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
    pub(crate) line: u32,
    pub(crate) col: u32,
    pub(crate) message: String,
}

/// Parses every document of `text`. Documents completed before a syntax error are kept.
pub(crate) fn parse_documents(text: &str) -> (Vec<Node>, Option<SyntaxError>) {
    let mut builder = Builder::default();
    let result = Parser::new_from_str(text).load(&mut builder, true);
    let error = result.err().map(|e| SyntaxError {
        line: to_u32(e.marker().line()),
        col: to_u32(e.marker().col()) + 1,
        message: e.info().to_owned(),
    });
    (builder.docs, error)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        node: Node,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
}

impl Builder {
    fn complete(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = |value| Node {
            value,
            line: to_u32(mark.line()),
            col: to_u32(mark.col()) + 1,
        };
        match ev {
            Event::Scalar(text, style, anchor, _) => {
                let plain = style == TScalarStyle::Plain;
                self.complete(at(Value::Scalar { text, plain }), anchor);
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq {
                node: at(Value::Seq(Vec::new())),
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                node: at(Value::Map(Vec::new())),
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq {
                    mut node,
                    anchor,
                    items,
                }) => {
                    node.value = Value::Seq(items);
                    self.complete(node, anchor);
                }
                Some(Frame::Map {
                    mut node,
                    anchor,
                    entries,
                    ..
                }) => {
                    // A block map's start mark lies after its first key; anchor it at that key.
                    if let Some((k, _)) = entries.first() {
                        if (k.line, k.col) < (node.line, node.col) {
                            (node.line, node.col) = (k.line, k.col);
                        }
                    }
                    node.value = Value::Map(entries);
                    self.complete(node, anchor);
                }
                None => {}
            },
            Event::Alias(id) => {
                let node = self.anchors.get(&id).cloned().unwrap_or_else(|| {
                    at(Value::Scalar {
                        text: String::new(),
                        plain: true,
                    })
                });
                self.complete(node, 0);
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(node: &Node) -> Vec<(String, u32, u32)> {
        match &node.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(k, _)| match &k.value {
                    Value::Scalar { text, .. } => (text.clone(), k.line, k.col),
                    _ => (String::new(), k.line, k.col),
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn positions_are_one_based() {
        let (docs, err) = parse_documents("a: 1\nbb:\n  c: x\n---\nd: [1, 2]\n");
        assert!(err.is_none());
        assert_eq!(docs.len(), 2);
        assert_eq!(keys(&docs[0]), [("a".into(), 1, 1), ("bb".into(), 2, 1)]);
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert_eq!(keys(&entries[1].1), [("c".into(), 3, 3)]);
        assert_eq!((entries[0].1.line, entries[0].1.col), (1, 4));
    }

    #[test]
    fn block_maps_start_at_their_first_key() {
        let (docs, _) = parse_documents("# c\nkind: x\nlist:\n  - a: 1\n    b: 2\n");
        assert_eq!((docs[0].line, docs[0].col), (2, 1));
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        let Value::Seq(items) = &entries[1].1.value else {
            panic!("not a list")
        };
        assert_eq!((items[0].line, items[0].col), (4, 5));
    }

    #[test]
    fn json_is_accepted() {
        let (docs, err) = parse_documents("{\"a\":1,\n \"b\": [\"x\", {\"c\": true}]}");
        assert!(err.is_none(), "{err:?}");
        assert_eq!(keys(&docs[0]), [("a".into(), 1, 2), ("b".into(), 2, 2)]);
    }

    #[test]
    fn syntax_error_has_a_position_and_keeps_earlier_documents() {
        let (docs, err) = parse_documents("a: 1\n---\nb: [1, 2\n");
        assert_eq!(docs.len(), 1);
        let err = err.expect("syntax error");
        assert!(err.line >= 3, "{err:?}");
    }

    #[test]
    fn aliases_copy_the_anchored_node() {
        let (docs, _) = parse_documents("a: &x {k: v}\nb: *x\n");
        let Value::Map(entries) = &docs[0].value else {
            panic!("not a map")
        };
        assert!(matches!(&entries[1].1.value, Value::Map(e) if e.len() == 1));
    }
}
