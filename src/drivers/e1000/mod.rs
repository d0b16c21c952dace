//! Intel 8254x (QEMU `-device e1000`, 82540EM) driver.
//!
//! Reset and init, MAC from RAL/RAH or the EEPROM, 256-descriptor RX and TX
//! rings with a fixed buffer pool, promiscuous receive, interrupt moderation
//! (ITR), link-change logging, and a watchdog that resets the device when the
//! transmit ring stops moving or a register holds an impossible value.
#![forbid(unsafe_code)]

pub mod ring;

#[cfg(test)]
mod tests;

use crate::drivers::port::{Port, PortStats, REG_CHECK_NS};
use crate::hal::{Hal, HalError, Regs};
use log::{info, warn};
use ring::{RingError, RxPoll, RxRing, TxError, TxRing};

/// PCI vendor id (Intel).
pub const VENDOR: u16 = 0x8086;
/// Device ids this driver accepts: 82540EM (QEMU e1000).
pub const DEVICES: &[u16] = &[0x100e];

/// Register offsets.
pub mod reg {
    /// Device control.
    pub const CTRL: usize = 0x0000;
    /// Device status.
    pub const STATUS: usize = 0x0008;
    /// EEPROM read.
    pub const EERD: usize = 0x0014;
    /// Interrupt cause read (clears on read).
    pub const ICR: usize = 0x00c0;
    /// Interrupt throttling.
    pub const ITR: usize = 0x00c4;
    /// Interrupt mask set.
    pub const IMS: usize = 0x00d0;
    /// Interrupt mask clear.
    pub const IMC: usize = 0x00d8;
    /// Receive control.
    pub const RCTL: usize = 0x0100;
    /// Transmit control.
    pub const TCTL: usize = 0x0400;
    /// Transmit inter-packet gap.
    pub const TIPG: usize = 0x0410;
    /// RX descriptor base low/high, length, head, tail, delay timer.
    pub const RDBAL: usize = 0x2800;
    /// RX base high.
    pub const RDBAH: usize = 0x2804;
    /// RX ring length in bytes.
    pub const RDLEN: usize = 0x2808;
    /// RX head.
    pub const RDH: usize = 0x2810;
    /// RX tail.
    pub const RDT: usize = 0x2818;
    /// RX delay timer.
    pub const RDTR: usize = 0x2820;
    /// TX descriptor base low.
    pub const TDBAL: usize = 0x3800;
    /// TX base high.
    pub const TDBAH: usize = 0x3804;
    /// TX ring length in bytes.
    pub const TDLEN: usize = 0x3808;
    /// TX head.
    pub const TDH: usize = 0x3810;
    /// TX tail.
    pub const TDT: usize = 0x3818;
    /// Missed packets count (clears on read).
    pub const MPC: usize = 0x4010;
    /// Multicast table array (128 dwords).
    pub const MTA: usize = 0x5200;
    /// Receive address low/high 0.
    pub const RAL0: usize = 0x5400;
    /// Receive address high 0.
    pub const RAH0: usize = 0x5404;
}

bitflags::bitflags! {
    /// CTRL, device control. Unnamed bits are kept as read when it is
    /// rewritten (`const _ = !0` on each register here).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Ctrl: u32 {
        /// Link reset.
        const LRST = 1 << 3;
        /// Auto-speed detection.
        const ASDE = 1 << 5;
        /// Set link up.
        const SLU = 1 << 6;
        /// Device reset (self-clearing).
        const RST = 1 << 26;
        /// PHY reset.
        const PHY_RST = 1 << 31;
        const _ = !0;
    }

    /// STATUS, device status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Status: u32 {
        /// Link up.
        const LU = 1 << 1;
        const _ = !0;
    }

    /// EERD, EEPROM read: the word address in bits 15:8, the data in 31:16.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Eerd: u32 {
        /// Start a read.
        const START = 1 << 0;
        /// The read is done; the data is valid.
        const DONE = 1 << 4;
        const _ = !0;
    }

    /// Interrupt causes (ICR, IMS, IMC); `Int::all()` is all 32 bits.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Int: u32 {
        /// TX descriptor written back.
        const TXDW = 1 << 0;
        /// Link status change.
        const LSC = 1 << 2;
        /// RX descriptor minimum threshold.
        const RXDMT0 = 1 << 4;
        /// RX overrun.
        const RXO = 1 << 6;
        /// RX timer (a frame arrived).
        const RXT0 = 1 << 7;
        const _ = !0;
    }

    /// RCTL, receive control; BSIZE (bits 17:16) 0 = 2048-byte buffers.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rctl: u32 {
        /// Receiver enable.
        const EN = 1 << 1;
        /// Unicast promiscuous.
        const UPE = 1 << 3;
        /// Multicast promiscuous.
        const MPE = 1 << 4;
        /// Long packets (frames above 1522 reach the ring, spanning buffers,
        /// and are counted as oversized instead of vanishing inside the device).
        const LPE = 1 << 5;
        /// Broadcast accept.
        const BAM = 1 << 15;
        /// Strip CRC.
        const SECRC = 1 << 26;
        const _ = !0;
    }

    /// TCTL, transmit control.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Tctl: u32 {
        /// Transmitter enable.
        const EN = 1 << 1;
        /// Pad short packets.
        const PSP = 1 << 3;
        /// Collision threshold (field CT, bits 11:4) of 15, the datasheet's value.
        const CT_15 = 0x0f << 4;
        /// Collision distance (field COLD, bits 21:12) of 64 byte times: full duplex.
        const COLD_FULL_DUPLEX = 0x40 << 12;
        const _ = !0;
    }

    /// RAH0, receive address high.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Rah: u32 {
        /// Address valid: the filter matches RAL0/RAH0.
        const AV = 1 << 31;
        const _ = !0;
    }
}

