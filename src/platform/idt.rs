//! IDT, trap dispatch and the crash report.

use super::{apic, cpu, exit, gdt};
use crate::crash;
use core::arch::global_asm;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

global_asm!(include_str!("trap.S"), options(att_syntax));

/// Registers saved by the entry stubs (order matches trap.S).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    r15: u64,
    r14: u64,
    r13: u64,
    r12: u64,
    r11: u64,
    r10: u64,
    r9: u64,
    r8: u64,
    rbp: u64,
    rdi: u64,
    rsi: u64,
    rdx: u64,
    rcx: u64,
    rbx: u64,
    rax: u64,
    vector: u64,
    error: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attr: u8,
    offset_mid: u16,
    offset_high: u32,
    zero: u32,
}
const _: () = assert!(core::mem::size_of::<Gate>() == 16);

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static mut IDT: Idt =
    Idt([Gate { offset_low: 0, selector: 0, ist: 0, attr: 0, offset_mid: 0, offset_high: 0, zero: 0 }; 256]);

unsafe extern "C" {
    static xvif_trap_stubs: u8;
    static __stack_bottom: u8;
    static __stack_top: u8;
    static __ist_bottom: u8;
    static __ist_top: u8;
}

/// First vector for device interrupts.
pub const FIRST_IRQ_VECTOR: u8 = 0x30;
/// Spurious-interrupt vector of the local APIC.
pub const SPURIOUS_VECTOR: u8 = 0xff;

static HANDLERS: [AtomicUsize; 256] = [const { AtomicUsize::new(0) }; 256];
/// Vectors not delivered through the local APIC (Xen's callback vector):
/// no EOI, which would only cost a VM exit.
static NO_EOI: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];
static NEXT_VECTOR: AtomicUsize = AtomicUsize::new(FIRST_IRQ_VECTOR as usize);
static IRQ_COUNT: AtomicU64 = AtomicU64::new(0);
static IN_CRASH: AtomicBool = AtomicBool::new(false);
/// Set by every device interrupt; the idle path sleeps only while it is clear.
static WAKE: AtomicBool = AtomicBool::new(false);

/// Installs the IDT.
pub fn init() {
    let stubs = core::ptr::addr_of!(xvif_trap_stubs) as u64;
    // SAFETY: called once on the boot CPU before interrupts are enabled; no
    // other reference to IDT exists while it is filled.
    let idt = unsafe { &mut *core::ptr::addr_of_mut!(IDT) };
    for (v, gate) in idt.0.iter_mut().enumerate() {
        let addr = stubs + v as u64 * 16;
        *gate = Gate {
            offset_low: addr as u16,
            selector: 0x08,
            ist: if v == 8 || v == 2 { gdt::DOUBLE_FAULT_IST } else { 0 },
            attr: 0x8e,
            offset_mid: (addr >> 16) as u16,
            offset_high: (addr >> 32) as u32,
            zero: 0,
        };
    }
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is a static with 256 valid gates pointing at the stubs.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

/// Allocates a vector for a device interrupt and installs `handler`.
/// Handlers run with interrupts off and must only record that work is pending.
pub fn alloc_vector(handler: fn()) -> Option<u8> {
    let v = NEXT_VECTOR.fetch_add(1, Ordering::Relaxed);
    if v >= usize::from(SPURIOUS_VECTOR) {
        return None;
    }
    HANDLERS.get(v)?.store(handler as usize, Ordering::Release);
    u8::try_from(v).ok()
}

/// Installs a handler on a fixed vector (the Xen upcall).
pub fn set_handler(vector: u8, handler: fn()) {
    if let Some(h) = HANDLERS.get(usize::from(vector)) {
        h.store(handler as usize, Ordering::Release);
    }
}

/// Marks `vector` as not delivered by the local APIC: its handler ends
/// without an EOI.
pub fn set_no_eoi(vector: u8, on: bool) {
    if let Some(f) = NO_EOI.get(usize::from(vector)) {
        f.store(on, Ordering::Relaxed);
    }
}

/// Halts until an interrupt, unless one arrived since the last call (no lost
/// wake-ups: the flag is checked with interrupts off, then `sti; hlt`).
pub fn sleep_until_interrupt() {
    cpu::disable_interrupts();
    if WAKE.swap(false, Ordering::AcqRel) {
        cpu::enable_interrupts();
    } else {
        cpu::enable_interrupts_and_halt();
        WAKE.store(false, Ordering::Release);
    }
}

/// Device interrupts taken since boot.
pub fn irq_count() -> u64 {
    IRQ_COUNT.load(Ordering::Relaxed)
}

#[unsafe(no_mangle)]
extern "C" fn xvif_trap_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector < 32 {
        crash_report(frame);
    }
    if vector == u64::from(SPURIOUS_VECTOR) {
        return;
    }
    IRQ_COUNT.fetch_add(1, Ordering::Relaxed);
    WAKE.store(true, Ordering::Release);
    let h = HANDLERS.get(vector as usize).map_or(0, |h| h.load(Ordering::Acquire));
    if h != 0 {
        // SAFETY: non-zero entries are only stored from `fn()` values in
        // `alloc_vector`/`set_handler`, so this transmute restores that type.
        let f: fn() = unsafe { core::mem::transmute::<usize, fn()>(h) };
        f();
    }
    if !NO_EOI.get(vector as usize).is_some_and(|f| f.load(Ordering::Relaxed)) {
        apic::eoi();
    }
}

