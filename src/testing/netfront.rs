//! A mock netfront over `HeapPage` rings and a `FakeHv`: posts TX packets as
//! slot chains with grants (and extras), posts RX buffers, reads and
//! reassembles responses, and misbehaves on request (raw requests, corrupt
//! indices, bad grants, requests rewritten after the backend read them).
#![forbid(unsafe_code)]

use super::fake_hv::FakeHv;
use crate::hal::{HeapPage, SharedMem};
use crate::netback::ring::{REQ_EVENT, REQ_PROD, RING_HEADER, RING_SIZE, RSP_EVENT, RSP_PROD};
use crate::netif::extra::XEN_NETIF_EXTRA_FLAG_MORE;
use crate::netif::rx::RX_ENTRY_SIZE;
use crate::netif::tx::{NETTXF_EXTRA_INFO, NETTXF_MORE_DATA, TX_ENTRY_SIZE};
use crate::netif::{ExtraInfo, RxRequest, RxResponse, TxRequest, TxResponse};
use crate::xen::DomId;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// A `SharedMem` handle on a page both sides hold.
pub struct SharedPage(pub Rc<dyn SharedMem>);

impl SharedMem for SharedPage {
    fn size(&self) -> usize {
        self.0.size()
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.0.read_u32(off)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.0.write_u32(off, v)
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.0.read_bytes(off, buf)
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.0.write_bytes(off, data)
    }
    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        self.0.compare_exchange_u16(off, old, new)
    }
}

/// Byte patches: (offset, bytes).
pub type Patches = Vec<(usize, Vec<u8>)>;

/// A ring page that spies on the backend: counts accesses and reads of
/// each entry, and can rewrite bytes right after the backend first reads a
/// chosen range (a frontend racing the backend, XSA-155).
pub struct SpyPage {
    inner: HeapPage,
    entry: usize,
    /// Every access (reads, writes, fences).
    pub accesses: Cell<u64>,
    /// Reads of each entry index (ring position, not request index).
    pub entry_reads: RefCell<BTreeMap<usize, u32>>,
    trigger: RefCell<Option<(usize, Patches)>>,
}

impl SpyPage {
    /// A zeroed ring page with `entry`-byte entries.
    pub fn new(entry: usize) -> Self {
        Self {
            inner: HeapPage::new(4096),
            entry,
            accesses: Cell::new(0),
            entry_reads: RefCell::new(BTreeMap::new()),
            trigger: RefCell::new(None),
        }
    }

    /// After the backend's first read touching byte `at`, write `patches`.
    pub fn rewrite_after_read(&self, at: usize, patches: Patches) {
        *self.trigger.borrow_mut() = Some((at, patches));
    }

    /// The most reads any single entry saw.
    pub fn max_entry_reads(&self) -> u32 {
        self.entry_reads.borrow().values().copied().max().unwrap_or(0)
    }

    /// Direct access for the frontend side (not counted).
    pub fn raw(&self) -> &HeapPage {
        &self.inner
    }
}

impl SharedMem for SpyPage {
    fn size(&self) -> usize {
        self.inner.size()
    }
    fn read_u32(&self, off: usize) -> u32 {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.read_u32(off)
    }
    fn write_u32(&self, off: usize, v: u32) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.write_u32(off, v)
    }
    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.read_bytes(off, buf);
        if off >= RING_HEADER {
            *self.entry_reads.borrow_mut().entry((off - RING_HEADER) / self.entry).or_insert(0) += 1;
        }
        let fire = matches!(&*self.trigger.borrow(), Some((at, _)) if (off..off + buf.len()).contains(at));
        if fire && let Some((_, patches)) = self.trigger.borrow_mut().take() {
            for (o, bytes) in patches {
                self.inner.write_bytes(o, &bytes);
            }
        }
    }
    fn write_bytes(&self, off: usize, data: &[u8]) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.write_bytes(off, data)
    }
    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        self.inner.compare_exchange_u16(off, old, new)
    }
    fn fence(&self) {
        self.accesses.set(self.accesses.get() + 1);
    }
}

/// How to send one packet.
#[derive(Debug, Clone, Default)]
pub struct TxOpts {
    /// Bytes per data slot (must sum to the frame length unless testing
    /// mismatches); default: one slot per 4 KiB from `offset`.
    pub slot_sizes: Option<Vec<usize>>,
    /// Offset of the first slot's data in its page.
    pub offset: u16,
    /// Extra NETTXF_* flags for the first slot (checksum bits).
    pub flags: u16,
    /// Extra-info segments (the MORE flag is set for you).
    pub extras: Vec<ExtraInfo>,
    /// Override the first slot's `size` (the packet length).
    pub size_override: Option<u16>,
}

