//! Hierarchical timer wheel: owns the pending deadlines of the scheduler (every RETRYING call's
//! `next_retry_at`, every PROCESSING call's callback deadline), keyed by call, and hands back the
//! ones that are due, oldest first. It is a pure data structure: it never reads the clock, does
//! no I/O and knows nothing about calls; time is a `u64` of milliseconds since the Unix epoch
//! that the caller passes in.
//!
//! # Layout
//!
//! * **Tick: 1 ms.** A deadline expires at the first `advance` whose `now_ms` is at or past it,
//!   with no rounding, so "fires within a second of `next_retry_at`" is entirely up to how soon
//!   the scheduler wakes up.
//! * **5 levels × 256 slots.** Level `L` slot `s` holds the deadlines whose highest 8-bit group
//!   differing from the wheel's time is group `L`, and whose group-`L` digit is `s`. Slot spans
//!   are 1 ms, 256 ms, 65.5 s, 4.7 h and 49.7 days; together the levels cover a 2^40 ms epoch
//!   (about 34.8 years). When time reaches a slot's start, its entries move down ("cascade") or
//!   expire: a retry 14 days ahead is touched four times (five if it straddles a 49.7-day
//!   boundary). (6 levels × 64 slots would
//!   cost two more cascades per entry and put an epoch boundary every 795 days; the price here
//!   is 10 KB of list heads per wheel.)
//! * **Overflow list.** Deadlines in a later epoch than the wheel's time wait in one list that
//!   is rescanned when time reaches the start of the earliest epoch it holds. Epochs start at
//!   multiples of 2^40 ms since the Unix epoch (the next one is 2039-09-07T15:47:35.552Z), so
//!   outside tests this list stays empty until then; at that instant one rescan moves the
//!   entries that straddle the boundary into the levels.
//! * **Due heap.** Entries whose deadline is at or before the wheel's time but that have not
//!   been handed out yet (inserted already due, or held back by `advance_limited`) wait in a
//!   binary min-heap by deadline, so that a paced drain hands out the oldest first.
//!
//! # Memory
//!
//! Entries live in one slab (`Vec` of nodes linked into circular per-slot lists, so insert,
//! cancel and cascade are O(1)); the key index is an open-addressing table of 8-byte buckets
//! pointing into the slab. With `K = u128` a node is 32 bytes and, at 1,000,000 entries, the
//! whole wheel holds about 50 bytes per entry (`allocated_bytes`, checked by a test). A std
//! `HashMap<u128, u32>` alone would cost about 69 bytes per entry at that size (32-byte buckets,
//! 2^21 of them), which is why the index is written here. Containers keep their high-water
//! capacity, as std containers do.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};

/// Bits of the deadline covered by one level (256 slots; at least 6, so that each level fills
/// whole words of the occupancy bitmap).
const SLOT_BITS: u32 = 8;
/// Slots per level.
const SLOT_COUNT: usize = 1 << SLOT_BITS;
/// Levels of the wheel; with 1 ms ticks they cover 2^40 ms (about 34.8 years).
const LEVEL_COUNT: usize = 5;
/// Bits of the deadline covered by all the levels together.
const WHEEL_BITS: u32 = SLOT_BITS * LEVEL_COUNT as u32;
/// Mask of the bits below an epoch (the part of a time the levels can tell apart).
const EPOCH_LOW_MASK: u64 = (1 << WHEEL_BITS) - 1;
/// Index of the overflow list among the list heads, after the level slots.
const OVERFLOW_HEAD: usize = LEVEL_COUNT * SLOT_COUNT;
/// Words of the occupancy bitmap: one bit per level slot, level after level.
const OCCUPIED_WORDS: usize = OVERFLOW_HEAD / 64;
/// Number of list heads: every slot of every level, and the overflow list.
const HEAD_COUNT: usize = OVERFLOW_HEAD + 1;

/// Links between nodes are `u32`: values below this are slab indices, values from it up to
/// `HEAD_LINK_BASE + HEAD_COUNT` name list heads. The slab can never hold more nodes than this.
const NODE_COUNT_MAX: u32 = u32::MAX - 4096;
const HEAD_LINK_BASE: u32 = NODE_COUNT_MAX;
// Head links must stay below the markers `IN_DUE_HEAP` and `NO_NODE`.
const _: () = assert!(HEAD_COUNT < 4096 && SLOT_BITS >= 6);
/// Value of a node's `next` while it sits in the due heap (its `prev` is then its heap position).
const IN_DUE_HEAP: u32 = u32::MAX;
/// "No node": the end of the free list, and the node of an empty index bucket.
const NO_NODE: u32 = u32::MAX;

/// One pending deadline, or a free slab slot.
#[derive(Clone, Copy)]
struct Node<K> {
    /// The caller's key; stale while the node is free.
    key: K,
    /// Milliseconds since the Unix epoch.
    deadline_ms: u64,
    /// In a list: the next link (node or head). In the due heap: `IN_DUE_HEAP`. Free: the next
    /// free node or `NO_NODE`.
    next: u32,
    /// In a list: the previous link (node or head). In the due heap: the node's heap position.
    prev: u32,
}

/// The sentinel of one circular list; an empty list points at itself.
#[derive(Clone, Copy)]
struct Head {
    next: u32,
    prev: u32,
}

/// An entry of the due heap; the deadline is copied here so that sifting stays in the heap.
#[derive(Clone, Copy)]
struct DueEntry {
    deadline_ms: u64,
    node: u32,
}

/// The next slot (or the overflow list) whose entries must be looked at, and from when.
#[derive(Clone, Copy)]
struct Expiration {
    at_ms: u64,
    head: usize,
}

/// A set of keys, each with one deadline, that hands the keys back when time passes their
/// deadline. See the module documentation for the layout and its costs.
#[derive(Clone)]
pub struct TimerWheel<K: Copy + Eq + Hash> {
    /// The wheel's time: the latest `now_ms` it was advanced to, or created with. Entries with a
    /// later deadline are in the level lists or the overflow list; the others in `due`.
    now_ms: u64,
    /// Slab of entries; freed nodes are chained through `next` from `free_head` and reused.
    nodes: Vec<Node<K>>,
    /// First free node of the slab, or `NO_NODE`.
    free_head: u32,
    /// Key → slab index, for `cancel`, `deadline_of` and replacing a key's deadline.
    index: KeyIndex<RandomState>,
    /// Sentinels of the level slot lists (`level * SLOT_COUNT + slot`) and of the overflow list.
    heads: Box<[Head]>,
    /// Bit `level * SLOT_COUNT + slot` is set when that slot's list is non-empty.
    occupied: [u64; OCCUPIED_WORDS],
    /// A lower bound on the start of the earliest epoch in the overflow list (exact after each
    /// rescan; a cancel can leave it early, which only costs one extra wake-up); `u64::MAX` when
    /// the overflow list is empty.
    overflow_wakeup_ms: u64,
    /// Min-heap by deadline of entries due at or before `now_ms` not handed out yet.
    due: Vec<DueEntry>,
}

impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// An empty wheel whose time is `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self::with_capacity(now_ms, 0)
    }

    /// An empty wheel whose time is `now_ms`, with room for `capacity` entries before it
    /// allocates again (the scheduler knows how many calls it reloads at boot).
    pub fn with_capacity(now_ms: u64, capacity: usize) -> Self {
        let heads = (0..HEAD_COUNT).map(|head| Head { next: head_link(head), prev: head_link(head) }).collect();
        Self {
            now_ms,
            nodes: Vec::with_capacity(capacity),
            free_head: NO_NODE,
            index: KeyIndex::with_capacity(capacity, RandomState::new()),
            heads,
            occupied: [0; OCCUPIED_WORDS],
            overflow_wakeup_ms: u64::MAX,
            due: Vec::new(),
        }
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.index.len
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.index.len == 0
    }

    /// The wheel's time: the latest `now_ms` it was created with or advanced to.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sets `key`'s deadline, replacing the one it had if any. A deadline at or before the
    /// wheel's time is handed out by the next advance.
    pub fn insert(&mut self, key: K, deadline_ms: u64) {
        let tag = self.index.tag_of(&key);
        match self.index.find(tag, &key, &self.nodes) {
            Some(bucket) => {
                let node = self.index.node_at(bucket);
                self.detach(node);
                self.nodes[node as usize].deadline_ms = deadline_ms;
                self.attach(node);
            }
            None => {
                let node = self.allocate(key, deadline_ms);
                self.index.insert_new(tag, node);
                self.attach(node);
            }
        }
    }

    /// Removes `key`, returning the deadline it had, or `None` if it was not pending.
    pub fn cancel(&mut self, key: &K) -> Option<u64> {
        let tag = self.index.tag_of(key);
        let bucket = self.index.find(tag, key, &self.nodes)?;
        let node = self.index.remove_at(bucket);
        self.detach(node);
        let deadline_ms = self.nodes[node as usize].deadline_ms;
        self.release(node);
        Some(deadline_ms)
    }

    /// The pending deadline of `key`, if any.
    pub fn deadline_of(&self, key: &K) -> Option<u64> {
        let tag = self.index.tag_of(key);
        let bucket = self.index.find(tag, key, &self.nodes)?;
        Some(self.nodes[self.index.node_at(bucket) as usize].deadline_ms)
    }

    /// When the caller should next advance the wheel: `None` if it is empty; otherwise a time
    /// never later than the earliest pending deadline. It may be earlier (the start of a slot
    /// whose entries must cascade, or of an overflow epoch), but advancing to it always makes
    /// progress: it is later than the wheel's time, unless an entry is already due, in which
    /// case it is that entry's deadline.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if let Some(first) = self.due.first() {
            return Some(first.deadline_ms);
        }
        self.next_expiration().map(|expiration| expiration.at_ms)
    }

    /// Moves the wheel's time forward to `now_ms` (an earlier `now_ms` leaves it unchanged) and
    /// appends to `expired` every pending `(key, deadline)` whose deadline is at or before
    /// `now_ms`, each exactly once, removing them. They come out in non-decreasing deadline order.
    pub fn advance(&mut self, now_ms: u64, expired: &mut Vec<(K, u64)>) {
        self.advance_limited(now_ms, usize::MAX, expired);
    }

    /// Like [`advance`](Self::advance), but appends at most `max` entries: the due entries with
    /// the earliest deadlines, in non-decreasing deadline order. Returns whether more entries
    /// are due at `now_ms`; they stay pending (and cancellable) and come out first, oldest first,
    /// at the next advance. Across calls the order holds for every entry that was pending at the
    /// first of them; an entry inserted already due meanwhile takes its place by deadline among
    /// the due ones. Time moves to `now_ms` whatever `max` is.
    pub fn advance_limited(&mut self, now_ms: u64, max: usize, expired: &mut Vec<(K, u64)>) -> bool {
        let mut budget = max;
        // Entries already in the due heap are older than anything still in the wheel.
        while budget > 0
            && let Some(first) = self.due.first()
            && first.deadline_ms <= now_ms
        {
            let node = self.due_remove(0);
            self.expire(node, expired);
            budget -= 1;
        }
        if now_ms > self.now_ms {
            self.walk_wheel(now_ms, &mut budget, expired);
        }
        self.due.first().is_some_and(|first| first.deadline_ms <= now_ms)
    }

    /// Heap bytes held by the wheel (from container capacities) plus the struct itself.
    pub fn allocated_bytes(&self) -> usize {
        size_of::<Self>()
            + self.nodes.capacity() * size_of::<Node<K>>()
            + self.index.buckets.capacity() * size_of::<Bucket>()
            + self.heads.len() * size_of::<Head>()
            + self.due.capacity() * size_of::<DueEntry>()
    }

    /// Processes, in time order, every slot (and overflow epoch) that starts at or before
    /// `now_ms`, then sets the wheel's time to `now_ms`. Entries due on the way are appended to
    /// `expired` while `budget` lasts and pushed on the due heap after that.
    fn walk_wheel(&mut self, now_ms: u64, budget: &mut usize, expired: &mut Vec<(K, u64)>) {
        while let Some(expiration) = self.next_expiration()
            && expiration.at_ms <= now_ms
        {
            // Time only moves forward; anything else would loop here for ever.
            debug_assert!(expiration.at_ms > self.now_ms);
            self.now_ms = expiration.at_ms;
            let head = expiration.head;
            if head == OVERFLOW_HEAD {
                // Recomputed by `place` for the entries that stay in the overflow list.
                self.overflow_wakeup_ms = u64::MAX;
            } else {
                self.occupied[head / 64] &= !(1 << (head % 64));
            }
            // Detach the whole list, then walk its old chain, which still ends at the head.
            let end = head_link(head);
            let mut cursor = self.heads[head].next;
            self.heads[head] = Head { next: end, prev: end };
            while cursor != end {
                let node = cursor;
                cursor = self.nodes[node as usize].next;
                if self.nodes[node as usize].deadline_ms == self.now_ms {
                    if *budget > 0 {
                        *budget -= 1;
                        self.expire(node, expired);
                    } else {
                        self.due_push(node);
                    }
                } else {
                    // Later than the slot start: a lower level (or, for the overflow list,
                    // the wheel or the overflow list again) takes it.
                    self.place(node);
                }
            }
        }
        // No slot starts at or before `now_ms`, so every entry's place is unchanged by this.
        self.now_ms = now_ms;
    }

    /// The earliest slot start (or overflow epoch start) with entries, if any. A non-empty
    /// lower level always expires before any higher one, and the levels before the overflow.
    fn next_expiration(&self) -> Option<Expiration> {
        for (word, &occupied) in self.occupied.iter().enumerate() {
            if occupied != 0 {
                let head = word * 64 + occupied.trailing_zeros() as usize;
                let shift = (head / SLOT_COUNT) as u32 * SLOT_BITS;
                let slot = (head % SLOT_COUNT) as u64;
                let above = self.now_ms >> (shift + SLOT_BITS) << (shift + SLOT_BITS);
                return Some(Expiration { at_ms: above | (slot << shift), head });
            }
        }
        (self.overflow_wakeup_ms != u64::MAX).then_some(Expiration { at_ms: self.overflow_wakeup_ms, head: OVERFLOW_HEAD })
    }

    /// Puts a node that is in no list or heap where its deadline belongs.
    fn attach(&mut self, node: u32) {
        if self.nodes[node as usize].deadline_ms <= self.now_ms {
            self.due_push(node);
        } else {
            self.place(node);
        }
    }

    /// Links a node whose deadline is later than the wheel's time into its level slot, or into
    /// the overflow list when its deadline is in a later epoch.
    fn place(&mut self, node: u32) {
        let deadline_ms = self.nodes[node as usize].deadline_ms;
        debug_assert!(deadline_ms > self.now_ms);
        let differing = deadline_ms ^ self.now_ms;
        let head = if differing > EPOCH_LOW_MASK {
            self.overflow_wakeup_ms = self.overflow_wakeup_ms.min(deadline_ms & !EPOCH_LOW_MASK);
            OVERFLOW_HEAD
        } else {
            let level = (u64::BITS - 1 - differing.leading_zeros()) / SLOT_BITS;
            let slot = (deadline_ms >> (level * SLOT_BITS)) as usize % SLOT_COUNT;
            let head = level as usize * SLOT_COUNT + slot;
            self.occupied[head / 64] |= 1 << (head % 64);
            head
        };
        let link = head_link(head);
        let tail = self.heads[head].prev;
        let entry = &mut self.nodes[node as usize];
        entry.prev = tail;
        entry.next = link;
        self.set_next(tail, node);
        self.heads[head].prev = node;
    }

    /// Takes a node out of its list or out of the due heap.
    fn detach(&mut self, node: u32) {
        let Node { next, prev, .. } = self.nodes[node as usize];
        if next == IN_DUE_HEAP {
            self.due_remove(prev as usize);
            return;
        }
        self.set_next(prev, next);
        self.set_prev(next, prev);
        if prev == next && prev >= HEAD_LINK_BASE {
            // The node was alone in its list, which is now empty.
            let head = (prev - HEAD_LINK_BASE) as usize;
            if head == OVERFLOW_HEAD {
                self.overflow_wakeup_ms = u64::MAX;
            } else {
                self.occupied[head / 64] &= !(1 << (head % 64));
            }
        }
    }

    fn set_next(&mut self, link: u32, value: u32) {
        if link >= HEAD_LINK_BASE {
            self.heads[(link - HEAD_LINK_BASE) as usize].next = value;
        } else {
            self.nodes[link as usize].next = value;
        }
    }

    fn set_prev(&mut self, link: u32, value: u32) {
        if link >= HEAD_LINK_BASE {
            self.heads[(link - HEAD_LINK_BASE) as usize].prev = value;
        } else {
            self.nodes[link as usize].prev = value;
        }
    }

    /// Hands out a detached node: appends it to `expired` and forgets it.
    fn expire(&mut self, node: u32, expired: &mut Vec<(K, u64)>) {
        let Node { key, deadline_ms, .. } = self.nodes[node as usize];
        expired.push((key, deadline_ms));
        let tag = self.index.tag_of(&key);
        let bucket = self.index.find(tag, &key, &self.nodes).expect("a pending node is in the index");
        self.index.remove_at(bucket);
        self.release(node);
    }

    fn allocate(&mut self, key: K, deadline_ms: u64) -> u32 {
        let fresh = Node { key, deadline_ms, next: NO_NODE, prev: NO_NODE };
        if self.free_head != NO_NODE {
            let node = self.free_head;
            self.free_head = self.nodes[node as usize].next;
            self.nodes[node as usize] = fresh;
            node
        } else {
            let node = u32::try_from(self.nodes.len()).ok().filter(|&node| node < NODE_COUNT_MAX).expect("a timer wheel holds fewer than 2^32 - 4096 entries");
            self.nodes.push(fresh);
            node
        }
    }

    fn release(&mut self, node: u32) {
        self.nodes[node as usize].next = self.free_head;
        self.free_head = node;
    }

    fn due_push(&mut self, node: u32) {
        let position = self.due.len();
        self.due.push(DueEntry { deadline_ms: self.nodes[node as usize].deadline_ms, node });
        self.nodes[node as usize].next = IN_DUE_HEAP;
        self.due_sift_up(position);
    }

    /// Removes the heap entry at `position` and returns its node.
    fn due_remove(&mut self, position: usize) -> u32 {
        let removed = self.due.swap_remove(position).node;
        if position < self.due.len() {
            let position = self.due_sift_up(position);
            self.due_sift_down(position);
        }
        removed
    }

    /// Moves the entry at `position` up to its place; returns where it ended.
    fn due_sift_up(&mut self, mut position: usize) -> usize {
        let entry = self.due[position];
        while position > 0 {
            let parent = (position - 1) / 2;
            if self.due[parent].deadline_ms <= entry.deadline_ms {
                break;
            }
            self.due_put(position, self.due[parent]);
            position = parent;
        }
        self.due_put(position, entry);
        position
    }

    fn due_sift_down(&mut self, mut position: usize) {
        let entry = self.due[position];
        loop {
            let left = 2 * position + 1;
            if left >= self.due.len() {
                break;
            }
            let right = left + 1;
            let child = if right < self.due.len() && self.due[right].deadline_ms < self.due[left].deadline_ms { right } else { left };
            if entry.deadline_ms <= self.due[child].deadline_ms {
                break;
            }
            self.due_put(position, self.due[child]);
            position = child;
        }
        self.due_put(position, entry);
    }

    /// Writes a heap entry and records its position in its node.
    fn due_put(&mut self, position: usize, entry: DueEntry) {
        self.due[position] = entry;
        // Positions fit in u32: the heap never holds more entries than the slab.
        self.nodes[entry.node as usize].prev = position as u32;
    }
}

