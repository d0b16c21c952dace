//! Grant table v1: granting our own pages to other domains (entries in the
//! shared grant frames, xen/include/public/grant_table.h) and batching
//! `GNTTABOP_copy` operations.
#![forbid(unsafe_code)]

use super::abi::{self, GRANT_ENTRY_V1_SIZE, GTF_PERMIT_ACCESS, GTF_READING, GTF_READONLY, GTF_WRITING, GnttabCopy};
use super::error::GrantStatus;
use super::{DomId, GrantRef, XenError};
use crate::hal::{GrantOps, SharedMem};
use alloc::vec::Vec;

/// Entries reserved for the toolstack (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const RESERVED_ENTRIES: u32 = 8;

/// Grant bookkeeping errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// No free grant reference.
    Exhausted,
    /// The peer still has the page mapped or is copying it.
    InUse(GrantRef),
    /// A reference we never handed out.
    NotOurs(GrantRef),
}

/// Our grant table: `entries` v1 entries in `mem` (the shared frames).
#[derive(Debug)]
pub struct GrantTable {
    entries: u32,
    free: Vec<u32>,
    active: Vec<bool>,
}

impl GrantTable {
    /// Manages `entries` entries (all frames' worth).
    pub fn new(entries: u32) -> Self {
        let free = (RESERVED_ENTRIES..entries).rev().collect();
        Self { entries, free, active: alloc::vec![false; entries as usize] }
    }

    /// Free references left.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// References in use.
    pub fn in_use(&self) -> usize {
        self.active.iter().filter(|a| **a).count()
    }

    /// Grants `domid` access to guest frame `gfn`.
    pub fn grant(
        &mut self,
        mem: &dyn SharedMem,
        domid: DomId,
        gfn: u32,
        readonly: bool,
    ) -> Result<GrantRef, GrantError> {
        let r = self.free.pop().ok_or(GrantError::Exhausted)?;
        let off = r as usize * GRANT_ENTRY_V1_SIZE;
        mem.write_bytes(off + 2, &domid.0.to_le_bytes());
        mem.write_u32(off + 4, gfn);
        // Domain and frame must be visible before the entry becomes valid.
        mem.fence();
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        mem.write_bytes(off, &flags.to_le_bytes());
        if let Some(a) = self.active.get_mut(r as usize) {
            *a = true;
        }
        Ok(GrantRef(r))
    }

    /// Revokes a grant unless the peer is using it (then `InUse`: try later).
    pub fn end(&mut self, mem: &dyn SharedMem, gref: GrantRef) -> Result<(), GrantError> {
        if gref.0 >= self.entries || !self.active.get(gref.0 as usize).copied().unwrap_or(false) {
            return Err(GrantError::NotOurs(gref));
        }
        let off = gref.0 as usize * GRANT_ENTRY_V1_SIZE;
        let mut b = [0u8; 2];
        mem.read_bytes(off, &mut b);
        let mut flags = u16::from_le_bytes(b);
        // Bounded: the peer can flip the busy bits, but each failed exchange
        // means it changed them; give up after a few rounds.
        for _ in 0..64 {
            if flags & (GTF_READING | GTF_WRITING) != 0 {
                return Err(GrantError::InUse(gref));
            }
            let found = mem.compare_exchange_u16(off, flags, 0);
            if found == flags {
                if let Some(a) = self.active.get_mut(gref.0 as usize) {
                    *a = false;
                }
                self.free.push(gref.0);
                return Ok(());
            }
            flags = found;
        }
        Err(GrantError::InUse(gref))
    }
}

/// Operations per hypercall.
pub const COPY_BATCH: usize = 64;

/// Collects grant copies and issues them in batches.
#[derive(Debug)]
pub struct CopyBatch {
    ops: Vec<GnttabCopy>,
    /// Operations per hypercall.
    chunk: usize,
    /// Hypercalls issued.
    pub hypercalls: u64,
}

