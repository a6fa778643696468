//! The ce-id de-duplication window of one topic.
//!
//! An id is either written (its partition and offset, and when it was
//! acknowledged) or pending (a publish is writing it now). A publish that
//! meets a pending id waits for that write to end, then looks again: the
//! id is then written (a duplicate) or free (the write failed, so this
//! publish writes it). So two concurrent publishes of one id never both
//! write it.
//!
//! Entries expire `window` after they were acknowledged; expiry walks a
//! queue in acknowledgement order, so it costs one step per entry. A
//! written id older than the window is not a duplicate even before expiry
//! removes it.
//!
//! An id is kept once, shared (`Arc<str>`) by its slot, the expiry queue
//! and the reservation that writes it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::watch;

/// What the window knows of an id.
#[derive(Debug)]
enum Slot {
    /// Written and acknowledged.
    Written {
        /// Its partition.
        partition: u32,
        /// Its offset.
        offset: u64,
        /// When it was acknowledged (ms since the epoch, broker clock).
        at_ms: u64,
    },
    /// Being written; the channel closes when that write ends.
    Pending(watch::Receiver<()>),
}

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

/// The window of one topic.
#[derive(Debug)]
pub(crate) struct Dedup {
    /// The window's length in ms.
    window_ms: u64,
    /// Ids in the window, and pending ones.
    slots: HashMap<Arc<str>, Slot>,
    /// Written ids in acknowledgement order, for expiry.
    order: VecDeque<(u64, Arc<str>)>,
    /// The latest acknowledgement time queued (keeps `order` sorted when
    /// the clock steps back).
    last_ms: u64,
}

impl Dedup {
    /// An empty window of `window_ms` milliseconds.
    pub(crate) fn new(window_ms: u64) -> Self {
        Self {
            window_ms,
            slots: HashMap::new(),
            order: VecDeque::new(),
            last_ms: 0,
        }
    }

    /// What the window knows of `id` at `now_ms`.
    pub(crate) fn lookup(&self, id: &str, now_ms: u64) -> Seen {
        match self.slots.get(id) {
            Some(Slot::Written {
                partition,
                offset,
                at_ms,
            }) if now_ms.saturating_sub(*at_ms) <= self.window_ms => Seen::Written {
                partition: *partition,
                offset: *offset,
            },
            Some(Slot::Pending(done)) => Seen::Pending(done.clone()),
            _ => Seen::New,
        }
    }

    /// Marks `id` as being written; `done` closes when the write ends.
    pub(crate) fn reserve(&mut self, id: Arc<str>, done: watch::Receiver<()>) {
        self.slots.insert(id, Slot::Pending(done));
    }

    /// Records that the write reserved with `done` put `id` at `partition`,
    /// `offset`, acknowledged at `now_ms`.
    pub(crate) fn written(
        &mut self,
        id: &Arc<str>,
        done: &watch::Receiver<()>,
        (partition, offset): (u32, u64),
        now_ms: u64,
    ) {
        if let Some(slot) = self.slots.get_mut(&**id) {
            if matches!(slot, Slot::Pending(ours) if ours.same_channel(done)) {
                let at_ms = now_ms.max(self.last_ms);
                *slot = Slot::Written {
                    partition,
                    offset,
                    at_ms,
                };
                self.last_ms = at_ms;
                self.order.push_back((at_ms, Arc::clone(id)));
            }
        }
    }

    /// Forgets `id`'s reservation made with `done`: its write failed.
    pub(crate) fn abandon(&mut self, id: &str, done: &watch::Receiver<()>) {
        if matches!(self.slots.get(id), Some(Slot::Pending(ours)) if ours.same_channel(done)) {
            self.slots.remove(id);
        }
    }

