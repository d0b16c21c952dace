//! Several guests' vifs on one switch, driven turn by turn the way the
//! data plane drives them (`dataplane::DataPlane::poll`): every TX queue
//! polled with a sink that tries one copy first, every RX queue placed,
//! the turn's copies flushed once, faults applied, held responses written.
//! The host tests of one copy and the simulator benchmark run on it.
#![forbid(unsafe_code)]

use super::fake_hv::{FakeBuf, FakeBufPool, FakeHv};
use super::netback_rig::{BACKEND, BUF_CAP, Rig, all_features};
use crate::netback::{DirectFrame, Features, FrameMeta as NbMeta, RxSource, Turn, TxSink, TxTicket, VifConfig};
use crate::switch::meta::{FrameMeta, PortCaps};
use crate::switch::{Egress, PortConfig, PortId, Switch, SwitchConfig};
use alloc::format;
use alloc::vec::Vec;

/// Guests on one switch; guest `i` is on port `i`.
pub struct Fabric {
    /// The hypervisor all guests share.
    pub hv: FakeHv,
    /// The switch.
    pub switch: Switch,
    /// One rig per guest (domain `7 + i`).
    pub rigs: Vec<Rig>,
    /// The turn's copies and arena.
    pub turn: Turn<FakeBuf>,
    /// False: every frame goes whole through the switch (the path before
    /// one copy, kept for every frame one copy does not fit).
    pub one_copy: bool,
    /// The time given to the switch and the vifs.
    pub now: u64,
    /// Notifications owed after each turn, (TX, RX), summed.
    pub notified: (u64, u64),
}

/// Nanoseconds of each phase of a turn, from the caller's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurnTimes {
    /// TX polls, switch decisions and one-copy placements.
    pub tx: u64,
    /// RX placement of queued frames.
    pub rx: u64,
    /// The turn's grant copies (the fake hypervisor's memcpy).
    pub copy: u64,
    /// Faults and responses.
    pub finish: u64,
}

impl Fabric {
    /// `n` guests with all features, their vifs on one segment.
    pub fn new(n: usize) -> Self {
        Self::with(n, all_features(), |_| {})
    }

    /// `n` guests with `features` and a config tweak.
    pub fn with(n: usize, features: Features, tweak: impl Fn(&mut VifConfig)) -> Self {
        let hv = FakeHv::new(BACKEND);
        let mut switch = Switch::new(SwitchConfig::default());
        let caps = PortCaps {
            accepts_partial_csum: features.ipv4_csum_offload,
            gso_tcpv4: features.gso_tcpv4,
            gso_tcpv6: features.gso_tcpv6,
            mtu: 1500,
        };
        let rigs: Vec<Rig> = (0..n)
            .map(|i| {
                let rig = Rig::on(&hv, 7 + i as u16, features, &tweak);
                let name = format!("vif{}.0", 7 + i);
                let cfg = PortConfig { name, allowed_src: Some(rig.vif.config().mac), caps, ..PortConfig::default() };
                match switch.add_port(cfg) {
                    Ok(p) if usize::from(p.0) == i => rig,
                    other => panic!("port for guest {i}: {other:?}"),
                }
            })
            .collect();
        let arena = crate::netback::BufPool::alloc(&mut FakeBufPool::new(&hv, 1, BUF_CAP, 0));
        Self { hv, switch, rigs, turn: Turn::new(arena), one_copy: true, now: 0, notified: (0, 0) }
    }

    /// One turn; true when anything moved.
    pub fn turn(&mut self) -> bool {
        self.turn_timed(&mut || 0).0
    }

