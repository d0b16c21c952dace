//! The vif backend's xenbus handshake and teardown paths, with an in-memory
//! xenstore playing the toolstack and the frontend.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod xenbus_common;

use xenbus_common::*;
use xvif::xen::{EvtchnPort, GrantRef};
use xvif::xenbus::backend::{EventChannels, MAX_DEVICES, QueueInfo};

#[test]
fn full_handshake_connects_with_split_channels() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    let be = format!("{BE_ROOT}/5/0");
    assert_eq!(w.be_state(5, 0).as_deref(), Some("2"));
    assert_eq!(w.get(&format!("{be}/hotplug-status")).as_deref(), Some("connected"));
    assert_eq!(w.get(&format!("{be}/feature-sg")).as_deref(), Some("1"));
    assert_eq!(w.get(&format!("{be}/feature-rx-copy")).as_deref(), Some("1"));
    assert_eq!(w.get(&format!("{be}/feature-split-event-channels")).as_deref(), Some("1"));
    assert_eq!(w.get(&format!("{be}/multi-queue-max-queues")).as_deref(), Some("4"));
    assert!(w.host.connected.is_empty());
    w.frontend_connect(5, 0, true);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected.len(), 1);
    let (vid, mac, info) = w.host.connected[0].clone();
    assert_eq!(vid, id(5, 0));
    assert_eq!(mac, [0, 0x16, 0x3e, 0, 0, 5]);
    assert_eq!(
        info.queues,
        vec![QueueInfo {
            tx_ring_ref: GrantRef(8),
            rx_ring_ref: GrantRef(9),
            evtchn: EventChannels::Split { tx: EvtchnPort(7), rx: EvtchnPort(6) }
        }]
    );
    assert!(info.sg && info.gso_tcpv4 && info.gso_tcpv6 && info.ipv6_csum_offload && info.rx_notify);
    assert!(!info.multicast_control);
    assert_eq!(w.be.stats.connects, 1);
}

#[test]
fn single_event_channel_and_two_devices() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.toolstack_add(6, 0, "00:16:3e:00:00:06");
    w.toolstack_add(6, 1, "00:16:3e:00:01:06");
    w.frontend_connect(6, 1, false);
    assert_eq!(w.host.connected.len(), 1);
    assert_eq!(w.host.connected[0].0, id(6, 1));
    assert_eq!(w.host.connected[0].2.queues[0].evtchn, EventChannels::Single(EvtchnPort(5)));
    assert_eq!(w.be_state(6, 1).as_deref(), Some("4"));
    assert_eq!(w.be_state(5, 0).as_deref(), Some("2"));
    assert_eq!(w.be.devices().count(), 3);
}

#[test]
fn guest_reboot_closes_then_reconnects() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    let fep = "/local/domain/5/device/vif/0";
    w.xs.set(&format!("{fep}/state"), b"5", 5);
    w.settle();
    assert_eq!(w.host.disconnected, vec![id(5, 0)]);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("5"));
    w.xs.set(&format!("{fep}/state"), b"6", 5);
    w.settle();
    assert_eq!(w.be_state(5, 0).as_deref(), Some("6"));
    // Still online: the device stays for the rebooted guest.
    assert_eq!(w.be.devices().count(), 1);
    w.xs.set(&format!("{fep}/state"), b"1", 5);
    w.settle();
    assert_eq!(w.be_state(5, 0).as_deref(), Some("2"));
    w.frontend_connect(5, 0, true);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected.len(), 2);
    assert_eq!(w.host.disconnected.len(), 1, "disconnect happens once per connection");
}

#[test]
fn network_detach_closes_and_removes_our_directory() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    // libxl: online=0, then state=5 in the backend dir; waits for 6 and removal.
    let be = w.toolstack_detach(5, 0);
    assert_eq!(w.host.disconnected, vec![id(5, 0)]);
    // State 6 stays visible for the toolstack first, then the directory goes.
    assert_eq!(w.be_state(5, 0).as_deref(), Some("6"));
    w.after_grace();
    assert_eq!(w.get(&be), None, "backend directory removed");
    assert_eq!(w.get(&format!("{BE_ROOT}/5")), None, "empty per-frontend directory removed");
    assert_eq!(w.be.devices().count(), 0);
    assert_eq!(w.be.stats.removed, 1);
    // Attach again later.
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    assert_eq!(w.host.connected.len(), 2);
}

/// libxl reads our `state` when its watch event reaches it, which on a
/// loaded dom0 comes late; a node already removed then fails `xl
/// network-detach`. From that read on it waits at most 10 s
/// (LIBXL_DESTROY_TIMEOUT) for the directory to go.
#[test]
fn a_toolstack_reading_our_state_late_still_finds_it_closed() {
    const TOOLSTACK_LATE_NS: u64 = 1_500_000_000;
    const LIBXL_DESTROY_TIMEOUT_NS: u64 = 10_000_000_000;
    const TICK_NS: u64 = 50_000_000;
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    let be = w.toolstack_detach(5, 0);
    let mut waited = 0;
    w.tick(&mut waited, TOOLSTACK_LATE_NS, TICK_NS, |_| false);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("6"), "state gone before a toolstack {waited} ns late read it");
    w.tick(&mut waited, TOOLSTACK_LATE_NS + LIBXL_DESTROY_TIMEOUT_NS, TICK_NS, |w| w.get(&be).is_none());
    assert_eq!(w.get(&be), None, "directory still there when the toolstack gave up waiting");
}

