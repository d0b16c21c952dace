//! The control ring (netif.h "Control ring") against a mock frontend: every
//! request type, every status, and hostile control traffic contained to
//! its vif. Steering by the configured table is in `netback_ctrl_steering`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use xvif::netback::hash::MAX_MAPPING;
use xvif::netback::{FrameMeta, HashAlgorithm, NetbackError};
use xvif::netif::RspStatus;
use xvif::netif::ctrl::{CTRL_ENTRY_SIZE, CtrlResponse, CtrlStatus, CtrlType};
use xvif::testing::ctrlfront::{CTRL_RING_SIZE, CtrlFrontend};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, CtrlRig, frame};
use xvif::testing::netfront::TxOpts;

const SUCCESS: u32 = 0;
const NOT_SUPPORTED: u32 = 1;
const INVALID: u32 = 2;
const OVERFLOW: u32 = 3;
const TOEPLITZ: u32 = 1;

const KEY: [u8; 40] = xvif::netback::toeplitz::VERIFICATION_KEY;

/// Sends one request, serves the ring, returns (status, data) of its
/// response after checking id and type are echoed.
fn ask(r: &mut CtrlRig, ty: CtrlType, data: [u32; 3]) -> (u32, u32) {
    let id = r.ctrl.request(ty, data);
    let out = r.poll_ctrl();
    assert!(out.progress, "{ty:?} not consumed");
    let rsps = r.ctrl.responses();
    assert_eq!(rsps.len(), 1, "{ty:?}: {rsps:?}");
    assert_eq!((rsps[0].id, rsps[0].ty), (id, ty.to_raw()), "id and type are echoed");
    (rsps[0].status, rsps[0].data)
}

fn toeplitz_on(r: &mut CtrlRig) {
    assert_eq!(ask(r, CtrlType::SetHashAlgorithm, [TOEPLITZ, 0, 0]), (SUCCESS, 0));
}

