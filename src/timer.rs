//! Timer queue and the cooperative poll loop drivers plug into.
//!
//! The kernel is a single event loop: interrupt handlers only note that work
//! is pending; `Poller::run_once` polls every registered task and fires due
//! timers; the idle path sleeps until the earliest deadline.
#![forbid(unsafe_code)]

use alloc::boxed::Box;
use alloc::collections::BinaryHeap;
use alloc::vec::Vec;
use core::cmp::Reverse;

/// Nanoseconds since boot.
pub type Nanos = u64;

/// Identifies a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(u64);

type Callback = Box<dyn FnMut(Nanos) -> Option<Nanos> + Send>;

/// A min-heap of deadlines with callbacks. A callback returns `Some(next)` to
/// re-arm itself at an absolute time, `None` to finish.
#[derive(Default)]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Nanos, TimerId)>>,
    callbacks: Vec<(TimerId, Callback)>,
    next_id: u64,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Schedules `f` at absolute time `at`.
    pub fn schedule(&mut self, at: Nanos, f: impl FnMut(Nanos) -> Option<Nanos> + Send + 'static) -> TimerId {
        let id = TimerId(self.next_id);
        self.next_id += 1;
        self.heap.push(Reverse((at, id)));
        self.callbacks.push((id, Box::new(f)));
        id
    }

    /// Cancels a timer; false when it already ran out or never existed.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        let before = self.callbacks.len();
        self.callbacks.retain(|(i, _)| *i != id);
        before != self.callbacks.len()
    }

    /// Earliest pending deadline.
    pub fn next_deadline(&mut self) -> Option<Nanos> {
        // Drop cancelled entries from the top so the answer is honest.
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if self.callbacks.iter().any(|(i, _)| *i == id) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Number of live timers.
    pub fn len(&self) -> usize {
        self.callbacks.len()
    }

    /// True when no timer is live.
    pub fn is_empty(&self) -> bool {
        self.callbacks.is_empty()
    }

    /// Runs every timer due at `now`; returns how many ran. A timer that
    /// re-arms in the past runs again on the next call, not in this one, so a
    /// bad callback cannot spin this loop.
    pub fn run_due(&mut self, now: Nanos) -> usize {
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            due.push(id);
        }
        let mut ran = 0;
        for id in due {
            let Some(pos) = self.callbacks.iter().position(|(i, _)| *i == id) else { continue };
            ran += 1;
            let next = (self.callbacks[pos].1)(now);
            match next {
                Some(at) => self.heap.push(Reverse((at.max(now.saturating_add(1)), id))),
                None => {
                    drop(self.callbacks.swap_remove(pos));
                }
            }
        }
        ran
    }
}

/// Whether a poll did anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Work was done; poll again before sleeping.
    Busy,
    /// Nothing to do until an interrupt or a deadline.
    Idle,
}

/// A task polled by the main loop (a NIC, a vif, the management stack).
pub trait Task {
    /// Name for logs and stats.
    fn name(&self) -> &str;
    /// Does whatever work is pending.
    fn poll(&mut self, now: Nanos) -> Progress;
    /// When this task next needs polling without an interrupt.
    fn next_deadline(&self, _now: Nanos) -> Option<Nanos> {
        None
    }
}

/// The poll loop: tasks plus timers.
#[derive(Default)]
pub struct Poller {
    tasks: Vec<Box<dyn Task>>,
    /// Timers.
    pub timers: TimerQueue,
    /// Rounds run.
    pub rounds: u64,
}

impl Poller {
    /// An empty loop.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task.
    pub fn add(&mut self, t: Box<dyn Task>) {
        self.tasks.push(t);
    }

    /// Polls every task once and runs due timers. Returns `Busy` when anything
    /// made progress.
    pub fn run_once(&mut self, now: Nanos) -> Progress {
        self.rounds += 1;
        let mut busy = self.timers.run_due(now) > 0;
        for t in &mut self.tasks {
            busy |= t.poll(now) == Progress::Busy;
        }
        if busy { Progress::Busy } else { Progress::Idle }
    }

    /// Earliest time anything needs attention.
    pub fn next_deadline(&mut self, now: Nanos) -> Option<Nanos> {
        let t = self.tasks.iter().filter_map(|t| t.next_deadline(now)).min();
        match (t, self.timers.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn timers_fire_in_order_and_rearm() {
        let mut q = TimerQueue::new();
        let log = Arc::new(spin::Mutex::new(Vec::new()));
        let l1 = log.clone();
        q.schedule(30, move |now| {
            l1.lock().push(("a", now));
            None
        });
        let l2 = log.clone();
        let mut n = 0;
        q.schedule(10, move |now| {
            l2.lock().push(("b", now));
            n += 1;
            (n < 3).then_some(now + 10)
        });
        assert_eq!(q.next_deadline(), Some(10));
        assert_eq!(q.run_due(5), 0);
        assert_eq!(q.run_due(10), 1);
        assert_eq!(q.run_due(20), 1);
        assert_eq!(q.run_due(30), 2);
        // Equal deadlines fire in scheduling order.
        assert_eq!(*log.lock(), vec![("b", 10), ("b", 20), ("a", 30), ("b", 30)]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn cancel_and_past_rearm_do_not_spin() {
        let mut q = TimerQueue::new();
        let id = q.schedule(5, |_| None);
        assert!(q.cancel(id));
        assert!(!q.cancel(id));
        assert_eq!(q.next_deadline(), None);
        let count = Arc::new(AtomicU32::new(0));
        let c = count.clone();
        q.schedule(1, move |_| {
            c.fetch_add(1, Ordering::Relaxed);
            Some(0) // asks for the past
        });
        assert_eq!(q.run_due(100), 1);
        assert_eq!(count.load(Ordering::Relaxed), 1);
        assert_eq!(q.next_deadline(), Some(101));
    }

    struct Counter(u32);
    impl Task for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn poll(&mut self, _now: Nanos) -> Progress {
            if self.0 > 0 {
                self.0 -= 1;
                Progress::Busy
            } else {
                Progress::Idle
            }
        }
        fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
            Some(now + 1000)
        }
    }

    #[test]
    fn poller_reports_progress_and_deadlines() {
        let mut p = Poller::new();
        p.add(Box::new(Counter(2)));
        p.timers.schedule(50, |_| None);
        assert_eq!(p.run_once(0), Progress::Busy);
        assert_eq!(p.run_once(0), Progress::Busy);
        assert_eq!(p.run_once(0), Progress::Idle);
        assert_eq!(p.next_deadline(0), Some(50));
        assert_eq!(p.run_once(50), Progress::Busy);
        assert_eq!(p.next_deadline(60), Some(1060));
        assert_eq!(p.rounds, 4);
    }
}
