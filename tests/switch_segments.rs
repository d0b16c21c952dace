//! Isolated networks by `bridge=`: ports on different segments never see
//! each other's frames (unicast, broadcast, multicast, flooding of unknown
//! unicast), and MAC learning is per segment.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xvif::switch::meta::FrameMeta;
use xvif::switch::{Egress, PortConfig, PortId, Route, Switch, SwitchConfig, SwitchError};

#[derive(Default)]
struct Rec {
    sent: Vec<PortId>,
}

impl Egress for Rec {
    fn send(&mut self, port: PortId, _frame: &[u8], _meta: &FrameMeta) -> bool {
        self.sent.push(port);
        true
    }
}

impl Rec {
    fn take(&mut self) -> Vec<PortId> {
        let mut v: Vec<PortId> = self.sent.drain(..).collect();
        v.sort();
        v
    }
}

fn vmac(n: u8) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0, 0, n]
}

const EXT: [u8; 6] = [0x52, 0x54, 0, 0, 0, 9];
const MCAST: [u8; 6] = [0x01, 0x00, 0x5e, 0, 0, 1];

fn eth(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(60, 0xab);
    f
}

fn vif(name: &str, mac: [u8; 6], segment: &str) -> PortConfig {
    PortConfig { name: name.into(), allowed_src: Some(mac), segment: segment.into(), ..PortConfig::default() }
}

fn open(name: &str, segment: &str) -> PortConfig {
    PortConfig { name: name.into(), segment: segment.into(), ..PortConfig::default() }
}

struct Net {
    sw: Switch,
    nic: PortId,
    mgmt: PortId,
    red_a: PortId,
    red_b: PortId,
    blue: PortId,
    red_up: PortId,
    blue_up: PortId,
}

/// The NIC and the management stack on the default segment; two vifs on
/// `red`, one on `blue`; and an open port on each of red and blue.
fn net() -> Net {
    let mut sw = Switch::new(SwitchConfig::default());
    let nic = sw.add_port(PortConfig { name: "e1000".into(), ..PortConfig::default() }).unwrap();
    let mgmt =
        sw.add_port(PortConfig { name: "mgmt".into(), allowed_src: Some(vmac(0xee)), ..Default::default() }).unwrap();
    let red_a = sw.add_port(vif("vif1.0", vmac(1), "red")).unwrap();
    let red_b = sw.add_port(vif("vif2.0", vmac(2), "red")).unwrap();
    let blue = sw.add_port(vif("vif3.0", vmac(3), "blue")).unwrap();
    let red_up = sw.add_port(open("red-up", "red")).unwrap();
    let blue_up = sw.add_port(open("blue-up", "blue")).unwrap();
    Net { sw, nic, mgmt, red_a, red_b, blue, red_up, blue_up }
}

#[test]
fn red_talks_to_red_and_nothing_crosses_to_blue() {
    let Net { mut sw, nic, mgmt, red_a, red_b, blue, red_up, blue_up } = net();
    let mut rec = Rec::default();
    let p = FrameMeta::PLAIN;
    // Unicast red <-> red.
    let d = sw.forward(red_a, &eth(vmac(2), vmac(1)), &p, 0, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(red_b), vec![red_b]));
    let d = sw.forward(red_b, &eth(vmac(1), vmac(2)), &p, 0, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(red_a), vec![red_a]));
    // Broadcast and multicast stay in their segment.
    sw.forward(red_a, &eth([0xff; 6], vmac(1)), &p, 0, &mut rec).unwrap();
    assert_eq!(rec.take(), vec![red_b, red_up]);
    sw.forward(blue, &eth([0xff; 6], vmac(3)), &p, 0, &mut rec).unwrap();
    assert_eq!(rec.take(), vec![blue_up]);
    sw.forward(red_a, &eth(MCAST, vmac(1)), &p, 0, &mut rec).unwrap();
    assert_eq!(rec.take(), vec![red_b, red_up]);
    sw.forward(nic, &eth([0xff; 6], EXT), &p, 0, &mut rec).unwrap();
    assert_eq!(rec.take(), vec![mgmt], "the NIC's segment holds the management stack only");
    // red -> blue's MAC: blue's MAC is not known on red, so the frame is
    // flooded as unknown unicast, inside red only.
    let d = sw.forward(red_a, &eth(vmac(3), vmac(1)), &p, 0, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unknown, vec![red_b, red_up]));
    let d = sw.forward(blue, &eth(vmac(1), vmac(3)), &p, 0, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unknown, vec![blue_up]));
    // Nothing from red ever reached a blue port or the NIC.
    for port in [blue, blue_up, nic] {
        let c = sw.port_counters(port).unwrap();
        let from_blue = if port == blue_up { 2 } else { 0 };
        assert_eq!(c.tx_packets, from_blue, "port {port:?}");
    }
    assert_eq!(sw.port_segment(red_a), Some("red"));
    assert_eq!(sw.port_segment(nic), Some("xenbr0"));
}

#[test]
fn the_same_mac_is_learned_on_two_segments_independently() {
    let Net { mut sw, red_a, blue, red_up, blue_up, .. } = net();
    let mut rec = Rec::default();
    let p = FrameMeta::PLAIN;
    sw.forward(red_up, &eth([0xff; 6], EXT), &p, 0, &mut rec).unwrap();
    sw.forward(blue_up, &eth([0xff; 6], EXT), &p, 0, &mut rec).unwrap();
    rec.take();
    assert_eq!(sw.counters().fdb.moves, 0, "not a move: two segments");
    let d = sw.forward(red_a, &eth(EXT, vmac(1)), &p, 1, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(red_up), vec![red_up]));
    let d = sw.forward(blue, &eth(EXT, vmac(3)), &p, 1, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(blue_up), vec![blue_up]));
    // A vif's own MAC is pinned on its segment only: the same MAC from an
    // open port on another segment is learned there, not a conflict.
    sw.forward(blue_up, &eth([0xff; 6], vmac(1)), &p, 2, &mut rec).unwrap();
    rec.take();
    assert_eq!(sw.counters().fdb.static_conflicts, 0);
    let d = sw.forward(blue, &eth(vmac(1), vmac(3)), &p, 3, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(blue_up), vec![blue_up]));
    let d = sw.forward(red_up, &eth(vmac(1), EXT), &p, 3, &mut rec).unwrap();
    assert_eq!((d.route, rec.take()), (Route::Unicast(red_a), vec![red_a]));
    let seg_entries = |name: &str| {
        let id = sw.segments().find(name).unwrap();
        sw.fdb().entries().filter(|e| e.0 == id && e.1 == EXT).count()
    };
    assert_eq!((seg_entries("red"), seg_entries("blue")), (1, 1));
}

#[test]
fn segments_come_and_go_with_their_ports() {
    let Net { mut sw, blue, blue_up, .. } = net();
    assert_eq!(sw.segments().iter().count(), 3);
    sw.remove_port(blue).unwrap();
    assert!(sw.segments().find("blue").is_some());
    sw.remove_port(blue_up).unwrap();
    assert!(sw.segments().find("blue").is_none());
    assert_eq!(sw.add_port(open("bad", "a b")), Err(SwitchError::BadSegment));
    assert_eq!(sw.add_port(open("bad", "")), Err(SwitchError::BadSegment));
    // The published per-port line names the segment.
    let lines: Vec<(String, String)> = sw.xenstore_entries().collect();
    let red = lines.iter().find(|(k, _)| k.ends_with("vif1_0")).unwrap();
    assert!(red.1.ends_with(" segment=red"), "{}", red.1);
}
