//! Power off: Xen SCHEDOP_shutdown when on Xen, QEMU's isa-debug-exit,
//! then ACPI S5, then halt.

use super::cpu;
use core::sync::atomic::{AtomicU32, Ordering};

/// Exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Clean power-off.
    Success,
    /// Crash or failed self test.
    Failure,
}

/// QEMU isa-debug-exit port; QEMU exits with `(value << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;
/// Value written for success: QEMU exit status 33.
pub const DEBUG_EXIT_SUCCESS: u8 = 0x10;
/// Value written for failure: QEMU exit status 35.
pub const DEBUG_EXIT_FAILURE: u8 = 0x11;

/// (PM1a control port << 16) | SLP_TYPa, 0 when unknown.
static ACPI_S5: AtomicU32 = AtomicU32::new(0);

/// A hook that powers off through the hypervisor; returns only on failure.
static HYPERVISOR_POWEROFF: spin::Once<fn(Status)> = spin::Once::new();

/// Records the ACPI power-off port and sleep type.
pub fn set_acpi_s5(port: u16, slp_typ: u16) {
    ACPI_S5.store((u32::from(port) << 16) | u32::from(slp_typ & 7), Ordering::Relaxed);
}

/// Installs the hypervisor power-off path (Xen).
pub fn set_hypervisor_poweroff(f: fn(Status)) {
    HYPERVISOR_POWEROFF.call_once(|| f);
}

/// Powers the machine off, after stopping the DMA of every PCI function
/// this kernel made a bus master. Never returns.
pub fn poweroff(status: Status) -> ! {
    cpu::disable_interrupts();
    super::pci_cfg::stop_bus_masters();
    if let Some(f) = HYPERVISOR_POWEROFF.get() {
        f(status);
    }
    cpu::outb(DEBUG_EXIT_PORT, if status == Status::Success { DEBUG_EXIT_SUCCESS } else { DEBUG_EXIT_FAILURE });
    let s5 = ACPI_S5.load(Ordering::Relaxed);
    if s5 != 0 {
        cpu::outw((s5 >> 16) as u16, (((s5 & 7) as u16) << 10) | (1 << 13));
    }
    cpu::halt_forever()
}
