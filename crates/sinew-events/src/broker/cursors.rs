//! Durable consumer-group cursors: one append-only file for every group,
//! group-committed, compacted by rewriting it whole.
//!
//! ```text
//! commit ─ queue ─ writer task: take everything queued ─ spawn_blocking {
//!   drop no-ops (a cursor never moves back unless reset) ─ encode ─ one write ─ one sync_data
//!   ─ update the map ─ compact if due } ─ answer each
//! ```
//!
//! **Format.** `cursors.log` is a run of frames in the log's own record
//! format ([`crate::record`]: length, CRC-32C, offset, timestamp, key,
//! value). A frame sets one cursor: the key is `group_len u16 | group |
//! topic_len u16 | topic | partition u32` (little-endian), the value the
//! next offset as `u64`, the offset field a sequence number that grows by
//! one per frame, the timestamp when it was written. The last frame for a
//! key wins.
//!
//! **Why one append-only file.** Cursor commits are frequent (after every
//! delivered batch) and tiny. A file per group rewritten atomically costs a
//! write, two fsyncs and a rename per commit and cannot share them between
//! groups; here every commit queued while the previous sync ran, from any
//! group, shares one `write` and one `fdatasync`, and the record format
//! brings the checksum and the torn-tail recovery already proven for the
//! log.
//!
//! **Compaction.** Once the file is past 1 MiB and four times the size of
//! its live cursors, the writer rewrites it between groups: every cursor
//! into `cursors.tmp`, `fsync`, rename over `cursors.log`, `fsync` of the
//! directory. A crash before the rename leaves the old file (the temporary
//! one is removed at open); after it, the new one.
//!
//! **Recovery.** Open reads the whole file (compaction keeps it small) and
//! stops at the first frame that fails its bounds, checksum, sequence or
//! key layout; the file is cut there, as a torn tail. No frame after it was
//! acknowledged before it, so nothing acknowledged is lost by a crash.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use super::{lock, now_ms};
use crate::error::{Error, Result};
use crate::files;
use crate::record::{self, NewRecord};

/// The cursor file's name.
const FILE: &str = "cursors.log";
/// The compaction's temporary file.
const TMP_FILE: &str = "cursors.tmp";
/// The file is not compacted below this size.
const COMPACT_MIN_BYTES: u64 = 1024 * 1024;
/// Nor while it is less than this many times its live content.
const COMPACT_RATIO: u64 = 4;
/// Requests that may wait in the queue.
const QUEUE_DEPTH: usize = 4096;
/// The most requests one group writes.
const MAX_GROUP: usize = 4096;

/// Which cursor: a group's position in one partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// The consumer group.
    pub(crate) group: String,
    /// The topic.
    pub(crate) topic: String,
    /// The partition.
    pub(crate) partition: u32,
}

impl Key {
    /// The key's bytes in a frame (see the module doc).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.group.len() + self.topic.len());
        // Both names were checked to be at most 256 bytes.
        out.extend_from_slice(&(self.group.len() as u16).to_le_bytes());
        out.extend_from_slice(self.group.as_bytes());
        out.extend_from_slice(&(self.topic.len() as u16).to_le_bytes());
        out.extend_from_slice(self.topic.as_bytes());
        out.extend_from_slice(&self.partition.to_le_bytes());
        out
    }

    /// A key from a frame's key bytes, `None` if they are not one.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let (group, rest) = Self::string(bytes)?;
        let (topic, rest) = Self::string(rest)?;
        let partition = u32::from_le_bytes(rest.try_into().ok()?);
        Some(Self {
            group,
            topic,
            partition,
        })
    }

    /// A `u16`-length-prefixed UTF-8 string and what follows it.
    fn string(bytes: &[u8]) -> Option<(String, &[u8])> {
        let (len, rest) = bytes.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len));
        let text = std::str::from_utf8(rest.get(..len)?).ok()?;
        Some((text.to_owned(), &rest[len..]))
    }
}

/// The cursors' current values, shared by the writer and the readers.
type Map = Arc<Mutex<HashMap<Key, u64>>>;

/// One request to the writer.
#[derive(Debug)]
enum Request {
    /// Set a cursor.
    Set {
        /// The cursor.
        key: Key,
        /// Its new next offset.
        next: u64,
        /// Allow it to move back (a reset).
        force: bool,
        /// Answered once durable (or refused as a no-op).
        reply: oneshot::Sender<Result<()>>,
    },
    /// Finish what is queued and stop.
    Close(oneshot::Sender<()>),
}

