//! The data plane: every connected vif, the NIC (when there is one) and the
//! management stack are ports of one switch. `host` implements `VifHost`
//! for the xenbus backend (map rings, bind event channels, create the
//! `Vif`, plug it into the switch); this file holds the per-loop polling
//! and the deadline the loop sleeps until. Without Xen (bare QEMU) it is
//! the NIC and the management stack alone, through the same switch.
//!
//! The NIC and the management stack join the segment named by xvif's
//! `bridge=` command-line option; each vif joins the one its `bridge` key
//! names. Other segments are not carried on the NIC (no 802.1Q tagging):
//! a vif on a segment the NIC is not on reaches only its segment's vifs.
#![forbid(unsafe_code)]

mod host;
mod ports;
mod queue;
mod shell;

use crate::config::Config;
use crate::drivers::port::Port;
use crate::mgmt::{Mgmt, MgmtConfig};
use crate::net::{NIC_HOUSEKEEPING_NS, NIC_POLL_NS, NicDev};
use crate::netback::pool::{RX_FEW, split_buffers};
use crate::netback::{RxPool, SharedRxPool, Turn, TxStaging};
use crate::platform::bufpool::{BUF_BYTES, BUF_FRAMES, FrameBuf, FramePool};
use crate::platform::irq::IrqFlag;
use crate::platform::xen::{self, XenGrantOps};
use crate::switch::meta::{FrameMeta, PortCaps};
use crate::switch::{PortConfig, PortId, Switch, SwitchConfig};
use crate::xen::evtchn::NotifyBatch;
use crate::xenbus::backend::VifId;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use log::{info, warn};
use ports::{NicPort, Out, QueuePort, VifSink};
use queue::Slot;

/// Frames the receive-buffer pool leaves to everything else (ring and
/// grant mappings, page tables): 1 MiB.
const RESERVED_FRAMES: u64 = 256;

/// Frames taken from the NIC per poll at most, so vifs are not starved.
const NIC_BUDGET: usize = 128;

