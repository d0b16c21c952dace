//! A fake hypervisor for netback host tests: guest pages owned by fake
//! domains, a grant table per domain (with the readonly flag and the domain
//! granted to), our own frames (the local packet buffers of
//! `FakeBufPool`), and a `GrantOps::copy` that honours offsets, lengths and
//! page bounds and answers GNTST_* per op as Xen does
//! (xen/include/public/grant_table.h). A copy may name a grant on both
//! sides (two guests' pages, as one copy between guests does): each side's
//! grant must be to the backend, the destination's writable.
#![forbid(unsafe_code)]

use crate::hal::GrantOps;
use crate::netback::buf::{BufPool, LocalFrame, PacketBuf};
use crate::netback::pool::{RxPool, SharedRxPool};
use crate::xen::abi::{
    GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GnttabCopy, GnttabCopyPtr, GnttabMapGrantRef, GnttabUnmapGrantRef,
};
use crate::xen::{DomId, XenError};
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

const PAGE: usize = 4096;
const GNTST_BAD_DOMAIN: i16 = -2;
const GNTST_BAD_GNTREF: i16 = -3;
const GNTST_PERMISSION_DENIED: i16 = -8;
const GNTST_BAD_PAGE: i16 = -9;
const GNTST_BAD_COPY_ARG: i16 = -10;

type Mem = Rc<RefCell<Vec<u8>>>;

#[derive(Debug, Clone, Copy)]
struct Grant {
    gfn: u64,
    to: DomId,
    readonly: bool,
}

/// Counters of the fake hypervisor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HvStats {
    /// GNTTABOP_copy hypercalls.
    pub copy_calls: u64,
    /// Copy operations.
    pub copy_ops: u64,
    /// Operations that failed (any GNTST error).
    pub failed_ops: u64,
    /// Operations whose source or destination ran past a page.
    pub page_crossing_ops: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Operations from one guest's grant straight into another's.
    pub between_ops: u64,
}

#[derive(Debug, Default)]
struct State {
    /// Guest pages by (domain, gfn).
    pages: BTreeMap<(u16, u64), Mem>,
    /// Our frames: gfn -> (memory, byte offset of the page in it).
    local: BTreeMap<u64, (Mem, usize)>,
    grants: BTreeMap<(u16, u32), Grant>,
    next_gfn: u64,
    next_gref: BTreeMap<u16, u32>,
    stats: HvStats,
}

/// The fake hypervisor; clones share state.
#[derive(Clone)]
pub struct FakeHv {
    st: Rc<RefCell<State>>,
    /// Our domain (the backend): grants must be made to it.
    pub backend: DomId,
    /// When set, the next copy hypercall fails as a whole with this error.
    pub fail_next_call: Rc<Cell<Option<XenError>>>,
    /// Called with each copy hypercall's operations before they are done.
    pub copy_hook: Rc<RefCell<Option<CopyHook>>>,
}

/// Watches copy hypercalls (`FakeHv::copy_hook`).
pub type CopyHook = alloc::boxed::Box<dyn Fn(&[GnttabCopy])>;

impl core::fmt::Debug for FakeHv {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FakeHv").field("backend", &self.backend).field("stats", &self.stats()).finish()
    }
}

impl FakeHv {
    /// A hypervisor whose backend domain is `backend`.
    pub fn new(backend: DomId) -> Self {
        let st = State { next_gfn: 0x1000, ..State::default() };
        Self {
            st: Rc::new(RefCell::new(st)),
            backend,
            fail_next_call: Rc::new(Cell::new(None)),
            copy_hook: Rc::new(RefCell::new(None)),
        }
    }

    /// Counters.
    pub fn stats(&self) -> HvStats {
        self.st.borrow().stats
    }

    /// A zeroed page for `dom`; returns its gfn.
    pub fn alloc_page(&self, dom: DomId) -> u64 {
        let mut s = self.st.borrow_mut();
        let gfn = s.next_gfn;
        s.next_gfn += 1;
        s.pages.insert((dom.0, gfn), Rc::new(RefCell::new(vec![0; PAGE])));
        gfn
    }

