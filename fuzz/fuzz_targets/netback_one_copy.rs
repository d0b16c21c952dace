//! One copy between two hostile guests: the sender's TX ring and the
//! receiver's RX ring are arbitrary (raw, or pointing at each guest's real
//! grants, whose pages start with a frame addressed sender to receiver, so
//! frames reach the one-copy path), with any producer indices. Turn by turn
//! as the data plane runs them, xvif must not panic, must do bounded work
//! per turn, never issue a copy that crosses a page, answer only with legal
//! statuses, and never blame the receiver's loss on a sender that made no
//! error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvif::netback::ring::RING_SIZE;
use xvif::netif::RspStatus;
use xvif::testing::fabric::Fabric;
use xvif_fuzz::Input;
use xvif_fuzz::netback::{TX_ENTRY, features, set_req_prod, write_entries};

/// Pages each guest granted.
const PAGES: usize = 4;
/// RX ring entry size.
const RX_ENTRY: usize = 8;

fuzz_target!(|data: &[u8]| run(data));

fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut fab = Fabric::with(2, features(inp.u8() | 1), |_| {});
    let mode = inp.u8();
    let (tx_prod, rx_prod) = (inp.u32(), inp.u32());
    let (mac_a, mac_b) = (fab.rigs[0].vif.config().mac, fab.rigs[1].vif.config().mac);
    let mut head = [0u8; 64];
    head[..6].copy_from_slice(&mac_b);
    head[6..12].copy_from_slice(&mac_a);
    head[12..14].copy_from_slice(&[0x08, 0x00]);
    let tx_grefs: Vec<u32> = (0..PAGES).map(|_| fab.rigs[0].fe.grant_data(&head, 0)).collect();
    let rx_grefs: Vec<u32> = (0..PAGES)
        .map(|i| {
            let fe = &fab.rigs[1].fe;
            let gfn = fe.hv.alloc_page(fe.dom);
            fe.hv.grant(fe.dom, gfn, fe.hv.backend, i == 0 && mode & 4 != 0)
        })
        .collect();
    let mut tx = inp.bytes(RING_SIZE as usize * TX_ENTRY).to_vec();
    let mut rx = inp.bytes(RING_SIZE as usize * RX_ENTRY).to_vec();
    if mode & 1 != 0 {
        for e in tx.chunks_mut(TX_ENTRY).filter(|e| e.len() >= 4) {
            let g = tx_grefs[usize::from(e[0]) % PAGES];
            e[..4].copy_from_slice(&g.to_le_bytes());
        }
    }
    if mode & 2 != 0 {
        for e in rx.chunks_mut(RX_ENTRY).filter(|e| e.len() >= 8) {
            let g = rx_grefs[usize::from(e[4]) % PAGES];
            e[4..8].copy_from_slice(&g.to_le_bytes());
        }
    }
    let (txr, rxr) = (fab.rigs[0].fe.tx_ring(), fab.rigs[1].fe.rx_ring());
    write_entries(&*txr, TX_ENTRY, 0, &tx);
    write_entries(&*rxr, RX_ENTRY, 0, &rx);
    let plausible = |raw: u32| if mode & 8 != 0 { raw % (RING_SIZE + 1) } else { raw };
    set_req_prod(&*txr, plausible(tx_prod));
    set_req_prod(&*rxr, plausible(rx_prod));

    for turn in 0..8 {
        let before = fab.hv.stats();
        let busy = fab.turn();
        let after = fab.hv.stats();
        assert_eq!(after.page_crossing_ops, before.page_crossing_ops, "a copy crossed a page");
        // Headers, copies into guests, their attribution, whole frames.
        assert!(after.copy_calls - before.copy_calls <= 64, "turn {turn}: unbounded copies");
        if !busy {
            break;
        }
    }
    for r in fab.rigs[0].fe.tx_responses() {
        assert!(
            matches!(r.status, RspStatus::Okay | RspStatus::Error | RspStatus::Null),
            "illegal TX response status {:?}",
            r.status
        );
    }
    for f in fab.rigs[1].fe.rx_frames() {
        for s in f.statuses {
            assert!(s == RspStatus::Error.to_raw() || (0..=4096).contains(&s), "illegal RX status {s}");
        }
    }
    let (a, b) = (fab.rigs[0].vif.stats(), fab.rigs[1].vif.stats());
    assert!(b.rx_peer_drops <= a.from_guest.errors, "a peer drop is the sender's error: {a:?} {b:?}");
}
