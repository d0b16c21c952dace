//! Receive-side hashing as a frontend configures it over the control ring
//! (xen/include/public/io/netif.h, "Hash types" and "Control messages";
//! Linux xen-netback/hash.c and `xenvif_select_queue`): an algorithm
//! (none or Toeplitz), the hash types to compute, a 40-byte key and a
//! mapping table from hash to queue.
//!
//! With Toeplitz selected, a frame for the guest is hashed over the fields
//! its enabled types name, always the most specific one that applies
//! (IPv4 + TCP over IPv4 for a TCP segment when both are enabled). A frame
//! no enabled type covers (ARP, an IPv6 frame with only IPv4 types on, a
//! VLAN-tagged frame, a malformed header) hashes to 0, as in Linux. The
//! queue is then `mapping[hash % size]`, or `hash % queues` while the table
//! is empty. With no algorithm the caller keeps its own flow hash.
//!
//! Every table entry is checked against the queue count when it is set,
//! so a lookup can only land on an existing queue (XSA-270 was a table
//! indexed out of bounds); the lookup still goes through `get`.
#![forbid(unsafe_code)]

use super::toeplitz::{self, KEY_SIZE, MAX_INPUT};
use crate::netif::ctrl::{
    CtrlStatus, HASH_ALGORITHM_NONE, HASH_ALGORITHM_TOEPLITZ, HASH_FLAGS_ALL, HASH_TYPE_IPV4, HASH_TYPE_IPV4_TCP,
    HASH_TYPE_IPV6, HASH_TYPE_IPV6_TCP,
};
use crate::switch::headers::{MAX_EXT_HEADERS, PROTO_TCP};

/// Entries the mapping table may have (`XEN_NETBK_MAX_HASH_MAPPING_SIZE`
/// in Linux; the answer to GET_HASH_MAPPING_SIZE).
pub const MAX_MAPPING: usize = 128;

/// The algorithm a frontend selected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// No hashing: the backend steers frames as it likes (the default).
    #[default]
    None,
    /// Toeplitz with the frontend's key.
    Toeplitz,
}

impl HashAlgorithm {
    /// One word, for counters.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Toeplitz => "toeplitz",
        }
    }
}

/// The hash of one frame: which type (`_XEN_NETIF_CTRL_HASH_TYPE_*`)
/// covered it, and the value (sent to the frontend in a HASH extra).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxHash {
    /// `_XEN_NETIF_CTRL_HASH_TYPE_*` (the bit number, not the flag).
    pub kind: u8,
    /// The Toeplitz value.
    pub value: u32,
}

/// One vif's hash configuration.
#[derive(Debug, Clone)]
pub struct HashConfig {
    alg: HashAlgorithm,
    flags: u32,
    key: [u8; KEY_SIZE],
    mapping: [u32; MAX_MAPPING],
    size: usize,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self { alg: HashAlgorithm::None, flags: 0, key: [0; KEY_SIZE], mapping: [0; MAX_MAPPING], size: 0 }
    }
}

