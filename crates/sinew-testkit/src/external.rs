//! Skips for tests that need an external binary (design §5): `SKIPPED: <name> not installed`.

use std::path::PathBuf;

/// The full path of `name` on `PATH`, if it is installed.
pub fn external_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The path of the external binary `name`, or `None` after printing
/// `SKIPPED: <name> not installed` — unless `SINEW_REQUIRE_EXTERNAL=1`, where a
/// missing binary fails the test.
///
/// ```
/// let Some(_sh) = sinew_testkit::require_external("sh") else { return };
/// ```
#[expect(
    clippy::print_stdout,
    reason = "the skip line is the documented test output"
)]
pub fn require_external(name: &str) -> Option<PathBuf> {
    if let Some(found) = external_binary(name) {
        return Some(found);
    }
    if std::env::var("SINEW_REQUIRE_EXTERNAL").is_ok_and(|v| v == "1") {
        panic!("{name} not installed and SINEW_REQUIRE_EXTERNAL=1");
    }
    println!("SKIPPED: {name} not installed");
    None
}
