//! `Pattern`: a regular expression kept with its source text, matched against whole values.

use std::fmt;

/// A compiled regular expression that must match the whole input
/// (it is anchored as `^(?:SOURCE)$`). Compares and serializes as its source.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    regex: regex::Regex,
}

impl Pattern {
    /// Compiles `source`, anchored at both ends.
    ///
    /// # Errors
    /// The regex error when `source` does not compile.
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        let regex = regex::Regex::new(&format!("^(?:{source})$"))?;
        Ok(Self {
            source: source.to_owned(),
            regex,
        })
    }

    /// The expression as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the whole of `value` matches.
    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_value_only() {
        let p = Pattern::new("/api/v[0-9]+").unwrap();
        assert!(p.is_match("/api/v2"));
        assert!(!p.is_match("/api/v2/x"));
        assert!(!p.is_match("x/api/v2"));
        assert!(Pattern::new("(").is_err());
    }
}
