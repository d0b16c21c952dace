//! Host simulator throughput, ignored by default: guest A's TX ring -> vif A
//! -> switch -> vif B -> guest B's RX ring, a data-plane turn at a time
//! (`testing::fabric`), with one copy between the guests and with every
//! frame copied whole, with the fake hypervisor's grant copy (a memcpy
//! between fake pages), next to a plain memcpy of the same bytes in the
//! same run. Run:
//! `CARGO_TARGET_DIR=/tmp/bench-target cargo test --release --test netback_bench -- --ignored --nocapture`
//! (or `bash tests/bench/netback_sim.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant};
use xvif::hal::SharedMem;
use xvif::netback::ring::{RING_HEADER, RING_SIZE, RSP_EVENT, RSP_PROD};
use xvif::netif::rx::{NETRXF_EXTRA_INFO, NETRXF_MORE_DATA, RX_ENTRY_SIZE};
use xvif::netif::{RspStatus, RxRequest, RxResponse, TxRequest};
use xvif::testing::fabric::Fabric;
use xvif::testing::netback_rig::Rig;

/// Packets guest A posts per round (the vif's default TX budget and RX queue).
const BATCH: usize = 64;
/// Timed wall time per frame size.
const RUN: Duration = Duration::from_secs(1);
const WARMUP: Duration = Duration::from_millis(100);

/// Guest B's receive side, as a copy-mode netfront: a fixed set of granted
/// pages posted as RX buffers, responses read off the ring and each buffer
/// reposted at once (no data is copied out, as netfront hands pages up).
struct RxGuest {
    bufs: Vec<(u32, u64)>,
    cons: u32,
}

impl RxGuest {
    fn new(rig: &mut Rig) -> Self {
        let dom = rig.fe.dom;
        let bufs: Vec<(u32, u64)> = (0..RING_SIZE)
            .map(|_| {
                let gfn = rig.hv.alloc_page(dom);
                (rig.hv.grant(dom, gfn, rig.hv.backend, false), gfn)
            })
            .collect();
        for (id, &(gref, _)) in bufs.iter().enumerate() {
            rig.fe.post_rx_raw(RxRequest { id: id as u16, gref });
        }
        rig.fe.publish_rx();
        Self { bufs, cons: 0 }
    }

    /// Consumes every response, checks it, reposts its buffer; returns the
    /// frames received and the last response.
    fn consume(&mut self, rig: &mut Rig, len: usize) -> (usize, Option<RxResponse>) {
        let page = rig.fe.rx.clone();
        let ring = page.raw();
        let prod = ring.read_u32(RSP_PROD);
        let mut n = 0;
        let mut last = None;
        while self.cons != prod {
            let mut e = [0u8; RX_ENTRY_SIZE];
            ring.read_bytes(RING_HEADER + (self.cons % RING_SIZE) as usize * RX_ENTRY_SIZE, &mut e);
            self.cons = self.cons.wrapping_add(1);
            let r = RxResponse::parse(&e);
            assert_eq!(r.status, len as i16, "rx response {r:?}");
            assert_eq!(r.flags & (NETRXF_MORE_DATA | NETRXF_EXTRA_INFO), 0);
            let (gref, _) = self.bufs[usize::from(r.id)];
            rig.fe.post_rx_raw(RxRequest { id: r.id, gref });
            n += 1;
            last = Some(r);
        }
        rig.fe.publish_rx();
        ring.write_u32(RSP_EVENT, self.cons.wrapping_add(1));
        (n, last)
    }
}

/// Where the time of a profiled run went, in nanoseconds over the run.
#[derive(Default, Clone, Copy)]
struct Profile {
    /// Guest A writing and publishing TX requests.
    guest_tx: u64,
    /// The turn's TX phase: vif A's `stage_tx` and `deliver_tx` (header copies,
    /// parsing), the switch's decision, vif B's placement.
    vif_tx: u64,
    /// The turn's RX placement of queued frames.
    vif_rx: u64,
    /// The turn's grant copies into guest B (the fake hypervisor's memcpy).
    copy: u64,
    /// Faults, responses.
    finish: u64,
    /// Guests reading their responses and reposting RX buffers.
    guest_rx: u64,
}

struct SimResult {
    packets: u64,
    secs: f64,
    /// GNTTABOP_copy hypercalls, their operations and the bytes "Xen" copied.
    copy_calls: u64,
    copy_ops: u64,
    xen_bytes: u64,
    /// Bytes xvif copied itself (into vif B's RX queue, or headers read
    /// out of the turn's arena).
    xvif_bytes: u64,
    profile: Profile,
    /// Frames the capture could not record (its reader lagged).
    capture_dropped: u64,
}

