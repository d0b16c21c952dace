//! IP anti-spoofing for a port whose vif has an `ip=` key: the addresses a
//! guest may send from. Linux driver domains get this from the
//! `vif-common.sh` hotplug script (iptables rules, one `-s <addr>` per
//! whitespace-separated entry of the backend's `ip` key, plus DHCP
//! requests); xvif checks the same in the switch, and also ARP and IPv6.
//!
//! What passes, from a port with a filter:
//! * IPv4 whose source is in a listed network, and DHCP client requests
//!   (source 0.0.0.0, UDP 68 to 67, unfragmented) so a guest can get its
//!   address;
//! * ARP (Ethernet/IPv4) whose sender address is listed, or 0.0.0.0 (RFC
//!   5227 probes);
//! * IPv6 from the port's EUI-64 link-local address (derived from its MAC)
//!   or a listed IPv6 network, and, from the unspecified address `::`,
//!   only what a host sends before it owns an address: Neighbour
//!   Solicitations for duplicate address detection, Router Solicitations
//!   and MLD reports (RFC 4862 5.4, RFC 4861 4.1, RFC 3810 5.2.13);
//! * other EtherTypes, except VLAN-tagged frames (802.1Q, 802.1ad), which
//!   are dropped: the filter would not see the IP header inside them.
//!
//! Everything else is dropped and counted as `spoofed_ip`. Parsing of the
//! frame never reads out of bounds: a frame too short for the header it
//! claims is dropped.
#![forbid(unsafe_code)]

use alloc::vec::Vec;
use core::net::Ipv6Addr;

/// Entries of an `ip` key, at most (more is refused as malformed).
pub const MAX_ENTRIES: usize = 32;

const ETH: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const PROTO_UDP: u8 = 17;
const NH_HOP_BY_HOP: u8 = 0;
const NH_ICMPV6: u8 = 58;
/// ICMPv6 types a host sends from `::`: MLDv1 report, Router and Neighbour
/// Solicitation, MLDv2 report.
const ICMPV6_FROM_UNSPECIFIED: [u8; 4] = [131, 133, 135, 143];

/// An address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net<const N: usize> {
    /// The address.
    pub addr: [u8; N],
    /// Prefix length, at most `8 * N`.
    pub prefix: u8,
}

impl<const N: usize> Net<N> {
    /// True when `a` is inside this network.
    pub fn contains(&self, a: &[u8; N]) -> bool {
        let mut bits = usize::from(self.prefix);
        for (x, y) in self.addr.iter().zip(a.iter()) {
            if bits == 0 {
                return true;
            }
            let mask = if bits >= 8 { 0xff } else { 0xffu8 << (8 - bits) };
            if (x ^ y) & mask != 0 {
                return false;
            }
            bits = bits.saturating_sub(8);
        }
        true
    }
}

/// Why an `ip` key was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpKeyError {
    /// Not UTF-8, empty, or more than [`MAX_ENTRIES`] entries.
    Malformed,
    /// An entry that is neither an IPv4 nor an IPv6 address or network.
    BadEntry(alloc::string::String),
}

/// Why a frame failed the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSpoof {
    /// IPv4 from an address not listed.
    Ipv4([u8; 4]),
    /// ARP with a sender address not listed.
    Arp([u8; 4]),
    /// IPv6 from an address not allowed.
    Ipv6([u8; 16]),
    /// A VLAN-tagged frame (the filter cannot see inside).
    Tagged(u16),
    /// Too short for the header its EtherType announces.
    Truncated(u16),
}

/// The addresses one port may send from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpFilter {
    /// IPv4 networks (a plain address is a /32).
    pub v4: Vec<Net<4>>,
    /// IPv6 networks (a plain address is a /128).
    pub v6: Vec<Net<16>>,
    /// The EUI-64 link-local address of the port's MAC.
    pub link_local: [u8; 16],
}

