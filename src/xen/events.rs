//! The event-channel dispatcher of the main loop: moves pending ports out of
//! the 2-level bitmaps of `shared_info` into a set of fired ports, through
//! the per-port storm limiter, which masks a storming port and unmasks it
//! when its penalty is over.
//!
//! A mask bit outlives the binding it was set for: Xen hands out the lowest
//! free port number, so a port closed while throttled comes back masked to
//! the next binder, whose notifications would then never arrive. Ports are
//! therefore unmasked both when they are closed and when they are bound.
#![forbid(unsafe_code)]

use super::EvtchnPort;
use super::abi::EVTCHN_2L_PORTS;
use super::evtchn::{self, LimitConfig, RateLimiter};

/// Words in each 2-level bitmap.
pub const WORDS: usize = (EVTCHN_2L_PORTS / 64) as usize;

/// The 2-level event-channel state of `shared_info` (vCPU 0's selector and
/// the domain's pending and mask bitmaps), each word updated atomically.
pub trait EventWords {
    /// The pending selector, as it is.
    fn selector(&self) -> u64;
    /// Takes the pending selector (swaps it with 0).
    fn take_selector(&self) -> u64;
    /// Pending bitmap word `i`.
    fn pending(&self, i: usize) -> u64;
    /// Mask bitmap word `i`.
    fn mask(&self, i: usize) -> u64;
    /// Clears `port`'s pending bit (the event is consumed).
    fn clear_pending(&self, port: EvtchnPort);
    /// Sets `port`'s mask bit: Xen keeps events pending without raising
    /// the selector.
    fn set_mask(&self, port: EvtchnPort);
    /// Clears `port`'s mask bit (EVTCHNOP_unmask semantics: an event left
    /// pending while masked may be raised again).
    fn unmask(&self, port: EvtchnPort);
}

fn split(port: EvtchnPort) -> (usize, u64) {
    (port.0 as usize / 64, 1u64 << (port.0 % 64))
}

/// The limiter plus the ports that fired and were not yet taken.
#[derive(Debug)]
pub struct EventChannels {
    limiter: RateLimiter,
    fired: [u64; WORDS],
}

impl EventChannels {
    /// A dispatcher with the given storm limits.
    pub fn new(cfg: LimitConfig) -> Self {
        Self { limiter: RateLimiter::new(cfg), fired: [0; WORDS] }
    }

    /// Unmasks ports whose penalty is over, then moves pending, unmasked
    /// ports into the fired set (rate-limited per port: a throttled port is
    /// masked and left pending). `kicked` says an upcall arrived since the
    /// last poll. Returns true when any port fired.
    pub fn poll(&mut self, w: &dyn EventWords, now: u64, kicked: bool) -> bool {
        // Words holding a port that was just unmasked: scanned whatever the
        // selector says, so an event left pending during the penalty is
        // delivered now even if nothing raises the selector again.
        let mut rescan = 0u64;
        self.limiter.due_unmask(now, |p| {
            w.unmask(p);
            rescan |= 1u64 << split(p).0;
        });
        if !kicked && rescan == 0 && w.selector() == 0 {
            return false;
        }
        let sel = w.take_selector() | rescan;
        let mut any = false;
        let (limiter, fired) = (&mut self.limiter, &mut self.fired);
        evtchn::scan(
            sel,
            |i| w.pending(i),
            |i| w.mask(i),
            |port| {
                if !limiter.allow(port, now) {
                    w.set_mask(port);
                    return;
                }
                w.clear_pending(port);
                let (i, bit) = split(port);
                if let Some(f) = fired.get_mut(i) {
                    *f |= bit;
                }
                any = true;
            },
        );
        any
    }

    /// Consumes a fired notification on `port`.
    pub fn take_fired(&mut self, port: EvtchnPort) -> bool {
        let (i, bit) = split(port);
        self.fired.get_mut(i).is_some_and(|f| core::mem::replace(f, *f & !bit) & bit != 0)
    }

    /// `port` was just bound (or allocated): it starts unmasked, with no
    /// limiter history and no notification left over from an earlier user
    /// of the same number.
    pub fn bound(&mut self, w: &dyn EventWords, port: EvtchnPort) {
        self.reset(w, port);
    }

    /// `port` is being closed: its limiter state goes, and a mask the
    /// limiter set is lifted so the number is handed out unmasked.
    pub fn closed(&mut self, w: &dyn EventWords, port: EvtchnPort) {
        self.reset(w, port);
    }

    fn reset(&mut self, w: &dyn EventWords, port: EvtchnPort) {
        if port.0 >= EVTCHN_2L_PORTS {
            return;
        }
        self.limiter.forget(port);
        w.unmask(port);
        self.take_fired(port);
    }

    /// When the limiter next unmasks a port: the main loop must poll again
    /// by then, or the port stays masked until something else wakes it.
    pub fn next_unmask(&self) -> Option<u64> {
        self.limiter.next_unmask()
    }

    /// Times `port` was throttled since it was bound.
    pub fn throttled(&self, port: EvtchnPort) -> u64 {
        self.limiter.throttled(port)
    }
}
