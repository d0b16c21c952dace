//! A split virtqueue (virtio 1.0 §2.6) in one DMA region, free of registers.
//!
//! Layout: descriptor table at 0 (16 bytes each), available ring right after
//! it, used ring at the next page. Descriptor ids are fixed to buffer slots by
//! the driver; this module only moves ids between the driver and the device
//! and validates everything the device writes: a used index that runs ahead
//! by more than the queue size, or an id that is out of range or was never
//! posted, is an error carrying the values, never a panic.
//!
//! Ordering: a descriptor and its buffer are written before the avail entry,
//! and the avail entry before the avail index (release fences); the used
//! index is read before the used entry and the buffer (acquire fence).
#![forbid(unsafe_code)]

use crate::hal::DmaRegion;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

bitflags::bitflags! {
    /// Descriptor flags (virtio 1.0 §2.4.5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct DescFlags: u16 {
        /// Chained to `next`.
        const NEXT = 1;
        /// The device writes this buffer.
        const WRITE = 2;
    }

    /// Available ring flags (virtio 1.0 §2.4.7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct AvailFlags: u16 {
        /// No interrupts for used buffers, please.
        const NO_INTERRUPT = 1;
    }
}

/// Largest queue this driver uses.
pub const MAX_SIZE: u16 = 256;

/// Queue errors, with the offending values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Size zero or above `MAX_SIZE`.
    BadSize(u16),
    /// The region cannot hold the rings.
    RegionTooSmall(usize),
    /// The device's used index ran ahead of what was posted.
    ImpossibleUsedIdx {
        /// Used index read.
        used: u16,
        /// Last used index consumed.
        last: u16,
        /// Buffers posted and not returned.
        in_flight: u16,
    },
    /// The device returned an id out of range or not posted.
    BadId(u32),
    /// No free descriptor for a chain.
    Full,
}

/// Bytes of DMA memory a queue of `size` needs.
pub fn region_size(size: u16) -> usize {
    used_offset(size) + 6 + 8 * usize::from(size)
}

fn avail_offset(size: u16) -> usize {
    16 * usize::from(size)
}

fn used_offset(size: u16) -> usize {
    (avail_offset(size) + 6 + 2 * usize::from(size)).div_ceil(4096) * 4096
}

/// One split virtqueue.
pub struct VirtQueue<D> {
    mem: D,
    size: u16,
    avail_idx: u16,
    last_used: u16,
    posted: Vec<bool>,
    in_flight: u16,
}

impl<D: DmaRegion> VirtQueue<D> {
    /// A queue of `size` entries in `mem` (zeroed).
    pub fn new(mem: D, size: u16) -> Result<Self, QueueError> {
        if size == 0 || size > MAX_SIZE {
            return Err(QueueError::BadSize(size));
        }
        if mem.len() < region_size(size) {
            return Err(QueueError::RegionTooSmall(mem.len()));
        }
        Ok(Self { mem, size, avail_idx: 0, last_used: 0, posted: vec![false; usize::from(size)], in_flight: 0 })
    }

    /// Entries.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Buffers owned by the device.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Physical addresses of the descriptor table, available and used rings.
    pub fn addrs(&self) -> (u64, u64, u64) {
        let p = self.mem.paddr();
        (p, p + avail_offset(self.size) as u64, p + used_offset(self.size) as u64)
    }

    /// Sets the available ring's flags.
    pub fn set_avail_flags(&mut self, flags: AvailFlags) {
        self.mem.write16(avail_offset(self.size), flags.bits());
    }

    fn write_desc(&self, id: u16, addr: u64, len: u32, flags: DescFlags, next: u16) {
        let d = 16 * usize::from(id);
        self.mem.write64(d, addr);
        self.mem.write32(d + 8, len);
        self.mem.write16(d + 12, flags.bits());
        self.mem.write16(d + 14, next);
    }

