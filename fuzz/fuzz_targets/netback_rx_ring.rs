//! A hostile netfront's RX ring against the real `Vif`: a program of steps
//! read from the input — queue a frame for the guest (any length, checksum
//! and GSO metadata, source port, EtherType), post requests (raw grefs or
//! the guest's real grants, any ids), write any `req_prod`, poll, and read
//! the responses. Checked beyond "no panic":
//! * the queue never holds more bytes than its budget;
//! * a poll places at most `rx_budget` frames, makes bounded copy
//!   hypercalls, never a copy that crosses a page;
//! * every response is in the slot of the request it answers and carries
//!   its id; frames come out in order with the slot layout netif.h gives
//!   (data slots of at most a page, the GSO extra second, flags matching the
//!   frame's metadata), and lengths that add up;
//! * counters agree: frames accepted = copied + failed + still queued,
//!   refusals = drops;
//! * every buffer goes back to the pool and a bystander vif still works.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::collections::VecDeque;
use xvif::hal::SharedMem;
use xvif::netback::ring::{RING_SIZE, RSP_EVENT, RSP_PROD};
use xvif::netback::{FrameMeta, Gso, GsoKind, RxSource, VifConfig};
use xvif::netif::extra::{ExtraInfo, ExtraKind, GsoType};
use xvif::netif::rx::{NETRXF_CSUM_BLANK, NETRXF_DATA_VALIDATED, NETRXF_EXTRA_INFO, NETRXF_MORE_DATA};
use xvif::netif::{PAGE_SIZE, RxRequest, RxResponse};
use xvif_fuzz::Input;
use xvif_fuzz::netback::{Env, HOSTILE, RX_ENTRY, RingPage, features, read_rx_responses, set_req_prod};

thread_local! {
    static ENV: RefCell<Env> = RefCell::new(Env::new());
    /// Frame bytes: a counting pattern the frames are cut from.
    static PATTERN: Vec<u8> = (0..70_000u32).map(|i| (i.wrapping_mul(31) >> 3) as u8).collect();
}

fuzz_target!(|data: &[u8]| ENV.with(|env| PATTERN.with(|p| run(&mut env.borrow_mut(), p, data))));

/// What the guest must see of an accepted frame.
struct Expected {
    len: usize,
    meta: FrameMeta,
}

/// The guest's side: what it wrote into each request slot, and where it is.
struct Guest {
    ids: [u16; RING_SIZE as usize],
    req_prod: u32,
    rsp_cons: u32,
    /// Responses read so far that belong to a frame not finished yet.
    partial: Vec<RxResponse>,
    extra_pending: bool,
    more_pending: bool,
    frames_seen: u64,
    frames_failed: u64,
    /// `req_prod` as last published.
    published: u32,
    /// False once the guest moved `req_prod` back or published more than a
    /// ring of requests beyond the responses it read: it may then have
    /// overwritten requests the backend owned or responses it had not read,
    /// and only the counters can be checked.
    trusted: bool,
}

impl Guest {
    fn publish(&mut self, ring: &dyn SharedMem) {
        set_req_prod(ring, self.req_prod);
        let ahead = self.req_prod.wrapping_sub(self.rsp_cons);
        if ahead > RING_SIZE || ahead < self.published.wrapping_sub(self.rsp_cons) {
            self.trusted = false;
        }
        self.published = self.req_prod;
    }
}

