//! The ce-id de-duplication window of one topic.
//!
//! An id is either written (its partition and offset, and when it was
//! acknowledged) or pending (a publish is writing it now). A publish that
//! meets a pending id waits for that write to end, then looks again: the
//! id is then written (a duplicate) or free (the write failed, so this
//! publish writes it). So two concurrent publishes of one id never both
//! write it.
//!
//! A written id older than the window is not a duplicate. Written ids are
//! kept in generations, each covering half a window of acknowledgements:
//!
//! ```text
//! generations (oldest first): [ t0 .. t0+W/2 ) [ .. ) [ current ]
//!   each: a table of (key, where the id's bytes are, partition, offset, acked at)
//!         + one buffer holding all its ids' bytes
//! ```
//!
//! Expiry drops a whole generation once its newest entry has left the
//! window: no step per id, and nothing in an entry to free. Ids are kept
//! exactly (a lookup compares bytes, never a hash alone), but without an
//! allocation of their own: a generation appends them to its buffer. At a
//! high publish rate the window holds millions of ids (two minutes at
//! 100k events/s is 12 million), so this is what keeps publishing cheap: an
//! id costs about 40 bytes of table and its own length of buffer, one
//! keyed hash to compute, and never a rehash of the window under the
//! topic's lock: a generation is sized from the one before it, and one that
//! fills up is followed by a new one twice its size rather than grown.
//!
//! Pending ids are few (those of the appends in flight) and kept apart,
//! by key alone: a key holds every reservation made under it, so two ids
//! sharing a 64-bit key (in one publish or in two) are each settled by
//! their own write, and a publish that meets the other's reservation only
//! waits for that write and looks again.
//!
//! Expired generations are handed back to the caller ([`Expired`]), to be
//! freed after the lock is released: one can hold hundreds of megabytes.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use hashbrown::HashTable;
use tokio::sync::watch;

use super::MAX_ID_BYTES;

/// The answer of [`Dedup::lookup`].
#[derive(Debug)]
pub(crate) enum Seen {
    /// Not in the window.
    New,
    /// Written within the window, here.
    Written {
        /// Its partition.
        partition: u32,
        /// Its offset.
        offset: u64,
    },
    /// Being written by another publish: wait for the channel to close.
    Pending(watch::Receiver<()>),
}

/// Turns ids into the 64-bit keys the window files them under: SipHash
/// with this process's random keys, so ids chosen to collide cannot be
/// made to crowd one slot.
#[derive(Debug, Default)]
pub(crate) struct IdKeys(RandomState);

impl IdKeys {
    /// `id`'s key.
    pub(crate) fn key(&self, id: &str) -> u64 {
        self.0.hash_one(id)
    }
}

/// Hashes a key that is already a keyed hash: passes it through.
#[derive(Debug, Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, key: u64) {
        self.0 = key;
    }
}

/// A map keyed by [`IdKeys`] keys.
pub(crate) type ByKey<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// The ids the first generation has room for.
const FIRST_IDS: usize = 1024;
/// The id length a new generation's buffer is sized for, at least.
const FIRST_MEAN: usize = 16;

/// One written id, in its generation's table.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Its key.
    key: u64,
    /// Where its bytes start in the generation's buffer.
    start: usize,
    /// Their length.
    len: u32,
    /// Its partition.
    partition: u32,
    /// Its offset.
    offset: u64,
    /// When it was acknowledged (ms since the epoch, broker clock).
    at_ms: u64,
}

/// Written ids acknowledged within one span of time.
#[derive(Debug)]
pub(crate) struct Generation {
    /// The latest acknowledgement in it.
    newest_ms: u64,
    /// The ids, by key.
    table: HashTable<Entry>,
    /// Their bytes, one after another.
    ids: String,
}

impl Generation {
    /// An empty generation starting at `first_ms`, sized for `expect` ids
    /// of about `mean` bytes.
    fn new(first_ms: u64, expect: usize, mean: usize) -> Self {
        Self {
            newest_ms: first_ms,
            table: HashTable::with_capacity(expect),
            ids: String::with_capacity(expect.saturating_mul(mean)),
        }
    }

