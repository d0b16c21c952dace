//! The backend-to-guest path: a byte-budgeted queue of frames per vif queue
//! (`rxqueue`; XSA-392: a guest that posts no receive buffers costs at most
//! the budget, the rest is dropped and counted), copied into the buffers
//! the frontend posts on the RX ring with batched GNTTABOP_copy.
//!
//! Copies are queued on a `Turn` (`place_queued`), the data plane's for
//! every vif at once or the path's own in `poll`; the responses are
//! written by `finish` once the turn's copies are done and their failures
//! applied (`fault`). A frame from another guest can also be placed for
//! one copy (`place_direct`, see `direct`): only while the queue is empty,
//! so it never overtakes a queued frame.
//!
//! Layout of one frame on the ring (xen/include/public/io/netif.h): the
//! first data slot (flags: checksum bits, NETRXF_extra_info when extras
//! follow, NETRXF_more_data when more data slots follow), then the extra
//! slots (GSO when the frame is a GSO frame, HASH when the frontend
//! configured hashing over the control ring and a hash type covered the
//! frame, as Linux netback sends them; each but the last flagged MORE),
//! then the other data slots, up to a page each at offset 0. A response
//! goes in the slot of the request it answers and carries that request's
//! id; its status is the byte count of the slot, or NETIF_RSP_ERROR when
//! the copy into the guest's page failed (or, for a one-copy frame, the
//! sender's grant did).
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::direct::{DirectFrame, TxTicket};
use super::error::{NetbackError, RxDrop};
use super::hash::RxHash;
use super::meta::{FrameMeta, is_ipv6};
use super::pool::SharedRxPool;
use super::ring::BackRing;
use super::rxqueue::{Queued, RxQueue, RxSource};
use super::turn::{Fault, OpTag, Turn};
use super::vif::{Features, PollOutcome, VifStats};
use crate::hal::{GrantOps, SharedMem};
use crate::netif::ctrl::HASH_ALGORITHM_TOEPLITZ;
use crate::netif::extra::XEN_NETIF_EXTRA_FLAG_MORE;
use crate::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, RX_ENTRY_SIZE};
use crate::netif::{ExtraInfo, ExtraKind, MAX_PACKET, PAGE_SIZE, RxRequest, RxResponse};
use crate::xen::{DomId, GrantRef};
use alloc::vec::Vec;

#[derive(Debug, Clone, Copy)]
enum Slot {
    Data { rsp: RxResponse, frame: u16 },
    Extra(ExtraInfo),
}

/// The extra segments of one frame (GSO, HASH), without allocating.
#[derive(Debug, Clone, Copy, Default)]
struct Extras {
    items: [Option<ExtraInfo>; 2],
    n: usize,
}

impl Extras {
    /// Appends a segment; the one before it gets the MORE flag.
    fn push(&mut self, kind: ExtraKind) {
        if let Some(Some(prev)) = self.n.checked_sub(1).and_then(|i| self.items.get_mut(i)) {
            prev.flags |= XEN_NETIF_EXTRA_FLAG_MORE;
        }
        if let Some(slot) = self.items.get_mut(self.n) {
            *slot = Some(ExtraInfo { flags: 0, kind });
            self.n += 1;
        }
    }

    fn len(&self) -> usize {
        self.n
    }

    fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn get(&self, i: usize) -> Option<&ExtraInfo> {
        self.items.get(i)?.as_ref()
    }
}

/// Where a frame being copied to the guest comes from.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// The RX queue (released once copied).
    Queued(Queued),
    /// Another guest's grants, with one copy (`direct`).
    Direct { len: usize },
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    frame: Held,
    /// A copy into this guest's buffer failed (its error).
    failed: bool,
    /// The sender's grant failed: the frame never existed for this guest.
    peer: bool,
}

impl InFlight {
    fn len(&self) -> usize {
        match self.frame {
            Held::Queued(q) => q.len,
            Held::Direct { len } => len,
        }
    }
}

/// Who the RX path is on the turn: its switch port and queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxId {
    pub port: u8,
    pub queue: u8,
}

impl RxId {
    fn tag(self, slot: usize, tx: Option<TxTicket>) -> OpTag {
        OpTag { rx_port: self.port, rx_queue: self.queue, rx_slot: slot as u16, tx }
    }
}

