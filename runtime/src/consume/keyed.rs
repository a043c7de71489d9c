//! Per-key order under concurrency: records of one key are handled one
//! after another, in the order they were taken; records of different keys
//! run at once. The driver's loop takes records in, the tasks finish them
//! and pick up the next record of their key, and a revoke hands back what
//! a revoked partition had queued. Offsets are tracked here too, so the
//! offset safe to commit never passes a record that is queued or running.

use std::collections::{HashMap, VecDeque};

use tokio::sync::OwnedSemaphorePermit;

use crate::{offsets::OffsetTracker, Inbound};

/// What orders records: their key (the session), or, for a record without
/// a key, its partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum OrderKey {
    Key(Vec<u8>),
    Partition(String, i32),
}

impl OrderKey {
    fn of(record: &Inbound) -> Self {
        match &record.key {
            Some(key) => Self::Key(key.clone()),
            None => Self::Partition(record.topic.clone(), record.partition),
        }
    }
}

/// A record taken off the consumer, holding one of the driver's slots
/// until it is done or handed back.
#[derive(Debug)]
pub(crate) struct Taken {
    pub(crate) record: Inbound,
    pub(crate) _slot: Option<OwnedSemaphorePermit>,
}

/// How a record's handling ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Handled (its output acknowledged, or dead-lettered): its offset may
    /// be committed once every earlier one is.
    Handled,
    /// Given up (shutting down): it and everything after it in its
    /// partition are read again by the partition's next owner.
    GivenUp,
}

#[derive(Debug, Default)]
pub(crate) struct Keyed {
    /// Keys with a record being handled, each with the records queued behind it.
    busy: HashMap<OrderKey, VecDeque<Taken>>,
    /// Records being handled, per partition.
    running: HashMap<(String, i32), usize>,
    offsets: OffsetTracker,
}

impl Keyed {
    /// Takes a record in. Returns it if its key is free (the caller starts
    /// a task for the key); queues it behind its key otherwise.
    pub(crate) fn take(&mut self, taken: Taken) -> Option<Taken> {
        let record = &taken.record;
        self.offsets
            .begin(&record.topic, record.partition, record.offset);
        match self.busy.entry(OrderKey::of(record)) {
            std::collections::hash_map::Entry::Occupied(mut queue) => {
                queue.get_mut().push_back(taken);
                None
            }
            std::collections::hash_map::Entry::Vacant(free) => {
                free.insert(VecDeque::new());
                self.start(&taken.record);
                Some(taken)
            }
        }
    }

