//! Xen platform layer: detection, hypercall page, shared_info, event-channel
//! upcall, HVM params, grant-table frames and hypercalls, shared ring pages.

use super::{cpu, frames, idt, time};
use crate::hal::SharedMem;
use crate::xen::abi::{self, hcall, shared_info as si};
use crate::xen::events::EventChannels;
use crate::xen::evtchn;
use crate::xen::{DomId, EvtchnPort, XenError};
use core::arch::asm;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

mod console;
mod events;
mod foreign;
mod grant;
pub use console::{attach_console, console_answer, console_dropped, console_read};
pub use events::{
    evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_close, evtchn_send, evtchn_send_many, next_unmask,
    poll_events, take_fired, throttled,
};
pub use foreign::{MappedGrant, bind_counted, close_counted, map_grant, resources, unmap_failures};
pub use grant::{GRANT_FRAMES, GrantFrames, XenGrantOps, fill_own_page, grant_frames, read_own_page};

static HYPERCALL_PAGE: AtomicU64 = AtomicU64::new(0);
static SHARED_INFO: AtomicU64 = AtomicU64::new(0);
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static EVENTS_PENDING: AtomicBool = AtomicBool::new(false);
/// The upcall comes on the per-vCPU vector, which Xen raises only when
/// `evtchn_upcall_pending` goes from 0 to 1: the flag is then left set
/// while the main loop is busy (it polls the bitmaps itself) and cleared
/// only before it sleeps, so a busy xvif takes no interrupt per event.
static UPCALL_EDGE: AtomicBool = AtomicBool::new(false);
/// The main loop's event-channel dispatcher (storm limiter, fired ports).
static EVENTS: Mutex<Option<EventChannels>> = Mutex::new(None);

/// What `init` found.
#[derive(Debug, Clone, Copy)]
pub struct XenInfo {
    /// Xen version (major, minor).
    pub version: (u32, u32),
    /// CPUID base leaf.
    pub cpuid_base: u32,
    /// Our domain id, when CPUID reports it.
    pub domid: Option<u16>,
    /// xenstore ring page (guest frame) and event channel.
    pub store: (u64, EvtchnPort),
    /// PV console page and event channel, when the toolstack gave one.
    pub console: Option<(u64, EvtchnPort)>,
    /// Upcall vector.
    pub vector: u8,
    /// Grant-table entries mapped.
    pub grant_entries: u32,
}

/// Finds Xen's CPUID leaves ("XenVMMXenVMM").
pub fn detect() -> Option<u32> {
    if !cpu::hypervisor_present() {
        return None;
    }
    (0x4000_0000u32..0x4001_0000).step_by(0x100).find(|&base| {
        let r = cpu::cpuid(base, 0);
        r.ebx == 0x566e_6558 && r.ecx == 0x6558_4d4d && r.edx == 0x4d4d_566e && r.eax >= base + 2
    })
}

/// The guest TSC frequency Xen reports (leaf base+3, sub-leaf 0, ECX).
pub fn tsc_khz(base: u32) -> Option<u64> {
    if cpu::cpuid(base, 0).eax < base + 3 {
        return None;
    }
    let khz = cpu::cpuid(base + 3, 0).ecx;
    (khz != 0).then_some(u64::from(khz))
}

/// Issues hypercall `nr` through the hypercall page.
fn hypercall(nr: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let page = HYPERCALL_PAGE.load(Ordering::Acquire);
    if page == 0 || nr >= 128 {
        return -38; // ENOSYS
    }
    let entry = page + u64::from(nr) * 32;
    super::exits::count_hypercall(nr);
    let ret: i64;
    // SAFETY: `entry` is inside the hypercall page Xen filled for us (the MSR
    // write in `init` succeeded before HYPERCALL_PAGE was set), each 32-byte
    // slot is a hypercall stub that returns with `ret`. Pointer arguments
    // point at live, identity-mapped structures owned by the caller for the
    // duration of the call. Xen may clobber argument registers (debug builds
    // do on purpose), so all of them are declared clobbered.
    unsafe {
        asm!(
            "call {entry}",
            entry = in(reg) entry,
            inlateout("rdi") a1 => _,
            inlateout("rsi") a2 => _,
            inlateout("rdx") a3 => _,
            lateout("rax") ret,
            lateout("r10") _,
            lateout("r8") _,
            lateout("rcx") _,
            lateout("r11") _,
        );
    }
    ret
}

