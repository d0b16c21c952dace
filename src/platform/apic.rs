//! Local APIC (timer, EOI) and I/O APIC (legacy IRQ routing from the MADT).

use super::mmio::Window;
use super::{cpu, idt, paging};
use crate::acpi::{Madt, Polarity, Trigger};
use core::sync::atomic::{AtomicU64, Ordering};
use volatile::VolatileFieldAccess;

/// The local APIC's register page, once `init` has mapped it.
static LAPIC: spin::Once<Window> = spin::Once::new();
/// LAPIC timer ticks per millisecond (divide-by-16).
static TICKS_PER_MS: AtomicU64 = AtomicU64::new(0);
static TIMER_VECTOR: AtomicU64 = AtomicU64::new(0);

const REG_ID: usize = 0x20;
const REG_EOI: usize = 0xb0;
const REG_SVR: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INIT: usize = 0x380;
const REG_TIMER_CUR: usize = 0x390;
const REG_TIMER_DIV: usize = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;

fn lapic_write(reg: usize, v: u32) {
    if let Some(lapic) = LAPIC.get() {
        super::exits::count(if reg == REG_EOI { super::exits::Exit::Eoi } else { super::exits::Exit::LapicWrite });
        lapic.write(reg, v);
    }
}

fn lapic_read(reg: usize) -> u32 {
    let Some(lapic) = LAPIC.get() else { return 0 };
    super::exits::count(super::exits::Exit::LapicRead);
    lapic.read(reg, 0)
}

/// Masks and remaps the legacy 8259 PICs so they can never raise vectors
/// that collide with exceptions (no-op where there is no PIC).
fn disable_pic() {
    for (cmd, data, base, cascade) in [(0x20u16, 0x21u16, 0xe0u8, 4u8), (0xa0, 0xa1, 0xe8, 2)] {
        cpu::outb(cmd, 0x11);
        cpu::outb(data, base);
        cpu::outb(data, cascade);
        cpu::outb(data, 0x01);
        cpu::outb(data, 0xff);
    }
}

/// Deadline (ns) the one-shot timer is armed for; 0 when it is not armed
/// (it fired, or was never set).
static ARMED_UNTIL: AtomicU64 = AtomicU64::new(0);

fn timer_irq() {
    ARMED_UNTIL.store(0, Ordering::Relaxed);
}

/// Enables the local APIC at `phys` and calibrates its timer over `calib`
/// (which busy-waits the given number of microseconds).
pub fn init(phys: u64, calib: impl Fn(u64)) -> Result<(), paging::MapError> {
    disable_pic();
    // IA32_APIC_BASE: keep the base, set global enable (bit 11).
    let msr = cpu::rdmsr(0x1b);
    cpu::wrmsr(0x1b, (msr & !0xfff) | (1 << 11) | (msr & (1 << 8)));
    let base = paging::map_mmio(phys, 0x1000)?;
    // SAFETY: `map_mmio` mapped the LAPIC page uncached and never unmaps it;
    // it holds registers only.
    LAPIC.call_once(|| unsafe { Window::new(base, 0x1000) });
    lapic_write(REG_SVR, 0x100 | u32::from(idt::SPURIOUS_VECTOR));
    let vector = idt::alloc_vector(timer_irq).unwrap_or(idt::FIRST_IRQ_VECTOR);
    TIMER_VECTOR.store(u64::from(vector), Ordering::Relaxed);
    // Calibrate: count down from the maximum for 2 ms.
    lapic_write(REG_TIMER_DIV, 0x3); // divide by 16
    lapic_write(REG_LVT_TIMER, LVT_MASKED | u32::from(vector));
    lapic_write(REG_TIMER_INIT, u32::MAX);
    calib(2_000);
    let elapsed = u64::from(u32::MAX - lapic_read(REG_TIMER_CUR));
    lapic_write(REG_TIMER_INIT, 0);
    TICKS_PER_MS.store((elapsed / 2).max(1), Ordering::Relaxed);
    lapic_write(REG_LVT_TIMER, u32::from(vector)); // one-shot, unmasked
    Ok(())
}

/// LAPIC id of this CPU.
pub fn id() -> u32 {
    lapic_read(REG_ID) >> 24
}

/// Timer ticks per millisecond.
pub fn ticks_per_ms() -> u64 {
    TICKS_PER_MS.load(Ordering::Relaxed)
}

/// Arms the one-shot timer to fire after `ns` nanoseconds (clamped).
pub fn arm_oneshot(ns: u64) {
    let tpm = ticks_per_ms();
    if tpm == 0 {
        return;
    }
    let ticks = (u128::from(ns) * u128::from(tpm) / 1_000_000).clamp(1, u128::from(u32::MAX));
    lapic_write(REG_TIMER_INIT, ticks as u32);
    ARMED_UNTIL.store(super::time::now_ns().saturating_add(ns).max(1), Ordering::Relaxed);
}