    /// One turn, timing its phases with `clock` (ns).
    pub fn turn_timed(&mut self, clock: &mut dyn FnMut() -> u64) -> (bool, TurnTimes) {
        let mut t = TurnTimes::default();
        let mut busy = false;
        let t0 = clock();
        for (i, r) in self.rigs.iter_mut().enumerate() {
            for q in 0..r.vif.queues() {
                let turn = self.one_copy.then_some(&mut self.turn);
                busy |= r.vif.stage_tx(q, self.now, turn, i as u8, &r.staging).progress;
            }
        }
        self.turn.flush_headers(&self.hv);
        for t in self.turn.header_faults() {
            if let Some(r) = self.rigs.get_mut(usize::from(t.port)) {
                r.vif.header_failed(t);
            }
        }
        for i in 0..self.rigs.len() {
            let (left, rest) = self.rigs.split_at_mut(i);
            let Some((me, right)) = rest.split_first_mut() else { continue };
            for q in 0..me.vif.queues() {
                let mut sink = Sink {
                    ingress: PortId(i as u8),
                    switch: &mut self.switch,
                    left: &mut *left,
                    right: &mut *right,
                    turn: &mut self.turn,
                    now: self.now,
                };
                if me.vif.deliver_tx(q, &me.hv, &me.staging, &mut sink) {
                    self.notified.0 += 1;
                }
            }
        }
        let t1 = clock();
        for (i, r) in self.rigs.iter_mut().enumerate() {
            for q in 0..r.vif.queues() {
                busy |= r.vif.place_rx(q, i as u8, &mut self.turn).progress;
            }
        }
        let t2 = clock();
        self.turn.flush(&self.hv);
        let t3 = clock();
        for f in self.turn.faults() {
            let tag = f.tag();
            for port in core::iter::once(tag.rx_port).chain(tag.tx.map(|t| t.port)) {
                if let Some(r) = self.rigs.get_mut(usize::from(port)) {
                    r.vif.apply_fault(port, f);
                }
            }
        }
        self.turn.end();
        for r in self.rigs.iter_mut() {
            for q in 0..r.vif.queues() {
                if r.vif.holding(q) {
                    let (tx, rx) = r.vif.finish_turn(q);
                    self.notified.0 += u64::from(tx);
                    self.notified.1 += u64::from(rx);
                }
            }
        }
        let t4 = clock();
        (t.tx, t.rx, t.copy, t.finish) = (t1 - t0, t2 - t1, t3 - t2, t4 - t3);
        (busy, t)
    }

    /// Turns until nothing moves (at most 64).
    pub fn settle(&mut self) {
        for _ in 0..64 {
            if !self.turn() {
                return;
            }
        }
        panic!("the fabric never settled");
    }
}

/// A TX queue's sink on the fabric: one copy when the switch and the
/// receiver allow, else the whole frame through the switch.
struct Sink<'a> {
    ingress: PortId,
    switch: &'a mut Switch,
    /// Guests before and after the sender.
    left: &'a mut [Rig],
    right: &'a mut [Rig],
    turn: &'a mut Turn<FakeBuf>,
    now: u64,
}

/// The other guests as the switch's egress.
struct Others<'a, 'b> {
    ingress: PortId,
    left: &'a mut [Rig],
    right: &'b mut [Rig],
}

impl Others<'_, '_> {
    fn rig(&mut self, port: PortId) -> Option<&mut Rig> {
        let (i, me) = (usize::from(port.0), usize::from(self.ingress.0));
        if i < me { self.left.get_mut(i) } else { self.right.get_mut(i.checked_sub(me + 1)?) }
    }
}

impl Egress for Others<'_, '_> {
    fn wants_multicast(&mut self, port: PortId, group: &[u8; 6]) -> bool {
        self.rig(port).is_some_and(|r| r.vif.wants(*group))
    }

    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        let src = RxSource(self.ingress.0);
        self.rig(port).is_some_and(|r| r.vif.enqueue_rx_from(src, frame, meta.into()))
    }
}

impl TxSink for Sink<'_> {
    fn read_header(&self, at: usize, out: &mut [u8]) -> bool {
        self.turn.read_header(at, out)
    }

    fn offer(&mut self, hdr: &[u8], frame: &DirectFrame<'_>) -> bool {
        let meta = FrameMeta::from(frame.meta);
        let Some(target) = self.switch.direct_target(self.ingress, hdr, frame.len, &meta, self.now) else {
            return false;
        };
        let mut others = Others { ingress: self.ingress, left: &mut *self.left, right: &mut *self.right };
        let Some(r) = others.rig(target) else { return false };
        let frame = DirectFrame { ticket: TxTicket { port: self.ingress.0, ..frame.ticket }, ..*frame };
        if !r.vif.place_direct(target.0, hdr, &frame, self.turn) {
            return false;
        }
        self.switch.commit_direct(self.ingress, target, hdr, frame.len, self.now);
        true
    }

    fn deliver(&mut self, frame: &[u8], meta: NbMeta) {
        let mut others = Others { ingress: self.ingress, left: &mut *self.left, right: &mut *self.right };
        let _ = self.switch.forward(self.ingress, frame, &FrameMeta::from(meta), self.now, &mut others);
    }
}