#[cfg(test)]
impl<K: Copy + Eq + Hash> TimerWheel<K> {
    /// Panics unless every structural invariant holds: each listed entry sits where its
    /// deadline says, occupancy bits and the overflow wake-up agree with the lists, the due heap
    /// is a heap whose nodes know their positions, and the index names exactly the live nodes.
    fn check_invariants(&self) {
        // Walk the lists the occupancy bitmap names, and the overflow list: a non-empty list
        // whose bit is clear would leave its entries uncounted below.
        let occupied_heads = (0..OVERFLOW_HEAD).filter(|head| self.occupied[head / 64] >> (head % 64) & 1 == 1);
        let mut live = 0;
        for head in occupied_heads.chain([OVERFLOW_HEAD]) {
            let link = head_link(head);
            let mut previous = link;
            let mut cursor = self.heads[head].next;
            let mut count = 0;
            while cursor != link {
                let node = self.nodes[cursor as usize];
                assert_eq!(node.prev, previous, "broken back link in list {head}");
                assert!(node.deadline_ms > self.now_ms, "list {head} holds a due entry");
                let differing = node.deadline_ms ^ self.now_ms;
                if head == OVERFLOW_HEAD {
                    assert!(differing > EPOCH_LOW_MASK, "overflow entry fits the levels");
                    assert!(self.overflow_wakeup_ms <= node.deadline_ms & !EPOCH_LOW_MASK);
                } else {
                    let level = (u64::BITS - 1 - differing.leading_zeros()) / SLOT_BITS;
                    let slot = (node.deadline_ms >> (level * SLOT_BITS)) as usize % SLOT_COUNT;
                    assert_eq!(level as usize * SLOT_COUNT + slot, head, "misplaced entry");
                }
                let tag = self.index.tag_of(&node.key);
                let bucket = self.index.find(tag, &node.key, &self.nodes).expect("indexed");
                assert_eq!(self.index.node_at(bucket), cursor);
                previous = cursor;
                cursor = node.next;
                count += 1;
            }
            assert_eq!(self.heads[head].prev, previous, "broken tail of list {head}");
            if head == OVERFLOW_HEAD {
                assert_eq!(count == 0, self.overflow_wakeup_ms == u64::MAX);
            } else {
                assert!(count > 0, "occupancy bit set for the empty list {head}");
            }
            live += count;
        }
        for (position, entry) in self.due.iter().enumerate() {
            let node = self.nodes[entry.node as usize];
            assert_eq!((node.next, node.prev as usize), (IN_DUE_HEAP, position));
            assert_eq!(node.deadline_ms, entry.deadline_ms);
            assert!(entry.deadline_ms <= self.now_ms);
            if position > 0 {
                assert!(self.due[(position - 1) / 2].deadline_ms <= entry.deadline_ms);
            }
            let tag = self.index.tag_of(&node.key);
            let bucket = self.index.find(tag, &node.key, &self.nodes).expect("indexed");
            assert_eq!(self.index.node_at(bucket), entry.node);
        }
        live += self.due.len();
        assert_eq!(live, self.index.len, "index and lists disagree");
    }
}

