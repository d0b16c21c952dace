//! The frames waiting for a guest's RX buffers: a byte-budgeted FIFO packed
//! into the queue's own packet buffers, with a fair share per source.
//!
//! Storage: `slots` buffer slots form one logical byte ring of
//! `slots × capacity` bytes. A frame is written at the ring's write
//! position, or at the start of the next buffer when it would not fit in
//! the rest of the current one, so every frame lies in one buffer and one
//! grant copy per guest slot reads it. Frames leave in order, so the read
//! position only advances. Positions are u64 byte counts, set back to zero
//! whenever the queue is empty; buffer and offset are the position modulo
//! the ring. A slot holds a buffer from the shared pool (`pool`) only while
//! ring bytes in it are in use: it is taken when a frame is written into
//! the slot and given back when the read position leaves it, so an idle
//! queue holds none. When the pool has none to give, the frame is dropped
//! (`RxDrop::NoBuffer`).
//!
//! Budget: like Linux netback's `rx_queue_max`, the queue holds at most a
//! number of bytes (XSA-392: a guest that posts no buffers costs only
//! that). Each frame is charged the ring bytes it takes, including the
//! skipped tail of a buffer, and at least `budget / MAX_FRAMES`, so the
//! budget also bounds the frame count (and the bookkeeping, allocated
//! once) however small the frames are.
//!
//! Fairness: a source (the switch port a frame came in on) with frames
//! queued may hold at most an equal part of three quarters of the budget,
//! split between the sources that have frames queued; the last quarter is
//! kept for sources with nothing queued, which may always add a frame that
//! fits the budget. A flooding port thus fills at most its share, and the
//! guest's draining frees room that goes to the others first.
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::error::RxDrop;
use super::hash::RxHash;
use super::meta::FrameMeta;
use super::pool::SharedRxPool;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Distinct sources the queue accounts for: switch ports (below 64) and
/// one for frames of unknown origin.
pub const RX_SOURCES: usize = 65;

/// Part of the budget (1/n) kept free for sources with nothing queued.
const RESERVE_DIV: usize = 4;

/// Frames one queue holds at most (four RX rings' worth).
pub const MAX_FRAMES: usize = 1024;

/// Linux netback's default `rx_queue_max`: half an RX ring of pages.
pub const RX_QUEUE_BYTES: usize = 128 * crate::netif::PAGE_SIZE;

/// RX buffer slots of one vif, spread over its queues (its budget).
pub const RX_BUFFERS_PER_VIF: usize = 32;

/// RX buffer slots a queue gets at least.
pub const MIN_RX_BUFFERS_PER_QUEUE: usize = 8;

/// Where a frame for the guest came from: the switch port it entered on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RxSource(pub u8);

impl RxSource {
    /// Frames whose source is not known share this one.
    pub const UNKNOWN: Self = Self((RX_SOURCES - 1) as u8);

    fn index(self) -> usize {
        usize::from(self.0).min(RX_SOURCES - 1)
    }
}

/// One queued frame: where it lies and what it was charged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Queued {
    /// Buffer index.
    pub buf: u16,
    /// Offset of the frame in the buffer.
    pub off: usize,
    /// Frame length.
    pub len: usize,
    /// Its metadata.
    pub meta: FrameMeta,
    /// The hash the frontend asked for (sent in a HASH extra).
    pub hash: Option<RxHash>,
    /// Ring position just past the frame.
    end: u64,
    /// Bytes charged against the budget and the source's share.
    charge: usize,
    source: RxSource,
}

/// The queue and the buffers that hold its frames (bookkeeping allocated
/// once, buffers from the pool while in use).
pub(crate) struct RxQueue<B: PacketBuf> {
    bufs: Vec<Option<B>>,
    /// Slots holding a buffer.
    held_bufs: usize,
    pool: SharedRxPool<B>,
    cap: usize,
    ring: u64,
    budget: usize,
    min_charge: usize,
    used: usize,
    write: u64,
    read: u64,
    frames: VecDeque<Queued>,
    held: [usize; RX_SOURCES],
    active: usize,
}