    /// Whether one more id of `len` bytes would make its table or its
    /// buffer grow.
    fn is_full(&self, len: usize) -> bool {
        self.table.len() == self.table.capacity() || self.ids.len() + len > self.ids.capacity()
    }

    /// Its ids' mean length, rounded up.
    fn mean(&self) -> usize {
        self.ids
            .len()
            .div_ceil(self.table.len().max(1))
            .clamp(FIRST_MEAN, MAX_ID_BYTES)
    }

    /// `id`'s entry, if written in this generation.
    fn find(&self, id: &str, key: u64) -> Option<&Entry> {
        self.table.find(key, |e| {
            e.key == key && self.ids.get(e.start..e.start + e.len as usize) == Some(id)
        })
    }

    /// Files `id` as written (it is not in this generation). Ids are at
    /// most 256 bytes; one that does not fit the entry is not filed.
    fn insert(&mut self, id: &str, key: u64, (partition, offset): (u32, u64), at_ms: u64) {
        let Ok(len) = u32::try_from(id.len()) else {
            return;
        };
        let entry = Entry {
            key,
            start: self.ids.len(),
            len,
            partition,
            offset,
            at_ms,
        };
        self.ids.push_str(id);
        self.newest_ms = self.newest_ms.max(at_ms);
        self.table.insert_unique(key, entry, |e| e.key);
    }
}

/// The window of one topic.
#[derive(Debug)]
pub(crate) struct Dedup {
    /// The window's length in ms.
    window_ms: u64,
    /// Written ids, oldest generation first.
    generations: VecDeque<Generation>,
    /// Ids being written, by key: the channels that close when their
    /// writes end.
    pending: ByKey<Holders>,
    /// The latest acknowledgement time filed (keeps generations in order
    /// when the clock steps back).
    last_ms: u64,
    /// The current half-window: when it began, and how many ids were filed
    /// in it (over however many generations it took).
    span: (u64, usize),
}

/// Generations out of the window: free them without holding the lock.
#[derive(Debug, Default)]
#[must_use = "dropped here, the generations are freed under the lock"]
pub(crate) struct Expired(Vec<Generation>);

impl Expired {
    /// Whether nothing expired.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The reservations made under one key: almost always one.
#[derive(Debug)]
enum Holders {
    /// One reservation.
    One(watch::Receiver<()>),
    /// Several (different ids sharing the key).
    Many(Vec<watch::Receiver<()>>),
}

impl Dedup {
    /// An empty window of `window_ms` milliseconds.
    pub(crate) fn new(window_ms: u64) -> Self {
        Self {
            window_ms,
            generations: VecDeque::new(),
            pending: ByKey::default(),
            last_ms: 0,
            span: (0, 0),
        }
    }

    /// What the window knows of `id` (whose key is `key`) at `now_ms`.
    pub(crate) fn lookup(&self, id: &str, key: u64, now_ms: u64) -> Seen {
        match self.pending.get(&key) {
            Some(Holders::One(done)) => return Seen::Pending(done.clone()),
            Some(Holders::Many(all)) => {
                if let Some(done) = all.first() {
                    return Seen::Pending(done.clone());
                }
            }
            None => {}
        }
        // Newest first: an id written again after its first write expired
        // answers with the later write.
        match self.find(id, key) {
            Some(e) if now_ms.saturating_sub(e.at_ms) <= self.window_ms => Seen::Written {
                partition: e.partition,
                offset: e.offset,
            },
            _ => Seen::New,
        }
    }

    /// `id`'s latest written entry still kept.
    fn find(&self, id: &str, key: u64) -> Option<&Entry> {
        self.generations.iter().rev().find_map(|g| g.find(id, key))
    }

    /// Marks the id of `key` as being written (`lookup` found it new);
    /// `done` closes when the write ends.
    pub(crate) fn reserve(&mut self, key: u64, done: watch::Receiver<()>) {
        use std::collections::hash_map::Entry as Slot;
        match self.pending.entry(key) {
            Slot::Vacant(slot) => {
                slot.insert(Holders::One(done));
            }
            Slot::Occupied(mut slot) => {
                let holders = slot.get_mut();
                match holders {
                    Holders::One(first) => *holders = Holders::Many(vec![first.clone(), done]),
                    Holders::Many(all) => all.push(done),
                }
            }
        }
    }

