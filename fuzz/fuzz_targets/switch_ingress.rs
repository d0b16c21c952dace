//! The switch on hostile frames: ports with fuzzed capabilities (partial
//! checksums, GSO, MTU), source MAC pinning, an `ip` anti-spoofing key
//! parsed from the input (`IpFilter::parse`), two segments, multicast
//! filters and full rings; then a program of frames with fuzzed checksum and
//! GSO metadata (headers parsed by `headers`, checked by `offload::validate`
//! and `IpFilter::check`, completed or segmented by `offload`/`gso`),
//! interleaved with ports going down and FDB ageing. Frames may be padded
//! to 64 KiB and their IP lengths set to match, so that large GSO frames
//! come from small inputs.
//!
//! Checked beyond "no panic", on every frame handed to a port:
//! * never back to the ingress port, never across segments, never to a
//!   disabled port; a unicast decision has one target;
//! * a port gets GSO only if it takes that GSO kind, partial checksums only
//!   if it takes them, and nothing longer than its MTU allows otherwise;
//! * a checksum the switch completed (partial or GSO in, complete out)
//!   verifies, and a GSO segment's rebuilt IPv4 header checksum too;
//! * a GSO frame becomes at most `gso::MAX_SEGMENTS` segments;
//! * counters agree: per port, accepted + dropped = offered; packets and
//!   bytes sent = what the port took; drops at least what it refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvif::switch::gso::MAX_SEGMENTS;
use xvif::switch::headers::{self, Ip, PROTO_TCP};
use xvif::switch::ipfilter::IpFilter;
use xvif::switch::meta::{Csum, FrameMeta, Gso, GsoKind, PortCaps};
use xvif::switch::offload::max_frame;
use xvif::switch::{Egress, PortConfig, PortId, Route, Switch, SwitchConfig};
use xvif_fuzz::Input;

const MAX: usize = 6;

#[derive(Default, Clone, Copy)]
struct Port {
    present: bool,
    caps: Option<PortCaps>,
    segment: u8,
    enabled: bool,
    refuses: bool,
    wants_mcast: bool,
    offered: u64,
    took: u64,
    took_bytes: u64,
    refused: u64,
}

struct Out<'a> {
    ports: &'a mut [Port; MAX],
    ingress: usize,
    in_meta: FrameMeta,
    sends: usize,
}

/// One's-complement sum, folded.
fn csum(mut acc: u64, data: &[u8]) -> u16 {
    for w in data.chunks(2) {
        acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Checks a frame whose checksum the switch says it completed; a GSO
/// segment's IPv4 header was rebuilt by the switch, so its checksum too.
fn check_complete(f: &[u8], segment: bool) {
    let h = headers::parse(f).unwrap_or_else(|e| panic!("the switch completed a frame it cannot parse: {e:?}"));
    let (mut ps, l4) = (0u64, &f[h.l4..h.end()]);
    match h.ip {
        Ip::V4 { src, dst } => {
            if segment {
                assert_eq!(csum(0, &f[h.l3..h.l4]), 0xffff, "IPv4 header checksum of a segment");
            }
            for w in [&src[..], &dst[..]] {
                ps += u64::from(csum(0, w));
            }
        }
        Ip::V6 { src, dst } => {
            for w in [&src[..], &dst[..]] {
                ps += u64::from(csum(0, w));
            }
        }
    }
    ps += u64::from(h.proto) + l4.len() as u64;
    let udp_none = h.proto != PROTO_TCP && l4[6..8] == [0, 0];
    assert!(udp_none || csum(ps, l4) == 0xffff, "the switch completed a wrong L4 checksum");
}

impl Egress for Out<'_> {
    fn wants_multicast(&mut self, port: PortId, _group: &[u8; 6]) -> bool {
        self.ports[usize::from(port.0)].wants_mcast
    }

    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        let i = usize::from(port.0);
        let ing = self.ports[self.ingress];
        let p = &mut self.ports[i];
        assert!(i != self.ingress, "sent back to the ingress port");
        assert!(p.present && p.enabled, "sent to a port that is gone or down");
        assert_eq!(p.segment, ing.segment, "crossed segments");
        let caps = p.caps.unwrap_or_else(|| PortCaps::plain(1500));
        match meta.gso {
            Some(g) => assert!(caps.accepts_gso(g.kind), "GSO to a port without it"),
            None => assert!(frame.len() <= max_frame(caps.mtu, frame), "{} bytes over MTU {}", frame.len(), caps.mtu),
        }
        if meta.csum == Csum::Partial {
            assert!(caps.accepts_partial_csum, "partial checksum to a port without offload");
        }
        let completed = self.in_meta.csum == Csum::Partial || self.in_meta.gso.is_some();
        if completed && meta.csum == Csum::Validated {
            check_complete(frame, self.in_meta.gso.is_some());
        }
        self.sends += 1;
        if p.refuses {
            p.refused += 1;
            false
        } else {
            p.took += 1;
            p.took_bytes += frame.len() as u64;
            true
        }
    }
}