impl<B: PacketBuf> RxQueue<B> {
    /// A queue of `slots` buffer slots filled from `pool`, holding at
    /// most `budget` bytes (at most all of the slots).
    pub fn new(pool: &SharedRxPool<B>, slots: usize, budget: usize) -> Self {
        let cap = pool.borrow().buf_capacity();
        let ring = cap.saturating_mul(slots);
        let budget = budget.min(ring);
        pool.borrow_mut().register();
        Self {
            budget,
            min_charge: budget.div_ceil(MAX_FRAMES),
            used: 0,
            cap,
            ring: ring as u64,
            bufs: (0..slots).map(|_| None).collect(),
            held_bufs: 0,
            pool: pool.clone(),
            write: 0,
            read: 0,
            frames: VecDeque::with_capacity(MAX_FRAMES),
            held: [0; RX_SOURCES],
            active: 0,
        }
    }

    /// Buffers held now.
    pub fn buffers_held(&self) -> usize {
        self.held_bufs
    }

    /// Capacity of one buffer (the largest frame the queue can hold).
    pub fn buf_capacity(&self) -> usize {
        self.cap
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Bytes charged for the frames queued and being copied out.
    pub fn bytes(&self) -> usize {
        self.used
    }

    /// Bytes the queue may hold.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes charged to `source`.
    pub fn held(&self, source: RxSource) -> usize {
        self.held.get(source.index()).copied().unwrap_or(0)
    }

    /// The most a source with frames queued may hold while `others` other
    /// sources have frames queued.
    fn share(&self, others: usize) -> usize {
        (self.budget - self.budget / RESERVE_DIV) / (others + 1)
    }

    /// As `push_hashed`, without a hash (the unit tests' shorthand).
    #[cfg(test)]
    pub fn push(&mut self, source: RxSource, frame: &[u8], meta: FrameMeta) -> Result<(), RxDrop> {
        self.push_hashed(source, frame, meta, None)
    }

    /// Copies `frame` into the ring and queues it, charged to `source`,
    /// with the hash to send the frontend.
    pub fn push_hashed(
        &mut self,
        source: RxSource,
        frame: &[u8],
        meta: FrameMeta,
        hash: Option<RxHash>,
    ) -> Result<(), RxDrop> {
        let len = frame.len();
        let cap = self.cap as u64;
        if len == 0 || len > self.cap || self.bufs.is_empty() {
            return Err(RxDrop::BadLength(len));
        }
        let mut pos = self.write;
        if pos % cap + len as u64 > cap {
            pos = pos.div_ceil(cap) * cap;
        }
        let end = pos + len as u64;
        let charge = ((end - self.write) as usize).max(self.min_charge);
        if self.used + charge > self.budget || end - self.read > self.ring || self.frames.len() >= MAX_FRAMES {
            return Err(RxDrop::QueueFull);
        }
        let held = self.held(source);
        if held > 0 {
            let share = self.share(self.active.saturating_sub(1));
            if held + charge > share {
                return Err(RxDrop::OverShare { source: source.0, held });
            }
        }
        let n = self.bufs.len() as u64;
        let buf = ((pos / cap) % n) as usize;
        let off = (pos % cap) as usize;
        let Some(slot) = self.bufs.get_mut(buf) else { return Err(RxDrop::QueueFull) };
        if slot.is_none() {
            *slot = Some(self.pool.borrow_mut().take(self.held_bufs).ok_or(RxDrop::NoBuffer)?);
            self.held_bufs += 1;
        }
        let Some(b) = slot.as_mut() else { return Err(RxDrop::NoBuffer) };
        b.with_bytes_mut(off + len, |bytes| {
            if let Some(dst) = bytes.get_mut(off..off + len) {
                dst.copy_from_slice(frame);
            }
        });
        if held == 0 {
            self.active += 1;
        }
        if let Some(h) = self.held.get_mut(source.index()) {
            *h += charge;
        }
        self.used += charge;
        self.write = end;
        self.frames.push_back(Queued { buf: buf as u16, off, len, meta, hash, end, charge, source });
        Ok(())
    }

    /// The oldest frame.
    pub fn front(&self) -> Option<Queued> {
        self.frames.front().copied()
    }

    /// Takes the oldest frame off the queue; its bytes stay in the ring
    /// (and charged) until `release`.
    pub fn pop(&mut self) -> Option<Queued> {
        self.frames.pop_front()
    }

    /// The buffer a frame lies in.
    pub fn buf(&self, q: &Queued) -> Option<&B> {
        self.bufs.get(usize::from(q.buf)).and_then(Option::as_ref)
    }

    /// Frees the ring bytes of a popped frame; frames must be released in
    /// the order they were popped.
    pub fn release(&mut self, q: &Queued) {
        if let Some(h) = self.held.get_mut(q.source.index()) {
            let was = *h;
            *h = h.saturating_sub(q.charge);
            if was > 0 && *h == 0 {
                self.active = self.active.saturating_sub(1);
            }
        }
        self.used = self.used.saturating_sub(q.charge);
        let old = self.read;
        self.read = self.read.max(q.end).min(self.write);
        if self.read == self.write {
            // Empty: every buffer goes back and the ring starts over.
            self.read = 0;
            self.write = 0;
            self.give_back_unused();
        } else if old / self.cap as u64 != self.read / self.cap as u64 {
            self.give_back_unused();
        }
    }

    /// Whether any byte in [read, write) lies in slot `s`.
    fn slot_live(&self, s: usize) -> bool {
        if self.read == self.write {
            return false;
        }
        let cap = self.cap as u64;
        let n = self.bufs.len() as u64;
        let (first, last) = (self.read / cap, (self.write - 1) / cap);
        if last - first + 1 >= n {
            return true;
        }
        (s as u64 + n - first % n) % n <= last - first
    }

    /// Returns the buffers of slots no queued or in-flight frame uses.
    fn give_back_unused(&mut self) {
        for s in 0..self.bufs.len() {
            if !self.slot_live(s)
                && let Some(b) = self.bufs.get_mut(s).and_then(Option::take)
            {
                self.held_bufs -= 1;
                self.pool.borrow_mut().give(b, self.held_bufs);
            }
        }
    }
}

impl<B: PacketBuf> Drop for RxQueue<B> {
    fn drop(&mut self) {
        let mut pool = self.pool.borrow_mut();
        for b in self.bufs.iter_mut().filter_map(Option::take) {
            self.held_bufs -= 1;
            pool.give(b, self.held_bufs);
        }
        pool.unregister();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netback::buf::LocalFrame;

    struct Mem(Vec<u8>);

    impl PacketBuf for Mem {
        fn capacity(&self) -> usize {
            self.0.len()
        }
        fn frame(&self, off: usize) -> Option<LocalFrame> {
            (off < self.0.len()).then_some(LocalFrame { gfn: (off / 4096) as u64, offset: (off % 4096) as u16 })
        }
        fn with_bytes<R>(&self, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
            f(&self.0[..len.min(self.0.len())])
        }
        fn with_bytes_mut<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
            let n = len.min(self.0.len());
            f(&mut self.0[..n])
        }
    }

