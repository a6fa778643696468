//! Which field positions a parsed resource keeps: those that checks across resources point at.

use super::node::{Node, Value};
use super::reader::{index, join};
use crate::{FieldPositions, Kind};

/// Kept for every kind: duplicate names and surplus Proxies/Meshes point here.
const COMMON: &[&str] = &["kind", "metadata.name"];

/// Kept per kind, as field paths where `[]` stands for every list index.
fn per_kind(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Route => &[
            "spec.hosts[]",
            "spec.rules[].backends[].service",
            "spec.rules[].backends[].subset",
            "spec.rules[].backends[].failover[]",
            "spec.rules[].mirror.service",
        ],
        Kind::Proxy => &["spec.listen.tcp[].service"],
        Kind::Service => &["spec.protocol"],
        Kind::Mesh | Kind::AuthorizationPolicy | Kind::Subscription => &[],
    }
}

/// The positions of a `kind` resource's referenced fields in its document `doc`.
/// Each position is that of the field's value, as in parse errors.
pub(crate) fn kept_positions(doc: &Node, kind: Kind) -> FieldPositions {
    let mut out = Vec::new();
    for pattern in COMMON.iter().chain(per_kind(kind)) {
        walk(doc, pattern, String::new(), &mut out);
    }
    FieldPositions::new(out)
}

/// Follows `rest` (a pattern) from `node`, whose path is `path`, recording every match.
fn walk(node: &Node, rest: &str, path: String, out: &mut Vec<(String, u32, u32)>) {
    if rest.is_empty() {
        out.push((path, node.line, node.col));
        return;
    }
    if let Some(after) = rest.strip_prefix("[]") {
        let Value::Seq(items) = &node.value else {
            return;
        };
        let after = after.strip_prefix('.').unwrap_or(after);
        for (i, item) in items.iter().enumerate() {
            walk(item, after, index(&path, i), out);
        }
        return;
    }
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    let (key, after) = rest.split_at(end);
    let after = after.strip_prefix('.').unwrap_or(after);
    let Value::Map(entries) = &node.value else {
        return;
    };
    let value = entries.iter().find_map(|(k, v)| match &k.value {
        Value::Scalar { text, .. } if text == key => Some(v),
        _ => None,
    });
    if let Some(v) = value.filter(|v| !v.is_null()) {
        walk(v, after, join(&path, key), out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::node::parse_documents;
    use super::*;

    fn kept(text: &str, kind: Kind) -> Vec<(String, u32, u32)> {
        let (docs, _) = parse_documents(text);
        kept_positions(&docs[0], kind)
            .iter()
            .map(|(p, l, c)| (p.to_owned(), l, c))
            .collect()
    }

    #[test]
    fn only_referenced_fields_are_kept_at_their_values() {
        let text = "kind: Route\nmetadata: {name: r, labels: {a: b}}\nspec:\n  hosts: [a, b]\n  rules:\n    - backends:\n        - service: x\n          subset: v1\n          failover: [v2]\n      mirror: {service: m}\n    - direct_response: {status: 404}\n";
        let got = kept(text, Kind::Route);
        let want = [
            ("kind", 1, 7),
            ("metadata.name", 2, 18),
            ("spec.hosts[0]", 4, 11),
            ("spec.hosts[1]", 4, 14),
            ("spec.rules[0].backends[0].failover[0]", 9, 22),
            ("spec.rules[0].backends[0].service", 7, 20),
            ("spec.rules[0].backends[0].subset", 8, 19),
            ("spec.rules[0].mirror.service", 10, 25),
        ];
        let want: Vec<(String, u32, u32)> = want
            .iter()
            .map(|(p, l, c)| ((*p).to_owned(), *l, *c))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn absent_null_and_misshapen_fields_are_skipped() {
        let got = kept(
            "kind: Proxy\nmetadata: {name: ~}\nspec: {listen: {tcp: {service: x}}}\n",
            Kind::Proxy,
        );
        assert_eq!(got, [("kind".to_owned(), 1, 7)]);
    }
}
