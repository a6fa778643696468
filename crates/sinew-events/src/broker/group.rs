//! Consumer groups: membership by heartbeat, deterministic partition
//! assignment, generations, and the ownership check that fences cursor
//! commits. Pure state: the caller passes the time in.
//!
//! ```text
//! heartbeat(member) ─ expire silent members ─ join or renew ─ changed? ─ rebalance (generation + 1)
//! commit(member, generation, partition) ─ owner(partition) == member && owned since ≤ generation ≤ current
//! ```
//!
//! **Assignment** is even and sticky: with `n` live members each gets
//! `⌊P/n⌋` or `⌈P/n⌉` of the `P` partitions (the larger shares to those
//! already holding most, then by id), and a member keeps the partitions it
//! holds up to its share, so a join or a leave moves only the partitions
//! that must move (each move is a redelivery window: the old owner's
//! uncommitted deliveries happen again). Freed partitions go, in order, to
//! the member with the most room left (ties by id). With more members than
//! partitions the last ones get none. A group's first member takes every
//! partition; each later one takes its share from the others. The
//! assignment depends on the group's history, which lives in one broker
//! (membership is not persisted: after a restart members rejoin one by one).
//!
//! **Generations** are `epoch << 32 | count`: the broker's epoch is
//! persisted and bumped at every open, the count grows with every
//! membership change, so a group's generation never goes back, even across
//! a restart that forgot the membership. A group's state is kept after its
//! last member leaves, for the same reason (a few dozen bytes per group).
//!
//! **Fencing**: each partition remembers since which generation its owner
//! has held it without interruption. A commit is accepted from the owner
//! for any generation from then to the current one, so a membership change
//! that leaves a member its partition does not fail its commits in flight,
//! while a member that lost a partition (even if it got it back since)
//! cannot move the cursor with what it delivered before.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tracing::info;

/// A member's share of a group's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The group's generation; bumped whenever membership changes. Pass it
    /// back with cursor commits.
    pub generation: u64,
    /// The partitions the member owns, ascending (possibly none).
    pub partitions: Vec<u32>,
}

/// Who owns one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Owner {
    /// The owning member, `None` while the group is empty.
    member: Option<String>,
    /// The generation since which `member` has owned it without a break.
    since: u64,
}

/// One consumer group on one topic.
#[derive(Debug)]
pub(crate) struct Group {
    /// The current generation.
    generation: u64,
    /// Live members and their last heartbeat.
    members: BTreeMap<String, Instant>,
    /// The owner of each partition, by partition number.
    owners: Vec<Owner>,
}

impl Group {
    /// An empty group over `partitions` partitions at `generation`.
    fn new(partitions: u32, generation: u64) -> Self {
        Self {
            generation,
            members: BTreeMap::new(),
            owners: vec![Owner::default(); partitions as usize],
        }
    }

    /// Removes members silent for longer than `timeout`; returns them.
    fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<String> {
        let silent: Vec<String> = self
            .members
            .iter()
            .filter(|(_, seen)| now.saturating_duration_since(**seen) > timeout)
            .map(|(member, _)| member.clone())
            .collect();
        for member in &silent {
            self.members.remove(member);
        }
        silent
    }

    /// A new generation and an even, sticky assignment for the current
    /// members (see the module doc).
    fn rebalance(&mut self) {
        self.generation += 1;
        let members: Vec<String> = self.members.keys().cloned().collect();
        let next = sticky(&self.owners, &members);
        for (owner, member) in self.owners.iter_mut().zip(next) {
            if owner.member != member {
                *owner = Owner {
                    member,
                    since: self.generation,
                };
            }
        }
    }

    /// `member`'s partitions in the current generation.
    fn assignment(&self, member: &str) -> Assignment {
        let partitions = self
            .owners
            .iter()
            .zip(0u32..)
            .filter(|(owner, _)| owner.member.as_deref() == Some(member))
            .map(|(_, partition)| partition)
            .collect();
        Assignment {
            generation: self.generation,
            partitions,
        }
    }
}