/// Writes straight to the serial/debug port and the PV console without
/// taking the log lock (the crash may have happened while it was held).
pub struct RawConsole;

impl Write for RawConsole {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        super::logger::write_crash(s.as_bytes());
        Ok(())
    }
}

fn stack_ranges() -> [core::ops::Range<u64>; 2] {
    [
        core::ptr::addr_of!(__stack_bottom) as u64..core::ptr::addr_of!(__stack_top) as u64,
        core::ptr::addr_of!(__ist_bottom) as u64..core::ptr::addr_of!(__ist_top) as u64,
    ]
}

fn read_stack_u64(addr: u64) -> Option<u64> {
    let ok =
        stack_ranges().iter().any(|r| addr >= r.start && addr.saturating_add(8) <= r.end) && addr.is_multiple_of(8);
    // SAFETY: the address is 8-byte aligned and inside one of our own mapped
    // kernel stacks (checked just above).
    ok.then(|| unsafe { core::ptr::read_volatile(addr as usize as *const u64) })
}

/// Prints a backtrace from `rbp`.
pub fn print_backtrace(out: &mut dyn Write, rbp: u64) {
    let _ = writeln!(out, "backtrace (frame pointers):");
    let mut last = 0;
    let mut repeats = 0;
    let n = crash::backtrace(rbp, &stack_ranges(), read_stack_u64, 64, |i, ret| {
        if ret == last {
            repeats += 1;
            return;
        }
        if repeats > 0 {
            let _ = writeln!(out, "      (previous frame repeated {repeats} more times)");
            repeats = 0;
        }
        last = ret;
        let _ = writeln!(out, "  #{i:<2} {ret:#018x}");
    });
    if repeats > 0 {
        let _ = writeln!(out, "      (previous frame repeated {repeats} more times)");
    }
    if n == 0 {
        let _ = writeln!(out, "  (no frames)");
    }
}

fn crash_report(f: &TrapFrame) -> ! {
    let mut out = RawConsole;
    if IN_CRASH.swap(true, Ordering::SeqCst) {
        let _ = writeln!(out, "\n!!! fault while reporting a fault (vector {}, rip {:#x})", f.vector, f.rip);
        exit::poweroff(exit::Status::Failure);
    }
    let _ = writeln!(out, "\n!!! xvif CRASH: {} (vector {})", crash::exception_name(f.vector), f.vector);
    let _ = writeln!(out, "error code {:#x}  rip {:#018x}  cs {:#x}  rflags {:#x}", f.error, f.rip, f.cs, f.rflags);
    let _ = writeln!(out, "rsp {:#018x}  ss {:#x}", f.rsp, f.ss);
    if f.vector == 14 {
        let _ = writeln!(
            out,
            "page fault: {}; cr2 {:#018x} (cr2 may be stale under nested emulation)",
            crash::page_fault_cause(f.error),
            cpu::read_cr2_unreliable()
        );
    }
    if f.vector == 8 {
        let _ = writeln!(out, "double fault: most likely a kernel stack overflow into the guard page");
    }
    let _ = writeln!(out, "rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}", f.rax, f.rbx, f.rcx, f.rdx);
    let _ = writeln!(out, "rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}", f.rsi, f.rdi, f.rbp, f.r8);
    let _ = writeln!(out, "r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}", f.r9, f.r10, f.r11, f.r12);
    let _ = writeln!(out, "r13 {:#018x} r14 {:#018x} r15 {:#018x}", f.r13, f.r14, f.r15);
    let _ = writeln!(out, "  #-  {:#018x} (faulting instruction)", f.rip);
    print_backtrace(&mut out, f.rbp);
    let _ = writeln!(out, "xvif: stopped after crash");
    exit::poweroff(exit::Status::Failure)
}
