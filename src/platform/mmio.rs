//! Volatile access to memory shared with a device: register windows (BARs,
//! ECAM, the APICs) mapped uncached, and DMA memory. `Window` is the one
//! place that makes `VolatilePtr`s to such memory; everything above it picks
//! a typed pointer by offset or as a `#[repr(C)]` register block, bounds- and
//! alignment-checked, and reads or writes through it without `unsafe`.

use super::paging;
use crate::hal::{HalError, Regs};
use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use volatile::VolatilePtr;

/// A range of device-shared memory, addressed by byte offset.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    base: usize,
    len: usize,
}

impl Window {
    /// A window over `len` bytes at virtual address `base`.
    ///
    /// # Safety
    ///
    /// `base..base + len` must stay mapped while the window (or a copy of
    /// it) exists, and must be memory that Rust code reaches only through
    /// volatile accesses: device registers, or DMA memory whose buffers are
    /// lent as slices only while no volatile access to them is made.
    pub unsafe fn new(base: u64, len: usize) -> Self {
        Self { base: base as usize, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty window.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Virtual address of byte 0.
    pub fn base(&self) -> usize {
        self.base
    }

    /// A volatile pointer to the `T` (a register, or a register block) at
    /// byte offset `off`; None when it is not wholly inside the window or
    /// not aligned for `T`.
    pub fn at<T: Copy>(&self, off: usize) -> Option<VolatilePtr<'_, T>> {
        let end = off.checked_add(size_of::<T>())?;
        if end > self.len || !off.is_multiple_of(align_of::<T>()) {
            return None;
        }
        let ptr = NonNull::new(self.base.checked_add(off)? as *mut T)?;
        // SAFETY: the `T` lies inside the window (checked above) and is
        // aligned (the base is page-aligned, `off` a multiple of T's
        // alignment); `new`'s contract keeps the range mapped and free of
        // Rust references while the pointer, which borrows the window, lives.
        Some(unsafe { VolatilePtr::new(ptr) })
    }

    /// Reads the `T` at `off`; `missing` when `at` refuses the offset.
    pub fn read<T: Copy>(&self, off: usize, missing: T) -> T {
        self.at::<T>(off).map_or(missing, VolatilePtr::read)
    }

    /// Writes the `T` at `off`; dropped when `at` refuses the offset.
    pub fn write<T: Copy>(&self, off: usize, v: T) {
        if let Some(p) = self.at::<T>(off) {
            p.write(v);
        }
    }
}

/// A mapped device register window. Accesses outside it, or misaligned ones,
/// read all-ones and drop writes.
#[derive(Debug)]
pub struct Mmio {
    win: Window,
}

impl Mmio {
    /// Maps `len` bytes at physical `paddr` uncached (works for 64-bit BARs).
    pub fn map(paddr: u64, len: u64) -> Result<Self, HalError> {
        let len_usize = usize::try_from(len).map_err(|_| HalError::MapFailed { paddr, len })?;
        let base = paging::map_mmio(paddr, len).map_err(|_| HalError::MapFailed { paddr, len })?;
        // SAFETY: `map_mmio` mapped the range uncached for this device alone;
        // the mapping is never removed, and device registers are not memory
        // Rust makes references to.
        Ok(Self { win: unsafe { Window::new(base, len_usize) } })
    }

    /// The 32-bit writes (offset, value), in order, kept to be made at
    /// power-off; at most `StopWrites::MAX`, the rest dropped.
    pub fn stop_writes32(&self, writes: &[(usize, u32)]) -> StopWrites {
        StopWrites::new(self.win, writes.iter().copied(), true)
    }

    /// The 8-bit writes, as `stop_writes32`.
    pub fn stop_writes8(&self, writes: &[(usize, u8)]) -> StopWrites {
        StopWrites::new(self.win, writes.iter().map(|&(off, v)| (off, u32::from(v))), false)
    }
}

/// The register writes that stop a device's DMA engines, recorded while
/// its driver runs and made when the kernel powers off.
#[derive(Debug, Clone, Copy)]
pub struct StopWrites {
    win: Window,
    writes: [(usize, u32); StopWrites::MAX],
    n: usize,
    wide: bool,
}

impl StopWrites {
    /// Most writes kept.
    pub const MAX: usize = 4;

    fn new(win: Window, writes: impl Iterator<Item = (usize, u32)>, wide: bool) -> Self {
        let mut w = [(0, 0); Self::MAX];
        let mut n = 0;
        for (d, s) in w.iter_mut().zip(writes) {
            *d = s;
            n += 1;
        }
        Self { win, writes: w, n, wide }
    }

    /// Makes the writes, in order.
    pub fn apply(&self) {
        for &(off, v) in &self.writes[..self.n] {
            if self.wide {
                self.win.write(off, v);
            } else {
                self.win.write(off, v as u8);
            }
        }
    }
}

impl Regs for Mmio {
    fn len(&self) -> usize {
        self.win.len()
    }

    fn read32(&self, off: usize) -> u32 {
        self.win.read(off, u32::MAX)
    }

    fn write32(&self, off: usize, v: u32) {
        self.win.write(off, v)
    }

    fn read16(&self, off: usize) -> u16 {
        self.win.read(off, u16::MAX)
    }

    fn write16(&self, off: usize, v: u16) {
        self.win.write(off, v)
    }

    fn read8(&self, off: usize) -> u8 {
        self.win.read(off, u8::MAX)
    }

    fn write8(&self, off: usize, v: u8) {
        self.win.write(off, v)
    }
}
