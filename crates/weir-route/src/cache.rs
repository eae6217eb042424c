//! A bounded per-tag memo, for routers that compile a whole route (filters and output) per tag.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many distinct tags a [`TagCache`] for routes remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 8192;

/// Tags longer than this many bytes are computed every time and never cached, so hostile tags
/// cannot make the cache hold much memory.
pub const MAX_CACHED_TAG_LEN: usize = 1024;

/// Remembers one computed value per tag, for at most a fixed number of tags, forgetting the
/// oldest first. Tags longer than [`MAX_CACHED_TAG_LEN`] bytes are computed every time and never
/// stored, so hostile tags cannot make the cache hold much memory.
///
/// The lock is held only for a hash lookup or insert, never while the value is computed.
#[derive(Debug)]
pub struct TagCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

#[derive(Debug)]
struct Inner<V> {
    map: HashMap<Arc<str>, V>,
    order: VecDeque<Arc<str>>,
}

impl<V: Clone> TagCache<V> {
    /// A cache for at most `capacity` tags (0 turns caching off).
    pub fn new(capacity: usize) -> Self {
        TagCache {
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<V>> {
        // A poisoned lock still guards a valid map; carry on with it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value for `tag`: from the cache, or computed by `compute` and remembered.
    pub fn get_or_insert_with(&self, tag: &str, compute: impl FnOnce() -> V) -> V {
        let cacheable = self.capacity > 0 && tag.len() <= MAX_CACHED_TAG_LEN;
        if cacheable {
            if let Some(v) = self.lock().map.get(tag) {
                return v.clone();
            }
        }
        let value = compute();
        if cacheable {
            let mut inner = self.lock();
            if !inner.map.contains_key(tag) {
                while inner.order.len() >= self.capacity {
                    match inner.order.pop_front() {
                        Some(old) => {
                            inner.map.remove(&old);
                        }
                        None => break,
                    }
                }
                let key: Arc<str> = Arc::from(tag);
                inner.order.push_back(Arc::clone(&key));
                inner.map.insert(key, value.clone());
            }
        }
        value
    }

    /// How many tags are remembered now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when no tag is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn computes_once_per_tag_and_stays_bounded() {
        let cache = TagCache::new(2);
        let calls = Cell::new(0);
        let f = |v: u32| {
            calls.set(calls.get() + 1);
            v
        };
        assert_eq!(cache.get_or_insert_with("a", || f(1)), 1);
        assert_eq!(cache.get_or_insert_with("a", || f(9)), 1);
        assert_eq!(calls.get(), 1);
        cache.get_or_insert_with("b", || f(2));
        cache.get_or_insert_with("c", || f(3));
        assert_eq!(cache.len(), 2);
        // "a" was forgotten first.
        assert_eq!(cache.get_or_insert_with("a", || f(4)), 4);
    }

    #[test]
    fn long_tags_are_not_cached() {
        let cache = TagCache::new(4);
        let long = "x".repeat(MAX_CACHED_TAG_LEN + 1);
        cache.get_or_insert_with(&long, || 1);
        assert!(cache.is_empty());
    }
}
