//! Xen hypercall ABI: numbers, constants and `#[repr(C)]` argument
//! structures, with the public header each comes from. Layouts are checked
//! at compile time.
#![forbid(unsafe_code)]

use core::mem::size_of;

/// Hypercall numbers (xen/include/public/xen.h).
pub mod hcall {
    /// `__HYPERVISOR_memory_op`.
    pub const MEMORY_OP: u32 = 12;
    /// `__HYPERVISOR_multicall`.
    pub const MULTICALL: u32 = 13;
    /// `__HYPERVISOR_xen_version`.
    pub const XEN_VERSION: u32 = 17;
    /// `__HYPERVISOR_console_io`.
    pub const CONSOLE_IO: u32 = 18;
    /// `__HYPERVISOR_grant_table_op`.
    pub const GRANT_TABLE_OP: u32 = 20;
    /// `__HYPERVISOR_vcpu_op`.
    pub const VCPU_OP: u32 = 24;
    /// `__HYPERVISOR_sched_op`.
    pub const SCHED_OP: u32 = 29;
    /// `__HYPERVISOR_event_channel_op`.
    pub const EVENT_CHANNEL_OP: u32 = 32;
    /// `__HYPERVISOR_hvm_op`.
    pub const HVM_OP: u32 = 34;

    /// The short name of a hypercall we issue, for counters.
    pub fn name(nr: u32) -> Option<&'static str> {
        Some(match nr {
            MEMORY_OP => "memory_op",
            MULTICALL => "multicall",
            XEN_VERSION => "xen_version",
            CONSOLE_IO => "console_io",
            GRANT_TABLE_OP => "grant_table_op",
            VCPU_OP => "vcpu_op",
            SCHED_OP => "sched_op",
            EVENT_CHANNEL_OP => "event_channel_op",
            HVM_OP => "hvm_op",
            _ => return None,
        })
    }
}

/// `XENMEM_add_to_physmap` (xen/include/public/memory.h).
pub const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
/// `XENMAPSPACE_shared_info`.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`.
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;

/// `struct xen_add_to_physmap` (xen/include/public/memory.h).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct AddToPhysmap {
    /// Domain (DOMID_SELF).
    pub domid: u16,
    /// Number of pages for XENMAPSPACE_gmfn_range.
    pub size: u16,
    /// XENMAPSPACE_*.
    pub space: u32,
    /// Index into the space.
    pub idx: u64,
    /// Guest frame to map it at.
    pub gpfn: u64,
}
const _: () = assert!(size_of::<AddToPhysmap>() == 24);

/// `HVMOP_set_param` / `HVMOP_get_param` (xen/include/public/hvm/hvm_op.h).
pub const HVMOP_SET_PARAM: u64 = 0;
/// `HVMOP_get_param`.
pub const HVMOP_GET_PARAM: u64 = 1;
/// `HVMOP_set_evtchn_upcall_vector`.
pub const HVMOP_SET_EVTCHN_UPCALL_VECTOR: u64 = 23;

/// `struct xen_hvm_param`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct HvmParam {
    /// Domain.
    pub domid: u16,
    /// Padding.
    pub pad: u16,
    /// HVM_PARAM_*.
    pub index: u32,
    /// Value.
    pub value: u64,
}
const _: () = assert!(size_of::<HvmParam>() == 16);

/// `struct xen_hvm_evtchn_upcall_vector`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct UpcallVector {
    /// vCPU.
    pub vcpu: u32,
    /// IDT vector.
    pub vector: u8,
    /// Padding.
    pub pad: [u8; 3],
}

/// HVM parameters (xen/include/public/hvm/params.h).
pub mod param {
    /// `HVM_PARAM_CALLBACK_IRQ`.
    pub const CALLBACK_IRQ: u32 = 0;
    /// `HVM_PARAM_STORE_PFN`.
    pub const STORE_PFN: u32 = 1;
    /// `HVM_PARAM_STORE_EVTCHN`.
    pub const STORE_EVTCHN: u32 = 2;
    /// `HVM_PARAM_CONSOLE_PFN`.
    pub const CONSOLE_PFN: u32 = 17;
    /// `HVM_PARAM_CONSOLE_EVTCHN`.
    pub const CONSOLE_EVTCHN: u32 = 18;
}

/// Scheduler ops (xen/include/public/sched.h).
pub mod sched {
    /// `SCHEDOP_yield`.
    pub const YIELD: u64 = 0;
    /// `SCHEDOP_block`.
    pub const BLOCK: u64 = 1;
    /// `SCHEDOP_shutdown`.
    pub const SHUTDOWN: u64 = 2;
    /// `SHUTDOWN_poweroff`.
    pub const SHUTDOWN_POWEROFF: u32 = 0;
    /// `SHUTDOWN_reboot`.
    pub const SHUTDOWN_REBOOT: u32 = 1;
    /// `SHUTDOWN_crash`.
    pub const SHUTDOWN_CRASH: u32 = 3;
}

/// Event-channel ops (xen/include/public/event_channel.h).
pub mod evtchnop {
    /// `EVTCHNOP_bind_interdomain`.
    pub const BIND_INTERDOMAIN: u64 = 0;
    /// `EVTCHNOP_close`.
    pub const CLOSE: u64 = 3;
    /// `EVTCHNOP_send`.
    pub const SEND: u64 = 4;
    /// `EVTCHNOP_alloc_unbound`.
    pub const ALLOC_UNBOUND: u64 = 6;
    /// `EVTCHNOP_unmask`.
    pub const UNMASK: u64 = 9;
}