/// Moves `len`-byte frames from guest A to guest B for about `RUN`, a
/// data-plane turn at a time (`Fabric`: as `DataPlane::poll`); with
/// `one_copy` off every frame goes whole (the path one copy replaces);
/// with `profile`, times each phase too (which costs a few clock reads per
/// turn, so the throughput of such a run is not reported); with `capture`,
/// a packet capture runs on vif B's port and a reader drains it after
/// every batch, as the HTTP endpoint would.
fn simulate(len: usize, one_copy: bool, profile: bool, capture: bool) -> SimResult {
    let mut fab = Fabric::new(2);
    fab.one_copy = one_copy;
    let hv = fab.hv.clone();
    let (mac_a, mac_b) = (fab.rigs[0].vif.config().mac, fab.rigs[1].vif.config().mac);
    // A's frame: B's MAC, A's MAC, IPv4 EtherType, a counting payload.
    let mut frame: Vec<u8> = (0..len).map(|i| i as u8).collect();
    frame[..6].copy_from_slice(&mac_b);
    frame[6..12].copy_from_slice(&mac_a);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    // A's TX pages: granted once, reused every round.
    let tx_grefs: Vec<u32> = (0..BATCH).map(|_| fab.rigs[0].fe.grant_data(&frame, 0)).collect();
    let mut rx = RxGuest::new(&mut fab.rigs[1]);
    if capture {
        fab.switch.start_capture("vif8.0", xvif::switch::capture::MAX_COUNT).unwrap();
    }
    let mut reader = vec![0u8; 64 * 1024];

    let t0 = Instant::now();
    let mut timed: Option<(Instant, u64, xvif::testing::fake_hv::HvStats, u64)> = None;
    let mut packets = 0u64;
    let mut last = None;
    let mut prof = Profile::default();
    let epoch = Instant::now();
    let mut clock = || if profile { epoch.elapsed().as_nanos() as u64 } else { 0 };
    loop {
        let g0 = clock();
        // Guest A posts a batch.
        let a = &mut fab.rigs[0];
        for (k, &gref) in tx_grefs.iter().enumerate() {
            a.fe.push_tx(TxRequest { gref, offset: 0, flags: 0, id: k as u16, size: len as u16 });
        }
        a.fe.publish_tx();
        prof.guest_tx += clock() - g0;
        // Turns: vif A -> switch -> vif B -> guest B's buffers.
        fab.now = t0.elapsed().as_nanos() as u64;
        loop {
            let (busy, t) = fab.turn_timed(&mut clock);
            prof.vif_tx += t.tx;
            prof.vif_rx += t.rx;
            prof.copy += t.copy;
            prof.finish += t.finish;
            if !busy {
                break;
            }
        }
        let g1 = clock();
        // Both guests take their responses.
        let (got, r) = rx.consume(&mut fab.rigs[1], len);
        assert_eq!(got, BATCH, "vif B stats {:?}", fab.rigs[1].vif.stats());
        last = r.or(last);
        let txr = fab.rigs[0].fe.tx_responses();
        assert!(txr.len() == BATCH && txr.iter().all(|r| r.status == RspStatus::Okay));
        prof.guest_rx += clock() - g1;
        packets += BATCH as u64;
        if let Some(c) = fab.switch.capture_mut() {
            while c.take(&mut reader) > 0 {}
            if c.full() {
                fab.switch.stop_capture();
                fab.switch.start_capture("vif8.0", xvif::switch::capture::MAX_COUNT).unwrap();
            }
        }

        match timed {
            None if t0.elapsed() >= WARMUP => {
                prof = Profile::default();
                let xvif = fab.rigs[1].vif.stats().rx_copy_bytes + fab.rigs[0].vif.stats().tx_hdr_bytes;
                timed = Some((Instant::now(), packets, hv.stats(), xvif));
            }
            Some((t, _, _, _)) if t.elapsed() >= RUN => break,
            _ => {}
        }
    }
    let (t, p0, s0, x0) = timed.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let s = hv.stats();

    // The data really arrived, and nothing was dropped anywhere.
    let r = last.unwrap();
    let gfn = rx.bufs[usize::from(r.id)].1;
    assert_eq!(hv.read_page(fab.rigs[1].fe.dom, gfn, usize::from(r.offset), len), frame);
    let (sa, sb) = (fab.rigs[0].vif.stats(), fab.rigs[1].vif.stats());
    assert_eq!((sa.from_guest.packets, sa.from_guest.errors), (packets, 0));
    assert_eq!((sb.to_guest.packets, sb.to_guest.drops, sb.to_guest.errors), (packets, 0, 0));
    assert_eq!(fab.switch.counters().unicast, packets);
    assert_eq!(s.failed_ops, 0);
    if one_copy && !capture && len > 128 {
        assert!(s.between_ops > s0.between_ops, "the payload went grant to grant");
    }
    SimResult {
        packets: packets - p0,
        secs,
        copy_calls: s.copy_calls - s0.copy_calls,
        copy_ops: s.copy_ops - s0.copy_ops,
        xen_bytes: s.bytes - s0.bytes,
        xvif_bytes: sb.rx_copy_bytes + sa.tx_hdr_bytes - x0,
        profile: prof,
        capture_dropped: fab.switch.capture_mut().map_or(0, |c| c.dropped),
    }
}