impl Default for CopyBatch {
    fn default() -> Self {
        Self::with_chunk(COPY_BATCH)
    }
}

impl CopyBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch that issues up to `chunk` operations per hypercall
    /// (Xen preempts a long GNTTABOP_copy with a continuation of its own,
    /// invisible to the caller).
    pub fn with_chunk(chunk: usize) -> Self {
        Self { ops: Vec::new(), chunk: chunk.max(1), hypercalls: 0 }
    }

    /// Queues a copy from a peer's grant into our frame `gfn` at `offset`.
    pub fn from_grant(&mut self, src: (DomId, GrantRef, u16), gfn: u64, offset: u16, len: u16) {
        self.ops.push(GnttabCopy {
            source: abi::GnttabCopyPtr { ref_or_gmfn: u64::from(src.1.0), domid: src.0.0, offset: src.2, pad: 0 },
            dest: abi::GnttabCopyPtr { ref_or_gmfn: gfn, domid: DomId::SELF.0, offset, pad: 0 },
            len,
            flags: abi::GNTCOPY_SOURCE_GREF,
            status: 0,
            pad: 0,
        });
    }

    /// Queues a copy from our frame into a peer's grant.
    pub fn to_grant(&mut self, gfn: u64, offset: u16, dst: (DomId, GrantRef, u16), len: u16) {
        self.ops.push(GnttabCopy {
            source: abi::GnttabCopyPtr { ref_or_gmfn: gfn, domid: DomId::SELF.0, offset, pad: 0 },
            dest: abi::GnttabCopyPtr { ref_or_gmfn: u64::from(dst.1.0), domid: dst.0.0, offset: dst.2, pad: 0 },
            len,
            flags: abi::GNTCOPY_DEST_GREF,
            status: 0,
            pad: 0,
        });
    }

    /// Queues a copy from one peer's grant into another's (or the same
    /// peer's): Xen allows it when both grants are to the copying domain
    /// (`gnttab_copy_claim_buf` acquires each side's grant on its own).
    pub fn between_grants(&mut self, src: (DomId, GrantRef, u16), dst: (DomId, GrantRef, u16), len: u16) {
        self.ops.push(GnttabCopy {
            source: abi::GnttabCopyPtr { ref_or_gmfn: u64::from(src.1.0), domid: src.0.0, offset: src.2, pad: 0 },
            dest: abi::GnttabCopyPtr { ref_or_gmfn: u64::from(dst.1.0), domid: dst.0.0, offset: dst.2, pad: 0 },
            len,
            flags: abi::GNTCOPY_SOURCE_GREF | abi::GNTCOPY_DEST_GREF,
            status: 0,
            pad: 0,
        });
    }

    /// Queued operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Issues every queued copy, `COPY_BATCH` per hypercall; returns one
    /// result per operation, in order. A rejected batch fails all its ops.
    pub fn flush(&mut self, hv: &dyn GrantOps) -> Vec<Result<(), XenError>> {
        let mut results = Vec::with_capacity(self.ops.len());
        for chunk in self.ops.chunks_mut(self.chunk) {
            self.hypercalls += 1;
            match hv.copy(chunk) {
                Ok(()) => results.extend(chunk.iter().map(|op| GrantStatus::check(op.status))),
                Err(e) => results.extend(chunk.iter().map(|_| Err(e))),
            }
        }
        self.ops.clear();
        results
    }

    /// As `flush`, without allocating: passes each operation's index and
    /// result to `f`, in order.
    pub fn flush_each(&mut self, hv: &dyn GrantOps, mut f: impl FnMut(usize, Result<(), XenError>)) {
        self.flush_ops(hv, |i, _, r| f(i, r));
    }

    /// As `flush_each`, with each operation as it was issued.
    pub fn flush_ops(&mut self, hv: &dyn GrantOps, mut f: impl FnMut(usize, &GnttabCopy, Result<(), XenError>)) {
        let mut i = 0;
        for chunk in self.ops.chunks_mut(self.chunk) {
            self.hypercalls += 1;
            let batch = hv.copy(chunk);
            for op in chunk.iter() {
                f(i, op, batch.and_then(|()| GrantStatus::check(op.status)));
                i += 1;
            }
        }
        self.ops.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::HeapPage;
    use crate::xen::abi::{GnttabMapGrantRef, GnttabUnmapGrantRef};
    use core::cell::RefCell;

    #[test]
    fn grant_and_end_write_entries() {
        let page = HeapPage::new(4096);
        let mut gt = GrantTable::new(512);
        let r = gt.grant(&page, DomId(3), 0x1234, true).unwrap();
        assert!(r.0 >= RESERVED_ENTRIES);
        let off = r.0 as usize * 8;
        let mut e = [0u8; 8];
        page.read_bytes(off, &mut e);
        assert_eq!(u16::from_le_bytes([e[0], e[1]]), GTF_PERMIT_ACCESS | GTF_READONLY);
        assert_eq!(u16::from_le_bytes([e[2], e[3]]), 3);
        assert_eq!(u32::from_le_bytes([e[4], e[5], e[6], e[7]]), 0x1234);
        assert_eq!(gt.in_use(), 1);
        // Peer is reading: cannot end.
        page.write_bytes(off, &(GTF_PERMIT_ACCESS | GTF_READING).to_le_bytes());
        assert_eq!(gt.end(&page, r), Err(GrantError::InUse(r)));
        page.write_bytes(off, &GTF_PERMIT_ACCESS.to_le_bytes());
        assert_eq!(gt.end(&page, r), Ok(()));
        assert_eq!(gt.end(&page, r), Err(GrantError::NotOurs(r)));
        assert_eq!(gt.end(&page, GrantRef(100_000)), Err(GrantError::NotOurs(GrantRef(100_000))));
        assert_eq!(gt.in_use(), 0);
    }

    #[test]
    fn grant_table_exhausts_cleanly() {
        let page = HeapPage::new(4096);
        let mut gt = GrantTable::new(10);
        assert!(gt.grant(&page, DomId(1), 1, false).is_ok());
        assert!(gt.grant(&page, DomId(1), 2, false).is_ok());
        assert_eq!(gt.grant(&page, DomId(1), 3, false), Err(GrantError::Exhausted));
    }

    /// A fake hypervisor whose copy fails ops with odd source refs.
    struct FakeHv {
        calls: RefCell<Vec<usize>>,
        reject_batch: bool,
    }

    impl GrantOps for FakeHv {
        fn copy(&self, ops: &mut [GnttabCopy]) -> Result<(), XenError> {
            self.calls.borrow_mut().push(ops.len());
            if self.reject_batch {
                return Err(XenError::Fault);
            }
            for op in ops {
                op.status = if op.source.ref_or_gmfn % 2 == 1 { -3 } else { 0 };
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

    #[test]
    fn copies_are_batched_and_statuses_typed() {
        let hv = FakeHv { calls: RefCell::new(Vec::new()), reject_batch: false };
        let mut b = CopyBatch::new();
        for i in 0..150u32 {
            b.from_grant((DomId(2), GrantRef(i), 0), 0x100, 0, 64);
        }
        let r = b.flush(&hv);
        assert_eq!(*hv.calls.borrow(), vec![64, 64, 22]);
        assert_eq!(r.len(), 150);
        assert_eq!(r[0], Ok(()));
        assert_eq!(r[1], Err(XenError::Grant(GrantStatus::BadGntref)));
        assert!(b.is_empty());
        let bad = FakeHv { calls: RefCell::new(Vec::new()), reject_batch: true };
        b.to_grant(0x100, 0, (DomId(2), GrantRef(4), 10), 100);
        assert_eq!(b.flush(&bad), vec![Err(XenError::Fault)]);
    }
}