    /// A backing pool of `n` buffers of `cap` bytes.
    struct Backing(Vec<Mem>);

    impl crate::netback::BufPool for Backing {
        type Buf = Mem;
        fn alloc(&mut self) -> Option<Mem> {
            self.0.pop()
        }
        fn free(&mut self, b: Mem) {
            self.0.push(b);
        }
    }

    fn pool(n: usize, cap: usize) -> SharedRxPool<Mem> {
        let backing = Backing((0..n).map(|_| Mem(vec![0; cap])).collect());
        crate::netback::pool::RxPool::shared(alloc::boxed::Box::new(backing), cap, n)
    }

    fn queue(bufs: usize, cap: usize, budget: usize) -> RxQueue<Mem> {
        RxQueue::new(&pool(bufs, cap), bufs, budget)
    }

    fn bytes_of(q: &RxQueue<Mem>, f: &Queued) -> Vec<u8> {
        q.buf(f).map(|b| b.with_bytes(f.off + f.len, |s| s[f.off..].to_vec())).unwrap_or_default()
    }

    #[test]
    fn frames_pack_into_buffers_and_skip_tails() {
        let mut q = queue(2, 1000, usize::MAX);
        assert_eq!(q.budget(), 2000);
        let m = FrameMeta::default();
        for i in 0..3u8 {
            assert_eq!(q.push(RxSource(i), &[i; 300], m), Ok(()));
        }
        // 900 used: a 200-byte frame skips the 100-byte tail into buffer 1.
        assert_eq!(q.push(RxSource(3), &[9; 200], m), Ok(()));
        assert_eq!(q.bytes(), 1200);
        assert_eq!(q.held(RxSource(3)), 300);
        let fs: Vec<Queued> = (0..4).filter_map(|_| q.pop()).collect();
        assert_eq!(fs.iter().map(|f| (f.buf, f.off)).collect::<Vec<_>>(), vec![(0, 0), (0, 300), (0, 600), (1, 0)]);
        assert_eq!(bytes_of(&q, &fs[1]), vec![1; 300]);
        assert_eq!(bytes_of(&q, &fs[3]), vec![9; 200]);
        for f in &fs {
            q.release(f);
        }
        assert_eq!((q.bytes(), q.active), (0, 0));
        // The ring wraps to buffer 0 again.
        for _ in 0..5 {
            assert_eq!(q.bytes(), 0);
            assert_eq!(q.push(RxSource(1), &[7; 700], m), Ok(()));
            while let Some(f) = q.pop() {
                assert_eq!(bytes_of(&q, &f), vec![7; 700]);
                q.release(&f);
            }
        }
    }

