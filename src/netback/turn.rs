//! The grant copies of one data-plane turn, across vifs and queues, issued
//! together: the RX paths queue their copies into guests' buffers here
//! (from the RX queues, and the one-copy frames of `direct`), the data
//! plane flushes them in as few GNTTABOP_copy hypercalls as the batch size
//! allows, hands each failure to the vifs it concerns (`faults`), and only
//! then do the vifs write their responses.
//!
//! First, though, the TX paths of every vif queue their header copies here
//! (`header_from_guest`): each frame's first `HDR_COPY` bytes go into the
//! turn's arena, one local buffer, in one batch for all vifs
//! (`flush_headers`). A one-copy frame's receiver is then given these very
//! bytes (the ones the switch inspected) from the arena.
//!
//! Attributing a failed grant-to-grant copy: Xen's status does not say
//! which side's grant was bad, so each such copy is done again through a
//! zeroed region of the arena (sender's grant to the arena, then the arena
//! to the receiver's grant, in one later batch). The first failing blames
//! the sender, the second the receiver; both succeeding delivers the bytes.
//! Each retried copy has its own region, so a failed read never hands a
//! receiver another frame's bytes.
#![forbid(unsafe_code)]

use super::buf::{PacketBuf, page_runs};
use super::copy::Unmappable;
use super::direct::{HDR_COPY, TxTicket};
use crate::hal::GrantOps;
use crate::netif::PAGE_SIZE;
use crate::xen::grant::CopyBatch;
use crate::xen::{DomId, GrantRef};
use alloc::vec::Vec;

/// Copy operations per GNTTABOP_copy hypercall of a turn.
pub const TURN_CHUNK: usize = 1024;

/// Arena bytes kept for attributing failed grant-to-grant copies.
const RETRY_ROOM: usize = 4 * PAGE_SIZE;

/// Bytes after a frame's headers in the arena that take the one-byte
/// probes of its later slots (`TxPath`): each probe proves, in the header
/// batch, that a slot's grant is one the sender really gave, before any
/// receiver's buffer is spent on the frame.
pub const PROBE: usize = 8;

/// Arena bytes per frame: its headers and its probe bytes.
const HDR_ROOM: usize = HDR_COPY + PROBE;

/// A guest grant and an offset in its page.
pub type GrantAt = (DomId, GrantRef, u16);

/// Who a copy belongs to: the receiver's pending response it fills and,
/// for a one-copy frame, the sender's frame waiting on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpTag {
    /// The receiver's switch port.
    pub rx_port: u8,
    /// The receiver's queue.
    pub rx_queue: u8,
    /// The response among that queue's pending ones.
    pub rx_slot: u16,
    /// The sender's frame, for a one-copy frame.
    pub tx: Option<TxTicket>,
}

/// A failed copy, blamed on one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The receiver's grant (or the buffer it was posted for): its error.
    Receiver(OpTag),
    /// The sender's grant: the frame is dropped, the sender answered
    /// NETIF_RSP_ERROR; the receiver's slots for it get an error status.
    Sender(OpTag),
}

impl Fault {
    /// The copy it happened to.
    pub fn tag(&self) -> &OpTag {
        match self {
            Self::Receiver(t) | Self::Sender(t) => t,
        }
    }
}

/// A failed grant-to-grant copy to do again through the arena.
#[derive(Debug, Clone, Copy)]
struct Retry {
    tag: OpTag,
    src: GrantAt,
    dst: GrantAt,
    len: u16,
}

/// One turn's copies, the arena, and what failed.
#[derive(Debug)]
pub struct Turn<B: PacketBuf> {
    /// Header copies from guests' TX grants into the arena.
    hdr_batch: CopyBatch,
    hdr_tags: Vec<TxTicket>,
    hdr_faults: Vec<TxTicket>,
    batch: CopyBatch,
    /// Per queued op: its tag, and whether both sides are grants.
    tags: Vec<(OpTag, bool)>,
    retries: Vec<Retry>,
    retry_batch: CopyBatch,
    /// Per retry op: the retry it belongs to, and whether it reads the sender.
    retry_tags: Vec<(usize, bool)>,
    faults: Vec<Fault>,
    arena: Option<B>,
    /// Arena bytes in use by this turn's headers.
    used: usize,
}

