//! Locating the IP and TCP/UDP headers of an Ethernet frame for checksum
//! completion and segmentation, robust against hostile bytes: every offset
//! is bounded by the frame, every failure is a typed error.
#![forbid(unsafe_code)]

/// Ethernet header length.
pub const ETH_HDR: usize = 14;
/// 802.1Q tag length.
pub const VLAN_TAG: usize = 4;
/// IPv6 extension headers walked at most.
pub const MAX_EXT_HEADERS: usize = 8;
/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// Why a frame's headers cannot be used for checksum or GSO work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The frame ends before a header it needs: `need` bytes, `have`.
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// Neither IPv4 nor IPv6 (after at most one VLAN tag).
    NotIp(u16),
    /// IP version nibble disagrees with the EtherType.
    BadVersion(u8),
    /// IPv4 header length below 20 bytes.
    BadIhl(u8),
    /// IP length field inconsistent with its header or the frame.
    BadIpLength(usize),
    /// An IP fragment: its L4 header and payload are not all here.
    Fragment,
    /// More IPv6 extension headers than [`MAX_EXT_HEADERS`].
    TooManyExtHeaders,
    /// Not TCP or UDP (after extension headers).
    UnsupportedProto(u8),
    /// TCP data offset below 5 words or beyond the segment.
    BadTcpHeader(u8),
    /// L4 segment shorter than its fixed header.
    BadL4Length(usize),
}

/// IP version of a parsed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4 with its addresses.
    V4 {
        /// Source.
        src: [u8; 4],
        /// Destination.
        dst: [u8; 4],
    },
    /// IPv6 with its addresses (the header's, as Linux uses).
    V6 {
        /// Source.
        src: [u8; 16],
        /// Destination.
        dst: [u8; 16],
    },
}

/// Where the headers of a TCP or UDP frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    /// Offset of the IP header.
    pub l3: usize,
    /// IP version and addresses.
    pub ip: Ip,
    /// Offset of the TCP/UDP header.
    pub l4: usize,
    /// L4 length from the IP length fields (header + payload).
    pub l4_len: usize,
    /// `PROTO_TCP` or `PROTO_UDP`.
    pub proto: u8,
    /// TCP/UDP header length (TCP: data offset; UDP: 8).
    pub l4_hdr: usize,
}

impl Headers {
    /// End of the IP datagram; bytes after it are Ethernet padding.
    pub fn end(&self) -> usize {
        self.l4 + self.l4_len
    }

    /// Offset of the L4 checksum field.
    pub fn csum_field(&self) -> usize {
        self.l4 + if self.proto == PROTO_TCP { 16 } else { 6 }
    }

    /// The pseudo-header sum for an L4 segment of `len` bytes.
    pub fn pseudo(&self, len: usize) -> u64 {
        let len = len as u32;
        match &self.ip {
            Ip::V4 { src, dst } => super::checksum::pseudo_v4(src, dst, self.proto, len),
            Ip::V6 { src, dst } => super::checksum::pseudo_v6(src, dst, self.proto, len),
        }
    }
}

fn bytes<const N: usize>(f: &[u8], at: usize) -> Result<[u8; N], HeaderError> {
    let end = at.saturating_add(N);
    f.get(at..end).and_then(|s| <[u8; N]>::try_from(s).ok()).ok_or(HeaderError::Truncated { need: end, have: f.len() })
}

fn be16(f: &[u8], at: usize) -> Result<u16, HeaderError> {
    bytes::<2>(f, at).map(u16::from_be_bytes)
}

fn byte(f: &[u8], at: usize) -> Result<u8, HeaderError> {
    bytes::<1>(f, at).map(|[b]| b)
}

/// The EtherType and the offset of the L3 header (after one 802.1Q or
/// 802.1ad tag, if present).
pub fn l3(frame: &[u8]) -> Result<(u16, usize), HeaderError> {
    let t = be16(frame, 12)?;
    if t == 0x8100 || t == 0x88a8 { Ok((be16(frame, 16)?, ETH_HDR + VLAN_TAG)) } else { Ok((t, ETH_HDR)) }
}

/// Parses the Ethernet, IP and TCP/UDP headers of `frame`.
pub fn parse(frame: &[u8]) -> Result<Headers, HeaderError> {
    parse_len(frame, frame.len())
}