    /// Writes into a guest page (clamped to the page).
    pub fn write_page(&self, dom: DomId, gfn: u64, off: usize, data: &[u8]) {
        if let Some(p) = self.st.borrow().pages.get(&(dom.0, gfn)) {
            let mut p = p.borrow_mut();
            let end = (off + data.len()).min(PAGE);
            if off < end {
                p[off..end].copy_from_slice(&data[..end - off]);
            }
        }
    }

    /// Reads from a guest page.
    pub fn read_page(&self, dom: DomId, gfn: u64, off: usize, len: usize) -> Vec<u8> {
        let s = self.st.borrow();
        let Some(p) = s.pages.get(&(dom.0, gfn)) else { return Vec::new() };
        let p = p.borrow();
        p[off.min(PAGE)..(off + len).min(PAGE)].to_vec()
    }

    /// `dom` grants `to` access to its page `gfn`.
    pub fn grant(&self, dom: DomId, gfn: u64, to: DomId, readonly: bool) -> u32 {
        let mut s = self.st.borrow_mut();
        let r = s.next_gref.entry(dom.0).or_insert(8);
        let gref = *r;
        *r += 1;
        s.grants.insert((dom.0, gref), Grant { gfn, to, readonly });
        gref
    }

    /// Revokes a grant.
    pub fn revoke(&self, dom: DomId, gref: u32) {
        self.st.borrow_mut().grants.remove(&(dom.0, gref));
    }

    /// Registers `pages` local frames backed by `mem`; returns their gfns.
    fn register_local(&self, mem: &Mem, pages: usize) -> Vec<u64> {
        let mut s = self.st.borrow_mut();
        let mut gfns = Vec::with_capacity(pages);
        for i in 0..pages {
            // Scattered: consecutive buffer pages are not consecutive frames.
            let gfn = 0x10_0000 + s.next_gfn * 2;
            s.next_gfn += 1;
            s.local.insert(gfn, (mem.clone(), i * PAGE));
            gfns.push(gfn);
        }
        gfns
    }

    fn resolve(&self, s: &State, p: &GnttabCopyPtr, by_gref: bool, write: bool) -> Result<(Mem, usize), i16> {
        if by_gref {
            let g = s.grants.get(&(p.domid, p.ref_or_gmfn as u32)).ok_or(GNTST_BAD_GNTREF)?;
            if p.ref_or_gmfn > u64::from(u32::MAX) {
                return Err(GNTST_BAD_GNTREF);
            }
            if g.to != self.backend || (write && g.readonly) {
                return Err(GNTST_PERMISSION_DENIED);
            }
            let m = s.pages.get(&(p.domid, g.gfn)).ok_or(GNTST_BAD_PAGE)?;
            Ok((m.clone(), 0))
        } else {
            if p.domid != DomId::SELF.0 {
                return Err(GNTST_BAD_DOMAIN);
            }
            s.local.get(&p.ref_or_gmfn).cloned().ok_or(GNTST_BAD_PAGE)
        }
    }

    fn copy_one(&self, op: &GnttabCopy) -> i16 {
        let (src, dst) = {
            let s = self.st.borrow();
            let src = match self.resolve(&s, &op.source, op.flags & GNTCOPY_SOURCE_GREF != 0, false) {
                Ok(v) => v,
                Err(e) => return e,
            };
            let dst = match self.resolve(&s, &op.dest, op.flags & GNTCOPY_DEST_GREF != 0, true) {
                Ok(v) => v,
                Err(e) => return e,
            };
            (src, dst)
        };
        let len = usize::from(op.len);
        let (so, dof) = (usize::from(op.source.offset), usize::from(op.dest.offset));
        if so + len > PAGE || dof + len > PAGE {
            self.st.borrow_mut().stats.page_crossing_ops += 1;
            return GNTST_BAD_COPY_ARG;
        }
        let (from, to) = (src.1 + so, dst.1 + dof);
        // One copy, as Xen's: no bounce buffer to clear and fill per op.
        if Rc::ptr_eq(&src.0, &dst.0) {
            src.0.borrow_mut().copy_within(from..from + len, to);
        } else {
            let s = src.0.borrow();
            dst.0.borrow_mut()[to..to + len].copy_from_slice(&s[from..from + len]);
        }
        self.st.borrow_mut().stats.bytes += len as u64;
        0
    }
}

