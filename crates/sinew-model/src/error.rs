//! `Error` and `Errors`: what went wrong, where (file:line:column) and in which field.

use std::fmt;

/// What kind of problem an [`Error`] reports; match on this, never on the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The text is not valid YAML/JSON.
    Syntax,
    /// A field that the type does not have.
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A field appears twice in one map.
    DuplicateField,
    /// A value of the wrong shape (e.g. a list where a map is expected).
    InvalidType,
    /// A value of the right shape that is not allowed (range, format, enum).
    InvalidValue,
    /// Two resources with the same kind, namespace and name.
    DuplicateResource,
    /// Two resources that claim the same thing (e.g. one host).
    Conflict,
    /// A reference to a resource (or part of one) that does not exist or does not fit.
    UnknownReference,
}

/// One problem in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Source name (file path), may be empty.
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column, 0 when unknown.
    pub column: u32,
    /// Field path such as `spec.rules[1].backends[0].weight`, may be empty.
    pub field: String,
    /// What is wrong, one sentence.
    pub message: String,
    /// The class of problem.
    pub kind: ErrorKind,
}

impl Error {
    /// A new error.
    pub fn new(
        kind: ErrorKind,
        file: &str,
        line: u32,
        column: u32,
        field: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
            kind,
        }
    }
}

/// `FILE:LINE:COL: FIELD: MESSAGE`, leaving out the parts that are unknown.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if self.line > 0 {
                write!(f, ":{}", self.line)?;
                if self.column > 0 {
                    write!(f, ":{}", self.column)?;
                }
            }
            f.write_str(": ")?;
        } else if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Every problem found in an input, in order of position; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Errors(pub Vec<Error>);

impl Errors {
    /// The errors as a slice.
    pub fn as_slice(&self) -> &[Error] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, Error> {
        self.0.iter()
    }
}

impl From<Error> for Errors {
    fn from(e: Error) -> Self {
        Self(vec![e])
    }
}

impl IntoIterator for Errors {
    type Item = Error;
    type IntoIter = std::vec::IntoIter<Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a Error;
    type IntoIter = std::slice::Iter<'a, Error>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One error per line.
impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_omits_unknown_parts() {
        let e = Error::new(ErrorKind::InvalidValue, "a.yaml", 3, 7, "spec.x", "bad");
        assert_eq!(e.to_string(), "a.yaml:3:7: spec.x: bad");
        let e = Error::new(ErrorKind::InvalidValue, "a.yaml", 3, 0, "", "bad");
        assert_eq!(e.to_string(), "a.yaml:3: bad");
        let e = Error::new(ErrorKind::Io, "a.yaml", 0, 0, "", "gone");
        assert_eq!(e.to_string(), "a.yaml: gone");
        let all = Errors(vec![
            Error::new(ErrorKind::Syntax, "f", 1, 1, "", "one"),
            Error::new(ErrorKind::Syntax, "f", 2, 1, "", "two"),
        ]);
        assert_eq!(all.to_string(), "f:1:1: one\nf:2:1: two");
    }
}
