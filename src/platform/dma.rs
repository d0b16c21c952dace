//! DMA memory: whole page frames from `frames`, identity-mapped (phys == virt),
//! owned by one driver and returned to the allocator on drop.

use super::frames;
use super::mmio::Window;
use crate::hal::{DmaRegion, HalError};
use crate::memory::PAGE_SIZE;

/// Contiguous zeroed frames shared with a device.
#[derive(Debug)]
pub struct Dma {
    paddr: u64,
    pages: u64,
    win: Window,
}

impl Dma {
    /// Allocates at least `bytes` (rounded up to pages).
    pub fn alloc(bytes: usize) -> Result<Self, HalError> {
        let pages = (bytes.max(1) as u64).div_ceil(PAGE_SIZE);
        let paddr = frames::alloc_zeroed(pages).map_err(|_| HalError::NoDmaMemory(bytes))?;
        // SAFETY: the frames are identity-mapped RAM that the frame allocator
        // handed to this region alone until `drop`; words are accessed only
        // through the window, and buffers are lent as slices only under the
        // `DmaRegion::with_slice` contract (see there).
        let win = unsafe { Window::new(paddr, (pages * PAGE_SIZE) as usize) };
        Ok(Self { paddr, pages, win })
    }

    /// Byte `off..off + len` as an address, when inside the region.
    fn span(&self, off: usize, len: usize) -> Option<usize> {
        (off.checked_add(len)? <= self.win.len()).then(|| self.win.base() + off)
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
            self.win.read(off, 0)
        }

        fn $write(&self, off: usize, v: $t) {
            self.win.write(off, v)
        }
    };
}

impl DmaRegion for Dma {
    fn paddr(&self) -> u64 {
        self.paddr
    }

    fn len(&self) -> usize {
        self.win.len()
    }

    rw!(read8, write8, u8);
    rw!(read16, write16, u16);
    rw!(read32, write32, u32);
    rw!(read64, write64, u64);

    fn with_slice<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let addr = self.span(off, len)?;
        // Order the device's writes (seen via a descriptor's done bit) before
        // the reads of the buffer.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        // SAFETY: the range is inside frames this region owns; the driver
        // lends a buffer only while the device does not own its descriptor
        // (the `DmaRegion::with_slice` contract), so nothing writes it while
        // the shared slice lives.
        let s = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
        Some(f(s))
    }

    fn with_slice_mut<R, F: FnOnce(&mut [u8]) -> R>(&mut self, off: usize, len: usize, f: F) -> Result<R, F> {
        let Some(addr) = self.span(off, len) else { return Err(f) };
        // SAFETY: as in `with_slice`; `&mut self` makes this the only slice
        // into the region.
        let s = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
        let r = f(s);
        // The buffer's contents must be visible before the descriptor that
        // hands it to the device.
        core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
        Ok(r)
    }
}