/// TIPG for the 82540EM on copper: IPGT 10, IPGR1 8 (bits 19:10), IPGR2 6 (bits 29:20).
const TIPG_VALUE: u32 = 10 | (8 << 10) | (6 << 20);

/// Ring sizes (descriptors).
pub const RING_SIZE: usize = 256;
/// Interrupt throttle in 256 ns units: 196 = 50 µs, at most 20 000 interrupts/s.
pub const ITR_VALUE: u32 = 196;
/// A transmit ring that made no progress for this long is hung.
pub const TX_HANG_NS: u64 = 2_000_000_000;
/// Receive descriptors handed back to the device per tail (RDT) write, at
/// most; the rest go back when the ring is found empty.
pub const RDT_BATCH: u32 = 16;

/// Driver errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E1000Error {
    /// Memory for rings could not be had.
    Hal(HalError),
    /// Ring setup failed.
    Ring(RingError),
    /// The device did not leave reset (CTRL value).
    ResetTimeout(u32),
    /// The register window is too small for this device.
    WindowTooSmall(usize),
}

/// One e1000.
pub struct E1000<H: Hal> {
    hal: H,
    regs: H::Regs,
    rx: RxRing<H::Dma>,
    tx: TxRing<H::Dma>,
    mac: [u8; 6],
    link: bool,
    stats: PortStats,
    tx_progress_ns: u64,
    /// An interrupt arrived since the causes were last read.
    interrupted: bool,
    /// When the causes and ring heads are read next without an interrupt.
    check_due_ns: u64,
    /// A receive tail not yet written to RDT, and how many descriptors it returns.
    rdt_pending: Option<(u32, u32)>,
}

fn mac_from_ral(lo: u32, hi: u32) -> Option<[u8; 6]> {
    let l = lo.to_le_bytes();
    let h = hi.to_le_bytes();
    let mac = [l[0], l[1], l[2], l[3], h[0], h[1]];
    (Rah::from_bits_retain(hi).contains(Rah::AV) && valid_mac(&mac)).then_some(mac)
}

fn valid_mac(mac: &[u8; 6]) -> bool {
    mac != &[0; 6] && mac != &[0xff; 6] && mac[0] & 1 == 0
}

impl<H: Hal> E1000<H> {
    /// The 32-bit register writes, in order, that stop the device's DMA:
    /// interrupts masked, receive and transmit disabled, then a reset.
    /// QEMU's 82540EM ignores CTRL.RST, so the reset alone is not enough.
    pub fn stop_writes(&self) -> (&H::Regs, [(usize, u32); 4]) {
        let w = [
            (reg::IMC, Int::all().bits()),
            (reg::RCTL, Rctl::empty().bits()),
            (reg::TCTL, Tctl::empty().bits()),
            (reg::CTRL, Ctrl::RST.bits()),
        ];
        (&self.regs, w)
    }

    /// Resets and initialises the device behind `regs` (BAR 0, memory).
    pub fn new(hal: H, regs: H::Regs) -> Result<Self, E1000Error> {
        if regs.len() < 0x6000 {
            return Err(E1000Error::WindowTooSmall(regs.len()));
        }
        let dma = |bytes| hal.alloc_dma(bytes).map_err(E1000Error::Hal);
        let rx = RxRing::new(dma(RING_SIZE * ring::DESC_SIZE)?, dma(RING_SIZE * ring::BUF_SIZE)?, RING_SIZE)
            .map_err(E1000Error::Ring)?;
        let tx = TxRing::new(dma(RING_SIZE * ring::DESC_SIZE)?, dma(RING_SIZE * ring::BUF_SIZE)?, RING_SIZE)
            .map_err(E1000Error::Ring)?;
        let mut d = Self {
            hal,
            regs,
            rx,
            tx,
            mac: [0; 6],
            link: false,
            stats: PortStats::default(),
            tx_progress_ns: 0,
            interrupted: false,
            check_due_ns: 0,
            rdt_pending: None,
        };
        d.reset_device()?;
        let mac = mac_from_ral(d.regs.read32(reg::RAL0), d.regs.read32(reg::RAH0)).or_else(|| d.eeprom_mac());
        d.mac = mac.unwrap_or([0x02, 0x78, 0x76, 0x69, 0x66, 0x01]);
        if mac.is_none() {
            warn!("e1000: no MAC in RAL0 or the EEPROM; using {:02x?}", d.mac);
        }
        d.init_rings();
        d.link = d.regs.flags::<Status>(reg::STATUS).contains(Status::LU);
        Ok(d)
    }

