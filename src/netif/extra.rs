//! Extra-info segments, xen/include/public/io/netif.h `struct
//! netif_extra_info`: 8 bytes `type@0 u8, flags@1 u8, union@2 (6 bytes)`.
//! On the TX ring a segment fills the first 8 bytes of a 12-byte request
//! slot; on the RX ring it fills a whole 8-byte response slot.
#![forbid(unsafe_code)]

use super::{le16, put16};

/// Bytes a segment occupies.
pub const EXTRA_SIZE: usize = 8;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra-info segment follows.
pub const XEN_NETIF_EXTRA_FLAG_MORE: u8 = 1 << 0;
/// `XEN_NETIF_EXTRA_TYPE_MAX`: types are 1..MAX.
pub const XEN_NETIF_EXTRA_TYPE_MAX: u8 = 5;

/// `XEN_NETIF_GSO_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoType {
    /// `XEN_NETIF_GSO_TYPE_NONE` (0).
    None,
    /// `XEN_NETIF_GSO_TYPE_TCPV4` (1).
    TcpV4,
    /// `XEN_NETIF_GSO_TYPE_TCPV6` (2).
    TcpV6,
    /// Any other value.
    Unknown(u8),
}

impl GsoType {
    /// Decodes a wire value.
    pub fn from_raw(v: u8) -> Self {
        match v {
            0 => Self::None,
            1 => Self::TcpV4,
            2 => Self::TcpV6,
            n => Self::Unknown(n),
        }
    }

    /// The wire value.
    pub fn to_raw(self) -> u8 {
        match self {
            Self::None => 0,
            Self::TcpV4 => 1,
            Self::TcpV6 => 2,
            Self::Unknown(n) => n,
        }
    }
}

/// The union of a segment, by `XEN_NETIF_EXTRA_TYPE_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraKind {
    /// `XEN_NETIF_EXTRA_TYPE_GSO` (1): `size@2 u16, type@4 u8, pad@5, features@6 u16`.
    Gso {
        /// MSS: payload bytes per segment.
        size: u16,
        /// `XEN_NETIF_GSO_TYPE_*`.
        kind: GsoType,
        /// `XEN_NETIF_GSO_FEAT_*` (none are defined).
        features: u16,
    },
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_ADD` (2): `addr@2 [u8; 6]`.
    McastAdd([u8; 6]),
    /// `XEN_NETIF_EXTRA_TYPE_MCAST_DEL` (3): `addr@2 [u8; 6]`.
    McastDel([u8; 6]),
    /// `XEN_NETIF_EXTRA_TYPE_HASH` (4): `type@2 u8, algorithm@3 u8, value@4 [u8; 4]`.
    Hash {
        /// `_XEN_NETIF_CTRL_HASH_TYPE_*`.
        kind: u8,
        /// `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
        algorithm: u8,
        /// The hash value.
        value: [u8; 4],
    },
    /// `XEN_NETIF_EXTRA_TYPE_NONE` (0), or a type >= `XEN_NETIF_EXTRA_TYPE_MAX`,
    /// with the raw union bytes.
    Unknown(u8, [u8; 6]),
}

/// A decoded extra-info segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraInfo {
    /// `XEN_NETIF_EXTRA_FLAG_*`.
    pub flags: u8,
    /// The typed union.
    pub kind: ExtraKind,
}

impl ExtraInfo {
    /// Decodes the first 8 bytes of a slot copied out of the ring.
    pub fn parse(b: &[u8]) -> Self {
        let mut raw = [0u8; EXTRA_SIZE];
        let n = b.len().min(EXTRA_SIZE);
        if let (Some(d), Some(s)) = (raw.get_mut(..n), b.get(..n)) {
            d.copy_from_slice(s);
        }
        let mut u = [0u8; 6];
        u.copy_from_slice(&raw[2..8]);
        let kind = match raw[0] {
            1 => ExtraKind::Gso { size: le16(&raw, 2), kind: GsoType::from_raw(raw[4]), features: le16(&raw, 6) },
            2 => ExtraKind::McastAdd(u),
            3 => ExtraKind::McastDel(u),
            4 => ExtraKind::Hash { kind: raw[2], algorithm: raw[3], value: [raw[4], raw[5], raw[6], raw[7]] },
            t => ExtraKind::Unknown(t, u),
        };
        Self { flags: raw[1], kind }
    }