    /// A task finished `record`. Returns the offset now safe to store for
    /// its partition (if it moved) and the next record of its key, if
    /// `go_on` and one is queued; with nothing more to do, the key is free.
    pub(crate) fn finish(
        &mut self,
        record: &Inbound,
        outcome: Outcome,
        go_on: bool,
    ) -> (Option<i64>, Option<Taken>) {
        let partition = (record.topic.clone(), record.partition);
        if let Some(running) = self.running.get_mut(&partition) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                self.running.remove(&partition);
            }
        }
        let safe = match outcome {
            Outcome::Handled => self
                .offsets
                .finish(&record.topic, record.partition, record.offset),
            Outcome::GivenUp => None,
        };
        let key = OrderKey::of(record);
        let next = match self.busy.get_mut(&key) {
            Some(queue) if go_on => queue.pop_front(),
            // Dropped records stay begun and unfinished: their offsets
            // hold back the commit, so they are read again.
            Some(queue) => {
                queue.clear();
                None
            }
            None => None,
        };
        match &next {
            Some(next) => self.start(&next.record),
            None => {
                self.busy.remove(&key);
            }
        }
        (safe, next)
    }

    /// Hands back the queued records of `revoked` partitions (their next
    /// owner reads them again); returns how many.
    pub(crate) fn hand_back(&mut self, revoked: &[(String, i32)]) -> usize {
        let mut handed_back = 0;
        for queue in self.busy.values_mut() {
            let before = queue.len();
            queue.retain(|t| !revoked.contains(&(t.record.topic.clone(), t.record.partition)));
            handed_back += before - queue.len();
        }
        handed_back
    }

    /// Records of `partitions` being handled now.
    pub(crate) fn running_in(&self, partitions: &[(String, i32)]) -> usize {
        partitions.iter().filter_map(|p| self.running.get(p)).sum()
    }

    /// Forgets the offsets of `partitions`, once they are revoked.
    pub(crate) fn forget(&mut self, partitions: &[(String, i32)]) {
        self.offsets.retain_partitions(|topic, partition| {
            !partitions.contains(&(topic.to_owned(), partition))
        });
    }

    /// Records taken and not yet done (running, queued, or given up).
    pub(crate) fn in_flight(&self) -> usize {
        self.offsets.in_flight()
    }

    fn start(&mut self, record: &Inbound) {
        *self
            .running
            .entry((record.topic.clone(), record.partition))
            .or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str, partition: i32, offset: i64) -> Taken {
        Taken {
            record: Inbound {
                topic: "t".into(),
                partition,
                offset,
                key: Some(key.as_bytes().to_vec()),
                payload: None,
                headers: Default::default(),
                raw_headers: Vec::new(),
                timestamp_ms: None,
                trace: Default::default(),
            },
            _slot: None,
        }
    }

    #[test]
    fn a_key_runs_one_record_at_a_time_in_the_order_taken() {
        let mut keyed = Keyed::default();
        let first = keyed.take(record("a", 0, 1)).expect("a is free");
        assert!(keyed.take(record("b", 0, 2)).is_some(), "b runs beside a");
        assert!(keyed.take(record("a", 0, 3)).is_none(), "queued behind a");
        assert!(keyed.take(record("a", 0, 4)).is_none(), "queued behind a");

        let (safe, next) = keyed.finish(&first.record, Outcome::Handled, true);
        assert_eq!(safe, Some(1));
        let next = next.expect("a's next record");
        assert_eq!(next.record.offset, 3);
        let (safe, next) = keyed.finish(&next.record, Outcome::Handled, true);
        assert_eq!(safe, None, "2 (key b) is still running");
        let last = next.expect("a's last record");
        assert_eq!(last.record.offset, 4);
        let (_, next) = keyed.finish(&last.record, Outcome::Handled, true);
        assert!(next.is_none());
        assert!(keyed.take(record("a", 0, 5)).is_some(), "a is free again");
    }

    #[test]
    fn records_handed_back_or_given_up_hold_back_their_partitions_offset() {
        let mut keyed = Keyed::default();
        let running = keyed.take(record("a", 0, 10)).expect("a is free");
        assert!(keyed.take(record("a", 0, 11)).is_none());
        let other = keyed.take(record("b", 0, 12)).expect("b is free");
        assert!(keyed.take(record("c", 1, 0)).is_some());

        let revoked = [("t".to_owned(), 0)];
        assert_eq!(keyed.hand_back(&revoked), 1);
        assert_eq!(keyed.running_in(&revoked), 2);
        let (safe, next) = keyed.finish(&running.record, Outcome::Handled, true);
        assert_eq!(safe, Some(10));
        assert!(next.is_none(), "11 was handed back");
        let (safe, _) = keyed.finish(&other.record, Outcome::Handled, true);
        assert_eq!(safe, None, "11 was never done: 12 must not be committed");
        assert_eq!(keyed.running_in(&revoked), 0);

        keyed.forget(&revoked);
        assert_eq!(keyed.in_flight(), 1, "c, on partition 1");
    }

    #[test]
    fn at_shutdown_a_key_stops_after_its_running_record() {
        let mut keyed = Keyed::default();
        let running = keyed.take(record("a", 0, 1)).expect("a is free");
        assert!(keyed.take(record("a", 0, 2)).is_none());
        let (safe, next) = keyed.finish(&running.record, Outcome::GivenUp, false);
        assert_eq!((safe, next.is_none()), (None, true));
        assert_eq!(keyed.in_flight(), 2, "both are read again");
    }
}
