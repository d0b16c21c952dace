//! Receive-ring entries (backend to guest), xen/include/public/io/netif.h:
//! `struct netif_rx_request` and `struct netif_rx_response`.
#![forbid(unsafe_code)]

use super::{le16, le32, put16, put32};

/// `NETRXF_data_validated` (note: bit 0 on RX, bit 1 on TX).
pub const NETRXF_DATA_VALIDATED: u16 = 1 << 0;
/// `NETRXF_csum_blank` (note: bit 1 on RX, bit 0 on TX).
pub const NETRXF_CSUM_BLANK: u16 = 1 << 1;
/// `NETRXF_more_data`: the packet continues in the next data slot.
pub const NETRXF_MORE_DATA: u16 = 1 << 2;
/// `NETRXF_extra_info`: an extra-info slot follows this one.
pub const NETRXF_EXTRA_INFO: u16 = 1 << 3;

/// Size of one RX ring entry.
pub const RX_ENTRY_SIZE: usize = 8;

/// `struct netif_rx_request` (8 bytes): `id@0 u16, pad@2 u16, gref@4 u32`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Grant reference of a whole page the backend may write.
    pub gref: u32,
}

impl RxRequest {
    /// Decodes an entry copied out of the ring.
    pub fn parse(b: &[u8; RX_ENTRY_SIZE]) -> Self {
        Self { id: le16(b, 0), gref: le32(b, 4) }
    }

    /// Encodes the entry.
    pub fn emit(&self) -> [u8; RX_ENTRY_SIZE] {
        let mut b = [0u8; RX_ENTRY_SIZE];
        put16(&mut b, 0, self.id);
        put32(&mut b, 4, self.gref);
        b
    }
}

/// `struct netif_rx_response` (8 bytes): `id@0 u16, offset@2 u16,
/// flags@4 u16, status@6 i16`. A non-negative status is the slot's byte count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxResponse {
    /// The request's id.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// `NETRXF_*`.
    pub flags: u16,
    /// Bytes in this slot, or a negative `NETIF_RSP_*`.
    pub status: i16,
}

impl RxResponse {
    /// Decodes an entry.
    pub fn parse(b: &[u8; RX_ENTRY_SIZE]) -> Self {
        Self { id: le16(b, 0), offset: le16(b, 2), flags: le16(b, 4), status: le16(b, 6) as i16 }
    }

    /// Encodes the entry.
    pub fn emit(&self) -> [u8; RX_ENTRY_SIZE] {
        let mut b = [0u8; RX_ENTRY_SIZE];
        put16(&mut b, 0, self.id);
        put16(&mut b, 2, self.offset);
        put16(&mut b, 4, self.flags);
        put16(&mut b, 6, self.status as u16);
        b
    }

    /// `NETRXF_more_data` is set.
    pub fn more_data(&self) -> bool {
        self.flags & NETRXF_MORE_DATA != 0
    }

    /// `NETRXF_extra_info` is set.
    pub fn extra_info(&self) -> bool {
        self.flags & NETRXF_EXTRA_INFO != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_netif_h() {
        let q = RxRequest { id: 0x0201, gref: 0x0807_0605 };
        assert_eq!(q.emit(), [1, 2, 0, 0, 5, 6, 7, 8]);
        assert_eq!(RxRequest::parse(&[1, 2, 0xaa, 0xbb, 5, 6, 7, 8]), q);
        let r = RxResponse { id: 1, offset: 2, flags: NETRXF_MORE_DATA | NETRXF_CSUM_BLANK, status: -1 };
        let b = r.emit();
        assert_eq!(b, [1, 0, 2, 0, 6, 0, 0xff, 0xff]);
        assert_eq!(RxResponse::parse(&b), r);
        assert!(r.more_data() && !r.extra_info());
    }

    #[test]
    fn checksum_bits_are_swapped_against_tx() {
        assert_eq!(NETRXF_DATA_VALIDATED, super::super::tx::NETTXF_CSUM_BLANK);
        assert_eq!(NETRXF_CSUM_BLANK, super::super::tx::NETTXF_DATA_VALIDATED);
    }
}
