//! The switch: a MAC-learning bridge joining the vifs, the NIC and the
//! management stack. It sees only ports, identified by [`PortId`], and never
//! owns a frame: it is lent each ingress frame ([`Switch::forward`]) and
//! lends it on through an [`Egress`], as it is (zero-copy) or adapted by
//! `offload` where an egress port cannot take partial checksums or GSO.
//!
//! Wiring: add each port with [`Switch::add_port`] (a vif with
//! `allowed_src: Some(mac)` from its backend `mac` key, the NIC and the
//! management stack with `None`), then for every received frame call
//! `forward(ingress, frame, meta, now_ns, &mut egress)`, where `egress`
//! transmits to the other ports and answers each vif's multicast filter.
#![forbid(unsafe_code)]

pub mod checksum;
pub mod fdb;
pub mod gso;
pub mod headers;
pub mod meta;
pub mod offload;
pub mod portset;
pub mod stats;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use fdb::{Fdb, Learned};
use meta::{FrameMeta, PortCaps};
use offload::{Adapted, OffloadError};
pub use portset::PortSet;
use stats::{PortCounters, SwitchCounters};

/// Most ports a switch joins.
pub const MAX_PORTS: usize = 64;

/// A switch port's identity (an index below [`MAX_PORTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u8);

/// How a port joins the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Name for metrics and xenstore ("vif3.0", "e1000", "mgmt").
    pub name: String,
    /// When set, frames from this port must carry this source MAC (a vif's
    /// `mac` key); others are dropped and counted as spoofed. The MAC is
    /// also pinned to the port in the FDB.
    pub allowed_src: Option<[u8; 6]>,
    /// What the port can take.
    pub caps: PortCaps,
}

/// Switch parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchConfig {
    /// Bound on learned FDB entries.
    pub fdb_capacity: usize,
    /// FDB ageing time.
    pub ageing_ns: u64,
    /// Key for the FDB hash (anything unpredictable: a TSC read).
    pub hash_seed: u64,
}

impl Default for SwitchConfig {
    fn default() -> Self {
        Self { fdb_capacity: fdb::DEFAULT_CAPACITY, ageing_ns: fdb::DEFAULT_AGEING_NS, hash_seed: 0x5eed }
    }
}

/// Errors of port management.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchError {
    /// All [`MAX_PORTS`] are in use.
    Full,
    /// No such port.
    UnknownPort(PortId),
    /// No room for another fixed MAC in the FDB.
    StaticFull,
}

/// Why an ingress frame was dropped (counted on its port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// The ingress port is not on the switch.
    UnknownPort(PortId),
    /// The ingress port is disabled.
    Disabled,
    /// Shorter than an Ethernet header.
    Runt(usize),
    /// Longer than the ingress port's MTU (non-GSO) or than 64 KiB.
    Oversize(usize),
    /// Multicast or all-zero source MAC.
    BadSource([u8; 6]),
    /// Source MAC is not the port's own.
    Spoofed {
        /// Source MAC of the frame.
        src: [u8; 6],
        /// The port's MAC.
        allowed: [u8; 6],
    },
    /// GSO or partial-checksum metadata its headers do not back.
    BadOffload(OffloadError),
}

/// How a frame was forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the one port its destination is known on.
    Unicast(PortId),
    /// Destination on the ingress port itself: not forwarded.
    Local,
    /// Unknown unicast, flooded.
    Unknown,
    /// Broadcast, flooded.
    Broadcast,
    /// Multicast, flooded to the ports whose filter wants it.
    Multicast,
}

/// The forwarding decision for one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// How.
    pub route: Route,
    /// Egress ports (never the ingress port).
    pub targets: PortSet,
    /// The frame's metadata as checked at ingress (`offload::validate`).
    pub meta: FrameMeta,
}

/// The ports' side of forwarding, implemented by the kernel's wiring.
pub trait Egress {
    /// Whether `port` wants frames to multicast `group` (a vif's
    /// MCAST_ADD/DEL filter). The default takes everything.
    fn wants_multicast(&mut self, port: PortId, group: &[u8; 6]) -> bool {
        let _ = (port, group);
        true
    }
    /// Transmits `frame` on `port`; false when the port refused it (ring
    /// full). `meta` says what the frame is (netif RX flags, GSO extra).
    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool;
}

struct PortState {
    cfg: PortConfig,
    enabled: bool,
    counters: PortCounters,
}

/// The bridge.
pub struct Switch {
    ports: Vec<Option<PortState>>,
    members: PortSet,
    fdb: Fdb,
    counters: SwitchCounters,
    scratch: Vec<u8>,
}

fn mac_at(frame: &[u8], at: usize) -> [u8; 6] {
    frame.get(at..at + 6).and_then(|m| <[u8; 6]>::try_from(m).ok()).unwrap_or([0; 6])
}

/// True for a group (multicast or broadcast) address.
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