#[test]
fn destroyed_frontend_vanishes_without_closing() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    // xl destroy: the guest's whole xenstore tree disappears, no Closing.
    w.xs.remove("/local/domain/5");
    w.settle();
    assert_eq!(w.host.disconnected, vec![id(5, 0)]);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("6"));
    // The toolstack then takes us offline and waits for our directory to go.
    let be = format!("{BE_ROOT}/5/0");
    w.xs.set(&format!("{be}/online"), b"0", 0);
    w.settle();
    w.after_grace();
    assert_eq!(w.get(&be), None);
    assert_eq!(w.host.disconnected.len(), 1);
}

#[test]
fn toolstack_removing_the_directory_disconnects() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, false);
    w.xs.remove(&format!("{BE_ROOT}/5"));
    w.settle();
    assert_eq!(w.host.disconnected, vec![id(5, 0)]);
    assert_eq!(w.be.devices().count(), 0);
}

#[test]
fn hostile_backend_entries_fail_only_that_device() {
    let mut w = World::new();
    w.toolstack_add(7, 0, "not-a-mac");
    assert_eq!(w.get(&format!("{BE_ROOT}/7/0/error")).as_deref(), Some("missing or malformed mac"));
    assert_eq!(w.be_state(7, 0).as_deref(), Some("1"), "never offered");
    // frontend-id disagreeing with the path
    w.toolstack_add(8, 0, "00:16:3e:00:00:08");
    w.xs.set(&format!("{BE_ROOT}/9/0/frontend"), b"/local/domain/9/device/vif/0", 0);
    w.xs.set(&format!("{BE_ROOT}/9/0/frontend-id"), b"8", 0);
    w.xs.set(&format!("{BE_ROOT}/9/0/mac"), b"00:16:3e:00:00:09", 0);
    w.xs.set(&format!("{BE_ROOT}/9/0/state"), b"1", 0);
    w.settle();
    assert!(w.get(&format!("{BE_ROOT}/9/0/error")).unwrap().contains("frontend-id"));
    // frontend path pointing into another domain
    w.xs.set(&format!("{BE_ROOT}/10/0/frontend"), b"/local/domain/0/device/vif/0", 0);
    w.xs.set(&format!("{BE_ROOT}/10/0/frontend-id"), b"10", 0);
    w.xs.set(&format!("{BE_ROOT}/10/0/mac"), b"00:16:3e:00:00:0a", 0);
    w.xs.set(&format!("{BE_ROOT}/10/0/state"), b"1", 0);
    w.settle();
    assert!(w.get(&format!("{BE_ROOT}/10/0/error")).unwrap().contains("outside"));
    // Junk directory names are ignored.
    w.xs.set(&format!("{BE_ROOT}/junk/0/state"), b"1", 0);
    w.xs.set(&format!("{BE_ROOT}/11/x/state"), b"1", 0);
    w.settle();
    // The good device still works.
    w.frontend_connect(8, 0, true);
    assert_eq!(w.be_state(8, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected.len(), 1);
}

/// What Linux netfront writes for `n` queues: shared keys at the top
/// level, rings and event channels under `queue-N/`.
fn frontend_connect_queues(w: &mut World, fe: u16, n: u32, skip: Option<(u32, &str)>) {
    let fep = format!("/local/domain/{fe}/device/vif/0");
    for (k, v) in [("request-rx-copy", "1"), ("feature-sg", "1"), ("multi-queue-num-queues", &n.to_string())] {
        w.xs.set(&format!("{fep}/{k}"), v.as_bytes(), fe);
    }
    for q in 0..n {
        for (k, v) in [
            ("tx-ring-ref", 100 + 2 * q),
            ("rx-ring-ref", 101 + 2 * q),
            ("event-channel-tx", 10 + 2 * q),
            ("event-channel-rx", 11 + 2 * q),
        ] {
            if skip != Some((q, k)) {
                w.xs.set(&format!("{fep}/queue-{q}/{k}"), v.to_string().as_bytes(), fe);
            }
        }
    }
    w.xs.set(&format!("{fep}/state"), b"4", fe);
    w.settle();
}

#[test]
fn an_eight_queue_connect_keeps_to_the_per_turn_bound() {
    // The most queues an operator may offer: every queue's five keys are
    // read in one job, which must still fit the bound a loop turn keeps.
    let mut w = World::with_queues(8);
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    frontend_connect_queues(&mut w, 5, 8, None);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    assert_eq!(w.host.connected[0].2.queues.len(), 8);
    // One device alone: each turn is at most one of its jobs, and the loop's
    // bound (REQUESTS_PER_POLL, then one more job) counts on a job's size.
    let job = xvif::xenbus::backend::MAX_JOB_REQUESTS as u64;
    assert!(w.max_requests <= job, "{} requests in one turn, a job's bound is {job}", w.max_requests);
}

#[test]
fn multi_queue_frontend_connects_every_queue() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    frontend_connect_queues(&mut w, 5, 3, None);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("4"));
    let info = &w.host.connected[0].2;
    assert_eq!(info.queues.len(), 3);
    for (q, qi) in info.queues.iter().enumerate() {
        let q = q as u32;
        assert_eq!(qi.tx_ring_ref, GrantRef(100 + 2 * q));
        assert_eq!(qi.rx_ring_ref, GrantRef(101 + 2 * q));
        assert_eq!(qi.evtchn, EventChannels::Split { tx: EvtchnPort(10 + 2 * q), rx: EvtchnPort(11 + 2 * q) });
    }
    assert!(info.sg);
}

