//! The `rate` limit on what a guest transmits, through the real TX path
//! over simulated time: the measured rate matches the configured one, no
//! packet is dropped (those over the credit wait on the ring), the poll
//! reports the refill time instead of asking to be polled again at once,
//! an unlimited vif beside it is unaffected, and a rate change applies to
//! a live vif.

use xvif::netback::credit::MAX_BURST;
use xvif::netback::{PollOutcome, Rate};
use xvif::netif::RspStatus;
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};
use xvif::testing::netfront::TxOpts;

const MS: u64 = 1_000_000;
const S: u64 = 1000 * MS;
/// `vif=['rate=10Mb/s']`: libxl writes `62500,50000` (bytes per 50 ms).
const TEN_MBIT: Rate = Rate { bytes: 62_500, interval_us: 50_000 };
const FRAME: usize = 1514;
/// Packets the guest keeps on its ring (each is one slot).
const IN_FLIGHT: usize = 128;

/// A guest that keeps its TX ring full of `FRAME`-byte packets.
struct Guest {
    rig: Rig,
    sent: usize,
    answered: usize,
    polls: usize,
}

impl Guest {
    fn new(hv: &FakeHv, dom: u16) -> Self {
        Self { rig: Rig::on(hv, dom, all_features(), |_| {}), sent: 0, answered: 0, polls: 0 }
    }

    /// Tops the ring up to `IN_FLIGHT` outstanding packets.
    fn fill(&mut self) {
        while self.sent - self.answered < IN_FLIGHT {
            self.rig.fe.queue_packet(&frame(FRAME, self.sent as u8), &TxOpts::default());
            self.sent += 1;
        }
        self.rig.fe.publish_tx();
    }

    /// Collects responses; all must be Okay.
    fn collect(&mut self) {
        for r in self.rig.fe.tx_responses() {
            assert_eq!(r.status, RspStatus::Okay, "no packet is dropped");
            self.answered += 1;
        }
    }

    fn poll(&mut self, now: u64) -> PollOutcome {
        self.polls += 1;
        let got = &mut self.rig.got;
        let out = self.rig.vif.poll_tx_at(0, &self.rig.hv, &self.rig.staging, now, &mut |f, m| {
            got.push((f.to_vec(), m));
        });
        self.collect();
        out
    }

    fn delivered_bytes(&self) -> usize {
        self.rig.got.iter().map(|(f, _)| f.len()).sum()
    }

    /// Runs the guest flat out from `from` until `until`, the way the main
    /// loop does: poll while work is left, else sleep until the reported
    /// refill. Returns the time reached.
    fn run(&mut self, from: u64, until: u64) -> u64 {
        let mut now = from;
        while now < until {
            self.fill();
            let out = self.poll(now);
            match out.wait_until {
                Some(t) => {
                    assert!(!out.more, "waiting for credit is not a reason to poll again at once");
                    assert!(t > now && t <= now + 50 * MS, "the refill is at most one interval away: {t} at {now}");
                    assert_eq!(self.rig.vif.tx_wait_until(), Some(t), "the deadline the loop sleeps until");
                    now = t;
                }
                None => assert!(out.more || out.progress, "a full ring is either sent or waits"),
            }
        }
        now
    }
}

fn mbit(bytes: usize, ns: u64) -> f64 {
    bytes as f64 * 8.0 / (ns as f64 / S as f64) / 1e6
}

#[test]
fn ten_mbit_over_simulated_time_without_a_drop() {
    let hv = FakeHv::new(BACKEND);
    let mut g = Guest::new(&hv, 7);
    g.rig.vif.set_rate(Some(TEN_MBIT), 0);
    let end = g.run(0, 2 * S);
    let rate = mbit(g.delivered_bytes(), end);
    // One interval's credit is there at the start: at most 62 500 bytes over.
    assert!((9.9..=10.3).contains(&rate), "{rate} Mb/s");
    let st = g.rig.vif.stats();
    assert_eq!(st.from_guest.errors, 0);
    assert_eq!(st.from_guest.packets as usize, g.rig.got.len());
    assert_eq!(g.answered, g.rig.got.len(), "every consumed request answered, none dropped");
    assert!(st.tx_rate_deferred > 0);
    // The rest is still on the ring, not lost: lifting the limit sends it.
    g.rig.vif.set_rate(None, end);
    let before = g.rig.got.len();
    let mut out = g.poll(end);
    while out.more {
        assert_eq!(out.wait_until, None);
        out = g.poll(end);
    }
    assert_eq!(g.rig.got.len() - before, g.sent - before);
    assert_eq!(g.answered, g.sent);
    // About one poll per interval (40 in 2 s), no spinning.
    assert!(g.polls <= 2 * 40 + 5, "{} polls", g.polls);
}

#[test]
fn an_unlimited_vif_beside_is_unaffected() {
    let hv = FakeHv::new(BACKEND);
    let mut slow = Guest::new(&hv, 7);
    let mut fast = Guest::new(&hv, 8);
    slow.rig.vif.set_rate(Some(TEN_MBIT), 0);
    slow.run(0, 200 * MS);
    // At the same instant the unlimited guest empties its ring at once.
    fast.fill();
    let out = fast.poll(200 * MS);
    assert_eq!(out.wait_until, None);
    assert_eq!(fast.rig.got.len(), fast.rig.vif.config().tx_budget.min(IN_FLIGHT));
    assert_eq!(fast.rig.vif.tx_wait_until(), None);
    assert_eq!(fast.rig.vif.stats().tx_rate_deferred, 0);
}

#[test]
fn a_rate_change_applies_to_a_live_vif() {
    let hv = FakeHv::new(BACKEND);
    let mut g = Guest::new(&hv, 7);
    g.rig.vif.set_rate(Some(TEN_MBIT), 0);
    let t1 = g.run(0, S);
    let first = g.delivered_bytes();
    // The toolstack rewrites `rate` to 20 Mb/s.
    g.rig.vif.set_rate(Some(Rate { bytes: 125_000, interval_us: 50_000 }), t1);
    assert_eq!(g.rig.vif.rate().map(|r| r.bits_per_sec()), Some(20_000_000));
    let t2 = g.run(t1, 2 * S);
    let second = mbit(g.delivered_bytes() - first, t2 - t1);
    assert!((19.5..=20.8).contains(&second), "{second} Mb/s after the change");
    // And down to 1 Mb/s with a 10 ms interval (`1Mb/s@10ms` = 1250,10000).
    let before = g.delivered_bytes();
    g.rig.vif.set_rate(Some(Rate { bytes: 1250, interval_us: 10_000 }), t2);
    let t3 = g.run(t2, t2 + S);
    let third = mbit(g.delivered_bytes() - before, t3 - t2);
    // A waiting packet keeps its refill; at most one burst of credit carries over.
    let slack = mbit(MAX_BURST as usize, t3 - t2);
    assert!(third >= 0.9 && third <= 1.1 + slack, "{third} Mb/s after lowering the rate");
    assert_eq!(g.rig.vif.stats().from_guest.errors, 0);
}
