//! Offload metadata is checked where a frame enters the switch (as Linux
//! netback's `checksum_setup` does at TX): a GSO or partial-checksum frame
//! whose headers do not back its metadata is dropped and counted on its
//! ingress port and never reaches another port, whatever that port takes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use switch_common::*;
use xvif::switch::meta::{Csum, FrameMeta, Gso, GsoKind, PortCaps};
use xvif::switch::{Drop, Egress, PortConfig, PortId, Switch, SwitchConfig};

#[derive(Default)]
struct Rec {
    sent: Vec<(PortId, Vec<u8>, FrameMeta)>,
}

impl Egress for Rec {
    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        self.sent.push((port, frame.to_vec(), *meta));
        true
    }
}

const SENDER: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 1];
const FAST: PortCaps = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: true, mtu: 1500 };

/// A sender vif, a GSO-capable vif and a plain port (a NIC).
fn setup() -> (Switch, PortId, PortId, PortId) {
    let mut sw = Switch::new(SwitchConfig::default());
    let a = sw
        .add_port(PortConfig { name: "vif1.0".into(), allowed_src: Some(SENDER), caps: FAST, ..Default::default() })
        .unwrap();
    let mac_b = [0x00, 0x16, 0x3e, 0, 0, 2];
    let b = sw
        .add_port(PortConfig { name: "vif2.0".into(), allowed_src: Some(mac_b), caps: FAST, ..Default::default() })
        .unwrap();
    let nic = sw
        .add_port(PortConfig {
            name: "nic".into(),
            allowed_src: None,
            caps: PortCaps::plain(1500),
            ..Default::default()
        })
        .unwrap();
    (sw, a, b, nic)
}

/// A broadcast frame from the sender (reaches every port).
fn spec(v6: bool, l4: L4, payload: usize) -> Spec {
    Spec { src_mac: SENDER, dst_mac: [0xff; 6], ..Spec::new(v6, l4, Rng(3).bytes(payload)) }
}

fn gso(kind: GsoKind, mss: u16) -> FrameMeta {
    FrameMeta { csum: Csum::Partial, gso: Some(Gso { kind, mss }) }
}

const PARTIAL: FrameMeta = FrameMeta { csum: Csum::Partial, gso: None };

/// Frames whose offload metadata their headers do not back.
fn malformed() -> Vec<(&'static str, Vec<u8>, FrameMeta)> {
    let v4 = GsoKind::TcpV4;
    let (tcp4, lay) = build(&spec(false, L4::Tcp, 20_000), 0);
    let (udp4, _) = build(&spec(false, L4::Udp, 3000), 0);
    let (tcp6, _) = build(&spec(true, L4::Tcp, 3000), 0);
    let mut arp = tcp4[..60].to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    let mut ip_len_past_end = tcp4.clone();
    ip_len_past_end.truncate(lay.l4 + 40);
    let mut fragment = tcp4.clone();
    fragment[lay.l3 + 6] = 0x20; // more fragments
    let mut short_tcp = tcp4.clone();
    short_tcp[lay.l4 + 12] = 0x30; // data offset 3 words
    let mut icmp = tcp4[..200].to_vec();
    icmp[lay.l3 + 2..lay.l3 + 4].copy_from_slice(&((200 - lay.l3) as u16).to_be_bytes());
    icmp[lay.l3 + 9] = 1;
    let (mut jumbo6, lay6) = build(&spec(true, L4::Udp, 300), 0);
    jumbo6[lay6.l3 + 4..lay6.l3 + 6].copy_from_slice(&[0, 0]);
    let tiny_tcp = build(&spec(false, L4::Tcp, 0), 0).0[..lay.l4 + 10].to_vec();
    // MTU-sized copies for the partial-checksum cases (no GSO: MTU applies).
    let small = |f: &[u8]| {
        let mut g = f[..1000].to_vec();
        g[lay.l3 + 2..lay.l3 + 4].copy_from_slice(&((1000 - lay.l3) as u16).to_be_bytes());
        g
    };
    let (small_fragment, small_short_tcp) = (small(&fragment), small(&short_tcp));
    vec![
        ("GSO on UDP", udp4, gso(v4, 1448)),
        ("TCPv4 GSO on an IPv6 frame", tcp6.clone(), gso(v4, 1448)),
        ("TCPv6 GSO on an IPv4 frame", tcp4.clone(), gso(GsoKind::TcpV6, 1448)),
        ("GSO on ARP", arp.clone(), gso(v4, 1448)),
        ("GSO size 0", tcp4.clone(), gso(v4, 0)),
        ("GSO into more segments than allowed", tcp4.clone(), gso(v4, 8)),
        ("GSO with the IP length past the frame", ip_len_past_end.clone(), gso(v4, 1448)),
        ("GSO on a fragment", fragment.clone(), gso(v4, 1448)),
        ("GSO with a short TCP header", short_tcp.clone(), gso(v4, 1448)),
        ("partial checksum on ARP", arp, PARTIAL),
        ("partial checksum on ICMP", icmp, PARTIAL),
        ("partial checksum past the end of the frame", tiny_tcp, PARTIAL),
        ("partial checksum on a fragment", small_fragment, PARTIAL),
        ("partial checksum with a short TCP header", small_short_tcp, PARTIAL),
        ("partial checksum with the IP length past the frame", ip_len_past_end, PARTIAL),
        ("partial checksum on an IPv6 jumbogram", jumbo6, PARTIAL),
    ]
}

