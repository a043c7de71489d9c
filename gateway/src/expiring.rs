//! A bounded map whose entries expire: what a gateway remembers of recent
//! requests (results, idempotency keys). Forgetting is safe: the topics
//! still hold everything, this only saves reading them again.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
    sync::Mutex,
};

/// At most `capacity` entries, each kept for `ttl_ms` after it was inserted.
pub struct ExpiringMap<K, V> {
    capacity: usize,
    ttl_ms: i64,
    inner: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    values: HashMap<K, (i64, V)>,
    /// Insertion times, oldest first; may name keys replaced since.
    order: VecDeque<(i64, K)>,
}

impl<K: Eq + Hash + Clone, V: Clone> ExpiringMap<K, V> {
    pub fn new(capacity: usize, ttl_ms: i64) -> Self {
        Self {
            capacity: capacity.max(1),
            ttl_ms,
            inner: Mutex::new(Entries {
                values: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    /// Inserts or replaces `key` at time `now_ms`, dropping expired and,
    /// beyond capacity, the oldest entries.
    pub fn insert(&self, key: K, value: V, now_ms: i64) {
        let mut entries = self.inner.lock().expect("expiring map lock");
        entries.values.insert(key.clone(), (now_ms, value));
        entries.order.push_back((now_ms, key));
        while let Some((at, oldest)) = entries.order.front().cloned() {
            let expired = at + self.ttl_ms < now_ms;
            if !expired && entries.values.len() <= self.capacity {
                break;
            }
            entries.order.pop_front();
            // Only if this queue entry is the key's latest insertion.
            if entries.values.get(&oldest).is_some_and(|(t, _)| *t == at) {
                entries.values.remove(&oldest);
            }
        }
    }

    /// The value of `key`, unless it expired by `now_ms`.
    pub fn get(&self, key: &K, now_ms: i64) -> Option<V> {
        let entries = self.inner.lock().expect("expiring map lock");
        entries
            .values
            .get(key)
            .filter(|(at, _)| at + self.ttl_ms >= now_ms)
            .map(|(_, value)| value.clone())
    }

    /// Forgets `key`: its entry in the insertion queue goes when it reaches the front.
    pub fn remove(&self, key: &K) -> Option<V> {
        let mut entries = self.inner.lock().expect("expiring map lock");
        entries.values.remove(key).map(|(_, value)| value)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().expect("expiring map lock").values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_ttl() {
        let map = ExpiringMap::new(10, 100);
        map.insert("a", 1, 0);
        assert_eq!(map.get(&"a", 100), Some(1));
        assert_eq!(map.get(&"a", 101), None);
        map.insert("b", 2, 300);
        assert_eq!(map.len(), 1, "the expired entry was dropped");
    }

    #[test]
    fn a_removed_key_is_gone_and_a_reinsert_survives_its_old_queue_entry() {
        let map = ExpiringMap::new(1, 1_000);
        map.insert("a", 1, 0);
        assert_eq!(map.remove(&"a"), Some(1));
        assert_eq!(map.get(&"a", 0), None);
        assert!(map.is_empty());
        map.insert("a", 2, 1);
        assert_eq!(
            map.get(&"a", 1),
            Some(2),
            "the stale queue entry did not evict it"
        );
    }

    #[test]
    fn beyond_capacity_the_oldest_go_first() {
        let map = ExpiringMap::new(2, 1_000);
        map.insert("a", 1, 0);
        map.insert("b", 2, 1);
        map.insert("a", 3, 2);
        map.insert("c", 4, 3);
        assert_eq!(map.get(&"b", 3), None);
        assert_eq!(map.get(&"a", 3), Some(3));
        assert_eq!(map.get(&"c", 3), Some(4));
    }
}