/// Copies `packets` chunks of `len` bytes, cycling through as many source
/// and destination buffers as the simulator uses (TX pages, RX buffers).
fn memcpy(len: usize, packets: u64) -> f64 {
    let src: Vec<Vec<u8>> = (0..BATCH).map(|i| vec![i as u8; len]).collect();
    let mut dst: Vec<Vec<u8>> = (0..RING_SIZE).map(|_| vec![0u8; len]).collect();
    let (ns, nd) = (src.len(), dst.len());
    let t = Instant::now();
    for i in 0..packets as usize {
        let s = black_box(&src[i % ns]);
        let d = &mut dst[i % nd];
        d.copy_from_slice(s);
        black_box(d);
    }
    t.elapsed().as_secs_f64()
}

/// Prints a header row and one row of values per frame size and path.
fn table(heads: &[&str], rows: impl Iterator<Item = (usize, &'static str, Vec<f64>)>, decimals: usize) {
    let mut line = format!("{:>6}", "frame");
    for h in heads {
        line += &format!(" | {h:>10}");
    }
    println!("{line}");
    for (len, path, values) in rows {
        let mut l = format!("{len:>4} B | {path:>10}");
        for v in values {
            l += &format!(" | {v:>10.decimals$}");
        }
        println!("{l}");
    }
}

#[test]
#[ignore]
fn tx_switch_rx_throughput() {
    println!(
        "command: CARGO_TARGET_DIR=/tmp/bench-target cargo test --release --test netback_bench -- --ignored --nocapture"
    );
    println!("pipeline: netfront A TX -> vif A -> switch -> vif B -> netfront B RX, a data-plane turn at a time");
    println!("fake grant copy = memcpy (FakeHv); batch {BATCH}; ~{:.1} s timed per size and path", RUN.as_secs_f64());
    println!("one copy: headers into xvif, payload grant to grant; whole: every frame copied in, queued, copied out");
    println!(
        "{:>6} | {:>8} | {:>10} | {:>10} | {:>11} | {:>11} | {:>11}",
        "frame", "path", "xvif Mpps", "xvif Gb/s", "memcpy Mpps", "memcpy Gb/s", "xvif/memcpy"
    );
    let mut costs = Vec::new();
    for len in [64usize, 1500] {
        for (path, one_copy) in [("one copy", true), ("whole", false)] {
            let r = simulate(len, one_copy, false, false);
            let m = memcpy(len, r.packets);
            let pps = r.packets as f64 / r.secs;
            let mpps = r.packets as f64 / m;
            let gbps = |p: f64| p * len as f64 * 8.0 / 1e9;
            println!(
                "{:>4} B | {:>8} | {:>10.3} | {:>10.2} | {:>11.2} | {:>11.2} | {:>11.4}",
                len,
                path,
                pps / 1e6,
                gbps(pps),
                mpps / 1e6,
                gbps(mpps),
                pps / mpps,
            );
            let cap = one_copy.then(|| simulate(len, one_copy, false, true));
            assert_eq!(cap.as_ref().map_or(0, |c| c.capture_dropped), 0, "the reader kept up");
            let ratio = cap.map(|c| c.packets as f64 / c.secs / pps);
            costs.push((len, path, r, 1e9 / pps, simulate(len, one_copy, true, false), ratio));
        }
    }
    println!("per packet (timed run): hypercalls, grant-copy ops, bytes copied by \"Xen\" and by xvif, ns");
    table(
        &["path", "hypercalls", "copy ops", "Xen B", "xvif B", "ns"],
        costs.iter().map(|(len, path, r, ns, _, _)| {
            let per = |v: u64| v as f64 / r.packets as f64;
            (*len, *path, vec![per(r.copy_calls), per(r.copy_ops), per(r.xen_bytes), per(r.xvif_bytes), *ns])
        }),
        3,
    );
    println!("where the time goes (a second run with a clock read around each phase), ns per packet:");
    table(
        &["path", "guest TX", "vif TX+sw", "RX place", "Xen copy", "responses", "guest RX"],
        costs.iter().map(|(len, path, _, _, p, _)| {
            let (per, q) = (|v: u64| v as f64 / p.packets as f64, p.profile);
            (
                *len,
                *path,
                vec![per(q.guest_tx), per(q.vif_tx), per(q.vif_rx), per(q.copy), per(q.finish), per(q.guest_rx)],
            )
        }),
        1,
    );
    println!(
        "(\"vif TX+sw\" includes the header grant copies (or whole-frame copies) and the RX-queue memcpy of whole frames)"
    );
    println!(
        "with a packet capture on vif B's port (drained after every batch; frames then go whole), against without:"
    );
    for (len, _, _, _, _, ratio) in &costs {
        if let Some(r) = ratio {
            println!("{len:>4} B | {r:.3}");
        }
    }
}