fn run(env: &mut Env, pattern: &[u8], data: &[u8]) {
    let mut inp = Input::new(data);
    let feats = features(inp.u8());
    let mut cfg = VifConfig::new(HOSTILE, [0x00, 0x16, 0x3e, 0, 0, 9], feats);
    cfg.rx_budget = *inp.pick(&[64usize, 1, 8, 64]);
    if let Some(b) = *inp.pick(&[None, Some(4096usize), Some(20_000), Some(65_536)]) {
        cfg.rx_queue_bytes = b;
    }
    let fe = env.hostile_frontend();
    let mut vif = env.vif(&fe, cfg);
    let ring = fe.rx_ring();
    let mut g = Guest {
        ids: [0; RING_SIZE as usize],
        req_prod: 0,
        rsp_cons: 0,
        partial: Vec::new(),
        extra_pending: false,
        more_pending: false,
        frames_seen: 0,
        frames_failed: 0,
        published: 0,
        trusted: true,
    };
    let mut expected: VecDeque<Expected> = VecDeque::new();
    let (mut accepted, mut refused) = (0u64, 0u64);
    let mut scratch = Vec::with_capacity(pattern.len());

    for _ in 0..64 {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 6 {
            0 | 1 => {
                let len = usize::from(inp.u16());
                let flags = inp.u8();
                let mss = inp.u16();
                let source = RxSource(inp.u8());
                let ethertype = *inp.pick(&[0x0800u16, 0x86dd, 0x8100, 0x0806]);
                let off = usize::from(inp.u8());
                let gso = (flags & 4 != 0).then(|| Gso {
                    kind: if flags & 8 != 0 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
                    size: mss.max(1),
                });
                let meta = FrameMeta { csum_blank: flags & 1 != 0, data_validated: flags & 2 != 0, gso };
                scratch.clear();
                scratch.extend_from_slice(&pattern[off..off + len]);
                if let Some(t) = scratch.get_mut(12..14) {
                    t.copy_from_slice(&ethertype.to_be_bytes());
                }
                match vif.try_enqueue_rx_from(source, &scratch, meta) {
                    Ok(()) => {
                        accepted += 1;
                        expected.push_back(Expected { len, meta });
                    }
                    Err(_) => refused += 1,
                }
                assert!(vif.rx_queued_bytes() <= vif.rx_queue_budget(), "RX queue over its byte budget");
            }
            2 => {
                // Post requests: a real grant (writable or not) or any gref.
                let n = usize::from(inp.u8() % 65);
                for _ in 0..n {
                    let id = inp.u16();
                    let sel = inp.u8();
                    let gref = if sel < 0xf0 { env.grefs[usize::from(sel) % env.grefs.len()] } else { inp.u32() };
                    let slot = (g.req_prod % RING_SIZE) as usize;
                    ring.write_bytes(64 + slot * RX_ENTRY, &RxRequest { id, gref }.emit());
                    g.ids[slot] = id;
                    g.req_prod = g.req_prod.wrapping_add(1);
                }
                g.publish(&*ring);
            }
            3 => {
                // Any producer index.
                g.req_prod = inp.u32();
                g.publish(&*ring);
            }
            4 => poll(env, &mut vif, &*ring),
            _ => read(&*ring, &mut g, &mut expected),
        }
    }
    poll(env, &mut vif, &*ring);
    read(&*ring, &mut g, &mut expected);

    let s = vif.stats();
    assert_eq!(s.to_guest.drops, refused, "refused frames miscounted");
    assert_eq!(
        accepted,
        s.to_guest.packets + s.to_guest.errors + vif.rx_queued() as u64,
        "accepted frames are not copied + failed + queued: {s:?}"
    );
    // The guest saw every frame that left the queue, failed or not (a
    // frame cut off by a fatal error is neither).
    if g.trusted && vif.disabled().is_none() && !g.more_pending && !g.extra_pending {
        assert_eq!(g.frames_seen, s.to_guest.packets + s.to_guest.errors, "frames on the ring");
        assert_eq!(g.frames_failed, s.to_guest.errors, "failed frames");
    }
    drop(ring);
    env.release(vif);
    env.check_bystander();
}

fn poll(env: &mut Env, vif: &mut xvif::netback::Vif<xvif::testing::fake_hv::FakeBuf>, ring: &dyn SharedMem) {
    let budget = vif.config().rx_budget;
    for _ in 0..RING_SIZE as usize + 2 {
        let before = env.hv.stats();
        let queued = vif.rx_queued();
        let out = vif.poll_rx(0, &env.hv);
        let after = env.hv.stats();
        assert!(queued - vif.rx_queued() <= budget, "a poll placed more than rx_budget frames");
        assert!(after.copy_calls - before.copy_calls <= 64, "unbounded copies in one poll");
        assert_eq!(after.page_crossing_ops, before.page_crossing_ops, "a copy crossed a page");
        if !out.more {
            return;
        }
    }
    let _ = ring;
    panic!("poll_rx kept asking for more");
}

