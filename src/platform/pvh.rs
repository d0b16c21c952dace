//! Reads `struct hvm_start_info` (xen/include/public/arch-x86/hvm/start_info.h)
//! into a `BootInfo`.

use super::phys;
use crate::bootinfo::{BootInfo, MAX_CMDLINE, MemRegion, MemType, START_INFO_MAGIC};

/// Why the start info could not be used.
#[derive(Debug)]
pub enum StartInfoError {
    /// Not readable.
    Unreadable(u64),
    /// Wrong magic.
    BadMagic(u32),
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from(u32_at(b, off)) | (u64::from(u32_at(b, off + 4)) << 32)
}

/// Parses start_info at `paddr`.
pub fn read_start_info(paddr: u64, out: &mut BootInfo) -> Result<(), StartInfoError> {
    let mut si = [0u8; 56];
    if !phys::read(paddr, &mut si) {
        return Err(StartInfoError::Unreadable(paddr));
    }
    let magic = u32_at(&si, 0);
    if magic != START_INFO_MAGIC {
        return Err(StartInfoError::BadMagic(magic));
    }
    out.start_info_paddr = paddr;
    out.version = u32_at(&si, 4);
    out.flags = u32_at(&si, 8);
    let cmdline = u64_at(&si, 24);
    out.rsdp_paddr = u64_at(&si, 32);
    if cmdline != 0 {
        let mut buf = [0u8; MAX_CMDLINE + 1];
        // Read as much as is mapped: the line may sit near the end of RAM.
        let mut n = buf.len();
        while n > 0 && !phys::read(cmdline, &mut buf[..n]) {
            n /= 2;
        }
        out.set_cmdline(&buf[..n]);
    }
    if out.version >= 1 {
        let memmap = u64_at(&si, 40);
        let entries = u32_at(&si, 48);
        for i in 0..u64::from(entries) {
            let mut e = [0u8; 24];
            if !phys::read(memmap + i * 24, &mut e) {
                break;
            }
            out.push_region(MemRegion {
                base: u64_at(&e, 0),
                len: u64_at(&e, 8),
                kind: MemType::from_raw(u32_at(&e, 16)),
            });
        }
    }
    Ok(())
}
