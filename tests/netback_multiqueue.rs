//! A multi-queue vif (`multi-queue-num-queues` > 1): one mock netfront per
//! queue, all in the same guest, driving one real `Vif`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

use std::collections::BTreeMap;
use xvif::netback::{FrameMeta, MAX_QUEUES, QueueRings, SharedRxPool, TxStaging, Vif, VifConfig, VifError};
use xvif::netif::{ExtraInfo, ExtraKind, RspStatus};
use xvif::testing::fake_hv::{FakeBuf, FakeBufPool, FakeHv};
use xvif::testing::netback_rig::{BACKEND, BUF_CAP, all_features, frame};
use xvif::testing::netfront::{MockFrontend, TxOpts};
use xvif::xen::DomId;

const GUEST: DomId = DomId(7);
const MAC: [u8; 6] = [0x00, 0x16, 0x3e, 0, 0, 7];

struct MultiRig {
    hv: FakeHv,
    /// One frontend per queue.
    fes: Vec<MockFrontend>,
    vif: Vif<FakeBuf>,
    pool: SharedRxPool<FakeBuf>,
    staging: TxStaging<FakeBuf>,
}

impl MultiRig {
    fn new(n: usize) -> Self {
        let hv = FakeHv::new(BACKEND);
        let fes: Vec<MockFrontend> = (0..n).map(|_| MockFrontend::new(&hv, GUEST)).collect();
        let cfg = VifConfig::new(GUEST, MAC, all_features());
        let pool = FakeBufPool::shared_rx(&hv, cfg.buffers_needed() * n, BUF_CAP, 2);
        // Fewer staging buffers than tx_batch: a poll flushes every 4.
        let staging = TxStaging::new(&mut FakeBufPool::new(&hv, 4, BUF_CAP, 2), 4).unwrap();
        let rings: Vec<QueueRings> = fes.iter().map(|f| (f.tx_ring(), f.rx_ring())).collect();
        let vif = Vif::with_queues(cfg, rings, &pool).unwrap();
        Self { hv, fes, vif, pool, staging }
    }

    fn poll_tx(&mut self, q: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        self.vif.poll_tx(q, &self.hv, &self.staging, &mut |f: &[u8], _m: FrameMeta| got.push(f.to_vec()));
        got
    }
}