#[test]
fn multi_queue_frontend_missing_a_queue_key_fails() {
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    frontend_connect_queues(&mut w, 5, 2, Some((1, "rx-ring-ref")));
    assert!(w.host.connected.is_empty());
    assert_eq!(w.be_state(5, 0).as_deref(), Some("5"));
    assert!(w.get(&format!("{BE_ROOT}/5/0/error")).unwrap().contains("queue-1"));
}

#[test]
fn max_queues_is_configurable() {
    let mut w = World::with_queues(1);
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    assert_eq!(w.get(&format!("{BE_ROOT}/5/0/multi-queue-max-queues")).as_deref(), Some("1"));
    frontend_connect_queues(&mut w, 5, 2, None);
    assert!(w.host.connected.is_empty());
    assert!(w.get(&format!("{BE_ROOT}/5/0/error")).unwrap().contains("2 queues"));
}

#[test]
fn hostile_frontend_entries_fail_the_connect() {
    for (key, value, why) in [
        ("tx-ring-ref", "-1", "ring-ref"),
        ("tx-ring-ref", "99999999999", "ring-ref"),
        ("multi-queue-num-queues", "5", "5 queues"),
        ("multi-queue-num-queues", "0", "0 queues"),
        ("multi-queue-num-queues", "two", "malformed multi-queue"),
        ("request-rx-copy", "0", "rx-copy"),
    ] {
        let mut w = World::new();
        w.toolstack_add(5, 0, "00:16:3e:00:00:05");
        let fep = "/local/domain/5/device/vif/0";
        w.xs.set(&format!("{fep}/{key}"), value.as_bytes(), 5);
        // frontend_connect writes the good values first: override after.
        let mut keys =
            vec![("rx-ring-ref", "9"), ("request-rx-copy", "1"), ("event-channel", "3"), ("tx-ring-ref", "8")];
        keys.retain(|(k, _)| *k != key);
        for (k, v) in keys {
            w.xs.set(&format!("{fep}/{k}"), v.as_bytes(), 5);
        }
        w.xs.set(&format!("{fep}/state"), b"4", 5);
        w.settle();
        assert!(w.host.connected.is_empty(), "{key}={value}");
        assert_eq!(w.be_state(5, 0).as_deref(), Some("5"), "{key}={value}");
        assert!(w.get(&format!("{BE_ROOT}/5/0/error")).unwrap().contains(why), "{key}={value}");
    }
    // Missing event channel.
    let mut w = World::new();
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    let fep = "/local/domain/5/device/vif/0";
    for (k, v) in [("tx-ring-ref", "8"), ("rx-ring-ref", "9"), ("request-rx-copy", "1"), ("state", "4")] {
        w.xs.set(&format!("{fep}/{k}"), v.as_bytes(), 5);
    }
    w.settle();
    assert!(w.get(&format!("{BE_ROOT}/5/0/error")).unwrap().contains("event channel"));
    // Garbage frontend state is ignored.
    w.xs.set(&format!("{fep}/state"), b"banana", 5);
    w.settle();
    assert_eq!(w.be_state(5, 0).as_deref(), Some("5"));
}

#[test]
fn failed_connect_reports_and_closes() {
    let mut w = World::new();
    w.host.fail_connect = true;
    w.toolstack_add(5, 0, "00:16:3e:00:00:05");
    w.frontend_connect(5, 0, true);
    assert_eq!(w.be_state(5, 0).as_deref(), Some("5"));
    assert!(w.get(&format!("{BE_ROOT}/5/0/error")).unwrap().contains("no grant mapping space"));
    assert_eq!(w.be.stats.failed, 1);
}

#[test]
fn number_of_devices_is_bounded() {
    let mut w = World::new();
    for fe in 0..(MAX_DEVICES as u16 + 6) {
        let be = format!("{BE_ROOT}/{}/0", fe + 100);
        for (k, v) in [
            ("frontend", format!("/local/domain/{}/device/vif/0", fe + 100)),
            ("frontend-id", (fe + 100).to_string()),
            ("mac", "00:16:3e:00:00:01".to_string()),
            ("online", "1".to_string()),
            ("state", "1".to_string()),
        ] {
            w.xs.set(&format!("{be}/{k}"), v.as_bytes(), 0);
        }
    }
    w.settle();
    assert_eq!(w.be.devices().count(), MAX_DEVICES);
    assert!(w.be.stats.refused >= 6);
}
