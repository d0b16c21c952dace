//! virtio-net (modern virtio 1.0 over PCI).
#![forbid(unsafe_code)]