impl Switch {
    /// An empty switch. Allocates the FDB and one 64 KiB scratch buffer.
    pub fn new(cfg: SwitchConfig) -> Self {
        Self {
            ports: (0..MAX_PORTS).map(|_| None).collect(),
            members: PortSet::EMPTY,
            fdb: Fdb::new(cfg.fdb_capacity, cfg.ageing_ns, cfg.hash_seed),
            counters: SwitchCounters::default(),
            scratch: vec![0; offload::SCRATCH_LEN],
        }
    }

    fn port(&self, id: PortId) -> Option<&PortState> {
        self.ports.get(usize::from(id.0)).and_then(Option::as_ref)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut PortState> {
        self.ports.get_mut(usize::from(id.0)).and_then(Option::as_mut)
    }

    /// Adds a port (enabled) at the lowest free id.
    pub fn add_port(&mut self, cfg: PortConfig) -> Result<PortId, SwitchError> {
        let idx = self.ports.iter().position(Option::is_none).ok_or(SwitchError::Full)?;
        let id = PortId(idx as u8);
        if let Some(mac) = cfg.allowed_src
            && !self.fdb.add_static(mac, id)
        {
            return Err(SwitchError::StaticFull);
        }
        if let Some(slot) = self.ports.get_mut(idx) {
            *slot = Some(PortState { cfg, enabled: true, counters: PortCounters::default() });
        }
        self.members.insert(id);
        Ok(id)
    }

    /// Removes a port and flushes its FDB entries; returns its last counters.
    pub fn remove_port(&mut self, id: PortId) -> Result<PortCounters, SwitchError> {
        let st = self.ports.get_mut(usize::from(id.0)).and_then(Option::take).ok_or(SwitchError::UnknownPort(id))?;
        self.members.remove(id);
        self.fdb.flush_port(id);
        Ok(st.counters)
    }

    /// Enables or disables a port (link down, vif not connected): a disabled
    /// port neither sends nor receives.
    pub fn set_enabled(&mut self, id: PortId, enabled: bool) -> Result<(), SwitchError> {
        self.port_mut(id).ok_or(SwitchError::UnknownPort(id))?.enabled = enabled;
        Ok(())
    }

    /// Updates a port's capabilities (the frontend's features changed).
    pub fn set_caps(&mut self, id: PortId, caps: PortCaps) -> Result<(), SwitchError> {
        self.port_mut(id).ok_or(SwitchError::UnknownPort(id))?.cfg.caps = caps;
        Ok(())
    }

    /// The port's configuration.
    pub fn port_config(&self, id: PortId) -> Option<&PortConfig> {
        self.port(id).map(|p| &p.cfg)
    }

    /// The port's counters.
    pub fn port_counters(&self, id: PortId) -> Option<&PortCounters> {
        self.port(id).map(|p| &p.counters)
    }

    /// Every port: (id, name, counters).
    pub fn ports(&self) -> impl Iterator<Item = (PortId, &str, &PortCounters)> + Clone {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.as_ref().map(|p| (PortId(i as u8), p.cfg.name.as_str(), &p.counters)))
    }

    /// Switch-wide counters.
    pub fn counters(&self) -> SwitchCounters {
        SwitchCounters { fdb: self.fdb.stats(), fdb_entries: self.fdb.len() as u64, ..self.counters }
    }

    /// The forwarding database (read-only).
    pub fn fdb(&self) -> &Fdb {
        &self.fdb
    }

    /// Ages out FDB entries; the switch also does this as frames pass.
    pub fn age(&mut self, now_ns: u64) -> usize {
        self.fdb.expire(now_ns)
    }

    /// Renders every counter as Prometheus text (for the metrics endpoint).
    pub fn render_prometheus(&self, out: &mut String) {
        stats::render_prometheus(out, self.ports().map(|(_, n, c)| (n, c)), &self.counters());
    }

    /// Every port's counters as xenstore (relative path, value) pairs, e.g.
    /// (`data/xvif/ports/vif3.0`, `rx_packets=5 rx_bytes=300 ...`).
    pub fn xenstore_entries(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.ports().map(|(_, n, c)| (stats::xenstore_key(n), c.xenstore_text()))
    }