/// The data plane.
pub struct DataPlane {
    switch: Switch,
    /// The receive buffers all vif queues share; its backing pool also
    /// gives the TX staging buffers.
    pool: SharedRxPool<FrameBuf>,
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
    /// How many staging buffers that is (64 KiB each; fewer in a small
    /// domain, so it keeps receive buffers), and each vif's TX batch.
    staging_bufs: usize,
    /// The guests this turn owes a notification, sent together at its end.
    notify: NotifyBatch,
    /// The grant copies of a turn into guests' buffers, issued together.
    turn: Turn<FrameBuf>,
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
            let segment = cfg.bridge.clone();
            match switch.add_port(PortConfig { name, caps: PortCaps::plain(1500), segment, ..PortConfig::default() }) {
                Ok(port) => {
                    info!("switch: {} on port {}, segment {}", dev.nic.name(), port.0, cfg.bridge);
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
                segment: cfg.bridge.clone(),
                allowed_ip: None,
            }) {
                Ok(p) => {
                    mgmt = Some(Mgmt::new(&mut mgmt_q, MgmtConfig { ip: cfg.ip, gw: cfg.gw }, now));
                    mgmt_port = Some(p);
                    info!(
                        "switch: management stack on port {}, segment {} (mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x})",
                        p.0, cfg.bridge, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
                    );
                }
                Err(e) => warn!("switch: no port for the management stack: {e:?}"),
            }
        }
        crate::shell::set_served();
        let (staging_bufs, rx_limit) = buffer_budget();
        info!("netback: {rx_limit} receive buffers and {staging_bufs} TX staging buffers of {} KiB", BUF_BYTES / 1024);
        if rx_limit < RX_FEW {
            warn!(
                "netback: memory for only {rx_limit} receive buffers: frames for guests will be dropped \
                 (rx_bufs_refused); give this domain more memory"
            );
        }
        Self {
            switch,
            pool: RxPool::shared(Box::new(FramePool::new()), BUF_BYTES, rx_limit),
            slots: BTreeMap::new(),
            by_port: BTreeMap::new(),
            mgmt,
            mgmt_q,
            mgmt_port,
            mgmt_at: None,
            nic,
            staging: None,
            staging_bufs,
            notify: NotifyBatch::new(),
            turn: Turn::new(None),
        }
    }

    /// Polls the NIC, every vif and the management stack; true when
    /// anything moved. The guests' notifications go out together at the
    /// end, one hypercall for all of them.
    pub fn poll(&mut self, now: u64) -> bool {
        self.serve_console();
        let gnt = XenGrantOps;
        let mut busy = false;
        let Self { switch, slots, by_port, mgmt, mgmt_q, mgmt_port, mgmt_at, nic, staging, notify, turn, .. } = self;
        if let Some(n) = nic.as_mut() {
            let fired = n.dev.irq.as_ref().is_some_and(IrqFlag::take);
            if fired {
                n.dev.nic.note_interrupt();
            }
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
        // Every vif's TX queues first read their rings and queue the
        // headers' copies, which go to Xen in one batch for all vifs.
        for id in ids.iter() {
            let Some(staging) = staging.as_ref() else { break };
            let Some(slot) = slots.get_mut(id) else { continue };
            // While a packet waits for transmit credit the vif's queues
            // are not polled (their events are taken and the refill time is
            // the loop's deadline); from then on, the waiting ones are.
            // Control requests first: a new hash configuration applies to
            // the frames this turn forwards.
            if let Some(c) = slot.ctrl.as_mut()
                && (xen::take_fired(c.evt) || c.more)
            {
                let o = slot.vif.poll_ctrl(&gnt, staging);
                if o.notify {
                    notify.add(c.evt);
                }
                c.more = o.more;
                busy |= o.progress || o.more;
            }
            let wait = slot.vif.tx_wait_until();
            let nq = slot.queues.len().max(1);
            let first = slot.first_queue % nq;
            slot.first_queue = (first + 1) % nq;
            for q in (first..nq).chain(0..first) {
                let Some(qs) = slot.queues.get_mut(q) else { continue };
                let kicked = xen::take_fired(qs.tx_evt) | xen::take_fired(qs.rx_evt);
                let credit_due = qs.credit_wait && wait.is_none_or(|t| now >= t);
                if (qs.credit_wait && !credit_due) || !(kicked || qs.more || credit_due) {
                    continue;
                }
                let o = slot.vif.stage_tx(q, now, Some(&mut *turn), slot.port.0, staging);
                qs.staged = true;
                qs.more = o.more;
                qs.credit_wait = o.wait_until.is_some();
                busy |= o.progress || o.more;
            }
        }
        turn.flush_headers(&gnt);
        for t in turn.header_faults() {
            if let Some(s) = by_port.get(&PortId(t.port)).and_then(|id| slots.get_mut(id)) {
                s.vif.header_failed(t);
            }
        }
        // Then each frame goes to the switch: one copy to a vif where it
        // can, else whole.
        for id in ids {
            let Some(staging) = staging.as_ref() else { break };
            let Some(mut slot) = slots.remove(&id) else { continue };
            for (q, qs) in slot.queues.iter_mut().enumerate() {
                if !core::mem::take(&mut qs.staged) {
                    continue;
                }
                let ingress = slot.port;
                let out = Out { ingress, slots, by_port, mgmt_port: *mgmt_port, mgmt: mgmt_q, nic: nic.as_mut() };
                let mut sink = VifSink { out, switch: &mut *switch, turn: &mut *turn, now };
                if slot.vif.deliver_tx(q, &gnt, staging, &mut sink) {
                    notify.add(qs.tx_evt);
                }
            }
            slots.insert(id, slot);
        }
        if let Some(m) = mgmt.as_mut() {
            // The metrics show the NIC's driver counters when there is one.
            let shown = nic.as_ref().map_or((mgmt_q.name(), mgmt_q.stats()), |n| (n.dev.nic.name(), n.dev.nic.stats()));
            busy |= m.poll_with_metrics(mgmt_q, now, shown, &mut *switch);
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
            for q in 0..slot.queues.len() {
                busy |= slot.vif.place_rx(q, slot.port.0, turn).progress;
            }
        }
        // The turn's copies into guests' buffers, then the responses they
        // held (one-copy frames' TX responses among them).
        turn.flush(&gnt);
        for f in turn.faults() {
            let tag = f.tag();
            for port in core::iter::once(tag.rx_port).chain(tag.tx.map(|t| t.port)) {
                if let Some(s) = by_port.get(&PortId(port)).and_then(|id| slots.get_mut(id)) {
                    s.vif.apply_fault(port, f);
                }
            }
        }
        turn.end();
        for slot in slots.values_mut() {
            for (q, qs) in slot.queues.iter().enumerate() {
                if !slot.vif.holding(q) {
                    continue;
                }
                let (tx, rx) = slot.vif.finish_turn(q);
                if tx {
                    notify.add(qs.tx_evt);
                }
                if rx {
                    notify.add(qs.rx_evt);
                }
            }
        }
        notify.send(xen::evtchn_send_many);
        busy
    }

    /// When the data plane next needs a poll without an interrupt: the
    /// management stack's timers, the NIC's polling or housekeeping, and
    /// the transmit-credit refills that packets wait for.
    pub fn next_deadline(&self, now: u64) -> Option<u64> {
        let nic = self.nic.as_ref().map(|n| now + if n.dev.irq.is_some() { NIC_HOUSEKEEPING_NS } else { NIC_POLL_NS });
        let credit = self
            .slots
            .values()
            .filter(|s| s.queues.iter().any(|q| q.credit_wait))
            .filter_map(|s| s.vif.tx_wait_until())
            .min();
        [self.mgmt_at, nic, credit].into_iter().flatten().min()
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
        let p = self.pool.borrow().stats();
        let staging = self.staging.as_ref().map_or(0, TxStaging::len) + usize::from(self.turn.has_arena());
        format!(
            "vifs={} grants={grants} evtchns={evtchns} bufs={} heap={heap} frames={} unmap_failed={} \
             rx_bufs_peak={} rx_bufs_limit={} rx_bufs_refused={} turn_copies={}",
            self.slots.len(),
            p.out + staging,
            f.used,
            xen::unmap_failures(),
            p.peak,
            p.limit,
            p.refused,
            self.turn.hypercalls()
        )
    }

    /// Netback counters per vif, as (xenstore key, text).
    pub fn vif_stats(&self) -> Vec<(String, String)> {
        self.slots.iter().map(|(id, s)| (vif_key(*id), self.vif_text(s))).collect()
    }

    /// One vif's netback counters, as published under its key.
    fn vif_text(&self, s: &Slot) -> String {
        let st = s.vif.stats();
        let (waits, late_ns, lost) = s.vif.rate_waits();
        let hash = s.vif.hash_config();
        let ctrl = s.vif.ctrl_stats().unwrap_or_default();
        format!(
            "queues={} from_guest={} from_guest_bytes={} from_guest_errors={} to_guest={} to_guest_bytes={} \
             to_guest_drops={} to_guest_peer_drops={} to_guest_queue_full={} to_guest_over_share={} to_guest_no_buffer={} to_guest_errors={} \
             rx_queued_bytes={} rx_bufs={} rx_stalls={} copies={} disabled={} disabled_reason={} evtchn_throttled={} rate={} tx_rate_deferred={} \
             rate_waits={} rate_late_ms={} rate_lost_bytes={} segment={} ctrl={} hash={} hash_flags={:#x} \
             hash_mapping={} ctrl_requests={} ctrl_errors={}",
            s.vif.queues(),
            st.from_guest.packets,
            st.from_guest.bytes,
            st.from_guest.errors,
            st.to_guest.packets,
            st.to_guest.bytes,
            st.to_guest.drops,
            st.rx_peer_drops,
            st.rx_queue_full,
            st.rx_over_share,
            st.rx_no_buffer,
            st.to_guest.errors,
            s.vif.rx_queued_bytes(),
            s.vif.rx_buffers_held(),
            st.rx_stalls,
            st.copy_hypercalls,
            s.vif.disabled().is_some(),
            s.vif.disabled().map_or("none", |e| e.name()),
            s.queues
                .iter()
                .map(|q| {
                    let rx = if q.rx_evt == q.tx_evt { 0 } else { xen::throttled(q.rx_evt) };
                    xen::throttled(q.tx_evt) + rx
                })
                .sum::<u64>()
                + s.ctrl.as_ref().map_or(0, |c| xen::throttled(c.evt)),
            s.vif.rate().map_or(String::from("none"), |r| format!("{},{}", r.bytes, r.interval_us)),
            st.tx_rate_deferred,
            waits,
            late_ns / 1_000_000,
            lost,
            self.switch.port_segment(s.port).unwrap_or(""),
            if s.ctrl.is_some() { "yes" } else { "no" },
            hash.algorithm().name(),
            hash.flags(),
            hash.mapping().len(),
            ctrl.requests,
            ctrl.errors,
        )
    }
}

/// The xenstore key (relative to xvif's home) of a vif's netback counters.
fn vif_key(id: VifId) -> String {
    format!("data/xvif/vifs/vif{}_{}", id.frontend.0, id.devid)
}

/// The packet buffers every free frame but a reserve makes, split into
/// (TX staging buffers, how many the shared receive pool may hand out).
fn buffer_budget() -> (usize, usize) {
    let f = crate::platform::frames::stats();
    let free = f.total.saturating_sub(f.used).saturating_sub(RESERVED_FRAMES);
    split_buffers(usize::try_from(free / BUF_FRAMES).unwrap_or(usize::MAX))
}
