//! One copy between guests: a unicast frame from one vif to another goes
//! from the sender's TX grants straight into the receiver's RX grants (only
//! its headers are copied into xvif), the sender's TX responses wait for
//! that copy, a bad grant is blamed on its own guest alone, and everything
//! one copy does not fit still takes the whole-frame path.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::cell::Cell;
use std::rc::Rc;
use xvif::hal::SharedMem;
use xvif::netback::ring::RSP_PROD;
use xvif::netif::tx::NETTXF_MORE_DATA;
use xvif::netif::{RspStatus, RxRequest, TxRequest};
use xvif::switch::PortId;
use xvif::switch::meta::PortCaps;
use xvif::testing::fabric::Fabric;
use xvif::testing::netfront::TxOpts;

/// A frame of `len` bytes from guest `from` to guest `to` of a fabric
/// (guest `i` has MAC 00:16:3e:00:00:(7+i)), with a counting payload.
fn unicast(len: usize, from: usize, to: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect();
    f[..6].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 7 + to as u8]);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 7 + from as u8]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

fn slots(sizes: &[usize]) -> TxOpts {
    TxOpts { slot_sizes: Some(sizes.to_vec()), ..TxOpts::default() }
}

/// Sends `frames` from guest 0 to guest 1 in one batch and checks that
/// each arrives byte for byte, with one copy.
fn check_arrive(fab: &mut Fabric, frames: &[(Vec<u8>, TxOpts)]) {
    fab.rigs[1].fe.post_rx(200);
    let before = fab.hv.stats();
    for (f, o) in frames {
        fab.rigs[0].fe.queue_packet(f, o);
    }
    fab.rigs[0].fe.publish_tx();
    fab.settle();
    let got = fab.rigs[1].fe.rx_frames();
    assert_eq!(got.len(), frames.len());
    for ((want, _), got) in frames.iter().zip(&got) {
        assert_eq!(got.data.len(), want.len());
        assert!(got.data == *want, "frame of {} bytes differs", want.len());
    }
    let rsps = fab.rigs[0].fe.tx_responses();
    assert!(rsps.iter().all(|r| r.status == RspStatus::Okay), "{rsps:?}");
    let s = fab.hv.stats();
    assert!(s.between_ops > before.between_ops, "grant-to-grant copies were made");
    assert_eq!(s.failed_ops, before.failed_ops);
}

#[test]
fn frames_arrive_byte_identical_through_one_copy() {
    let mut fab = Fabric::new(2);
    let sizes = [129usize, 200, 1000, 1500, 1514];
    let frames: Vec<(Vec<u8>, TxOpts)> =
        sizes.iter().enumerate().map(|(i, &n)| (unicast(n, 0, 1, i as u8), TxOpts::default())).collect();
    check_arrive(&mut fab, &frames);
    // Only the headers were copied into xvif (and read there once).
    let (a, b) = (fab.rigs[0].vif.stats(), fab.rigs[1].vif.stats());
    assert_eq!((a.tx_hdr_bytes, b.rx_copy_bytes), (128 * sizes.len() as u64, 0));
    assert_eq!(b.to_guest.packets, sizes.len() as u64);
    assert_eq!(b.to_guest.bytes, sizes.iter().sum::<usize>() as u64);
}

#[test]
fn multi_slot_frames_and_headers_across_slots_arrive_intact() {
    let mut fab = Fabric::new(2);
    let frames = vec![
        // The headers split across slots (XSA-423's 1-byte first slot).
        (unicast(1500, 0, 1, 1), slots(&[1, 13, 50, 1436])),
        (unicast(1500, 0, 1, 2), slots(&[100, 1400])),
        (unicast(1514, 0, 1, 3), slots(&[128, 1386])),
        (unicast(1514, 0, 1, 4), slots(&[127, 2, 1385])),
        // 18 slots, the most accepted.
        (unicast(1500, 0, 1, 5), slots(&[&[1usize; 17][..], &[1483]].concat())),
        // A frame that starts late in its page.
        (unicast(1500, 0, 1, 6), TxOpts { offset: 4000, ..TxOpts::default() }),
    ];
    check_arrive(&mut fab, &frames);
}

