//! Prometheus text exposition format 0.0.4 primitives: headers, sample lines, label escaping.

use std::fmt::{Display, Write};

use super::family::Family;
use super::instruments::Counter;
use super::labels::STATUS_CLASSES;
use super::names::MetricDef;

/// No label beyond the series key.
pub(super) const NO_EXTRA: Option<(&str, &str)> = None;

/// A float printed in Rust's shortest round-trip form (`0.0001`, `1`, `2.5`).
pub(super) struct Float(pub(super) f64);

impl Display for Float {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        Display::fmt(&self.0, f)
    }
}

/// Appends exposition lines to a `String` (whose `fmt::Write` never fails).
pub(super) struct Writer<'a> {
    pub(super) out: &'a mut String,
}

impl Writer<'_> {
    pub(super) fn header(&mut self, def: &MetricDef) {
        let _ = write!(
            self.out,
            "# HELP {} {}\n# TYPE {} {}\n",
            def.name,
            def.help,
            def.name,
            def.kind.as_str()
        );
    }

    /// Renders a keyed family: the header, then `each` for every series.
    pub(super) fn family<V>(
        &mut self,
        def: &MetricDef,
        family: &Family<V>,
        mut each: impl FnMut(&mut Self, &MetricDef, &[Box<str>], &V),
    ) {
        let series = family.lock();
        if series.is_empty() {
            return;
        }
        self.header(def);
        for (labels, handle) in series.iter() {
            each(self, def, labels, handle);
        }
    }

    /// The non-zero status-class counters of one series.
    pub(super) fn status_classes(
        &mut self,
        def: &MetricDef,
        labels: &[Box<str>],
        status: &[Counter],
    ) {
        for (class, counter) in STATUS_CLASSES.iter().zip(status) {
            let value = counter.get();
            if value > 0 {
                self.line(def, "", labels, Some(("status_class", *class)), value);
            }
        }
    }

    /// One sample: `values` pair up with the family's leading label names;
    /// `extra` is a label outside the series key (`le`, `status_class`...).
    pub(super) fn line<L: AsRef<str>>(
        &mut self,
        def: &MetricDef,
        suffix: &str,
        values: &[L],
        extra: Option<(&str, impl Display)>,
        value: impl Display,
    ) {
        self.out.push_str(def.name);
        self.out.push_str(suffix);
        let mut sep = '{';
        for (label, v) in def.labels.iter().zip(values) {
            self.out.push(sep);
            sep = ',';
            self.out.push_str(label);
            self.out.push_str("=\"");
            escape_label_value(self.out, v.as_ref());
            self.out.push('"');
        }
        if let Some((label, v)) = extra {
            self.out.push(sep);
            sep = ',';
            let _ = write!(self.out, "{label}=\"{v}\"");
        }
        if sep == ',' {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}