/// The EUI-64 link-local address of `mac` (RFC 4291 appendix A).
pub fn link_local(mac: [u8; 6]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfe;
    a[1] = 0x80;
    a[8..11].copy_from_slice(&[mac[0] ^ 0x02, mac[1], mac[2]]);
    a[11] = 0xff;
    a[12] = 0xfe;
    a[13..16].copy_from_slice(&[mac[3], mac[4], mac[5]]);
    a
}

fn split_prefix(entry: &str, max: u8) -> Option<(&str, u8)> {
    match entry.split_once('/') {
        None => Some((entry, max)),
        Some((a, p)) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let n: u8 = p.parse().ok()?;
            (n <= max).then_some((a, n))
        }
    }
}

fn parse_entry(entry: &str) -> Option<Result<Net<4>, Net<16>>> {
    if entry.contains(':') {
        let (a, prefix) = split_prefix(entry, 128)?;
        let addr: Ipv6Addr = a.parse().ok()?;
        Some(Err(Net { addr: addr.octets(), prefix }))
    } else {
        let (a, prefix) = split_prefix(entry, 32)?;
        let addr = crate::config::parse_ipv4(a)?;
        Some(Ok(Net { addr, prefix }))
    }
}

impl IpFilter {
    /// Parses an `ip` key (whitespace-separated IPv4/IPv6 addresses, each
    /// optionally `/prefix`) for a port whose MAC is `mac`. A trailing NUL
    /// is tolerated; anything else malformed refuses the whole key.
    pub fn parse(value: &[u8], mac: [u8; 6]) -> Result<Self, IpKeyError> {
        let s = core::str::from_utf8(value).map_err(|_| IpKeyError::Malformed)?.trim_end_matches('\0');
        let mut f = Self { v4: Vec::new(), v6: Vec::new(), link_local: link_local(mac) };
        for (i, entry) in s.split_ascii_whitespace().enumerate() {
            if i >= MAX_ENTRIES {
                return Err(IpKeyError::Malformed);
            }
            match parse_entry(entry) {
                Some(Ok(n)) => f.v4.push(n),
                Some(Err(n)) => f.v6.push(n),
                None => return Err(IpKeyError::BadEntry(entry.chars().take(64).collect())),
            }
        }
        if f.v4.is_empty() && f.v6.is_empty() {
            return Err(IpKeyError::Malformed);
        }
        Ok(f)
    }

    fn v4_ok(&self, a: &[u8; 4]) -> bool {
        self.v4.iter().any(|n| n.contains(a))
    }

    fn v6_ok(&self, a: &[u8; 16]) -> bool {
        *a == self.link_local || self.v6.iter().any(|n| n.contains(a))
    }

    /// Checks the source addresses of an Ethernet frame.
    pub fn check(&self, frame: &[u8]) -> Result<(), IpSpoof> {
        let at = |i: usize| frame.get(i).copied().unwrap_or(0);
        let be16 = |i: usize| u16::from_be_bytes([at(i), at(i + 1)]);
        let ethertype = be16(12);
        let need = |n: usize| if frame.len() < ETH + n { Err(IpSpoof::Truncated(ethertype)) } else { Ok(()) };
        let arr4 = |i: usize| [at(i), at(i + 1), at(i + 2), at(i + 3)];
        match ethertype {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => Err(IpSpoof::Tagged(ethertype)),
            ETHERTYPE_IPV4 => {
                need(20)?;
                let ihl = usize::from(at(ETH) & 0x0f) * 4;
                if at(ETH) >> 4 != 4 || ihl < 20 {
                    return Err(IpSpoof::Truncated(ethertype));
                }
                let src = arr4(ETH + 12);
                if self.v4_ok(&src) {
                    return Ok(());
                }
                // A DHCP client request: 0.0.0.0, UDP 68 -> 67, not a fragment.
                let unfragmented = be16(ETH + 6) & 0x3fff == 0;
                let udp = ETH + ihl;
                let dhcp = src == [0; 4]
                    && at(ETH + 9) == PROTO_UDP
                    && unfragmented
                    && frame.len() >= udp + 8
                    && be16(udp) == 68
                    && be16(udp + 2) == 67;
                if dhcp { Ok(()) } else { Err(IpSpoof::Ipv4(src)) }
            }
            ETHERTYPE_ARP => {
                need(28)?;
                // Ethernet hardware, IPv4 protocol, 6- and 4-byte addresses.
                if be16(ETH) != 1 || be16(ETH + 2) != ETHERTYPE_IPV4 || at(ETH + 4) != 6 || at(ETH + 5) != 4 {
                    return Err(IpSpoof::Truncated(ethertype));
                }
                let spa = arr4(ETH + 14);
                if spa == [0; 4] || self.v4_ok(&spa) { Ok(()) } else { Err(IpSpoof::Arp(spa)) }
            }
            ETHERTYPE_IPV6 => {
                need(40)?;
                let mut src = [0u8; 16];
                for (i, b) in src.iter_mut().enumerate() {
                    *b = at(ETH + 8 + i);
                }
                if at(ETH) >> 4 == 6 && self.v6_ok(&src) {
                    return Ok(());
                }
                if at(ETH) >> 4 == 6 && src == [0; 16] && self.unspecified_ok(frame) {
                    return Ok(());
                }
                Err(IpSpoof::Ipv6(src))
            }
            _ => Ok(()),
        }
    }