impl<K: Copy + Eq + Hash> std::fmt::Debug for TimerWheel<K> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TimerWheel")
            .field("now_ms", &self.now_ms)
            .field("len", &self.len())
            .field("due", &self.due.len())
            .field("next_wakeup_ms", &self.next_wakeup_ms())
            .finish_non_exhaustive()
    }
}

fn head_link(head: usize) -> u32 {
    HEAD_LINK_BASE + head as u32
}

/// One bucket of the key index: a slab index and 32 bits of its key's hash (so that probing
/// and growing rarely touch the slab). `node == NO_NODE` marks an empty bucket.
#[derive(Clone, Copy)]
struct Bucket {
    node: u32,
    tag: u32,
}

const EMPTY_BUCKET: Bucket = Bucket { node: NO_NODE, tag: 0 };

/// Open-addressing hash table (linear probing, backward-shift deletion, at most 3/4 full) of
/// slab indices; the keys themselves stay in the slab. Its callers pass the slab in.
#[derive(Clone)]
struct KeyIndex<S> {
    /// A power of two in length, or empty before the first insert.
    buckets: Vec<Bucket>,
    /// Non-empty buckets.
    len: usize,
    hasher: S,
}

impl<S: BuildHasher> KeyIndex<S> {
    fn with_capacity(capacity: usize, hasher: S) -> Self {
        let mut index = Self { buckets: Vec::new(), len: 0, hasher };
        if capacity > 0 {
            index.resize(Self::bucket_count_for(capacity));
        }
        index
    }

    /// The smallest power of two that holds `len` entries at most 3/4 full.
    fn bucket_count_for(len: usize) -> usize {
        (len.saturating_mul(4) / 3 + 1).next_power_of_two().max(16)
    }

    fn tag_of<K: Hash>(&self, key: &K) -> u32 {
        let hash = self.hasher.hash_one(key);
        (hash ^ (hash >> 32)) as u32
    }

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The bucket holding `key`, whose tag is `tag`.
    fn find<K: Copy + Eq>(&self, tag: u32, key: &K, nodes: &[Node<K>]) -> Option<usize> {
        if self.buckets.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut position = tag as usize & mask;
        loop {
            let bucket = self.buckets[position];
            if bucket.node == NO_NODE {
                return None;
            }
            if bucket.tag == tag && nodes[bucket.node as usize].key == *key {
                return Some(position);
            }
            position = (position + 1) & mask;
        }
    }

    fn node_at(&self, bucket: usize) -> u32 {
        self.buckets[bucket].node
    }

    /// Adds a node whose key is not in the index yet.
    fn insert_new(&mut self, tag: u32, node: u32) {
        if (self.len + 1) * 4 > self.buckets.len() * 3 {
            self.resize(Self::bucket_count_for(self.len + 1).max(self.buckets.len() * 2));
        }
        self.put(Bucket { node, tag });
        self.len += 1;
    }

    /// Stores a bucket in the first empty place of its probe sequence.
    fn put(&mut self, bucket: Bucket) {
        let mask = self.mask();
        let mut position = bucket.tag as usize & mask;
        while self.buckets[position].node != NO_NODE {
            position = (position + 1) & mask;
        }
        self.buckets[position] = bucket;
    }

