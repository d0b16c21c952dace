//! The switch's non-vif ports as the data plane drives them (the
//! management stack's queue pair, the NIC), and the `Egress` that delivers
//! the switch's output to every kind of port.
#![forbid(unsafe_code)]

use super::queue::Slot;
use crate::drivers::port::{Port, PortStats};
use crate::net::NicDev;
use crate::netback::{DirectFrame, RxSource, Turn, TxSink, TxTicket};
use crate::platform::bufpool::FrameBuf;
use crate::switch::meta::FrameMeta;
use crate::switch::{Egress, PortId, Switch};
use crate::xenbus::backend::VifId;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

/// Frames queued towards the management stack at most.
pub(super) const MGMT_QUEUE: usize = 256;

/// The management stack's port on the switch: two bounded queues.
#[derive(Default)]
pub(super) struct QueuePort {
    pub mac: [u8; 6],
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    pub spare: Vec<Vec<u8>>,
    pub stats: PortStats,
}

impl QueuePort {
    pub fn buf(&mut self, len: usize) -> Vec<u8> {
        let mut b = self.spare.pop().unwrap_or_default();
        b.clear();
        b.resize(len, 0);
        b
    }
}

impl Port for QueuePort {
    fn name(&self) -> &'static str {
        "mgmt"
    }
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn link_up(&self) -> bool {
        true
    }
    fn service(&mut self, _now_ns: u64) -> bool {
        false
    }
    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let b = self.rx.pop_front()?;
        self.stats.rx.packets += 1;
        self.stats.rx.bytes += b.len() as u64;
        let r = f(&b);
        self.spare.push(b);
        Some(r)
    }
    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F> {
        if self.tx.len() >= MGMT_QUEUE || len > 1518 {
            self.stats.tx.drops += 1;
            return Err(f);
        }
        let mut b = self.buf(len);
        let r = f(&mut b);
        self.stats.tx.packets += 1;
        self.stats.tx.bytes += len as u64;
        self.tx.push_back(b);
        Ok(r)
    }
    fn can_transmit(&self) -> bool {
        self.tx.len() < MGMT_QUEUE
    }
    fn stats(&self) -> PortStats {
        self.stats
    }
}

/// The NIC on its switch port.
pub(super) struct NicPort {
    pub dev: NicDev,
    pub port: PortId,
}

/// Delivers switch output to vifs, the NIC and the management queue.
pub(super) struct Out<'a> {
    /// The port the frames being forwarded came in on (each vif's RX
    /// queue gives every source a fair share).
    pub ingress: PortId,
    pub slots: &'a mut BTreeMap<VifId, Slot>,
    pub by_port: &'a BTreeMap<PortId, VifId>,
    pub mgmt_port: Option<PortId>,
    pub mgmt: &'a mut QueuePort,
    /// None while the NIC itself is the ingress (the switch never sends a
    /// frame back out of the port it came in on).
    pub nic: Option<&'a mut NicPort>,
}

impl Egress for Out<'_> {
    fn wants_multicast(&mut self, port: PortId, group: &[u8; 6]) -> bool {
        match self.by_port.get(&port).and_then(|id| self.slots.get(id)) {
            Some(s) => s.vif.wants(*group),
            None => true,
        }
    }

    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        if let Some(n) = self.nic.as_deref_mut()
            && n.port == port
        {
            return n.dev.nic.transmit(frame.len(), |b| b.copy_from_slice(frame)).is_ok();
        }
        if Some(port) == self.mgmt_port {
            if self.mgmt.rx.len() >= MGMT_QUEUE {
                self.mgmt.stats.rx.drops += 1;
                return false;
            }
            let mut b = self.mgmt.buf(frame.len());
            b.copy_from_slice(frame);
            self.mgmt.rx.push_back(b);
            return true;
        }
        match self.by_port.get(&port).and_then(|id| self.slots.get_mut(id)) {
            Some(s) => s.vif.enqueue_rx_from(RxSource(self.ingress.0), frame, meta.into()),
            None => false,
        }
    }
}

/// Where a vif's TX queue hands its frames: one copy straight into the
/// guest the switch sends a frame to, when the switch and that guest's vif
/// can tell from the headers (`Switch::direct_target`,
/// `Vif::place_direct`); else the whole frame through the switch.
pub(super) struct VifSink<'a> {
    pub out: Out<'a>,
    pub switch: &'a mut Switch,
    pub turn: &'a mut Turn<FrameBuf>,
    pub now: u64,
}

impl TxSink for VifSink<'_> {
    fn read_header(&self, at: usize, out: &mut [u8]) -> bool {
        self.turn.read_header(at, out)
    }

    fn offer(&mut self, hdr: &[u8], frame: &DirectFrame<'_>) -> bool {
        let ingress = self.out.ingress;
        let meta = FrameMeta::from(frame.meta);
        let Some(target) = self.switch.direct_target(ingress, hdr, frame.len, &meta, self.now) else { return false };
        let Some(s) = self.out.by_port.get(&target).and_then(|id| self.out.slots.get_mut(id)) else { return false };
        let frame = DirectFrame { ticket: TxTicket { port: ingress.0, ..frame.ticket }, ..*frame };
        if !s.vif.place_direct(target.0, hdr, &frame, self.turn) {
            return false;
        }
        self.switch.commit_direct(ingress, target, hdr, frame.len, self.now);
        true
    }

    fn deliver(&mut self, frame: &[u8], meta: crate::netback::FrameMeta) {
        let _ = self.switch.forward(self.out.ingress, frame, &FrameMeta::from(meta), self.now, &mut self.out);
    }
}
