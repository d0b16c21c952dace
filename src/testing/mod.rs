//! Fakes for host tests: they play the other side of Xen interfaces over
//! plain memory so the real protocol code runs unchanged.
#![forbid(unsafe_code)]

pub mod ctrlfront;
pub mod fabric;
pub mod fake_evtchn;
pub mod fake_hv;
pub mod netback_rig;
pub mod netfront;
pub mod tearing;
pub mod xenstore;
pub mod xenstore_nodes;