#[test]
fn malformed_offload_frames_are_dropped_at_ingress_and_reach_no_port() {
    let (mut sw, a, _, _) = setup();
    let cases = malformed();
    let mut wrong = Vec::new();
    for (what, f, meta) in &cases {
        let mut rec = Rec::default();
        let r = sw.forward(a, f, meta, 0, &mut rec);
        if !matches!(r, Err(Drop::BadOffload(_))) || !rec.sent.is_empty() {
            wrong.push(format!("{what}: {r:?}, delivered to {:?}", rec.sent.iter().map(|s| s.0.0).collect::<Vec<_>>()));
        }
    }
    assert!(wrong.is_empty(), "accepted:\n{}", wrong.join("\n"));
    let c = sw.port_counters(a).unwrap();
    let n = cases.len() as u64;
    assert_eq!((c.rx_drops, c.rx_bad_offload, c.rx_packets), (n, n, 0), "every one counted as a bad offload");
    for (_, _, c) in sw.ports() {
        assert_eq!((c.tx_packets, c.tx_errors), (0, 0));
    }
    let mut prom = String::new();
    sw.render_prometheus(&mut prom);
    assert!(prom.contains(&format!("xvif_switch_rx_bad_offload_total{{port=\"vif1.0\"}} {n}\n")), "{prom}");
    let (_, text) = sw.xenstore_entries().next().unwrap();
    assert!(text.contains(&format!(" rx_bad_offload={n} ")), "{text}");
}

#[test]
fn well_formed_offload_frames_pass() {
    let (mut sw, a, b, nic) = setup();
    let (f, lay) = build(&spec(false, L4::Tcp, 20_000), 0);
    let meta = gso(GsoKind::TcpV4, 1448);
    let mut rec = Rec::default();
    sw.forward(a, &f, &meta, 0, &mut rec).unwrap();
    let to_b: Vec<_> = rec.sent.iter().filter(|s| s.0 == b).collect();
    assert_eq!(to_b.len(), 1);
    assert_eq!((&to_b[0].1, &to_b[0].2), (&f, &meta), "the GSO port takes it whole");
    let to_nic: Vec<_> = rec.sent.iter().filter(|s| s.0 == nic).collect();
    assert_eq!(to_nic.len(), 20_000usize.div_ceil(1448));
    assert!(to_nic.iter().all(|s| l4_verifies(&s.1, false, L4::Tcp, lay.l4, s.1.len())));

    // TCPv6 GSO over extension headers, and partial UDP over IPv6 with a VLAN tag.
    let mut s6 = spec(true, L4::Tcp, 5000);
    s6.ip_opts = 2;
    let (f6, _) = build(&s6, 0);
    let mut rec = Rec::default();
    sw.forward(a, &f6, &gso(GsoKind::TcpV6, 1400), 0, &mut rec).unwrap();
    assert_eq!(rec.sent.iter().filter(|s| s.0 == b).count(), 1);
    assert_eq!(rec.sent.iter().filter(|s| s.0 == nic).count(), 4);
    let mut su = spec(true, L4::Udp, 700);
    su.vlan = Some(5);
    let (fu, _) = build(&su, 0x77);
    let mut rec = Rec::default();
    sw.forward(a, &fu, &PARTIAL, 0, &mut rec).unwrap();
    assert_eq!(rec.sent.len(), 2);

    // A GSO frame without csum_blank (a buggy frontend) is taken as partial,
    // as Linux netback's checksum fixup does.
    let mut rec = Rec::default();
    let unflagged = FrameMeta { csum: Csum::Unknown, ..meta };
    sw.forward(a, &f, &unflagged, 0, &mut rec).unwrap();
    let to_b: Vec<_> = rec.sent.iter().filter(|s| s.0 == b).collect();
    assert_eq!(to_b[0].2, meta);

    // Plain frames are not parsed: anything goes.
    let mut rec = Rec::default();
    let mut arp = f[..60].to_vec();
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    sw.forward(a, &arp, &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.sent.len(), 2);
    assert_eq!(sw.port_counters(a).unwrap().rx_drops, 0);
}
