//! Host-test doubles: DMA memory addressed by fake physical addresses, shared
//! between a driver and the simulated device that plays the hardware.
#![forbid(unsafe_code)]

use crate::hal::{DmaRegion, Hal, HalError};
use std::cell::RefCell;
use std::rc::Rc;

#[derive(Default)]
struct ArenaInner {
    regions: Vec<(u64, Vec<u8>)>,
    next: u64,
}

/// Simulated physical memory: regions at fake addresses.
#[derive(Clone, Default)]
pub struct Arena(Rc<RefCell<ArenaInner>>);

impl Arena {
    /// Reads device-side; false when the range is not inside one region.
    pub fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        let a = self.0.borrow();
        for (base, mem) in &a.regions {
            if paddr >= *base && paddr + buf.len() as u64 <= base + mem.len() as u64 {
                let o = (paddr - base) as usize;
                buf.copy_from_slice(&mem[o..o + buf.len()]);
                return true;
            }
        }
        false
    }

    /// Writes device-side; false when the range is not inside one region.
    pub fn write(&self, paddr: u64, data: &[u8]) -> bool {
        let mut a = self.0.borrow_mut();
        for (base, mem) in &mut a.regions {
            if paddr >= *base && paddr + data.len() as u64 <= *base + mem.len() as u64 {
                let o = (paddr - *base) as usize;
                mem[o..o + data.len()].copy_from_slice(data);
                return true;
            }
        }
        false
    }

    pub fn read_u16(&self, paddr: u64) -> u16 {
        let mut b = [0; 2];
        self.read(paddr, &mut b);
        u16::from_le_bytes(b)
    }

    pub fn read_u64(&self, paddr: u64) -> u64 {
        let mut b = [0; 8];
        self.read(paddr, &mut b);
        u64::from_le_bytes(b)
    }
}

/// A region of the arena.
pub struct SimDma {
    arena: Arena,
    base: u64,
    len: usize,
}

impl Drop for SimDma {
    fn drop(&mut self) {
        self.arena.0.borrow_mut().regions.retain(|(b, _)| *b != self.base);
    }
}

impl SimDma {
    fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let a = self.arena.0.borrow();
        let m = a.regions.iter().find(|(b, _)| *b == self.base).map(|(_, m)| m.as_slice()).unwrap_or(&[]);
        f(m)
    }

    fn with_mut<R>(&self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let mut a = self.arena.0.borrow_mut();
        let m = a.regions.iter_mut().find(|(b, _)| *b == self.base).map(|(_, m)| m.as_mut_slice()).unwrap_or(&mut []);
        f(m)
    }
}

macro_rules! rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, off: usize) -> $t {
            const N: usize = core::mem::size_of::<$t>();
            self.with(|m| m.get(off..off + N).map_or(0, |s| <$t>::from_le_bytes(s.try_into().unwrap())))
        }
        fn $write(&self, off: usize, v: $t) {
            const N: usize = core::mem::size_of::<$t>();
            self.with_mut(|m| {
                if let Some(s) = m.get_mut(off..off + N) {
                    s.copy_from_slice(&v.to_le_bytes())
                }
            })
        }
    };
}

impl DmaRegion for SimDma {
    fn paddr(&self) -> u64 {
        self.base
    }
    fn len(&self) -> usize {
        self.len
    }
    rw!(read8, write8, u8);
    rw!(read16, write16, u16);
    rw!(read32, write32, u32);
    rw!(read64, write64, u64);
    fn with_slice<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        self.with(|m| m.get(off..off.checked_add(len)?).map(f))
    }
    fn with_slice_mut<R, F: FnOnce(&mut [u8]) -> R>(&mut self, off: usize, len: usize, f: F) -> Result<R, F> {
        self.with_mut(|m| match off.checked_add(len).and_then(|end| m.get_mut(off..end)) {
            Some(s) => Ok(f(s)),
            None => Err(f),
        })
    }
}

/// A `Hal` over an arena, with a manual clock.
#[derive(Clone)]
pub struct SimHal<R> {
    pub arena: Arena,
    pub now: Rc<RefCell<u64>>,
    _r: core::marker::PhantomData<R>,
}

impl<R> Default for SimHal<R> {
    fn default() -> Self {
        let arena = Arena::default();
        arena.0.borrow_mut().next = 0x10_0000;
        Self { arena, now: Rc::new(RefCell::new(0)), _r: core::marker::PhantomData }
    }
}

impl<R: crate::hal::Regs> Hal for SimHal<R> {
    type Regs = R;
    type Dma = SimDma;
    fn map_regs(&self, paddr: u64, len: u64) -> Result<R, HalError> {
        Err(HalError::MapFailed { paddr, len })
    }
    fn alloc_dma(&self, bytes: usize) -> Result<SimDma, HalError> {
        let len = bytes.div_ceil(4096) * 4096;
        let mut a = self.arena.0.borrow_mut();
        let base = a.next;
        a.next += len as u64 + 4096;
        a.regions.push((base, vec![0; len]));
        Ok(SimDma { arena: self.arena.clone(), base, len })
    }
    fn now_ns(&self) -> u64 {
        *self.now.borrow()
    }
    fn delay_us(&self, us: u64) {
        *self.now.borrow_mut() += us * 1000;
    }
}
