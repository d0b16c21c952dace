//! Every row of the hostile-frontend table in the netback notes, against
//! the real Vif: the vif is disabled or the packet dropped exactly as the
//! rule says, a second vif on the same hypervisor keeps passing traffic, and
//! nothing panics.

use xvif::hal::SharedMem;
use xvif::netback::ring::RingOverflow;
use xvif::netback::{FrameMeta, NetbackError, RxDrop, RxSource, TxDrop};
use xvif::netif::{ExtraInfo, ExtraKind, RspStatus, RxRequest, TxRequest, TxResponse};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};
use xvif::testing::netfront::TxOpts;
use xvif::xen::EvtchnPort;
use xvif::xen::evtchn::{LimitConfig, RateLimiter};

/// Two vifs on one hypervisor: the victim `a` and the bystander `b`.
fn pair() -> (Rig, Rig) {
    let hv = FakeHv::new(BACKEND);
    (Rig::on(&hv, 7, all_features(), |_| {}), Rig::on(&hv, 8, all_features(), |_| {}))
}

/// `b` still passes traffic both ways.
fn bystander_works(b: &mut Rig) {
    let f = frame(300, 42);
    let ids = b.fe.send(&f, &TxOpts::default());
    b.poll_tx();
    assert_eq!(b.got.last().map(|g| &g.0), Some(&f));
    assert_eq!(b.fe.tx_responses(), vec![TxResponse { id: ids[0], status: RspStatus::Okay }]);
    assert!(b.vif.enqueue_rx(&f, FrameMeta::default()));
    b.fe.post_rx(1);
    b.poll_rx();
    assert_eq!(b.fe.rx_frames().pop().map(|x| x.data), Some(f));
    assert!(b.vif.disabled().is_none());
}

#[test]
fn xsa39_impossible_req_prod_disables_only_that_vif() {
    let (mut a, mut b) = pair();
    a.fe.send(&frame(60, 1), &TxOpts::default());
    a.fe.set_tx_req_prod(1000);
    let out = a.poll_tx();
    assert!(!out.more && !out.progress);
    assert_eq!(a.vif.disabled(), Some(&NetbackError::TxRingOverflow(RingOverflow { req_prod: 1000, req_cons: 0 })));
    assert!(a.got.is_empty());
    bystander_works(&mut b);
    // RX ring too.
    let (mut a, mut b) = pair();
    a.vif.enqueue_rx(&frame(60, 1), FrameMeta::default());
    a.fe.set_rx_req_prod(0x8000_0000);
    a.poll_rx();
    assert_eq!(
        a.vif.disabled(),
        Some(&NetbackError::RxRingOverflow(RingOverflow { req_prod: 0x8000_0000, req_cons: 0 }))
    );
    bystander_works(&mut b);
}

#[test]
fn xsa90_a_disabled_vif_returns_at_once_and_touches_nothing() {
    let (mut a, mut b) = pair();
    a.fe.set_tx_req_prod(u32::MAX);
    a.poll_tx();
    assert!(a.vif.disabled().is_some());
    let (tx0, rx0) = (a.fe.tx.accesses.get(), a.fe.rx.accesses.get());
    let calls0 = a.hv.stats().copy_calls;
    for _ in 0..1000 {
        assert_eq!(a.poll_tx(), Default::default());
        assert_eq!(a.poll_rx(), Default::default());
    }
    assert_eq!(a.vif.try_enqueue_rx(&frame(60, 1), FrameMeta::default()), Err(RxDrop::Disabled));
    assert!(!a.vif.wants([0xff; 6]));
    assert_eq!((a.fe.tx.accesses.get(), a.fe.rx.accesses.get()), (tx0, rx0), "no ring access after disable");
    assert_eq!(a.hv.stats().copy_calls, calls0);
    bystander_works(&mut b);
}