    fn eeprom_word(&self, addr: u8) -> Option<u16> {
        self.regs.set_flags(reg::EERD, Eerd::START | Eerd::from_bits_retain(u32::from(addr) << 8));
        for _ in 0..1000 {
            let v = self.regs.flags::<Eerd>(reg::EERD);
            if v.contains(Eerd::DONE) {
                return Some((v.bits() >> 16) as u16);
            }
            self.hal.delay_us(1);
        }
        None
    }

    fn eeprom_mac(&self) -> Option<[u8; 6]> {
        let mut mac = [0u8; 6];
        for i in 0..3u8 {
            let w = self.eeprom_word(i)?.to_le_bytes();
            mac[usize::from(i) * 2] = w[0];
            mac[usize::from(i) * 2 + 1] = w[1];
        }
        valid_mac(&mac).then_some(mac)
    }

    fn reset_device(&mut self) -> Result<(), E1000Error> {
        self.regs.set_flags(reg::IMC, Int::all());
        self.regs.set_flags(reg::RCTL, Rctl::empty());
        self.regs.set_flags(reg::TCTL, Tctl::empty());
        let c = self.regs.flags::<Ctrl>(reg::CTRL);
        self.regs.set_flags(reg::CTRL, c | Ctrl::RST);
        self.hal.delay_us(10);
        let mut left = 1000;
        while self.regs.flags::<Ctrl>(reg::CTRL).contains(Ctrl::RST) {
            left -= 1;
            if left == 0 {
                return Err(E1000Error::ResetTimeout(self.regs.read32(reg::CTRL)));
            }
            self.hal.delay_us(10);
        }
        self.regs.set_flags(reg::IMC, Int::all());
        let _ = self.regs.read32(reg::ICR);
        Ok(())
    }

    fn init_rings(&mut self) {
        let c = self.regs.flags::<Ctrl>(reg::CTRL);
        self.regs.set_flags(reg::CTRL, (c | Ctrl::SLU | Ctrl::ASDE) - (Ctrl::LRST | Ctrl::PHY_RST));
        let m = self.mac;
        self.regs.write32(reg::RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.regs.set_flags(reg::RAH0, Rah::AV | Rah::from_bits_retain(u32::from_le_bytes([m[4], m[5], 0, 0])));
        for i in 0..128 {
            self.regs.write32(reg::MTA + 4 * i, 0);
        }
        self.rx.reset();
        self.tx.reset();
        self.rdt_pending = None;
        self.regs.write64(reg::RDBAL, self.rx.paddr());
        self.regs.write32(reg::RDLEN, (self.rx.size() * ring::DESC_SIZE) as u32);
        self.regs.write32(reg::RDH, 0);
        self.regs.write32(reg::RDT, self.rx.initial_tail());
        self.regs.write32(reg::RDTR, 0);
        self.regs.write64(reg::TDBAL, self.tx.paddr());
        self.regs.write32(reg::TDLEN, (self.tx.size() * ring::DESC_SIZE) as u32);
        self.regs.write32(reg::TDH, 0);
        self.regs.write32(reg::TDT, 0);
        self.regs.write32(reg::TIPG, TIPG_VALUE);
        self.regs.set_flags(reg::TCTL, Tctl::EN | Tctl::PSP | Tctl::CT_15 | Tctl::COLD_FULL_DUPLEX);
        self.regs.set_flags(reg::RCTL, Rctl::EN | Rctl::UPE | Rctl::MPE | Rctl::BAM | Rctl::LPE | Rctl::SECRC);
        self.regs.write32(reg::ITR, ITR_VALUE);
        self.regs.set_flags(reg::IMS, Int::LSC | Int::RXT0 | Int::RXDMT0 | Int::RXO);
        self.tx_progress_ns = self.hal.now_ns();
    }

    /// Resets the device and re-arms both rings (after a hang).
    fn recover(&mut self, why: core::fmt::Arguments<'_>) {
        warn!("e1000: {why}; resetting the device");
        self.stats.resets += 1;
        self.stats.tx.drops += self.tx.in_flight() as u64;
        if let Err(e) = self.reset_device() {
            warn!("e1000: reset failed: {e:?}");
        }
        self.init_rings();
    }

    fn check_link(&mut self) {
        let up = self.regs.flags::<Status>(reg::STATUS).contains(Status::LU);
        if up != self.link {
            self.link = up;
            self.stats.link_changes += 1;
            info!("e1000: link {}", if up { "up" } else { "down" });
        }
    }
}

impl<H: Hal> Port for E1000<H> {
    fn name(&self) -> &'static str {
        "e1000"
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.link
    }

