//! Seams between the hardware-free core and the platform. The core is
//! generic over these traits; host tests plug fakes in.
#![forbid(unsafe_code)]

use bitflags::Flags;

/// A monotonic clock.
pub trait Clock {
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
}

/// A page shared with another domain (a ring page): every access is a
/// volatile copy, never a reference, because the peer can change the bytes at
/// any time. Out-of-range accesses read zeroes and drop writes.
///
/// Ring indices (`req_prod`, `rsp_prod`, the xenstore and console indices)
/// go through `read_u32`/`write_u32`, never through the byte copies: the peer
/// moves an index while we read it, and an index assembled from separate
/// byte reads can mix old and new bytes (0x1FE moving to 0x201 read as
/// 0x2FE), just as a byte-wise store shows the peer values we never wrote.
/// There is deliberately no default built from `read_bytes`.
pub trait SharedMem {
    /// Size in bytes.
    fn size(&self) -> usize;
    /// Reads the little-endian u32 at `off` as ONE access: the value is one
    /// the peer actually stored, never a mix of two. `off` must be 4-aligned
    /// and inside the page; otherwise the read returns 0 (like any
    /// out-of-range access) and nothing is touched.
    fn read_u32(&self, off: usize) -> u32;
    /// Writes the little-endian u32 at `off` as ONE access: the peer sees the
    /// old or the new value, nothing in between. A misaligned or out-of-range
    /// `off` drops the write.
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

impl Clone for HeapPage {
    /// A page holding a copy of the bytes.
    fn clone(&self) -> Self {
        Self { bytes: spin::Mutex::new(self.bytes.lock().clone()) }
    }
}

/// The byte range of the u32 at `off`, when `off` is 4-aligned (the
/// `SharedMem::read_u32` contract; range checks are the caller's).
fn word(off: usize) -> Option<core::ops::Range<usize>> {
    if !off.is_multiple_of(4) {
        return None;
    }
    Some(off..off.checked_add(4)?)
}

impl SharedMem for HeapPage {
    fn size(&self) -> usize {
        self.bytes.lock().len()
    }

    fn read_u32(&self, off: usize) -> u32 {
        let g = self.bytes.lock();
        match word(off).and_then(|r| g.get(r)) {
            Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            None => 0,
        }
    }

