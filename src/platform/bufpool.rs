//! Packet buffers for netback: each is `BUF_FRAMES` contiguous, identity-mapped
//! page frames owned by exactly one `FrameBuf`, so its guest frame numbers
//! can be handed to GNTTABOP_copy and its bytes lent as a slice.

use super::frames;
use crate::netback::{BufPool, LocalFrame, PacketBuf};
use alloc::vec::Vec;

/// Frames per buffer: 64 KiB, room for a whole GSO frame.
pub const BUF_FRAMES: u64 = 16;
/// Bytes per buffer.
pub const BUF_BYTES: usize = (BUF_FRAMES * 4096) as usize;

/// One packet buffer.
#[derive(Debug)]
pub struct FrameBuf {
    base: u64,
}

impl PacketBuf for FrameBuf {
    fn capacity(&self) -> usize {
        BUF_BYTES
    }

    fn frame(&self, off: usize) -> Option<LocalFrame> {
        (off < BUF_BYTES).then(|| {
            let a = self.base + off as u64;
            LocalFrame { gfn: a >> 12, offset: (a & 0xfff) as u16 }
        })
    }

    fn with_bytes<R>(&self, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let len = len.min(BUF_BYTES);
        // SAFETY: `base` is the start of BUF_FRAMES contiguous frames taken
        // from the frame allocator for this buffer alone (see `FramePool`),
        // identity-mapped and never freed while the FrameBuf lives; `len` is
        // clamped to that size. Only Xen's grant copy writes these frames
        // besides us, and it does so inside hypercalls, never concurrently
        // with this borrow.
        let s = unsafe { core::slice::from_raw_parts(self.base as usize as *const u8, len) };
        f(s)
    }

    fn with_bytes_mut<R>(&mut self, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let len = len.min(BUF_BYTES);
        // SAFETY: as in `with_bytes`; `&mut self` makes this the only borrow.
        let s = unsafe { core::slice::from_raw_parts_mut(self.base as usize as *mut u8, len) };
        f(s)
    }
}

/// A pool that keeps returned buffers for reuse and gives their frames back
/// when trimmed.
#[derive(Debug, Default)]
pub struct FramePool {
    free: Vec<FrameBuf>,
}

impl FramePool {
    /// An empty pool (buffers come from the frame allocator on demand).
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns idle buffers' frames to the frame allocator.
    pub fn trim(&mut self) {
        for b in self.free.drain(..) {
            let _ = frames::free(b.base, BUF_FRAMES);
        }
    }

    /// Idle buffers kept.
    pub fn idle(&self) -> usize {
        self.free.len()
    }
}

impl BufPool for FramePool {
    type Buf = FrameBuf;

    fn alloc(&mut self) -> Option<FrameBuf> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => FrameBuf { base: frames::alloc_zeroed(BUF_FRAMES).ok()? },
        };
        Some(b)
    }

    fn free(&mut self, buf: FrameBuf) {
        self.free.push(buf);
    }
}
