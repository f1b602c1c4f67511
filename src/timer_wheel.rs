//! TEMPORARY stand-in with the agreed API; replaced by the hierarchical wheel.
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

pub struct TimerWheel<K: Copy + Eq + Hash + Ord> {
    now: u64,
    by_time: BTreeSet<(u64, K)>,
    by_key: HashMap<K, u64>,
}

impl<K: Copy + Eq + Hash + Ord> TimerWheel<K> {
    pub fn new(now_ms: u64) -> Self {
        TimerWheel { now: now_ms, by_time: BTreeSet::new(), by_key: HashMap::new() }
    }
    pub fn insert(&mut self, key: K, deadline_ms: u64) {
        self.cancel(&key);
        self.by_time.insert((deadline_ms, key));
        self.by_key.insert(key, deadline_ms);
    }
    pub fn cancel(&mut self, key: &K) -> Option<u64> {
        let at = self.by_key.remove(key)?;
        self.by_time.remove(&(at, *key));
        Some(at)
    }
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.by_time.first().map(|(at, _)| (*at).max(self.now))
    }
    pub fn advance_limited(&mut self, now_ms: u64, max: usize, expired: &mut Vec<(K, u64)>) -> bool {
        self.now = self.now.max(now_ms);
        while let Some(&(at, key)) = self.by_time.first() {
            if at > now_ms {
                return false;
            }
            if max == 0 || expired.len() >= max {
                return true;
            }
            self.by_time.pop_first();
            self.by_key.remove(&key);
            expired.push((key, at));
        }
        false
    }
}
