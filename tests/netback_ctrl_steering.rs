//! RX queue selection by the frontend's hash configuration (netif.h
//! SET_HASH_*; Linux `xenvif_select_queue`): with Toeplitz on, a frame
//! lands on `mapping[hash % size]` (or `hash % queues` without a table);
//! otherwise on xvif's own flow hash, as without a control ring. A frame
//! the configured hash covered carries it to the frontend in a HASH extra.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use xvif::netback::{FrameMeta, Gso, GsoKind};
use xvif::netif::ctrl::CtrlType;
use xvif::netif::extra::XEN_NETIF_EXTRA_FLAG_MORE;
use xvif::netif::rx::NETRXF_EXTRA_INFO;
use xvif::netif::{ExtraInfo, ExtraKind, GsoType};
use xvif::switch::headers::flow_hash;
use xvif::testing::netback_rig::{CtrlRig, frame};

const GUEST_MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 7];
const V4: u32 = 1;
const V4TCP: u32 = 2;

const KEY: [u8; 40] = xvif::netback::toeplitz::VERIFICATION_KEY;

/// The published IPv4 flows: (source, source port, destination, destination
/// port, IPv4 hash, IPv4 + TCP hash).
type Flow = ([u8; 4], u16, [u8; 4], u16, u32, u32);
const FLOWS: [Flow; 5] = [
    ([66, 9, 149, 187], 2794, [161, 142, 100, 80], 1766, 0x323e_8fc2, 0x51cc_c178),
    ([199, 92, 111, 2], 14230, [65, 69, 140, 83], 4739, 0xd718_262a, 0xc626_b0ea),
    ([24, 19, 198, 95], 12898, [12, 22, 207, 184], 38024, 0xd2d0_a5de, 0x5c2b_394a),
    ([38, 27, 205, 30], 48228, [209, 142, 163, 6], 2217, 0x8298_9176, 0xafc7_327f),
    ([153, 39, 163, 191], 44251, [202, 188, 127, 2], 1303, 0x5d18_09c5, 0x10e8_28a2),
];

/// A TCP segment of one of `FLOWS` for the guest, `seq` in its payload.
fn tcp(flow: usize, seq: u8) -> Vec<u8> {
    let (src, sport, dst, dport, _, _) = FLOWS[flow];
    let mut f = vec![0u8; 14 + 20 + 20 + 4];
    f[..6].copy_from_slice(&GUEST_MAC);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&44u16.to_be_bytes());
    f[22] = 64;
    f[23] = 6;
    f[26..30].copy_from_slice(&src);
    f[30..34].copy_from_slice(&dst);
    f[34..36].copy_from_slice(&sport.to_be_bytes());
    f[36..38].copy_from_slice(&dport.to_be_bytes());
    f[46] = 5 << 4;
    f[54] = flow as u8;
    f[55] = seq;
    f
}

fn ok(r: &mut CtrlRig, ty: CtrlType, data: [u32; 3]) {
    r.ctrl.request(ty, data);
    r.settle_ctrl();
    let rsps = r.ctrl.responses();
    assert_eq!(rsps.len(), 1);
    assert_eq!(rsps[0].status, 0, "{ty:?} {data:?} refused");
}

/// Toeplitz with the verification key and `flags`.
fn configure(r: &mut CtrlRig, flags: u32) {
    ok(r, CtrlType::SetHashAlgorithm, [1, 0, 0]);
    ok(r, CtrlType::SetHashFlags, [flags, 0, 0]);
    let key = r.ctrl.grant_bytes(&KEY);
    ok(r, CtrlType::SetHashKey, [key, 40, 0]);
}

fn set_table(r: &mut CtrlRig, table: &[u32]) {
    ok(r, CtrlType::SetHashMappingSize, [table.len() as u32, 0, 0]);
    let g = r.ctrl.grant_mapping(table);
    ok(r, CtrlType::SetHashMapping, [g, table.len() as u32, 0]);
}

