//! BAR placement: the firmware's job, done by xvif when no firmware ran.
//!
//! In an HVM container entered at the PVH entry point (no hvmloader, no
//! SeaBIOS) every BAR reads 0 after reset, so a device decodes nothing until
//! someone gives its BARs addresses. Only the BARs of the device xvif is
//! about to drive are placed; BARs that already have an address (bare QEMU's
//! SeaBIOS placed them all) are left alone and kept out of the way.
//!
//! Every size comes from the device, so it is bounded here: a BAR that does
//! not fit in the window is an error for that device, never a loop or an
//! overlap.
#![forbid(unsafe_code)]

use super::pci::{Bar, COMMAND, Command, PciDevice};
use crate::hal::PciConfig;
use alloc::vec::Vec;
use core::ops::Range;

/// Where BARs may be placed.
#[derive(Debug, Clone)]
pub struct Windows {
    /// 32-bit memory space.
    pub mem: Range<u64>,
    /// I/O ports.
    pub io: Range<u32>,
}

/// Why a BAR could not be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceError {
    /// No aligned gap of this size is left in the window.
    NoRoom {
        /// BAR index.
        bar: usize,
        /// Its size.
        size: u64,
    },
    /// The BAR did not keep the address written to it.
    NotKept {
        /// BAR index.
        bar: usize,
        /// Address written.
        wrote: u64,
        /// What it reads back.
        reads: u64,
    },
}

/// Smallest alignment of a memory BAR: a page, so that no two BARs share
/// one (mapping and passthrough work in pages).
const MEM_ALIGN: u64 = 4096;

fn is_unplaced(bar: &Bar) -> bool {
    match *bar {
        Bar::Mem { addr, .. } => addr == 0,
        Bar::Io { port, .. } => port == 0,
        Bar::None => false,
    }
}

/// The address ranges already decoded (or placed) by `devs`, memory and I/O.
fn busy(devs: &[PciDevice]) -> (Vec<Range<u64>>, Vec<Range<u64>>) {
    let (mut mem, mut io) = (Vec::new(), Vec::new());
    for bar in devs.iter().flat_map(|d| d.bars.iter()) {
        match *bar {
            Bar::Mem { addr, size, .. } if addr != 0 => mem.push(addr..addr.saturating_add(size)),
            Bar::Io { port, size } if port != 0 => io.push(u64::from(port)..u64::from(port) + u64::from(size)),
            _ => {}
        }
    }
    (mem, io)
}

/// The lowest `align`-aligned address in `window` where `size` bytes touch
/// none of `busy`. Each step moves past one busy range, so it takes at most
/// `busy.len() + 1` steps.
fn first_fit(window: &Range<u64>, busy: &[Range<u64>], size: u64, align: u64) -> Option<u64> {
    let align = align.max(size).max(1);
    if !align.is_power_of_two() {
        return None;
    }
    let up = |a: u64| a.checked_add(align - 1).map(|x| x & !(align - 1));
    let mut at = up(window.start)?;
    for _ in 0..=busy.len() {
        let end = at.checked_add(size)?;
        if end > window.end {
            return None;
        }
        match busy.iter().filter(|b| b.start < end && at < b.end).map(|b| b.end).max() {
            None => return Some(at),
            Some(past) => at = up(past)?,
        }
    }
    None
}

