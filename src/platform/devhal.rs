//! The platform's implementation of `hal::Hal` for drivers.

use super::{dma::Dma, mmio::Mmio, time};
use crate::hal::{Hal, HalError};

/// Register windows, DMA memory and time on the real machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hw;

impl Hal for Hw {
    type Regs = Mmio;
    type Dma = Dma;

    fn map_regs(&self, paddr: u64, len: u64) -> Result<Mmio, HalError> {
        Mmio::map(paddr, len)
    }

    fn alloc_dma(&self, bytes: usize) -> Result<Dma, HalError> {
        Dma::alloc(bytes)
    }

    fn now_ns(&self) -> u64 {
        time::now_ns()
    }

    fn delay_us(&self, us: u64) {
        time::delay_us(us)
    }
}
