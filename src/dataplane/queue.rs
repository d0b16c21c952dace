//! One vif's hold on Xen resources: each queue's mapped rings and bound
//! event channels, the control ring's, and the vif with its switch port.
#![forbid(unsafe_code)]

use crate::netback::Vif;
use crate::platform::bufpool::FrameBuf;
use crate::platform::xen::{self, MappedGrant};
use crate::switch::PortId;
use crate::xen::EvtchnPort;
use crate::xenbus::backend::{CtrlInfo, EventChannels, QueueInfo};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// One queue's mapped rings and bound event channels.
pub(super) struct QueueSlot {
    pub tx_evt: EvtchnPort,
    pub rx_evt: EvtchnPort,
    /// The TX and RX ring mappings until the vif takes them (it then owns
    /// them; they are unmapped when it lets them go).
    pub rings: Option<(MappedGrant, MappedGrant)>,
    /// The last TX poll left work: poll again without an event.
    pub more: bool,
    /// A packet waits on this queue's TX ring for transmit credit: poll
    /// again once the vif's `tx_wait_until` has passed, not before.
    pub credit_wait: bool,
    /// This turn read its TX ring: its packets are to be handed on.
    pub staged: bool,
}

impl QueueSlot {
    /// Maps the rings and binds the event channels of one queue; on error
    /// undoes what it did.
    pub fn open(frontend: crate::xen::DomId, q: &QueueInfo) -> Result<Self, String> {
        let tx_map = xen::map_grant(frontend, q.tx_ring_ref).map_err(|e| format!("map tx ring: {e}"))?;
        let rx_map = match xen::map_grant(frontend, q.rx_ring_ref) {
            Ok(m) => m,
            // Dropping `tx_map` unmaps it.
            Err(e) => return Err(format!("map rx ring: {e}")),
        };
        let bind = |p| xen::bind_counted(frontend, p);
        let evts = match q.evtchn {
            EventChannels::Single(p) => bind(p).map(|l| (l, l)).map_err(|e| format!("bind event channel: {e}")),
            EventChannels::Split { tx, rx } => match (bind(tx), bind(rx)) {
                (Ok(t), Ok(r)) => Ok((t, r)),
                (t, r) => {
                    for p in [t, r].into_iter().flatten() {
                        xen::close_counted(p);
                    }
                    Err("bind split event channels".into())
                }
            },
        };
        match evts {
            Ok((tx_evt, rx_evt)) => Ok(Self {
                tx_evt,
                rx_evt,
                rings: Some((tx_map, rx_map)),
                more: true,
                credit_wait: false,
                staged: false,
            }),
            Err(e) => Err(e),
        }
    }

    /// Closes the event channels; rings the vif never took are unmapped
    /// as they drop.
    pub fn close(self) {
        xen::close_counted(self.tx_evt);
        if self.rx_evt != self.tx_evt {
            xen::close_counted(self.rx_evt);
        }
    }
}

/// The control ring's mapping and bound event channel.
pub(super) struct CtrlSlot {
    pub evt: EvtchnPort,
    /// The ring mapping until the vif takes it.
    pub ring: Option<MappedGrant>,
    /// The last poll left requests: poll again without an event.
    pub more: bool,
}

impl CtrlSlot {
    /// Maps the control ring and binds its event channel; on error undoes
    /// what it did.
    pub fn open(frontend: crate::xen::DomId, c: &CtrlInfo) -> Result<Self, String> {
        let ring = xen::map_grant(frontend, c.ring_ref).map_err(|e| format!("map control ring: {e}"))?;
        // On error, dropping `ring` unmaps it.
        let evt = xen::bind_counted(frontend, c.evtchn).map_err(|e| format!("bind control event channel: {e}"))?;
        Ok(Self { evt, ring: Some(ring), more: true })
    }

    /// Closes the event channel; a ring the vif never took is unmapped as
    /// it drops.
    pub fn close(self) {
        xen::close_counted(self.evt);
    }
}

/// A connected vif.
pub(super) struct Slot {
    pub vif: Vif<FrameBuf>,
    pub port: PortId,
    pub queues: Vec<QueueSlot>,
    /// The control ring, when the frontend offered one.
    pub ctrl: Option<CtrlSlot>,
    /// The queue TX polling starts at, rotated every turn so that queues
    /// sharing the vif's transmit credit take turns at it.
    pub first_queue: usize,
}
