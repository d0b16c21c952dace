//! A hostile frontend's control ring against the real `Vif`: a program of
//! steps read from the input: write a request (any type and data, or a
//! plausible one naming the guest's real grants, whose pages hold bytes
//! from the input), publish, write any `req_prod`, poll. Checked beyond
//! "no panic":
//! * a poll answers at most `CTRL_BUDGET` requests with at most that many
//!   copy hypercalls, and no copy crosses a page;
//! * every status is one netif.h defines; while the guest behaves, the
//!   responses carry the ids and types of its requests, in order;
//! * the hash table only ever names queues the vif has, and every frame
//!   lands on one of them;
//! * a vif is only ever disabled for its control ring's `req_prod`, and
//!   then touches nothing more;
//! * every buffer goes back to the pool and a bystander vif still works.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::VecDeque;
use xvif::netback::ctrl::CTRL_BUDGET;
use xvif::netback::ring::RSP_PROD;
use xvif::netback::{FrameMeta, NetbackError, QueueRings, Vif, VifConfig};
use xvif::netif::ctrl::{CtrlStatus, CtrlType};
use xvif::testing::ctrlfront::{CTRL_RING_SIZE, CtrlFrontend};
use xvif::testing::netfront::MockFrontend;
use xvif_fuzz::Input;
use xvif_fuzz::netback::{Env, HOSTILE, features};

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::new());
}

fuzz_target!(|data: &[u8]| ENV.with(|env| run(&mut env.borrow_mut(), data)));

fn run(env: &mut Env, data: &[u8]) {
    let mut inp = Input::new(data);
    let queues = 1 + usize::from(inp.u8() % 2);
    // The pool holds one single-queue vif's buffers besides the bystander's:
    // a two-queue vif gets half as many per queue.
    let mut cfg = VifConfig::new(HOSTILE, [0x00, 0x16, 0x3e, 0, 0, 9], features(0xff));
    cfg.rx_buffers /= queues;
    let fes: Vec<MockFrontend> = (0..queues).map(|_| env.hostile_frontend()).collect();
    let rings: Vec<QueueRings> = fes.iter().map(|f| (f.tx_ring(), f.rx_ring())).collect();
    let mut vif = Vif::with_queues(cfg, rings, &mut env.pool).unwrap_or_else(|e| panic!("vif: {e:?}"));
    let mut ctrl = CtrlFrontend::new(&env.hv, HOSTILE);
    vif.attach_ctrl(ctrl.ring());
    // Keys and tables come from the guest's writable pages.
    for gfn in env.rw_gfns.clone() {
        let bytes = inp.bytes(64).to_vec();
        env.hv.write_page(HOSTILE, gfn, 0, &bytes);
    }

    let mut pending: VecDeque<(u16, u16)> = VecDeque::new();
    let mut unpublished: VecDeque<(u16, u16)> = VecDeque::new();
    let mut plausible = true;
    let mut answered = 0u64;
    for _ in 0..96 {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 4 {
            0 => {
                let raw = inp.u16();
                let ty = if raw & 0x8000 != 0 { raw } else { raw % 9 };
                let arg = |inp: &mut Input| match inp.u8() % 3 {
                    0 => env.grefs[usize::from(inp.u8()) % env.grefs.len()],
                    1 => u32::from(inp.u8()),
                    _ => inp.u32(),
                };
                let d = [arg(&mut inp), arg(&mut inp), arg(&mut inp)];
                let id = ctrl.push(CtrlType::from_raw(ty), d);
                unpublished.push_back((id, ty));
                if unpublished.len() + pending.len() > CTRL_RING_SIZE as usize {
                    // More than a ring outstanding: it overwrote its own requests.
                    plausible = false;
                }
            }
            1 => {
                ctrl.publish();
                pending.extend(unpublished.drain(..));
            }
            2 => {
                ctrl.set_req_prod(inp.u32());
                plausible = false;
            }
            _ => answered += poll(env, &mut vif, &mut ctrl, &mut pending, plausible),
        }
    }
    if plausible {
        ctrl.publish();
        pending.extend(unpublished.drain(..));
    }
    for _ in 0..CTRL_RING_SIZE / CTRL_BUDGET + 2 {
        answered += poll(env, &mut vif, &mut ctrl, &mut pending, plausible);
    }
    if plausible {
        assert!(vif.disabled().is_none(), "a well-behaved control ring disabled the vif");
        assert!(pending.is_empty(), "{} requests never answered", pending.len());
    }
    if let Some(s) = vif.ctrl_stats() {
        assert_eq!(s.requests, answered, "requests answered miscounted");
    }
    let table = vif.hash_config().mapping().to_vec();
    assert!(table.iter().all(|&q| (q as usize) < queues), "table names a missing queue: {table:?}");
    for seed in 0..4u8 {
        let f = xvif::testing::netback_rig::frame(60 + usize::from(seed) * 7, seed ^ inp.u8());
        assert!(vif.rx_queue_for(&f) < queues);
        let _ = vif.enqueue_rx(&f, FrameMeta::default());
    }
    drop(fes);
    env.release(vif);
    env.check_bystander();
}

/// One poll with its checks; returns the responses read.
fn poll(
    env: &Env,
    vif: &mut Vif<xvif::testing::fake_hv::FakeBuf>,
    ctrl: &mut CtrlFrontend,
    pending: &mut VecDeque<(u16, u16)>,
    plausible: bool,
) -> u64 {
    let was_disabled = vif.disabled().is_some();
    let rsp_prod = ctrl.page.raw_rsp_prod();
    let before = env.hv.stats();
    let out = vif.poll_ctrl(&env.hv, &env.staging);
    let after = env.hv.stats();
    assert!(after.copy_calls - before.copy_calls <= u64::from(CTRL_BUDGET), "unbounded copies in one poll");
    assert_eq!(after.page_crossing_ops, before.page_crossing_ops, "a copy crossed a page");
    if was_disabled {
        assert!(!out.progress && !out.more, "a disabled vif served its control ring");
        assert_eq!((ctrl.page.raw_rsp_prod(), after.copy_calls), (rsp_prod, before.copy_calls));
    }
    match vif.disabled() {
        None => {}
        Some(NetbackError::CtrlRingOverflow(_)) => assert!(!plausible || was_disabled, "disabled a good ring"),
        Some(e) => panic!("disabled for {e:?}, not by its control ring"),
    }
    let rsps = ctrl.responses();
    assert!(rsps.len() <= CTRL_BUDGET as usize, "{} responses in one poll", rsps.len());
    for r in &rsps {
        assert!(CtrlStatus::from_raw(r.status).is_some(), "status {} is not netif.h's", r.status);
        if plausible {
            let want = pending.pop_front();
            assert_eq!(Some((r.id, r.ty)), want, "response out of order");
        }
    }
    rsps.len() as u64
}

/// `rsp_prod` of a ring page, read as the frontend does.
trait RspProd {
    fn raw_rsp_prod(&self) -> u32;
}

impl RspProd for xvif::testing::netfront::SpyPage {
    fn raw_rsp_prod(&self) -> u32 {
        use xvif::hal::SharedMem;
        self.raw().read_u32(RSP_PROD)
    }
}
