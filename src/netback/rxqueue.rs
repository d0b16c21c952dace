//! The frames waiting for a guest's RX buffers: a byte-budgeted FIFO packed
//! into the queue's own packet buffers, with a fair share per source.
//!
//! Storage: the buffers form one logical byte ring of `buffers × capacity`
//! bytes. A frame is written at the ring's write position, or at the start
//! of the next buffer when it would not fit in the rest of the current one,
//! so every frame lies in one buffer and one grant copy per guest slot
//! reads it. Frames leave in order, so the read position only advances.
//! Positions are u64 byte counts (they never wrap in practice); buffer and
//! offset are the position modulo the ring.
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

/// RX buffers the data plane gives one vif, spread over its queues.
pub const RX_BUFFERS_PER_VIF: usize = 32;

/// RX buffers a queue gets at least.
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

/// The queue and the buffers that hold its frames (allocated once).
pub(crate) struct RxQueue<B> {
    bufs: Vec<B>,
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
    /// A queue over `bufs` (all of one capacity) holding at most `budget`
    /// bytes (at most all of the buffers).
    pub fn new(bufs: Vec<B>, budget: usize) -> Self {
        let cap = bufs.first().map_or(0, |b| b.capacity());
        let ring = cap.saturating_mul(bufs.len());
        let budget = budget.min(ring);
        Self {
            budget,
            min_charge: budget.div_ceil(MAX_FRAMES),
            used: 0,
            cap,
            ring: ring as u64,
            bufs,
            write: 0,
            read: 0,
            frames: VecDeque::with_capacity(MAX_FRAMES),
            held: [0; RX_SOURCES],
            active: 0,
        }
    }

    pub fn into_bufs(self) -> Vec<B> {
        self.bufs
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
        let Some(b) = self.bufs.get_mut(buf) else { return Err(RxDrop::QueueFull) };
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
        self.bufs.get(usize::from(q.buf))
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
        self.read = self.read.max(q.end).min(self.write);
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

    fn queue(bufs: usize, cap: usize, budget: usize) -> RxQueue<Mem> {
        RxQueue::new((0..bufs).map(|_| Mem(vec![0; cap])).collect(), budget)
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
}