/// One frame reassembled from RX responses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RxFrame {
    /// The data.
    pub data: Vec<u8>,
    /// Flags of the first response.
    pub flags: u16,
    /// The extra segments that followed.
    pub extras: Vec<ExtraInfo>,
    /// Statuses of the data responses.
    pub statuses: Vec<i16>,
    /// Ids of the data responses.
    pub ids: Vec<u16>,
}

/// The mock frontend.
pub struct MockFrontend {
    /// Our domain.
    pub dom: DomId,
    /// The hypervisor.
    pub hv: FakeHv,
    /// TX ring page.
    pub tx: Rc<SpyPage>,
    /// RX ring page.
    pub rx: Rc<SpyPage>,
    /// Next TX request index to write.
    pub tx_prod: u32,
    tx_rsp_cons: u32,
    rx_prod: u32,
    rx_rsp_cons: u32,
    next_id: u16,
    /// Posted RX buffers by id: (gref, gfn).
    rx_posted: BTreeMap<u16, (u32, u64)>,
}

impl MockFrontend {
    /// A frontend in domain `dom` with freshly initialised rings.
    pub fn new(hv: &FakeHv, dom: DomId) -> Self {
        let tx = Rc::new(SpyPage::new(TX_ENTRY_SIZE));
        let rx = Rc::new(SpyPage::new(RX_ENTRY_SIZE));
        for p in [&tx, &rx] {
            // SHARED_RING_INIT.
            p.raw().write_u32(REQ_EVENT, 1);
            p.raw().write_u32(RSP_EVENT, 1);
        }
        Self {
            dom,
            hv: hv.clone(),
            tx,
            rx,
            tx_prod: 0,
            tx_rsp_cons: 0,
            rx_prod: 0,
            rx_rsp_cons: 0,
            next_id: 0,
            rx_posted: BTreeMap::new(),
        }
    }

    /// The TX ring as the backend maps it.
    pub fn tx_ring(&self) -> Box<dyn SharedMem> {
        Box::new(SharedPage(self.tx.clone()))
    }

    /// The RX ring as the backend maps it.
    pub fn rx_ring(&self) -> Box<dyn SharedMem> {
        Box::new(SharedPage(self.rx.clone()))
    }

    fn id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Puts `data` at `offset` of a new page granted read-only to the backend.
    pub fn grant_data(&self, data: &[u8], offset: u16) -> u32 {
        let gfn = self.hv.alloc_page(self.dom);
        self.hv.write_page(self.dom, gfn, usize::from(offset), data);
        self.hv.grant(self.dom, gfn, self.hv.backend, true)
    }

    /// Writes a raw TX request at the next index (not yet published).
    pub fn push_tx(&mut self, req: TxRequest) {
        let off = RING_HEADER + (self.tx_prod % RING_SIZE) as usize * TX_ENTRY_SIZE;
        self.tx.raw().write_bytes(off, &req.emit());
        self.tx_prod = self.tx_prod.wrapping_add(1);
    }

    /// Writes a raw extra segment in a TX slot.
    pub fn push_tx_extra(&mut self, e: ExtraInfo) {
        let mut slot = [0u8; TX_ENTRY_SIZE];
        slot[..8].copy_from_slice(&e.emit());
        let off = RING_HEADER + (self.tx_prod % RING_SIZE) as usize * TX_ENTRY_SIZE;
        self.tx.raw().write_bytes(off, &slot);
        self.tx_prod = self.tx_prod.wrapping_add(1);
    }

    /// Publishes the TX requests written (RING_PUSH_REQUESTS).
    pub fn publish_tx(&self) {
        self.tx.raw().fence();
        self.tx.raw().write_u32(REQ_PROD, self.tx_prod);
    }

    /// Writes any value into the TX `req_prod`.
    pub fn set_tx_req_prod(&self, v: u32) {
        self.tx.raw().write_u32(REQ_PROD, v);
    }

