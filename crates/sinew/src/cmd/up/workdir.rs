//! The temporary directory of one `sinew up` run (sidecar configs and child
//! logs), named after the process id and removed when dropped.

use std::io;
use std::path::{Path, PathBuf};

/// `<temp>/sinew-up-<pid>/` with a `logs/` subdirectory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Creates it fresh (a stale one from an earlier process with the same pid is replaced).
    pub(crate) fn create() -> io::Result<WorkDir> {
        Self::create_at(std::env::temp_dir().join(format!("sinew-up-{}", std::process::id())))
    }

    fn create_at(root: PathBuf) -> io::Result<WorkDir> {
        if root.exists() {
            std::fs::remove_dir_all(&root)?;
        }
        std::fs::create_dir_all(root.join("logs"))?;
        Ok(WorkDir { root })
    }

    /// The directory itself (where configs go).
    pub(crate) fn path(&self) -> &Path {
        &self.root
    }

    /// Where child logs go.
    pub(crate) fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(dir = %self.root.display(), %error, "could not remove the work directory");
        }
    }
}

/// The last `lines` lines of a text file; empty if it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_logs_and_removed_on_drop() {
        let root =
            std::env::temp_dir().join(format!("sinew-up-workdir-test-{}", std::process::id()));
        let dir = WorkDir::create_at(root.clone()).expect("created");
        assert!(dir.logs().is_dir());
        let log = dir.logs().join("a.log");
        std::fs::write(&log, "one\ntwo\nthree\n").expect("write");
        assert_eq!(tail(&log, 2), "two\nthree");
        assert_eq!(tail(&log, 10), "one\ntwo\nthree");
        assert_eq!(tail(&dir.logs().join("missing.log"), 3), "");
        drop(dir);
        assert!(!root.exists());
    }
}
