//! Packet buffers a vif takes from the pool, and the TX staging buffers
//! all vifs share.
#![forbid(unsafe_code)]

use super::buf::{BufPool, PacketBuf};
use super::vifconfig::VifError;
use alloc::vec::Vec;

/// Takes `n` buffers from `pool`, all big enough for the largest Ethernet
/// frame plus a VLAN tag; on failure nothing is kept.
pub(super) fn take_buffers<B: PacketBuf, P: BufPool<Buf = B> + ?Sized>(
    pool: &mut P,
    n: usize,
) -> Result<Vec<B>, VifError> {
    let mut got: Vec<B> = Vec::with_capacity(n);
    while got.len() < n {
        match pool.alloc() {
            Some(b) => got.push(b),
            None => {
                let have = got.len();
                got.into_iter().for_each(|b| pool.free(b));
                return Err(VifError::NoBuffers { needed: n, got: have });
            }
        }
    }
    let cap = got.first().map_or(0, |b| b.capacity());
    if got.iter().any(|b| b.capacity() < crate::drivers::port::MAX_FRAME + 4) {
        got.into_iter().for_each(|b| pool.free(b));
        return Err(VifError::BufferTooSmall(cap));
    }
    Ok(got)
}

/// TX staging buffers, lent to `Vif::poll_tx`: a poll copies the guest's
/// packets into them and delivers every one before it returns, so one set
/// serves every vif and queue of a single-threaded data plane (instead of a
/// set per vif: 1 MiB each with 64 KiB buffers).
#[derive(Debug)]
pub struct TxStaging<B: PacketBuf> {
    pub(super) bufs: Vec<B>,
}

impl<B: PacketBuf> TxStaging<B> {
    /// `n` buffers from `pool` (checked as the vif's own).
    pub fn new<P: BufPool<Buf = B> + ?Sized>(pool: &mut P, n: usize) -> Result<Self, VifError> {
        if n == 0 || n > usize::from(u16::MAX) {
            return Err(VifError::BadConfig);
        }
        Ok(Self { bufs: take_buffers(pool, n)? })
    }

    /// Gives the buffers back.
    pub fn release<P: BufPool<Buf = B> + ?Sized>(self, pool: &mut P) {
        self.bufs.into_iter().for_each(|b| pool.free(b));
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }
}
