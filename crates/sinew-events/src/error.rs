//! `Error`: what went wrong in the log or the broker, and `ErrorKind`: how
//! a caller answers it.
//!
//! Errors are `Clone` because one failed group commit answers every caller
//! in the group with the same error; the I/O source is shared in an `Arc`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::record::{Corruption, RecordError};

/// The log's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A log or broker failure. Classify it with [`Error::kind`], never by its text.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// A file system call failed.
    Io {
        /// What the log was doing (`"write"`, `"sync_data"`, `"open"`, …).
        op: &'static str,
        /// The file or directory it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        source: Arc<io::Error>,
    },
    /// A segment holds a damaged record where none may be: in a segment
    /// before the last one at open, or anywhere when reading.
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the damaged frame in that file.
        position: u64,
        /// What is wrong with it.
        reason: Corruption,
    },
    /// A segment does not start where the previous one ends.
    Gap {
        /// The segment file that does not follow on.
        path: PathBuf,
        /// The base offset it should have.
        expected: u64,
        /// The base offset its name gives.
        found: u64,
    },
    /// Another process (or log in this one) holds the directory's lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A read asked for an offset outside `first..=next`.
    OffsetOutOfRange {
        /// The offset asked for.
        requested: u64,
        /// The first offset still in the log.
        first: u64,
        /// The offset the next append will get.
        next: u64,
    },
    /// A record in an append cannot be encoded; nothing of the append was written.
    InvalidRecord {
        /// The record's index in the append.
        index: usize,
        /// What is wrong with it.
        source: RecordError,
    },
    /// One write would push the active segment past the 4 GiB a segment can address.
    BatchTooLarge {
        /// The bytes the write would bring the segment to.
        bytes: u64,
    },
    /// The configuration is not usable.
    InvalidConfig(&'static str),
    /// An earlier `sync_data` (or the undo of a failed write) failed, so the
    /// file's state is unknown; the log (or the broker's cursor file)
    /// refuses writes until reopened.
    Poisoned,
    /// The committer or the broker has stopped.
    Closed,
    /// A topic, group or member name is refused.
    InvalidName {
        /// What the name names: `"topic"`, `"group"` or `"member"`.
        what: &'static str,
        /// The name (cut to 300 bytes).
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An event of a publish is refused; nothing of the publish was written.
    InvalidEvent {
        /// The event's index in the publish.
        index: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The topic has no such partition.
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partitions: u32,
    },
    /// A cursor would point past the end of its partition.
    CursorOutOfRange {
        /// The next offset the cursor was to hold.
        requested: u64,
        /// The partition's next offset (the largest cursor allowed).
        next: u64,
    },
    /// A cursor commit by a member that does not own the partition in the
    /// generation it gave (it never did, lost it, or lost and regained it
    /// since): another member may already be delivering from the cursor.
    NotOwner {
        /// The consumer group.
        group: String,
        /// The topic.
        topic: String,
        /// The partition.
        partition: u32,
        /// The member that tried to commit.
        member: String,
        /// The generation it gave.
        generation: u64,
        /// The group's current generation (heartbeat to learn the assignment).
        current: u64,
    },
    /// The remote store (JetStream) refused or did not answer.
    Remote {
        /// What the store was doing (`"publish"`, `"read"`, …).
        op: &'static str,
        /// What the server or client said.
        message: String,
        /// The server is out of storage.
        storage_full: bool,
    },
    /// A standalone broker (`sinew broker`) refused the call: its error,
    /// by kind, as it answered.
    Refused {
        /// What the store was doing (`"publish"`, `"commit"`, …).
        op: &'static str,
        /// How the broker classed its error.
        kind: ErrorKind,
        /// What it said.
        message: String,
    },
    /// A file or directory under the broker's directory is not laid out as
    /// the broker writes it.
    Layout {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// How a caller should answer an [`Error`]: the publish API maps
/// `StorageFull` to 507, `InvalidInput` to 400, `Fenced` to 409 and `Io`,
/// `Corrupt` and `Unavailable` to 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The disk (or the user's quota) is full: `ENOSPC` / `EDQUOT`.
    StorageFull,
    /// Any other I/O failure.
    Io,
    /// Stored data is damaged, or segments do not follow on.
    Corrupt,
    /// The requested offset is not in the log.
    OutOfRange,
    /// The caller's input or configuration is refused.
    InvalidInput,
    /// The log cannot serve now: poisoned, locked elsewhere, or closed.
    Unavailable,
    /// A consumer-group member acted on a partition it does not own in the
    /// generation it gave: heartbeat, then act on the new assignment.
    Fenced,
}

impl Error {
    /// An I/O error during `op` on `path`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// How to answer this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Io { source, .. } => match source.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => ErrorKind::StorageFull,
                _ => ErrorKind::Io,
            },
            Self::Corrupt { .. } | Self::Gap { .. } => ErrorKind::Corrupt,
            Self::OffsetOutOfRange { .. } => ErrorKind::OutOfRange,
            Self::Layout { .. } => ErrorKind::Corrupt,
            Self::InvalidRecord { .. }
            | Self::BatchTooLarge { .. }
            | Self::InvalidConfig(_)
            | Self::InvalidName { .. }
            | Self::InvalidEvent { .. }
            | Self::UnknownPartition { .. }
            | Self::CursorOutOfRange { .. } => ErrorKind::InvalidInput,
            Self::Poisoned | Self::Locked { .. } | Self::Closed => ErrorKind::Unavailable,
            Self::NotOwner { .. } => ErrorKind::Fenced,
            Self::Refused { kind, .. } => *kind,
            Self::Remote { storage_full, .. } => {
                if *storage_full {
                    ErrorKind::StorageFull
                } else {
                    ErrorKind::Unavailable
                }
            }
        }
    }

    /// A refused name, cut to 300 bytes (on a character boundary) so an
    /// absurd input does not travel whole in the error.
    pub(crate) fn invalid_name(what: &'static str, name: &str, reason: &'static str) -> Self {
        let mut end = name.len().min(300);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Self::InvalidName {
            what,
            name: name[..end].to_owned(),
            reason,
        }
    }

    /// Whether the disk is full (`kind() == StorageFull`).
    pub fn is_storage_full(&self) -> bool {
        self.kind() == ErrorKind::StorageFull
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::Corrupt {
                path,
                position,
                reason,
            } => write!(
                f,
                "corrupt record in {} at byte {position}: {reason}",
                path.display()
            ),
            Self::Gap {
                path,
                expected,
                found,
            } => write!(
                f,
                "segment {} starts at offset {found}, the previous segment ends at {expected}",
                path.display()
            ),
            Self::Locked { path } => write!(f, "log directory is locked ({})", path.display()),
            Self::OffsetOutOfRange {
                requested,
                first,
                next,
            } => write!(
                f,
                "offset {requested} is outside the log ({first}..={next})"
            ),
            Self::InvalidRecord { index, source } => write!(f, "record {index}: {source}"),
            Self::BatchTooLarge { bytes } => write!(
                f,
                "append would bring the segment to {bytes} bytes, past the 4 GiB limit"
            ),
            Self::InvalidConfig(what) => write!(f, "invalid log configuration: {what}"),
            Self::Poisoned => f.write_str("log refuses appends after a failed sync; reopen it"),
            Self::Closed => f.write_str("closed: the log committer or broker has stopped"),
            Self::InvalidName { what, name, reason } => {
                write!(f, "invalid {what} name {name:?}: {reason}")
            }
            Self::InvalidEvent { index, reason } => write!(f, "event {index}: {reason}"),
            Self::UnknownPartition {
                topic,
                partition,
                partitions,
            } => write!(
                f,
                "topic {topic} has no partition {partition} (it has {partitions})"
            ),
            Self::CursorOutOfRange { requested, next } => write!(
                f,
                "cursor {requested} is past the end of the partition (next offset {next})"
            ),
            Self::NotOwner {
                group,
                topic,
                partition,
                member,
                generation,
                current,
            } => write!(
                f,
                "member {member} of group {group} does not own {topic}/{partition} in generation {generation} (current generation {current})"
            ),
            Self::Layout { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::Remote { op, message, .. } => write!(f, "event store {op}: {message}"),
            Self::Refused { op, message, .. } => write!(f, "broker {op}: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(&**source),
            Self::Corrupt { reason, .. } => Some(reason),
            Self::InvalidRecord { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_edquot_are_storage_full() {
        for errno in [libc::ENOSPC, libc::EDQUOT] {
            let error = Error::io("write", "/x", io::Error::from_raw_os_error(errno));
            assert_eq!(error.kind(), ErrorKind::StorageFull, "errno {errno}");
            assert!(error.is_storage_full());
        }
        let other = Error::io("write", "/x", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(other.kind(), ErrorKind::Io);
        assert!(!other.is_storage_full());
    }

    #[test]
    fn display_names_the_operation_and_file() {
        let error = Error::io(
            "sync_data",
            "/data/p0/00000000000000000000.log",
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let text = error.to_string();
        assert!(
            text.starts_with("sync_data /data/p0/00000000000000000000.log: "),
            "{text}"
        );
    }
}