fn hcall_ptr<T>(nr: u32, cmd: u64, arg: &mut T) -> Result<u64, XenError> {
    XenError::check(hypercall(nr, cmd, arg as *mut T as u64, 0))
}

fn hvm_get_param(index: u32) -> Result<u64, XenError> {
    let mut p = abi::HvmParam { domid: DomId::SELF.0, pad: 0, index, value: 0 };
    hcall_ptr(hcall::HVM_OP, abi::HVMOP_GET_PARAM, &mut p)?;
    Ok(p.value)
}

fn hvm_set_param(index: u32, value: u64) -> Result<(), XenError> {
    let mut p = abi::HvmParam { domid: DomId::SELF.0, pad: 0, index, value };
    hcall_ptr(hcall::HVM_OP, abi::HVMOP_SET_PARAM, &mut p).map(|_| ())
}

fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), XenError> {
    let mut a = abi::AddToPhysmap { domid: DomId::SELF.0, size: 0, space, idx, gpfn };
    hcall_ptr(hcall::MEMORY_OP, abi::XENMEM_ADD_TO_PHYSMAP, &mut a).map(|_| ())
}

fn shared_info() -> u64 {
    SHARED_INFO.load(Ordering::Acquire)
}

fn si_u64(off: usize) -> Option<&'static AtomicU64> {
    let base = shared_info();
    if base == 0 || !off.is_multiple_of(8) || off + 8 > 4096 {
        return None;
    }
    // SAFETY: `base` is the shared_info frame Xen mapped into our physmap in
    // `init`; it is identity-mapped, page-aligned and lives forever, `off` is
    // 8-aligned and inside the page (checked above). Xen updates these words
    // with atomic operations too, so an atomic view is the right one.
    Some(unsafe { AtomicU64::from_ptr((base as usize + off) as *mut u64) })
}

fn si_u8(off: usize) -> Option<&'static AtomicU8> {
    let base = shared_info();
    if base == 0 || off >= 4096 {
        return None;
    }
    // SAFETY: as in `si_u64`; bytes need no alignment.
    Some(unsafe { AtomicU8::from_ptr((base as usize + off) as *mut u8) })
}

fn xen_upcall() {
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    // The domain-wide callback vector is level-triggered on the flag:
    // it must be cleared here or the upcall repeats at once.
    if !UPCALL_EDGE.load(Ordering::Relaxed)
        && let Some(p) = si_u8(si::UPCALL_PENDING)
    {
        p.store(0, Ordering::SeqCst);
    }
    EVENTS_PENDING.store(true, Ordering::Release);
}

/// Call with interrupts off right before halting: re-arms the upcall (see
/// `UPCALL_EDGE`) and returns true when events are already waiting, in which
/// case the caller polls instead of halting. An event that arrives after
/// this raises the upcall, which the halt then takes.
pub fn before_sleep() -> bool {
    if let Some(p) = si_u8(si::UPCALL_PENDING) {
        p.store(0, Ordering::SeqCst);
    }
    si_u64(si::PENDING_SEL).is_some_and(|s| s.load(Ordering::SeqCst) != 0)
}

/// Upcalls taken since boot.
pub fn upcalls() -> u64 {
    UPCALLS.load(Ordering::Relaxed)
}

