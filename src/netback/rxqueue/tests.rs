//! The receive queue's tests: budgets, fair shares, pool buffers.

#![forbid(unsafe_code)]

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
