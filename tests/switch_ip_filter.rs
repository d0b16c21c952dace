//! `ip=` anti-spoofing through the switch: from a vif with an `ip` key,
//! IPv4, ARP and IPv6 from addresses not its own are dropped and counted
//! (`spoofed_ip`) while its listed addresses, DHCP requests, its EUI-64
//! link-local address and duplicate address detection pass.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use switch_common::Rng;
use xvif::switch::ipfilter::{IpFilter, IpSpoof};
use xvif::switch::meta::FrameMeta;
use xvif::switch::{Drop, Egress, PortConfig, PortId, Switch, SwitchConfig};

struct Count(usize);

impl Egress for Count {
    fn send(&mut self, _port: PortId, _frame: &[u8], _meta: &FrameMeta) -> bool {
        self.0 += 1;
        true
    }
}

const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0x12, 0x34, 0x56];
const LINK_LOCAL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x02, 0x16, 0x3e, 0xff, 0xfe, 0x12, 0x34, 0x56];

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

fn ipv4(src: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    let mut ip = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&[255, 255, 255, 255]);
    ip.extend_from_slice(&sport.to_be_bytes());
    ip.extend_from_slice(&dport.to_be_bytes());
    ip.extend_from_slice(&[0, 8, 0, 0]);
    eth(0x0800, &ip)
}

fn arp(spa: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
    a.extend_from_slice(&MAC);
    a.extend_from_slice(&spa);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&[10, 0, 0, 1]);
    eth(0x0806, &a)
}

fn ipv6(src: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    ip.extend_from_slice(&[next, 255]);
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 1]);
    ip.extend_from_slice(l4);
    eth(0x86dd, &ip)
}

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn setup(ip: Option<&str>) -> (Switch, PortId) {
    let mut sw = Switch::new(SwitchConfig::default());
    sw.add_port(PortConfig { name: "e1000".into(), ..PortConfig::default() }).unwrap();
    let allowed_ip = ip.map(|s| IpFilter::parse(s.as_bytes(), MAC).unwrap());
    let p = sw
        .add_port(PortConfig { name: "vif5.0".into(), allowed_src: Some(MAC), allowed_ip, ..PortConfig::default() })
        .unwrap();
    (sw, p)
}

/// Forwards `f` from `p`: Ok when it reached the other port.
fn send(sw: &mut Switch, p: PortId, f: &[u8]) -> Result<(), Drop> {
    let mut out = Count(0);
    sw.forward(p, f, &FrameMeta::PLAIN, 0, &mut out)?;
    assert_eq!(out.0, 1);
    Ok(())
}

#[test]
fn spoofed_ipv4_and_arp_are_dropped_and_counted_while_listed_addresses_pass() {
    let (mut sw, p) = setup(Some("10.0.0.2 192.168.7.0/24"));
    assert_eq!(send(&mut sw, p, &ipv4([10, 0, 0, 2], 17, 1000, 53)), Ok(()));
    assert_eq!(send(&mut sw, p, &ipv4([192, 168, 7, 200], 6, 1000, 80)), Ok(()));
    assert_eq!(
        send(&mut sw, p, &ipv4([10, 0, 0, 3], 17, 1000, 53)),
        Err(Drop::SpoofedIp(IpSpoof::Ipv4([10, 0, 0, 3])))
    );
    assert_eq!(send(&mut sw, p, &arp([10, 0, 0, 2])), Ok(()));
    assert_eq!(send(&mut sw, p, &arp([10, 0, 0, 1])), Err(Drop::SpoofedIp(IpSpoof::Arp([10, 0, 0, 1]))));
    // RFC 5227 probe: sender 0.0.0.0.
    assert_eq!(send(&mut sw, p, &arp([0; 4])), Ok(()));
    // DHCP: 0.0.0.0, UDP 68 -> 67, and nothing else from 0.0.0.0.
    assert_eq!(send(&mut sw, p, &ipv4([0; 4], 17, 68, 67)), Ok(()));
    assert!(send(&mut sw, p, &ipv4([0; 4], 17, 68, 68)).is_err());
    assert!(send(&mut sw, p, &ipv4([0; 4], 6, 68, 67)).is_err());
    let mut frag = ipv4([0; 4], 17, 68, 67);
    frag[14 + 7] = 8; // fragment offset
    assert!(send(&mut sw, p, &frag).is_err());
    // Frames that would hide an address: VLAN-tagged, truncated headers.
    assert_eq!(send(&mut sw, p, &eth(0x8100, &[0; 46])), Err(Drop::SpoofedIp(IpSpoof::Tagged(0x8100))));
    let mut short = ipv4([10, 0, 0, 2], 17, 1, 2);
    short.truncate(14 + 12);
    assert_eq!(send(&mut sw, p, &short), Err(Drop::SpoofedIp(IpSpoof::Truncated(0x0800))));
    // Other EtherTypes are not the filter's business.
    assert_eq!(send(&mut sw, p, &eth(0x88cc, &[0; 46])), Ok(()));
    let c = *sw.port_counters(p).unwrap();
    assert_eq!((c.spoofed_ip, c.rx_drops, c.spoofed), (7, 7, 0));
    let line = sw.xenstore_entries().find(|(k, _)| k.ends_with("vif5_0")).unwrap().1;
    assert!(line.contains(" spoofed_ip=7 "), "{line}");
    let mut prom = String::new();
    sw.render_prometheus(&mut prom);
    assert!(prom.contains("xvif_switch_spoofed_ip_total{port=\"vif5.0\"} 7\n"));
    // The source MAC check still comes first.
    let mut other_mac = ipv4([10, 0, 0, 2], 17, 1, 2);
    other_mac[11] = 0x57;
    assert!(matches!(send(&mut sw, p, &other_mac), Err(Drop::Spoofed { .. })));
}

