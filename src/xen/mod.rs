//! Xen interfaces that need no hardware: ABI structures, error codes, event
//! channel and grant-table bookkeeping, the xenstore protocol, PV console ring.
#![forbid(unsafe_code)]

pub mod abi;
pub mod console;
pub mod error;
pub mod events;
pub mod evtchn;
pub mod grant;
pub mod hvm_info;
pub mod ring;
pub mod xenstore;

pub use error::XenError;

/// A domain id (`domid_t`, xen/include/public/xen.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomId(pub u16);

impl DomId {
    /// `DOMID_SELF`.
    pub const SELF: DomId = DomId(0x7ff0);
}

/// An event-channel port (`evtchn_port_t`, xen/include/public/event_channel.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvtchnPort(pub u32);

/// A grant reference (`grant_ref_t`, xen/include/public/grant_table.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GrantRef(pub u32);
