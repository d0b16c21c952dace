//! The data plane: every connected vif, the NIC (when there is one) and the
//! management stack are ports of one switch. Implements `VifHost` for the
//! xenbus backend (map rings, bind event channels, create the `Vif`, plug it
//! into the switch) and the per-loop polling. Without Xen (bare QEMU) it is
//! the NIC and the management stack alone, through the same switch.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::drivers::port::{Port, PortStats};
use crate::mgmt::{Mgmt, MgmtConfig};
use crate::net::{NIC_HOUSEKEEPING_NS, NIC_POLL_NS, NicDev};
use crate::netback::{Features, QueueRings, RxSource, TxStaging, Vif, VifConfig};
use crate::platform::bufpool::{BUF_FRAMES, FrameBuf, FramePool};
use crate::platform::irq::IrqFlag;
use crate::platform::xen::{self, MappedGrant, XenGrantOps};
use crate::switch::meta::{FrameMeta, PortCaps};
use crate::switch::{Egress, PortConfig, PortId, Switch, SwitchConfig};
use crate::xen::EvtchnPort;
use crate::xenbus::backend::{EventChannels, FrontendInfo, QueueInfo, VifHost, VifId};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use log::{info, warn};

/// Frames queued towards the management stack at most.
const MGMT_QUEUE: usize = 256;

/// One queue's mapped rings and bound event channels.
struct QueueSlot {
    tx_evt: EvtchnPort,
    rx_evt: EvtchnPort,
    maps: [MappedGrant; 2],
    more: bool,
}

impl QueueSlot {
    /// Maps the rings and binds the event channels of one queue; on error
    /// undoes what it did.
    fn open(frontend: crate::xen::DomId, q: &QueueInfo) -> Result<Self, String> {
        let tx_map = xen::map_grant(frontend, q.tx_ring_ref).map_err(|e| format!("map tx ring: {e}"))?;
        let rx_map = match xen::map_grant(frontend, q.rx_ring_ref) {
            Ok(m) => m,
            Err(e) => {
                unmap_all([tx_map]);
                return Err(format!("map rx ring: {e}"));
            }
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
            Ok((tx_evt, rx_evt)) => Ok(Self { tx_evt, rx_evt, maps: [tx_map, rx_map], more: true }),
            Err(e) => {
                unmap_all([tx_map, rx_map]);
                Err(e)
            }
        }
    }

    /// Closes the event channels and unmaps the rings (after the vif let
    /// go of its views of them).
    fn close(self) {
        xen::close_counted(self.tx_evt);
        if self.rx_evt != self.tx_evt {
            xen::close_counted(self.rx_evt);
        }
        unmap_all(self.maps);
    }
}

fn unmap_all<const N: usize>(maps: [MappedGrant; N]) {
    for m in maps {
        if let Err(e) = xen::unmap_grant(m) {
            warn!("netback: grant unmap failed: {e}");
        }
    }
}

struct Slot {
    vif: Vif<FrameBuf>,
    port: PortId,
    queues: Vec<QueueSlot>,
}

/// The management stack's port on the switch: two bounded queues.
#[derive(Default)]
struct QueuePort {
    mac: [u8; 6],
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    stats: PortStats,
}