/// The durable cursors of every group.
#[derive(Debug)]
pub(crate) struct Cursors {
    /// The current values.
    map: Map,
    /// The writer's queue.
    tx: mpsc::Sender<Request>,
    /// The writer task.
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Cursors {
    /// Starts the writer for `file` (from [`CursorFile::open`]).
    pub(crate) fn start(file: CursorFile) -> Self {
        let map = Arc::clone(&file.map);
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(write_loop(file, rx));
        Self {
            map,
            tx,
            task: Mutex::new(Some(task)),
        }
    }

    /// The cursor's next offset, if it was ever set.
    pub(crate) fn get(&self, key: &Key) -> Option<u64> {
        lock(&self.map).get(key).copied()
    }

    /// Sets the cursor to `next` once that is durable. Without `force` a
    /// value at or below the current one changes nothing (and succeeds).
    pub(crate) async fn set(&self, key: Key, next: u64, force: bool) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let request = Request::Set {
            key,
            next,
            force,
            reply,
        };
        self.tx.send(request).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Writes what is queued, stops the writer and closes the file.
    pub(crate) async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Request::Close(reply)).await.is_ok() {
            let _ = done.await;
        }
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The writer task: one group of requests at a time.
async fn write_loop(mut file: CursorFile, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.recv().await {
        let mut sets = Vec::new();
        let mut replies = Vec::new();
        let mut close = None;
        let mut next = Some(first);
        while let Some(request) = next.take() {
            match request {
                Request::Set {
                    key,
                    next: offset,
                    force,
                    reply,
                } => {
                    sets.push((key, offset, force));
                    replies.push(reply);
                }
                Request::Close(reply) => {
                    close = Some(reply);
                    break;
                }
            }
            if sets.len() < MAX_GROUP {
                next = rx.try_recv().ok();
            }
        }
        if !sets.is_empty() {
            let done = tokio::task::spawn_blocking(move || {
                let results = file.apply(&sets);
                (file, results)
            })
            .await;
            match done {
                Ok((back, results)) => {
                    file = back;
                    for (reply, result) in replies.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(panic) => {
                    // The callers see their replies dropped (Closed).
                    error!(error = %panic, "cursor writer failed; cursors are closed");
                    return;
                }
            }
        }
        if let Some(reply) = close {
            drop(file);
            let _ = reply.send(());
            return;
        }
    }
}

/// The cursor file, owned by the writer (moved into each blocking call).
#[derive(Debug)]
pub(crate) struct CursorFile {
    /// The broker's directory.
    dir: PathBuf,
    /// `cursors.log`.
    path: PathBuf,
    /// The open file.
    file: File,
    /// Bytes of whole frames in it.
    size: u64,
    /// The next frame's sequence number.
    seq: u64,
    /// The cursors, shared with the readers.
    map: Map,
    /// Bytes a compacted file would hold.
    live_bytes: u64,
    /// Set when a sync failed: the file's state is unknown.
    poisoned: bool,
}

impl CursorFile {
    /// Opens (creating if needed) `dir`'s cursor file, recovering as the
    /// module doc says. Blocking.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE);
        let tmp = dir.join(TMP_FILE);
        match std::fs::remove_file(&tmp) {
            Ok(()) => warn!(path = %tmp.display(), "removed an interrupted cursor compaction"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &tmp, e)),
        }
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        if !existed {
            files::sync_dir(dir)?;
        }
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| Error::io("read", &path, e))?;
        let total = buf.len() as u64;
        let parsed = parse(&Bytes::from(buf));
        if parsed.end < total {
            warn!(
                path = %path.display(),
                position = parsed.end,
                cut_bytes = total - parsed.end,
                reason = parsed.stop,
                "truncating a torn or corrupt tail of the cursor file"
            );
            file.set_len(parsed.end)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("truncate", &path, e))?;
        }
        let live_bytes = parsed.map.keys().map(frame_len).sum();
        info!(path = %path.display(), cursors = parsed.map.len(), bytes = parsed.end, "cursors loaded");
        let mut cursors = Self {
            dir: dir.to_path_buf(),
            path,
            file,
            size: parsed.end,
            seq: parsed.next_seq,
            map: Arc::new(Mutex::new(parsed.map)),
            live_bytes,
            poisoned: false,
        };
        cursors.compact_if_due();
        Ok(cursors)
    }

    /// Applies a group of sets: one write and one `sync_data` for all that
    /// change a cursor. One result per set.
    fn apply(&mut self, sets: &[(Key, u64, bool)]) -> Vec<Result<()>> {
        if self.poisoned {
            return vec![Err(Error::Poisoned); sets.len()];
        }
        let mut results = vec![Ok(()); sets.len()];
        let mut changes: HashMap<&Key, u64> = HashMap::new();
        let mut changed = Vec::new();
        let mut buf = Vec::new();
        let now = now_ms();
        {
            let map = lock(&self.map);
            for (i, (key, next, force)) in sets.iter().enumerate() {
                let current = changes.get(key).or_else(|| map.get(key)).copied();
                let moves = if *force {
                    current != Some(*next)
                } else {
                    current.is_none_or(|c| *next > c)
                };
                if !moves {
                    continue;
                }
                let frame = NewRecord {
                    timestamp_ms: now,
                    key: key.encode().into(),
                    headers: Vec::new(),
                    value: Bytes::copy_from_slice(&next.to_le_bytes()),
                };
                let seq = self.seq + changed.len() as u64;
                match record::encode(seq, &frame, &mut buf) {
                    Ok(_) => {
                        changes.insert(key, *next);
                        changed.push(i);
                    }
                    Err(source) => results[i] = Err(Error::InvalidRecord { index: 0, source }),
                }
            }
        }
        if buf.is_empty() {
            return results;
        }
        if let Err(error) = self.append(&buf) {
            for i in changed {
                results[i] = Err(error.clone());
            }
            return results;
        }
        self.seq += changed.len() as u64;
        {
            let mut map = lock(&self.map);
            for (key, next) in changes {
                if map.insert(key.clone(), next).is_none() {
                    self.live_bytes += frame_len(key);
                }
            }
        }
        self.compact_if_due();
        results
    }

    /// Writes `buf` at the end and syncs it; undoes a failed write, and
    /// poisons the file when even that (or the sync) fails.
    fn append(&mut self, buf: &[u8]) -> Result<()> {
        if let Err(e) = self.file.write_all_at(buf, self.size) {
            let error = Error::io("write", &self.path, e);
            if self.file.set_len(self.size).is_err() {
                self.poison(&error);
            }
            return Err(error);
        }
        if let Err(e) = self.file.sync_data() {
            let error = Error::io("sync_data", &self.path, e);
            self.poison(&error);
            return Err(error);
        }
        self.size += buf.len() as u64;
        Ok(())
    }

    /// Refuses further writes until the broker is reopened.
    fn poison(&mut self, error: &Error) {
        error!(%error, path = %self.path.display(), "cursor file poisoned: reopen the broker to recover");
        self.poisoned = true;
    }

    /// Compacts when the file is large and mostly superseded frames; a
    /// failure leaves the old file in use.
    fn compact_if_due(&mut self) {
        if self.poisoned
            || self.size <= COMPACT_MIN_BYTES
            || self.size <= COMPACT_RATIO * self.live_bytes
        {
            return;
        }
        let before = self.size;
        match self.compact() {
            Ok(()) => {
                info!(path = %self.path.display(), before, after = self.size, "cursor file compacted")
            }
            Err(error) => {
                warn!(%error, path = %self.path.display(), "cursor compaction failed; the file is kept")
            }
        }
    }

    /// Rewrites the file with one frame per cursor (see the module doc).
    fn compact(&mut self) -> Result<()> {
        let mut buf = Vec::new();
        let now = now_ms();
        let mut seq = self.seq;
        for (key, next) in lock(&self.map).iter() {
            let frame = NewRecord {
                timestamp_ms: now,
                key: key.encode().into(),
                headers: Vec::new(),
                value: Bytes::copy_from_slice(&next.to_le_bytes()),
            };
            record::encode(seq, &frame, &mut buf)
                .map_err(|source| Error::InvalidRecord { index: 0, source })?;
            seq += 1;
        }
        let tmp = self.dir.join(TMP_FILE);
        let write = || -> std::io::Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            file.write_all_at(&buf, 0)?;
            file.sync_all()?;
            Ok(file)
        };
        let file = match write() {
            Ok(file) => file,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(Error::io("write", &tmp, e));
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io("rename", &self.path, e));
        }
        // The name now points at the new file: appends must go there.
        self.file = file;
        self.size = buf.len() as u64;
        self.seq = seq;
        self.live_bytes = self.size;
        if let Err(error) = files::sync_dir(&self.dir) {
            // Unsure which file a crash would leave: stop acknowledging.
            self.poison(&error);
            return Err(error);
        }
        Ok(())
    }
}

