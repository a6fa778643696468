//! The log directory: segment file names, listing, directory fsync, the lock.
//!
//! A segment is `<base offset, 20 digits>.log`, so names sort by offset.
//! `.lock` holds an exclusive advisory lock while a log is open, so two
//! processes never append to one directory; the kernel drops it when the
//! holder dies, so a crash never leaves the directory locked.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The lock file's name.
const LOCK_FILE: &str = ".lock";

/// Digits in a segment file's base offset (`u64::MAX` has 20).
const BASE_DIGITS: usize = 20;

/// The path of the segment starting at `base`.
pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:0width$}.log", width = BASE_DIGITS))
}

/// The base offset a segment file name encodes, `None` for other names.
fn parse_segment_name(name: &OsStr) -> Option<u64> {
    let digits = name.to_str()?.strip_suffix(".log")?;
    if digits.len() != BASE_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Base offsets of the segments in `dir`, ascending. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read_dir", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read_dir", dir, e))?;
        if let Some(base) = parse_segment_name(&entry.file_name()) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Makes `dir`'s entries (created or removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync_dir", dir, e))
}

/// Takes `dir`'s exclusive lock; the returned file holds it until dropped.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        let path = segment_path(Path::new("/d"), 42);
        assert_eq!(path, Path::new("/d/00000000000000000042.log"));
        let name = path.file_name().expect("has a name");
        assert_eq!(parse_segment_name(name), Some(42));
        let max = segment_path(Path::new("/d"), u64::MAX);
        assert_eq!(
            parse_segment_name(max.file_name().expect("name")),
            Some(u64::MAX)
        );
        for other in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.idx",
            ".lock",
        ] {
            assert_eq!(parse_segment_name(OsStr::new(other)), None, "{other}");
        }
        // 20 digits above u64::MAX do not parse.
        assert_eq!(
            parse_segment_name(OsStr::new("99999999999999999999.log")),
            None
        );
    }
}