    /// Encodes the segment.
    pub fn emit(&self) -> [u8; EXTRA_SIZE] {
        let mut b = [0u8; EXTRA_SIZE];
        b[0] = self.type_raw();
        b[1] = self.flags;
        match self.kind {
            ExtraKind::Gso { size, kind, features } => {
                put16(&mut b, 2, size);
                b[4] = kind.to_raw();
                put16(&mut b, 6, features);
            }
            ExtraKind::McastAdd(a) | ExtraKind::McastDel(a) | ExtraKind::Unknown(_, a) => b[2..8].copy_from_slice(&a),
            ExtraKind::Hash { kind, algorithm, value } => {
                b[2] = kind;
                b[3] = algorithm;
                b[4..8].copy_from_slice(&value);
            }
        }
        b
    }

    /// The `XEN_NETIF_EXTRA_TYPE_*` value.
    pub fn type_raw(&self) -> u8 {
        match self.kind {
            ExtraKind::Gso { .. } => 1,
            ExtraKind::McastAdd(_) => 2,
            ExtraKind::McastDel(_) => 3,
            ExtraKind::Hash { .. } => 4,
            ExtraKind::Unknown(t, _) => t,
        }
    }

    /// `XEN_NETIF_EXTRA_FLAG_MORE` is set.
    pub fn more(&self) -> bool {
        self.flags & XEN_NETIF_EXTRA_FLAG_MORE != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_layout() {
        let e = ExtraInfo {
            flags: XEN_NETIF_EXTRA_FLAG_MORE,
            kind: ExtraKind::Gso { size: 1448, kind: GsoType::TcpV6, features: 0 },
        };
        let b = e.emit();
        assert_eq!(b, [1, 1, 0xa8, 0x05, 2, 0, 0, 0]);
        assert_eq!(ExtraInfo::parse(&b), e);
        assert!(e.more());
    }

    #[test]
    fn mcast_hash_unknown_roundtrip() {
        for e in [
            ExtraInfo { flags: 0, kind: ExtraKind::McastAdd([1, 0, 0x5e, 0, 0, 1]) },
            ExtraInfo { flags: 0, kind: ExtraKind::McastDel([0x33, 0x33, 0, 0, 0, 1]) },
            ExtraInfo { flags: 0, kind: ExtraKind::Hash { kind: 3, algorithm: 1, value: [1, 2, 3, 4] } },
            ExtraInfo { flags: 0, kind: ExtraKind::Unknown(0, [9; 6]) },
            ExtraInfo { flags: 0xfe, kind: ExtraKind::Unknown(200, [0; 6]) },
        ] {
            assert_eq!(ExtraInfo::parse(&e.emit()), e);
        }
        assert_eq!(GsoType::from_raw(9), GsoType::Unknown(9));
        assert_eq!(GsoType::Unknown(9).to_raw(), 9);
    }

    #[test]
    fn short_input_reads_zeroes() {
        assert_eq!(ExtraInfo::parse(&[2]).kind, ExtraKind::McastAdd([0; 6]));
        assert_eq!(ExtraInfo::parse(&[]).kind, ExtraKind::Unknown(0, [0; 6]));
        // A 12-byte TX slot: only the first 8 bytes matter.
        let mut slot = [0xffu8; 12];
        slot[..8].copy_from_slice(&[3, 0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(ExtraInfo::parse(&slot).kind, ExtraKind::McastDel([1, 2, 3, 4, 5, 6]));
    }
}