impl GrantOps for FakeHv {
    fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenError> {
        self.st.borrow_mut().stats.copy_calls += 1;
        if let Some(hook) = self.copy_hook.borrow().as_ref() {
            hook(ops);
        }
        if let Some(e) = self.fail_next_call.take() {
            return Err(e);
        }
        for op in ops.iter_mut() {
            op.status = self.copy_one(op);
            let mut s = self.st.borrow_mut();
            s.stats.copy_ops += 1;
            if op.flags & GNTCOPY_SOURCE_GREF != 0 && op.flags & GNTCOPY_DEST_GREF != 0 {
                s.stats.between_ops += 1;
            }
            if op.status != 0 {
                s.stats.failed_ops += 1;
            }
        }
        Ok(())
    }

    fn map(&self, _: &mut [GnttabMapGrantRef]) -> Result<(), XenError> {
        Err(XenError::NotImplemented)
    }

    fn unmap(&self, _: &mut [GnttabUnmapGrantRef]) -> Result<(), XenError> {
        Err(XenError::NotImplemented)
    }
}

/// A packet buffer in fake local memory, registered with a `FakeHv`.
#[derive(Debug)]
pub struct FakeBuf {
    mem: Mem,
    gfns: Vec<u64>,
    start: usize,
    cap: usize,
}

impl PacketBuf for FakeBuf {
    fn capacity(&self) -> usize {
        self.cap
    }

    fn frame(&self, off: usize) -> Option<LocalFrame> {
        if off >= self.cap {
            return None;
        }
        let a = self.start + off;
        Some(LocalFrame { gfn: *self.gfns.get(a / PAGE)?, offset: (a % PAGE) as u16 })
    }

    fn with_bytes<R>(&self, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let m = self.mem.borrow();
        f(&m[self.start..self.start + len.min(self.cap)])
    }

    fn with_bytes_mut<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut m = self.mem.borrow_mut();
        f(&mut m[self.start..self.start + len.min(self.cap)])
    }
}

/// A pool of `FakeBuf`s; counts allocations so tests can prove there are
/// none per packet.
#[derive(Debug)]
pub struct FakeBufPool {
    free: Vec<FakeBuf>,
    /// Buffers handed out so far.
    pub allocs: u64,
}

impl FakeBufPool {
    /// `n` buffers of `cap` bytes whose data starts `start` bytes into
    /// their first frame (to exercise page splitting).
    pub fn new(hv: &FakeHv, n: usize, cap: usize, start: usize) -> Self {
        let pages = (start + cap).div_ceil(PAGE);
        let free = (0..n)
            .map(|_| {
                let mem: Mem = Rc::new(RefCell::new(vec![0; pages * PAGE]));
                let gfns = hv.register_local(&mem, pages);
                FakeBuf { mem, gfns, start, cap }
            })
            .collect();
        Self { free, allocs: 0 }
    }

    /// Buffers left.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// `n` such buffers as a shared receive pool that may hand out all of
    /// them.
    pub fn shared_rx(hv: &FakeHv, n: usize, cap: usize, start: usize) -> SharedRxPool<FakeBuf> {
        RxPool::shared(alloc::boxed::Box::new(Self::new(hv, n, cap, start)), cap, n)
    }
}

impl BufPool for FakeBufPool {
    type Buf = FakeBuf;

    fn alloc(&mut self) -> Option<FakeBuf> {
        let b = self.free.pop()?;
        self.allocs += 1;
        Some(b)
    }

    fn free(&mut self, buf: FakeBuf) {
        self.free.push(buf);
    }
}
