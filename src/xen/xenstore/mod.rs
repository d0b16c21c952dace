//! The xenstore protocol (xen/include/public/io/xs_wire.h,
//! docs/misc/xenstore.txt): wire codec and a client over the shared ring.
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
mod transaction;
pub mod wire;

pub use client::{Client, WatchEvent, XsError, XsIo};
pub use wire::{MsgType, Perm, PermKind};
