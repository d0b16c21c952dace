//! xenstore wire format: a 16-byte header `{type, req_id, tx_id, len}` and a
//! payload of at most 4096 bytes (xen/include/public/io/xs_wire.h).
#![forbid(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Header size.
pub const HEADER_LEN: usize = 16;
/// `XENSTORE_PAYLOAD_MAX`.
pub const MAX_PAYLOAD: usize = 4096;
/// Ring data size of each direction (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: u32 = 1024;

/// Message types (`enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// XS_CONTROL.
    Control,
    /// XS_DIRECTORY.
    Directory,
    /// XS_READ.
    Read,
    /// XS_GET_PERMS.
    GetPerms,
    /// XS_WATCH.
    Watch,
    /// XS_UNWATCH.
    Unwatch,
    /// XS_TRANSACTION_START.
    TransactionStart,
    /// XS_TRANSACTION_END.
    TransactionEnd,
    /// XS_GET_DOMAIN_PATH.
    GetDomainPath,
    /// XS_WRITE.
    Write,
    /// XS_MKDIR.
    Mkdir,
    /// XS_RM.
    Rm,
    /// XS_SET_PERMS.
    SetPerms,
    /// XS_WATCH_EVENT.
    WatchEvent,
    /// XS_ERROR.
    Error,
    /// XS_RESET_WATCHES.
    ResetWatches,
    /// Anything else.
    Unknown(u32),
}

impl MsgType {
    /// Wire value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::Control => 0,
            Self::Directory => 1,
            Self::Read => 2,
            Self::GetPerms => 3,
            Self::Watch => 4,
            Self::Unwatch => 5,
            Self::TransactionStart => 6,
            Self::TransactionEnd => 7,
            Self::GetDomainPath => 10,
            Self::Write => 11,
            Self::Mkdir => 12,
            Self::Rm => 13,
            Self::SetPerms => 14,
            Self::WatchEvent => 15,
            Self::Error => 16,
            Self::ResetWatches => 21,
            Self::Unknown(n) => n,
        }
    }

    /// Decodes a wire value.
    pub fn from_raw(v: u32) -> Self {
        match v {
            0 => Self::Control,
            1 => Self::Directory,
            2 => Self::Read,
            3 => Self::GetPerms,
            4 => Self::Watch,
            5 => Self::Unwatch,
            6 => Self::TransactionStart,
            7 => Self::TransactionEnd,
            10 => Self::GetDomainPath,
            11 => Self::Write,
            12 => Self::Mkdir,
            13 => Self::Rm,
            14 => Self::SetPerms,
            15 => Self::WatchEvent,
            16 => Self::Error,
            21 => Self::ResetWatches,
            n => Self::Unknown(n),
        }
    }
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Type.
    pub ty: MsgType,
    /// Request id (echoed in the reply).
    pub req_id: u32,
    /// Transaction id (0 = none).
    pub tx_id: u32,
    /// Payload length.
    pub len: u32,
}

/// Wire-level errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Payload longer than `MAX_PAYLOAD`.
    TooLong(usize),
    /// A path or value contains a NUL where none may be.
    EmbeddedNul,
}

impl Header {
    /// Parses a header; a length over `MAX_PAYLOAD` is an error.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Self, WireError> {
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let len = w(12);
        if len as usize > MAX_PAYLOAD {
            return Err(WireError::TooLong(len as usize));
        }
        Ok(Self { ty: MsgType::from_raw(w(0)), req_id: w(4), tx_id: w(8), len })
    }

    /// Encodes a header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.ty.to_raw().to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// Encodes a whole message from payload parts (already NUL-terminated where
/// the protocol wants it).
pub fn encode(ty: MsgType, req_id: u32, tx_id: u32, parts: &[&[u8]]) -> Result<Vec<u8>, WireError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PAYLOAD {
        return Err(WireError::TooLong(len));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + len);
    out.extend_from_slice(&Header { ty, req_id, tx_id, len: len as u32 }.encode());
    for p in parts {
        out.extend_from_slice(p);
    }
    Ok(out)
}

/// Splits a payload of NUL-terminated strings (a trailing part without NUL is
/// kept too); non-UTF-8 bytes are replaced.
pub fn split_strings(payload: &[u8]) -> Vec<String> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    if body.is_empty() {
        return Vec::new();
    }
    body.split(|&b| b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect()
}

/// Permission kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermKind {
    /// `n`: none.
    None,
    /// `r`: read.
    Read,
    /// `w`: write.
    Write,
    /// `b`: both.
    Both,
}

/// One permission entry, e.g. `r5`; the first entry names the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perm {
    /// Kind.
    pub kind: PermKind,
    /// Domain.
    pub domid: u16,
}

impl Perm {
    /// Parses `r5`-style text.
    pub fn parse(s: &str) -> Option<Self> {
        let mut c = s.chars();
        let kind = match c.next()? {
            'n' => PermKind::None,
            'r' => PermKind::Read,
            'w' => PermKind::Write,
            'b' => PermKind::Both,
            _ => return None,
        };
        let rest = c.as_str();
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { kind, domid: rest.parse().ok()? })
    }
}

impl fmt::Display for Perm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            PermKind::None => 'n',
            PermKind::Read => 'r',
            PermKind::Write => 'w',
            PermKind::Both => 'b',
        };
        write!(f, "{k}{}", self.domid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_limits() {
        let h = Header { ty: MsgType::Write, req_id: 7, tx_id: 3, len: 12 };
        assert_eq!(Header::parse(&h.encode()), Ok(h));
        let mut big = h.encode();
        big[12..16].copy_from_slice(&4097u32.to_le_bytes());
        assert_eq!(Header::parse(&big), Err(WireError::TooLong(4097)));
        let mut odd = h.encode();
        odd[0..4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(Header::parse(&odd).unwrap().ty, MsgType::Unknown(99));
        for v in 0..32 {
            assert_eq!(MsgType::from_raw(v).to_raw(), v);
        }
    }

    #[test]
    fn encode_checks_length() {
        let m = encode(MsgType::Read, 1, 0, &[b"domid\0"]).unwrap();
        assert_eq!(m.len(), 16 + 6);
        assert_eq!(&m[16..], b"domid\0");
        let big = vec![b'a'; 4097];
        assert_eq!(encode(MsgType::Write, 1, 0, &[&big]), Err(WireError::TooLong(4097)));
    }

    #[test]
    fn strings_and_perms() {
        assert_eq!(split_strings(b"a\0bc\0"), vec!["a", "bc"]);
        assert_eq!(split_strings(b"a\0bc"), vec!["a", "bc"]);
        assert!(split_strings(b"").is_empty());
        assert!(split_strings(b"\0").is_empty());
        assert_eq!(Perm::parse("r5"), Some(Perm { kind: PermKind::Read, domid: 5 }));
        assert_eq!(Perm::parse("b0").unwrap().to_string(), "b0");
        for bad in ["", "x1", "r", "r-1", "r99999", "r1a"] {
            assert_eq!(Perm::parse(bad), None, "{bad}");
        }
    }
}