impl HashConfig {
    /// No algorithm, no types, a zero key, an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The algorithm in force.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.alg
    }

    /// The hash types enabled (`XEN_NETIF_CTRL_HASH_TYPE_*` flags).
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The key (zero past what the frontend set).
    pub fn key(&self) -> &[u8; KEY_SIZE] {
        &self.key
    }

    /// The mapping table (empty: hash modulo the queue count).
    pub fn mapping(&self) -> &[u32] {
        self.mapping.get(..self.size).unwrap_or(&[])
    }

    /// SET_HASH_ALGORITHM: none or Toeplitz; anything else is invalid.
    /// The other settings are kept.
    pub fn set_algorithm(&mut self, raw: u32) -> Result<(), CtrlStatus> {
        self.alg = match raw {
            HASH_ALGORITHM_NONE => HashAlgorithm::None,
            HASH_ALGORITHM_TOEPLITZ => HashAlgorithm::Toeplitz,
            _ => return Err(CtrlStatus::InvalidParameter),
        };
        Ok(())
    }

    /// GET_HASH_FLAGS: the types we can compute, once an algorithm is set.
    pub fn supported_flags(&self) -> Result<u32, CtrlStatus> {
        match self.alg {
            HashAlgorithm::None => Err(CtrlStatus::NotSupported),
            HashAlgorithm::Toeplitz => Ok(HASH_FLAGS_ALL),
        }
    }

    /// SET_HASH_FLAGS: only known types, and only once an algorithm is set.
    pub fn set_flags(&mut self, flags: u32) -> Result<(), CtrlStatus> {
        if flags & !HASH_FLAGS_ALL != 0 || self.alg == HashAlgorithm::None {
            return Err(CtrlStatus::InvalidParameter);
        }
        self.flags = flags;
        Ok(())
    }

    /// SET_HASH_KEY with the key bytes already copied in: the octets not
    /// given are zero (an empty key clears it). The caller bounds `key` to
    /// `KEY_SIZE`; longer input is cut there.
    pub fn set_key(&mut self, key: &[u8]) {
        self.key = [0; KEY_SIZE];
        let n = key.len().min(KEY_SIZE);
        if let (Some(dst), Some(src)) = (self.key.get_mut(..n), key.get(..n)) {
            dst.copy_from_slice(src);
        }
    }

    /// SET_HASH_MAPPING_SIZE: a new, zero-filled table of `size` entries
    /// (0: modular arithmetic).
    pub fn set_mapping_size(&mut self, size: u32) -> Result<(), CtrlStatus> {
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_MAPPING {
            return Err(CtrlStatus::InvalidParameter);
        }
        self.size = size;
        self.mapping = [0; MAX_MAPPING];
        Ok(())
    }

    /// Whether entries `off..off + len` lie in the current table.
    pub fn mapping_fits(&self, off: u32, len: u32) -> bool {
        off.checked_add(len).is_some_and(|end| usize::try_from(end).is_ok_and(|end| end <= self.size))
    }

    /// SET_HASH_MAPPING with the entries already copied in: every one must
    /// name an existing queue (< `queues`) and the range must lie in the
    /// table; otherwise nothing changes. Entries outside the range keep
    /// their values.
    pub fn set_mapping(&mut self, off: u32, entries: &[u32], queues: usize) -> Result<(), CtrlStatus> {
        let len = u32::try_from(entries.len()).map_err(|_| CtrlStatus::InvalidParameter)?;
        if !self.mapping_fits(off, len) || entries.iter().any(|&q| usize::try_from(q).map_or(true, |q| q >= queues)) {
            return Err(CtrlStatus::InvalidParameter);
        }
        let start = off as usize;
        if let Some(dst) = self.mapping.get_mut(start..start + entries.len()) {
            dst.copy_from_slice(entries);
        }
        Ok(())
    }

    /// The hash of `frame` under this configuration: None when no enabled
    /// type covers it (its hash is then 0) or no algorithm is set.
    pub fn frame_hash(&self, frame: &[u8]) -> Option<RxHash> {
        if self.alg != HashAlgorithm::Toeplitz {
            return None;
        }
        let mut buf = [0u8; MAX_INPUT];
        let (kind, len) = hash_input(frame, self.flags, &mut buf)?;
        Some(RxHash { kind, value: toeplitz::hash(&self.key, buf.get(..len).unwrap_or(&[])) })
    }

    /// The queue (of `queues`) the frontend's configuration sends `frame`
    /// to, with the frame's hash; None when no algorithm is set (the
    /// caller chooses).
    pub fn queue_for(&self, frame: &[u8], queues: usize) -> Option<(usize, Option<RxHash>)> {
        if self.alg != HashAlgorithm::Toeplitz {
            return None;
        }
        let h = self.frame_hash(frame);
        let value = h.map_or(0, |h| h.value) as usize;
        let q = match self.size {
            0 => value % queues.max(1),
            size => self.mapping.get(value % size).map_or(0, |&q| q as usize),
        };
        // Entries were checked against the queue count; a vif's queue count
        // never changes, so this only guards the arithmetic.
        Some((if q < queues { q } else { 0 }, h))
    }
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    f.get(at..at.checked_add(2)?).map(|b| u16::from_be_bytes([b[0], b[1]]))
}

