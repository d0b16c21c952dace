//! The switch: a MAC-learning bridge joining the vifs, the NIC and the
//! management stack. It sees only ports, identified by [`PortId`], and never
//! owns a frame: it is lent each ingress frame ([`Switch::forward`]) and
//! lends it on through an [`Egress`], as it is (zero-copy) or adapted by
//! `offload` where an egress port cannot take partial checksums or GSO.
//!
//! Ports are grouped in isolated segments (`segment`), one per `bridge=`
//! name: frames and MAC learning never cross segments.
//!
//! Wiring: add each port with [`Switch::add_port`] (a vif with
//! `allowed_src: Some(mac)` from its backend `mac` key, `allowed_ip` from
//! its `ip` key and `segment` from its `bridge` key, the NIC and the
//! management stack with `None` on xvif's own segment), then for every
//! received frame call
//! `forward(ingress, frame, meta, now_ns, &mut egress)`, where `egress`
//! transmits to the other ports and answers each vif's multicast filter.
#![forbid(unsafe_code)]

pub mod capture;
pub mod checksum;
mod direct;
pub mod fdb;
pub mod gso;
pub mod headers;
mod ingress;
pub mod ipfilter;
pub mod meta;
pub mod offload;
pub mod portset;
pub mod segment;
pub mod stats;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use fdb::{Fdb, Learned};
pub use ingress::Drop;
use ipfilter::IpFilter;
use meta::{FrameMeta, PortCaps};
use offload::{Adapted, OffloadError};
pub use portset::PortSet;
use segment::{SegmentId, Segments};
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
    /// When set, IPv4, ARP and IPv6 frames from this port must come from
    /// these addresses (a vif's `ip` key); others are dropped and counted
    /// as `spoofed_ip`.
    pub allowed_ip: Option<IpFilter>,
    /// What the port can take.
    pub caps: PortCaps,
    /// The segment the port joins (a vif's `bridge` key).
    pub segment: String,
}

impl Default for PortConfig {
    /// An unnamed port without source checks on [`segment::DEFAULT_SEGMENT`].
    fn default() -> Self {
        Self {
            name: String::new(),
            allowed_src: None,
            allowed_ip: None,
            caps: PortCaps::default(),
            segment: String::from(segment::DEFAULT_SEGMENT),
        }
    }
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
    /// The segment name is invalid, or no segment is left.
    BadSegment,
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
    seg: SegmentId,
    enabled: bool,
    counters: PortCounters,
}

/// The bridge.
pub struct Switch {
    ports: Vec<Option<PortState>>,
    members: PortSet,
    segments: Segments,
    fdb: Fdb,
    counters: SwitchCounters,
    scratch: Vec<u8>,
    /// The packet capture running on one port, if any.
    capture: Option<capture::Capture>,
}