/// RX ring state and the frame queue (bookkeeping allocated once, buffers
/// from the shared pool while frames wait in them).
pub(crate) struct RxPath<B: PacketBuf> {
    pub ring: BackRing,
    queue: RxQueue<B>,
    inflight: Vec<InFlight>,
    slots: Vec<Slot>,
    /// The copies of `poll` (a data plane's turn batches many paths' instead).
    own: Option<Turn<B>>,
    /// Hypercalls of `own`.
    pub hypercalls: u64,
}

impl<B: PacketBuf> RxPath<B> {
    /// A path whose queue holds at most `budget` bytes in `slots` buffers
    /// from `pool`.
    pub fn new(ring: BackRing, pool: &SharedRxPool<B>, slots: usize, budget: usize) -> Self {
        Self {
            ring,
            queue: RxQueue::new(pool, slots, budget),
            // A poll places at most one frame per ring slot.
            inflight: Vec::with_capacity(super::ring::RING_SIZE as usize),
            slots: Vec::with_capacity(super::ring::RING_SIZE as usize),
            own: Some(Turn::new(None)),
            hypercalls: 0,
        }
    }

    /// Pool buffers the queue holds now.
    pub fn buffers_held(&self) -> usize {
        self.queue.buffers_held()
    }

    /// Frames waiting for guest buffers.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Bytes charged for the frames waiting.
    pub fn queued_bytes(&self) -> usize {
        self.queue.bytes()
    }

    /// Bytes the queue may hold.
    pub fn budget(&self) -> usize {
        self.queue.budget()
    }

    /// Largest frame this path can take.
    pub fn max_frame(&self, f: &Features) -> usize {
        let cap = self.queue.buf_capacity().min(MAX_PACKET);
        if f.sg { cap } else { cap.min(PAGE_SIZE) }
    }

    /// Copies `frame` into the queue, charged to `source`, with the hash
    /// to send the frontend.
    pub fn enqueue(
        &mut self,
        source: RxSource,
        frame: &[u8],
        meta: FrameMeta,
        hash: Option<RxHash>,
        f: &Features,
    ) -> Result<(), RxDrop> {
        let len = frame.len();
        if len == 0 || len > self.max_frame(&Features { sg: true, ..*f }) {
            return Err(RxDrop::BadLength(len));
        }
        if !f.sg && len > PAGE_SIZE {
            return Err(RxDrop::NoSg(len));
        }
        if let Some(g) = meta.gso {
            let ok = match g.kind {
                super::meta::GsoKind::TcpV4 => f.gso_tcpv4,
                super::meta::GsoKind::TcpV6 => f.gso_tcpv6,
            };
            if !ok {
                return Err(RxDrop::GsoNotNegotiated);
            }
        }
        if meta.csum_blank && !(if is_ipv6(frame) { f.ipv6_csum_offload } else { f.ipv4_csum_offload }) {
            return Err(RxDrop::CsumNotNegotiated);
        }
        self.queue.push_hashed(source, frame, meta, hash)
    }

    /// Moves up to `budget` queued frames into the guest's posted buffers,
    /// with its own grant copies, and publishes the responses.
    pub fn poll(
        &mut self,
        mem: &dyn SharedMem,
        gnt: &dyn GrantOps,
        frontend: DomId,
        budget: usize,
        stats: &mut VifStats,
    ) -> (PollOutcome, Option<NetbackError>) {
        let Some(mut turn) = self.own.take() else { return (PollOutcome::default(), None) };
        let me = RxId { port: 0, queue: 0 };
        let (mut out, fatal) = self.place_queued(mem, frontend, budget, stats, me, &mut turn);
        let before = turn.hypercalls();
        turn.flush(gnt);
        self.hypercalls += turn.hypercalls() - before;
        for f in turn.faults() {
            self.fault(f.tag().rx_slot, matches!(f, Fault::Sender(_)));
        }
        turn.end();
        self.own = Some(turn);
        out.notify = self.finish(mem, stats);
        (out, fatal)
    }

