//! A small least-recently-used map from sample to its cached prefix.
//!
//! Each entry is a [`OnceLock`]: the first thread that asks about a sample computes its
//! prefix while holding no lock but the entry's own; other threads asking about the same
//! sample meanwhile wait for that result instead of computing it again. The map's mutex is
//! held only to find or insert an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::data::SampleHash;

pub(crate) struct PrefixCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

struct Inner<V> {
    entries: HashMap<SampleHash, (u64, Arc<OnceLock<V>>)>,
    clock: u64,
}

impl<V> PrefixCache<V> {
    /// A cache of at most `capacity` samples (0 keeps nothing).
    pub fn new(capacity: usize) -> Self {
        PrefixCache { capacity, inner: Mutex::new(Inner { entries: HashMap::new(), clock: 0 }) }
    }

    /// The entry of `key`, created empty if absent (evicting the least recently used entry
    /// when full). An evicted entry stays valid for whoever holds it.
    pub fn slot(&self, key: SampleHash) -> Arc<OnceLock<V>> {
        if self.capacity == 0 {
            return Arc::new(OnceLock::new());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.clock += 1;
        let now = inner.clock;
        if let Some((used, slot)) = inner.entries.get_mut(&key) {
            *used = now;
            return slot.clone();
        }
        if inner.entries.len() >= self.capacity
            && let Some(oldest) = inner.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| *k)
        {
            inner.entries.remove(&oldest);
        }
        let slot = Arc::new(OnceLock::new());
        inner.entries.insert(key, (now, slot.clone()));
        slot
    }

    /// Drops every entry.
    pub fn clear(&self) {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entries.clear();
    }

    /// The number of samples held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Message;

    fn key(i: usize) -> SampleHash {
        SampleHash::of(&[Message::user(i.to_string())], "r")
    }

    #[test]
    fn keeps_the_most_recently_used() {
        let cache: PrefixCache<usize> = PrefixCache::new(2);
        cache.slot(key(1)).get_or_init(|| 1);
        cache.slot(key(2)).get_or_init(|| 2);
        assert_eq!(cache.slot(key(1)).get(), Some(&1)); // 1 is now the most recent
        cache.slot(key(3)).get_or_init(|| 3); // evicts 2
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.slot(key(1)).get(), Some(&1));
        assert_eq!(cache.slot(key(2)).get(), None);
        cache.clear();
        assert_eq!(cache.len(), 0);
        let none: PrefixCache<usize> = PrefixCache::new(0);
        none.slot(key(1)).get_or_init(|| 1);
        assert_eq!(none.slot(key(1)).get(), None);
    }
}
