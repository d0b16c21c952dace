//! The forwarding database on its own: learning, ageing, moves, the bound
//! and eviction order, static entries, port flushes, and a randomized check
//! against a plain model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use std::collections::HashMap;
use switch_common::Rng;
use xvif::switch::PortId;
use xvif::switch::fdb::{Fdb, Learned};
use xvif::switch::segment::SegmentId;

/// The segment these tests learn on.
const SEG: SegmentId = SegmentId(0);

const S: u64 = 1_000_000_000;

fn mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0, b[0], b[1], b[2], b[3]]
}

#[test]
fn learns_refreshes_and_moves() {
    let mut f = Fdb::new(16, 300 * S, 1);
    assert_eq!(f.learn(SEG, mac(1), PortId(1), 0), Learned::New);
    assert_eq!(f.learn(SEG, mac(1), PortId(1), S), Learned::Refreshed);
    assert_eq!(f.lookup(SEG, &mac(1), 2 * S), Some(PortId(1)));
    assert_eq!(f.learn(SEG, mac(1), PortId(4), 3 * S), Learned::Moved(PortId(1)));
    assert_eq!(f.lookup(SEG, &mac(1), 3 * S), Some(PortId(4)));
    assert_eq!(f.lookup(SEG, &mac(2), 3 * S), None);
    assert_eq!(f.stats().moves, 1);
    assert_eq!(f.stats().learned, 1);
    assert_eq!(f.len(), 1);
}

#[test]
fn entries_age_out_unless_refreshed() {
    let mut f = Fdb::new(16, 300 * S, 1);
    f.learn(SEG, mac(1), PortId(1), 0);
    f.learn(SEG, mac(2), PortId(2), 0);
    f.learn(SEG, mac(1), PortId(1), 200 * S);
    assert_eq!(f.lookup(SEG, &mac(2), 299 * S), Some(PortId(2)));
    // 300 s after its last sighting mac(2) is gone; mac(1) was seen at 200 s.
    assert_eq!(f.expire(300 * S), 1);
    assert_eq!(f.lookup(SEG, &mac(2), 300 * S), None);
    assert_eq!(f.lookup(SEG, &mac(1), 499 * S), Some(PortId(1)));
    // Lookup alone ages lazily too.
    assert_eq!(f.lookup(SEG, &mac(1), 500 * S), None);
    assert_eq!(f.stats().aged, 2);
    assert!(f.is_empty());
    // A clock that goes backwards does not age anything.
    f.learn(SEG, mac(3), PortId(1), 1000 * S);
    assert_eq!(f.lookup(SEG, &mac(3), 10 * S), Some(PortId(1)));
}

#[test]
fn full_table_evicts_least_recently_seen() {
    let mut f = Fdb::new(4, 300 * S, 7);
    for i in 0..4 {
        f.learn(SEG, mac(i), PortId(1), u64::from(i) * S);
    }
    // Refresh the oldest: mac(1) is now the least recently seen.
    f.learn(SEG, mac(0), PortId(1), 10 * S);
    assert_eq!(f.learn(SEG, mac(9), PortId(2), 11 * S), Learned::New);
    assert_eq!(f.len(), 4);
    assert_eq!(f.stats().evictions, 1);
    assert_eq!(f.lookup(SEG, &mac(1), 12 * S), None);
    for m in [0, 2, 3, 9] {
        assert!(f.lookup(SEG, &mac(m), 12 * S).is_some(), "mac {m}");
    }
}

#[test]
fn a_flood_of_macs_never_grows_the_table() {
    let mut f = Fdb::new(4096, 300 * S, 42);
    for i in 0..100_000u32 {
        f.learn(SEG, mac(i), PortId((i % 3) as u8), u64::from(i));
        assert!(f.len() <= 4096);
    }
    assert_eq!(f.len(), 4096);
    assert_eq!(f.stats().evictions, 100_000 - 4096);
    // The newest 4096 survive.
    for i in 100_000 - 4096..100_000u32 {
        assert_eq!(f.lookup(SEG, &mac(i), 100_000), Some(PortId((i % 3) as u8)));
    }
    assert_eq!(f.lookup(SEG, &mac(100_000 - 4097), 100_000), None);
}

