//! Page tables: an identity map of all RAM (and the first 4 GiB) plus a
//! window where MMIO anywhere in the physical address space is mapped
//! uncached. Page 0 and the stack guard pages stay unmapped.
//!
//! The root is kept in `ROOT`; CR3 is written, never read.

use super::{cpu, frames, phys};
use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const PWT: u64 = 1 << 3;
const PCD: u64 = 1 << 4;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;

/// Virtual base of the MMIO window (PML4 slot 254, far above any RAM).
const MMIO_BASE: u64 = 0x0000_7f00_0000_0000;
/// Size of the MMIO window.
const MMIO_SIZE: u64 = 1 << 39;
/// Largest physical address bits we accept (architectural maximum).
const MAX_PHYS: u64 = 1 << 52;

static ROOT: AtomicU64 = AtomicU64::new(0);
static FOREIGN_BASE: AtomicU64 = AtomicU64::new(0);
static FOREIGN_LEN: AtomicU64 = AtomicU64::new(0);
static MMIO_NEXT: Mutex<u64> = Mutex::new(MMIO_BASE);

/// Paging errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// No frame for a page table.
    OutOfFrames,
    /// Physical range invalid.
    BadRange {
        /// Start.
        paddr: u64,
        /// Length.
        len: u64,
    },
    /// MMIO window full.
    WindowFull,
}

fn new_table() -> Result<u64, MapError> {
    let f = frames::alloc_zeroed(1).map_err(|_| MapError::OutOfFrames)?;
    Ok(f)
}

fn entry_ptr(table: u64, index: u64) -> *mut u64 {
    (table + index * 8) as usize as *mut u64
}

fn read_entry(table: u64, index: u64) -> u64 {
    // SAFETY: `table` is a page-table frame we allocated from identity-mapped
    // RAM and `index` < 512, so the entry lies inside that frame.
    unsafe { ptr::read_volatile(entry_ptr(table, index & 511)) }
}

fn write_entry(table: u64, index: u64, value: u64) {
    // SAFETY: as in `read_entry`; page tables are only modified with
    // interrupts off or before they are live (single CPU).
    unsafe { ptr::write_volatile(entry_ptr(table, index & 511), value) }
}

/// Returns the next-level table of `table[index]`, creating it if absent.
fn next_table(table: u64, index: u64) -> Result<u64, MapError> {
    let e = read_entry(table, index);
    if e & P != 0 {
        return Ok(e & ADDR_MASK);
    }
    let t = new_table()?;
    write_entry(table, index, t | P | RW);
    Ok(t)
}

fn idx(va: u64, level: u32) -> u64 {
    (va >> (12 + 9 * level)) & 511
}

/// Builds the kernel's page tables and switches to them.
///
/// `holes` are 4 KiB pages left unmapped (stack guards); page 0 is always a hole.
/// `foreign` bytes of guest-physical space above everything else are mapped
/// too but are not RAM: under Xen, peers' granted pages are mapped there.
pub fn init(ram_end: u64, holes: &[u64], foreign: u64) -> Result<(), MapError> {
    let ram_limit =
        ram_end.max(0x1_0000_0000).checked_add((1 << 30) - 1).ok_or(MapError::BadRange { paddr: 0, len: ram_end })?
            & !((1 << 30) - 1);
    let foreign = foreign.next_multiple_of(1 << 21);
    let limit = ram_limit + foreign;
    if limit > MMIO_BASE {
        return Err(MapError::BadRange { paddr: 0, len: ram_end });
    }
    let pml4 = new_table()?;
    let mut va = 0u64;
    while va < limit {
        let pdpt = next_table(pml4, idx(va, 3))?;
        let pd = next_table(pdpt, idx(va, 2))?;
        let needs_4k = va == 0 || holes.iter().any(|&h| h & !0x1f_ffff == va);
        if needs_4k {
            let pt = new_table()?;
            for i in 0..512u64 {
                let page = va + i * 4096;
                let hole = page == 0 || holes.contains(&page);
                if !hole {
                    write_entry(pt, i, page | P | RW);
                }
            }
            write_entry(pd, idx(va, 1), pt | P | RW);
        } else {
            write_entry(pd, idx(va, 1), va | P | RW | PS);
        }
        va += 1 << 21;
    }
    ROOT.store(pml4, Ordering::Release);
    // CR4: PAE | PGE is not used (no global pages); keep PAE only, absolute.
    cpu::write_cr4(1 << 5);
    cpu::write_cr3(pml4);
    phys::set_identity_limit(limit);
    FOREIGN_BASE.store(ram_limit, Ordering::Relaxed);
    FOREIGN_LEN.store(foreign, Ordering::Relaxed);
    Ok(())
}

/// Guest-physical range reserved for mapping other domains' grants.
pub fn foreign_window() -> core::ops::Range<u64> {
    let b = FOREIGN_BASE.load(Ordering::Relaxed);
    b..b + FOREIGN_LEN.load(Ordering::Relaxed)
}

/// Maps `len` bytes of MMIO at physical `paddr` uncached and non-executable;
/// returns the virtual address of `paddr`.
pub fn map_mmio(paddr: u64, len: u64) -> Result<u64, MapError> {
    let root = ROOT.load(Ordering::Acquire);
    let end = paddr.checked_add(len).filter(|&e| e <= MAX_PHYS && len > 0);
    let Some(end) = end else { return Err(MapError::BadRange { paddr, len }) };
    if root == 0 {
        return Err(MapError::BadRange { paddr, len });
    }
    let first = paddr & !0xfff;
    let pages = (end - first).div_ceil(4096);
    let mut next = MMIO_NEXT.lock();
    let base = *next;
    if base + pages * 4096 > MMIO_BASE + MMIO_SIZE {
        return Err(MapError::WindowFull);
    }
    for i in 0..pages {
        let va = base + i * 4096;
        let pdpt = next_table(root, idx(va, 3))?;
        let pd = next_table(pdpt, idx(va, 2))?;
        let pt = next_table(pd, idx(va, 1))?;
        write_entry(pt, idx(va, 0), (first + i * 4096) | P | RW | PWT | PCD | NX);
        cpu::invlpg(va);
    }
    // Leave an unmapped page between windows to catch overruns.
    *next = base + (pages + 1) * 4096;
    Ok(base + (paddr - first))
}
