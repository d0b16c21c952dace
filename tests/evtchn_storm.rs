//! The storm limiter against Xen's 2-level event-channel semantics: a port
//! it masked must not stay masked once closed (Xen hands the same number to
//! the next bind), and the end of its penalty is a deadline of the loop.

use xvif::testing::fake_evtchn::FakeEventWords;
use xvif::xen::EvtchnPort;
use xvif::xen::events::{EventChannels, EventWords};
use xvif::xen::evtchn::LimitConfig;

const CFG: LimitConfig = LimitConfig { burst: 4, per_second: 1000, penalty_ns: 5_000_000 };

fn bind(w: &FakeEventWords, ev: &mut EventChannels) -> EvtchnPort {
    let p = w.alloc().unwrap_or_else(|| panic!("no free port"));
    ev.bound(w, p);
    p
}

/// Raises `p` and polls `n` times at `now`; returns the notifications taken.
fn storm(w: &FakeEventWords, ev: &mut EventChannels, p: EvtchnPort, now: u64, n: usize) -> usize {
    (0..n)
        .filter(|_| {
            w.raise(p);
            ev.poll(w, now, true);
            ev.take_fired(p)
        })
        .count()
}

#[test]
fn a_port_closed_while_throttled_comes_back_unmasked() {
    let w = FakeEventWords::new();
    let mut ev = EventChannels::new(CFG);
    let other = bind(&w, &mut ev);
    let p = bind(&w, &mut ev);
    assert_eq!(storm(&w, &mut ev, p, 0, 20), 4, "the burst, then throttled");
    assert!(w.is_masked(p));
    assert_eq!(ev.throttled(p), 1);

    // The frontend goes away while its port is throttled.
    ev.closed(&w, p);
    w.free(p);
    assert!(!w.is_masked(p), "closing lifts the limiter's mask");
    assert_eq!(ev.next_unmask(), None, "nothing left to unmask");

    // The next vif gets the same number and its kicks arrive at once.
    let q = bind(&w, &mut ev);
    assert_eq!(q, p, "Xen hands out the lowest free port");
    assert_eq!(ev.throttled(q), 0);
    for t in [1_000, 2_000, 3_000] {
        w.raise(q);
        assert!(ev.poll(&w, t, true), "event on the rebound port at {t}");
        assert!(ev.take_fired(q));
        assert!(!ev.take_fired(other));
    }
}

#[test]
fn binding_unmasks_a_port_left_masked() {
    let w = FakeEventWords::new();
    let mut ev = EventChannels::new(CFG);
    let p = bind(&w, &mut ev);
    // Closed without going through the dispatcher (a failed close, an
    // earlier boot stage): the mask bit survives in shared_info.
    w.set_mask(p);
    w.free(p);
    let q = bind(&w, &mut ev);
    assert_eq!(q, p);
    assert!(!w.is_masked(q), "a fresh binding starts unmasked");
    w.raise(q);
    assert!(ev.poll(&w, 0, true));
    assert!(ev.take_fired(q));
    assert!(!ev.take_fired(q), "one notification, taken once");
}

#[test]
fn a_throttled_ports_unmask_time_is_the_next_deadline() {
    let w = FakeEventWords::new();
    let mut ev = EventChannels::new(CFG);
    let p = bind(&w, &mut ev);
    assert_eq!(ev.next_unmask(), None);
    let t0 = 7_000;
    assert_eq!(storm(&w, &mut ev, p, t0, 6), 4);
    let due = t0 + CFG.penalty_ns;
    assert_eq!(ev.next_unmask(), Some(due));
    // The kick that arrived while masked is still pending...
    assert!(w.is_pending(p));
    assert!(!ev.poll(&w, due - 1, false));
    assert!(!ev.take_fired(p));
    // ...and a poll at the deadline, with no new upcall, delivers it.
    assert!(ev.poll(&w, due, false));
    assert!(ev.take_fired(p));
    assert!(!w.is_masked(p));
    assert_eq!(ev.next_unmask(), None);
    // Several throttled ports: the earliest penalty end is reported.
    let q = bind(&w, &mut ev);
    storm(&w, &mut ev, q, 9_000_000, 6);
    storm(&w, &mut ev, p, 8_000_000, 6);
    assert_eq!(ev.next_unmask(), Some(8_000_000 + CFG.penalty_ns));
}
