//! The guest-to-backend path: gathers the frontend's transmit requests into
//! packets, validates them the way Linux netback does (drivers/net/
//! xen-netback/netback.c, `xenvif_tx_build_gops` and friends; our own code),
//! copies the data into local buffers with batched GNTTABOP_copy, answers
//! every request in ring order, and hands each good frame to the caller.
//!
//! A packet on the TX ring is: the first data slot (its `size` is the whole
//! packet length), then its extra-info slots when NETTXF_extra_info is set
//! (answered NETIF_RSP_NULL), then following data slots while
//! NETTXF_more_data is set (each `size` is that slot's length).
//!
//! Verdicts, by rule:
//! * fatal (the vif is disabled, nothing more is read): impossible
//!   `req_prod` (XSA-39), `FATAL_SLOTS` or more data slots, a slot crossing
//!   its page, a chain pointing past `req_prod`, an extra of unknown type or
//!   too many extras, a GSO extra with size 0 or an unknown GSO type;
//! * dropped (all data slots answered ERROR, extras NULL, vif stays up):
//!   more than `MAX_SLOTS` data slots, packets shorter than an Ethernet
//!   header, following slots larger than what is left of the packet, packets
//!   larger than our buffers, failed grant copies (bad grant refs,
//!   XSA-361/362/367).
//!
//! Rate limiting (`credit`): a packet is charged its size once it is
//! parsed; when the vif's credit does not cover it, it stays on the ring
//! unconsumed and the poll stops, reporting when the credit returns.
//!
//! Deliberate differences from Linux: Linux counts follow-up slots only
//! (`slots` in `xenvif_count_requests`), so it accepts 19 slots in all,
//! drops 20-21 and disables at 22; we count every data slot (accept 18 =
//! `XEN_NETIF_NR_SLOTS_MIN`, the protocol's promise and Linux netfront's
//! maximum; drop 19; disable at 20). Linux also drops a packet whose first
//! slot alone is shorter than 14 bytes; we gather the whole packet into one
//! buffer before anyone reads a header, so only the total length must reach
//! 14 (XSA-423: headers split across slots are handled, not dropped).
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::copy::Copier;
use super::credit::Credit;
use super::error::{NetbackError, TxDrop};
use super::mcast::McastFilter;
use super::meta::{FrameMeta, Gso, GsoKind};
use super::ring::BackRing;
use super::vif::{PollOutcome, VifStats};
use crate::hal::{GrantOps, SharedMem};
use crate::netif::extra::XEN_NETIF_EXTRA_TYPE_MAX;
use crate::netif::tx::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, TX_ENTRY_SIZE};
use crate::netif::{ExtraInfo, ExtraKind, GsoType, NR_SLOTS_MIN, PAGE_SIZE, RspStatus, TxRequest, TxResponse, le16};
use crate::xen::{DomId, XenError};
use alloc::vec::Vec;

/// Most data slots a packet may use and still be accepted.
pub const MAX_SLOTS: u32 = NR_SLOTS_MIN as u32;
/// A packet with this many data slots disables the vif.
pub const FATAL_SLOTS: u32 = 20;
/// Extra-info slots per packet: one of each type at most.
pub const MAX_EXTRAS: usize = (XEN_NETIF_EXTRA_TYPE_MAX - 1) as usize;
/// Shortest packet accepted (an Ethernet header).
pub const ETH_HLEN: u16 = 14;
/// Following data slots we ever read for one packet.
const MAX_FRAGS: usize = (FATAL_SLOTS - 2) as usize;

/// One packet's requests, copied out of the ring.
#[derive(Debug, Clone, Copy)]
struct Packet {
    /// Ring entries it spans.
    slots: u32,
    first: TxRequest,
    /// Bytes in the first slot (packet length minus the following slots).
    first_len: u16,
    frags: [TxRequest; MAX_FRAGS],
    nfrags: usize,
    /// Extras by `type - 1`.
    extras: [Option<ExtraInfo>; MAX_EXTRAS],
    /// Response ids of the extra slots, in ring order.
    extra_ids: [u16; MAX_EXTRAS],
    nextras: usize,
    drop: Option<TxDrop>,
}

