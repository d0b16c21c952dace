//! The cost of xenbus work for the main loop: xenstore requests per guest
//! state change with many vifs, requests per loop turn, and never waiting
//! for xenstored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xenbus_common;

use xenbus_common::*;
use xvif::xen::xenstore::wire::MsgType;

/// A world with `n` connected vifs, guests 10, 11, ...
fn world_with(n: u16) -> World {
    let mut w = World::new();
    for g in 10..10 + n {
        w.toolstack_add(g, 0, &mac(g));
        w.frontend_connect(g, 0, g % 2 == 0);
        assert_eq!(w.be_state(g, 0).as_deref(), Some("4"), "guest {g}");
    }
    w
}

/// Requests the backend sends for guest 10 going to Closing.
fn closing_cost(n: u16) -> (usize, usize) {
    let mut w = world_with(n);
    let before = w.requests();
    w.xs.set("/local/domain/10/device/vif/0/state", b"5", 10);
    w.settle();
    assert_eq!(w.be_state(10, 0).as_deref(), Some("5"));
    assert_eq!(w.host.disconnected, vec![id(10, 0)]);
    let log = w.xs.log.borrow();
    let dirs = log[before..].iter().filter(|(ty, _)| *ty == MsgType::Directory).count();
    (log.len() - before, dirs)
}

#[test]
fn one_guests_state_change_costs_the_same_with_32_vifs_as_with_1() {
    let (one, _) = closing_cost(1);
    let (many, dirs) = closing_cost(32);
    println!("xenstore requests for one guest's state=5: {one} with 1 vif, {many} with 32 vifs");
    assert_eq!(dirs, 0, "our own state write does not cause a rescan");
    assert_eq!(one, many, "the cost does not depend on the other vifs");
    assert!(many <= 4, "{many} requests");
}

/// Polls until three quiet turns in a row (or `turns` reaches `limit`);
/// returns the most requests sent in one turn.
fn poll_until_quiet(w: &mut World, turns: &mut usize, limit: usize) -> usize {
    let (mut most, mut quiet) = (0, 0);
    while quiet < 3 && *turns < limit {
        let before = w.requests();
        if w.poll() {
            quiet = 0
        } else {
            quiet += 1
        }
        most = most.max(w.requests() - before);
        *turns += 1;
    }
    most
}

#[test]
fn work_per_loop_turn_is_bounded() {
    let mut w = World::new();
    for g in 10..42 {
        w.toolstack_write(g, 0, &mac(g));
    }
    let mut turns = 0;
    let mut most = poll_until_quiet(&mut w, &mut turns, 10_000);
    for g in 10..42 {
        assert_eq!(w.be_state(g, 0).as_deref(), Some("2"), "guest {g} probed");
        w.frontend_write(g, 0, true);
    }
    most = most.max(poll_until_quiet(&mut w, &mut turns, 20_000));
    for g in 10..42 {
        assert_eq!(w.be_state(g, 0).as_deref(), Some("4"), "guest {g} connected");
    }
    println!(
        "32 vifs attached and connected at once: at most {most} xenstore requests in one loop turn, {turns} turns"
    );
    assert!(most <= 64, "{most} requests in one loop turn");
}

#[test]
fn the_loop_never_waits_for_xenstore() {
    let mut w = world_with(4);
    w.xs.set("/local/domain/11/device/vif/0/state", b"5", 11);
    w.settle();
    w.xs.set("/local/domain/11/device/vif/0/state", b"6", 11);
    w.toolstack_detach(12, 0);
    w.after_grace();
    assert_eq!(w.get(&format!("{BE_ROOT}/12/0")), None, "guest 12's vif removed");
    assert_eq!(w.be_state(11, 0).as_deref(), Some("6"));
    assert_eq!(w.waits.get(), 0, "the loop waited for xenstored");
}
