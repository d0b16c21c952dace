//! A netback environment built once per fuzzing process: a fake hypervisor,
//! one pool of packet buffers, the shared TX staging buffers, pages the
//! hostile guest granted us, and a bystander vif in another guest. Making
//! 64 KiB buffers for every input would cost more than the input itself, so
//! each input gets a fresh vif from the pool (fresh rings, fresh state) and
//! gives its buffers back.

use xvif::hal::SharedMem;
use xvif::netback::ring::{REQ_PROD, RING_HEADER, RING_SIZE, RSP_EVENT, RSP_PROD};
use xvif::netback::{Features, FrameMeta, SharedRxPool, TxStaging, Vif, VifConfig};
use xvif::netif::rx::RX_ENTRY_SIZE;
use xvif::netif::tx::TX_ENTRY_SIZE;
use xvif::netif::{RspStatus, RxRequest, RxResponse, TxRequest, TxResponse};
use xvif::testing::fake_hv::{FakeBuf, FakeBufPool, FakeHv};
use xvif::testing::netback_rig::{BACKEND, BUF_CAP, frame};
use xvif::testing::netfront::MockFrontend;
use xvif::xen::DomId;

/// The hostile guest.
pub const HOSTILE: DomId = DomId(9);
/// The well-behaved guest.
pub const BYSTANDER: DomId = DomId(200);
/// Pages the hostile guest granted read-only (its TX data).
pub const RO_PAGES: usize = 4;
/// Pages it granted writable (its RX buffers).
pub const RW_PAGES: usize = 4;
/// TX staging buffers (the data plane's default batch).
pub const STAGING: usize = 32;

/// The environment; see the module comment.
pub struct Env {
    /// The hypervisor shared by both guests.
    pub hv: FakeHv,
    /// The receive pool both vifs' RX queues share.
    pub pool: SharedRxPool<FakeBuf>,
    /// Buffers out of the pool when no hostile vif holds any.
    pub pool_idle: usize,
    /// TX staging, shared by every vif as in the data plane.
    pub staging: TxStaging<FakeBuf>,
    /// The hostile guest's grants: read-only ones first, then writable.
    pub grefs: Vec<u32>,
    /// Its writable pages' frame numbers, by index in `grefs` minus `RO_PAGES`.
    pub rw_gfns: Vec<u64>,
    bystander: Bystander,
}

/// The bystander guest: a vif with its own rings, one page of TX data and
/// one RX buffer granted once, driven by hand so that no input allocates
/// guest pages.
struct Bystander {
    fe: MockFrontend,
    vif: Vif<FakeBuf>,
    tx_gref: u32,
    tx_frame: Vec<u8>,
    rx_gref: u32,
    rx_gfn: u64,
    rx_frame: Vec<u8>,
    rx_cons: u32,
    next_id: u16,
}

/// Features from a byte: bit i switches feature i on.
pub fn features(bits: u8) -> Features {
    Features {
        sg: bits & 1 != 0,
        gso_tcpv4: bits & 2 != 0,
        gso_tcpv6: bits & 4 != 0,
        ipv4_csum_offload: bits & 8 != 0,
        ipv6_csum_offload: bits & 16 != 0,
        multicast_control: bits & 32 != 0,
    }
}

fn all_features() -> Features {
    features(0xff)
}

impl Env {
    /// Builds the environment (once per process).
    pub fn new() -> Self {
        let hv = FakeHv::new(BACKEND);
        let cfg = VifConfig::new(HOSTILE, [0; 6], all_features());
        let pool = FakeBufPool::shared_rx(&hv, 2 * cfg.buffers_needed(), BUF_CAP, 2);
        let mut staging_pool = FakeBufPool::new(&hv, STAGING, BUF_CAP, 2);
        let staging = TxStaging::new(&mut staging_pool, STAGING).unwrap_or_else(|e| panic!("staging: {e:?}"));
        let mut grefs = Vec::new();
        let mut rw_gfns = Vec::new();
        for i in 0..RO_PAGES + RW_PAGES {
            let gfn = hv.alloc_page(HOSTILE);
            let ro = i < RO_PAGES;
            if ro {
                hv.write_page(HOSTILE, gfn, 0, &frame(4096, i as u8));
            } else {
                rw_gfns.push(gfn);
            }
            grefs.push(hv.grant(HOSTILE, gfn, BACKEND, ro));
        }
        let bystander = Bystander::new(&hv, &pool);
        let pool_idle = pool.borrow().stats().out;
        Self { hv, pool, pool_idle, staging, grefs, rw_gfns, bystander }
    }

    /// A fresh frontend in the hostile guest (new ring pages).
    pub fn hostile_frontend(&self) -> MockFrontend {
        MockFrontend::new(&self.hv, HOSTILE)
    }

    /// A vif for `fe` with buffers from the pool.
    pub fn vif(&mut self, fe: &MockFrontend, cfg: VifConfig) -> Vif<FakeBuf> {
        Vif::new(cfg, fe.tx_ring(), fe.rx_ring(), &self.pool).unwrap_or_else(|e| panic!("vif: {e:?}"))
    }

    /// Gives a vif's buffers back and checks none went missing.
    pub fn release(&mut self, vif: Vif<FakeBuf>) {
        drop(vif.release());
        assert_eq!(self.pool.borrow().stats().out, self.pool_idle, "a vif kept or lost packet buffers");
    }

