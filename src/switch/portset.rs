//! A set of switch ports as a 64-bit mask.
#![forbid(unsafe_code)]

use super::PortId;

/// A set of [`PortId`]s (ids at or above 64 are never members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortSet(pub u64);

fn bit(id: PortId) -> u64 {
    1u64.checked_shl(u32::from(id.0)).unwrap_or(0)
}

impl PortSet {
    /// No ports.
    pub const EMPTY: Self = Self(0);

    /// Just `id`.
    pub fn single(id: PortId) -> Self {
        Self(bit(id))
    }

    /// Adds `id`.
    pub fn insert(&mut self, id: PortId) {
        self.0 |= bit(id);
    }

    /// Removes `id`.
    pub fn remove(&mut self, id: PortId) {
        self.0 &= !bit(id);
    }

    /// True when `id` is a member.
    pub fn contains(&self, id: PortId) -> bool {
        self.0 & bit(id) != 0
    }

    /// Members.
    pub fn len(&self) -> usize {
        self.0.count_ones() as usize
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = PortId> + use<> {
        let mut m = self.0;
        core::iter::from_fn(move || {
            if m == 0 {
                return None;
            }
            let i = m.trailing_zeros();
            m &= m - 1;
            Some(PortId(i as u8))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut s = PortSet::EMPTY;
        s.insert(PortId(0));
        s.insert(PortId(63));
        s.insert(PortId(64)); // out of range: ignored
        s.insert(PortId(5));
        assert_eq!(s.len(), 3);
        assert!(s.contains(PortId(63)) && !s.contains(PortId(64)));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![PortId(0), PortId(5), PortId(63)]);
        s.remove(PortId(5));
        assert_eq!(s.iter().map(|p| p.0).collect::<Vec<_>>(), vec![0, 63]);
        assert!(PortSet::single(PortId(200)).is_empty());
    }
}
