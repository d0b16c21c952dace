//! Counts of the operations that leave a Xen HVM/PVH guest for the
//! hypervisor (VM exits): hypercalls, local APIC register accesses (EOI,
//! timer), port I/O (the serial log, PCI config), `hlt` and MSR accesses.
//! They are counted where they are issued, so the data plane's cost in
//! exits per forwarded frame can be measured on a real Xen (`rdtsc` is not
//! counted: with `tsc_mode="native"` it does not exit).
//!
//! Single-vCPU counters, relaxed: a count is a statistic, not a lock.

use core::sync::atomic::{AtomicU64, Ordering};

/// Kinds of exits counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A hypercall through the hypercall page.
    Hypercall,
    /// A local APIC register write other than EOI (the timer).
    LapicWrite,
    /// A local APIC end-of-interrupt write.
    Eoi,
    /// A local APIC register read.
    LapicRead,
    /// An `in`/`out` instruction.
    PortIo,
    /// A `hlt` (the idle wait).
    Hlt,
    /// `rdmsr`/`wrmsr`.
    Msr,
}

const KINDS: usize = 7;
static COUNTS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

/// Counts one exit of `kind`.
#[inline]
pub fn count(kind: Exit) {
    if let Some(c) = COUNTS.get(kind as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Hypercall numbers counted one by one (Xen's are all below this).
const HYPERCALL_NUMBERS: usize = 48;
static BY_HYPERCALL: [AtomicU64; HYPERCALL_NUMBERS] = [const { AtomicU64::new(0) }; HYPERCALL_NUMBERS];

/// Counts one hypercall, as an exit and by its number.
#[inline]
pub fn count_hypercall(nr: u32) {
    count(Exit::Hypercall);
    if let Some(c) = usize::try_from(nr).ok().and_then(|i| BY_HYPERCALL.get(i)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The hypercalls so far by number, those issued at least once.
pub fn hypercalls_by_number() -> impl Iterator<Item = (u32, u64)> {
    (0u32..).zip(BY_HYPERCALL.iter()).map(|(nr, c)| (nr, c.load(Ordering::Relaxed))).filter(|&(_, n)| n > 0)
}

/// The counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Exits {
    /// Hypercalls.
    pub hypercalls: u64,
    /// LAPIC writes other than EOI.
    pub lapic_writes: u64,
    /// EOIs.
    pub eois: u64,
    /// LAPIC reads.
    pub lapic_reads: u64,
    /// Port I/O instructions.
    pub port_io: u64,
    /// `hlt`s.
    pub hlts: u64,
    /// MSR accesses.
    pub msrs: u64,
}

impl Exits {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.hypercalls + self.lapic_writes + self.eois + self.lapic_reads + self.port_io + self.hlts + self.msrs
    }
}

/// A snapshot of every count.
pub fn snapshot() -> Exits {
    let g = |k: Exit| COUNTS.get(k as usize).map_or(0, |c| c.load(Ordering::Relaxed));
    Exits {
        hypercalls: g(Exit::Hypercall),
        lapic_writes: g(Exit::LapicWrite),
        eois: g(Exit::Eoi),
        lapic_reads: g(Exit::LapicRead),
        port_io: g(Exit::PortIo),
        hlts: g(Exit::Hlt),
        msrs: g(Exit::Msr),
    }
}