    /// The bystander guest sends a frame and receives one; both must
    /// arrive intact whatever the hostile guest did.
    pub fn check_bystander(&mut self) {
        let staging = &self.staging;
        self.bystander.check(&self.hv, staging);
    }
}

impl Default for Env {
    fn default() -> Self {
        Self::new()
    }
}

impl Bystander {
    fn new(hv: &FakeHv, pool: &SharedRxPool<FakeBuf>) -> Self {
        let fe = MockFrontend::new(hv, BYSTANDER);
        let cfg = VifConfig::new(BYSTANDER, [0x00, 0x16, 0x3e, 0, 0, 200], all_features());
        let vif = Vif::new(cfg, fe.tx_ring(), fe.rx_ring(), pool).unwrap_or_else(|e| panic!("bystander: {e:?}"));
        let tx_frame = frame(1000, 0xb1);
        let tx_gref = fe.grant_data(&tx_frame, 0);
        let rx_gfn = hv.alloc_page(BYSTANDER);
        let rx_gref = hv.grant(BYSTANDER, rx_gfn, BACKEND, false);
        Self { fe, vif, tx_gref, tx_frame, rx_gref, rx_gfn, rx_frame: frame(1200, 0xb2), rx_cons: 0, next_id: 0 }
    }

    fn check(&mut self, hv: &FakeHv, staging: &TxStaging<FakeBuf>) {
        assert!(self.vif.disabled().is_none(), "bystander disabled: {:?}", self.vif.disabled());
        // TX: one packet in one slot.
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let size = self.tx_frame.len() as u16;
        self.fe.push_tx(TxRequest { gref: self.tx_gref, offset: 0, flags: 0, id, size });
        self.fe.publish_tx();
        let mut got = Vec::new();
        self.vif.poll_tx(0, hv, staging, &mut |f: &[u8], _m: FrameMeta| got.push(f.to_vec()));
        assert_eq!(got, std::slice::from_ref(&self.tx_frame), "bystander TX");
        let rsps: Vec<TxResponse> = self.fe.tx_responses();
        assert_eq!(rsps.len(), 1, "bystander TX responses");
        assert_eq!((rsps[0].id, rsps[0].status), (id, RspStatus::Okay));
        // RX: one buffer posted, one frame queued.
        hv.write_page(BYSTANDER, self.rx_gfn, 0, &[0; 4096]);
        self.fe.post_rx_raw(RxRequest { id, gref: self.rx_gref });
        self.fe.publish_rx();
        assert!(self.vif.enqueue_rx(&self.rx_frame, FrameMeta::default()), "bystander RX enqueue");
        self.vif.poll_rx(0, hv);
        let rsps = read_rx_responses(&self.fe.rx.raw().clone_ring(), &mut self.rx_cons);
        self.fe.rx.raw().write_u32(RSP_EVENT, self.rx_cons.wrapping_add(1));
        assert_eq!(rsps.len(), 1, "bystander RX responses");
        let r = RxResponse::parse(&rsps[0]);
        assert_eq!((r.id, r.offset, r.status), (id, 0, self.rx_frame.len() as i16), "bystander RX response");
        let data = hv.read_page(BYSTANDER, self.rx_gfn, 0, self.rx_frame.len());
        assert_eq!(data, self.rx_frame, "bystander RX data");
    }
}

/// Read side helpers for ring pages the harness owns.
pub trait RingPage {
    /// A copy of the page.
    fn clone_ring(&self) -> Vec<u8>;
}

impl<T: SharedMem + ?Sized> RingPage for T {
    fn clone_ring(&self) -> Vec<u8> {
        let mut v = vec![0; self.size()];
        self.read_bytes(0, &mut v);
        v
    }
}

/// RX responses from `*cons` up to the page's `rsp_prod` (raw page bytes);
/// advances `*cons`.
pub fn read_rx_responses(page: &[u8], cons: &mut u32) -> Vec<[u8; RX_ENTRY_SIZE]> {
    let prod = u32::from_le_bytes(page[RSP_PROD..RSP_PROD + 4].try_into().unwrap_or([0; 4]));
    let mut out = Vec::new();
    while *cons != prod && out.len() <= RING_SIZE as usize {
        let off = RING_HEADER + (*cons % RING_SIZE) as usize * RX_ENTRY_SIZE;
        let mut e = [0u8; RX_ENTRY_SIZE];
        e.copy_from_slice(&page[off..off + RX_ENTRY_SIZE]);
        out.push(e);
        *cons = cons.wrapping_add(1);
    }
    out
}

/// Writes `n` raw bytes of ring entries starting at entry `first`.
pub fn write_entries(mem: &dyn SharedMem, entry: usize, first: u32, data: &[u8]) {
    for (i, e) in data.chunks(entry).enumerate() {
        let idx = first.wrapping_add(i as u32) % RING_SIZE;
        mem.write_bytes(RING_HEADER + idx as usize * entry, e);
    }
}

/// Sets a ring's `req_prod`.
pub fn set_req_prod(mem: &dyn SharedMem, v: u32) {
    mem.write_u32(REQ_PROD, v);
}

/// Entry sizes, re-exported for the targets.
pub const TX_ENTRY: usize = TX_ENTRY_SIZE;
/// RX entry size.
pub const RX_ENTRY: usize = RX_ENTRY_SIZE;
