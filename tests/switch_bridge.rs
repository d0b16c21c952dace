//! The bridge end to end: ports, learning, flooding rules, source-MAC
//! enforcement, multicast filters, offload per egress port, counters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use std::collections::HashSet;
use switch_common::*;
use xvif::switch::meta::{Csum, FrameMeta, Gso, GsoKind, PortCaps};
use xvif::switch::{Drop, Egress, PortConfig, PortId, Route, Switch, SwitchConfig, SwitchError};

const S: u64 = 1_000_000_000;

/// Records deliveries; refuses ports in `full`; filters multicast per port.
#[derive(Default)]
struct Rec {
    sent: Vec<(PortId, Vec<u8>, FrameMeta)>,
    full: HashSet<PortId>,
    mcast: Vec<(PortId, [u8; 6])>,
    filtering: HashSet<PortId>,
}

impl Egress for Rec {
    fn wants_multicast(&mut self, port: PortId, group: &[u8; 6]) -> bool {
        !self.filtering.contains(&port) || self.mcast.contains(&(port, *group))
    }
    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        if self.full.contains(&port) {
            return false;
        }
        self.sent.push((port, frame.to_vec(), *meta));
        true
    }
}

impl Rec {
    fn ports(&mut self) -> Vec<u8> {
        let mut v: Vec<u8> = self.sent.drain(..).map(|(p, _, _)| p.0).collect();
        v.sort();
        v
    }
}

fn vmac(n: u8) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0, 0, n]
}

fn eth(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.resize(len.max(14), 0xab);
    f
}

fn vif(name: &str, mac: [u8; 6]) -> PortConfig {
    PortConfig { name: name.into(), allowed_src: Some(mac), caps: PortCaps::default(), ..Default::default() }
}

fn open(name: &str) -> PortConfig {
    PortConfig { name: name.into(), allowed_src: None, caps: PortCaps::default(), ..Default::default() }
}

/// NIC on 0, mgmt on 1, vifs on 2..=4 with MACs 2..=4.
fn setup() -> (Switch, Rec) {
    let mut sw = Switch::new(SwitchConfig::default());
    assert_eq!(sw.add_port(open("e1000")), Ok(PortId(0)));
    assert_eq!(sw.add_port(open("mgmt")), Ok(PortId(1)));
    for n in 2..=4u8 {
        assert_eq!(sw.add_port(vif(&format!("vif{n}.0"), vmac(n))), Ok(PortId(n)));
    }
    (sw, Rec::default())
}

const EXT: [u8; 6] = [0x52, 0x54, 0, 0, 0, 9];
const EXT2: [u8; 6] = [0x52, 0x54, 0, 0, 0, 10];

#[test]
fn unknown_unicast_floods_then_learned_goes_direct() {
    let (mut sw, mut rec) = setup();
    let p = FrameMeta::PLAIN;
    // EXT unknown: flooded everywhere but the NIC it came from.
    let d = sw.forward(PortId(0), &eth(EXT2, EXT, 60), &p, 0, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unknown);
    assert_eq!(rec.ports(), vec![1, 2, 3, 4]);
    // vif2 answers EXT: learned on the NIC, straight there.
    let d = sw.forward(PortId(2), &eth(EXT, vmac(2), 60), &p, S, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unicast(PortId(0)));
    assert_eq!(rec.ports(), vec![0]);
    // vif2's own MAC is known from the start (pinned): no flood towards it.
    let d = sw.forward(PortId(3), &eth(vmac(2), vmac(3), 60), &p, S, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unicast(PortId(2)));
    assert_eq!(rec.ports(), vec![2]);
    let c = sw.counters();
    assert_eq!((c.unknown_unicast, c.unicast), (1, 2));
    assert_eq!(sw.port_counters(PortId(0)).unwrap().rx_flooded, 1);
    assert_eq!(sw.port_counters(PortId(0)).unwrap().tx_packets, 1);
    assert_eq!(sw.port_counters(PortId(2)).unwrap().tx_bytes, 120, "the flood and the unicast");
}

