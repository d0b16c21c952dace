//! Physical memory planning and the page-frame allocator.
//!
//! `plan` splits the loader's memory map into one heap range and a list of
//! frame ranges, keeping out the first MiB, the kernel image and anything the
//! caller reserves. `FrameAllocator` hands out 4 KiB frames (single or
//! physically contiguous) for DMA rings, shared pages and page tables.
#![forbid(unsafe_code)]

use crate::bootinfo::{MemRegion, MemType};
use alloc::vec::Vec;
use core::ops::Range;

/// Size of a page frame.
pub const PAGE_SIZE: u64 = 4096;
/// Maximum number of frame ranges tracked.
pub const MAX_RANGES: usize = 32;

/// Errors of memory planning and frame allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemError {
    /// No RAM region can hold the heap.
    NoHeap {
        /// Bytes wanted.
        wanted: u64,
    },
    /// Out of frames.
    OutOfFrames {
        /// Frames wanted.
        wanted: u64,
    },
    /// A frame returned that we never handed out.
    BadFree {
        /// Its address.
        paddr: u64,
    },
}

/// Result of `plan`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Heap range (identity-mapped at boot: below 4 GiB).
    pub heap: Range<u64>,
    /// Page-aligned ranges for the frame allocator.
    pub frames: [Range<u64>; MAX_RANGES],
    /// Number of valid entries in `frames`.
    pub frame_count: usize,
}

impl MemoryPlan {
    /// Frame ranges.
    pub fn frame_ranges(&self) -> &[Range<u64>] {
        self.frames.get(..self.frame_count).unwrap_or(&[])
    }
}

fn align_up(v: u64, a: u64) -> u64 {
    v.checked_add(a - 1).map_or(!(a - 1), |x| x & !(a - 1))
}

fn align_down(v: u64, a: u64) -> u64 {
    v & !(a - 1)
}

/// A fixed-capacity list of ranges (planning runs before the heap exists).
#[derive(Debug, Clone)]
struct RangeList {
    r: [Range<u64>; 2 * MAX_RANGES],
    n: usize,
}

impl RangeList {
    fn new() -> Self {
        Self { r: core::array::from_fn(|_| 0..0), n: 0 }
    }

    fn as_slice(&self) -> &[Range<u64>] {
        self.r.get(..self.n).unwrap_or(&[])
    }

    /// Adds a non-empty range; dropped when full (lost memory, never a crash).
    fn push(&mut self, range: Range<u64>) {
        if range.start < range.end
            && let Some(slot) = self.r.get_mut(self.n)
        {
            *slot = range;
            self.n += 1;
        }
    }

    /// Subtracts `hole` from every range (may split ranges).
    fn subtract(&mut self, hole: &Range<u64>) {
        let old = self.clone();
        self.n = 0;
        for r in old.as_slice() {
            if hole.end <= r.start || hole.start >= r.end {
                self.push(r.clone());
                continue;
            }
            self.push(r.start..hole.start.max(r.start));
            self.push(hole.end.min(r.end)..r.end);
        }
    }

    fn sort(&mut self) {
        let n = self.n;
        if let Some(s) = self.r.get_mut(..n) {
            s.sort_unstable_by_key(|r| r.start);
        }
    }
}

