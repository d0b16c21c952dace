//! Grant copies between a frontend's granted pages and our packet buffers,
//! batched through `xen::grant::CopyBatch` (`COPY_BATCH` ops per
//! GNTTABOP_copy), each op tagged so its result finds its packet or slot.
//! Every op stays inside one 4 KiB page on both sides.
#![forbid(unsafe_code)]

use super::buf::{LocalFrame, PacketBuf, page_runs};
use crate::hal::GrantOps;
use crate::netif::PAGE_SIZE;
use crate::xen::grant::CopyBatch;
use crate::xen::{DomId, GrantRef, XenError};
use alloc::vec::Vec;

/// A grant copy could not even be described (a buffer without a frame for
/// an offset, or a guest range past its page): no op was queued for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmappable;

/// Queued copies with one tag each.
#[derive(Debug, Default)]
pub struct Copier {
    batch: CopyBatch,
    tags: Vec<u16>,
}

impl Copier {
    /// An empty copier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hypercalls issued so far.
    pub fn hypercalls(&self) -> u64 {
        self.batch.hypercalls
    }

    /// Queues a copy of `len` bytes from the guest's grant `gref` at
    /// `goff` into `buf` at `off`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_guest<B: PacketBuf>(
        &mut self,
        tag: u16,
        dom: DomId,
        gref: u32,
        goff: u16,
        buf: &B,
        off: usize,
        len: usize,
    ) -> Result<(), Unmappable> {
        self.queue(tag, buf, off, len, goff, |batch, fr, guest_off, n| {
            batch.from_grant((dom, GrantRef(gref), guest_off), fr.gfn, fr.offset, n);
        })
    }

    /// Queues a copy of `len` bytes of `buf` at `off` into the guest's
    /// grant `gref` at `goff`.
    #[allow(clippy::too_many_arguments)]
    pub fn to_guest<B: PacketBuf>(
        &mut self,
        tag: u16,
        buf: &B,
        off: usize,
        dom: DomId,
        gref: u32,
        goff: u16,
        len: usize,
    ) -> Result<(), Unmappable> {
        self.queue(tag, buf, off, len, goff, |batch, fr, guest_off, n| {
            batch.to_grant(fr.gfn, fr.offset, (dom, GrantRef(gref), guest_off), n);
        })
    }

    /// Splits `len` bytes of `buf` at `off` into runs inside one of our
    /// frames; `push` queues one op per run with the matching guest offset.
    #[allow(clippy::too_many_arguments)]
    fn queue<B: PacketBuf>(
        &mut self,
        tag: u16,
        buf: &B,
        off: usize,
        len: usize,
        goff: u16,
        mut push: impl FnMut(&mut CopyBatch, LocalFrame, u16, u16),
    ) -> Result<(), Unmappable> {
        if usize::from(goff) + len > PAGE_SIZE {
            return Err(Unmappable);
        }
        let (batch, tags) = (&mut self.batch, &mut self.tags);
        let ok = page_runs(buf, off, len, |fr, pos, n| {
            push(batch, fr, goff + (pos - off) as u16, n);
            tags.push(tag);
        });
        if ok { Ok(()) } else { Err(Unmappable) }
    }

    /// Queued ops.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// Issues every queued copy; `on_fail(tag, err)` for each failed op.
    pub fn flush(&mut self, gnt: &dyn GrantOps, mut on_fail: impl FnMut(u16, XenError)) {
        if self.tags.is_empty() {
            return;
        }
        let tags = &self.tags;
        self.batch.flush_each(gnt, |i, r| {
            if let (Err(e), Some(t)) = (r, tags.get(i)) {
                on_fail(*t, e);
            }
        });
        self.tags.clear();
    }
}