#[test]
fn every_request_type_is_answered_as_netif_h_says() {
    let mut r = CtrlRig::new(4);
    // Nothing works on flags until an algorithm is chosen.
    assert_eq!(ask(&mut r, CtrlType::GetHashFlags, [0; 3]), (NOT_SUPPORTED, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashFlags, [1, 0, 0]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashAlgorithm, [2, 0, 0]), (INVALID, 0), "only none and Toeplitz");
    toeplitz_on(&mut r);
    assert_eq!(r.vif.hash_config().algorithm(), HashAlgorithm::Toeplitz);
    assert_eq!(ask(&mut r, CtrlType::GetHashFlags, [0; 3]), (SUCCESS, 0xf), "IPv4, IPv4+TCP, IPv6, IPv6+TCP");
    assert_eq!(ask(&mut r, CtrlType::SetHashFlags, [0x10, 0, 0]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashFlags, [0x3, 0, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().flags(), 0x3);
    let key = r.ctrl.grant_bytes(&KEY);
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [key, 40, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().key(), &KEY);
    assert_eq!(ask(&mut r, CtrlType::GetHashMappingSize, [0; 3]), (SUCCESS, 128));
    assert_eq!(ask(&mut r, CtrlType::SetHashMappingSize, [129, 0, 0]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMappingSize, [8, 0, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().mapping(), &[0; 8]);
    let table = r.ctrl.grant_mapping(&[3, 2, 1, 0]);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [table, 4, 2]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().mapping(), &[0, 0, 3, 2, 1, 0, 0, 0]);
    // INVALID (0) and types netif.h does not define.
    for ty in [0u16, 8, 0x7fff, 0xffff] {
        assert_eq!(ask(&mut r, CtrlType::from_raw(ty), [1, 2, 3]), (NOT_SUPPORTED, 0), "type {ty}");
    }
    // Switching hashing off keeps the rest; flags are then refused again.
    assert_eq!(ask(&mut r, CtrlType::SetHashAlgorithm, [0, 0, 0]), (SUCCESS, 0));
    assert_eq!(ask(&mut r, CtrlType::GetHashFlags, [0; 3]), (NOT_SUPPORTED, 0));
    assert_eq!(r.vif.hash_config().key(), &KEY);
    let s = r.vif.ctrl_stats().unwrap();
    assert_eq!((s.requests, s.errors), (18, 10), "{s:?}");
    assert_eq!(s.last_error, Some(CtrlStatus::NotSupported));
    assert!(r.vif.disabled().is_none());
}

#[test]
fn key_requests_check_size_and_grant() {
    let mut r = CtrlRig::new(2);
    toeplitz_on(&mut r);
    let good = r.ctrl.grant_bytes(&KEY);
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [good, 40, 0]), (SUCCESS, 0));
    // Larger than we keep: BUFFER_OVERFLOW; larger than its page: INVALID.
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [good, 41, 0]), (OVERFLOW, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [good, 4097, 0]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [good, u32::MAX, 0]), (INVALID, 0));
    // Grants that cannot be copied: never granted, revoked, granted elsewhere.
    let revoked = r.ctrl.grant_bytes(&[0xee; 40]);
    r.hv.revoke(r.ctrl.dom, revoked);
    let elsewhere = r.ctrl.grant_elsewhere(&[0xee; 40]);
    let copies = r.hv.stats().copy_ops;
    for gref in [0x7fff_fff0, u32::MAX, revoked, elsewhere] {
        assert_eq!(ask(&mut r, CtrlType::SetHashKey, [gref, 40, 0]), (INVALID, 0), "gref {gref:#x}");
    }
    assert_eq!(r.hv.stats().copy_ops - copies, 4, "one copy per request, no retry");
    assert_eq!(r.vif.hash_config().key(), &KEY, "failed requests leave the key alone");
    // A short key is zero-padded; an empty one clears the key, copying nothing.
    let short = r.ctrl.grant_bytes(&[1, 2, 3]);
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [short, 3, 0]), (SUCCESS, 0));
    assert_eq!(&r.vif.hash_config().key()[..5], &[1, 2, 3, 0, 0]);
    let copies = r.hv.stats().copy_ops;
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [0xdead, 0, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().key(), &[0; 40]);
    assert_eq!(r.hv.stats().copy_ops, copies);
    // Setting a key needs no algorithm (netif.h names no such condition).
    assert_eq!(ask(&mut r, CtrlType::SetHashAlgorithm, [0, 0, 0]), (SUCCESS, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashKey, [good, 40, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.ctrl_stats().unwrap().last_error, Some(CtrlStatus::InvalidParameter));
}

#[test]
fn mapping_requests_check_range_page_grant_and_every_entry() {
    let mut r = CtrlRig::new(4);
    toeplitz_on(&mut r);
    assert_eq!(ask(&mut r, CtrlType::SetHashMappingSize, [16, 0, 0]), (SUCCESS, 0));
    let ok = r.ctrl.grant_mapping(&[1; 16]);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 16, 0]), (SUCCESS, 0));
    let before = r.vif.hash_config().mapping().to_vec();
    // An entry naming queue 4 of a 4-queue vif, anywhere in the sub-table.
    for bad_at in [0usize, 7, 15] {
        let mut t = vec![2u32; 16];
        t[bad_at] = 4;
        let g = r.ctrl.grant_mapping(&t);
        assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [g, 16, 0]), (INVALID, 0), "bad entry at {bad_at}");
    }
    let huge = r.ctrl.grant_mapping(&[u32::MAX]);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [huge, 1, 3]), (INVALID, 0));
    // Ranges: past the table, wrapping u32, more than the page holds, more
    // than we keep.
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 2, 15]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 2, u32::MAX]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 1025, 0]), (INVALID, 0), "4100 bytes cross the page");
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, u32::MAX, 1]), (INVALID, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 129, 0]), (OVERFLOW, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [ok, 1024, 0]), (OVERFLOW, 0), "a full page, too big for us");
    // Grants that cannot be copied.
    let revoked = r.ctrl.grant_mapping(&[0; 16]);
    r.hv.revoke(r.ctrl.dom, revoked);
    for g in [0x7fff_fff0, revoked, r.ctrl.grant_elsewhere(&[0; 64])] {
        assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [g, 16, 0]), (INVALID, 0), "gref {g:#x}");
    }
    assert_eq!(r.vif.hash_config().mapping(), &before[..], "no failed request changed the table");
    // A sub-table at an offset changes just its entries; an empty one nothing.
    let part = r.ctrl.grant_mapping(&[3, 0]);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [part, 2, 14]), (SUCCESS, 0));
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [0xbad, 0, 16]), (SUCCESS, 0));
    let mut want = [1u32; 16];
    want[14] = 3;
    want[15] = 0;
    assert_eq!(r.vif.hash_config().mapping(), &want[..]);
    // The largest table, in one request.
    assert_eq!(ask(&mut r, CtrlType::SetHashMappingSize, [MAX_MAPPING as u32, 0, 0]), (SUCCESS, 0));
    let all: Vec<u32> = (0..MAX_MAPPING as u32).map(|i| i % 4).collect();
    let g = r.ctrl.grant_mapping(&all);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [g, MAX_MAPPING as u32, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().mapping(), &all[..]);
    // A single-queue vif accepts only queue 0.
    let mut one = CtrlRig::new(1);
    assert_eq!(ask(&mut one, CtrlType::SetHashMappingSize, [2, 0, 0]), (SUCCESS, 0));
    let g = one.ctrl.grant_mapping(&[0, 1]);
    assert_eq!(ask(&mut one, CtrlType::SetHashMapping, [g, 2, 0]), (INVALID, 0));
    assert!(r.vif.disabled().is_none() && one.vif.disabled().is_none());
}

