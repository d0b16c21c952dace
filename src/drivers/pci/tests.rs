//! Host tests: enumeration, BAR sizing, capabilities and MSI against a fake
//! configuration space.
#![forbid(unsafe_code)]

use super::*;
use core::cell::RefCell;
use std::collections::BTreeMap;

/// A fake configuration space: dwords per function, with BAR size masks.
#[derive(Default)]
pub struct FakeCfg {
    pub space: RefCell<BTreeMap<(Bdf, u16), u32>>,
    /// BAR write masks: (bdf, offset) -> writable bits.
    pub bar_masks: BTreeMap<(Bdf, u16), u32>,
}

impl FakeCfg {
    pub fn set(&self, bdf: Bdf, off: u16, v: u32) {
        self.space.borrow_mut().insert((bdf, off), v);
    }
}

impl PciConfig for FakeCfg {
    fn read32(&self, bdf: Bdf, off: u16) -> u32 {
        let present = self.space.borrow().contains_key(&(bdf, 0));
        let default = if present { 0 } else { u32::MAX };
        self.space.borrow().get(&(bdf, off)).copied().unwrap_or(default)
    }

    fn write32(&self, bdf: Bdf, off: u16, v: u32) {
        let v = match self.bar_masks.get(&(bdf, off)) {
            Some(m) => {
                let old = self.read32(bdf, off);
                (v & m) | (old & !m)
            }
            None => v,
        };
        self.space.borrow_mut().insert((bdf, off), v);
    }
}

fn b(bus: u8, dev: u8, func: u8) -> Bdf {
    Bdf { bus, dev, func }
}

/// Bus 0: a bridge at 00:01.0 to bus 1 and a NIC at 00:02.0; a NIC
/// with a 64-bit BAR, an I/O BAR and MSI + MSI-X at 01:00.0.
fn machine() -> FakeCfg {
    let mut c = FakeCfg::default();
    c.set(b(0, 1, 0), 0, 0x0001_8086);
    c.set(b(0, 1, 0), 0x0c, 0x0001_0000);
    c.set(b(0, 1, 0), 0x18, 0x0001_0100);
    c.set(b(0, 2, 0), 0, 0x100e_8086);
    c.set(b(0, 2, 0), 0x08, 0x0200_0003);
    c.set(b(0, 2, 0), 0x10, 0xfeb8_0000);
    c.bar_masks.insert((b(0, 2, 0), 0x10), 0xfffe_0000);
    c.set(b(0, 2, 0), 0x3c, 0x0000_010b);
    let n = b(1, 0, 0);
    c.set(n, 0, 0x1041_1af4);
    c.set(n, 0x04, 0x0010_0000); // status: capability list
    c.set(n, 0x10, 0x0000_c001); // I/O BAR, 32 ports
    c.bar_masks.insert((n, 0x10), 0xffff_ffe0);
    c.set(n, 0x18, 0x0000_000c); // 64-bit prefetchable at 0x8_0000_0000
    c.set(n, 0x1c, 0x0000_0008);
    c.bar_masks.insert((n, 0x18), 0xffff_c000);
    c.bar_masks.insert((n, 0x1c), 0xffff_ffff);
    c.set(n, 0x34, 0x40);
    c.set(n, 0x40, 0x0000_5005); // MSI, 32-bit, next 0x50
    c.set(n, 0x50, 0x0002_4011); // MSI-X, 3 entries, next 0x40: a loop
    c.set(n, 0x54, 0x0000_1002); // table at BAR2 + 0x1000
    c
}

#[test]
fn enumerates_behind_bridges_and_decodes_bars() {
    let c = machine();
    let devs = enumerate(&c);
    let bdfs: Vec<Bdf> = devs.iter().map(|d| d.bdf).collect();
    assert_eq!(bdfs, vec![b(0, 1, 0), b(0, 2, 0), b(1, 0, 0)]);
    let e = &devs[1];
    assert_eq!((e.vendor, e.device, e.class), (0x8086, 0x100e, (2, 0, 0)));
    assert_eq!(e.bars[0], Bar::Mem { addr: 0xfeb8_0000, size: 0x2_0000, is64: false, prefetchable: false });
    assert_eq!((e.irq_line, e.irq_pin), (11, 1));
    let v = &devs[2];
    assert_eq!(v.bars[0], Bar::Io { port: 0xc000, size: 32 });
    assert_eq!(v.bars[2], Bar::Mem { addr: 0x8_0000_0000, size: 0x4000, is64: true, prefetchable: true });
    assert_eq!(v.bars[3], Bar::None);
    assert_eq!(v.mem_bar(2), Some((0x8_0000_0000, 0x4000)));
    // BARs were restored after sizing.
    assert_eq!(c.read32(b(1, 0, 0), 0x18), 0x0000_000c);
}

#[test]
fn capability_loops_are_bounded() {
    let devs = enumerate(&machine());
    let v = &devs[2];
    assert_eq!(v.caps.len(), MAX_CAPS);
    assert_eq!(v.cap(cap_id::MSIX), Some(Capability { id: cap_id::MSIX, offset: 0x50 }));
    assert_eq!(v.cap(cap_id::VENDOR), None);
}

#[test]
fn msi_is_programmed() {
    let c = machine();
    let devs = enumerate(&c);
    enable_msi(&c, &devs[2], 0xfee0_0000, 0x41).unwrap();
    assert_eq!(c.read32(b(1, 0, 0), 0x44), 0xfee0_0000);
    assert_eq!(c.read16(b(1, 0, 0), 0x48), 0x41);
    assert_eq!(c.read16(b(1, 0, 0), 0x42) & 1, 1);
    assert!(Command::from_bits_retain(c.read16(b(1, 0, 0), COMMAND)).contains(Command::INTX_DISABLE));
    assert_eq!(enable_msi(&c, &devs[1], 0, 0), Err(PciError::NoCapability(cap_id::MSI)));
}

#[test]
fn self_referencing_bridge_terminates() {
    let c = FakeCfg::default();
    c.set(b(0, 0, 0), 0, 0x0001_8086);
    c.set(b(0, 0, 0), 0x0c, 0x0081_0000); // multi-function bridge
    c.set(b(0, 0, 0), 0x18, 0x0000_0000); // secondary bus 0: itself
    c.set(b(0, 0, 1), 0, 0x0001_8086);
    c.set(b(0, 0, 1), 0x0c, 0x0001_0000);
    c.set(b(0, 0, 1), 0x18, 0x0000_0500); // bus 5, empty
    let devs = enumerate(&c);
    assert_eq!(devs.len(), 2);
}

#[test]
fn command_bits_not_named_are_kept() {
    let c = machine();
    let nic = b(0, 2, 0);
    // SERR# enable (bit 8) is not a `Command` flag; it must survive.
    c.set(nic, COMMAND, 0x0101);
    enable(&c, nic, Command::MEM | Command::MASTER, Command::IO);
    assert_eq!(c.read16(nic, COMMAND), 0x0106);
    // BAR sizing turns decoding off and restores the register as it was.
    c.set(nic, COMMAND, 0x0507);
    let _ = enumerate(&c);
    assert_eq!(c.read16(nic, COMMAND), 0x0507);
}
