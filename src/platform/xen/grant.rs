//! The grant table: our frames mapped into the physmap, the table as one
//! shared region, the grant-table hypercalls, and the pages the grant
//! self-test copies between.

use super::{XenPage, add_to_physmap, frames, hypercall};
use crate::hal::{GrantOps, SharedMem};
use crate::xen::abi::{self, hcall};
use crate::xen::{DomId, XenError};
use core::sync::atomic::{AtomicU64, Ordering};

/// Grant frames we map (v1: 512 entries each).
pub const GRANT_FRAMES: u32 = 4;
static GRANT_FRAMES_BASE: AtomicU64 = AtomicU64::new(0);

pub(super) fn init_grant_table() -> Result<u32, XenError> {
    let mut q = abi::GnttabQuerySize { dom: DomId::SELF.0, ..Default::default() };
    XenError::check(hypercall(hcall::GRANT_TABLE_OP, abi::gnttabop::QUERY_SIZE, &mut q as *mut _ as u64, 1))?;
    crate::xen::error::GrantStatus::check(q.status)?;
    let n = GRANT_FRAMES.min(q.max_nr_frames.max(1));
    let base = frames::alloc_zeroed(u64::from(n)).map_err(|_| XenError::NoMemory)?;
    for i in 0..n {
        add_to_physmap(abi::XENMAPSPACE_GRANT_TABLE, u64::from(i), (base >> 12) + u64::from(i))?;
    }
    GRANT_FRAMES_BASE.store(base, Ordering::Release);
    Ok(n * 512)
}

/// The grant-table frames as one shared region.
#[derive(Debug, Clone, Copy)]
pub struct GrantFrames {
    base: u64,
    len: usize,
}

/// Our grant-table frames, once mapped.
pub fn grant_frames() -> Option<GrantFrames> {
    let base = GRANT_FRAMES_BASE.load(Ordering::Acquire);
    (base != 0).then_some(GrantFrames { base, len: GRANT_FRAMES as usize * 4096 })
}

impl GrantFrames {
    fn page(&self, off: usize) -> Option<(XenPage, usize)> {
        (off < self.len).then(|| (XenPage { addr: self.base + (off / 4096 * 4096) as u64 }, off % 4096))
    }
}

impl SharedMem for GrantFrames {
    fn size(&self) -> usize {
        self.len
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.page(off).map_or(0, |(p, o)| p.read_u32(o))
    }
    fn write_u32(&self, off: usize, v: u32) {
        if let Some((p, o)) = self.page(off) {
            p.write_u32(o, v);
        }
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        match self.page(off) {
            Some((p, o)) => p.read_bytes(o, buf),
            None => buf.fill(0),
        }
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        if let Some((p, o)) = self.page(off) {
            p.write_bytes(o, data);
        }
    }
    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        self.page(off).map_or(!old, |(p, o)| p.compare_exchange_u16(o, old, new))
    }
}

/// Grant-table hypercalls.
#[derive(Debug, Clone, Copy, Default)]
pub struct XenGrantOps;

fn gnttab<T>(cmd: u64, ops: &mut [T]) -> Result<(), XenError> {
    if ops.is_empty() {
        return Ok(());
    }
    XenError::check(hypercall(hcall::GRANT_TABLE_OP, cmd, ops.as_mut_ptr() as u64, ops.len() as u64)).map(|_| ())
}

impl GrantOps for XenGrantOps {
    fn copy(&self, ops: &mut [abi::GnttabCopy]) -> Result<(), XenError> {
        gnttab(abi::gnttabop::COPY, ops)
    }
    fn map(&self, ops: &mut [abi::GnttabMapGrantRef]) -> Result<(), XenError> {
        gnttab(abi::gnttabop::MAP_GRANT_REF, ops)
    }
    fn unmap(&self, ops: &mut [abi::GnttabUnmapGrantRef]) -> Result<(), XenError> {
        gnttab(abi::gnttabop::UNMAP_GRANT_REF, ops)
    }
}

/// Copies bytes out of an identity-mapped page we own (grant self-test).
pub fn read_own_page(gpa: u64, buf: &mut [u8]) -> bool {
    crate::platform::phys::read(gpa, buf)
}

/// Fills a page we own (grant self-test).
pub fn fill_own_page(gpa: u64, byte: u8) {
    if let Some(p) = XenPage::from_special_pfn(gpa >> 12) {
        p.write_bytes(0, &[byte; 4096]);
    }
}
