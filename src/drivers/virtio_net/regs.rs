//! virtio-net's registers: where the PCI capabilities put them, the layouts
//! of the common and device configuration structures (`#[repr(C)]`, giving
//! the offsets the driver reads and writes through `Regs`), and the bit sets
//! of the feature, status and header registers.
#![forbid(unsafe_code)]

use super::VirtioError;
use crate::drivers::pci::{self, PciDevice};
use crate::hal::{Hal, PciConfig};
use core::mem::{offset_of, size_of};

/// `cfg_type` of a virtio PCI capability (virtio 1.0 §4.1.4).
pub(super) mod cfg_type {
    /// Common configuration.
    pub const COMMON: u8 = 1;
    /// Notifications.
    pub const NOTIFY: u8 = 2;
    /// ISR status.
    pub const ISR: u8 = 3;
    /// Device-specific configuration.
    pub const DEVICE: u8 = 4;
}

/// A virtio PCI capability in configuration space (virtio 1.0 §4.1.4:
/// `struct virtio_pci_cap`, and the notify capability's multiplier after it).
#[repr(C)]
struct PciCap {
    /// 0x00 capability id (vendor-specific), next pointer, length.
    cap_vndr: u8,
    cap_next: u8,
    cap_len: u8,
    /// 0x03
    cfg_type: u8,
    /// 0x04
    bar: u8,
    padding: [u8; 3],
    /// 0x08 offset of the structure in the BAR.
    offset: u32,
    /// 0x0c its length.
    length: u32,
    /// 0x10 (notify capability only).
    notify_off_multiplier: u32,
}
const _: () = assert!(size_of::<PciCap>() == 0x14);

struct CapLoc {
    bar: u8,
    offset: u32,
    length: u32,
    extra: u32,
}

fn find_cap<C: PciConfig>(cfg: &C, dev: &PciDevice, cfg_type: u8) -> Option<CapLoc> {
    dev.caps.iter().filter(|c| c.id == pci::cap_id::VENDOR).find_map(|c| {
        // A `PciCap` field's place in configuration space (all below 0x14).
        let at = |field: usize| c.offset + field as u16;
        (cfg.read8(dev.bdf, at(offset_of!(PciCap, cfg_type))) == cfg_type).then(|| CapLoc {
            bar: cfg.read8(dev.bdf, at(offset_of!(PciCap, bar))),
            offset: cfg.read32(dev.bdf, at(offset_of!(PciCap, offset))),
            length: cfg.read32(dev.bdf, at(offset_of!(PciCap, length))),
            extra: cfg.read32(dev.bdf, at(offset_of!(PciCap, notify_off_multiplier))),
        })
    })
}

/// Maps the register window of the capability of `cfg_type`; returns it and
/// the capability's extra word (the notify offset multiplier).
pub(super) fn map_cap<C: PciConfig, H: Hal>(
    cfg: &C,
    hal: &H,
    dev: &PciDevice,
    cfg_type: u8,
) -> Result<(H::Regs, u32), VirtioError> {
    let c = find_cap(cfg, dev, cfg_type).ok_or(VirtioError::NoCapability(cfg_type))?;
    let bad = VirtioError::CapOutsideBar { cfg_type, bar: c.bar, offset: c.offset, length: c.length };
    let (addr, size) = dev.mem_bar(usize::from(c.bar)).ok_or(bad)?;
    if c.length == 0 || u64::from(c.offset) + u64::from(c.length) > size {
        return Err(bad);
    }
    let regs = hal.map_regs(addr + u64::from(c.offset), u64::from(c.length)).map_err(VirtioError::Hal)?;
    Ok((regs, c.extra))
}

