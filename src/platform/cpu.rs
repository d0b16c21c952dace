//! CPU instructions: port I/O, MSRs, CPUID, TSC, interrupt flag, halt.
//!
//! Control registers are only written, never read to decide anything (nested
//! SVM emulation under test returns stale CR2/CR3/CR4 values).

use core::arch::asm;
use core::arch::x86_64::{__cpuid_count, _rdtsc, CpuidResult};

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    super::exits::count(super::exits::Exit::PortIo);
    // SAFETY: port I/O has no memory-safety effect on this kernel's Rust state;
    // the devices we address (serial, PIT, debug-exit, PCI config) are owned by
    // this kernel alone.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    super::exits::count(super::exits::Exit::PortIo);
    let value: u8;
    // SAFETY: see `outb`.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

/// Writes a 16-bit word to an I/O port.
pub fn outw(port: u16, value: u16) {
    super::exits::count(super::exits::Exit::PortIo);
    // SAFETY: see `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a 16-bit word from an I/O port.
pub fn inw(port: u16) -> u16 {
    super::exits::count(super::exits::Exit::PortIo);
    let value: u16;
    // SAFETY: see `outb`.
    unsafe { asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

/// Writes a 32-bit word to an I/O port.
pub fn outl(port: u16, value: u32) {
    super::exits::count(super::exits::Exit::PortIo);
    // SAFETY: see `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a 32-bit word from an I/O port.
pub fn inl(port: u16) -> u32 {
    super::exits::count(super::exits::Exit::PortIo);
    let value: u32;
    // SAFETY: see `outb`.
    unsafe { asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

/// CPUID with a sub-leaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    __cpuid_count(leaf, subleaf)
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged-safe and has no side effects.
    unsafe { _rdtsc() }
}

/// Reads a model-specific register.
pub fn rdmsr(msr: u32) -> u64 {
    super::exits::count(super::exits::Exit::Msr);
    let (lo, hi): (u32, u32);
    // SAFETY: callers pass architectural MSRs that exist on x86_64 (EFER, APIC
    // base, ...); reading them has no side effects.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Writes a model-specific register.
pub fn wrmsr(msr: u32, value: u64) {
    super::exits::count(super::exits::Exit::Msr);
    // SAFETY: only called by this module's users for MSRs whose semantics they
    // own (APIC base, hypercall page); none of them affect Rust memory safety.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack, preserves_flags))
    }
}

/// Enables interrupts.
pub fn enable_interrupts() {
    // SAFETY: the IDT is installed before anything calls this.
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Disables interrupts.
pub fn disable_interrupts() {
    // SAFETY: masking interrupts cannot violate memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

/// Atomically enables interrupts and halts until the next one arrives
/// (`sti; hlt`: the interrupt shadow of `sti` closes the wake-up race).
pub fn enable_interrupts_and_halt() {
    super::exits::count(super::exits::Exit::Hlt);
    // SAFETY: the IDT is installed; halting only waits for an interrupt.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) }
}

/// Halts with interrupts off, forever.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt stops this CPU; nothing to preserve.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

/// Loads CR3 with an absolute page-table root.
pub(crate) fn write_cr3(root: u64) {
    // SAFETY: callers (paging.rs) pass the physical address of a complete
    // PML4 that identity-maps the kernel image, stacks and heap.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) }
}

/// Loads CR4 with an absolute value.
pub(crate) fn write_cr4(value: u64) {
    // SAFETY: callers pass PAE plus feature bits whose support they checked.
    unsafe { asm!("mov cr4, {}", in(reg) value, options(nostack, preserves_flags)) }
}

/// Reads CR2, the faulting address of the last page fault.
///
/// Only for crash reports: the nested SVM emulation used in tests returns
/// stale values, so nothing may be decided from it.
pub fn read_cr2_unreliable() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Invalidates the TLB entry for one virtual address.
pub(crate) fn invlpg(va: u64) {
    // SAFETY: flushing a TLB entry only forces a page-table walk.
    unsafe { asm!("invlpg [{}]", in(reg) va, options(nostack, preserves_flags)) }
}

/// Returns the current frame pointer (for backtraces).
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) }
    rbp
}

/// True when CPUID says we run under a hypervisor.
pub fn hypervisor_present() -> bool {
    cpuid(1, 0).ecx & (1 << 31) != 0
}
