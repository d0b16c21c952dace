//! Local packet buffers: the grant-copy source/destination on our side.
//!
//! A grant copy names our memory by guest frame number and page offset,
//! while the switch wants the bytes as a slice. Making a slice from an
//! address needs raw-pointer code, which only `platform/` may hold, so the platform
//! implements `PacketBuf`/`BufPool` and netback only asks for slices (through
//! closures) and for the frame of a byte offset. Host tests use
//! `testing::netback::FakeBufPool`, whose frames the fake hypervisor can read
//! and write.
//!
//! What the platform implementation must provide: buffers of one fixed
//! capacity (65536 bytes to accept GSO packets, at least 1536 otherwise),
//! each a virtually contiguous range (so `with_bytes` can lend one slice),
//! and for every byte offset the 4 KiB guest frame holding it (identity
//! mapped: `gfn = (base + off) >> 12`, `offset = (base + off) & 0xfff`).
//! Frames need not be physically contiguous; netback splits every copy at
//! page boundaries of the buffer. Buffers are taken from the pool when a vif
//! is created and returned when it is released: none per packet.
#![forbid(unsafe_code)]

use crate::netif::PAGE_SIZE;

/// Where a byte of a local buffer lives, as a grant copy names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalFrame {
    /// Our guest frame number.
    pub gfn: u64,
    /// Offset in that frame (< 4096).
    pub offset: u16,
}

/// One fixed-size packet buffer in our own memory.
pub trait PacketBuf {
    /// Bytes the buffer holds.
    fn capacity(&self) -> usize;
    /// Frame and page offset of byte `off`; None when `off >= capacity()`.
    fn frame(&self, off: usize) -> Option<LocalFrame>;
    /// Lends the first `len` bytes (clamped to the capacity).
    fn with_bytes<R>(&self, len: usize, f: impl FnOnce(&[u8]) -> R) -> R;
    /// Lends the first `len` bytes writable (clamped to the capacity).
    fn with_bytes_mut<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// Hands out packet buffers.
pub trait BufPool {
    /// The buffer type.
    type Buf: PacketBuf;
    /// A free buffer, or None when the pool is empty.
    fn alloc(&mut self) -> Option<Self::Buf>;
    /// Returns a buffer.
    fn free(&mut self, buf: Self::Buf);
}

/// Splits `len` bytes of `buf` starting at `off` into runs that stay inside
/// one 4 KiB frame; calls `f(frame, offset_in_buffer, run_len)` for each.
/// Returns false (after the runs that resolved) when a byte has no frame.
pub fn page_runs<B: PacketBuf>(buf: &B, off: usize, len: usize, mut f: impl FnMut(LocalFrame, usize, u16)) -> bool {
    let mut pos = off;
    let Some(end) = off.checked_add(len) else { return false };
    if end > buf.capacity() {
        return false;
    }
    while pos < end {
        let Some(fr) = buf.frame(pos) else { return false };
        let room = PAGE_SIZE.saturating_sub(usize::from(fr.offset));
        if room == 0 {
            return false;
        }
        let run = room.min(end - pos);
        f(fr, pos, run as u16);
        pos += run;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// A buffer whose frames are scattered and start mid-page.
    struct Odd {
        data: Vec<u8>,
        start: usize,
    }

    impl PacketBuf for Odd {
        fn capacity(&self) -> usize {
            self.data.len()
        }
        fn frame(&self, off: usize) -> Option<LocalFrame> {
            if off >= self.data.len() {
                return None;
            }
            let a = self.start + off;
            Some(LocalFrame { gfn: 1000 - (a / PAGE_SIZE) as u64, offset: (a % PAGE_SIZE) as u16 })
        }
        fn with_bytes<R>(&self, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
            f(&self.data[..len.min(self.data.len())])
        }
        fn with_bytes_mut<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
            let n = len.min(self.data.len());
            f(&mut self.data[..n])
        }
    }

    #[test]
    fn runs_never_cross_a_page() {
        let b = Odd { data: vec![0; 3 * PAGE_SIZE], start: 100 };
        let mut runs = Vec::new();
        assert!(page_runs(&b, 10, 8000, |fr, off, n| runs.push((fr, off, n))));
        assert_eq!(runs.iter().map(|r| usize::from(r.2)).sum::<usize>(), 8000);
        for (fr, _, n) in &runs {
            assert!(usize::from(fr.offset) + usize::from(*n) <= PAGE_SIZE);
        }
        assert_eq!(runs[0], (LocalFrame { gfn: 1000, offset: 110 }, 10, 3986));
        assert_eq!(runs[1].0, LocalFrame { gfn: 999, offset: 0 });
        assert!(page_runs(&b, 0, 0, |_, _, _| panic!("no runs for zero bytes")));
        assert!(!page_runs(&b, 3 * PAGE_SIZE - 5, 10, |_, _, _| {}), "past the end");
        assert!(!page_runs(&b, usize::MAX, 2, |_, _, _| {}));
    }
}
