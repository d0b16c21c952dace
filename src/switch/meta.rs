//! What travels with a frame through the switch besides its bytes: checksum
//! state and GSO, as the netback TX path learns them from netif flags and
//! extras, and what each egress port can take.
#![forbid(unsafe_code)]

/// `NETTXF_csum_blank` (`xen/include/public/io/netif.h`).
pub const NETTXF_CSUM_BLANK: u16 = 1;
/// `NETTXF_data_validated`.
pub const NETTXF_DATA_VALIDATED: u16 = 2;
/// `NETRXF_data_validated` (note: swapped against TX).
pub const NETRXF_DATA_VALIDATED: u16 = 1;
/// `NETRXF_csum_blank`.
pub const NETRXF_CSUM_BLANK: u16 = 2;
/// `XEN_NETIF_GSO_TYPE_TCPV4`.
pub const XEN_NETIF_GSO_TYPE_TCPV4: u8 = 1;
/// `XEN_NETIF_GSO_TYPE_TCPV6`.
pub const XEN_NETIF_GSO_TYPE_TCPV6: u8 = 2;

/// Checksum state of a frame's L4 checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Csum {
    /// Nothing known: the checksum is whatever the sender wrote.
    #[default]
    Unknown,
    /// Partial (Linux CHECKSUM_PARTIAL, netif `csum_blank`): the TCP/UDP
    /// checksum still has to be computed before the frame leaves on a port
    /// that cannot take it partial.
    Partial,
    /// The checksums are known to be right (netif `data_validated` alone).
    Validated,
}

/// The GSO types netif knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// TCP over IPv4.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
}

impl GsoKind {
    /// From a netif GSO extra's `type`; None for an unknown type.
    pub fn from_netif(t: u8) -> Option<Self> {
        match t {
            XEN_NETIF_GSO_TYPE_TCPV4 => Some(Self::TcpV4),
            XEN_NETIF_GSO_TYPE_TCPV6 => Some(Self::TcpV6),
            _ => None,
        }
    }

    /// The netif GSO extra's `type`.
    pub fn to_netif(self) -> u8 {
        match self {
            Self::TcpV4 => XEN_NETIF_GSO_TYPE_TCPV4,
            Self::TcpV6 => XEN_NETIF_GSO_TYPE_TCPV6,
        }
    }
}

/// A large TCP frame to be cut into `mss`-byte segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// Protocol.
    pub kind: GsoKind,
    /// TCP payload bytes per segment (netif GSO extra `size`).
    pub mss: u16,
}

/// Metadata of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// Checksum state.
    pub csum: Csum,
    /// Set for a GSO frame.
    pub gso: Option<Gso>,
}

impl FrameMeta {
    /// A plain frame with nothing known (NIC receive, management stack).
    pub const PLAIN: Self = Self { csum: Csum::Unknown, gso: None };

    /// From the flags of a netif TX request (first slot) and its GSO extra.
    pub fn from_netif_tx(flags: u16, gso: Option<Gso>) -> Self {
        let csum = if flags & NETTXF_CSUM_BLANK != 0 {
            Csum::Partial
        } else if flags & NETTXF_DATA_VALIDATED != 0 {
            Csum::Validated
        } else {
            Csum::Unknown
        };
        Self { csum, gso }
    }

    /// The flags of a netif RX response for this frame (as Linux netback:
    /// partial is `csum_blank | data_validated`).
    pub fn netif_rx_flags(&self) -> u16 {
        match self.csum {
            Csum::Unknown => 0,
            Csum::Partial => NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED,
            Csum::Validated => NETRXF_DATA_VALIDATED,
        }
    }
}

impl From<crate::netback::FrameMeta> for FrameMeta {
    /// From what the netback TX path learned (`csum_blank` wins over
    /// `data_validated`, as on the wire).
    fn from(m: crate::netback::FrameMeta) -> Self {
        let csum = if m.csum_blank {
            Csum::Partial
        } else if m.data_validated {
            Csum::Validated
        } else {
            Csum::Unknown
        };
        let gso = m.gso.map(|g| Gso {
            kind: match g.kind {
                crate::netback::GsoKind::TcpV4 => GsoKind::TcpV4,
                crate::netback::GsoKind::TcpV6 => GsoKind::TcpV6,
            },
            mss: g.size,
        });
        Self { csum, gso }
    }
}

