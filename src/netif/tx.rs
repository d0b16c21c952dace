//! Transmit-ring entries (guest to backend), xen/include/public/io/netif.h:
//! `struct netif_tx_request` and `struct netif_tx_response`.
#![forbid(unsafe_code)]

use super::{RspStatus, le16, le32, put16, put32};

/// `NETTXF_csum_blank`: the protocol checksum field is blank (partial).
pub const NETTXF_CSUM_BLANK: u16 = 1 << 0;
/// `NETTXF_data_validated`: the packet's checksum has been validated.
pub const NETTXF_DATA_VALIDATED: u16 = 1 << 1;
/// `NETTXF_more_data`: the packet continues in the next data slot.
pub const NETTXF_MORE_DATA: u16 = 1 << 2;
/// `NETTXF_extra_info`: an extra-info slot follows this one.
pub const NETTXF_EXTRA_INFO: u16 = 1 << 3;

/// Size of one TX ring entry (the union of request and response).
pub const TX_ENTRY_SIZE: usize = 12;

/// `struct netif_tx_request` (12 bytes): `gref@0 u32, offset@4 u16,
/// flags@6 u16, id@8 u16, size@10 u16`. In the first slot of a packet `size`
/// is the whole packet's length; in the following slots, the slot's length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxRequest {
    /// Grant reference of the page holding the data.
    pub gref: u32,
    /// Offset of the data in that page.
    pub offset: u16,
    /// `NETTXF_*`.
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// Packet length (first slot) or slot length (following slots).
    pub size: u16,
}

impl TxRequest {
    /// Decodes an entry copied out of the ring.
    pub fn parse(b: &[u8; TX_ENTRY_SIZE]) -> Self {
        Self { gref: le32(b, 0), offset: le16(b, 4), flags: le16(b, 6), id: le16(b, 8), size: le16(b, 10) }
    }

    /// Encodes the entry.
    pub fn emit(&self) -> [u8; TX_ENTRY_SIZE] {
        let mut b = [0u8; TX_ENTRY_SIZE];
        put32(&mut b, 0, self.gref);
        put16(&mut b, 4, self.offset);
        put16(&mut b, 6, self.flags);
        put16(&mut b, 8, self.id);
        put16(&mut b, 10, self.size);
        b
    }

    /// `NETTXF_more_data` is set.
    pub fn more_data(&self) -> bool {
        self.flags & NETTXF_MORE_DATA != 0
    }

    /// `NETTXF_extra_info` is set.
    pub fn extra_info(&self) -> bool {
        self.flags & NETTXF_EXTRA_INFO != 0
    }

    /// End of the slot's data in its page, computed without overflow.
    pub fn end(&self) -> usize {
        usize::from(self.offset) + usize::from(self.size)
    }
}

/// `struct netif_tx_response`: `id@0 u16, status@2 i16`, in a 12-byte slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxResponse {
    /// The request's id.
    pub id: u16,
    /// `NETIF_RSP_*`.
    pub status: RspStatus,
}

impl TxResponse {
    /// Decodes an entry.
    pub fn parse(b: &[u8; TX_ENTRY_SIZE]) -> Self {
        Self { id: le16(b, 0), status: RspStatus::from_raw(le16(b, 2) as i16) }
    }

    /// Encodes the entry; the bytes after the status are zero.
    pub fn emit(&self) -> [u8; TX_ENTRY_SIZE] {
        let mut b = [0u8; TX_ENTRY_SIZE];
        put16(&mut b, 0, self.id);
        put16(&mut b, 2, self.status.to_raw() as u16);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_netif_h() {
        let r = TxRequest { gref: 0x0403_0201, offset: 0x0605, flags: 0x0807, id: 0x0a09, size: 0x0c0b };
        let b = r.emit();
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(TxRequest::parse(&b), r);
        let f = TxRequest { flags: NETTXF_MORE_DATA | NETTXF_EXTRA_INFO, ..Default::default() };
        assert!(f.more_data() && f.extra_info());
        let e = TxRequest { offset: u16::MAX, size: u16::MAX, ..Default::default() };
        assert_eq!(e.end(), 131_070);
    }

    #[test]
    fn response_layout() {
        let r = TxResponse { id: 0x1234, status: RspStatus::Error };
        let b = r.emit();
        assert_eq!(&b[..4], &[0x34, 0x12, 0xff, 0xff]);
        assert_eq!(&b[4..], &[0; 8]);
        assert_eq!(TxResponse::parse(&b), r);
        let n = TxResponse { id: 1, status: RspStatus::Null }.emit();
        assert_eq!(&n[2..4], &[1, 0]);
    }
}
