//! Safe access to identity-mapped physical memory owned by this kernel or
//! by firmware (ACPI tables, start_info). Never used for guest-granted pages.

use core::ptr;
use core::sync::atomic::{AtomicU64, Ordering};

/// End of the identity map: 4 GiB from the boot page tables, raised by
/// `paging::init` to cover all RAM.
static IDENTITY_LIMIT: AtomicU64 = AtomicU64::new(0x1_0000_0000);
/// Lowest readable address: page 0 is mapped by the boot tables (QEMU puts
/// the PVH memory map there) and unmapped by `paging::init`.
static IDENTITY_FLOOR: AtomicU64 = AtomicU64::new(0);

pub(crate) fn set_identity_limit(limit: u64) {
    IDENTITY_LIMIT.store(limit, Ordering::Relaxed);
    IDENTITY_FLOOR.store(0x1000, Ordering::Relaxed);
}

/// Highest identity-mapped physical address (exclusive).
pub fn identity_limit() -> u64 {
    IDENTITY_LIMIT.load(Ordering::Relaxed)
}

fn in_map(paddr: u64, len: usize) -> bool {
    // Page 0 is unmapped after boot to catch null pointers.
    paddr >= IDENTITY_FLOOR.load(Ordering::Relaxed)
        && paddr.checked_add(len as u64).is_some_and(|end| end <= identity_limit())
}

/// Copies bytes from physical memory; false when outside the identity map.
pub fn read(paddr: u64, buf: &mut [u8]) -> bool {
    if !in_map(paddr, buf.len()) {
        return false;
    }
    for (i, b) in buf.iter_mut().enumerate() {
        // SAFETY: the range was checked to lie inside the identity map, which
        // maps every address below `identity_limit` (and page 0 only while the boot tables map it); volatile byte reads have no alignment requirement and we
        // never form a reference into that memory.
        *b = unsafe { ptr::read_volatile((paddr as usize + i) as *const u8) };
    }
    true
}

/// Reads a little-endian u64 from physical memory.
pub fn read_u64(paddr: u64) -> Option<u64> {
    let mut b = [0u8; 8];
    read(paddr, &mut b).then(|| u64::from_le_bytes(b))
}

/// Fills a page-aligned physical range we own with zeroes.
pub(crate) fn zero(paddr: u64, len: usize) {
    if in_map(paddr, len) {
        // SAFETY: the range is inside the identity map and the caller owns it
        // (a frame just taken from the frame allocator).
        unsafe { ptr::write_bytes(paddr as usize as *mut u8, 0, len) }
    }
}

/// The ACPI reader over the identity map.
pub struct Firmware;

impl crate::acpi::PhysRead for Firmware {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        read(paddr, buf)
    }
}
