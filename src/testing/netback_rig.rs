//! Test rigs: a fake hypervisor, mock netfronts and a real `Vif` wired
//! together, collecting the frames the vif delivers; `CtrlRig` adds a
//! control ring to a vif of several queues.
#![forbid(unsafe_code)]

use super::ctrlfront::CtrlFrontend;
use super::fake_hv::{FakeBuf, FakeBufPool, FakeHv};
use super::netfront::MockFrontend;
use crate::hal::SharedMem;
use crate::netback::SharedRxPool;
use crate::netback::{Features, FrameMeta, PollOutcome, QueueRings, TxStaging, Vif, VifConfig};
use crate::xen::DomId;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Our (the backend's) domain id in rigs.
pub const BACKEND: DomId = DomId(1);

/// Buffer capacity used by rigs (GSO-sized).
pub const BUF_CAP: usize = 65536;

/// All features on.
pub fn all_features() -> Features {
    Features {
        sg: true,
        gso_tcpv4: true,
        gso_tcpv6: true,
        ipv4_csum_offload: true,
        ipv6_csum_offload: true,
        multicast_control: true,
    }
}

/// One frontend and its vif.
pub struct Rig {
    /// The hypervisor (shared with other rigs built from it).
    pub hv: FakeHv,
    /// The frontend.
    pub fe: MockFrontend,
    /// The vif under test.
    pub vif: Vif<FakeBuf>,
    /// The receive pool the vif's RX queue takes buffers from.
    pub pool: SharedRxPool<FakeBuf>,
    /// TX staging buffers lent to `poll_tx` (`cfg.tx_batch` of them).
    pub staging: TxStaging<FakeBuf>,
    /// Frames delivered by `poll_tx`.
    pub got: Vec<(Vec<u8>, FrameMeta)>,
}

impl Rig {
    /// A rig on a fresh hypervisor with default config and all features.
    pub fn new() -> Self {
        Self::on(&FakeHv::new(BACKEND), 7, all_features(), |_| {})
    }

    /// A rig for guest `dom` on `hv`, with features and a config tweak.
    pub fn on(hv: &FakeHv, dom: u16, features: Features, tweak: impl FnOnce(&mut VifConfig)) -> Self {
        Self::on_rings(hv, dom, features, tweak, |fe| (fe.tx_ring(), fe.rx_ring()))
    }

    /// As `on`, with the vif mapping the rings `rings` makes from the
    /// frontend's pages (a wrapper that races or watches the backend).
    pub fn on_rings(
        hv: &FakeHv,
        dom: u16,
        features: Features,
        tweak: impl FnOnce(&mut VifConfig),
        rings: impl FnOnce(&MockFrontend) -> (Box<dyn SharedMem>, Box<dyn SharedMem>),
    ) -> Self {
        let fe = MockFrontend::new(hv, DomId(dom));
        let mut cfg = VifConfig::new(DomId(dom), [0x00, 0x16, 0x3e, 0, 0, dom as u8], features);
        tweak(&mut cfg);
        // Data starts 2 bytes into the first frame, like NET_IP_ALIGN, so
        // copies must be split at the buffer's page boundaries.
        let mut staging_pool = FakeBufPool::new(hv, cfg.tx_batch, BUF_CAP, 2);
        let staging = match TxStaging::new(&mut staging_pool, cfg.tx_batch) {
            Ok(s) => s,
            Err(e) => panic!("staging: {e:?}"),
        };
        let pool = FakeBufPool::shared_rx(hv, cfg.buffers_needed(), BUF_CAP, 2);
        let (tx, rx) = rings(&fe);
        let vif = match Vif::new(cfg, tx, rx, &pool) {
            Ok(v) => v,
            Err(e) => panic!("vif: {e:?}"),
        };
        Self { hv: hv.clone(), fe, vif, pool, staging, got: Vec::new() }
    }

    /// Polls TX once, collecting delivered frames.
    pub fn poll_tx(&mut self) -> PollOutcome {
        let got = &mut self.got;
        self.vif.poll_tx(0, &self.hv, &self.staging, &mut |f: &[u8], m: FrameMeta| got.push((f.to_vec(), m)))
    }

    /// Polls RX once.
    pub fn poll_rx(&mut self) -> PollOutcome {
        self.vif.poll_rx(0, &self.hv)
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

/// A vif of several queues (one mock netfront each, all in one guest) with
/// a control ring.
pub struct CtrlRig {
    /// The hypervisor.
    pub hv: FakeHv,
    /// One frontend per queue.
    pub fes: Vec<MockFrontend>,
    /// The control ring's frontend.
    pub ctrl: CtrlFrontend,
    /// The vif under test.
    pub vif: Vif<FakeBuf>,
    /// The receive pool the vif's RX queues take buffers from.
    pub pool: SharedRxPool<FakeBuf>,
    /// Staging buffers (the first is the control ring's scratch).
    pub staging: TxStaging<FakeBuf>,
}

impl CtrlRig {
    /// A vif of guest `dom` with `queues` queues and a control ring, on `hv`.
    pub fn on(hv: &FakeHv, dom: u16, queues: usize) -> Self {
        let fes: Vec<MockFrontend> = (0..queues).map(|_| MockFrontend::new(hv, DomId(dom))).collect();
        let cfg = VifConfig::new(DomId(dom), [0x00, 0x16, 0x3e, 0, 0, dom as u8], all_features());
        let staging = match TxStaging::new(&mut FakeBufPool::new(hv, 4, BUF_CAP, 2), 4) {
            Ok(s) => s,
            Err(e) => panic!("staging: {e:?}"),
        };
        let pool = FakeBufPool::shared_rx(hv, cfg.buffers_needed() * queues, BUF_CAP, 2);
        let rings: Vec<QueueRings> = fes.iter().map(|f| (f.tx_ring(), f.rx_ring())).collect();
        let mut vif = match Vif::with_queues(cfg, rings, &pool) {
            Ok(v) => v,
            Err(e) => panic!("vif: {e:?}"),
        };
        let ctrl = CtrlFrontend::new(hv, DomId(dom));
        vif.attach_ctrl(ctrl.ring());
        Self { hv: hv.clone(), fes, ctrl, vif, pool, staging }
    }

    /// A rig on a fresh hypervisor, guest 7.
    pub fn new(queues: usize) -> Self {
        Self::on(&FakeHv::new(BACKEND), 7, queues)
    }

    /// Serves the control ring once.
    pub fn poll_ctrl(&mut self) -> PollOutcome {
        self.vif.poll_ctrl(&self.hv, &self.staging)
    }

    /// Serves the control ring until it has nothing left (bounded).
    pub fn settle_ctrl(&mut self) {
        for _ in 0..64 {
            if !self.poll_ctrl().more {
                return;
            }
        }
        panic!("the control ring never settled");
    }

    /// Polls TX of queue `q`, returning the frames delivered.
    pub fn poll_tx(&mut self, q: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        self.vif.poll_tx(q, &self.hv, &self.staging, &mut |f: &[u8], _m: FrameMeta| got.push(f.to_vec()));
        got
    }
}

/// A frame of `len` bytes: broadcast destination, a source, an EtherType,
/// and a counting payload seeded by `seed`.
pub fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
    let hdr = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x16, 0x3e, 0, 0, seed, 0x08, 0x00];
    let n = hdr.len().min(len);
    f[..n].copy_from_slice(&hdr[..n]);
    f
}