#[test]
fn ipv6_from_link_local_and_listed_addresses_and_dad() {
    let (mut sw, p) = setup(Some("10.0.0.2 2001:db8::2 2001:db8:5::/64"));
    let udp = [0u8; 8];
    assert_eq!(send(&mut sw, p, &ipv6(LINK_LOCAL, 17, &udp)), Ok(()));
    assert_eq!(send(&mut sw, p, &ipv6(v6("2001:db8::2"), 17, &udp)), Ok(()));
    assert_eq!(send(&mut sw, p, &ipv6(v6("2001:db8:5::99"), 17, &udp)), Ok(()));
    let other = v6("2001:db8::3");
    assert_eq!(send(&mut sw, p, &ipv6(other, 17, &udp)), Err(Drop::SpoofedIp(IpSpoof::Ipv6(other))));
    assert!(send(&mut sw, p, &ipv6(v6("fe80::1"), 58, &[135, 0, 0, 0])).is_err(), "another link-local");
    // Duplicate address detection: a Neighbour Solicitation from ::.
    assert_eq!(send(&mut sw, p, &ipv6([0; 16], 58, &[135, 0, 0, 0, 0, 0, 0, 0])), Ok(()));
    // An MLDv2 report from :: behind a hop-by-hop header (Router Alert).
    let hbh_mld = [58, 0, 5, 2, 0, 0, 1, 0, 143, 0, 0, 0];
    assert_eq!(send(&mut sw, p, &ipv6([0; 16], 0, &hbh_mld)), Ok(()));
    // Anything else from :: is not.
    assert!(send(&mut sw, p, &ipv6([0; 16], 17, &udp)).is_err());
    assert!(send(&mut sw, p, &ipv6([0; 16], 58, &[128, 0, 0, 0])).is_err(), "echo request from ::");
    assert_eq!(sw.port_counters(p).unwrap().spoofed_ip, 4);
}

#[test]
fn without_an_ip_key_anything_goes_and_the_filter_can_be_lifted() {
    let (mut sw, p) = setup(None);
    assert_eq!(send(&mut sw, p, &ipv4([1, 2, 3, 4], 17, 1, 2)), Ok(()));
    assert_eq!(send(&mut sw, p, &arp([9, 9, 9, 9])), Ok(()));
    sw.set_ip_filter(p, Some(IpFilter::parse(b"10.0.0.2", MAC).unwrap())).unwrap();
    assert!(send(&mut sw, p, &ipv4([1, 2, 3, 4], 17, 1, 2)).is_err());
    sw.set_ip_filter(p, None).unwrap();
    assert_eq!(send(&mut sw, p, &ipv4([1, 2, 3, 4], 17, 1, 2)), Ok(()));
}

#[test]
fn random_frames_never_panic_the_filter() {
    let (mut sw, p) = setup(Some("10.0.0.2 2001:db8::2"));
    let mut rng = Rng(0x1f);
    let mut out = Count(0);
    for i in 0..20_000u64 {
        let n = rng.below(200) as usize;
        let mut f = rng.bytes(n);
        if f.len() >= 14 {
            f[6..12].copy_from_slice(&MAC);
            let et: [u16; 5] = [0x0800, 0x0806, 0x86dd, 0x8100, 0x1234];
            f[12..14].copy_from_slice(&et[rng.below(5) as usize].to_be_bytes());
        }
        let _ = sw.forward(p, &f, &FrameMeta::PLAIN, i, &mut out);
    }
}