    #[test]
    fn one_source_keeps_to_its_share_and_newcomers_get_in() {
        let mut q = queue(4, 1000, 4000);
        let m = FrameMeta::default();
        let (a, b, c) = (RxSource(1), RxSource(2), RxSource::UNKNOWN);
        let mut n = 0;
        while q.push(a, &[1; 100], m).is_ok() {
            n += 1;
        }
        assert_eq!(n, 30, "alone: three quarters of 4000");
        assert_eq!(q.push(a, &[1; 100], m), Err(RxDrop::OverShare { source: 1, held: 3000 }));
        // A second source gets the reserve; then both are over their share.
        assert_eq!(q.push(b, &[2; 100], m), Ok(()));
        assert!(q.push(b, &[2; 1000], m).is_err());
        assert_eq!(q.push(c, &[3; 100], m), Ok(()));
        // Out-of-range sources count as unknown.
        assert_eq!(q.push(RxSource(200), &[3; 100], m), Ok(()));
        assert_eq!(q.held(c), 200);
        assert_eq!(q.push(RxSource(5), &[4; 900], m), Err(RxDrop::QueueFull));
        // Draining a's frames gives room to the others before a.
        for _ in 0..20 {
            let f = q.pop().unwrap_or_else(|| panic!("queued"));
            q.release(&f);
        }
        assert!(q.push(a, &[1; 100], m).is_err(), "a still holds its third of 3000");
        assert_eq!(q.push(b, &[2; 100], m), Ok(()));
        assert_eq!(q.push(c, &[3; 100], m), Ok(()));
    }

    #[test]
    fn bad_lengths_and_no_buffers() {
        let mut q = queue(1, 100, 1000);
        assert_eq!(q.budget(), 100);
        assert_eq!(q.push(RxSource(0), &[], FrameMeta::default()), Err(RxDrop::BadLength(0)));
        assert_eq!(q.push(RxSource(0), &[0; 101], FrameMeta::default()), Err(RxDrop::BadLength(101)));
        assert_eq!(q.push(RxSource(0), &[0; 100], FrameMeta::default()), Ok(()));
        let mut e = queue(0, 100, 100);
        assert_eq!(e.push(RxSource(0), &[0; 10], FrameMeta::default()), Err(RxDrop::BadLength(10)));
        let mut small = queue(1, 100, 50);
        assert_eq!(small.push(RxSource(0), &[0; 60], FrameMeta::default()), Err(RxDrop::QueueFull));
        assert_eq!(small.push(RxSource(0), &[0; 50], FrameMeta::default()), Ok(()));
    }

    #[test]
    fn tiny_frames_are_bounded_by_count_too() {
        let mut q = queue(1, 65536, 65536);
        let before = q.frames.capacity();
        let mut n = 0;
        for i in 0..10_000u32 {
            n += usize::from(q.push(RxSource((i % 70) as u8), &[1], FrameMeta::default()).is_ok());
        }
        assert!(n > 500 && n <= MAX_FRAMES, "{n}");
        assert!(q.bytes() <= q.budget());
        assert_eq!(q.frames.capacity(), before, "no allocation after creation");
    }