/// Brings up the Xen interfaces.
pub fn init(base: u32) -> Result<XenInfo, XenError> {
    let leaf2 = cpu::cpuid(base + 2, 0);
    if leaf2.eax == 0 {
        return Err(XenError::NoHypervisor);
    }
    let page = frames::alloc_zeroed(1).map_err(|_| XenError::NoMemory)?;
    cpu::wrmsr(leaf2.ebx, page);
    HYPERCALL_PAGE.store(page, Ordering::Release);

    let v = XenError::check(hypercall(hcall::XEN_VERSION, 0, 0, 0))?;
    let version = ((v >> 16) as u32, (v & 0xffff) as u32);

    let leaf4 = cpu::cpuid(base + 4, 0);
    let domid = (cpu::cpuid(base, 0).eax >= base + 4 && leaf4.eax & (1 << 4) != 0).then_some(leaf4.ecx as u16);

    let shared = frames::alloc_zeroed(1).map_err(|_| XenError::NoMemory)?;
    add_to_physmap(abi::XENMAPSPACE_SHARED_INFO, 0, shared >> 12)?;
    SHARED_INFO.store(shared, Ordering::Release);
    if let Some(m) = si_u8(si::UPCALL_MASK) {
        m.store(0, Ordering::SeqCst);
    }
    *EVENTS.lock() = Some(EventChannels::new(evtchn::LimitConfig::default()));

    let vector = idt::alloc_vector(xen_upcall).ok_or(XenError::NoSpace)?;
    // The per-vCPU upcall vector, delivered through the local APIC (EOI'd
    // like any other). The domain-wide callback vector would save that EOI,
    // but with it a nested run here triple-faulted while an interrupt was
    // being delivered; keep to the path Linux PVH uses.
    let mut up = abi::UpcallVector { vcpu: 0, vector, pad: [0; 3] };
    if hcall_ptr(hcall::HVM_OP, abi::HVMOP_SET_EVTCHN_UPCALL_VECTOR, &mut up).is_ok() {
        UPCALL_EDGE.store(true, Ordering::Relaxed);
        // libxl takes a non-zero HVM_PARAM_CALLBACK_IRQ as the sign that an
        // HVM domain has PV drivers, and only then lets `xl shutdown` ask
        // through control/shutdown. GSI 1 (type 0) is what Linux writes for
        // the same reason: Xen prefers the per-vCPU vector, so that GSI is
        // never raised, and a domain without an emulated I/O APIC (PVH)
        // keeps only the value.
        if let Err(e) = hvm_set_param(abi::param::CALLBACK_IRQ, 1) {
            log::warn!("xen: HVM_PARAM_CALLBACK_IRQ: {e:?}; xl shutdown of an HVM container needs -F");
        }
    } else {
        // Older Xen: the domain-wide vector callback (HVM_PARAM_CALLBACK_IRQ,
        // type 2 = vector), which Xen injects without the local APIC.
        hvm_set_param(abi::param::CALLBACK_IRQ, (2u64 << 56) | u64::from(vector))?;
        idt::set_no_eoi(vector, true);
    }

    let store = (hvm_get_param(abi::param::STORE_PFN)?, EvtchnPort(hvm_get_param(abi::param::STORE_EVTCHN)? as u32));
    let console = match (hvm_get_param(abi::param::CONSOLE_PFN), hvm_get_param(abi::param::CONSOLE_EVTCHN)) {
        (Ok(pfn), Ok(port)) if pfn != 0 => Some((pfn, EvtchnPort(port as u32))),
        _ => None,
    };
    let grant_entries = grant::init_grant_table().unwrap_or(0);
    super::exit::set_hypervisor_poweroff(shutdown_hook);
    Ok(XenInfo { version, cpuid_base: base, domid, store, console, vector, grant_entries })
}

fn shutdown_hook(status: super::exit::Status) {
    let reason =
        if status == super::exit::Status::Success { abi::sched::SHUTDOWN_POWEROFF } else { abi::sched::SHUTDOWN_CRASH };
    shutdown(reason);
}

/// SCHEDOP_shutdown with the given reason; returns only if Xen refused.
pub fn shutdown(reason: u32) {
    let mut r = reason;
    let _ = hcall_ptr(hcall::SCHED_OP, abi::sched::SHUTDOWN, &mut r);
}

// ---- event channels: see xen/evtchn.rs; the PV console: xen/console.rs ----

// ---- shared pages ----

/// A 4 KiB page shared with another domain, accessed only by volatile copies.
#[derive(Debug, Clone, Copy)]
pub struct XenPage {
    addr: u64,
}

impl XenPage {
    /// The ring page at guest frame `pfn` (xenstore, console): Xen put it in
    /// our physmap below 4 GiB, inside the identity map.
    pub fn from_special_pfn(pfn: u64) -> Option<Self> {
        let addr = pfn.checked_mul(4096)?;
        (addr >= 0x1000 && addr.checked_add(4096)? <= super::phys::identity_limit()).then_some(Self { addr })
    }

    /// Guest frame number.
    pub fn gfn(&self) -> u64 {
        self.addr >> 12
    }

    fn ptr(&self, off: usize, len: usize) -> Option<usize> {
        (off.checked_add(len)? <= 4096).then_some(self.addr as usize + off)
    }

    /// The u32 at `off` as an atomic, when `off` is 4-aligned and inside the
    /// page (the page itself is 4 KiB-aligned, so the address is aligned too).
    fn word(&self, off: usize) -> Option<&AtomicU32> {
        let p = self.ptr(off, 4).filter(|_| off.is_multiple_of(4))?;
        // SAFETY: `p` is 4-aligned and the four bytes lie inside this
        // identity-mapped page, which stays mapped while the XenPage is in
        // use (ring pages live as long as their connection). The peer writes
        // ring indices with aligned 32-bit stores, so an atomic view gives
        // one whole value per access; no Rust reference to the plain bytes
        // exists anywhere.
        Some(unsafe { AtomicU32::from_ptr(p as *mut u32) })
    }
}

