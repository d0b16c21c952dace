//! xenbus: the device handshake over xenstore (xen/include/public/io/xenbus.h)
//! for vif backends served by xvif.
#![forbid(unsafe_code)]

pub mod backend;
pub mod state;

pub use backend::{Backend, EventChannels, FrontendInfo, QueueInfo, VifHost, VifId};
pub use state::XenbusState;
