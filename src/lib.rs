//! xvif: a Xen network driver domain as a Rust unikernel.
//!
//! The library holds everything that can be tested on the host (wire formats,
//! protocol state machines, allocators, parsers). `platform` holds the
//! hardware- and memory-touching code and is built only for the bare-metal
//! target; it is the only module allowed raw-pointer and asm code.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod bootinfo;
pub mod config;
pub mod crash;
pub mod drivers;
pub mod hal;
pub mod memory;
pub mod mgmt;
pub mod netback;
pub mod netif;
pub mod publisher;
pub mod ratelimit;
pub mod shell;
pub mod switch;
pub mod timer;
pub mod xen;
pub mod xenbus;

#[cfg(any(test, feature = "test-utils"))]
pub mod testing;

#[cfg(target_os = "none")]
pub mod dataplane;
#[cfg(target_os = "none")]
pub mod kernel;
#[cfg(target_os = "none")]
pub mod net;
#[cfg(target_os = "none")]
pub mod platform;
#[cfg(target_os = "none")]
pub mod xenhost;
