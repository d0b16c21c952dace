//! The backend-to-guest path: a byte-budgeted queue of frames per vif queue
//! (`rxqueue`; XSA-392: a guest that posts no receive buffers costs at most
//! the budget, the rest is dropped and counted), copied into the buffers
//! the frontend posts on the RX ring with batched GNTTABOP_copy.
//!
//! Layout of one frame on the ring (xen/include/public/io/netif.h): the
//! first data slot (flags: checksum bits, NETRXF_extra_info when extras
//! follow, NETRXF_more_data when more data slots follow), then the extra
//! slots (GSO when the frame is a GSO frame, HASH when the frontend
//! configured hashing over the control ring and a hash type covered the
//! frame, as Linux netback sends them; each but the last flagged MORE),
//! then the other data slots, up to a page each at offset 0. A response goes in the slot of the request it answers and
//! carries that request's id; its status is the byte count of the slot, or
//! NETIF_RSP_ERROR when the copy into the guest's page failed.
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::copy::Copier;
use super::error::{NetbackError, RxDrop};
use super::hash::RxHash;
use super::meta::{FrameMeta, is_ipv6};
use super::pool::SharedRxPool;
use super::ring::BackRing;
use super::rxqueue::{Queued, RxQueue, RxSource};
use super::vif::{Features, PollOutcome, VifStats};
use crate::hal::{GrantOps, SharedMem};
use crate::netif::ctrl::HASH_ALGORITHM_TOEPLITZ;
use crate::netif::extra::XEN_NETIF_EXTRA_FLAG_MORE;
use crate::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, RX_ENTRY_SIZE};
use crate::netif::{ExtraInfo, ExtraKind, MAX_PACKET, PAGE_SIZE, RxRequest, RxResponse};
use crate::xen::DomId;
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

#[derive(Debug, Clone, Copy)]
struct InFlight {
    frame: Queued,
    failed: bool,
}

/// RX ring state and the frame queue (bookkeeping allocated once, buffers
/// from the shared pool while frames wait in them).
pub(crate) struct RxPath<B: PacketBuf> {
    pub ring: BackRing,
    queue: RxQueue<B>,
    inflight: Vec<InFlight>,
    slots: Vec<Slot>,
    pub copier: Copier,
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
            copier: Copier::new(),
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

    /// Moves up to `budget` queued frames into the guest's posted buffers.
    pub fn poll(
        &mut self,
        mem: &dyn SharedMem,
        gnt: &dyn GrantOps,
        frontend: DomId,
        budget: usize,
        stats: &mut VifStats,
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
            self.place(mem, frontend, q, data_slots, need);
            frames += 1;
            out.progress = true;
        }
        self.complete(mem, gnt, stats);
        out.notify = self.ring.push_responses(mem);
        (out, fatal)
    }

    /// Reads `need` requests (each exactly once), records the responses and
    /// queues the copies of frame `q`.
    fn place(&mut self, mem: &dyn SharedMem, frontend: DomId, q: Queued, data_slots: u32, need: u32) {
        let frame = self.inflight.len() as u16;
        let extras = extras(&q);
        self.inflight.push(InFlight { frame: q, failed: false });
        let mut csum = 0;
        if q.meta.csum_blank {
            csum = NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
        } else if q.meta.data_validated {
            csum = NETRXF_DATA_VALIDATED;
        }
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
            let tag = self.slots.len() as u16;
            let queued = match self.queue.buf(&q) {
                Some(buf) => self.copier.to_guest(tag, buf, q.off + off, frontend, req.gref, 0, n).is_ok(),
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

    /// Issues the copies, writes the responses, frees the frames' bytes.
    fn complete(&mut self, mem: &dyn SharedMem, gnt: &dyn GrantOps, stats: &mut VifStats) {
        let (slots, inflight) = (&mut self.slots, &mut self.inflight);
        self.copier.flush(gnt, |tag, _e| {
            if let Some(Slot::Data { rsp, frame }) = slots.get_mut(usize::from(tag)) {
                rsp.status = crate::netif::RspStatus::Error.to_raw();
                if let Some(f) = inflight.get_mut(usize::from(*frame)) {
                    f.failed = true;
                }
            }
        });
        for s in self.slots.iter() {
            let bytes = match s {
                Slot::Data { rsp, .. } => rsp.emit(),
                Slot::Extra(e) => e.emit(),
            };
            self.ring.write_response(mem, &bytes);
        }
        for f in self.inflight.iter() {
            if f.failed {
                stats.to_guest.errors += 1;
            } else {
                stats.to_guest.packets += 1;
                stats.to_guest.bytes += f.frame.len as u64;
            }
            self.queue.release(&f.frame);
        }
        self.slots.clear();
        self.inflight.clear();
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
