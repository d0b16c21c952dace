//! DMA memory: whole page frames from `frames`, identity-mapped (phys == virt),
//! owned by one driver and returned to the allocator on drop.

use super::frames;
use crate::hal::{DmaRegion, HalError};
use crate::memory::PAGE_SIZE;
use core::ptr;

/// Contiguous zeroed frames shared with a device.
#[derive(Debug)]
pub struct Dma {
    paddr: u64,
    pages: u64,
    len: usize,
}

impl Dma {
    /// Allocates at least `bytes` (rounded up to pages).
    pub fn alloc(bytes: usize) -> Result<Self, HalError> {
        let pages = (bytes.max(1) as u64).div_ceil(PAGE_SIZE);
        let paddr = frames::alloc_zeroed(pages).map_err(|_| HalError::NoDmaMemory(bytes))?;
        Ok(Self { paddr, pages, len: (pages * PAGE_SIZE) as usize })
    }

    fn addr(&self, off: usize, size: usize) -> Option<usize> {
        (off.checked_add(size)? <= self.len && off.is_multiple_of(size)).then(|| self.paddr as usize + off)
    }
}

impl Drop for Dma {
    fn drop(&mut self) {
        // A driver drops its regions only after resetting its device, so no
        // DMA can target them any more.
        let _ = frames::free(self.paddr, self.pages);
    }
}

macro_rules! rw {
    ($read:ident, $write:ident, $t:ty) => {
        fn $read(&self, off: usize) -> $t {
            let Some(a) = self.addr(off, core::mem::size_of::<$t>()) else { return 0 };
            // SAFETY: `a` is aligned and inside frames this region owns
            // (identity-mapped RAM from the frame allocator, handed to no one
            // else); volatile because the device may write it concurrently.
            unsafe { ptr::read_volatile(a as *const $t) }
        }

        fn $write(&self, off: usize, v: $t) {
            let Some(a) = self.addr(off, core::mem::size_of::<$t>()) else { return };
            // SAFETY: as for the read; no Rust reference to this memory is
            // live while a word is written (slices are only lent in closures
            // that take `&mut self`, or `&self` for reads of owned buffers).
            unsafe { ptr::write_volatile(a as *mut $t, v) }
        }
    };
}

impl DmaRegion for Dma {
    fn paddr(&self) -> u64 {
        self.paddr
    }

    fn len(&self) -> usize {
        self.len
    }

    rw!(read8, write8, u8);
    rw!(read16, write16, u16);
    rw!(read32, write32, u32);
    rw!(read64, write64, u64);

    fn with_slice<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let end = off.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // Order the device's writes (seen via a descriptor's done bit) before
        // the reads of the buffer.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        // SAFETY: the range is inside frames this region owns; the driver
        // lends a buffer only while the device does not own its descriptor
        // (the `DmaRegion::with_slice` contract), so nothing writes it while
        // the shared slice lives.
        let s = unsafe { core::slice::from_raw_parts((self.paddr as usize + off) as *const u8, len) };
        Some(f(s))
    }

    fn with_slice_mut<R, F: FnOnce(&mut [u8]) -> R>(&mut self, off: usize, len: usize, f: F) -> Result<R, F> {
        if off.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(f);
        }
        // SAFETY: as in `with_slice`; `&mut self` makes this the only slice
        // into the region.
        let s = unsafe { core::slice::from_raw_parts_mut((self.paddr as usize + off) as *mut u8, len) };
        let r = f(s);
        // The buffer's contents must be visible before the descriptor that
        // hands it to the device.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        Ok(r)
    }
}
