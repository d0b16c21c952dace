//! The toolstack's per-vif keys besides the MAC, through the real xenbus
//! backend: `rate`, `ip` and `bridge` as libxl writes them reach the data
//! plane at connect; a `rate` rewritten while the vif is connected reaches
//! it at once, for one xenstore read; malformed values are handled as
//! documented in `xenbus::params` (bad rate: unlimited; bad ip or bridge:
//! the vif is refused).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod xenbus_common;

use xenbus_common::*;
use xvif::netback::Rate;
use xvif::switch::ipfilter::IpFilter;

const FE: u16 = 5;

fn be(key: &str) -> String {
    format!("{BE_ROOT}/{FE}/0/{key}")
}

/// A vif whose backend directory also holds `extra`, connected.
fn world(extra: &[(&str, &str)]) -> World {
    let mut w = World::new();
    w.toolstack_write(FE, 0, &mac(FE));
    for (k, v) in extra {
        w.xs.set(&be(k), v.as_bytes(), 0);
    }
    w.settle();
    w.frontend_connect(FE, 0, false);
    w
}

#[test]
fn rate_ip_and_bridge_reach_the_data_plane() {
    let w = world(&[("rate", "62500,50000"), ("ip", "10.0.0.2 2001:db8::2"), ("bridge", "red")]);
    assert_eq!(w.be_state(FE, 0).as_deref(), Some("4"));
    let (id_, p) = &w.host.params[0];
    assert_eq!(*id_, id(FE, 0));
    assert_eq!(p.rate, Some(Rate { bytes: 62_500, interval_us: 50_000 }));
    let m = xvif::xenbus::backend::parse_mac(&mac(FE)).unwrap();
    assert_eq!(p.ip, Some(IpFilter::parse(b"10.0.0.2 2001:db8::2", m).unwrap()));
    assert_eq!(p.bridge, "red");
}

#[test]
fn defaults_without_the_keys() {
    let w = world(&[]);
    let p = &w.host.params[0].1;
    assert_eq!((p.rate, p.ip.is_none(), p.bridge.as_str()), (None, true, "xenbr0"));
}

#[test]
fn a_rate_change_while_connected_applies_for_one_read() {
    let mut w = world(&[("rate", "62500,50000")]);
    let before = w.requests();
    w.xs.set(&be("rate"), b"125000,50000", 0);
    w.settle();
    assert_eq!(w.host.rates, vec![(id(FE, 0), Some(Rate { bytes: 125_000, interval_us: 50_000 }))]);
    assert_eq!(w.requests() - before, 1, "one read of the rate key");
    // Unchanged value: nothing to do.
    w.xs.set(&be("rate"), b"125000,50000", 0);
    w.settle();
    assert_eq!(w.host.rates.len(), 1);
    // Malformed: unlimited (Linux netback does the same), and a warning.
    w.xs.set(&be("rate"), b"lots", 0);
    w.settle();
    assert_eq!(w.host.rates.last(), Some(&(id(FE, 0), None)));
    w.xs.set(&be("rate"), b"1250,10000", 0);
    w.settle();
    assert_eq!(w.host.rates.last(), Some(&(id(FE, 0), Some(Rate { bytes: 1250, interval_us: 10_000 }))));
    // Removed: unlimited.
    w.xs.remove(&be("rate"));
    w.settle();
    assert_eq!(w.host.rates.last(), Some(&(id(FE, 0), None)));
    assert_eq!(w.be_state(FE, 0).as_deref(), Some("4"), "the vif stays connected throughout");
    assert_eq!(w.host.disconnected, vec![]);
}

#[test]
fn a_rate_change_before_connect_applies_at_connect() {
    let mut w = World::new();
    w.toolstack_write(FE, 0, &mac(FE));
    w.settle();
    w.xs.set(&be("rate"), b"62500,50000", 0);
    w.settle();
    assert!(w.host.rates.is_empty(), "nothing connected yet");
    w.frontend_connect(FE, 0, false);
    assert_eq!(w.host.params[0].1.rate, Some(Rate { bytes: 62_500, interval_us: 50_000 }));
}

#[test]
fn malformed_values() {
    // A malformed rate leaves the vif unlimited; it still connects.
    for bad in ["", "1", "0,50000", "62500,0", "-5,100", "1,99999999999", "62500,50000,1"] {
        let w = world(&[("rate", bad)]);
        assert_eq!(w.be_state(FE, 0).as_deref(), Some("4"), "rate={bad:?}");
        assert_eq!(w.host.params[0].1.rate, None, "rate={bad:?}");
    }
    // A malformed ip or bridge refuses the vif: anti-spoofing and
    // isolation fail closed.
    for (k, v, why) in [
        ("ip", "10.0.0.300", "malformed ip entry"),
        ("ip", "", "malformed ip"),
        ("ip", "10.0.0.1,10.0.0.2", "malformed ip entry"),
        ("bridge", "red blue", "bad bridge name"),
        ("bridge", "", "bad bridge name"),
        ("bridge", &"b".repeat(33), "bad bridge name"),
    ] {
        let w = world(&[(k, v)]);
        assert!(w.host.connected.is_empty(), "{k}={v:?}");
        assert_ne!(w.be_state(FE, 0).as_deref(), Some("2"), "{k}={v:?}: not advertised");
        let err = w.get(&be("error")).unwrap_or_default();
        assert!(err.contains(why), "{k}={v:?}: {err}");
    }
}