/// Each partition's owner after a rebalance: every live member of `members`
/// (sorted) gets an even share, keeping what it holds in `owners` up to it.
fn sticky(owners: &[Owner], members: &[String]) -> Vec<Option<String>> {
    if members.is_empty() {
        return vec![None; owners.len()];
    }
    let held = |m: &String| {
        owners
            .iter()
            .filter(|o| o.member.as_ref() == Some(m))
            .count()
    };
    let (base, extra) = (owners.len() / members.len(), owners.len() % members.len());
    // The larger shares go to the members holding most (then by id).
    let mut order: Vec<&String> = members.iter().collect();
    order.sort_by_key(|m| (std::cmp::Reverse(held(m)), *m));
    let mut room: BTreeMap<&String, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (*m, base + usize::from(i < extra)))
        .collect();
    let mut next: Vec<Option<String>> = owners
        .iter()
        .map(|o| {
            let m = o.member.as_ref()?;
            let left = room.get_mut(m)?;
            if *left == 0 {
                return None;
            }
            *left -= 1;
            Some(m.clone())
        })
        .collect();
    for slot in next.iter_mut().filter(|s| s.is_none()) {
        // The most room left; ties to the first by id (the map's order).
        let Some(m) = room
            .iter()
            .filter(|(_, left)| **left > 0)
            .max_by(|a, b| a.1.cmp(b.1).then_with(|| b.0.cmp(a.0)))
            .map(|(m, _)| *m)
        else {
            break;
        };
        if let Some(left) = room.get_mut(m) {
            *left -= 1;
        }
        *slot = Some(m.clone());
    }
    next
}

/// Why a commit was refused: the group's current generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fenced {
    /// The current generation (0 when the group does not exist).
    pub(crate) current: u64,
}

/// Every consumer group of a broker, by (group, topic).
#[derive(Debug)]
pub(crate) struct Groups {
    /// The groups.
    groups: HashMap<(String, String), Group>,
    /// The broker's epoch: the high half of every generation.
    epoch: u64,
}

impl Groups {
    /// No groups yet; generations start at `epoch << 32`.
    pub(crate) fn new(epoch: u64) -> Self {
        Self {
            groups: HashMap::new(),
            epoch,
        }
    }

    /// Joins or renews `member` (expiring silent members first) and returns
    /// its assignment. `partitions` is the topic's partition count.
    pub(crate) fn heartbeat(
        &mut self,
        (group, topic): (&str, &str),
        partitions: u32,
        member: &str,
        now: Instant,
        timeout: Duration,
    ) -> Assignment {
        let key = (group.to_owned(), topic.to_owned());
        let epoch = self.epoch;
        let state = self
            .groups
            .entry(key)
            .or_insert_with(|| Group::new(partitions, epoch << 32));
        let expired = state.expire(now, timeout);
        let joined = state.members.insert(member.to_owned(), now).is_none();
        if joined || !expired.is_empty() {
            state.rebalance();
            info!(
                group,
                topic,
                generation = state.generation,
                members = state.members.len(),
                joined = joined.then_some(member),
                ?expired,
                "consumer group rebalanced"
            );
        }
        state.assignment(member)
    }

    /// Removes `member` at once; whether it was a member.
    pub(crate) fn leave(&mut self, (group, topic): (&str, &str), member: &str) -> bool {
        let key = (group.to_owned(), topic.to_owned());
        let Some(state) = self.groups.get_mut(&key) else {
            return false;
        };
        if state.members.remove(member).is_none() {
            return false;
        }
        state.rebalance();
        info!(
            group,
            topic,
            generation = state.generation,
            members = state.members.len(),
            left = member,
            "consumer group rebalanced"
        );
        true
    }

    /// Expires silent members of every group, rebalancing those that lost any.
    pub(crate) fn expire(&mut self, now: Instant, timeout: Duration) {
        for ((group, topic), state) in &mut self.groups {
            let expired = state.expire(now, timeout);
            if !expired.is_empty() {
                state.rebalance();
                info!(
                    group = group.as_str(),
                    topic = topic.as_str(),
                    generation = state.generation,
                    members = state.members.len(),
                    ?expired,
                    "consumer group rebalanced"
                );
            }
        }
    }

