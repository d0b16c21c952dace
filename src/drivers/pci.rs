//! PCI: enumeration of bus 0 and everything behind bridges, BAR decoding,
//! capability walking, MSI and MSI-X programming.
//!
//! Generic over `hal::PciConfig` (port I/O or ECAM on the machine, a fake
//! configuration space in the host tests). Every value read from a device is
//! bounded: capability lists and bridge recursion stop after a fixed number
//! of steps, so a broken or hostile function cannot hang enumeration.
#![forbid(unsafe_code)]

use crate::hal::{Bdf, Hal, HalError, PciConfig, Regs};
use alloc::vec::Vec;

/// Offset of the command register.
pub const COMMAND: u16 = 0x04;
/// Offset of the status register.
const STATUS: u16 = 0x06;

bitflags::bitflags! {
    /// Command register (PCI 3.0 §6.2.2). Bits not named here are kept as
    /// read when the register is rewritten.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Command: u16 {
        /// I/O space decoding.
        const IO = 1 << 0;
        /// Memory space decoding.
        const MEM = 1 << 1;
        /// Bus mastering (DMA).
        const MASTER = 1 << 2;
        /// Legacy INTx disabled.
        const INTX_DISABLE = 1 << 10;
        const _ = !0;
    }

    /// Status register bits used here.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Status: u16 {
        /// The function has a capability list.
        const CAP_LIST = 1 << 4;
    }

    /// MSI-X message control (PCI 3.0 §6.8.2.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct MsixControl: u16 {
        /// Table size minus one (a field, bits 10:0).
        const TABLE_SIZE = 0x7ff;
        /// Every vector masked.
        const FUNCTION_MASK = 1 << 14;
        /// MSI-X enabled.
        const ENABLE = 1 << 15;
        const _ = !0;
    }

    /// MSI message control (PCI 3.0 §6.8.1.3).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct MsiControl: u16 {
        /// MSI enabled.
        const ENABLE = 1 << 0;
        /// Multiple message enable (a field, bits 6:4; 0 = one message).
        const MULTIPLE_MESSAGE = 7 << 4;
        /// 64-bit message address.
        const ADDR64 = 1 << 7;
        const _ = !0;
    }
}

/// Capability ids.
pub mod cap_id {
    /// MSI.
    pub const MSI: u8 = 0x05;
    /// Vendor-specific (virtio uses these).
    pub const VENDOR: u8 = 0x09;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// A decoded base address register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bar {
    /// Unused (or the upper half of a 64-bit BAR).
    #[default]
    None,
    /// Memory BAR.
    Mem {
        /// Physical address.
        addr: u64,
        /// Size in bytes.
        size: u64,
        /// 64-bit BAR.
        is64: bool,
        /// Prefetchable.
        prefetchable: bool,
    },
    /// I/O port BAR.
    Io {
        /// First port.
        port: u32,
        /// Number of ports.
        size: u32,
    },
}

/// A capability in the standard list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability id.
    pub id: u8,
    /// Offset in configuration space.
    pub offset: u16,
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code, subclass, programming interface.
    pub class: (u8, u8, u8),
    /// Header type (low 7 bits): 0 device, 1 bridge.
    pub header_type: u8,
    /// BARs (6 for devices, 2 for bridges, rest `None`).
    pub bars: [Bar; 6],
    /// Interrupt line as the firmware programmed it (ISA IRQ), 0xff unknown.
    pub irq_line: u8,
    /// Interrupt pin (1 = INTA .. 4 = INTD), 0 none.
    pub irq_pin: u8,
    /// Capabilities.
    pub caps: Vec<Capability>,
}

impl PciDevice {
    /// First capability with `id`.
    pub fn cap(&self, id: u8) -> Option<Capability> {
        self.caps.iter().copied().find(|c| c.id == id)
    }

    /// Memory BAR `i` as (address, size).
    pub fn mem_bar(&self, i: usize) -> Option<(u64, u64)> {
        match self.bars.get(i)? {
            Bar::Mem { addr, size, .. } if *addr != 0 && *size != 0 => Some((*addr, *size)),
            _ => None,
        }
    }
}

/// PCI errors, with the offending values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    /// The function has no such capability.
    NoCapability(u8),
    /// The MSI-X table's BAR is not a memory BAR.
    BadMsixBar(u8),
    /// The MSI-X table lies outside its BAR.
    MsixTableOutsideBar {
        /// Table offset.
        offset: u32,
        /// Entries.
        entries: u16,
        /// BAR size.
        bar_size: u64,
    },
    /// More vectors asked for than the table holds.
    TooManyVectors {
        /// Asked.
        wanted: usize,
        /// Table size.
        table: u16,
    },
    /// The platform could not map the table.
    Hal(HalError),
}

