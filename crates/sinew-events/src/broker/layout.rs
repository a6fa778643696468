//! The broker's directory: what lives where, the names that may appear in
//! it, and the epoch.
//!
//! ```text
//! <dir>/.lock                          exclusive flock while a broker has it open
//! <dir>/epoch                          decimal, bumped at every open (the high half of generations)
//! <dir>/cursors.log                    consumer-group cursors (cursors.rs)
//! <dir>/topics/<topic>/<partition>/    one PartitionLog per partition, numbered 0..n
//! <dir>/staging/<topic>/               a topic being created
//! ```
//!
//! A topic is created whole or not at all: its partition directories are
//! made under `staging/`, synced, and the topic directory is renamed into
//! `topics/` (then `topics/` is synced). So a topic's partition count is
//! the number of its partition directories, and a crash mid-creation
//! leaves only a staging directory, which the next open removes.

use std::fs;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::MAX_PARTITIONS;
use crate::error::{Error, Result};
use crate::files;

/// The longest topic name, as `sinew-model` allows.
pub(crate) const MAX_TOPIC_BYTES: usize = 249;
/// The longest group or member name.
pub(crate) const MAX_NAME_BYTES: usize = 256;

/// Where the topics are.
pub(crate) fn topics_dir(dir: &Path) -> PathBuf {
    dir.join("topics")
}

/// Where topics are assembled before they appear in `topics/`.
fn staging_dir(dir: &Path) -> PathBuf {
    dir.join("staging")
}

/// The directory of `topic`'s `partition`.
pub(crate) fn partition_dir(dir: &Path, topic: &str, partition: u32) -> PathBuf {
    topics_dir(dir).join(topic).join(partition.to_string())
}

/// Checks a topic name: 1..=249 bytes of `[a-z0-9._-]` (the model's rule),
/// and not `.` or `..` (it names a directory).
pub(crate) fn check_topic(name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > MAX_TOPIC_BYTES {
        "a topic name has 1 to 249 characters"
    } else if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(&c))
    {
        "a topic name uses only a-z, 0-9, '.', '_' and '-'"
    } else if name == "." || name == ".." {
        "a topic cannot be named . or .."
    } else {
        return Ok(());
    };
    Err(Error::invalid_name("topic", name, reason))
}

/// Checks a group or member name: 1..=256 bytes, no control characters.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() || name.len() > MAX_NAME_BYTES {
        "a name has 1 to 256 bytes"
    } else if name.chars().any(char::is_control) {
        "a name has no control characters"
    } else {
        return Ok(());
    };
    Err(Error::invalid_name(what, name, reason))
}

/// Creates the layout's directories if needed, takes the directory lock,
/// and removes what an interrupted topic creation left.
pub(crate) fn prepare(dir: &Path) -> Result<fs::File> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| Error::io("create_dir", dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::sync_dir(parent)?;
        }
    }
    let lock = files::lock_dir(dir)?;
    for sub in [topics_dir(dir), staging_dir(dir)] {
        if !sub.is_dir() {
            fs::create_dir(&sub).map_err(|e| Error::io("create_dir", &sub, e))?;
            files::sync_dir(dir)?;
        }
    }
    let staging = staging_dir(dir);
    let entries = fs::read_dir(&staging).map_err(|e| Error::io("read_dir", &staging, e))?;
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("read_dir", &staging, e))?
            .path();
        warn!(path = %path.display(), "removing a topic whose creation was interrupted");
        fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
    }
    Ok(lock)
}

/// Reads the epoch, stores it plus one durably, and returns the new one.
pub(crate) fn bump_epoch(dir: &Path) -> Result<u64> {
    let path = dir.join("epoch");
    let previous = match fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|_| Error::Layout {
            path: path.clone(),
            reason: "the epoch file does not hold a number",
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let epoch = previous + 1;
    if epoch > u64::from(u32::MAX) {
        return Err(Error::Layout {
            path,
            reason: "the epoch is exhausted",
        });
    }
    // Fixed width, so an existing file is overwritten in place: no new
    // block, no temporary file — a broker on a full disk still opens.
    let text = format!("{epoch:020}\n");
    match fs::OpenOptions::new().write(true).open(&path) {
        Ok(file) => {
            use std::os::unix::fs::FileExt;
            file.write_all_at(text.as_bytes(), 0)
                .and_then(|()| file.set_len(text.len() as u64))
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::io("write", &path, e))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(dir, &path, text.as_bytes())?;
        }
        Err(e) => return Err(Error::io("open", &path, e)),
    }
    Ok(epoch)
}

