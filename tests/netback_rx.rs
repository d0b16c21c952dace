//! The real RX path (xvif -> guest): bounded queue, copies into posted
//! buffers, multi-slot frames, checksum flags, GSO extras, ids and slots.

use xvif::netback::{FrameMeta, Gso, GsoKind, RxDrop};
use xvif::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA};
use xvif::netif::{ExtraInfo, ExtraKind, GsoType, RxRequest};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};

#[test]
fn single_slot_frame_reaches_the_guest() {
    let mut r = Rig::new();
    let f = frame(1514, 1);
    assert!(r.vif.enqueue_rx(&f, FrameMeta::default()));
    r.fe.post_rx(4);
    let out = r.poll_rx();
    assert!(out.progress && out.notify);
    let got = r.fe.rx_frames();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, f);
    assert_eq!(got[0].statuses, vec![1514]);
    assert_eq!(got[0].flags, 0);
    let s = r.vif.stats();
    assert_eq!((s.to_guest.packets, s.to_guest.bytes), (1, 1514));
}

#[test]
fn frames_wait_for_buffers_then_flow() {
    let mut r = Rig::new();
    r.vif.enqueue_rx(&frame(100, 1), FrameMeta::default());
    r.vif.enqueue_rx(&frame(200, 2), FrameMeta::default());
    let out = r.poll_rx();
    assert!(!out.progress && !out.notify);
    assert_eq!(r.vif.rx_queued(), 2);
    assert_eq!(r.vif.stats().rx_stalls, 1);
    r.fe.post_rx(1);
    r.poll_rx();
    assert_eq!(r.vif.rx_queued(), 1);
    r.fe.post_rx(1);
    r.poll_rx();
    let got = r.fe.rx_frames();
    assert_eq!(got.iter().map(|f| f.data.clone()).collect::<Vec<_>>(), vec![frame(100, 1), frame(200, 2)]);
}

#[test]
fn large_frames_use_several_slots_with_sg_only() {
    let mut r = Rig::new();
    let f = frame(10_000, 3);
    assert!(r.vif.enqueue_rx(&f, FrameMeta::default()));
    r.fe.post_rx(2);
    r.poll_rx();
    assert!(r.fe.rx_frames().is_empty(), "needs 3 slots, 2 posted");
    r.fe.post_rx(1);
    r.poll_rx();
    let got = r.fe.rx_frames();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, f);
    assert_eq!(got[0].statuses, vec![4096, 4096, 1808]);
    assert_ne!(got[0].flags & NETRXF_MORE_DATA, 0);

    let mut feat = all_features();
    feat.sg = false;
    let mut r = Rig::on(&FakeHv::new(BACKEND), 9, feat, |_| {});
    assert_eq!(r.vif.try_enqueue_rx(&f, FrameMeta::default()), Err(RxDrop::NoSg(10_000)));
    assert!(r.vif.enqueue_rx(&frame(4096, 1), FrameMeta::default()));
    assert_eq!(r.vif.stats().to_guest.drops, 1);
    assert_eq!(r.vif.max_rx_frame(), 4096);
}

#[test]
fn checksum_metadata_maps_to_rx_flags() {
    let mut r = Rig::new();
    r.vif.enqueue_rx(&frame(100, 1), FrameMeta { csum_blank: true, data_validated: false, gso: None });
    r.vif.enqueue_rx(&frame(100, 2), FrameMeta { csum_blank: false, data_validated: true, gso: None });
    r.vif.enqueue_rx(&frame(100, 3), FrameMeta::default());
    r.fe.post_rx(3);
    r.poll_rx();
    let flags: Vec<u16> = r.fe.rx_frames().iter().map(|f| f.flags).collect();
    assert_eq!(flags, vec![NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED, NETRXF_DATA_VALIDATED, 0]);
}