#[test]
fn xsa155_each_request_is_copied_once_and_later_changes_are_ignored() {
    let (mut a, mut b) = pair();
    let f = frame(300, 5);
    let ids = a.fe.queue_packet(&f, &TxOpts { slot_sizes: Some(vec![100, 200]), ..TxOpts::default() });
    // Right after the backend reads slot 0, the frontend rewrites it into a
    // page-crossing, oversized, extra-carrying request. A second fetch would
    // see it and disable the vif or misparse the packet.
    let evil = TxRequest { gref: 0xdead, offset: 4095, flags: 0xffff, id: 999, size: 0xffff };
    a.fe.tx.rewrite_after_read(64, vec![(64, evil.emit().to_vec())]);
    a.fe.publish_tx();
    a.poll_tx();
    assert!(a.vif.disabled().is_none());
    assert_eq!(a.got.len(), 1);
    assert_eq!(a.got[0].0, f);
    assert_eq!(a.fe.tx.max_entry_reads(), 1, "every ring entry read exactly once");
    let rsps = a.fe.tx_responses();
    assert_eq!(rsps.iter().map(|x| x.id).collect::<Vec<_>>(), ids);
    // Same on RX: the request's gref is changed after it was read.
    a.fe.post_rx(1);
    let mut req = [0u8; 8];
    a.fe.rx.raw().read_bytes(64, &mut req);
    let good = RxRequest::parse(&req);
    a.fe.rx.rewrite_after_read(64, vec![(64, RxRequest { id: 1234, gref: 0xbad }.emit().to_vec())]);
    a.vif.enqueue_rx(&f, FrameMeta::default());
    a.poll_rx();
    let got = a.fe.rx_frames();
    assert_eq!(got[0].data, f);
    assert_ne!(good.id, 1234);
    assert_eq!(a.fe.rx.max_entry_reads(), 1);
    bystander_works(&mut b);
}

#[test]
fn xsa270_no_control_ring_and_every_copy_stays_in_its_page() {
    // We implement no control ring (feature-ctrl-ring is not advertised),
    // so the hash-table overflow cannot arise. Hash extras and odd offsets
    // are bounded: no copy op ever runs past a page on either side.
    let (mut a, mut b) = pair();
    let hash = ExtraInfo { flags: 0, kind: ExtraKind::Hash { kind: 0xff, algorithm: 0xff, value: [0xff; 4] } };
    for (i, off) in [0u16, 1, 2, 4094, 4095].iter().enumerate() {
        let len = (4096 - usize::from(*off)).max(14);
        let opts = TxOpts {
            offset: *off,
            extras: vec![hash],
            slot_sizes: Some(vec![4096 - usize::from(*off), len.saturating_sub(4096 - usize::from(*off)).max(14)]),
            ..TxOpts::default()
        };
        let f = frame(4096 - usize::from(*off) + len.saturating_sub(4096 - usize::from(*off)).max(14), i as u8);
        a.fe.send(&f, &opts);
        a.poll_tx();
        assert_eq!(a.got.last().map(|g| &g.0), Some(&f));
    }
    assert_eq!(a.hv.stats().page_crossing_ops, 0);
    assert_eq!(a.hv.stats().failed_ops, 0);
    bystander_works(&mut b);
}

#[test]
fn xsa332_notification_storm_with_no_work_is_bounded() {
    let (mut a, mut b) = pair();
    // The event loop's per-port limiter masks a storming port...
    let mut lim = RateLimiter::new(LimitConfig::default());
    let port = EvtchnPort(9);
    let mut polls = 0u64;
    for _ in 0..100_000 {
        if lim.allow(port, 0) {
            polls += 1;
            let before = a.fe.tx.accesses.get();
            let out = a.poll_tx();
            let cost = a.fe.tx.accesses.get() - before;
            // ...and each spurious poll costs a handful of ring accesses.
            assert!(cost <= 8, "idle poll cost {cost}");
            assert!(!out.notify && !out.progress && !out.more);
        }
    }
    assert!(polls <= u64::from(LimitConfig::default().burst));
    assert!(lim.throttled(port) > 0);
    assert_eq!(a.hv.stats().copy_calls, 0);
    assert_eq!(a.vif.stats().tx_idle_polls, polls);
    assert!(a.fe.tx_responses().is_empty());
    bystander_works(&mut b);
}

