//! Memory types for a domain whose firmware never ran.
//!
//! In an HVM container entered directly (no hvmloader) the vCPU starts with
//! its MTRRs disabled, which makes all of memory uncacheable. Under nested
//! emulation that costs nothing visible, but on real hardware with a device
//! passed through (where Xen honours the guest's memory types) every access
//! to RAM would go to memory uncached. So, when the MTRRs are off, RAM
//! becomes write-back by default and the 32-bit MMIO hole where BARs live
//! stays uncacheable through one variable range. Device mappings are
//! uncached by their page attributes as well.
//!
//! Nothing is changed when the MTRRs are already enabled (bare QEMU's
//! SeaBIOS, a PVH domain, whose builder enables them).

use super::cpu;

const MTRRCAP: u32 = 0xfe;
const PHYSBASE0: u32 = 0x200;
const PHYSMASK0: u32 = 0x201;
const DEF_TYPE: u32 = 0x2ff;
const ENABLE: u64 = 1 << 11;
const VALID: u64 = 1 << 11;
const UC: u64 = 0;
const WB: u64 = 6;

/// What was found and done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtrr {
    /// The CPU has no MTRRs.
    Absent,
    /// Already enabled (by firmware or the domain builder); left alone.
    AlreadySet,
    /// Enabled now: write-back default, `hole` uncacheable.
    Enabled {
        /// Start of the uncacheable range.
        hole_start: u64,
        /// Variable ranges the CPU has.
        variable: u8,
    },
}

impl core::fmt::Display for Mtrr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Mtrr::Absent => f.write_str("no MTRRs"),
            Mtrr::AlreadySet => f.write_str("MTRRs already set"),
            Mtrr::Enabled { hole_start, variable } => {
                write!(f, "write-back, {hole_start:#x}-4 GiB uncacheable ({variable} variable ranges)")
            }
        }
    }
}

/// Physical address bits (CPUID 0x80000008), 36 when not reported.
fn phys_bits() -> u32 {
    if cpu::cpuid(0x8000_0000, 0).eax >= 0x8000_0008 {
        match cpu::cpuid(0x8000_0008, 0).eax & 0xff {
            0 => 36,
            b => b.clamp(32, 52),
        }
    } else {
        36
    }
}

/// Enables write-back MTRRs with `[hole_start, 4 GiB)` uncacheable, unless
/// MTRRs are absent or already enabled. `hole_start` must make the hole a
/// power of two in size, aligned to it.
pub fn write_back_unless_set(hole_start: u64) -> Mtrr {
    if cpu::cpuid(1, 0).edx & (1 << 12) == 0 {
        return Mtrr::Absent;
    }
    if cpu::rdmsr(DEF_TYPE) & ENABLE != 0 {
        return Mtrr::AlreadySet;
    }
    let variable = (cpu::rdmsr(MTRRCAP) & 0xff) as u8;
    let size = (1u64 << 32) - hole_start;
    if variable > 0 && size.is_power_of_two() && hole_start.is_multiple_of(size) {
        let addr_mask = (1u64 << phys_bits()) - 1;
        cpu::wrmsr(PHYSBASE0, hole_start | UC);
        cpu::wrmsr(PHYSMASK0, (!(size - 1) & addr_mask & !0xfff) | VALID);
    }
    cpu::wrmsr(DEF_TYPE, ENABLE | WB);
    Mtrr::Enabled { hole_start, variable }
}
