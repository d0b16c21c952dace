//! The switch: a MAC-learning bridge joining the vifs, the NIC and the
//! management stack. It sees only ports, identified by [`PortId`], and never
//! owns a frame: it is lent each ingress frame and lends it on (adapted by
//! `offload` where an egress port cannot take partial checksums or GSO).
#![forbid(unsafe_code)]

pub mod checksum;
pub mod gso;
pub mod headers;
pub mod meta;
pub mod offload;