/// `struct evtchn_bind_interdomain`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnBindInterdomain {
    /// Remote domain.
    pub remote_dom: u16,
    /// Padding.
    pub pad: u16,
    /// Remote port.
    pub remote_port: u32,
    /// Local port (out).
    pub local_port: u32,
}
const _: () = assert!(size_of::<EvtchnBindInterdomain>() == 12);

/// `struct evtchn_alloc_unbound`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnAllocUnbound {
    /// Allocating domain (DOMID_SELF).
    pub dom: u16,
    /// Domain allowed to bind.
    pub remote_dom: u16,
    /// Port (out).
    pub port: u32,
}
const _: () = assert!(size_of::<EvtchnAllocUnbound>() == 8);

/// `struct evtchn_send` / `evtchn_close` / `evtchn_unmask`: one port.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EvtchnPortArg {
    /// Port.
    pub port: u32,
}

/// `struct multicall_entry` (xen/include/public/xen.h): one hypercall of a
/// `__HYPERVISOR_multicall` batch; Xen writes its return value to `result`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Its return value (out).
    pub result: i64,
    /// Its arguments.
    pub args: [u64; 6],
}
const _: () = assert!(size_of::<MulticallEntry>() == 64);

/// Grant-table ops (xen/include/public/grant_table.h).
pub mod gnttabop {
    /// `GNTTABOP_map_grant_ref`.
    pub const MAP_GRANT_REF: u64 = 0;
    /// `GNTTABOP_unmap_grant_ref`.
    pub const UNMAP_GRANT_REF: u64 = 1;
    /// `GNTTABOP_copy`.
    pub const COPY: u64 = 5;
    /// `GNTTABOP_query_size`.
    pub const QUERY_SIZE: u64 = 6;
    /// `GNTTABOP_set_version`.
    pub const SET_VERSION: u64 = 8;
}

/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTCOPY_source_gref`.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;
/// `GTF_permit_access`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_readonly`.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`.
pub const GTF_WRITING: u16 = 1 << 4;

/// `struct gnttab_map_grant_ref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GnttabMapGrantRef {
    /// Guest-physical address to map at (HVM/PVH).
    pub host_addr: u64,
    /// GNTMAP_*.
    pub flags: u32,
    /// Grant reference.
    pub gref: u32,
    /// Granting domain.
    pub dom: u16,
    /// GNTST_* (out).
    pub status: i16,
    /// Handle for unmap (out).
    pub handle: u32,
    /// Bus address (out).
    pub dev_bus_addr: u64,
}
const _: () = assert!(size_of::<GnttabMapGrantRef>() == 32);

/// `struct gnttab_unmap_grant_ref`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GnttabUnmapGrantRef {
    /// Address it was mapped at.
    pub host_addr: u64,
    /// Bus address.
    pub dev_bus_addr: u64,
    /// Handle from map.
    pub handle: u32,
    /// GNTST_* (out).
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
const _: () = assert!(size_of::<GnttabUnmapGrantRef>() == 24);

/// One side of a `gnttab_copy`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GnttabCopyPtr {
    /// Grant reference, or guest frame number when the GREF flag is clear.
    pub ref_or_gmfn: u64,
    /// Domain.
    pub domid: u16,
    /// Offset in the page.
    pub offset: u16,
    /// Padding.
    pub pad: u32,
}

/// `struct gnttab_copy`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GnttabCopy {
    /// Source.
    pub source: GnttabCopyPtr,
    /// Destination.
    pub dest: GnttabCopyPtr,
    /// Bytes.
    pub len: u16,
    /// GNTCOPY_*.
    pub flags: u16,
    /// GNTST_* (out).
    pub status: i16,
    /// Padding.
    pub pad: u16,
}
const _: () = assert!(size_of::<GnttabCopy>() == 40);

/// `struct gnttab_query_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct GnttabQuerySize {
    /// Domain.
    pub dom: u16,
    /// Padding.
    pub pad: u16,
    /// Frames in use (out).
    pub nr_frames: u32,
    /// Maximum frames (out).
    pub max_nr_frames: u32,
    /// GNTST_* (out).
    pub status: i16,
    /// Padding.
    pub pad2: u16,
}
const _: () = assert!(size_of::<GnttabQuerySize>() == 16);

/// `struct grant_entry_v1`: flags, domid, frame.
pub const GRANT_ENTRY_V1_SIZE: usize = 8;

/// `struct shared_info` offsets (xen/include/public/xen.h, x86_64).
pub mod shared_info {
    /// Size of one `vcpu_info`.
    pub const VCPU_INFO_SIZE: usize = 64;
    /// `vcpu_info.evtchn_upcall_pending` (u8).
    pub const UPCALL_PENDING: usize = 0;
    /// `vcpu_info.evtchn_upcall_mask` (u8).
    pub const UPCALL_MASK: usize = 1;
    /// `vcpu_info.evtchn_pending_sel` (u64).
    pub const PENDING_SEL: usize = 8;
    /// `vcpu_info.time` (struct vcpu_time_info).
    pub const TIME: usize = 32;
    /// `shared_info.evtchn_pending[64]`.
    pub const EVTCHN_PENDING: usize = 2048;
    /// `shared_info.evtchn_mask[64]`.
    pub const EVTCHN_MASK: usize = 2560;
}

/// Ports of the 2-level event-channel ABI on x86_64 (64 x 64).
pub const EVTCHN_2L_PORTS: u32 = 4096;