impl Packet {
    fn frags(&self) -> &[TxRequest] {
        self.frags.get(..self.nfrags).unwrap_or(&[])
    }

    fn is_mcast(&self) -> bool {
        self.extras.iter().flatten().any(|e| matches!(e.kind, ExtraKind::McastAdd(_) | ExtraKind::McastDel(_)))
    }

    fn meta(&self) -> FrameMeta {
        let gso = self.extras.iter().flatten().find_map(|e| match e.kind {
            ExtraKind::Gso { size, kind: GsoType::TcpV4, .. } => Some(Gso { kind: GsoKind::TcpV4, size }),
            ExtraKind::Gso { size, kind: GsoType::TcpV6, .. } => Some(Gso { kind: GsoKind::TcpV6, size }),
            _ => None,
        });
        FrameMeta {
            csum_blank: self.first.flags & NETTXF_CSUM_BLANK != 0,
            data_validated: self.first.flags & NETTXF_DATA_VALIDATED != 0,
            gso,
        }
    }
}

/// A packet whose copies are queued.
#[derive(Debug, Clone, Copy)]
struct Staged {
    rsp_start: usize,
    rsp_end: usize,
    len: usize,
    meta: FrameMeta,
    failed: Option<XenError>,
}

/// What the TX path needs from its vif besides its own state.
pub(crate) struct TxEnv<'a> {
    pub frontend: DomId,
    pub mcast_control: bool,
    pub mcast: &'a mut McastFilter,
    pub stats: &'a mut VifStats,
    /// The vif's transmit credit and the time to charge it at.
    pub credit: &'a mut Credit,
    pub now: u64,
}

/// TX ring state and per-poll scratch (allocated once). The staging
/// buffers are lent by the caller for each poll: every packet staged is
/// delivered before `poll` returns, so one set serves all vifs.
pub(crate) struct TxPath {
    pub ring: BackRing,
    staged: Vec<Staged>,
    rsps: Vec<(u16, RspStatus)>,
    /// Capacity of the staging buffers of the current poll.
    cap: usize,
    pub copier: Copier,
}

impl TxPath {
    pub fn new(ring: BackRing) -> Self {
        Self {
            ring,
            staged: Vec::new(),
            rsps: Vec::with_capacity(super::ring::RING_SIZE as usize),
            cap: 0,
            copier: Copier::new(),
        }
    }

    fn capacity(&self) -> usize {
        self.cap
    }

