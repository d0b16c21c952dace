//! Packet capture on a switch port: what the port sends and what it is
//! handed (after offload adaptation), in pcap records, nothing from other
//! ports, one capture at a time, gone with its port.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use xvif::switch::capture::{CaptureError, global_header};
use xvif::switch::meta::{FrameMeta, PortCaps};
use xvif::switch::{Egress, PortConfig, PortId, Switch, SwitchConfig};

struct Sink(usize);

impl Egress for Sink {
    fn send(&mut self, _port: PortId, _frame: &[u8], _meta: &FrameMeta) -> bool {
        self.0 += 1;
        true
    }
}

fn mac(n: u8) -> [u8; 6] {
    [0x00, 0x16, 0x3e, 0, 0, n]
}

fn eth(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x06]);
    f.resize(len, fill);
    f
}

fn setup() -> Switch {
    let mut sw = Switch::new(SwitchConfig::default());
    let nic = PortConfig { name: "e1000".into(), caps: PortCaps::default(), ..Default::default() };
    assert_eq!(sw.add_port(nic), Ok(PortId(0)));
    for n in 1..=3u8 {
        let c = PortConfig { name: format!("vif{n}.0"), allowed_src: Some(mac(n)), ..Default::default() };
        assert_eq!(sw.add_port(c), Ok(PortId(n)));
    }
    sw
}

/// (seconds, microseconds, captured length, original length, first data byte) of each record.
fn records(bytes: &[u8]) -> Vec<(u32, u32, u32, u32, u8)> {
    let u = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (s, us, incl, orig) = (u(at), u(at + 4), u(at + 8), u(at + 12));
        out.push((s, us, incl, orig, bytes[at + 16 + 14]));
        at += 16 + incl as usize;
    }
    assert_eq!(at, bytes.len(), "records end on the stream's end");
    out
}

#[test]
fn a_port_is_captured_both_ways_and_nothing_else() {
    let mut sw = setup();
    let mut eg = Sink(0);
    assert_eq!(sw.start_capture("vif9.0", 5), Err(CaptureError::UnknownPort));
    assert_eq!(sw.start_capture("vif3.0", 4), Ok(PortId(3)));
    assert_eq!(sw.start_capture("vif2.0", 4), Err(CaptureError::Busy));
    let p = FrameMeta::PLAIN;
    let s = 1_000_000_000;
    // vif1 -> vif2: not vif3's.
    sw.forward(PortId(1), &eth(mac(2), mac(1), 60, 1), &p, s, &mut eg).unwrap();
    // vif1 -> vif3 (handed to vif3), vif3 -> the NIC (sent by vif3).
    sw.forward(PortId(1), &eth(mac(3), mac(1), 70, 2), &p, 2 * s + 5_000, &mut eg).unwrap();
    sw.forward(PortId(3), &eth([0x52, 0x54, 0, 0, 0, 1], mac(3), 80, 3), &p, 3 * s, &mut eg).unwrap();
    // A frame vif3 sends with another's MAC is dropped, and still seen.
    assert!(sw.forward(PortId(3), &eth(mac(1), mac(7), 90, 4), &p, 4 * s, &mut eg).is_err());
    // A broadcast from vif1 reaches vif3 too: the fourth and last frame.
    sw.forward(PortId(1), &eth([0xff; 6], mac(1), 64, 5), &p, 5 * s, &mut eg).unwrap();
    let c = sw.capture_mut().unwrap();
    assert!(c.full());
    assert_eq!((c.recorded, c.dropped), (4, 0));
    let mut buf = vec![0u8; 1000];
    let n = c.take(&mut buf);
    assert_eq!(records(&buf[..n]), [(2, 5, 70, 70, 2), (3, 0, 80, 80, 3), (4, 0, 90, 90, 4), (5, 0, 64, 64, 5)]);
    assert_eq!(global_header().len(), 24);
    // The capture ends with its port.
    sw.remove_port(PortId(3)).unwrap();
    assert!(sw.capture_mut().is_none());
    assert_eq!(sw.start_capture("vif1.0", 1), Ok(PortId(1)));
    let (recorded, _) = sw.stop_capture().map(|c| (c.recorded, c.dropped)).unwrap();
    assert_eq!(recorded, 0);
}
