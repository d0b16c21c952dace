//! Bounds-checked access to a device register window mapped uncached.

use super::paging;
use crate::hal::{HalError, Regs};
use core::ptr;

/// A mapped register window. Accesses outside it, or misaligned ones, read
/// all-ones and drop writes.
#[derive(Debug)]
pub struct Mmio {
    base: u64,
    len: usize,
}

impl Mmio {
    /// Maps `len` bytes at physical `paddr` uncached (works for 64-bit BARs).
    pub fn map(paddr: u64, len: u64) -> Result<Self, HalError> {
        let len_usize = usize::try_from(len).map_err(|_| HalError::MapFailed { paddr, len })?;
        let base = paging::map_mmio(paddr, len).map_err(|_| HalError::MapFailed { paddr, len })?;
        Ok(Self { base, len: len_usize })
    }

    fn addr(&self, off: usize, size: usize) -> Option<usize> {
        (off.checked_add(size)? <= self.len && off.is_multiple_of(size)).then(|| self.base as usize + off)
    }
}

impl Regs for Mmio {
    fn len(&self) -> usize {
        self.len
    }

    fn read32(&self, off: usize) -> u32 {
        let Some(a) = self.addr(off, 4) else { return u32::MAX };
        // SAFETY: `a` is naturally aligned and inside the window that `map`
        // mapped uncached for this device alone; MMIO reads have no effect on
        // Rust-visible memory.
        unsafe { ptr::read_volatile(a as *const u32) }
    }

    fn write32(&self, off: usize, v: u32) {
        let Some(a) = self.addr(off, 4) else { return };
        // SAFETY: as in `read32`; the window maps device registers, not RAM.
        unsafe { ptr::write_volatile(a as *mut u32, v) }
    }

    fn read16(&self, off: usize) -> u16 {
        let Some(a) = self.addr(off, 2) else { return u16::MAX };
        // SAFETY: as in `read32`.
        unsafe { ptr::read_volatile(a as *const u16) }
    }

    fn write16(&self, off: usize, v: u16) {
        let Some(a) = self.addr(off, 2) else { return };
        // SAFETY: as in `write32`.
        unsafe { ptr::write_volatile(a as *mut u16, v) }
    }

    fn read8(&self, off: usize) -> u8 {
        let Some(a) = self.addr(off, 1) else { return u8::MAX };
        // SAFETY: as in `read32`.
        unsafe { ptr::read_volatile(a as *const u8) }
    }

    fn write8(&self, off: usize, v: u8) {
        let Some(a) = self.addr(off, 1) else { return };
        // SAFETY: as in `write32`.
        unsafe { ptr::write_volatile(a as *mut u8, v) }
    }
}