    /// Records that the write reserved with `done` put `id` at `partition`,
    /// `offset`, acknowledged at `now_ms`.
    pub(crate) fn written(
        &mut self,
        id: &str,
        key: u64,
        done: &watch::Receiver<()>,
        place: (u32, u64),
        now_ms: u64,
    ) {
        if self.release(key, done) {
            let at_ms = now_ms.max(self.last_ms);
            self.file(id, key, place, at_ms);
        }
    }

    /// Forgets the reservation of `key` made with `done`: its write failed.
    pub(crate) fn abandon(&mut self, key: u64, done: &watch::Receiver<()>) {
        self.release(key, done);
    }

    /// Removes one reservation of `key` that `done` made, if any.
    fn release(&mut self, key: u64, done: &watch::Receiver<()>) -> bool {
        let (ours, now_empty) = match self.pending.get_mut(&key) {
            Some(Holders::One(d)) => (d.same_channel(done), true),
            Some(Holders::Many(all)) => match all.iter().position(|d| d.same_channel(done)) {
                Some(i) => {
                    all.swap_remove(i);
                    (true, all.is_empty())
                }
                None => (false, false),
            },
            None => (false, false),
        };
        if ours && now_empty {
            self.pending.remove(&key);
        }
        ours
    }

    /// Adds an id found in the log when the window is rebuilt; the first
    /// occurrence of an id wins. Call in acknowledgement order. An id over
    /// [`MAX_ID_BYTES`] (which no publish can write) is left out.
    pub(crate) fn restore(&mut self, id: &str, key: u64, place: (u32, u64), at_ms: u64) {
        if id.len() <= MAX_ID_BYTES && self.find(id, key).is_none() {
            let at_ms = at_ms.max(self.last_ms);
            self.file(id, key, place, at_ms);
        }
    }

    /// Files `id` as written at `at_ms` (not before `last_ms`), in the
    /// current generation or a new one.
    fn file(&mut self, id: &str, key: u64, place: (u32, u64), at_ms: u64) {
        self.last_ms = at_ms;
        let span = (self.window_ms / 2).max(1);
        let next = match self.generations.back() {
            None => {
                self.span = (at_ms, 0);
                Some((FIRST_IDS, FIRST_MEAN))
            }
            Some(g) if at_ms >= self.span.0.saturating_add(span) => {
                // Sized for the half-window before: a steady rate fills it.
                let ids = self.span.1.max(FIRST_IDS);
                self.span = (at_ms, 0);
                Some((ids, g.mean()))
            }
            // Full: a new one twice its size, rather than growing this one
            // (a rehash of millions of ids, under the topic's lock).
            Some(g) if g.is_full(id.len()) => Some((2 * g.table.capacity(), g.mean())),
            Some(_) => None,
        };
        if let Some((ids, mean)) = next {
            self.generations
                .push_back(Generation::new(at_ms, ids, mean));
        }
        if let Some(current) = self.generations.back_mut() {
            current.insert(id, key, place, at_ms);
            self.span.1 += 1;
        }
    }

    /// Takes out the generations wholly older than the window at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) -> Expired {
        let horizon = now_ms.saturating_sub(self.window_ms);
        let mut expired = Expired::default();
        while self
            .generations
            .front()
            .is_some_and(|g| g.newest_ms < horizon)
        {
            expired.0.extend(self.generations.pop_front());
        }
        expired
    }

    /// Ids kept, written (expired or not) or pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.pending
            .values()
            .map(|h| match h {
                Holders::One(_) => 1,
                Holders::Many(all) => all.len(),
            })
            .sum::<usize>()
            + self
                .generations
                .iter()
                .map(|g| g.table.len())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The window and the keys it files ids under.
    fn window(window_ms: u64) -> (Dedup, impl Fn(&str) -> u64) {
        let keys = IdKeys::default();
        (Dedup::new(window_ms), move |id: &str| keys.key(id))
    }

