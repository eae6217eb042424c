//! An ordered routing table with a bounded per-tag cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::PatternSet;

/// How many distinct tags a [`RouteTable`] remembers by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 8192;

/// Tags longer than this many bytes are matched every time and never cached, so hostile
/// tags cannot make the cache hold much memory.
pub const MAX_CACHED_TAG_LEN: usize = 1024;

/// Pattern sets in configuration order, each with a value (an output, a filter, a label).
///
/// [`lookup`](RouteTable::lookup) returns the value of the first entry whose patterns match
/// the tag, as Fluentd routes an event to the first `<match>` that fits.
/// [`lookup_all`](RouteTable::lookup_all) returns the values of every matching entry in
/// order, for `<filter>` chains.
///
/// Both answers are cached per tag. The cache holds at most a fixed number of tags and
/// forgets the oldest one first (Fluentd does the same with 1024 tags). It is shared behind
/// a mutex that is held only for a hash lookup or insert, never while matching.
#[derive(Debug)]
pub struct RouteTable<T> {
    entries: Vec<(PatternSet, T)>,
    capacity: usize,
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// Tag to the indexes of every matching entry, in order.
    map: HashMap<Arc<str>, Arc<[usize]>>,
    /// Tags in insertion order, oldest first.
    order: VecDeque<Arc<str>>,
}

impl<T: Clone> RouteTable<T> {
    /// A table with the given entries (first match wins) and a cache of
    /// [`DEFAULT_CACHE_CAPACITY`] tags.
    pub fn new(entries: Vec<(PatternSet, T)>) -> Self {
        Self::with_cache_capacity(entries, DEFAULT_CACHE_CAPACITY)
    }

    /// A table whose cache remembers at most `capacity` tags (0 turns caching off).
    pub fn with_cache_capacity(entries: Vec<(PatternSet, T)>, capacity: usize) -> Self {
        RouteTable {
            entries,
            capacity,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The value of the first entry that matches `tag`, if any.
    pub fn lookup(&self, tag: &str) -> Option<T> {
        let indexes = self.matching(tag);
        let first = indexes.first()?;
        self.entries.get(*first).map(|(_, value)| value.clone())
    }

    /// The values of every entry that matches `tag`, in table order.
    pub fn lookup_all(&self, tag: &str) -> Vec<T> {
        self.matching(tag)
            .iter()
            .filter_map(|&i| self.entries.get(i).map(|(_, value)| value.clone()))
            .collect()
    }

    /// The first matching entry, without the cache.
    pub fn lookup_uncached(&self, tag: &str) -> Option<T> {
        self.entries
            .iter()
            .find(|(patterns, _)| patterns.matches(tag))
            .map(|(_, value)| value.clone())
    }

    /// Every matching entry, without the cache.
    pub fn lookup_all_uncached(&self, tag: &str) -> Vec<T> {
        self.entries
            .iter()
            .filter(|(patterns, _)| patterns.matches(tag))
            .map(|(_, value)| value.clone())
            .collect()
    }
}

impl<T> RouteTable<T> {
    /// The entries, in order.
    pub fn entries(&self) -> &[(PatternSet, T)] {
        &self.entries
    }

    /// How many tags the cache holds now (never more than its capacity).
    pub fn cached_tags(&self) -> usize {
        self.lock().map.len()
    }

    /// The most tags the cache will hold.
    pub fn cache_capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // The cache is only ever left half-updated if an insert panicked (out of memory);
        // its data is still a valid map, so carry on with it.
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Indexes of every matching entry, from the cache when possible.
    fn matching(&self, tag: &str) -> Arc<[usize]> {
        let cacheable = self.capacity > 0 && tag.len() <= MAX_CACHED_TAG_LEN;
        if cacheable {
            if let Some(hit) = self.lock().map.get(tag) {
                return Arc::clone(hit);
            }
        }
        let found: Arc<[usize]> = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, (patterns, _))| patterns.matches(tag))
            .map(|(i, _)| i)
            .collect();
        if cacheable {
            let mut cache = self.lock();
            if !cache.map.contains_key(tag) {
                while cache.order.len() >= self.capacity {
                    match cache.order.pop_front() {
                        Some(oldest) => {
                            cache.map.remove(&oldest);
                        }
                        None => break,
                    }
                }
                let key: Arc<str> = Arc::from(tag);
                cache.order.push_back(Arc::clone(&key));
                cache.map.insert(key, Arc::clone(&found));
            }
        }
        found
    }
}