    fn note_interrupt(&mut self) {
        self.interrupted = true;
    }

    fn service(&mut self, now_ns: u64) -> bool {
        // Registers only after an interrupt (reading ICR also lowers the
        // line) or once per REG_CHECK_NS; the TX reclaim reads memory.
        let check = self.interrupted || now_ns >= self.check_due_ns;
        let mut icr = Int::empty();
        if check {
            self.interrupted = false;
            self.check_due_ns = now_ns.saturating_add(REG_CHECK_NS);
            icr = self.regs.flags::<Int>(reg::ICR);
            if icr.bits() == u32::MAX {
                // All-ones: the device fell off the bus or the window is wrong.
                self.recover(format_args!("ICR reads all-ones"));
                return true;
            }
            if !icr.is_empty() {
                self.stats.irqs += 1;
            }
            if icr.contains(Int::LSC) {
                self.check_link();
            }
            if icr.contains(Int::RXO) {
                self.stats.rx.drops += u64::from(self.regs.read32(reg::MPC));
            }
        }
        let reclaimed = self.tx.reclaim();
        if reclaimed > 0 || self.tx.in_flight() == 0 {
            self.tx_progress_ns = now_ns;
        }
        if check {
            let rdh = self.regs.read32(reg::RDH);
            let tdh = self.regs.read32(reg::TDH);
            if rdh as usize >= self.rx.size() || tdh as usize >= self.tx.size() {
                self.recover(format_args!("impossible ring head (RDH {rdh}, TDH {tdh}, ring {})", self.rx.size()));
                return true;
            }
        }
        if self.tx.in_flight() > 0 && now_ns.saturating_sub(self.tx_progress_ns) > TX_HANG_NS {
            let tdh = self.regs.read32(reg::TDH);
            self.recover(format_args!(
                "transmit ring hung ({} descriptors in flight, TDH {tdh}, no progress for {} ms)",
                self.tx.in_flight(),
                now_ns.saturating_sub(self.tx_progress_ns) / 1_000_000
            ));
            return true;
        }
        !icr.is_empty() || reclaimed > 0
    }

    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut f = Some(f);
        // Bounded: skip at most one ring's worth of bad frames per call.
        for _ in 0..self.rx.size() {
            match self.rx.poll(&mut self.stats, |b| f.take().map(|f| f(b))) {
                RxPoll::Empty => {
                    self.flush_rdt();
                    return None;
                }
                RxPoll::Frame { result, tail } => {
                    self.return_rx(tail);
                    return result;
                }
                RxPoll::Dropped { tail } => self.return_rx(tail),
            }
        }
        self.flush_rdt();
        None
    }

    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F> {
        if !self.tx.has_room() {
            self.tx.reclaim();
        }
        match self.tx.push(len, f) {
            Ok((r, tail)) => {
                self.regs.write32(reg::TDT, tail);
                self.stats.tx.packets += 1;
                self.stats.tx.bytes += len as u64;
                Ok(r)
            }
            Err((TxError::Full, f)) => {
                self.stats.tx.drops += 1;
                Err(f)
            }
            Err((TxError::BadLength(_), f)) => {
                self.stats.tx.errors += 1;
                Err(f)
            }
        }
    }

    fn can_transmit(&self) -> bool {
        self.tx.has_room()
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}

impl<H: Hal> E1000<H> {
    /// Hands descriptors up to `tail` back to the device: one RDT write per
    /// RDT_BATCH descriptors (a VM exit each), the rest on `flush_rdt`.
    fn return_rx(&mut self, tail: u32) {
        let n = self.rdt_pending.map_or(0, |(_, n)| n) + 1;
        if n >= RDT_BATCH {
            self.regs.write32(reg::RDT, tail);
            self.rdt_pending = None;
        } else {
            self.rdt_pending = Some((tail, n));
        }
    }

    fn flush_rdt(&mut self) {
        if let Some((tail, _)) = self.rdt_pending.take() {
            self.regs.write32(reg::RDT, tail);
        }
    }

    /// Descriptors in flight on the transmit ring.
    pub fn tx_in_flight(&self) -> usize {
        self.tx.in_flight()
    }
}
