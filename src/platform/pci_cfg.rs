//! PCI configuration space: legacy port I/O (0xcf8/0xcfc) or ECAM windows
//! from the ACPI MCFG table.

use super::mmio::{StopWrites, Window};
use super::{cpu, paging};
use crate::acpi::EcamWindow;
use crate::drivers::pci::{COMMAND, Command};
use crate::hal::{Bdf, PciConfig};
use core::sync::atomic::{AtomicU32, Ordering};

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
    win: Window,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// Maps the window of `w` (1 MiB per bus).
    pub fn map(w: &EcamWindow) -> Option<Self> {
        if w.segment != 0 || w.bus_end < w.bus_start {
            return None;
        }
        let len = (u64::from(w.bus_end - w.bus_start) + 1) << 20;
        let base = paging::map_mmio(w.base, len).ok()?;
        // SAFETY: `map_mmio` mapped the whole window uncached and never unmaps
        // it; configuration space is device registers, never Rust memory.
        let win = unsafe { Window::new(base, len as usize) };
        Some(Self { win, bus_start: w.bus_start, bus_end: w.bus_end })
    }

    /// Offset in the window of the dword holding `off` of `bdf`.
    fn offset(&self, bdf: Bdf, off: u16) -> Option<usize> {
        if bdf.bus < self.bus_start || bdf.bus > self.bus_end || bdf.dev > 31 || bdf.func > 7 || off >= 4096 {
            return None;
        }
        let o = (u64::from(bdf.bus - self.bus_start) << 20)
            | (u64::from(bdf.dev) << 15)
            | (u64::from(bdf.func) << 12)
            | u64::from(off & !3);
        usize::try_from(o).ok()
    }
}

impl PciConfig for Ecam {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        self.offset(bdf, off).map_or(u32::MAX, |o| self.win.read(o, u32::MAX))
    }

    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        if let Some(o) = self.offset(bdf, off) {
            self.win.write(o, v);
        }
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

/// Functions this kernel made bus masters, as `bus << 8 | dev << 3 | func`
/// plus one (0: free slot), so that power-off can stop their DMA.
static BUS_MASTERS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];

/// For each slot of `BUS_MASTERS`, the register writes that stop that
/// function's DMA engines, once its driver has given them.
static STOP_WRITES: spin::Mutex<[Option<StopWrites>; 4]> = spin::Mutex::new([None; 4]);

fn key(bdf: Bdf) -> u32 {
    (u32::from(bdf.bus) << 8 | u32::from(bdf.dev & 31) << 3 | u32::from(bdf.func & 7)) + 1
}

/// Remembers that `bdf` may do DMA. Returns false when every slot is taken
/// (then power-off cannot stop that function).
pub fn note_bus_master(bdf: Bdf) -> bool {
    let key = key(bdf);
    BUS_MASTERS.iter().any(|s| s.load(Ordering::Relaxed) == key)
        || BUS_MASTERS.iter().any(|s| s.compare_exchange(0, key, Ordering::Relaxed, Ordering::Relaxed).is_ok())
}

/// Remembers the writes that stop `bdf` (noted by `note_bus_master`),
/// made at power-off before its bus mastering is cleared. Returns false
/// when `bdf` was not noted.
pub fn note_stop_writes(bdf: Bdf, w: StopWrites) -> bool {
    let key = key(bdf);
    let Some(i) = BUS_MASTERS.iter().position(|s| s.load(Ordering::Relaxed) == key) else { return false };
    STOP_WRITES.lock()[i] = Some(w);
    true
}

/// Stops every function `note_bus_master` recorded: first the writes its
/// driver gave (`note_stop_writes`), so that its DMA engines are off and
/// stay off when a next owner turns bus mastering on again before its own
/// driver resets the device; then bus-master enable is cleared through port
/// I/O (the command register is in the first 256 bytes), so no DMA of
/// theirs reaches memory after this returns. Returns how many functions it
/// stopped. Safe to call again, and from any context: a lock taken at the
/// moment of a crash only skips those writes.
pub fn stop_bus_masters() -> usize {
    let writes = STOP_WRITES.try_lock().map(|w| *w).unwrap_or([None; 4]);
    let mut n = 0;
    for (s, w) in BUS_MASTERS.iter().zip(writes) {
        let key = s.load(Ordering::Relaxed);
        let Some(k) = key.checked_sub(1) else { continue };
        if let Some(w) = w {
            w.apply();
        }
        let bdf = Bdf { bus: (k >> 8) as u8, dev: ((k >> 3) & 31) as u8, func: (k & 7) as u8 };
        let c = Command::from_bits_retain(PortIo.read16(bdf, COMMAND));
        if c.bits() != u16::MAX && c.contains(Command::MASTER) {
            PortIo.write16(bdf, COMMAND, (c - Command::MASTER).bits());
            n += 1;
        }
    }
    n
}
