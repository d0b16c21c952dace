//! Isolated segments of the switch, the way a Linux driver domain puts each
//! vif on the bridge its `bridge=` key names: a port joins one segment by
//! name, and frames (unicast, broadcast, multicast, flooding) and MAC
//! learning never cross from one segment to another. A segment exists
//! while it has ports; its id is reused after the last port leaves.
#![forbid(unsafe_code)]

use super::{MAX_PORTS, PortId, PortSet};
use alloc::string::String;
use alloc::vec::Vec;

/// The segment a port is on when nothing names one: the bridge libxl
/// writes for a vif without `bridge=` (`libxl__device_nic_setdefault` in
/// tools/libs/light/libxl_nic.c).
pub const DEFAULT_SEGMENT: &str = "xenbr0";

/// Longest segment name accepted (Linux bridge names are at most 15).
pub const MAX_NAME: usize = 32;

/// A segment's identity inside one switch (an index below [`MAX_PORTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u8);

/// True for a name we accept: 1 to [`MAX_NAME`] characters of
/// `[A-Za-z0-9_.-]` (what Linux accepts for an interface name, minus `/`,
/// `:` and whitespace).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[derive(Debug)]
struct Segment {
    name: String,
    members: PortSet,
}

/// The segments of one switch and their member ports.
#[derive(Debug, Default)]
pub struct Segments {
    slots: Vec<Option<Segment>>,
}

impl Segments {
    /// No segments.
    pub fn new() -> Self {
        Self { slots: Vec::new() }
    }

    /// The id of segment `name`, if it has ports.
    pub fn find(&self, name: &str) -> Option<SegmentId> {
        self.slots.iter().position(|s| s.as_ref().is_some_and(|s| s.name == name)).map(|i| SegmentId(i as u8))
    }

    /// Adds `port` to segment `name`, creating it. None when the name is
    /// invalid or [`MAX_PORTS`] segments exist.
    pub fn join(&mut self, name: &str, port: PortId) -> Option<SegmentId> {
        if !valid_name(name) {
            return None;
        }
        let id = match self.find(name) {
            Some(id) => id,
            None => {
                let idx = match self.slots.iter().position(Option::is_none) {
                    Some(i) => i,
                    None if self.slots.len() < MAX_PORTS => {
                        self.slots.push(None);
                        self.slots.len() - 1
                    }
                    None => return None,
                };
                if let Some(s) = self.slots.get_mut(idx) {
                    *s = Some(Segment { name: String::from(name), members: PortSet::EMPTY });
                }
                SegmentId(idx as u8)
            }
        };
        if let Some(Some(s)) = self.slots.get_mut(usize::from(id.0)) {
            s.members.insert(port);
        }
        Some(id)
    }

    /// Removes `port` from segment `id`; the segment goes with its last port.
    pub fn leave(&mut self, id: SegmentId, port: PortId) {
        if let Some(slot) = self.slots.get_mut(usize::from(id.0)) {
            if let Some(s) = slot.as_mut() {
                s.members.remove(port);
            }
            if slot.as_ref().is_some_and(|s| s.members.is_empty()) {
                *slot = None;
            }
        }
    }

    /// The ports of segment `id` (empty for an unknown id).
    pub fn members(&self, id: SegmentId) -> PortSet {
        self.slots.get(usize::from(id.0)).and_then(Option::as_ref).map_or(PortSet::EMPTY, |s| s.members)
    }

    /// The name of segment `id`.
    pub fn name(&self, id: SegmentId) -> Option<&str> {
        self.slots.get(usize::from(id.0)).and_then(Option::as_ref).map(|s| s.name.as_str())
    }

    /// Segments that have ports: (id, name, members).
    pub fn iter(&self) -> impl Iterator<Item = (SegmentId, &str, PortSet)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (SegmentId(i as u8), s.name.as_str(), s.members)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_leave_and_reuse() {
        let mut s = Segments::new();
        let red = s.join("red", PortId(0)).unwrap();
        assert_eq!(s.join("red", PortId(3)), Some(red));
        let blue = s.join("blue", PortId(1)).unwrap();
        assert_ne!(red, blue);
        assert_eq!(s.members(red).iter().collect::<Vec<_>>(), vec![PortId(0), PortId(3)]);
        assert_eq!(s.name(blue), Some("blue"));
        s.leave(blue, PortId(1));
        assert_eq!(s.find("blue"), None);
        assert_eq!(s.join("green", PortId(1)), Some(blue), "the freed id is reused");
        for bad in ["", "a b", "a/b", "x:1", "\u{e9}", &"x".repeat(MAX_NAME + 1)] {
            assert_eq!(s.join(bad, PortId(2)), None, "{bad:?}");
        }
        assert!(valid_name("xenbr0") && valid_name("br-lan.10"));
    }

    #[test]
    fn bounded() {
        let mut s = Segments::new();
        for i in 0..MAX_PORTS {
            assert!(s.join(&alloc::format!("s{i}"), PortId(i as u8)).is_some());
        }
        assert_eq!(s.join("one-more", PortId(0)), None);
        assert_eq!(s.iter().count(), MAX_PORTS);
    }
}
