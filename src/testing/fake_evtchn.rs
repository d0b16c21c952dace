//! The 2-level event-channel bitmaps of `shared_info` over plain memory,
//! with Xen's side of them (xen/common/event_2l.c): raising a port sets its
//! pending bit and, unless it is masked, the selector; EVTCHNOP_unmask
//! re-raises an event left pending while masked; ports are allocated lowest
//! free first, and freeing one clears its pending bit but not its mask.
#![forbid(unsafe_code)]

use crate::xen::EvtchnPort;
use crate::xen::events::{EventWords, WORDS};
use core::cell::Cell;

/// A fake `shared_info` event-channel area and port allocator.
#[derive(Debug)]
pub struct FakeEventWords {
    sel: Cell<u64>,
    pending: [Cell<u64>; WORDS],
    mask: [Cell<u64>; WORDS],
    bound: [Cell<u64>; WORDS],
    /// Upcalls Xen would have sent.
    pub upcalls: Cell<u64>,
}

impl Default for FakeEventWords {
    fn default() -> Self {
        Self::new()
    }
}

fn split(port: EvtchnPort) -> (usize, u64) {
    (port.0 as usize / 64, 1u64 << (port.0 % 64))
}

fn get(words: &[Cell<u64>; WORDS], i: usize) -> u64 {
    words.get(i).map_or(0, Cell::get)
}

fn update(words: &[Cell<u64>; WORDS], i: usize, f: impl FnOnce(u64) -> u64) {
    if let Some(c) = words.get(i) {
        c.set(f(c.get()));
    }
}

impl FakeEventWords {
    /// Nothing bound, nothing pending; port 0 is reserved, as in Xen.
    pub fn new() -> Self {
        let w = Self {
            sel: Cell::new(0),
            pending: [const { Cell::new(0) }; WORDS],
            mask: [const { Cell::new(0) }; WORDS],
            bound: [const { Cell::new(0) }; WORDS],
            upcalls: Cell::new(0),
        };
        update(&w.bound, 0, |v| v | 1);
        w
    }

    /// Binds the lowest free port (what EVTCHNOP_bind_interdomain does).
    pub fn alloc(&self) -> Option<EvtchnPort> {
        let (i, word) = self.bound.iter().enumerate().find(|(_, c)| c.get() != u64::MAX)?;
        let bit = (!word.get()).trailing_zeros();
        word.set(word.get() | (1 << bit));
        Some(EvtchnPort(i as u32 * 64 + bit))
    }

    /// EVTCHNOP_close: frees the port and clears its pending bit; the mask
    /// bit stays as it is.
    pub fn free(&self, port: EvtchnPort) {
        let (i, bit) = split(port);
        update(&self.bound, i, |v| v & !bit);
        update(&self.pending, i, |v| v & !bit);
    }

    /// The peer notifies `port` (evtchn_2l_set_pending).
    pub fn raise(&self, port: EvtchnPort) {
        let (i, bit) = split(port);
        if get(&self.bound, i) & bit == 0 || get(&self.pending, i) & bit != 0 {
            return;
        }
        update(&self.pending, i, |v| v | bit);
        if get(&self.mask, i) & bit == 0 {
            self.raise_selector(i);
        }
    }

    fn raise_selector(&self, i: usize) {
        let s = self.sel.get();
        self.sel.set(s | (1 << i));
        if s & (1 << i) == 0 {
            self.upcalls.set(self.upcalls.get() + 1);
        }
    }

    /// Whether `port`'s mask bit is set.
    pub fn is_masked(&self, port: EvtchnPort) -> bool {
        let (i, bit) = split(port);
        get(&self.mask, i) & bit != 0
    }

    /// Whether `port`'s pending bit is set.
    pub fn is_pending(&self, port: EvtchnPort) -> bool {
        let (i, bit) = split(port);
        get(&self.pending, i) & bit != 0
    }
}

impl EventWords for FakeEventWords {
    fn selector(&self) -> u64 {
        self.sel.get()
    }
    fn take_selector(&self) -> u64 {
        self.sel.replace(0)
    }
    fn pending(&self, i: usize) -> u64 {
        get(&self.pending, i)
    }
    fn mask(&self, i: usize) -> u64 {
        get(&self.mask, i)
    }
    fn clear_pending(&self, port: EvtchnPort) {
        let (i, bit) = split(port);
        update(&self.pending, i, |v| v & !bit);
    }
    fn set_mask(&self, port: EvtchnPort) {
        let (i, bit) = split(port);
        update(&self.mask, i, |v| v | bit);
    }
    /// evtchn_2l_unmask: re-raises the selector only when the bit was set.
    fn unmask(&self, port: EvtchnPort) {
        let (i, bit) = split(port);
        let was = get(&self.mask, i) & bit != 0;
        update(&self.mask, i, |v| v & !bit);
        if was && get(&self.pending, i) & bit != 0 {
            self.raise_selector(i);
        }
    }
}
