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
mod regs;

use crate::drivers::pci::PciDevice;
use crate::drivers::port::PortStats;
use crate::hal::{DmaRegion, Hal, HalError, PciConfig, Regs};
use alloc::vec::Vec;
use log::{info, warn};
use queue::{QueueError, VirtQueue};
pub use regs::Features;
use regs::{DeviceStatus, HdrFlags, NetConfig, NetStatus, WANTED, cfg_type, common, map_cap};

/// Vendor id (Red Hat / virtio).
pub const VENDOR: u16 = 0x1af4;

/// True for a virtio-net function (modern id, or transitional with modern caps).
pub fn matches(vendor: u16, device: u16) -> bool {
    vendor == VENDOR && (device == 0x1041 || device == 0x1000)
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
    NoVersion1(Features),
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
    features: Features,
    msix: bool,
    rx: Q<H::Dma>,
    tx: Q<H::Dma>,
    tx_free: Vec<u16>,
    ctrl: Option<Q<H::Dma>>,
    mac: [u8; 6],
    link: bool,
    link_checked_ns: u64,
    rx_unnotified: u16,
    /// The legacy interrupt fired since ISR was last read.
    interrupted: bool,
    /// When ISR is read next without an interrupt (legacy interrupts only).
    isr_due_ns: u64,
    rx_skip: u16,
    stats: PortStats,
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
    /// The 8-bit register write that stops the device's DMA: 0 into
    /// `device_status` of the common configuration, a device reset.
    pub fn stop_writes(&self) -> (&H::Regs, [(usize, u8); 1]) {
        (&self.common, [(common!(device_status), 0)])
    }

    /// Maps the device's virtio capabilities and brings it up. With `msix`,
    /// MSI-X table entry 0 must already be programmed.
    pub fn new<C: PciConfig>(hal: H, cfg: &C, dev: &PciDevice, msix: bool) -> Result<Self, VirtioError> {
        let (common, _) = map_cap(cfg, &hal, dev, cfg_type::COMMON)?;
        let (notify, notify_mult) = map_cap(cfg, &hal, dev, cfg_type::NOTIFY)?;
        let (isr, _) = map_cap(cfg, &hal, dev, cfg_type::ISR)?;
        let (devcfg, _) = map_cap(cfg, &hal, dev, cfg_type::DEVICE)?;
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
            features: Features::empty(),
            msix,
            rx,
            tx,
            tx_free: Vec::with_capacity(usize::from(QSIZE)),
            ctrl: Some(ctrl),
            mac: [0; 6],
            link: false,
            link_checked_ns: 0,
            rx_unnotified: 0,
            interrupted: false,
            isr_due_ns: 0,
            rx_skip: 0,
            stats: PortStats::default(),
        };
        d.bring_up()?;
        Ok(d)
    }

    fn set_status(&self, s: DeviceStatus) {
        self.common.set_flags(common!(device_status), s);
    }

    fn status(&self) -> DeviceStatus {
        self.common.flags(common!(device_status))
    }

    fn link(&self) -> bool {
        self.devcfg.flags::<NetStatus>(core::mem::offset_of!(NetConfig, status)).contains(NetStatus::LINK_UP)
    }

    fn reset_device(&self) {
        self.set_status(DeviceStatus::empty());
        for _ in 0..1000 {
            if self.status().is_empty() {
                break;
            }
            self.hal.delay_us(10);
        }
    }

    fn bring_up(&mut self) -> Result<(), VirtioError> {
        self.reset_device();
        let driver = DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER;
        self.set_status(driver);
        let mut offered = 0u64;
        for sel in 0..2u32 {
            self.common.write32(common!(device_feature_select), sel);
            offered |= u64::from(self.common.read32(common!(device_feature))) << (32 * sel);
        }
        let offered = Features::from_bits_retain(offered);
        if !offered.contains(Features::VERSION_1) {
            return Err(VirtioError::NoVersion1(offered));
        }
        let mut want = offered & WANTED;
        if !want.contains(Features::CTRL_VQ) {
            want.remove(Features::CTRL_RX);
        }
        for sel in 0..2u32 {
            self.common.write32(common!(driver_feature_select), sel);
            self.common.write32(common!(driver_feature), (want.bits() >> (32 * sel)) as u32);
        }
        self.set_status(driver | DeviceStatus::FEATURES_OK);
        let st = self.status();
        if !st.contains(DeviceStatus::FEATURES_OK) {
            return Err(VirtioError::FeaturesRejected(st.bits()));
        }
        self.features = want;
        let need = if want.contains(Features::CTRL_VQ) { 3 } else { 2 };
        let nq = self.common.read16(common!(num_queues));
        if nq < need {
            return Err(VirtioError::TooFewQueues(nq));
        }
        let vector = if self.msix { 0 } else { NO_VECTOR };
        self.common.write16(common!(config_msix_vector), vector);
        if self.common.read16(common!(config_msix_vector)) != vector {
            return Err(VirtioError::VectorRejected(0xffff, self.common.read16(common!(config_msix_vector))));
        }
        let ctrl_index = if want.contains(Features::CTRL_VQ) { Some(2) } else { None };
        // Queue index of the control queue is 2 without multiqueue.
        let mut qs: Vec<&mut Q<H::Dma>> = alloc::vec![&mut self.rx, &mut self.tx];
        if let (Some(_), Some(c)) = (ctrl_index, self.ctrl.as_mut()) {
            qs.push(c);
        }
        for q in qs {
            q.vq.reset();
            self.common.write16(common!(queue_select), q.index);
            let max = self.common.read16(common!(queue_size));
            let size = q.vq.size();
            if max < size {
                return Err(VirtioError::BadQueue(q.index, max));
            }
            self.common.write16(common!(queue_size), size);
            let (desc, avail, used) = q.vq.addrs();
            self.common.write64(common!(queue_desc), desc);
            self.common.write64(common!(queue_driver), avail);
            self.common.write64(common!(queue_device), used);
            let qv = if q.index < 2 { vector } else { NO_VECTOR };
            self.common.write16(common!(queue_msix_vector), qv);
            let back = self.common.read16(common!(queue_msix_vector));
            if back != qv {
                return Err(VirtioError::VectorRejected(q.index, back));
            }
            q.notify = usize::from(self.common.read16(common!(queue_notify_off))) * self.notify_mult as usize;
            self.common.write16(common!(queue_enable), 1);
        }
        if ctrl_index.is_none() {
            self.ctrl = None;
        }
        self.tx.vq.set_avail_flags(queue::AvailFlags::NO_INTERRUPT);
        self.tx_free.clear();
        self.tx_free.extend((0..QSIZE).rev());
        self.set_status(driver | DeviceStatus::FEATURES_OK | DeviceStatus::DRIVER_OK);
        if self.features.contains(Features::MAC) {
            let mac = core::mem::offset_of!(NetConfig, mac);
            for (i, b) in self.mac.iter_mut().enumerate() {
                *b = self.devcfg.read8(mac + i);
            }
        } else if self.mac == [0; 6] {
            self.mac = [0x02, 0x78, 0x76, 0x69, 0x66, 0x02];
        }
        self.link = !self.features.contains(Features::STATUS) || self.link();
        for id in 0..QSIZE {
            let addr = self.rx.bufs.paddr() + u64::from(id) * BUF as u64;
            self.rx.vq.post_one(id, addr, BUF as u32, true).map_err(VirtioError::Queue)?;
        }
        self.kick(self.rx.notify, self.rx.index);
        if self.features.contains(Features::CTRL_RX) {
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
    pub fn features(&self) -> Features {
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