/// Plans heap and frame ranges from the memory map.
///
/// The heap gets half of usable RAM, at least `min_heap` and at most
/// `max_heap`, from the largest usable range below 4 GiB (the boot page tables
/// map only that). Everything else usable becomes frames. Overlapping or
/// absurd memory-map entries are clipped, never trusted. Uses no heap.
pub fn plan(
    memmap: &[MemRegion],
    reserved: &[Range<u64>],
    min_heap: u64,
    max_heap: u64,
) -> Result<MemoryPlan, MemError> {
    let mut usable = RangeList::new();
    for r in memmap.iter().filter(|r| r.kind == MemType::Ram) {
        usable.push(align_up(r.base, PAGE_SIZE)..align_down(r.end(), PAGE_SIZE));
    }
    // Never hand out the first MiB, nor anything the caller reserves, nor any
    // part of a non-RAM region that overlaps RAM (a malformed map).
    usable.subtract(&(0..0x10_0000));
    for r in reserved {
        usable.subtract(&(align_down(r.start, PAGE_SIZE)..align_up(r.end, PAGE_SIZE)));
    }
    for r in memmap.iter().filter(|r| r.kind != MemType::Ram) {
        usable.subtract(&(align_down(r.base, PAGE_SIZE)..align_up(r.end(), PAGE_SIZE)));
    }
    usable.sort();
    // Overlapping RAM entries: keep each byte once.
    let mut clean = RangeList::new();
    for r in usable.as_slice() {
        let mut piece = RangeList::new();
        piece.push(r.clone());
        for done in clean.as_slice() {
            piece.subtract(done);
        }
        for p in piece.as_slice() {
            clean.push(p.clone());
        }
    }
    clean.sort();
    let total: u64 = clean.as_slice().iter().map(|r| r.end - r.start).sum();
    let wanted = align_up((total / 2).clamp(min_heap, max_heap.max(min_heap)), PAGE_SIZE);
    let best = clean
        .as_slice()
        .iter()
        .filter(|r| r.start < 0x1_0000_0000)
        .map(|r| r.start..r.end.min(0x1_0000_0000))
        .max_by_key(|r| r.end - r.start);
    let r = best.ok_or(MemError::NoHeap { wanted })?;
    if r.end - r.start < min_heap {
        return Err(MemError::NoHeap { wanted: min_heap });
    }
    let heap = r.start..r.start + wanted.min(r.end - r.start);
    clean.subtract(&heap);
    let mut frames: [Range<u64>; MAX_RANGES] = core::array::from_fn(|_| 0..0);
    let mut frame_count = 0;
    for (slot, r) in frames.iter_mut().zip(clean.as_slice().iter()) {
        *slot = r.clone();
        frame_count += 1;
    }
    Ok(MemoryPlan { heap, frames, frame_count })
}

/// Statistics of the frame allocator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Frames managed.
    pub total: u64,
    /// Frames currently handed out.
    pub used: u64,
}

/// A 4 KiB page-frame allocator: bump allocation per range plus a free list.
#[derive(Debug, Default)]
pub struct FrameAllocator {
    ranges: Vec<Range<u64>>,
    next: Vec<u64>,
    free: Vec<u64>,
    stats: FrameStats,
}

impl FrameAllocator {
    /// Manages the given page-aligned ranges.
    pub fn new(ranges: &[Range<u64>]) -> Self {
        let ranges: Vec<Range<u64>> = ranges
            .iter()
            .map(|r| align_up(r.start, PAGE_SIZE)..align_down(r.end, PAGE_SIZE))
            .filter(|r| r.start < r.end)
            .collect();
        let total = ranges.iter().map(|r| (r.end - r.start) / PAGE_SIZE).sum();
        let next = ranges.iter().map(|r| r.start).collect();
        Self { ranges, next, free: Vec::new(), stats: FrameStats { total, used: 0 } }
    }

    /// Current statistics.
    pub fn stats(&self) -> FrameStats {
        self.stats
    }

    /// Allocates one frame.
    pub fn alloc(&mut self) -> Result<u64, MemError> {
        if let Some(f) = self.free.pop() {
            self.stats.used += 1;
            return Ok(f);
        }
        self.alloc_contiguous(1, 1)
    }

    /// Allocates `count` physically contiguous frames aligned to `align_frames`
    /// frames (a power of two); returns the first frame's address. Contiguous
    /// runs come only from never-used memory, so ask for them early.
    pub fn alloc_contiguous(&mut self, count: u64, align_frames: u64) -> Result<u64, MemError> {
        let bytes = count.checked_mul(PAGE_SIZE).ok_or(MemError::OutOfFrames { wanted: count })?;
        let align = align_frames.max(1).checked_mul(PAGE_SIZE).ok_or(MemError::OutOfFrames { wanted: count })?;
        if count == 0 || !align.is_power_of_two() {
            return Err(MemError::OutOfFrames { wanted: count });
        }
        for (r, next) in self.ranges.iter().zip(self.next.iter_mut()) {
            let start = align_up(*next, align);
            if let Some(end) = start.checked_add(bytes)
                && end <= r.end
            {
                // Frames skipped for alignment go to the free list.
                let mut skipped = *next;
                while skipped < start {
                    self.free.push(skipped);
                    skipped += PAGE_SIZE;
                }
                *next = end;
                self.stats.used += count;
                return Ok(start);
            }
        }
        Err(MemError::OutOfFrames { wanted: count })
    }

