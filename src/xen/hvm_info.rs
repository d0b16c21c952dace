//! The HVM container: how xvif tells it from a PVH domain, and the machine
//! it describes when no firmware ran.
//!
//! An HVM domain with a device model (qemu-xen) that xl starts with
//! `firmware=` pointing at xvif's ELF is entered at the same PVH entry point,
//! but nothing between the domain builder and xvif builds ACPI tables,
//! assigns PCI BARs or programs MTRRs. What remains to go by is the domain
//! builder's `struct hvm_info_table` (xen/include/public/hvm/hvm_info_table.h),
//! written at a fixed address for every domain with a device model and for
//! no other: its presence is what makes this an HVM container.
//!
//! The interrupt wiring follows from Xen's emulated platform: one I/O APIC
//! of 48 pins at 0xfec00000 (`VIOAPIC_NUM_PINS`), the PIT on GSI 2, and PCI
//! INTx of device `dev` on bus 0 asserting GSI `hvm_pci_intx_gsi(dev, intx)`
//! (xen/arch/x86/include/asm/hvm/irq.h) whether or not a PCI link routes it
//! to an ISA IRQ too.
#![forbid(unsafe_code)]

use crate::acpi::{IoApic, Madt, Polarity, SourceOverride, Trigger};
use alloc::vec;

/// Guest-physical address of the table (`HVM_INFO_PADDR`).
pub const HVM_INFO_PADDR: u64 = 0x9f800;
/// Bytes read from `HVM_INFO_PADDR`: enough for any table this parser
/// accepts (libxc writes 48: the fields, then a 16-byte vCPU bitmap).
pub const HVM_INFO_READ: usize = 256;
/// The fields used end here: signature, length, checksum, apic_mode, then
/// (4-aligned) nr_vcpus and the three memory-map words.
const FIELDS_END: u32 = 32;
/// The table's signature.
const SIGNATURE: &[u8; 8] = b"HVM INFO";

/// Where Xen's emulated I/O APIC sits in every HVM domain.
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
/// Where the local APIC sits.
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// Where hvmloader would place 32-bit memory BARs: the MMIO hole below the
/// special pages, I/O APIC and local APIC.
pub const PCI_MEM_WINDOW: core::ops::Range<u64> = 0xf000_0000..0xfc00_0000;
/// Where hvmloader would place I/O BARs.
pub const PCI_IO_WINDOW: core::ops::Range<u32> = 0xc000..0x1_0000;

/// What the table says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvmInfo {
    /// vCPUs of the domain.
    pub nr_vcpus: u32,
    /// RAM below 4 GiB ends at this page.
    pub low_mem_pgend: u32,
    /// Pages from here to 4 GiB are reserved for special mappings.
    pub reserved_mem_pgstart: u32,
    /// RAM above 4 GiB ends at this page (0: none).
    pub high_mem_pgend: u32,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl HvmInfo {
    /// Parses the `HVM_INFO_READ` bytes at `HVM_INFO_PADDR`; the checksum
    /// covers `length` bytes. None when there is no valid table: a PVH
    /// domain, bare metal, or anything else.
    pub fn parse(table: &[u8]) -> Option<Self> {
        if table.get(..8)? != SIGNATURE {
            return None;
        }
        let len = u32_at(table, 8);
        if !(FIELDS_END..=HVM_INFO_READ as u32).contains(&len) {
            return None;
        }
        let whole = table.get(..len as usize)?;
        if whole.iter().fold(0u8, |a, &b| a.wrapping_add(b)) != 0 {
            return None;
        }
        let nr_vcpus = u32_at(table, 16);
        if nr_vcpus == 0 {
            return None;
        }
        Some(Self {
            nr_vcpus,
            low_mem_pgend: u32_at(table, 20),
            reserved_mem_pgstart: u32_at(table, 24),
            high_mem_pgend: u32_at(table, 28),
        })
    }

    /// The interrupt controllers of the container, as an MADT would have
    /// listed them: the local APIC, the one I/O APIC from GSI 0, and ISA
    /// IRQ 0 (the PIT) on GSI 2.
    pub fn madt(&self) -> Madt {
        Madt {
            lapic_addr: LAPIC_ADDR,
            ioapics: vec![IoApic { id: 1, addr: IOAPIC_ADDR, gsi_base: 0 }],
            overrides: vec![SourceOverride { irq: 0, gsi: 2, polarity: Polarity::High, trigger: Trigger::Edge }],
            cpus: self.nr_vcpus,
        }
    }
}