impl SharedMem for XenPage {
    fn size(&self) -> usize {
        4096
    }

    /// One aligned 32-bit load (acquire: entries read after it are at least
    /// as new as the index). Misaligned or out-of-range `off` reads 0.
    fn read_u32(&self, off: usize) -> u32 {
        self.word(off).map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// One aligned 32-bit store (release: entries written before it are
    /// visible first). Misaligned or out-of-range `off` is dropped.
    fn write_u32(&self, off: usize, v: u32) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Release);
        }
    }

    fn read_bytes(&self, off: usize, buf: &mut [u8]) {
        let Some(p) = self.ptr(off, buf.len()) else {
            buf.fill(0);
            return;
        };
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: inside this identity-mapped page (checked by `ptr`);
            // byte-wise volatile reads never form a reference to memory the
            // peer may change concurrently.
            *b = unsafe { ptr::read_volatile((p + i) as *const u8) };
        }
    }

    fn write_bytes(&self, off: usize, data: &[u8]) {
        let Some(p) = self.ptr(off, data.len()) else { return };
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read_bytes`.
            unsafe { ptr::write_volatile((p + i) as *mut u8, *b) };
        }
    }

    fn compare_exchange_u16(&self, off: usize, old: u16, new: u16) -> u16 {
        match self.ptr(off, 2).filter(|p| p % 2 == 0) {
            // SAFETY: 2-aligned, inside this page; the peer (Xen) updates grant
            // flags atomically, so an atomic view is required here.
            Some(p) => match unsafe { AtomicU16::from_ptr(p as *mut u16) }.compare_exchange(
                old,
                new,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(v) | Err(v) => v,
            },
            None => !old,
        }
    }
}

/// Waits for an interrupt, at most about one millisecond. The timer is
/// armed with interrupts off, as in the idle loop: nothing is delivered on
/// the instruction after the (emulated, VM-exiting) LAPIC write.
pub fn wait_briefly() {
    cpu::disable_interrupts();
    if before_sleep() {
        cpu::enable_interrupts();
        return;
    }
    super::apic::arm_oneshot(1_000_000);
    idt::sleep_until_interrupt();
}

/// Current time, for xenstore deadlines.
pub fn now_ns() -> u64 {
    time::now_ns()
}

/// The xenstore connection's environment: ring page, event channel, clock.
#[derive(Debug, Clone, Copy)]
pub struct StoreIo {
    page: XenPage,
    port: EvtchnPort,
}

impl StoreIo {
    /// From the HVM params read in `init`.
    pub fn new(info: &XenInfo) -> Option<Self> {
        Some(Self { page: XenPage::from_special_pfn(info.store.0)?, port: info.store.1 })
    }

    /// The xenstore event channel.
    pub fn port(&self) -> EvtchnPort {
        self.port
    }
}

impl crate::xen::xenstore::XsIo for StoreIo {
    fn mem(&self) -> &dyn SharedMem {
        &self.page
    }
    fn notify(&self) {
        let _ = evtchn_send(self.port);
    }
    fn wait(&self) {
        wait_briefly();
    }
    fn now_ns(&self) -> u64 {
        time::now_ns()
    }
}

/// Mean cost in ns of the operations on the event path, measured over
/// `n` rounds each: a no-op hypercall (XENVER_version), a LAPIC EOI write,
/// a LAPIC timer arm, and a LAPIC register read. Under a hardware-assisted
/// container each LAPIC access is a VM exit; this tells how dear they are.
pub fn event_path_costs(n: u64) -> [(&'static str, u64); 5] {
    let n = n.max(1);
    let time = |f: &mut dyn FnMut()| {
        let t0 = super::time::now_ns();
        for _ in 0..n {
            f();
        }
        (super::time::now_ns() - t0) / n
    };
    let hcall = time(&mut || {
        let _ = hypercall(hcall::XEN_VERSION, 0, 0, 0);
    });
    let eoi = time(&mut super::apic::eoi);
    let arm = time(&mut || super::apic::arm_oneshot(1_000_000_000));
    let read = time(&mut || {
        let _ = super::apic::id();
    });
    let msr = time(&mut || {
        let _ = cpu::rdmsr(0x1b);
    });
    [("hypercall", hcall), ("lapic_eoi", eoi), ("lapic_timer_arm", arm), ("lapic_read", read), ("msr_read", msr)]
}