impl QueuePort {
    fn buf(&mut self, len: usize) -> Vec<u8> {
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
struct NicPort {
    dev: NicDev,
    port: PortId,
}

/// TX staging buffers shared by all vifs (64 KiB each).
const TX_STAGING: usize = 16;

/// Frames taken from the NIC per poll at most, so vifs are not starved.
const NIC_BUDGET: usize = 128;

/// Delivers switch output to vifs, the NIC and the management queue.
struct Out<'a> {
    /// The port the frames being forwarded came in on (each vif's RX
    /// queue gives every source a fair share).
    ingress: PortId,
    slots: &'a mut BTreeMap<VifId, Slot>,
    by_port: &'a BTreeMap<PortId, VifId>,
    mgmt_port: Option<PortId>,
    mgmt: &'a mut QueuePort,
    /// None while the NIC itself is the ingress (the switch never sends a
    /// frame back out of the port it came in on).
    nic: Option<&'a mut NicPort>,
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

/// The data plane.
pub struct DataPlane {
    switch: Switch,
    pool: FramePool,
    slots: BTreeMap<VifId, Slot>,
    by_port: BTreeMap<PortId, VifId>,
    mgmt: Option<Mgmt>,
    mgmt_q: QueuePort,
    mgmt_port: Option<PortId>,
    /// When the management stack next needs a poll.
    mgmt_at: Option<u64>,
    nic: Option<NicPort>,
    /// Taken from the pool when the first vif connects, kept after.
    staging: Option<TxStaging<FrameBuf>>,
}

impl DataPlane {
    /// A switch with the NIC (if any) and the management stack on it. The
    /// stack runs when an address is configured or a NIC is present, with
    /// the NIC's MAC, else a locally administered one from `domid`.
    pub fn new(cfg: &Config, domid: u16, nic: Option<NicDev>, now: u64) -> Self {
        let seed = crate::platform::cpu::rdtsc();
        let mut switch = Switch::new(SwitchConfig { hash_seed: seed, ..SwitchConfig::default() });
        let nic = nic.and_then(|dev| {
            let name = String::from(dev.nic.name());
            match switch.add_port(PortConfig { name, allowed_src: None, caps: PortCaps::plain(1500) }) {
                Ok(port) => {
                    info!("switch: {} on port {}", dev.nic.name(), port.0);
                    Some(NicPort { dev, port })
                }
                Err(e) => {
                    warn!("switch: no port for the NIC: {e:?}");
                    None
                }
            }
        });
        // Locally administered, unicast: 02:58:56 ("XV") + domid.
        let mac = nic.as_ref().map_or([0x02, 0x58, 0x56, 0x00, (domid >> 8) as u8, domid as u8], |n| n.dev.nic.mac());
        let mut mgmt_q = QueuePort { mac, ..QueuePort::default() };
        let mut mgmt = None;
        let mut mgmt_port = None;
        if cfg.ip.is_some() || nic.is_some() {
            match switch.add_port(PortConfig {
                name: "mgmt".into(),
                allowed_src: Some(mac),
                caps: PortCaps::plain(1500),
            }) {
                Ok(p) => {
                    mgmt = Some(Mgmt::new(&mut mgmt_q, MgmtConfig { ip: cfg.ip, gw: cfg.gw }, now));
                    mgmt_port = Some(p);
                    info!(
                        "switch: management stack on port {} (mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
                        p.0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
                    );
                }
                Err(e) => warn!("switch: no port for the management stack: {e:?}"),
            }
        }
        Self {
            switch,
            pool: FramePool::new(),
            slots: BTreeMap::new(),
            by_port: BTreeMap::new(),
            mgmt,
            mgmt_q,
            mgmt_port,
            mgmt_at: None,
            nic,
            staging: None,
        }
    }

    /// Polls the NIC, every vif and the management stack; true when
    /// anything moved.
    pub fn poll(&mut self, now: u64) -> bool {
        let gnt = XenGrantOps;
        let mut busy = false;
        let Self { switch, slots, by_port, mgmt, mgmt_q, mgmt_port, mgmt_at, nic, staging, .. } = self;
        if let Some(n) = nic.as_mut() {
            let fired = n.dev.irq.as_ref().is_some_and(IrqFlag::take);
            busy |= n.dev.nic.service(now);
            let ingress = n.port;
            for _ in 0..NIC_BUDGET {
                let mut out = Out { ingress, slots, by_port, mgmt_port: *mgmt_port, mgmt: mgmt_q, nic: None };
                let got = n.dev.nic.receive(|frame| {
                    let _ = switch.forward(ingress, frame, &FrameMeta::PLAIN, now, &mut out);
                });
                if got.is_none() {
                    break;
                }
                busy = true;
            }
            if fired && let Some(irq) = &n.dev.irq {
                irq.unmask();
            }
        }
        let ids: Vec<VifId> = if staging.is_some() { slots.keys().copied().collect() } else { Vec::new() };
        for id in ids {
            let Some(staging) = staging.as_ref() else { break };
            let Some(mut slot) = slots.remove(&id) else { continue };
            for (q, qs) in slot.queues.iter_mut().enumerate() {
                let kicked = xen::take_fired(qs.tx_evt) | xen::take_fired(qs.rx_evt);
                if !(kicked || qs.more) {
                    continue;
                }
                let ingress = slot.port;
                let mut out = Out { ingress, slots, by_port, mgmt_port: *mgmt_port, mgmt: mgmt_q, nic: nic.as_mut() };
                let o = slot.vif.poll_tx(q, &gnt, staging, &mut |frame, meta| {
                    let _ = switch.forward(ingress, frame, &FrameMeta::from(meta), now, &mut out);
                });
                if o.notify {
                    let _ = xen::evtchn_send(qs.tx_evt);
                }
                qs.more = o.more;
                busy |= o.progress || o.more;
            }
            slots.insert(id, slot);
        }
        if let Some(m) = mgmt.as_mut() {
            let sw: &Switch = switch;
            // The metrics show the NIC's driver counters when there is one.
            let shown = nic.as_ref().map_or((mgmt_q.name(), mgmt_q.stats()), |n| (n.dev.nic.name(), n.dev.nic.stats()));
            busy |= m.poll_with_metrics(mgmt_q, now, shown, &|out| sw.render_prometheus(out));
            while let Some(frame) = mgmt_q.tx.pop_front() {
                if let Some(p) = *mgmt_port {
                    let mut out =
                        Out { ingress: p, slots, by_port, mgmt_port: *mgmt_port, mgmt: mgmt_q, nic: nic.as_mut() };
                    let _ = switch.forward(p, &frame, &FrameMeta::PLAIN, now, &mut out);
                }
                mgmt_q.spare.push(frame);
                busy = true;
            }
            *mgmt_at = m.poll_at(now);
        }
        // Every loop: the guest may have posted RX buffers without a kick.
        for slot in slots.values_mut() {
            for (q, qs) in slot.queues.iter().enumerate() {
                let o = slot.vif.poll_rx(q, &gnt);
                if o.notify {
                    let _ = xen::evtchn_send(qs.rx_evt);
                }
                busy |= o.progress;
            }
        }
        busy
    }

    /// When the data plane next needs a poll without an interrupt: the
    /// management stack's timers, and the NIC's polling or housekeeping.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let nic = self.nic.as_ref().map(|n| now + if n.dev.irq.is_some() { NIC_HOUSEKEEPING_NS } else { NIC_POLL_NS });
        match (self.mgmt_at, nic) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The switch.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Vifs connected.
    pub fn vifs(&self) -> usize {
        self.slots.len()
    }

    /// A one-line resource report: mapped grants, bound event channels,
    /// packet buffers, heap and frames in use.
    pub fn resources(&self) -> String {
        let (grants, evtchns) = xen::resources();
        let (heap, _) = crate::platform::heap::usage();
        let f = crate::platform::frames::stats();
        format!(
            "vifs={} grants={grants} evtchns={evtchns} bufs={} heap={heap} frames={}",
            self.slots.len(),
            self.pool.in_use,
            f.used
        )
    }

    /// Netback counters per vif, as (xenstore key, text).
    pub fn vif_stats(&self) -> Vec<(String, String)> {
        self.slots
            .iter()
            .map(|(id, s)| {
                let st = s.vif.stats();
                let text = format!(
                    "queues={} from_guest={} from_guest_bytes={} from_guest_errors={} to_guest={} to_guest_bytes={} \
                     to_guest_drops={} to_guest_queue_full={} to_guest_over_share={} to_guest_errors={} \
                     rx_queued_bytes={} rx_stalls={} copies={} disabled={}",
                    s.vif.queues(),
                    st.from_guest.packets,
                    st.from_guest.bytes,
                    st.from_guest.errors,
                    st.to_guest.packets,
                    st.to_guest.bytes,
                    st.to_guest.drops,
                    st.rx_queue_full,
                    st.rx_over_share,
                    st.to_guest.errors,
                    s.vif.rx_queued_bytes(),
                    st.rx_stalls,
                    st.copy_hypercalls,
                    s.vif.disabled().is_some()
                );
                (format!("data/xvif/vifs/vif{}_{}", id.frontend.0, id.devid), text)
            })
            .collect()
    }
}

impl VifHost for DataPlane {
    fn connect(&mut self, id: VifId, mac: [u8; 6], fe: &FrontendInfo) -> Result<(), String> {
        self.disconnect(id);
        let mut queues: Vec<QueueSlot> = Vec::with_capacity(fe.queues.len());
        for (i, q) in fe.queues.iter().enumerate() {
            match QueueSlot::open(id.frontend, q) {
                Ok(s) => queues.push(s),
                Err(e) => {
                    queues.into_iter().for_each(QueueSlot::close);
                    return Err(format!("queue {i}: {e}"));
                }
            }
        }
        let features = Features {
            sg: fe.sg,
            gso_tcpv4: fe.gso_tcpv4 && fe.sg,
            gso_tcpv6: fe.gso_tcpv6 && fe.sg,
            ipv4_csum_offload: !fe.no_csum_offload,
            ipv6_csum_offload: fe.ipv6_csum_offload,
            multicast_control: fe.multicast_control,
        };
        let mut cfg = VifConfig::new(id.frontend, mac, features);
        // About the same RX buffers per vif whatever the queue count, each
        // queue's budget all of its buffers' bytes.
        cfg.tx_batch = TX_STAGING;
        cfg.size_rx(queues.len(), BUF_FRAMES as usize * crate::netif::PAGE_SIZE);
        if self.staging.is_none() {
            match TxStaging::new(&mut self.pool, TX_STAGING) {
                Ok(s) => self.staging = Some(s),
                Err(e) => {
                    queues.into_iter().for_each(QueueSlot::close);
                    return Err(format!("tx staging buffers: {e:?}"));
                }
            }
        }
        let rings = queues
            .iter()
            .map(|q| {
                let r: QueueRings = (Box::new(q.maps[0].page()), Box::new(q.maps[1].page()));
                r
            })
            .collect();
        let vif = match Vif::with_queues(cfg, rings, &mut self.pool) {
            Ok(v) => v,
            Err(e) => {
                queues.into_iter().for_each(QueueSlot::close);
                return Err(format!("vif: {e:?}"));
            }
        };
        let caps = PortCaps {
            accepts_partial_csum: features.ipv4_csum_offload && features.ipv6_csum_offload,
            gso_tcpv4: features.gso_tcpv4,
            gso_tcpv6: features.gso_tcpv6,
            mtu: 1500,
        };
        let name = format!("vif{}.{}", id.frontend.0, id.devid);
        let port = match self.switch.add_port(PortConfig { name, allowed_src: Some(mac), caps }) {
            Ok(p) => p,
            Err(e) => {
                drop(vif.release(&mut self.pool));
                queues.into_iter().for_each(QueueSlot::close);
                return Err(format!("switch port: {e:?}"));
            }
        };
        self.by_port.insert(port, id);
        let nq = queues.len();
        self.slots.insert(id, Slot { vif, port, queues });
        info!(
            "netback: vif{}.{} on switch port {} with {nq} queue(s) ({})",
            id.frontend.0,
            id.devid,
            port.0,
            self.resources()
        );
        Ok(())
    }

    fn disconnect(&mut self, id: VifId) {
        let Some(slot) = self.slots.remove(&id) else { return };
        self.by_port.remove(&slot.port);
        if let Ok(c) = self.switch.remove_port(slot.port) {
            info!(
                "netback: vif{}.{} closed: rx {} pkts, tx {} pkts, {} spoofed",
                id.frontend.0, id.devid, c.rx_packets, c.tx_packets, c.spoofed
            );
        }
        if let Some(e) = slot.vif.disabled() {
            warn!("netback: vif{}.{} had been disabled: {e:?}", id.frontend.0, id.devid);
        }
        // Release buffers and the ring views before unmapping the rings.
        drop(slot.vif.release(&mut self.pool));
        slot.queues.into_iter().for_each(QueueSlot::close);
        // Buffers stay in the pool for the next vif: the frame allocator
        // cannot rebuild 64 KiB contiguous runs from returned single frames.
        info!("netback: vif{}.{} released ({})", id.frontend.0, id.devid, self.resources());
    }
}
