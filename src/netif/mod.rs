//! Wire formats of the Xen network interface, xen/include/public/io/netif.h:
//! ring entries (TX/RX requests and responses), extra-info slots, flags,
//! response statuses and GSO types, and the control ring's messages.
//!
//! Every type is parsed from a copy of the bytes (never a reference into a
//! shared page) and every unknown value maps to an `Unknown(n)` variant.
#![forbid(unsafe_code)]

pub mod ctrl;
pub mod extra;
pub mod rx;
pub mod tx;

pub use extra::{ExtraInfo, ExtraKind, GsoType};
pub use rx::{RxRequest, RxResponse};
pub use tx::{TxRequest, TxResponse};

/// Page size the protocol is defined on (`XEN_PAGE_SIZE`).
pub const PAGE_SIZE: usize = 4096;

/// `XEN_NETIF_NR_SLOTS_MIN`: the slots per packet every backend must accept.
pub const NR_SLOTS_MIN: usize = 18;

/// Largest packet the protocol can describe (`size` is a u16).
pub const MAX_PACKET: usize = 0xFFFF;

/// `XEN_NETIF_MAX_TX_SIZE`.
pub const MAX_TX_SIZE: usize = 0xFFFF;

/// `NETIF_RSP_*`: the status of a response (an `int16_t`). On the RX ring a
/// non-negative status is the number of bytes in the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RspStatus {
    /// `NETIF_RSP_NULL` (1): the slot carried an extra-info segment.
    Null,
    /// `NETIF_RSP_OKAY` (0).
    Okay,
    /// `NETIF_RSP_ERROR` (-1).
    Error,
    /// `NETIF_RSP_DROPPED` (-2).
    Dropped,
    /// Any other value.
    Unknown(i16),
}

impl RspStatus {
    /// The wire value.
    pub fn to_raw(self) -> i16 {
        match self {
            Self::Null => 1,
            Self::Okay => 0,
            Self::Error => -1,
            Self::Dropped => -2,
            Self::Unknown(n) => n,
        }
    }

    /// Decodes a wire value.
    pub fn from_raw(v: i16) -> Self {
        match v {
            1 => Self::Null,
            0 => Self::Okay,
            -1 => Self::Error,
            -2 => Self::Dropped,
            n => Self::Unknown(n),
        }
    }
}

pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    match b.get(off..off + 2) {
        Some(s) => u16::from_le_bytes([s[0], s[1]]),
        None => 0,
    }
}

pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    match b.get(off..off + 4) {
        Some(s) => u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        None => 0,
    }
}

pub(crate) fn put16(b: &mut [u8], off: usize, v: u16) {
    if let Some(s) = b.get_mut(off..off + 2) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

pub(crate) fn put32(b: &mut [u8], off: usize, v: u32) {
    if let Some(s) = b.get_mut(off..off + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_roundtrip_and_unknown() {
        for v in [-3i16, -2, -1, 0, 1, 2, i16::MIN, i16::MAX] {
            assert_eq!(RspStatus::from_raw(v).to_raw(), v);
        }
        assert_eq!(RspStatus::from_raw(1), RspStatus::Null);
        assert_eq!(RspStatus::from_raw(-2), RspStatus::Dropped);
        assert_eq!(RspStatus::from_raw(7), RspStatus::Unknown(7));
    }

    #[test]
    fn helpers_never_panic_out_of_range() {
        let mut b = [0u8; 3];
        assert_eq!(le32(&b, 0), 0);
        assert_eq!(le16(&b, 2), 0);
        put32(&mut b, 0, 0xdead_beef);
        assert_eq!(b, [0; 3]);
        put16(&mut b, 1, 0x1234);
        assert_eq!(le16(&b, 1), 0x1234);
    }
}
