//! Device drivers: PCI, the NICs, and the port abstraction they share.
#![forbid(unsafe_code)]

pub mod e1000;
pub mod pci;
pub mod pci_place;
pub mod port;
pub mod virtio_net;

#[cfg(test)]
pub(crate) mod sim;
