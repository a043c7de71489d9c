//! Which partitions this aggregator owns, and since when. The consumer's
//! rebalance callbacks change it; the thread that commits transactions
//! reads it under the same lock, for as long as a transaction lasts. So a
//! revoke waits for the transaction under way, and no transaction begins
//! for a partition once it is revoked: only the current owner writes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
};

use rdkafka::{consumer::BaseConsumer, TopicPartitionList};
use storefront_runtime::consume::{GroupContext, GroupListener};

/// The partitions of the request topic (its partition numbers are the
/// join's: every request-path topic is co-partitioned with it).
pub(crate) struct Ownership {
    topic: String,
    /// Held by the transaction under way, and by a rebalance changing it.
    state: Mutex<Owned>,
    /// Counts assignments (raised under `state`): a page is made in one
    /// epoch. Read without waiting for a transaction.
    epoch: AtomicU64,
    /// Partitions revoked since the loop last looked; its own lock, so the
    /// loop never waits for a transaction.
    revoked: Mutex<Vec<i32>>,
}

#[derive(Debug, Default)]
pub(crate) struct Owned {
    /// Owned partitions, and the epoch each was (last) assigned in.
    since: HashMap<i32, u64>,
}

impl Ownership {
    pub(crate) fn new(topic: &str) -> Self {
        Self {
            topic: topic.to_owned(),
            state: Mutex::default(),
            epoch: AtomicU64::new(0),
            revoked: Mutex::default(),
        }
    }

    /// Held for the length of a transaction.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Owned> {
        // The state stays consistent even if a holder panicked.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current assignment epoch: what a page made now is stamped with.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The partitions revoked since the last call.
    pub(crate) fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut self.revoked.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn partitions<'a>(&'a self, list: &'a TopicPartitionList) -> impl Iterator<Item = i32> + 'a {
        list.elements()
            .into_iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
    }
}

impl Owned {
    /// Whether a page of `partition` made in `epoch` may be written: the
    /// partition is owned and has been since before the page was made.
    pub(crate) fn holds(&self, partition: i32, epoch: u64) -> bool {
        self.since
            .get(&partition)
            .is_some_and(|since| *since <= epoch)
    }

    pub(crate) fn owns(&self, partition: i32) -> bool {
        self.since.contains_key(&partition)
    }
}

impl Ownership {
    /// `partitions` are being taken away: waits for the transaction under
    /// way, then no page of theirs is written any more.
    pub(crate) fn revoke(&self, partitions: &TopicPartitionList) {
        let revoked: Vec<i32> = self.partitions(partitions).collect();
        {
            // Waits here for a transaction under way to end.
            let mut owned = self.lock();
            for partition in &revoked {
                owned.since.remove(partition);
            }
        }
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(revoked);
    }

    /// `partitions` were given to this instance, in a new epoch.
    pub(crate) fn assign(&self, partitions: &TopicPartitionList) {
        let mut owned = self.lock();
        let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        for partition in self.partitions(partitions).collect::<Vec<_>>() {
            owned.since.insert(partition, epoch);
        }
    }
}

impl GroupListener for Ownership {
    fn revoking(&self, _: &BaseConsumer<GroupContext>, partitions: &TopicPartitionList) {
        self.revoke(partitions);
    }

    fn assigned(&self, _: &BaseConsumer<GroupContext>, partitions: &TopicPartitionList) {
        self.assign(partitions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(topic: &str, partitions: &[i32]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for p in partitions {
            list.add_partition(topic, *p);
        }
        list
    }

    #[test]
    fn a_page_is_written_only_while_its_partition_is_owned_since_it_was_made() {
        let ownership = Ownership::new("requests");
        ownership.assign(&list("requests", &[0, 1]));
        let made = ownership.epoch();
        assert!(ownership.lock().holds(0, made));

        ownership.revoke(&list("requests", &[0, 1]));
        assert!(!ownership.lock().holds(0, made), "revoked");
        assert_eq!(ownership.take_revoked(), [0, 1]);
        assert!(ownership.take_revoked().is_empty());

        // Given back: a page made before is still refused, a new one is not.
        ownership.assign(&list("requests", &[0]));
        assert!(!ownership.lock().holds(0, made));
        let now = ownership.epoch();
        assert!(ownership.lock().holds(0, now));
        assert!(!ownership.lock().owns(1));
    }

    #[test]
    fn other_topics_of_the_assignment_are_ignored() {
        let ownership = Ownership::new("requests");
        ownership.assign(&list("ads", &[4]));
        assert!(!ownership.lock().owns(4));
    }
}
