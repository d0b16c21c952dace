//! Frame builders and an independent, deliberately plain checksum for the
//! switch tests.
#![allow(dead_code)]

/// xorshift64*: a fixed-seed PRNG.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// RFC 1071 the slow way: 16-bit words, fold after every addition.
pub fn ref_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < data.len() {
        let hi = u32::from(data[i]) << 8;
        let lo = if i + 1 < data.len() { u32::from(data[i + 1]) } else { 0 };
        sum += hi | lo;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    !(sum as u16)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp,
    Udp,
}

impl L4 {
    pub fn proto(self) -> u8 {
        match self {
            L4::Tcp => 6,
            L4::Udp => 17,
        }
    }
    pub fn csum_off(self) -> usize {
        match self {
            L4::Tcp => 16,
            L4::Udp => 6,
        }
    }
}

/// How to build a test frame.
#[derive(Clone, Debug)]
pub struct Spec {
    pub v6: bool,
    pub vlan: Option<u16>,
    pub l4: L4,
    /// IPv4 option bytes (multiple of 4) or IPv6 hop-by-hop options block count (8 bytes each).
    pub ip_opts: usize,
    /// TCP option bytes (multiple of 4).
    pub tcp_opts: usize,
    pub payload: Vec<u8>,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub seq: u32,
    pub tcp_flags: u8,
    pub ip_id: u16,
    /// Ethernet padding after the datagram.
    pub pad: usize,
}

impl Spec {
    pub fn new(v6: bool, l4: L4, payload: Vec<u8>) -> Self {
        Spec {
            v6,
            vlan: None,
            l4,
            ip_opts: 0,
            tcp_opts: 0,
            payload,
            src_mac: [0x00, 0x16, 0x3e, 0, 0, 1],
            dst_mac: [0x00, 0x16, 0x3e, 0, 0, 2],
            seq: 0x1000_0000,
            tcp_flags: 0x18,
            ip_id: 0x1234,
            pad: 0,
        }
    }
}

pub const V4_SRC: [u8; 4] = [10, 0, 0, 1];
pub const V4_DST: [u8; 4] = [10, 0, 0, 2];
pub const V6_SRC: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x16, 0x3e, 0xff, 0xfe, 0, 0, 1];
pub const V6_DST: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];

/// Where things landed in a built frame.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub l3: usize,
    pub l4: usize,
    pub l4_hdr: usize,
    pub end: usize,
}

/// Builds a frame; the L4 checksum field holds `csum_field`.
pub fn build(s: &Spec, csum_field: u16) -> (Vec<u8>, Layout) {
    let mut f = Vec::new();
    f.extend_from_slice(&s.dst_mac);
    f.extend_from_slice(&s.src_mac);
    if let Some(tag) = s.vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&tag.to_be_bytes());
    }
    f.extend_from_slice(if s.v6 { &[0x86, 0xdd] } else { &[0x08, 0x00] });
    let l3 = f.len();
    let l4_hdr = match s.l4 {
        L4::Tcp => 20 + s.tcp_opts,
        L4::Udp => 8,
    };
    let l4_len = l4_hdr + s.payload.len();
    if s.v6 {
        let ext = s.ip_opts * 8;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((ext + l4_len) as u16).to_be_bytes());
        f.push(if s.ip_opts > 0 { 0 } else { s.l4.proto() });
        f.push(64);
        f.extend_from_slice(&V6_SRC);
        f.extend_from_slice(&V6_DST);
        for i in 0..s.ip_opts {
            let next = if i + 1 == s.ip_opts { s.l4.proto() } else { 60 };
            // next header, length 0 (8 bytes), PadN option of 4 bytes of padding.
            f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
        }
    } else {
        let ihl = 20 + s.ip_opts;
        f.push(0x40 | (ihl / 4) as u8);
        f.push(0);
        f.extend_from_slice(&((ihl + l4_len) as u16).to_be_bytes());
        f.extend_from_slice(&s.ip_id.to_be_bytes());
        f.extend_from_slice(&[0x40, 0]);
        f.push(64);
        f.push(s.l4.proto());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&V4_SRC);
        f.extend_from_slice(&V4_DST);
        f.extend(std::iter::repeat_n(1u8, s.ip_opts)); // NOP options
        let c = ref_checksum(&f[l3..l3 + ihl]);
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = f.len();
    match s.l4 {
        L4::Tcp => {
            f.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
            f.extend_from_slice(&s.seq.to_be_bytes());
            f.extend_from_slice(&0x2000_0000u32.to_be_bytes());
            f.push((((20 + s.tcp_opts) / 4) as u8) << 4);
            f.push(s.tcp_flags);
            f.extend_from_slice(&[0xff, 0xff]);
            f.extend_from_slice(&csum_field.to_be_bytes());
            f.extend_from_slice(&[0, 0]);
            f.extend(std::iter::repeat_n(1u8, s.tcp_opts));
        }
        L4::Udp => {
            f.extend_from_slice(&[0x30, 0x39, 0x00, 0x35]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&csum_field.to_be_bytes());
        }
    }
    f.extend_from_slice(&s.payload);
    let end = f.len();
    f.extend(std::iter::repeat_n(0u8, s.pad));
    (f, Layout { l3, l4, l4_hdr, end })
}

/// The pseudo-header as bytes (RFC 793 / RFC 8200 layout).
pub fn pseudo_bytes(v6: bool, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    if v6 {
        p.extend_from_slice(&V6_SRC);
        p.extend_from_slice(&V6_DST);
        p.extend_from_slice(&(len as u32).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        p.extend_from_slice(&V4_SRC);
        p.extend_from_slice(&V4_DST);
        p.extend_from_slice(&[0, proto]);
        p.extend_from_slice(&(len as u16).to_be_bytes());
    }
    p
}

/// The right L4 checksum of the datagram at `l4..end`, computed independently.
pub fn ref_l4_checksum(frame: &[u8], v6: bool, l4: L4, l4_off: usize, end: usize) -> u16 {
    let mut seg = frame[l4_off..end].to_vec();
    seg[l4.csum_off()] = 0;
    seg[l4.csum_off() + 1] = 0;
    let mut all = pseudo_bytes(v6, l4.proto(), seg.len());
    all.extend_from_slice(&seg);
    let c = ref_checksum(&all);
    if c == 0 && l4 == L4::Udp { 0xffff } else { c }
}

/// True when the L4 checksum in the frame verifies.
pub fn l4_verifies(frame: &[u8], v6: bool, l4: L4, l4_off: usize, end: usize) -> bool {
    let mut all = pseudo_bytes(v6, l4.proto(), end - l4_off);
    all.extend_from_slice(&frame[l4_off..end]);
    ref_checksum(&all) == 0
}
