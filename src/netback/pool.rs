//! The receive-buffer pool every vif queue shares.
//!
//! A queue holds packet buffers only while frames for its guest wait in
//! them: it takes one when a frame needs room and gives it back as soon as
//! the guest has taken every frame in it. An idle vif therefore costs no
//! buffer at all, and the memory a busy one uses comes from one budget for
//! all of them instead of a fixed set per vif.
//!
//! The pool may hand out at most `limit` buffers. So that one guest that
//! never posts receive buffers (or a few of them) cannot leave the others
//! with nothing, it keeps back one buffer for every registered queue that
//! holds none: a queue's first buffer is always there, a further one only
//! when that reserve stays whole. Each queue's own byte budget (`rxqueue`)
//! bounds what any one queue can hold beyond that.
#![forbid(unsafe_code)]

use super::buf::{BufPool, PacketBuf};
use alloc::boxed::Box;
use alloc::rc::Rc;
use core::cell::RefCell;

/// TX staging buffers (shared by every vif) at most and at least.
pub const STAGING_MAX: usize = 16;
pub const STAGING_MIN: usize = 2;

/// Receive buffers below which xvif warns at start: fewer than one per
/// queue of a vif with the default queue count.
pub const RX_FEW: usize = 4;

/// Splits `bufs` packet buffers between the TX staging set every vif
/// shares, one header arena (the turn's, for one copy between vifs) and the
/// receive pool: staging takes a quarter, between `STAGING_MIN` and
/// `STAGING_MAX`, so that a small domain keeps receive buffers instead of
/// giving them all to staging. Returns (staging, receive limit).
pub fn split_buffers(bufs: usize) -> (usize, usize) {
    let staging = (bufs / 4).clamp(STAGING_MIN, STAGING_MAX);
    (staging, bufs.saturating_sub(staging + 1))
}

/// The pool as the queues hold it.
pub type SharedRxPool<B> = Rc<RefCell<RxPool<B>>>;

/// Counters of the pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxPoolStats {
    /// Buffers handed out now.
    pub out: usize,
    /// Most ever handed out at once.
    pub peak: usize,
    /// Buffers the pool may hand out.
    pub limit: usize,
    /// Queues registered.
    pub queues: usize,
    /// Queues holding at least one buffer.
    pub holders: usize,
    /// Requests refused (the frame was dropped).
    pub refused: u64,
}

/// Buffers from a backing pool, under a limit, with a reserve of one per
/// queue that holds none.
pub struct RxPool<B> {
    inner: Box<dyn BufPool<Buf = B>>,
    cap: usize,
    stats: RxPoolStats,
}

impl<B: PacketBuf> RxPool<B> {
    /// A pool of at most `limit` buffers of `cap` bytes from `inner`.
    pub fn new(inner: Box<dyn BufPool<Buf = B>>, cap: usize, limit: usize) -> Self {
        Self { inner, cap, stats: RxPoolStats { limit, ..RxPoolStats::default() } }
    }

    /// As `new`, shared.
    pub fn shared(inner: Box<dyn BufPool<Buf = B>>, cap: usize, limit: usize) -> SharedRxPool<B> {
        Rc::new(RefCell::new(Self::new(inner, cap, limit)))
    }

    /// Capacity of every buffer.
    pub fn buf_capacity(&self) -> usize {
        self.cap
    }

    /// Counters.
    pub fn stats(&self) -> RxPoolStats {
        self.stats
    }

    /// Changes the limit (buffers already out stay out).
    pub fn set_limit(&mut self, limit: usize) {
        self.stats.limit = limit;
    }

    /// The backing pool, for buffers that are not the queues' (TX staging).
    pub fn backing(&mut self) -> &mut dyn BufPool<Buf = B> {
        &mut *self.inner
    }

    /// A queue joins: one more buffer is kept in reserve for it.
    pub fn register(&mut self) {
        self.stats.queues += 1;
    }

    /// A queue that holds no buffer leaves.
    pub fn unregister(&mut self) {
        self.stats.queues = self.stats.queues.saturating_sub(1);
    }

    /// Queues holding none, each owed one buffer of the reserve.
    fn reserve(&self) -> usize {
        self.stats.queues.saturating_sub(self.stats.holders)
    }

