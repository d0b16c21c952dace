//! Deterministic random input: a fixed-seed PRNG fills the rings with
//! garbage (and half-plausible) requests and indices. The real Vif must not
//! panic, must finish every poll with bounded work, never issue a copy
//! that crosses a page, and a second vif must keep working.

use xvif::hal::SharedMem;
use xvif::netback::FrameMeta;
use xvif::netback::ring::{REQ_PROD, RING_SIZE};
use xvif::netif::{RspStatus, TxRequest};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};
use xvif::testing::netfront::TxOpts;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn garbage_rings_never_panic_or_loop() {
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let hv = FakeHv::new(BACKEND);
    let mut bystander = Rig::on(&hv, 200, all_features(), |_| {});
    let mut disabled = 0;
    let (mut delivered, mut answered) = (0, 0);
    for round in 0..300u32 {
        let mut r = Rig::on(&hv, 10 + (round % 100) as u16, all_features(), |_| {});
        // A few real grants so some garbage requests point at real data.
        let grefs: Vec<u32> = (0..4).map(|i| r.fe.grant_data(&frame(4096, i), 0)).collect();
        for slot in 0..RING_SIZE as usize {
            let mut e = [0u8; 12];
            e.iter_mut().for_each(|b| *b = rng.next() as u8);
            if rng.below(2) == 0 {
                // Half-plausible: a real gref, small offsets and sizes, random flags.
                let req = TxRequest {
                    gref: grefs[rng.below(4) as usize],
                    offset: rng.below(64) as u16,
                    flags: rng.below(16) as u16,
                    id: slot as u16,
                    size: rng.below(2000) as u16,
                };
                e = req.emit();
            }
            r.fe.tx.raw().write_bytes(64 + slot * 12, &e);
            let mut q = [0u8; 8];
            q.iter_mut().for_each(|b| *b = rng.next() as u8);
            r.fe.rx.raw().write_bytes(64 + slot * 8, &q);
        }
        let prod = match rng.below(4) {
            0 => rng.next() as u32,
            _ => rng.below(u64::from(RING_SIZE) + 1) as u32,
        };
        r.fe.tx.raw().write_u32(REQ_PROD, prod);
        r.fe.rx.raw().write_u32(REQ_PROD, rng.below(u64::from(RING_SIZE) + 1) as u32);
        for i in 0..8 {
            r.vif.enqueue_rx(&frame(60 + i * 700, i as u8), FrameMeta::default());
        }
        let mut polls = 0;
        loop {
            let calls = hv.stats().copy_calls;
            let tx = r.poll_tx();
            let rx = r.poll_rx();
            // Bounded work per poll: one copy hypercall per COPY_BATCH ops,
            // at most a ring's worth of slots each way.
            assert!(hv.stats().copy_calls - calls <= 64, "round {round}");
            polls += 1;
            if !(tx.more || rx.more) || polls > 64 {
                break;
            }
        }
        assert!(polls <= 10, "round {round}: {polls} polls for one ring of requests");
        if r.vif.disabled().is_some() {
            disabled += 1;
        }
        let rsps = r.fe.tx_responses();
        delivered += r.got.len();
        answered += rsps.len();
        assert!(rsps.len() <= RING_SIZE as usize);
        assert!(rsps.iter().all(|x| matches!(x.status, RspStatus::Okay | RspStatus::Error | RspStatus::Null)));
        assert_eq!(hv.stats().page_crossing_ops, 0, "round {round}");
        assert!(r.got.iter().all(|(f, _)| f.len() >= 14 && f.len() <= 0xffff));
    }
    // Garbage trips the fatal checks, but only after the packets before the
    // bad one were handled: the run must have delivered and answered some.
    assert!(disabled > 0, "disabled {disabled}/300");
    assert!(delivered > 0 && answered > delivered, "delivered {delivered}, answered {answered}");
    let f = frame(500, 1);
    bystander.fe.send(&f, &TxOpts::default());
    bystander.poll_tx();
    assert_eq!(bystander.got.pop().map(|g| g.0), Some(f));
    assert!(bystander.vif.disabled().is_none());
}
