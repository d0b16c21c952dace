//! Ingress checks: what a frame must satisfy before the switch learns its
//! source or forwards it (size, source MAC, the port's source MAC and IP
//! anti-spoofing, offload metadata), and the counter each refusal bumps.
#![forbid(unsafe_code)]

use super::ipfilter::IpSpoof;
use super::meta::FrameMeta;
use super::offload::{self, OffloadError};
use super::stats::PortCounters;
use super::{PortConfig, PortId, headers, is_multicast, mac_at};

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
    /// IPv4, ARP or IPv6 source address not among the port's (`ip=`).
    SpoofedIp(IpSpoof),
    /// GSO or partial-checksum metadata its headers do not back.
    BadOffload(OffloadError),
}

impl Drop {
    /// Counts the drop on its port's counters.
    pub(super) fn count(&self, c: &mut PortCounters) {
        c.rx_drops += 1;
        match self {
            Drop::Runt(_) => c.rx_runts += 1,
            Drop::Oversize(_) => c.rx_oversize += 1,
            Drop::BadSource(_) => c.bad_src += 1,
            Drop::Spoofed { .. } => c.spoofed += 1,
            Drop::SpoofedIp(_) => c.spoofed_ip += 1,
            Drop::BadOffload(_) => c.rx_bad_offload += 1,
            Drop::UnknownPort(_) | Drop::Disabled => {}
        }
    }
}

/// Checks a frame from an enabled port configured as `cfg`; returns its
/// metadata as it is forwarded.
pub(super) fn check(cfg: &PortConfig, frame: &[u8], meta: &FrameMeta) -> Result<FrameMeta, Drop> {
    if frame.len() < headers::ETH_HDR {
        return Err(Drop::Runt(frame.len()));
    }
    let max = if meta.gso.is_some() { offload::MAX_FRAME } else { offload::max_frame(cfg.caps.mtu, frame) };
    if frame.len() > max {
        return Err(Drop::Oversize(frame.len()));
    }
    let src = mac_at(frame, 6);
    if is_multicast(&src) || src == [0; 6] {
        return Err(Drop::BadSource(src));
    }
    if let Some(allowed) = cfg.allowed_src
        && allowed != src
    {
        return Err(Drop::Spoofed { src, allowed });
    }
    if let Some(f) = &cfg.allowed_ip {
        f.check(frame).map_err(Drop::SpoofedIp)?;
    }
    offload::validate(frame, meta).map_err(Drop::BadOffload)
}