    /// Posts a chain of buffers `(addr, len, device_writes)` using descriptor
    /// ids `ids` (same length); the first id is the chain's head.
    pub fn post(&mut self, ids: &[u16], bufs: &[(u64, u32, bool)]) -> Result<(), QueueError> {
        let Some(&head) = ids.first() else { return Err(QueueError::Full) };
        if ids.len() != bufs.len() {
            return Err(QueueError::Full);
        }
        for &id in ids {
            if id >= self.size {
                return Err(QueueError::BadId(u32::from(id)));
            }
        }
        if self.posted.get(usize::from(head)).copied().unwrap_or(true) {
            return Err(QueueError::Full);
        }
        for (i, (&id, &(addr, len, write))) in ids.iter().zip(bufs).enumerate() {
            let next = ids.get(i + 1).copied();
            let mut flags = DescFlags::empty();
            flags.set(DescFlags::WRITE, write);
            flags.set(DescFlags::NEXT, next.is_some());
            self.write_desc(id, addr, len, flags, next.unwrap_or(0));
        }
        if let Some(p) = self.posted.get_mut(usize::from(head)) {
            *p = true;
        }
        self.in_flight += 1;
        let slot = avail_offset(self.size) + 4 + 2 * usize::from(self.avail_idx % self.size);
        self.mem.write16(slot, head);
        fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem.write16(avail_offset(self.size) + 2, self.avail_idx);
        Ok(())
    }

    /// Posts one buffer.
    pub fn post_one(&mut self, id: u16, addr: u64, len: u32, device_writes: bool) -> Result<(), QueueError> {
        self.post(&[id], &[(addr, len, device_writes)])
    }