    /// [`Groups::check_owner`] as the error callers answer with:
    /// [`Error::NotOwner`](crate::Error::NotOwner) naming the commit refused.
    pub(crate) fn fence(
        &self,
        (group, topic): (&str, &str),
        partition: u32,
        member: &str,
        generation: u64,
    ) -> crate::Result<()> {
        self.check_owner((group, topic), partition, member, generation)
            .map_err(|fenced| crate::Error::NotOwner {
                group: group.to_owned(),
                topic: topic.to_owned(),
                partition,
                member: member.to_owned(),
                generation,
                current: fenced.current,
            })
    }

    /// Whether `member` may move `partition`'s cursor with what it delivered
    /// in `generation` (see the module doc).
    pub(crate) fn check_owner(
        &self,
        (group, topic): (&str, &str),
        partition: u32,
        member: &str,
        generation: u64,
    ) -> Result<(), Fenced> {
        let key = (group.to_owned(), topic.to_owned());
        let Some(state) = self.groups.get(&key) else {
            return Err(Fenced { current: 0 });
        };
        let fenced = Err(Fenced {
            current: state.generation,
        });
        let Some(owner) = state.owners.get(partition as usize) else {
            return fenced;
        };
        let owns = owner.member.as_deref() == Some(member)
            && (owner.since..=state.generation).contains(&generation);
        if owns {
            Ok(())
        } else {
            fenced
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const G: (&str, &str) = ("g", "t");
    const TIMEOUT: Duration = Duration::from_secs(3);

    #[test]
    fn members_share_partitions_evenly_and_keep_what_they_hold() {
        let mut groups = Groups::new(7);
        let t0 = Instant::now();
        let c = groups.heartbeat(G, 8, "c", t0, TIMEOUT);
        assert_eq!(c.generation, (7 << 32) + 1);
        assert_eq!(c.partitions, (0..8).collect::<Vec<_>>());
        groups.heartbeat(G, 8, "a", t0, TIMEOUT);
        groups.heartbeat(G, 8, "b", t0, TIMEOUT);
        // Renewals change nothing.
        let a = groups.heartbeat(G, 8, "a", t0, TIMEOUT);
        let b = groups.heartbeat(G, 8, "b", t0, TIMEOUT);
        let c = groups.heartbeat(G, 8, "c", t0, TIMEOUT);
        assert_eq!(a.generation, (7 << 32) + 3);
        assert_eq!((b.generation, c.generation), (a.generation, a.generation));
        // c held all 8, a took half when it joined; b's join moves only
        // one partition from each to b.
        assert_eq!(a.partitions, [4, 5, 6]);
        assert_eq!(b.partitions, [3, 7]);
        assert_eq!(c.partitions, [0, 1, 2]);
        // More members than partitions: the last get none.
        let mut small = Groups::new(0);
        small.heartbeat(G, 1, "x", t0, TIMEOUT);
        assert_eq!(
            small.heartbeat(G, 1, "y", t0, TIMEOUT).partitions,
            Vec::<u32>::new()
        );
        assert_eq!(small.heartbeat(G, 1, "x", t0, TIMEOUT).partitions, [0]);
    }

    #[test]
    fn silent_members_expire_and_their_partitions_move() {
        let mut groups = Groups::new(0);
        let t0 = Instant::now();
        for member in ["a", "b", "c"] {
            groups.heartbeat(G, 6, member, t0, TIMEOUT);
        }
        let before = groups.heartbeat(G, 6, "a", t0, TIMEOUT);
        let later = t0 + TIMEOUT + Duration::from_millis(1);
        groups.heartbeat(G, 6, "a", later, TIMEOUT);
        groups.heartbeat(G, 6, "b", later, TIMEOUT);
        // c was silent past the timeout.
        groups.expire(later, TIMEOUT);
        let a = groups.heartbeat(G, 6, "a", later, TIMEOUT);
        let b = groups.heartbeat(G, 6, "b", later, TIMEOUT);
        assert!(a.generation > before.generation);
        // c's two partitions went one to each survivor; nothing else moved.
        assert_eq!(a.partitions, [0, 1, 2]);
        assert_eq!(b.partitions, [3, 4, 5]);
        assert!(groups.leave(G, "b"));
        assert!(!groups.leave(G, "b"));
        assert_eq!(
            groups.heartbeat(G, 6, "a", later, TIMEOUT).partitions,
            (0..6).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_fresh_group_is_dealt_round_robin_and_rebalances_move_little() {
        let mut groups = Groups::new(0);
        let t0 = Instant::now();
        // Renewals only: the current assignment of each of `members`.
        let owners = |groups: &mut Groups, members: &[&str]| -> Vec<Vec<u32>> {
            members
                .iter()
                .map(|m| groups.heartbeat(G, 12, m, t0, TIMEOUT).partitions)
                .collect()
        };
        // A fresh broker: members rejoin after a restart, one after another.
        for m in ["a", "b", "c", "d"] {
            groups.heartbeat(G, 12, m, t0, TIMEOUT);
        }
        let four = owners(&mut groups, &["a", "b", "c", "d"]);
        assert_eq!(four.iter().map(Vec::len).sum::<usize>(), 12, "{four:?}");
        assert!(four.iter().all(|p| p.len() == 3), "even: {four:?}");
        // A fifth member: each of the others gives up at most one partition,
        // and only what the newcomer needs moves.
        groups.heartbeat(G, 12, "e", t0, TIMEOUT);
        let five = owners(&mut groups, &["a", "b", "c", "d", "e"]);
        assert_eq!(five.iter().map(Vec::len).sum::<usize>(), 12, "{five:?}");
        assert!(five.iter().all(|p| (2..=3).contains(&p.len())), "{five:?}");
        let kept = four
            .iter()
            .zip(&five)
            .map(|(before, after)| before.iter().filter(|p| after.contains(p)).count())
            .sum::<usize>();
        assert_eq!(kept, 12 - five[4].len(), "{four:?} → {five:?}");
        // e leaves again: its partitions go back, nothing else moves.
        assert!(groups.leave(G, "e"));
        let back = owners(&mut groups, &["a", "b", "c", "d"]);
        let kept = five
            .iter()
            .zip(&back)
            .map(|(before, after)| before.iter().filter(|p| after.contains(p)).count())
            .sum::<usize>();
        assert_eq!(kept, 12 - five[4].len(), "{five:?} → {back:?}");
    }

    #[test]
    fn commits_are_fenced_by_continuous_ownership() {
        let mut groups = Groups::new(0);
        let t0 = Instant::now();
        let a1 = groups.heartbeat(G, 2, "a", t0, TIMEOUT);
        assert_eq!(groups.check_owner(G, 1, "a", a1.generation), Ok(()));
        // b joins: a keeps partition 0 and may still commit it with its old
        // generation, but partition 1 moved to b.
        let b2 = groups.heartbeat(G, 2, "b", t0, TIMEOUT);
        assert_eq!(groups.check_owner(G, 0, "a", a1.generation), Ok(()));
        assert_eq!(
            groups.check_owner(G, 1, "a", a1.generation),
            Err(Fenced {
                current: b2.generation
            })
        );
        assert_eq!(groups.check_owner(G, 1, "b", b2.generation), Ok(()));
        // b's generation predates nothing it owns; an older one does.
        assert!(groups.check_owner(G, 1, "b", a1.generation).is_err());
        // b leaves: a gets partition 1 back, but its commit from generation
        // a1 (before it lost it) stays fenced.
        assert!(groups.leave(G, "b"));
        let a3 = groups.heartbeat(G, 2, "a", t0, TIMEOUT);
        assert!(groups.check_owner(G, 1, "a", a1.generation).is_err());
        assert_eq!(groups.check_owner(G, 1, "a", a3.generation), Ok(()));
        // Future generations, unknown partitions, members and groups: refused.
        assert!(groups.check_owner(G, 1, "a", a3.generation + 1).is_err());
        assert!(groups.check_owner(G, 2, "a", a3.generation).is_err());
        assert!(groups.check_owner(G, 0, "z", a3.generation).is_err());
        assert_eq!(
            groups.check_owner(("other", "t"), 0, "a", a3.generation),
            Err(Fenced { current: 0 })
        );
    }

    #[test]
    fn generations_start_at_the_epoch() {
        let mut earlier = Groups::new(1);
        let t0 = Instant::now();
        for i in 0..100 {
            earlier.heartbeat(G, 1, &format!("m{i}"), t0, TIMEOUT);
        }
        let last = earlier.heartbeat(G, 1, "m0", t0, TIMEOUT).generation;
        let mut reopened = Groups::new(2);
        assert!(reopened.heartbeat(G, 1, "m0", t0, TIMEOUT).generation > last);
    }
}