/// Makes sure the one-shot timer fires by `deadline` (ns, `now` being the
/// current time): a timer already armed for no later than that is left
/// alone, which saves a register write (a VM exit in a Xen guest) on most
/// sleeps. Call with interrupts off, so that a timer firing meanwhile is
/// taken after the check.
pub fn arm_deadline(now: u64, deadline: u64) {
    let armed = ARMED_UNTIL.load(Ordering::Relaxed);
    // Only a timer still due in the future counts as pending: one whose
    // time has passed without its interrupt is re-armed, so a lost timer
    // interrupt cannot leave the loop without wake-ups.
    if armed > now && armed <= deadline {
        return;
    }
    arm_oneshot(deadline.saturating_sub(now).max(1000));
}

/// Signals end of interrupt.
pub fn eoi() {
    lapic_write(REG_EOI, 0);
}

/// An I/O APIC's register window (82093AA datasheet §3.0): an index
/// register and a data window onto the register it selects.
#[repr(C)]
#[derive(Clone, Copy, VolatileFieldAccess)]
struct IoApicRegs {
    /// 0x00 IOREGSEL.
    select: u32,
    _reserved: [u32; 3],
    /// 0x10 IOWIN.
    window: u32,
}
const _: () = assert!(core::mem::size_of::<IoApicRegs>() == 0x14);

/// One I/O APIC, mapped.
#[derive(Debug, Clone, Copy)]
pub struct IoApic {
    regs: Window,
    /// First GSI.
    pub gsi_base: u32,
    /// Number of pins.
    pub pins: u32,
}

impl IoApic {
    /// Selects `reg` and writes it. The select-then-access pair is not
    /// atomic: callers hold `IOAPICS` or run with interrupts off.
    fn write(&self, reg: u32, v: u32) {
        if let Some(r) = self.regs.at::<IoApicRegs>(0) {
            r.select().write(reg);
            r.window().write(v);
        }
    }

    /// Selects `reg` and reads it (all-ones if the window is too small).
    fn read(&self, reg: u32) -> u32 {
        let Some(r) = self.regs.at::<IoApicRegs>(0) else { return u32::MAX };
        r.select().write(reg);
        r.window().read()
    }
}

static IOAPICS: spin::Mutex<alloc::vec::Vec<IoApic>> = spin::Mutex::new(alloc::vec::Vec::new());

/// Maps every I/O APIC from the MADT and masks all their pins.
pub fn init_ioapics(madt: &Madt) -> usize {
    let mut list = IOAPICS.lock();
    for a in &madt.ioapics {
        let Ok(base) = paging::map_mmio(a.addr, 0x20) else { continue };
        // SAFETY: `map_mmio` mapped the I/O APIC's 0x20-byte register window
        // uncached and never unmaps it; it holds registers only.
        let regs = unsafe { Window::new(base, 0x20) };
        let mut io = IoApic { regs, gsi_base: a.gsi_base, pins: 0 };
        io.pins = ((io.read(1) >> 16) & 0xff) + 1;
        for pin in 0..io.pins {
            io.write(0x10 + 2 * pin, 1 << 16);
        }
        list.push(io);
    }
    list.len()
}

/// Routes a GSI to `vector` on this CPU. Returns false when no I/O APIC serves it.
pub fn route_gsi(gsi: u32, vector: u8, polarity: Polarity, trigger: Trigger) -> bool {
    x86_64::instructions::interrupts::without_interrupts(|| route_gsi_locked(gsi, vector, polarity, trigger))
}

fn route_gsi_locked(gsi: u32, vector: u8, polarity: Polarity, trigger: Trigger) -> bool {
    let list = IOAPICS.lock();
    let Some(io) = list.iter().find(|a| gsi >= a.gsi_base && gsi - a.gsi_base < a.pins) else { return false };
    let pin = gsi - io.gsi_base;
    let mut low = u32::from(vector);
    if polarity == Polarity::Low {
        low |= 1 << 13;
    }
    if trigger == Trigger::Level {
        low |= 1 << 15;
    }
    io.write(0x10 + 2 * pin + 1, id() << 24);
    io.write(0x10 + 2 * pin, low);
    true
}

fn set_gsi_mask(list: &[IoApic], gsi: u32, masked: bool) {
    let Some(io) = list.iter().find(|a| gsi >= a.gsi_base && gsi - a.gsi_base < a.pins) else { return };
    let reg = 0x10 + 2 * (gsi - io.gsi_base);
    let low = io.read(reg);
    io.write(reg, if masked { low | (1 << 16) } else { low & !(1 << 16) });
}

/// Masks a GSI from an interrupt handler (interrupts are off). Main-loop code
/// touches the I/O APICs only with interrupts off, so the lock is free here;
/// if it were not, the line stays unmasked and simply interrupts again.
pub fn mask_gsi_from_irq(gsi: u32) {
    if let Some(list) = IOAPICS.try_lock() {
        set_gsi_mask(&list, gsi, true);
    }
}

/// Unmasks a GSI (from the main loop).
pub fn unmask_gsi(gsi: u32) {
    x86_64::instructions::interrupts::without_interrupts(|| {
        let list = IOAPICS.lock();
        set_gsi_mask(&list, gsi, false);
    });
}