    /// Empties the bucket at `position` and returns its node. Later buckets of the same probe
    /// run shift back, so that lookups never need tombstones.
    fn remove_at(&mut self, position: usize) -> u32 {
        let mask = self.mask();
        let removed = self.buckets[position].node;
        let mut hole = position;
        let mut probe = (position + 1) & mask;
        loop {
            let bucket = self.buckets[probe];
            if bucket.node == NO_NODE {
                break;
            }
            let home = bucket.tag as usize & mask;
            // The bucket may fill the hole if the hole lies on its probe path, i.e. between its
            // home and where it sits now (cyclically).
            if probe.wrapping_sub(home) & mask >= probe.wrapping_sub(hole) & mask {
                self.buckets[hole] = bucket;
                hole = probe;
            }
            probe = (probe + 1) & mask;
        }
        self.buckets[hole] = EMPTY_BUCKET;
        self.len -= 1;
        removed
    }

    fn resize(&mut self, bucket_count: usize) {
        let old = std::mem::replace(&mut self.buckets, vec![EMPTY_BUCKET; bucket_count]);
        for bucket in old {
            if bucket.node != NO_NODE {
                self.put(bucket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    const SECOND_MS: u64 = 1_000;
    const DAY_MS: u64 = 86_400 * SECOND_MS;
    /// 2026-11-21T15:07:23Z, a realistic wheel time.
    const T0: u64 = 1_795_705_643_000;

    fn advance(wheel: &mut TimerWheel<u32>, now_ms: u64) -> Vec<(u32, u64)> {
        let mut expired = Vec::new();
        wheel.advance(now_ms, &mut expired);
        expired
    }

    #[test]
    fn empty_wheel_has_no_wakeup_and_expires_nothing() {
        let mut wheel = TimerWheel::<u32>::new(T0);
        assert!(wheel.is_empty());
        assert_eq!(wheel.len(), 0);
        assert_eq!(wheel.next_wakeup_ms(), None);
        assert_eq!(advance(&mut wheel, T0 + 400 * DAY_MS), vec![]);
        assert_eq!(wheel.now_ms(), T0 + 400 * DAY_MS);
        assert_eq!(wheel.next_wakeup_ms(), None);
    }

    #[test]
    fn insert_cancel_and_replace() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, T0 + 5_000);
        wheel.insert(2, T0 + 7_000);
        assert_eq!(wheel.len(), 2);
        assert_eq!(wheel.deadline_of(&1), Some(T0 + 5_000));
        assert_eq!(wheel.cancel(&1), Some(T0 + 5_000));
        assert_eq!(wheel.cancel(&1), None);
        assert_eq!(wheel.deadline_of(&1), None);
        assert_eq!(wheel.len(), 1);
        // Replacing moves the deadline both ways and keeps one entry.
        wheel.insert(2, T0 + 3_000);
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.deadline_of(&2), Some(T0 + 3_000));
        assert!(wheel.next_wakeup_ms().unwrap() <= T0 + 3_000);
        assert_eq!(advance(&mut wheel, T0 + 2_999), vec![]);
        assert_eq!(advance(&mut wheel, T0 + 10_000), vec![(2, T0 + 3_000)]);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_wakeup_ms(), None);
        // A cancelled key never comes out.
        wheel.insert(3, T0 + 20_000);
        wheel.insert(3, T0 + 90 * DAY_MS);
        assert_eq!(wheel.cancel(&3), Some(T0 + 90 * DAY_MS));
        assert_eq!(advance(&mut wheel, T0 + 100 * DAY_MS), vec![]);
    }

