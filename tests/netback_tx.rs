//! The real TX path (guest -> xvif) driven by a mock netfront through the
//! fake hypervisor: gathering, extras, metadata, validation verdicts,
//! batching and budgets.

use xvif::hal::SharedMem;
use xvif::netback::ring::RSP_EVENT;
use xvif::netback::tx::{FATAL_SLOTS, MAX_SLOTS};
use xvif::netback::{FrameMeta, Gso, GsoKind, NetbackError, TxDrop};
use xvif::netif::tx::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED};
use xvif::netif::{ExtraInfo, ExtraKind, GsoType, RspStatus, TxResponse};
use xvif::testing::netback_rig::{Rig, all_features, frame};
use xvif::testing::netfront::TxOpts;

fn ok(ids: &[u16]) -> Vec<TxResponse> {
    ids.iter().map(|&id| TxResponse { id, status: RspStatus::Okay }).collect()
}

fn err(ids: &[u16]) -> Vec<TxResponse> {
    ids.iter().map(|&id| TxResponse { id, status: RspStatus::Error }).collect()
}

fn sizes(first: usize, rest: &[usize]) -> TxOpts {
    let mut v = vec![first];
    v.extend_from_slice(rest);
    TxOpts { slot_sizes: Some(v), ..TxOpts::default() }
}

#[test]
fn single_slot_packet_is_delivered_and_answered() {
    let mut r = Rig::new();
    let f = frame(60, 1);
    let ids = r.fe.send(&f, &TxOpts { offset: 100, ..TxOpts::default() });
    let out = r.poll_tx();
    assert!(out.progress && out.notify && !out.more);
    assert_eq!(r.got, vec![(f, FrameMeta::default())]);
    assert_eq!(r.fe.tx_responses(), ok(&ids));
    let s = r.vif.stats();
    assert_eq!((s.from_guest.packets, s.from_guest.bytes, s.from_guest.errors), (1, 60, 0));
    assert!(r.vif.disabled().is_none());
}

#[test]
fn multi_slot_packet_is_gathered_in_order() {
    let mut r = Rig::new();
    let f = frame(100 + 4096 + 500, 2);
    let ids = r.fe.send(&f, &TxOpts { slot_sizes: Some(vec![100, 4096, 500]), offset: 3000, ..TxOpts::default() });
    assert_eq!(ids.len(), 3);
    r.poll_tx();
    assert_eq!(r.got.len(), 1);
    assert_eq!(r.got[0].0, f);
    assert_eq!(r.fe.tx_responses(), ok(&ids));
    assert_eq!(r.hv.stats().page_crossing_ops, 0);
}

#[test]
fn checksum_flags_and_gso_extra_become_metadata() {
    let mut r = Rig::new();
    let f = frame(9000, 3);
    let gso = ExtraInfo { flags: 0, kind: ExtraKind::Gso { size: 1448, kind: GsoType::TcpV6, features: 0 } };
    let ids = r
        .fe
        .send(&f, &TxOpts { flags: NETTXF_CSUM_BLANK | NETTXF_DATA_VALIDATED, extras: vec![gso], ..TxOpts::default() });
    r.poll_tx();
    let meta =
        FrameMeta { csum_blank: true, data_validated: true, gso: Some(Gso { kind: GsoKind::TcpV6, size: 1448 }) };
    assert_eq!(r.got, vec![(f, meta)]);
    // Ring order: first slot, extra (NULL), following slots.
    let rsps = r.fe.tx_responses();
    assert_eq!(rsps.len(), 4);
    assert_eq!(rsps[0], TxResponse { id: ids[0], status: RspStatus::Okay });
    assert_eq!(rsps[1].status, RspStatus::Null);
    assert_eq!(&rsps[2..], &ok(&ids[1..])[..]);
}

