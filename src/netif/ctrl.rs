//! The control ring's wire format, xen/include/public/io/netif.h ("Control
//! ring"): a frontend that found `feature-ctrl-ring=1` publishes one more
//! shared ring (`ctrl-ring-ref`, `event-channel-ctrl`) carrying fixed-size
//! requests, each answered by one response, to configure receive-side
//! hashing: the algorithm, the hash types, the key and the table that maps
//! a hash to a queue.
//!
//! Request, 16 bytes: `id@0 u16, type@2 u16, data[3]@4 u32 each`.
//! Response, 12 bytes: `id@0 u16, type@2 u16, status@4 u32, data@8 u32`.
//! A ring entry is the union of both (16 bytes), so a page holds 128.
#![forbid(unsafe_code)]

use super::{le16, le32, put16, put32};

/// Bytes of a ring entry (the larger of request and response).
pub const CTRL_ENTRY_SIZE: usize = 16;
/// Bytes of a response.
pub const CTRL_RESPONSE_SIZE: usize = 12;

/// `XEN_NETIF_CTRL_HASH_ALGORITHM_NONE`.
pub const HASH_ALGORITHM_NONE: u32 = 0;
/// `XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`.
pub const HASH_ALGORITHM_TOEPLITZ: u32 = 1;

/// `_XEN_NETIF_CTRL_HASH_TYPE_IPV4`: source and destination address.
pub const HASH_TYPE_IPV4: u8 = 0;
/// `_XEN_NETIF_CTRL_HASH_TYPE_IPV4_TCP`: addresses and TCP ports.
pub const HASH_TYPE_IPV4_TCP: u8 = 1;
/// `_XEN_NETIF_CTRL_HASH_TYPE_IPV6`.
pub const HASH_TYPE_IPV6: u8 = 2;
/// `_XEN_NETIF_CTRL_HASH_TYPE_IPV6_TCP`.
pub const HASH_TYPE_IPV6_TCP: u8 = 3;
/// Every hash type as a flag set (`XEN_NETIF_CTRL_HASH_TYPE_*` ORed).
pub const HASH_FLAGS_ALL: u32 =
    1 << HASH_TYPE_IPV4 | 1 << HASH_TYPE_IPV4_TCP | 1 << HASH_TYPE_IPV6 | 1 << HASH_TYPE_IPV6_TCP;

/// `XEN_NETIF_CTRL_TYPE_*`: what a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlType {
    /// `GET_HASH_FLAGS` (1): which hash types the backend supports.
    GetHashFlags,
    /// `SET_HASH_FLAGS` (2): `data[0]` = the hash types to compute.
    SetHashFlags,
    /// `SET_HASH_KEY` (3): `data[0]` = grant of the key, `data[1]` = its length.
    SetHashKey,
    /// `GET_HASH_MAPPING_SIZE` (4): the largest mapping table.
    GetHashMappingSize,
    /// `SET_HASH_MAPPING_SIZE` (5): `data[0]` = entries in the table.
    SetHashMappingSize,
    /// `SET_HASH_MAPPING` (6): `data[0]` = grant of a sub-table of u32
    /// queue numbers, `data[1]` = its entries, `data[2]` = its first index.
    SetHashMapping,
    /// `SET_HASH_ALGORITHM` (7): `data[0]` = `XEN_NETIF_CTRL_HASH_ALGORITHM_*`.
    SetHashAlgorithm,
    /// `INVALID` (0) or any type the header does not define.
    Unknown(u16),
}

impl CtrlType {
    /// Decodes a wire value.
    pub fn from_raw(v: u16) -> Self {
        match v {
            1 => Self::GetHashFlags,
            2 => Self::SetHashFlags,
            3 => Self::SetHashKey,
            4 => Self::GetHashMappingSize,
            5 => Self::SetHashMappingSize,
            6 => Self::SetHashMapping,
            7 => Self::SetHashAlgorithm,
            n => Self::Unknown(n),
        }
    }

    /// The wire value.
    pub fn to_raw(self) -> u16 {
        match self {
            Self::GetHashFlags => 1,
            Self::SetHashFlags => 2,
            Self::SetHashKey => 3,
            Self::GetHashMappingSize => 4,
            Self::SetHashMappingSize => 5,
            Self::SetHashMapping => 6,
            Self::SetHashAlgorithm => 7,
            Self::Unknown(n) => n,
        }
    }
}

