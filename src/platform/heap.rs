//! The kernel heap (linked_list_allocator over one physical range).

use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hands `range` (identity-mapped RAM owned by nobody else) to the heap.
pub fn init(start: u64, len: u64) {
    // SAFETY: `memory::plan` carved this range out of usable RAM, away from
    // the kernel image, the boot structures and the frame allocator; it is
    // identity-mapped by the boot page tables (below 4 GiB) and used only by
    // the heap from here on. Called once, before any allocation.
    unsafe { HEAP.lock().init(start as usize as *mut u8, len as usize) }
}

/// (used, free) bytes.
pub fn usage() -> (usize, usize) {
    let h = HEAP.lock();
    (h.used(), h.free())
}