#[test]
fn a_flood_of_requests_is_served_in_bounded_rounds_each_read_once() {
    let mut r = CtrlRig::new(2);
    for i in 0..CTRL_RING_SIZE {
        r.ctrl.push(CtrlType::from_raw((i % 9) as u16), [i, 0, 0]);
    }
    r.ctrl.publish();
    let mut rounds = 0;
    let mut got: Vec<CtrlResponse> = Vec::new();
    loop {
        let out = r.poll_ctrl();
        rounds += 1;
        let rsps = r.ctrl.responses();
        assert!(rsps.len() <= 16, "round {rounds} answered {}", rsps.len());
        got.extend(rsps);
        if !out.more {
            break;
        }
        assert!(rounds < 20);
    }
    assert_eq!(got.len(), CTRL_RING_SIZE as usize);
    assert_eq!(rounds, CTRL_RING_SIZE as usize / 16);
    assert_eq!(
        got.iter().map(|x| x.id).collect::<Vec<_>>(),
        (0x100..0x100 + CTRL_RING_SIZE as u16).collect::<Vec<_>>()
    );
    assert_eq!(r.ctrl.page.max_entry_reads(), 1, "each request copied out of the ring exactly once");
    // Raw garbage: every entry answered, nothing else happens.
    for b in 0..32u8 {
        r.ctrl.push_raw([b.wrapping_mul(37); CTRL_ENTRY_SIZE]);
    }
    r.ctrl.publish();
    r.settle_ctrl();
    assert_eq!(r.ctrl.responses().len(), 32);
    assert!(r.vif.disabled().is_none());
}

