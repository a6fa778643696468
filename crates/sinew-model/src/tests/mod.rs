//! Crate-level tests of parsing, validation and snapshots, by area.

mod cross;
mod documents;
mod errors;
mod listen;
mod rate_limit;
mod resilience;
mod snapshots;

use crate::{parse_str, Error, Errors, Resource};

/// Parses `text` as `t.yaml`, expecting success.
fn parse_ok(text: &str) -> Vec<Resource> {
    match parse_str("t.yaml", text) {
        Ok(r) => r,
        Err(e) => panic!("unexpected errors:\n{e}"),
    }
}

/// Parses `text` as `t.yaml`, expecting errors.
fn parse_err(text: &str) -> Vec<Error> {
    match parse_str("t.yaml", text) {
        Ok(r) => panic!("expected errors, parsed {} resources", r.len()),
        Err(Errors(e)) => e,
    }
}

/// Reads a file of `tests/data`.
fn data(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
