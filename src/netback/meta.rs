//! Per-frame offload metadata carried between netback and the switch:
//! the checksum state (NETTXF_/NETRXF_ csum_blank and data_validated) and the
//! GSO type and segment size (XEN_NETIF_EXTRA_TYPE_GSO),
//! xen/include/public/io/netif.h.
#![forbid(unsafe_code)]

use crate::netif::GsoType;

/// A validated GSO type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
}

impl GsoKind {
    /// The wire type.
    pub fn to_wire(self) -> GsoType {
        match self {
            Self::TcpV4 => GsoType::TcpV4,
            Self::TcpV6 => GsoType::TcpV6,
        }
    }
}

/// GSO metadata: the frame is a TCP super-segment to cut into `size`-byte
/// payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Which TCP.
    pub kind: GsoKind,
    /// Segment payload size (MSS), never 0.
    pub size: u16,
}

/// What a frame's sender says about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// The L4 checksum field holds only the pseudo-header sum; someone must
    /// complete it before the frame leaves on a wire.
    pub csum_blank: bool,
    /// The checksum is known good (need not be verified).
    pub data_validated: bool,
    /// GSO super-segment.
    pub gso: Option<Gso>,
}

/// True when the frame's EtherType (after at most one 802.1Q tag) is IPv6.
pub fn is_ipv6(frame: &[u8]) -> bool {
    let et = |o: usize| frame.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match et(12) {
        Some(0x8100) => et(16) == Some(0x86dd),
        Some(t) => t == 0x86dd,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethertype_detection() {
        let mut f = [0u8; 20];
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert!(is_ipv6(&f));
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert!(!is_ipv6(&f));
        f[12..14].copy_from_slice(&[0x81, 0x00]);
        f[16..18].copy_from_slice(&[0x86, 0xdd]);
        assert!(is_ipv6(&f));
        assert!(!is_ipv6(&f[..15]));
        assert_eq!(GsoKind::TcpV6.to_wire(), GsoType::TcpV6);
    }
}