    #[test]
    fn buffers_are_held_only_while_frames_wait_in_them() {
        let p = pool(4, 1000);
        let mut q = RxQueue::new(&p, 4, usize::MAX);
        let m = FrameMeta::default();
        assert_eq!(q.buffers_held(), 0, "an idle queue holds none");
        for i in 0..5u8 {
            assert_eq!(q.push(RxSource(i), &[i; 400], m), Ok(()));
        }
        // 400+400 in buffer 0, 400+400 in 1, 400 in 2.
        assert_eq!((q.buffers_held(), p.borrow().stats().out), (3, 3));
        let a = q.pop().unwrap();
        let b = q.pop().unwrap();
        let c = q.pop().unwrap();
        q.release(&a);
        assert_eq!(q.buffers_held(), 3, "buffer 0 still has a frame in flight");
        q.release(&b);
        assert_eq!(q.buffers_held(), 3, "buffer 0's skipped tail is charged to c");
        q.release(&c);
        assert_eq!(q.buffers_held(), 2, "the read position left buffer 0");
        assert_eq!(bytes_of(&q, &q.front().unwrap()), vec![3; 400]);
        while let Some(f) = q.pop() {
            q.release(&f);
        }
        assert_eq!((q.buffers_held(), q.bytes(), p.borrow().stats().out), (0, 0, 0));
        // Dropping a queue gives back what it held and its reserve.
        assert_eq!(q.push(RxSource(0), &[1; 10], m), Ok(()));
        drop(q);
        let s = p.borrow().stats();
        assert_eq!((s.out, s.queues, s.holders), (0, 0, 0));
    }

    #[test]
    fn an_empty_pool_drops_the_frame_and_the_queue_keeps_working() {
        let p = pool(2, 1000);
        let mut a = RxQueue::new(&p, 4, usize::MAX);
        let mut b = RxQueue::new(&p, 4, usize::MAX);
        let m = FrameMeta::default();
        assert_eq!(a.push(RxSource(0), &[1; 900], m), Ok(()));
        // A second buffer for `a` would take the one kept for `b`.
        assert_eq!(a.push(RxSource(1), &[1; 900], m), Err(RxDrop::NoBuffer));
        assert_eq!(b.push(RxSource(0), &[2; 900], m), Ok(()));
        assert_eq!(a.push(RxSource(1), &[1; 50], m), Ok(()), "room left in its own buffer");
        while let Some(f) = b.pop() {
            b.release(&f);
        }
        assert_eq!(b.buffers_held(), 0);
        assert_eq!(a.push(RxSource(1), &[1; 900], m), Err(RxDrop::NoBuffer), "b's buffer is kept for b");
        drop(b);
        assert_eq!(a.push(RxSource(1), &[1; 900], m), Ok(()), "b is gone, and its reserve");
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_buffer_shared_by_the_ring_wrap_stays_while_used() {
        // Two slots of 1000: A 0..400, B 400..800 (slot 0), C skips the
        // tail to 1000..1600, D 1600..2000 (slot 1), then E wraps to slot 0
        // at 2000..2100 while C and D still wait in slot 1.
        let p = pool(2, 1000);
        let mut q = RxQueue::new(&p, 2, usize::MAX);
        let m = FrameMeta::default();
        for (v, len) in [(1u8, 400), (2, 400), (3, 600), (4, 400)] {
            assert_eq!(q.push(RxSource(v), &vec![v; len], m), Ok(()));
        }
        for _ in 0..2 {
            let f = q.pop().unwrap();
            q.release(&f);
        }
        assert_eq!(q.buffers_held(), 2, "the skipped tail of slot 0 is C's until C leaves");
        assert_eq!(q.push(RxSource(5), &[5; 100], m), Ok(()));
        let f = q.pop().unwrap();
        q.release(&f);
        assert_eq!(q.buffers_held(), 2, "slot 0 holds E");
        let f = q.pop().unwrap();
        q.release(&f);
        assert_eq!(q.buffers_held(), 1, "slot 1 is free once D left");
        let f = q.pop().unwrap();
        assert_eq!(bytes_of(&q, &f), vec![5; 100]);
        q.release(&f);
        assert_eq!((q.buffers_held(), p.borrow().stats().out), (0, 0));
    }
}