#[test]
fn xsa361_362_367_bad_grants_are_error_responses() {
    let (mut a, mut b) = pair();
    let other = xvif::xen::DomId(99);
    // (1) a gref that does not exist, (2) a revoked one, (3) one granted to
    // another domain; each in a multi-slot packet between good packets.
    let good = frame(100, 1);
    let ids_g1 = a.fe.send(&good, &TxOpts::default());
    let ids_bad1 = a.fe.queue_packet(&frame(200, 2), &TxOpts { slot_sizes: Some(vec![100, 100]), ..TxOpts::default() });
    let mut e = [0u8; 12];
    a.fe.tx.raw().read_bytes(64 + 12 * 2, &mut e);
    let mut req = TxRequest::parse(&e);
    req.gref = 0x7fff_ffff;
    a.fe.tx.raw().write_bytes(64 + 12 * 2, &req.emit());
    let ids_bad2 = a.fe.queue_packet(&frame(60, 3), &TxOpts::default());
    a.fe.tx.raw().read_bytes(64 + 12 * 3, &mut e);
    a.hv.revoke(a.fe.dom, TxRequest::parse(&e).gref);
    let gfn = a.hv.alloc_page(a.fe.dom);
    let gref = a.hv.grant(a.fe.dom, gfn, other, true);
    a.fe.push_tx(TxRequest { gref, offset: 0, flags: 0, id: 777, size: 60 });
    let ids_g2 = a.fe.send(&good, &TxOpts::default());
    a.poll_tx();
    assert_eq!(a.got.iter().map(|g| g.0.clone()).collect::<Vec<_>>(), vec![good.clone(), good.clone()]);
    let st: Vec<(u16, RspStatus)> = a.fe.tx_responses().iter().map(|x| (x.id, x.status)).collect();
    let mut want = vec![(ids_g1[0], RspStatus::Okay)];
    want.extend(ids_bad1.iter().map(|&i| (i, RspStatus::Error)));
    want.push((ids_bad2[0], RspStatus::Error));
    want.push((777, RspStatus::Error));
    want.push((ids_g2[0], RspStatus::Okay));
    assert_eq!(st, want);
    assert!(matches!(a.vif.stats().last_tx_drop, Some(TxDrop::CopyFailed(_))));
    assert_eq!(a.vif.stats().from_guest.errors, 3);
    // A whole hypercall rejected: errors, no crash.
    a.hv.fail_next_call.set(Some(xvif::xen::XenError::Fault));
    let ids = a.fe.send(&good, &TxOpts::default());
    a.poll_tx();
    assert_eq!(a.fe.tx_responses(), vec![TxResponse { id: ids[0], status: RspStatus::Error }]);
    // RX: a read-only grant and a bogus gref as receive buffers.
    let gfn = a.hv.alloc_page(a.fe.dom);
    let ro = a.hv.grant(a.fe.dom, gfn, BACKEND, true);
    a.fe.post_rx_raw(RxRequest { id: 1, gref: ro });
    a.fe.post_rx_raw(RxRequest { id: 2, gref: 0xffff_ffff });
    a.fe.publish_rx();
    a.fe.post_rx(1);
    for i in 0..3 {
        a.vif.enqueue_rx(&frame(80, i), FrameMeta::default());
    }
    a.poll_rx();
    let got = a.fe.rx_frames();
    assert_eq!(got.iter().map(|f| f.statuses[0]).collect::<Vec<_>>(), vec![-1, -1, 80]);
    assert_eq!(got[2].data, frame(80, 2));
    assert_eq!(a.vif.stats().to_guest.errors, 2);
    assert!(a.vif.disabled().is_none());
    bystander_works(&mut b);
}

#[test]
fn xsa392_rx_queue_is_bounded_when_the_guest_posts_nothing() {
    let (mut a, mut b) = pair();
    let budget = a.vif.rx_queue_budget();
    let mut accepted = 0;
    for i in 0..10_000u32 {
        let src = RxSource((i % 2) as u8);
        if a.vif.enqueue_rx_from(src, &frame(1500, i as u8), FrameMeta::default()) {
            accepted += 1;
        }
        if i % 100 == 0 {
            a.poll_rx();
        }
    }
    assert!(a.vif.rx_queued_bytes() <= budget);
    assert!(a.vif.rx_queued_bytes() >= budget / 2, "two sources fill three quarters");
    assert_eq!(a.vif.rx_queued(), accepted);
    let s = a.vif.stats();
    assert_eq!(s.to_guest.drops, 10_000 - accepted as u64);
    assert_eq!(s.to_guest.drops, s.rx_queue_full + s.rx_over_share);
    // Once the guest posts buffers the queue drains and frees its bytes.
    let mut got = 0;
    while a.vif.rx_queued() > 0 {
        a.fe.post_rx(64);
        a.poll_rx();
        got += a.fe.rx_frames().len();
    }
    assert_eq!(got, accepted);
    assert_eq!(a.vif.rx_queued_bytes(), 0);
    assert!(a.vif.enqueue_rx(&frame(60, 1), FrameMeta::default()));
    bystander_works(&mut b);
}

