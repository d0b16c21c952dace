//! PCI configuration space: legacy port I/O (0xcf8/0xcfc) or ECAM windows
//! from the ACPI MCFG table.

use super::{cpu, paging};
use crate::acpi::EcamWindow;
use crate::hal::{Bdf, PciConfig};
use core::ptr;

/// Configuration mechanism #1 (ports 0xcf8/0xcfc): offsets below 256 only.
#[derive(Debug, Clone, Copy)]
pub struct PortIo;

impl PciConfig for PortIo {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        if off >= 256 {
            return u32::MAX;
        }
        cpu::outl(0xcf8, address(bdf, off));
        cpu::inl(0xcfc)
    }

    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        if off < 256 {
            cpu::outl(0xcf8, address(bdf, off));
            cpu::outl(0xcfc, v);
        }
    }
}

fn address(bdf: Bdf, off: u16) -> u32 {
    0x8000_0000
        | (u32::from(bdf.bus) << 16)
        | (u32::from(bdf.dev & 31) << 11)
        | (u32::from(bdf.func & 7) << 8)
        | u32::from(off & 0xfc)
}

/// One mapped ECAM window (segment 0).
#[derive(Debug)]
pub struct Ecam {
    base: u64,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// Maps the window of `w` (1 MiB per bus).
    pub fn map(w: &EcamWindow) -> Option<Self> {
        if w.segment != 0 || w.bus_end < w.bus_start {
            return None;
        }
        let buses = u64::from(w.bus_end - w.bus_start) + 1;
        let base = paging::map_mmio(w.base, buses << 20).ok()?;
        Some(Self { base, bus_start: w.bus_start, bus_end: w.bus_end })
    }

    fn addr(&self, bdf: Bdf, off: u16) -> Option<usize> {
        if bdf.bus < self.bus_start || bdf.bus > self.bus_end || bdf.dev > 31 || bdf.func > 7 || off >= 4096 {
            return None;
        }
        let o = (u64::from(bdf.bus - self.bus_start) << 20)
            | (u64::from(bdf.dev) << 15)
            | (u64::from(bdf.func) << 12)
            | u64::from(off & !3);
        Some((self.base + o) as usize)
    }
}

impl PciConfig for Ecam {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        let Some(a) = self.addr(bdf, off) else { return u32::MAX };
        // SAFETY: `a` is dword-aligned inside the ECAM window mapped uncached
        // by `map` (bus, device, function and offset range-checked above).
        unsafe { ptr::read_volatile(a as *const u32) }
    }

    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        let Some(a) = self.addr(bdf, off) else { return };
        // SAFETY: as in `read32`.
        unsafe { ptr::write_volatile(a as *mut u32, v) }
    }
}

/// ECAM when ACPI gave a usable window, port I/O otherwise.
#[derive(Debug)]
pub enum Config {
    /// Memory-mapped.
    Ecam(Ecam),
    /// Port I/O.
    PortIo(PortIo),
}

impl Config {
    /// Picks the access method from the MCFG windows.
    pub fn new(ecam: &[EcamWindow]) -> Self {
        ecam.iter().find_map(Ecam::map).map_or(Config::PortIo(PortIo), Config::Ecam)
    }
}

impl PciConfig for Config {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        match self {
            Config::Ecam(e) => e.read32(bdf, off),
            Config::PortIo(p) => p.read32(bdf, off),
        }
    }

    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        match self {
            Config::Ecam(e) => e.write32(bdf, off, v),
            Config::PortIo(p) => p.write32(bdf, off, v),
        }
    }
}
