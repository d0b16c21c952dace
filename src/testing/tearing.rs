//! A shared page whose byte-wise accesses interleave with a peer, as real
//! shared memory does: a peer store can land between two of our byte reads,
//! and the peer can look at a word between two of our byte writes. Whole-word
//! accesses (`read_u32`/`write_u32`) are single accesses and never tear.
//!
//! Tests use it to check that ring indices are only ever read and written
//! as whole words.
#![forbid(unsafe_code)]

use crate::hal::SharedMem;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

/// A peer store waiting for our next access to its word.
#[derive(Debug, Clone, Copy)]
struct PeerStore {
    off: usize,
    value: u32,
}

/// A `SharedMem` over another one (the page the peer holds), with a
/// scheduled peer store that races our next read of a word, and peer
/// watchers that sample words after every store we make.
pub struct TearingPage {
    inner: Rc<dyn SharedMem>,
    race: RefCell<Vec<PeerStore>>,
    watched: RefCell<BTreeMap<usize, Vec<u32>>>,
}

impl TearingPage {
    /// Our view of `inner`; the peer keeps using `inner` directly.
    pub fn over(inner: Rc<dyn SharedMem>) -> Self {
        Self { inner, race: RefCell::new(Vec::new()), watched: RefCell::new(BTreeMap::new()) }
    }

    /// The peer stores `value` into the u32 at `off` while we read it next:
    /// after the first byte of a byte-wise read of that word, or right
    /// after a whole-word read (which it cannot split).
    pub fn race_next_read(&self, off: usize, value: u32) {
        self.race.borrow_mut().push(PeerStore { off, value });
    }

    /// True while a scheduled peer store has not happened yet.
    pub fn race_pending(&self) -> bool {
        !self.race.borrow().is_empty()
    }

    /// The peer watches the u32 at `off`: after each of our stores that
    /// touches it (each byte of a byte-wise copy, or one whole-word store)
    /// it records the value it sees.
    pub fn watch(&self, off: usize) {
        self.watched.borrow_mut().entry(off).or_default();
    }

    /// The values the peer saw at `off`, in order.
    pub fn seen(&self, off: usize) -> Vec<u32> {
        self.watched.borrow().get(&off).cloned().unwrap_or_default()
    }

    /// Runs the scheduled peer store on the word at `off`, if any.
    fn peer_store(&self, off: usize) {
        let due = {
            let mut race = self.race.borrow_mut();
            race.iter().position(|s| s.off == off).map(|i| race.remove(i))
        };
        if let Some(s) = due {
            self.inner.write_u32(s.off, s.value);
        }
    }

    /// Peer watchers sample every watched word that overlaps `range`.
    fn peer_look(&self, range: core::ops::Range<usize>) {
        let mut watched = self.watched.borrow_mut();
        for (&off, seen) in watched.iter_mut() {
            if off < range.end && range.start < off + 4 {
                seen.push(self.inner.read_u32(off));
            }
        }
    }
}

impl SharedMem for TearingPage {
    fn size(&self) -> usize {
        self.inner.size()
    }

    fn read_u32(&self, off: usize) -> u32 {
        let v = self.inner.read_u32(off);
        self.peer_store(off);
        v
    }

    fn write_u32(&self, off: usize, v: u32) {
        self.inner.write_u32(off, v);
        self.peer_look(off..off + 4);
    }

    /// One byte at a time; a racing peer store on a word lands right after
    /// that word's first byte was read.
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            let at = off + i;
            let mut one = [0u8; 1];
            self.inner.read_bytes(at, &mut one);
            *b = one[0];
            if at.is_multiple_of(4) {
                self.peer_store(at);
            }
        }
    }

    /// One byte at a time; watchers look after each byte.
    fn write_bytes(&self, off: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.inner.write_bytes(off + i, &[*b]);
            self.peer_look(off + i..off + i + 1);
        }
    }

    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        self.inner.compare_exchange_u16(off, old, new)
    }

    fn fence(&self) {
        self.inner.fence();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::HeapPage;

    fn page() -> (Rc<HeapPage>, TearingPage) {
        let peer = Rc::new(HeapPage::new(64));
        let ours = TearingPage::over(peer.clone());
        (peer, ours)
    }

    #[test]
    fn byte_reads_tear_and_word_reads_do_not() {
        let (peer, ours) = page();
        peer.write_u32(8, 0x1fe);
        ours.race_next_read(8, 0x201);
        let mut b = [0u8; 4];
        ours.read_bytes(8, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x2fe, "old low byte, new high bytes");
        assert!(!ours.race_pending());

        peer.write_u32(8, 0x1fe);
        ours.race_next_read(8, 0x201);
        assert_eq!(ours.read_u32(8), 0x1fe);
        assert_eq!(ours.read_u32(8), 0x201);
    }

    #[test]
    fn byte_writes_show_intermediates_and_word_writes_do_not() {
        let (peer, ours) = page();
        peer.write_u32(8, 0x1ff);
        ours.watch(8);
        ours.write_bytes(8, &0x200u32.to_le_bytes());
        assert_eq!(ours.seen(8), vec![0x100, 0x200, 0x200, 0x200]);

        let (peer, ours) = page();
        peer.write_u32(8, 0x1ff);
        ours.watch(8);
        ours.write_u32(8, 0x200);
        ours.write_bytes(12, &[1, 2, 3, 4]);
        assert_eq!(ours.seen(8), vec![0x200], "a neighbour's bytes are not a store to this word");
    }
}