#[test]
fn static_entries_are_pinned_and_flushes_remove_a_port() {
    let mut f = Fdb::new(4, 300 * S, 1);
    assert!(f.add_static(SEG, mac(7), PortId(3)));
    assert_eq!(f.learn(SEG, mac(7), PortId(0), 0), Learned::StaticElsewhere(PortId(3)));
    assert_eq!(f.stats().static_conflicts, 1);
    assert_eq!(f.learn(SEG, mac(7), PortId(3), 0), Learned::Refreshed);
    // Never aged nor evicted.
    for i in 0..10 {
        f.learn(SEG, mac(100 + i), PortId(1), 0);
    }
    f.expire(10_000 * S);
    assert_eq!(f.lookup(SEG, &mac(7), 10_000 * S), Some(PortId(3)));
    f.learn(SEG, mac(1), PortId(3), 10_000 * S);
    f.learn(SEG, mac(2), PortId(2), 10_000 * S);
    assert_eq!(f.flush_port(PortId(3)), 2);
    assert_eq!(f.lookup(SEG, &mac(7), 10_000 * S), None);
    assert_eq!(f.lookup(SEG, &mac(1), 10_000 * S), None);
    assert_eq!(f.lookup(SEG, &mac(2), 10_000 * S), Some(PortId(2)));
    assert_eq!(f.stats().flushed, 2);
}

#[test]
fn random_operations_match_a_model() {
    let cap = 64;
    let age = 1000u64;
    let mut f = Fdb::new(cap, age, 99);
    // model: mac -> (port, last seen), plus recency order for eviction.
    let mut model: HashMap<[u8; 6], (PortId, u64)> = HashMap::new();
    let mut rng = Rng(0xfdb);
    let mut now = 0u64;
    for _ in 0..200_000 {
        now += rng.below(4);
        // Drop aged entries from the model the way the table does.
        model.retain(|_, (_, seen)| now.saturating_sub(*seen) < age);
        let m = mac(rng.below(150) as u32);
        match rng.below(10) {
            0..=5 => {
                let p = PortId(rng.below(8) as u8);
                if !model.contains_key(&m) && model.len() >= cap {
                    let oldest = *model.iter().min_by_key(|(_, (_, seen))| *seen).unwrap().0;
                    // Ties in last-seen time: the table evicts the least recently touched; resolve
                    // by removing whichever the table no longer has.
                    let victim = if model.values().filter(|(_, s)| *s == model[&oldest].1).count() > 1 {
                        f.learn(SEG, m, p, now);
                        let gone: Vec<_> = model.keys().filter(|k| f.lookup(SEG, k, now).is_none()).copied().collect();
                        assert_eq!(gone.len(), 1);
                        model.remove(&gone[0]);
                        model.insert(m, (p, now));
                        continue;
                    } else {
                        oldest
                    };
                    model.remove(&victim);
                }
                f.learn(SEG, m, p, now);
                model.insert(m, (p, now));
            }
            6..=8 => assert_eq!(f.lookup(SEG, &m, now), model.get(&m).map(|e| e.0), "mac {m:?} at {now}"),
            _ => {
                let p = PortId(rng.below(8) as u8);
                f.flush_port(p);
                model.retain(|_, (q, _)| *q != p);
            }
        }
        assert!(f.len() <= cap);
    }
    f.expire(now);
    assert_eq!(f.len(), model.len());
}

#[test]
fn segments_learn_the_same_mac_independently() {
    let (red, blue) = (SegmentId(0), SegmentId(1));
    let mut f = Fdb::new(16, 300 * S, 3);
    assert_eq!(f.learn(red, mac(1), PortId(1), 0), Learned::New);
    assert_eq!(f.learn(blue, mac(1), PortId(5), 0), Learned::New, "not a move: another segment");
    assert_eq!(f.lookup(red, &mac(1), 1), Some(PortId(1)));
    assert_eq!(f.lookup(blue, &mac(1), 1), Some(PortId(5)));
    assert_eq!(f.lookup(SegmentId(2), &mac(1), 1), None);
    assert_eq!(f.stats().moves, 0);
    // A static entry pins a MAC on its own segment only.
    assert!(f.add_static(red, mac(9), PortId(1)));
    assert_eq!(f.learn(blue, mac(9), PortId(5), 2), Learned::New);
    assert_eq!(f.stats().static_conflicts, 0);
    assert!(f.remove(blue, &mac(1)));
    assert_eq!(f.lookup(red, &mac(1), 3), Some(PortId(1)));
    assert_eq!(f.flush_port(PortId(5)), 1);
    assert_eq!(f.entries().filter(|e| e.0 == red).count(), 2);
}