/// Copies the hash input of `frame` for the most specific enabled type into
/// `buf`; returns the type and the input length. Untagged IPv4 and IPv6
/// only, as Linux hashes by the frame's protocol.
fn hash_input(frame: &[u8], flags: u32, buf: &mut [u8; MAX_INPUT]) -> Option<(u8, usize)> {
    let on = |t: u8| flags & 1 << t != 0;
    const L3: usize = crate::switch::headers::ETH_HDR;
    let (addrs, ports, l3_type, l4_type) = match be16(frame, 12)? {
        0x0800 if on(HASH_TYPE_IPV4) || on(HASH_TYPE_IPV4_TCP) => {
            let vihl = *frame.get(L3)?;
            let ihl = usize::from(vihl & 0xf) * 4;
            if vihl >> 4 != 4 || ihl < 20 || frame.len() < L3 + ihl {
                return None;
            }
            // A fragment (more fragments, or an offset) has no TCP header
            // of its own to hash.
            let whole = be16(frame, L3 + 6)? & 0x3fff == 0;
            let tcp = whole && frame.get(L3 + 9) == Some(&PROTO_TCP);
            (frame.get(L3 + 12..L3 + 20)?, tcp.then_some(L3 + ihl), HASH_TYPE_IPV4, HASH_TYPE_IPV4_TCP)
        }
        0x86dd if on(HASH_TYPE_IPV6) || on(HASH_TYPE_IPV6_TCP) => {
            if frame.get(L3)? >> 4 != 6 {
                return None;
            }
            (frame.get(L3 + 8..L3 + 40)?, ipv6_tcp(frame, L3), HASH_TYPE_IPV6, HASH_TYPE_IPV6_TCP)
        }
        _ => return None,
    };
    let n = addrs.len();
    buf.get_mut(..n)?.copy_from_slice(addrs);
    let tcp_ports = ports.and_then(|at| frame.get(at..at.checked_add(4)?));
    match tcp_ports {
        Some(p) if on(l4_type) => {
            buf.get_mut(n..n + 4)?.copy_from_slice(p);
            Some((l4_type, n + 4))
        }
        _ if on(l3_type) => Some((l3_type, n)),
        _ => None,
    }
}

