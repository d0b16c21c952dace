//! virtio-net over modern virtio 1.0 PCI (`-device virtio-net-pci`).
//!
//! Written here rather than taken from rcore-os virtio-drivers: the netback
//! path needs to own the buffer pool and lend buffers in place to the switch
//! (and later post guest-granted pages), and it needs every device-written
//! value validated as hostile with a typed error and a reset instead of a
//! panic. The split queue is small (`queue.rs`) and host-tested.
//!
//! Features: VERSION_1, MAC, STATUS, MRG_RXBUF (frames must fit one 2 KiB
//! buffer; longer ones are counted as oversized and skipped), GUEST_CSUM
//! (partial checksums from the host are completed here), CTRL_VQ + CTRL_RX
//! (promiscuous mode). CSUM (transmit offload) is not negotiated: smoltcp
//! computes checksums itself. Interrupts by MSI-X vector 0 for both queues
//! and configuration changes; transmit completions are reaped by polling.
#![forbid(unsafe_code)]

mod port;
pub mod queue;

use crate::drivers::pci::{self, PciDevice};
use crate::drivers::port::PortStats;
use crate::hal::{DmaRegion, Hal, HalError, PciConfig, Regs};
use alloc::vec::Vec;
use log::{info, warn};
use queue::{QueueError, VirtQueue};

/// Vendor id (Red Hat / virtio).
pub const VENDOR: u16 = 0x1af4;

/// True for a virtio-net function (modern id, or transitional with modern caps).
pub fn matches(vendor: u16, device: u16) -> bool {
    vendor == VENDOR && (device == 0x1041 || device == 0x1000)
}

/// Feature bits.
pub mod feat {
    /// Guest handles partial checksums.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// Device has a MAC in config space.
    pub const MAC: u64 = 1 << 5;
    /// Mergeable receive buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// Link status in config space.
    pub const STATUS: u64 = 1 << 16;
    /// Control virtqueue.
    pub const CTRL_VQ: u64 = 1 << 17;
    /// Control of RX modes (promiscuous).
    pub const CTRL_RX: u64 = 1 << 18;
    /// Virtio 1.0.
    pub const VERSION_1: u64 = 1 << 32;
}

const WANTED: u64 =
    feat::VERSION_1 | feat::MAC | feat::STATUS | feat::MRG_RXBUF | feat::GUEST_CSUM | feat::CTRL_VQ | feat::CTRL_RX;

/// Common configuration offsets (virtio 1.0 §4.1.4.3).
mod common {
    pub const DEVICE_FEATURE_SELECT: usize = 0x00;
    pub const DEVICE_FEATURE: usize = 0x04;
    pub const DRIVER_FEATURE_SELECT: usize = 0x08;
    pub const DRIVER_FEATURE: usize = 0x0c;
    pub const CONFIG_MSIX_VECTOR: usize = 0x10;
    pub const NUM_QUEUES: usize = 0x12;
    pub const DEVICE_STATUS: usize = 0x14;
    pub const QUEUE_SELECT: usize = 0x16;
    pub const QUEUE_SIZE: usize = 0x18;
    pub const QUEUE_MSIX_VECTOR: usize = 0x1a;
    pub const QUEUE_ENABLE: usize = 0x1c;
    pub const QUEUE_NOTIFY_OFF: usize = 0x1e;
    pub const QUEUE_DESC: usize = 0x20;
    pub const QUEUE_DRIVER: usize = 0x28;
    pub const QUEUE_DEVICE: usize = 0x30;
}

mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
}

const NO_VECTOR: u16 = 0xffff;
/// virtio_net_hdr_v1 size.
const HDR: usize = 12;
/// Buffer per descriptor.
const BUF: usize = 2048;
/// Queue size used (if the device offers at least this much).
const QSIZE: u16 = 256;
/// Control queue size.
const CTRL_QSIZE: u16 = 8;
/// Header flag: checksum must be completed (csum_start/csum_offset valid).
const HDR_F_NEEDS_CSUM: u8 = 1;
/// Link-status poll interval.
const LINK_POLL_NS: u64 = 200_000_000;