/// As `parse`, for the first bytes (`frame`) of a frame of `len` bytes:
/// the IP length fields are checked against `len`, and a header that
/// reaches past the bytes given is `Truncated`.
pub fn parse_len(frame: &[u8], len: usize) -> Result<Headers, HeaderError> {
    let (ethertype, l3) = l3(frame)?;
    let flen = len.max(frame.len());
    let (ip, l4, end, proto) = match ethertype {
        0x0800 => ipv4(frame, l3, flen)?,
        0x86dd => ipv6(frame, l3, flen)?,
        t => return Err(HeaderError::NotIp(t)),
    };
    let l4_len = end - l4;
    let l4_hdr = match proto {
        PROTO_TCP => {
            if l4_len < 20 {
                return Err(HeaderError::BadL4Length(l4_len));
            }
            let doff = byte(frame, l4 + 12)? >> 4;
            let h = usize::from(doff) * 4;
            if doff < 5 || h > l4_len {
                return Err(HeaderError::BadTcpHeader(doff));
            }
            h
        }
        PROTO_UDP => {
            if l4_len < 8 {
                return Err(HeaderError::BadL4Length(l4_len));
            }
            8
        }
        p => return Err(HeaderError::UnsupportedProto(p)),
    };
    Ok(Headers { l3, ip, l4, l4_len, proto, l4_hdr })
}

/// A flow hash for spreading frames over queues: TCP/UDP frames hash their
/// addresses, protocol and ports (one connection stays on one queue, in
/// order); anything else hashes its Ethernet addresses. FNV-1a: cheap, and
/// a hostile guest gains nothing by steering its own frames.
pub fn flow_hash(frame: &[u8]) -> u32 {
    flow_hash_len(frame, frame.len())
}

/// As `flow_hash`, for the first bytes (`frame`) of a frame of `len`
/// bytes; the same value as the whole frame's when its headers are all in
/// `frame` (`parse_len` does not find them `Truncated`).
pub fn flow_hash_len(frame: &[u8], len: usize) -> u32 {
    fn fnv(h: u32, bytes: &[u8]) -> u32 {
        bytes.iter().fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    }
    let h = 0x811c_9dc5;
    match parse_len(frame, len) {
        Ok(hd) => {
            let h = match &hd.ip {
                Ip::V4 { src, dst } => fnv(fnv(h, src), dst),
                Ip::V6 { src, dst } => fnv(fnv(h, src), dst),
            };
            let ports = frame.get(hd.l4..hd.l4 + 4).unwrap_or(&[]);
            fnv(fnv(h, &[hd.proto]), ports)
        }
        Err(_) => fnv(h, frame.get(..12).unwrap_or(frame)),
    }
}

/// Returns (addresses, L4 offset, datagram end, protocol).
fn ipv4(f: &[u8], l3: usize, flen: usize) -> Result<(Ip, usize, usize, u8), HeaderError> {
    let vihl = byte(f, l3)?;
    if vihl >> 4 != 4 {
        return Err(HeaderError::BadVersion(vihl >> 4));
    }
    let ihl = usize::from(vihl & 0xf) * 4;
    if ihl < 20 {
        return Err(HeaderError::BadIhl(vihl & 0xf));
    }
    bytes::<1>(f, l3 + ihl - 1)?;
    let total = usize::from(be16(f, l3 + 2)?);
    if total < ihl || l3 + total > flen {
        return Err(HeaderError::BadIpLength(total));
    }
    if be16(f, l3 + 6)? & 0x3fff != 0 {
        return Err(HeaderError::Fragment);
    }
    let proto = byte(f, l3 + 9)?;
    let ip = Ip::V4 { src: bytes(f, l3 + 12)?, dst: bytes(f, l3 + 16)? };
    Ok((ip, l3 + ihl, l3 + total, proto))
}

fn ipv6(f: &[u8], l3: usize, flen: usize) -> Result<(Ip, usize, usize, u8), HeaderError> {
    let v = byte(f, l3)? >> 4;
    if v != 6 {
        return Err(HeaderError::BadVersion(v));
    }
    let plen = usize::from(be16(f, l3 + 4)?);
    let end = l3 + 40 + plen;
    if plen == 0 || end > flen {
        // Zero is a jumbogram (or nothing to checksum); neither is for us.
        return Err(HeaderError::BadIpLength(plen));
    }
    let ip = Ip::V6 { src: bytes(f, l3 + 8)?, dst: bytes(f, l3 + 24)? };
    let mut next = byte(f, l3 + 6)?;
    let mut at = l3 + 40;
    for _ in 0..=MAX_EXT_HEADERS {
        let len = match next {
            PROTO_TCP | PROTO_UDP => return Ok((ip, at, end, next)),
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => (usize::from(byte(f, at + 1)?) + 1) * 8,
            // Authentication header.
            51 => (usize::from(byte(f, at + 1)?) + 2) * 4,
            // Fragment: an atomic fragment (offset 0, no M flag) is whole.
            44 => {
                if be16(f, at + 2)? & 0xfff9 != 0 {
                    return Err(HeaderError::Fragment);
                }
                8
            }
            p => return Err(HeaderError::UnsupportedProto(p)),
        };
        if at + len > end {
            return Err(HeaderError::Truncated { need: at + len, have: end });
        }
        next = byte(f, at)?;
        at += len;
    }
    Err(HeaderError::TooManyExtHeaders)
}