#[test]
fn xsa423_headers_split_across_slots_are_gathered() {
    let (mut a, mut b) = pair();
    // A 1-byte first slot, the Ethernet and IP headers spread over the next.
    let f = frame(200, 9);
    let ids = a.fe.send(&f, &TxOpts { slot_sizes: Some(vec![1, 5, 8, 20, 166]), ..TxOpts::default() });
    a.poll_tx();
    assert_eq!(a.got.len(), 1);
    assert_eq!(a.got[0].0, f);
    assert_eq!(a.fe.tx_responses().len(), ids.len());
    bystander_works(&mut b);
}

#[test]
fn xsa424_no_lock_is_held_across_delivery_or_drop_paths() {
    // Delivery runs while vif `a` is mid-poll; the callback drives vif `b`
    // (enqueue, RX poll) and overflows b's queue (drop path). A global lock
    // held across these would deadlock here.
    let hv = FakeHv::new(BACKEND);
    let mut a = Rig::on(&hv, 7, all_features(), |_| {});
    let mut b = Rig::on(&hv, 8, all_features(), |c| c.rx_queue_bytes = 8 * 100);
    for i in 0..100 {
        a.fe.send(&frame(100, i), &TxOpts::default());
    }
    b.fe.post_rx(10);
    let (hv, vif_b) = (b.hv.clone(), &mut b.vif);
    let mut forwarded = 0;
    let out = a.vif.poll_tx(0, &a.hv, &a.staging, &mut |f: &[u8], m| {
        if vif_b.enqueue_rx(f, m) {
            forwarded += 1;
        }
        vif_b.poll_rx(0, &hv);
    });
    assert!(out.progress);
    assert_eq!(b.fe.rx_frames().len(), 10);
    assert!(forwarded >= 10);
    assert!(b.vif.stats().to_guest.drops > 0, "the drop path ran inside the callback");
    assert!(a.vif.disabled().is_none() && b.vif.disabled().is_none());
}

#[test]
fn xsa432_eighteen_slot_packet_under_128_bytes() {
    let (mut a, mut b) = pair();
    // 18 slots, 100 bytes: 1 + 16*6 + 3. Exactly what overran Linux.
    let mut sizes = vec![1];
    sizes.extend(std::iter::repeat_n(6, 16));
    sizes.push(3);
    assert_eq!((sizes.len(), sizes.iter().sum::<usize>()), (18, 100));
    let f = frame(100, 11);
    let ids = a.fe.send(&f, &TxOpts { slot_sizes: Some(sizes), ..TxOpts::default() });
    a.poll_tx();
    assert_eq!(a.got.len(), 1);
    assert_eq!(a.got[0].0, f);
    let rsps = a.fe.tx_responses();
    assert_eq!(rsps.len(), 18);
    assert!(rsps.iter().zip(&ids).all(|(r, id)| r.id == *id && r.status == RspStatus::Okay));
    bystander_works(&mut b);
}

#[test]
fn xsa448_zero_length_fragments_are_accepted() {
    let (mut a, mut b) = pair();
    let f = frame(100, 12);
    a.fe.send(&f, &TxOpts { slot_sizes: Some(vec![60, 0, 0, 40, 0]), ..TxOpts::default() });
    // All data in the first slot, every fragment empty.
    let g = frame(64, 13);
    a.fe.send(&g, &TxOpts { slot_sizes: Some(vec![64, 0, 0, 0]), ..TxOpts::default() });
    a.poll_tx();
    assert_eq!(a.got.iter().map(|x| x.0.clone()).collect::<Vec<_>>(), vec![f, g]);
    assert!(a.fe.tx_responses().iter().all(|r| r.status == RspStatus::Okay));
    assert!(a.vif.disabled().is_none());
    bystander_works(&mut b);
}