fn read(ring: &dyn SharedMem, g: &mut Guest, expected: &mut VecDeque<Expected>) {
    if !g.trusted {
        g.rsp_cons = ring.read_u32(RSP_PROD);
        ring.write_u32(RSP_EVENT, g.rsp_cons.wrapping_add(1));
        return;
    }
    let page = ring.clone_ring();
    let start = g.rsp_cons;
    let rsps = read_rx_responses(&page, &mut g.rsp_cons);
    ring.write_u32(RSP_EVENT, g.rsp_cons.wrapping_add(1));
    for (k, e) in rsps.iter().enumerate() {
        let slot = (start.wrapping_add(k as u32) % RING_SIZE) as usize;
        let want_id = g.ids[slot];
        // Whatever we leave in the slot is what the backend reads as the
        // next request there if we post nothing new.
        g.ids[slot] = u16::from_le_bytes([e[0], e[1]]);
        if g.extra_pending {
            g.extra_pending = false;
            let x = ExtraInfo::parse(e);
            let first = g.partial.first().copied();
            let want = expected.front().and_then(|f| f.meta.gso);
            match (x.kind, want) {
                (ExtraKind::Gso { size, kind, .. }, Some(w)) => {
                    assert_eq!(size, w.size, "GSO size");
                    assert_eq!(kind, if w.kind == GsoKind::TcpV4 { GsoType::TcpV4 } else { GsoType::TcpV6 });
                }
                other => panic!("extra slot {other:?} for a frame without GSO (first {first:?})"),
            }
            assert!(!x.more(), "one extra per frame");
            if !g.more_pending {
                finish(g, expected);
            }
            continue;
        }
        let r = RxResponse::parse(e);
        assert_eq!(r.id, want_id, "response in slot {slot} answers another request");
        assert_eq!(r.offset, 0);
        assert!(r.status <= PAGE_SIZE as i16 && r.status >= -1, "status {}", r.status);
        let first = g.partial.is_empty();
        let f = expected.front().unwrap_or_else(|| panic!("a response with no frame queued: {r:?}"));
        if first {
            let mut want = 0;
            if f.meta.csum_blank {
                want |= NETRXF_CSUM_BLANK | NETRXF_DATA_VALIDATED;
            } else if f.meta.data_validated {
                want |= NETRXF_DATA_VALIDATED;
            }
            if f.meta.gso.is_some() {
                want |= NETRXF_EXTRA_INFO;
            }
            assert_eq!(r.flags & !NETRXF_MORE_DATA, want, "first-slot flags for {:?}", f.meta);
            g.extra_pending = f.meta.gso.is_some();
        } else {
            assert_eq!(r.flags & !NETRXF_MORE_DATA, 0, "flags on a later slot");
        }
        g.more_pending = r.flags & NETRXF_MORE_DATA != 0;
        g.partial.push(r);
        if !g.more_pending && !g.extra_pending {
            finish(g, expected);
        }
    }
}

fn finish(g: &mut Guest, expected: &mut VecDeque<Expected>) {
    let Some(f) = expected.pop_front() else { panic!("a frame on the ring that was never queued") };
    let slots = f.len.div_ceil(PAGE_SIZE).max(1);
    assert_eq!(g.partial.len(), slots, "{} data slots for {} bytes", g.partial.len(), f.len);
    let failed = g.partial.iter().any(|r| r.status < 0);
    if !failed {
        let total: usize = g.partial.iter().map(|r| r.status as usize).sum();
        assert_eq!(total, f.len, "slot lengths");
    }
    g.frames_seen += 1;
    g.frames_failed += u64::from(failed);
    g.partial.clear();
}
