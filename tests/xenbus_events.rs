//! Watch events under load: a guest writing nodes under its own `state`
//! must not hide other guests' devices, and dropped events must not lose a
//! device.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xenbus_common;

use xenbus_common::*;

const FLOOD_STATE: &str = "/local/domain/5/device/vif/0/state";

fn connected_guest_5() -> World {
    let mut w = World::new();
    w.toolstack_add(5, 0, &mac(5));
    w.frontend_connect(5, 0, true);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    w
}

#[test]
fn children_under_a_guest_state_node_do_not_hide_another_guests_vif() {
    let mut w = connected_guest_5();
    for i in 0..200 {
        w.xs.set(&format!("{FLOOD_STATE}/n{i}"), b"x", 5);
    }
    w.toolstack_write(6, 0, &mac(6));
    for i in 200..600 {
        w.xs.set(&format!("{FLOOD_STATE}/n{i}"), b"x", 5);
    }
    w.settle();
    assert_eq!(w.be_state(6, 0).as_deref(), Some("2"), "guest 6's new vif was probed");
    w.frontend_connect(6, 0, true);
    assert_eq!(w.be_state(6, 0).as_deref(), Some("4"), "guest 6's vif connected");
    assert!(w.host.connected.iter().any(|(v, _, _)| *v == id(6, 0)));
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"), "the flooding guest stays as it was");
    assert!(w.host.disconnected.is_empty());
}

#[test]
fn children_under_a_state_node_cost_no_requests() {
    let mut w = connected_guest_5();
    let before = w.requests();
    for i in 0..400 {
        w.xs.set(&format!("{FLOOD_STATE}/n{i}"), b"x", 5);
    }
    w.settle();
    let cost = w.requests() - before;
    println!("xenstore requests for 400 children under one guest's state node: {cost}");
    assert_eq!(cost, 0, "events for paths other than the watched node are ignored");
}

#[test]
fn dropped_events_force_a_rescan() {
    let mut w = World::new();
    w.toolstack_write(6, 0, &mac(6));
    // A privileged writer floods our backend directory while the loop is
    // busy elsewhere: the client's event queue overflows and guest 6's
    // events are among the dropped.
    for i in 0..400 {
        w.xs.set(&format!("{BE_ROOT}/99/0/x/{i}"), b"x", 0);
    }
    for _ in 0..100 {
        w.xs.serve();
        w.c.pump(xvif::xen::xenstore::XsIo::mem(&w.xs)).unwrap();
    }
    assert!(w.c.stats.events_dropped > 0, "the flood overflowed the event queue");
    w.settle();
    assert_eq!(w.be_state(6, 0).as_deref(), Some("2"), "guest 6's vif was found by a rescan");
    w.frontend_connect(6, 0, false);
    assert_eq!(w.be_state(6, 0).as_deref(), Some("4"));
}

#[test]
fn a_flapping_guest_does_not_hold_up_another_guests_attach() {
    let mut w = World::new();
    for g in 10..42 {
        w.toolstack_add(g, 0, &mac(g));
        w.frontend_connect(g, 0, true);
    }
    let flap = "/local/domain/10/device/vif/0/state";
    let mut most = 0;
    let mut attached_at = None;
    for turn in 0..400 {
        // Guest 10 rewrites its state every turn, and creates nodes under it.
        w.xs.set(flap, [&b"5"[..], b"6", b"1", b"4"][turn % 4], 10);
        w.xs.set(&format!("{flap}/junk{turn}"), b"x", 10);
        if turn == 20 {
            w.toolstack_write(100, 0, &mac(100));
        }
        if turn == 40 {
            w.frontend_write(100, 0, true);
        }
        let before = w.requests();
        w.poll();
        most = most.max(w.requests() - before);
        if attached_at.is_none() && w.be_state(100, 0).as_deref() == Some("4") {
            attached_at = Some(turn);
        }
    }
    w.settle();
    println!("guest 100 connected at turn {attached_at:?}; at most {most} requests per turn while guest 10 flaps");
    assert!(attached_at.is_some_and(|t| t < 60), "guest 100 connected promptly: {attached_at:?}");
    assert!(most <= 64, "{most} requests in one turn");
    for g in 11..42 {
        assert_eq!(w.be_state(g, 0).as_deref(), Some("4"), "bystander {g}");
    }
    assert!(!w.host.disconnected.iter().any(|v| v.frontend.0 != 10), "only guest 10 was disconnected");
    assert_eq!((w.c.tracked(), w.c.unacked()), (0, 0), "nothing left in flight");
}

#[test]
fn a_silent_xenstored_delays_but_does_not_block() {
    let mut w = World::new();
    w.xs.answering.set(false);
    w.toolstack_write(6, 0, &mac(6));
    for _ in 0..50 {
        w.poll();
    }
    assert_eq!(w.be_state(6, 0).as_deref(), Some("1"));
    assert_eq!(w.waits.get(), 0, "the loop did not wait");
    // xenstored comes back after the requests' deadline: they are retried.
    w.xs.advance(xvif::xen::xenstore::client::DEFAULT_TIMEOUT_NS + 1);
    w.xs.answering.set(true);
    w.settle();
    assert_eq!(w.be_state(6, 0).as_deref(), Some("2"));
    w.frontend_connect(6, 0, true);
    assert_eq!(w.be_state(6, 0).as_deref(), Some("4"));
    assert_eq!((w.c.tracked(), w.c.unacked()), (0, 0));
    assert_eq!(w.waits.get(), 0);
}