    /// Checks an ingress frame, learns its source and decides where it goes;
    /// `wants_multicast` is asked for each candidate port of a multicast frame.
    pub fn decide(
        &mut self,
        ingress: PortId,
        frame: &[u8],
        meta: &FrameMeta,
        now_ns: u64,
        mut wants_multicast: impl FnMut(PortId, &[u8; 6]) -> bool,
    ) -> Result<Decision, Drop> {
        let verdict = self.check(ingress, frame, meta);
        let Some(p) = self.port_mut(ingress) else { return Err(Drop::UnknownPort(ingress)) };
        let c = &mut p.counters;
        let meta = match verdict {
            Ok(m) => m,
            Err(e) => {
                c.rx_drops += 1;
                match e {
                    Drop::Runt(_) => c.rx_runts += 1,
                    Drop::Oversize(_) => c.rx_oversize += 1,
                    Drop::BadSource(_) => c.bad_src += 1,
                    Drop::Spoofed { .. } => c.spoofed += 1,
                    Drop::BadOffload(_) => c.rx_bad_offload += 1,
                    Drop::UnknownPort(_) | Drop::Disabled => {}
                }
                return Err(e);
            }
        };
        c.rx_packets += 1;
        c.rx_bytes += frame.len() as u64;
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        // A MAC pinned to another port is not learned here (the FDB counts
        // it); the frame still goes where it is addressed.
        let _: Learned = self.fdb.learn(src, ingress, now_ns);
        let mut others = self.members;
        others.remove(ingress);
        for id in others.iter() {
            if !self.port(id).is_some_and(|p| p.enabled) {
                others.remove(id);
            }
        }
        let (route, targets) = if is_multicast(&dst) {
            if dst == [0xff; 6] {
                self.counters.broadcast += 1;
                (Route::Broadcast, others)
            } else {
                self.counters.multicast += 1;
                let mut t = others;
                for id in others.iter() {
                    if !wants_multicast(id, &dst) {
                        t.remove(id);
                        if let Some(p) = self.port_mut(id) {
                            p.counters.mcast_filtered += 1;
                        }
                    }
                }
                (Route::Multicast, t)
            }
        } else {
            match self.fdb.lookup(&dst, now_ns) {
                Some(p) if p == ingress => {
                    self.counters.local_drops += 1;
                    (Route::Local, PortSet::EMPTY)
                }
                Some(p) => {
                    self.counters.unicast += 1;
                    (Route::Unicast(p), PortSet::single(p))
                }
                None => {
                    self.counters.unknown_unicast += 1;
                    (Route::Unknown, others)
                }
            }
        };
        if matches!(route, Route::Broadcast | Route::Multicast | Route::Unknown)
            && let Some(p) = self.port_mut(ingress)
        {
            p.counters.rx_flooded += 1;
        }
        Ok(Decision { route, targets, meta })
    }

    /// Checks an ingress frame; returns its metadata as it is forwarded.
    fn check(&self, ingress: PortId, frame: &[u8], meta: &FrameMeta) -> Result<FrameMeta, Drop> {
        let p = self.port(ingress).ok_or(Drop::UnknownPort(ingress))?;
        if !p.enabled {
            return Err(Drop::Disabled);
        }
        if frame.len() < headers::ETH_HDR {
            return Err(Drop::Runt(frame.len()));
        }
        let max = if meta.gso.is_some() { offload::MAX_FRAME } else { offload::max_frame(p.cfg.caps.mtu, frame) };
        if frame.len() > max {
            return Err(Drop::Oversize(frame.len()));
        }
        let src = mac_at(frame, 6);
        if is_multicast(&src) || src == [0; 6] {
            return Err(Drop::BadSource(src));
        }
        if let Some(allowed) = p.cfg.allowed_src
            && allowed != src
        {
            return Err(Drop::Spoofed { src, allowed });
        }
        offload::validate(frame, meta).map_err(Drop::BadOffload)
    }

    /// Sends one frame out of `port`, adapted to its capabilities, and
    /// counts it. A disabled or unknown port counts a drop.
    pub fn output(
        &mut self,
        port: PortId,
        frame: &[u8],
        meta: &FrameMeta,
        egress: &mut impl Egress,
    ) -> Result<Adapted, OffloadError> {
        let Some(p) = self.ports.get_mut(usize::from(port.0)).and_then(Option::as_mut) else {
            return Ok(Adapted::AsIs);
        };
        let c = &mut p.counters;
        if !p.enabled {
            c.tx_drops += 1;
            return Ok(Adapted::AsIs);
        }
        let r = offload::adapt(frame, meta, &p.cfg.caps, &mut self.scratch, |f, m| {
            if egress.send(port, f, m) {
                c.tx_packets += 1;
                c.tx_bytes += f.len() as u64;
            } else {
                c.tx_drops += 1;
            }
        });
        match r {
            Ok(Adapted::AsIs) => {}
            Ok(Adapted::Completed) => c.csum_completed += 1,
            Ok(Adapted::Segmented(n)) => {
                c.gso_frames += 1;
                c.gso_segments += n as u64;
            }
            Err(_) => c.tx_errors += 1,
        }
        r
    }

    /// Checks, learns, decides and delivers one ingress frame. Returns the
    /// decision (what was tried; per-port outcomes are in the counters).
    pub fn forward(
        &mut self,
        ingress: PortId,
        frame: &[u8],
        meta: &FrameMeta,
        now_ns: u64,
        egress: &mut impl Egress,
    ) -> Result<Decision, Drop> {
        let d = self.decide(ingress, frame, meta, now_ns, |p, g| egress.wants_multicast(p, g))?;
        for port in d.targets.iter() {
            let _ = self.output(port, frame, &d.meta, egress);
        }
        Ok(d)
    }
}
