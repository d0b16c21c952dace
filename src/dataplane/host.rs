//! The data plane as the xenbus backend's `VifHost`: connecting a vif maps
//! its rings (and its control ring, when offered), binds its event
//! channels, builds the `Vif` with its rate limit and plugs it into the
//! switch on its segment with its MAC and IP anti-spoofing; disconnecting
//! undoes all of it.
#![forbid(unsafe_code)]

use super::DataPlane;
use super::queue::{CtrlSlot, QueueSlot, Slot};
use crate::netback::{Features, QueueRings, Rate, Turn, TxStaging, Vif, VifConfig};
use crate::platform::bufpool::BUF_FRAMES;
use crate::switch::PortConfig;
use crate::switch::meta::PortCaps;
use crate::xenbus::backend::{FrontendInfo, VifHost, VifId, VifParams};
use crate::xenbus::params::describe;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use log::{info, warn};

impl VifHost for DataPlane {
    fn connect(&mut self, id: VifId, mac: [u8; 6], fe: &FrontendInfo, params: &VifParams) -> Result<(), String> {
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
        let mut ctrl = match fe.ctrl.as_ref().map(|c| CtrlSlot::open(id.frontend, c)).transpose() {
            Ok(c) => c,
            Err(e) => {
                queues.into_iter().for_each(QueueSlot::close);
                return Err(e);
            }
        };
        // Undoes what was opened, on the way out of a failed connect.
        let undo = |queues: Vec<QueueSlot>, ctrl: Option<CtrlSlot>| {
            queues.into_iter().for_each(QueueSlot::close);
            ctrl.into_iter().for_each(CtrlSlot::close);
        };
        let features = Features {
            sg: fe.sg,
            gso_tcpv4: fe.gso_tcpv4 && fe.sg,
            gso_tcpv6: fe.gso_tcpv6 && fe.sg,
            ipv4_csum_offload: !fe.no_csum_offload,
            ipv6_csum_offload: fe.ipv6_csum_offload,
            multicast_control: fe.multicast_control,
        };
        let mut cfg = VifConfig::new(id.frontend, mac, features);
        // About the same RX budget per vif whatever the queue count, each
        // queue's budget all of its buffer slots' bytes (filled from the
        // shared pool only while frames wait).
        cfg.tx_batch = self.staging_bufs;
        cfg.size_rx(queues.len(), BUF_FRAMES as usize * crate::netif::PAGE_SIZE);
        if self.staging.is_none() {
            let mut pool = self.pool.borrow_mut();
            match TxStaging::new(pool.backing(), self.staging_bufs) {
                Ok(s) => {
                    self.staging = Some(s);
                    // The headers of one-copy frames; without it every
                    // frame is copied whole.
                    self.turn = Turn::new(pool.backing().alloc());
                }
                Err(e) => {
                    undo(queues, ctrl);
                    return Err(format!("tx staging buffers: {e:?}"));
                }
            }
        }
        // The vif takes the mappings themselves: they unmap when it releases
        // and drops them, so no view of a ring outlives its mapping.
        let rings = queues
            .iter_mut()
            .filter_map(|q| q.rings.take())
            .map(|(tx, rx)| {
                let r: QueueRings = (Box::new(tx), Box::new(rx));
                r
            })
            .collect();
        let mut vif = match Vif::with_queues(cfg, rings, &self.pool) {
            Ok(v) => v,
            Err(e) => {
                undo(queues, ctrl);
                return Err(format!("vif: {e:?}"));
            }
        };
        if let Some(ring) = ctrl.as_mut().and_then(|c| c.ring.take()) {
            vif.attach_ctrl(Box::new(ring));
        }
        vif.set_rate(params.rate, crate::platform::time::now_ns());
        let caps = PortCaps {
            accepts_partial_csum: features.ipv4_csum_offload && features.ipv6_csum_offload,
            gso_tcpv4: features.gso_tcpv4,
            gso_tcpv6: features.gso_tcpv6,
            mtu: params.port_mtu(features.sg),
        };
        let name = format!("vif{}.{}", id.frontend.0, id.devid);
        let port_cfg = PortConfig {
            name,
            allowed_src: Some(mac),
            allowed_ip: params.ip.clone(),
            caps,
            segment: params.bridge.clone(),
        };
        let port = match self.switch.add_port(port_cfg) {
            Ok(p) => p,
            Err(e) => {
                drop(vif.release());
                undo(queues, ctrl);
                return Err(format!("switch port: {e:?}"));
            }
        };
        self.by_port.insert(port, id);
        let nq = queues.len();
        let with_ctrl = if ctrl.is_some() { ", control ring" } else { "" };
        self.slots.insert(id, Slot { vif, port, queues, ctrl, first_queue: 0 });
        info!(
            "netback: vif{}.{} on switch port {} with {nq} queue(s){with_ctrl}, {} ({})",
            id.frontend.0,
            id.devid,
            port.0,
            describe(params),
            self.resources()
        );
        Ok(())
    }

    fn disconnect(&mut self, id: VifId) {
        let Some(slot) = self.slots.remove(&id) else { return };
        self.by_port.remove(&slot.port);
        if let Ok(c) = self.switch.remove_port(slot.port) {
            info!(
                "netback: vif{}.{} closed: rx {} pkts, tx {} pkts, {} spoofed, {} spoofed_ip",
                id.frontend.0, id.devid, c.rx_packets, c.tx_packets, c.spoofed, c.spoofed_ip
            );
        }
        if let Some(e) = slot.vif.disabled() {
            warn!("netback: vif{}.{} had been disabled: {e:?}", id.frontend.0, id.devid);
        }
        // Release buffers and the ring views before unmapping the rings.
        drop(slot.vif.release());
        slot.queues.into_iter().for_each(QueueSlot::close);
        slot.ctrl.into_iter().for_each(CtrlSlot::close);
        // Buffers stay in the pool for the next vif: the frame allocator
        // cannot rebuild 64 KiB contiguous runs from returned single frames.
        info!("netback: vif{}.{} released ({})", id.frontend.0, id.devid, self.resources());
    }

    fn set_rate(&mut self, id: VifId, rate: Option<Rate>) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.vif.set_rate(rate, crate::platform::time::now_ns());
        // Queues waiting on the old limit look again on the next turn.
        for q in &mut slot.queues {
            q.more |= q.credit_wait;
        }
    }
}