#[test]
fn hash_extra_is_accepted_and_ignored() {
    let mut r = Rig::new();
    let f = frame(80, 4);
    let hash = ExtraInfo { flags: 0, kind: ExtraKind::Hash { kind: 0xff, algorithm: 0xff, value: [0xff; 4] } };
    r.fe.send(&f, &TxOpts { flags: NETTXF_DATA_VALIDATED, extras: vec![hash], ..TxOpts::default() });
    r.poll_tx();
    assert_eq!(r.got, vec![(f, FrameMeta { data_validated: true, ..FrameMeta::default() })]);
    let st: Vec<_> = r.fe.tx_responses().iter().map(|x| x.status).collect();
    assert_eq!(st, vec![RspStatus::Okay, RspStatus::Null]);
}

#[test]
fn eighteen_slots_accepted_nineteen_dropped_twenty_fatal() {
    let mut r = Rig::new();
    assert_eq!((MAX_SLOTS, FATAL_SLOTS), (18, 20));
    let f18 = frame(18 * 100, 5);
    let ids = r.fe.send(&f18, &sizes(100, &[100; 17]));
    r.poll_tx();
    assert_eq!(r.got.len(), 1);
    assert_eq!(r.got[0].0, f18);
    assert_eq!(r.fe.tx_responses(), ok(&ids));

    let f19 = frame(19 * 100, 6);
    let ids19 = r.fe.send(&f19, &sizes(100, &[100; 18]));
    let next = frame(64, 7);
    let ids_next = r.fe.send(&next, &TxOpts::default());
    r.poll_tx();
    assert_eq!(r.got.len(), 2, "the 19-slot packet is dropped, the next one passes");
    assert_eq!(r.got[1].0, next);
    let mut want = err(&ids19);
    want.extend(ok(&ids_next));
    assert_eq!(r.fe.tx_responses(), want);
    assert_eq!(r.vif.stats().last_tx_drop, Some(TxDrop::TooManySlots { slots: 19 }));
    assert!(r.vif.disabled().is_none());

    r.fe.send(&frame(2000, 8), &sizes(100, &[100; 19]));
    r.poll_tx();
    assert_eq!(r.vif.disabled(), Some(&NetbackError::TooManySlots { slots: 20 }));
    assert_eq!(r.got.len(), 2);
}

#[test]
fn runts_are_dropped_minimum_frame_passes() {
    let mut r = Rig::new();
    let ids = r.fe.send(&frame(13, 1), &TxOpts::default());
    let ids0 = r.fe.send(&[], &TxOpts::default());
    let f14 = frame(14, 2);
    let ids14 = r.fe.send(&f14, &TxOpts::default());
    r.poll_tx();
    assert_eq!(r.got.len(), 1);
    assert_eq!(r.got[0].0, f14);
    let mut want = err(&ids);
    want.extend(err(&ids0));
    want.extend(ok(&ids14));
    assert_eq!(r.fe.tx_responses(), want);
    assert_eq!(r.vif.stats().from_guest.errors, 2);
    assert!(r.vif.disabled().is_none());
}

#[test]
fn slot_sizes_larger_than_the_packet_are_dropped() {
    let mut r = Rig::new();
    // First slot says 100 bytes in all, the next slots carry 80 + 80.
    let ids = r.fe.send(
        &frame(200, 1),
        &TxOpts { slot_sizes: Some(vec![40, 80, 80]), size_override: Some(100), ..TxOpts::default() },
    );
    r.poll_tx();
    assert!(r.got.is_empty());
    assert_eq!(r.fe.tx_responses(), err(&ids));
    assert_eq!(r.vif.stats().last_tx_drop, Some(TxDrop::SizeMismatch { slot: 80, remaining: 20 }));
    assert!(r.vif.disabled().is_none());
}