/// The offset of the TCP header of the IPv6 packet at `l3`, after at most
/// `MAX_EXT_HEADERS` extension headers; None for anything else, fragments
/// included.
fn ipv6_tcp(f: &[u8], l3: usize) -> Option<usize> {
    let mut next = *f.get(l3 + 6)?;
    let mut at = l3 + 40;
    for _ in 0..=MAX_EXT_HEADERS {
        let len = match next {
            PROTO_TCP => return Some(at),
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => (usize::from(*f.get(at + 1)?) + 1) * 8,
            // Authentication header.
            51 => (usize::from(*f.get(at + 1)?) + 2) * 4,
            // Fragments (44) and every other protocol: no TCP header to hash.
            _ => return None,
        };
        next = *f.get(at)?;
        at += len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const KEY: [u8; KEY_SIZE] = toeplitz::VERIFICATION_KEY;
    const V4: u32 = 1 << HASH_TYPE_IPV4;
    const V4TCP: u32 = 1 << HASH_TYPE_IPV4_TCP;
    const V6: u32 = 1 << HASH_TYPE_IPV6;
    const V6TCP: u32 = 1 << HASH_TYPE_IPV6_TCP;

    fn eth(ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x00, 0x16, 0x3e, 0, 0, 7, 0x00, 0x16, 0x3e, 0, 0, 9];
        f.extend(ethertype.to_be_bytes());
        f
    }

    /// An IPv4 frame, protocol `proto`, with 8 bytes of L4 header (ports first).
    fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, ports: (u16, u16), frag: u16) -> Vec<u8> {
        let mut f = eth(0x0800);
        f.extend([0x45, 0, 0, 28, 0, 0]);
        f.extend(frag.to_be_bytes());
        f.extend([64, proto, 0, 0]);
        f.extend(src);
        f.extend(dst);
        f.extend(ports.0.to_be_bytes());
        f.extend(ports.1.to_be_bytes());
        f.extend([0; 4]);
        f
    }

    /// An IPv6 frame with the extension headers `ext` (next header, bytes)
    /// before `proto`, and 8 bytes of L4 header.
    fn ipv6(src: &str, dst: &str, ext: &[(u8, usize)], proto: u8, ports: (u16, u16)) -> Vec<u8> {
        let a = |s: &str| s.parse::<core::net::Ipv6Addr>().map(|a| a.octets()).unwrap_or([0; 16]);
        let mut f = eth(0x86dd);
        let first = ext.first().map_or(proto, |e| e.0);
        f.extend([0x60, 0, 0, 0, 0, 0, first, 64]);
        f.extend(a(src));
        f.extend(a(dst));
        for (i, &(_, len)) in ext.iter().enumerate() {
            let next = ext.get(i + 1).map_or(proto, |e| e.0);
            let mut h = vec![0u8; len];
            h[0] = next;
            h[1] = (len / 8 - 1) as u8;
            f.extend(h);
        }
        f.extend(ports.0.to_be_bytes());
        f.extend(ports.1.to_be_bytes());
        f.extend([0; 4]);
        f
    }

    fn toeplitz_with(flags: u32) -> HashConfig {
        let mut h = HashConfig::new();
        assert_eq!(h.set_algorithm(HASH_ALGORITHM_TOEPLITZ), Ok(()));
        assert_eq!(h.set_flags(flags), Ok(()));
        h.set_key(&KEY);
        h
    }

    const SRC4: [u8; 4] = [66, 9, 149, 187];
    const DST4: [u8; 4] = [161, 142, 100, 80];

    #[test]
    fn frames_hash_over_the_most_specific_enabled_type() {
        let tcp = ipv4(SRC4, DST4, 6, (2794, 1766), 0);
        let rx = |f: u32, frame: &[u8]| toeplitz_with(f).frame_hash(frame);
        assert_eq!(rx(V4 | V4TCP, &tcp), Some(RxHash { kind: HASH_TYPE_IPV4_TCP, value: 0x51cc_c178 }));
        assert_eq!(rx(V4, &tcp), Some(RxHash { kind: HASH_TYPE_IPV4, value: 0x323e_8fc2 }));
        assert_eq!(rx(V4TCP, &tcp).map(|h| h.value), Some(0x51cc_c178));
        // UDP and fragments are not TCP: the address hash, or nothing.
        let udp = ipv4(SRC4, DST4, 17, (2794, 1766), 0);
        assert_eq!(rx(V4 | V4TCP, &udp), Some(RxHash { kind: HASH_TYPE_IPV4, value: 0x323e_8fc2 }));
        assert_eq!(rx(V4TCP, &udp), None);
        for frag in [0x2000, 0x0001] {
            let f = ipv4(SRC4, DST4, 6, (2794, 1766), frag);
            assert_eq!(rx(V4 | V4TCP, &f).map(|h| h.kind), Some(HASH_TYPE_IPV4), "{frag:#x}");
        }
        // IPv6 types do not cover IPv4, nor the reverse.
        assert_eq!(rx(V6 | V6TCP, &tcp), None);
        let t6 = ipv6("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", &[], 6, (2794, 1766));
        assert_eq!(rx(V6 | V6TCP, &t6), Some(RxHash { kind: HASH_TYPE_IPV6_TCP, value: 0x4020_7d3d }));
        assert_eq!(rx(V6, &t6), Some(RxHash { kind: HASH_TYPE_IPV6, value: 0x2cc1_8cd5 }));
        assert_eq!(rx(V4 | V4TCP, &t6), None);
        // Hashing off: nothing, whatever the flags were.
        let mut off = toeplitz_with(V4 | V4TCP);
        assert_eq!(off.set_algorithm(HASH_ALGORITHM_NONE), Ok(()));
        assert_eq!(off.frame_hash(&tcp), None);
        assert_eq!(off.queue_for(&tcp, 4), None);
    }

    #[test]
    fn ipv6_extension_headers_are_walked_and_fragments_are_not_tcp() {
        let h = toeplitz_with(V6 | V6TCP);
        let (s, d) = ("3ffe:501:8::260:97ff:fe40:efab", "ff02::1");
        let plain = ipv6(s, d, &[], 6, (14230, 4739));
        assert_eq!(h.frame_hash(&plain).map(|x| x.value), Some(0xdde5_1bbf));
        let opts = ipv6(s, d, &[(0, 8), (60, 16)], 6, (14230, 4739));
        assert_eq!(h.frame_hash(&opts), h.frame_hash(&plain), "hop-by-hop and destination options skipped");
        let frag = ipv6(s, d, &[(44, 8)], 6, (14230, 4739));
        assert_eq!(h.frame_hash(&frag), Some(RxHash { kind: HASH_TYPE_IPV6, value: 0x0f0c_461c }));
        let deep = ipv6(s, d, &[(0, 8); MAX_EXT_HEADERS + 1], 6, (14230, 4739));
        assert_eq!(h.frame_hash(&deep).map(|x| x.kind), Some(HASH_TYPE_IPV6), "too many headers: not TCP");
    }

    #[test]
    fn malformed_or_foreign_frames_hash_to_nothing() {
        let h = toeplitz_with(HASH_FLAGS_ALL);
        let tcp = ipv4(SRC4, DST4, 6, (2794, 1766), 0);
        for n in 0..tcp.len() {
            // Any cut: a hash from what is there, or none; never a panic.
            let r = h.frame_hash(&tcp[..n]);
            if n < 34 {
                assert_eq!(r, None, "{n} bytes");
            } else if n < 38 {
                assert_eq!(r.map(|x| x.kind), Some(HASH_TYPE_IPV4), "{n} bytes: no ports");
            }
        }
        let mut bad = tcp.clone();
        bad[14] = 0x44; // IHL 4
        assert_eq!(h.frame_hash(&bad), None);
        bad[14] = 0x65; // version 6 in an IPv4 frame
        assert_eq!(h.frame_hash(&bad), None);
        bad[14] = 0x4f; // IHL 15: 60 bytes of header past the frame
        assert_eq!(h.frame_hash(&bad), None);
        let mut vlan = eth(0x8100);
        vlan.extend([0, 5, 0x08, 0x00]);
        vlan.extend(&tcp[14..]);
        assert_eq!(h.frame_hash(&vlan), None, "tagged frames are not hashed (Linux hashes by skb->protocol)");
        assert_eq!(h.frame_hash(&eth(0x0806)), None);
        assert_eq!(h.frame_hash(&[]), None);
    }

    #[test]
    fn the_mapping_table_chooses_the_queue() {
        let mut h = toeplitz_with(V4 | V4TCP);
        let tcp = ipv4(SRC4, DST4, 6, (2794, 1766), 0);
        let arp = eth(0x0806);
        // No table: hash modulo the queues (0x51ccc178 % 3 == 1); no hash: 0.
        assert_eq!(h.queue_for(&tcp, 3), Some((1, Some(RxHash { kind: HASH_TYPE_IPV4_TCP, value: 0x51cc_c178 }))));
        assert_eq!(h.queue_for(&arp, 3), Some((0, None)));
        // A table of 8: index 0x51ccc178 % 8 == 0; unhashed frames use entry 0 too.
        assert_eq!(h.set_mapping_size(8), Ok(()));
        assert_eq!(h.mapping(), &[0; 8]);
        assert_eq!(h.set_mapping(0, &[3, 1, 1, 1, 1, 1, 1, 1], 4), Ok(()));
        assert_eq!(h.queue_for(&tcp, 4).map(|x| x.0), Some(3));
        assert_eq!(h.queue_for(&arp, 4).map(|x| x.0), Some(3));
        assert_eq!(h.set_mapping(0, &[2], 4), Ok(()));
        assert_eq!(h.queue_for(&tcp, 4).map(|x| x.0), Some(2));
        assert_eq!(h.mapping(), &[2, 1, 1, 1, 1, 1, 1, 1], "entries outside the range are kept");
        // Bad entries or ranges change nothing.
        assert_eq!(h.set_mapping(0, &[4], 4), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_mapping(7, &[0, 0], 4), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_mapping(u32::MAX, &[0], 4), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_mapping(8, &[], 4), Ok(()), "an empty sub-table at the end fits");
        assert_eq!(h.mapping(), &[2, 1, 1, 1, 1, 1, 1, 1]);
        // A new size clears the table.
        assert_eq!(h.set_mapping_size(MAX_MAPPING as u32 + 1), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_mapping_size(MAX_MAPPING as u32), Ok(()));
        assert_eq!(h.mapping(), &[0; MAX_MAPPING]);
        assert_eq!(h.set_mapping_size(0), Ok(()));
        assert_eq!(h.queue_for(&tcp, 1).map(|x| x.0), Some(0));
    }

    #[test]
    fn settings_follow_netif_h() {
        let mut h = HashConfig::new();
        assert_eq!(h.algorithm(), HashAlgorithm::None);
        assert_eq!(h.supported_flags(), Err(CtrlStatus::NotSupported));
        assert_eq!(h.set_flags(V4), Err(CtrlStatus::InvalidParameter), "no algorithm yet");
        assert_eq!(h.set_algorithm(2), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_algorithm(HASH_ALGORITHM_TOEPLITZ), Ok(()));
        assert_eq!(h.algorithm().name(), "toeplitz");
        assert_eq!(h.supported_flags(), Ok(0xf));
        assert_eq!(h.set_flags(0x10), Err(CtrlStatus::InvalidParameter));
        assert_eq!(h.set_flags(V6 | V4TCP), Ok(()));
        assert_eq!(h.flags(), V6 | V4TCP);
        h.set_key(&KEY[..3]);
        assert_eq!(&h.key()[..4], &[0x6d, 0x5a, 0x56, 0]);
        h.set_key(&[0xff; 64]);
        assert_eq!(h.key(), &[0xff; KEY_SIZE]);
        h.set_key(&[]);
        assert_eq!(h.key(), &[0; KEY_SIZE]);
        // An all-zero key hashes everything to 0.
        assert_eq!(h.frame_hash(&ipv4(SRC4, DST4, 6, (1, 2), 0)).map(|x| x.value), Some(0));
    }
}
