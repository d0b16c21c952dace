//! The switch's part in one copy between guests (`netback::direct`): a
//! decision from a frame's first bytes alone, for the one case where the
//! frame passes unchanged from one port to one other, and the counting
//! once the receiver took it.
//!
//! `direct_target` changes nothing: when it says no, or the receiver
//! cannot take the frame, the caller forwards the whole frame through
//! `forward`, which checks and counts it as it does every frame. It says
//! yes only when every check `forward` would make can be made on the bytes
//! given, and they pass: the ingress checks (length, source MAC, the
//! port's `ip=` filter, partial-checksum headers), a unicast destination
//! learned on another enabled port of the segment, and an egress that
//! takes the frame as it is (no GSO to cut, no checksum to complete, within
//! its MTU). Frames on a port with a capture running go the whole way, so
//! the capture sees their bytes.
#![forbid(unsafe_code)]

use super::headers::{self, ETH_HDR};
use super::meta::{Csum, FrameMeta};
use super::{PortId, Switch, is_multicast, mac_at, offload};

const ETHERTYPE_IPV6: [u8; 2] = [0x86, 0xdd];

impl Switch {
    /// The one port a frame of `len` bytes whose first bytes are `hdr`
    /// goes to unchanged, when that can be told from `hdr`; None (and
    /// nothing changed but FDB ageing) otherwise.
    pub fn direct_target(
        &mut self,
        ingress: PortId,
        hdr: &[u8],
        len: usize,
        meta: &FrameMeta,
        now_ns: u64,
    ) -> Option<PortId> {
        if meta.gso.is_some() || hdr.len() < ETH_HDR || hdr.len() > len {
            return None;
        }
        if self.capture.as_ref().is_some_and(|c| c.port() == ingress) {
            return None;
        }
        let p = self.port(ingress).filter(|p| p.enabled)?;
        if len > offload::max_frame(p.cfg.caps.mtu, hdr) {
            return None;
        }
        let src = mac_at(hdr, 6);
        if is_multicast(&src) || src == [0; 6] || p.cfg.allowed_src.is_some_and(|a| a != src) {
            return None;
        }
        if let Some(f) = &p.cfg.allowed_ip {
            // The IPv6 rules may look past the first bytes (extension
            // headers); the IPv4 and ARP ones never do.
            if hdr.len() < len && hdr.get(12..14) == Some(&ETHERTYPE_IPV6[..]) {
                return None;
            }
            f.check(hdr).ok()?;
        }
        if meta.csum == Csum::Partial {
            let h = headers::parse_len(hdr, len).ok()?;
            if h.csum_field() + 2 > h.end() {
                return None;
            }
        }
        let dst = mac_at(hdr, 0);
        if is_multicast(&dst) {
            return None;
        }
        let seg = p.seg;
        let target = self.fdb.lookup(seg, &dst, now_ns)?;
        if target == ingress || !self.segments.members(seg).contains(target) {
            return None;
        }
        if self.capture.as_ref().is_some_and(|c| c.port() == target) {
            return None;
        }
        let t = self.port(target).filter(|t| t.enabled)?;
        if len > offload::max_frame(t.cfg.caps.mtu, hdr)
            || (meta.csum == Csum::Partial && !t.cfg.caps.accepts_partial_csum)
        {
            return None;
        }
        Some(target)
    }

    /// Counts a frame `target` took after `direct_target` chose it, and
    /// learns its source, as `forward` would have.
    pub fn commit_direct(&mut self, ingress: PortId, target: PortId, hdr: &[u8], len: usize, now_ns: u64) {
        let Some(p) = self.port_mut(ingress) else { return };
        p.counters.rx_packets += 1;
        p.counters.rx_bytes += len as u64;
        let (seg, src) = (p.seg, mac_at(hdr, 6));
        if p.cfg.allowed_src == Some(src) {
            // Pinned to this port: learning would find it and change
            // nothing; only the ageing it also does is left.
            self.fdb.expire(now_ns);
        } else {
            let _ = self.fdb.learn(seg, src, ingress, now_ns);
        }
        self.counters.unicast += 1;
        if let Some(t) = self.port_mut(target) {
            t.counters.tx_packets += 1;
            t.counters.tx_bytes += len as u64;
        }
    }
}
