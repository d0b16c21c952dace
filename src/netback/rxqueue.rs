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
mod tests;
