//! Shared ring indices are read and written as whole words. A peer that
//! moves an index while we read it, or looks at it while we write it, must
//! only ever see (or show us) values that were really stored: with
//! byte-wise accesses, `req_prod` moving 0x1FE -> 0x201 reads as 0x2FE (a
//! false ring overflow) and `rsp_prod` moving 0x1FF -> 0x200 passes through
//! 0x100 (which Linux netfront treats as a broken backend).

use std::rc::Rc;
use xvif::hal::{HeapPage, SharedMem};
use xvif::netback::ring::{REQ_PROD, RSP_PROD};
use xvif::netif::{RspStatus, TxResponse};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};
use xvif::testing::netfront::{SharedPage, TxOpts};
use xvif::testing::tearing::TearingPage;
use xvif::xen::console;
use xvif::xen::ring::ByteRing;
use xvif::xen::xenstore::client::{REQ_RING, RSP_RING};

/// A rig whose vif sees its TX ring through a `TearingPage` (returned too).
fn tearing_rig() -> (Rig, Rc<TearingPage>) {
    let mut tear = None;
    let rig = Rig::on_rings(
        &FakeHv::new(BACKEND),
        7,
        all_features(),
        |_| {},
        |fe| {
            let t = Rc::new(TearingPage::over(fe.tx.clone()));
            tear = Some(t.clone());
            (Box::new(SharedPage(t)), fe.rx_ring())
        },
    );
    let tear = tear.unwrap_or_else(|| panic!("rings not built"));
    (rig, tear)
}

/// Polls TX until `n` more frames arrived (or the vif stops making progress).
fn poll_until(rig: &mut Rig, n: usize) {
    let want = rig.got.len() + n;
    for _ in 0..1000 {
        if rig.got.len() >= want {
            break;
        }
        let out = rig.poll_tx();
        if !out.progress && !out.more {
            break;
        }
    }
}

/// Sends and serves `n` one-slot packets, at most 200 in flight.
fn serve(rig: &mut Rig, n: usize) {
    let mut left = n;
    while left > 0 {
        let k = left.min(200);
        for i in 0..k {
            rig.fe.send(&frame(60, i as u8), &TxOpts::default());
        }
        poll_until(rig, k);
        let rsps = rig.fe.tx_responses();
        assert_eq!(rsps.len(), k);
        assert!(rsps.iter().all(|r| r.status == RspStatus::Okay));
        left -= k;
    }
}

#[test]
fn req_prod_moving_during_our_read_is_not_a_ring_overflow() {
    let (mut rig, tear) = tearing_rig();
    serve(&mut rig, 0x101);
    // 0xFD requests published (req_prod = 0x1FE) and not yet read; three
    // more written, and the frontend publishes 0x201 while we read req_prod.
    let base = rig.got.len();
    let mut frames = Vec::new();
    for i in 0..0x100u32 {
        let f = frame(60 + (i % 7) as usize, i as u8);
        rig.fe.queue_packet(&f, &TxOpts::default());
        frames.push(f);
        if rig.fe.tx_prod == 0x1fe {
            rig.fe.publish_tx();
        }
    }
    assert_eq!(rig.fe.tx_prod, 0x201);
    assert_eq!(rig.fe.tx.raw().read_u32(REQ_PROD), 0x1fe);
    tear.race_next_read(REQ_PROD, 0x201);

    poll_until(&mut rig, 0x100);
    assert!(!tear.race_pending(), "the frontend's store raced a read of req_prod");
    assert_eq!(rig.vif.disabled(), None, "a torn req_prod disabled the vif");
    let got: Vec<Vec<u8>> = rig.got[base..].iter().map(|g| g.0.clone()).collect();
    assert_eq!(got.len(), 0x100, "every request served");
    assert!(got == frames, "served in order, unchanged");
    let rsps = rig.fe.tx_responses();
    assert_eq!(rsps.len(), 0x100);
    assert!(rsps.iter().all(|r: &TxResponse| r.status == RspStatus::Okay));
}

