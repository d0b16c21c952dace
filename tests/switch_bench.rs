//! Forwarding-decision throughput on the host, ignored by default. Run:
//! `cargo test --release --test switch_bench -- --ignored --nocapture`

mod switch_common;

use std::time::Instant;
use switch_common::*;
use xvif::switch::meta::{Csum, FrameMeta, PortCaps};
use xvif::switch::{Egress, PortConfig, PortId, Switch, SwitchConfig};

struct Sink(u64);

impl Egress for Sink {
    fn send(&mut self, _port: PortId, frame: &[u8], _meta: &FrameMeta) -> bool {
        self.0 += frame.len() as u64;
        true
    }
}

fn run(label: &str, frame: &[u8], meta: FrameMeta, caps: PortCaps) {
    let mut sw = Switch::new(SwitchConfig::default());
    let mut ports = Vec::new();
    for i in 0..8u8 {
        let mac = [0x00, 0x16, 0x3e, 0, 0, i + 1];
        ports.push(
            sw.add_port(PortConfig { name: format!("vif{i}"), allowed_src: Some(mac), caps, ..Default::default() })
                .unwrap_or(PortId(0)),
        );
    }
    let mut sink = Sink(0);
    let n = 2_000_000u64;
    let t = Instant::now();
    for i in 0..n {
        let _ = sw.forward(PortId(0), frame, &meta, i, &mut sink);
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "{label}: {:.2} Mframes/s ({:.1} ns/frame, {:.2} Gbit/s)",
        n as f64 / dt / 1e6,
        dt / n as f64 * 1e9,
        sink.0 as f64 * 8.0 / dt / 1e9
    );
}

#[test]
#[ignore]
fn forwarding_rate() {
    println!("command: cargo test --release --test switch_bench -- --ignored --nocapture");
    for len in [64usize, 1500] {
        let mut s = Spec::new(false, L4::Udp, vec![0; len - 42]);
        s.src_mac = [0x00, 0x16, 0x3e, 0, 0, 1];
        s.dst_mac = [0x00, 0x16, 0x3e, 0, 0, 2];
        let (f, _) = build(&s, 0);
        run(&format!("{len} B unicast vif->vif"), &f, FrameMeta::PLAIN, PortCaps::default());
        run(
            &format!("{len} B unicast, checksum completed"),
            &f,
            FrameMeta { csum: Csum::Partial, gso: None },
            PortCaps::default(),
        );
        s.dst_mac = [0xff; 6];
        let (f, _) = build(&s, 0);
        run(&format!("{len} B broadcast to 7 ports"), &f, FrameMeta::PLAIN, PortCaps::default());
    }
}
