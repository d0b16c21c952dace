//! Monotonic time from the TSC, calibrated once at boot.

use super::cpu;
use core::sync::atomic::{AtomicU64, Ordering};

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static TSC_BOOT: AtomicU64 = AtomicU64::new(0);

/// Where the TSC frequency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TscSource {
    /// Hypervisor CPUID timing leaf.
    HypervisorCpuid,
    /// CPUID leaf 0x15/0x16.
    Cpuid,
    /// Measured against the PIT.
    Pit,
    /// Nothing worked; 1 GHz assumed.
    Assumed,
}

/// Records the boot TSC value (first thing on entry).
pub fn mark_boot() {
    TSC_BOOT.store(cpu::rdtsc(), Ordering::Relaxed);
}

/// Measures the TSC frequency against PIT channel 2 over about `us`
/// microseconds; None when there is no PIT (Xen PVH) or it does not count.
fn pit_hz(us: u64) -> Option<u64> {
    let count = (1_193_182 * us / 1_000_000).clamp(1, 0xffff);
    let gate = cpu::inb(0x61);
    cpu::outb(0x61, (gate & !0x02) | 0x01); // gate on, speaker off
    cpu::outb(0x43, 0xb0); // channel 2, lo/hi, mode 0
    cpu::outb(0x42, count as u8);
    cpu::outb(0x42, (count >> 8) as u8);
    let start = cpu::rdtsc();
    let mut spins = 0u64;
    while cpu::inb(0x61) & 0x20 == 0 {
        spins += 1;
        if spins > 50_000_000 {
            cpu::outb(0x61, gate);
            return None;
        }
    }
    let ticks = cpu::rdtsc() - start;
    cpu::outb(0x61, gate);
    // An absent PIT reads 0xff (OUT already high): nothing was measured.
    (spins > 0 && ticks > 0).then(|| ticks * 1_193_182 / count)
}

/// Determines the TSC frequency. `hv_khz` is a frequency the hypervisor
/// reported (Xen's timing leaf), if any.
pub fn calibrate(hv_khz: Option<u64>) -> TscSource {
    let (hz, src) = if let Some(k) = hv_khz.filter(|&k| k > 0) {
        (k * 1000, TscSource::HypervisorCpuid)
    } else if let Some(hz) = cpuid_hz() {
        (hz, TscSource::Cpuid)
    } else if let Some(hz) = pit_hz(10_000) {
        (hz, TscSource::Pit)
    } else {
        (1_000_000_000, TscSource::Assumed)
    };
    TSC_HZ.store(hz.max(1_000_000), Ordering::Relaxed);
    src
}

fn cpuid_hz() -> Option<u64> {
    let max = cpu::cpuid(0, 0).eax;
    if max >= 0x15 {
        let l = cpu::cpuid(0x15, 0);
        if l.eax != 0 && l.ebx != 0 && l.ecx != 0 {
            return Some(u64::from(l.ecx) * u64::from(l.ebx) / u64::from(l.eax));
        }
    }
    // KVM/VMware-style timing leaf: EAX = TSC kHz.
    if cpu::hypervisor_present() && cpu::cpuid(0x4000_0000, 0).eax >= 0x4000_0010 {
        let khz = cpu::cpuid(0x4000_0010, 0).eax;
        if khz != 0 {
            return Some(u64::from(khz) * 1000);
        }
    }
    None
}

/// TSC frequency in Hz.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed).max(1)
}

/// Nanoseconds since `mark_boot`.
pub fn now_ns() -> u64 {
    let d = cpu::rdtsc().wrapping_sub(TSC_BOOT.load(Ordering::Relaxed));
    (u128::from(d) * 1_000_000_000 / u128::from(tsc_hz())) as u64
}

/// Nanoseconds since the CPU's TSC started (reset of the VM, roughly).
pub fn since_reset_ns() -> u64 {
    (u128::from(cpu::rdtsc()) * 1_000_000_000 / u128::from(tsc_hz())) as u64
}

/// Busy-waits `us` microseconds.
pub fn delay_us(us: u64) {
    let end = cpu::rdtsc().saturating_add(tsc_hz() / 1_000_000 * us);
    while cpu::rdtsc() < end {
        core::hint::spin_loop();
    }
}