    /// A buffer for a queue that holds `held` buffers now; None when the
    /// limit (or, for a further buffer, the reserve) says no, or the
    /// backing pool is empty. A buffer of the wrong size is given back.
    pub fn take(&mut self, held: usize) -> Option<B> {
        let s = &self.stats;
        let allowed = if held == 0 { s.out < s.limit } else { s.out + 1 + self.reserve() <= s.limit };
        let b = if allowed { self.inner.alloc() } else { None };
        let b = match b {
            Some(b) if b.capacity() == self.cap => b,
            Some(b) => {
                self.inner.free(b);
                self.stats.refused += 1;
                return None;
            }
            None => {
                self.stats.refused += 1;
                return None;
            }
        };
        self.stats.out += 1;
        self.stats.peak = self.stats.peak.max(self.stats.out);
        if held == 0 {
            self.stats.holders += 1;
        }
        Some(b)
    }

    /// Gives back a buffer of a queue that holds `left` buffers after it.
    pub fn give(&mut self, buf: B, left: usize) {
        self.inner.free(buf);
        self.stats.out = self.stats.out.saturating_sub(1);
        if left == 0 {
            self.stats.holders = self.stats.holders.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netback::buf::LocalFrame;
    use alloc::vec::Vec;

    struct B(usize);

    impl PacketBuf for B {
        fn capacity(&self) -> usize {
            self.0
        }
        fn frame(&self, _: usize) -> Option<LocalFrame> {
            None
        }
        fn with_bytes<R>(&self, _: usize, f: impl FnOnce(&[u8]) -> R) -> R {
            f(&[])
        }
        fn with_bytes_mut<R>(&mut self, _: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
            f(&mut [])
        }
    }

    struct Backing(usize);

    impl BufPool for Backing {
        type Buf = B;
        fn alloc(&mut self) -> Option<B> {
            self.0 = self.0.checked_sub(1)?;
            Some(B(4096))
        }
        fn free(&mut self, _: B) {
            self.0 += 1;
        }
    }

    #[test]
    fn a_queue_that_holds_none_always_gets_one() {
        let mut p = RxPool::new(Box::new(Backing(100)), 4096, 4);
        for _ in 0..3 {
            p.register();
        }
        // Queue A takes its first and a second buffer; two queues still
        // hold none, so a third for A would eat their reserve.
        let a1 = p.take(0).unwrap();
        let a2 = p.take(1).unwrap();
        assert!(p.take(2).is_none(), "the reserve for the two empty queues");
        assert_eq!(p.stats().refused, 1);
        // The other two queues still get their first buffer.
        let b1 = p.take(0).unwrap();
        let c1 = p.take(0).unwrap();
        assert_eq!(p.stats().out, 4);
        assert!(p.take(0).is_none(), "the limit");
        p.give(a2, 1);
        p.give(a1, 0);
        p.give(b1, 0);
        p.give(c1, 0);
        let s = p.stats();
        assert_eq!((s.out, s.holders, s.peak), (0, 0, 4));
    }

    #[test]
    fn a_small_domain_keeps_receive_buffers_and_a_big_one_full_staging() {
        // memory=6 leaves 14 buffers once the reserve is out, memory=8 30.
        // 16 staging buffers and the arena took all 14 before, leaving
        // none to receive.
        assert_eq!(split_buffers(14), (3, 10));
        assert_eq!(split_buffers(30), (7, 22));
        // 16 MiB and up: full staging, the rest to receive.
        assert_eq!(split_buffers(94), (16, 77));
        assert_eq!(split_buffers(1000), (16, 983));
        // Too few for anything: staging keeps its minimum, receive gets none.
        assert_eq!(split_buffers(2), (2, 0));
        assert_eq!(split_buffers(0), (2, 0));
        for bufs in 0..200 {
            let (staging, rx) = split_buffers(bufs);
            assert!((STAGING_MIN..=STAGING_MAX).contains(&staging));
            assert!(rx == 0 || staging + 1 + rx == bufs, "{bufs}: {staging} + 1 + {rx}");
        }
    }

    #[test]
    fn limit_and_backing_both_bound_it() {
        let mut p = RxPool::new(Box::new(Backing(2)), 4096, 10);
        p.register();
        let got: Vec<B> = (0..5).map_while(|i| p.take(i)).collect();
        assert_eq!(got.len(), 2, "the backing pool had two");
        let mut q = RxPool::new(Box::new(Backing(100)), 4096, 10);
        q.register();
        assert!(q.take(0).is_some());
        q.set_limit(1);
        assert!(q.take(1).is_none());
    }

    #[test]
    fn a_buffer_of_another_size_is_refused() {
        let mut p = RxPool::new(Box::new(Backing(5)), 8192, 10);
        p.register();
        assert!(p.take(0).is_none());
        assert_eq!(p.stats().out, 0);
        assert_eq!(p.backing().alloc().map(|b| b.0), Some(4096), "it went back to the backing pool");
    }
}