#[test]
fn slot_crossing_its_page_is_fatal() {
    let mut r = Rig::new();
    r.fe.send(&frame(200, 1), &TxOpts { offset: 4000, ..TxOpts { slot_sizes: Some(vec![200]), ..TxOpts::default() } });
    r.poll_tx();
    assert_eq!(r.vif.disabled(), Some(&NetbackError::CrossesPage { offset: 4000, size: 200 }));
    assert!(r.got.is_empty());

    let mut r = Rig::new();
    let ids = r.fe.queue_packet(&frame(300, 1), &sizes(100, &[200]));
    assert_eq!(ids.len(), 2);
    // Rewrite the second slot's offset so it runs past its page.
    let mut req = [0u8; 12];
    r.fe.tx.raw().read_bytes(64 + 12, &mut req);
    req[4..6].copy_from_slice(&4000u16.to_le_bytes());
    r.fe.tx.raw().write_bytes(64 + 12, &req);
    r.fe.publish_tx();
    r.poll_tx();
    assert_eq!(r.vif.disabled(), Some(&NetbackError::CrossesPage { offset: 4000, size: 200 }));
}

#[test]
fn extra_errors_are_fatal() {
    let gso = |size, kind| ExtraInfo { flags: 0, kind: ExtraKind::Gso { size, kind, features: 0 } };
    let cases: Vec<(Vec<ExtraInfo>, NetbackError)> = vec![
        (vec![gso(0, GsoType::TcpV4)], NetbackError::GsoSizeZero),
        (vec![gso(1000, GsoType::Unknown(7))], NetbackError::BadGsoType { ty: 7 }),
        (vec![gso(1000, GsoType::None)], NetbackError::BadGsoType { ty: 0 }),
        (vec![ExtraInfo { flags: 0, kind: ExtraKind::Unknown(0, [0; 6]) }], NetbackError::BadExtraType { ty: 0 }),
        (vec![ExtraInfo { flags: 0, kind: ExtraKind::Unknown(5, [0; 6]) }], NetbackError::BadExtraType { ty: 5 }),
        (vec![gso(1000, GsoType::TcpV4); 5], NetbackError::TooManyExtras { count: 5 }),
    ];
    for (extras, want) in cases {
        let mut r = Rig::new();
        r.fe.send(&frame(100, 1), &TxOpts { extras, ..TxOpts::default() });
        r.poll_tx();
        assert_eq!(r.vif.disabled(), Some(&want));
        assert!(r.got.is_empty());
    }
}

#[test]
fn chains_past_req_prod_are_fatal() {
    // Extra flag set but the extra slot never published.
    let mut r = Rig::new();
    r.fe.queue_packet(
        &frame(100, 1),
        &TxOpts { extras: vec![ExtraInfo { flags: 0, kind: ExtraKind::McastAdd([1; 6]) }], ..TxOpts::default() },
    );
    r.fe.set_tx_req_prod(1);
    r.poll_tx();
    assert_eq!(r.vif.disabled(), Some(&NetbackError::MissingSlots { needed: 2, available: 1 }));
    // more_data on the last published slot.
    let mut r = Rig::new();
    r.fe.queue_packet(&frame(300, 1), &sizes(100, &[100, 100]));
    r.fe.set_tx_req_prod(2);
    r.poll_tx();
    assert_eq!(r.vif.disabled(), Some(&NetbackError::MissingSlots { needed: 3, available: 2 }));
}

#[test]
fn budget_bounds_one_poll_and_batches_copies() {
    let mut r =
        Rig::on(&xvif::testing::fake_hv::FakeHv::new(xvif::testing::netback_rig::BACKEND), 9, all_features(), |c| {
            c.tx_budget = 64;
            c.tx_batch = 32;
        });
    for i in 0..200u32 {
        r.fe.send(&frame(64, i as u8), &TxOpts::default());
    }
    let before = r.pool.borrow().stats();
    let out = r.poll_tx();
    assert!(out.more && out.progress);
    assert_eq!(r.got.len(), 64);
    assert_eq!(r.vif.stats().copy_hypercalls, 2, "64 packets, 32 per flush, one op each");
    let mut polls = 1;
    while r.poll_tx().more {
        polls += 1;
        assert!(polls < 10);
    }
    assert_eq!(r.got.len(), 200);
    for (i, (f, _)) in r.got.iter().enumerate() {
        assert_eq!(*f, frame(64, i as u8));
    }
    assert_eq!(r.fe.tx_responses().len(), 200);
    assert_eq!(r.pool.borrow().stats(), before, "no buffer taken per packet");
    assert_eq!(r.staging.len(), 32);
}