/// The GSI that PCI INTx pin `pin` (1 = INTA .. 4 = INTD) of device `dev`
/// on bus 0 asserts in an HVM domain; None for no pin or another bus.
pub fn pci_intx_gsi(bus: u8, dev: u8, pin: u8) -> Option<u32> {
    if bus != 0 || dev > 31 || !(1..=4).contains(&pin) {
        return None;
    }
    let (dev, intx) = (u32::from(dev), u32::from(pin - 1));
    Some((((dev << 2) + (dev >> 3) + intx) & 31) + 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table as libxc's `build_hvm_info` writes it: signature, length,
    /// checksum byte making the sum zero, then the fields.
    fn table(nr_vcpus: u32, len: u32) -> std::vec::Vec<u8> {
        let mut t = std::vec![0u8; HVM_INFO_READ];
        t[..8].copy_from_slice(SIGNATURE);
        t[8..12].copy_from_slice(&len.to_le_bytes());
        t[13] = 1; // apic_mode
        t[16..20].copy_from_slice(&nr_vcpus.to_le_bytes());
        t[20..24].copy_from_slice(&0x4000u32.to_le_bytes());
        t[24..28].copy_from_slice(&0xfeff0u32.to_le_bytes());
        t[32..48].fill(0xff); // vcpu_online
        let len = (len as usize).min(t.len());
        let sum = t[..len].iter().fold(0u8, |a, &b| a.wrapping_add(b));
        t[12] = 0u8.wrapping_sub(sum);
        t
    }

    #[test]
    fn parses_a_valid_table() {
        let t = table(2, 48);
        let i = HvmInfo::parse(&t).unwrap();
        assert_eq!(i, HvmInfo { nr_vcpus: 2, low_mem_pgend: 0x4000, reserved_mem_pgstart: 0xfeff0, high_mem_pgend: 0 });
        let m = i.madt();
        assert_eq!(m.cpus, 2);
        assert_eq!(m.ioapics[0].addr, IOAPIC_ADDR);
        assert_eq!(m.route_isa_irq(0), (2, Polarity::High, Trigger::Edge));
        assert_eq!(m.route_isa_irq(4), (4, Polarity::High, Trigger::Edge));
    }

    #[test]
    fn rejects_what_is_not_a_table() {
        assert_eq!(HvmInfo::parse(&[0u8; 64]), None, "zeroed memory (PVH)");
        let mut t = table(1, 48);
        t[17] ^= 1;
        assert_eq!(HvmInfo::parse(&t), None, "bad checksum");
        assert_eq!(HvmInfo::parse(&table(1, 4000)), None, "length past what is read");
        assert_eq!(HvmInfo::parse(&table(1, 24)), None, "length shorter than the fields");
        assert_eq!(HvmInfo::parse(&table(0, 48)), None, "no vCPU");
        assert_eq!(HvmInfo::parse(&table(1, 48)[..40]), None, "truncated read");
        assert!(HvmInfo::parse(&table(1, 48)).is_some());
    }

    #[test]
    fn intx_follows_xens_wiring() {
        // hvm_pci_intx_gsi: device 3 INTA -> 12 + 16 = 28; device 4 INTA -> (16 & 31) + 16 = 32.
        assert_eq!(pci_intx_gsi(0, 3, 1), Some(28));
        assert_eq!(pci_intx_gsi(0, 4, 1), Some(32));
        assert_eq!(pci_intx_gsi(0, 2, 2), Some(25));
        assert_eq!(pci_intx_gsi(0, 8, 1), Some(17));
        assert_eq!(pci_intx_gsi(0, 31, 4), Some(((124 + 3 + 3) & 31) + 16));
        assert_eq!(pci_intx_gsi(0, 3, 0), None);
        assert_eq!(pci_intx_gsi(0, 3, 5), None);
        assert_eq!(pci_intx_gsi(1, 3, 1), None);
    }
}
