//! Everything that touches hardware or raw memory. The only module of xvif
//! allowed to contain `unsafe`; each block says which invariant it relies on.

pub mod apic;
pub mod bufpool;
pub mod cpu;
pub mod devhal;
pub mod dma;
pub mod exit;
pub mod exits;
pub mod frames;
pub mod gdt;
pub mod heap;
pub mod idt;
pub mod irq;
pub mod logger;
pub mod mmio;
pub mod mtrr;
pub mod paging;
pub mod pci_cfg;
pub mod phys;
pub mod pvh;
pub mod serial;
pub mod time;
pub mod xen;

use crate::acpi::{self, AcpiInfo};
use crate::bootinfo::BootInfo;
use crate::memory;
use crate::xen::hvm_info::{self, HvmInfo};
use core::arch::global_asm;

global_asm!(include_str!("../../boot/entry.S"), options(att_syntax));

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
    static __stack_guard: u8;
    static __ist_guard: u8;
}

/// Physical range of the loaded image (text, data, bss, stacks).
pub fn kernel_range() -> core::ops::Range<u64> {
    core::ptr::addr_of!(__kernel_start) as u64..core::ptr::addr_of!(__kernel_end) as u64
}

/// Address of the unmapped guard page under the boot stack.
pub fn stack_guard() -> u64 {
    core::ptr::addr_of!(__stack_guard) as u64
}

/// What early initialisation found.
#[derive(Debug)]
pub struct Platform {
    /// Loader-provided boot information.
    pub boot: BootInfo,
    /// Heap size in bytes.
    pub heap_bytes: u64,
    /// ACPI findings (None when ACPI is absent or corrupt).
    pub acpi: Option<AcpiInfo>,
    /// How the TSC was calibrated.
    pub tsc_source: time::TscSource,
    /// Number of I/O APICs set up.
    pub ioapics: usize,
    /// Xen, when running on it: what came up, or why not.
    pub xen: Option<Result<xen::XenInfo, crate::xen::XenError>>,
    /// The domain builder's HVM info table: present only in an HVM
    /// container (a domain with a device model), absent under PVH.
    pub hvm: Option<HvmInfo>,
    /// What was done about memory types in an HVM container.
    pub mtrr: Option<mtrr::Mtrr>,
    /// Early problems to log once the logger is configured.
    pub warnings: alloc::vec::Vec<alloc::string::String>,
}

/// Fatal early error: prints and powers off.
fn fatal(msg: core::fmt::Arguments<'_>) -> ! {
    use core::fmt::Write;
    let _ = writeln!(idt::RawConsole, "xvif: fatal: {msg}");
    exit::poweroff(exit::Status::Failure)
}

/// Brings the machine from the PVH entry to a state where Rust code can run
/// normally: console, GDT/IDT, heap, frames, page tables, clock, APICs.
pub fn init(start_info: u64) -> Platform {
    time::mark_boot();
    serial::init();
    logger::init(log::LevelFilter::Info);
    gdt::init();
    idt::init();

    let mut boot = BootInfo::new();
    if let Err(e) = pvh::read_start_info(start_info, &mut boot) {
        fatal(format_args!("unusable hvm_start_info at {start_info:#x}: {e:?}"));
    }
    // start_info and the command line were copied; the memory map entries are
    // copied too, so nothing of the loader's needs to stay reserved.
    let plan = match memory::plan(boot.memmap(), &[kernel_range()], 1 << 20, 64 << 20) {
        Ok(p) => p,
        Err(e) => fatal(format_args!(
            "memory plan failed: {e:?} (start_info v{} at {start_info:#x}, memmap {:?})",
            boot.version,
            boot.memmap()
        )),
    };
    heap::init(plan.heap.start, plan.heap.end - plan.heap.start);
    frames::init(plan.frame_ranges());
    let mut warnings = alloc::vec::Vec::new();
    if boot.memmap_dropped > 0 {
        warnings.push(alloc::format!(
            "memory map: {} entries beyond {} ignored",
            boot.memmap_dropped,
            crate::bootinfo::MAX_MEMMAP
        ));
    }
    if boot.cmdline_truncated {
        warnings.push(alloc::format!("command line truncated to {} bytes", crate::bootinfo::MAX_CMDLINE));
    }
    let xen_base = xen::detect();
    let holes = [stack_guard(), core::ptr::addr_of!(__ist_guard) as u64];
    // Under Xen, 1 GiB of guest-physical space above RAM receives mapped grants.
    let foreign = if xen_base.is_some() { 1 << 30 } else { 0 };
    if let Err(e) = paging::init(boot.ram_end(), &holes, foreign) {
        fatal(format_args!("page tables: {e:?}"));
    }
    let tsc_source = time::calibrate(xen_base.and_then(xen::tsc_khz));

    let hvm = xen_base.and_then(|_| {
        let mut t = [0u8; hvm_info::HVM_INFO_READ];
        phys::read(hvm_info::HVM_INFO_PADDR, &mut t).then(|| HvmInfo::parse(&t)).flatten()
    });
    let acpi = match (acpi::discover(&phys::Firmware, boot.rsdp_paddr), &hvm) {
        (Ok(a), _) => Some(a),
        // No firmware built tables: the container's fixed interrupt wiring.
        (Err(_), Some(h)) => Some(AcpiInfo { madt: Some(h.madt()), ..AcpiInfo::default() }),
        (Err(e), None) => {
            warnings.push(alloc::format!("ACPI: {e:?}; no I/O APIC routing, no ACPI power-off"));
            None
        }
    };
    let mtrr = hvm.map(|_| mtrr::write_back_unless_set(hvm_info::PCI_MEM_WINDOW.start));
    let lapic_phys = acpi.as_ref().and_then(|a| a.madt.as_ref()).map_or(0xfee0_0000, |m| m.lapic_addr);
    if let Err(e) = apic::init(lapic_phys, time::delay_us) {
        warnings.push(alloc::format!("local APIC at {lapic_phys:#x}: {e:?}"));
    }
    let mut ioapics = 0;
    if let Some(a) = &acpi {
        if let Some(m) = &a.madt {
            ioapics = apic::init_ioapics(m);
        }
        if let Some((port, slp)) = a.pm1a_cnt {
            exit::set_acpi_s5(port, slp);
        }
    }
    let xen = xen_base.map(xen::init);
    Platform { boot, heap_bytes: plan.heap.end - plan.heap.start, acpi, tsc_source, ioapics, xen, hvm, mtrr, warnings }
}

/// Reads the unmapped stack guard page: the page-fault self test.
pub fn touch_stack_guard() -> u8 {
    // SAFETY: deliberately faults. The guard page is left unmapped by
    // `paging::init`; the page-fault handler prints a crash report and powers
    // off, so execution never continues past this read.
    unsafe { core::ptr::read_volatile(stack_guard() as usize as *const u8) }
}

/// The Rust entry, jumped to from `boot/entry.S` in long mode.
#[unsafe(no_mangle)]
extern "C" fn xvif_main(start_info: u64) -> ! {
    crate::kernel::run(init(start_info))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    let mut out = idt::RawConsole;
    let _ = writeln!(out, "\n!!! xvif PANIC: {info}");
    idt::print_backtrace(&mut out, cpu::frame_pointer());
    let _ = writeln!(out, "xvif: stopped after panic");
    exit::poweroff(exit::Status::Failure)
}