#[test]
fn notify_only_when_the_frontend_asks() {
    let mut r = Rig::new();
    r.fe.send(&frame(64, 1), &TxOpts::default());
    // The frontend wants an event only after response 10.
    r.fe.tx.raw().write_u32(RSP_EVENT, 10);
    let out = r.poll_tx();
    assert!(out.progress && !out.notify);
    for _ in 0..9 {
        r.fe.send(&frame(64, 1), &TxOpts::default());
    }
    assert!(r.poll_tx().notify);
}

#[test]
fn multicast_control_updates_the_filter() {
    let mut r = Rig::new();
    let group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    assert!(!r.vif.wants(group));
    assert!(r.vif.wants([0xff; 6]));
    assert!(r.vif.wants(r.vif.config().mac));
    assert!(!r.vif.wants([0x00, 0x16, 0x3e, 9, 9, 9]));
    let add = ExtraInfo { flags: 0, kind: ExtraKind::McastAdd(group) };
    let ids = r.fe.send(&[], &TxOpts { extras: vec![add], ..TxOpts::default() });
    r.poll_tx();
    assert!(r.got.is_empty(), "control requests are not frames");
    let rsps = r.fe.tx_responses();
    assert_eq!(rsps[0], TxResponse { id: ids[0], status: RspStatus::Okay });
    assert_eq!(rsps[1].status, RspStatus::Null);
    assert!(r.vif.wants(group));
    // Not a group address: refused.
    let bad = ExtraInfo { flags: 0, kind: ExtraKind::McastAdd([0x02, 0, 0, 0, 0, 1]) };
    r.fe.send(&[], &TxOpts { extras: vec![bad], ..TxOpts::default() });
    r.poll_tx();
    assert_eq!(r.fe.tx_responses()[0].status, RspStatus::Error);
    let del = ExtraInfo { flags: 0, kind: ExtraKind::McastDel(group) };
    r.fe.send(&[], &TxOpts { extras: vec![del], ..TxOpts::default() });
    r.poll_tx();
    assert_eq!(r.fe.tx_responses()[0].status, RspStatus::Okay);
    assert!(!r.vif.wants(group));
    assert_eq!((r.vif.stats().mcast_updates, r.vif.stats().mcast_rejected), (2, 1));
    // The filter is bounded.
    for i in 0..100u8 {
        let a = ExtraInfo { flags: 0, kind: ExtraKind::McastAdd([1, 0, 0x5e, 0, 1, i]) };
        r.fe.send(&[], &TxOpts { extras: vec![a], ..TxOpts::default() });
        r.poll_tx();
    }
    assert_eq!(r.vif.mcast_filter().len(), xvif::netback::mcast::MCAST_MAX);
    assert!(r.vif.disabled().is_none());
}

#[test]
fn without_multicast_control_all_groups_pass_and_updates_are_refused() {
    let mut f = all_features();
    f.multicast_control = false;
    let mut r = Rig::on(&xvif::testing::fake_hv::FakeHv::new(xvif::testing::netback_rig::BACKEND), 9, f, |_| {});
    let group = [0x33, 0x33, 0, 0, 0, 1];
    assert!(r.vif.wants(group));
    r.fe.send(
        &[],
        &TxOpts { extras: vec![ExtraInfo { flags: 0, kind: ExtraKind::McastAdd(group) }], ..TxOpts::default() },
    );
    r.poll_tx();
    assert_eq!(r.fe.tx_responses()[0].status, RspStatus::Error);
    assert_eq!(r.vif.mcast_filter().len(), 0);
}