/// `XEN_NETIF_CTRL_STATUS_*`: how a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtrlStatus {
    /// `SUCCESS` (0).
    Success,
    /// `NOT_SUPPORTED` (1): unknown request, or not in the current state.
    NotSupported,
    /// `INVALID_PARAMETER` (2): a value, grant or table entry is wrong.
    InvalidParameter,
    /// `BUFFER_OVERFLOW` (3): larger than the backend supports.
    BufferOverflow,
}

impl CtrlStatus {
    /// The wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::Success => 0,
            Self::NotSupported => 1,
            Self::InvalidParameter => 2,
            Self::BufferOverflow => 3,
        }
    }

    /// Decodes a wire value (for frontends and tests); None for values the
    /// header does not define.
    pub fn from_raw(v: u32) -> Option<Self> {
        match v {
            0 => Some(Self::Success),
            1 => Some(Self::NotSupported),
            2 => Some(Self::InvalidParameter),
            3 => Some(Self::BufferOverflow),
            _ => None,
        }
    }
}

/// `struct xen_netif_ctrl_request`, decoded from a copy of the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// What is asked.
    pub ty: CtrlType,
    /// Arguments, by type.
    pub data: [u32; 3],
}

impl CtrlRequest {
    /// Decodes an entry (missing bytes read as zero).
    pub fn parse(b: &[u8]) -> Self {
        Self { id: le16(b, 0), ty: CtrlType::from_raw(le16(b, 2)), data: [le32(b, 4), le32(b, 8), le32(b, 12)] }
    }

    /// Encodes the request (the frontend's side, for fakes and tests).
    pub fn emit(&self) -> [u8; CTRL_ENTRY_SIZE] {
        let mut b = [0u8; CTRL_ENTRY_SIZE];
        put16(&mut b, 0, self.id);
        put16(&mut b, 2, self.ty.to_raw());
        for (i, d) in self.data.iter().enumerate() {
            put32(&mut b, 4 + 4 * i, *d);
        }
        b
    }
}

/// `struct xen_netif_ctrl_response`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The request's type, as it came (unknown types echoed unchanged).
    pub ty: u16,
    /// `XEN_NETIF_CTRL_STATUS_*` (raw: a frontend may see any value).
    pub status: u32,
    /// The answer, by type (0 when there is none).
    pub data: u32,
}

impl CtrlResponse {
    /// Encodes the response.
    pub fn emit(&self) -> [u8; CTRL_RESPONSE_SIZE] {
        let mut b = [0u8; CTRL_RESPONSE_SIZE];
        put16(&mut b, 0, self.id);
        put16(&mut b, 2, self.ty);
        put32(&mut b, 4, self.status);
        put32(&mut b, 8, self.data);
        b
    }

    /// Decodes a response (the frontend's side).
    pub fn parse(b: &[u8]) -> Self {
        Self { id: le16(b, 0), ty: le16(b, 2), status: le32(b, 4), data: le32(b, 8) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout_matches_netif_h() {
        let r = CtrlRequest { id: 0x0102, ty: CtrlType::SetHashMapping, data: [0x0a0b_0c0d, 3, 0xffff_ffff] };
        let b = r.emit();
        assert_eq!(b, [2, 1, 6, 0, 0x0d, 0x0c, 0x0b, 0x0a, 3, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(CtrlRequest::parse(&b), r);
        assert_eq!(CtrlRequest::parse(&[1, 0, 7]), CtrlRequest { id: 1, ty: CtrlType::Unknown(0), data: [0; 3] });
    }

    #[test]
    fn response_layout_matches_netif_h() {
        let r = CtrlResponse { id: 7, ty: 99, status: CtrlStatus::BufferOverflow.to_raw(), data: 128 };
        let b = r.emit();
        assert_eq!(b, [7, 0, 99, 0, 3, 0, 0, 0, 128, 0, 0, 0]);
        assert_eq!(CtrlResponse::parse(&b), r);
    }

    #[test]
    fn types_and_statuses_roundtrip() {
        for v in 0..=9u16 {
            assert_eq!(CtrlType::from_raw(v).to_raw(), v);
        }
        assert_eq!(CtrlType::from_raw(0), CtrlType::Unknown(0));
        assert_eq!(CtrlType::from_raw(7), CtrlType::SetHashAlgorithm);
        for v in 0..4 {
            assert_eq!(CtrlStatus::from_raw(v).map(CtrlStatus::to_raw), Some(v));
        }
        assert_eq!(CtrlStatus::from_raw(4), None);
        assert_eq!(HASH_FLAGS_ALL, 0xf);
    }
}