    /// Places up to `budget` queued frames in the guest's posted buffers:
    /// reads the requests, records the responses and queues the copies on
    /// `turn`. The responses are written by `finish`, after the turn's flush.
    pub fn place_queued(
        &mut self,
        mem: &dyn SharedMem,
        frontend: DomId,
        budget: usize,
        stats: &mut VifStats,
        me: RxId,
        turn: &mut Turn<B>,
    ) -> (PollOutcome, Option<NetbackError>) {
        let mut out = PollOutcome::default();
        let mut fatal = None;
        let mut frames = 0;
        while let Some(q) = self.queue.front() {
            if frames >= budget {
                out.more = true;
                break;
            }
            let data_slots = q.len.div_ceil(PAGE_SIZE).max(1) as u32;
            let need = data_slots + extras(&q).len() as u32;
            match self.ring.wait_for(mem, need) {
                Ok(have) if have >= need => {}
                Ok(_) => {
                    stats.rx_stalls += 1;
                    break;
                }
                Err(e) => {
                    fatal = Some(NetbackError::RxRingOverflow(e));
                    break;
                }
            }
            self.queue.pop();
            self.place(mem, frontend, q, data_slots, need, me, turn);
            frames += 1;
            out.progress = true;
        }
        (out, fatal)
    }

    /// Places a frame from another guest for one copy (see `direct`):
    /// false, with nothing done, unless the queue is empty (so the frame
    /// overtakes none), the guest takes the frame as it is and has posted
    /// enough buffers.
    #[allow(clippy::too_many_arguments)]
    pub fn place_direct(
        &mut self,
        mem: &dyn SharedMem,
        frontend: DomId,
        f: &Features,
        me: RxId,
        hdr: &[u8],
        frame: &DirectFrame<'_>,
        turn: &mut Turn<B>,
    ) -> bool {
        let len = frame.len;
        let hlen = hdr.len();
        if self.queue.len() > 0 || len == 0 || len > self.max_frame(f) || hlen > len || frame.meta.gso.is_some() {
            return false;
        }
        if frame.meta.csum_blank && !(if is_ipv6(hdr) { f.ipv6_csum_offload } else { f.ipv4_csum_offload }) {
            return false;
        }
        let need = len.div_ceil(PAGE_SIZE) as u32;
        if !matches!(self.ring.wait_for(mem, need), Ok(have) if have >= need) {
            return false;
        }
        let at = frame.hdr_at;
        let idx = self.inflight.len() as u16;
        self.inflight.push(InFlight { frame: Held::Direct { len }, failed: false, peer: false });
        let csum = csum_flags(&frame.meta);
        for k in 0..need {
            let mut e = [0u8; RX_ENTRY_SIZE];
            self.ring.copy_request(mem, k, &mut e);
            let req = RxRequest::parse(&e);
            let start = k as usize * PAGE_SIZE;
            let end = len.min(start + PAGE_SIZE);
            let mut flags = if k == 0 { csum } else { 0 };
            if k + 1 < need {
                flags |= NETRXF_MORE_DATA;
            }
            let mut rsp = RxResponse { id: req.id, offset: 0, flags, status: (end - start) as i16 };
            let tag = me.tag(self.slots.len(), Some(frame.ticket));
            let gref = GrantRef(req.gref);
            let mut ok = true;
            if start < hlen {
                let n = hlen.min(end) - start;
                ok = turn.header_to_guest(tag, at + start, n, (frontend, gref, 0)).is_ok();
            }
            let mut pos = start.max(hlen);
            frame.runs(pos, end, |seg, off, n| {
                let src = (frame.dom, GrantRef(seg.gref), seg.offset + off);
                turn.grant_to_guest(tag, src, (frontend, gref, (pos - start) as u16), n);
                pos += usize::from(n);
            });
            if !ok || pos != end {
                rsp.status = crate::netif::RspStatus::Error.to_raw();
                if let Some(f) = self.inflight.get_mut(usize::from(idx)) {
                    f.failed = true;
                }
            }
            self.slots.push(Slot::Data { rsp, frame: idx });
        }
        self.ring.consume(need);
        true
    }

