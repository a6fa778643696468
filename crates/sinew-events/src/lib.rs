//! The Sinew event broker: a durable, segmented, append-only log per topic
//! partition, and on top of it the broker — topics, key → partition, ce-id
//! de-duplication, long-poll fetch, consumer groups with durable cursors.
//!
//! The publish API, the delivery loop and the gRPC service are built on
//! [`EventStore`] elsewhere: the embedded [`Broker`], or (feature
//! `jetstream`) a NATS JetStream server with the same API
//! (`jetstream.rs`, which says where its semantics differ). The embedded
//! broker knows no network.
//!
//! ```text
//! publish ─ Broker (validate, partition, de-dup) ─ Committer per partition ─ ack after fsync
//! append ─ Committer (queue, group) ─ PartitionLog::stage ─ commit: one write + one sync_data ─ ack
//! fetch  ─ PartitionLog::read ─ segment (sparse index → position) ─ Cursor ─ decode ─ Records
//! open   ─ lock dir ─ list segments ─ scan each (CRC, layout, offsets) ─ truncate torn tail of the last
//! ```
//!
//! The broker's own contract (durability of publishes and cursors,
//! de-duplication, per-key order, assignment, fencing) is in [`broker`];
//! the log's is below.
//!
//! # Code map
//!
//! - [`record`] — the frame format, encode and bounds-checked decode.
//! - `segment.rs` — one segment file: open-time scan and recovery, the
//!   write and its `sync_data`, cursors.
//! - `index.rs` — a segment's sparse in-memory index.
//! - `cursor.rs` — frames read from a file a chunk at a time.
//! - `files.rs` — names, listing, directory fsync, the directory lock.
//! - `log.rs` — [`PartitionLog`]: segments, roll, read, time lookup, retention.
//! - `commit.rs` — [`Committer`]: group commit on the blocking pool.
//! - `error.rs` — [`Error`] and its [`ErrorKind`]; `config.rs` — [`LogConfig`].
//! - `broker.rs` + `broker/` — [`Broker`]: topics, publish, fetch, groups,
//!   cursors (its own code map is in `broker.rs`).
//! - `store.rs` — [`EventStore`]: one API over either backend.
//! - `jetstream.rs` — the JetStream backend (feature `jetstream`).
//!
//! # On disk
//!
//! A broker's directory holds `topics/<topic>/<partition>/` (one log each),
//! `cursors.log`, `epoch` and `.lock` (see `broker/layout.rs`). A partition
//! is a directory: `.lock` (an exclusive `flock` while open) and
//! segments named by their first offset in 20 digits,
//! `00000000000000000000.log`, `00000000000000001234.log`, … Each segment
//! is a plain concatenation of frames (see [`record`]):
//!
//! ```text
//! len u32 | crc32c u32 | offset u64 | timestamp_ms u64 | key_len u32 | key
//!         | header_count u16 | (name_len u16 | name | value_len u32 | value)* | value
//! ```
//!
//! all little-endian; `len` counts the bytes after it and the CRC-32C covers
//! everything after itself. There is no index file: each segment's sparse
//! index (offset → position and max-timestamp-so-far → position, every
//! ~4 KiB) is rebuilt by the scan at open.
//!
//! # Durability contract
//!
//! - **An append returns only after its bytes are `fdatasync`'ed.** One
//!   `write` and one `sync_data` per append (or per group, with
//!   [`Committer`]); a new segment's directory entry is synced before any
//!   record in it is acknowledged. An acknowledged record survives a process
//!   crash or power loss (given a disk that honours flushes).
//! - **A torn tail is truncated on open.** A crash mid-write leaves a partial
//!   or unsynced frame at the end of the last segment; open truncates from
//!   the first frame that fails its length bounds, checksum, layout or
//!   offset continuity, and logs how many bytes were cut.
//! - **Damage before the last segment fails [`PartitionLog::open`]** with
//!   [`Error::Corrupt`] (file and byte): a closed segment was synced whole,
//!   so a bad frame there is media damage, and dropping acknowledged records
//!   silently is not the log's call. A bad frame in the middle of the last
//!   segment is indistinguishable from a torn tail and is truncated with the
//!   records after it.
//! - **A failed sync poisons the log** (appends fail with [`Error::Poisoned`]
//!   until it is reopened and rescanned): after a failed `fsync` Linux may
//!   have dropped the dirty pages, and retrying would report success
//!   without the data. A failed write that could be undone (`ENOSPC`) leaves
//!   the log usable once space is freed.
//!
//! Not guaranteed:
//!
//! - A failed or unanswered append may still be on disk after a restart
//!   (written, then the sync failed or the process died before the answer):
//!   delivery is at-least-once; producers that retry may duplicate.
//! - Record contents are protected against damage, not against an attacker
//!   (CRC-32C, not a MAC). Appended bytes are not encrypted.
//! - Retention deletes are not synced: a deleted segment may reappear after
//!   a crash (harmless: it is older data, still contiguous).
//! - The log's reads do not wait for appends; the broker's `fetch` does
//!   (long poll on a per-partition watch of the next offset).
//!
//! # Why hand-written
//!
//! The log's hot path is sequential appends, batched by group commit and
//! made durable with exactly one `fdatasync` per batch, then sequential
//! reads by offset. A general key-value store (redb, sled, RocksDB) would
//! add its own write amplification (B-tree pages or LSM compaction over
//! data that is never updated), its own fsync policy that the group commit
//! could not control, and its own recovery; retention would be deletes
//! instead of unlinking whole files. Segment files plus a rebuilt sparse
//! index are the whole storage engine, a few hundred lines.

pub mod broker;
mod commit;
mod config;
mod cursor;
mod error;
mod files;
mod index;
#[cfg(feature = "jetstream")]
pub mod jetstream;
mod log;
pub mod record;
#[cfg(feature = "remote")]
pub mod remote;
mod segment;
mod store;

pub use broker::{
    event_id, split_event_headers, Assignment, Broker, BrokerConfig, Event, Published, ID_HEADER,
    MAX_ID_BYTES, MAX_PARTITIONS,
};
pub use commit::{CommitStats, Committer, CommitterConfig};
pub use config::{LogConfig, MAX_SEGMENT_BYTES};
pub use error::{Error, ErrorKind, Result};
pub use log::{PartitionLog, Retention};
pub use record::{Header, NewRecord, Record};
pub use store::EventStore;
