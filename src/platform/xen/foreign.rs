//! Other domains' pages in ours: grants mapped into the foreign window, and
//! the counts of mapped grants and bound event channels.

use super::{XenGrantOps, XenPage, evtchn_bind_interdomain, evtchn_close, take_fired};
use crate::hal::{GrantOps, SharedMem};
use crate::xen::abi;
use crate::xen::{DomId, EvtchnPort, XenError};
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

static MAPPED: AtomicU64 = AtomicU64::new(0);
static UNMAP_FAILED: AtomicU64 = AtomicU64::new(0);
static BOUND: AtomicU64 = AtomicU64::new(0);
static WINDOW_FREE: Mutex<alloc::vec::Vec<u64>> = Mutex::new(alloc::vec::Vec::new());
static WINDOW_NEXT: AtomicU64 = AtomicU64::new(0);

/// A peer's page mapped into our foreign window, and the only way to reach
/// it: the mapping is the view (it is `SharedMem` itself, neither `Copy` nor
/// `Clone`), and dropping it unmaps the page. So no view of the page can
/// outlive the mapping: whoever reads the ring owns the mapping.
#[derive(Debug)]
pub struct MappedGrant {
    page: XenPage,
    handle: u32,
}

impl SharedMem for MappedGrant {
    fn size(&self) -> usize {
        self.page.size()
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.page.read_u32(off)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.page.write_u32(off, v);
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.page.read_bytes(off, buf);
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.page.write_bytes(off, data);
    }
    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        self.page.compare_exchange_u16(off, old, new)
    }
}

impl Drop for MappedGrant {
    /// Unmaps the page. The window slot is reused only when Xen confirmed
    /// the unmap; otherwise the slot stays out of use and the failure is
    /// counted (`unmap_failures`).
    fn drop(&mut self) {
        let mut op =
            [abi::GnttabUnmapGrantRef { host_addr: self.page.addr, handle: self.handle, ..Default::default() }];
        match XenGrantOps.unmap(&mut op).and_then(|()| crate::xen::error::GrantStatus::check(op[0].status)) {
            Ok(()) => {
                MAPPED.fetch_sub(1, Ordering::Relaxed);
                WINDOW_FREE.lock().push(self.page.addr);
            }
            Err(e) => {
                UNMAP_FAILED.fetch_add(1, Ordering::Relaxed);
                log::warn!("grant unmap of {:#x} failed: {e}", self.page.addr);
            }
        }
    }
}

/// Grant unmaps Xen refused since boot (their window slots stay unused).
pub fn unmap_failures() -> u64 {
    UNMAP_FAILED.load(Ordering::Relaxed)
}

fn window_slot() -> Option<u64> {
    if let Some(a) = WINDOW_FREE.lock().pop() {
        return Some(a);
    }
    let w = crate::platform::paging::foreign_window();
    let off = WINDOW_NEXT.fetch_add(4096, Ordering::Relaxed);
    let a = w.start.checked_add(off)?;
    (a + 4096 <= w.end).then_some(a)
}

/// Maps `domid`'s grant `gref` (read-write) into the foreign window.
pub fn map_grant(domid: DomId, gref: crate::xen::GrantRef) -> Result<MappedGrant, XenError> {
    let gpa = window_slot().ok_or(XenError::NoSpace)?;
    let mut op = [abi::GnttabMapGrantRef {
        host_addr: gpa,
        flags: abi::GNTMAP_HOST_MAP,
        gref: gref.0,
        dom: domid.0,
        ..Default::default()
    }];
    let r = XenGrantOps.map(&mut op).and_then(|()| crate::xen::error::GrantStatus::check(op[0].status));
    match r {
        Ok(()) => {
            MAPPED.fetch_add(1, Ordering::Relaxed);
            Ok(MappedGrant { page: XenPage { addr: gpa }, handle: op[0].handle })
        }
        Err(e) => {
            WINDOW_FREE.lock().push(gpa);
            Err(e)
        }
    }
}

/// Binds to a peer's port and counts it.
pub fn bind_counted(remote: DomId, port: EvtchnPort) -> Result<EvtchnPort, XenError> {
    let p = evtchn_bind_interdomain(remote, port)?;
    BOUND.fetch_add(1, Ordering::Relaxed);
    Ok(p)
}

/// Closes a port bound with `bind_counted`.
pub fn close_counted(port: EvtchnPort) {
    if evtchn_close(port).is_ok() {
        BOUND.fetch_sub(1, Ordering::Relaxed);
    }
    let _ = take_fired(port);
}

/// (grants mapped, event channels bound) right now.
pub fn resources() -> (u64, u64) {
    (MAPPED.load(Ordering::Relaxed), BOUND.load(Ordering::Relaxed))
}