bitflags::bitflags! {
    /// Feature bits (virtio 1.0 §5.1.3, §6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Features: u64 {
        /// Guest handles partial checksums.
        const GUEST_CSUM = 1 << 1;
        /// Device has a MAC in config space.
        const MAC = 1 << 5;
        /// Mergeable receive buffers.
        const MRG_RXBUF = 1 << 15;
        /// Link status in config space.
        const STATUS = 1 << 16;
        /// Control virtqueue.
        const CTRL_VQ = 1 << 17;
        /// Control of RX modes (promiscuous).
        const CTRL_RX = 1 << 18;
        /// Virtio 1.0.
        const VERSION_1 = 1 << 32;
        const _ = !0;
    }

    /// Device status (virtio 1.0 §2.1).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct DeviceStatus: u8 {
        const ACKNOWLEDGE = 1;
        const DRIVER = 2;
        const DRIVER_OK = 4;
        const FEATURES_OK = 8;
        const _ = !0;
    }

    /// `status` of the device configuration (virtio 1.0 §5.1.4).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct NetStatus: u16 {
        const LINK_UP = 1;
        const _ = !0;
    }

    /// `flags` of virtio_net_hdr (virtio 1.0 §5.1.6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) struct HdrFlags: u8 {
        /// The checksum must be completed (csum_start/csum_offset valid).
        const NEEDS_CSUM = 1;
        const _ = !0;
    }
}

pub(super) const WANTED: Features = Features::VERSION_1
    .union(Features::MAC)
    .union(Features::STATUS)
    .union(Features::MRG_RXBUF)
    .union(Features::GUEST_CSUM)
    .union(Features::CTRL_VQ)
    .union(Features::CTRL_RX);

/// The common configuration structure (virtio 1.0 §4.1.4.3), little-endian;
/// its layout gives the offsets the driver accesses through `Regs`.
#[repr(C)]
pub(super) struct CommonCfg {
    /// 0x00
    pub(super) device_feature_select: u32,
    /// 0x04
    pub(super) device_feature: u32,
    /// 0x08
    pub(super) driver_feature_select: u32,
    /// 0x0c
    pub(super) driver_feature: u32,
    /// 0x10
    pub(super) config_msix_vector: u16,
    /// 0x12
    pub(super) num_queues: u16,
    /// 0x14
    pub(super) device_status: u8,
    /// 0x15
    pub(super) config_generation: u8,
    /// 0x16
    pub(super) queue_select: u16,
    /// 0x18
    pub(super) queue_size: u16,
    /// 0x1a
    pub(super) queue_msix_vector: u16,
    /// 0x1c
    pub(super) queue_enable: u16,
    /// 0x1e
    pub(super) queue_notify_off: u16,
    /// 0x20
    pub(super) queue_desc: u64,
    /// 0x28
    pub(super) queue_driver: u64,
    /// 0x30
    pub(super) queue_device: u64,
}
const _: () = assert!(size_of::<CommonCfg>() == 0x38);

/// Offset of a `CommonCfg` field.
macro_rules! common {
    ($field:ident) => {
        core::mem::offset_of!($crate::drivers::virtio_net::regs::CommonCfg, $field)
    };
}
pub(super) use common;

/// The virtio-net device configuration (virtio 1.0 §5.1.4), as far as used.
#[repr(C)]
pub(super) struct NetConfig {
    /// 0x00
    pub(super) mac: [u8; 6],
    /// 0x06
    pub(super) status: u16,
}
const _: () = assert!(size_of::<NetConfig>() == 8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_put_fields_where_the_spec_does() {
        let layout = [
            (common!(device_feature_select), 0x00),
            (common!(device_feature), 0x04),
            (common!(driver_feature_select), 0x08),
            (common!(driver_feature), 0x0c),
            (common!(config_msix_vector), 0x10),
            (common!(num_queues), 0x12),
            (common!(device_status), 0x14),
            (common!(queue_select), 0x16),
            (common!(queue_size), 0x18),
            (common!(queue_msix_vector), 0x1a),
            (common!(queue_enable), 0x1c),
            (common!(queue_notify_off), 0x1e),
            (common!(queue_desc), 0x20),
            (common!(queue_driver), 0x28),
            (common!(queue_device), 0x30),
            (offset_of!(NetConfig, status), 6),
            (offset_of!(PciCap, cfg_type), 3),
            (offset_of!(PciCap, bar), 4),
            (offset_of!(PciCap, offset), 8),
            (offset_of!(PciCap, length), 12),
            (offset_of!(PciCap, notify_off_multiplier), 16),
        ];
        for (i, (got, spec)) in layout.into_iter().enumerate() {
            assert_eq!(got, spec, "entry {i}");
        }
    }
}