#[test]
fn largest_frames_arrive_intact_across_rx_pages() {
    let mut fab = Fabric::new(2);
    // The largest IP MTU a vif may have (`mtu=` key).
    let jumbo = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: true, mtu: 65517 };
    for p in [PortId(0), PortId(1)] {
        fab.switch.set_caps(p, jumbo).unwrap();
    }
    let frames = vec![
        (unicast(9014, 0, 1, 1), TxOpts::default()),
        (unicast(9014, 0, 1, 2), slots(&[3000, 4096, 1918])),
        (unicast(4097, 0, 1, 3), TxOpts { offset: 2, ..TxOpts::default() }),
        (unicast(65531, 0, 1, 4), TxOpts::default()),
        (unicast(65531, 0, 1, 5), TxOpts { offset: 4095, ..TxOpts::default() }),
    ];
    check_arrive(&mut fab, &frames);
}

#[test]
fn short_frames_take_one_copy_from_the_header_copy() {
    let mut fab = Fabric::new(2);
    let frames: Vec<_> =
        [14usize, 60, 64, 128].iter().map(|&n| (unicast(n, 0, 1, n as u8), TxOpts::default())).collect();
    fab.rigs[1].fe.post_rx(8);
    for (f, o) in &frames {
        fab.rigs[0].fe.queue_packet(f, o);
    }
    fab.rigs[0].fe.publish_tx();
    fab.settle();
    let got = fab.rigs[1].fe.rx_frames();
    assert_eq!(
        got.iter().map(|g| g.data.clone()).collect::<Vec<_>>(),
        frames.iter().map(|f| f.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(fab.switch.counters().unicast, 4);
    assert_eq!(fab.rigs[1].vif.stats().to_guest.packets, 4);
}

#[test]
fn the_tx_response_waits_for_the_grant_copy() {
    let mut fab = Fabric::new(2);
    fab.rigs[1].fe.post_rx(4);
    // At every copy hypercall with a grant-to-grant op, the sender's
    // published responses must still be none.
    let tx_ring = fab.rigs[0].fe.tx.clone();
    let seen = Rc::new(Cell::new((0u32, u32::MAX)));
    let s = seen.clone();
    *fab.hv.copy_hook.borrow_mut() = Some(Box::new(move |ops| {
        if ops.iter().any(|o| o.flags == 3) {
            let (n, min) = s.get();
            s.set((n + 1, min.min(tx_ring.raw().read_u32(RSP_PROD))));
        }
    }));
    fab.rigs[0].fe.send(&unicast(1500, 0, 1, 9), &TxOpts::default());
    fab.rigs[0].fe.send(&unicast(1400, 0, 1, 8), &slots(&[1000, 400]));
    fab.settle();
    let (calls, rsp_prod) = seen.get();
    assert!(calls >= 1, "the payload went grant to grant");
    assert_eq!(rsp_prod, 0, "no TX response was published before the copy");
    assert_eq!(fab.rigs[0].fe.tx_responses().len(), 3);
    assert_eq!(fab.rigs[1].fe.rx_frames().len(), 2);
}

/// Guest 0 sends a 1500-byte frame to guest 1 in two slots: the first
/// (good, holding the headers) and one naming `second` for the last 100
/// bytes; guest 2 sends guest 1 a good frame beside it.
fn send_with_second_slot(fab: &mut Fabric, second: u32) {
    fab.rigs[1].fe.post_rx(8);
    fab.rigs[2].fe.post_rx(8);
    let f = unicast(1500, 0, 1, 1);
    let fe = &mut fab.rigs[0].fe;
    let good = fe.grant_data(&f[..1400], 0);
    fe.push_tx(TxRequest { gref: good, offset: 0, flags: NETTXF_MORE_DATA, id: 1, size: 1500 });
    fe.push_tx(TxRequest { gref: second, offset: 0, flags: 0, id: 2, size: 100 });
    fe.publish_tx();
    fab.rigs[2].fe.send(&unicast(700, 2, 1, 3), &TxOpts::default());
    fab.settle();
}

/// The sender's frame failed as its own error; the receiver got guest 2's
/// frame, and both go on as before.
fn check_sender_alone_failed(fab: &mut Fabric) {
    let rsps = fab.rigs[0].fe.tx_responses();
    assert_eq!(
        rsps.iter().map(|r| (r.id, r.status)).collect::<Vec<_>>(),
        [(1, RspStatus::Error), (2, RspStatus::Error)]
    );
    let a = fab.rigs[0].vif.stats();
    assert_eq!((a.from_guest.packets, a.from_guest.errors), (0, 1));
    assert!(fab.rigs.iter().all(|r| r.vif.disabled().is_none()));
    fab.rigs[0].fe.send(&unicast(1500, 0, 1, 4), &TxOpts::default());
    fab.settle();
    assert_eq!(fab.rigs[1].fe.rx_frames()[0].data, unicast(1500, 0, 1, 4));
    assert_eq!(fab.rigs[0].fe.tx_responses()[0].status, RspStatus::Okay);
}

#[test]
fn a_grant_the_sender_never_gave_fails_its_frame_before_any_receiver_buffer() {
    let mut fab = Fabric::new(3);
    // Grant 4242 does not exist: the one-byte probe of slot 2 in the
    // header batch finds it, so the frame is never offered to guest 1.
    send_with_second_slot(&mut fab, 4242);
    let b = fab.rigs[1].vif.stats();
    assert_eq!((b.to_guest.errors, b.rx_peer_drops, b.to_guest.packets), (0, 0, 1), "{b:?}");
    let got = fab.rigs[1].fe.rx_frames();
    assert_eq!(got.len(), 1, "the receiver's ring holds guest 2's frame alone");
    assert!(got[0].statuses.iter().all(|&st| st > 0), "{got:?}");
    assert_eq!(got[0].data, unicast(700, 2, 1, 3));
    assert_eq!(fab.hv.stats().failed_ops, 1, "the probe failed, and no copy into the receiver was tried");
    check_sender_alone_failed(&mut fab);
}

#[test]
fn a_grant_revoked_after_the_header_batch_is_the_senders_error() {
    let mut fab = Fabric::new(3);
    // Slot 2's grant is real when the header batch probes it and revoked
    // just before the copy into the receiver: the sender racing its own
    // frame. The receiver's buffers for it come back as errors (counted as
    // a peer's drop, not its own error); its other traffic is untouched.
    let fe = &mut fab.rigs[0].fe;
    let gfn = fe.hv.alloc_page(fe.dom);
    fe.hv.write_page(fe.dom, gfn, 0, &unicast(1500, 0, 1, 1)[1400..]);
    let second = fe.hv.grant(fe.dom, gfn, fe.hv.backend, true);
    let (hv, dom) = (fab.hv.clone(), fab.rigs[0].fe.dom);
    *fab.hv.copy_hook.borrow_mut() = Some(Box::new(move |ops| {
        if ops.iter().any(|o| o.flags == 3 && o.source.ref_or_gmfn == u64::from(second)) {
            hv.revoke(dom, second);
        }
    }));
    send_with_second_slot(&mut fab, second);
    let b = fab.rigs[1].vif.stats();
    assert_eq!((b.to_guest.errors, b.rx_peer_drops, b.to_guest.packets), (0, 1, 1), "{b:?}");
    let got: Vec<_> = fab.rigs[1].fe.rx_frames().into_iter().filter(|g| g.statuses[0] > 0).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, unicast(700, 2, 1, 3));
    *fab.hv.copy_hook.borrow_mut() = None;
    check_sender_alone_failed(&mut fab);
}

#[test]
fn a_bad_receiver_grant_is_the_receivers_error_alone() {
    let mut fab = Fabric::new(3);
    // Guest 1 posts a buffer that does not exist, then a read-only one.
    let fe = &mut fab.rigs[1].fe;
    fe.post_rx_raw(RxRequest { id: 100, gref: 4343 });
    let gfn = fe.hv.alloc_page(fe.dom);
    let ro = fe.hv.grant(fe.dom, gfn, fe.hv.backend, true);
    fe.post_rx_raw(RxRequest { id: 101, gref: ro });
    fe.publish_rx();
    fab.rigs[2].fe.post_rx(4);
    fab.rigs[0].fe.send(&unicast(1500, 0, 1, 1), &TxOpts::default());
    fab.rigs[0].fe.send(&unicast(60, 0, 1, 2), &TxOpts::default());
    fab.rigs[0].fe.send(&unicast(1500, 0, 2, 3), &TxOpts::default());
    fab.settle();
    // The sender did nothing wrong.
    let rsps = fab.rigs[0].fe.tx_responses();
    assert_eq!(rsps.len(), 3);
    assert!(rsps.iter().all(|r| r.status == RspStatus::Okay), "{rsps:?}");
    let (a, b, c) = (fab.rigs[0].vif.stats(), fab.rigs[1].vif.stats(), fab.rigs[2].vif.stats());
    assert_eq!((a.from_guest.packets, a.from_guest.errors), (3, 0));
    assert_eq!((b.to_guest.errors, b.to_guest.packets, b.rx_peer_drops), (2, 0, 0));
    assert_eq!((c.to_guest.errors, c.to_guest.packets), (0, 1));
    assert_eq!(fab.rigs[2].fe.rx_frames()[0].data, unicast(1500, 0, 2, 3));
    let got = fab.rigs[1].fe.rx_frames();
    assert!(got.iter().all(|g| g.statuses[0] == RspStatus::Error.to_raw()), "{got:?}");
    assert!(fab.rigs.iter().all(|r| r.vif.disabled().is_none()));
    // With good buffers the receiver gets the next frame.
    fab.rigs[1].fe.post_rx(2);
    fab.rigs[0].fe.send(&unicast(1500, 0, 1, 5), &TxOpts::default());
    fab.settle();
    assert_eq!(fab.rigs[1].fe.rx_frames()[0].data, unicast(1500, 0, 1, 5));
}

#[test]
fn frames_one_copy_does_not_fit_go_whole_and_in_order() {
    let mut fab = Fabric::new(3);
    fab.rigs[1].fe.post_rx(16);
    fab.rigs[2].fe.post_rx(16);
    let mut bcast = unicast(1500, 0, 1, 1);
    bcast[..6].copy_from_slice(&[0xff; 6]);
    let frames = [bcast.clone(), unicast(1500, 0, 1, 2), unicast(60, 0, 1, 3), unicast(1400, 0, 1, 4)];
    for f in &frames {
        fab.rigs[0].fe.queue_packet(f, &TxOpts::default());
    }
    fab.rigs[0].fe.publish_tx();
    let before = fab.hv.stats().between_ops;
    fab.settle();
    // The broadcast went whole; the frames after it waited behind it.
    let got: Vec<Vec<u8>> = fab.rigs[1].fe.rx_frames().into_iter().map(|g| g.data).collect();
    assert_eq!(got, frames);
    assert_eq!(fab.rigs[2].fe.rx_frames()[0].data, bcast);
    assert_eq!(fab.hv.stats().between_ops, before, "nothing of this batch went grant to grant");
    // A receiver with frames queued (no buffers posted yet) gets the next
    // frames behind them, in order, not past them.
    fab.rigs[0].fe.send(&unicast(1500, 0, 2, 5), &TxOpts::default());
    fab.settle();
    fab.rigs[2].fe.post_rx(4);
    fab.rigs[0].fe.send(&unicast(1500, 0, 2, 6), &TxOpts::default());
    fab.settle();
    let got: Vec<Vec<u8>> = fab.rigs[2].fe.rx_frames().into_iter().map(|g| g.data).collect();
    assert_eq!(got, [unicast(1500, 0, 2, 5), unicast(1500, 0, 2, 6)]);
    // A capture on the receiving port sees every frame: they go whole.
    fab.switch.start_capture("vif8.0", 10).unwrap();
    let before = fab.hv.stats().between_ops;
    fab.rigs[0].fe.send(&unicast(1500, 0, 1, 7), &TxOpts::default());
    fab.settle();
    assert_eq!(fab.hv.stats().between_ops, before);
    assert_eq!(fab.rigs[1].fe.rx_frames()[0].data, unicast(1500, 0, 1, 7));
    assert!(fab.switch.capture_mut().unwrap().pending() > 0);
}

/// Runs the same traffic with and without one copy; returns the counters
/// of both vifs and both switch ports.
fn counters(one_copy: bool) -> Vec<String> {
    let mut fab = Fabric::new(2);
    fab.one_copy = one_copy;
    fab.rigs[1].fe.post_rx(64);
    fab.rigs[0].fe.post_rx(64);
    for (i, n) in [60usize, 129, 1500, 1514, 700].iter().enumerate() {
        fab.rigs[0].fe.send(&unicast(*n, 0, 1, i as u8), &slots(&[n / 2, n - n / 2]));
        fab.rigs[1].fe.send(&unicast(*n, 1, 0, i as u8), &TxOpts::default());
    }
    fab.settle();
    assert_eq!(fab.rigs[1].fe.rx_frames().len(), 5);
    assert_eq!(fab.rigs[0].fe.rx_frames().len(), 5);
    let mut out = Vec::new();
    for r in &fab.rigs {
        let s = r.vif.stats();
        out.push(format!("{:?} {:?} {}", s.from_guest, s.to_guest, s.rx_peer_drops));
    }
    for p in [PortId(0), PortId(1)] {
        out.push(format!("{:?}", fab.switch.port_counters(p).unwrap()));
    }
    out.push(format!("{:?}", fab.switch.counters()));
    out
}

#[test]
fn counters_are_the_same_with_one_copy() {
    assert_eq!(counters(true), counters(false));
}

#[test]
fn a_turn_copies_for_all_vifs_in_one_hypercall() {
    let mut fab = Fabric::new(4);
    for r in fab.rigs.iter_mut() {
        r.fe.post_rx(8);
    }
    for i in 0..4 {
        fab.rigs[i].fe.send(&unicast(1500, i, (i + 1) % 4, i as u8), &TxOpts::default());
    }
    let before = fab.hv.stats().copy_calls;
    fab.turn();
    // One hypercall for every vif's header copies, one for every copy
    // into the receivers.
    assert_eq!(fab.hv.stats().copy_calls - before, 2);
    for i in 0..4 {
        assert_eq!(fab.rigs[(i + 1) % 4].fe.rx_frames()[0].data, unicast(1500, i, (i + 1) % 4, i as u8));
    }
}

#[test]
fn a_full_arena_sends_frames_whole_and_holds_no_vif_back() {
    let mut fab = Fabric::new(8);
    for r in fab.rigs.iter_mut() {
        r.fe.post_rx(200);
    }
    // 8 senders x 64 frames: more headers than the turn's arena holds.
    for i in 0..8 {
        for k in 0..64 {
            let f = unicast(200, i, (i + 1) % 8, k as u8);
            fab.rigs[i].fe.queue_packet(&f, &TxOpts::default());
        }
        fab.rigs[i].fe.publish_tx();
    }
    let before = fab.hv.stats();
    fab.turn();
    for i in 0..8 {
        let got = fab.rigs[(i + 1) % 8].fe.rx_frames();
        assert_eq!(got.len(), 64, "guest {i}'s frames all went in one turn");
        for (k, g) in got.iter().enumerate() {
            assert_eq!(g.data, unicast(200, i, (i + 1) % 8, k as u8));
        }
        assert_eq!(fab.rigs[i].fe.tx_responses().len(), 64);
    }
    let s = fab.hv.stats();
    assert!(s.between_ops - before.between_ops >= 300, "most went with one copy");
    assert!(s.between_ops - before.between_ops < 512, "the rest went whole");
}

#[test]
fn the_fake_hypervisor_copies_grant_to_grant_and_refuses_bad_grants() {
    use xvif::hal::GrantOps;
    use xvif::xen::DomId;
    use xvif::xen::abi::{GNTCOPY_DEST_GREF, GNTCOPY_SOURCE_GREF, GnttabCopy, GnttabCopyPtr};
    let fab = Fabric::new(1);
    let hv = &fab.hv;
    let (a, b, c) = (DomId(20), DomId(21), DomId(22));
    let (pa, pb) = (hv.alloc_page(a), hv.alloc_page(b));
    hv.write_page(a, pa, 100, b"grant to grant");
    let src = hv.grant(a, pa, hv.backend, true);
    let dst = hv.grant(b, pb, hv.backend, false);
    let ro = hv.grant(b, pb, hv.backend, true);
    let other = hv.grant(a, pa, c, true);
    let op = |sd: DomId, sr: u32, so: u16, dd: DomId, dr: u32, dof: u16, len: u16| GnttabCopy {
        source: GnttabCopyPtr { ref_or_gmfn: u64::from(sr), domid: sd.0, offset: so, pad: 0 },
        dest: GnttabCopyPtr { ref_or_gmfn: u64::from(dr), domid: dd.0, offset: dof, pad: 0 },
        len,
        flags: GNTCOPY_SOURCE_GREF | GNTCOPY_DEST_GREF,
        status: 0,
        pad: 0,
    };
    let mut ops = [
        op(a, src, 100, b, dst, 7, 14),
        op(a, 999, 0, b, dst, 0, 1),
        op(a, src, 0, b, ro, 0, 1),
        op(a, other, 0, b, dst, 0, 1),
        op(a, src, 4090, b, dst, 0, 10),
        op(a, src, 0, c, dst, 0, 1),
    ];
    hv.copy(&mut ops).unwrap();
    let st: Vec<i16> = ops.iter().map(|o| o.status).collect();
    // Done; bad ref; read-only destination; not granted to us; past the
    // page; a grant that domain never made.
    assert_eq!(st, [0, -3, -8, -8, -10, -3]);
    assert_eq!(hv.read_page(b, pb, 7, 14), b"grant to grant");
    assert_eq!(hv.stats().between_ops, 6);
}