impl<B: PacketBuf> Turn<B> {
    /// A turn whose one-copy frames keep their headers in `arena` (none:
    /// no one-copy frames).
    pub fn new(arena: Option<B>) -> Self {
        Self {
            hdr_batch: CopyBatch::with_chunk(TURN_CHUNK),
            hdr_tags: Vec::new(),
            hdr_faults: Vec::new(),
            batch: CopyBatch::with_chunk(TURN_CHUNK),
            tags: Vec::new(),
            retries: Vec::new(),
            retry_batch: CopyBatch::with_chunk(TURN_CHUNK),
            retry_tags: Vec::new(),
            faults: Vec::new(),
            arena,
            used: 0,
        }
    }

    /// True when one-copy frames can keep their headers here.
    pub fn has_arena(&self) -> bool {
        self.arena.is_some()
    }

    /// Gives the arena back.
    pub fn into_arena(self) -> Option<B> {
        self.arena
    }

    /// GNTTABOP_copy hypercalls issued so far.
    pub fn hypercalls(&self) -> u64 {
        self.hdr_batch.hypercalls + self.batch.hypercalls + self.retry_batch.hypercalls
    }

    /// Copies queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.tags.len()
    }

    /// Queues a copy of `len` bytes of our `buf` at `off` into `dst`.
    pub fn local_to_guest(
        &mut self,
        tag: OpTag,
        buf: &B,
        off: usize,
        len: usize,
        dst: GrantAt,
    ) -> Result<(), Unmappable> {
        let (dom, gref, goff) = dst;
        if usize::from(goff) + len > PAGE_SIZE {
            return Err(Unmappable);
        }
        let (batch, tags) = (&mut self.batch, &mut self.tags);
        let ok = page_runs(buf, off, len, |fr, pos, n| {
            batch.to_grant(fr.gfn, fr.offset, (dom, gref, goff + (pos - off) as u16), n);
            tags.push((tag, false));
        });
        if ok { Ok(()) } else { Err(Unmappable) }
    }

    /// True when the arena has room for one more frame's headers.
    pub fn header_room(&self) -> bool {
        self.arena.as_ref().is_some_and(|a| self.used + HDR_ROOM + RETRY_ROOM <= a.capacity())
    }

    /// Reserves arena bytes for a frame's headers until the turn ends:
    /// `HDR_COPY` bytes at the returned offset, then `PROBE` bytes where the
    /// probes of the frame's later slots land. None when the arena is full.
    pub fn reserve_header(&mut self) -> Option<usize> {
        if !self.header_room() {
            return None;
        }
        self.used += HDR_ROOM;
        Some(self.used - HDR_ROOM)
    }

    /// Queues a copy of `len` bytes from a guest's TX grant into the arena
    /// at `at`, for the frame `ticket`.
    pub fn header_from_guest(
        &mut self,
        ticket: TxTicket,
        src: GrantAt,
        at: usize,
        len: usize,
    ) -> Result<(), Unmappable> {
        let (dom, gref, goff) = src;
        let arena = self.arena.as_ref().ok_or(Unmappable)?;
        if usize::from(goff) + len > PAGE_SIZE {
            return Err(Unmappable);
        }
        let (batch, tags) = (&mut self.hdr_batch, &mut self.hdr_tags);
        let ok = page_runs(arena, at, len, |fr, pos, n| {
            batch.from_grant((dom, gref, goff + (pos - at) as u16), fr.gfn, fr.offset, n);
            tags.push(ticket);
        });
        if ok { Ok(()) } else { Err(Unmappable) }
    }

    /// Issues the header copies; afterwards `header_faults` lists the
    /// frames whose headers did not arrive.
    pub fn flush_headers(&mut self, gnt: &dyn GrantOps) {
        let (tags, faults) = (&self.hdr_tags, &mut self.hdr_faults);
        if !tags.is_empty() {
            self.hdr_batch.flush_each(gnt, |i, r| {
                if let (Err(_), Some(t)) = (r, tags.get(i))
                    && faults.last() != Some(t)
                {
                    faults.push(*t);
                }
            });
        }
        self.hdr_tags.clear();
    }

    /// The frames whose header copy failed in the last `flush_headers`.
    pub fn header_faults(&self) -> &[TxTicket] {
        &self.hdr_faults
    }

    /// Copies the arena's bytes at `at` into `out`; false when they are
    /// not all there.
    pub fn read_header(&self, at: usize, out: &mut [u8]) -> bool {
        let Some(arena) = self.arena.as_ref() else { return false };
        let n = out.len();
        arena.with_bytes(at + n, |b| b.get(at..at + n).map(|h| out.copy_from_slice(h))).is_some()
    }

    /// Queues a copy of `len` arena bytes at `off` into `dst`.
    pub fn header_to_guest(&mut self, tag: OpTag, off: usize, len: usize, dst: GrantAt) -> Result<(), Unmappable> {
        let arena = self.arena.take().ok_or(Unmappable)?;
        let r = self.local_to_guest(tag, &arena, off, len, dst);
        self.arena = Some(arena);
        r
    }

    /// Queues a copy of `len` bytes from one guest's grant into another's.
    pub fn grant_to_guest(&mut self, tag: OpTag, src: GrantAt, dst: GrantAt, len: u16) {
        self.batch.between_grants(src, dst, len);
        self.tags.push((tag, true));
    }

    /// Issues every queued copy; afterwards `faults` lists the failures.
    pub fn flush(&mut self, gnt: &dyn GrantOps) {
        let (tags, retries, faults) = (&self.tags, &mut self.retries, &mut self.faults);
        if !tags.is_empty() {
            self.batch.flush_ops(gnt, |i, op, r| {
                let (Err(_), Some(&(tag, between))) = (r, tags.get(i)) else { return };
                if !between {
                    faults.push(Fault::Receiver(tag));
                    return;
                }
                let at =
                    |p: &crate::xen::abi::GnttabCopyPtr| (DomId(p.domid), GrantRef(p.ref_or_gmfn as u32), p.offset);
                retries.push(Retry { tag, src: at(&op.source), dst: at(&op.dest), len: op.len });
            });
        }
        self.tags.clear();
        self.attribute(gnt);
    }

    /// Does the failed grant-to-grant copies again through the arena, as
    /// many per hypercall as the arena's free room holds.
    fn attribute(&mut self, gnt: &dyn GrantOps) {
        let mut start = 0;
        while start < self.retries.len() {
            let Some(arena) = self.arena.as_mut() else {
                // Without an arena nothing can be told apart: both sides lose the frame.
                for r in self.retries.get(start..).unwrap_or(&[]) {
                    self.faults.push(Fault::Sender(r.tag));
                    self.faults.push(Fault::Receiver(r.tag));
                }
                break;
            };
            let base = self.used;
            let mut end = start;
            let mut top = base;
            while let Some(r) = self.retries.get(end) {
                if top + usize::from(r.len) > arena.capacity() {
                    break;
                }
                top += usize::from(r.len);
                end += 1;
            }
            if end == start {
                // Cannot happen (a copy is at most a page; the arena keeps
                // more free); blame both rather than loop.
                if let Some(r) = self.retries.get(start) {
                    self.faults.push(Fault::Sender(r.tag));
                    self.faults.push(Fault::Receiver(r.tag));
                }
                start += 1;
                continue;
            }
            arena.with_bytes_mut(top, |b| b.get_mut(base..top).map(|d| d.fill(0)));
            let arena = &*arena;
            let (batch, rtags) = (&mut self.retry_batch, &mut self.retry_tags);
            for pass in [true, false] {
                let mut at = base;
                for (i, r) in self.retries.iter().enumerate().take(end).skip(start) {
                    let (guest, n) = (if pass { r.src } else { r.dst }, usize::from(r.len));
                    let fit = page_runs(arena, at, n, |fr, pos, len| {
                        let g = (guest.0, guest.1, guest.2 + (pos - at) as u16);
                        if pass {
                            batch.from_grant(g, fr.gfn, fr.offset, len);
                        } else {
                            batch.to_grant(fr.gfn, fr.offset, g, len);
                        }
                        rtags.push((i, pass));
                    });
                    if !fit {
                        self.faults.push(if pass { Fault::Sender(r.tag) } else { Fault::Receiver(r.tag) });
                    }
                    at += n;
                }
            }
            let (retries, faults) = (&self.retries, &mut self.faults);
            batch.flush_each(gnt, |k, res| {
                let (Err(_), Some(&(i, sender))) = (res, rtags.get(k)) else { return };
                if let Some(r) = retries.get(i) {
                    faults.push(if sender { Fault::Sender(r.tag) } else { Fault::Receiver(r.tag) });
                }
            });
            rtags.clear();
            start = end;
        }
        self.retries.clear();
    }

    /// The failures of the last flush.
    pub fn faults(&self) -> &[Fault] {
        &self.faults
    }

    /// Ends the turn: the arena and the failure lists start over.
    pub fn end(&mut self) {
        self.used = 0;
        self.faults.clear();
        self.hdr_faults.clear();
    }
}
