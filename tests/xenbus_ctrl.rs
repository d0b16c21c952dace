//! The control ring in the xenbus handshake (netif.h "Control ring"; Linux
//! xen-netback/xenbus.c `connect_ctrl_ring`): we advertise
//! `feature-ctrl-ring`, a frontend may publish `ctrl-ring-ref` with
//! `event-channel-ctrl`, and a half-published or malformed control ring
//! fails only that vif.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod xenbus_common;

use xenbus_common::*;
use xvif::xen::{EvtchnPort, GrantRef};
use xvif::xenbus::backend::CtrlInfo;

const FE: &str = "/local/domain/5/device/vif/0";

/// A frontend that also writes `extra` before going Connected.
fn connect_with(extra: &[(&str, &str)]) -> World {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    for (k, v) in extra {
        w.xs.set(&format!("{FE}/{k}"), v.as_bytes(), 5);
    }
    w.frontend_connect(5, 0, true);
    w
}

#[test]
fn the_backend_offers_a_control_ring() {
    let w = connect_with(&[]);
    assert_eq!(w.get(&format!("{BE_ROOT}/5/0/feature-ctrl-ring")).as_deref(), Some("1"));
    // A frontend without one connects as before.
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected[0].2.ctrl, None);
}

#[test]
fn a_published_control_ring_reaches_the_data_plane() {
    let w = connect_with(&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "12")]);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    let info = &w.host.connected[0].2;
    assert_eq!(info.ctrl, Some(CtrlInfo { ring_ref: GrantRef(77), evtchn: EvtchnPort(12) }));
    assert_eq!(info.queues.len(), 1, "the data rings are unchanged");
    // An event channel alone is no control ring (Linux reads the ring
    // reference first).
    let w = connect_with(&[("event-channel-ctrl", "12")]);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected[0].2.ctrl, None);
}

#[test]
fn a_half_published_or_malformed_control_ring_fails_the_vif() {
    for (keys, why) in [
        (&[("ctrl-ring-ref", "77")][..], "event-channel-ctrl"),
        (&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "x")][..], "event-channel-ctrl"),
        (&[("ctrl-ring-ref", "77"), ("event-channel-ctrl", "4294967296")][..], "event-channel-ctrl"),
        (&[("ctrl-ring-ref", "-1"), ("event-channel-ctrl", "12")][..], "ctrl-ring-ref"),
        (&[("ctrl-ring-ref", ""), ("event-channel-ctrl", "12")][..], "ctrl-ring-ref"),
    ] {
        let w = connect_with(keys);
        assert!(w.host.connected.is_empty(), "{keys:?}");
        assert_eq!(w.be_state(5, 0).as_deref(), Some("5"), "{keys:?}");
        let err = w.get(&format!("{BE_ROOT}/5/0/error")).unwrap();
        assert!(err.contains(why), "{keys:?}: {err}");
    }
    // The same frontend, fixed, connects after closing.
    let mut w = connect_with(&[("ctrl-ring-ref", "77")]);
    w.xs.set(&format!("{FE}/state"), b"6", 5);
    w.settle();
    w.xs.set(&format!("{FE}/state"), b"1", 5);
    w.settle();
    assert_eq!(w.be_state(5, 0).as_deref(), Some("2"));
    w.xs.set(&format!("{FE}/event-channel-ctrl"), b"13", 5);
    w.frontend_connect(5, 0, true);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected[0].2.ctrl.map(|c| c.evtchn), Some(EvtchnPort(13)));
}