    /// Queues one packet (not published); returns the data slots' ids.
    pub fn queue_packet(&mut self, frame: &[u8], o: &TxOpts) -> Vec<u16> {
        let sizes = o.slot_sizes.clone().unwrap_or_else(|| {
            let mut v = Vec::new();
            let mut left = frame.len();
            let mut room = 4096 - usize::from(o.offset);
            loop {
                let n = left.min(room);
                v.push(n);
                left -= n;
                room = 4096;
                if left == 0 {
                    break;
                }
            }
            v
        });
        let mut ids = Vec::new();
        let mut pos = 0;
        let mut data_reqs = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let off = if i == 0 { o.offset } else { 0 };
            let end = (pos + n).min(frame.len());
            let gref = self.grant_data(&frame[pos.min(end)..end], off);
            pos += n;
            let id = self.id();
            ids.push(id);
            let more = if i + 1 < sizes.len() { NETTXF_MORE_DATA } else { 0 };
            data_reqs.push(TxRequest { gref, offset: off, flags: more, id, size: n as u16 });
        }
        let mut first = data_reqs[0];
        first.size = o.size_override.unwrap_or(frame.len() as u16);
        first.flags |= o.flags | if o.extras.is_empty() { 0 } else { NETTXF_EXTRA_INFO };
        self.push_tx(first);
        for (i, e) in o.extras.iter().enumerate() {
            let mut e = *e;
            if i + 1 < o.extras.len() {
                e.flags |= XEN_NETIF_EXTRA_FLAG_MORE;
            }
            self.push_tx_extra(e);
        }
        for r in &data_reqs[1..] {
            self.push_tx(*r);
        }
        ids
    }

    /// Queues and publishes one packet.
    pub fn send(&mut self, frame: &[u8], o: &TxOpts) -> Vec<u16> {
        let ids = self.queue_packet(frame, o);
        self.publish_tx();
        ids
    }

    /// Responses published since the last call; re-arms `rsp_event`.
    pub fn tx_responses(&mut self) -> Vec<TxResponse> {
        let prod = self.tx.raw().read_u32(RSP_PROD);
        let mut v = Vec::new();
        while self.tx_rsp_cons != prod {
            let mut e = [0u8; TX_ENTRY_SIZE];
            let off = RING_HEADER + (self.tx_rsp_cons % RING_SIZE) as usize * TX_ENTRY_SIZE;
            self.tx.raw().read_bytes(off, &mut e);
            v.push(TxResponse::parse(&e));
            self.tx_rsp_cons = self.tx_rsp_cons.wrapping_add(1);
        }
        self.tx.raw().write_u32(RSP_EVENT, self.tx_rsp_cons.wrapping_add(1));
        v
    }

    /// Posts `n` RX buffers (whole pages granted writable) and publishes them.
    pub fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let gfn = self.hv.alloc_page(self.dom);
            let gref = self.hv.grant(self.dom, gfn, self.hv.backend, false);
            let id = self.id();
            self.post_rx_raw(RxRequest { id, gref });
            self.rx_posted.insert(id, (gref, gfn));
        }
        self.publish_rx();
    }

    /// Writes a raw RX request (not published).
    pub fn post_rx_raw(&mut self, req: RxRequest) {
        let off = RING_HEADER + (self.rx_prod % RING_SIZE) as usize * RX_ENTRY_SIZE;
        self.rx.raw().write_bytes(off, &req.emit());
        self.rx_prod = self.rx_prod.wrapping_add(1);
    }

    /// Publishes the RX requests written.
    pub fn publish_rx(&self) {
        self.rx.raw().fence();
        self.rx.raw().write_u32(REQ_PROD, self.rx_prod);
    }

    /// Writes any value into the RX `req_prod`.
    pub fn set_rx_req_prod(&self, v: u32) {
        self.rx.raw().write_u32(REQ_PROD, v);
    }

    /// Frames received since the last call, reassembled; re-arms `rsp_event`.
    pub fn rx_frames(&mut self) -> Vec<RxFrame> {
        let prod = self.rx.raw().read_u32(RSP_PROD);
        let mut out = Vec::new();
        let mut cur: Option<RxFrame> = None;
        let mut want_extra = false;
        let mut more = false;
        while self.rx_rsp_cons != prod {
            let mut e = [0u8; RX_ENTRY_SIZE];
            let off = RING_HEADER + (self.rx_rsp_cons % RING_SIZE) as usize * RX_ENTRY_SIZE;
            self.rx.raw().read_bytes(off, &mut e);
            self.rx_rsp_cons = self.rx_rsp_cons.wrapping_add(1);
            if want_extra {
                let x = ExtraInfo::parse(&e);
                want_extra = x.more();
                if let Some(f) = cur.as_mut() {
                    f.extras.push(x);
                }
                if !want_extra && !more {
                    out.extend(cur.take());
                }
                continue;
            }
            let r = RxResponse::parse(&e);
            let f = cur.get_or_insert_with(|| RxFrame { flags: r.flags, ..RxFrame::default() });
            f.statuses.push(r.status);
            f.ids.push(r.id);
            if r.status > 0
                && let Some(&(_, gfn)) = self.rx_posted.get(&r.id)
            {
                f.data.extend(self.hv.read_page(self.dom, gfn, usize::from(r.offset), r.status as usize));
            }
            want_extra = r.extra_info() && f.statuses.len() == 1;
            more = r.more_data();
            if !more && !want_extra {
                out.extend(cur.take());
            }
        }
        out.extend(cur.take());
        self.rx.raw().write_u32(RSP_EVENT, self.rx_rsp_cons.wrapping_add(1));
        out
    }
}
