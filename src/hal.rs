//! Seams between the hardware-free core and the platform. The core is
//! generic over these traits; host tests plug fakes in.
#![forbid(unsafe_code)]

/// A monotonic clock.
pub trait Clock {
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
}

/// A page shared with another domain (a ring page): every access is a
/// volatile copy, never a reference, because the peer can change the bytes at
/// any time. Out-of-range accesses read zeroes and drop writes.
pub trait SharedMem {
    /// Size in bytes.
    fn size(&self) -> usize;
    /// Reads a little-endian u32 at `off`.
    fn read_u32(&self, off: usize) -> u32;
    /// Writes a little-endian u32 at `off`.
    fn write_u32(&self, off: usize, v: u32);
    /// Copies bytes out of the page.
    fn read_bytes(&self, off: usize, buf: &mut [u8]);
    /// Copies bytes into the page.
    fn write_bytes(&self, off: usize, data: &[u8]);
    /// Atomically replaces the u16 at `off` with `new` if it equals `old`;
    /// returns the value found.
    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16;
    /// Full memory barrier between our accesses and the peer's.
    fn fence(&self) {
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    }
}

/// A `SharedMem` over plain memory, for host tests and fakes.
#[derive(Debug)]
pub struct HeapPage {
    bytes: spin::Mutex<alloc::vec::Vec<u8>>,
}

impl HeapPage {
    /// A zeroed page of `size` bytes.
    pub fn new(size: usize) -> Self {
        Self { bytes: spin::Mutex::new(alloc::vec![0; size]) }
    }
}

impl SharedMem for HeapPage {
    fn size(&self) -> usize {
        self.bytes.lock().len()
    }

    fn read_u32(&self, off: usize) -> u32 {
        let mut b = [0u8; 4];
        self.read_bytes(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn write_u32(&self, off: usize, v: u32) {
        self.write_bytes(off, &v.to_le_bytes());
    }

    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        let g = self.bytes.lock();
        match off.checked_add(buf.len()).and_then(|end| g.get(off..end)) {
            Some(src) => buf.copy_from_slice(src),
            None => buf.fill(0),
        }
    }

    fn write_bytes(&self, off: usize, data: &[u8]) {
        let mut g = self.bytes.lock();
        if let Some(dst) = off.checked_add(data.len()).and_then(|end| g.get_mut(off..end)) {
            dst.copy_from_slice(data);
        }
    }

    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        let mut g = self.bytes.lock();
        let Some(slot) = off.checked_add(2).and_then(|end| g.get_mut(off..end)) else { return !old };
        let cur = u16::from_le_bytes([slot[0], slot[1]]);
        if cur == old {
            slot.copy_from_slice(&new.to_le_bytes());
        }
        cur
    }
}

/// Grant-table hypercalls (xen/include/public/grant_table.h). Each op carries
/// its own status; the call fails as a whole only when Xen rejects the batch.
pub trait GrantOps {
    /// GNTTABOP_copy.
    fn copy(&self, ops: &mut [crate::xen::abi::GnttabCopy]) -> Result<(), crate::xen::XenError>;
    /// GNTTABOP_map_grant_ref.
    fn map(&self, ops: &mut [crate::xen::abi::GnttabMapGrantRef]) -> Result<(), crate::xen::XenError>;
    /// GNTTABOP_unmap_grant_ref.
    fn unmap(&self, ops: &mut [crate::xen::abi::GnttabUnmapGrantRef]) -> Result<(), crate::xen::XenError>;
}