    /// Returns a frame.
    pub fn free(&mut self, paddr: u64) -> Result<(), MemError> {
        let ours = paddr.is_multiple_of(PAGE_SIZE)
            && self.ranges.iter().zip(self.next.iter()).any(|(r, &next)| paddr >= r.start && paddr < next);
        if !ours || self.stats.used == 0 {
            return Err(MemError::BadFree { paddr });
        }
        self.free.push(paddr);
        self.stats.used -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram(base: u64, len: u64) -> MemRegion {
        MemRegion { base, len, kind: MemType::Ram }
    }

    #[test]
    fn plan_keeps_out_low_mib_kernel_and_reserved() {
        let map = [
            ram(0, 0x9_f000),
            MemRegion { base: 0xf_0000, len: 0x1_0000, kind: MemType::Reserved },
            ram(0x10_0000, 0x7f0_0000),
        ];
        let kernel = 0x10_0000..0x30_0000;
        let p = plan(&map, core::slice::from_ref(&kernel), 1 << 20, 64 << 20).unwrap();
        assert!(p.heap.start >= 0x30_0000);
        assert_eq!(p.heap.end - p.heap.start, (0x800_0000 - 0x30_0000) / 2);
        for r in p.frame_ranges() {
            assert!(r.start >= 0x10_0000);
            assert!(r.end <= kernel.start || r.start >= kernel.end);
            assert!(r.end <= p.heap.start || r.start >= p.heap.end);
        }
        let heap = p.heap.end - p.heap.start;
        let frames: u64 = p.frame_ranges().iter().map(|r| r.end - r.start).sum();
        assert_eq!(heap + frames, 0x800_0000 - 0x30_0000);
    }

    #[test]
    fn plan_clips_overlapping_reserved_entries() {
        let map = [ram(0x10_0000, 0x100_0000), MemRegion { base: 0x80_0000, len: 0x1000, kind: MemType::Reserved }];
        let p = plan(&map, &[], 1 << 20, 4 << 20).unwrap();
        let all: Vec<_> = core::iter::once(p.heap.clone()).chain(p.frame_ranges().iter().cloned()).collect();
        assert!(all.iter().all(|r| r.end <= 0x80_0000 || r.start >= 0x80_1000));
    }

    #[test]
    fn plan_without_ram_is_an_error() {
        assert_eq!(plan(&[], &[], 1 << 20, 4 << 20), Err(MemError::NoHeap { wanted: 1 << 20 }));
    }

    #[test]
    fn frames_alloc_free_and_contiguous() {
        let mut fa = FrameAllocator::new(&[0x20_0000..0x20_8000, 0x40_0000..0x50_0000]);
        assert_eq!(fa.stats().total, 8 + 256);
        let a = fa.alloc().unwrap();
        assert_eq!(a, 0x20_0000);
        // 4 frames aligned to 4: skips the first range remainder if needed.
        let c = fa.alloc_contiguous(4, 4).unwrap();
        assert_eq!(c % (4 * PAGE_SIZE), 0);
        assert_eq!(fa.stats().used, 5);
        fa.free(a).unwrap();
        assert_eq!(fa.alloc().unwrap(), a);
        assert_eq!(fa.free(0x99_9000), Err(MemError::BadFree { paddr: 0x99_9000 }));
        assert_eq!(fa.free(a + 1), Err(MemError::BadFree { paddr: a + 1 }));
        assert!(fa.alloc_contiguous(1000, 1).is_err());
        assert!(fa.alloc_contiguous(0, 1).is_err());
        assert!(fa.alloc_contiguous(u64::MAX, 1).is_err());
    }

    #[test]
    fn frames_exhaust_cleanly() {
        let mut fa = FrameAllocator::new(&[0x10_0000..0x10_3000]);
        for _ in 0..3 {
            fa.alloc().unwrap();
        }
        assert_eq!(fa.alloc(), Err(MemError::OutOfFrames { wanted: 1 }));
    }
}