    /// What a host may send from `::`: ICMPv6 of the types above, directly
    /// or after one hop-by-hop header (MLD reports carry Router Alert).
    fn unspecified_ok(&self, frame: &[u8]) -> bool {
        let mut nh = frame.get(ETH + 6).copied().unwrap_or(0xff);
        let mut off = ETH + 40;
        if nh == NH_HOP_BY_HOP {
            let (Some(&next), Some(&len)) = (frame.get(off), frame.get(off + 1)) else { return false };
            nh = next;
            off += (usize::from(len) + 1) * 8;
        }
        nh == NH_ICMPV6 && frame.get(off).is_some_and(|t| ICMPV6_FROM_UNSPECIFIED.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];

    #[test]
    fn parses_lists_and_refuses_junk() {
        let f = IpFilter::parse(b"10.0.0.5 10.1.0.0/16  2001:db8::7 2001:db8:1::/48\0", MAC).unwrap();
        assert_eq!(f.v4, vec![Net { addr: [10, 0, 0, 5], prefix: 32 }, Net { addr: [10, 1, 0, 0], prefix: 16 }]);
        assert_eq!(f.v6.len(), 2);
        assert_eq!(f.v6[1].prefix, 48);
        assert!(f.v4[1].contains(&[10, 1, 200, 3]) && !f.v4[1].contains(&[10, 2, 0, 1]));
        for bad in [&b""[..], b"  ", b"10.0.0.256", b"10.0.0.1/33", b"10.0.0.1/", b"::1/129", b"fe80::g", b"\xff"] {
            assert!(IpFilter::parse(bad, MAC).is_err(), "{bad:?}");
        }
        assert!(IpFilter::parse(b"10.0.0.1,10.0.0.2", MAC).is_err());
        let many = (0..=MAX_ENTRIES).map(|i| alloc::format!("10.0.0.{i}")).collect::<Vec<_>>().join(" ");
        assert_eq!(IpFilter::parse(many.as_bytes(), MAC), Err(IpKeyError::Malformed));
    }

    #[test]
    fn eui64_link_local() {
        let ll: Ipv6Addr = "fe80::216:3eff:fe12:3456".parse().unwrap();
        assert_eq!(link_local(MAC), ll.octets());
    }

    #[test]
    fn prefix_zero_matches_everything() {
        let n = Net { addr: [0u8; 4], prefix: 0 };
        assert!(n.contains(&[1, 2, 3, 4]));
        let n = Net { addr: [192, 168, 1, 0], prefix: 25 };
        assert!(n.contains(&[192, 168, 1, 127]) && !n.contains(&[192, 168, 1, 128]));
    }
}
