//! Event channels: the hypercalls, and the 2-level bitmaps in shared_info
//! behind the main loop's dispatcher (storm limiter, fired ports).

use super::{EVENTS, EVENTS_PENDING, hcall_ptr, hypercall, si_u64};
use crate::xen::abi::{self, hcall, shared_info as si};
use crate::xen::events::{EventChannels, EventWords};
use crate::xen::evtchn::NotifyBatch;
use crate::xen::{DomId, EvtchnPort, XenError};
use core::sync::atomic::{AtomicU64, Ordering};

fn evtchn_op<T>(cmd: u64, arg: &mut T) -> Result<(), XenError> {
    hcall_ptr(hcall::EVENT_CHANNEL_OP, cmd, arg).map(|_| ())
}

/// Notifies the peer of `port`.
pub fn evtchn_send(port: EvtchnPort) -> Result<(), XenError> {
    evtchn_op(abi::evtchnop::SEND, &mut abi::EvtchnPortArg { port: port.0 })
}

/// Notifies the peers of `ports` (at most `NotifyBatch::MAX`) in one
/// hypercall: a single port with EVTCHNOP_send, more with a multicall of
/// them. Returns how many were not sent.
pub fn evtchn_send_many(ports: &[EvtchnPort]) -> usize {
    match ports {
        [] => 0,
        [one] => usize::from(evtchn_send(*one).is_err()),
        _ => {
            let n = ports.len().min(NotifyBatch::MAX);
            let mut args = [abi::EvtchnPortArg::default(); NotifyBatch::MAX];
            let mut calls = [abi::MulticallEntry::default(); NotifyBatch::MAX];
            for ((a, c), p) in args.iter_mut().zip(calls.iter_mut()).zip(ports) {
                a.port = p.0;
                c.op = u64::from(hcall::EVENT_CHANNEL_OP);
                c.args[0] = abi::evtchnop::SEND;
                c.args[1] = a as *mut abi::EvtchnPortArg as u64;
            }
            let calls = calls.get_mut(..n).unwrap_or_default();
            if hypercall(hcall::MULTICALL, calls.as_mut_ptr() as u64, n as u64, 0) != 0 {
                return ports.len();
            }
            calls.iter().filter(|c| c.result != 0).count() + (ports.len() - n)
        }
    }
}

/// Closes `port`, first lifting any mask the storm limiter set on it (the
/// number goes to the next bind).
pub fn evtchn_close(port: EvtchnPort) -> Result<(), XenError> {
    if let Some(e) = EVENTS.lock().as_mut() {
        e.closed(&SharedInfoEvents, port);
    }
    evtchn_op(abi::evtchnop::CLOSE, &mut abi::EvtchnPortArg { port: port.0 })
}

/// A freshly bound or allocated port starts unmasked and not fired.
fn evtchn_bound(port: EvtchnPort) -> EvtchnPort {
    if let Some(e) = EVENTS.lock().as_mut() {
        e.bound(&SharedInfoEvents, port);
    }
    port
}

/// Allocates a port that `remote` may bind to.
pub fn evtchn_alloc_unbound(remote: DomId) -> Result<EvtchnPort, XenError> {
    let mut a = abi::EvtchnAllocUnbound { dom: DomId::SELF.0, remote_dom: remote.0, port: 0 };
    evtchn_op(abi::evtchnop::ALLOC_UNBOUND, &mut a)?;
    Ok(evtchn_bound(EvtchnPort(a.port)))
}

/// Binds to `remote`'s `remote_port`.
pub fn evtchn_bind_interdomain(remote: DomId, remote_port: EvtchnPort) -> Result<EvtchnPort, XenError> {
    let mut a = abi::EvtchnBindInterdomain { remote_dom: remote.0, pad: 0, remote_port: remote_port.0, local_port: 0 };
    evtchn_op(abi::evtchnop::BIND_INTERDOMAIN, &mut a)?;
    Ok(evtchn_bound(EvtchnPort(a.local_port)))
}

fn evtchn_unmask_hypercall(port: EvtchnPort) {
    let _ = evtchn_op(abi::evtchnop::UNMASK, &mut abi::EvtchnPortArg { port: port.0 });
}

/// vCPU 0's selector and the event-channel bitmaps in `shared_info`.
struct SharedInfoEvents;

impl SharedInfoEvents {
    fn word(base: usize, i: usize) -> Option<&'static AtomicU64> {
        (i < crate::xen::events::WORDS).then(|| si_u64(base + i * 8)).flatten()
    }

    fn bit(base: usize, port: EvtchnPort) -> Option<(&'static AtomicU64, u64)> {
        Some((Self::word(base, port.0 as usize / 64)?, 1u64 << (port.0 % 64)))
    }
}

impl EventWords for SharedInfoEvents {
    fn selector(&self) -> u64 {
        si_u64(si::PENDING_SEL).map_or(0, |s| s.load(Ordering::Acquire))
    }
    fn take_selector(&self) -> u64 {
        si_u64(si::PENDING_SEL).map_or(0, |s| s.swap(0, Ordering::AcqRel))
    }
    fn pending(&self, i: usize) -> u64 {
        Self::word(si::EVTCHN_PENDING, i).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn mask(&self, i: usize) -> u64 {
        Self::word(si::EVTCHN_MASK, i).map_or(0, |w| w.load(Ordering::Acquire))
    }
    fn clear_pending(&self, port: EvtchnPort) {
        if let Some((w, bit)) = Self::bit(si::EVTCHN_PENDING, port) {
            w.fetch_and(!bit, Ordering::SeqCst);
        }
    }
    fn set_mask(&self, port: EvtchnPort) {
        if let Some((w, bit)) = Self::bit(si::EVTCHN_MASK, port) {
            w.fetch_or(bit, Ordering::SeqCst);
        }
    }
    /// As Linux's evtchn_2l_unmask for an HVM guest: clear the mask, and
    /// when an event is pending, re-mask and let EVTCHNOP_unmask clear it,
    /// because only an unmask that finds the bit set makes Xen raise the
    /// selector and an upcall for the pending event.
    fn unmask(&self, port: EvtchnPort) {
        let Some((mask, bit)) = Self::bit(si::EVTCHN_MASK, port) else { return };
        mask.fetch_and(!bit, Ordering::SeqCst);
        let pending = Self::bit(si::EVTCHN_PENDING, port).is_some_and(|(w, b)| w.load(Ordering::SeqCst) & b != 0);
        if pending {
            mask.fetch_or(bit, Ordering::SeqCst);
            evtchn_unmask_hypercall(port);
        }
    }
}

/// Moves pending ports from shared_info into the fired set (rate-limited per
/// port); returns true when any port fired. Runs in the main loop.
pub fn poll_events(now: u64) -> bool {
    let kicked = EVENTS_PENDING.swap(false, Ordering::AcqRel);
    EVENTS.lock().as_mut().is_some_and(|e| e.poll(&SharedInfoEvents, now, kicked))
}

/// Consumes a fired notification on `port`.
pub fn take_fired(port: EvtchnPort) -> bool {
    EVENTS.lock().as_mut().is_some_and(|e| e.take_fired(port))
}

/// Times `port` was throttled by the storm limiter.
pub fn throttled(port: EvtchnPort) -> u64 {
    EVENTS.lock().as_ref().map_or(0, |e| e.throttled(port))
}

/// When the storm limiter next unmasks a throttled port.
pub fn next_unmask() -> Option<u64> {
    EVENTS.lock().as_ref().and_then(EventChannels::next_unmask)
}