/// Upper bound on functions scanned (8 per device, 32 devices, some buses).
const MAX_BUSES: usize = 32;
/// Upper bound on capability-list steps (48 dwords fit in 0x40..0x100).
const MAX_CAPS: usize = 48;

/// Enumerates bus 0 and every bus behind a PCI-PCI bridge.
pub fn enumerate<C: PciConfig>(cfg: &C) -> Vec<PciDevice> {
    let mut out = Vec::new();
    let mut buses: Vec<u8> = alloc::vec![0];
    let mut seen: Vec<u8> = Vec::new();
    while let Some(bus) = buses.pop() {
        if seen.contains(&bus) || seen.len() >= MAX_BUSES {
            continue;
        }
        seen.push(bus);
        for dev in 0..32u8 {
            let f0 = Bdf { bus, dev, func: 0 };
            if cfg.read16(f0, 0) == 0xffff {
                continue;
            }
            let multi = cfg.read8(f0, 0x0e) & 0x80 != 0;
            for func in 0..if multi { 8u8 } else { 1 } {
                let bdf = Bdf { bus, dev, func };
                let Some(d) = probe(cfg, bdf) else { continue };
                if d.header_type == 1 {
                    let secondary = cfg.read8(bdf, 0x19);
                    if secondary != 0 && !seen.contains(&secondary) {
                        buses.push(secondary);
                    }
                }
                out.push(d);
            }
        }
    }
    out.sort_by_key(|d| d.bdf);
    out
}