/// An IPv4 TCP frame to the guest from port `sport`, `seq` in its payload.
fn tcp_frame(sport: u16, seq: u8) -> Vec<u8> {
    let payload = 20usize;
    let mut f = vec![0u8; 14 + 20 + 20 + payload];
    f[..6].copy_from_slice(&MAC);
    f[6..12].copy_from_slice(&[0x00, 0x16, 0x3e, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&((20 + 20 + payload) as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 1, 9]);
    ip[16..20].copy_from_slice(&[10, 0, 1, 7]);
    let tcp = &mut f[34..54];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[12] = 5 << 4;
    f[54] = seq;
    f
}

#[test]
fn every_queue_carries_guest_traffic_with_its_own_notifications() {
    let mut r = MultiRig::new(3);
    assert_eq!(r.vif.queues(), 3);
    for q in 0..3 {
        r.fes[q].send(&frame(100 + q, q as u8), &TxOpts::default());
    }
    for q in 0..3 {
        let got = r.poll_tx(q);
        assert_eq!(got, vec![frame(100 + q, q as u8)], "queue {q}");
        let rsps = r.fes[q].tx_responses();
        assert_eq!(rsps.len(), 1);
        assert_eq!(rsps[0].status, RspStatus::Okay);
        // The other queues' rings were not touched.
        for (o, fe) in r.fes.iter_mut().enumerate().filter(|(o, _)| *o > q) {
            assert!(fe.tx_responses().is_empty(), "queue {o} answered while polling {q}");
        }
    }
    assert_eq!(r.vif.stats().from_guest.packets, 3);
    // A queue that does not exist does nothing.
    let out = r.vif.poll_tx(3, &r.hv, &r.staging, &mut |_: &[u8], _| panic!("no queue 3"));
    assert!(!out.progress);
    assert!(!r.vif.poll_rx(17, &r.hv).progress);
}

#[test]
fn one_staging_set_serves_every_queue_in_batches() {
    let mut r = MultiRig::new(2);
    // 10 packets on each queue through 4 shared staging buffers.
    for q in 0..2 {
        for i in 0..10u8 {
            r.fes[q].send(&frame(200 + usize::from(i), i + 16 * q as u8), &TxOpts::default());
        }
    }
    for q in 0..2 {
        let got = r.poll_tx(q);
        let want: Vec<Vec<u8>> = (0..10u8).map(|i| frame(200 + usize::from(i), i + 16 * q as u8)).collect();
        assert_eq!(got, want, "queue {q}");
        assert!(r.fes[q].tx_responses().iter().all(|x| x.status == RspStatus::Okay));
    }
    assert_eq!(r.staging.len(), 4);
    assert_eq!(r.pool.borrow().stats().out, 0, "TX takes no receive buffer");
}

#[test]
fn flows_spread_over_queues_and_stay_in_order() {
    let n = 4;
    let mut r = MultiRig::new(n);
    for fe in &mut r.fes {
        fe.post_rx(64);
    }
    let flows: Vec<u16> = (0..16).map(|i| 40000 + i).collect();
    let mut expect: BTreeMap<u16, usize> = BTreeMap::new();
    // Interleave 3 frames of each flow; poll between rounds (queues hold 32).
    for seq in 0..3u8 {
        for &p in &flows {
            let f = tcp_frame(p, seq);
            let q = r.vif.rx_queue_for(&f);
            assert!(q < n);
            assert_eq!(*expect.entry(p).or_insert(q), q, "flow {p} changed queue");
            assert!(r.vif.enqueue_rx(&f, FrameMeta::default()), "flow {p} seq {seq}");
        }
        for q in 0..n {
            r.vif.poll_rx(q, &r.hv);
        }
    }
    let used: std::collections::BTreeSet<usize> = expect.values().copied().collect();
    assert!(used.len() >= 2, "16 flows all hashed to one queue: {expect:?}");
    let mut total = 0;
    for (q, fe) in r.fes.iter_mut().enumerate() {
        let mut seen: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        for fr in fe.rx_frames() {
            let sport = u16::from_be_bytes([fr.data[34], fr.data[35]]);
            assert_eq!(expect[&sport], q, "flow {sport} arrived on queue {q}");
            seen.entry(sport).or_default().push(fr.data[54]);
            total += 1;
        }
        for (p, seqs) in seen {
            assert_eq!(seqs, vec![0, 1, 2], "flow {p} out of order on queue {q}");
        }
    }
    assert_eq!(total, flows.len() * 3);
    assert_eq!(r.vif.stats().to_guest.packets as usize, flows.len() * 3);
    // Non-IP frames hash by their Ethernet addresses: one source, one queue.
    let a = r.vif.rx_queue_for(&frame(60, 1));
    assert_eq!(a, r.vif.rx_queue_for(&frame(90, 1)));
}

#[test]
fn multicast_subscription_on_any_queue_applies_to_the_vif() {
    let mut r = MultiRig::new(2);
    let group = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
    assert!(!r.vif.wants(group));
    let add = ExtraInfo { flags: 0, kind: ExtraKind::McastAdd(group) };
    r.fes[1].send(&[], &TxOpts { extras: vec![add], ..TxOpts::default() });
    r.poll_tx(1);
    assert_eq!(r.fes[1].tx_responses()[0].status, RspStatus::Okay);
    assert!(r.vif.wants(group));
}

#[test]
fn a_fatal_error_on_one_queue_disables_the_whole_vif_and_release_returns_everything() {
    let mut r = MultiRig::new(2);
    // Frames wait on both queues: each holds a buffer.
    for i in 0..40u8 {
        r.vif.enqueue_rx(&frame(80 + usize::from(i), i), FrameMeta::default());
    }
    assert_eq!(r.vif.rx_buffers_held(), 2);
    assert_eq!(r.pool.borrow().stats().out, 2);
    // Queue 1's frontend claims more requests than the ring holds.
    r.fes[1].set_tx_req_prod(10_000);
    r.poll_tx(1);
    assert!(r.vif.disabled().is_some());
    r.fes[0].send(&frame(80, 1), &TxOpts::default());
    assert!(r.poll_tx(0).is_empty(), "queue 0 of a disabled vif still delivered");
    assert!(!r.vif.enqueue_rx(&frame(80, 2), FrameMeta::default()));
    let rings = r.vif.release();
    assert_eq!(rings.len(), 2);
    let s = r.pool.borrow().stats();
    assert_eq!((s.out, s.queues, s.holders), (0, 0, 0), "every buffer and reserve given back");
}

#[test]
fn queue_counts_are_bounded() {
    let hv = FakeHv::new(BACKEND);
    let cfg = VifConfig::new(GUEST, MAC, all_features());
    let pool = FakeBufPool::shared_rx(&hv, cfg.buffers_needed() * (MAX_QUEUES + 1), BUF_CAP, 0);
    let none: Vec<QueueRings> = Vec::new();
    assert_eq!(Vif::with_queues(cfg, none, &pool).err(), Some(VifError::BadQueueCount(0)));
    let fes: Vec<MockFrontend> = (0..=MAX_QUEUES).map(|_| MockFrontend::new(&hv, GUEST)).collect();
    let rings: Vec<QueueRings> = fes.iter().map(|f| (f.tx_ring(), f.rx_ring())).collect();
    assert_eq!(Vif::with_queues(cfg, rings, &pool).err(), Some(VifError::BadQueueCount(MAX_QUEUES + 1)));
    assert_eq!(pool.borrow().stats().queues, 0, "a refused vif registers no queue");
}

#[test]
fn a_pool_smaller_than_the_vif_drops_and_counts_what_it_cannot_hold() {
    let hv = FakeHv::new(BACKEND);
    let cfg = VifConfig::new(GUEST, MAC, all_features());
    let fe = MockFrontend::new(&hv, GUEST);
    let small = FakeBufPool::shared_rx(&hv, 1, BUF_CAP, 0);
    let mut vif = Vif::new(cfg, fe.tx_ring(), fe.rx_ring(), &small).unwrap();
    // One 64 KiB buffer holds 43 frames of 1500 bytes; the 44th needs a
    // second buffer the pool does not have.
    let sent = 60;
    let queued = (0..sent).filter(|i| vif.enqueue_rx(&frame(1500, *i as u8), FrameMeta::default())).count();
    assert_eq!(queued, BUF_CAP / 1500);
    let st = vif.stats();
    assert_eq!(st.rx_no_buffer, (sent - queued) as u64);
    assert_eq!(st.to_guest.drops, st.rx_no_buffer);
    assert_eq!(small.borrow().stats().refused, st.rx_no_buffer);
    drop(vif);
    assert_eq!(small.borrow().stats().out, 0);
}