/// Queues frames, lets every queue deliver, and returns per queue the
/// (flow, seq) of the frames its frontend received, in order.
fn deliver(r: &mut CtrlRig, frames: &[Vec<u8>]) -> Vec<Vec<(u8, u8)>> {
    for fe in &mut r.fes {
        fe.post_rx(64);
    }
    for f in frames {
        assert!(r.vif.enqueue_rx(f, FrameMeta::default()));
    }
    for q in 0..r.fes.len() {
        r.vif.poll_rx(q, &r.hv);
    }
    r.fes.iter_mut().map(|fe| fe.rx_frames().iter().map(|x| (x.data[54], x.data[55])).collect()).collect()
}

#[test]
fn the_frontends_table_decides_the_queue_of_each_flow() {
    let mut r = CtrlRig::new(4);
    configure(&mut r, V4 | V4TCP);
    // The flows' IPv4+TCP hashes modulo 8 index entries 0, 2, 2, 7, 2.
    let idx: Vec<usize> = FLOWS.iter().map(|f| (f.5 % 8) as usize).collect();
    assert_eq!(idx, [0, 2, 2, 7, 2]);
    set_table(&mut r, &[3, 0, 1, 0, 0, 0, 0, 2]);
    let frames: Vec<Vec<u8>> = (0..3u8).flat_map(|s| (0..FLOWS.len()).map(move |f| tcp(f, s))).collect();
    let got = deliver(&mut r, &frames);
    let want = |flows: &[u8]| -> Vec<(u8, u8)> { (0..3).flat_map(|s| flows.iter().map(move |&f| (f, s))).collect() };
    assert_eq!(got, vec![vec![], want(&[1, 2, 4]), want(&[3]), want(&[0])], "queue per flow, in order");
    // A new table moves the flows: entry 2 now says queue 0.
    set_table(&mut r, &[3, 0, 0, 0, 0, 0, 0, 2]);
    let got = deliver(&mut r, &[tcp(1, 9), tcp(0, 9)]);
    assert_eq!(got, vec![vec![(1, 9)], vec![], vec![], vec![(0, 9)]]);
    // With only the IPv4 type on, the address hashes decide: index
    // 0x323e8fc2 % 8 = 2 for flow 0, so queue 0.
    ok(&mut r, CtrlType::SetHashFlags, [V4, 0, 0]);
    assert_eq!(r.vif.rx_queue_for(&tcp(0, 0)), 0);
    assert_eq!(FLOWS[0].4 % 8, 2);
    // Frames no enabled type covers hash to 0: entry 0, queue 3.
    assert_eq!(r.vif.rx_queue_for(&frame(60, 1)), 3);
    assert_eq!(r.vif.stats().to_guest.drops, 0);
}

#[test]
fn without_a_table_the_hash_modulo_the_queues_decides() {
    let mut r = CtrlRig::new(3);
    configure(&mut r, V4TCP);
    for (i, f) in FLOWS.iter().enumerate() {
        assert_eq!(r.vif.rx_queue_for(&tcp(i, 0)), (f.5 % 3) as usize, "flow {i}");
    }
    // Non-TCP or foreign frames: hash 0, queue 0.
    assert_eq!(r.vif.rx_queue_for(&frame(60, 5)), 0);
    let got = deliver(&mut r, &[tcp(0, 1), tcp(3, 1)]);
    let on = |flow: usize| (FLOWS[flow].5 % 3) as usize;
    assert!(got[on(0)].contains(&(0, 1)) && got[on(3)].contains(&(3, 1)), "{got:?}");
}