#[test]
fn csum_blank_needs_the_matching_feature() {
    let mut feat = all_features();
    feat.ipv6_csum_offload = false;
    let mut r = Rig::on(&FakeHv::new(BACKEND), 9, feat, |_| {});
    let mut v6 = frame(100, 1);
    v6[12..14].copy_from_slice(&[0x86, 0xdd]);
    let blank = FrameMeta { csum_blank: true, ..FrameMeta::default() };
    assert_eq!(r.vif.try_enqueue_rx(&v6, blank), Err(RxDrop::CsumNotNegotiated));
    assert!(r.vif.enqueue_rx(&frame(100, 1), blank), "IPv4 csum offload still on");
    assert!(r.vif.enqueue_rx(&v6, FrameMeta::default()));
}

#[test]
fn gso_frames_carry_an_extra_slot() {
    let mut r = Rig::new();
    let f = frame(9000, 4);
    let meta =
        FrameMeta { csum_blank: true, data_validated: true, gso: Some(Gso { kind: GsoKind::TcpV4, size: 1448 }) };
    assert!(r.vif.enqueue_rx(&f, meta));
    r.fe.post_rx(4);
    r.poll_rx();
    let got = r.fe.rx_frames();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, f);
    assert_eq!(got[0].flags & NETRXF_EXTRA_INFO, NETRXF_EXTRA_INFO);
    assert_eq!(
        got[0].extras,
        vec![ExtraInfo { flags: 0, kind: ExtraKind::Gso { size: 1448, kind: GsoType::TcpV4, features: 0 } }]
    );
    // Data in slots 0, 2, 3 (slot 1 holds the extra): ids of those requests.
    assert_eq!(got[0].statuses, vec![4096, 4096, 808]);
    assert_eq!(got[0].ids.len(), 3);

    let mut feat = all_features();
    feat.gso_tcpv4 = false;
    let mut r = Rig::on(&FakeHv::new(BACKEND), 9, feat, |_| {});
    assert_eq!(r.vif.try_enqueue_rx(&f, meta), Err(RxDrop::GsoNotNegotiated));
    assert!(!r.vif.accepts_gso(GsoKind::TcpV4) && r.vif.accepts_gso(GsoKind::TcpV6));
}

#[test]
fn responses_carry_the_request_id_in_its_slot() {
    let mut r = Rig::new();
    // Post three buffers with arbitrary ids, by hand.
    let mut posted = Vec::new();
    for id in [500u16, 3, 77] {
        let gfn = r.hv.alloc_page(r.fe.dom);
        let gref = r.hv.grant(r.fe.dom, gfn, BACKEND, false);
        r.fe.post_rx_raw(RxRequest { id, gref });
        posted.push((id, gfn));
    }
    r.fe.publish_rx();
    for i in 0..3 {
        r.vif.enqueue_rx(&frame(60 + i, i as u8), FrameMeta::default());
    }
    r.poll_rx();
    let rx = r.fe.rx.raw();
    use xvif::hal::SharedMem;
    for (slot, (id, gfn)) in posted.iter().enumerate() {
        let mut e = [0u8; 8];
        rx.read_bytes(64 + slot * 8, &mut e);
        let rsp = xvif::netif::RxResponse::parse(&e);
        assert_eq!(rsp.id, *id);
        assert_eq!(rsp.status as usize, 60 + slot);
        assert_eq!(r.hv.read_page(r.fe.dom, *gfn, 0, 60 + slot), frame(60 + slot, slot as u8));
    }
}

#[test]
fn bad_lengths_are_refused() {
    let mut r = Rig::new();
    assert_eq!(r.vif.try_enqueue_rx(&[], FrameMeta::default()), Err(RxDrop::BadLength(0)));
    assert_eq!(r.vif.try_enqueue_rx(&vec![0; 70_000], FrameMeta::default()), Err(RxDrop::BadLength(70_000)));
    assert_eq!(r.vif.stats().to_guest.drops, 2);
}
