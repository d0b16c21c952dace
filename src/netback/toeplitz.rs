//! The Toeplitz hash (`XEN_NETIF_CTRL_HASH_ALGORITHM_TOEPLITZ`,
//! xen/include/public/io/netif.h; Microsoft's RSS hash): for every bit of
//! the input, from the most significant bit of its first byte on, when the
//! bit is set XOR the 32 key bits that start at the same bit position into
//! the result. The key is read as one long bit string; bits past its end
//! are zero.
//!
//! A 36-byte input (IPv6 addresses and TCP ports, the longest netif.h
//! defines) uses key bits 0..320: the 40-byte key a frontend may set.
#![forbid(unsafe_code)]

/// Bytes of key the backend keeps (`XEN_NETBK_MAX_HASH_KEY_SIZE` in Linux):
/// enough for the longest hash input.
pub const KEY_SIZE: usize = 40;

/// Longest input netif.h defines (IPv6 + TCP): 2 × 16 address bytes and
/// 2 × 2 port bytes.
pub const MAX_INPUT: usize = 36;

/// The key of the published RSS verification vectors: Microsoft's
/// "Verifying the RSS Hash Calculation" and Intel's 82599 datasheet
/// (7.1.2.8.3, "RSS Verification Suite"); the same table is in DPDK's
/// app/test/test_thash.c, where it was read. Tests check hashes against it.
pub const VERIFICATION_KEY: [u8; KEY_SIZE] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca, 0x2b,
    0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac,
    0x01, 0xfa,
];

/// The Toeplitz hash of `input` under `key`.
///
/// A 64-bit window holds the key bits starting at the current input byte;
/// bit `b` of that byte (0 = most significant) selects the 32 window bits
/// starting at `b`. After each byte the window moves on by 8 bits and
/// takes in the next key byte (zero past the key).
pub fn hash(key: &[u8], input: &[u8]) -> u32 {
    let key_byte = |i: usize| u64::from(key.get(i).copied().unwrap_or(0));
    let mut window = (0..8).fold(0u64, |w, i| w << 8 | key_byte(i));
    let mut result = 0u32;
    for (i, &byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                // Bits [bit, bit + 32) of the window, counted from the top.
                result ^= (window >> (32 - bit)) as u32;
            }
        }
        window = window << 8 | key_byte(i + 8);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors published with `VERIFICATION_KEY` (see there).
    const KEY: [u8; KEY_SIZE] = VERIFICATION_KEY;

    /// (destination, destination port, source, source port, IPv4 hash,
    /// IPv4 + TCP hash), in the order of the published table.
    type V4Row = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const V4: [V4Row; 5] = [
        ([161, 142, 100, 80], 1766, [66, 9, 149, 187], 2794, 0x323e_8fc2, 0x51cc_c178),
        ([65, 69, 140, 83], 4739, [199, 92, 111, 2], 14230, 0xd718_262a, 0xc626_b0ea),
        ([12, 22, 207, 184], 38024, [24, 19, 198, 95], 12898, 0xd2d0_a5de, 0x5c2b_394a),
        ([209, 142, 163, 6], 2217, [38, 27, 205, 30], 48228, 0x8298_9176, 0xafc7_327f),
        ([202, 188, 127, 2], 1303, [153, 39, 163, 191], 44251, 0x5d18_09c5, 0x10e8_28a2),
    ];

    fn v6(s: &str) -> [u8; 16] {
        match s.parse::<core::net::Ipv6Addr>() {
            Ok(a) => a.octets(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    /// The input netif.h defines: source address, destination address,
    /// then (for the TCP types) source port and destination port, all in
    /// network byte order.
    fn input(src: &[u8], dst: &[u8], ports: Option<(u16, u16)>) -> Vec<u8> {
        let mut v = [src, dst].concat();
        if let Some((s, d)) = ports {
            v.extend(s.to_be_bytes());
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn ipv4_vectors() {
        for (dst, dport, src, sport, l3, l4) in V4 {
            assert_eq!(hash(&KEY, &input(&src, &dst, None)), l3, "IPv4 {dst:?} <- {src:?}");
            assert_eq!(hash(&KEY, &input(&src, &dst, Some((sport, dport)))), l4, "IPv4+TCP {dst:?} <- {src:?}");
        }
    }

    #[test]
    fn ipv6_vectors() {
        let table = [
            ("3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc1_8cd5, 0x4020_7d3d),
            ("ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c_461c, 0xdde5_1bbf),
            ("fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61_e985, 0x02d1_feef),
        ];
        for (dst, dport, src, sport, l3, l4) in table {
            let (d, s) = (v6(dst), v6(src));
            assert_eq!(hash(&KEY, &input(&s, &d, None)), l3, "IPv6 {dst} <- {src}");
            let full = input(&s, &d, Some((sport, dport)));
            assert_eq!(full.len(), MAX_INPUT);
            assert_eq!(hash(&KEY, &full), l4, "IPv6+TCP {dst} <- {src}");
        }
    }

    #[test]
    fn key_bits_past_the_key_are_zero() {
        // The hash is linear in the input: single bits pick 32-bit key
        // windows. The first bit picks the key's first 4 bytes; the last
        // bit of a 36-byte input picks bits 287..319, the key's last 33.
        let mut one = [0u8; MAX_INPUT];
        one[0] = 0x80;
        assert_eq!(hash(&KEY, &one), 0x6d5a_56da);
        let mut last = [0u8; MAX_INPUT];
        last[MAX_INPUT - 1] = 1;
        let want = u32::from(KEY[35] & 1) << 31 | u32::from_be_bytes([KEY[36], KEY[37], KEY[38], KEY[39]]) >> 1;
        assert_eq!(hash(&KEY, &last), want);
        // A short key is padded with zeroes; an empty key hashes to 0.
        assert_eq!(hash(&KEY[..4], &one), 0x6d5a_56da);
        assert_eq!(hash(&KEY[..4], &last), 0);
        assert_eq!(hash(&[], &one), 0);
        assert_eq!(hash(&KEY, &[]), 0);
        // Input bytes from the 40th on see only key bits past the key:
        // they change nothing, and nothing panics.
        assert_eq!(hash(&KEY, &[0xff; 64]), hash(&KEY, &[0xff; 40]));
        assert_ne!(hash(&KEY, &[0xff; 40]), hash(&KEY, &[0xff; 39]));
    }
}