/// Sets the IP length fields of a frame to its length.
fn fit_lengths(f: &mut [u8]) {
    let Ok((ethertype, l3)) = headers::l3(f) else { return };
    let len = f.len();
    match ethertype {
        0x0800 if len >= l3 + 20 => {
            let total = (len - l3).min(0xffff) as u16;
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        }
        0x86dd if len >= l3 + 40 => {
            let plen = (len - l3 - 40).min(0xffff) as u16;
            f[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
        }
        _ => {}
    }
}

fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut sw = Switch::new(SwitchConfig { fdb_capacity: 16, ageing_ns: 1_000_000, hash_seed: 7 });
    let mut ports = [Port::default(); MAX];
    let nports = 2 + usize::from(inp.u8()) % (MAX - 1);
    for (i, port) in ports.iter_mut().enumerate().take(nports) {
        let b = inp.u8();
        let caps = PortCaps {
            accepts_partial_csum: b & 1 != 0,
            gso_tcpv4: b & 2 != 0,
            gso_tcpv6: b & 4 != 0,
            mtu: *inp.pick(&[1500u16, 9000, 576, 68, 0, 0xffff]),
        };
        let mac = [0x00, 0x16, 0x3e, 0, 0, i as u8];
        let allowed_ip = if b & 16 != 0 { IpFilter::parse(inp.string(64), mac).ok() } else { None };
        let segment = u8::from(b & 32 != 0);
        let cfg = PortConfig {
            name: format!("p{i}"),
            allowed_src: (b & 8 != 0).then_some(mac),
            allowed_ip,
            caps,
            segment: if segment == 0 { "xenbr0".into() } else { "xenbr1".into() },
        };
        let id = sw.add_port(cfg).unwrap_or_else(|e| panic!("add_port: {e:?}"));
        assert_eq!(usize::from(id.0), i);
        *port = Port {
            present: true,
            caps: Some(caps),
            segment,
            enabled: true,
            refuses: b & 64 != 0,
            wants_mcast: b & 128 != 0,
            ..Port::default()
        };
    }

    let mut now = 0u64;
    let mut buf = Vec::new();
    for _ in 0..32 {
        if inp.is_empty() {
            break;
        }
        let op = inp.u8();
        let ingress = usize::from(inp.u8()) % MAX;
        match op % 8 {
            6 => {
                let on = !ports[ingress].enabled;
                if sw.set_enabled(PortId(ingress as u8), on).is_ok() {
                    ports[ingress].enabled = on;
                }
                continue;
            }
            7 => {
                now += u64::from(inp.u16()) * 1000;
                sw.age(now);
                continue;
            }
            _ => {}
        }
        let m = inp.u8();
        let mss = inp.u16();
        let csum = match m & 3 {
            1 => Csum::Partial,
            2 => Csum::Validated,
            _ => Csum::Unknown,
        };
        let gso = match (m >> 2) & 3 {
            1 => Some(Gso { kind: GsoKind::TcpV4, mss }),
            2 => Some(Gso { kind: GsoKind::TcpV6, mss }),
            _ => None,
        };
        let meta = FrameMeta { csum, gso };
        // The frame: its first bytes from the input, padded to `len`.
        let len = usize::from(inp.u16());
        let head = inp.string(255);
        buf.clear();
        buf.extend_from_slice(head);
        buf.resize(len.max(head.len()), 0x5a);
        if m & 16 != 0 {
            fit_lengths(&mut buf);
        }
        now += u64::from(m >> 5) * 100_000;

        let id = PortId(ingress as u8);
        let before = sw.port_counters(id).copied();
        let mut out = Out { ports: &mut ports, ingress, in_meta: meta, sends: 0 };
        let r = sw.forward(id, &buf, &meta, now, &mut out);
        let sends = out.sends;
        if let Ok(d) = r {
            assert!(!d.targets.contains(id), "the ingress port is a target");
            if let Route::Unicast(p) = d.route {
                assert!(d.targets.iter().eq([p]), "unicast to several ports");
            }
            assert!(sends <= nports * MAX_SEGMENTS, "{sends} frames out of one");
        } else {
            assert_eq!(sends, 0, "a dropped frame was sent");
        }
        if let (Some(b), Some(a)) = (before, sw.port_counters(id)) {
            ports[ingress].offered += 1;
            assert_eq!(a.rx_packets + a.rx_drops, b.rx_packets + b.rx_drops + 1, "ingress counted once");
        }
    }
    for (i, p) in ports.iter().enumerate().filter(|(_, p)| p.present) {
        let c = sw.port_counters(PortId(i as u8)).copied().unwrap_or_default();
        assert_eq!(c.rx_packets + c.rx_drops, p.offered, "port {i}: rx counters");
        assert_eq!((c.tx_packets, c.tx_bytes), (p.took, p.took_bytes), "port {i}: tx counters");
        assert!(c.tx_drops >= p.refused, "port {i}: refusals not counted as drops");
    }
}

fuzz_target!(|data: &[u8]| run(data));