pub(crate) fn mac_at(frame: &[u8], at: usize) -> [u8; 6] {
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
            segments: Segments::new(),
            fdb: Fdb::new(cfg.fdb_capacity, cfg.ageing_ns, cfg.hash_seed),
            counters: SwitchCounters::default(),
            scratch: vec![0; offload::SCRATCH_LEN],
            capture: None,
        }
    }

    fn port(&self, id: PortId) -> Option<&PortState> {
        self.ports.get(usize::from(id.0)).and_then(Option::as_ref)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut PortState> {
        self.ports.get_mut(usize::from(id.0)).and_then(Option::as_mut)
    }

    /// Adds a port (enabled) at the lowest free id, on its segment.
    pub fn add_port(&mut self, cfg: PortConfig) -> Result<PortId, SwitchError> {
        let idx = self.ports.iter().position(Option::is_none).ok_or(SwitchError::Full)?;
        let id = PortId(idx as u8);
        let seg = self.segments.join(&cfg.segment, id).ok_or(SwitchError::BadSegment)?;
        if let Some(mac) = cfg.allowed_src
            && !self.fdb.add_static(seg, mac, id)
        {
            self.segments.leave(seg, id);
            return Err(SwitchError::StaticFull);
        }
        if let Some(slot) = self.ports.get_mut(idx) {
            *slot = Some(PortState { cfg, seg, enabled: true, counters: PortCounters::default() });
        }
        self.members.insert(id);
        Ok(id)
    }

    /// Removes a port and flushes its FDB entries; returns its last counters.
    pub fn remove_port(&mut self, id: PortId) -> Result<PortCounters, SwitchError> {
        if self.capture.as_ref().is_some_and(|c| c.port() == id) {
            self.capture = None;
        }
        let st = self.ports.get_mut(usize::from(id.0)).and_then(Option::take).ok_or(SwitchError::UnknownPort(id))?;
        self.members.remove(id);
        self.segments.leave(st.seg, id);
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

    /// Replaces a port's IP anti-spoofing filter.
    pub fn set_ip_filter(&mut self, id: PortId, filter: Option<IpFilter>) -> Result<(), SwitchError> {
        self.port_mut(id).ok_or(SwitchError::UnknownPort(id))?.cfg.allowed_ip = filter;
        Ok(())
    }

    /// The segment a port is on, by name.
    pub fn port_segment(&self, id: PortId) -> Option<&str> {
        self.port(id).and_then(|p| self.segments.name(p.seg))
    }

    /// The segments.
    pub fn segments(&self) -> &Segments {
        &self.segments
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
    /// (`data/xvif/ports/vif3.0`, `rx_packets=5 rx_bytes=300 ... segment=xenbr0`).
    pub fn xenstore_entries(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.ports().map(|(id, n, c)| {
            let mut t = c.xenstore_text();
            t.push_str(" segment=");
            t.push_str(self.port_segment(id).unwrap_or(""));
            (stats::xenstore_key(n), t)
        })
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
        let Some(p) = self.port_mut(ingress) else { return Err(Drop::UnknownPort(ingress)) };
        if !p.enabled {
            Drop::Disabled.count(&mut p.counters);
            return Err(Drop::Disabled);
        }
        let seg = p.seg;
        let c = &mut p.counters;
        let meta = match ingress::check(&p.cfg, frame, meta) {
            Ok(m) => m,
            Err(e) => {
                e.count(c);
                return Err(e);
            }
        };
        c.rx_packets += 1;
        c.rx_bytes += frame.len() as u64;
        let (dst, src) = (mac_at(frame, 0), mac_at(frame, 6));
        // A MAC pinned to another port is not learned here (the FDB counts
        // it); the frame still goes where it is addressed.
        let _: Learned = self.fdb.learn(seg, src, ingress, now_ns);
        // Only the ingress port's segment is ever a target.
        let mut others = PortSet(self.members.0 & self.segments.members(seg).0);
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
            match self.fdb.lookup(seg, &dst, now_ns) {
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

    /// Sends one frame out of `port`, adapted to its capabilities, and
    /// counts it (`now_ns` stamps it in a capture of that port). A disabled
    /// or unknown port counts a drop.
    pub fn output(
        &mut self,
        port: PortId,
        frame: &[u8],
        meta: &FrameMeta,
        now_ns: u64,
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
        let mut tap = self.capture.as_mut().filter(|t| t.port() == port);
        let r = offload::adapt(frame, meta, &p.cfg.caps, &mut self.scratch, |f, m| {
            if let Some(t) = tap.as_mut() {
                t.record(now_ns, f);
            }
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
            Err(e) => {
                c.tx_errors += 1;
                if matches!(e, OffloadError::Oversize { .. }) {
                    c.tx_oversize += 1;
                }
            }
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
        if let Some(t) = self.capture.as_mut().filter(|t| t.port() == ingress) {
            t.record(now_ns, frame);
        }
        let d = self.decide(ingress, frame, meta, now_ns, |p, g| egress.wants_multicast(p, g))?;
        for port in d.targets.iter() {
            let _ = self.output(port, frame, &d.meta, now_ns, egress);
        }
        Ok(d)
    }
}
