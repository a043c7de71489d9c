//! Which input offsets are safe to commit when records finish out of order.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
struct PartitionOffsets {
    /// Begun, not yet done.
    pending: BTreeSet<i64>,
    /// Done, but an earlier record is still pending.
    done: BTreeSet<i64>,
}

/// Tracks records in flight per partition. A record's offset may be
/// committed only when it and every earlier record of its partition are done.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), PartitionOffsets>,
}

impl OffsetTracker {
    /// A record was taken and its work has begun.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions
            .entry((topic.to_owned(), partition))
            .or_default()
            .pending
            .insert(offset);
    }

    /// A record's work is done (its output acknowledged). Returns the
    /// highest offset now safe to store, if it moved forward.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let state = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        if !state.pending.remove(&offset) {
            return None;
        }
        state.done.insert(offset);
        let safe = match state.pending.first() {
            Some(first_pending) => state.done.range(..first_pending).next_back().copied(),
            None => state.done.last().copied(),
        }?;
        state.done = state.done.split_off(&(safe + 1));
        Some(safe)
    }

    /// Forgets the partitions `keep` refuses (they were revoked: their
    /// new owner redelivers what was not committed).
    pub fn retain_partitions(&mut self, keep: impl Fn(&str, i32) -> bool) {
        self.partitions
            .retain(|(topic, partition), _| keep(topic, *partition));
    }

    /// Records still in flight.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.pending.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_is_safe_only_once_everything_before_it_is_done() {
        let mut tracker = OffsetTracker::default();
        for offset in 10..13 {
            tracker.begin("t", 0, offset);
        }
        assert_eq!(tracker.finish("t", 0, 11), None, "10 is still in flight");
        assert_eq!(tracker.finish("t", 0, 10), Some(11));
        assert_eq!(tracker.finish("t", 0, 12), Some(12));
        assert_eq!(tracker.in_flight(), 0);
    }

    #[test]
    fn partitions_are_independent_and_unknown_offsets_are_ignored() {
        let mut tracker = OffsetTracker::default();
        tracker.begin("t", 0, 5);
        tracker.begin("t", 1, 7);
        assert_eq!(tracker.finish("t", 1, 7), Some(7));
        assert_eq!(tracker.finish("t", 1, 8), None);
        assert_eq!(tracker.finish("u", 0, 5), None);
        assert_eq!(tracker.in_flight(), 1);
    }
}