    /// Adds an id found in the log when the window is rebuilt; the first
    /// occurrence of an id wins. Call in acknowledgement order.
    pub(crate) fn restore(&mut self, id: String, (partition, offset): (u32, u64), at_ms: u64) {
        if self.slots.contains_key(id.as_str()) {
            return;
        }
        let id: Arc<str> = id.into();
        let at_ms = at_ms.max(self.last_ms);
        self.last_ms = at_ms;
        self.order.push_back((at_ms, Arc::clone(&id)));
        self.slots.insert(
            id,
            Slot::Written {
                partition,
                offset,
                at_ms,
            },
        );
    }

    /// Drops written ids older than the window at `now_ms`.
    pub(crate) fn expire(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.window_ms);
        while let Some((at_ms, _)) = self.order.front() {
            if *at_ms >= horizon {
                break;
            }
            let Some((at_ms, id)) = self.order.pop_front() else {
                break;
            };
            // Only the entry this queue item was made for: the id may have
            // been written again (after an earlier expiry) or be pending.
            if matches!(self.slots.get(&id), Some(Slot::Written { at_ms: t, .. }) if *t == at_ms) {
                self.slots.remove(&id);
            }
        }
    }

    /// Ids in the window, written or pending.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_ids_are_duplicates_within_the_window_only() {
        let mut dedup = Dedup::new(1000);
        let (_tx, rx) = watch::channel(());
        assert!(matches!(dedup.lookup("a", 0), Seen::New));
        dedup.reserve("a".into(), rx.clone());
        assert!(matches!(dedup.lookup("a", 0), Seen::Pending(_)));
        dedup.written(&"a".into(), &rx, (3, 42), 10_000);
        assert!(matches!(
            dedup.lookup("a", 11_000),
            Seen::Written {
                partition: 3,
                offset: 42
            }
        ));
        assert!(matches!(dedup.lookup("a", 11_001), Seen::New));
        dedup.expire(10_999);
        assert_eq!(dedup.len(), 1);
        dedup.expire(11_001);
        assert_eq!(dedup.len(), 0);
    }

    #[test]
    fn a_failed_write_frees_the_id_and_a_stale_reservation_changes_nothing() {
        let mut dedup = Dedup::new(1000);
        let (_first_tx, first) = watch::channel(());
        let (_second_tx, second) = watch::channel(());
        dedup.reserve("a".into(), first.clone());
        dedup.abandon("a", &first);
        assert!(matches!(dedup.lookup("a", 0), Seen::New));
        dedup.reserve("a".into(), second.clone());
        // The first write's late answers do not touch the second's slot.
        dedup.written(&"a".into(), &first, (0, 1), 5);
        dedup.abandon("a", &first);
        assert!(matches!(dedup.lookup("a", 5), Seen::Pending(_)));
        dedup.written(&"a".into(), &second, (1, 7), 5);
        assert!(matches!(
            dedup.lookup("a", 5),
            Seen::Written {
                partition: 1,
                offset: 7
            }
        ));
    }

    #[test]
    fn expiry_spares_an_id_written_again() {
        let mut dedup = Dedup::new(100);
        dedup.restore("a".into(), (0, 0), 1000);
        dedup.restore("a".into(), (0, 9), 1001);
        assert!(matches!(
            dedup.lookup("a", 1000),
            Seen::Written { offset: 0, .. }
        ));
        // Past the window, "a" is new: written again later, it survives the
        // expiry of its first entry.
        let (_tx, rx) = watch::channel(());
        dedup.reserve("a".into(), rx.clone());
        dedup.written(&"a".into(), &rx, (0, 5), 1200);
        dedup.expire(1250);
        assert!(matches!(
            dedup.lookup("a", 1250),
            Seen::Written { offset: 5, .. }
        ));
        // A clock that steps back keeps the queue in order: "b" counts as
        // acknowledged with the latest entry.
        dedup.restore("b".into(), (0, 6), 900);
        dedup.expire(1299);
        assert_eq!(dedup.len(), 2);
        dedup.expire(1301);
        assert_eq!(dedup.len(), 0);
    }
}