#[test]
fn without_toeplitz_the_flow_hash_decides_as_before() {
    let mut r = CtrlRig::new(4);
    // A table alone changes nothing while no algorithm is selected.
    set_table(&mut r, &[3, 3, 3, 3]);
    let frames: Vec<Vec<u8>> = (0..FLOWS.len()).map(|f| tcp(f, 0)).collect();
    let own: Vec<usize> = frames.iter().map(|f| flow_hash(f) as usize % 4).collect();
    let got: Vec<usize> = frames.iter().map(|f| r.vif.rx_queue_for(f)).collect();
    assert_eq!(got, own);
    // Toeplitz on, then off again: back to the flow hash.
    configure(&mut r, V4TCP);
    let steered: Vec<usize> = frames.iter().map(|f| r.vif.rx_queue_for(f)).collect();
    assert_eq!(steered, vec![3; FLOWS.len()]);
    ok(&mut r, CtrlType::SetHashAlgorithm, [0, 0, 0]);
    let back: Vec<usize> = frames.iter().map(|f| r.vif.rx_queue_for(f)).collect();
    assert_eq!(back, own);
}

#[test]
fn hashed_frames_carry_their_hash_to_the_frontend() {
    let mut r = CtrlRig::new(1);
    // Before any configuration: no extras.
    let got = {
        r.fes[0].post_rx(16);
        assert!(r.vif.enqueue_rx(&tcp(0, 0), FrameMeta::default()));
        r.vif.poll_rx(0, &r.hv);
        r.fes[0].rx_frames()
    };
    assert_eq!((got[0].flags & NETRXF_EXTRA_INFO, got[0].extras.len()), (0, 0));
    configure(&mut r, V4 | V4TCP);
    let hash = |kind: u8, value: u32| ExtraInfo {
        flags: 0,
        kind: ExtraKind::Hash { kind, algorithm: 1, value: value.to_le_bytes() },
    };
    // A TCP segment: IPv4+TCP hash; a UDP datagram: the address hash;
    // a frame no type covers: nothing.
    let mut udp = tcp(1, 0);
    udp[23] = 17;
    assert!(r.vif.enqueue_rx(&tcp(0, 1), FrameMeta::default()));
    assert!(r.vif.enqueue_rx(&udp, FrameMeta::default()));
    assert!(r.vif.enqueue_rx(&frame(60, 3), FrameMeta::default()));
    r.vif.poll_rx(0, &r.hv);
    let got = r.fes[0].rx_frames();
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].extras, vec![hash(1, FLOWS[0].5)]);
    assert_eq!(got[0].flags & NETRXF_EXTRA_INFO, NETRXF_EXTRA_INFO);
    assert_eq!(got[0].data, tcp(0, 1));
    assert_eq!(got[1].extras, vec![hash(0, FLOWS[1].4)]);
    assert_eq!((got[2].flags & NETRXF_EXTRA_INFO, got[2].extras.len()), (0, 0));
    // A GSO frame: the GSO extra first, flagged MORE, then the hash; the
    // data around them intact.
    let mut big = tcp(2, 0);
    big.resize(9000, 0x5a);
    let meta =
        FrameMeta { csum_blank: true, data_validated: true, gso: Some(Gso { kind: GsoKind::TcpV4, size: 1448 }) };
    assert!(r.vif.enqueue_rx(&big, meta));
    r.vif.poll_rx(0, &r.hv);
    let got = r.fes[0].rx_frames();
    let gso = ExtraInfo {
        flags: XEN_NETIF_EXTRA_FLAG_MORE,
        kind: ExtraKind::Gso { size: 1448, kind: GsoType::TcpV4, features: 0 },
    };
    assert_eq!(got[0].extras, vec![gso, hash(1, FLOWS[2].5)]);
    assert_eq!(got[0].data, big);
    assert_eq!(got[0].statuses, vec![4096, 4096, 808]);
    // Hashing off again: no more extras.
    ok(&mut r, CtrlType::SetHashAlgorithm, [0, 0, 0]);
    assert!(r.vif.enqueue_rx(&tcp(0, 2), FrameMeta::default()));
    r.vif.poll_rx(0, &r.hv);
    assert!(r.fes[0].rx_frames()[0].extras.is_empty());
}