#[test]
fn a_request_rewritten_after_it_was_read_is_served_as_read() {
    let mut r = CtrlRig::new(4);
    toeplitz_on(&mut r);
    assert_eq!(ask(&mut r, CtrlType::SetHashMappingSize, [4, 0, 0]), (SUCCESS, 0));
    let good = r.ctrl.grant_mapping(&[1, 2, 3, 0]);
    // After xvif reads the request, the frontend turns it into a mapping of
    // 1000 entries at offset 0xffff_fff0 (XSA-155 style): too late.
    let at = CtrlFrontend::entry_offset(r.ctrl.prod);
    let evil: Vec<u8> = [1000u32, 0xffff_fff0].iter().flat_map(|v| v.to_le_bytes()).collect();
    r.ctrl.page.rewrite_after_read(at + 8, vec![(at + 8, evil)]);
    assert_eq!(ask(&mut r, CtrlType::SetHashMapping, [good, 4, 0]), (SUCCESS, 0));
    assert_eq!(r.vif.hash_config().mapping(), &[1, 2, 3, 0]);
}

#[test]
fn req_prod_far_ahead_disables_only_that_vif() {
    let hv = FakeHv::new(BACKEND);
    let mut bad = CtrlRig::on(&hv, 7, 2);
    let mut good = CtrlRig::on(&hv, 8, 2);
    bad.ctrl.set_req_prod(CTRL_RING_SIZE + 1);
    let out = bad.poll_ctrl();
    assert!(!out.more && !out.progress);
    match bad.vif.disabled() {
        Some(NetbackError::CtrlRingOverflow(o)) => assert_eq!((o.req_prod, o.req_cons), (129, 0)),
        other => panic!("not disabled for the control ring: {other:?}"),
    }
    assert_eq!(bad.vif.disabled().map(|e| e.name()), Some("ctrl_ring_overflow"));
    assert!(bad.ctrl.responses().is_empty());
    // Disabled: no more control requests, no traffic either way.
    bad.ctrl.set_req_prod(1);
    assert_eq!(bad.poll_ctrl(), Default::default());
    bad.fes[0].send(&frame(80, 1), &TxOpts::default());
    assert!(bad.poll_tx(0).is_empty());
    assert!(!bad.vif.enqueue_rx(&frame(80, 2), FrameMeta::default()));
    // The other vif on the same hypervisor carries on, control ring and all.
    assert_eq!(ask(&mut good, CtrlType::GetHashMappingSize, [0; 3]), (SUCCESS, 128));
    good.fes[1].send(&frame(90, 3), &TxOpts::default());
    assert_eq!(good.poll_tx(1), vec![frame(90, 3)]);
    assert_eq!(good.fes[1].tx_responses()[0].status, RspStatus::Okay);
    // A req_prod that went backwards is just as impossible.
    let mut back = CtrlRig::on(&hv, 9, 1);
    assert_eq!(ask(&mut back, CtrlType::GetHashMappingSize, [0; 3]), (SUCCESS, 128));
    back.ctrl.set_req_prod(0);
    back.poll_ctrl();
    assert!(matches!(back.vif.disabled(), Some(NetbackError::CtrlRingOverflow(_))));
}

#[test]
fn responses_notify_as_the_frontend_asks() {
    let mut r = CtrlRig::new(1);
    r.ctrl.request(CtrlType::GetHashMappingSize, [0; 3]);
    let out = r.poll_ctrl();
    assert!(out.notify, "rsp_event = 1 asks for the first response");
    r.ctrl.responses();
    // The frontend wants an event only from its next response on: two
    // requests answered in one poll notify once, two polls of one each
    // notify for the first only.
    r.ctrl.push(CtrlType::GetHashMappingSize, [0; 3]);
    r.ctrl.push(CtrlType::GetHashMappingSize, [0; 3]);
    r.ctrl.publish();
    assert!(r.poll_ctrl().notify);
    assert!(!r.poll_ctrl().notify, "nothing new");
    r.ctrl.request(CtrlType::GetHashMappingSize, [0; 3]);
    assert!(!r.poll_ctrl().notify, "rsp_event not re-armed since the last read");
    assert_eq!(r.ctrl.responses().len(), 3);
}