#[test]
fn rsp_prod_is_never_seen_between_two_values_we_published() {
    let (mut rig, tear) = tearing_rig();
    tear.watch(RSP_PROD);
    // Crosses 0xFF -> 0x100 and 0x1FF -> 0x200, where byte-wise stores show
    // the frontend 0x000 and 0x100.
    serve(&mut rig, 0x1ff);
    rig.fe.send(&frame(60, 1), &TxOpts::default());
    poll_until(&mut rig, 1);
    let seen = tear.seen(RSP_PROD);
    assert_eq!(seen.last(), Some(&0x200));
    assert!(!seen.contains(&0x100), "rsp_prod passed through 0x100 on its way to 0x200");
    for w in seen.windows(2) {
        assert!(w[0] < w[1], "the frontend saw rsp_prod go {:#x} -> {:#x}", w[0], w[1]);
    }
}

fn tearing_page() -> (Rc<HeapPage>, TearingPage) {
    let peer = Rc::new(HeapPage::new(4096));
    let ours = TearingPage::over(peer.clone());
    (peer, ours)
}

/// The peer appends `data` to ring `r` in its own page (data only).
fn peer_fill(peer: &HeapPage, r: ByteRing, prod: u32, data: &[u8]) {
    for (i, b) in data.iter().enumerate() {
        let pos = (prod.wrapping_add(i as u32) & (r.size - 1)) as usize;
        peer.write_bytes(r.data + pos, &[*b]);
    }
}

#[test]
fn byte_ring_prod_moving_during_our_read_gives_only_real_bytes() {
    for r in [RSP_RING, console::IN] {
        let (peer, ours) = tearing_page();
        peer.write_u32(r.cons, 0x3fe);
        peer.write_u32(r.prod, 0x3fe);
        peer_fill(&peer, r, 0x3fe, b"abc");
        // The peer publishes 0x401 while we read prod.
        ours.race_next_read(r.prod, 0x401);
        let mut got = Vec::new();
        for _ in 0..3 {
            let mut buf = [0u8; 1024];
            let n = r.read(&ours, &mut buf).unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
            got.extend_from_slice(&buf[..n]);
        }
        assert!(!ours.race_pending());
        assert_eq!(got, b"abc", "{r:?}: read bytes the peer never produced");
        assert_eq!(peer.read_u32(r.cons), 0x401);
    }
}

#[test]
fn byte_ring_peer_index_moving_during_our_write_is_not_corruption() {
    for r in [REQ_RING, console::OUT] {
        let (peer, ours) = tearing_page();
        // The ring is full; the peer consumes 3 bytes (cons 0x1FE -> 0x201)
        // while we read cons. Only those 3 bytes are free: a torn cons
        // (0x2FE) would make us overwrite 7 bytes the peer has not read.
        peer.write_u32(r.cons, 0x1fe);
        peer.write_u32(r.prod, 0x1fe + r.size);
        ours.race_next_read(r.cons, 0x201);
        let msg = b"0123456789";
        let mut sent = 0;
        for _ in 0..3 {
            sent += r.write(&ours, &msg[sent..]).unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
        }
        assert!(!ours.race_pending());
        assert_eq!(sent, 3);
        assert_eq!(peer.read_u32(r.prod), 0x201 + r.size);
    }
}

#[test]
fn byte_ring_indices_we_store_never_show_intermediate_values() {
    for r in [REQ_RING, console::OUT] {
        let (peer, ours) = tearing_page();
        peer.write_u32(r.cons, 0x3ff);
        peer.write_u32(r.prod, 0x3ff);
        ours.watch(r.prod);
        assert_eq!(r.write(&ours, b"q").ok(), Some(1));
        assert_eq!(ours.seen(r.prod), vec![0x400], "{r:?}: producer index seen mid-store");
    }
    for r in [RSP_RING, console::IN] {
        let (peer, ours) = tearing_page();
        peer.write_u32(r.cons, 0x1ff);
        peer.write_u32(r.prod, 0x200);
        ours.watch(r.cons);
        let mut b = [0u8; 4];
        assert_eq!(r.read(&ours, &mut b).ok(), Some(1));
        assert_eq!(ours.seen(r.cons), vec![0x200], "{r:?}: consumer index seen mid-store");
    }
}