    #[test]
    fn written_ids_are_duplicates_within_the_window_only() {
        let (mut dedup, key) = window(1000);
        let (_tx, rx) = watch::channel(());
        assert!(matches!(dedup.lookup("a", key("a"), 0), Seen::New));
        dedup.reserve(key("a"), rx.clone());
        assert!(matches!(dedup.lookup("a", key("a"), 0), Seen::Pending(_)));
        dedup.written("a", key("a"), &rx, (3, 42), 10_000);
        assert!(matches!(
            dedup.lookup("a", key("a"), 11_000),
            Seen::Written {
                partition: 3,
                offset: 42
            }
        ));
        assert!(matches!(dedup.lookup("a", key("a"), 11_001), Seen::New));
        drop(dedup.expire(10_999));
        assert_eq!(dedup.len(), 1);
        drop(dedup.expire(11_001));
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn ids_compare_by_their_bytes_not_their_key() {
        let (mut dedup, key) = window(1000);
        // Two ids filed under one key (as a 64-bit collision would).
        let shared = key("a");
        dedup.restore("a", shared, (0, 1), 10);
        dedup.restore("b", shared, (0, 2), 10);
        assert!(matches!(
            dedup.lookup("a", shared, 10),
            Seen::Written { offset: 1, .. }
        ));
        assert!(matches!(
            dedup.lookup("b", shared, 10),
            Seen::Written { offset: 2, .. }
        ));
        assert!(matches!(dedup.lookup("c", shared, 10), Seen::New));
        assert!(matches!(dedup.lookup("a", key("b"), 10), Seen::New));
    }

    #[test]
    fn reservations_sharing_a_key_are_each_settled_by_their_own_write() {
        let (mut dedup, key) = window(1000);
        // Two ids filed under one key (as a 64-bit collision would), by two
        // writes (two partitions of one publish).
        let shared = key("x");
        let (_x_tx, x_done) = watch::channel(());
        let (_y_tx, y_done) = watch::channel(());
        dedup.reserve(shared, x_done.clone());
        dedup.reserve(shared, y_done.clone());
        assert!(matches!(dedup.lookup("z", shared, 0), Seen::Pending(_)));
        dedup.written("y", shared, &y_done, (1, 5), 10);
        // x's reservation still stands until its own write ends.
        assert!(matches!(dedup.lookup("x", shared, 10), Seen::Pending(_)));
        dedup.written("x", shared, &x_done, (0, 3), 10);
        assert!(matches!(
            dedup.lookup("x", shared, 10),
            Seen::Written {
                partition: 0,
                offset: 3
            }
        ));
        assert!(matches!(
            dedup.lookup("y", shared, 10),
            Seen::Written {
                partition: 1,
                offset: 5
            }
        ));
        // One write holding two ids under one key settles both.
        let (_tx, both) = watch::channel(());
        dedup.reserve(key("v"), both.clone());
        dedup.reserve(key("v"), both.clone());
        dedup.written("v", key("v"), &both, (0, 7), 10);
        dedup.written("w", key("v"), &both, (0, 8), 10);
        assert_eq!(dedup.len(), 4);
        assert!(matches!(
            dedup.lookup("w", key("v"), 10),
            Seen::Written { offset: 8, .. }
        ));
    }

    #[test]
    fn restore_leaves_out_ids_no_publish_could_write() {
        let (mut dedup, key) = window(1000);
        let long = "x".repeat(MAX_ID_BYTES + 1);
        dedup.restore(&long, key(&long), (0, 1), 5);
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn a_failed_write_frees_the_id_and_a_stale_reservation_changes_nothing() {
        let (mut dedup, key) = window(1000);
        let (_first_tx, first) = watch::channel(());
        let (_second_tx, second) = watch::channel(());
        dedup.reserve(key("a"), first.clone());
        dedup.abandon(key("a"), &first);
        assert!(matches!(dedup.lookup("a", key("a"), 0), Seen::New));
        dedup.reserve(key("a"), second.clone());
        // The first write's late answers do not touch the second's slot.
        dedup.written("a", key("a"), &first, (0, 1), 5);
        dedup.abandon(key("a"), &first);
        assert!(matches!(dedup.lookup("a", key("a"), 5), Seen::Pending(_)));
        dedup.written("a", key("a"), &second, (1, 7), 5);
        assert!(matches!(
            dedup.lookup("a", key("a"), 5),
            Seen::Written {
                partition: 1,
                offset: 7
            }
        ));
    }

    #[test]
    fn an_id_written_again_after_expiry_answers_with_the_later_write() {
        let (mut dedup, key) = window(100);
        dedup.restore("a", key("a"), (0, 0), 1000);
        dedup.restore("a", key("a"), (0, 9), 1001);
        assert!(matches!(
            dedup.lookup("a", key("a"), 1000),
            Seen::Written { offset: 0, .. }
        ));
        // Past the window, "a" is new: written again later, it is found
        // with its new place, and outlives its first entry's generation.
        assert!(matches!(dedup.lookup("a", key("a"), 1101), Seen::New));
        let (_tx, rx) = watch::channel(());
        dedup.reserve(key("a"), rx.clone());
        dedup.written("a", key("a"), &rx, (0, 5), 1200);
        drop(dedup.expire(1250));
        assert_eq!(dedup.len(), 1);
        assert!(matches!(
            dedup.lookup("a", key("a"), 1250),
            Seen::Written { offset: 5, .. }
        ));
        // A clock that steps back files "b" as of the latest entry.
        dedup.restore("b", key("b"), (0, 6), 900);
        assert!(matches!(
            dedup.lookup("b", key("b"), 1300),
            Seen::Written { offset: 6, .. }
        ));
        drop(dedup.expire(1299));
        assert_eq!(dedup.len(), 2);
        drop(dedup.expire(1301));
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn generations_roll_over_and_expire_whole() {
        let (mut dedup, key) = window(1000);
        for t in 0..3000u64 {
            let id = format!("id-{t}");
            dedup.restore(&id, key(&id), (0, t), t);
        }
        // Half-window generations: [0, 500) ... [2500, 3000).
        assert_eq!(dedup.generations.len(), 6);
        drop(dedup.expire(2999));
        // Kept: every generation with an entry at or after 1999.
        assert_eq!(dedup.generations.len(), 3);
        assert_eq!(dedup.len(), 1500);
        for t in [1999u64, 2000, 2999] {
            let id = format!("id-{t}");
            assert!(matches!(
                dedup.lookup(&id, key(&id), 2999),
                Seen::Written { offset, .. } if offset == t
            ));
        }
        // Kept but out of the window: not a duplicate.
        assert!(matches!(
            dedup.lookup("id-1500", key("id-1500"), 2999),
            Seen::New
        ));
        // Each generation after the first was sized from the one before.
        assert!(dedup.generations.iter().all(|g| g.table.capacity() >= 500));
    }

    #[test]
    fn a_full_generation_is_followed_by_a_bigger_one_not_grown() {
        let (mut dedup, key) = window(60_000);
        let mut n = 0u64;
        while dedup.generations.len() < 3 {
            let id = format!("id-{n}");
            dedup.restore(&id, key(&id), (0, n), 5);
            n += 1;
        }
        let (first, second) = (&dedup.generations[0], &dedup.generations[1]);
        assert_eq!(first.table.len(), first.table.capacity());
        assert!(first.table.len() >= FIRST_IDS);
        assert_eq!(second.table.len(), second.table.capacity());
        assert!(second.table.capacity() >= 2 * first.table.capacity());
        // The next half-window is sized for all of this one's ids, not for
        // its last generation's.
        let filed = dedup.len();
        let id = "later";
        dedup.restore(id, key(id), (0, n), 30_005);
        let newest = dedup.generations.back().expect("a generation");
        assert!(newest.table.capacity() >= filed);
        for i in (0..n).step_by(97) {
            let id = format!("id-{i}");
            assert!(matches!(
                dedup.lookup(&id, key(&id), 5),
                Seen::Written { offset, .. } if offset == i
            ));
        }
    }
}