/// The frame length of a cursor with `key`.
fn frame_len(key: &Key) -> u64 {
    (record::MIN_RECORD_LEN + 8 + 2 + key.group.len() + 2 + key.topic.len() + 4) as u64
}

/// What [`parse`] found.
#[derive(Debug)]
struct Parsed {
    /// The cursors.
    map: HashMap<Key, u64>,
    /// The end of the last good frame.
    end: u64,
    /// The sequence number the next frame gets.
    next_seq: u64,
    /// Why parsing stopped before the end, if it did.
    stop: &'static str,
}

/// Reads the frames of a cursor file up to the first bad one.
fn parse(bytes: &Bytes) -> Parsed {
    let mut parsed = Parsed {
        map: HashMap::new(),
        end: 0,
        next_seq: 0,
        stop: "",
    };
    let mut pos = 0usize;
    let mut expected: Option<u64> = None;
    while pos < bytes.len() {
        let len = match record::frame_len(&bytes[pos..]) {
            Ok(Some(len)) if pos + len <= bytes.len() => len,
            Ok(_) => {
                parsed.stop = "torn frame";
                break;
            }
            Err(_) => {
                parsed.stop = "frame length out of bounds";
                break;
            }
        };
        let Ok(frame) = record::decode(&bytes.slice(pos..pos + len)) else {
            parsed.stop = "bad checksum or layout";
            break;
        };
        if expected.is_some_and(|seq| seq != frame.offset) {
            parsed.stop = "sequence number out of order";
            break;
        }
        let key = Key::decode(&frame.key);
        let next = <[u8; 8]>::try_from(&frame.value[..]).ok();
        let (Some(key), Some(next)) = (key, next) else {
            parsed.stop = "not a cursor";
            break;
        };
        parsed.map.insert(key, u64::from_le_bytes(next));
        expected = Some(frame.offset + 1);
        pos += len;
    }
    parsed.end = pos as u64;
    parsed.next_seq = expected.unwrap_or(0);
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, partition: u32) -> Key {
        Key {
            group: group.into(),
            topic: "t".into(),
            partition,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "sinew-events-cursors-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        path
    }

    #[test]
    fn cursors_move_forward_unless_forced_and_survive_reopen() {
        let dir = temp_dir("forward");
        let mut file = CursorFile::open(&dir).expect("open");
        let results = file.apply(&[
            (key("a", 0), 10, false),
            (key("a", 0), 5, false),
            (key("a", 1), 7, false),
            (key("b", 0), 3, false),
        ]);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(lock(&file.map).get(&key("a", 0)), Some(&10));
        // A reset moves it back; an equal value writes nothing.
        let size = file.size;
        file.apply(&[(key("a", 1), 7, false), (key("a", 1), 7, true)]);
        assert_eq!(file.size, size);
        file.apply(&[(key("a", 0), 2, true)]);
        drop(file);
        let file = CursorFile::open(&dir).expect("reopen");
        let map = lock(&file.map).clone();
        assert_eq!(
            map,
            HashMap::from([(key("a", 0), 2), (key("a", 1), 7), (key("b", 0), 3)])
        );
        drop(file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_tail_is_cut_at_any_byte() {
        let dir = temp_dir("torn");
        let mut file = CursorFile::open(&dir).expect("open");
        file.apply(&[(key("a", 0), 1, false)]);
        let first = file.size;
        file.apply(&[(key("a", 0), 2, false)]);
        let whole = std::fs::read(dir.join(FILE)).expect("read");
        drop(file);
        for cut in first as usize..whole.len() {
            std::fs::write(dir.join(FILE), &whole[..cut]).expect("write");
            let file = CursorFile::open(&dir).expect("open torn");
            assert_eq!(lock(&file.map).get(&key("a", 0)), Some(&1), "cut at {cut}");
            assert_eq!(file.size, first);
            assert_eq!(
                std::fs::metadata(dir.join(FILE)).expect("stat").len(),
                first
            );
        }
        // A flipped byte in the last frame: cut too.
        let mut bad = whole.clone();
        bad[first as usize + 20] ^= 1;
        std::fs::write(dir.join(FILE), &bad).expect("write");
        let file = CursorFile::open(&dir).expect("open damaged");
        assert_eq!(lock(&file.map).get(&key("a", 0)), Some(&1));
        drop(file);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn compaction_keeps_every_cursor() {
        let dir = temp_dir("compact");
        let mut file = CursorFile::open(&dir).expect("open");
        // 48-byte frames, 100 per group: 300 groups pass 1 MiB once.
        let mut compacted = false;
        for round in 1..=300u64 {
            let sets: Vec<_> = (0..100).map(|p| (key("g", p), round, false)).collect();
            let before = file.size;
            assert!(file.apply(&sets).iter().all(Result::is_ok));
            compacted |= file.size < before;
        }
        assert!(compacted);
        assert!(file.size < COMPACT_MIN_BYTES, "{}", file.size);
        drop(file);
        let file = CursorFile::open(&dir).expect("reopen");
        for p in 0..100 {
            assert_eq!(lock(&file.map).get(&key("g", p)), Some(&300));
        }
        // Appends after a compaction go to the new file and survive too.
        let mut file = file;
        file.apply(&[(key("g", 0), 301, false)]);
        drop(file);
        let file = CursorFile::open(&dir).expect("reopen again");
        assert_eq!(lock(&file.map).get(&key("g", 0)), Some(&301));
        assert!(!dir.join(TMP_FILE).exists());
        drop(file);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