#[test]
fn broadcast_goes_everywhere_but_back() {
    let (mut sw, mut rec) = setup();
    for ing in 0..5u8 {
        let src = if ing >= 2 { vmac(ing) } else { EXT };
        let d = sw.forward(PortId(ing), &eth([0xff; 6], src, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
        assert_eq!(d.route, Route::Broadcast);
        let want: Vec<u8> = (0..5).filter(|&p| p != ing).collect();
        assert_eq!(rec.ports(), want, "from {ing}");
    }
    assert_eq!(sw.counters().broadcast, 5);
}

#[test]
fn multicast_respects_port_filters() {
    let (mut sw, mut rec) = setup();
    let group = [0x01, 0x00, 0x5e, 0, 0, 0xfb];
    let f = eth(group, EXT, 60);
    // No filters: flooded.
    sw.forward(PortId(0), &f, &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![1, 2, 3, 4]);
    // vif3 and vif4 filter; only vif3 joined the group.
    rec.filtering.extend([PortId(3), PortId(4)]);
    rec.mcast.push((PortId(3), group));
    let d = sw.forward(PortId(0), &f, &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(d.route, Route::Multicast);
    assert_eq!(rec.ports(), vec![1, 2, 3]);
    assert_eq!(sw.port_counters(PortId(4)).unwrap().mcast_filtered, 1);
    // Broadcast ignores multicast filters.
    sw.forward(PortId(0), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![1, 2, 3, 4]);
    assert_eq!(sw.counters().multicast, 2);
}

#[test]
fn no_hairpin_and_mac_moves() {
    let (mut sw, mut rec) = setup();
    sw.forward(PortId(0), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    sw.forward(PortId(0), &eth([0xff; 6], EXT2, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    rec.sent.clear();
    // Both on the NIC side: a frame between them is not sent back.
    let d = sw.forward(PortId(0), &eth(EXT2, EXT, 60), &FrameMeta::PLAIN, S, &mut rec).unwrap();
    assert_eq!(d.route, Route::Local);
    assert!(rec.sent.is_empty());
    assert_eq!(sw.counters().local_drops, 1);
    // EXT2 moves behind the management port.
    sw.forward(PortId(1), &eth([0xff; 6], EXT2, 60), &FrameMeta::PLAIN, 2 * S, &mut rec).unwrap();
    rec.sent.clear();
    let d = sw.forward(PortId(0), &eth(EXT2, EXT, 60), &FrameMeta::PLAIN, 3 * S, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unicast(PortId(1)));
    assert_eq!(sw.counters().fdb.moves, 1);
}

#[test]
fn ageing_returns_a_mac_to_flooding() {
    let cfg = SwitchConfig { ageing_ns: 10 * S, ..SwitchConfig::default() };
    let mut sw = Switch::new(cfg);
    let mut rec = Rec::default();
    sw.add_port(open("a")).unwrap();
    sw.add_port(open("b")).unwrap();
    sw.add_port(open("c")).unwrap();
    sw.forward(PortId(0), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    let to_ext = eth(EXT, EXT2, 60);
    assert_eq!(
        sw.forward(PortId(1), &to_ext, &FrameMeta::PLAIN, 9 * S, &mut rec).unwrap().route,
        Route::Unicast(PortId(0))
    );
    // EXT2 is refreshed at 9 s by that frame, EXT is not: at 10 s EXT is gone.
    let d = sw.forward(PortId(1), &to_ext, &FrameMeta::PLAIN, 10 * S, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unknown);
    assert_eq!(sw.counters().fdb.aged, 1);
    assert_eq!(sw.age(20 * S), 1); // EXT2
    assert_eq!(sw.counters().fdb_entries, 0);
}

#[test]
fn spoofed_and_bad_sources_are_dropped_and_counted() {
    let (mut sw, mut rec) = setup();
    let r = sw.forward(PortId(2), &eth([0xff; 6], vmac(3), 60), &FrameMeta::PLAIN, 0, &mut rec);
    assert_eq!(r, Err(Drop::Spoofed { src: vmac(3), allowed: vmac(2) }));
    let r = sw.forward(PortId(0), &eth([0xff; 6], [0x01, 0, 0x5e, 0, 0, 1], 60), &FrameMeta::PLAIN, 0, &mut rec);
    assert!(matches!(r, Err(Drop::BadSource(_))));
    let r = sw.forward(PortId(1), &eth([0xff; 6], [0; 6], 60), &FrameMeta::PLAIN, 0, &mut rec);
    assert_eq!(r, Err(Drop::BadSource([0; 6])));
    assert_eq!(sw.forward(PortId(3), &[0u8; 13], &FrameMeta::PLAIN, 0, &mut rec), Err(Drop::Runt(13)));
    assert_eq!(
        sw.forward(PortId(3), &eth([0xff; 6], vmac(3), 1515), &FrameMeta::PLAIN, 0, &mut rec),
        Err(Drop::Oversize(1515))
    );
    assert_eq!(
        sw.forward(PortId(9), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec),
        Err(Drop::UnknownPort(PortId(9)))
    );
    assert!(rec.sent.is_empty());
    let c2 = sw.port_counters(PortId(2)).unwrap();
    assert_eq!((c2.spoofed, c2.rx_drops, c2.rx_packets), (1, 1, 0));
    assert_eq!(sw.port_counters(PortId(0)).unwrap().bad_src, 1);
    assert_eq!(sw.port_counters(PortId(1)).unwrap().bad_src, 1);
    let c3 = sw.port_counters(PortId(3)).unwrap();
    assert_eq!((c3.rx_runts, c3.rx_oversize, c3.rx_drops), (1, 1, 2));
    // Nothing was learned from the spoofed frame: vmac(3) still pinned to 3.
    sw.forward(PortId(0), &eth(vmac(3), EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![3]);
    // The NIC side claiming a vif's MAC is not learned either.
    sw.forward(PortId(0), &eth([0xff; 6], vmac(4), 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(sw.counters().fdb.static_conflicts, 1);
    rec.sent.clear();
    sw.forward(PortId(2), &eth(vmac(4), vmac(2), 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![4]);
}

#[test]
fn removing_a_port_flushes_it_and_frees_its_id() {
    let (mut sw, mut rec) = setup();
    sw.forward(PortId(1), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    let before = sw.counters().fdb_entries;
    let last = sw.remove_port(PortId(1)).unwrap();
    assert_eq!(last.rx_packets, 1);
    assert_eq!(sw.remove_port(PortId(1)), Err(SwitchError::UnknownPort(PortId(1))));
    assert_eq!(sw.remove_port(PortId(3)).map(|c| c.rx_packets), Ok(0));
    assert_eq!(sw.counters().fdb_entries, before - 2, "EXT and vif3's pinned MAC");
    rec.sent.clear();
    let d = sw.forward(PortId(0), &eth(EXT, EXT2, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(d.route, Route::Unknown);
    assert_eq!(rec.ports(), vec![2, 4]);
    assert_eq!(sw.add_port(open("new")), Ok(PortId(1)));
    for i in 0..61 {
        let r = sw.add_port(open(&format!("p{i}")));
        assert_eq!(r.is_ok(), i < 60, "{i}");
    }
    assert_eq!(sw.add_port(open("x")), Err(SwitchError::Full));
}

#[test]
fn disabled_and_full_ports() {
    let (mut sw, mut rec) = setup();
    sw.set_enabled(PortId(3), false).unwrap();
    sw.forward(PortId(0), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![1, 2, 4]);
    rec.full.insert(PortId(4));
    sw.forward(PortId(0), &eth([0xff; 6], EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert_eq!(rec.ports(), vec![1, 2]);
    assert_eq!(sw.port_counters(PortId(4)).unwrap().tx_drops, 1);
    // Unicast to the disabled vif: counted as its drop.
    sw.forward(PortId(0), &eth(vmac(3), EXT, 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    assert!(rec.sent.is_empty());
    assert_eq!(sw.port_counters(PortId(3)).unwrap().tx_drops, 1);
    // A disabled port does not receive either.
    let r = sw.forward(PortId(3), &eth([0xff; 6], vmac(3), 60), &FrameMeta::PLAIN, 0, &mut rec);
    assert_eq!(r, Err(Drop::Disabled));
    assert_eq!(sw.port_counters(PortId(3)).unwrap().rx_drops, 1);
    assert!(rec.sent.is_empty());
}

#[test]
fn offload_is_fitted_per_egress_port() {
    let mut sw = Switch::new(SwitchConfig::default());
    let mut rec = Rec::default();
    let nic = sw.add_port(open("nic")).unwrap();
    let g = vmac(2);
    let fast = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: true, mtu: 1500 };
    let a = sw
        .add_port(PortConfig { name: "vifA".into(), allowed_src: Some(vmac(1)), caps: fast, ..Default::default() })
        .unwrap();
    let b = sw
        .add_port(PortConfig { name: "vifB".into(), allowed_src: Some(g), caps: fast, ..Default::default() })
        .unwrap();
    // vifA sends a 20 000-byte TCPv4 GSO frame, broadcast-addressed to reach everyone.
    let mut s = Spec::new(false, L4::Tcp, Rng(5).bytes(20_000));
    s.src_mac = vmac(1);
    s.dst_mac = [0xff; 6];
    let (f, lay) = build(&s, 0);
    let meta = FrameMeta { csum: Csum::Partial, gso: Some(Gso { kind: GsoKind::TcpV4, mss: 1460 }) };
    sw.forward(a, &f, &meta, 0, &mut rec).unwrap();
    let to_b: Vec<_> = rec.sent.iter().filter(|(p, _, _)| *p == b).collect();
    assert_eq!(to_b.len(), 1, "vifB takes GSO whole");
    assert_eq!(to_b[0].1, f);
    assert_eq!(to_b[0].2, meta);
    let to_nic: Vec<_> = rec.sent.iter().filter(|(p, _, _)| *p == nic).collect();
    assert_eq!(to_nic.len(), 20_000usize.div_ceil(1460));
    for (_, seg, m) in &to_nic {
        assert_eq!(m.csum, Csum::Validated);
        assert!(seg.len() <= 1514);
        assert!(l4_verifies(seg, false, L4::Tcp, lay.l4, seg.len()));
    }
    let c = sw.port_counters(nic).unwrap();
    assert_eq!((c.gso_frames, c.gso_segments, c.tx_packets), (1, 14, 14));
    // A plain partial frame: complete for the NIC, as is for vifB.
    rec.sent.clear();
    let s = Spec { src_mac: vmac(1), dst_mac: [0xff; 6], ..Spec::new(true, L4::Udp, vec![1; 300]) };
    let (f, lay) = build(&s, 0x4242);
    let partial = FrameMeta { csum: Csum::Partial, gso: None };
    sw.forward(a, &f, &partial, 0, &mut rec).unwrap();
    for (p, out, m) in &rec.sent {
        if *p == nic {
            assert_eq!(m.csum, Csum::Validated);
            assert!(l4_verifies(out, true, L4::Udp, lay.l4, lay.end));
        } else {
            assert_eq!((out, m), (&f, &partial));
        }
    }
    assert_eq!(sw.port_counters(nic).unwrap().csum_completed, 1);
    // A garbage partial frame is dropped at ingress: it reaches no port.
    rec.sent.clear();
    let junk = eth([0xff; 6], vmac(1), 60);
    assert!(matches!(sw.forward(a, &junk, &partial, 0, &mut rec), Err(Drop::BadOffload(_))));
    assert!(rec.sent.is_empty());
    assert_eq!(sw.port_counters(a).unwrap().rx_bad_offload, 1);
    assert_eq!(sw.port_counters(nic).unwrap().tx_errors, 0);
}

#[test]
fn counters_render_for_metrics_and_xenstore() {
    let (mut sw, mut rec) = setup();
    sw.forward(PortId(2), &eth([0xff; 6], vmac(3), 60), &FrameMeta::PLAIN, 0, &mut rec).ok();
    sw.forward(PortId(2), &eth([0xff; 6], vmac(2), 60), &FrameMeta::PLAIN, 0, &mut rec).unwrap();
    let mut out = String::new();
    sw.render_prometheus(&mut out);
    assert!(out.contains("xvif_switch_spoofed_total{port=\"vif2.0\"} 1\n"), "{out}");
    assert!(out.contains("xvif_switch_rx_packets_total{port=\"vif2.0\"} 1\n"));
    assert!(out.contains("xvif_switch_tx_packets_total{port=\"e1000\"} 1\n"));
    assert!(out.contains("xvif_switch_broadcast_total 1\n"));
    let (_, name, c) = sw.ports().find(|(id, _, _)| *id == PortId(2)).unwrap();
    assert_eq!(name, "vif2.0");
    let t = c.xenstore_text();
    assert!(t.starts_with("rx_packets=1 rx_bytes=60 rx_drops=1 "), "{t}");
    let xs: Vec<(String, String)> = sw.xenstore_entries().collect();
    assert_eq!(xs.len(), 5);
    assert_eq!(xs[2], ("data/xvif/ports/vif2_0".to_string(), format!("{t} segment=xenbr0")));
}

#[test]
fn random_frames_through_the_switch_never_panic() {
    let (mut sw, mut rec) = setup();
    sw.set_caps(PortId(3), PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: false, mtu: 9000 })
        .unwrap();
    let mut rng = Rng(0x5a5a);
    for i in 0..20_000u64 {
        let n = rng.below(if i % 50 == 0 { 70_000 } else { 1600 }) as usize;
        let mut f = rng.bytes(n);
        if f.len() >= 12 && rng.below(2) == 0 {
            let src = vmac(2 + rng.below(3) as u8);
            f[6..12].copy_from_slice(&src);
        }
        let gso = match rng.below(3) {
            0 => Some(Gso { kind: GsoKind::TcpV4, mss: rng.below(3000) as u16 }),
            1 => Some(Gso { kind: GsoKind::TcpV6, mss: rng.below(3000) as u16 }),
            _ => None,
        };
        let meta = FrameMeta { csum: if rng.below(2) == 0 { Csum::Partial } else { Csum::Unknown }, gso };
        let _ = sw.forward(PortId(rng.below(6) as u8), &f, &meta, i * 1000, &mut rec);
        rec.sent.clear();
    }
    assert!(sw.counters().fdb_entries <= 4096 + 64);
}
