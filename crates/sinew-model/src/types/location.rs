//! `Location`: where a resource was read from, with the line and column of the fields other resources point at.

use std::fmt;
use std::sync::Arc;

/// Where a resource was read from, for errors that involve several resources.
///
/// Besides the resource's first line it keeps the position of the fields that
/// checks across resources name (see [`FieldPositions`]), so such an error can
/// point at `FILE:LINE:COL` of the offending field. A location is provenance,
/// not content: resources compare equal (`==`) and serialize the same wherever
/// they were read from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The source name given to the parser (usually a file path).
    pub file: String,
    /// 1-based line of the resource's first line.
    pub line: u32,
    /// Positions of the fields that cross-resource checks point at.
    pub fields: FieldPositions,
}

impl Location {
    /// 1-based (line, column) of `field` (a path like `spec.hosts[1]`); when
    /// that field's position was not kept, the resource's first line and column 0.
    pub fn position(&self, field: &str) -> (u32, u32) {
        self.fields.get(field).unwrap_or((self.line, 0))
    }

    /// The place of `field`, shown as `FILE:LINE:COL` (see [`Location::position`]).
    ///
    /// ```
    /// let text = "kind: Service\nmetadata:\n  name: web\nspec: {}\n";
    /// let all = sinew_model::parse_str("web.yaml", text).unwrap();
    /// let loc = all[0].location();
    /// assert_eq!(loc.place("metadata.name").to_string(), "web.yaml:3:9");
    /// assert_eq!(loc.place("spec.nothing").to_string(), "web.yaml:1");
    /// ```
    pub fn place(&self, field: &str) -> Place<'_> {
        let (line, column) = self.position(field);
        Place {
            file: &self.file,
            line,
            column,
        }
    }
}

/// `FILE:LINE` of the resource's first line.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A position in a source: `FILE:LINE:COL`, or `FILE:LINE` when the column is unknown (0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place<'a> {
    /// The source name.
    pub file: &'a str,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        Ok(())
    }
}

/// Field path → 1-based (line, column) of its value, for the few fields of a
/// resource that checks across resources name.
///
/// Kept by the parser for `kind` and `metadata.name` of every resource, and:
/// Route `spec.hosts[i]`, `spec.rules[i].backends[j].service`, `.subset` and
/// `.failover[k]`,
/// `spec.rules[i].mirror.service`; Proxy `spec.listen.tcp[i].service`; Service
/// `spec.protocol`. Only these, so that a control plane holding tens of
/// thousands of resources pays a few dozen bytes per reference, not a copy of
/// the document tree. Stored as one shared, immutable slice sorted by path
/// (cheap to clone, looked up by binary search). Empty for resources built in
/// code; [`Location::position`] then falls back to the resource's line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldPositions(Option<Arc<[Entry]>>);

/// (field path, line, column).
type Entry = (Box<str>, u32, u32);

impl FieldPositions {
    /// From (path, line, column) entries in any order; for a path given twice the first is kept.
    pub fn new(entries: impl IntoIterator<Item = (String, u32, u32)>) -> Self {
        let mut v: Vec<Entry> = entries
            .into_iter()
            .map(|(p, l, c)| (p.into_boxed_str(), l, c))
            .collect();
        if v.is_empty() {
            return Self(None);
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        Self(Some(v.into()))
    }

    /// The (line, column) of `field`, if kept.
    pub fn get(&self, field: &str) -> Option<(u32, u32)> {
        let all = self.0.as_deref()?;
        let i = all.binary_search_by(|e| (*e.0).cmp(field)).ok()?;
        all.get(i).map(|e| (e.1, e.2))
    }

    /// Number of kept fields.
    pub fn len(&self) -> usize {
        self.0.as_deref().map_or(0, <[_]>::len)
    }

    /// Whether no field position is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// (path, line, column) of every kept field, sorted by path.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32, u32)> + '_ {
        self.0
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|e| (&*e.0, e.1, e.2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_found_by_path_and_first_wins() {
        let f = FieldPositions::new([
            ("spec.hosts[1]".to_owned(), 4, 9),
            ("kind".to_owned(), 1, 7),
            ("spec.hosts[0]".to_owned(), 3, 9),
            ("kind".to_owned(), 99, 99),
        ]);
        assert_eq!(f.len(), 3);
        assert_eq!(f.get("kind"), Some((1, 7)));
        assert_eq!(f.get("spec.hosts[1]"), Some((4, 9)));
        assert_eq!(f.get("spec.hosts"), None);
        let paths: Vec<&str> = f.iter().map(|e| e.0).collect();
        assert_eq!(paths, ["kind", "spec.hosts[0]", "spec.hosts[1]"]);
    }

    #[test]
    fn unknown_fields_fall_back_to_the_resource_line() {
        let loc = Location {
            file: "a.yaml".into(),
            line: 5,
            fields: FieldPositions::new([("metadata.name".to_owned(), 7, 9)]),
        };
        assert_eq!(loc.position("metadata.name"), (7, 9));
        assert_eq!(loc.place("metadata.name").to_string(), "a.yaml:7:9");
        assert_eq!(loc.position("spec"), (5, 0));
        assert_eq!(loc.place("spec").to_string(), "a.yaml:5");
        assert!(Location::default().fields.is_empty());
    }
}
