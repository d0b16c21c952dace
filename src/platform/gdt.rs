//! GDT with a TSS whose IST gives double faults their own stack, so a stack
//! overflow into the guard page still produces a crash report.

use spin::Lazy;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based in the IDT) used for double faults.
pub const DOUBLE_FAULT_IST: u8 = 1;

unsafe extern "C" {
    static __ist_top: u8;
}

static TSS: Lazy<TaskStateSegment> = Lazy::new(|| {
    let mut tss = TaskStateSegment::new();
    let top = core::ptr::addr_of!(__ist_top) as u64;
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(top);
    tss
});

static GDT: Lazy<(GlobalDescriptorTable, [SegmentSelector; 3])> = Lazy::new(|| {
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss = gdt.append(Descriptor::tss_segment(&TSS));
    (gdt, [code, data, tss])
});

/// Loads the GDT, reloads segment registers and the task register.
pub fn init() {
    GDT.0.load();
    let [code, data, tss] = GDT.1;
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // lives in a static for the kernel's lifetime; the code selector is a
    // 64-bit code segment and the TSS descriptor points at a static TSS.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss);
    }
}