/// Driver errors, with the offending values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioError {
    /// A required virtio PCI capability (by cfg_type) is missing.
    NoCapability(u8),
    /// A capability points outside its BAR.
    CapOutsideBar {
        /// cfg_type.
        cfg_type: u8,
        /// BAR index.
        bar: u8,
        /// Offset.
        offset: u32,
        /// Length.
        length: u32,
    },
    /// Mapping or DMA failed.
    Hal(HalError),
    /// The device does not offer VERSION_1 (features offered).
    NoVersion1(u64),
    /// FEATURES_OK did not stick (status read back).
    FeaturesRejected(u8),
    /// Fewer queues than needed.
    TooFewQueues(u16),
    /// A queue is unusable (index, size).
    BadQueue(u16, u16),
    /// The device refused an MSI-X vector (queue, value read back).
    VectorRejected(u16, u16),
    /// Queue error.
    Queue(QueueError),
    /// The device did not finish a control command (class, command).
    CtrlTimeout(u8, u8),
}

struct Q<D> {
    vq: VirtQueue<D>,
    bufs: D,
    notify: usize,
    index: u16,
}

/// One virtio-net device.
pub struct VirtioNet<H: Hal> {
    hal: H,
    common: H::Regs,
    notify: H::Regs,
    isr: H::Regs,
    devcfg: H::Regs,
    notify_mult: u32,
    features: u64,
    msix: bool,
    rx: Q<H::Dma>,
    tx: Q<H::Dma>,
    tx_free: Vec<u16>,
    ctrl: Option<Q<H::Dma>>,
    mac: [u8; 6],
    link: bool,
    link_checked_ns: u64,
    rx_unnotified: u16,
    rx_skip: u16,
    stats: PortStats,
}

struct CapLoc {
    bar: u8,
    offset: u32,
    length: u32,
    extra: u32,
}

fn find_cap<C: PciConfig>(cfg: &C, dev: &PciDevice, cfg_type: u8) -> Option<CapLoc> {
    dev.caps.iter().filter(|c| c.id == pci::cap_id::VENDOR).find_map(|c| {
        (cfg.read8(dev.bdf, c.offset + 3) == cfg_type).then(|| CapLoc {
            bar: cfg.read8(dev.bdf, c.offset + 4),
            offset: cfg.read32(dev.bdf, c.offset + 8),
            length: cfg.read32(dev.bdf, c.offset + 12),
            extra: cfg.read32(dev.bdf, c.offset + 16),
        })
    })
}