/// Places every unplaced BAR of `dev` in `w`, away from the BARs of `all`
/// (which may include `dev` itself), writes the addresses and reads them
/// back. Decoding is off while BARs change and restored afterwards.
/// Returns how many BARs were placed; `dev.bars` is updated.
pub fn place_bars<C: PciConfig>(
    cfg: &C,
    all: &[PciDevice],
    dev: &mut PciDevice,
    w: &Windows,
) -> Result<usize, PlaceError> {
    let (mut mem, mut io) = busy(all);
    let mem_window = w.mem.clone();
    let io_window = u64::from(w.io.start)..u64::from(w.io.end);
    let mut placed = 0;
    let command = cfg.read16(dev.bdf, COMMAND);
    cfg.write16(dev.bdf, COMMAND, command & !(Command::IO | Command::MEM).bits());
    let mut result = Ok(());
    for i in 0..dev.bars.len() {
        let bar = dev.bars[i];
        if !is_unplaced(&bar) {
            continue;
        }
        let off = 0x10 + 4 * i as u16;
        let (at, wrote_back) = match bar {
            Bar::Mem { size, is64, .. } => {
                let Some(at) = first_fit(&mem_window, &mem, size, MEM_ALIGN) else {
                    result = Err(PlaceError::NoRoom { bar: i, size });
                    break;
                };
                cfg.write32(dev.bdf, off, at as u32);
                if is64 {
                    cfg.write32(dev.bdf, off + 4, (at >> 32) as u32);
                }
                mem.push(at..at + size);
                (at, u64::from(cfg.read32(dev.bdf, off) & !0xf))
            }
            Bar::Io { size, .. } => {
                let size = u64::from(size);
                let Some(at) = first_fit(&io_window, &io, size, 4) else {
                    result = Err(PlaceError::NoRoom { bar: i, size });
                    break;
                };
                cfg.write32(dev.bdf, off, at as u32);
                io.push(at..at + size);
                (at, u64::from(cfg.read32(dev.bdf, off) & !0x3))
            }
            Bar::None => continue,
        };
        if wrote_back != at & 0xffff_ffff {
            result = Err(PlaceError::NotKept { bar: i, wrote: at, reads: wrote_back });
            break;
        }
        match &mut dev.bars[i] {
            Bar::Mem { addr, .. } => *addr = at,
            Bar::Io { port, .. } => *port = at as u32,
            Bar::None => {}
        }
        placed += 1;
    }
    cfg.write16(dev.bdf, COMMAND, command);
    result.map(|()| placed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::pci::{enumerate, tests::FakeCfg};
    use crate::hal::Bdf;

    const HVM: Windows = Windows { mem: 0xf000_0000..0xfc00_0000, io: 0xc000..0x1_0000 };

    fn b(dev: u8) -> Bdf {
        Bdf { bus: 0, dev, func: 0 }
    }

    /// An HVM container after reset: every BAR 0. 00:02.0 a platform device
    /// with a 16 MiB BAR (left unplaced: not ours), 00:03.0 an e1000 (128 KiB
    /// memory, 64 I/O ports), 00:04.0 a virtio-net with a 64-bit 16 KiB BAR
    /// and a 4 KiB BAR.
    fn hvm() -> FakeCfg {
        let mut c = FakeCfg::default();
        for dev in 2..=4 {
            for bar in 0..6 {
                c.bar_masks.insert((b(dev), 0x10 + 4 * bar), 0); // unimplemented BARs
            }
        }
        c.set(b(2), 0, 0x0001_5853);
        c.set(b(2), 0x10, 0x8);
        c.bar_masks.insert((b(2), 0x10), 0xff00_0000);
        c.set(b(3), 0, 0x100e_8086);
        c.set(b(3), 0x04, 0x0000_0003);
        c.bar_masks.insert((b(3), 0x10), 0xfffe_0000);
        c.set(b(3), 0x14, 0x1);
        c.bar_masks.insert((b(3), 0x14), 0xffff_ffc0);
        c.set(b(4), 0, 0x1041_1af4);
        c.set(b(4), 0x10, 0x0);
        c.bar_masks.insert((b(4), 0x10), 0xffff_f000);
        c.set(b(4), 0x20, 0x4);
        c.bar_masks.insert((b(4), 0x20), 0xffff_c000);
        c.bar_masks.insert((b(4), 0x24), 0xffff_ffff);
        c
    }

    #[test]
    fn places_unplaced_bars_aligned_and_apart() {
        let c = hvm();
        let devs = enumerate(&c);
        let mut e1000 = devs[1].clone();
        assert_eq!(place_bars(&c, &devs, &mut e1000, &HVM), Ok(2));
        assert_eq!(e1000.mem_bar(0), Some((0xf000_0000, 0x2_0000)));
        assert_eq!(e1000.bars[1], Bar::Io { port: 0xc000, size: 64 });
        assert_eq!(c.read32(b(3), 0x10), 0xf000_0000);
        assert_eq!(c.read32(b(3), 0x14), 0xc001);
        assert_eq!(c.read16(b(3), 0x04), 3, "decoding restored");
        // The next device avoids the first one's ranges, re-enumerated or not.
        let devs = alloc::vec![devs[0].clone(), e1000, devs[2].clone()];
        let mut virtio = devs[2].clone();
        assert_eq!(place_bars(&c, &devs, &mut virtio, &HVM), Ok(2));
        assert_eq!(virtio.mem_bar(0), Some((0xf002_0000, 0x1000)));
        assert_eq!(virtio.mem_bar(4), Some((0xf002_4000, 0x4000)), "size-aligned after the 4 KiB one");
        assert_eq!((c.read32(b(4), 0x20), c.read32(b(4), 0x24)), (0xf002_4004, 0));
        let again = enumerate(&c);
        assert_eq!(again[2].mem_bar(4), Some((0xf002_4000, 0x4000)));
    }

    #[test]
    fn placed_bars_are_left_alone() {
        let c = hvm();
        c.set(b(3), 0x10, 0xfeb8_0000);
        c.set(b(3), 0x14, 0xc041);
        let devs = enumerate(&c);
        let mut e1000 = devs[1].clone();
        assert_eq!(place_bars(&c, &devs, &mut e1000, &HVM), Ok(0));
        assert_eq!(c.read32(b(3), 0x10), 0xfeb8_0000);
    }

    #[test]
    fn a_bar_too_big_for_the_window_is_refused() {
        let mut c = hvm();
        c.bar_masks.insert((b(3), 0x10), 0x8000_0000); // 2 GiB
        let devs = enumerate(&c);
        let mut e1000 = devs[1].clone();
        assert_eq!(place_bars(&c, &devs, &mut e1000, &HVM), Err(PlaceError::NoRoom { bar: 0, size: 0x8000_0000 }));
        assert_eq!(c.read16(b(3), 0x04), 3, "decoding restored after the error");
    }

    #[test]
    fn a_bar_that_does_not_keep_its_address_is_reported() {
        let mut c = hvm();
        let devs = enumerate(&c);
        let mut e1000 = devs[1].clone();
        c.bar_masks.insert((b(3), 0x10), 0); // now reads back 0 whatever is written
        assert_eq!(
            place_bars(&c, &devs, &mut e1000, &HVM),
            Err(PlaceError::NotKept { bar: 0, wrote: 0xf000_0000, reads: 0 })
        );
    }

    #[test]
    fn first_fit_skips_busy_ranges_and_is_bounded() {
        let w = 0x1000..0x10000;
        assert_eq!(first_fit(&w, &[], 0x1000, 0x1000), Some(0x1000));
        let busy = [0x1000..0x2800, 0x3000..0x4000];
        assert_eq!(first_fit(&w, &busy, 0x1000, 0x1000), Some(0x4000));
        assert_eq!(first_fit(&w, &busy, 0x800, 0x800), Some(0x2800));
        assert_eq!(first_fit(&w, &busy, 0x10000, 0x1000), None);
        assert_eq!(first_fit(&w, &busy, 0x3000, 0x1000), None, "not a power of two");
        let many: Vec<Range<u64>> = (0..15).map(|i| 0x1000 + i * 0x1000..0x1800 + i * 0x1000).collect();
        assert_eq!(first_fit(&w, &many, 0x1000, 0x1000), None);
    }
}