    /// Processes up to `budget` packets, staging at most `bufs.len()` at a
    /// time. Returns the outcome and the fatal error that stopped it, if any
    /// (packets before it are completed).
    pub fn poll<B: PacketBuf>(
        &mut self,
        mem: &dyn SharedMem,
        gnt: &dyn GrantOps,
        env: &mut TxEnv<'_>,
        budget: usize,
        bufs: &[B],
        deliver: &mut dyn FnMut(&[u8], FrameMeta),
    ) -> (PollOutcome, Option<NetbackError>) {
        self.cap = bufs.first().map_or(0, |b| b.capacity());
        let mut out = PollOutcome::default();
        let mut fatal = None;
        let mut packets = 0;
        loop {
            if packets >= budget {
                out.more = true;
                break;
            }
            let avail = match self.ring.unconsumed(mem) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    fatal = Some(NetbackError::TxRingOverflow(e));
                    break;
                }
            };
            let pkt = match self.parse(mem, avail) {
                Ok(p) => p,
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
            };
            if let Err(t) = env.credit.take(u64::from(pkt.first.size), env.now) {
                // Left on the ring, unconsumed: read again once credit returns.
                env.stats.tx_rate_deferred += 1;
                out.wait_until = Some(t);
                break;
            }
            self.ring.consume(pkt.slots);
            packets += 1;
            out.progress = true;
            self.handle(&pkt, env, bufs);
            if self.staged.len() >= bufs.len() {
                self.complete(mem, gnt, env.stats, bufs, deliver);
            }
        }
        self.complete(mem, gnt, env.stats, bufs, deliver);
        out.notify = self.ring.push_responses(mem);
        // While waiting for credit the ring is not re-armed: the refill
        // time, not the guest's next request, brings the next poll.
        if fatal.is_none() && !out.more && out.wait_until.is_none() {
            match self.ring.final_check(mem) {
                Ok(more) => out.more = more,
                Err(e) => fatal = Some(NetbackError::TxRingOverflow(e)),
            }
        }
        (out, fatal)
    }

    /// Reads one packet's requests (each entry copied exactly once) and
    /// validates the copies. Consumes nothing.
    fn parse(&self, mem: &dyn SharedMem, avail: u32) -> Result<Packet, NetbackError> {
        let read = |ahead: u32| {
            let mut e = [0u8; TX_ENTRY_SIZE];
            self.ring.copy_request(mem, ahead, &mut e);
            e
        };
        let first = TxRequest::parse(&read(0));
        let mut p = Packet {
            slots: 1,
            first,
            first_len: 0,
            frags: [TxRequest::default(); MAX_FRAGS],
            nfrags: 0,
            extras: [None; MAX_EXTRAS],
            extra_ids: [0; MAX_EXTRAS],
            nextras: 0,
            drop: None,
        };
        let mut n = 1u32;
        let mut more_extra = first.extra_info();
        while more_extra {
            if p.nextras >= MAX_EXTRAS {
                return Err(NetbackError::TooManyExtras { count: p.nextras as u32 + 1 });
            }
            if n >= avail {
                return Err(NetbackError::MissingSlots { needed: n + 1, available: avail });
            }
            let raw = read(n);
            n += 1;
            let e = ExtraInfo::parse(&raw);
            let ty = e.type_raw();
            if ty == 0 || ty >= XEN_NETIF_EXTRA_TYPE_MAX {
                return Err(NetbackError::BadExtraType { ty });
            }
            if let ExtraKind::Gso { size, kind, .. } = e.kind {
                if size == 0 {
                    return Err(NetbackError::GsoSizeZero);
                }
                if !matches!(kind, GsoType::TcpV4 | GsoType::TcpV6) {
                    return Err(NetbackError::BadGsoType { ty: kind.to_raw() });
                }
            }
            if let Some(slot) = p.extras.get_mut(usize::from(ty) - 1) {
                *slot = Some(e);
            }
            if let Some(id) = p.extra_ids.get_mut(p.nextras) {
                *id = le16(&raw, 0);
            }
            p.nextras += 1;
            more_extra = e.more();
        }
        let mut remaining = first.size;
        let mut more = first.more_data();
        while more {
            let slots = p.nfrags as u32 + 2;
            if n >= avail {
                return Err(NetbackError::MissingSlots { needed: n + 1, available: avail });
            }
            if slots >= FATAL_SLOTS {
                return Err(NetbackError::TooManySlots { slots });
            }
            let req = TxRequest::parse(&read(n));
            n += 1;
            if slots > MAX_SLOTS && p.drop.is_none() {
                p.drop = Some(TxDrop::TooManySlots { slots });
            }
            if req.size > remaining && p.drop.is_none() {
                p.drop = Some(TxDrop::SizeMismatch { slot: req.size, remaining });
            }
            remaining = remaining.saturating_sub(req.size);
            if req.end() > PAGE_SIZE {
                return Err(NetbackError::CrossesPage { offset: req.offset, size: req.size });
            }
            if let Some(f) = p.frags.get_mut(p.nfrags) {
                *f = req;
            }
            p.nfrags += 1;
            more = req.more_data();
        }
        p.slots = n;
        p.first_len = remaining;
        if p.is_mcast() {
            // A control request: its data slots carry nothing we use.
            return Ok(p);
        }
        if first.size < ETH_HLEN && p.drop.is_none() {
            p.drop = Some(TxDrop::Runt { len: first.size });
        }
        if usize::from(first.offset) + usize::from(remaining) > PAGE_SIZE {
            return Err(NetbackError::CrossesPage { offset: first.offset, size: remaining });
        }
        if usize::from(first.size) > self.capacity() && p.drop.is_none() {
            p.drop = Some(TxDrop::Oversize { len: first.size, capacity: self.capacity() });
        }
        Ok(p)
    }

    /// Records the packet's responses (in ring order) and queues its copies.
    fn handle<B: PacketBuf>(&mut self, p: &Packet, env: &mut TxEnv<'_>, bufs: &[B]) {
        let rsp_start = self.rsps.len();
        let mut first_status = RspStatus::Okay;
        let mut data_status = RspStatus::Okay;
        let mut stage = false;
        if p.is_mcast() {
            data_status = RspStatus::Error;
            let mut ok = env.mcast_control;
            for e in p.extras.iter().flatten() {
                match e.kind {
                    ExtraKind::McastAdd(a) if env.mcast_control => ok &= env.mcast.add(a).is_ok(),
                    ExtraKind::McastDel(a) if env.mcast_control => env.mcast.del(a),
                    _ => {}
                }
            }
            if ok {
                env.stats.mcast_updates += 1;
            } else {
                env.stats.mcast_rejected += 1;
                first_status = RspStatus::Error;
            }
        } else if let Some(d) = p.drop {
            first_status = RspStatus::Error;
            data_status = RspStatus::Error;
            env.stats.from_guest.errors += 1;
            env.stats.last_tx_drop = Some(d);
        } else {
            stage = true;
        }
        self.rsps.push((p.first.id, first_status));
        for id in p.extra_ids.iter().take(p.nextras) {
            self.rsps.push((*id, RspStatus::Null));
        }
        for f in p.frags() {
            self.rsps.push((f.id, data_status));
        }
        if !stage {
            return;
        }
        let idx = self.staged.len();
        let Some(buf) = bufs.get(idx) else {
            // Unreachable: `poll` completes the batch when all buffers are staged.
            return;
        };
        let tag = idx as u16;
        let dom = env.frontend;
        let mut failed = None;
        let mut pos = usize::from(p.first_len);
        if self.copier.from_guest(tag, dom, p.first.gref, p.first.offset, buf, 0, usize::from(p.first_len)).is_err() {
            failed = Some(XenError::Invalid);
        }
        for f in p.frags() {
            let len = usize::from(f.size);
            if self.copier.from_guest(tag, dom, f.gref, f.offset, buf, pos, len).is_err() {
                failed = Some(XenError::Invalid);
            }
            pos += len;
        }
        self.staged.push(Staged { rsp_start, rsp_end: self.rsps.len(), len: pos, meta: p.meta(), failed });
    }

    /// Issues the queued copies, delivers the packets that arrived intact,
    /// and writes every recorded response into the ring (not yet published).
    fn complete<B: PacketBuf>(
        &mut self,
        mem: &dyn SharedMem,
        gnt: &dyn GrantOps,
        stats: &mut VifStats,
        bufs: &[B],
        deliver: &mut dyn FnMut(&[u8], FrameMeta),
    ) {
        let staged = &mut self.staged;
        self.copier.flush(gnt, |tag, e| {
            if let Some(s) = staged.get_mut(usize::from(tag)) {
                s.failed.get_or_insert(e);
            }
        });
        for (s, buf) in self.staged.iter().zip(bufs.iter()) {
            match s.failed {
                Some(e) => {
                    for r in self.rsps.get_mut(s.rsp_start..s.rsp_end).unwrap_or(&mut []) {
                        if r.1 != RspStatus::Null {
                            r.1 = RspStatus::Error;
                        }
                    }
                    stats.from_guest.errors += 1;
                    stats.last_tx_drop = Some(TxDrop::CopyFailed(e));
                }
                None => {
                    buf.with_bytes(s.len, |b| deliver(b, s.meta));
                    stats.from_guest.packets += 1;
                    stats.from_guest.bytes += s.len as u64;
                }
            }
        }
        for (id, status) in self.rsps.iter() {
            self.ring.write_response(mem, &TxResponse { id: *id, status: *status }.emit());
        }
        self.rsps.clear();
        self.staged.clear();
    }
}