/// Reads one function's header, BARs and capabilities; None when absent.
pub fn probe<C: PciConfig>(cfg: &C, bdf: Bdf) -> Option<PciDevice> {
    let id = cfg.read32(bdf, 0);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = cfg.read32(bdf, 0x08);
    let header_type = cfg.read8(bdf, 0x0e) & 0x7f;
    let nbars = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let mut d = PciDevice {
        bdf,
        vendor,
        device: (id >> 16) as u16,
        class: ((class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8),
        header_type,
        bars: [Bar::None; 6],
        irq_line: 0xff,
        irq_pin: 0,
        caps: Vec::new(),
    };
    if header_type == 0 {
        let irq = cfg.read32(bdf, 0x3c);
        d.irq_line = irq as u8;
        d.irq_pin = (irq >> 8) as u8;
    }
    d.bars = read_bars(cfg, bdf, nbars);
    d.caps = read_caps(cfg, bdf);
    Some(d)
}

/// Sizes BARs by writing all-ones with decoding off, then restores them.
fn read_bars<C: PciConfig>(cfg: &C, bdf: Bdf, nbars: usize) -> [Bar; 6] {
    let mut bars = [Bar::None; 6];
    let command = cfg.read16(bdf, COMMAND);
    let decoding_off = Command::from_bits_retain(command) - (Command::IO | Command::MEM);
    cfg.write16(bdf, COMMAND, decoding_off.bits());
    let mut i = 0;
    while i < nbars {
        let off = 0x10 + 4 * i as u16;
        let orig = cfg.read32(bdf, off);
        cfg.write32(bdf, off, u32::MAX);
        let mask = cfg.read32(bdf, off);
        cfg.write32(bdf, off, orig);
        if orig & 1 == 1 {
            let size = (!(mask & !3)).wrapping_add(1) & 0xffff;
            if mask != 0 && mask != u32::MAX && size != 0 {
                bars[i] = Bar::Io { port: orig & !3, size };
            }
            i += 1;
            continue;
        }
        let is64 = (orig >> 1) & 3 == 2;
        let prefetchable = orig & 8 != 0;
        let (addr, size_mask) = if is64 && i + 1 < nbars {
            let hi_off = off + 4;
            let orig_hi = cfg.read32(bdf, hi_off);
            cfg.write32(bdf, hi_off, u32::MAX);
            let mask_hi = cfg.read32(bdf, hi_off);
            cfg.write32(bdf, hi_off, orig_hi);
            ((u64::from(orig_hi) << 32) | u64::from(orig & !0xf), (u64::from(mask_hi) << 32) | u64::from(mask & !0xf))
        } else {
            (u64::from(orig & !0xf), u64::from(mask & !0xf) | 0xffff_ffff_0000_0000)
        };
        let size = (!size_mask).wrapping_add(1);
        if mask != 0 && size_mask != 0 && size != 0 {
            bars[i] = Bar::Mem { addr, size, is64, prefetchable };
        }
        i += if is64 { 2 } else { 1 };
    }
    cfg.write16(bdf, COMMAND, command);
    bars
}

fn read_caps<C: PciConfig>(cfg: &C, bdf: Bdf) -> Vec<Capability> {
    let mut caps = Vec::new();
    if !Status::from_bits_retain(cfg.read16(bdf, STATUS)).contains(Status::CAP_LIST) {
        return caps;
    }
    let mut ptr = u16::from(cfg.read8(bdf, 0x34) & 0xfc);
    for _ in 0..MAX_CAPS {
        if ptr < 0x40 {
            break;
        }
        let hdr = cfg.read16(bdf, ptr);
        caps.push(Capability { id: hdr as u8, offset: ptr });
        ptr = (hdr >> 8) & 0xfc;
    }
    caps
}

/// Sets command-register bits (memory/I/O decoding, bus mastering, INTx off).
pub fn enable<C: PciConfig>(cfg: &C, bdf: Bdf, set: Command, clear: Command) {
    let c = Command::from_bits_retain(cfg.read16(bdf, COMMAND));
    cfg.write16(bdf, COMMAND, ((c | set) - clear).bits());
}

/// Programs MSI-X: one table entry per message in `msgs` (address, data),
/// unmasked, and enables MSI-X with INTx disabled. Returns the mapped table.
pub fn enable_msix<C: PciConfig, H: Hal>(
    cfg: &C,
    hal: &H,
    dev: &PciDevice,
    msgs: &[(u64, u32)],
) -> Result<H::Regs, PciError> {
    let cap = dev.cap(cap_id::MSIX).ok_or(PciError::NoCapability(cap_id::MSIX))?;
    let ctrl = MsixControl::from_bits_retain(cfg.read16(dev.bdf, cap.offset + 2));
    let entries = (ctrl & MsixControl::TABLE_SIZE).bits() + 1;
    if msgs.len() > usize::from(entries) {
        return Err(PciError::TooManyVectors { wanted: msgs.len(), table: entries });
    }
    let table = cfg.read32(dev.bdf, cap.offset + 4);
    let bir = (table & 7) as u8;
    let offset = table & !7;
    let (bar_addr, bar_size) = dev.mem_bar(usize::from(bir)).ok_or(PciError::BadMsixBar(bir))?;
    let len = u64::from(entries) * 16;
    if u64::from(offset) + len > bar_size {
        return Err(PciError::MsixTableOutsideBar { offset, entries, bar_size });
    }
    let regs = hal.map_regs(bar_addr + u64::from(offset), len).map_err(PciError::Hal)?;
    // Function mask while the table is written, then enable.
    cfg.write16(dev.bdf, cap.offset + 2, (ctrl | MsixControl::FUNCTION_MASK | MsixControl::ENABLE).bits());
    for i in 0..usize::from(entries) {
        regs.write32(i * 16 + 12, 1); // masked
    }
    for (i, (addr, data)) in msgs.iter().enumerate() {
        regs.write32(i * 16, *addr as u32);
        regs.write32(i * 16 + 4, (*addr >> 32) as u32);
        regs.write32(i * 16 + 8, *data);
        regs.write32(i * 16 + 12, 0);
    }
    enable(cfg, dev.bdf, Command::INTX_DISABLE, Command::empty());
    cfg.write16(dev.bdf, cap.offset + 2, ((ctrl - MsixControl::FUNCTION_MASK) | MsixControl::ENABLE).bits());
    Ok(regs)
}

/// Programs single-message MSI and enables it with INTx disabled.
pub fn enable_msi<C: PciConfig>(cfg: &C, dev: &PciDevice, addr: u64, data: u32) -> Result<(), PciError> {
    let cap = dev.cap(cap_id::MSI).ok_or(PciError::NoCapability(cap_id::MSI))?;
    let o = cap.offset;
    let ctrl = MsiControl::from_bits_retain(cfg.read16(dev.bdf, o + 2));
    let is64 = ctrl.contains(MsiControl::ADDR64);
    cfg.write32(dev.bdf, o + 4, addr as u32);
    if is64 {
        cfg.write32(dev.bdf, o + 8, (addr >> 32) as u32);
        cfg.write16(dev.bdf, o + 12, data as u16);
    } else {
        cfg.write16(dev.bdf, o + 8, data as u16);
    }
    enable(cfg, dev.bdf, Command::INTX_DISABLE, Command::empty());
    // One message (MME = 0), enabled.
    cfg.write16(dev.bdf, o + 2, ((ctrl - MsiControl::MULTIPLE_MESSAGE) | MsiControl::ENABLE).bits());
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests;