    /// Reads `need` requests (each exactly once), records the responses and
    /// queues the copies of frame `q`.
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        mem: &dyn SharedMem,
        frontend: DomId,
        q: Queued,
        data_slots: u32,
        need: u32,
        me: RxId,
        turn: &mut Turn<B>,
    ) {
        let frame = self.inflight.len() as u16;
        let extras = extras(&q);
        self.inflight.push(InFlight { frame: Held::Queued(q), failed: false, peer: false });
        let csum = csum_flags(&q.meta);
        let mut data_k = 0u32;
        for k in 0..need {
            let mut e = [0u8; RX_ENTRY_SIZE];
            self.ring.copy_request(mem, k, &mut e);
            let req = RxRequest::parse(&e);
            if let Some(e) = k.checked_sub(1).and_then(|i| extras.get(i as usize)) {
                self.slots.push(Slot::Extra(*e));
                continue;
            }
            let off = data_k as usize * PAGE_SIZE;
            let n = q.len.saturating_sub(off).min(PAGE_SIZE);
            let mut flags = 0;
            if data_k == 0 {
                flags |= csum;
                if !extras.is_empty() {
                    flags |= NETRXF_EXTRA_INFO;
                }
            }
            if data_k + 1 < data_slots {
                flags |= NETRXF_MORE_DATA;
            }
            let mut rsp = RxResponse { id: req.id, offset: 0, flags, status: n as i16 };
            let tag = me.tag(self.slots.len(), None);
            let queued = match self.queue.buf(&q) {
                Some(buf) => turn.local_to_guest(tag, buf, q.off + off, n, (frontend, GrantRef(req.gref), 0)).is_ok(),
                None => false,
            };
            if !queued {
                rsp.status = crate::netif::RspStatus::Error.to_raw();
                if let Some(f) = self.inflight.get_mut(usize::from(frame)) {
                    f.failed = true;
                }
            }
            self.slots.push(Slot::Data { rsp, frame });
            data_k += 1;
        }
        self.ring.consume(need);
    }

    /// A copy into pending response `slot` failed; `sender` when the
    /// sending guest's grant was to blame.
    pub fn fault(&mut self, slot: u16, sender: bool) {
        let Some(Slot::Data { rsp, frame }) = self.slots.get_mut(usize::from(slot)) else { return };
        rsp.status = crate::netif::RspStatus::Error.to_raw();
        if let Some(f) = self.inflight.get_mut(usize::from(*frame)) {
            if sender {
                f.peer = true;
            } else {
                f.failed = true;
            }
        }
    }

    /// True when placed frames wait for `finish`.
    pub fn holding(&self) -> bool {
        !self.slots.is_empty()
    }

    /// After the turn's copies: writes the responses, counts the frames,
    /// frees their bytes, publishes; true when the frontend asked for an
    /// event.
    pub fn finish(&mut self, mem: &dyn SharedMem, stats: &mut VifStats) -> bool {
        for s in self.slots.iter() {
            let bytes = match s {
                Slot::Data { rsp, .. } => rsp.emit(),
                Slot::Extra(e) => e.emit(),
            };
            self.ring.write_response(mem, &bytes);
        }
        for f in self.inflight.iter() {
            if f.peer {
                stats.rx_peer_drops += 1;
            } else if f.failed {
                stats.to_guest.errors += 1;
            } else {
                stats.to_guest.packets += 1;
                stats.to_guest.bytes += f.len() as u64;
            }
            if let Held::Queued(q) = f.frame {
                self.queue.release(&q);
            }
        }
        self.slots.clear();
        self.inflight.clear();
        self.ring.push_responses(mem)
    }
}

/// The checksum flags of the first slot of a frame with `meta`.
fn csum_flags(meta: &FrameMeta) -> u16 {
    if meta.csum_blank {
        NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED
    } else if meta.data_validated {
        NETRXF_DATA_VALIDATED
    } else {
        0
    }
}

/// The extra slots of a queued frame, in type order, each but the last
/// flagged MORE.
fn extras(q: &Queued) -> Extras {
    let mut v = Extras::default();
    if let Some(g) = q.meta.gso {
        v.push(ExtraKind::Gso { size: g.size, kind: g.kind.to_wire(), features: 0 });
    }
    if let Some(h) = q.hash {
        v.push(ExtraKind::Hash {
            kind: h.kind,
            algorithm: HASH_ALGORITHM_TOEPLITZ as u8,
            value: h.value.to_le_bytes(),
        });
    }
    v
}