/// Replaces `path` (in `dir`) with `bytes`: write a temporary file, sync
/// it, rename it over `path`, sync `dir`.
pub(crate) fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut file, bytes)?;
        file.sync_all()
    };
    write().map_err(|e| Error::io("write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))?;
    files::sync_dir(dir)
}

/// Every topic under `dir` and its partition count, by name.
pub(crate) fn list_topics(dir: &Path) -> Result<Vec<(String, u32)>> {
    let topics = topics_dir(dir);
    let entries = fs::read_dir(&topics).map_err(|e| Error::io("read_dir", &topics, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read_dir", &topics, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str().filter(|n| check_topic(n).is_ok()) else {
            warn!(path = %path.display(), "ignoring an entry that is not a topic");
            continue;
        };
        if !path.is_dir() {
            warn!(path = %path.display(), "ignoring a file among the topics");
            continue;
        }
        found.push((name.to_owned(), count_partitions(&path)?));
    }
    found.sort();
    Ok(found)
}

/// How many partition directories `0..n` a topic directory holds.
fn count_partitions(topic: &Path) -> Result<u32> {
    let entries = fs::read_dir(topic).map_err(|e| Error::io("read_dir", topic, e))?;
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read_dir", topic, e))?;
        let name = entry.file_name();
        let number = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok().filter(|p| p.to_string() == n));
        match number {
            Some(p) if entry.path().is_dir() => numbers.push(p),
            _ => warn!(path = %entry.path().display(), "ignoring an entry that is not a partition"),
        }
    }
    numbers.sort_unstable();
    let contiguous = numbers.iter().zip(0u32..).all(|(p, i)| *p == i);
    if numbers.is_empty() || !contiguous {
        return Err(Error::Layout {
            path: topic.to_path_buf(),
            reason: "a topic's partition directories must be numbered 0..n",
        });
    }
    if numbers.len() > MAX_PARTITIONS as usize {
        return Err(Error::Layout {
            path: topic.to_path_buf(),
            reason: "a topic has more than 1024 partitions",
        });
    }
    Ok(numbers.len() as u32)
}

/// `topic`'s partition count: that of its directory if it exists (a
/// creation whose logs then failed to open), else `partitions` after
/// creating it.
pub(crate) fn ensure_topic(dir: &Path, topic: &str, partitions: u32) -> Result<u32> {
    let path = topics_dir(dir).join(topic);
    if path.is_dir() {
        return count_partitions(&path);
    }
    create_topic(dir, topic, partitions)?;
    Ok(partitions)
}

/// Creates `topic` with `partitions` empty partition directories, all at
/// once (see the module doc). The logs inside are created when opened.
fn create_topic(dir: &Path, topic: &str, partitions: u32) -> Result<()> {
    let staged = staging_dir(dir).join(topic);
    if staged.exists() {
        fs::remove_dir_all(&staged).map_err(|e| Error::io("remove", &staged, e))?;
    }
    fs::create_dir(&staged).map_err(|e| Error::io("create_dir", &staged, e))?;
    for partition in 0..partitions {
        let path = staged.join(partition.to_string());
        fs::create_dir(&path).map_err(|e| Error::io("create_dir", &path, e))?;
    }
    files::sync_dir(&staged)?;
    let target = topics_dir(dir).join(topic);
    fs::rename(&staged, &target).map_err(|e| Error::io("rename", &target, e))?;
    files::sync_dir(&topics_dir(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_model() {
        for ok in ["orders", "orders.dlq", "a_b-c.9", ".x", &"x".repeat(249)] {
            assert!(check_topic(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "Orders", "a/b", "a b", &"x".repeat(250)] {
            let error = check_topic(bad).expect_err(bad);
            assert_eq!(error.kind(), crate::ErrorKind::InvalidInput);
        }
        assert!(check_name("group", "shop/orders-sub").is_ok());
        assert!(check_name("member", "").is_err());
        assert!(check_name("member", "a\nb").is_err());
        assert!(check_name("member", &"m".repeat(257)).is_err());
    }
}
