//! A hostile netfront's TX ring: arbitrary requests (raw, or pointing at the
//! guest's real grants) and up to three producer-index updates, each any
//! value or a plausible step. The real `Vif` must not panic, must do bounded
//! work per poll (copy hypercalls, polls per ring of requests), never issue
//! a copy that crosses a page, deliver only frames of legal length, count
//! what it delivered exactly, answer only with legal statuses, do nothing
//! more once disabled, give back every buffer, and leave a bystander vif on
//! the same hypervisor and staging buffers working.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use xvif::netback::ring::{RING_SIZE, RSP_PROD};
use xvif::netback::{FrameMeta, VifConfig};
use xvif::netif::RspStatus;
use xvif_fuzz::Input;
use xvif_fuzz::netback::{Env, HOSTILE, TX_ENTRY, features, set_req_prod, write_entries};

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::new());
}

fuzz_target!(|data: &[u8]| ENV.with(|env| run(&mut env.borrow_mut(), data)));

fn run(env: &mut Env, data: &[u8]) {
    let mut inp = Input::new(data);
    let feats = features(inp.u8());
    let budget = *inp.pick(&[64usize, 1, 8, 64]);
    let mode = inp.u8();
    let prods = [inp.u32(), inp.u32(), inp.u32()];
    let mut fe = env.hostile_frontend();
    let mut cfg = VifConfig::new(HOSTILE, [0x00, 0x16, 0x3e, 0, 0, 9], feats);
    cfg.tx_budget = budget;
    let mut vif = env.vif(&fe, cfg);

    // The ring's entries; in "plausible" mode every gref names one of the
    // guest's grants (read-only or not), so requests reach the copy code.
    let mut body = inp.bytes(RING_SIZE as usize * TX_ENTRY).to_vec();
    if mode & 1 != 0 {
        for e in body.chunks_mut(TX_ENTRY) {
            if e.len() >= 4 {
                let g = env.grefs[usize::from(e[0]) % env.grefs.len()];
                e[..4].copy_from_slice(&g.to_le_bytes());
            }
        }
    }
    let ring = fe.tx_ring();
    write_entries(&*ring, TX_ENTRY, 0, &body);

    let mut delivered: Vec<usize> = Vec::new();
    let (mut okay, mut answered) = (0usize, 0usize);
    let mut prod = 0u32;
    for (round, raw) in prods.into_iter().enumerate() {
        // Plausible: a step of at most one ring from the last index.
        prod = if mode & 2 != 0 { prod.wrapping_add(raw % (RING_SIZE + 1)) } else { raw };
        set_req_prod(&*ring, prod);
        let max_polls = RING_SIZE as usize / budget + 3;
        let mut polls = 0;
        loop {
            let before = env.hv.stats();
            let out = vif.poll_tx(0, &env.hv, &env.staging, &mut |f: &[u8], _m: FrameMeta| {
                assert!((14..=0xffff).contains(&f.len()), "delivered a frame of {} bytes", f.len());
                delivered.push(f.len());
            });
            let after = env.hv.stats();
            assert!(after.copy_calls - before.copy_calls <= 64, "round {round}: unbounded copies in one poll");
            assert_eq!(after.page_crossing_ops, before.page_crossing_ops, "a copy crossed a page");
            polls += 1;
            if !out.more {
                break;
            }
            assert!(polls <= max_polls, "round {round}: {polls} polls with budget {budget}");
        }
        for r in fe.tx_responses() {
            answered += 1;
            match r.status {
                RspStatus::Okay => okay += 1,
                RspStatus::Error | RspStatus::Null => {}
                s => panic!("illegal TX response status {s:?}"),
            }
        }
        assert!(answered <= (round + 1) * RING_SIZE as usize, "more responses than requests");
    }

    let s = vif.stats();
    assert_eq!(s.from_guest.packets, delivered.len() as u64, "delivered packets miscounted");
    assert_eq!(s.from_guest.bytes, delivered.iter().sum::<usize>() as u64, "delivered bytes miscounted");
    assert!(okay >= delivered.len(), "{} packets delivered, {okay} slots answered OK", delivered.len());

    // A disabled vif never touches the ring or the hypervisor again.
    if vif.disabled().is_some() {
        let rsp_prod = ring.read_u32(RSP_PROD);
        let calls = env.hv.stats().copy_calls;
        set_req_prod(&*ring, prod.wrapping_add(1));
        let out = vif.poll_tx(0, &env.hv, &env.staging, &mut |_: &[u8], _: FrameMeta| panic!("disabled vif delivered"));
        assert!(!out.progress && !out.more);
        assert_eq!((ring.read_u32(RSP_PROD), env.hv.stats().copy_calls), (rsp_prod, calls));
    }
    drop(ring);
    env.release(vif);
    env.check_bystander();
}