impl From<&FrameMeta> for crate::netback::FrameMeta {
    /// For the netback RX path (partial checksums are also validated).
    fn from(m: &FrameMeta) -> Self {
        Self {
            csum_blank: m.csum == Csum::Partial,
            data_validated: m.csum != Csum::Unknown,
            gso: m.gso.map(|g| crate::netback::Gso {
                kind: match g.kind {
                    GsoKind::TcpV4 => crate::netback::GsoKind::TcpV4,
                    GsoKind::TcpV6 => crate::netback::GsoKind::TcpV6,
                },
                size: g.mss,
            }),
        }
    }
}

/// What an egress port can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortCaps {
    /// Partial checksums may leave on this port (a vif whose frontend does
    /// checksum offload); otherwise the switch completes them.
    pub accepts_partial_csum: bool,
    /// TCPv4 GSO frames may leave whole (frontend `feature-gso-tcpv4`).
    pub gso_tcpv4: bool,
    /// TCPv6 GSO frames may leave whole (frontend `feature-gso-tcpv6`).
    pub gso_tcpv6: bool,
    /// IP MTU; frames longer than `mtu` + Ethernet header (+ one VLAN tag)
    /// that are not GSO frames passed whole are dropped on this port.
    pub mtu: u16,
}

impl PortCaps {
    /// A port that takes only complete, MTU-sized frames (a NIC, the
    /// management stack).
    pub const fn plain(mtu: u16) -> Self {
        Self { accepts_partial_csum: false, gso_tcpv4: false, gso_tcpv6: false, mtu }
    }

    /// True when a GSO frame of `kind` may leave whole on this port.
    pub fn accepts_gso(&self, kind: GsoKind) -> bool {
        // A GSO frame is always partial: whole only where partial is fine.
        self.accepts_partial_csum
            && match kind {
                GsoKind::TcpV4 => self.gso_tcpv4,
                GsoKind::TcpV6 => self.gso_tcpv6,
            }
    }
}

impl Default for PortCaps {
    fn default() -> Self {
        Self::plain(1500)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netback_meta_round_trips() {
        use crate::netback::{FrameMeta as Nb, Gso as NbGso, GsoKind as NbKind};
        for (blank, valid) in [(false, false), (false, true), (true, true)] {
            for gso in
                [None, Some(NbGso { kind: NbKind::TcpV4, size: 1448 }), Some(NbGso { kind: NbKind::TcpV6, size: 1440 })]
            {
                let nb = Nb { csum_blank: blank, data_validated: valid, gso };
                assert_eq!(Nb::from(&FrameMeta::from(nb)), nb);
            }
        }
        // csum_blank alone still means partial (and hence validated on RX).
        let m = FrameMeta::from(Nb { csum_blank: true, data_validated: false, gso: None });
        assert_eq!(m.csum, Csum::Partial);
        assert!(Nb::from(&m).data_validated);
    }

    #[test]
    fn netif_flags_map_both_ways() {
        assert_eq!(FrameMeta::from_netif_tx(3, None).csum, Csum::Partial);
        assert_eq!(FrameMeta::from_netif_tx(2, None).csum, Csum::Validated);
        assert_eq!(FrameMeta::from_netif_tx(4, None).csum, Csum::Unknown);
        assert_eq!(FrameMeta::from_netif_tx(1, None).netif_rx_flags(), 3);
        assert_eq!(FrameMeta::from_netif_tx(2, None).netif_rx_flags(), 1);
        assert_eq!(FrameMeta::PLAIN.netif_rx_flags(), 0);
        assert_eq!(GsoKind::from_netif(1), Some(GsoKind::TcpV4));
        assert_eq!(GsoKind::from_netif(9), None);
        assert_eq!(GsoKind::TcpV6.to_netif(), 2);
    }

    #[test]
    fn gso_needs_partial_too() {
        let mut c = PortCaps { accepts_partial_csum: false, gso_tcpv4: true, gso_tcpv6: false, mtu: 1500 };
        assert!(!c.accepts_gso(GsoKind::TcpV4));
        c.accepts_partial_csum = true;
        assert!(c.accepts_gso(GsoKind::TcpV4));
        assert!(!c.accepts_gso(GsoKind::TcpV6));
    }
}