fn map_cap<C: PciConfig, H: Hal>(
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

/// Completes a partial checksum: the ones' complement sum from `start` to the
/// end, stored at `start + offset` (which holds the pseudo-header sum).
fn complete_csum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let Some(field) = start.checked_add(offset) else { return false };
    if field + 2 > frame.len() || start >= frame.len() {
        return false;
    }
    let mut sum: u32 = 0;
    let mut chunks = frame[start..].chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

impl<H: Hal> VirtioNet<H> {
    /// Maps the device's virtio capabilities and brings it up. With `msix`,
    /// MSI-X table entry 0 must already be programmed.
    pub fn new<C: PciConfig>(hal: H, cfg: &C, dev: &PciDevice, msix: bool) -> Result<Self, VirtioError> {
        let (common, _) = map_cap(cfg, &hal, dev, 1)?;
        let (notify, notify_mult) = map_cap(cfg, &hal, dev, 2)?;
        let (isr, _) = map_cap(cfg, &hal, dev, 3)?;
        let (devcfg, _) = map_cap(cfg, &hal, dev, 4)?;
        let mk = |index, size: u16| -> Result<Q<H::Dma>, VirtioError> {
            let mem = hal.alloc_dma(queue::region_size(size)).map_err(VirtioError::Hal)?;
            let bufs = hal.alloc_dma(usize::from(size) * BUF).map_err(VirtioError::Hal)?;
            Ok(Q { vq: VirtQueue::new(mem, size).map_err(VirtioError::Queue)?, bufs, notify: 0, index })
        };
        // The control queue needs one three-descriptor chain at a time.
        let (rx, tx, ctrl) = (mk(0, QSIZE)?, mk(1, QSIZE)?, mk(2, CTRL_QSIZE)?);
        let mut d = Self {
            hal,
            common,
            notify,
            isr,
            devcfg,
            notify_mult,
            features: 0,
            msix,
            rx,
            tx,
            tx_free: Vec::with_capacity(usize::from(QSIZE)),
            ctrl: Some(ctrl),
            mac: [0; 6],
            link: false,
            link_checked_ns: 0,
            rx_unnotified: 0,
            rx_skip: 0,
            stats: PortStats::default(),
        };
        d.bring_up()?;
        Ok(d)
    }

    fn set_status(&self, s: u8) {
        self.common.write8(common::DEVICE_STATUS, s);
    }

    fn reset_device(&self) {
        self.set_status(0);
        for _ in 0..1000 {
            if self.common.read8(common::DEVICE_STATUS) == 0 {
                break;
            }
            self.hal.delay_us(10);
        }
    }

    fn bring_up(&mut self) -> Result<(), VirtioError> {
        self.reset_device();
        self.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let mut offered = 0u64;
        for sel in 0..2u32 {
            self.common.write32(common::DEVICE_FEATURE_SELECT, sel);
            offered |= u64::from(self.common.read32(common::DEVICE_FEATURE)) << (32 * sel);
        }
        if offered & feat::VERSION_1 == 0 {
            return Err(VirtioError::NoVersion1(offered));
        }
        let mut want = offered & WANTED;
        if want & feat::CTRL_VQ == 0 {
            want &= !feat::CTRL_RX;
        }
        for sel in 0..2u32 {
            self.common.write32(common::DRIVER_FEATURE_SELECT, sel);
            self.common.write32(common::DRIVER_FEATURE, (want >> (32 * sel)) as u32);
        }
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        let st = self.common.read8(common::DEVICE_STATUS);
        if st & status::FEATURES_OK == 0 {
            return Err(VirtioError::FeaturesRejected(st));
        }
        self.features = want;
        let need = if want & feat::CTRL_VQ != 0 { 3 } else { 2 };
        let nq = self.common.read16(common::NUM_QUEUES);
        if nq < need {
            return Err(VirtioError::TooFewQueues(nq));
        }
        let vector = if self.msix { 0 } else { NO_VECTOR };
        self.common.write16(common::CONFIG_MSIX_VECTOR, vector);
        if self.common.read16(common::CONFIG_MSIX_VECTOR) != vector {
            return Err(VirtioError::VectorRejected(0xffff, self.common.read16(common::CONFIG_MSIX_VECTOR)));
        }
        let ctrl_index = if want & feat::CTRL_VQ != 0 { Some(2) } else { None };
        // Queue index of the control queue is 2 without multiqueue.
        let mut qs: Vec<&mut Q<H::Dma>> = alloc::vec![&mut self.rx, &mut self.tx];
        if let (Some(_), Some(c)) = (ctrl_index, self.ctrl.as_mut()) {
            qs.push(c);
        }
        for q in qs {
            q.vq.reset();
            self.common.write16(common::QUEUE_SELECT, q.index);
            let max = self.common.read16(common::QUEUE_SIZE);
            let size = q.vq.size();
            if max < size {
                return Err(VirtioError::BadQueue(q.index, max));
            }
            self.common.write16(common::QUEUE_SIZE, size);
            let (desc, avail, used) = q.vq.addrs();
            self.common.write64(common::QUEUE_DESC, desc);
            self.common.write64(common::QUEUE_DRIVER, avail);
            self.common.write64(common::QUEUE_DEVICE, used);
            let qv = if q.index < 2 { vector } else { NO_VECTOR };
            self.common.write16(common::QUEUE_MSIX_VECTOR, qv);
            let back = self.common.read16(common::QUEUE_MSIX_VECTOR);
            if back != qv {
                return Err(VirtioError::VectorRejected(q.index, back));
            }
            q.notify = usize::from(self.common.read16(common::QUEUE_NOTIFY_OFF)) * self.notify_mult as usize;
            self.common.write16(common::QUEUE_ENABLE, 1);
        }
        if ctrl_index.is_none() {
            self.ctrl = None;
        }
        self.tx.vq.set_avail_flags(queue::AVAIL_F_NO_INTERRUPT);
        self.tx_free.clear();
        self.tx_free.extend((0..QSIZE).rev());
        self.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK);
        if self.features & feat::MAC != 0 {
            for (i, b) in self.mac.iter_mut().enumerate() {
                *b = self.devcfg.read8(i);
            }
        } else if self.mac == [0; 6] {
            self.mac = [0x02, 0x78, 0x76, 0x69, 0x66, 0x02];
        }
        self.link = self.features & feat::STATUS == 0 || self.devcfg.read16(6) & 1 != 0;
        for id in 0..QSIZE {
            let addr = self.rx.bufs.paddr() + u64::from(id) * BUF as u64;
            self.rx.vq.post_one(id, addr, BUF as u32, true).map_err(VirtioError::Queue)?;
        }
        self.kick(self.rx.notify, self.rx.index);
        if self.features & feat::CTRL_RX != 0 {
            // VIRTIO_NET_CTRL_RX (0), VIRTIO_NET_CTRL_RX_PROMISC (0), on.
            self.ctrl_cmd(0, 0, 1)?;
            info!("virtio-net: promiscuous mode on");
        } else {
            warn!("virtio-net: no CTRL_RX; promiscuous mode unavailable");
        }
        Ok(())
    }

    fn kick(&self, notify: usize, index: u16) {
        self.notify.write16(notify, index);
    }

    /// Sends a one-byte control command and waits (bounded) for the answer.
    fn ctrl_cmd(&mut self, class: u8, cmd: u8, value: u8) -> Result<(), VirtioError> {
        let Some(c) = self.ctrl.as_mut() else { return Err(VirtioError::NoCapability(0)) };
        let base = c.bufs.paddr();
        let _ = c.bufs.with_slice_mut(0, 4, |b| b.copy_from_slice(&[class, cmd, value, 0xff]));
        c.vq.post(&[0, 1, 2], &[(base, 2, false), (base + 2, 1, false), (base + 3, 1, true)])
            .map_err(VirtioError::Queue)?;
        self.notify.write16(c.notify, c.index);
        for _ in 0..100_000 {
            match c.vq.pop_used() {
                Ok(Some(_)) => {
                    let ack = c.bufs.read8(3);
                    return if ack == 0 { Ok(()) } else { Err(VirtioError::CtrlTimeout(class, cmd)) };
                }
                Ok(None) => self.hal.delay_us(10),
                Err(e) => return Err(VirtioError::Queue(e)),
            }
        }
        Err(VirtioError::CtrlTimeout(class, cmd))
    }

    fn recover(&mut self, why: QueueError) {
        warn!("virtio-net: device misbehaved ({why:?}); resetting it");
        self.stats.resets += 1;
        self.stats.tx.drops += u64::from(self.tx.vq.in_flight());
        self.rx_skip = 0;
        self.rx_unnotified = 0;
        if let Err(e) = self.bring_up() {
            warn!("virtio-net: bring-up after reset failed: {e:?}");
        }
    }

    /// Negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    fn repost_rx(&mut self, id: u16) {
        let addr = self.rx.bufs.paddr() + u64::from(id) * BUF as u64;
        if let Err(e) = self.rx.vq.post_one(id, addr, BUF as u32, true) {
            self.recover(e);
            return;
        }
        self.rx_unnotified += 1;
        if self.rx_unnotified >= 32 {
            self.kick(self.rx.notify, self.rx.index);
            self.rx_unnotified = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_checksum_is_completed() {
        // A UDP header + payload whose checksum field holds the pseudo-header sum.
        let mut f = vec![0u8; 14 + 20];
        let udp = [0x9c, 0x40, 0x00, 0x07, 0x00, 0x0c, 0x12, 0x34, b'a', b'b', b'c', b'd'];
        f.extend_from_slice(&udp);
        assert!(complete_csum(&mut f, 34, 6));
        // Independently: ~(pseudo-header sum + sum of the range with the field zeroed).
        let mut z = f[34..].to_vec();
        z[6..8].fill(0);
        let mut sum: u32 = 0x1234 + z.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(u16::from_be_bytes([f[40], f[41]]), !(sum as u16));
        assert!(!complete_csum(&mut f, 45, 6));
        assert!(!complete_csum(&mut f, usize::MAX, 6));
    }
}
