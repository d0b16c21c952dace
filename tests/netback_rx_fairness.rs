//! The RX queue of a vif under load from several switch ports: a flood
//! from one source must not starve the others, and a software-segmented
//! 64 KiB GSO frame must fit whole. The vifs are sized as the data plane
//! sizes them and fed by the real switch.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use switch_common::*;
use xvif::netback::{FrameMeta as NbMeta, RxDrop, RxSource, VifConfig};
use xvif::switch::meta::{Csum, FrameMeta, Gso, GsoKind, PortCaps};
use xvif::switch::{Egress, PortConfig, PortId, Switch, SwitchConfig};
use xvif::testing::fake_hv::{FakeBuf, FakeHv};
use xvif::testing::netback_rig::{BACKEND, BUF_CAP, Rig, all_features, frame};

/// The RX sizing the data plane gives each queue of a vif with `queues` queues.
fn dataplane_sizing(c: &mut VifConfig, queues: usize) {
    c.size_rx(queues, BUF_CAP);
}

/// Queues `frame` for the guest as coming from switch port `src`.
fn enqueue_from(vif: &mut xvif::netback::Vif<FakeBuf>, src: PortId, frame: &[u8], meta: NbMeta) -> bool {
    vif.enqueue_rx_from(RxSource(src.0), frame, meta)
}

/// The switch's egress into one vif, as the data plane wires it: frames
/// carry the switch port they came in on.
struct ToVif<'a> {
    port: PortId,
    ingress: PortId,
    vif: &'a mut xvif::netback::Vif<FakeBuf>,
    refused: usize,
}

impl Egress for ToVif<'_> {
    fn send(&mut self, port: PortId, frame: &[u8], meta: &FrameMeta) -> bool {
        assert_eq!(port, self.port);
        let ok = enqueue_from(self.vif, self.ingress, frame, meta.into());
        self.refused += usize::from(!ok);
        ok
    }
}

/// Drains the guest's queue: posts buffers and polls until nothing moves.
fn drain(r: &mut Rig) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        r.fe.post_rx(64);
        r.poll_rx();
        let f = r.fe.rx_frames();
        if f.is_empty() && r.vif.rx_queued() == 0 {
            break;
        }
        got.extend(f.into_iter().map(|f| f.data));
    }
    got
}

#[test]
fn a_flood_from_one_port_does_not_starve_another() {
    let hv = FakeHv::new(BACKEND);
    let mut r = Rig::on(&hv, 7, all_features(), |c| dataplane_sizing(c, 1));
    let flooder = PortId(3);
    let quiet = PortId(5);
    let mut quiet_sent = Vec::new();
    let mut got = Vec::new();
    // A slow guest: a few buffers per round while port 3 floods broadcasts
    // and port 5 sends one small frame per round.
    for round in 0..50u8 {
        for i in 0..200 {
            enqueue_from(&mut r.vif, flooder, &frame(1514, i as u8), NbMeta::default());
        }
        let f = frame(100, 0x80 | round);
        assert!(enqueue_from(&mut r.vif, quiet, &f, NbMeta::default()), "round {round}: quiet port refused");
        quiet_sent.push(0x80 | round);
        r.fe.post_rx(16);
        r.poll_rx();
        got.extend(r.fe.rx_frames().into_iter().map(|f| f.data));
    }
    got.extend(drain(&mut r));
    // Frames are whole and the quiet port's all arrived, in order (seed in the source MAC).
    assert!(got.iter().all(|f| *f == frame(f.len(), f[11])));
    let quiet_got: Vec<u8> = got.iter().filter(|f| f.len() == 100).map(|f| f[11]).collect();
    assert_eq!(quiet_got, quiet_sent, "every frame of the quiet port reached the guest, in order");
    let s = r.vif.stats();
    assert!(s.rx_over_share > 0, "the flood was cut at its share and counted");
    assert_eq!(s.to_guest.drops, s.rx_over_share + s.rx_queue_full);
    assert!(matches!(s.last_rx_drop, Some(RxDrop::OverShare { source: 3, .. })));
    assert_eq!(r.vif.rx_queued_bytes(), 0);
    assert!(r.vif.disabled().is_none());
}

#[test]
fn a_64k_gso_frame_segmented_for_a_non_gso_guest_arrives_whole() {
    // The guest takes checksum offload but not GSO: the switch cuts the
    // frame into ~45 MSS-sized segments for it. Its vif has 4 queues (the
    // smallest per-queue share the data plane gives).
    let mut feat = all_features();
    feat.gso_tcpv4 = false;
    feat.gso_tcpv6 = false;
    let hv = FakeHv::new(BACKEND);
    let mut r = Rig::on(&hv, 7, feat, |c| dataplane_sizing(c, 4));
    let guest_mac = r.vif.config().mac;

    let mut sw = Switch::new(SwitchConfig::default());
    let sender_mac = [0x00, 0x16, 0x3e, 0, 0, 9];
    let fast = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: true, mtu: 1500 };
    let a = sw
        .add_port(PortConfig { name: "vif9.0".into(), allowed_src: Some(sender_mac), caps: fast, ..Default::default() })
        .unwrap();
    let caps = PortCaps { accepts_partial_csum: true, gso_tcpv4: false, gso_tcpv6: false, mtu: 1500 };
    let v = sw
        .add_port(PortConfig { name: "vif7.0".into(), allowed_src: Some(guest_mac), caps, ..Default::default() })
        .unwrap();

    let mut s = Spec::new(false, L4::Tcp, Rng(64).bytes(65535 - 20 - 32));
    s.tcp_opts = 12;
    s.src_mac = sender_mac;
    s.dst_mac = guest_mac;
    let (f, lay) = build(&s, 0);
    let meta = FrameMeta { csum: Csum::Partial, gso: Some(Gso { kind: GsoKind::TcpV4, mss: 1448 }) };
    let want = s.payload.len().div_ceil(1448);
    assert_eq!(want, 46);

    let mut out = ToVif { port: v, ingress: a, vif: &mut r.vif, refused: 0 };
    sw.forward(a, &f, &meta, 0, &mut out).unwrap();
    assert_eq!(out.refused, 0, "every segment was queued");
    let c = sw.port_counters(v).unwrap();
    assert_eq!((c.gso_frames, c.gso_segments, c.tx_packets, c.tx_drops), (1, want as u64, want as u64, 0));

    let got = drain(&mut r);
    assert_eq!(got.len(), want);
    let hdr = lay.l4 + lay.l4_hdr;
    let payload: Vec<u8> = got.iter().flat_map(|g| g[hdr..].iter().copied()).collect();
    assert_eq!(payload, s.payload, "the guest reassembles the original payload");
    assert_eq!(r.vif.stats().to_guest.drops, 0);
}
