//! Ingress screening in front of the management stack: every frame from the
//! NIC is classified once; bad ones are counted and dropped before smoltcp
//! sees them (smoltcp is then told not to verify checksums again).
#![forbid(unsafe_code)]

use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet, Icmpv6Message, Icmpv6Packet, IpAddress, IpProtocol,
    Ipv4Packet, Ipv6Packet, TcpPacket, UdpPacket,
};

/// Counters of the screening step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilterStats {
    /// Frames shorter than their headers claim, or headers that do not parse.
    pub malformed: u64,
    /// Bad IPv4 header, UDP, TCP, ICMP or ICMPv6 checksums.
    pub bad_checksum: u64,
    /// EtherTypes other than IPv4, IPv6 and ARP.
    pub unknown_ethertype: u64,
    /// ICMP and ICMPv6 echo requests passed to the stack.
    pub echo_requests: u64,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to the stack.
    Accept,
    /// Dropped, counted under this reason.
    Malformed,
    /// Dropped: a checksum is wrong.
    BadChecksum,
    /// Dropped: EtherType we do not speak.
    UnknownEtherType(u16),
}

/// Classifies `frame` and counts the verdict.
pub fn screen(frame: &[u8], stats: &mut FilterStats) -> Verdict {
    let v = classify(frame, stats);
    match v {
        Verdict::Accept => {}
        Verdict::Malformed => stats.malformed += 1,
        Verdict::BadChecksum => stats.bad_checksum += 1,
        Verdict::UnknownEtherType(_) => stats.unknown_ethertype += 1,
    }
    v
}

fn classify(frame: &[u8], stats: &mut FilterStats) -> Verdict {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return Verdict::Malformed };
    match eth.ethertype() {
        EthernetProtocol::Arp => Verdict::Accept,
        EthernetProtocol::Ipv4 => ipv4(eth.payload(), stats),
        EthernetProtocol::Ipv6 => ipv6(eth.payload(), stats),
        EthernetProtocol::Unknown(t) => Verdict::UnknownEtherType(t),
    }
}

fn ipv4(p: &[u8], stats: &mut FilterStats) -> Verdict {
    let Ok(ip) = Ipv4Packet::new_checked(p) else { return Verdict::Malformed };
    if !ip.verify_checksum() {
        return Verdict::BadChecksum;
    }
    if ip.more_frags() || ip.frag_offset() != 0 {
        // The stack reassembles nothing; it drops fragments itself.
        return Verdict::Accept;
    }
    let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Udp => l4_udp(payload, &src, &dst),
        IpProtocol::Tcp => l4_tcp(payload, &src, &dst),
        IpProtocol::Icmp => {
            let Ok(icmp) = Icmpv4Packet::new_checked(payload) else { return Verdict::Malformed };
            if !icmp.verify_checksum() {
                return Verdict::BadChecksum;
            }
            if icmp.msg_type() == Icmpv4Message::EchoRequest {
                stats.echo_requests += 1;
            }
            Verdict::Accept
        }
        _ => Verdict::Accept,
    }
}

fn ipv6(p: &[u8], stats: &mut FilterStats) -> Verdict {
    let Ok(ip) = Ipv6Packet::new_checked(p) else { return Verdict::Malformed };
    let (s, d) = (ip.src_addr(), ip.dst_addr());
    let (src, dst) = (IpAddress::Ipv6(s), IpAddress::Ipv6(d));
    let payload = ip.payload();
    match ip.next_header() {
        IpProtocol::Udp => l4_udp(payload, &src, &dst),
        IpProtocol::Tcp => l4_tcp(payload, &src, &dst),
        IpProtocol::Icmpv6 => {
            let Ok(icmp) = Icmpv6Packet::new_checked(payload) else { return Verdict::Malformed };
            if !icmp.verify_checksum(&s, &d) {
                return Verdict::BadChecksum;
            }
            if icmp.msg_type() == Icmpv6Message::EchoRequest {
                stats.echo_requests += 1;
            }
            Verdict::Accept
        }
        _ => Verdict::Accept,
    }
}

fn l4_udp(p: &[u8], src: &IpAddress, dst: &IpAddress) -> Verdict {
    let Ok(udp) = UdpPacket::new_checked(p) else { return Verdict::Malformed };
    // An IPv4 UDP checksum of zero means "none"; smoltcp's check knows that.
    if udp.verify_checksum(src, dst) { Verdict::Accept } else { Verdict::BadChecksum }
}

fn l4_tcp(p: &[u8], src: &IpAddress, dst: &IpAddress) -> Verdict {
    let Ok(tcp) = TcpPacket::new_checked(p) else { return Verdict::Malformed };
    if tcp.verify_checksum(src, dst) { Verdict::Accept } else { Verdict::BadChecksum }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{EthernetAddress, EthernetRepr, Ipv4Address, Ipv4Repr, UdpRepr};

    fn udp_frame(payload: &[u8]) -> Vec<u8> {
        let src = Ipv4Address::new(10, 0, 2, 2);
        let dst = Ipv4Address::new(10, 0, 2, 15);
        let udp = UdpRepr { src_port: 1234, dst_port: 7 };
        let ip = Ipv4Repr {
            src_addr: src,
            dst_addr: dst,
            next_header: IpProtocol::Udp,
            payload_len: 8 + payload.len(),
            hop_limit: 64,
        };
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            ethertype: EthernetProtocol::Ipv4,
        };
        let mut buf = vec![0; 14 + 20 + 8 + payload.len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut f);
        let mut ipp = Ipv4Packet::new_unchecked(f.payload_mut());
        ip.emit(&mut ipp, &caps);
        let mut u = UdpPacket::new_unchecked(ipp.payload_mut());
        udp.emit(&mut u, &src.into(), &dst.into(), payload.len(), |b| b.copy_from_slice(payload), &caps);
        buf
    }

    #[test]
    fn good_udp_passes_and_corruptions_are_counted() {
        let mut s = FilterStats::default();
        let good = udp_frame(b"hello");
        assert_eq!(screen(&good, &mut s), Verdict::Accept);
        let mut bad_ip = good.clone();
        bad_ip[14 + 10] ^= 0xff; // IPv4 header checksum
        assert_eq!(screen(&bad_ip, &mut s), Verdict::BadChecksum);
        let mut bad_udp = good.clone();
        *bad_udp.last_mut().unwrap() ^= 1; // payload byte: UDP checksum now wrong
        assert_eq!(screen(&bad_udp, &mut s), Verdict::BadChecksum);
        let mut truncated = good.clone();
        truncated.truncate(14 + 20 + 4);
        assert_eq!(screen(&truncated, &mut s), Verdict::Malformed);
        let mut other = good.clone();
        other[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
        assert_eq!(screen(&other, &mut s), Verdict::UnknownEtherType(0x88b5));
        assert_eq!(screen(&[0u8; 5], &mut s), Verdict::Malformed);
        assert_eq!(s, FilterStats { malformed: 2, bad_checksum: 2, unknown_ethertype: 1, echo_requests: 0 });
    }
}
