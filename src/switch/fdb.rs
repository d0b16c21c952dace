//! The forwarding database: (segment, source MAC) → port, learned from
//! traffic, aged out, bounded. Segments are isolated: the same MAC may be
//! learned on two segments, each entry independent of the other. Entries live in a fixed slab linked in least-recently-seen
//! order, so the oldest entry (for eviction and aging) is always at the
//! head; an open-addressing index with a keyed hash finds them. Nothing
//! allocates after construction and every operation is O(1) expected,
//! except flushing a port (O(capacity)).
#![forbid(unsafe_code)]

use super::PortId;
use super::segment::SegmentId;
use alloc::vec;
use alloc::vec::Vec;

/// Default bound on learned entries.
pub const DEFAULT_CAPACITY: usize = 4096;
/// Largest capacity (slab indices are u16; the index is twice as large).
pub const MAX_CAPACITY: usize = 16384;
/// Default ageing time: 300 s, as Linux bridges.
pub const DEFAULT_AGEING_NS: u64 = 300_000_000_000;
/// Static entries (one per port with a fixed MAC) beyond the learned bound.
pub const MAX_STATIC: usize = 64;

const NIL: u16 = u16::MAX;

/// Switch-wide FDB counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FdbStats {
    /// New entries learned.
    pub learned: u64,
    /// Entries aged out.
    pub aged: u64,
    /// Entries whose MAC appeared on another port.
    pub moves: u64,
    /// Entries evicted because the table was full.
    pub evictions: u64,
    /// Entries removed because their port went away.
    pub flushed: u64,
    /// Frames whose source MAC is a static entry of another port (not learned).
    pub static_conflicts: u64,
}

/// What [`Fdb::learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// An existing entry on the same port, refreshed.
    Refreshed,
    /// The MAC moved here from another port.
    Moved(PortId),
    /// The MAC is a static entry of another port: not learned.
    StaticElsewhere(PortId),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seg: SegmentId,
    mac: [u8; 6],
    port: PortId,
    seen_ns: u64,
    is_static: bool,
    prev: u16,
    next: u16,
}

const EMPTY: Entry =
    Entry { seg: SegmentId(0), mac: [0; 6], port: PortId(0), seen_ns: 0, is_static: false, prev: NIL, next: NIL };

/// The table.
pub struct Fdb {
    /// Open addressing, linear probing: slab indices or NIL.
    index: Vec<u16>,
    slab: Vec<Entry>,
    /// Free slab entries, linked through `next`.
    free: u16,
    /// Least recently seen learned entry, and most recently seen.
    head: u16,
    tail: u16,
    learned_len: usize,
    static_len: usize,
    capacity: usize,
    ageing_ns: u64,
    seed: u64,
    stats: FdbStats,
}

impl Fdb {
    /// A table of at most `capacity` learned entries (clamped to
    /// 1..=[`MAX_CAPACITY`]) that forgets entries unseen for `ageing_ns`;
    /// `seed` keys the hash so that chosen MACs cannot be made to collide.
    pub fn new(capacity: usize, ageing_ns: u64, seed: u64) -> Self {
        let capacity = capacity.clamp(1, MAX_CAPACITY);
        let slots = capacity + MAX_STATIC;
        let mut slab = vec![EMPTY; slots];
        for (i, e) in slab.iter_mut().enumerate() {
            e.next = if i + 1 < slots { (i + 1) as u16 } else { NIL };
        }
        Self {
            index: vec![NIL; (slots * 2).next_power_of_two()],
            slab,
            free: 0,
            head: NIL,
            tail: NIL,
            learned_len: 0,
            static_len: 0,
            capacity,
            ageing_ns,
            seed: seed | 1,
            stats: FdbStats::default(),
        }
    }

