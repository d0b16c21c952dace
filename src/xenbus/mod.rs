//! xenbus: the device handshake over xenstore (xen/include/public/io/xenbus.h)
//! for vif backends served by xvif.
#![forbid(unsafe_code)]

pub mod backend;
mod batch;
mod device;
mod frontend;
pub mod params;
mod scan;
pub mod state;
pub mod vif;

pub use backend::{Backend, CtrlInfo, EventChannels, FrontendInfo, QueueInfo, VifHost, VifId};
pub use params::VifParams;
pub use state::XenbusState;
