//! The global page-frame allocator (RAM left over after the heap).

use super::phys;
use crate::memory::{FrameAllocator, FrameStats, MemError, PAGE_SIZE};
use core::ops::Range;
use spin::Mutex;

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);

/// Installs the allocator over `ranges`.
pub fn init(ranges: &[Range<u64>]) {
    *FRAMES.lock() = Some(FrameAllocator::new(ranges));
}

/// Allocates `count` contiguous zeroed frames; returns the physical (= identity
/// virtual) address.
pub fn alloc_zeroed(count: u64) -> Result<u64, MemError> {
    let paddr = {
        let mut g = FRAMES.lock();
        let fa = g.as_mut().ok_or(MemError::OutOfFrames { wanted: count })?;
        if count == 1 { fa.alloc()? } else { fa.alloc_contiguous(count, 1)? }
    };
    phys::zero(paddr, (count * PAGE_SIZE) as usize);
    Ok(paddr)
}

/// Returns frames.
pub fn free(paddr: u64, count: u64) -> Result<(), MemError> {
    let mut g = FRAMES.lock();
    let fa = g.as_mut().ok_or(MemError::BadFree { paddr })?;
    for i in 0..count {
        fa.free(paddr + i * PAGE_SIZE)?;
    }
    Ok(())
}

/// Allocator statistics.
pub fn stats() -> FrameStats {
    FRAMES.lock().as_ref().map(FrameAllocator::stats).unwrap_or_default()
}