    fn write_u32(&self, off: usize, v: u32) {
        let mut g = self.bytes.lock();
        if let Some(dst) = word(off).and_then(|r| g.get_mut(r)) {
            dst.copy_from_slice(&v.to_le_bytes());
        }
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

/// A device register window (a BAR mapped uncached, or a simulated device).
///
/// Accesses outside the window read as all-ones (like a missing device) and
/// writes there are dropped: a bad offset computed from device data can never
/// touch memory outside the window.
pub trait Regs {
    /// Window length in bytes.
    fn len(&self) -> usize;
    /// True for an empty window.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// 32-bit read at byte offset `off`.
    fn read32(&self, off: usize) -> u32;
    /// 32-bit write.
    fn write32(&self, off: usize, v: u32);
    /// 16-bit read.
    fn read16(&self, off: usize) -> u16;
    /// 16-bit write.
    fn write16(&self, off: usize, v: u16);
    /// 8-bit read.
    fn read8(&self, off: usize) -> u8;
    /// 8-bit write.
    fn write8(&self, off: usize, v: u8);
    /// 64-bit write as two 32-bit writes, low half first.
    fn write64(&self, off: usize, v: u64) {
        self.write32(off, v as u32);
        self.write32(off + 4, (v >> 32) as u32);
    }
    /// Reads the register at `off` as the bit set `F`, in one access as wide
    /// as `F`'s bits: an 8-bit register's flags cannot be read 32 bits wide.
    fn flags<F: Flags>(&self, off: usize) -> F
    where
        F::Bits: RegWidth,
    {
        F::from_bits_retain(F::Bits::read(self, off))
    }
    /// Writes the bit set `v` (every bit of it, named or not) to `off`.
    fn set_flags<F: Flags>(&self, off: usize, v: F)
    where
        F::Bits: RegWidth,
    {
        v.bits().write(self, off)
    }
}

/// An access width of `Regs`: the integer type a register's bit set is made of.
pub trait RegWidth: bitflags::Bits {
    /// One read of this width.
    fn read<R: Regs + ?Sized>(regs: &R, off: usize) -> Self;
    /// One write of this width.
    fn write<R: Regs + ?Sized>(self, regs: &R, off: usize);
}

macro_rules! reg_width {
    ($t:ty, $read:ident, $write:ident) => {
        impl RegWidth for $t {
            fn read<R: Regs + ?Sized>(regs: &R, off: usize) -> Self {
                regs.$read(off)
            }
            fn write<R: Regs + ?Sized>(self, regs: &R, off: usize) {
                regs.$write(off, self)
            }
        }
    };
}
reg_width!(u8, read8, write8);
reg_width!(u16, read16, write16);
reg_width!(u32, read32, write32);

/// A block of memory shared with a device (descriptor rings, packet buffers).
///
/// Owned by the kernel; identity-mapped on the target (`paddr` is what the
/// device is told). Word accesses are volatile because the device writes
/// concurrently. Out-of-range accesses read zero and are dropped; the slice
/// lenders return `None`.
pub trait DmaRegion {
    /// Device-visible (physical) address of byte 0.
    fn paddr(&self) -> u64;
    /// Length in bytes.
    fn len(&self) -> usize;
    /// True for an empty region.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Volatile 16-bit read.
    fn read16(&self, off: usize) -> u16;
    /// Volatile 32-bit read.
    fn read32(&self, off: usize) -> u32;
    /// Volatile 64-bit read.
    fn read64(&self, off: usize) -> u64;
    /// Volatile 16-bit write.
    fn write16(&self, off: usize, v: u16);
    /// Volatile 32-bit write.
    fn write32(&self, off: usize, v: u32);
    /// Volatile 64-bit write.
    fn write64(&self, off: usize, v: u64);
    /// Volatile byte read.
    fn read8(&self, off: usize) -> u8;
    /// Volatile byte write.
    fn write8(&self, off: usize, v: u8);
    /// Lends `len` bytes at `off` to `f`. The caller guarantees the device
    /// does not own that range (its descriptor was returned or never posted).
    fn with_slice<R>(&self, off: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// As `with_slice`, writable; gives `f` back when the range is outside the region.
    fn with_slice_mut<R, F: FnOnce(&mut [u8]) -> R>(&mut self, off: usize, len: usize, f: F) -> Result<R, F>;
}

/// A PCI function address (bus/device/function).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus.
    pub bus: u8,
    /// Device (0..32).
    pub dev: u8,
    /// Function (0..8).
    pub func: u8,
}

impl core::fmt::Display for Bdf {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// PCI configuration space access (port I/O or ECAM).
pub trait PciConfig {
    /// Reads the aligned dword at `off` (0..4096; legacy port I/O serves 0..256).
    fn read32(&self, bdf: Bdf, off: u16) -> u32;
    /// Writes the aligned dword at `off`.
    fn write32(&self, bdf: Bdf, off: u16, v: u32);
    /// 16-bit read (from the containing dword).
    fn read16(&self, bdf: Bdf, off: u16) -> u16 {
        (self.read32(bdf, off & !3) >> ((off & 2) * 8)) as u16
    }
    /// 8-bit read.
    fn read8(&self, bdf: Bdf, off: u16) -> u8 {
        (self.read32(bdf, off & !3) >> ((off & 3) * 8)) as u8
    }
    /// 16-bit read-modify-write of the containing dword.
    fn write16(&self, bdf: Bdf, off: u16, v: u16) {
        let shift = (off & 2) * 8;
        let old = self.read32(bdf, off & !3);
        self.write32(bdf, off & !3, (old & !(0xffff << shift)) | (u32::from(v) << shift));
    }
}

/// Why the platform could not provide a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalError {
    /// No memory for a DMA region of this many bytes.
    NoDmaMemory(usize),
    /// A BAR could not be mapped.
    MapFailed {
        /// Physical address.
        paddr: u64,
        /// Length.
        len: u64,
    },
}

/// What drivers need from the platform: register windows, DMA memory, time.
pub trait Hal {
    /// Register window type.
    type Regs: Regs;
    /// DMA region type.
    type Dma: DmaRegion;
    /// Maps `len` bytes of device memory at physical `paddr`.
    fn map_regs(&self, paddr: u64, len: u64) -> Result<Self::Regs, HalError>;
    /// Allocates zeroed, physically contiguous DMA memory (whole pages).
    fn alloc_dma(&self, bytes: usize) -> Result<Self::Dma, HalError>;
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
    /// Busy-waits about `us` microseconds.
    fn delay_us(&self, us: u64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_page_words_are_aligned_and_bounded() {
        let p = HeapPage::new(16);
        p.write_u32(4, 0x0403_0201);
        assert_eq!(p.read_u32(4), 0x0403_0201);
        let mut b = [0u8; 4];
        p.read_bytes(4, &mut b);
        assert_eq!(b, [1, 2, 3, 4], "little-endian");
        // Misaligned or out of range: reads 0, writes are dropped.
        assert_eq!(p.read_u32(5), 0);
        p.write_u32(6, u32::MAX);
        assert_eq!(p.read_u32(4), 0x0403_0201);
        assert_eq!(p.read_u32(16), 0);
        p.write_u32(16, 1);
        assert_eq!(p.read_u32(usize::MAX - 3), 0);
        p.write_u32(usize::MAX - 3, 1);
        let mut all = [0u8; 16];
        p.read_bytes(0, &mut all);
        assert_eq!(all, [0, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    bitflags::bitflags! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        struct Byte: u8 {
            const A = 1;
            const _ = !0;
        }

        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        struct Word: u32 {
            const B = 1 << 31;
        }
    }

    /// Records each access as (width in bytes, offset, value written).
    #[derive(Default)]
    struct Recorder(core::cell::RefCell<alloc::vec::Vec<(usize, usize, Option<u32>)>>);

    impl Regs for Recorder {
        fn len(&self) -> usize {
            16
        }
        fn read32(&self, off: usize) -> u32 {
            self.0.borrow_mut().push((4, off, None));
            u32::MAX
        }
        fn write32(&self, off: usize, v: u32) {
            self.0.borrow_mut().push((4, off, Some(v)));
        }
        fn read16(&self, off: usize) -> u16 {
            self.0.borrow_mut().push((2, off, None));
            u16::MAX
        }
        fn write16(&self, off: usize, v: u16) {
            self.0.borrow_mut().push((2, off, Some(v.into())));
        }
        fn read8(&self, off: usize) -> u8 {
            self.0.borrow_mut().push((1, off, None));
            0x81
        }
        fn write8(&self, off: usize, v: u8) {
            self.0.borrow_mut().push((1, off, Some(v.into())));
        }
    }

    #[test]
    fn flags_are_accessed_as_wide_as_their_bits_and_keep_unnamed_bits() {
        let r = Recorder::default();
        let b: Byte = r.flags(3);
        assert_eq!(b.bits(), 0x81, "bits without a name are kept");
        r.set_flags(3, b - Byte::A);
        r.set_flags(8, Word::B);
        assert_eq!(*r.0.borrow(), [(1, 3, None), (1, 3, Some(0x80)), (4, 8, Some(1 << 31))]);
    }
}
