//! The per-vif multicast filter driven by `XEN_NETIF_EXTRA_TYPE_MCAST_ADD`/
//! `_DEL` extras (xen/include/public/io/netif.h, "feature-multicast-control"),
//! bounded like Linux's `XEN_NETBK_MCAST_MAX`.
#![forbid(unsafe_code)]

use alloc::vec::Vec;

/// Addresses a frontend may subscribe.
pub const MCAST_MAX: usize = 64;

/// A filter update the frontend asked for that we refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McastError {
    /// Not a group address (I/G bit clear).
    NotMulticast([u8; 6]),
    /// `MCAST_MAX` addresses already subscribed.
    Full,
}

/// A bounded set of multicast addresses.
#[derive(Debug, Clone)]
pub struct McastFilter {
    addrs: Vec<[u8; 6]>,
}

impl Default for McastFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl McastFilter {
    /// An empty filter (its storage is allocated once, here).
    pub fn new() -> Self {
        Self { addrs: Vec::with_capacity(MCAST_MAX) }
    }

    /// Subscribes `addr`; adding a present address is a no-op.
    pub fn add(&mut self, addr: [u8; 6]) -> Result<(), McastError> {
        if addr[0] & 1 == 0 {
            return Err(McastError::NotMulticast(addr));
        }
        if self.addrs.contains(&addr) {
            return Ok(());
        }
        if self.addrs.len() >= MCAST_MAX {
            return Err(McastError::Full);
        }
        self.addrs.push(addr);
        Ok(())
    }

    /// Unsubscribes `addr` (absent addresses are ignored, as in Linux).
    pub fn del(&mut self, addr: [u8; 6]) {
        self.addrs.retain(|a| *a != addr);
    }

    /// True when `addr` is subscribed.
    pub fn contains(&self, addr: &[u8; 6]) -> bool {
        self.addrs.contains(addr)
    }

    /// Subscribed addresses.
    pub fn len(&self) -> usize {
        self.addrs.len()
    }

    /// True when none are subscribed.
    pub fn is_empty(&self) -> bool {
        self.addrs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_del_bounded() {
        let mut f = McastFilter::new();
        let a = [1, 0, 0x5e, 0, 0, 1];
        assert_eq!(f.add([2, 0, 0, 0, 0, 1]), Err(McastError::NotMulticast([2, 0, 0, 0, 0, 1])));
        f.add(a).unwrap();
        f.add(a).unwrap();
        assert_eq!(f.len(), 1);
        assert!(f.contains(&a));
        f.del(a);
        f.del(a);
        assert!(f.is_empty());
        for i in 0..MCAST_MAX {
            f.add([1, 0, 0x5e, 0, 0, i as u8]).unwrap();
        }
        assert_eq!(f.add([1, 0, 0x5e, 0, 1, 0]), Err(McastError::Full));
        assert_eq!(f.len(), MCAST_MAX);
    }
}
