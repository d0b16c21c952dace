//! Arbitrary TX ring contents from a hostile frontend: the first bytes pick
//! the producer index, the rest fills the ring's entries. The real Vif must
//! not panic, must finish each poll, and must leave a second vif working.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xvif::hal::SharedMem;
use xvif::netback::ring::{REQ_PROD, RING_HEADER};
use xvif::testing::fake_hv::FakeHv;
use xvif::testing::netback_rig::{BACKEND, Rig, all_features, frame};

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<4>() else { return };
    let hv = FakeHv::new(BACKEND);
    let mut r = Rig::on(&hv, 9, all_features(), |_| {});
    // Some real grants so requests can point at real data.
    for i in 0..4 {
        r.fe.grant_data(&frame(4096, i), 0);
    }
    let ring = r.fe.tx_ring();
    ring.write_bytes(RING_HEADER, body.get(..body.len().min(4096 - RING_HEADER)).unwrap_or(&[]));
    ring.write_u32(REQ_PROD, u32::from_le_bytes(*head));
    for _ in 0..4 {
        let _ = r.poll_tx();
    }
});
