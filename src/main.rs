//! xvif unikernel binary. The PVH entry, the panic handler and the kernel
//! itself live in the library (`xvif::platform`, `xvif::kernel`); this file
//! only links them.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]
#![forbid(unsafe_code)]

#[cfg(target_os = "none")]
use xvif as _;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("xvif is a unikernel: build it with `make` and boot the ELF (see README.md)");
}