    /// Entries (learned and static).
    pub fn len(&self) -> usize {
        self.learned_len + self.static_len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bound on learned entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Ageing time.
    pub fn ageing_ns(&self) -> u64 {
        self.ageing_ns
    }

    /// Counters.
    pub fn stats(&self) -> FdbStats {
        self.stats
    }

    fn hash(&self, seg: SegmentId, mac: &[u8; 6]) -> usize {
        let k = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], seg.0, 0]);
        // splitmix64 finaliser over the keyed MAC.
        let mut z = (k ^ self.seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as usize & (self.index.len() - 1)
    }

    fn entry(&self, i: u16) -> Option<&Entry> {
        self.slab.get(usize::from(i))
    }

    /// (index slot, slab index) of `mac` on `seg`.
    fn find(&self, seg: SegmentId, mac: &[u8; 6]) -> Option<(usize, u16)> {
        let mask = self.index.len() - 1;
        let mut slot = self.hash(seg, mac);
        // The index is never more than half full: an empty slot ends every probe.
        for _ in 0..self.index.len() {
            let i = *self.index.get(slot)?;
            if i == NIL {
                return None;
            }
            if self.entry(i).is_some_and(|e| e.mac == *mac && e.seg == seg) {
                return Some((slot, i));
            }
            slot = (slot + 1) & mask;
        }
        None
    }

    fn unlink(&mut self, i: u16) {
        let Some(&Entry { prev, next, .. }) = self.entry(i) else { return };
        match self.slab.get_mut(usize::from(prev)) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.slab.get_mut(usize::from(next)) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_tail(&mut self, i: u16) {
        let tail = self.tail;
        if let Some(e) = self.slab.get_mut(usize::from(i)) {
            e.prev = tail;
            e.next = NIL;
        }
        match self.slab.get_mut(usize::from(tail)) {
            Some(t) => t.next = i,
            None => self.head = i,
        }
        self.tail = i;
    }

    /// Removes the entry at index `slot` / slab `i` (backward-shift deletion).
    fn remove_at(&mut self, slot: usize, i: u16) {
        let is_static = self.entry(i).is_some_and(|e| e.is_static);
        if is_static {
            self.static_len -= 1;
        } else {
            self.unlink(i);
            self.learned_len -= 1;
        }
        if let Some(e) = self.slab.get_mut(usize::from(i)) {
            *e = Entry { next: self.free, ..EMPTY };
            self.free = i;
        }
        let mask = self.index.len() - 1;
        let mut hole = slot;
        let mut j = slot;
        loop {
            j = (j + 1) & mask;
            let Some(&k) = self.index.get(j) else { break };
            if k == NIL {
                break;
            }
            let home = self.entry(k).map_or(j, |e| self.hash(e.seg, &e.mac));
            // Move k into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { hole < home && home <= j } else { hole < home || home <= j };
            if !stays {
                if let Some(h) = self.index.get_mut(hole) {
                    *h = k;
                }
                hole = j;
            }
        }
        if let Some(h) = self.index.get_mut(hole) {
            *h = NIL;
        }
    }

    fn insert(&mut self, seg: SegmentId, mac: [u8; 6], port: PortId, now_ns: u64, is_static: bool) -> Option<u16> {
        let i = self.free;
        let next = self.entry(i)?.next;
        self.free = next;
        if let Some(e) = self.slab.get_mut(usize::from(i)) {
            *e = Entry { seg, mac, port, seen_ns: now_ns, is_static, prev: NIL, next: NIL };
        }
        let mask = self.index.len() - 1;
        let mut slot = self.hash(seg, &mac);
        while self.index.get(slot).is_some_and(|&s| s != NIL) {
            slot = (slot + 1) & mask;
        }
        if let Some(s) = self.index.get_mut(slot) {
            *s = i;
        }
        if is_static {
            self.static_len += 1;
        } else {
            self.learned_len += 1;
            self.push_tail(i);
        }
        Some(i)
    }

    /// Removes the least recently seen learned entry.
    fn evict_oldest(&mut self) -> bool {
        let Some((seg, mac)) = self.entry(self.head).map(|e| (e.seg, e.mac)) else { return false };
        match self.find(seg, &mac) {
            Some((slot, i)) => {
                self.remove_at(slot, i);
                true
            }
            None => false,
        }
    }

    /// Learns that `mac` was seen as a source on `port` (of segment `seg`)
    /// at `now_ns`.
    pub fn learn(&mut self, seg: SegmentId, mac: [u8; 6], port: PortId, now_ns: u64) -> Learned {
        self.expire(now_ns);
        if let Some((_, i)) = self.find(seg, &mac) {
            let Some(e) = self.slab.get_mut(usize::from(i)) else { return Learned::Refreshed };
            if e.is_static {
                if e.port == port {
                    return Learned::Refreshed;
                }
                self.stats.static_conflicts += 1;
                return Learned::StaticElsewhere(e.port);
            }
            let from = e.port;
            e.port = port;
            e.seen_ns = now_ns;
            self.unlink(i);
            self.push_tail(i);
            if from == port {
                return Learned::Refreshed;
            }
            self.stats.moves += 1;
            return Learned::Moved(from);
        }
        if self.learned_len >= self.capacity && self.evict_oldest() {
            self.stats.evictions += 1;
        }
        if self.insert(seg, mac, port, now_ns, false).is_some() {
            self.stats.learned += 1;
        }
        Learned::New
    }

    /// Pins `mac` on segment `seg` to `port` (a vif's own MAC): never aged,
    /// moved or evicted. Replaces a learned entry for it. False when
    /// [`MAX_STATIC`] are in use.
    pub fn add_static(&mut self, seg: SegmentId, mac: [u8; 6], port: PortId) -> bool {
        if let Some((slot, i)) = self.find(seg, &mac) {
            self.remove_at(slot, i);
        }
        if self.static_len >= MAX_STATIC {
            return false;
        }
        self.insert(seg, mac, port, 0, true).is_some()
    }

    /// Removes the entry for `mac` on `seg`, learned or static.
    pub fn remove(&mut self, seg: SegmentId, mac: &[u8; 6]) -> bool {
        match self.find(seg, mac) {
            Some((slot, i)) => {
                self.remove_at(slot, i);
                true
            }
            None => false,
        }
    }

    /// The port `mac` was last seen on in segment `seg`, if known and not
    /// aged out.
    pub fn lookup(&mut self, seg: SegmentId, mac: &[u8; 6], now_ns: u64) -> Option<PortId> {
        let (slot, i) = self.find(seg, mac)?;
        let e = *self.entry(i)?;
        if !e.is_static && now_ns.saturating_sub(e.seen_ns) >= self.ageing_ns {
            self.remove_at(slot, i);
            self.stats.aged += 1;
            return None;
        }
        Some(e.port)
    }

    /// Ages out every learned entry unseen for the ageing time. O(expired).
    pub fn expire(&mut self, now_ns: u64) -> usize {
        let mut n = 0;
        while let Some(e) = self.entry(self.head).copied() {
            if now_ns.saturating_sub(e.seen_ns) < self.ageing_ns {
                break;
            }
            if !self.evict_oldest() {
                break;
            }
            self.stats.aged += 1;
            n += 1;
        }
        n
    }

    /// Removes every entry (learned and static) of `port`.
    pub fn flush_port(&mut self, port: PortId) -> usize {
        let mut n = 0;
        for i in 0..self.slab.len() as u16 {
            let Some(e) = self.entry(i).copied() else { continue };
            let live = self.find(e.seg, &e.mac).is_some_and(|(_, j)| j == i);
            if live && e.port == port && self.remove(e.seg, &e.mac) {
                n += 1;
            }
        }
        self.stats.flushed += n as u64;
        n
    }

    /// Every entry: (segment, MAC, port, static).
    pub fn entries(&self) -> impl Iterator<Item = (SegmentId, [u8; 6], PortId, bool)> + '_ {
        self.index.iter().filter_map(|&i| self.entry(i)).map(|e| (e.seg, e.mac, e.port, e.is_static))
    }
}