    #[test]
    fn already_due_entries_come_out_at_the_next_advance_oldest_first() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, T0 - 10);
        wheel.insert(2, 0);
        wheel.insert(3, T0);
        assert_eq!(wheel.next_wakeup_ms(), Some(0));
        assert_eq!(advance(&mut wheel, T0), vec![(2, 0), (1, T0 - 10), (3, T0)]);
        assert_eq!(wheel.next_wakeup_ms(), None);
    }

    #[test]
    fn deadline_equal_to_now_expires_and_one_later_does_not() {
        // Start on a level-3 boundary so that the offsets straddle the slot edges of each level.
        let start = T0 >> 24 << 24;
        let offsets = [1, 2, 255, 256, 257, 4_096, 65_535, 65_536, 65_537, 16_777_215, 16_777_216, 16_777_217];
        let mut wheel = TimerWheel::new(start);
        for offset in offsets {
            wheel.insert(offset as u32, start + offset);
        }
        for offset in offsets {
            assert_eq!(advance(&mut wheel, start + offset - 1), vec![]);
            let wakeup = wheel.next_wakeup_ms().unwrap();
            assert!(wakeup > start + offset - 1 && wakeup <= start + offset);
            assert_eq!(advance(&mut wheel, start + offset), vec![(offset as u32, start + offset)]);
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn far_future_deadlines_expire_exactly_on_time() {
        for days in [30, 400, 800, 2_000, 13_000, 40_000] {
            let mut wheel = TimerWheel::new(T0);
            let deadline = T0 + days * DAY_MS + 17;
            wheel.insert(7, deadline);
            let mut wakeups = 0;
            while let Some(wakeup) = wheel.next_wakeup_ms() {
                assert!(wakeup <= deadline, "{days} days: woke at {wakeup} after {deadline}");
                assert!(wakeup > wheel.now_ms());
                let expired = advance(&mut wheel, wakeup);
                wakeups += 1;
                assert!(expired.is_empty() || expired == vec![(7, deadline)]);
            }
            assert_eq!(wheel.now_ms(), deadline, "{days} days");
            // At most one per level and one for the overflow list.
            assert!(wakeups <= LEVEL_COUNT + 1, "{days} days took {wakeups} wake-ups");
        }
    }

    #[test]
    fn far_future_deadline_survives_big_jumps() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, T0 + 400 * DAY_MS);
        wheel.insert(2, T0 + 30 * DAY_MS);
        assert_eq!(advance(&mut wheel, T0 + 30 * DAY_MS - 1), vec![]);
        assert_eq!(advance(&mut wheel, T0 + 399 * DAY_MS), vec![(2, T0 + 30 * DAY_MS)]);
        assert_eq!(advance(&mut wheel, T0 + 400 * DAY_MS - 1), vec![]);
        assert_eq!(advance(&mut wheel, u64::MAX), vec![(1, T0 + 400 * DAY_MS)]);
    }

    #[test]
    fn deadlines_just_across_an_epoch_boundary() {
        let boundary = 26 << WHEEL_BITS;
        let mut wheel = TimerWheel::new(boundary - 3);
        wheel.insert(1, boundary + 2);
        wheel.insert(2, boundary);
        wheel.insert(3, boundary - 1);
        assert_eq!(wheel.next_wakeup_ms(), Some(boundary - 1));
        assert_eq!(advance(&mut wheel, boundary - 1), vec![(3, boundary - 1)]);
        assert_eq!(wheel.next_wakeup_ms(), Some(boundary));
        assert_eq!(advance(&mut wheel, boundary), vec![(2, boundary)]);
        assert_eq!(advance(&mut wheel, boundary + 1), vec![]);
        assert_eq!(advance(&mut wheel, boundary + 2), vec![(1, boundary + 2)]);
    }

    #[test]
    fn largest_u64_deadlines_and_times() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, u64::MAX);
        wheel.insert(2, u64::MAX - 1);
        wheel.insert(3, u64::MAX - (1 << 40));
        assert_eq!(advance(&mut wheel, u64::MAX - 2), vec![(3, u64::MAX - (1 << 40))]);
        assert_eq!(advance(&mut wheel, u64::MAX - 1), vec![(2, u64::MAX - 1)]);
        assert_eq!(wheel.next_wakeup_ms(), Some(u64::MAX));
        assert_eq!(advance(&mut wheel, u64::MAX), vec![(1, u64::MAX)]);
        assert_eq!(wheel.now_ms(), u64::MAX);
        // At the end of time every deadline is due at once.
        wheel.insert(4, u64::MAX);
        wheel.insert(5, 0);
        assert_eq!(advance(&mut wheel, u64::MAX), vec![(5, 0), (4, u64::MAX)]);
    }

    #[test]
    fn advancing_backwards_moves_nothing() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, T0 + 10);
        assert_eq!(advance(&mut wheel, T0 - 5_000), vec![]);
        assert_eq!(wheel.now_ms(), T0);
        assert_eq!(wheel.deadline_of(&1), Some(T0 + 10));
        let wakeup = wheel.next_wakeup_ms().unwrap();
        assert!(wakeup > T0 && wakeup <= T0 + 10);
        assert_eq!(advance(&mut wheel, T0 + 10), vec![(1, T0 + 10)]);
        // Going back after that changes nothing either: an entry due before the wheel's time
        // only comes out once `now_ms` reaches its deadline.
        wheel.insert(2, T0 + 5);
        assert_eq!(advance(&mut wheel, T0), vec![]);
        assert_eq!(wheel.now_ms(), T0 + 10);
        assert_eq!(advance(&mut wheel, T0 + 5), vec![(2, T0 + 5)]);
    }

    #[test]
    fn limited_advance_paces_an_overdue_burst_oldest_first() {
        let mut wheel = TimerWheel::new(T0);
        // A reload after downtime: overdue retries in no particular order, plus a crowd due at
        // the same window start and a few later ones.
        for key in 0..1_000u32 {
            let deadline = T0 - 1 - u64::from(key.wrapping_mul(2_654_435_761) % 50_000);
            wheel.insert(key, deadline);
        }
        for key in 1_000..1_500u32 {
            wheel.insert(key, T0 + 60_000);
        }
        wheel.insert(2_000, T0 + 61_000);
        let mut all = Vec::new();
        let mut batch = Vec::new();
        let mut calls = 0;
        while wheel.advance_limited(T0 + 60_500, 64, &mut batch) {
            assert_eq!(batch.len(), 64);
            all.append(&mut batch);
            calls += 1;
            // Time moved on at once, so a new entry goes behind the backlog.
            assert_eq!(wheel.now_ms(), T0 + 60_500);
        }
        all.append(&mut batch);
        assert_eq!(calls, 1_500 / 64);
        assert_eq!(all.len(), 1_500);
        assert!(all.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        assert_eq!(wheel.len(), 1);
        assert!(!wheel.advance_limited(T0 + 60_999, 64, &mut batch));
        assert!(batch.is_empty());
    }

    #[test]
    fn limited_advance_with_zero_budget_still_moves_time() {
        let mut wheel = TimerWheel::new(T0);
        wheel.insert(1, T0 + 5);
        wheel.insert(2, T0 + 100);
        let mut expired = Vec::new();
        assert!(wheel.advance_limited(T0 + 50, 0, &mut expired));
        assert!(expired.is_empty());
        assert_eq!(wheel.now_ms(), T0 + 50);
        assert_eq!(wheel.next_wakeup_ms(), Some(T0 + 5));
        // Still pending, so still cancellable.
        assert_eq!(wheel.cancel(&1), Some(T0 + 5));
        let wakeup = wheel.next_wakeup_ms().unwrap();
        assert!(wakeup > T0 + 50 && wakeup <= T0 + 100);
        assert!(!wheel.advance_limited(T0 + 100, 1, &mut expired));
        assert_eq!(expired, vec![(2, T0 + 100)]);
    }

    /// Bytes per entry (from container capacities) of a wheel at `now_ms` holding a million
    /// u128 keys with deadlines spread over the 14 days from `first_deadline_ms`.
    fn bytes_per_entry_at_one_million(now_ms: u64, first_deadline_ms: u64) -> f64 {
        const ENTRY_COUNT: u64 = 1_000_000;
        let mut wheel = TimerWheel::<u128>::new(now_ms);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for call in 0..ENTRY_COUNT {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let key = (u128::from(state) << 64) | u128::from(call);
            wheel.insert(key, first_deadline_ms + (state >> 33) % (14 * DAY_MS));
        }
        assert_eq!(wheel.len(), ENTRY_COUNT as usize);
        wheel.allocated_bytes() as f64 / ENTRY_COUNT as f64
    }

    #[test]
    fn memory_per_entry_at_one_million_u128_keys() {
        let pending = bytes_per_entry_at_one_million(T0, T0);
        println!("timer wheel: {pending:.1} bytes per entry, 1,000,000 u128 keys due within 14 days");
        assert!(pending < 80.0, "{pending} bytes per entry");
        // The worst case: a reload after downtime, every entry overdue and in the due heap.
        let overdue = bytes_per_entry_at_one_million(T0 + 14 * DAY_MS, T0);
        println!("timer wheel: {overdue:.1} bytes per entry, 1,000,000 u128 keys all overdue");
        assert!(overdue < 80.0, "{overdue} bytes per entry");
    }

    /// A hasher that sends every key to one of 4 home buckets, to crowd the index.
    #[derive(Clone, Default)]
    struct CrowdingHasher(u64);

    impl std::hash::Hasher for CrowdingHasher {
        fn finish(&self) -> u64 {
            // Home bucket in the low bits; the tag's high bits tell most keys apart.
            (self.0 % 4) | (self.0 << 40)
        }
        fn write(&mut self, bytes: &[u8]) {
            for &byte in bytes {
                self.0 = self.0.wrapping_mul(31).wrapping_add(u64::from(byte));
            }
        }
    }

    #[derive(Clone, Default)]
    struct CrowdingState;

    impl BuildHasher for CrowdingState {
        type Hasher = CrowdingHasher;
        fn build_hasher(&self) -> CrowdingHasher {
            CrowdingHasher(0)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// The key index under heavy collisions (long probe runs, wrap-around, backward shifts)
        /// agrees with a `HashSet`.
        #[test]
        fn key_index_matches_a_hash_set(ops in prop::collection::vec((any::<bool>(), 0u16..300), 1..600)) {
            let mut index = KeyIndex::with_capacity(0, CrowdingState);
            let mut nodes: Vec<Node<u16>> = Vec::new();
            let mut model = HashSet::new();
            for (insert, key) in ops {
                let tag = index.tag_of(&key);
                let found = index.find(tag, &key, &nodes);
                prop_assert_eq!(found.is_some(), model.contains(&key));
                if insert && found.is_none() {
                    let node = nodes.len() as u32;
                    nodes.push(Node { key, deadline_ms: 0, next: NO_NODE, prev: NO_NODE });
                    index.insert_new(tag, node);
                    model.insert(key);
                } else if !insert && let Some(bucket) = found {
                    let node = index.remove_at(bucket);
                    prop_assert_eq!(nodes[node as usize].key, key);
                    model.remove(&key);
                }
                prop_assert_eq!(index.len, model.len());
                prop_assert!(index.len * 4 <= index.buckets.len() * 3);
            }
            for key in 0u16..300 {
                let tag = index.tag_of(&key);
                let found = index.find(tag, &key, &nodes).map(|bucket| nodes[index.node_at(bucket) as usize].key);
                prop_assert_eq!(found, model.contains(&key).then_some(key));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        /// Many overdue entries, some replaced or cancelled while due, drain oldest first
        /// through a paced `advance_limited`.
        #[test]
        fn due_entries_drain_oldest_first_after_cancels(
            deadlines in prop::collection::vec(0u64..1_000, 1..300),
            cancels in prop::collection::vec(any::<prop::sample::Index>(), 0..150),
            replaces in prop::collection::vec((any::<prop::sample::Index>(), 0u64..1_000), 0..50),
            max in 1usize..40,
        ) {
            let mut wheel = TimerWheel::new(T0);
            let mut model = HashMap::new();
            for (key, &age) in deadlines.iter().enumerate() {
                wheel.insert(key, T0 - age);
                model.insert(key, T0 - age);
            }
            for (index, age) in &replaces {
                let key = index.index(deadlines.len());
                wheel.insert(key, T0 - age);
                model.insert(key, T0 - age);
            }
            for index in &cancels {
                let key = index.index(deadlines.len());
                prop_assert_eq!(wheel.cancel(&key), model.remove(&key));
            }
            wheel.check_invariants();
            let mut drained = Vec::new();
            let mut batch = Vec::new();
            while wheel.advance_limited(T0, max, &mut batch) {
                prop_assert_eq!(batch.len(), max);
                drained.append(&mut batch);
                wheel.check_invariants();
            }
            drained.append(&mut batch);
            prop_assert!(drained.windows(2).all(|pair| pair[0].1 <= pair[1].1), "out of order: {:?}", drained);
            let drained: HashMap<usize, u64> = drained.into_iter().collect();
            prop_assert_eq!(drained, model);
            prop_assert!(wheel.is_empty());
        }
    }

    /// Keys of the model test: few, so that replacing and cancelling hit pending keys often.
    const MODEL_KEY_COUNT: u8 = 24;

    #[derive(Debug, Clone)]
    enum Deadline {
        /// Relative to the model's time (saturating at both ends of u64).
        Offset(i64),
        Absolute(u64),
    }

    #[derive(Debug, Clone)]
    enum Step {
        Forward(u64),
        Backward(u64),
        To(u64),
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, Deadline),
        Cancel(u8),
        Advance(Step),
        AdvanceLimited(Step, usize),
        /// Follow `next_wakeup_ms` this many times.
        FollowWakeups(u8),
    }

    fn deadline_strategy() -> impl Strategy<Value = Deadline> {
        let day = DAY_MS as i64;
        prop_oneof![
            3 => (-100_000i64..=0).prop_map(Deadline::Offset),
            1 => Just(Deadline::Offset(0)),
            6 => (1i64..5_000).prop_map(Deadline::Offset),
            4 => (1i64..14 * day).prop_map(Deadline::Offset),
            2 => (29 * day..31 * day).prop_map(Deadline::Offset),
            2 => (399 * day..401 * day).prop_map(Deadline::Offset),
            1 => (700 * day..40_000 * day).prop_map(Deadline::Offset),
            1 => prop_oneof![
                (0u64..1_000).prop_map(|offset| u64::MAX - offset),
                (0u64..1_000),
                (25u64..28, -2_000i64..2_000)
                    .prop_map(|(epoch, offset)| (epoch << WHEEL_BITS).saturating_add_signed(offset)),
            ]
            .prop_map(Deadline::Absolute),
        ]
    }

    fn step_strategy() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0u64..70).prop_map(Step::Forward),
            4 => (0u64..10_000).prop_map(Step::Forward),
            2 => (0u64..20 * DAY_MS).prop_map(Step::Forward),
            1 => (0u64..40_000 * DAY_MS).prop_map(Step::Forward),
            1 => (0u64..100_000).prop_map(Step::Backward),
            1 => prop_oneof![
                (25u64..28, -2_000i64..2_000)
                    .prop_map(|(epoch, offset)| (epoch << WHEEL_BITS).saturating_add_signed(offset)),
                Just(u64::MAX),
            ]
            .prop_map(Step::To),
        ]
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..MODEL_KEY_COUNT, deadline_strategy()).prop_map(|(key, deadline)| Op::Insert(key, deadline)),
            2 => (0..MODEL_KEY_COUNT).prop_map(Op::Cancel),
            3 => step_strategy().prop_map(Op::Advance),
            3 => (step_strategy(), 0usize..6).prop_map(|(step, max)| Op::AdvanceLimited(step, max)),
            1 => (1u8..12).prop_map(Op::FollowWakeups),
        ]
    }

    fn start_strategy() -> impl Strategy<Value = u64> {
        prop_oneof![Just(T0), Just((26 << WHEEL_BITS) - 5_000), 0u64..(1 << 42), Just(0),]
    }

    /// The reference: pending entries by deadline, and the deadline of each key.
    struct Model {
        now_ms: u64,
        by_deadline: BTreeMap<(u64, u8), ()>,
        by_key: HashMap<u8, u64>,
    }

    impl Model {
        fn insert(&mut self, key: u8, deadline_ms: u64) {
            if let Some(old) = self.by_key.insert(key, deadline_ms) {
                self.by_deadline.remove(&(old, key));
            }
            self.by_deadline.insert((deadline_ms, key), ());
        }

        fn remove(&mut self, key: u8) -> Option<u64> {
            let old = self.by_key.remove(&key)?;
            self.by_deadline.remove(&(old, key));
            Some(old)
        }

        fn earliest(&self) -> Option<u64> {
            self.by_deadline.keys().next().map(|&(deadline, _)| deadline)
        }

        /// Pending entries due at `now_ms`, oldest first.
        fn due(&self, now_ms: u64) -> Vec<(u64, u8)> {
            self.by_deadline.range(..=(now_ms, u8::MAX)).map(|(&entry, _)| entry).collect()
        }

        fn target(&self, step: &Step) -> u64 {
            match *step {
                Step::Forward(ms) => self.now_ms.saturating_add(ms),
                Step::Backward(ms) => self.now_ms.saturating_sub(ms),
                Step::To(ms) => ms,
            }
        }
    }

    /// Checks one advance (limited when `max` is `Some`) against the model and applies it.
    fn check_advance(wheel: &mut TimerWheel<u8>, model: &mut Model, now_ms: u64, max: Option<usize>) -> Result<(), TestCaseError> {
        let due = model.due(now_ms);
        let mut expired = Vec::new();
        let more = match max {
            Some(max) => wheel.advance_limited(now_ms, max, &mut expired),
            None => {
                wheel.advance(now_ms, &mut expired);
                false
            }
        };
        let expected_count = due.len().min(max.unwrap_or(usize::MAX));
        prop_assert_eq!(expired.len(), expected_count, "expired {:?}, due {:?}", &expired, &due);
        prop_assert_eq!(more, due.len() > expected_count);
        // Exactly the oldest due entries, oldest first (ties in any order).
        let expired_deadlines: Vec<u64> = expired.iter().map(|&(_, deadline)| deadline).collect();
        let due_deadlines: Vec<u64> = due[..expected_count].iter().map(|&(deadline, _)| deadline).collect();
        prop_assert_eq!(expired_deadlines, due_deadlines);
        for &(key, deadline) in &expired {
            prop_assert_eq!(model.remove(key), Some(deadline), "key {} came out twice or wrongly", key);
        }
        model.now_ms = model.now_ms.max(now_ms);
        Ok(())
    }

    fn check_state(wheel: &TimerWheel<u8>, model: &Model) -> Result<(), TestCaseError> {
        wheel.check_invariants();
        prop_assert_eq!(wheel.len(), model.by_key.len());
        prop_assert_eq!(wheel.is_empty(), model.by_key.is_empty());
        prop_assert_eq!(wheel.now_ms(), model.now_ms);
        for key in 0..MODEL_KEY_COUNT {
            prop_assert_eq!(wheel.deadline_of(&key), model.by_key.get(&key).copied());
        }
        let wakeup = wheel.next_wakeup_ms();
        match model.earliest() {
            None => prop_assert_eq!(wakeup, None),
            Some(earliest) => {
                let wakeup = wakeup.expect("a non-empty wheel has a wake-up");
                prop_assert!(wakeup <= earliest, "wake-up {} after the earliest deadline {}", wakeup, earliest);
                prop_assert!(
                    wakeup > model.now_ms || earliest <= model.now_ms,
                    "wake-up {} not after the wheel's time {} with nothing due",
                    wakeup,
                    model.now_ms
                );
            }
        }
        Ok(())
    }

    /// Advances to `next_wakeup_ms` once: the wake-up must make progress.
    fn follow_wakeup(wheel: &mut TimerWheel<u8>, model: &mut Model) -> Result<bool, TestCaseError> {
        let Some(wakeup) = wheel.next_wakeup_ms() else {
            return Ok(false);
        };
        check_advance(wheel, model, wakeup, None)?;
        if let Some(next) = wheel.next_wakeup_ms() {
            prop_assert!(next > wakeup, "wake-up {} followed by {}: no progress", wakeup, next);
        }
        Ok(true)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn wheel_matches_a_btreemap_model(
            start in start_strategy(),
            ops in prop::collection::vec(op_strategy(), 1..500),
        ) {
            let mut wheel = TimerWheel::new(start);
            let mut model = Model { now_ms: start, by_deadline: BTreeMap::new(), by_key: HashMap::new() };
            for op in &ops {
                match op {
                    Op::Insert(key, deadline) => {
                        let deadline_ms = match *deadline {
                            Deadline::Offset(offset) => model.now_ms.saturating_add_signed(offset),
                            Deadline::Absolute(ms) => ms,
                        };
                        wheel.insert(*key, deadline_ms);
                        model.insert(*key, deadline_ms);
                    }
                    Op::Cancel(key) => prop_assert_eq!(wheel.cancel(key), model.remove(*key)),
                    Op::Advance(step) => {
                        let target = model.target(step);
                        check_advance(&mut wheel, &mut model, target, None)?;
                    }
                    Op::AdvanceLimited(step, max) => {
                        let target = model.target(step);
                        check_advance(&mut wheel, &mut model, target, Some(*max))?;
                    }
                    Op::FollowWakeups(count) => {
                        for _ in 0..*count {
                            if !follow_wakeup(&mut wheel, &mut model)? {
                                break;
                            }
                        }
                    }
                }
                check_state(&wheel, &model)?;
            }
            // Following the wake-ups reaches every deadline, with a bounded number of wake-ups:
            // each one expires an entry, moves one down a level or rescans the overflow list.
            let bound = 8 * wheel.len() + 2;
            let mut wakeups = 0;
            while follow_wakeup(&mut wheel, &mut model)? {
                wakeups += 1;
                prop_assert!(wakeups <= bound, "more than {} wake-ups", bound);
                check_state(&wheel, &model)?;
            }
            prop_assert!(wheel.is_empty());
            prop_assert!(model.by_key.is_empty());
        }
    }
}