    /// Takes the next used entry: (head id, bytes written by the device).
    pub fn pop_used(&mut self) -> Result<Option<(u16, u32)>, QueueError> {
        let used_base = used_offset(self.size);
        let used = self.mem.read16(used_base + 2);
        if used == self.last_used {
            return Ok(None);
        }
        let ahead = used.wrapping_sub(self.last_used);
        if ahead > self.in_flight {
            return Err(QueueError::ImpossibleUsedIdx { used, last: self.last_used, in_flight: self.in_flight });
        }
        fence(Ordering::Acquire);
        let e = used_base + 4 + 8 * usize::from(self.last_used % self.size);
        let id = self.mem.read32(e);
        let len = self.mem.read32(e + 4);
        let idx = usize::try_from(id).ok().filter(|&i| self.posted.get(i).copied().unwrap_or(false));
        let Some(idx) = idx else { return Err(QueueError::BadId(id)) };
        if let Some(p) = self.posted.get_mut(idx) {
            *p = false;
        }
        self.in_flight -= 1;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some((idx as u16, len)))
    }

    /// Forgets all state (after a device reset); the region is zeroed.
    pub fn reset(&mut self) {
        for off in (0..region_size(self.size)).step_by(8) {
            self.mem.write64(off, 0);
        }
        self.avail_idx = 0;
        self.last_used = 0;
        self.posted.iter_mut().for_each(|p| *p = false);
        self.in_flight = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::sim::{Arena, SimDma, SimHal};
    use crate::hal::{Hal, Regs};

    struct NoRegs;
    impl Regs for NoRegs {
        fn len(&self) -> usize {
            0
        }
        fn read32(&self, _: usize) -> u32 {
            0
        }
        fn write32(&self, _: usize, _: u32) {}
        fn read16(&self, _: usize) -> u16 {
            0
        }
        fn write16(&self, _: usize, _: u16) {}
        fn read8(&self, _: usize) -> u8 {
            0
        }
        fn write8(&self, _: usize, _: u8) {}
    }

    type Chain = Vec<(u64, u32, u16)>;

    /// Plays the device side of a split queue over simulated memory.
    struct Device {
        arena: Arena,
        desc: u64,
        avail: u64,
        used: u64,
        size: u16,
        next_avail: u16,
        used_idx: u16,
    }

    impl Device {
        /// Takes the next available chain: (head, [(addr, len, flags)]).
        fn take(&mut self) -> Option<(u16, Chain)> {
            let idx = self.arena.read_u16(self.avail + 2);
            if idx == self.next_avail {
                return None;
            }
            let head = self.arena.read_u16(self.avail + 4 + 2 * u64::from(self.next_avail % self.size));
            self.next_avail = self.next_avail.wrapping_add(1);
            let mut chain = Vec::new();
            let mut id = head;
            for _ in 0..self.size {
                let d = self.desc + 16 * u64::from(id);
                let mut b = [0u8; 16];
                self.arena.read(d, &mut b);
                let flags = u16::from_le_bytes([b[12], b[13]]);
                chain.push((
                    u64::from_le_bytes(b[..8].try_into().unwrap()),
                    u32::from_le_bytes(b[8..12].try_into().unwrap()),
                    flags,
                ));
                if flags & DescFlags::NEXT.bits() == 0 {
                    break;
                }
                id = u16::from_le_bytes([b[14], b[15]]);
            }
            Some((head, chain))
        }

        fn complete(&mut self, id: u32, len: u32) {
            let e = self.used + 4 + 8 * u64::from(self.used_idx % self.size);
            self.arena.write(e, &id.to_le_bytes());
            self.arena.write(e + 4, &len.to_le_bytes());
            self.used_idx = self.used_idx.wrapping_add(1);
            self.arena.write(self.used + 2, &self.used_idx.to_le_bytes());
        }
    }

    fn setup(size: u16) -> (VirtQueue<SimDma>, Device, SimHal<NoRegs>) {
        let hal = SimHal::<NoRegs>::default();
        let q = VirtQueue::new(hal.alloc_dma(region_size(size)).unwrap(), size).unwrap();
        let (desc, avail, used) = q.addrs();
        let dev = Device { arena: hal.arena.clone(), desc, avail, used, size, next_avail: 0, used_idx: 0 };
        (q, dev, hal)
    }

    #[test]
    fn buffers_cycle_through_the_device_across_index_wrap() {
        let (mut q, mut dev, _hal) = setup(8);
        // 70 000 round trips: the 16-bit indices wrap.
        for round in 0..70_000u32 {
            let id = (round % 8) as u16;
            q.post_one(id, 0x1000 * u64::from(id), 2048, true).unwrap();
            let (head, chain) = dev.take().unwrap();
            assert_eq!(head, id);
            assert_eq!(chain, vec![(0x1000 * u64::from(id), 2048, DescFlags::WRITE.bits())]);
            dev.complete(u32::from(head), round % 2000);
            assert_eq!(q.pop_used().unwrap(), Some((id, round % 2000)));
            assert_eq!(q.pop_used().unwrap(), None);
        }
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn chains_are_linked() {
        let (mut q, mut dev, _hal) = setup(16);
        q.post(&[3, 4, 5], &[(0xa000, 2, false), (0xb000, 1, false), (0xc000, 1, true)]).unwrap();
        let (head, chain) = dev.take().unwrap();
        assert_eq!(head, 3);
        let (next, write) = (DescFlags::NEXT.bits(), DescFlags::WRITE.bits());
        assert_eq!(chain, vec![(0xa000, 2, next), (0xb000, 1, next), (0xc000, 1, write)]);
        // The same head cannot be posted twice while in flight.
        assert_eq!(q.post_one(3, 0, 1, false), Err(QueueError::Full));
        assert_eq!(q.post_one(16, 0, 1, false), Err(QueueError::BadId(16)));
    }

    #[test]
    fn hostile_used_ring_is_an_error_not_a_panic() {
        let (mut q, mut dev, _hal) = setup(8);
        q.post_one(1, 0x1000, 64, true).unwrap();
        let _ = dev.take();
        // An id never posted.
        dev.complete(5, 10);
        assert_eq!(q.pop_used(), Err(QueueError::BadId(5)));
        // An id far out of range.
        let (mut q, mut dev, _hal) = setup(8);
        q.post_one(1, 0x1000, 64, true).unwrap();
        dev.complete(0xffff_ffff, 10);
        assert_eq!(q.pop_used(), Err(QueueError::BadId(0xffff_ffff)));
        // A used index running ahead of what was posted.
        let (mut q, dev, _hal) = setup(8);
        q.post_one(1, 0x1000, 64, true).unwrap();
        dev.arena.write(dev.used + 2, &200u16.to_le_bytes());
        assert_eq!(q.pop_used(), Err(QueueError::ImpossibleUsedIdx { used: 200, last: 0, in_flight: 1 }));
    }
}
